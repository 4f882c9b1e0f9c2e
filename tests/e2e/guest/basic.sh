# SPDX-License-Identifier: MIT
# Load the VMBus stack, report detection, version and devices.
maxver=$(e2e_param e2e.maxver || true)
if [ -n "$maxver" ]; then
    e2e_load_vmbus max_version="$maxver" || e2e_fail "hv_vmbus did not negotiate (max_version=$maxver)"
else
    e2e_load_vmbus || e2e_fail "hv_vmbus did not negotiate"
fi
echo "E2E-VMBUS-UP"
e2e_load_upto hv_utils
e2e_settle_devices
echo "E2E-VMBUS-READY"
t=$(dmesg | grep 'hv_vmbus: Vmbus version:' | tail -n 1 | sed 's/^\[ *\([0-9.]*\)\].*/\1/')
e2e_result "vmbus_uptime=${t:-none}"
e2e_report
e2e_result "cpus=$(grep -c ^processor /proc/cpuinfo)"
e2e_dmesg_check
[ "$E2E_FAILED" = 0 ] || e2e_dump_dmesg
