# shellcheck shell=sh
# What the tests/sdk scripts share; sourced with . "$(dirname "$0")/lib.sh".
#
#   sdk_tmp NAME          $tmp, a directory removed at exit together with the
#                         background processes listed in $bg_pids
#   fail MSG              print MSG and the files named in $logs, exit 1
#   expect STATUS CMD...  run CMD, stdout in $tmp/out, stderr in $tmp/err,
#                         fail unless it exits with STATUS
#   run STATUS ARGS...    expect STATUS "$vmbusctl" --socket "$ctl" ARGS...
#   has ERE FILE          fail unless a line of FILE matches ERE
#   start_vmbusd LOG ARGS...
#                         vmbusd ARGS in the background (its pid in
#                         $vmbusd_pid, output in LOG), then wait until the
#                         sockets $ctl and, if set, $vu exist and, if
#                         $vmbusctl is set, vmbusd answers on $ctl

sdk_tmp() {
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    bg_pids=
    logs=
    trap sdk_cleanup EXIT
}

sdk_cleanup() {
    for p in $bg_pids; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}

fail() {
    echo "FAIL: $*" >&2
    for f in $logs; do
        [ -f "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }
    done
    exit 1
}

expect() {
    want=$1
    shift
    set +e
    "$@" >"$tmp/out" 2>"$tmp/err"
    got=$?
    set -e
    echo "\$ $*  (exit $got)"
    cat "$tmp/out" "$tmp/err"
    [ "$got" = "$want" ] || fail "'$*' exited with $got, expected $want"
}

run() {
    want=$1
    shift
    expect "$want" "$vmbusctl" --socket "$ctl" "$@"
}

has() { grep -q -E -- "$1" "$2" || fail "expected /$1/ in $2"; }

start_vmbusd() {
    log=$1
    shift
    "$vmbusd" "$@" >"$log" 2>&1 &
    vmbusd_pid=$!
    bg_pids="$bg_pids $vmbusd_pid"
    i=0
    while [ ! -S "$ctl" ] || { [ -n "${vu:-}" ] && [ ! -S "$vu" ]; }; do
        kill -0 "$vmbusd_pid" 2>/dev/null || fail "vmbusd exited"
        i=$((i + 1))
        [ $i -lt 200 ] || fail "vmbusd sockets missing after 10 s"
        sleep 0.05
    done
    # vmbusd creates a socket file before it listens on it (it sets its
    # mode and group in between): wait for an answer, not only the file.
    # The VMM socket listens before the control socket is even created.
    while [ -n "${vmbusctl:-}" ] && ! "$vmbusctl" --socket "$ctl" list >/dev/null 2>&1; do
        kill -0 "$vmbusd_pid" 2>/dev/null || fail "vmbusd exited"
        i=$((i + 1))
        [ $i -lt 200 ] || fail "vmbusd does not answer on $ctl after 10 s"
        sleep 0.05
    done
}
