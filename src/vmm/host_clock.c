/* SPDX-License-Identifier: MIT */
/*
 * The host-clock check: whether KVM can give the guest a valid Hyper-V
 * reference TSC page on this host.
 */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "vmm/vmm.h"

/*
 * KVM keeps the guest's reference TSC page valid only while it runs its
 * "master clock", which needs the host itself to keep time with the TSC.  On
 * any other host clocksource (hpet, acpi_pm: typical of an L1 under QEMU's
 * software CPU, whose TSC Linux finds unsynchronised) the page stays invalid
 * and Linux's hyperv_clocksource_tsc_page falls back to reading the
 * reference-counter MSR: every clock read in the guest, kernel or vDSO, becomes
 * a VM exit.  Nothing breaks, but a guest doing I/O reads the clock several
 * times per request and slows down several-fold, so say so once at start.
 */
bool hv_check_host_clock(const char *path)
{
    char cs[64] = "";
    FILE *f = fopen(path, "r");
    if (!f || !fgets(cs, sizeof(cs), f)) {
        log_debug("cannot read the host clocksource from %s", path);
        if (f)
            fclose(f);
        return true; /* unknown: nothing to say */
    }
    fclose(f);
    cs[strcspn(cs, "\n")] = '\0';
    if (strcmp(cs, "tsc") == 0)
        return true;
    log_warn("the host clocksource is '%s', not tsc: KVM cannot keep the guest's Hyper-V "
                 "reference TSC page valid, so every clock read in the guest exits to KVM and "
                 "I/O-heavy guests run several times slower (a nested L1 under QEMU TCG: boot "
                 "it with tsc=reliable)", cs);
    return false;
}
