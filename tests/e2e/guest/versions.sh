# SPDX-License-Identifier: MIT
# Load hv_vmbus limited to each version in e2e.versions (comma separated,
# major<<16|minor), unloading in between; report what was negotiated.
vers=$(e2e_param e2e.versions || echo 0x50003)
for v in $(echo "$vers" | tr , ' '); do
    dmesg -c >/dev/null
    if e2e_load_vmbus max_version="$v"; then
        e2e_settle_devices
        e2e_report "max=$v "
    else
        e2e_result "max=$v version=none"
        e2e_dump_dmesg
    fi
    rmmod hv_vmbus 2>&1 || e2e_fail "rmmod hv_vmbus failed after max_version=$v"
done
e2e_dmesg_check
