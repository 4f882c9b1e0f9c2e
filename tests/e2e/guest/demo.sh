# SPDX-License-Identifier: MIT
# The README demo: bring VMBus up like a booting Hyper-V guest and show what
# the guest kernel sees.
e2e_load_vmbus || e2e_fail "hv_vmbus did not negotiate"
e2e_load_upto hv_utils
e2e_settle_devices
echo "E2E-VMBUS-READY"
echo "==== guest: $(dmesg | grep -m1 'Hypervisor detected' | sed 's/^\[[^]]*\] //')"
echo "==== guest: $(dmesg | grep 'hv_vmbus: Vmbus version:' | tail -n 1 | sed 's/^\[[^]]*\] //')"
echo "==== guest: /sys/bus/vmbus/devices:"
for d in /sys/bus/vmbus/devices/*; do
    [ -e "$d/class_id" ] || continue
    drv=$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)
    echo "====   $(basename "$d")  class_id=$(cat "$d/class_id")  driver=${drv:-none}"
done
dmesg | grep -E 'hv_utils: .* IC version' | sed 's/^\[[^]]*\] /==== guest: /'
# Stay up a moment so the host can look at the open channels.
sleep 6
e2e_report
