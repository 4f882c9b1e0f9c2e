/* SPDX-License-Identifier: MIT */
/*
 * vmbus-vmm: options, the VM life cycle (boot, reboot in place, poweroff,
 * panic) and the exit status.  See docs/vmm.md.
 */
#include "vmm/vmm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

#define DEFAULT_SOCKET  "/run/vmbusd/vmbus-user.sock"
#define DEFAULT_CMDLINE "console=ttyS0 panic=-1"
#define DEFAULT_MEM     (512ull << 20)
#define VMM_EXIT_SIGNAL 4

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vmbus-vmm --kernel BZIMAGE [options]\n"
        "\n"
        "Boots a Linux bzImage under KVM with Hyper-V enlightenments and serves its\n"
        "VMBus through vmbusd (vmbus-user protocol over a unix socket).\n"
        "\n"
        "  -k, --kernel FILE       Linux x86-64 bzImage to boot (required)\n"
        "  -i, --initrd FILE       initrd / initramfs to load\n"
        "  -a, --cmdline STRING    kernel command line (default: \"" DEFAULT_CMDLINE "\")\n"
        "      --append STRING     same as --cmdline\n"
        "  -m, --mem SIZE          guest RAM, e.g. 512M, 2G, or MiB as a plain number\n"
        "                          (default 512M; above 3G the rest goes above 4 GiB)\n"
        "  -c, --cpus N            number of vCPUs, 1..%d (default 1)\n"
        "  -s, --serial-log FILE   write the COM1 console to FILE instead of stdout\n"
        "      --vmbusd SOCKET     vmbusd's vmbus-user socket (default " DEFAULT_SOCKET ")\n"
        "      --name NAME         VM name shown in vmbusd's logs (default vm-PID)\n"
        "      --no-vmbus          run without vmbusd (the guest sees Hyper-V but no VMBus)\n"
        "      --aeoi MODE         auto, on or off: whether the guest is told to use\n"
        "                          auto-EOI for VMBus interrupts (auto: on unless the\n"
        "                          host's KVM has APICv/AVIC, which auto-EOI disables)\n"
        "      --huge-pages on|off back guest RAM with 2 MiB transparent huge pages\n"
        "                          where the host allows them for shared memory\n"
        "                          (default on; see the log line at start)\n"
        "      --no-reboot         exit with status 2 when the guest reboots\n"
        "      --max-reboots N     exit with status 2 after N in-place reboots (default: no limit)\n"
        "      --log-level LEVEL   error, warn, info (default) or debug\n"
        "  -v, --verbose           same as --log-level debug\n"
        "  -h, --help              this text\n"
        "\n"
        "Exit status: 0 guest powered off; 1 error; 2 guest rebooted with --no-reboot\n"
        "(or --max-reboots reached); 3 guest kernel panic; 4 stopped by SIGINT/SIGTERM;\n"
        "64 bad command line.\n",
        VMM_MAX_CPUS);
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s)
        return -1;
    uint64_t mul = 1ull << 20; /* plain numbers are MiB */
    switch (*end) {
    case 0: break;
    case 'k': case 'K': mul = 1ull << 10; end++; break;
    case 'm': case 'M': mul = 1ull << 20; end++; break;
    case 'g': case 'G': mul = 1ull << 30; end++; break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'B' || *end == 'b')
        end++;
    if (*end == 'B')
        end++;
    if (*end)
        return -1;
    if (v > (1ull << 44) / mul)
        return -1;
    *out = v * mul;
    return 0;
}

enum {
    OPT_VMBUSD = 256, OPT_NAME, OPT_NO_VMBUS, OPT_NO_REBOOT, OPT_MAX_REBOOTS,
    OPT_LOG_LEVEL, OPT_APPEND, OPT_AEOI, OPT_HUGE_PAGES,
};

static int parse_args(int argc, char **argv, struct vmm_options *o)
{
    static const struct option lo[] = {
        {"kernel", required_argument, NULL, 'k'},
        {"initrd", required_argument, NULL, 'i'},
        {"cmdline", required_argument, NULL, 'a'},
        {"append", required_argument, NULL, OPT_APPEND},
        {"mem", required_argument, NULL, 'm'},
        {"cpus", required_argument, NULL, 'c'},
        {"serial-log", required_argument, NULL, 's'},
        {"vmbusd", required_argument, NULL, OPT_VMBUSD},
        {"name", required_argument, NULL, OPT_NAME},
        {"no-vmbus", no_argument, NULL, OPT_NO_VMBUS},
        {"aeoi", required_argument, NULL, OPT_AEOI},
        {"huge-pages", required_argument, NULL, OPT_HUGE_PAGES},
        {"no-reboot", no_argument, NULL, OPT_NO_REBOOT},
        {"max-reboots", required_argument, NULL, OPT_MAX_REBOOTS},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    o->cmdline = DEFAULT_CMDLINE;
    o->socket_path = DEFAULT_SOCKET;
    o->mem_bytes = DEFAULT_MEM;
    o->cpus = 1;
    o->huge_pages = true;
    int c;
    while ((c = getopt_long(argc, argv, "k:i:a:m:c:s:vh", lo, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'k': o->kernel = optarg; break;
        case 'i': o->initrd = optarg; break;
        case 'a': case OPT_APPEND: o->cmdline = optarg; break;
        case 'm':
            if (parse_size(optarg, &o->mem_bytes) < 0) {
                fprintf(stderr, "vmbus-vmm: bad --mem '%s' (try 512M or 2G)\n", optarg);
                return -1;
            }
            break;
        case 'c':
            o->cpus = (int)strtol(optarg, &end, 10);
            if (*end || o->cpus < 1 || o->cpus > VMM_MAX_CPUS) {
                fprintf(stderr, "vmbus-vmm: --cpus must be 1..%d\n", VMM_MAX_CPUS);
                return -1;
            }
            break;
        case 's': o->serial_log = optarg; break;
        case OPT_VMBUSD: o->socket_path = optarg; break;
        case OPT_NAME: o->name = optarg; break;
        case OPT_NO_VMBUS: o->no_vmbus = true; break;
        case OPT_AEOI:
            if (strcmp(optarg, "auto") == 0)
                o->aeoi = HV_AEOI_AUTO;
            else if (strcmp(optarg, "on") == 0)
                o->aeoi = HV_AEOI_ON;
            else if (strcmp(optarg, "off") == 0)
                o->aeoi = HV_AEOI_OFF;
            else {
                fprintf(stderr, "vmbus-vmm: --aeoi must be auto, on or off\n");
                return -1;
            }
            break;
        case OPT_HUGE_PAGES:
            if (strcmp(optarg, "on") == 0)
                o->huge_pages = true;
            else if (strcmp(optarg, "off") == 0)
                o->huge_pages = false;
            else {
                fprintf(stderr, "vmbus-vmm: --huge-pages must be on or off\n");
                return -1;
            }
            break;
        case OPT_NO_REBOOT: o->no_reboot = true; break;
        case OPT_MAX_REBOOTS:
            o->max_reboots = (int)strtol(optarg, &end, 10);
            if (*end || o->max_reboots < 0) {
                fprintf(stderr, "vmbus-vmm: bad --max-reboots '%s'\n", optarg);
                return -1;
            }
            break;
        case OPT_LOG_LEVEL: {
            int l = log_parse_level(optarg);
            if (l < 0) {
                fprintf(stderr, "vmbus-vmm: --log-level must be error, warn, info or debug\n");
                return -1;
            }
            log_set_level((enum log_level)l);
            break;
        }
        case 'v': log_set_level(LOG_DEBUG); break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vmbus-vmm: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->kernel) {
        fprintf(stderr, "vmbus-vmm: --kernel BZIMAGE is required (see --help)\n");
        return -1;
    }
    return 0;
}

static void *signal_thread(void *arg)
{
    struct vm *vm = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    int sig;
    if (sigwait(&set, &sig) != 0)
        return NULL;
    if (!vm->in_run_loop) {
        log_warn("stopped on signal %s while setting up the VM", strsignal(sig));
        _exit(VMM_EXIT_SIGNAL);
    }
    log_warn("stopping the VM on signal %s", strsignal(sig));
    vm_post_event(vm, VM_EV_SIGNAL);
    /* A second signal means the orderly stop is stuck: leave now. */
    if (sigwait(&set, &sig) == 0) {
        log_warn("second signal %s: exiting at once", strsignal(sig));
        vm_dump_vcpus(vm);
        _exit(VMM_EXIT_SIGNAL);
    }
    return NULL;
}

static enum vm_event wait_event(struct vm *vm)
{
    pthread_mutex_lock(&vm->lock);
    while (vm->event == VM_EV_NONE)
        pthread_cond_wait(&vm->cond, &vm->lock);
    enum vm_event ev = vm->event;
    pthread_mutex_unlock(&vm->lock);
    return ev;
}

int main(int argc, char **argv)
{
    static struct vmm_options opt;
    if (parse_args(argc, argv, &opt) < 0)
        return VMM_EXIT_USAGE;

    char namebuf[32];
    if (!opt.name) {
        snprintf(namebuf, sizeof(namebuf), "vm-%d", (int)getpid());
        opt.name = namebuf;
    }

    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    static struct vm vm;
    vm.opt = &opt;
    vm.ncpus = opt.cpus;
    vm.vm_fd = -1;
    vm.kvm_fd = -1;
    vm.mem.memfd = -1;
    pthread_mutex_init(&vm.lock, NULL);
    pthread_cond_init(&vm.cond, NULL);
    for (int i = 0; i < VMM_MAX_CPUS; i++) {
        vm.vcpus[i].fd = -1;
        vm.vcpus[i].sint_irqfd = -1;
        vm.vcpus[i].sint_resamplefd = -1;
    }

    struct boot_image img;
    if (boot_load_files(&img, opt.kernel, opt.initrd) < 0)
        return VMM_EXIT_ERROR;
    /* A failure from here on frees what was loaded: no leak for
     * LeakSanitizer to report over the clear error line. */
    int out_fd = STDOUT_FILENO;
    if (kvm_open_checked(&vm) < 0)
        goto fail_early;
    vm.cpuid = hv_build_cpuid(vm.kvm_fd, vm.ncpus, opt.aeoi);
    if (!vm.cpuid)
        goto fail_early;
    if (mem_create(&vm.mem, opt.mem_bytes, opt.huge_pages) < 0)
        goto fail_early;
    if (opt.serial_log) {
        out_fd = open(opt.serial_log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (out_fd < 0) {
            log_err("cannot open --serial-log %s: %s", opt.serial_log, strerror(errno));
            goto fail_early;
        }
    }
    serial_init(&vm.serial, &vm, out_fd);

    if (!opt.no_vmbus) {
        if (vmbus_connect(&vm, opt.socket_path, opt.name) < 0)
            goto fail_early;
    }

    pthread_t sigthr;
    pthread_create(&sigthr, NULL, signal_thread, &vm);
    pthread_detach(sigthr);

    log_info("%s: %d vCPU(s), %llu MiB, kernel %s%s%s, VMBus %s", opt.name, vm.ncpus,
             (unsigned long long)(vm.mem.total >> 20), opt.kernel, opt.initrd ? ", initrd " : "",
             opt.initrd ? opt.initrd : "", opt.no_vmbus ? "off" : opt.socket_path);

    int status = VMM_EXIT_ERROR;
    int reboots = 0;
    bool setup_sent = false;
    for (;;) {
        vm.in_run_loop = false;
        log_debug("creating the VM");
        if (vm_create(&vm) < 0)
            break;
        log_debug("routing SINT%d", 2);
        if (hv_setup_sint_routes(&vm) < 0)
            break;
        log_debug("loading the kernel");
        if (boot_setup(&vm, &img, opt.cmdline) < 0)
            break;
        if (vm.vmbus && !setup_sent) {
            if (vmbus_send_setup(&vm) < 0 || vmbus_start_reader(&vm) < 0)
                break;
            setup_sent = true;
        }
        vmbus_rearm_eventfds(&vm);
        if (vm_start_vcpus(&vm) < 0)
            break;
        vm.in_run_loop = true;
        log_debug("%d vCPU(s) running", vm.ncpus);
        enum vm_event ev = wait_event(&vm);
        vm_stop_vcpus(&vm);
        if (ev == VM_EV_SIGNAL || ev == VM_EV_ERROR)
            vm_dump_vcpus(&vm);
        if (ev == VM_EV_REBOOT && vm.triple_fault_vcpu >= 0) {
            /* On AMD, KVM has already put the faulting vCPU through INIT
             * (its VMCB is undefined after a shutdown): only the others
             * still show where the guest was. */
            log_warn("vCPU %d triple-faulted; the vCPUs' state:", vm.triple_fault_vcpu);
            vm_dump_vcpus(&vm);
        }
        if (ev == VM_EV_POWEROFF) {
            log_info("guest powered off");
            status = VMM_EXIT_POWEROFF;
            break;
        }
        if (ev == VM_EV_PANIC) {
            status = VMM_EXIT_PANIC;
            break;
        }
        if (ev == VM_EV_ERROR) {
            status = VMM_EXIT_ERROR;
            break;
        }
        if (ev != VM_EV_REBOOT) {
            status = VMM_EXIT_SIGNAL;
            break;
        }
        reboots++;
        if (opt.no_reboot || (opt.max_reboots && reboots > opt.max_reboots)) {
            log_info("guest rebooted; exiting (%s)",
                     opt.no_reboot ? "--no-reboot" : "--max-reboots reached");
            status = VMM_EXIT_REBOOT;
            break;
        }
        log_info("guest rebooted: resetting the VM in place (reboot %d)", reboots);
        vmbus_reset(&vm);
        vm_destroy(&vm);
        mem_clear(&vm.mem);
        serial_reset(&vm.serial);
    }
    mem_log_page_sizes(&vm.mem);
    vmbus_close(&vm);
    vm_destroy(&vm);
    mem_destroy(&vm.mem);
    boot_free_files(&img);
    free(vm.cpuid);
    log_debug("exit status %d", status);
    return status;

fail_early:
    if (out_fd != STDOUT_FILENO)
        close(out_fd);
    vmbus_close(&vm);
    mem_destroy(&vm.mem);
    boot_free_files(&img);
    free(vm.cpuid);
    if (vm.kvm_fd >= 0)
        close(vm.kvm_fd);
    return VMM_EXIT_ERROR;
}
