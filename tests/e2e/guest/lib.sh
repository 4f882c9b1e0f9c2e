# SPDX-License-Identifier: MIT
# Helpers for e2e guest scenarios (sourced by /init; busybox sh).

# Value of NAME=VALUE on the kernel command line.
e2e_param() {
    local w
    for w in $(cat /proc/cmdline); do
        case "$w" in "$1"=*) echo "${w#*=}"; return 0 ;; esac
    done
    return 1
}

E2E_FAILED=0
e2e_fail() { echo "E2E-FAIL $*"; E2E_FAILED=1; }
e2e_result() { echo "E2E-RESULT $*"; }
# Before reboot -f / poweroff -f: the console's last bytes leave through
# the UART's transmit interrupt, which a restart cuts off; the kernel's
# "reboot: ..." line would take the place of the marker's newline.
e2e_console_drain() { sleep 1; }

# The guest's interrupts and context switches so far: "INTR CTXT" (for
# per-request or per-byte costs in the benchmarks).  /proc/stat's interrupt
# total leaves out the Hyper-V callback vector, which carries every VMBus
# interrupt; /proc/interrupts' HYP row counts those.
e2e_irq_ctxt() {
    awk '$1 == "intr" { i += $2 } $1 == "ctxt" { c = $2 }
         $1 == "HYP:" { for (k = 2; k <= NF && $k ~ /^[0-9]+$/; k++) i += $k }
         END { print i, c }' /proc/stat /proc/interrupts
}

# e2e_ticker: a line on the console every 10 s for as long as the guest's
# kernel and user space run (E2E-TICK and the uptime), so that L1 tells a
# guest stuck waiting on the host (the ticks go on) from one that froze as
# a whole, the nested rig's flake (tests/e2e/l1-lib.sh, l1_guest_froze).
# The first tick comes at once: L1 needs one from this boot to know the
# ticker runs, and a guest can freeze in its first 10 s (the storage
# scenario's second boot once froze loading hv_vmbus).
# Sets E2E_TICKER_PID.
e2e_ticker() {
    ( while :; do echo "E2E-TICK $(cut -d ' ' -f 1 /proc/uptime)"; sleep 10; done ) &
    E2E_TICKER_PID=$!
}

# insmod one module of /mods with optional parameters.
e2e_insmod() {
    local m=$1; shift
    insmod "/mods/$m.ko" "$@" 2>&1 | sed "s/^/insmod $m: /"
}

# Load every module of /mods/order up to and including $1 (dependencies first).
e2e_load_upto() {
    local m
    for m in $(cat /mods/order); do
        [ -d "/sys/module/$m" ] || [ -d "/sys/module/$(echo "$m" | tr - _)" ] || e2e_insmod "$m"
        [ "$m" = "$1" ] && return 0
    done
}

# Load module $1 and what it depends on (/mods/deps.NAME, written by
# tests/e2e/mkinitramfs), each once.
e2e_modprobe() {
    local m
    [ -f "/mods/deps.$1" ] || { e2e_fail "module $1 is not in this initramfs"; return 1; }
    for m in $(cat "/mods/deps.$1"); do
        [ -d "/sys/module/$m" ] || [ -d "/sys/module/$(echo "$m" | tr - _)" ] || e2e_insmod "$m"
    done
}

# Load hv_vmbus with parameters ($@), wait until a (new) version line appears.
e2e_load_vmbus() {
    local before n w
    before=$(dmesg | grep -c 'hv_vmbus: Vmbus version:')
    e2e_insmod hv_vmbus "$@"
    w=0
    while [ $w -lt 200 ]; do
        n=$(dmesg | grep -c 'hv_vmbus: Vmbus version:')
        [ "$n" -gt "$before" ] && return 0
        [ -d /sys/module/hv_vmbus ] || return 1
        sleep 0.1
        w=$((w + 1))
    done
    return 1
}

# Wait until the number of VMBus devices stops changing (1.5 s quiet, max 20 s).
e2e_settle_devices() {
    local last=-1 stable=0 w=0 n
    while [ $w -lt 200 ]; do
        n=$(ls /sys/bus/vmbus/devices 2>/dev/null | wc -l)
        if [ "$n" = "$last" ]; then
            stable=$((stable + 1))
            [ $stable -ge 15 ] && [ "$n" -gt 0 ] && return 0
            [ $stable -ge 30 ] && return 0
        else
            stable=0
            last=$n
        fi
        sleep 0.1
        w=$((w + 1))
    done
}

# Print what the guest kernel reports: detection, version, devices.
e2e_report() {
    local tag=${1:-} v n d
    if dmesg | grep -q 'Hypervisor detected: Microsoft Hyper-V'; then
        e2e_result "${tag}hyperv=detected"
    else
        e2e_result "${tag}hyperv=missing"
    fi
    v=$(dmesg | grep 'hv_vmbus: Vmbus version:' | tail -n 1 | sed 's/.*Vmbus version://')
    e2e_result "${tag}version=${v:-none}"
    n=0
    for d in /sys/bus/vmbus/devices/*; do
        [ -e "$d/class_id" ] || continue
        echo "E2E-DEV ${tag}class=$(cat "$d/class_id") instance=$(cat "$d/device_id") driver=$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)"
        n=$((n + 1))
    done
    e2e_result "${tag}devices=$n"
    e2e_result "${tag}memtotal_kb=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo)"
}

# Kernel problems (BUG, Oops, WARN, ...).  One warning is expected and
# ignored: "XSAVE consistency problem" at boot is an artifact of QEMU TCG's
# nested SVM (L2's XSETBV never reaches L1's KVM); it appears with any VMM.
e2e_dmesg_check() {
    local pat n
    dmesg > /tmp/dmesg.txt 2>&1
    pat='BUG:|Oops|general protection fault|WARNING: CPU|kernel BUG|watchdog: BUG'
    if grep -q 'XSAVE consistency problem' /tmp/dmesg.txt; then
        e2e_result "known-warning=nested-tcg-xsave"
        pat='BUG:|Oops|general protection fault|kernel BUG|watchdog: BUG'
        n=$(grep -c 'WARNING: CPU' /tmp/dmesg.txt)
        [ "$n" -gt 2 ] && pat="$pat|WARNING: CPU"
    fi
    if grep -E -q "$pat" /tmp/dmesg.txt; then
        e2e_fail "kernel reported a problem:"
        grep -E -B2 -A12 "$pat" /tmp/dmesg.txt | head -n 60
    else
        e2e_result "kernel=clean"
    fi
}

e2e_dump_dmesg() {
    dmesg > /tmp/dmesg.txt 2>&1
    echo "E2E-DMESG-BEGIN lines=$(wc -l < /tmp/dmesg.txt)"
    grep -i -E 'hyper|vmbus|hv_|panic|error|fail' /tmp/dmesg.txt | tail -n 40
    echo "E2E-DMESG-END"
}

# KVP pool files of hv_kvp_daemon (/var/lib/hyperv/.kvp_pool_N).
# e2e_kvp_dump POOL: print every record (struct kvp_record: key[512],
# value[2048]).  Each string ends at its first NUL: hv_kvp_daemon leaves
# whatever its heap held after it (seen: pieces of /etc/hosts).
e2e_kvp_dump() {
    local f=/var/lib/hyperv/.kvp_pool_$1 n i k v
    [ -f "$f" ] || { echo "E2E-KVP pool=$1 (no file)"; return; }
    n=$(( $(wc -c < "$f") / 2560 ))
    i=0
    while [ $i -lt $n ]; do
        k=$(dd if="$f" bs=512 skip=$((i * 5)) count=1 2>/dev/null | tr '\0' '\n' | head -n 1)
        v=$(dd if="$f" bs=512 skip=$((i * 5 + 1)) count=4 2>/dev/null | tr '\0' '\n' | head -n 1)
        echo "E2E-KVP pool=$1 key=$k value=$v"
        i=$((i + 1))
    done
}
# e2e_kvp_add POOL KEY VALUE: append a record to pool file POOL.
e2e_kvp_add() {
    local f=/var/lib/hyperv/.kvp_pool_$1
    {
        printf '%s' "$2"; dd if=/dev/zero bs=$((512 - ${#2})) count=1 2>/dev/null
        printf '%s' "$3"; dd if=/dev/zero bs=$((2048 - ${#3})) count=1 2>/dev/null
    } >> "$f"
}
# e2e_kvp_has POOL KEY: is KEY in pool file POOL?
e2e_kvp_has() {
    local f=/var/lib/hyperv/.kvp_pool_$1 n i k
    [ -f "$f" ] || return 1
    n=$(( $(wc -c < "$f") / 2560 ))
    i=0
    while [ $i -lt $n ]; do
        k=$(dd if="$f" bs=512 skip=$((i * 5)) count=1 2>/dev/null | tr '\0' '\n' | head -n 1)
        [ "$k" = "$2" ] && return 0
        i=$((i + 1))
    done
    return 1
}

# SCSI disks (sd) by LUN, as /sys shows them ("H:C:T:L").
# e2e_disk_at_lun LUN: print the sdX name of the disk at LUN, if there is one.
e2e_disk_at_lun() {
    local d a
    for d in /sys/block/sd*; do
        [ -d "$d/device/scsi_device" ] || continue
        a=$(ls "$d/device/scsi_device")
        case "$a" in *:"$1") echo "${d##*/}"; return 0 ;; esac
    done
    return 1
}
# e2e_scsi_addr DISK: its H:C:T:L.
e2e_scsi_addr() { ls "/sys/block/$1/device/scsi_device" 2>/dev/null; }
# e2e_wait_disk LUN SECONDS: until a disk is at LUN; prints its name.
e2e_wait_disk() {
    local i=0
    while [ $i -lt $(($2 * 10)) ]; do
        e2e_disk_at_lun "$1" && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}

# e2e_run_for SECONDS OUTFILE CMD...: CMD in the background (output to
# OUTFILE), waited for at most SECONDS; E2E_RC is its exit status, or
# "hang" if it still runs (a process stuck in the kernel cannot be killed).
e2e_run_for() {
    local s=$1 f=$2 pid i=0
    shift 2
    "$@" > "$f" 2>&1 &
    pid=$!
    while kill -0 $pid 2>/dev/null && [ $i -lt $((s * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 $pid 2>/dev/null; then
        E2E_RC=hang
        return 1
    fi
    wait $pid
    E2E_RC=$?
    [ "$E2E_RC" = 0 ]
}

# Network interfaces (the network scenario tests/e2e/guest/net.sh and
# bench/guest-net.sh).  e2e_net_if DRIVER: the name of the interface whose
# device DRIVER drives (hv_netvsc, virtio_net), if there is one.
e2e_net_if() {
    local d
    for d in /sys/class/net/*; do
        case "$(readlink "$d/device/driver" 2>/dev/null)" in
        */"$1") echo "${d##*/}"; return 0 ;;
        esac
    done
    return 1
}
# e2e_net_wait_if DRIVER SECONDS: until such an interface exists; prints it.
e2e_net_wait_if() {
    local i=0
    while [ $i -lt $(($2 * 10)) ]; do
        e2e_net_if "$1" && return 0
        sleep 0.1
        i=$((i + 1))
    done
    return 1
}
# e2e_net_up IF ADDR4/LEN ADDR6/LEN SECONDS: the interface up with these
# addresses (set again if a down took them away), until it has a carrier.
e2e_net_up() {
    local i=0
    # Static addresses without duplicate detection: usable at once.
    echo 0 > "/proc/sys/net/ipv6/conf/$1/accept_dad"
    ip link set "$1" up || return 1
    ip -4 addr flush dev "$1"
    ip -6 addr flush dev "$1" scope global
    ip -4 addr add "$2" dev "$1" || return 1
    ip -6 addr add "$3" dev "$1" || return 1
    while [ "$(cat "/sys/class/net/$1/carrier" 2>/dev/null)" != 1 ] && [ $i -lt $(($4 * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    [ "$(cat "/sys/class/net/$1/carrier" 2>/dev/null)" = 1 ]
}
