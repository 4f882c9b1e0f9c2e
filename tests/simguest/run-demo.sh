#!/bin/sh
# sim_simguest_demo: start the real vmbusd binary with a temporary
# configuration and socket, run vmbus-simguest against it, and require that
# the client exits 0 and vmbusd is still running (and stops cleanly) after.
# Usage: run-demo.sh VMBUSD VMBUS-SIMGUEST [extra simguest args]
set -u
vmbusd=$1
simguest=$2
shift 2

tmp=$(mktemp -d /tmp/vmbusd-simguest.XXXXXX) || exit 1
pid=
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

cat >"$tmp/vmbusd.conf" <<CONF
[vm demo]
vsp = echo heartbeat shutdown timesync kvp

[vsp echo]
channels = 2

[vsp heartbeat]
interval_ms = 500
CONF

"$vmbusd" --socket "$tmp/vu.sock" --control '' --config "$tmp/vmbusd.conf" \
    >"$tmp/vmbusd.log" 2>&1 &
pid=$!

i=0
while [ ! -S "$tmp/vu.sock" ]; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "run-demo: vmbusd did not start; its output:"
        cat "$tmp/vmbusd.log"
        exit 1
    fi
    sleep 0.1
done

"$simguest" --socket "$tmp/vu.sock" --name demo --packets 200 --seconds 2 "$@"
rc=$?

status=0
if [ $rc -ne 0 ]; then
    echo "run-demo: vmbus-simguest exited $rc"
    status=1
fi
if ! kill -0 "$pid" 2>/dev/null; then
    echo "run-demo: vmbusd is gone after the client left"
    status=1
else
    kill "$pid"
    wait "$pid"
    vrc=$?
    pid=
    if [ $vrc -ne 0 ]; then
        echo "run-demo: vmbusd exited $vrc on SIGTERM"
        status=1
    fi
fi
echo "---- vmbusd output ----"
cat "$tmp/vmbusd.log"
exit $status
