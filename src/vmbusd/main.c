/* SPDX-License-Identifier: MIT */
/* vmbusd: the Hyper-V root partition's VMBus server for KVM guests. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "vmbusd/config.h"
#include "vmbusd/vmbusd.h"
#ifdef VMBUSD_GUESTFUZZ
#include "guestfuzz/cli.h" /* vmbusd-guestfuzz: the fuzzing build's extra options */
#endif

#ifndef VMBUSD_VERSION
#define VMBUSD_VERSION "unknown"
#endif

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: vmbusd [OPTIONS]\n"
            "Serve VMBus channels to KVM guests: plays the Hyper-V root partition for every\n"
            "VMM that connects over the vmbus-user socket (docs/vmbus-user-protocol.md).\n"
            "\n"
            "  -c, --config FILE     configuration file (see conf/vmbusd.conf); without one,\n"
            "                        every VM gets the four integration services\n"
            "  -s, --socket PATH     vmbus-user socket (default /run/vmbusd/vmbus-user.sock)\n"
            "  -C, --control PATH    control socket for vmbusctl (default\n"
            "                        /run/vmbusd/control.sock; \"\" disables it)\n"
            "  -p, --plugin-dir DIR  also look in DIR for the VSP plugins the VMs name\n"
            "                        (VSP.so)\n"
            "  -w, --workers N       worker threads for VSP work items (default 4)\n"
            "  -l, --log-level LVL   error, warn, info (default) or debug\n"
            "  -t, --check-config    parse the configuration, load plugins, and exit\n"
            "  -V, --version         print the version and exit\n"
            "  -h, --help            this text\n"
            "\n"
            "Options given on the command line override the configuration file.\n");
#ifdef VMBUSD_GUESTFUZZ
    gf_cli_usage(out);
#endif
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"socket", required_argument, NULL, 's'},
        {"control", required_argument, NULL, 'C'}, {"plugin-dir", required_argument, NULL, 'p'},
        {"workers", required_argument, NULL, 'w'}, {"log-level", required_argument, NULL, 'l'},
        {"check-config", no_argument, NULL, 't'},  {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
#ifdef VMBUSD_GUESTFUZZ
        GF_CLI_OPTIONS,
#endif
        {0},
    };
    const char *config = NULL, *sock = NULL, *ctl = NULL, *level = NULL, *dir = NULL;
    int workers = 0;
    bool check = false;
    int c;
    while ((c = getopt_long(argc, argv, "c:s:C:p:w:l:tVh", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 's': sock = optarg; break;
        case 'C': ctl = optarg; break;
        case 'p': dir = optarg; break;
        case 'w':
            workers = atoi(optarg);
            if (workers < 1 || workers > 64) {
                fprintf(stderr, "vmbusd: --workers must be 1..64\n");
                return 2;
            }
            break;
        case 'l': level = optarg; break;
        case 't': check = true; break;
        case 'V': printf("vmbusd %s\n", VMBUSD_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default:
#ifdef VMBUSD_GUESTFUZZ
            if (gf_cli_option(c, optarg) == 0)
                break;
#endif
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vmbusd: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }

    static struct vmbusd_config cfg;
    char err[512];
    config_defaults(&cfg);
    if (config && config_load(&cfg, config, err, sizeof(err)) < 0) {
        fprintf(stderr, "vmbusd: bad configuration: %s\n", err);
        return 1;
    }
    config_default_vms(&cfg);
    if (sock && snprintf(cfg.socket_path, sizeof(cfg.socket_path), "%s", sock) >=
                    (int)sizeof(cfg.socket_path)) {
        fprintf(stderr, "vmbusd: --socket path too long\n");
        return 2;
    }
    if (ctl)
        snprintf(cfg.control_path, sizeof(cfg.control_path), "%s", ctl);
    if (dir && cfg.ndirs < CFG_MAX_DIRS)
        snprintf(cfg.plugin_dirs[cfg.ndirs++], sizeof(cfg.plugin_dirs[0]), "%s", dir);
    if (workers)
        cfg.workers = workers;
    if (level) {
        int l = log_parse_level(level);
        if (l < 0) {
            fprintf(stderr, "vmbusd: --log-level must be error, warn, info or debug\n");
            return 2;
        }
        cfg.log_level = l;
    }
    log_set_level((enum log_level)cfg.log_level);
#ifdef VMBUSD_GUESTFUZZ
    if (!check && gf_cli_finish() < 0) {
        config_free(&cfg);
        return 2;
    }
#endif

    if (check) {
        int ret = vmbusd_check_config(&cfg, err, sizeof(err));
        if (ret < 0)
            fprintf(stderr, "vmbusd: %s\n", err);
        else
            printf("vmbusd: configuration OK\n");
        config_free(&cfg);
        return ret < 0 ? 1 : 0;
    }
    struct vmbusd *d = NULL;
    {
        vmbusd_raise_fd_limit();
        d = vmbusd_create(&cfg, err, sizeof(err));
        if (!d) {
            fprintf(stderr, "vmbusd: %s\n", err);
            config_free(&cfg);
            return 1;
        }
        vmbusd_run(d, true);
        vmbusd_destroy(d);
    }
    config_free(&cfg);
    return 0;
}
