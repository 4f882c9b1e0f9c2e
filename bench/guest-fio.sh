# SPDX-License-Identifier: MIT
# L2 guest scenario of bench/nested-storage (installed as /e2e/fio.sh):
# fio against the disk under test, e2e.disk=scsi (storvsc: the disk at
# LUN 0 served by storvsp) or e2e.disk=virtio (virtio-blk, /dev/vda), for
# e2e.runtime seconds per job after 2 s of ramp-up.  Markers:
#   E2E-FIO-DEV dev=NAME ...           the disk and its block-layer queues
#   E2E-FIO-BEGIN job=NAME             a job starts
#   E2E-PROF job=NAME PCT SYMBOL         with e2e.profile=1: the guest's flat
#       profile during each job (perf, cpu-clock, all CPUs, idle included)
#   E2E-FIO job=NAME iops=N bw_kib=N   one line per job (fio's terse output),
#       then busy=P cpu_us=U irq=I cs=C: the guest's CPU time in percent of
#       its vCPUs' (all but idle and iowait), and per I/O its CPU time in µs
#       and its interrupts and context switches (/proc/stat): what each
#       request costs the guest, whose kernel runs under TCG in the rig
disk=$(e2e_param e2e.disk || echo scsi)
runtime=$(e2e_param e2e.runtime || echo 10)
profile=$(e2e_param e2e.profile || echo 0)
dev=""
case "$disk" in
scsi)
    e2e_load_vmbus || e2e_fail "hv_vmbus did not negotiate"
    e2e_modprobe hv_storvsc
    e2e_modprobe sd_mod
    dev=$(e2e_wait_disk 0 60) || e2e_fail "no disk at LUN 0"
    ;;
virtio)
    e2e_modprobe virtio_pci
    e2e_modprobe virtio_blk
    i=0
    while [ ! -e /sys/block/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    [ -e /sys/block/vda ] && dev=vda || e2e_fail "no /dev/vda"
    ;;
*) e2e_fail "unknown e2e.disk=$disk" ;;
esac
if [ -n "$dev" ]; then
    # The same I/O scheduler (none) on both: the comparison is of the transports.
    echo none > "/sys/block/$dev/queue/scheduler" 2>/dev/null
    echo "E2E-FIO-DEV dev=$dev sectors=$(cat "/sys/block/$dev/size") hw_queues=$(ls "/sys/block/$dev/mq" | wc -l) scheduler=$(cat "/sys/block/$dev/queue/scheduler") max_sectors_kb=$(cat "/sys/block/$dev/queue/max_sectors_kb") max_hw_sectors_kb=$(cat "/sys/block/$dev/queue/max_hw_sectors_kb")"
    [ "$disk" = scsi ] && for d in /sys/bus/vmbus/devices/*; do
        grep -qi ba6163d9 "$d/class_id" 2>/dev/null && echo "E2E-FIO-CHANNELS n=$(ls "$d/channels" | wc -l)"
    done
    # uptime, all CPUs' ticks, idle + iowait ticks, interrupts (VMBus's
    # included), context switches
    guest_counters() {
        echo "$(awk 'FILENAME == "/proc/uptime" { u = $1 }
                     $1 == "cpu" { for (i = 2; i <= 9; i++) t += $i; id = $5 + $6 }
                     END { print u, t, id }' /proc/uptime /proc/stat) $(e2e_irq_ctxt)"
    }
    ncpu=$(grep -c '^processor' /proc/cpuinfo)
    # The topology the guest sees: whether its vCPUs share a last-level
    # cache decides whether the block layer completes a request on the CPU
    # its interrupt came to or sends the submitting CPU an IPI.
    if [ "$ncpu" -gt 1 ]; then
        mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
        topo="pkg1=$(cat /sys/devices/system/cpu/cpu1/topology/physical_package_id 2>/dev/null)"
        for c in /sys/devices/system/cpu/cpu0/cache/index*; do
            [ -e "$c/level" ] && topo="$topo L$(cat "$c/level")$(cat "$c/type" | cut -c1)=$(cat "$c/shared_cpu_list")"
        done
        for d in /sys/kernel/debug/sched/domains/cpu0/domain*; do
            [ -e "$d/name" ] && topo="$topo ${d##*/}=$(cat "$d/name")"
        done
        echo "E2E-FIO-TOPO $topo"
    fi
    [ "$profile" = 1 ] && echo 0 > /proc/sys/kernel/kptr_restrict # perf names kernel symbols
    for job in "randread-4k-qd1 randread 4k 1" "randread-4k-qd16 randread 4k 16" "read-1m-qd4 read 1M 4"; do
        set -- $job
        # L1 samples its KVM's counters for this guest at this line and at
        # the job's E2E-FIO line (bench/nested-storage).
        echo "E2E-FIO-BEGIN job=$1"
        s0=$(guest_counters)
        prof=""
        [ "$profile" = 1 ] && prof="perf record -q -a -e cpu-clock -F 2000 -o /tmp/perf.data --"
        r=$($prof fio --name="$1" --filename="/dev/$dev" --direct=1 --ioengine=libaio --rw="$2" \
                --bs="$3" --iodepth="$4" --ramp_time=2 --runtime="$runtime" --time_based \
                --thread --minimal 2>/tmp/fio.err)
        s1=$(guest_counters)
        if [ -n "$r" ]; then
            # The counters cover the ramp-up too; the rates are steady, so
            # per I/O = (delta / elapsed) / IOPS.
            echo "$r" | awk -F';' -v j="$1" -v c="$s0 $s1" -v ncpu="$ncpu" '{ split(c, v, " ")
                el = v[6] - v[1]; dt = v[7] - v[2]; iops = $8; x = ""
                if (el > 0 && dt > 0 && iops > 0) {
                    busy = 1 - (v[8] - v[3]) / dt
                    x = sprintf(" busy=%.0f cpu_us=%.1f irq=%.2f cs=%.2f", 100 * busy,
                                1e6 * busy * ncpu / iops, (v[9] - v[4]) / el / iops,
                                (v[10] - v[5]) / el / iops)
                }
                print "E2E-FIO job=" j " iops=" iops " bw_kib=" $7 " error=" $5 x }'
            if [ -n "$prof" ]; then
                perf report -i /tmp/perf.data --stdio --no-children --sort sym --percent-limit 0.5 \
                    2>/dev/null | grep -v -e '^#' -e '^$' | head -n 60 | sed "s/^ */E2E-PROF job=$1 /"
                rm -f /tmp/perf.data
            fi
        else
            e2e_fail "fio job $1: $(head -c 300 /tmp/fio.err)"
        fi
    done
fi
