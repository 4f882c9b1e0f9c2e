/* SPDX-License-Identifier: MIT */
/*
 * Broken GPADLs: pages outside guest memory, bodies that never end (and
 * many of those), inconsistent lengths, overflowing bodies, duplicates.
 */
#include "sim_test.h"

#include <unistd.h>

static bool wait_created(struct sim_vm *vm, uint32_t relid, uint32_t gpadl, uint32_t *status,
                         int timeout_ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)timeout_ms;
    while (sim_now_ms() < end) {
        for (unsigned i = 0; i < vm->qlen; i++) {
            struct sim_qmsg *m = &vm->q[(vm->qhead + i) % SIM_MSGQ_LEN];
            struct vmbus_channel_gpadl_created c;
            memcpy(&c, m->payload, sizeof(c));
            if (m->type == CHANNELMSG_GPADL_CREATED && c.gpadl == gpadl &&
                c.child_relid == relid) {
                *status = c.creation_status;
                sim_take_msg(vm, CHANNELMSG_GPADL_CREATED, NULL, NULL, NULL);
                return true;
            }
        }
        sim_poll(vm, 20);
    }
    return false;
}

static long rss_kib(void)
{
    FILE *fp = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (fp) {
        if (fscanf(fp, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(fp);
    }
    return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* GPADL pages outside guest RAM: GPADL_CREATED with a non-zero status. */
static void test_pages_outside_memory(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct sim_vm_opts o = {.name = "bad-outside", .hole_start = 0x400000,
                            .hole_size = 0x400000};
    struct bad b;
    memset(&b, 0, sizeof(b));
    snprintf(b.name, sizeof(b.name), "%s", o.name);
    b.vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(b.vm != NULL, "VM with hole");
    SIM_ASSERT(sim_bringup(b.vm, VMBUS_VERSION_WIN10_V5_3) >= ECHO_CHANNELS, "bringup");
    b.c0 = sim_open_echo(b.vm, 0, 4, 4);
    b.c1 = sim_open_echo(b.vm, 1, 4, 4);
    SIM_ASSERT(b.c0 && b.c1, "open");
    uint32_t relid = b.c0->relid;
    uint64_t end_pfn = (b.vm->mem_size + b.vm->hole_size) >> 12;
    static const char *const names[] = {"beyond RAM end", "in the hole", "2^40",
                                        "all ones", "last page + 1 in a range"};
    uint64_t bad_pfns[] = {end_pfn + 5, 0x500, 1ull << 40, ~0ull, end_pfn};
    for (int i = 0; i < 5; i++) {
        uint64_t pfns[40];
        uint64_t base = sim_alloc_pages(b.vm, 40);
        for (int k = 0; k < 40; k++)
            pfns[k] = sim_page_pfn(b.vm, base + (uint64_t)k * 4096);
        pfns[i * 7 + 3] = bad_pfns[i]; /* some in the header, some in a body */
        uint32_t h = 0x9000 + (uint32_t)i, st = 0;
        b.post_status = sim_gpadl_post(b.vm, relid, h, pfns, 40, 40, 0, 0);
        bool got = wait_created(b.vm, relid, h, &st, 2000);
        SIM_ASSERT(got, "no GPADL_CREATED for a GPADL with a page %s (guest would hang)",
                   names[i]);
        SIM_ASSERT(st != 0, "GPADL with a page %s accepted", names[i]);
        char what[80];
        snprintf(what, sizeof(what), "GPADL page %s", names[i]);
        fx_good_check(f, what);
        SIM_ASSERT_LOGGED(b.name, -1, what);
        print_message("  %-46s creation_status 0x%x\n", what, st);
    }
    /* a ring GPADL in the hole cannot open */
    SIM_ASSERT(sim_echo_roundtrip(b.c0, 64, 1, true) == 0, "channel still works");
    bad_done(f, &b, "pages outside memory", -1, false, BAD_WORKS);
}

/* Headers announcing more pages than ever arrive. */
static void test_endless_bodies(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct bad b;
    bad_up(f, &b, "endless", VMBUS_VERSION_WIN10_V5_3, true);
    uint32_t relid = b.c1->relid;
    uint64_t base = sim_alloc_pages(b.vm, 64);
    uint64_t pfns[64];
    for (int k = 0; k < 64; k++)
        pfns[k] = sim_page_pfn(b.vm, base + (uint64_t)k * 4096);
    /* one incomplete GPADL: no GPADL_CREATED, the rest keeps working */
    b.post_status = sim_gpadl_post(b.vm, relid, 0x7000, pfns, 100, 30, 0, 0);
    uint32_t st;
    SIM_ASSERT(!wait_created(b.vm, relid, 0x7000, &st, 200),
               "GPADL_CREATED for an incomplete GPADL (status 0x%x)", st);
    SIM_ASSERT(sim_echo_roundtrip(b.c0, 64, 1, true) == 0, "echo with a GPADL pending");
    /* the guest gives up on it */
    struct vmbus_channel_gpadl_teardown td = {.header.msgtype = CHANNELMSG_GPADL_TEARDOWN,
                                              .child_relid = relid, .gpadl = 0x7000};
    SIM_ASSERT(sim_post(b.vm, b.vm->msg_conn_id, 1, &td, sizeof(td)) == 0, "teardown post");
    SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_GPADL_TORNDOWN, NULL, NULL, NULL, 2000),
               "no GPADL_TORNDOWN for an incomplete GPADL");

    /* thousands of them, each announcing the maximum: vmbusd must cap */
    b.vm->post_no_retry = true;
    long rss0 = rss_kib();
    int first_fail = -1, n = 3000;
    for (int i = 0; i < n; i++) {
        int s = sim_gpadl_post(b.vm, relid, 0x10000 + (uint32_t)i, pfns, 8190, 26, 0, 0);
        if (s != 0 && first_fail < 0)
            first_fail = i;
        if (b.vm->dead)
            break;
        if (i % 256 == 0)
            sim_poll(b.vm, 0);
    }
    long grown = rss_kib() - rss0;
    print_message("  %d endless GPADLs: first refused post at #%d, RSS +%ld KiB\n", n,
                  first_fail, grown);
    SIM_ASSERT(!b.vm->dead, "partition torn down for incomplete GPADLs");
    SIM_ASSERT(grown < 64 * 1024, "vmbusd grew by %ld KiB for incomplete GPADLs", grown);
    fx_good_check(f, "3000 endless GPADLs");
    SIM_ASSERT_LOGGED(b.name, -1, "endless GPADLs");
    /* While XP_MAX_PENDING_GPADLS (16) headers wait for their bodies, a new
     * GPADL - even a complete one - is refused with GPADL_CREATED... */
    b.vm->post_no_retry = false;
    for (int i = 0; i < 20; i++)
        sim_poll(b.vm, 10);
    sim_drain_msgs(b.vm);
    b.post_status = sim_gpadl_post(b.vm, relid, 0x6000, pfns, 4, 4, 0, 0);
    SIM_ASSERT(b.post_status == 0, "complete GPADL after the flood: post %d", b.post_status);
    SIM_ASSERT(wait_created(b.vm, relid, 0x6000, &st, 2000) && st != 0,
               "complete GPADL with 16 incomplete ones pending: not refused");
    /* ...until the guest tears the incomplete ones (the first 16) down */
    for (uint32_t i = 0; i < 16; i++) {
        td.gpadl = 0x10000 + i;
        SIM_ASSERT(sim_post_msg(b.vm, &td, sizeof(td)) == 0, "teardown 0x%x", td.gpadl);
        SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_GPADL_TORNDOWN, NULL, NULL, NULL, 2000),
                   "no GPADL_TORNDOWN for incomplete GPADL 0x%x", td.gpadl);
    }
    uint32_t h;
    SIM_ASSERT(sim_gpadl_create(b.vm, relid, pfns, 4, &h) == 0,
               "complete GPADL refused after the incomplete ones were torn down");
    bad_done(f, &b, "endless GPADL bodies", -1, false, BAD_WORKS);
}

/* range_buflen / byte_count / rangecount inconsistent. */
static void test_inconsistent_lengths(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    static const struct {
        const char *what;
        uint32_t total, send, byte_count, buflen;
        uint16_t rangecount; /* 0xffff = leave 1 */
        uint32_t byte_offset;
    } c[] = {
        {"byte_count 3 pages, buflen 10 pages", 10, 10, 3 * 4096, 0, 0xffff, 0},
        {"byte_count 20 pages, buflen 10 pages", 10, 10, 20 * 4096, 0, 0xffff, 0},
        {"byte_count 0", 4, 4, 0xffffffff, 0, 0xffff, 0},
        {"range_buflen 0", 4, 4, 0, 1, 0xffff, 0},
        {"range_buflen 7", 4, 4, 0, 7, 0xffff, 0},
        {"range_buflen not 8-aligned", 4, 4, 0, 8 + 8 * 4 + 4, 0xffff, 0},
        {"range_buflen 0xffff", 4, 4, 0, 0xffff, 0xffff, 0},
        {"rangecount 0", 4, 4, 0, 0, 0, 0},
        {"rangecount 2", 4, 4, 0, 0, 2, 0},
        {"byte_offset 5000", 4, 4, 0, 0, 0xffff, 5000},
        {"header claims 0 pages", 0, 0, 0, 0, 0xffff, 0},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        struct bad b;
        char tag[32];
        snprintf(tag, sizeof(tag), "len-%zu", i);
        bad_up(f, &b, tag, VMBUS_VERSION_WIN10_V5_3, true);
        uint32_t relid = b.c1->relid;
        uint64_t base = sim_alloc_pages(b.vm, 20);
        uint8_t m[240];
        memset(m, 0, sizeof(m));
        struct vmbus_channel_gpadl_header *h = (void *)m;
        h->header.msgtype = CHANNELMSG_GPADL_HEADER;
        h->child_relid = relid;
        h->gpadl = 0x8000;
        h->range_buflen = (uint16_t)(c[i].buflen ? (c[i].buflen == 1 ? 0 : c[i].buflen)
                                                 : 8 + 8 * c[i].total);
        h->rangecount = c[i].rangecount == 0xffff ? 1 : c[i].rangecount;
        uint32_t bc = c[i].byte_count == 0xffffffff ? 0
                      : c[i].byte_count            ? c[i].byte_count
                                                   : c[i].total * 4096;
        memcpy(m + 20, &bc, 4);
        memcpy(m + 24, &c[i].byte_offset, 4);
        uint32_t n = c[i].send < 26 ? c[i].send : 26;
        for (uint32_t k = 0; k < n; k++) {
            uint64_t pfn = sim_page_pfn(b.vm, base + k * 4096ull);
            memcpy(m + 28 + 8 * k, &pfn, 8);
        }
        b.post_status = sim_post(b.vm, b.vm->msg_conn_id, 1, m, 28 + 8 * n);
        uint32_t st = 0;
        bool got = wait_created(b.vm, relid, 0x8000, &st, 500);
        fx_good_check(f, c[i].what);
        /* refused with GPADL_CREATED: Linux waits for it */
        SIM_ASSERT(got, "%s: no GPADL_CREATED (guest would hang)", c[i].what);
        SIM_ASSERT(st != 0, "%s: accepted", c[i].what);
        bad_done(f, &b, c[i].what, -1, true, BAD_WORKS);
    }
}

/* A body carrying more PFNs than the header announced, bodies for unknown
 * handles, duplicate handles. */
static void test_body_abuse(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct bad b;
    uint64_t pfns[64];
    uint32_t st;

    bad_up(f, &b, "overflow", VMBUS_VERSION_WIN10_V5_3, true);
    {
        uint64_t base = sim_alloc_pages(b.vm, 64);
        for (int k = 0; k < 64; k++)
            pfns[k] = sim_page_pfn(b.vm, base + (uint64_t)k * 4096);
        /* header says 30 pages; 26 in the header and a full body of 28 */
        uint32_t relid = b.c1->relid;
        b.post_status = sim_gpadl_post(b.vm, relid, 0x8100, pfns, 30, 26, 0, 0);
        uint8_t m[240];
        memset(m, 0, sizeof(m));
        struct vmbus_channel_gpadl_body *bd = (void *)m;
        bd->header.msgtype = CHANNELMSG_GPADL_BODY;
        bd->gpadl = 0x8100;
        memcpy(m + 16, pfns + 26, 28 * 8);
        b.post_status = sim_post(b.vm, b.vm->msg_conn_id, 1, m, 16 + 28 * 8);
        SIM_ASSERT(wait_created(b.vm, relid, 0x8100, &st, 2000),
                   "no GPADL_CREATED for an overflowing GPADL (guest would hang)");
        SIM_ASSERT(st != 0, "overflowing GPADL accepted");
    }
    bad_done(f, &b, "GPADL body with too many PFNs", -1, true, BAD_WORKS);

    bad_up(f, &b, "body-unknown", VMBUS_VERSION_WIN10_V5_3, true);
    {
        uint8_t m[240];
        memset(m, 0, sizeof(m));
        struct vmbus_channel_gpadl_body *bd = (void *)m;
        bd->header.msgtype = CHANNELMSG_GPADL_BODY;
        bd->gpadl = 0xdead;
        b.post_status = sim_post(b.vm, b.vm->msg_conn_id, 1, m, 16 + 28 * 8);
        /* a body for a completed GPADL */
        bd->gpadl = b.c1->gpadl;
        sim_post(b.vm, b.vm->msg_conn_id, 1, m, 16 + 28 * 8);
    }
    bad_done(f, &b, "GPADL body for unknown/complete handle", -1, true, BAD_WORKS);

    bad_up(f, &b, "dup-handle", VMBUS_VERSION_WIN10_V5_3, true);
    {
        uint32_t relid = b.c1->relid;
        uint64_t base = sim_alloc_pages(b.vm, 4);
        for (int k = 0; k < 4; k++)
            pfns[k] = sim_page_pfn(b.vm, base + (uint64_t)k * 4096);
        /* the ring GPADL handle of the open channel again */
        b.post_status = sim_gpadl_post(b.vm, relid, b.c0->gpadl, pfns, 4, 4, 0, 0);
        SIM_ASSERT(wait_created(b.vm, relid, b.c0->gpadl, &st, 2000),
                   "no GPADL_CREATED for a duplicate handle (guest would hang)");
        SIM_ASSERT(st != 0, "duplicate GPADL handle accepted");
        /* and the open ring behind the original handle is untouched */
        SIM_ASSERT(sim_echo_roundtrip(b.c0, 128, 3, true) == 0, "original ring still works");
    }
    bad_done(f, &b, "duplicate GPADL handle", -1, true, BAD_WORKS);

    bad_up(f, &b, "teardown-unknown", VMBUS_VERSION_WIN10_V5_3, true);
    {
        struct vmbus_channel_gpadl_teardown td = {.header.msgtype = CHANNELMSG_GPADL_TEARDOWN,
                                                  .child_relid = b.c1->relid, .gpadl = 0xbeef};
        b.post_status = sim_post(b.vm, b.vm->msg_conn_id, 1, &td, sizeof(td));
        SIM_ASSERT(!sim_wait_msg(b.vm, CHANNELMSG_GPADL_TORNDOWN, NULL, NULL, NULL, 300),
                   "GPADL_TORNDOWN for a handle that never existed");
    }
    bad_done(f, &b, "GPADL_TEARDOWN of unknown handle", -1, true, BAD_WORKS);

    /* ring GPADL whose pages are all the same guest page */
    bad_up(f, &b, "alias", VMBUS_VERSION_WIN10_V5_3, false);
    {
        struct sim_offer *o = sim_offer_by_class(b.vm, sim_echo_class(), 0);
        uint64_t page = sim_alloc_pages(b.vm, 1);
        for (int k = 0; k < 8; k++)
            pfns[k] = sim_page_pfn(b.vm, page);
        uint32_t h;
        /* the guest's own memory, its own business: accepted */
        int cst = sim_gpadl_create(b.vm, o->relid, pfns, 8, &h);
        SIM_ASSERT(cst == 0, "GPADL of 8 aliased pages: status %d", cst);
        {
            struct vmbus_channel_open_channel m = {.header.msgtype = CHANNELMSG_OPENCHANNEL,
                                                   .child_relid = o->relid,
                                                   .openid = o->relid,
                                                   .ringbuffer_gpadlhandle = h,
                                                   .downstream_ringbuffer_pageoffset = 4};
            b.post_status = sim_post(b.vm, b.vm->msg_conn_id, 1, &m, sizeof(m));
            struct sim_qmsg q;
            SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_OPENCHANNEL_RESULT, NULL, NULL, &q, 2000),
                       "no OPENCHANNEL_RESULT for a ring of aliased pages");
            struct vmbus_channel_open_result r;
            memcpy(&r, q.payload, sizeof(r));
            SIM_ASSERT(r.status == 0, "ring of aliased pages refused (0x%x)", r.status);
            /* scribble over the shared page and signal */
            memset(b.vm->mem + page, 0x41, 4096);
            sim_signal_event(b.vm, o->connection_id);
            /* indices of 0x41414141 lie outside the ring: vmbusd rescinds it */
            uint64_t end = sim_now_ms() + 2000;
            while (!o->rescinded && sim_now_ms() < end)
                sim_poll(b.vm, 10);
            SIM_ASSERT(o->rescinded, "aliased ring full of garbage: channel not rescinded");
        }
    }
    bad_done(f, &b, "ring GPADL with aliased pages", -1, false, BAD_WORKS);
}

/* A ring GPADL created for another channel is refused: a GPADL belongs to
 * the channel it was created for (its release must never free the ring of
 * another). */
static void test_gpadl_cross_channel(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct bad b;
    bad_up(f, &b, "cross-gpadl", VMBUS_VERSION_WIN10_V5_3, false);
    struct sim_offer *oa = sim_offer_by_class(b.vm, sim_echo_class(), 0);
    struct sim_offer *ob = sim_offer_by_class(b.vm, sim_echo_class(), 1);
    uint32_t ra = oa->relid, rb = ob->relid;
    /* a ring GPADL created for B, used to open A */
    uint32_t hb;
    uint64_t off;
    SIM_ASSERT(sim_gpadl_create_pages(b.vm, rb, 8, &hb, &off) == 0, "gpadl for B");
    struct vmbus_channel_open_channel m = {.header.msgtype = CHANNELMSG_OPENCHANNEL,
                                           .child_relid = ra, .openid = ra,
                                           .ringbuffer_gpadlhandle = hb,
                                           .downstream_ringbuffer_pageoffset = 4};
    b.post_status = sim_post(b.vm, b.vm->msg_conn_id, 1, &m, sizeof(m));
    struct sim_qmsg q;
    SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_OPENCHANNEL_RESULT, NULL, NULL, &q, 2000),
               "no OPENCHANNEL_RESULT");
    struct vmbus_channel_open_result r;
    memcpy(&r, q.payload, sizeof(r));
    SIM_ASSERT(r.status != 0, "relid %u opened with relid %u's GPADL", ra, rb);
    /* B's GPADL is still B's: it tears down normally */
    SIM_ASSERT(sim_gpadl_teardown(b.vm, rb, hb) == 0, "teardown of B's GPADL");
    bad_done(f, &b, "ring GPADL of another channel", (int)ra, true, BAD_WORKS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pages_outside_memory, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_endless_bodies, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_inconsistent_lengths, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_body_abuse, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_gpadl_cross_channel, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_bad_gpadl", tests);
}
