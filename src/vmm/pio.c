/* SPDX-License-Identifier: MIT */
/*
 * Port I/O exits: the UART, the ACPI sleep/reset registers, the legacy reset
 * paths (0xCF9, keyboard controller 0xFE), a CMOS stub, and "nothing here"
 * (reads return all ones) for everything else.
 */
#include "vmm/vmm.h"

#include <string.h>

#include "common/log.h"

#define ACPI_SLP_EN       0x20
#define ACPI_SLP_TYP(v)   (((v) >> 2) & 0x7)

static void pio_one(struct vcpu *vc, uint16_t port, bool is_write, uint8_t *data, unsigned size)
{
    struct vm *vm = vc->vm;
    if (size == 1 && serial_io(&vm->serial, port, is_write, data))
        return;
    if (is_write) {
        uint8_t v = data[0];
        switch (port) {
        case ACPI_SLEEP_CTL_PORT:
            if ((v & ACPI_SLP_EN) && ACPI_SLP_TYP(v) == ACPI_S5_TYPE) {
                log_info("guest requested poweroff (ACPI S5)");
                vm_post_event(vm, VM_EV_POWEROFF);
            } else if (v & ACPI_SLP_EN) {
                log_warn("guest asked for unsupported sleep type %u; ignored", ACPI_SLP_TYP(v));
            }
            return;
        case ACPI_RESET_PORT:
            if (v == ACPI_RESET_VALUE) {
                log_info("guest requested reboot (ACPI reset register)");
                vm_post_event(vm, VM_EV_REBOOT);
            }
            return;
        case 0xcf9:
            if (v & 0x04) {
                log_info("guest requested reboot (port 0xcf9)");
                vm_post_event(vm, VM_EV_REBOOT);
            }
            return;
        case 0x64:
            if (v == 0xfe) {
                log_info("guest requested reboot (keyboard controller)");
                vm_post_event(vm, VM_EV_REBOOT);
            }
            return;
        case 0x70:
            vm->cmos_index = v & 0x7f;
            return;
        default:
            return;
        }
    }
    switch (port) {
    case ACPI_SLEEP_STS_PORT:
    case ACPI_SLEEP_CTL_PORT:
        memset(data, 0, size);
        return;
    case 0x71:
        /* CMOS: all registers read 0 (no update in progress, no RTC alarm). */
        memset(data, 0, size);
        return;
    case 0x64:
        /* i8042 status: input buffer empty, so a keyboard-controller reset is
         * not stuck waiting; there is no keyboard controller otherwise. */
        memset(data, 0, size);
        return;
    default:
        memset(data, 0xff, size);
        return;
    }
}

int pio_handle(struct vcpu *vc)
{
    struct kvm_run *run = vc->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
    unsigned size = run->io.size;
    if (size != 1 && size != 2 && size != 4)
        return 0;
    for (uint32_t i = 0; i < run->io.count; i++) {
        pio_one(vc, run->io.port, is_write, data, size);
        data += size;
    }
    return 0;
}
