/* SPDX-License-Identifier: MIT */
/* Per-VM fuzzing engine: keys, decisions, transcript (engine.h). */
#include "guestfuzz/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/guid.h"
#include "common/log.h"
#include "guestfuzz/transcript.h"

#define MAX_CLASSES 64 /* distinct channel classes tracked per VM */
#define MAX_COUNTERS 256

static struct gf_run g_run;
static bool g_run_set;

void gf_run_init(const struct gf_run *run)
{
    gf_run_reset();
    g_run = *run;
    g_run_set = true;
    /* Printed at error level so no --log-level hides it. */
    if (run->mode == GF_MODE_REPLAY)
        log_err("vmbusd-guestfuzz: WARNING: GUEST-DRIVER FUZZING BUILD, host->guest traffic is "
                "corrupted on purpose; never run it for real VMs (mode=replay mutations=%zu "
                "replay=%s)",
                run->nreplay, run->replay_path[0] ? run->replay_path : "?");
    else
        log_err("vmbusd-guestfuzz: WARNING: GUEST-DRIVER FUZZING BUILD, host->guest traffic is "
                "corrupted on purpose; never run it for real VMs (mode=fuzz seed=0x%016llx)",
                (unsigned long long)run->seed);
}

const struct gf_run *gf_run_get(void) { return g_run_set ? &g_run : NULL; }

void gf_run_reset(void)
{
    if (g_run_set)
        free(g_run.replay);
    memset(&g_run, 0, sizeof(g_run));
    g_run_set = false;
}

struct counter {
    uint8_t kind;
    uint16_t subtype;
    struct hv_guid cls;
    uint16_t trig_type;
    uint32_t trig_k, n;
};

struct class_count {
    struct hv_guid cls;
    uint32_t pkts;
};

struct gf_vm {
    pthread_mutex_t lock;
    uint32_t id;
    char name[64];
    uint64_t seed;
    struct gf_rng rng;
    struct gf_tr_writer *tr;
    char path[640];

    uint32_t msg_count[CHANNELMSG_COUNT];
    uint16_t last_type; /* last guest channel message type, 0: none */
    uint32_t exchanges; /* guest messages + packets */
    struct class_count classes[MAX_CLASSES];
    unsigned nclasses;
    struct counter ctr[MAX_COUNTERS];
    unsigned nctr, next_evict;
    unsigned nmut;
    bool *replay_used;
};

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

struct gf_vm *gf_vm_new(uint32_t partition_id, const char *name)
{
    const struct gf_run *run = gf_run_get();
    if (!run)
        return NULL;
    if (run->knobs.vm[0] && strcmp(run->knobs.vm, name ? name : "")) {
        log_err("partition %s (id %u): not fuzzed (the run fuzzes only VM %s)", name,
                partition_id, run->knobs.vm);
        return NULL;
    }
    struct gf_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return NULL;
    pthread_mutex_init(&vm->lock, NULL);
    vm->id = partition_id;
    snprintf(vm->name, sizeof(vm->name), "%s", name ? name : "vm");
    /* Per VM so that VMs connecting in any order get their own stream; the
     * name, not the id, so a VM's stream survives a reconnect. */
    uint64_t s = run->seed ^ fnv1a(vm->name);
    vm->seed = gf_splitmix64(&s);
    gf_rng_seed(&vm->rng, vm->seed);
    if (run->nreplay) {
        vm->replay_used = calloc(run->nreplay, sizeof(bool));
        if (!vm->replay_used) {
            free(vm);
            return NULL;
        }
    }
    if (run->transcript_dir[0]) {
        char safe[64];
        size_t i;
        for (i = 0; vm->name[i] && i < sizeof(safe) - 1; i++) {
            char c = vm->name[i];
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_' || c == '.';
            safe[i] = ok && !(i == 0 && c == '.') ? c : '_';
        }
        safe[i] = 0;
        struct gf_tr_header h = {.seed = run->mode == GF_MODE_REPLAY ? 0 : run->seed,
                                 .flags = run->mode == GF_MODE_REPLAY ? GF_TR_REPLAYED : 0,
                                 .partition_id = partition_id};
        /* Partition ids restart with every daemon: never overwrite an
         * earlier run's transcript (it may be the reproducer being
         * replayed), take the next free ".N" instead. */
        for (int n = 0; n < 1000 && !vm->tr; n++) {
            if (n == 0)
                snprintf(vm->path, sizeof(vm->path), "%s/%s-%u.vfz", run->transcript_dir, safe,
                         partition_id);
            else
                snprintf(vm->path, sizeof(vm->path), "%s/%s-%u.%d.vfz", run->transcript_dir,
                         safe, partition_id, n);
            vm->tr = gf_tr_create_excl(vm->path, &h);
            if (!vm->tr && errno != EEXIST)
                break;
        }
        if (!vm->tr) {
            log_err("partition %s (id %u): cannot create transcript %s: %s", vm->name,
                    partition_id, vm->path, strerror(errno));
            vm->path[0] = 0;
        } else {
            gf_tr_write(vm->tr, GF_REC_VM, vm->name, strlen(vm->name), NULL, 0, NULL, 0);
            char note[128];
            int l = snprintf(note, sizeof(note), "mode=%s seed=0x%016llx vm_seed=0x%016llx",
                             run->mode == GF_MODE_REPLAY ? "replay" : "fuzz",
                             (unsigned long long)run->seed, (unsigned long long)vm->seed);
            gf_tr_write(vm->tr, GF_REC_NOTE, note, (size_t)l, NULL, 0, NULL, 0);
        }
    }
    log_err("partition %s (id %u): WARNING: FUZZING this VM: vm_seed=0x%016llx transcript=%s",
            vm->name, partition_id, (unsigned long long)vm->seed,
            vm->path[0] ? vm->path : "(none)");
    return vm;
}

void gf_vm_free(struct gf_vm *vm)
{
    if (!vm)
        return;
    if (vm->tr && gf_tr_close(vm->tr) < 0)
        log_err("partition %s: transcript %s is incomplete (write error)", vm->name, vm->path);
    log_info("partition %s: fuzzing ended after %u mutations", vm->name, vm->nmut);
    pthread_mutex_destroy(&vm->lock);
    free(vm->replay_used);
    free(vm);
}

uint64_t gf_vm_seed(const struct gf_vm *vm) { return vm->seed; }
const char *gf_vm_transcript_path(const struct gf_vm *vm) { return vm->path; }

unsigned gf_vm_mutations(const struct gf_vm *vm)
{
    struct gf_vm *v = (struct gf_vm *)vm;
    pthread_mutex_lock(&v->lock);
    unsigned n = v->nmut;
    pthread_mutex_unlock(&v->lock);
    return n;
}

/* ------------------------------------------------------------------ */
/* Guest events                                                        */

void gf_vm_guest_msg(struct gf_vm *vm, const void *msg, size_t len)
{
    if (!vm)
        return;
    uint32_t type = 0;
    if (len >= 4)
        memcpy(&type, msg, 4);
    /* Only types a guest may send count as triggers and exchanges; junk
     * types do not move the keys (a guest fuzzing us back should not shift
     * them). */
    static const bool guest_type[CHANNELMSG_COUNT] = {
        [CHANNELMSG_REQUESTOFFERS] = true,  [CHANNELMSG_OPENCHANNEL] = true,
        [CHANNELMSG_CLOSECHANNEL] = true,   [CHANNELMSG_GPADL_HEADER] = true,
        [CHANNELMSG_GPADL_BODY] = true,     [CHANNELMSG_GPADL_TEARDOWN] = true,
        [CHANNELMSG_RELID_RELEASED] = true, [CHANNELMSG_INITIATE_CONTACT] = true,
        [CHANNELMSG_UNLOAD] = true,         [CHANNELMSG_TL_CONNECT_REQUEST] = true,
        [CHANNELMSG_MODIFYCHANNEL] = true,
    };
    pthread_mutex_lock(&vm->lock);
    if (type < CHANNELMSG_COUNT && guest_type[type]) {
        vm->msg_count[type]++;
        vm->last_type = (uint16_t)type;
        vm->exchanges++; /* junk does not count towards the knob after= */
    }
    if (vm->tr)
        gf_tr_write(vm->tr, GF_REC_GUEST_MSG, msg, len, NULL, 0, NULL, 0);
    pthread_mutex_unlock(&vm->lock);
}

static struct class_count *class_slot(struct gf_vm *vm, const struct hv_guid *cls)
{
    for (unsigned i = 0; i < vm->nclasses; i++)
        if (guid_equal(&vm->classes[i].cls, cls))
            return &vm->classes[i];
    if (vm->nclasses == MAX_CLASSES)
        return NULL;
    struct class_count *c = &vm->classes[vm->nclasses++];
    c->cls = *cls;
    c->pkts = 0;
    return c;
}

void gf_vm_guest_pkt(struct gf_vm *vm, const struct hv_guid *cls, uint32_t relid,
                     const void *pkt, size_t len)
{
    if (!vm)
        return;
    pthread_mutex_lock(&vm->lock);
    struct class_count *c = class_slot(vm, cls);
    if (c)
        c->pkts++;
    vm->exchanges++;
    if (vm->tr)
        gf_tr_write(vm->tr, GF_REC_GUEST_PKT, cls, sizeof(*cls), &relid, sizeof(relid), pkt, len);
    pthread_mutex_unlock(&vm->lock);
}

/* ------------------------------------------------------------------ */
/* Keys                                                                */

static bool is_zero_guid(const struct hv_guid *g)
{
    static const struct hv_guid zero;
    return guid_equal(g, &zero);
}

/* Fill the trigger and n of key (kind, subtype, class set). */
static void make_key(struct gf_vm *vm, struct gf_key *key)
{
    bool channel_scoped = key->kind != GF_K_MSG && !(key->kind == GF_K_SIGNAL && key->subtype);
    if (channel_scoped) {
        /* A channel's actions follow that class's own guest packets, not
         * what other channels' drivers happen to be doing meanwhile. */
        struct class_count *c = class_slot(vm, &key->class_id);
        key->trig_type = GF_TRIG_PKT;
        key->trig_k = c ? c->pkts : 0;
    } else {
        key->trig_type = vm->last_type;
        key->trig_k = vm->last_type ? vm->msg_count[vm->last_type] : 0;
    }
    struct counter *ctr = NULL;
    for (unsigned i = 0; i < vm->nctr; i++) {
        struct counter *c = &vm->ctr[i];
        if (c->kind == key->kind && c->subtype == key->subtype &&
            guid_equal(&c->cls, &key->class_id)) {
            ctr = c;
            break;
        }
    }
    if (!ctr) {
        unsigned i = vm->nctr < MAX_COUNTERS ? vm->nctr++ : (vm->next_evict++ % MAX_COUNTERS);
        ctr = &vm->ctr[i];
        *ctr = (struct counter){.kind = key->kind, .subtype = key->subtype,
                                .cls = key->class_id};
    }
    if (ctr->trig_type != key->trig_type || ctr->trig_k != key->trig_k) {
        ctr->trig_type = key->trig_type;
        ctr->trig_k = key->trig_k;
        ctr->n = 0;
    }
    key->n = ++ctr->n;
}

static bool class_allowed(const struct gf_knobs *k, const struct gf_key *key)
{
    if (!k->nclasses)
        return true;
    if (is_zero_guid(&key->class_id))
        return k->msgs_with_classes;
    for (unsigned i = 0; i < k->nclasses; i++)
        if (guid_equal(&k->classes[i], &key->class_id))
            return true;
    return false;
}

/* A replayed mutation fires at its key, or at the first action of the same
 * kind after the guest event it named (a different timing may have merged
 * or split the guest's batches around it). */
static bool replay_matches(const struct gf_key *r, const struct gf_key *cur)
{
    if (r->kind != cur->kind || r->subtype != cur->subtype ||
        !guid_equal(&r->class_id, &cur->class_id) || r->trig_type != cur->trig_type)
        return false;
    return cur->trig_k > r->trig_k || (cur->trig_k == r->trig_k && cur->n >= r->n);
}

enum gf_op gf_vm_decide(struct gf_vm *vm, struct gf_key *key, const struct gf_ctx *ctx,
                        const void *buf, size_t len, size_t cap, struct gf_mutation *m)
{
    memset(m, 0, sizeof(*m));
    if (!vm)
        return GF_OP_NONE;
    const struct gf_run *run = gf_run_get();
    pthread_mutex_lock(&vm->lock);
    make_key(vm, key);
    m->key = *key;
    bool have = false;
    if (run && run->mode == GF_MODE_REPLAY) {
        for (size_t i = 0; i < run->nreplay; i++) {
            if (!vm->replay_used[i] && replay_matches(&run->replay[i].key, key)) {
                vm->replay_used[i] = true;
                *m = run->replay[i];
                m->key = *key; /* recorded where it fired */
                have = true;
                break;
            }
        }
    } else if (run) {
        const struct gf_knobs *k = &run->knobs;
        unsigned slot = gf_slot_of(key);
        if (slot < GF_S_COUNT && class_allowed(k, key) && vm->exchanges >= k->after &&
            (!k->max_mutations || vm->nmut < k->max_mutations) &&
            gf_rng_chance(&vm->rng, k->prob[slot]))
            have = gf_mutate(&vm->rng, k, ctx, key, buf, len, cap, m);
    }
    if (have && m->op != GF_OP_NONE) {
        vm->nmut++;
        if (vm->tr)
            gf_tr_write_mut(vm->tr, m);
        char cls[GUID_STR_LEN];
        guid_format(&key->class_id, cls);
        log_info("partition %s: fuzz #%u: %s (class %s) after %s #%u, n %u: %s by %s, "
                 "len %u, param %u",
                 vm->name, vm->nmut, gf_slot_name(gf_slot_of(key)), cls,
                 key->trig_type == GF_TRIG_PKT ? "guest packet"
                                               : gf_slot_name(GF_S_MSG0 + key->trig_type),
                 key->trig_k, key->n, gf_op_name(m->op), gf_mutator_name(m->mutator),
                 m->new_len, m->param);
    } else {
        memset(m, 0, sizeof(*m));
        m->key = *key;
    }
    enum gf_op op = (enum gf_op)m->op;
    pthread_mutex_unlock(&vm->lock);
    return op;
}

void gf_vm_host_sent(struct gf_vm *vm, const struct gf_key *key, unsigned op, const void *buf,
                     size_t len)
{
    if (!vm || !vm->tr)
        return;
    uint32_t o = op;
    gf_tr_write(vm->tr, GF_REC_HOST, key, sizeof(*key), &o, sizeof(o), buf, len);
}
