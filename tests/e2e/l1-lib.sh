# SPDX-License-Identifier: MIT
# Helpers of the L1 scenario scripts that drive one L2 guest with vmbusctl
# (tests/e2e/ic-l1, retarget-l1, storage-l1, net-l1) and of the nested
# benchmarks (bench/nested-*); sourced by bash.  The caller
# sets: out (log directory), n (VM name), sock and ctl (vmbusd's sockets),
# vmbusd, vmbusctl; for wait_for also vmm_pid and deadline (ms, now_ms).
fails=0 passes=0

pass() { echo "PASS: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# The console without carriage returns or other non-printable bytes.
serial() { tr -d '\r' < "$out/$n.serial" 2>/dev/null | tr -c '\n\t -~' '?'; }
# check DESCRIPTION COMMAND...: PASS if COMMAND succeeds.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
has_line() { serial | grep -q -x -F -- "$1"; }
has_line_prefix() { serial | awk -v p="$1" 'index($0, p) == 1 { f = 1 } END { exit !f }'; }
result() { serial | sed -n "s/^E2E-RESULT $1=//p" | tail -n 1; }
ctl() { "$vmbusctl" -s "$ctl" -t 15 "$@"; }

# wait_for MARKER TIMEOUT_S: until the console has a line starting with
# MARKER; sets SEEN_MS (L1 clock, ms) when it appears.  Ends at the deadline
# or when the VMM exits.
wait_for() {
    local m=$1 end=$(( $(now_ms) + $2 * 1000 ))
    [ "$end" -le "$deadline" ] || end=$deadline
    SEEN_MS=""
    while [ "$(now_ms)" -lt "$end" ]; do
        if serial | grep -q -- "^$m"; then SEEN_MS=$(now_ms); return 0; fi
        kill -0 "$vmm_pid" 2>/dev/null || break
        sleep 0.1
    done
    serial | grep -q -- "^$m" && { SEEN_MS=$(now_ms); return 0; }
    stall_snapshot "$m"
    return 1
}

# stall_snapshot MARKER: the first time a wait ends without its marker while
# the guest still runs, what vmbusd sees of the channels (ring indices,
# interrupt masks) goes to $out/stall.txt: a hung guest shows whether its
# requests sit unread in a ring, its completions unread in ours, or neither.
# Then it watches the console for freeze_s: a guest that runs its ticker
# (e2e_ticker in guest/lib.sh, a line every 10 s) and printed nothing in
# that time while its VMM ran froze as a whole: $out/stall-frozen.
stall_snapshot() {
    [ -e "$out/stall.txt" ] && return 0
    kill -0 "$vmm_pid" 2>/dev/null || return 0
    local lines freeze_s=45 end
    lines=$(serial | wc -l)
    { echo "no '$1' after $(( ($(now_ms) - t0) / 1000 ))s; vmbusctl list --rings:"
      ctl list --rings; } > "$out/stall.txt" 2>&1
    # Only a ticker of the boot that stalled counts (a rebooted guest's
    # first boot ticked too).
    serial | awk '/^E2E-BEGIN /{t=0} /^E2E-TICK /{t=1} END{exit !t}' || return 0
    end=$(( $(now_ms) + freeze_s * 1000 ))
    while [ "$(now_ms)" -lt "$end" ]; do
        kill -0 "$vmm_pid" 2>/dev/null || return 0
        [ "$(serial | wc -l)" = "$lines" ] || return 0
        sleep 1
    done
    kill -0 "$vmm_pid" 2>/dev/null &&
        echo "no console line in ${freeze_s}s after the stall, the ticker's included" > "$out/stall-frozen"
}

# The guest's console has no failure marker and no kernel report of a
# stall, an oops or a warning (a guest waiting on a lost request reports
# its blocked task after 120 s; a CPU spinning with interrupts off, from
# the other CPU, an RCU stall after 21 s).
l1_clean_console() {
    ! serial | grep -q -E '^E2E-(STALL|FAIL)|BUG:|Oops|WARNING: CPU|rcu: INFO|self-detected stall|blocked for more than'
}

# After a stall (stall_snapshot): the guest froze as a whole - its ticker
# stopped with everything else (stall-frozen), nothing on the console that
# a stall or a lost request leaves, vmbusd answered then, and no vCPU
# waits on vmbusd.  The nested rig does that to busy 2-vCPU guests with no
# VMBus at all (docs/vmm.md).  A guest stuck waiting on the host keeps
# ticking: that is a failure.
l1_guest_froze() {
    [ -e "$out/stall-frozen" ] && grep -q "^VM $n " "$out/stall.txt" && l1_clean_console &&
        ! grep -q 'no POST_RESULT from vmbusd' "$out/$n.vmm.log"
}

# l1_start_vmbusd CONFIG: vmbusd with a control socket, logging at debug
# level to $out/$n.vmbusd.log; sets VMBUSD_PID.
l1_start_vmbusd() {
    rm -f "$sock" "$ctl"
    "$vmbusd" --config "$1" --socket "$sock" --control "$ctl" --log-level debug \
        > "$out/$n.vmbusd.log" 2>&1 &
    VMBUSD_PID=$!
    for _ in $(seq 100); do
        [ -S "$sock" ] && [ -S "$ctl" ] && return 0
        kill -0 "$VMBUSD_PID" 2>/dev/null || break
        sleep 0.05
    done
    fail "vmbusd did not start"
    tail -n 20 "$out/$n.vmbusd.log"
    return 1
}

l1_stop_vmbusd() {
    kill -TERM "$VMBUSD_PID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$VMBUSD_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$VMBUSD_PID" 2>/dev/null
    wait "$VMBUSD_PID" 2>/dev/null
    rm -f "$sock" "$ctl"
}

# l1_wait_vmm TIMEOUT_S: wait for the guest to power off by itself (at most
# until the deadline), else stop vmbus-vmm; sets VMM_RC.
l1_wait_vmm() {
    local end=$(( $(now_ms) + $1 * 1000 ))
    [ "$end" -le "$deadline" ] || end=$deadline
    while kill -0 "$vmm_pid" 2>/dev/null && [ "$(now_ms)" -lt "$end" ]; do sleep 0.2; done
    if kill -0 "$vmm_pid" 2>/dev/null; then
        echo "e2e: guest still running $(( ($(now_ms) - t0) / 1000 ))s after start; stopping vmbus-vmm"
        kill -TERM "$vmm_pid"
    fi
    wait "$vmm_pid"
    VMM_RC=$?
    echo "e2e: vmbus-vmm exit $VMM_RC after $(( ($(now_ms) - t0) / 1000 ))s"
}

# The guest's console last: a test log cut to its tail (meson, CI) keeps it.
l1_show_logs() {
    echo "----- vmbus-vmm log (last 30 lines) -----"
    tail -n 30 "$out/$n.vmm.log" 2>/dev/null
    echo "----- vmbusd log (last 60 lines) -----"
    tail -n 60 "$out/$n.vmbusd.log" 2>/dev/null
    if [ -e "$out/stall.txt" ]; then
        echo "----- stalled: -----"
        cat "$out/stall.txt"
    fi
    echo "----- guest serial console (last 60 lines, its ticker's left out) -----"
    serial | grep -v '^E2E-TICK ' | tail -n 60
    echo "----- end (the ticker's last line: $(serial | grep '^E2E-TICK ' | tail -n 1)) -----"
}

# l1_ramdisk_fs SIZE_MB DIR: an ext4 file system on a RAM disk (brd) mounted
# at DIR, for disk images that a VSP opens with O_DIRECT: L1's own root is
# an overlay on tmpfs, which refuses O_DIRECT.  L1 runs as root and sees the
# host's /lib/modules (the kernel's own module requests run L1's initramfs
# modprobe, which has none: load ext4 here).  Returns 1 (DIR untouched) if
# there is no brd.
l1_ramdisk_fs() {
    local dev
    modprobe ext4 2>/dev/null
    modprobe brd rd_nr=1 rd_size=$(( $1 * 1024 )) max_part=0 2>/dev/null || return 1
    dev=/dev/ram0
    [ -b "$dev" ] || return 1
    mkfs.ext4 -q -F "$dev" >/dev/null 2>&1 || return 1
    mkdir -p "$2"
    mount -t ext4 "$dev" "$2"
}

# l1_tap NAME MTU [multi_queue]: a TAP device for an L2 guest's NIC, up,
# with the documentation addresses 192.0.2.1/24 and 2001:db8::1/64 (no
# duplicate address detection: usable at once).  L1 has no other network:
# nothing leaves it.  Made before the VMM or vmbusd opens it
# (docs/netvsp.md: multi_queue for a netvsp NIC with 2 or more queues).
l1_tap() {
    modprobe tun 2>/dev/null
    ip link del "$1" 2>/dev/null
    ip tuntap add dev "$1" mode tap ${3:-} &&
        ip link set "$1" mtu "$2" up &&
        ip addr add 192.0.2.1/24 dev "$1" &&
        ip -6 addr add 2001:db8::1/64 dev "$1" nodad
}

# l1_kvm_watch SERIAL MARKER...: L1's KVM counts each VM's exits (debugfs,
# one directory per VM: the benchmarks run one VM at a time).  An exit of
# the L2 guest is what a nested guest pays most for, so the benchmarks
# sample the counters when the guest prints a line starting with one of
# the MARKERs (tail -F: this wakes only when the guest prints), until
# E2E-END.  Prints: MARKER KEY NS COUNTERS..., KEY being the value of the
# line's second word (job=NAME, dir=tx), NS L1's clock, the counters those
# of $l1_kvm_stats, then L1's busy and total CPU ticks (/proc/stat: is L1
# itself, whose CPUs run the VMM, vmbusd and the far end, saturated?).
l1_kvm_stats="exits halt_exits irq_exits hypercalls io_exits mmio_exits irq_injections"
l1_kvm_watch() {
    local serial=$1 marks
    shift
    marks=" $* "
    mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
    tail -n +1 -F "$serial" 2>/dev/null | while read -r mark key _; do
        mark=${mark%$'\r'} key=${key%$'\r'}
        [ "$mark" = E2E-END ] && break
        case "$marks" in *" $mark "*) ;; *) continue ;; esac
        local d vals="" st
        d=$(ls -d /sys/kernel/debug/kvm/*-* 2>/dev/null | head -n 1)
        for st in $l1_kvm_stats; do vals="$vals $(cat "$d/$st" 2>/dev/null || echo x)"; done
        vals="$vals $(awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9; exit }' /proc/stat)"
        echo "$mark ${key#*=} $(date +%s%N)$vals"
    done
}

# l1_kvm_deltas BEGIN END < KVMFILE: for each KEY that l1_kvm_watch saw
# under both markers, "KEY SECONDS" and the growth of each of
# $l1_kvm_stats between them, then L1's CPUs' busy percent over the span
# ("x" without /proc/stat's figures).  The benchmarks divide by their own
# unit (I/Os, MB).
l1_kvm_deltas() {
    awk -v b="$1" -v e="$2" '
        $1 == b { t0[$2] = $3; for (i = 4; i <= NF; i++) v[$2, i] = $i; next }
        $1 == e && ($2 in t0) && $3 > t0[$2] {
            l = $2 " " sprintf("%.9f", ($3 - t0[$2]) / 1e9)
            for (i = 4; i <= 10; i++) l = l " " ($i - v[$2, i])
            busy = (NF >= 12 && $12 > v[$2, 12]) ? 100 * ($11 - v[$2, 11]) / ($12 - v[$2, 12]) : "x"
            print l, busy }'
}
