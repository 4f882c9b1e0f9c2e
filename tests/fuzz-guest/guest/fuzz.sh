# SPDX-License-Identifier: MIT
# The guest side of vmbus-fuzz (sourced by the e2e /init, busybox sh): load
# and unload the VMBus stack in a loop while the host (vmbusd-guestfuzz)
# mutates what it sends.  Each iteration:
#   insmod hv_vmbus (the whole VMBus handshake and the offers again),
#   the modules of fuzz.mods (comma list, e.g. hv_utils,fzpc), hv_kvp_daemon
#   for fuzz.hold seconds of IC traffic (heartbeat, timesync, KVP set by the
#   host's vmbusctl), after reads from the SCSI disks and pings out of the
#   NICs the host offered (if any), then rmmod in reverse order.
# Markers (the host's liveness probe and iteration count):
#   FUZZ-READY                      booted, loop starts
#   FUZZ-ITER N begin / FUZZ-ITER N end
#   FUZZ-STEP N what rc=R           a step that failed (not a finding by itself)
#   FUZZ-SHUTDOWN                   the host's shutdown request arrived (SIGUSR2)
#   FUZZ-STALL step / FUZZ-STACK comm pid + its kernel stack / FUZZ-STALL-END
#                                   one step made no progress for fuzz.stall
#                                   seconds (default 40): the stacks of the
#                                   module tools and the KVP daemon, for triage
# fuzz.iters=N stops after N iterations (0: until shut down).
FUZZ_STOP=""
trap 'FUZZ_STOP=usr2' USR2
trap 'FUZZ_STOP=term' TERM

mods=$(e2e_param fuzz.mods | tr ',' ' ')
hold=$(e2e_param fuzz.hold || echo 2)
iters=$(e2e_param fuzz.iters || echo 0)
[ -e /mods/fzpc.ko ] || mods=$(echo " $mods " | sed 's/ fzpc / /')

# Everything a module list needs, in /mods/order's order (dependencies first).
fuzz_load() {
    local m
    for m in $mods; do
        if [ "$m" = fzpc ]; then
            [ -d /sys/module/fzpc ] || e2e_insmod fzpc
        else
            e2e_load_upto "$m"
        fi
    done
}

# Unload what is loaded of hv_vmbus and its users, last loaded first.
fuzz_unload() {
    local m rev=""
    for m in $(cat /mods/order) fzpc; do rev="$m $rev"; done
    for m in $rev; do
        [ -d "/sys/module/$(echo "$m" | tr - _)" ] || continue
        case "$m" in hv_*|fzpc|hid_hyperv|hyperv_keyboard) ;; *) continue ;; esac
        rmmod "$m" 2>/tmp/rmmod.err || echo "FUZZ-STEP $1 rmmod-$m rc=$? $(head -c 120 /tmp/rmmod.err)"
    done
}

# Traffic on the data-path devices the host offered (storvsp, netvsp), so
# their completions are fuzzed beyond the probe's: reads from every SCSI
# disk, and ARP requests out of every synthetic NIC (an address of its own,
# pings to a neighbour nobody answers for).  Failures are expected (the
# host lies) and are not findings by themselves.
fuzz_io() {
    local d e
    for d in /sys/block/sd*; do
        [ -e "$d" ] || continue
        dd if="/dev/${d##*/}" of=/dev/null bs=64k count=32 2>/dev/null ||
            echo "FUZZ-STEP $n dd-${d##*/} rc=$?"
    done
    for e in /sys/class/net/eth*; do
        [ -e "$e" ] || continue
        e=${e##*/}
        ip addr add 192.0.2.2/24 dev "$e" 2>/dev/null
        ip link set "$e" up 2>/dev/null || echo "FUZZ-STEP $n up-$e rc=$?"
        ping -c 2 -W 1 192.0.2.1 >/dev/null 2>&1
    done
}

# Seconds since boot: the watchdog's clock.  Not the wall clock, which the
# host's (mutated) timesync messages move at will.
uptime_s() { cut -d. -f1 /proc/uptime; }

# fuzz_step WHAT: the step now running, for the watchdog.
fuzz_step() { echo "$*" > /tmp/fuzz-step; uptime_s > /tmp/fuzz-beat; }

# Background watchdog: a step stuck for $stall seconds is reported once,
# with the kernel stacks of the processes that can be stuck in a driver
# (/proc/PID/stack leaves out the scheduler's frames, wait_for_completion
# among them) and the kernel's own dump of every blocked task (SysRq w,
# read back from the log: its lines are below the console's log level).
fuzz_watchdog() {
    local last now reported="" p
    while :; do
        sleep 5
        last=$(cat /tmp/fuzz-beat 2>/dev/null || echo 0)
        now=$(uptime_s)
        [ $((now - last)) -ge "$stall" ] && [ "$reported" != "$last" ] || continue
        reported=$last
        echo "FUZZ-STALL $(cat /tmp/fuzz-step 2>/dev/null)"
        for p in $(pidof insmod rmmod modprobe hv_kvp_daemon 2>/dev/null); do
            echo "FUZZ-STACK $(cat /proc/$p/comm 2>/dev/null) $p"
            cat "/proc/$p/stack" 2>/dev/null
        done
        echo 1 > /proc/sys/kernel/sysrq
        echo w > /proc/sysrq-trigger
        sleep 1
        echo "FUZZ-BLOCKED"
        dmesg | sed -n '/sysrq: Show Blocked State/,$p' | tail -n 150 | sed 's/^\[ *[0-9.]*\] //'
        echo "FUZZ-STALL-END"
    done
}

stall=$(e2e_param fuzz.stall || echo 40)
# Console log level 5 from here on: WARNINGs (level 4) reach the host's
# triage; the boot itself ran quieter (fuzz.loglevel, default 5).
dmesg -n "$(e2e_param fuzz.loglevel || echo 5)"
mkdir -p /var/lib/hyperv
fuzz_step start
fuzz_watchdog &
watchdog_pid=$!
echo "FUZZ-READY mods=$mods hold=$hold"
n=1
while [ -z "$FUZZ_STOP" ]; do
    echo "FUZZ-ITER $n begin"
    fuzz_step "$n load hv_vmbus"
    e2e_load_vmbus || echo "FUZZ-STEP $n vmbus-negotiate rc=1"
    fuzz_step "$n load $mods"
    fuzz_load
    fuzz_step "$n hold"
    kvp_pid=""""
    if [ -c /dev/vmbus/hv_kvp ] && [ -x /usr/sbin/hv_kvp_daemon ]; then
        /usr/sbin/hv_kvp_daemon -n </dev/null >/dev/null 2>&1 &
        kvp_pid=$!
    fi
    fuzz_step "$n io"
    fuzz_io
    fuzz_step "$n hold"
    i=0
    while [ $i -lt "$hold" ] && [ -z "$FUZZ_STOP" ]; do sleep 1; i=$((i + 1)); done
    if [ -n "$kvp_pid" ]; then
        kill "$kvp_pid" 2>/dev/null
        wait "$kvp_pid" 2>/dev/null
    fi
    [ -n "$FUZZ_STOP" ] && break
    fuzz_step "$n unload"
    fuzz_unload "$n"
    fuzz_step "$n done"
    echo "FUZZ-ITER $n end"
    [ "$iters" != 0 ] && [ "$n" -ge "$iters" ] && break
    n=$((n + 1))
done
[ "$FUZZ_STOP" = usr2 ] && echo "FUZZ-SHUTDOWN"
kill "$watchdog_pid" 2>/dev/null
trap - USR2 TERM
