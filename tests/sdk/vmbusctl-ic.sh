#!/bin/sh
# vmbusctl against the integration-service VSPs, with a simulated guest
# (tests/simguest) that answers them like Linux's hv_utils.
# usage: vmbusctl-ic.sh VMBUSD VMBUSCTL VMBUS_SIMGUEST
set -eu
vmbusd=$1
vmbusctl=$2
simguest=$3
. "$(dirname "$0")/lib.sh"
sdk_tmp vmbusctl-ic
logs="$tmp/vmbusd.log $tmp/guest.log"
ctl="$tmp/ctl.sock"
vu="$tmp/vu.sock"

cat >"$tmp/vmbusd.conf" <<CONF
[vm default]
vsp = heartbeat shutdown timesync kvp

[vsp heartbeat]
interval_ms = 200
CONF
start_vmbusd "$tmp/vmbusd.log" -c "$tmp/vmbusd.conf" --socket "$vu" --control "$ctl"
"$simguest" --socket "$vu" --name web1 --seconds 20 --quiet-timesync \
    >"$tmp/guest.log" 2>&1 &
gpid=$!
bg_pids="$bg_pids $gpid"

echo "== heartbeat becomes ok"
i=0
while :; do
    set +e
    "$vmbusctl" --socket "$ctl" heartbeat web1 >"$tmp/out" 2>&1
    rc=$?
    set -e
    [ $rc = 0 ] && break
    i=$((i + 1))
    [ $i -lt 200 ] || fail "heartbeat of web1 never ok: $(cat "$tmp/out")"
    sleep 0.05
done
run 0 heartbeat web1
has '^VM +ID +HEARTBEAT +SEQ +VERSION$' "$tmp/out"
has '^web1 +[0-9]+  ok +[0-9]+ +[0-9]+\.[0-9]+$' "$tmp/out"
run 0 heartbeat
has '^web1 +[0-9]+  ok ' "$tmp/out"
run 0 --json heartbeat web1
has '"heartbeat.state":"ok"' "$tmp/out"

echo "== status and list"
run 0 status web1
has '^  heartbeat\.state +ok$' "$tmp/out"
has '^  heartbeat\.seq +[0-9]+$' "$tmp/out"
has '^  shutdown\.version +[0-9]+\.[0-9]+$' "$tmp/out"
run 0 list
has '^VM web1 \(partition [0-9]+\): 2 vCPUs, VMBus 5\.3, ' "$tmp/out"
# the VMM that connected web1 (SO_PEERCRED): the simulated guest's process
has "^  VMM: pid $gpid, uid $(id -u), gid $(id -g)\$" "$tmp/out"
grep -q "partition web1 (id [0-9]*): VMM connected (pid $gpid, uid $(id -u), gid $(id -g))" \
    "$tmp/vmbusd.log" || fail "no 'VMM connected' log line with the VMM's credentials"
has '^ +[0-9]+  heartbeat  57164f39-9115-4e78-ab55-382f3bd5422d  [0-9a-f-]{36}  open ' "$tmp/out"
has '^ +[0-9]+  shutdown   0e0b6031-5213-4934-818b-38d90ced39db  [0-9a-f-]{36}  open ' "$tmp/out"
has '^ +[0-9]+  timesync   9527e630-d0ae-497b-adce-e80ab0175caf  [0-9a-f-]{36}  open ' "$tmp/out"
has '^ +[0-9]+  kvp        a9a0f4e7-5a45-4d96-b827-8a841e8c03e6  [0-9a-f-]{36}  ' "$tmp/out"
# --rings: each open channel's ring header words (the host has sent
# heartbeats, the simulated guest has read what it was sent or is reading)
run 0 list --rings
has '^ +[0-9]+  heartbeat  57164f39-9115-4e78-ab55-382f3bd5422d  [0-9a-f-]{36}  open ' "$tmp/out"
has '^         guest->host ring: write [0-9]+ read [0-9]+ mask [0-9]+ pending_send_sz [0-9]+$' "$tmp/out"
has '^         host->guest ring: write [0-9]+ read [0-9]+ mask [0-9]+ pending_send_sz [0-9]+$' "$tmp/out"
run 0 --json list
has '"in_ring":\{"write_index":[0-9]+,"read_index":[0-9]+,"interrupt_mask":[0-9]+,"pending_send_sz":[0-9]+\}' "$tmp/out"
has "\"vmm_pid\":$gpid,\"vmm_uid\":$(id -u),\"vmm_gid\":$(id -g)," "$tmp/out"

echo "== shutdown"
run 0 shutdown web1 --reboot
has '^shutdown: guest accepted reboot$' "$tmp/out"
run 0 shutdown web1 --force
has '^shutdown: guest accepted poweroff$' "$tmp/out"
grep -q "shutdown: reboot requested" "$tmp/vmbusd.log" || fail "no reboot request logged"
grep -q "shutdown: poweroff (force) requested" "$tmp/vmbusd.log" || fail "no forced poweroff logged"

echo "== kvp (the simulated guest runs no KVP daemon)"
run 1 kvp get web1 auto OSName
has "^vmbusctl: web1: kvp: guest KVP service not ready" "$tmp/err"
run 0 kvp set web1 external greeting hello world
has "^kvp: stored for pool 0" "$tmp/out"
echo "PASS"
