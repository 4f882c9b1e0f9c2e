# SPDX-License-Identifier: MIT
# Channel retargeting under load (tests/e2e/retarget-l1; needs 2 vCPUs and
# the extra archive of tests/e2e/mkinitramfs-ic for hv_kvp_daemon and
# /sbin/poweroff).  One round moves every open channel to CPU 1 and back to
# CPU 0 through sysfs (MODIFYCHANNEL, answered at 5.3); each write must
# succeed and read back.  Heartbeat and timesync traffic flows throughout.
#
#   1. hv_vmbus + hv_utils; then e2e.reloads times: unload and load
#      hv_utils again, 2 rounds (a guest once hung at its first retarget
#      after such a reload)
#   2. hv_kvp_daemon; E2E-RETARGET-GO: the host adds KVP and timesync SYNC
#      traffic; e2e.rounds rounds
#   3. all channels on CPU 1 for a moment: CPU 1's Hyper-V callback
#      interrupt count (/proc/interrupts HYP) must grow; then back to 0
#   4. the host's last KVP key (e2e.kvpkey) must reach pool 0, then wait
#      for the host's shutdown request (as in ic.sh)
# A watchdog per CPU (pinned with taskset) prints E2E-STALL with
# backtraces of every CPU (sysrq l, NMI) and of blocked tasks (sysrq w)
# if no sysfs write completes for e2e.stall seconds; the kernel's own RCU
# stall and hung-task detectors are set to report early.
# Markers: E2E-VMBUS-READY, E2E-RELOADED, E2E-RETARGET-GO,
#          E2E-RETARGET-DONE, E2E-STALL, E2E-HYP, E2E-KVP-SEEN,
#          E2E-RETARGET-CHECKED, E2E-POWEROFF-SIGNAL, E2E-RESULT
E2E_POWEROFF=""
trap 'E2E_POWEROFF=usr2' USR2
trap 'E2E_POWEROFF=term' TERM
trap 'E2E_POWEROFF=usr1' USR1

rounds=$(e2e_param e2e.rounds || echo 20)
reloads=$(e2e_param e2e.reloads || echo 5)
stall_s=$(e2e_param e2e.stall || echo 20)
rt_wait=$(e2e_param e2e.wait || echo 60)
kvpkey=$(e2e_param e2e.kvpkey || true)

# Backtraces must reach the serial console (the command line says quiet).
echo 7 > /proc/sys/kernel/printk
echo 1 > /proc/sys/kernel/sysrq
echo 10 > /proc/sys/kernel/hung_task_timeout_secs 2>/dev/null
echo 0 > /proc/sys/kernel/hung_task_panic 2>/dev/null

e2e_load_vmbus || e2e_fail "hv_vmbus did not negotiate"
e2e_load_upto hv_utils
e2e_settle_devices
echo "E2E-VMBUS-READY"
e2e_report
e2e_result "cpus=$(grep -c ^processor /proc/cpuinfo)"

# The channels' sysfs directories (every open channel has a 'cpu' file).
chans=""
for c in /sys/bus/vmbus/devices/*/channels/*; do
    [ -w "$c/cpu" ] && chans="$chans $c"
done
nchans=$(echo $chans | wc -w)
e2e_result "channels=$nchans"

# rt_state: one line per channel, "relid cpu interrupts events".
rt_state() {
    local c
    for c in $chans; do
        echo "E2E-CHAN relid=${c##*/} cpu=$(cat "$c/cpu") interrupts=$(cat "$c/interrupts" 2>/dev/null) events=$(cat "$c/events" 2>/dev/null) pending=$(cat "$c/pending" 2>/dev/null)"
    done
}
# HYP: Hyper-V callback interrupts per CPU ("cpu0 cpu1").
hyp_counts() { awk '$1 == "HYP:" { print $2, $3 }' /proc/interrupts; }

# Watchdog: progress is the number of sysfs writes done so far.
echo 0 > /tmp/rt.progress
rm -f /tmp/rt.done /tmp/rt.stalled
rt_watchdog() {
    local last="" same=0 p
    while [ ! -e /tmp/rt.done ]; do
        sleep 1
        p=$(cat /tmp/rt.progress 2>/dev/null)
        if [ "$p" = "$last" ]; then same=$((same + 1)); else same=0; last=$p; fi
        [ $same -ge "$stall_s" ] || continue
        # Both watchdogs may fire; the first one reports.
        mkdir /tmp/rt.stalled 2>/dev/null || return 0
        echo "E2E-STALL cpu=$1 progress=$p no progress for ${same}s"
        echo "E2E-STALL HYP interrupts per CPU: $(hyp_counts)"
        rt_state | sed 's/^/E2E-STALL /'
        echo l > /proc/sysrq-trigger
        echo w > /proc/sysrq-trigger
        sleep 2
        echo "E2E-STALL-END"
        return 0
    done
}
# One per CPU, each pinned there: a CPU that stops taking timer interrupts
# also stops the sleeps of the tasks on it.
for cpu in 0 1; do
    rt_watchdog $cpu &
    taskset -p -c $cpu $! >/dev/null 2>&1 || e2e_fail "taskset: cannot pin the watchdog to CPU $cpu"
done

# rt_rounds N: N rounds; counts writes and failures, stops after 5 failures.
writes=0 bad=0 done_rounds=0
rt_rounds() {
    local r=1 cpu c
    while [ $r -le "$1" ] && [ $bad -lt 5 ]; do
        for cpu in 1 0; do
            for c in $chans; do
                if ! echo $cpu > "$c/cpu" 2>/tmp/rt.err; then
                    e2e_fail "round $((done_rounds + 1)): relid ${c##*/} -> cpu $cpu: $(cat /tmp/rt.err)"
                    bad=$((bad + 1))
                elif [ "$(cat "$c/cpu")" != "$cpu" ]; then
                    e2e_fail "round $((done_rounds + 1)): relid ${c##*/} reads cpu $(cat "$c/cpu") after writing $cpu"
                    bad=$((bad + 1))
                fi
                writes=$((writes + 1))
                echo $writes > /tmp/rt.progress
            done
        done
        r=$((r + 1))
        done_rounds=$((done_rounds + 1))
    done
}

rt_state | sed 's/^/E2E-BEFORE /'
t0=$(date +%s)
k=1
while [ $k -le "$reloads" ] && [ $bad -lt 5 ]; do
    rmmod hv_utils 2>/tmp/rt.err || e2e_fail "reload $k: rmmod hv_utils: $(cat /tmp/rt.err)"
    e2e_load_upto hv_utils
    rt_rounds 2
    k=$((k + 1))
done
echo "E2E-RELOADED reloads=$((k - 1)) rounds=$done_rounds writes=$writes failed=$bad seconds=$(( $(date +%s) - t0 ))"

i=0
while [ ! -c /dev/vmbus/hv_kvp ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
kvp_pid=""
if [ -c /dev/vmbus/hv_kvp ] && [ -x /usr/sbin/hv_kvp_daemon ]; then
    mkdir -p /var/lib/hyperv
    /usr/sbin/hv_kvp_daemon -n </dev/null >/tmp/kvp.log 2>&1 &
    kvp_pid=$!
else
    e2e_fail "no /dev/vmbus/hv_kvp or no /usr/sbin/hv_kvp_daemon"
fi

echo "E2E-RETARGET-GO rounds=$rounds channels=$nchans"
rt_rounds "$rounds"
echo "E2E-RETARGET-DONE rounds=$done_rounds writes=$writes failed=$bad seconds=$(( $(date +%s) - t0 ))"
rt_state | sed 's/^/E2E-AFTER /'

# Every channel on CPU 1: CPU 1 must now take VMBus interrupts (heartbeat
# and timesync arrive every 100 ms).
for c in $chans; do echo 1 > "$c/cpu"; done
h0=$(hyp_counts)
sleep 2
h1=$(hyp_counts)
for c in $chans; do echo 0 > "$c/cpu"; done
echo "E2E-HYP before=${h0% *},${h0#* } after=${h1% *},${h1#* }"
touch /tmp/rt.done

# The host's last KVP key (sent after E2E-RETARGET-DONE) must arrive.
i=0
while [ -n "$kvpkey" ] && [ $i -lt $((rt_wait * 2)) ] && [ -z "$E2E_POWEROFF" ]; do
    e2e_kvp_has 0 "$kvpkey" && break
    sleep 0.5
    i=$((i + 1))
done
if [ -n "$kvpkey" ]; then
    if e2e_kvp_has 0 "$kvpkey"; then
        echo "E2E-KVP-SEEN key=$kvpkey"
    else
        e2e_fail "KVP key $kvpkey not in pool 0"
    fi
fi
[ -n "$kvp_pid" ] && kill -0 "$kvp_pid" 2>/dev/null && e2e_result "kvp_daemon=running"
echo "E2E-RETARGET-CHECKED"

i=0
while [ -z "$E2E_POWEROFF" ] && [ $i -lt "$rt_wait" ]; do
    sleep 1
    i=$((i + 1))
done
if [ "$E2E_POWEROFF" = usr2 ]; then
    echo "E2E-POWEROFF-SIGNAL"
elif [ -n "$E2E_POWEROFF" ]; then
    e2e_fail "PID 1 got SIG${E2E_POWEROFF} instead of poweroff's SIGUSR2"
else
    e2e_fail "no shutdown request within ${rt_wait}s"
fi
e2e_dmesg_check
[ "$E2E_FAILED" = 0 ] || e2e_dump_dmesg
trap - USR1 USR2 TERM
