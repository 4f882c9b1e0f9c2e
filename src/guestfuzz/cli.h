/* SPDX-License-Identifier: MIT */
/* The options vmbusd-guestfuzz adds to vmbusd's (src/vmbusd/main.c). */
#ifndef VMBUSD_GUESTFUZZ_CLI_H
#define VMBUSD_GUESTFUZZ_CLI_H

#include <getopt.h>
#include <stdio.h>

enum {
    GF_OPT_SEED = 0x1000,
    GF_OPT_FUZZ,
    GF_OPT_FUZZ_CONFIG,
    GF_OPT_TRANSCRIPT_DIR,
    GF_OPT_REPLAY,
};

#define GF_CLI_OPTIONS                                                        \
    {"seed", required_argument, NULL, GF_OPT_SEED},                           \
    {"fuzz", required_argument, NULL, GF_OPT_FUZZ},                           \
    {"fuzz-config", required_argument, NULL, GF_OPT_FUZZ_CONFIG},             \
    {"transcript-dir", required_argument, NULL, GF_OPT_TRANSCRIPT_DIR},       \
    {"replay", required_argument, NULL, GF_OPT_REPLAY}

/* One of GF_CLI_OPTIONS: 0 taken, -1 bad value (printed), 1 not ours. */
int gf_cli_option(int opt, const char *arg);
/* After the options: pick a seed if none was given, load the replay
 * transcript, start the run (gf_run_init prints the warning).  0 or -1. */
int gf_cli_finish(void);
void gf_cli_usage(FILE *out);

#endif
