/* SPDX-License-Identifier: MIT */
/*
 * vmbus-fuzz-minimize: shrink a crashing transcript to the fewest
 * mutations that still crash (docs/fuzzing-guest-drivers.md), or print a
 * transcript (--dump).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/guid.h"
#include "guestfuzz/minimize.h"
#include "guestfuzz/transcript.h"

struct job {
    const struct gf_tr_header *h;
    const struct gf_mutation *all;
    char **cmd;     /* after "--" */
    int ncmd;
    char cand[4200]; /* OUT + ".candidate" */
    bool quiet;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: vmbus-fuzz-minimize [-o OUT] [-q] TRANSCRIPT -- CMD [ARG...]\n"
            "       vmbus-fuzz-minimize --dump TRANSCRIPT\n"
            "Shrink TRANSCRIPT (written by vmbusd-guestfuzz) to the fewest mutations that\n"
            "still crash.  CMD runs once per candidate; every {} in its arguments is the\n"
            "candidate transcript's path (also in $VMBUS_FUZZ_TRANSCRIPT).  CMD exits 0 if\n"
            "the candidate still crashes the guest, anything else if not.\n"
            "  -o, --output OUT   result (default TRANSCRIPT.min)\n"
            "  -q, --quiet        no progress lines\n"
            "      --dump         print the records of TRANSCRIPT and exit\n"
            "Exit: 0 minimized, 2 the full transcript does not crash, 1 error.\n");
}

/* Run CMD on a candidate: 1 crash, 0 no crash, < 0 could not run. */
static int run_cmd(struct job *j)
{
    char **argv = calloc((size_t)j->ncmd + 1, sizeof(char *));
    if (!argv)
        return -ENOMEM;
    for (int i = 0; i < j->ncmd; i++) {
        const char *a = j->cmd[i];
        const char *p = strstr(a, "{}");
        if (!p) {
            argv[i] = strdup(a);
        } else {
            /* every {} replaced */
            size_t cnt = 0;
            for (const char *q = a; (q = strstr(q, "{}")); q += 2)
                cnt++;
            size_t len = strlen(a) + cnt * strlen(j->cand) + 1;
            char *s = malloc(len), *d = s;
            if (s) {
                for (const char *q = a; *q;) {
                    if (q[0] == '{' && q[1] == '}') {
                        d = stpcpy(d, j->cand);
                        q += 2;
                    } else {
                        *d++ = *q++;
                    }
                }
                *d = 0;
            }
            argv[i] = s;
        }
        if (!argv[i]) {
            for (int k = 0; k < i; k++)
                free(argv[k]);
            free(argv);
            return -ENOMEM;
        }
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setenv("VMBUS_FUZZ_TRANSCRIPT", j->cand, 1);
        execvp(argv[0], argv);
        fprintf(stderr, "vmbus-fuzz-minimize: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    for (int i = 0; i < j->ncmd; i++)
        free(argv[i]);
    free(argv);
    if (pid < 0)
        return -errno;
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -errno;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        return -ENOENT;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static int oracle(const size_t *idx, size_t n, void *arg)
{
    struct job *j = arg;
    struct gf_mutation *sub = malloc((n ? n : 1) * sizeof(*sub));
    if (!sub)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        sub[i] = j->all[idx[i]];
    int ret = gf_tr_save_mutations(j->cand, j->h, sub, n);
    free(sub);
    if (ret < 0)
        return ret;
    ret = run_cmd(j);
    if (!j->quiet && ret >= 0)
        fprintf(stderr, "vmbus-fuzz-minimize: %zu mutations: %s\n", n,
                ret ? "crash" : "no crash");
    return ret;
}

static int dump(const char *path)
{
    struct gf_tr_header h;
    struct gf_tr_reader *r = gf_tr_open(path, &h);
    if (!r) {
        fprintf(stderr, "vmbus-fuzz-minimize: %s: %s\n", path,
                errno == EINVAL ? "not a transcript" : strerror(errno));
        return 1;
    }
    printf("transcript %s: seed 0x%016llx partition %u%s\n", path, (unsigned long long)h.seed,
           h.partition_id, h.flags & GF_TR_REPLAYED ? " (replay)" : "");
    struct gf_tr_record rec;
    int ret;
    static const char *const names[] = {"?", "vm", "guest-msg", "guest-pkt", "host", "mut", "note"};
    while ((ret = gf_tr_next(r, &rec)) == 1) {
        printf("%-9s %5u bytes", names[rec.type], rec.len);
        if (rec.type == GF_REC_VM || rec.type == GF_REC_NOTE) {
            printf("  %.*s", (int)rec.len, (const char *)rec.data);
        } else if (rec.type == GF_REC_GUEST_MSG && rec.len >= 4) {
            uint32_t t;
            memcpy(&t, rec.data, 4);
            printf("  type %u", t);
        } else if ((rec.type == GF_REC_HOST || rec.type == GF_REC_MUT) &&
                   rec.len >= sizeof(struct gf_key)) {
            struct gf_key k;
            memcpy(&k, rec.data, sizeof(k));
            char cls[GUID_STR_LEN];
            guid_format(&k.class_id, cls);
            printf("  %s after %s #%u, n %u, class %s", gf_slot_name(gf_slot_of(&k)),
                   k.trig_type == GF_TRIG_PKT ? "guest-pkt"
                   : k.trig_type < CHANNELMSG_COUNT ? gf_slot_name(k.trig_type)
                                                    : "?",
                   k.trig_k, k.n, cls);
            struct gf_mutation m;
            if (rec.type == GF_REC_MUT && gf_tr_decode_mut(rec.data, rec.len, &m))
                printf(": %s by %s, len %u, param %u, %u patches", gf_op_name(m.op),
                       gf_mutator_name(m.mutator), m.new_len, m.param, m.npatch);
            else if (rec.type == GF_REC_HOST && rec.len >= sizeof(k) + 4) {
                uint32_t op;
                memcpy(&op, rec.data + sizeof(k), 4);
                printf(": %s", gf_op_name(op));
            }
        }
        printf("\n");
    }
    gf_tr_close_reader(r);
    if (ret < 0) {
        fprintf(stderr, "vmbus-fuzz-minimize: %s: corrupt record\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, 'q'},
        {"dump", no_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {0},
    };
    const char *outp = NULL;
    bool quiet = false, want_dump = false;
    int c;
    while ((c = getopt_long(argc, argv, "+o:qh", opts, NULL)) != -1) {
        switch (c) {
        case 'o': outp = optarg; break;
        case 'q': quiet = true; break;
        case 'D': want_dump = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 1;
        }
    }
    if (want_dump) {
        if (optind + 1 != argc) {
            usage(stderr);
            return 1;
        }
        return dump(argv[optind]);
    }
    if (optind >= argc) {
        usage(stderr);
        return 1;
    }
    const char *in = argv[optind++];
    if (optind < argc && !strcmp(argv[optind], "--"))
        optind++;
    if (optind >= argc) {
        fprintf(stderr, "vmbus-fuzz-minimize: no command after --\n");
        return 1;
    }
    char defout[4000];
    if (strlen(in) > sizeof(defout) - 8 || (outp && strlen(outp) > sizeof(defout) - 8)) {
        fprintf(stderr, "vmbus-fuzz-minimize: path too long\n");
        return 1;
    }
    if (!outp) {
        snprintf(defout, sizeof(defout), "%s.min", in);
        outp = defout;
    }
    struct gf_tr_header h;
    struct gf_mutation *all;
    int n = gf_tr_load_mutations(in, &h, &all);
    if (n < 0) {
        fprintf(stderr, "vmbus-fuzz-minimize: %s: %s\n", in,
                n == -EINVAL ? "not a transcript, or corrupt" : strerror(-n));
        return 1;
    }
    struct job j = {.h = &h, .all = all, .cmd = argv + optind, .ncmd = argc - optind,
                    .quiet = quiet};
    snprintf(j.cand, sizeof(j.cand), "%s.candidate", outp);

    /* The full list must crash, or there is nothing to minimize. */
    size_t *idx = malloc(((size_t)n ? (size_t)n : 1) * sizeof(*idx));
    if (!idx) {
        free(all);
        return 1;
    }
    for (int i = 0; i < n; i++)
        idx[i] = (size_t)i;
    int full = oracle(idx, (size_t)n, &j);
    if (full <= 0) {
        if (full == 0)
            fprintf(stderr, "vmbus-fuzz-minimize: %s does not crash with all %d mutations\n", in,
                    n);
        else
            fprintf(stderr, "vmbus-fuzz-minimize: cannot test: %s\n", strerror(-full));
        unlink(j.cand);
        free(idx);
        free(all);
        return full == 0 ? 2 : 1;
    }
    unsigned runs = 0;
    long kept = gf_minimize((size_t)n, oracle, &j, idx, &runs);
    unlink(j.cand);
    if (kept < 0) {
        fprintf(stderr, "vmbus-fuzz-minimize: stopped: %s\n", strerror((int)-kept));
        free(idx);
        free(all);
        return 1;
    }
    struct gf_mutation *keep = malloc(((size_t)kept ? (size_t)kept : 1) * sizeof(*keep));
    for (long i = 0; keep && i < kept; i++)
        keep[i] = all[idx[i]];
    int ret = keep ? gf_tr_save_mutations(outp, &h, keep, (size_t)kept) : -ENOMEM;
    if (ret < 0)
        fprintf(stderr, "vmbus-fuzz-minimize: %s: %s\n", outp, strerror(-ret));
    else
        printf("vmbus-fuzz-minimize: %d -> %ld mutations in %u runs: %s\n", n, kept, runs + 1,
               outp);
    free(keep);
    free(idx);
    free(all);
    return ret < 0 ? 1 : 0;
}
