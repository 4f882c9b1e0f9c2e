# SPDX-License-Identifier: MIT
# The initramfs half of the storage scenario (tests/e2e/storage-l1): the
# guest's root file system is on a disk served by vmbusd's storvsp.  Load
# hv_vmbus, hv_storvsc, sd_mod and ext4 (initramfs of tests/e2e/mkinitramfs
# --modules "sd_mod ext4"), wait for the disk at LUN e2e.rootlun (default 0),
# mount it and switch_root to its /sbin/init (tests/e2e/guest/storage-init,
# which runs storage-root.sh).  Markers: E2E-STOR-ROOT dev=sdX addr=H:C:T:L.
# If anything fails here the scenario ends and /init powers the guest off.
e2e_ticker
e2e_load_vmbus || e2e_fail "hv_vmbus did not negotiate"
echo "E2E-VMBUS-UP"
for m in hv_storvsc sd_mod ext4; do
    e2e_modprobe "$m"
done
rootlun=$(e2e_param e2e.rootlun || echo 0)
if ! root=$(e2e_wait_disk "$rootlun" 60); then
    e2e_fail "no disk at LUN $rootlun 60 s after hv_storvsc loaded"
    ls /sys/bus/vmbus/devices /sys/block
    e2e_dump_dmesg
    return 0
fi
echo "E2E-STOR-ROOT dev=$root addr=$(e2e_scsi_addr "$root")"
mkdir -p /newroot
if ! mount -t ext4 "/dev/$root" /newroot; then
    e2e_fail "cannot mount /dev/$root (ext4)"
    e2e_dump_dmesg
    return 0
fi
if [ ! -x /newroot/sbin/init ]; then
    e2e_fail "/dev/$root has no /sbin/init"
    umount /newroot
    return 0
fi
# The root disk's init finds /proc, /sys and /dev mounted.
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
# The root disk's init starts its own ticker: this one's busybox goes with
# the initramfs.
kill "$E2E_TICKER_PID"
exec switch_root /newroot /sbin/init
