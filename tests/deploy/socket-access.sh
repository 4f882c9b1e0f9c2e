#!/bin/sh
# Who may connect to vmbusd's sockets is set by vmbusd, not by the umask
# (docs/security.md): by default the VMM socket is 0660 and the control
# socket 0600 even under umask 000; socket-mode/-group and
# control-mode/-group change that; modes open to others, and unknown
# groups, are refused.
# usage: socket-access.sh VMBUSD
set -eu
vmbusd=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmbusd-sockets.XXXXXX")
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    [ -f "$tmp/vmbusd.log" ] && { echo "--- vmbusd log" >&2; cat "$tmp/vmbusd.log" >&2; }
    exit 1
}

# start CONF: run vmbusd under umask 000 until both sockets exist
start() {
    (umask 000 && exec "$vmbusd" -c "$1" --socket "$tmp/vu.sock" --control "$tmp/ctl.sock") \
        >"$tmp/vmbusd.log" 2>&1 &
    pid=$!
    i=0
    while [ ! -S "$tmp/ctl.sock" ] || [ ! -S "$tmp/vu.sock" ]; do
        kill -0 "$pid" 2>/dev/null || fail "vmbusd exited"
        i=$((i + 1))
        [ $i -lt 200 ] || fail "sockets missing after 10 s"
        sleep 0.05
    done
}
stop() {
    kill "$pid"
    wait "$pid" || true
    pid=
}
# access PATH MODE GROUP
access() {
    got=$(stat -c '%a %G' "$1")
    echo "$1: $got"
    [ "$got" = "$2 $3" ] || fail "$1 is '$got', expected '$2 $3'"
}

group=$(id -gn)
printf '[daemon]\n' >"$tmp/default.conf"
echo "== defaults, umask 000"
start "$tmp/default.conf"
access "$tmp/vu.sock" 660 "$group"
access "$tmp/ctl.sock" 600 "$group"
stop

echo "== socket-mode 0600, control-mode 0660, control-group $group"
cat >"$tmp/set.conf" <<CONF
[daemon]
socket-mode = 0600
control-mode = 0660
control-group = $group
CONF
start "$tmp/set.conf"
access "$tmp/vu.sock" 600 "$group"
access "$tmp/ctl.sock" 660 "$group"
stop

if [ "$(id -u)" = 0 ] && other=$(getent group 65534 | cut -d: -f1) && [ -n "$other" ]; then
    echo "== socket-group 65534 ($other), as root"
    printf '[daemon]\nsocket-group = 65534\n' >"$tmp/gid.conf"
    start "$tmp/gid.conf"
    access "$tmp/vu.sock" 660 "$other"
    access "$tmp/ctl.sock" 600 "$group"
    stop
fi

# refused KEY VALUE REASON
refused() {
    printf '[daemon]\n%s = %s\n' "$1" "$2" >"$tmp/bad.conf"
    if "$vmbusd" -c "$tmp/bad.conf" --check-config >"$tmp/out" 2>&1; then
        fail "vmbusd accepted $1 = $2"
    fi
    cat "$tmp/out"
    grep -q "bad.conf:2: $3" "$tmp/out" || fail "no '$3' for $1 = $2"
}
echo "== bad values"
refused socket-mode 0666 "socket-mode must be octal, rw for the owner, nothing for others"
refused socket-mode 0402 "socket-mode must be octal"
refused control-mode rw "control-mode must be octal"
refused control-mode 01777 "control-mode must be octal"
refused socket-group no-such-group-vmbusd "socket-group: no group 'no-such-group-vmbusd'"
echo PASS
