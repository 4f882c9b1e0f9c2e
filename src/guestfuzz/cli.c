/* SPDX-License-Identifier: MIT */
/* vmbusd-guestfuzz's options (cli.h). */
#include "guestfuzz/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "guestfuzz/engine.h"
#include "guestfuzz/transcript.h"

static struct gf_run cli_run;
static bool knobs_ready, seed_given;
static const char *replay_path;

static void ensure_knobs(void)
{
    if (!knobs_ready) {
        gf_knobs_default(&cli_run.knobs);
        snprintf(cli_run.transcript_dir, sizeof(cli_run.transcript_dir), ".");
        knobs_ready = true;
    }
}

int gf_cli_option(int opt, const char *arg)
{
    char err[256];
    ensure_knobs();
    switch (opt) {
    case GF_OPT_SEED: {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(arg, &end, 0);
        if (end == arg || *end || errno || *arg == '-') {
            fprintf(stderr, "vmbusd-guestfuzz: --seed '%s' is not a number\n", arg);
            return -1;
        }
        cli_run.seed = v;
        seed_given = true;
        return 0;
    }
    case GF_OPT_FUZZ:
        if (gf_knob_set(&cli_run.knobs, arg, err, sizeof(err)) < 0) {
            fprintf(stderr, "vmbusd-guestfuzz: --fuzz: %s\n", err);
            return -1;
        }
        return 0;
    case GF_OPT_FUZZ_CONFIG:
        if (gf_knobs_load(&cli_run.knobs, arg, err, sizeof(err)) < 0) {
            fprintf(stderr, "vmbusd-guestfuzz: --fuzz-config: %s\n", err);
            return -1;
        }
        return 0;
    case GF_OPT_TRANSCRIPT_DIR:
        if (snprintf(cli_run.transcript_dir, sizeof(cli_run.transcript_dir), "%s", arg) >=
            (int)sizeof(cli_run.transcript_dir)) {
            fprintf(stderr, "vmbusd-guestfuzz: --transcript-dir too long\n");
            return -1;
        }
        return 0;
    case GF_OPT_REPLAY:
        replay_path = arg;
        return 0;
    }
    return 1;
}

int gf_cli_finish(void)
{
    ensure_knobs();
    if (replay_path) {
        struct gf_tr_header h;
        struct gf_mutation *m;
        int n = gf_tr_load_mutations(replay_path, &h, &m);
        if (n < 0) {
            fprintf(stderr, "vmbusd-guestfuzz: --replay %s: %s\n", replay_path,
                    n == -EINVAL ? "not a transcript, or corrupt" : strerror(-n));
            return -1;
        }
        cli_run.mode = GF_MODE_REPLAY;
        cli_run.replay = m;
        cli_run.nreplay = (size_t)n;
        cli_run.seed = h.seed;
        snprintf(cli_run.replay_path, sizeof(cli_run.replay_path), "%s", replay_path);
    } else if (!seed_given) {
        uint64_t s = 0;
        if (getrandom(&s, sizeof(s), 0) != (ssize_t)sizeof(s)) {
            fprintf(stderr, "vmbusd-guestfuzz: getrandom failed; give --seed\n");
            return -1;
        }
        cli_run.seed = s;
    }
    gf_run_init(&cli_run);
    return 0;
}

void gf_cli_usage(FILE *out)
{
    fprintf(out,
            "\n"
            "vmbusd-guestfuzz only (docs/fuzzing-guest-drivers.md): every host->guest action\n"
            "may be corrupted on purpose, to fuzz the guest's VMBus drivers.\n"
            "  --seed N              seed of the run (default random; always printed)\n"
            "  --fuzz KEY=VALUE      one knob (p=, p.SLOT=, w.FAMILY=, after=, max=, class=...)\n"
            "  --fuzz-config FILE    knobs, one KEY=VALUE a line\n"
            "  --transcript-dir DIR  where the per-VM transcripts go (default .; \"\": none)\n"
            "  --replay FILE         apply FILE's mutations at their keys, nothing random\n");
}
