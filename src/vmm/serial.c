/* SPDX-License-Identifier: MIT */
/*
 * A 16550A UART at COM1 (ports 0x3f8-0x3ff, ISA IRQ 4), output only: bytes the
 * guest transmits go to stdout or the --serial-log file; the receiver is
 * always empty.  The transmitter is infinitely fast, so "transmit holding
 * register empty" is always true, and a THRE interrupt is raised whenever
 * the guest enables it or writes a byte with it enabled (what the Linux 8250
 * driver needs for interrupt-driven output from user space).
 */
#include "vmm/vmm.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

#define COM1_BASE 0x3f8
#define COM1_IRQ  4

#define UART_LCR_DLAB 0x80
#define UART_IER_THRI 0x02
#define UART_IIR_NONE 0x01
#define UART_IIR_THRI 0x02
#define UART_LSR_THRE 0x20
#define UART_LSR_TEMT 0x40
#define UART_MCR_LOOP 0x10
#define UART_MSR_DEFAULT 0xb0 /* DCD, DSR, CTS */

void serial_init(struct serial *s, struct vm *vm, int out_fd)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->vm = vm;
    s->out_fd = out_fd;
    serial_reset(s);
}

void serial_reset(struct serial *s)
{
    pthread_mutex_lock(&s->lock);
    s->ier = 0;
    s->lcr = 0x03;
    s->mcr = 0x08;
    s->scr = 0;
    s->dll = 0x0c;
    s->dlm = 0;
    s->fcr = 0;
    s->thre_pending = false;
    s->irq_level = false;
    pthread_mutex_unlock(&s->lock);
}

static void update_irq(struct serial *s)
{
    bool level = (s->ier & UART_IER_THRI) && s->thre_pending;
    if (level != s->irq_level) {
        s->irq_level = level;
        if (vm_irq_line(s->vm, COM1_IRQ, level) < 0)
            log_warn("serial: KVM_IRQ_LINE %d: %s", COM1_IRQ, strerror(errno));
    }
}

static void emit(struct serial *s, uint8_t c)
{
    if (s->out_fd < 0)
        return;
    for (;;) {
        ssize_t n = write(s->out_fd, &c, 1);
        if (n == 1 || (n < 0 && errno != EINTR && errno != EAGAIN))
            return;
    }
}

bool serial_io(struct serial *s, uint16_t port, bool is_write, uint8_t *data)
{
    if (port < COM1_BASE || port > COM1_BASE + 7)
        return false;
    unsigned reg = port - COM1_BASE;
    pthread_mutex_lock(&s->lock);
    bool dlab = s->lcr & UART_LCR_DLAB;
    if (is_write) {
        uint8_t v = *data;
        switch (reg) {
        case 0:
            if (dlab) {
                s->dll = v;
            } else {
                if (!(s->mcr & UART_MCR_LOOP))
                    emit(s, v);
                s->thre_pending = true;
            }
            break;
        case 1:
            if (dlab) {
                s->dlm = v;
            } else {
                if ((v & UART_IER_THRI) && !(s->ier & UART_IER_THRI))
                    s->thre_pending = true;
                s->ier = v & 0x0f;
            }
            break;
        case 2: s->fcr = v; break;
        case 3: s->lcr = v; break;
        case 4: s->mcr = v & 0x1f; break;
        case 7: s->scr = v; break;
        default: break;
        }
    } else {
        uint8_t v = 0;
        switch (reg) {
        case 0: v = dlab ? s->dll : 0; break;
        case 1: v = dlab ? s->dlm : s->ier; break;
        case 2:
            if ((s->ier & UART_IER_THRI) && s->thre_pending) {
                v = UART_IIR_THRI;
                s->thre_pending = false;
            } else {
                v = UART_IIR_NONE;
            }
            if (s->fcr & 0x01)
                v |= 0xc0; /* FIFOs enabled */
            break;
        case 3: v = s->lcr; break;
        case 4: v = s->mcr; break;
        case 5: v = UART_LSR_THRE | UART_LSR_TEMT; break;
        case 6:
            if (s->mcr & UART_MCR_LOOP) {
                /* loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD */
                v = (uint8_t)(((s->mcr & 0x01) << 5) | ((s->mcr & 0x02) << 3) |
                              ((s->mcr & 0x04) << 4) | ((s->mcr & 0x08) << 4));
            } else {
                v = UART_MSR_DEFAULT;
            }
            break;
        case 7: v = s->scr; break;
        }
        *data = v;
    }
    update_irq(s);
    pthread_mutex_unlock(&s->lock);
    return true;
}
