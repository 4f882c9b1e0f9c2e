#!/bin/sh
# systemd/vmbusd.service parses without a warning (systemd-analyze verify),
# its exposure stays "OK" or better (systemd-analyze security <= 2.0), and
# systemd/vmbusd.sysusers creates the user and group the unit runs as.
# Without systemd-analyze: SKIP (exit 77), a failure when CI=true.
# usage: systemd-unit.sh SOURCE_ROOT VMBUSD
set -eu
src=$1
vmbusd=$2
unit=$src/systemd/vmbusd.service
sysusers=$src/systemd/vmbusd.sysusers
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
for tool in systemd-analyze systemd-sysusers; do
    if ! command -v $tool >/dev/null 2>&1; then
        [ "${CI:-}" = true ] && fail "$tool not installed (apt-get install systemd)"
        echo "SKIP: $tool not installed (apt-get install systemd)"
        exit 77
    fi
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmbusd-unit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "== systemd-analyze verify"
# verify insists that ExecStart's binary exists: point it at the build's.
sed "s#/usr/sbin/vmbusd#$(realpath "$vmbusd")#g" "$unit" >"$tmp/vmbusd.service"
set +e
systemd-analyze verify --man=no "$tmp/vmbusd.service" >"$tmp/out" 2>&1
rc=$?
set -e
cat "$tmp/out"
[ $rc = 0 ] || fail "systemd-analyze verify exited with $rc"
# an unknown or misspelt directive is only a warning to verify
[ ! -s "$tmp/out" ] || fail "systemd-analyze verify complained"

echo "== systemd-analyze security"
set +e
systemd-analyze security --offline=true --threshold=20 "$unit" >"$tmp/out" 2>&1
rc=$?
set -e
tail -n 1 "$tmp/out"
[ $rc = 0 ] || { cat "$tmp/out"; fail "exposure above 2.0"; }

echo "== sysusers"
mkdir -p "$tmp/root/etc"
systemd-sysusers --root="$tmp/root" "$(realpath "$sysusers")" >"$tmp/out" 2>&1 ||
    { cat "$tmp/out"; fail "systemd-sysusers refused $sysusers"; }
user=$(sed -n 's/^User=//p' "$unit")
group=$(sed -n 's/^Group=//p' "$unit")
grep -q "^$user:" "$tmp/root/etc/passwd" || fail "sysusers creates no user $user"
gid=$(grep "^$group:" "$tmp/root/etc/group" | cut -d: -f3)
[ -n "$gid" ] || fail "sysusers creates no group $group"
grep -q "^$user:[^:]*:[0-9]*:$gid:" "$tmp/root/etc/passwd" ||
    fail "$user's primary group is not $group"
echo "User=$user Group=$group: created by vmbusd.sysusers"
echo PASS
