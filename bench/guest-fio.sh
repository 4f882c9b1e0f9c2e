# SPDX-License-Identifier: MIT
# L2 guest scenario of bench/nested-storage (installed as /e2e/fio.sh):
# fio against the disk under test, e2e.disk=scsi (storvsc: the disk at
# LUN 0 served by storvsp) or e2e.disk=virtio (virtio-blk, /dev/vda), for
# e2e.runtime seconds per job after 2 s of ramp-up.  Markers:
#   E2E-FIO-DEV dev=NAME ...           the disk and its block-layer queues
#   E2E-FIO job=NAME iops=N bw_kib=N   one line per job (fio's terse output)
disk=$(e2e_param e2e.disk || echo scsi)
runtime=$(e2e_param e2e.runtime || echo 10)
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
    for job in "randread-4k-qd1 randread 4k 1" "randread-4k-qd16 randread 4k 16" "read-1m-qd4 read 1M 4"; do
        set -- $job
        r=$(fio --name="$1" --filename="/dev/$dev" --direct=1 --ioengine=libaio --rw="$2" \
                --bs="$3" --iodepth="$4" --ramp_time=2 --runtime="$runtime" --time_based \
                --thread --minimal 2>/tmp/fio.err)
        if [ -n "$r" ]; then
            echo "$r" | awk -F';' -v j="$1" '{ print "E2E-FIO job=" j " iops=" $8 " bw_kib=" $7 " error=" $5 }'
        else
            e2e_fail "fio job $1: $(head -c 300 /tmp/fio.err)"
        fi
    done
fi
