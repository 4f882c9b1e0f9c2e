# SPDX-License-Identifier: MIT
# The storage scenario on its root disk (sourced by /sbin/init, storage-init;
# host side: tests/e2e/storage-l1).  The guest boots twice (the host runs
# vmbus-vmm with --max-reboots 1); /e2e-state/phase on the root disk says
# which boot this is.
#   boot 1: write files of random bytes under /data, record their sha256 in
#           /e2e-state/SUMS, print the sha256 of that list (E2E-STOR-WRITTEN
#           sums=; the console is slow in the rig: one line, not one per
#           file), sync, reboot without unmounting (ext4 recovers its
#           journal at the next mount)
#   boot 2: the files still have their sums (sha256sum -c, and the list
#           made again hashes the same: E2E-STOR-SUMS2); the storvsc
#           device has a subchannel per vCPU and direct reads from each vCPU
#           raise interrupts on every channel; the read-only disk (LUN 1) is
#           write-protected: it mounts read-only with its files intact, a
#           write through the block layer fails, a raw SCSI WRITE (sg_raw,
#           past the guest's own read-only flag) gets DATA PROTECT sense
#           data, neither hangs; a disk the host hot-adds at LUN 2 appears
#           (E2E-STOR-HOTADD-SEEN), takes a write (E2E-STOR-HOTADD-WROTE)
#           and disappears when the host removes it
#           (E2E-STOR-HOTREMOVE-GONE); fstrim reaches the disk; dmesg has no
#           storvsc or SCSI error; / is remounted read-only (clean for the
#           host's e2fsck) and the guest powers off.
# e2e.wait=S bounds each wait for the host (hot add, hot remove).
hot_wait=$(e2e_param e2e.wait || echo 60)
phase=$(cat /e2e-state/phase 2>/dev/null || echo 0)
boot=$((phase + 1))
root=$(awk '$2 == "/" && $1 ~ /^\/dev\// { d = $1 } END { sub("/dev/", "", d); print d }' /proc/mounts)
echo "E2E-STOR-BOOT n=$boot root=${root:-none} addr=$(e2e_scsi_addr "$root") mount=$(awk '$2 == "/" { o = $3 " " $4 } END { print o }' /proc/mounts)"

stor_sums() { (cd /data && find . -type f | sort | xargs sha256sum); }
# Kernel messages a step is expected to cause: stor_mark before it, then
# stor_expect MARK ERE keeps the lines logged since MARK that match ERE in
# /tmp/dmesg-expected.txt; the final dmesg check skips them (and shows them).
stor_mark() { dmesg | wc -l; }
stor_expect() {
    dmesg | awk -v a="$1" 'NR > a' | grep -E "$2" >> /tmp/dmesg-expected.txt
}
: > /tmp/dmesg-expected.txt

if [ "$phase" = 0 ]; then
    mkdir -p /data/small
    dd if=/dev/urandom of=/data/rand1 bs=65536 count=16 2>/dev/null
    # Not a multiple of any block size.
    dd if=/dev/urandom of=/data/rand2 bs=4099 count=771 2>/dev/null
    dd if=/dev/urandom of=/data/big bs=1048576 count=16 2>/dev/null
    i=1
    while [ $i -le 40 ]; do
        head -c $((i * 97)) /dev/urandom > "/data/small/f$i"
        i=$((i + 1))
    done
    stor_sums > /e2e-state/SUMS
    echo 1 > /e2e-state/phase
    sync
    echo "E2E-STOR-WRITTEN files=$(wc -l < /e2e-state/SUMS) sums=$(sha256sum < /e2e-state/SUMS | cut -d' ' -f1)"
    e2e_console_drain
    reboot -f
    sleep 10
    e2e_fail "reboot did not happen"
    return 0
fi

# ---- boot 2: the files ----
dmesg | grep -E 'EXT4-fs \(' | sed 's/^/E2E-LOG /'
if (cd /data && sha256sum -c /e2e-state/SUMS > /tmp/verify.txt 2>&1); then
    e2e_result "verify=ok files=$(grep -c ': OK$' /tmp/verify.txt)"
else
    e2e_fail "files changed across the reboot:"
    grep -v ': OK$' /tmp/verify.txt | head -n 20
fi
echo "E2E-STOR-SUMS2 sums=$(stor_sums | sha256sum | cut -d' ' -f1)"

# ---- subchannels ----
sdev=""
for d in /sys/bus/vmbus/devices/*; do
    grep -qi ba6163d9-04a1-4d29-b605-72e2ffb1dc7f "$d/class_id" 2>/dev/null && { sdev=$d; break; }
done
ncpu=$(grep -c '^processor' /proc/cpuinfo)
nch=0
if [ -n "$sdev" ]; then
    # storvsc opens its subchannels after the disk scan: give them 10 s.
    i=0
    while [ $i -lt 100 ]; do
        nch=$(ls "$sdev/channels" 2>/dev/null | wc -l)
        [ "$nch" -ge "$ncpu" ] && break
        sleep 0.1
        i=$((i + 1))
    done
    echo "E2E-STOR-CHANNELS dev=${sdev##*/} n=$nch cpus=$ncpu driver=$(basename "$(readlink "$sdev/driver")")"
    for c in "$sdev"/channels/*; do
        echo "$(cat "$c/interrupts" 2>/dev/null || echo 0)" > "/tmp/irq.${c##*/}"
    done
    # Direct reads from each vCPU in turn: storvsc sends on the channel of
    # the vCPU it runs on.
    cpu=0
    while [ $cpu -lt "$ncpu" ]; do
        taskset $((1 << cpu)) dd if="/dev/$root" of=/dev/null bs=4096 count=256 \
            skip=$((cpu * 4096)) iflag=direct 2>/dev/null || e2e_fail "direct read from vCPU $cpu failed"
        cpu=$((cpu + 1))
    done
    for c in "$sdev"/channels/*; do
        echo "E2E-STOR-CHAN relid=${c##*/} cpu=$(cat "$c/cpu" 2>/dev/null) interrupts=$(cat "/tmp/irq.${c##*/}")->$(cat "$c/interrupts" 2>/dev/null)"
    done
else
    e2e_fail "no storvsc device (class ba6163d9-...) in /sys/bus/vmbus/devices"
fi

# ---- the read-only disk ----
if ro=$(e2e_wait_disk 1 10); then
    e2e_result "ro_dev=$ro addr=$(e2e_scsi_addr "$ro")"
    e2e_result "ro_flag=$(cat "/sys/block/$ro/ro")"
    mkdir -p /mnt/ro
    if mount -t ext4 -o ro "/dev/$ro" /mnt/ro; then
        if (cd /mnt/ro && sha256sum -c SUMS >/dev/null 2>&1); then
            e2e_result "ro_mount=ok"
        else
            e2e_fail "read-only disk: /ro-data does not match its SUMS"
        fi
        umount /mnt/ro
    else
        e2e_fail "read-only disk: mount -o ro failed"
    fi
    # A write through the block layer: refused without reaching the disk.
    if e2e_run_for 60 /tmp/ro-dd.txt dd if=/dev/zero of="/dev/$ro" bs=4096 count=1 oflag=direct conv=fsync; then
        e2e_fail "read-only disk: a write to /dev/$ro succeeded"
    fi
    e2e_result "ro_write_blk=$E2E_RC $(tail -n 1 /tmp/ro-dd.txt)"
    # A raw WRITE(10) of one block at LBA 0: the disk itself must refuse it.
    bs=$(cat "/sys/block/$ro/queue/logical_block_size")
    head -c "$bs" /dev/zero > /tmp/blk
    # storvsc logs the refusal (WRITE(10) = 0x2a, CHECK CONDITION).
    mark=$(stor_mark)
    e2e_run_for 60 /tmp/ro-sg.txt sg_raw -R -t 30 -s "$bs" -i /tmp/blk "/dev/$ro" 2a 00 00 00 00 00 00 00 01 00
    stor_expect "$mark" 'hv_storvsc .* cmd 0x2a status: scsi 0x2 '
    e2e_result "ro_write_scsi=$E2E_RC"
    sed 's/^/E2E-LOG sg_raw: /' /tmp/ro-sg.txt | head -n 12
else
    e2e_fail "no disk at LUN 1 (the read-only disk)"
fi

# ---- hot add and remove (LUN 2) ----
echo "E2E-STOR-HOTADD-READY"
if hot=$(e2e_wait_disk 2 "$hot_wait"); then
    sum=$(dd if="/dev/$hot" bs=1048576 count=1 iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1)
    echo "E2E-STOR-HOTADD-SEEN dev=$hot addr=$(e2e_scsi_addr "$hot") sha256_1m=$sum"
    yes e2e-hotadd-write | head -c 4096 > /tmp/pat
    e2e_run_for 60 /tmp/hot-dd.txt dd if=/tmp/pat of="/dev/$hot" bs=4096 seek=256 oflag=direct conv=fsync
    echo "E2E-STOR-HOTADD-WROTE rc=$E2E_RC"
    [ "$E2E_RC" = 0 ] || { e2e_fail "write to the hot-added disk: $E2E_RC"; cat /tmp/hot-dd.txt; }
    # Removed, the disk still gets Linux's last cache flush (sd's shutdown,
    # after /sys/block/sdX and the /sys/bus/scsi link are gone, before the
    # device's own directory is): the host has let go of the LUN and
    # answers INVALID_LUN, which storvsc and sd log (as they do when a disk
    # leaves under Hyper-V).  Those lines are expected from here on.
    sdir=$(readlink -f "/sys/block/$hot/device")
    hot_mark=$(stor_mark)
    i=0
    while { [ -e "/sys/block/$hot" ] || [ -e "$sdir" ]; } && [ $i -lt $((hot_wait * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if [ -e "/sys/block/$hot" ] || [ -e "$sdir" ]; then
        e2e_fail "hot-added disk $hot ($sdir) still present ${hot_wait}s after E2E-STOR-HOTADD-WROTE"
    else
        echo "E2E-STOR-HOTREMOVE-GONE dev=$hot waited_ds=$i"
    fi
else
    e2e_fail "no disk appeared at LUN 2 within ${hot_wait}s"
fi
e2e_result "disks_after=$(ls /sys/block | grep '^sd' | tr '\n' ' ')"

# ---- discard ----
e2e_result "discard_max_bytes=$(cat "/sys/block/$root/queue/discard_max_bytes")"
dd if=/dev/urandom of=/data/trimme bs=1048576 count=4 2>/dev/null
sync
rm /data/trimme
sync
if e2e_run_for 60 /tmp/fstrim.txt fstrim -v /; then
    e2e_result "fstrim=ok $(cat /tmp/fstrim.txt)"
else
    e2e_fail "fstrim /: $E2E_RC $(cat /tmp/fstrim.txt)"
fi

# ---- the guest's kernel log ----
[ -z "${hot_mark:-}" ] || stor_expect "$hot_mark" \
    "hv_storvsc .* cmd 0x35 status: scsi 0x0 srb 0x20 |\\[$hot\\] Synchronize Cache\\(10\\) failed: Result: hostbyte=DID_NO_CONNECT"
e2e_dmesg_check
dmesg > /tmp/dmesg.txt
sed 's/^/E2E-LOG expected: /' /tmp/dmesg-expected.txt
# Errors of storvsc itself (a request that did not complete with success),
# SCSI error handling (timeouts, aborts, resets; not the unit attention
# "Power-on or device reset occurred" of a new disk), I/O errors on the
# writable disks, ext4 errors; not the lines expected above.
pat='storvsc.*(error|fail|time|status:)|timing out command|tag#[0-9]+ (abort|timing)|(host|bus|device|target) reset (called|failed|succeeded)|EXT4-fs (error|warning)|Buffer I/O error|critical .* error'
for d in $root $hot; do
    pat="$pat|I/O error, dev $d|\\[$d\\].*(FAILED|Sense Key)"
done
# (busybox grep -v -f of an empty file would drop every line)
if [ -s /tmp/dmesg-expected.txt ]; then
    grep -v -x -F -f /tmp/dmesg-expected.txt /tmp/dmesg.txt > /tmp/dmesg-check.txt
else
    cp /tmp/dmesg.txt /tmp/dmesg-check.txt
fi
if grep -i -E "$pat" /tmp/dmesg-check.txt > /tmp/storerr.txt; then
    e2e_fail "storage errors in dmesg:"
    head -n 30 /tmp/storerr.txt
else
    e2e_result "storage_dmesg=clean"
fi
[ "$E2E_FAILED" = 0 ] || grep -i -E 'storvsc|scsi|sd[a-z]|EXT4' /tmp/dmesg.txt | tail -n 40 | sed 's/^/E2E-LOG /'

# Clean for the host's e2fsck -fn.
echo 2 > /e2e-state/phase
sync
mount -o remount,ro / || e2e_fail "remount / read-only failed"
echo "E2E-STOR-DONE"
