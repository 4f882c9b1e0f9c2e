#!/bin/sh
# vmbusctl against a running vmbusd with no VMs, and against no vmbusd.
# usage: vmbusctl.sh VMBUSD VMBUSCTL
set -eu
vmbusd=$1
vmbusctl=$2
. "$(dirname "$0")/lib.sh"
sdk_tmp vmbusctl-test
logs="$tmp/vmbusd.log"
ctl="$tmp/ctl.sock"

echo "== no vmbusd: a helpful error"
expect 1 "$vmbusctl" --socket "$ctl" list
has "vmbusd is not running" "$tmp/err"
has "$ctl" "$tmp/err"
has "systemctl start vmbusd" "$tmp/err"
has "vmbusd --control $ctl" "$tmp/err"
has "--socket PATH" "$tmp/err"
[ ! -s "$tmp/out" ] || fail "output on stdout"
expect 1 "$vmbusctl" --socket "$ctl" --json list
has "vmbusd is not running" "$tmp/err"

echo "== start vmbusd"
start_vmbusd "$tmp/vmbusd.log" --socket "$tmp/vu.sock" --control "$ctl" --log-level debug

echo "== list"
expect 0 "$vmbusctl" --socket "$ctl" --json list
[ "$(cat "$tmp/out")" = '{"ok":true,"partitions":[]}' ] || fail "unexpected JSON"
expect 0 "$vmbusctl" list --json --socket="$ctl"
[ "$(cat "$tmp/out")" = '{"ok":true,"partitions":[]}' ] || fail "options after the command"
expect 0 "$vmbusctl" --socket "$ctl" list
has "No VMs connected to vmbusd." "$tmp/out"
expect 0 env VMBUSCTL_SOCKET="$ctl" "$vmbusctl" list
has "No VMs connected" "$tmp/out"
expect 0 "$vmbusctl" --socket "$ctl" heartbeat
has "No VMs connected" "$tmp/out"

echo "== unknown VM"
expect 1 "$vmbusctl" --socket "$ctl" status nosuch
has "no VM 'nosuch' is connected to vmbusd" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" heartbeat nosuch
has "no VM 'nosuch'" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" shutdown nosuch --reboot --force
has "no VM 'nosuch'" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" kvp get nosuch guest some-key
has "no VM 'nosuch'" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" disk add nosuch /img/a.raw lun=1
has "no VM 'nosuch'" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" disk list nosuch
has "no VM 'nosuch'" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" --json control nosuch echo stats
has '"ok":false' "$tmp/out"
has "no VM 'nosuch'" "$tmp/err"

echo "== usage errors (no request sent)"
expect 1 "$vmbusctl" --socket "$ctl" kvp get vm pool9 key
has "bad pool 'pool9'" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" kvp get vm 0 "two words"
has "contains a blank" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" kvp set vm 0 key
has "usage: kvp" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" kvp set vm 0 key "$(printf 'a\nlist')"
has "control character" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" shutdown vm --now
has "unknown option '--now'" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" disk add vm
has "usage: disk add VM PATH" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" disk remove vm
has "usage: disk add VM PATH" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" disk eject vm lun=1
has "usage: disk" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" frobnicate
has "unknown command 'frobnicate'" "$tmp/err"
expect 1 "$vmbusctl" --socket "$ctl" control vm vsp cmd "$(head -c 1100 /dev/zero | tr '\0' x)"
has "too long" "$tmp/err"
expect 1 "$vmbusctl"
has "Usage: vmbusctl" "$tmp/err"
expect 0 "$vmbusctl" --help
has "kvp set VM POOL KEY VALUE" "$tmp/out"
has "disk add VM PATH" "$tmp/out"

echo "== vmbusd still serves after all that"
expect 0 "$vmbusctl" --socket "$ctl" --json list
[ "$(cat "$tmp/out")" = '{"ok":true,"partitions":[]}' ] || fail "unexpected JSON"
echo "PASS"
