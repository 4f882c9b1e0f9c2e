#!/bin/sh
# Run by sdk-guest while the VM "sdk" is connected with its echo-upper
# channel open, after sdk_guest.c sent: 4 good messages, 4 malformed, 1
# completion, 1 good, 300 flood = 310 packets, 305 answers, 4 dropped, 1 ignored.
# usage: connected.sh VMBUSCTL CONTROL_SOCKET
set -eu
vmbusctl=$1
ctl=$2
. "$(dirname "$0")/lib.sh"
sdk_tmp vmbusctl-conn

CLASS=9a11869b-dc0b-4cde-8233-51b8c6059083
INSTANCE=f1609556-202f-4c9c-9275-894f47e85bc5

run 0 list
has '^VM sdk \(partition [0-9]+\): 2 vCPUs, VMBus 5\.3, ' "$tmp/out"
# the 5 messages echo-upper dropped or ignored are the guest's errors
has '^VM sdk .*, 5 guest errors$' "$tmp/out"
has "RELID +SERVICE +CLASS +INSTANCE +STATE +IN% +OUT%" "$tmp/out"
has "^ +[0-9]+  - +$CLASS  $INSTANCE  open +[0-9]+% +[0-9]+%$" "$tmp/out"

run 0 --json list
has '^\{"ok":true,"partitions":\[\{"id":[0-9]+,"name":"sdk",' "$tmp/out"
has "\"class\":\"$CLASS\",\"instance\":\"$INSTANCE\"" "$tmp/out"
has '"state":"open"' "$tmp/out"
has '"name":"sdk",.*"guest_errors":5,' "$tmp/out"
id=$(sed -n 's/^{"ok":true,"partitions":\[{"id":\([0-9]*\),.*/\1/p' "$tmp/out")

run 0 control sdk echo-upper stats
has '^channel open, 310 packets, 305 replies, 4 dropped, 1 ignored, [1-9][0-9]* ring-full waits, prefix "up:"$' "$tmp/out"
run 0 control "$id" echo-upper stats
has '^channel open, 310 packets' "$tmp/out"
run 0 --json control sdk echo-upper stats
has '^\{"ok":true,"reply":"channel open, 310 packets' "$tmp/out"

# status is published at the end of each receive batch: allow it a moment
i=0
while :; do
    run 0 status sdk
    grep -q -E '^  echo-upper\.packets +310$' "$tmp/out" && break
    i=$((i + 1))
    [ $i -lt 40 ] || fail "echo-upper.packets never reached 310"
    sleep 0.05
done
has '^VM sdk \(partition [0-9]+\)$' "$tmp/out"
has '^  echo-upper\.state +open$' "$tmp/out"

run 1 control sdk echo-upper frobnicate
has "sdk: echo-upper: unknown command 'frobnicate' \(stats\)" "$tmp/err"
run 1 control sdk echo-upper stats now
has "stats takes no arguments" "$tmp/err"
run 1 control sdk timesync timesync
has "partition sdk has no VSP timesync" "$tmp/err"
# The simulated guest has no integration-service drivers: the IC channels
# stay closed, and the VSPs say so.
run 1 heartbeat sdk
has '^VM +ID +HEARTBEAT +SEQ +VERSION$' "$tmp/out"
has '^sdk +[0-9]+  none ' "$tmp/out"
run 1 shutdown sdk --reboot --force
has "^vmbusctl: sdk: shutdown: guest service not ready" "$tmp/err"
run 1 kvp get sdk guest somekey
has "^vmbusctl: sdk: kvp: guest KVP service not ready" "$tmp/err"
run 1 kvp list sdk auto
has "^vmbusctl: sdk: kvp: guest KVP service not ready" "$tmp/err"
run 0 kvp set sdk external greeting hello world
has "^kvp: stored for pool 0" "$tmp/out"
run 0 list
has "^ +[0-9]+  heartbeat  57164f39-9115-4e78-ab55-382f3bd5422d  " "$tmp/out"
has "^ +[0-9]+  shutdown   0e0b6031-5213-4934-818b-38d90ced39db  " "$tmp/out"
has "^ +[0-9]+  kvp        a9a0f4e7-5a45-4d96-b827-8a841e8c03e6  " "$tmp/out"
run 0 status sdk
has '^  heartbeat\.state +none$' "$tmp/out"
run 1 status nosuch
has "no VM 'nosuch' is connected to vmbusd" "$tmp/err"
echo "vmbusctl checks passed"
