/* SPDX-License-Identifier: MIT */
/*
 * A guest corrupting its rings: indices outside the data area, unaligned
 * indices, descriptors that overrun the written data, bad offset8/len8,
 * garbage.  The channel must be torn down (RESCIND_CHANNELOFFER), with a
 * log line naming partition and relid, while the partition's other channel
 * and other partitions keep working.
 */
#include "sim_test.h"

#include <unistd.h>

/* Write raw bytes at the guest->host ring's write position and publish
 * new_write (or the natural end if new_write == ~0u), then signal. */
static void ring_raw(struct sim_chan *ch, const void *bytes, uint32_t n, uint32_t new_write)
{
    struct sim_ring *r = &ch->out;
    uint32_t pos = r->hdr->write_index;
    const uint8_t *s = bytes;
    for (uint32_t i = 0; i < n; i++)
        r->data[(pos + i) % r->size] = s[i];
    uint32_t end = (pos + n) % r->size;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    __atomic_store_n(&r->hdr->write_index, new_write == ~0u ? end : new_write, __ATOMIC_SEQ_CST);
    struct sim_offer *of = sim_find_offer(ch->vm, ch->relid);
    sim_signal_event(ch->vm, of->connection_id);
}

static bool wait_rescind(struct sim_vm *vm, uint32_t relid, int timeout_ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    while (sim_now_ms() < end) {
        struct sim_offer *o = sim_find_offer(vm, relid);
        if (o && o->rescinded)
            return true;
        sim_poll(vm, 20);
    }
    return false;
}

/* What Linux does after a rescind: close (if open), then RELID_RELEASED. */
static void guest_rescind_handling(struct sim_chan *ch)
{
    struct sim_vm *vm = ch->vm;
    uint32_t relid = ch->relid;
    if (ch->open) {
        struct vmbus_channel_relid_msg m = {.header.msgtype = CHANNELMSG_CLOSECHANNEL,
                                            .child_relid = relid};
        ch->open = false;
        sim_post_msg(vm, &m, sizeof(m));
    }
    sim_relid_released(vm, relid);
}

enum corruption {
    C_WRITE_BEYOND,
    C_WRITE_FAR,
    C_WRITE_UNALIGNED,
    C_DESC_OVERRUN,
    C_LEN8_ZERO,
    C_LEN8_ONE,
    C_OFFSET8_ZERO,
    C_OFFSET8_BEYOND,
    C_READ_BEYOND,
    C_HUGE_LEN8,
    C_COUNT
};

static const char *const cname[C_COUNT] = {
    "write_index = size + 8",   "write_index = 0xfffffff8",   "write_index unaligned (12)",
    "descriptor len8 overruns", "descriptor len8 = 0",        "descriptor len8 = 1",
    "descriptor offset8 = 0",   "descriptor offset8 > len8",  "host->guest read_index = size + 8",
    "descriptor len8 = 0xffff",
};

static void corrupt(struct sim_chan *ch, enum corruption c)
{
    struct vmpacket_descriptor d = {.type = VM_PKT_DATA_INBAND, .offset8 = 2, .len8 = 4,
                                    .flags = 1, .trans_id = 77};
    uint8_t pkt[48];
    memset(pkt, 0xab, sizeof(pkt));
    uint32_t size = ch->out.size;
    switch (c) {
    case C_WRITE_BEYOND:
        ring_raw(ch, NULL, 0, size + 8);
        break;
    case C_WRITE_FAR:
        ring_raw(ch, NULL, 0, 0xfffffff8u);
        break;
    case C_WRITE_UNALIGNED:
        ring_raw(ch, NULL, 0, 12);
        break;
    case C_DESC_OVERRUN: /* len8 = 100 (800 bytes), only 24 + 8 written */
        d.len8 = 100;
        memcpy(pkt, &d, 16);
        ring_raw(ch, pkt, 32, ~0u);
        break;
    case C_LEN8_ZERO:
        d.len8 = 0;
        memcpy(pkt, &d, 16);
        ring_raw(ch, pkt, 40, ~0u);
        break;
    case C_LEN8_ONE:
        d.len8 = 1;
        memcpy(pkt, &d, 16);
        ring_raw(ch, pkt, 40, ~0u);
        break;
    case C_OFFSET8_ZERO:
        d.offset8 = 0;
        memcpy(pkt, &d, 16);
        ring_raw(ch, pkt, 40, ~0u);
        break;
    case C_OFFSET8_BEYOND:
        d.offset8 = 9;
        memcpy(pkt, &d, 16);
        ring_raw(ch, pkt, 40, ~0u);
        break;
    case C_READ_BEYOND: {
        /* the guest's read_index of the host->guest ring; the echo then
         * finds a corrupt ring when it writes */
        __atomic_store_n(&ch->in.hdr->read_index, ch->in.size + 8, __ATOMIC_SEQ_CST);
        uint8_t p[64];
        sim_fill_pattern(p, 64, 1);
        sim_chan_send(ch, VM_PKT_DATA_INBAND, 1, 5, p, 64);
        break;
    }
    case C_HUGE_LEN8:
        d.len8 = 0xffff;
        memcpy(pkt, &d, 16);
        ring_raw(ch, pkt, 40, ~0u);
        break;
    default:
        break;
    }
}

static void run_case(struct fx *f, enum corruption c, uint32_t version)
{
    struct bad b;
    char tag[32];
    snprintf(tag, sizeof(tag), "ring-%d-%x", (int)c, version);
    bad_up(f, &b, tag, version, true);
    /* some traffic first so indices are not at 0 */
    SIM_ASSERT(sim_echo_stream(b.c0, 7, 40, true) == 0, "warm-up");
    uint32_t relid = b.c0->relid;
    corrupt(b.c0, c);
    char what[96];
    snprintf(what, sizeof(what), "%s (%s)", cname[c], sim_version_str(version));
    SIM_ASSERT(wait_rescind(b.vm, relid, 3000), "%s: channel %u not rescinded", what, relid);
    SIM_ASSERT_LOGGED(b.name, (int)relid, what);
    fx_good_check(f, what);
    /* the partition's other channel keeps working */
    SIM_ASSERT(sim_echo_roundtrip(b.c1, 300, 9, true) == 0, "%s: other channel broken", what);
    SIM_ASSERT(sim_echo_stream(b.c1, 100, 200, false) == 0, "%s: other channel stream", what);
    /* guest acknowledges like Linux; the relid may come back later */
    struct sim_offer old = *sim_find_offer(b.vm, relid);
    guest_rescind_handling(b.c0);
    for (int i = 0; i < 10; i++)
        sim_poll(b.vm, 10);
    bool reoffered = false;
    for (int i = 0; i < b.vm->noffers; i++) {
        struct sim_offer *o = &b.vm->offers[i];
        if (o->valid && !o->rescinded && memcmp(&o->if_instance, &old.if_instance, 16) == 0)
            reoffered = true;
    }
    SIM_ASSERT(!b.vm->dead, "%s: partition disconnected (%s)", what, b.vm->error);
    SIM_ASSERT(b.vm->bad_host_msgs == 0, "%s: malformed host messages", what);
    /* RESCINDED --RELID_RELEASED--> removed (src/xpartition/channel.c) */
    SIM_ASSERT(!reoffered, "%s: relid %u offered again after RELID_RELEASED", what, relid);
    print_message("  %-52s rescinded relid %u; other channel ok; not re-offered\n", what,
                  relid);
    sim_vm_free(b.vm);
}

static void test_ring_indices(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    run_case(f, C_WRITE_BEYOND, VMBUS_VERSION_WIN10_V5_3);
    run_case(f, C_WRITE_BEYOND, VMBUS_VERSION_WIN8);
    run_case(f, C_WRITE_FAR, VMBUS_VERSION_WIN10_V5_3);
    run_case(f, C_WRITE_UNALIGNED, VMBUS_VERSION_WIN10_V5_3);
    run_case(f, C_READ_BEYOND, VMBUS_VERSION_WIN10_V5_3);
}

static void test_ring_descriptors(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    run_case(f, C_DESC_OVERRUN, VMBUS_VERSION_WIN10_V5_3);
    run_case(f, C_DESC_OVERRUN, VMBUS_VERSION_WIN8_1);
    run_case(f, C_LEN8_ZERO, VMBUS_VERSION_WIN10_V5_3);
    run_case(f, C_LEN8_ONE, VMBUS_VERSION_WIN10_V5_3);
    run_case(f, C_OFFSET8_ZERO, VMBUS_VERSION_WIN10_V5_3);
    run_case(f, C_OFFSET8_BEYOND, VMBUS_VERSION_WIN10_V5_3);
    run_case(f, C_HUGE_LEN8, VMBUS_VERSION_WIN10_V5_3);
}

/* Not fatal per se: report what vmbusd does, assert the contract. */
static void test_ring_oddities(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct bad b;

    /* garbage packets with consistent sizes (unknown packet types) */
    bad_up(f, &b, "ring-garbage", VMBUS_VERSION_WIN10_V5_3, true);
    {
        uint8_t p[64];
        for (int i = 0; i < 20; i++) {
            sim_fill_pattern(p, sizeof(p), (uint64_t)i);
            struct vmpacket_descriptor d = {.type = (uint16_t)(0x20 + i), .offset8 = 2,
                                            .len8 = 6, .flags = 0, .trans_id = (uint64_t)i};
            memcpy(p, &d, 16);
            uint64_t trailer = 0;
            memcpy(p + 48, &trailer, 8);
            ring_raw(b.c0, p, 56, ~0u);
        }
        for (int i = 0; i < 10; i++)
            sim_poll(b.vm, 10);
    }
    bad_done(f, &b, "unknown packet types in ring", -1, false, BAD_WORKS);

    /* absurd pending_send_sz / interrupt_mask written by the guest */
    bad_up(f, &b, "ring-pending", VMBUS_VERSION_WIN10_V5_3, true);
    {
        b.c0->out.hdr->pending_send_sz = 0xffffffff;
        b.c0->in.hdr->pending_send_sz = 0xffffffff;
        b.c0->out.hdr->feature_bits = 0xffffffff;
        SIM_ASSERT(sim_echo_stream(b.c0, 50, 100, true) == 0, "echo with absurd pending_send_sz");
    }
    bad_done(f, &b, "absurd pending_send_sz", -1, false, BAD_WORKS);

    /* a packet larger than anything the host reads at once */
    bad_up(f, &b, "ring-bigpkt", VMBUS_VERSION_WIN10_V5_3, false);
    {
        b.c0 = sim_open_echo(b.vm, 0, 140, 4);
        b.c1 = sim_open_echo(b.vm, 1, 4, 4);
        SIM_ASSERT(b.c0 && b.c1, "open");
        uint32_t len = 500 * 1024;
        uint8_t *p = malloc(len);
        sim_fill_pattern(p, len, 3);
        int r = sim_chan_send(b.c0, VM_PKT_DATA_INBAND, 1, 3, p, len);
        free(p);
        SIM_ASSERT(r == 0, "send 500 KiB");
        /* a well-formed packet the echo VSP cannot answer (too big for the
         * host->guest ring): dropped, the channel goes on (bad_done) */
    }
    bad_done(f, &b, "500 KiB packet", -1, false, BAD_WORKS);

    /* signal storm on an idle channel and on unknown connection ids */
    bad_up(f, &b, "signal-storm", VMBUS_VERSION_WIN10_V5_3, true);
    {
        struct sim_offer *o = sim_find_offer(b.vm, b.c0->relid);
        for (int i = 0; i < 20000; i++)
            sim_signal_event(b.vm, o->connection_id);
        for (uint32_t i = 0; i < 2000; i++)
            sim_signal_event(b.vm, 0xabc000 + i);
    }
    bad_done(f, &b, "signal storm", -1, false, BAD_WORKS);
}

static uint32_t rnd32(uint64_t *x, uint32_t n)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return (uint32_t)(*x % n);
}

/* In-range but meaningless indices and random ring contents, both
 * directions, many times: vmbusd may rescind the channel or echo garbage,
 * but must stay memory-safe (run under ASan) and keep others working. */
static void test_ring_random_indices(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    uint64_t x = 0x1234567;
#define RND(n) rnd32(&x, (n))
    int rescinds = 0;
    for (int round = 0; round < 12; round++) {
        struct bad b;
        char tag[32];
        snprintf(tag, sizeof(tag), "ring-random-%d", round);
        bad_up(f, &b, tag, VMBUS_VERSION_WIN10_V5_3, false);
        b.c0 = sim_open_echo(b.vm, 0, 2 + RND(6), 2 + RND(6));
        b.c1 = sim_open_echo(b.vm, 1, 4, 4);
        SIM_ASSERT(b.c0 && b.c1, "open");
        struct sim_offer *o = sim_find_offer(b.vm, b.c0->relid);
        for (int i = 0; i < 200 && !o->rescinded; i++) {
            struct sim_ring *out = &b.c0->out, *in = &b.c0->in;
            switch (RND(4)) {
            case 0: /* random bytes at random places of the guest->host ring */
                for (int k = 0; k < 64; k++)
                    out->data[RND(out->size)] = (uint8_t)RND(256);
                break;
            case 1: /* an in-range, aligned write index */
                __atomic_store_n(&out->hdr->write_index, RND(out->size / 8) * 8,
                                 __ATOMIC_SEQ_CST);
                break;
            case 2: /* an in-range, aligned read index on the host->guest ring */
                __atomic_store_n(&in->hdr->read_index, RND(in->size / 8) * 8,
                                 __ATOMIC_SEQ_CST);
                break;
            default: { /* a plausible packet */
                uint8_t p[256];
                for (int k = 0; k < 256; k++)
                    p[k] = (uint8_t)RND(256);
                uint16_t type = RND(2) ? VM_PKT_DATA_INBAND : (uint16_t)RND(16);
                uint16_t flags = (uint16_t)RND(2);
                uint32_t len = RND(256);
                sim_chan_send(b.c0, type, flags, (uint64_t)i, p, len);
                break;
            }
            }
            sim_signal_event(b.vm, o->connection_id);
            if (i % 20 == 0)
                sim_poll(b.vm, 1);
        }
        for (int i = 0; i < 10; i++)
            sim_poll(b.vm, 5);
        if (o->rescinded)
            rescinds++;
        SIM_ASSERT(sim_echo_roundtrip(b.c1, 100, 1, true) == 0, "round %d: other channel",
                   round);
        fx_good_check(f, "random ring indices");
        SIM_ASSERT(!b.vm->dead && b.vm->bad_host_msgs == 0, "round %d", round);
        sim_vm_free(b.vm);
    }
#undef RND
    print_message("  12 rounds of random in-range indices/contents: %d rescinds\n", rescinds);
}

/* A guest that loops sending packets a VSP complains about must not be able
 * to flood vmbusd's log (xpartition rate-limits its own guest-triggered
 * lines; VSP lines about guest input need the same). */
static void test_log_flood(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct bad b;
    bad_up(f, &b, "log-flood", VMBUS_VERSION_WIN10_V5_3, true);
    int before = sim_log_count(LOG_DEBUG, b.name, NULL, NULL);
    uint8_t p[64];
    memset(p, 0, sizeof(p));
    int sent = 0;
    for (int i = 0; i < 5000; i++) {
        struct vmpacket_descriptor d = {.type = 0x33, .offset8 = 2, .len8 = 6,
                                        .trans_id = (uint64_t)i};
        memcpy(p, &d, 16);
        int r = sim_chan_send(b.c0, 0x33, 0, (uint64_t)i, p + 16, 32);
        if (r == -EAGAIN) {
            sim_poll(b.vm, 1);
            i--;
            continue;
        }
        SIM_ASSERT(r == 0, "send %d: %d", i, r);
        sent++;
    }
    for (int i = 0; i < 20; i++)
        sim_poll(b.vm, 10);
    int lines = sim_log_count(LOG_DEBUG, b.name, NULL, NULL) - before;
    print_message("  %d bad packets -> %d log lines naming the partition\n", sent, lines);
    fx_good_check(f, "log flood");
    SIM_ASSERT(lines <= 1000, "%d bad packets produced %d log lines (no rate limit)", sent,
               lines);
    bad_done(f, &b, "log flood", -1, false, BAD_WORKS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ring_indices, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ring_descriptors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ring_oddities, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ring_random_indices, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_log_flood, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_bad_ring", tests);
}
