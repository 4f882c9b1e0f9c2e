# SPDX-License-Identifier: MIT
# Bring VMBus up, announce E2E-KILL-NOW, keep running for e2e.wait seconds
# (the host kills vmbusd meanwhile), then check the kernel is healthy.
e2e_load_vmbus || e2e_fail "hv_vmbus did not negotiate"
e2e_load_upto hv_utils
e2e_settle_devices
e2e_report
echo "E2E-KILL-NOW"
w=$(e2e_param e2e.wait || echo 8)
i=0
while [ $i -lt "$w" ]; do
    sleep 1
    cat /sys/bus/vmbus/devices/*/class_id >/dev/null 2>&1
    i=$((i + 1))
done
echo "E2E-ALIVE after ${w}s"
e2e_report "after "
e2e_dmesg_check
