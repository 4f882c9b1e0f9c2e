/* SPDX-License-Identifier: MIT */
/*
 * What the sim tests of vmbusd-guestfuzz share: a private directory for the
 * transcripts the fuzzed daemon writes (one per test binary, made and
 * removed around the group), starting a seeded run into it, and reading a
 * partition's transcript back.
 */
#ifndef VMBUSD_TESTS_SIM_GF_SIM_H
#define VMBUSD_TESTS_SIM_GF_SIM_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "guestfuzz/engine.h"
#include "guestfuzz/transcript.h"

static char gf_tdir[] = "/tmp/vmbusd-gf-sim-XXXXXX";

/* Group setup and teardown: the transcript directory (kept with GF_KEEP=1,
 * for a look at what a failing run did). */
static inline int gf_tdir_setup(void **state)
{
    (void)state;
    return mkdtemp(gf_tdir) ? 0 : -1;
}

static inline int gf_tdir_teardown(void **state)
{
    (void)state;
    gf_run_reset();
    if (getenv("GF_KEEP"))
        return 0;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", gf_tdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Remove the transcripts so far: the next run's partition 1 writes
 * VM-1.vfz again rather than VM-1.1.vfz. */
static inline int gf_tdir_clear(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -f %s/*.vfz", gf_tdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The newest transcript of partition `id` of VM `vm` (a later daemon's
 * partition with the same id does not overwrite an earlier one's: it gets
 * a ".N" suffix). */
static inline void gf_transcript_path(char *out, size_t n, const char *vm, uint32_t id)
{
    snprintf(out, n, "%s/%s-%u.vfz", gf_tdir, vm, id);
    for (int i = 1; i < 100; i++) {
        char next[600];
        snprintf(next, sizeof(next), "%s/%s-%u.%d.vfz", gf_tdir, vm, id, i);
        if (access(next, F_OK) != 0)
            return;
        snprintf(out, n, "%s", next);
    }
}

/* The mutations partition `id` of `vm` recorded, into *m (free it); their
 * count, or < 0 when there is no such transcript. */
static inline int gf_partition_mutations(const char *vm, uint32_t id, struct gf_mutation **m)
{
    char path[600];
    gf_transcript_path(path, sizeof(path), vm, id);
    struct gf_tr_header h;
    *m = NULL;
    return gf_tr_load_mutations(path, &h, m);
}

/* Arm run (mode, seed or replay already set in it) with the default knobs,
 * then knobs (NULL-terminated, may be NULL), writing into gf_tdir; -1 if a
 * knob is refused. */
static inline int gf_sim_run_init(struct gf_run *run, const char *const *knobs)
{
    gf_knobs_default(&run->knobs);
    char err[256];
    for (; knobs && *knobs; knobs++)
        if (gf_knob_set(&run->knobs, *knobs, err, sizeof(err)) != 0) {
            fprintf(stderr, "knob %s: %s\n", *knobs, err);
            return -1;
        }
    snprintf(run->transcript_dir, sizeof(run->transcript_dir), "%s", gf_tdir);
    gf_run_init(run);
    return 0;
}

#endif
