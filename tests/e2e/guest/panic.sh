# SPDX-License-Identifier: MIT
# Panic the kernel on purpose: the VMM must exit with status 3.
e2e_load_vmbus || true
echo "E2E-PANICKING"
echo 1 > /proc/sys/kernel/sysrq
echo c > /proc/sysrq-trigger
sleep 10
e2e_fail "no panic"
