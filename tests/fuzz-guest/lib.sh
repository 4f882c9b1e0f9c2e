# SPDX-License-Identifier: MIT
# Helpers of the fuzz-guest suite's scripts (run-positive, run-stock); sourced.

# skip WHY: a prerequisite is missing: a visible SKIP (77), a failure under
# CI=true (the tier must run in CI), like tests/e2e/vmm-errors.
skip() {
    if [ "${CI:-}" = true ]; then
        echo "FAIL: $* (prerequisite missing in CI)"
        exit 1
    fi
    echo "SKIP: $*"
    exit 77
}

# need_rig BUILD: the binaries of BUILD and the nested rig's packages, or skip.
# Sets vmm, vmbusctl, guestfuzz, kernel, kver.
need_rig() {
    local b=$1
    vmm=$b/src/vmm/vmbus-vmm
    vmbusctl=$b/src/vmbusctl/vmbusctl
    guestfuzz=$(ls "$b"/src/*/vmbusd-guestfuzz 2>/dev/null | head -n 1 || true)
    [ -x "$vmm" ] && [ -x "$vmbusctl" ] || skip "no vmbus-vmm/vmbusctl in $b"
    [ -n "$guestfuzz" ] && [ -x "$guestfuzz" ] || skip "no vmbusd-guestfuzz in $b (the mutation layer is not built)"
    kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1 || true)
    [ -n "$kernel" ] || skip "no guest kernel in /boot (apt-get install linux-image-amd64)"
    kver=${kernel##*/vmlinuz-}
    command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64 (apt-get install qemu-system-x86)"
    [ -x /bin/busybox ] || skip "no /bin/busybox (apt-get install busybox-static)"
    command -v cpio >/dev/null || skip "no cpio"
    [ -x /usr/sbin/hv_kvp_daemon ] || skip "no hv_kvp_daemon (apt-get install hyperv-daemons)"
    [ -x /usr/bin/python3 ] || skip "no /usr/bin/python3"
}
