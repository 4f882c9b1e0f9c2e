# SPDX-License-Identifier: MIT
# Load and unload hv_vmbus (+ hv_utils) e2e.loops times; report each round.
loops=$(e2e_param e2e.loops || echo 3)
i=1
while [ $i -le $((loops + 1)) ]; do
    e2e_load_vmbus || e2e_fail "round $i: hv_vmbus did not negotiate"
    e2e_load_upto hv_utils
    e2e_settle_devices
    e2e_report "round=$i "
    if [ $i -le "$loops" ]; then
        rmmod hv_utils 2>&1 || e2e_fail "round $i: rmmod hv_utils failed"
        rmmod hv_vmbus 2>&1 || e2e_fail "round $i: rmmod hv_vmbus failed"
    fi
    i=$((i + 1))
done
e2e_dmesg_check
