/* SPDX-License-Identifier: MIT */
/*
 * Seeded random walk over everything a guest may do, valid and invalid,
 * interleaved: open/close with random ring sizes, echo traffic, GPADLs of
 * random sizes, MODIFYCHANNEL, malformed messages that must not change any
 * state, ring corruption (-> rescind, close, RELID_RELEASED), UNLOAD and
 * VMM reset with everything open.  The sequence is fixed by the seed
 * (printed on failure); what is asserted are invariants: every valid
 * operation works, vmbusd never sends a malformed message, and a second
 * partition keeps working throughout.
 */
#include "sim_test.h"

struct chaos {
    struct fx *f;
    struct sim_vm *vm;
    uint64_t rng;
    uint64_t seed;
    int step;
    uint64_t trans;
    struct {
        uint32_t relid, handle;
    } gpadls[64];
    int ngpadls;
    int counts[12];
    int alive; /* echo channels not faulted (a faulted one is never offered again) */
};

static uint32_t rnd(struct chaos *c, uint32_t n)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return n ? (uint32_t)(c->rng % n) : 0;
}

#define CHAOS_ASSERT(c, cond, ...)                                                       \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "chaos: seed %llu step %d (SIM_CHAOS_SEED reproduces)\n",     \
                    (unsigned long long)(c)->seed, (c)->step);                           \
            SIM_ASSERT(cond, __VA_ARGS__);                                               \
        }                                                                                \
    } while (0)

static struct sim_offer *live_offer(struct chaos *c, int n)
{
    return sim_offer_by_class(c->vm, sim_echo_class(), n);
}

static struct sim_chan *open_chan(struct chaos *c, int n)
{
    struct sim_offer *o = live_offer(c, n);
    if (!o)
        return NULL;
    struct sim_chan *ch = sim_chan(c->vm, o->relid);
    return ch && ch->open ? ch : NULL;
}

static void reconnect(struct chaos *c)
{
    c->ngpadls = 0;
    c->vm->expect_offers = c->alive;
    int n = sim_bringup(c->vm, rnd(c, 2) ? VMBUS_VERSION_WIN10_V5_3 : VMBUS_VERSION_WIN8_1);
    CHAOS_ASSERT(c, n == c->alive, "reconnect: %d offers, expected %d", n, c->alive);
}

/* Malformed or mis-addressed messages that must leave every state alone. */
static void bad_message(struct chaos *c)
{
    uint8_t m[240];
    for (int i = 0; i < 240; i++)
        m[i] = (uint8_t)rnd(c, 256);
    uint32_t kind = rnd(c, 4), type, size;
    uint32_t bogus_relid = 3000 + rnd(c, 1000);
    switch (kind) {
    case 0: /* unknown type */
        type = 25 + rnd(c, 1000);
        size = rnd(c, 241);
        break;
    case 1: /* known type, shorter than the 8-byte header (UNLOAD and
             * REQUESTOFFERS are complete at 8 bytes) */
        type = 1 + rnd(c, 24);
        size = rnd(c, 8);
        break;
    case 2: /* channel message for a relid that does not exist */
        type = (uint32_t[]){CHANNELMSG_OPENCHANNEL, CHANNELMSG_CLOSECHANNEL,
                            CHANNELMSG_GPADL_TEARDOWN, CHANNELMSG_MODIFYCHANNEL,
                            CHANNELMSG_RELID_RELEASED}[rnd(c, 5)];
        size = 148;
        memcpy(m + 8, &bogus_relid, 4);
        memcpy(m + 12, &bogus_relid, 4);
        break;
    default: /* oversized */
        type = CHANNELMSG_REQUESTOFFERS;
        size = 241 + rnd(c, 10000);
        break;
    }
    memcpy(m, &type, 4);
    int st = sim_post(c->vm, c->vm->msg_conn_id, 1, m, size);
    CHAOS_ASSERT(c, st >= 0, "bad message type %u size %u: post failed %d", type, size, st);
}

static void step(struct chaos *c)
{
    struct sim_vm *vm = c->vm;
    uint32_t a = rnd(c, 100);
    int k = (int)rnd(c, ECHO_CHANNELS);
    struct sim_chan *ch = open_chan(c, k);
    if (a < 15) { /* open */
        c->counts[0]++;
        if (!ch && live_offer(c, k)) {
            uint32_t sp = 2 + rnd(c, 8), rp = 2 + rnd(c, 8);
            ch = sim_open_echo(vm, k, sp, rp);
            CHAOS_ASSERT(c, ch != NULL, "open %d (%u/%u pages)", k, sp, rp);
        }
    } else if (a < 25) { /* close */
        c->counts[1]++;
        if (ch)
            CHAOS_ASSERT(c, sim_chan_close(ch) == 0, "close relid %u", ch->relid);
    } else if (a < 55) { /* traffic */
        c->counts[2]++;
        if (ch) {
            uint32_t max = ch->in.size < ch->out.size ? ch->in.size : ch->out.size;
            uint32_t len = rnd(c, max / 2);
            if (rnd(c, 4) == 0)
                CHAOS_ASSERT(c, sim_echo_stream(ch, 1 + rnd(c, 60), 1 + rnd(c, 700), rnd(c, 2)) == 0,
                             "stream relid %u", ch->relid);
            else
                CHAOS_ASSERT(c, sim_echo_roundtrip(ch, len, c->trans++, rnd(c, 2)) == 0,
                             "echo relid %u len %u", ch->relid, len);
        }
    } else if (a < 63) { /* GPADL create */
        c->counts[3]++;
        struct sim_offer *o = live_offer(c, k);
        if (o && c->ngpadls < 64) {
            uint32_t h;
            int st = sim_gpadl_create_pages(vm, o->relid, 1 + rnd(c, 120), &h, NULL);
            if (st == 0) {
                c->gpadls[c->ngpadls].relid = o->relid;
                c->gpadls[c->ngpadls].handle = h;
                c->ngpadls++;
            }
            CHAOS_ASSERT(c, st >= 0, "GPADL create: %d", st);
        }
    } else if (a < 70) { /* GPADL teardown */
        c->counts[4]++;
        if (c->ngpadls) {
            int i = (int)rnd(c, (uint32_t)c->ngpadls);
            uint32_t relid = c->gpadls[i].relid, h = c->gpadls[i].handle;
            c->gpadls[i] = c->gpadls[--c->ngpadls];
            struct sim_offer *o = sim_find_offer(vm, relid);
            if (o && !o->rescinded)
                CHAOS_ASSERT(c, sim_gpadl_teardown(vm, relid, h) == 0, "teardown 0x%x", h);
        }
    } else if (a < 85) { /* malformed message */
        c->counts[5]++;
        bad_message(c);
    } else if (a < 90) { /* MODIFYCHANNEL */
        c->counts[6]++;
        if (ch && vm->version >= VMBUS_VERSION_WIN10_RS3) {
            int st = sim_chan_modify(vm, ch->relid, rnd(c, vm->vcpus));
            CHAOS_ASSERT(c, st == 0, "modify relid %u: %d", ch->relid, st);
        }
    } else if (a < 93) { /* ring corruption -> rescind */
        c->counts[7]++;
        if (ch && c->alive > 1) {
            uint32_t relid = ch->relid;
            ch->out.hdr->write_index = ch->out.size + 8 * (1 + rnd(c, 100));
            sim_signal_event(vm, sim_find_offer(vm, relid)->connection_id);
            uint64_t end = sim_now_ms() + 3000;
            while (!sim_find_offer(vm, relid)->rescinded && sim_now_ms() < end)
                sim_poll(vm, 5);
            if (!sim_find_offer(vm, relid)->rescinded) {
                struct sim_offer *of = sim_find_offer(vm, relid);
                bool have_fd = false;
                for (int i = 0; i < vm->nevfd; i++)
                    have_fd |= vm->evfd[i].conn_id == of->connection_id;
                fprintf(stderr,
                        "chaos: relid %u conn %#x eventfd %s, out w=%u r=%u mask=%u size=%u, "
                        "in w=%u r=%u, version %s, signal_event_msgs %llu\n",
                        relid, of->connection_id, have_fd ? "yes" : "no",
                        ch->out.hdr->write_index, ch->out.hdr->read_index,
                        ch->out.hdr->interrupt_mask, ch->out.size, ch->in.hdr->write_index,
                        ch->in.hdr->read_index, sim_version_str(vm->version),
                        (unsigned long long)vm->signal_event_msgs);
            }
            CHAOS_ASSERT(c, sim_find_offer(vm, relid)->rescinded, "relid %u not rescinded",
                         relid);
            struct vmbus_channel_relid_msg m = {.header.msgtype = CHANNELMSG_CLOSECHANNEL,
                                                .child_relid = relid};
            ch->open = false;
            CHAOS_ASSERT(c, sim_post_msg(vm, &m, sizeof(m)) == 0, "close after rescind");
            CHAOS_ASSERT(c, sim_relid_released(vm, relid) == 0, "RELID_RELEASED");
            for (int i = 0; i < c->ngpadls; i++)
                if (c->gpadls[i].relid == relid)
                    c->gpadls[i--] = c->gpadls[--c->ngpadls];
            c->alive--; /* vmbusd does not offer a faulted channel again */
        }
    } else if (a < 96) { /* garbage in a ring: unknown packet types */
        c->counts[8]++;
        if (ch) {
            uint8_t p[64];
            for (int i = 0; i < 64; i++)
                p[i] = (uint8_t)rnd(c, 256);
            sim_chan_send(ch, (uint16_t)(0x20 + rnd(c, 100)), 0, 0, p, rnd(c, 64));
        }
    } else if (a < 98) { /* UNLOAD with whatever is open */
        c->counts[9]++;
        if (vm->version >= VMBUS_VERSION_WIN8_1) {
            CHAOS_ASSERT(c, sim_unload(vm) == 0, "unload");
            reconnect(c);
        }
    } else { /* guest reboot */
        c->counts[10]++;
        CHAOS_ASSERT(c, sim_vmm_reset(vm) == 0, "reset");
        reconnect(c);
    }
    CHAOS_ASSERT(c, vm->bad_host_msgs == 0, "vmbusd sent a malformed message");
    CHAOS_ASSERT(c, !vm->dead, "partition disconnected: %s", vm->error);
}

static void run_seed(struct fx *f, uint64_t seed, int steps)
{
    struct chaos c = {.f = f, .seed = seed, .rng = seed * 0x9E3779B97F4A7C15ull | 1,
                      .alive = ECHO_CHANNELS};
    char name[32];
    snprintf(name, sizeof(name), "chaos-%llu", (unsigned long long)seed);
    c.vm = sim_vm_create(f->d, name);
    SIM_ASSERT(c.vm != NULL, "create");
    reconnect(&c);
    for (c.step = 0; c.step < steps; c.step++) {
        step(&c);
        if (c.step % 100 == 99)
            fx_good_check(f, "chaos");
    }
    /* the partition can always be brought back to a working state */
    if (c.vm->version >= VMBUS_VERSION_WIN8_1)
        CHAOS_ASSERT(&c, sim_unload(c.vm) == 0, "final unload");
    else
        CHAOS_ASSERT(&c, sim_vmm_reset(c.vm) == 0, "final reset");
    reconnect(&c);
    /* at least one echo channel is never faulted (c.alive > 1 guards the
     * corruption step), and the fresh offers list only the unfaulted ones */
    struct sim_chan *ch = sim_open_echo(c.vm, 0, 4, 4);
    CHAOS_ASSERT(&c, ch != NULL, "final open (%d echo channels offered)", c.alive);
    CHAOS_ASSERT(&c, sim_echo_stream(ch, 100, 300, true) == 0, "final stream");
    print_message("  seed %llu: %d steps (open %d close %d traffic %d gpadl %d/%d bad %d "
                  "modify %d corrupt %d garbage %d unload %d reset %d)\n",
                  (unsigned long long)seed, steps, c.counts[0], c.counts[1], c.counts[2],
                  c.counts[3], c.counts[4], c.counts[5], c.counts[6], c.counts[7], c.counts[8],
                  c.counts[9], c.counts[10]);
    sim_vm_free(c.vm);
}

static void test_chaos(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    const char *s = getenv("SIM_CHAOS_SEED");
    if (s && *s) {
        run_seed(f, strtoull(s, NULL, 0), 2000);
        return;
    }
    for (uint64_t seed = 1; seed <= 12; seed++)
        run_seed(f, seed, 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_chaos, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_chaos", tests);
}
