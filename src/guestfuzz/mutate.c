/* SPDX-License-Identifier: MIT */
/* Mutations of host->guest actions: edits, knobs, mutators (mutate.h). */
#include "guestfuzz/mutate.h"
#include "guestfuzz/mutate_priv.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/guid.h"
#include "vmbusd/hv_guids.h"
#include "vsp/ic/ic.h" /* the IC wire layout the integration-service VSPs send */

/* ------------------------------------------------------------------ */
/* Edits                                                               */

bool gf_mut_add_patch(struct gf_mutation *m, uint32_t off, const void *bytes, uint32_t len)
{
    unsigned used = 0;
    for (unsigned i = 0; i < m->npatch; i++)
        used += m->patch[i].len;
    if (m->npatch == GF_MAX_PATCHES || len > GF_MAX_PATCH_BYTES - used || off > UINT16_MAX)
        return false;
    m->patch[m->npatch++] = (struct gf_patch){.off = (uint16_t)off, .len = (uint16_t)len};
    memcpy(m->bytes + used, bytes, len);
    return true;
}

size_t gf_edit_apply(const struct gf_mutation *m, const void *in, size_t len, void *out,
                     size_t cap)
{
    size_t n = m->new_len < cap ? m->new_len : cap;
    size_t keep = len < n ? len : n;
    memmove(out, in, keep);
    memset((uint8_t *)out + keep, 0, n - keep);
    unsigned used = 0;
    for (unsigned i = 0; i < m->npatch && i < GF_MAX_PATCHES; i++) {
        const struct gf_patch *p = &m->patch[i];
        if (used + p->len > GF_MAX_PATCH_BYTES)
            break;
        if (p->off < n) {
            size_t l = p->len < n - p->off ? p->len : n - p->off;
            memcpy((uint8_t *)out + p->off, m->bytes + used, l);
        }
        used += p->len;
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* Knobs                                                               */

static const char *const msg_names[CHANNELMSG_COUNT] = {
    [CHANNELMSG_INVALID] = "invalid",
    [CHANNELMSG_OFFERCHANNEL] = "offerchannel",
    [CHANNELMSG_RESCIND_CHANNELOFFER] = "rescind_channeloffer",
    [CHANNELMSG_REQUESTOFFERS] = "requestoffers",
    [CHANNELMSG_ALLOFFERS_DELIVERED] = "alloffers_delivered",
    [CHANNELMSG_OPENCHANNEL] = "openchannel",
    [CHANNELMSG_OPENCHANNEL_RESULT] = "openchannel_result",
    [CHANNELMSG_CLOSECHANNEL] = "closechannel",
    [CHANNELMSG_GPADL_HEADER] = "gpadl_header",
    [CHANNELMSG_GPADL_BODY] = "gpadl_body",
    [CHANNELMSG_GPADL_CREATED] = "gpadl_created",
    [CHANNELMSG_GPADL_TEARDOWN] = "gpadl_teardown",
    [CHANNELMSG_GPADL_TORNDOWN] = "gpadl_torndown",
    [CHANNELMSG_RELID_RELEASED] = "relid_released",
    [CHANNELMSG_INITIATE_CONTACT] = "initiate_contact",
    [CHANNELMSG_VERSION_RESPONSE] = "version_response",
    [CHANNELMSG_UNLOAD] = "unload",
    [CHANNELMSG_UNLOAD_RESPONSE] = "unload_response",
    [CHANNELMSG_18] = "msg18",
    [CHANNELMSG_19] = "msg19",
    [CHANNELMSG_20] = "msg20",
    [CHANNELMSG_TL_CONNECT_REQUEST] = "tl_connect_request",
    [CHANNELMSG_MODIFYCHANNEL] = "modifychannel",
    [CHANNELMSG_TL_CONNECT_RESULT] = "tl_connect_result",
    [CHANNELMSG_MODIFYCHANNEL_RESPONSE] = "modifychannel_response",
};

static const char *const ring_names[GF_RF_COUNT] = {
    "ring_write_index", "ring_read_index", "ring_interrupt_mask", "ring_pending_send_sz"};

static const char *const family_names[GF_F_COUNT] = {
    "flip", "struct", "drop", "dup", "reorder", "delay", "rescind", "storm"};

const char *gf_slot_name(unsigned slot)
{
    if (slot < CHANNELMSG_COUNT)
        return msg_names[slot];
    if (slot == GF_S_PKT)
        return "packet";
    if (slot >= GF_S_RING0 && slot < GF_S_RING0 + GF_RF_COUNT)
        return ring_names[slot - GF_S_RING0];
    if (slot == GF_S_SIGNAL)
        return "signal";
    if (slot == GF_S_SINT)
        return "sint";
    return "?";
}

unsigned gf_slot_of(const struct gf_key *key)
{
    switch (key->kind) {
    case GF_K_MSG: return key->subtype < CHANNELMSG_COUNT ? GF_S_MSG0 + key->subtype : GF_S_COUNT;
    case GF_K_PKT: return GF_S_PKT;
    case GF_K_RING: return key->subtype < GF_RF_COUNT ? GF_S_RING0 + key->subtype : GF_S_COUNT;
    case GF_K_SIGNAL: return key->subtype ? GF_S_SINT : GF_S_SIGNAL;
    }
    return GF_S_COUNT;
}

const char *gf_op_name(unsigned op)
{
    static const char *const n[GF_OP_COUNT] = {"none",    "patch",   "drop",  "dup",  "delay",
                                               "reorder", "rescind", "storm", "value"};
    return op < GF_OP_COUNT ? n[op] : "?";
}

const char *gf_mutator_name(unsigned m)
{
    static const char *const n[] = {"none", "flip", "field", "length", "relid",
                                    "desc", "order", "index", "signal", "vstor", "nvsp"};
    return m < ARRAY_LEN(n) ? n[m] : "?";
}

void gf_knobs_default(struct gf_knobs *k)
{
    memset(k, 0, sizeof(*k));
    for (unsigned i = 0; i < GF_S_COUNT; i++)
        k->prob[i] = 0.02;
    static const unsigned w[GF_F_COUNT] = {
        [GF_F_FLIP] = 2, [GF_F_STRUCT] = 4, [GF_F_DROP] = 1,    [GF_F_DUP] = 1,
        [GF_F_REORDER] = 1, [GF_F_DELAY] = 0, [GF_F_RESCIND] = 1, [GF_F_STORM] = 1};
    memcpy(k->weight, w, sizeof(w));
    k->delay_max_ms = 6000;
    k->storm_max = 256;
}

static int fail(char *err, size_t errlen, const char *fmt, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, what);
    return -EINVAL;
}

static bool parse_prob(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !(v >= 0 && v <= 1))
        return false;
    *out = v;
    return true;
}

static bool parse_u32(const char *s, uint32_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (end == s || *end || errno || v > UINT32_MAX || *s == '-')
        return false;
    *out = (uint32_t)v;
    return true;
}

static int parse_class(const char *s, struct hv_guid *g)
{
    static const struct {
        const char *name, *guid;
    } named[] = {
        {"heartbeat", HV_CLASS_HEARTBEAT}, {"shutdown", HV_CLASS_SHUTDOWN},
        {"timesync", HV_CLASS_TIMESYNC},   {"kvp", HV_CLASS_KVP},
        {"vss", HV_CLASS_VSS},             {"fcopy", HV_CLASS_FCOPY},
        {"scsi", HV_CLASS_SCSI},           {"netvsc", HV_CLASS_NETVSC},
        {"echo", HV_CLASS_ECHO},
    };
    for (size_t i = 0; i < ARRAY_LEN(named); i++)
        if (!strcmp(s, named[i].name))
            return guid_parse(named[i].guid, g);
    return guid_parse(s, g);
}

int gf_knob_set(struct gf_knobs *k, const char *kv, char *err, size_t errlen)
{
    const char *eq = strchr(kv, '=');
    if (!eq || eq == kv)
        return fail(err, errlen, "knob '%s' is not KEY=VALUE", kv);
    char key[64];
    size_t kl = (size_t)(eq - kv);
    if (kl >= sizeof(key))
        return fail(err, errlen, "knob '%s': key too long", kv);
    memcpy(key, kv, kl);
    key[kl] = 0;
    const char *val = eq + 1;
    double p;
    uint32_t u;

    if (!strcmp(key, "p")) {
        if (!parse_prob(val, &p))
            return fail(err, errlen, "knob '%s': probability must be 0..1", kv);
        for (unsigned i = 0; i < GF_S_COUNT; i++)
            k->prob[i] = p;
        return 0;
    }
    if (!strncmp(key, "p.", 2)) {
        if (!parse_prob(val, &p))
            return fail(err, errlen, "knob '%s': probability must be 0..1", kv);
        if (!strcmp(key + 2, "msg")) {
            for (unsigned i = 0; i < CHANNELMSG_COUNT; i++)
                k->prob[GF_S_MSG0 + i] = p;
            return 0;
        }
        for (unsigned i = 0; i < GF_S_COUNT; i++) {
            if (!strcmp(key + 2, gf_slot_name(i))) {
                k->prob[i] = p;
                return 0;
            }
        }
        return fail(err, errlen, "knob '%s': unknown action slot", kv);
    }
    if (!strncmp(key, "w.", 2)) {
        if (!parse_u32(val, &u) || u > 1000)
            return fail(err, errlen, "knob '%s': weight must be 0..1000", kv);
        for (unsigned i = 0; i < GF_F_COUNT; i++) {
            if (!strcmp(key + 2, family_names[i])) {
                k->weight[i] = u;
                return 0;
            }
        }
        return fail(err, errlen, "knob '%s': unknown mutation family", kv);
    }
    if (!strcmp(key, "class")) {
        if (k->nclasses == GF_MAX_CLASSES)
            return fail(err, errlen, "knob '%s': too many classes", kv);
        if (parse_class(val, &k->classes[k->nclasses]) < 0)
            return fail(err, errlen, "knob '%s': not a class GUID or known class name", kv);
        k->nclasses++;
        return 0;
    }
    struct {
        const char *name;
        uint32_t *dst;
        uint32_t max;
    } nums[] = {
        {"after", &k->after, UINT32_MAX},
        {"max", &k->max_mutations, UINT32_MAX},
        {"delay_max_ms", &k->delay_max_ms, 600000},
        {"storm_max", &k->storm_max, 100000},
    };
    for (size_t i = 0; i < ARRAY_LEN(nums); i++) {
        if (!strcmp(key, nums[i].name)) {
            if (!parse_u32(val, &u) || u > nums[i].max)
                return fail(err, errlen, "knob '%s': value out of range", kv);
            *nums[i].dst = u;
            return 0;
        }
    }
    if (!strcmp(key, "vm")) {
        if (!*val || strlen(val) >= sizeof(k->vm))
            return fail(err, errlen, "knob '%s': VM name empty or too long", kv);
        snprintf(k->vm, sizeof(k->vm), "%s", val);
        return 0;
    }
    if (!strcmp(key, "msgs")) {
        if (strcmp(val, "0") && strcmp(val, "1"))
            return fail(err, errlen, "knob '%s': 0 or 1", kv);
        k->msgs_with_classes = val[0] == '1';
        return 0;
    }
    return fail(err, errlen, "unknown knob '%s'", kv);
}

int gf_knobs_load(struct gf_knobs *k, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    char line[512];
    int ret = 0, lineno = 0;
    while (ret == 0 && fgets(line, sizeof(line), f)) {
        lineno++;
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        size_t l = strlen(s);
        while (l && (s[l - 1] == '\n' || s[l - 1] == '\r' || s[l - 1] == ' ' || s[l - 1] == '\t'))
            s[--l] = 0;
        if (!*s || *s == '#')
            continue;
        char e[256];
        ret = gf_knob_set(k, s, e, sizeof(e));
        if (ret < 0 && err && errlen)
            snprintf(err, errlen, "%s:%d: %s", path, lineno, e);
    }
    fclose(f);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Edge values                                                         */

static const uint32_t edge_u32[] = {
    0,          1,          2,          7,          8,          0x7f,       0x80,
    0xff,       0x100,      0xfff,      0x1000,     0x1001,     0x3fff,     0x4000,
    0x7fff,     0x8000,     0xffff,     0x10000,    0x7ffffff8, 0x7fffffff, 0x80000000,
    0xfffffff8, 0xfffffffe, 0xffffffff,
};

uint32_t gf_pick_edge(struct gf_rng *rng, uint32_t cur, unsigned size)
{
    uint32_t v;
    switch (gf_rng_below(rng, 4)) {
    case 0: v = cur + 1; break;
    case 1: v = cur - 1; break;
    case 2: v = (uint32_t)gf_rng_next(rng); break;
    default: v = edge_u32[gf_rng_below(rng, ARRAY_LEN(edge_u32))]; break;
    }
    if (size == 1)
        return gf_rng_below(rng, 2) ? (uint8_t)v : (gf_rng_below(rng, 2) ? 0xff : 0x80);
    if (size == 2)
        return gf_rng_below(rng, 2) ? (uint16_t)v : (gf_rng_below(rng, 2) ? 0xffff : 0x8000);
    return v;
}

uint32_t gf_load_le(const uint8_t *p, unsigned size)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < size; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

void gf_patch_le(struct gf_mutation *m, uint32_t off, uint32_t v, unsigned size)
{
    uint8_t b[4];
    for (unsigned i = 0; i < size; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    gf_mut_add_patch(m, off, b, size);
}

void gf_begin_patch(struct gf_mutation *m, size_t len, enum gf_mutator which)
{
    m->op = GF_OP_PATCH;
    m->mutator = (uint8_t)which;
    m->npatch = 0;
    m->new_len = (uint32_t)len;
    m->param = 0;
}

/* ------------------------------------------------------------------ */
/* Blind flips                                                         */

void gf_mut_flip(struct gf_rng *rng, const void *buf, size_t len, struct gf_mutation *m)
{
    gf_begin_patch(m, len, GF_M_FLIP);
    if (len == 0)
        return;
    const uint8_t *b = buf;
    unsigned n = 1 + (unsigned)gf_rng_below(rng, 8);
    for (unsigned i = 0; i < n; i++) {
        uint32_t off = (uint32_t)gf_rng_below(rng, len < UINT16_MAX ? len : UINT16_MAX);
        uint8_t x = (uint8_t)(1u << gf_rng_below(rng, 8));
        if (gf_rng_below(rng, 4) == 0)
            x = (uint8_t)(gf_rng_next(rng) | 1);
        uint8_t v = b[off] ^ x;
        gf_mut_add_patch(m, off, &v, 1);
    }
}

/* ------------------------------------------------------------------ */
/* Channel messages                                                    */

enum fclass { F_INT, F_RELID, F_ID, F_STATUS, F_GUID, F_FLAGS, F_MSGTYPE };

struct field {
    uint8_t off, size, cls;
};

struct msg_layout {
    uint8_t size; /* what the guest expects */
    uint8_t nfields;
    struct field f[12];
};

#define OFFER_AT(f) (8 + offsetof(struct vmbus_channel_offer, f))
static const struct msg_layout layouts[CHANNELMSG_COUNT] = {
    [CHANNELMSG_OFFERCHANNEL] = {sizeof(struct vmbus_channel_offer_channel), 11, {
        {OFFER_AT(if_type), 16, F_GUID},
        {OFFER_AT(if_instance), 16, F_GUID},
        {OFFER_AT(chn_flags), 2, F_FLAGS},
        {OFFER_AT(mmio_megabytes), 2, F_INT},
        {OFFER_AT(u.pipe.pipe_mode), 4, F_INT},
        {OFFER_AT(sub_channel_index), 2, F_INT},
        {offsetof(struct vmbus_channel_offer_channel, child_relid), 4, F_RELID},
        {offsetof(struct vmbus_channel_offer_channel, monitorid), 1, F_INT},
        {offsetof(struct vmbus_channel_offer_channel, monitor_allocated), 1, F_FLAGS},
        {offsetof(struct vmbus_channel_offer_channel, is_dedicated_interrupt), 2, F_FLAGS},
        {offsetof(struct vmbus_channel_offer_channel, connection_id), 4, F_ID},
    }},
    [CHANNELMSG_RESCIND_CHANNELOFFER] = {sizeof(struct vmbus_channel_rescind_offer), 1, {
        {8, 4, F_RELID}}},
    [CHANNELMSG_ALLOFFERS_DELIVERED] = {8, 0, {{0}}},
    [CHANNELMSG_OPENCHANNEL_RESULT] = {sizeof(struct vmbus_channel_open_result), 3, {
        {8, 4, F_RELID}, {12, 4, F_ID}, {16, 4, F_STATUS}}},
    [CHANNELMSG_GPADL_CREATED] = {sizeof(struct vmbus_channel_gpadl_created), 3, {
        {8, 4, F_RELID}, {12, 4, F_ID}, {16, 4, F_STATUS}}},
    [CHANNELMSG_GPADL_TORNDOWN] = {sizeof(struct vmbus_channel_gpadl_torndown), 1, {
        {8, 4, F_ID}}},
    [CHANNELMSG_VERSION_RESPONSE] = {sizeof(struct vmbus_channel_version_response), 3, {
        {8, 1, F_FLAGS}, {9, 1, F_INT}, {12, 4, F_ID}}},
    [CHANNELMSG_UNLOAD_RESPONSE] = {8, 0, {{0}}},
    [CHANNELMSG_TL_CONNECT_RESULT] = {sizeof(struct vmbus_channel_tl_connect_result), 3, {
        {8, 16, F_GUID}, {24, 16, F_GUID}, {40, 4, F_STATUS}}},
    [CHANNELMSG_MODIFYCHANNEL_RESPONSE] = {sizeof(struct vmbus_channel_modifychannel_response), 2, {
        {8, 4, F_RELID}, {12, 4, F_STATUS}}},
};

/* The relid a host message is about (0: none), from its natural bytes. */
uint32_t gf_msg_relid(const void *buf, size_t len)
{
    const uint8_t *b = buf;
    if (len < 8)
        return 0;
    uint32_t type = gf_load_le(b, 4);
    size_t off;
    switch (type) {
    case CHANNELMSG_OFFERCHANNEL: off = offsetof(struct vmbus_channel_offer_channel, child_relid); break;
    case CHANNELMSG_RESCIND_CHANNELOFFER:
    case CHANNELMSG_OPENCHANNEL_RESULT:
    case CHANNELMSG_GPADL_CREATED:
    case CHANNELMSG_MODIFYCHANNEL_RESPONSE: off = 8; break;
    default: return 0;
    }
    return len >= off + 4 ? gf_load_le(b + off, 4) : 0;
}

static uint32_t pick_relid(struct gf_rng *rng, const struct gf_ctx *ctx, uint32_t cur)
{
    static const uint32_t odd[] = {0, VMBUS_MAX_RELID, VMBUS_MAX_RELID + 1, VMBUS_MAX_RELID + 2,
                                   0x7fffffff, 0xffffffff};
    if (ctx && ctx->nrelids && gf_rng_below(rng, 2)) {
        uint32_t r = ctx->relids[gf_rng_below(rng, ctx->nrelids < 16 ? ctx->nrelids : 16)];
        if (r != cur)
            return r;
    }
    if (gf_rng_below(rng, 3) == 0)
        return cur + (gf_rng_below(rng, 2) ? 1 : (uint32_t)-1);
    return odd[gf_rng_below(rng, ARRAY_LEN(odd))];
}

static void mutate_field(struct gf_rng *rng, const struct gf_ctx *ctx, const uint8_t *b,
                         size_t len, const struct field *f, struct gf_mutation *m)
{
    if ((size_t)f->off + f->size > len)
        return;
    if (f->cls == F_GUID) {
        uint8_t g[16];
        switch (gf_rng_below(rng, 3)) {
        case 0: memset(g, 0, 16); break;
        case 1: memset(g, 0xff, 16); break;
        default:
            memcpy(g, b + f->off, 16);
            g[gf_rng_below(rng, 16)] ^= (uint8_t)(gf_rng_next(rng) | 1);
            break;
        }
        gf_mut_add_patch(m, f->off, g, 16);
        m->mutator = GF_M_FIELD;
        return;
    }
    uint32_t cur = gf_load_le(b + f->off, f->size), v;
    static const uint32_t status[] = {0, 1, 0x80000000, 0xC0000001, 0xC0000236, 0xffffffff};
    switch (f->cls) {
    case F_RELID:
        v = pick_relid(rng, ctx, cur);
        m->mutator = GF_M_RELID;
        break;
    case F_ID:
        v = gf_rng_below(rng, 2) ? gf_pick_edge(rng, cur, f->size)
                                  : cur ^ (1u << gf_rng_below(rng, 32));
        m->mutator = GF_M_RELID;
        break;
    case F_STATUS:
        v = status[gf_rng_below(rng, ARRAY_LEN(status))];
        m->mutator = GF_M_FIELD;
        break;
    case F_FLAGS:
        v = gf_rng_below(rng, 2) ? cur ^ (1u << gf_rng_below(rng, 8u * f->size))
                                 : (gf_rng_below(rng, 2) ? 0 : 0xffffffffu);
        m->mutator = GF_M_FIELD;
        break;
    case F_MSGTYPE:
        v = gf_rng_below(rng, 2) ? (uint32_t)gf_rng_below(rng, CHANNELMSG_COUNT + 2)
                                 : gf_pick_edge(rng, cur, 4);
        m->mutator = GF_M_FIELD;
        break;
    default:
        v = gf_pick_edge(rng, cur, f->size);
        m->mutator = GF_M_FIELD;
        break;
    }
    gf_patch_le(m, f->off, v, f->size);
}

void gf_mut_msg(struct gf_rng *rng, const struct gf_ctx *ctx, uint32_t msgtype, const void *buf,
                size_t len, struct gf_mutation *m)
{
    const uint8_t *b = buf;
    gf_begin_patch(m, len, GF_M_FIELD);
    const struct msg_layout *l = msgtype < CHANNELMSG_COUNT ? &layouts[msgtype] : NULL;
    unsigned expect = l && l->size ? l->size : (unsigned)len;
    unsigned choice = (unsigned)gf_rng_below(rng, 8);
    if (choice < 2) {
        /* Length: nothing, shorter than a header, just under / over what
         * the guest expects, the SynIC maximum. */
        static const int deltas[] = {-1, +1, -4, +4, -8};
        uint32_t n;
        switch (gf_rng_below(rng, 5)) {
        case 0: n = 0; break;
        case 1: n = (uint32_t)gf_rng_below(rng, 8); break;
        case 2: n = HV_MESSAGE_PAYLOAD_SIZE; break;
        default: {
            int d = deltas[gf_rng_below(rng, ARRAY_LEN(deltas))];
            n = (int)expect + d < 0 ? 0 : (uint32_t)((int)expect + d);
            break;
        }
        }
        if (n > HV_MESSAGE_PAYLOAD_SIZE)
            n = HV_MESSAGE_PAYLOAD_SIZE;
        m->new_len = n;
        m->mutator = GF_M_LENGTH;
        if (n > len && gf_rng_below(rng, 2)) {
            /* Growth: the extra bytes are not always zero. */
            uint8_t junk[8];
            for (unsigned i = 0; i < sizeof(junk); i++)
                junk[i] = (uint8_t)gf_rng_next(rng);
            uint32_t l8 = n - (uint32_t)len < 8 ? n - (uint32_t)len : 8;
            gf_mut_add_patch(m, (uint32_t)len, junk, l8);
        }
        return;
    }
    if (choice == 2 || !l || !l->nfields) {
        /* The message type itself: another host type, a guest type, junk. */
        static const struct field t = {0, 4, F_MSGTYPE};
        mutate_field(rng, ctx, b, len, &t, m);
        return;
    }
    unsigned nf = 1 + (gf_rng_below(rng, 4) == 0);
    for (unsigned i = 0; i < nf; i++)
        mutate_field(rng, ctx, b, len, &l->f[gf_rng_below(rng, l->nfields)], m);
}

/* ------------------------------------------------------------------ */
/* Packets                                                             */

void gf_mut_pkt(struct gf_rng *rng, const struct gf_ctx *ctx, const void *buf, size_t len,
                size_t cap, struct gf_mutation *m)
{
    const uint8_t *b = buf;
    gf_begin_patch(m, len, GF_M_DESC);
    if (len < sizeof(struct vmpacket_descriptor)) {
        gf_mut_flip(rng, buf, len, m);
        return;
    }
    uint32_t off8 = gf_load_le(b + 2, 2), len8 = gf_load_le(b + 4, 2);
    uint32_t limit = ctx && ctx->max_pkt ? ctx->max_pkt : 4096;
    unsigned choice = (unsigned)gf_rng_below(rng, 6);
    if (choice < 2) {
        /* Descriptor fields, each read by the guest before the payload. */
        switch (gf_rng_below(rng, 5)) {
        case 0: {
            static const uint16_t types[] = {VM_PKT_INVALID,      VM_PKT_SYNCH,
                                             VM_PKT_DATA_INBAND,  VM_PKT_DATA_USING_XFER_PAGES,
                                             VM_PKT_DATA_USING_GPA_DIRECT, VM_PKT_COMP,
                                             VM_PKT_ADDITIONAL_DATA + 1, 0xffff};
            gf_patch_le(m, 0, types[gf_rng_below(rng, ARRAY_LEN(types))], 2);
            break;
        }
        case 1: {
            uint32_t v[] = {0, 1, 2, len8, len8 + 1, 0xffff};
            gf_patch_le(m, 2, v[gf_rng_below(rng, ARRAY_LEN(v))], 2);
            break;
        }
        case 2: {
            uint32_t v[] = {0, 1, 2, off8 ? off8 - 1 : 0, len8 - 1, len8 + 1, limit / 8,
                            limit / 8 + 1, 0xffff};
            gf_patch_le(m, 4, v[gf_rng_below(rng, ARRAY_LEN(v))] & 0xffff, 2);
            break;
        }
        case 3: gf_patch_le(m, 6, gf_pick_edge(rng, gf_load_le(b + 6, 2), 2), 2); break;
        default: {
            uint8_t id[8];
            uint64_t v = gf_rng_below(rng, 2) ? ~0ull : (uint64_t)gf_rng_next(rng);
            if (gf_rng_below(rng, 3) == 0)
                v = 0;
            memcpy(id, &v, 8);
            gf_mut_add_patch(m, 8, id, 8);
            break;
        }
        }
        return;
    }
    if (choice == 2) {
        /* Length around the guest's limit (descriptor kept consistent, so
         * the guest believes it), or just under / over the natural size. */
        uint32_t cand[] = {16, (uint32_t)len - 8, (uint32_t)len + 8, limit - 8, limit,
                           limit + 8, 2 * limit};
        uint32_t n = cand[gf_rng_below(rng, ARRAY_LEN(cand))];
        if (n < 16)
            n = 16;
        if (n > cap)
            n = (uint32_t)cap & ~7u;
        m->new_len = n;
        m->mutator = GF_M_LENGTH;
        gf_patch_le(m, 4, ((n + 7) / 8) & 0xffff, 2);
        if (off8 * 8 > n)
            gf_patch_le(m, 2, n / 8, 2);
        return;
    }
    uint32_t pay = off8 * 8 >= 16 && off8 * 8 < len ? off8 * 8 : 16;
    if (choice < 5 && pay + 4 <= len) {
        /* 32-bit fields of the payload (counts, lengths, offsets, ids). */
        m->mutator = GF_M_FIELD;
        unsigned nf = 1 + (unsigned)gf_rng_below(rng, 2);
        for (unsigned i = 0; i < nf; i++) {
            uint32_t slots = (uint32_t)(len - pay) / 4;
            uint32_t off = pay + 4 * (uint32_t)gf_rng_below(rng, slots < 64 ? slots : 64);
            unsigned size = gf_rng_below(rng, 4) == 0 ? 2 : 4;
            gf_patch_le(m, off, gf_pick_edge(rng, gf_load_le(b + off, size), size), size);
        }
        return;
    }
    gf_mut_flip(rng, buf, len, m);
}

/* ------------------------------------------------------------------ */
/* Integration-service packets (hv_utils)                              */

/* The classes whose packets carry pipe + IC headers (src/vsp/ic/ic.h). */
bool gf_class_is_ic(const struct hv_guid *cls)
{
    static const char *const ic[] = {HV_CLASS_HEARTBEAT, HV_CLASS_SHUTDOWN, HV_CLASS_TIMESYNC,
                                     HV_CLASS_KVP,       HV_CLASS_VSS,      HV_CLASS_FCOPY};
    for (size_t i = 0; i < ARRAY_LEN(ic); i++) {
        struct hv_guid g;
        if (guid_parse(ic[i], &g) == 0 && guid_equal(&g, cls))
            return true;
    }
    return false;
}

#define IC_AT (sizeof(struct vmpacket_descriptor) + sizeof(struct ic_pipe_hdr)) /* ic_hdr */
#define IC_BODY (sizeof(struct vmpacket_descriptor) + IC_HDRS_SIZE)

void gf_mut_ic(struct gf_rng *rng, const void *buf, size_t len, struct gf_mutation *m)
{
    const uint8_t *b = buf;
    gf_begin_patch(m, len, GF_M_FIELD);
    if (len < IC_BODY) {
        gf_mut_flip(rng, buf, len, m);
        return;
    }
    uint32_t body = (uint32_t)len - (uint32_t)IC_BODY;
    uint16_t type = (uint16_t)gf_load_le(b + IC_AT + offsetof(struct ic_hdr, msg_type), 2);
    unsigned choice = (unsigned)gf_rng_below(rng, 6);
    if (type == IC_MSG_NEGOTIATE && choice < 2 && body >= sizeof(struct ic_negotiate)) {
        /* Version counts around the guest's limit of 100, and a body cut
         * short of the versions the counts announce. */
        static const uint32_t counts[] = {0, 1, 2, IC_NEGOTIATE_MAX_VERSIONS - 1,
                                          IC_NEGOTIATE_MAX_VERSIONS,
                                          IC_NEGOTIATE_MAX_VERSIONS + 1, 0xffff};
        uint32_t off = IC_BODY + (gf_rng_below(rng, 2) ? offsetof(struct ic_negotiate, fw_count)
                                                      : offsetof(struct ic_negotiate, msg_count));
        gf_patch_le(m, off, counts[gf_rng_below(rng, ARRAY_LEN(counts))], 2);
        if (choice == 1) {
            m->new_len = (uint32_t)(IC_BODY + sizeof(struct ic_negotiate) +
                                    sizeof(struct ic_version) * gf_rng_below(rng, 2));
            m->mutator = GF_M_LENGTH;
            gf_patch_le(m, 4, (m->new_len + 7) / 8, 2); /* len8: the guest believes it */
        }
        return;
    }
    if (choice == 2) {
        /* An undersized body for the message type (or none at all). */
        uint32_t keep = body ? (uint32_t)gf_rng_below(rng, body) : 0;
        m->new_len = (uint32_t)IC_BODY + keep;
        m->mutator = GF_M_LENGTH;
        gf_patch_le(m, 4, (m->new_len + 7) / 8, 2);
        return;
    }
    /* One field of the IC header. */
    switch (gf_rng_below(rng, 6)) {
    case 0: {
        static const uint32_t types[] = {IC_MSG_NEGOTIATE, IC_MSG_HEARTBEAT, IC_MSG_KVP,
                                         IC_MSG_SHUTDOWN,  IC_MSG_TIMESYNC,  5, 0xffff};
        gf_patch_le(m, IC_AT + offsetof(struct ic_hdr, msg_type),
                    types[gf_rng_below(rng, ARRAY_LEN(types))], 2);
        break;
    }
    case 1: {
        uint32_t sizes[] = {0, body ? body - 1 : 0, body + 1, 4096, 0xffff};
        gf_patch_le(m, IC_AT + offsetof(struct ic_hdr, msg_size),
                    sizes[gf_rng_below(rng, ARRAY_LEN(sizes))], 2);
        break;
    }
    case 2: {
        static const uint32_t st[] = {IC_S_OK, IC_E_FAIL, IC_S_CONT, IC_E_NOT_SUPPORTED,
                                      0xffffffff};
        gf_patch_le(m, IC_AT + offsetof(struct ic_hdr, status),
                    st[gf_rng_below(rng, ARRAY_LEN(st))], 4);
        break;
    }
    case 3: {
        static const uint32_t fl[] = {0, IC_FLAG_RESPONSE, IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE,
                                      0xff};
        gf_patch_le(m, IC_AT + offsetof(struct ic_hdr, flags), fl[gf_rng_below(rng, ARRAY_LEN(fl))],
                    1);
        break;
    }
    case 4: {
        /* framework or message version: 0.0, a future major, all ones */
        static const uint32_t vers[] = {0, 0x00000003, 0x00000007, 0xffffffff};
        uint32_t off = IC_AT + (gf_rng_below(rng, 2) ? offsetof(struct ic_hdr, framework)
                                                    : offsetof(struct ic_hdr, msg_version));
        gf_patch_le(m, off, vers[gf_rng_below(rng, ARRAY_LEN(vers))], 4);
        break;
    }
    default:
        gf_patch_le(m, sizeof(struct vmpacket_descriptor) + offsetof(struct ic_pipe_hdr, flags),
                    gf_pick_edge(rng, 1, 4), 4);
        break;
    }
}

/* ------------------------------------------------------------------ */
/* Ring header fields                                                  */

void gf_mut_ring(struct gf_rng *rng, const struct gf_ctx *ctx, unsigned field,
                 struct gf_mutation *m)
{
    gf_begin_patch(m, 0, GF_M_INDEX);
    m->op = GF_OP_VALUE;
    uint32_t size = ctx && ctx->ring_size ? ctx->ring_size : 4096;
    uint32_t cur = ctx ? ctx->cur_value : 0;
    uint32_t v;
    if (field == GF_RF_INTERRUPT_MASK) {
        static const uint32_t mv[] = {0, 1, 2, 0xffffffff};
        v = cur ? 0 : mv[gf_rng_below(rng, ARRAY_LEN(mv))];
    } else if (field == GF_RF_PENDING_SEND_SZ) {
        uint32_t pv[] = {0, 1, 8, size - 8, size, size + 1, 0x80000000, 0xffffffff};
        v = pv[gf_rng_below(rng, ARRAY_LEN(pv))];
    } else {
        /* Indices: past the data area (the CVE-2026-99544 class), unaligned,
         * one packet ahead / behind, the edges. */
        uint32_t iv[] = {size, size + 8, 2 * size, cur + 4, cur + 8, cur + 24, cur - 8,
                         size - 8, 0x80000000, 0xfffffff8, 0xffffffff, 1};
        v = iv[gf_rng_below(rng, ARRAY_LEN(iv))];
    }
    if (v == cur)
        v = cur ^ 0x80000000u;
    m->param = v;
}

/* ------------------------------------------------------------------ */
/* Choosing                                                            */

static bool family_applies(const struct gf_key *key, unsigned fam)
{
    switch (key->kind) {
    case GF_K_MSG: return fam != GF_F_STORM;
    case GF_K_PKT:
        return fam == GF_F_FLIP || fam == GF_F_STRUCT || fam == GF_F_DROP || fam == GF_F_DUP ||
               fam == GF_F_DELAY;
    case GF_K_RING: return fam == GF_F_STRUCT || fam == GF_F_DROP;
    case GF_K_SIGNAL: return fam == GF_F_DROP || fam == GF_F_STORM;
    }
    return false;
}

bool gf_mutate(struct gf_rng *rng, const struct gf_knobs *k, const struct gf_ctx *ctx,
               const struct gf_key *key, const void *buf, size_t len, size_t cap,
               struct gf_mutation *out)
{
    unsigned total = 0;
    for (unsigned f = 0; f < GF_F_COUNT; f++)
        if (family_applies(key, f))
            total += k->weight[f];
    if (!total)
        return false;
    unsigned pick = (unsigned)gf_rng_below(rng, total), fam = 0;
    for (fam = 0; fam < GF_F_COUNT; fam++) {
        if (!family_applies(key, fam))
            continue;
        if (pick < k->weight[fam])
            break;
        pick -= k->weight[fam];
    }
    memset(out, 0, sizeof(*out));
    out->key = *key;
    switch (fam) {
    case GF_F_FLIP:
        gf_mut_flip(rng, buf, len, out);
        break;
    case GF_F_STRUCT:
        if (key->kind == GF_K_MSG)
            gf_mut_msg(rng, ctx, key->subtype, buf, len, out);
        else if (key->kind == GF_K_PKT && gf_class_is_ic(&key->class_id) && gf_rng_below(rng, 2))
            gf_mut_ic(rng, buf, len, out);
        else if (key->kind == GF_K_PKT && gf_class_is_storvsc(&key->class_id) &&
                 gf_rng_below(rng, 2))
            gf_mut_vstor(rng, buf, len, out);
        else if (key->kind == GF_K_PKT && gf_class_is_netvsc(&key->class_id) &&
                 gf_rng_below(rng, 2))
            gf_mut_nvsp(rng, buf, len, cap, out);
        else if (key->kind == GF_K_PKT)
            gf_mut_pkt(rng, ctx, buf, len, cap, out);
        else
            gf_mut_ring(rng, ctx, key->subtype, out);
        break;
    case GF_F_DROP: out->op = GF_OP_DROP; break;
    case GF_F_DUP: out->op = GF_OP_DUP; break;
    case GF_F_REORDER: out->op = GF_OP_REORDER; break;
    case GF_F_DELAY:
        out->op = GF_OP_DELAY;
        out->param = 1 + (uint32_t)gf_rng_below(rng, k->delay_max_ms ? k->delay_max_ms : 1);
        break;
    case GF_F_RESCIND: {
        uint32_t relid = gf_msg_relid(buf, len);
        if (!relid && ctx && ctx->nrelids)
            relid = ctx->relids[gf_rng_below(rng, ctx->nrelids < 16 ? ctx->nrelids : 16)];
        if (!relid)
            return false;
        out->op = GF_OP_RESCIND;
        out->param = relid;
        break;
    }
    case GF_F_STORM:
        out->op = GF_OP_STORM;
        out->param = 1 + (uint32_t)gf_rng_below(rng, k->storm_max ? k->storm_max : 1);
        break;
    default: return false;
    }
    if (out->mutator == GF_M_NONE)
        out->mutator = key->kind == GF_K_SIGNAL ? GF_M_SIGNAL : GF_M_ORDER;
    if (out->op == GF_OP_PATCH && out->new_len > cap)
        out->new_len = (uint32_t)cap;
    return true;
}
