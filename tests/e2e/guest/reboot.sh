# SPDX-License-Identifier: MIT
# Bring VMBus up, then reboot (the VMM resets the VM in place and boots
# the same kernel and scenario again; run it with --max-reboots).
e2e_load_vmbus || e2e_fail "hv_vmbus did not negotiate"
e2e_load_upto hv_utils
e2e_settle_devices
e2e_report
echo "E2E-REBOOTING"
sync
e2e_console_drain
reboot -f
sleep 10
e2e_fail "reboot did not happen"
