/* SPDX-License-Identifier: MIT */
/*
 * Unit test of the xpartition channel-message state machine.
 *
 * A partition with 2 vCPUs and 512 KiB of memfd guest RAM is driven only
 * through the xpartition API, the way vmbusd's VMM connection drives it
 * (xp_post_message, xp_eom, xp_connection_signalled) and the way a VSP does
 * (xp_offer_channel, xp_rescind_channel, ..._done).  The test plays a
 * Linux-like guest: it reads host->guest messages from the SynIC message
 * slot in guest memory only after an interrupt (signal_vp) announced them,
 * frees the slot and writes EOM when msg_pending asks for it.  The fake host
 * ops (fake_host.c) record every call; each test asserts the exact replies
 * and the host-op calls they cause.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "vmbusd/hv_wire.h"
#include "xpartition/channel.h" /* xp_channel_fault, xp_channel_notify_guest */
#include "xpartition/tests/fake_host.h"
#include "xpartition/xpartition.h"

#define NVCPUS 2
#define RAM_PAGES 256u
#define RAM_SIZE (RAM_PAGES * HV_PAGE_SIZE)
#define PAGE(n) ((uint64_t)(n) * HV_PAGE_SIZE)
/* Guest pages: SIMP/SIEFP per vCPU, the pre-5.0 interrupt page, the
 * monitor pages; GPADLs are carved from FIRST_FREE_PAGE on. */
#define SIMP_PAGE(vp) (1 + 2 * (vp))
#define SIEFP_PAGE(vp) (2 + 2 * (vp))
#define INTPAGE_PAGE 5
#define MONITOR_PAGE 6
#define FIRST_FREE_PAGE 16
#define FIRST_GPADL 0xE1E10u /* Linux's first GPADL handle */
#define NCHANS 2
#define RING_PAGES 4 /* 2 guest->host (header + 1), 2 host->guest */
#define STATUS_UNSUCCESSFUL 0xC0000001u
#define NOT_OPEN UINT32_MAX

struct fx {
    int memfd;
    uint8_t *ram;
    struct fake_host fh;
    struct xpartition *xp;
    struct xp_channel *ch[NCHANS + 1]; /* the fixture's offers, then a hot-added one */
    uint32_t relid[NCHANS + 1];        /* from the OFFERCHANNEL messages */
    uint32_t version;
    uint32_t next_page;
    uint32_t next_gpadl;
    unsigned signals_seen[NVCPUS];     /* interrupts the guest has handled */
    unsigned seen_calls;               /* host-op calls already looked at */
    unsigned warns;                    /* warnings logged since the last look */
    char warn[1024];                   /* the last one */
};

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

static void log_sink(enum log_level lvl, const char *line, void *arg)
{
    struct fx *f = arg;
    if (lvl > LOG_WARN)
        return;
    f->warns++;
    snprintf(f->warn, sizeof(f->warn), "%s", line);
}

static struct hv_message *slot(struct fx *f, uint32_t vp)
{
    return (struct hv_message *)(f->ram + PAGE(SIMP_PAGE(vp)) +
                                 VMBUS_MESSAGE_SINT * HV_MESSAGE_SIZE);
}

static uint8_t *event_flags(struct fx *f, uint32_t vp)
{
    return f->ram + PAGE(SIEFP_PAGE(vp)) + VMBUS_MESSAGE_SINT * HV_EVENT_FLAGS_BYTES;
}

/* A partition with NCHANS offers made by a VSP; boot-time offers complete
 * (xp_offers_ready) if ready. */
static struct fx *fx_new(bool ready)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    fake_host_init(&f->fh);
    f->next_page = FIRST_FREE_PAGE;
    f->next_gpadl = FIRST_GPADL;
    /* Guest RAM as a VMM hands it over: a memfd that cannot shrink. */
    f->memfd = memfd_create("xptest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    assert_true(f->memfd >= 0);
    assert_int_equal(ftruncate(f->memfd, RAM_SIZE), 0);
    assert_int_equal(fcntl(f->memfd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
    f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);
    assert_true(f->ram != MAP_FAILED);

    log_set_sink(log_sink, f);
    f->xp = fake_host_partition(&f->fh, 7, "xptest", NVCPUS);
    assert_non_null(f->xp);
    /* the partition owns (and closes) the fd it is given */
    assert_int_equal(xp_add_region(f->xp, 0, RAM_SIZE, dup(f->memfd), 0), 0);
    for (uint32_t vp = 0; vp < NVCPUS; vp++) {
        assert_int_equal(xp_set_sint_route(f->xp, vp), 0);
        assert_int_equal(xp_set_synic(f->xp, vp, 1, PAGE(SIMP_PAGE(vp)) | 1,
                                      PAGE(SIEFP_PAGE(vp)) | 1),
                         0);
    }
    for (int i = 0; i < NCHANS; i++) {
        struct vmbus_channel_offer o = {0};
        o.if_type.b[0] = 0xC1;
        o.if_instance.b[0] = (uint8_t)i; /* the test finds its channels by this */
        o.u.pipe.user_def[0] = (uint8_t)(0xA0 + i);
        f->ch[i] = xp_offer_channel(f->xp, &o, NULL, NULL);
        assert_non_null(f->ch[i]);
    }
    if (ready)
        xp_offers_ready(f->xp);
    f->seen_calls = f->fh.ncalls;
    return f;
}

static void fx_free(struct fx *f)
{
    assert_int_equal(f->fh.lost, 0); /* the test saw every call */
    fake_host_clear(&f->fh);
    xp_close_all(f->xp);
    xp_destroy(f->xp);
    log_set_sink(NULL, NULL);
    assert_int_equal(f->fh.signals_bad_vp, 0);
    for (uint32_t vp = NVCPUS; vp < XP_MAX_VCPUS; vp++)
        assert_int_equal(f->fh.signals[vp], 0);
    munmap(f->ram, RAM_SIZE);
    close(f->memfd);
    free(f);
}

static int setup(void **state)
{
    *state = fx_new(true);
    return 0;
}

static int teardown(void **state)
{
    fx_free(*state);
    return 0;
}

/* ------------------------------------------------------------------ */
/* What the host did                                                   */

static int chan_index(struct fx *f, const struct xp_channel *ch)
{
    for (int i = 0; i <= NCHANS; i++)
        if (f->ch[i] && f->ch[i] == ch)
            return i;
    return -1;
}

/* The host-op calls since the last look, in order, as text; signal_vp is
 * left out (guest_take() checks that each message came with one). */
static const char *ops(struct fx *f)
{
    static char buf[2048];
    size_t n = 0;
    buf[0] = 0;
    for (unsigned i = f->seen_calls; i < f->fh.ncalls && n < sizeof(buf) - 64; i++) {
        const struct fake_call *c = &f->fh.calls[i];
        const char *sep = n ? " " : "";
        switch (c->op) {
        case FAKE_SIGNAL_VP:
            break;
        case FAKE_EVENTFD_ADD:
        case FAKE_EVENTFD_DEL:
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s(%#x)", sep, fake_op_name(c->op),
                                  c->arg);
            break;
        case FAKE_CHANNEL_OPEN:
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s(ch%d,%u)", sep,
                                  fake_op_name(c->op), chan_index(f, c->ch), c->arg);
            break;
        case FAKE_CHANNEL_CLOSE:
        case FAKE_CHANNEL_KICK:
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s(ch%d)", sep, fake_op_name(c->op),
                                  chan_index(f, c->ch));
            break;
        }
    }
    f->seen_calls = f->fh.ncalls;
    if (f->fh.ncalls > FAKE_HOST_MAX_CALLS / 2) {
        fake_host_clear(&f->fh);
        f->seen_calls = 0;
    }
    return buf;
}

/* Warnings since the last look: exactly one, about this partition, saying
 * what. */
static void expect_warn(struct fx *f, const char *what)
{
    if (f->warns != 1 || !strstr(f->warn, what) || !strstr(f->warn, "partition xptest"))
        fail_msg("expected one warning with \"%s\", got %u, last \"%s\"", what, f->warns,
                 f->warn);
    f->warns = 0;
}

static void expect_no_warn(struct fx *f)
{
    if (f->warns)
        fail_msg("unexpected warning: %s", f->warn);
}

/* ------------------------------------------------------------------ */
/* The guest                                                           */

/* HvPostMessage of a channel message as the VMM passes it on. */
static uint32_t post(struct fx *f, uint32_t conn, const void *msg, size_t len)
{
    struct hv_post_message_input in = {
        .connection_id = conn,
        .message_type = HV_MESSAGE_TYPE_VMBUS,
        .payload_size = (uint32_t)len,
    };
    assert_true(len <= sizeof(in.payload));
    memcpy(in.payload, msg, len);
    return xp_post_message(f->xp, 0, &in, sizeof(in));
}

#define POST(f, m) post((f), VMBUS_MESSAGE_CONNECTION_ID, &(m), sizeof(m))
#define WRONG_SIZE 0x5153000u /* guest_take: the message has another size */

/* The guest's message handling on vp: copy the slot, free it, write EOM if
 * msg_pending was set.  Returns the channel message type, 0 if the slot is
 * empty, or WRONG_SIZE | size if the message is not exactly len bytes. */
static uint32_t guest_take_vp(struct fx *f, uint32_t vp, void *out, size_t len)
{
    struct hv_message *s = slot(f, vp);
    if (s->header.message_type == HV_MESSAGE_TYPE_NONE)
        return 0;
    /* The guest looks at the slot when interrupted; a message without an
     * interrupt would sit there unseen. */
    if (f->fh.signals[vp] == f->signals_seen[vp])
        fail_msg("vp %u: a message arrived without an interrupt", vp);
    f->signals_seen[vp] = f->fh.signals[vp];
    assert_int_equal(s->header.message_type, HV_MESSAGE_TYPE_VMBUS);
    struct hv_message m;
    memcpy(&m, s, sizeof(m));
    /* As Linux: free the slot, then look at msg_pending.  The slot is
     * 256-byte aligned, so its header fields are naturally aligned. */
    uintptr_t base = (uintptr_t)s;
    uint32_t *typep = (uint32_t *)(base + offsetof(struct hv_message_header, message_type));
    uint8_t *flagsp = (uint8_t *)(base + offsetof(struct hv_message_header, message_flags));
    __atomic_store_n(typep, HV_MESSAGE_TYPE_NONE, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(flagsp, __ATOMIC_SEQ_CST) & HV_MESSAGE_FLAG_PENDING)
        xp_eom(f->xp, vp);
    if (m.header.payload_size != len) {
        fprintf(stderr, "message type %u: %u bytes, expected %zu\n",
                ((struct vmbus_channel_message_header *)m.payload)->msgtype,
                m.header.payload_size, len);
        return WRONG_SIZE | m.header.payload_size;
    }
    memcpy(out, m.payload, len);
    return ((struct vmbus_channel_message_header *)m.payload)->msgtype;
}

static uint32_t guest_take(struct fx *f, void *out, size_t len)
{
    return guest_take_vp(f, 0, out, len);
}

/* No message waits in either vCPU's slot. */
static bool no_msg(struct fx *f)
{
    for (uint32_t vp = 0; vp < NVCPUS; vp++)
        if (slot(f, vp)->header.message_type != HV_MESSAGE_TYPE_NONE)
            return false;
    return true;
}

static uint32_t initiate_on(struct fx *f, uint32_t conn, uint32_t version, uint32_t target_vcpu,
                            uint8_t sint, uint64_t intpage)
{
    struct vmbus_channel_initiate_contact m = {
        .header.msgtype = CHANNELMSG_INITIATE_CONTACT,
        .vmbus_version_requested = version,
        .target_vcpu = target_vcpu,
        .monitor_page1 = PAGE(MONITOR_PAGE),
        .monitor_page2 = PAGE(MONITOR_PAGE + 1),
    };
    if (version >= VMBUS_VERSION_WIN10_V5)
        m.u.s.msg_sint = sint;
    else
        m.u.interrupt_page = intpage;
    return post(f, conn, &m, sizeof(m));
}

/* INITIATE_CONTACT as Linux sends it for version. */
static uint32_t initiate(struct fx *f, uint32_t version, uint32_t target_vcpu)
{
    uint32_t conn = version >= VMBUS_VERSION_WIN10_V5 ? VMBUS_MESSAGE_CONNECTION_ID_4
                                                      : VMBUS_MESSAGE_CONNECTION_ID;
    return initiate_on(f, conn, version, target_vcpu, VMBUS_MESSAGE_SINT, PAGE(INTPAGE_PAGE));
}

/* The VERSION_RESPONSE on vp: 1 accepted, 0 refused, -1 no response. */
static int version_response(struct fx *f, uint32_t vp)
{
    struct vmbus_channel_version_response r;
    uint32_t type = guest_take_vp(f, vp, &r, sizeof(r));
    if (type != CHANNELMSG_VERSION_RESPONSE)
        return -1;
    if (r.version_supported)
        assert_int_equal(r.msg_conn_id, VMBUS_MESSAGE_CONNECTION_ID);
    return r.version_supported ? 1 : 0;
}

static void connect(struct fx *f, uint32_t version)
{
    assert_int_equal(initiate(f, version, 0), HV_STATUS_SUCCESS);
    assert_int_equal(version_response(f, 0), 1);
    /* pre-2.4 guests signal every channel on connection id 2 */
    assert_string_equal(ops(f), version < VMBUS_VERSION_WIN8 ? "eventfd_add(0x2)" : "");
    f->version = version;
}

static uint32_t conn_id_of(struct fx *f, uint32_t relid)
{
    return f->version >= VMBUS_VERSION_WIN8 ? XP_CHANNEL_CONN_ID_BASE + relid
                                            : VMBUS_EVENT_CONNECTION_ID;
}

/* One OFFERCHANNEL: checks it against the channel's offer; returns the
 * channel index. */
static int take_offer(struct fx *f, uint32_t expect_relid)
{
    struct vmbus_channel_offer_channel m;
    assert_int_equal(guest_take(f, &m, sizeof(m)), CHANNELMSG_OFFERCHANNEL);
    int i = m.offer.if_instance.b[0];
    assert_true(i <= NCHANS && f->ch[i]);
    assert_int_equal(m.offer.if_type.b[0], 0xC1);
    assert_int_equal(m.offer.u.pipe.user_def[0], 0xA0 + i);
    assert_int_equal(m.child_relid, expect_relid);
    assert_int_equal(m.connection_id, conn_id_of(f, expect_relid));
    assert_int_equal(m.is_dedicated_interrupt, f->version >= VMBUS_VERSION_WIN8 ? 1 : 0);
    assert_int_equal(m.monitor_allocated, 0);
    f->relid[i] = m.child_relid;
    return i;
}

static void expect_header_only(struct fx *f, uint32_t type)
{
    struct vmbus_channel_message_header h;
    assert_int_equal(guest_take(f, &h, sizeof(h)), type);
}

/* REQUESTOFFERS: the NCHANS offers in offer order, relids 1.., then
 * ALLOFFERS_DELIVERED. */
static void request_offers(struct fx *f)
{
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    for (int i = 0; i < NCHANS; i++)
        assert_int_equal(take_offer(f, (uint32_t)i + 1), i);
    expect_header_only(f, CHANNELMSG_ALLOFFERS_DELIVERED);
    assert_true(no_msg(f));
    if (f->version >= VMBUS_VERSION_WIN8)
        assert_string_equal(ops(f), "eventfd_add(0x10001) eventfd_add(0x10002)");
    else
        assert_string_equal(ops(f), "");
}

static void bringup(struct fx *f, uint32_t version)
{
    connect(f, version);
    request_offers(f);
    expect_no_warn(f);
}

/* A GPADL_HEADER with the given range fields, carrying npfns PFNs from
 * first_pfn on. */
static uint32_t header_post_raw(struct fx *f, uint32_t relid, uint32_t handle, uint16_t buflen,
                                uint16_t rangecount, uint32_t byte_count, uint32_t byte_offset,
                                uint64_t first_pfn, uint32_t npfns)
{
    uint8_t buf[HV_MESSAGE_PAYLOAD_SIZE];
    struct vmbus_channel_gpadl_header h = {
        .header.msgtype = CHANNELMSG_GPADL_HEADER,
        .child_relid = relid,
        .gpadl = handle,
        .range_buflen = buflen,
        .rangecount = rangecount,
    };
    struct vmbus_gpa_range r = {.byte_count = byte_count, .byte_offset = byte_offset};
    assert_true(npfns <= VMBUS_GPADL_HEADER_MAX_PFNS);
    memcpy(buf, &h, sizeof(h));
    memcpy(buf + sizeof(h), &r, sizeof(r));
    for (uint32_t i = 0; i < npfns; i++) {
        uint64_t pfn = first_pfn + i;
        memcpy(buf + sizeof(h) + sizeof(r) + 8 * i, &pfn, 8);
    }
    return post(f, VMBUS_MESSAGE_CONNECTION_ID, buf, sizeof(h) + sizeof(r) + 8 * npfns);
}

/* A GPADL_HEADER as Linux sends it for npages pages from first_pfn: at most
 * 26 PFNs, the rest follow in bodies. */
static uint32_t header_post(struct fx *f, uint32_t relid, uint32_t handle, uint32_t npages,
                            uint64_t first_pfn)
{
    uint32_t n = npages < VMBUS_GPADL_HEADER_MAX_PFNS ? npages : VMBUS_GPADL_HEADER_MAX_PFNS;
    return header_post_raw(f, relid, handle, (uint16_t)(8 + 8 * npages), 1,
                           npages * HV_PAGE_SIZE, 0, first_pfn, n);
}

/* A GPADL_BODY (msgnumber 0, as Linux) carrying pfns[0..n). */
static uint32_t body_post(struct fx *f, uint32_t handle, const uint64_t *pfns, uint32_t n)
{
    uint8_t buf[HV_MESSAGE_PAYLOAD_SIZE];
    struct vmbus_channel_gpadl_body b = {.header.msgtype = CHANNELMSG_GPADL_BODY,
                                         .gpadl = handle};
    assert_true(n <= VMBUS_GPADL_BODY_MAX_PFNS);
    memcpy(buf, &b, sizeof(b));
    memcpy(buf + sizeof(b), pfns, 8 * n);
    return post(f, VMBUS_MESSAGE_CONNECTION_ID, buf, sizeof(b) + 8 * n);
}

/* Bodies with PFNs first_pfn + [from, to), at most 28 each, like Linux. */
static void bodies_post(struct fx *f, uint32_t handle, uint64_t first_pfn, uint32_t from,
                        uint32_t to)
{
    while (from < to) {
        uint64_t pfns[VMBUS_GPADL_BODY_MAX_PFNS];
        uint32_t k = to - from < VMBUS_GPADL_BODY_MAX_PFNS ? to - from : VMBUS_GPADL_BODY_MAX_PFNS;
        for (uint32_t i = 0; i < k; i++)
            pfns[i] = first_pfn + from + i;
        assert_int_equal(body_post(f, handle, pfns, k), HV_STATUS_SUCCESS);
        from += k;
    }
}

/* The whole GPADL of npages consecutive pages, as Linux posts it. */
static void gpadl_post(struct fx *f, uint32_t relid, uint32_t handle, uint64_t first_pfn,
                       uint32_t npages)
{
    assert_int_equal(header_post(f, relid, handle, npages, first_pfn), HV_STATUS_SUCCESS);
    bodies_post(f, handle, first_pfn, VMBUS_GPADL_HEADER_MAX_PFNS, npages);
}

static uint32_t alloc_pages(struct fx *f, uint32_t npages)
{
    uint32_t first = f->next_page;
    f->next_page += npages;
    assert_true(f->next_page <= RAM_PAGES);
    return first;
}

/* The GPADL_CREATED the guest waits for: its status, or a value no status
 * has if the message is missing or for another GPADL. */
#define NO_CREATED 0xDEAD0000u
static uint32_t gpadl_created(struct fx *f, uint32_t relid, uint32_t handle)
{
    struct vmbus_channel_gpadl_created c;
    if (guest_take(f, &c, sizeof(c)) != CHANNELMSG_GPADL_CREATED || c.child_relid != relid ||
        c.gpadl != handle)
        return NO_CREATED;
    return c.creation_status;
}

/* A GPADL of npages fresh pages for relid, created successfully. */
static uint32_t gpadl_create(struct fx *f, uint32_t relid, uint32_t npages)
{
    uint32_t handle = f->next_gpadl++;
    gpadl_post(f, relid, handle, alloc_pages(f, npages), npages);
    assert_int_equal(gpadl_created(f, relid, handle), 0);
    assert_true(no_msg(f));
    return handle;
}

static uint32_t open_post(struct fx *f, uint32_t relid, uint32_t openid, uint32_t gpadl,
                          uint32_t target_vp, uint32_t downstream)
{
    struct vmbus_channel_open_channel m = {
        .header.msgtype = CHANNELMSG_OPENCHANNEL,
        .child_relid = relid,
        .openid = openid,
        .ringbuffer_gpadlhandle = gpadl,
        .target_vp = target_vp,
        .downstream_ringbuffer_pageoffset = downstream,
    };
    for (unsigned i = 0; i < sizeof(m.userdata); i++)
        m.userdata[i] = (uint8_t)(i ^ relid);
    return POST(f, m);
}

/* The OPENCHANNEL_RESULT for (relid, openid): its status, or NOT_OPEN if it
 * is missing or for another open. */
static uint32_t open_result(struct fx *f, uint32_t relid, uint32_t openid)
{
    struct vmbus_channel_open_result r;
    if (guest_take(f, &r, sizeof(r)) != CHANNELMSG_OPENCHANNEL_RESULT || r.child_relid != relid ||
        r.openid != openid)
        return NOT_OPEN;
    return r.status;
}

/* Open channel i on target_vp with a fresh ring GPADL; returns the GPADL. */
static uint32_t open_chan(struct fx *f, int i, uint32_t target_vp)
{
    uint32_t relid = f->relid[i];
    uint32_t g = gpadl_create(f, relid, RING_PAGES);
    assert_int_equal(open_post(f, relid, relid, g, target_vp, RING_PAGES / 2), HV_STATUS_SUCCESS);
    assert_int_equal(open_result(f, relid, relid), 0);
    char want[64];
    snprintf(want, sizeof(want), "channel_open(ch%d,120) channel_kick(ch%d)", i, i);
    assert_string_equal(ops(f), want);
    for (unsigned k = 0; k < 120; k++)
        assert_int_equal(f->fh.open_userdata[k], (uint8_t)(k ^ relid));
    assert_true(no_msg(f));
    expect_no_warn(f);
    return g;
}

static uint32_t relid_post(struct fx *f, uint32_t type, uint32_t relid)
{
    struct vmbus_channel_relid_msg m = {.header.msgtype = type, .child_relid = relid};
    return POST(f, m);
}

static uint32_t teardown_post(struct fx *f, uint32_t relid, uint32_t gpadl)
{
    struct vmbus_channel_gpadl_teardown m = {.header.msgtype = CHANNELMSG_GPADL_TEARDOWN,
                                             .child_relid = relid,
                                             .gpadl = gpadl};
    return POST(f, m);
}

/* The GPADL_TORNDOWN for gpadl is in the slot. */
static bool torndown(struct fx *f, uint32_t gpadl)
{
    struct vmbus_channel_gpadl_torndown t;
    return guest_take(f, &t, sizeof(t)) == CHANNELMSG_GPADL_TORNDOWN && t.gpadl == gpadl;
}

static uint32_t modify_post(struct fx *f, uint32_t relid, uint32_t target_vp)
{
    struct vmbus_channel_modifychannel m = {.header.msgtype = CHANNELMSG_MODIFYCHANNEL,
                                            .child_relid = relid,
                                            .target_vp = target_vp};
    return POST(f, m);
}

/* ------------------------------------------------------------------ */
/* INITIATE_CONTACT                                                    */

/* Every version vmbusd speaks is accepted on the connection id the guest
 * uses for it; pre-2.4 guests get the shared event connection. */
static void test_contact_accepts_supported_versions(void **state)
{
    static const uint32_t versions[] = {
        VMBUS_VERSION_WIN10_V5_3, VMBUS_VERSION_WIN10_V5_2, VMBUS_VERSION_WIN10_V5_1,
        VMBUS_VERSION_WIN10_V5,   VMBUS_VERSION_WIN10_RS3,  VMBUS_VERSION_WIN10,
        VMBUS_VERSION_WIN8_1,     VMBUS_VERSION_WIN8,       VMBUS_VERSION_WIN7,
        VMBUS_VERSION_WS2008,
    };
    for (unsigned i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        struct fx *f = fx_new(true);
        bringup(f, versions[i]); /* checks the response, offers and eventfds */
        fx_free(f);
    }
    (void)state;
}

/* The guest proposes versions newest first and takes the first accepted:
 * each refusal is a VERSION_RESPONSE with version_supported 0 on the vCPU it
 * named, and leaves the guest disconnected. */
static void test_contact_refused(void **state)
{
    struct fx *f = *state;
    const struct {
        uint32_t conn, version, vcpu;
        uint8_t sint;
        uint64_t intpage;
        const char *warn; /* NULL: logged as an event, not a guest error */
    } cases[] = {
        {4, VMBUS_VERSION(6, 0), 0, 2, 0, NULL},
        {4, VMBUS_VERSION(5, 4), 0, 2, 0, NULL},
        {1, VMBUS_VERSION(3, 1), 0, 0, PAGE(INTPAGE_PAGE), NULL},
        {1, VMBUS_VERSION_WIN10_V5_3, 0, 2, 0, "on connection id 1"},
        {4, VMBUS_VERSION_WIN10_RS3, 0, 0, PAGE(INTPAGE_PAGE), "on connection id 4"},
        {4, VMBUS_VERSION_WIN10_V5_3, 0, 3, 0, "message SINT 3"},
        {4, VMBUS_VERSION_WIN10_V5_3, NVCPUS, 2, 0, "target_vcpu 2"},
        {1, VMBUS_VERSION_WIN7, 0, 0, PAGE(RAM_PAGES), "interrupt page"},
        /* the refusal goes to the vCPU the guest named, if it exists */
        {4, VMBUS_VERSION(6, 0), 1, 2, 0, NULL},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(initiate_on(f, cases[i].conn, cases[i].version, cases[i].vcpu,
                                     cases[i].sint, cases[i].intpage),
                         HV_STATUS_SUCCESS);
        uint32_t vp = cases[i].vcpu < NVCPUS ? cases[i].vcpu : 0;
        assert_int_equal(version_response(f, vp), 0);
        assert_true(no_msg(f));
        if (cases[i].warn)
            expect_warn(f, cases[i].warn);
        else
            expect_no_warn(f);
        /* still not connected */
        struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
        assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
        assert_true(no_msg(f));
        expect_warn(f, "REQUESTOFFERS before INITIATE_CONTACT");
        assert_string_equal(ops(f), "");
    }
    /* an INITIATE_CONTACT to a connection id nobody listens on fails the
     * hypercall and is not answered */
    assert_int_equal(initiate_on(f, 7, VMBUS_VERSION_WIN10_V5_3, 0, 2, 0),
                     HV_STATUS_INVALID_CONNECTION_ID);
    assert_true(no_msg(f));
    expect_warn(f, "unknown connection id 7");
    /* the next proposal is accepted (answered on vp 0 again) */
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
}

/* A guest that connects again without UNLOAD (kexec, crash kernel) starts
 * from scratch: its channels are closed and re-offered. */
static void test_contact_again_resets(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN7);
    open_chan(f, 0, 0);
    assert_int_equal(initiate(f, VMBUS_VERSION_WIN10_V5_3, 1), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "channel_close(ch0) eventfd_del(0x2)");
    assert_int_equal(version_response(f, 1), 1);
    assert_true(no_msg(f));
    f->version = VMBUS_VERSION_WIN10_V5_3;
    /* replies now go to vp 1 */
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    struct vmbus_channel_offer_channel m;
    assert_int_equal(guest_take(f, &m, sizeof(m)), 0);
    assert_int_equal(guest_take_vp(f, 1, &m, sizeof(m)), CHANNELMSG_OFFERCHANNEL);
    assert_int_equal(m.child_relid, 1);
    assert_int_equal(m.connection_id, 0x10001);
    assert_int_equal(guest_take_vp(f, 1, &m, sizeof(m)), CHANNELMSG_OFFERCHANNEL);
    assert_int_equal(m.child_relid, 2);
    assert_int_equal(guest_take_vp(f, 1, &h, sizeof(h)), CHANNELMSG_ALLOFFERS_DELIVERED);
    assert_string_equal(ops(f), "eventfd_add(0x10001) eventfd_add(0x10002)");
    expect_no_warn(f);
}

/* The hypercall input is checked before the message is looked at. */
static void test_post_message_input_checked(void **state)
{
    struct fx *f = *state;
    struct hv_post_message_input in = {.connection_id = 1, .message_type = 1, .payload_size = 8};
    uint32_t type = CHANNELMSG_REQUESTOFFERS;
    memcpy(in.payload, &type, sizeof(type));

    assert_int_equal(xp_post_message(f->xp, 0, &in, 8), HV_STATUS_INVALID_HYPERCALL_INPUT);
    in.message_type = 7;
    assert_int_equal(xp_post_message(f->xp, 0, &in, sizeof(in)), HV_STATUS_INVALID_PARAMETER);
    expect_warn(f, "message type 7");
    in.message_type = 1;
    in.payload_size = 241;
    assert_int_equal(xp_post_message(f->xp, 0, &in, sizeof(in)), HV_STATUS_INVALID_PARAMETER);
    expect_warn(f, "payload size 241");
    in.payload_size = 4;
    assert_int_equal(xp_post_message(f->xp, 0, &in, sizeof(in)), HV_STATUS_SUCCESS);
    expect_warn(f, "shorter than its header");

    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    /* after contact, only INITIATE_CONTACT may use connection id 4 */
    struct vmbus_channel_relid_msg close = {.header.msgtype = CHANNELMSG_CLOSECHANNEL,
                                            .child_relid = 1};
    assert_int_equal(post(f, VMBUS_MESSAGE_CONNECTION_ID_4, &close, sizeof(close)),
                     HV_STATUS_INVALID_CONNECTION_ID);
    expect_warn(f, "CLOSECHANNEL on connection id 4");
    /* host->guest types, unknown types and truncated messages are dropped */
    struct vmbus_channel_open_result res = {.header.msgtype = CHANNELMSG_OPENCHANNEL_RESULT};
    assert_int_equal(POST(f, res), HV_STATUS_SUCCESS);
    expect_warn(f, "host-only channel message type 6");
    struct vmbus_channel_message_header unknown = {.msgtype = 30};
    assert_int_equal(POST(f, unknown), HV_STATUS_SUCCESS);
    expect_warn(f, "type 30");
    struct vmbus_channel_open_channel open = {.header.msgtype = CHANNELMSG_OPENCHANNEL};
    assert_int_equal(post(f, 1, &open, sizeof(open) - 1), HV_STATUS_SUCCESS);
    expect_warn(f, "OPENCHANNEL of 147 bytes is truncated");
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
}

/* Before INITIATE_CONTACT is accepted, every other message is dropped
 * without an answer or a host action. */
static void test_messages_before_contact(void **state)
{
    struct fx *f = *state;
    static const struct {
        uint32_t type;
        size_t len;
        const char *name;
    } msgs[] = {
        {CHANNELMSG_REQUESTOFFERS, 8, "REQUESTOFFERS"},
        {CHANNELMSG_OPENCHANNEL, sizeof(struct vmbus_channel_open_channel), "OPENCHANNEL"},
        {CHANNELMSG_CLOSECHANNEL, sizeof(struct vmbus_channel_relid_msg), "CLOSECHANNEL"},
        {CHANNELMSG_GPADL_HEADER, sizeof(struct vmbus_channel_gpadl_header) + 16, "GPADL_HEADER"},
        {CHANNELMSG_GPADL_BODY, sizeof(struct vmbus_channel_gpadl_body) + 8, "GPADL_BODY"},
        {CHANNELMSG_GPADL_TEARDOWN, sizeof(struct vmbus_channel_gpadl_teardown), "GPADL_TEARDOWN"},
        {CHANNELMSG_RELID_RELEASED, sizeof(struct vmbus_channel_relid_msg), "RELID_RELEASED"},
        {CHANNELMSG_UNLOAD, 8, "UNLOAD"},
        {CHANNELMSG_TL_CONNECT_REQUEST, sizeof(struct vmbus_channel_tl_connect_request),
         "TL_CONNECT_REQUEST"},
        {CHANNELMSG_MODIFYCHANNEL, sizeof(struct vmbus_channel_modifychannel), "MODIFYCHANNEL"},
    };
    for (unsigned i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        /* a well-formed message naming relid 1, GPADL 0xE1E10, page 16 */
        uint8_t buf[HV_MESSAGE_PAYLOAD_SIZE] = {0};
        uint32_t words[] = {msgs[i].type, 0, 1, FIRST_GPADL, 16 | (1u << 16), 4096, 0, 16};
        memcpy(buf, words, sizeof(words));
        assert_int_equal(post(f, VMBUS_MESSAGE_CONNECTION_ID, buf, msgs[i].len),
                         HV_STATUS_SUCCESS);
        assert_true(no_msg(f));
        char want[64];
        snprintf(want, sizeof(want), "%s before INITIATE_CONTACT", msgs[i].name);
        expect_warn(f, want);
    }
    assert_string_equal(ops(f), "");
    /* none of them left a trace: a normal bring-up follows */
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    gpadl_create(f, 1, 1);
}

/* ------------------------------------------------------------------ */
/* Offers                                                              */

static void test_offers(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    /* a second REQUESTOFFERS changes nothing */
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    expect_warn(f, "REQUESTOFFERS sent twice");
    /* an offer made later is a hot add: offered at once, no second
     * ALLOFFERS_DELIVERED */
    struct vmbus_channel_offer o = {0};
    o.if_type.b[0] = 0xC1;
    o.if_instance.b[0] = NCHANS;
    o.u.pipe.user_def[0] = 0xA0 + NCHANS;
    f->ch[NCHANS] = xp_offer_channel(f->xp, &o, NULL, NULL);
    assert_int_equal(take_offer(f, 3), NCHANS);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "eventfd_add(0x10003)");
    expect_no_warn(f);
}

/* More offers than the message queue holds: the rest wait on the offer
 * list and follow as the guest takes messages, in order, each once, with
 * ALLOFFERS_DELIVERED last. */
static void test_offers_beyond_queue(void **state)
{
    struct fx *f = fx_new(false);
    enum { EXTRA = 2 * SYNIC_QUEUE_MAX };
    struct xp_channel *extra[EXTRA];
    for (unsigned i = 0; i < EXTRA; i++) {
        struct vmbus_channel_offer o = {0};
        o.if_type.b[0] = 0xC2;
        memcpy(o.if_instance.b, &i, sizeof(i));
        extra[i] = xp_offer_channel(f->xp, &o, NULL, NULL);
        assert_non_null(extra[i]);
    }
    xp_offers_ready(f->xp);
    connect(f, VMBUS_VERSION_WIN10_V5_3);
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    unsigned eventfds = 0;
    for (uint32_t relid = 1; relid <= NCHANS + EXTRA; relid++) {
        struct vmbus_channel_offer_channel m;
        assert_int_equal(guest_take(f, &m, sizeof(m)), CHANNELMSG_OFFERCHANNEL);
        assert_int_equal(m.child_relid, relid);
        assert_int_equal(m.connection_id, XP_CHANNEL_CONN_ID_BASE + relid);
        if (relid <= NCHANS) {
            assert_int_equal(m.offer.if_instance.b[0], relid - 1);
        } else {
            unsigned i;
            memcpy(&i, m.offer.if_instance.b, sizeof(i));
            assert_int_equal(m.offer.if_type.b[0], 0xC2);
            assert_int_equal(i, relid - NCHANS - 1);
        }
        eventfds += fake_host_count(&f->fh, FAKE_EVENTFD_ADD, FAKE_ANY_ARG);
        assert_int_equal(fake_host_count(&f->fh, FAKE_EVENTFD_DEL, FAKE_ANY_ARG), 0);
        fake_host_clear(&f->fh);
        f->seen_calls = 0;
    }
    expect_header_only(f, CHANNELMSG_ALLOFFERS_DELIVERED);
    assert_true(no_msg(f));
    assert_int_equal(eventfds + fake_host_count(&f->fh, FAKE_EVENTFD_ADD, FAKE_ANY_ARG),
                     NCHANS + EXTRA);
    assert_false(xp_flush(f->xp));
    expect_no_warn(f);
    fx_free(f);
    (void)state;
}

/* Until the VSPs have made their boot-time offers, REQUESTOFFERS is not
 * completed with ALLOFFERS_DELIVERED. */
static void test_offers_wait_for_ready(void **state)
{
    struct fx *f = fx_new(false);
    connect(f, VMBUS_VERSION_WIN10_V5_3);
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    assert_int_equal(take_offer(f, 1), 0);
    assert_int_equal(take_offer(f, 2), 1);
    assert_true(no_msg(f));
    xp_offers_ready(f->xp);
    expect_header_only(f, CHANNELMSG_ALLOFFERS_DELIVERED);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "eventfd_add(0x10001) eventfd_add(0x10002)");
    fx_free(f);
    (void)state;
}

/* An offer the VSP withdraws before the guest asked for offers is never
 * sent; the next one takes the first relid. */
static void test_rescind_before_offered(void **state)
{
    struct fx *f = *state;
    xp_rescind_channel(f->ch[0]);
    connect(f, VMBUS_VERSION_WIN10_V5_3);
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    assert_int_equal(take_offer(f, 1), 1);
    expect_header_only(f, CHANNELMSG_ALLOFFERS_DELIVERED);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "eventfd_add(0x10001)");
}

/* ------------------------------------------------------------------ */
/* GPADLs                                                              */

static void test_gpadl_created(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    /* all PFNs in the header */
    gpadl_create(f, 1, 1);
    gpadl_create(f, 1, VMBUS_GPADL_HEADER_MAX_PFNS);
    gpadl_create(f, 2, 30);
    /* header + bodies: nothing is answered before the last body */
    uint32_t h = f->next_gpadl++;
    uint32_t first = alloc_pages(f, 60); /* 26 + 28 + 6 */
    assert_int_equal(header_post(f, 2, h, 60, first), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    bodies_post(f, h, first, 26, 54);
    assert_true(no_msg(f));
    bodies_post(f, h, first, 54, 60);
    assert_int_equal(gpadl_created(f, 2, h), 0);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
    expect_no_warn(f);
}

/* A bad GPADL is answered with a failed GPADL_CREATED for the guest's
 * (relid, handle), and leaves nothing behind. */
static void test_gpadl_refused(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    uint32_t used = gpadl_create(f, 1, 1);
    const struct {
        uint32_t relid, handle;
        uint16_t buflen, rangecount;
        uint32_t count, offset;
        uint32_t npfns;   /* PFNs in the header */
        uint64_t pfn;     /* first PFN */
        const char *warn;
    } cases[] = {
        {9, 0x100, 16, 1, 4096, 0, 1, 20, "never offered"},
        {1, used, 16, 1, 4096, 0, 1, 20, "reuses a handle"},
        {2, used, 16, 1, 4096, 0, 1, 20, "reuses a handle"},
        {1, 0x101, 16, 2, 4096, 0, 1, 20, "more than one range"},
        {1, 0x102, 12, 1, 4096, 0, 0, 20, "malformed range_buflen"},
        {1, 0x103, 16, 1, 4096, 4096, 1, 20, "bad byte offset"},
        {1, 0x104, 16, 1, 0, 0, 1, 20, "bad byte offset or count"},
        {1, 0x105, 24, 1, 4 * 4096, 0, 2, 20, "page count does not match"},
        {1, 0x106, 16, 1, 4096, 0, 2, 20, "carries 2 PFNs for 1 pages"},
        {1, 0x107, 24, 1, 2 * 4096, 0, 2, RAM_PAGES - 1, "outside guest memory"},
        {1, 0x108, 16, 1, 4096, 0, 1, 1ull << 52, "outside guest memory"},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(header_post_raw(f, cases[i].relid, cases[i].handle, cases[i].buflen,
                                         cases[i].rangecount, cases[i].count, cases[i].offset,
                                         cases[i].pfn, cases[i].npfns),
                         HV_STATUS_SUCCESS);
        assert_int_equal(gpadl_created(f, cases[i].relid, cases[i].handle), STATUS_UNSUCCESSFUL);
        assert_true(no_msg(f));
        expect_warn(f, cases[i].warn);
        /* nothing left behind: a teardown of the handle is unknown */
        if (cases[i].handle != used) {
            assert_int_equal(teardown_post(f, cases[i].relid, cases[i].handle), 0);
            assert_true(no_msg(f));
            expect_warn(f, "unknown GPADL");
        }
    }

    /* a body with more PFNs than missing fails the GPADL; later bodies for
     * it are not answered */
    uint32_t first = alloc_pages(f, 30);
    uint32_t h = f->next_gpadl++;
    assert_int_equal(header_post(f, 1, h, 30, first), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    uint64_t pfns[5] = {first + 26, first + 27, first + 28, first + 29, first + 29};
    assert_int_equal(body_post(f, h, pfns, 5), HV_STATUS_SUCCESS);
    assert_int_equal(gpadl_created(f, 1, h), STATUS_UNSUCCESSFUL);
    expect_warn(f, "carries 5 PFNs, 4 expected");
    assert_int_equal(body_post(f, h, pfns, 4), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    expect_warn(f, "not being created");
    /* a body PFN outside guest memory fails the GPADL when it completes */
    h = f->next_gpadl++;
    assert_int_equal(header_post(f, 1, h, 30, first), HV_STATUS_SUCCESS);
    pfns[3] = RAM_PAGES;
    assert_int_equal(body_post(f, h, pfns, 4), HV_STATUS_SUCCESS);
    assert_int_equal(gpadl_created(f, 1, h), STATUS_UNSUCCESSFUL);
    expect_warn(f, "page 29");
    assert_true(no_msg(f));
    /* the handle is free again */
    gpadl_post(f, 1, h, first, 30);
    assert_int_equal(gpadl_created(f, 1, h), 0);
    assert_string_equal(ops(f), "");
}

/* ------------------------------------------------------------------ */
/* Open and close                                                      */

static void test_open_close(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    uint32_t g = open_chan(f, 0, 0);
    /* the guest's signals reach the open channel only */
    xp_connection_signalled(f->xp, 0x10001);
    xp_connection_signalled(f->xp, 0x10002);
    xp_connection_signalled(f->xp, 0x10000);
    assert_string_equal(ops(f), "channel_kick(ch0)");
    /* CLOSECHANNEL has no answer; the VSP closes */
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "channel_close(ch0)");
    xp_connection_signalled(f->xp, 0x10001);
    assert_string_equal(ops(f), "");
    /* then the ring GPADL goes */
    assert_int_equal(teardown_post(f, 1, g), HV_STATUS_SUCCESS);
    assert_true(torndown(f, g));
    assert_true(no_msg(f));
    /* and the channel opens again */
    open_chan(f, 0, 1);
    assert_string_equal(ops(f), "");
    expect_no_warn(f);
}

/* A VSP that takes its time: the guest hears of the open only when it is
 * done, and a refusal passes the VSP's status on and frees the ring. */
static void test_open_slow_vsp(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    f->fh.hold_open = true;
    uint32_t g = gpadl_create(f, 1, RING_PAGES);
    assert_int_equal(open_post(f, 1, 5, g, 0, 2), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "channel_open(ch0,120)");
    xp_channel_open_done(f->ch[0], 0);
    assert_int_equal(open_result(f, 1, 5), 0);
    assert_string_equal(ops(f), "channel_kick(ch0)");

    uint32_t g2 = gpadl_create(f, 2, RING_PAGES);
    assert_int_equal(open_post(f, 2, 6, g2, 1, 2), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "channel_open(ch1,120)");
    xp_channel_open_done(f->ch[1], 0xC000000Du);
    expect_warn(f, "relid 2: the VSP refused the open (status 0xc000000d)");
    assert_int_equal(open_result(f, 2, 6), 0xC000000Du);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
    /* the refused channel is closed: no kicks, no close; its GPADL is free */
    xp_connection_signalled(f->xp, 0x10002);
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 2), HV_STATUS_SUCCESS);
    expect_warn(f, "CLOSECHANNEL for relid 2, which is offered");
    assert_string_equal(ops(f), "");
    assert_int_equal(teardown_post(f, 2, g2), HV_STATUS_SUCCESS);
    assert_true(torndown(f, g2));
    /* a late second completion of an open that already finished is ignored */
    xp_channel_open_done(f->ch[1], 0);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
    (void)g;
}

/* OPENCHANNELs the state machine must refuse: each gets a failed
 * OPENCHANNEL_RESULT for the guest's (relid, openid) and no VSP call. */
static void test_open_refused(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    uint32_t ring = gpadl_create(f, 1, RING_PAGES);
    uint32_t other = gpadl_create(f, 2, RING_PAGES);
    /* a ring GPADL that does not start at a page boundary */
    uint32_t unaligned = f->next_gpadl++;
    assert_int_equal(header_post_raw(f, 1, unaligned, 8 + 8 * RING_PAGES, 1,
                                     RING_PAGES * HV_PAGE_SIZE - 16, 16,
                                     alloc_pages(f, RING_PAGES), RING_PAGES),
                     HV_STATUS_SUCCESS);
    assert_int_equal(gpadl_created(f, 1, unaligned), 0);
    /* a GPADL still waiting for its body */
    uint32_t partial = f->next_gpadl++;
    assert_int_equal(header_post(f, 1, partial, 30, alloc_pages(f, 30)), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    expect_no_warn(f);

    const struct {
        uint32_t relid, gpadl, vp, downstream;
        const char *warn;
    } cases[] = {
        {9, ring, 0, 2, "never offered"},
        {1, 0xBAD, 0, 2, "does not exist"},
        {1, partial, 0, 2, "does not exist"},
        {1, other, 0, 2, "created for another channel"},
        {1, unaligned, 0, 2, "not page-aligned"},
        {1, ring, 0, 0, "downstream ring offset"},
        {1, ring, 0, 1, "downstream ring offset"},
        {1, ring, 0, 3, "downstream ring offset"},
        {1, ring, 0, RING_PAGES, "downstream ring offset"},
        {1, ring, 0, 0x80000001u, "downstream ring offset"},
        {1, ring, NVCPUS, 2, "vCPU that does not exist"},
    };
    for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t openid = 100 + i;
        assert_int_equal(open_post(f, cases[i].relid, openid, cases[i].gpadl, cases[i].vp,
                                   cases[i].downstream),
                         HV_STATUS_SUCCESS);
        assert_int_equal(open_result(f, cases[i].relid, openid), STATUS_UNSUCCESSFUL);
        assert_true(no_msg(f));
        expect_warn(f, cases[i].warn);
        assert_string_equal(ops(f), "");
    }

    /* the ring is still good for a proper open */
    assert_int_equal(open_post(f, 1, 1, ring, 0, 2), HV_STATUS_SUCCESS);
    assert_int_equal(open_result(f, 1, 1), 0);
    assert_string_equal(ops(f), "channel_open(ch0,120) channel_kick(ch0)");
    /* OPENCHANNEL of an open channel */
    assert_int_equal(open_post(f, 1, 2, ring, 0, 2), HV_STATUS_SUCCESS);
    assert_int_equal(open_result(f, 1, 2), STATUS_UNSUCCESSFUL);
    expect_warn(f, "not closed");
    /* a ring GPADL that an open channel uses, for its own channel */
    assert_int_equal(open_post(f, 2, 3, ring, 0, 2), HV_STATUS_SUCCESS);
    assert_int_equal(open_result(f, 2, 3), STATUS_UNSUCCESSFUL);
    expect_warn(f, "created for another channel");
    assert_string_equal(ops(f), "");
    /* the first open is untouched */
    xp_connection_signalled(f->xp, 0x10001);
    assert_string_equal(ops(f), "channel_kick(ch0)");
    /* OPENCHANNEL while the VSP is still closing the channel */
    f->fh.hold_close = true;
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "channel_close(ch0)");
    assert_int_equal(open_post(f, 1, 4, ring, 0, 2), HV_STATUS_SUCCESS);
    assert_int_equal(open_result(f, 1, 4), STATUS_UNSUCCESSFUL);
    expect_warn(f, "not closed");
    xp_channel_close_done(f->ch[0]);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
}

/* CLOSECHANNEL of a channel that is not open changes nothing. */
static void test_close_refused(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    expect_warn(f, "CLOSECHANNEL for relid 1, which is offered");
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 9), HV_STATUS_SUCCESS);
    expect_warn(f, "relid 9, which was never offered");
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 0), HV_STATUS_SUCCESS);
    expect_warn(f, "relid 0, which was never offered");
    open_chan(f, 0, 0);
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "channel_close(ch0)");
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    expect_warn(f, "which is offered");
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
}

/* GPADL_TEARDOWN of the ring of an open channel is answered only once the
 * channel's close has finished; other teardowns that cannot be honoured
 * are ignored. */
static void test_gpadl_teardown_in_use(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    uint32_t g = open_chan(f, 0, 0);
    assert_int_equal(teardown_post(f, 1, g), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    expect_no_warn(f);
    assert_string_equal(ops(f), "");
    /* the channel stays open until the guest closes it */
    xp_connection_signalled(f->xp, 0x10001);
    assert_string_equal(ops(f), "channel_kick(ch0)");
    assert_int_equal(teardown_post(f, 1, g), HV_STATUS_SUCCESS);
    expect_warn(f, "repeated");
    /* the GPADL can no longer be opened on, either */
    assert_int_equal(teardown_post(f, 2, g), HV_STATUS_SUCCESS);
    expect_warn(f, "belongs to relid 1");
    assert_int_equal(teardown_post(f, 1, 0xBAD), HV_STATUS_SUCCESS);
    expect_warn(f, "unknown GPADL 0xbad");
    assert_true(no_msg(f));
    f->fh.hold_close = true;
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "channel_close(ch0)");
    assert_true(no_msg(f)); /* the VSP may still use the ring */
    xp_channel_close_done(f->ch[0]);
    assert_true(torndown(f, g));
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
    expect_no_warn(f);
}

/* ------------------------------------------------------------------ */
/* Rescind                                                             */

static void test_rescind_open_channel(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    uint32_t g = open_chan(f, 0, 0);
    xp_rescind_channel(f->ch[0]);
    struct vmbus_channel_rescind_offer r;
    assert_int_equal(guest_take(f, &r, sizeof(r)), CHANNELMSG_RESCIND_CHANNELOFFER);
    assert_int_equal(r.child_relid, 1);
    assert_string_equal(ops(f), "channel_close(ch0)");
    /* Linux closes the rescinded channel (no warning: expected) and releases
     * the relid; it skips the ring teardown */
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "");
    assert_int_equal(relid_post(f, CHANNELMSG_RELID_RELEASED, 1), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "eventfd_del(0x10001)");
    assert_true(no_msg(f));
    expect_no_warn(f);
    /* the relid is gone with its GPADLs */
    xp_connection_signalled(f->xp, 0x10001);
    assert_string_equal(ops(f), "");
    assert_int_equal(teardown_post(f, 1, g), HV_STATUS_SUCCESS);
    expect_warn(f, "unknown GPADL");
    assert_int_equal(relid_post(f, CHANNELMSG_RELID_RELEASED, 1), HV_STATUS_SUCCESS);
    expect_warn(f, "which was not rescinded");
    /* and the next offer gets it */
    struct vmbus_channel_offer o = {0};
    o.if_type.b[0] = 0xC1;
    o.if_instance.b[0] = NCHANS;
    o.u.pipe.user_def[0] = 0xA0 + NCHANS;
    f->ch[NCHANS] = xp_offer_channel(f->xp, &o, NULL, NULL);
    assert_int_equal(take_offer(f, 1), NCHANS);
    assert_string_equal(ops(f), "eventfd_add(0x10001)");
    assert_true(no_msg(f));
}

static void test_rescind_closed_channel(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    /* RELID_RELEASED for a channel that was not rescinded is ignored */
    assert_int_equal(relid_post(f, CHANNELMSG_RELID_RELEASED, 2), HV_STATUS_SUCCESS);
    expect_warn(f, "RELID_RELEASED for relid 2, which was not rescinded");
    assert_string_equal(ops(f), "");
    xp_rescind_channel(f->ch[1]);
    struct vmbus_channel_rescind_offer r;
    assert_int_equal(guest_take(f, &r, sizeof(r)), CHANNELMSG_RESCIND_CHANNELOFFER);
    assert_int_equal(r.child_relid, 2);
    assert_string_equal(ops(f), ""); /* nothing to close */
    /* a rescinded channel cannot be opened */
    uint32_t g = gpadl_create(f, 2, RING_PAGES);
    assert_int_equal(open_post(f, 2, 2, g, 0, 2), HV_STATUS_SUCCESS);
    assert_int_equal(open_result(f, 2, 2), STATUS_UNSUCCESSFUL);
    expect_warn(f, "not closed");
    assert_int_equal(relid_post(f, CHANNELMSG_RELID_RELEASED, 2), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "eventfd_del(0x10002)");
    assert_true(no_msg(f));
    expect_no_warn(f);
    /* rescinding it again sends nothing */
    xp_rescind_channel(f->ch[1]);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
}

/* RELID_RELEASED may overtake a slow VSP close: the relid goes at once,
 * the close finishes later without touching the freed GPADL. */
static void test_rescind_slow_close(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    open_chan(f, 0, 0);
    f->fh.hold_close = true;
    xp_rescind_channel(f->ch[0]);
    struct vmbus_channel_rescind_offer r;
    assert_int_equal(guest_take(f, &r, sizeof(r)), CHANNELMSG_RESCIND_CHANNELOFFER);
    assert_string_equal(ops(f), "channel_close(ch0)");
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    assert_int_equal(relid_post(f, CHANNELMSG_RELID_RELEASED, 1), HV_STATUS_SUCCESS);
    expect_warn(f, "before its close finished");
    assert_string_equal(ops(f), "eventfd_del(0x10001)");
    xp_channel_close_done(f->ch[0]);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
    /* a late open completion changes nothing either */
    xp_channel_open_done(f->ch[0], 0);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
}

/* A VSP that finds its guest breaking the ring protocol tears the channel
 * down the way a rescind does. */
static void test_channel_fault(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    open_chan(f, 0, 0);
    xp_channel_fault(f->ch[0], "bad packet");
    if (f->warns != 1 || !strstr(f->warn, "relid 1") || !strstr(f->warn, "bad packet"))
        fail_msg("fault not logged with its relid and reason: %s", f->warn);
    f->warns = 0;
    struct vmbus_channel_rescind_offer r;
    assert_int_equal(guest_take(f, &r, sizeof(r)), CHANNELMSG_RESCIND_CHANNELOFFER);
    assert_int_equal(r.child_relid, 1);
    assert_string_equal(ops(f), "channel_close(ch0)");
    /* a second fault report changes nothing */
    xp_channel_fault(f->ch[0], "bad packet");
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
    assert_int_equal(relid_post(f, CHANNELMSG_RELID_RELEASED, 1), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "eventfd_del(0x10001)");
    expect_no_warn(f);
}

/* A channel whose close is still running when the guest unloads is no
 * longer known to the guest (its relid is gone): withdrawing it must not
 * send the guest a rescind, and it is not offered again. */
static void test_rescind_after_unload(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    open_chan(f, 0, 0);
    f->fh.hold_close = true;
    struct vmbus_channel_message_header u = {.msgtype = CHANNELMSG_UNLOAD};
    assert_int_equal(POST(f, u), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "channel_close(ch0) eventfd_del(0x10001) eventfd_del(0x10002)");
    expect_header_only(f, CHANNELMSG_UNLOAD_RESPONSE);
    /* the next kernel connects while the VSP is still closing */
    connect(f, VMBUS_VERSION_WIN10_V5_3);
    xp_rescind_channel(f->ch[0]);
    assert_true(no_msg(f));
    xp_channel_close_done(f->ch[0]);
    assert_true(no_msg(f));
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    assert_int_equal(take_offer(f, 1), 1);
    expect_header_only(f, CHANNELMSG_ALLOFFERS_DELIVERED);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "eventfd_add(0x10001)");
    expect_no_warn(f);
}

/* An offer whose event connection cannot be set up waits, and so does
 * ALLOFFERS_DELIVERED; both follow once it can. */
static void test_offer_waits_for_eventfd(void **state)
{
    struct fx *f = *state;
    connect(f, VMBUS_VERSION_WIN10_V5_3);
    f->fh.eventfd_add_ret = -EMFILE;
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "eventfd_add(0x10001)");
    f->warns = 0; /* logged as a host error */
    f->fh.eventfd_add_ret = 0;
    xp_eom(f->xp, 0);
    assert_int_equal(take_offer(f, 1), 0);
    assert_int_equal(take_offer(f, 2), 1);
    expect_header_only(f, CHANNELMSG_ALLOFFERS_DELIVERED);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "eventfd_add(0x10001) eventfd_add(0x10002)");
}

/* Channels need someone to run their VSP: without xp_set_channel_ops an
 * offer is refused instead of failing at the guest's first open. */
static void test_offer_needs_channel_ops(void **state)
{
    struct fake_host fh;
    fake_host_init(&fh);
    struct xpartition *xp = xp_create(8, "noops", 1, &fake_transport_ops, &fh);
    assert_non_null(xp);
    struct vmbus_channel_offer o = {0};
    assert_null(xp_offer_channel(xp, &o, NULL, NULL));
    xp_set_channel_ops(xp, &fake_channel_ops, &fh);
    assert_non_null(xp_offer_channel(xp, &o, NULL, NULL));
    xp_destroy(xp);
}

/* A guest cannot pile up half-sent GPADLs: beyond XP_MAX_PENDING_GPADLS
 * headers without their bodies, new ones are refused. */
static void test_gpadl_pending_limit(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    uint32_t first = alloc_pages(f, 30);
    for (uint32_t i = 0; i < XP_MAX_PENDING_GPADLS; i++)
        assert_int_equal(header_post(f, 1, 0x100 + i, 30, first), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    expect_no_warn(f);
    assert_int_equal(header_post(f, 1, 0x200, 30, first), HV_STATUS_SUCCESS);
    assert_int_equal(gpadl_created(f, 1, 0x200), STATUS_UNSUCCESSFUL);
    expect_warn(f, "limit of incomplete GPADLs");
    /* completing one makes room */
    bodies_post(f, 0x100, first, 26, 30);
    assert_int_equal(gpadl_created(f, 1, 0x100), 0);
    gpadl_post(f, 1, 0x200, first, 30);
    assert_int_equal(gpadl_created(f, 1, 0x200), 0);
    assert_true(no_msg(f));
    expect_no_warn(f);
}

/* ------------------------------------------------------------------ */
/* UNLOAD                                                              */

static void test_unload(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    open_chan(f, 0, 0);
    gpadl_create(f, 2, 8);
    struct vmbus_channel_message_header u = {.msgtype = CHANNELMSG_UNLOAD};
    assert_int_equal(POST(f, u), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "channel_close(ch0) eventfd_del(0x10001) eventfd_del(0x10002)");
    expect_header_only(f, CHANNELMSG_UNLOAD_RESPONSE);
    assert_true(no_msg(f));
    expect_no_warn(f);
    /* disconnected: nothing but INITIATE_CONTACT is taken */
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    expect_warn(f, "before INITIATE_CONTACT");
    xp_connection_signalled(f->xp, 0x10001);
    assert_string_equal(ops(f), "");
    /* the next kernel starts from scratch: same relids, same GPADL handles */
    f->next_gpadl = FIRST_GPADL;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    open_chan(f, 0, 0);
    open_chan(f, 1, 1);
    assert_true(no_msg(f));
}

/* Messages still queued for the old connection are dropped; the one in
 * the slot stays (it is the guest's), and UNLOAD_RESPONSE follows it. */
static void test_unload_drops_queued_messages(void **state)
{
    struct fx *f = *state;
    connect(f, VMBUS_VERSION_WIN10_V5_3);
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    /* the guest does not look yet: OFFER(1) in the slot, OFFER(2) and
     * ALLOFFERS_DELIVERED queued */
    h.msgtype = CHANNELMSG_UNLOAD;
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "eventfd_add(0x10001) eventfd_add(0x10002) "
                                "eventfd_del(0x10001) eventfd_del(0x10002)");
    struct vmbus_channel_offer_channel m;
    assert_int_equal(guest_take(f, &m, sizeof(m)), CHANNELMSG_OFFERCHANNEL);
    assert_int_equal(m.child_relid, 1);
    expect_header_only(f, CHANNELMSG_UNLOAD_RESPONSE);
    assert_true(no_msg(f));
}

/* UNLOAD exists from 3.0 on: an older guest's UNLOAD is dropped. */
static void test_unload_needs_3_0(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN8);
    struct vmbus_channel_message_header u = {.msgtype = CHANNELMSG_UNLOAD};
    assert_int_equal(POST(f, u), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    expect_warn(f, "UNLOAD is not part of VMBus 2.4");
    assert_string_equal(ops(f), "");
    open_chan(f, 0, 0); /* still connected */
}

/* UNLOAD while a VSP is still opening a channel: the VSP is told to close,
 * its late open completion is not answered, and the channel is offered
 * again to the next connection once its close is done. */
static void test_unload_during_open(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    f->fh.hold_open = true;
    f->fh.hold_close = true;
    uint32_t g = gpadl_create(f, 1, RING_PAGES);
    assert_int_equal(open_post(f, 1, 1, g, 0, 2), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "channel_open(ch0,120)");
    struct vmbus_channel_message_header u = {.msgtype = CHANNELMSG_UNLOAD};
    assert_int_equal(POST(f, u), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "channel_close(ch0) eventfd_del(0x10001) eventfd_del(0x10002)");
    expect_header_only(f, CHANNELMSG_UNLOAD_RESPONSE);
    xp_channel_open_done(f->ch[0], 0);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
    /* reconnected before the close is done: only the other channel is
     * offered; the closing one follows when its close finishes */
    connect(f, VMBUS_VERSION_WIN10_V5_3);
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    assert_int_equal(take_offer(f, 1), 1);
    expect_header_only(f, CHANNELMSG_ALLOFFERS_DELIVERED);
    assert_true(no_msg(f));
    xp_channel_close_done(f->ch[0]);
    assert_int_equal(take_offer(f, 2), 0);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "eventfd_add(0x10001) eventfd_add(0x10002)");
    f->fh.hold_open = f->fh.hold_close = false;
    open_chan(f, 0, 0);
    expect_no_warn(f);
}

/* A guest reset forgets the connection and the SynIC pages: channels
 * close, nothing is delivered until the rebooted guest sets its SynIC up
 * again, then it starts from scratch. */
static void test_reset(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    open_chan(f, 0, 0);
    xp_reset(f->xp);
    assert_string_equal(ops(f), "channel_close(ch0) eventfd_del(0x10001) eventfd_del(0x10002)");
    assert_true(no_msg(f));
    xp_connection_signalled(f->xp, 0x10001);
    assert_string_equal(ops(f), "");
    /* the new guest's INITIATE_CONTACT is answered once its SIMP is set */
    assert_int_equal(initiate(f, VMBUS_VERSION_WIN10_V5_3, 0), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    assert_true(xp_flush(f->xp));
    assert_int_equal(xp_set_synic(f->xp, 0, 1, PAGE(SIMP_PAGE(0)) | 1, PAGE(SIEFP_PAGE(0)) | 1),
                     0);
    assert_int_equal(version_response(f, 0), 1);
    request_offers(f);
    open_chan(f, 0, 0);
    expect_no_warn(f);
}

/* Messages wait while the guest has its SIMP disabled and go out when it
 * enables it again; a SIMP outside guest memory leaves them waiting. */
static void test_simp_disabled(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    assert_int_equal(xp_set_synic(f->xp, 0, 1, PAGE(SIMP_PAGE(0)), PAGE(SIEFP_PAGE(0)) | 1), 0);
    xp_rescind_channel(f->ch[1]);
    assert_true(no_msg(f));
    assert_true(xp_flush(f->xp));
    assert_int_equal(xp_set_synic(f->xp, 0, 1, PAGE(RAM_PAGES) | 1, PAGE(SIEFP_PAGE(0)) | 1), 0);
    expect_warn(f, "SIMP 0x100001 is outside guest memory");
    assert_true(xp_flush(f->xp));
    assert_true(no_msg(f));
    assert_int_equal(xp_set_synic(f->xp, 0, 1, PAGE(SIMP_PAGE(0)) | 1, PAGE(SIEFP_PAGE(0)) | 1),
                     0);
    struct vmbus_channel_rescind_offer r;
    assert_int_equal(guest_take(f, &r, sizeof(r)), CHANNELMSG_RESCIND_CHANNELOFFER);
    assert_int_equal(r.child_relid, 2);
    assert_false(xp_flush(f->xp));
    assert_true(no_msg(f));
    assert_int_equal(xp_set_synic(f->xp, NVCPUS, 1, 0, 0), -EINVAL);
}

/* ------------------------------------------------------------------ */
/* The SynIC message slot                                              */

/* One message at a time: while the guest holds the slot the rest wait,
 * msg_pending asks for an EOM, and each EOM delivers the next. */
static void test_slot_busy_pending_eom(void **state)
{
    struct fx *f = *state;
    connect(f, VMBUS_VERSION_WIN10_V5_3);
    struct hv_message *s = slot(f, 0);
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    unsigned irqs = f->fh.signals[0];
    f->fh.msgs_waiting = 0;
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    assert_int_equal(f->fh.signals[0], irqs + 1);
    assert_int_equal(s->header.message_type, HV_MESSAGE_TYPE_VMBUS);
    assert_int_equal(s->header.message_flags, HV_MESSAGE_FLAG_PENDING);
    /* messages wait: the host is asked for a retry (the EOM may never come) */
    assert_true(f->fh.msgs_waiting > 0);
    assert_true(xp_flush(f->xp));
    /* an EOM while the guest still holds the slot delivers nothing */
    xp_eom(f->xp, 0);
    assert_int_equal(f->fh.signals[0], irqs + 1);
    struct vmbus_channel_offer_channel m;
    memcpy(&m, s->payload, sizeof(m));
    assert_int_equal(m.child_relid, 1);
    /* the guest frees the slot and writes EOM (msg_pending was set) */
    assert_int_equal(take_offer(f, 1), 0);
    assert_int_equal(f->fh.signals[0], irqs + 2);
    assert_int_equal(s->header.message_flags, HV_MESSAGE_FLAG_PENDING); /* ALLOFFERS waits */
    assert_int_equal(take_offer(f, 2), 1);
    assert_int_equal(s->header.message_flags, 0); /* the last one */
    assert_false(xp_flush(f->xp));
    expect_header_only(f, CHANNELMSG_ALLOFFERS_DELIVERED);
    assert_int_equal(f->fh.signals[0], irqs + 3);
    assert_true(no_msg(f));
    xp_eom(f->xp, 0);
    assert_int_equal(f->fh.signals[0], irqs + 3);
    /* a reply that finds the slot free needs no retry */
    f->fh.msgs_waiting = 0;
    struct vmbus_channel_gpadl_header g = {.header.msgtype = CHANNELMSG_GPADL_HEADER,
                                           .child_relid = 9};
    uint8_t buf[sizeof(g) + 16] = {0};
    memcpy(buf, &g, sizeof(g));
    assert_int_equal(post(f, 1, buf, sizeof(buf)), HV_STATUS_SUCCESS);
    assert_int_equal(gpadl_created(f, 9, 0), STATUS_UNSUCCESSFUL);
    assert_int_equal(f->fh.msgs_waiting, 0);
    f->warns = 0;
}

/* A slot holding some other message (a timer's) is never overwritten: the
 * host sets msg_pending in it and delivers after the guest's EOM. */
static void test_slot_held_by_other_message(void **state)
{
    struct fx *f = *state;
    connect(f, VMBUS_VERSION_WIN10_V5_3);
    struct hv_message *s = slot(f, 0);
    s->header.message_type = HV_MESSAGE_TIMER_EXPIRED;
    s->header.payload_size = 16;
    s->header.message_flags = 0;
    memset(s->payload, 0x5A, 16);
    unsigned irqs = f->fh.signals[0];
    struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
    assert_int_equal(POST(f, h), HV_STATUS_SUCCESS);
    assert_int_equal(s->header.message_type, HV_MESSAGE_TIMER_EXPIRED);
    assert_int_equal(s->header.payload_size, 16);
    assert_int_equal(s->payload[0], 0x5A);
    assert_int_equal(s->header.message_flags, HV_MESSAGE_FLAG_PENDING);
    assert_int_equal(f->fh.signals[0], irqs);
    /* the guest handles its timer message and writes EOM */
    s->header.message_type = HV_MESSAGE_TYPE_NONE;
    xp_eom(f->xp, 0);
    assert_int_equal(f->fh.signals[0], irqs + 1);
    assert_int_equal(take_offer(f, 1), 0);
    assert_int_equal(take_offer(f, 2), 1);
    expect_header_only(f, CHANNELMSG_ALLOFFERS_DELIVERED);
    assert_true(no_msg(f));
}

/* The VMM may report the SynIC pages before the memory they lie in, and
 * the SINT route last: the reply that waited goes out when the memory
 * comes, and its interrupt is raised again when the route comes. */
static void test_late_plumbing(void **state)
{
    struct fx *f = *state;
    xp_close_all(f->xp);
    xp_destroy(f->xp);
    fake_host_init(&f->fh);
    f->seen_calls = 0;
    memset(f->signals_seen, 0, sizeof(f->signals_seen));
    memset(f->ram, 0, RAM_SIZE);
    f->xp = fake_host_partition(&f->fh, 7, "xptest", NVCPUS);
    assert_non_null(f->xp);
    assert_int_equal(xp_set_synic(f->xp, 0, 1, PAGE(SIMP_PAGE(0)) | 1, PAGE(SIEFP_PAGE(0)) | 1),
                     0);
    assert_int_equal(f->warns, 2); /* SIMP and SIEFP outside guest memory (so far) */
    f->warns = 0;
    assert_int_equal(initiate(f, VMBUS_VERSION_WIN10_V5_3, 0), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    assert_int_equal(xp_add_region(f->xp, 0, RAM_SIZE, dup(f->memfd), 0), 0);
    assert_int_equal(f->fh.signals[0], 1);
    /* the interrupt went nowhere (no route yet): the route raises it again */
    assert_int_equal(xp_set_sint_route(f->xp, 0), 0);
    assert_int_equal(f->fh.signals[0], 2);
    assert_int_equal(version_response(f, 0), 1);
    expect_no_warn(f);
}

/* A guest that posts while never taking the answers meets back-pressure
 * (INSUFFICIENT_BUFFERS) instead of growing queues; no answer is lost. */
static void test_queue_full_back_pressure(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    log_set_level(LOG_ERR); /* one warning per bad GPADL */
    uint32_t accepted = 0, st = HV_STATUS_SUCCESS;
    struct vmbus_channel_gpadl_header h = {.header.msgtype = CHANNELMSG_GPADL_HEADER,
                                           .child_relid = 9, /* never offered: refused */
                                           .range_buflen = 16,
                                           .rangecount = 1};
    uint8_t buf[36] = {0};
    while (accepted < 4 * SYNIC_QUEUE_MAX) {
        h.gpadl = 0x1000 + accepted;
        memcpy(buf, &h, sizeof(h));
        st = post(f, 1, buf, sizeof(buf));
        if (st != HV_STATUS_SUCCESS)
            break;
        accepted++;
    }
    log_set_level(LOG_WARN);
    assert_int_equal(st, HV_STATUS_INSUFFICIENT_BUFFERS);
    assert_true(accepted >= 2);
    /* every accepted message is answered, in order */
    for (uint32_t i = 0; i < accepted; i++)
        assert_int_equal(gpadl_created(f, 9, 0x1000 + i), STATUS_UNSUCCESSFUL);
    assert_true(no_msg(f));
    assert_false(xp_flush(f->xp));
    /* and the guest can post again */
    gpadl_create(f, 1, 1);
    assert_string_equal(ops(f), "");
    f->warns = 0;
}

/* ------------------------------------------------------------------ */
/* MODIFYCHANNEL and signalling the guest                               */

/* The host signals the channel's relid bit on its target vCPU. */
static void expect_notify_on(struct fx *f, uint32_t relid, uint32_t vp)
{
    for (uint32_t v = 0; v < NVCPUS; v++)
        memset(event_flags(f, v), 0, HV_EVENT_FLAGS_BYTES);
    unsigned before[NVCPUS];
    for (uint32_t v = 0; v < NVCPUS; v++)
        before[v] = f->fh.signals[v];
    xp_channel_notify_guest(f->ch[relid - 1]);
    for (uint32_t v = 0; v < NVCPUS; v++) {
        uint8_t *fl = event_flags(f, v);
        for (unsigned b = 0; b < HV_EVENT_FLAGS_BYTES; b++) {
            uint8_t want = v == vp && b == relid / 8 ? (uint8_t)(1u << (relid % 8)) : 0;
            assert_int_equal(fl[b], want);
        }
        assert_int_equal(f->fh.signals[v], before[v] + (v == vp ? 1 : 0));
        f->signals_seen[v] = f->fh.signals[v];
    }
}

static uint32_t modify_response(struct fx *f, uint32_t relid)
{
    struct vmbus_channel_modifychannel_response r;
    if (guest_take(f, &r, sizeof(r)) != CHANNELMSG_MODIFYCHANNEL_RESPONSE ||
        r.child_relid != relid)
        return NOT_OPEN;
    return r.status;
}

static void test_modify_channel_5_3(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    open_chan(f, 0, 0);
    expect_notify_on(f, 1, 0);
    assert_int_equal(modify_post(f, 1, 1), HV_STATUS_SUCCESS);
    assert_int_equal(modify_response(f, 1), 0);
    expect_notify_on(f, 1, 1);
    /* refused: a vCPU that does not exist, a channel that is not open */
    assert_int_equal(modify_post(f, 1, NVCPUS), HV_STATUS_SUCCESS);
    assert_int_equal(modify_response(f, 1), STATUS_UNSUCCESSFUL);
    expect_warn(f, "MODIFYCHANNEL to vp 2");
    expect_notify_on(f, 1, 1);
    assert_int_equal(modify_post(f, 2, 0), HV_STATUS_SUCCESS);
    assert_int_equal(modify_response(f, 2), STATUS_UNSUCCESSFUL);
    expect_warn(f, "relid 2, which is not open");
    assert_int_equal(modify_post(f, 9, 0), HV_STATUS_SUCCESS);
    assert_int_equal(modify_response(f, 9), STATUS_UNSUCCESSFUL);
    expect_warn(f, "relid 9, which is not open");
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
    /* back to vp 0 */
    assert_int_equal(modify_post(f, 1, 0), HV_STATUS_SUCCESS);
    assert_int_equal(modify_response(f, 1), 0);
    expect_notify_on(f, 1, 0);
    expect_no_warn(f);
}

/* 4.1 guests send MODIFYCHANNEL and expect no answer; 4.0 ones may not
 * send it at all. */
static void test_modify_channel_older(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_RS3);
    open_chan(f, 0, 0);
    assert_int_equal(modify_post(f, 1, 1), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    expect_notify_on(f, 1, 1);
    fx_free(f);

    *state = f = fx_new(true);
    bringup(f, VMBUS_VERSION_WIN10);
    open_chan(f, 0, 0);
    assert_int_equal(modify_post(f, 1, 1), HV_STATUS_SUCCESS);
    assert_true(no_msg(f));
    expect_warn(f, "MODIFYCHANNEL is not part of VMBus 4.0");
    expect_notify_on(f, 1, 0);
}

/* Pre-2.4 guests share connection id 2 and the interrupt page: the guest
 * marks its channel in the page's second half before signalling; the host
 * marks the first half and sets event flag 0. */
static void test_legacy_interrupt_page(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN7);
    open_chan(f, 0, 0);
    open_chan(f, 1, 0);
    uint8_t *ip = f->ram + PAGE(INTPAGE_PAGE);
    ip[HV_PAGE_SIZE / 2] = 1u << 2; /* relid 2 */
    xp_connection_signalled(f->xp, VMBUS_EVENT_CONNECTION_ID);
    assert_string_equal(ops(f), "channel_kick(ch1)");
    assert_int_equal(ip[HV_PAGE_SIZE / 2], 0); /* consumed */
    xp_connection_signalled(f->xp, VMBUS_EVENT_CONNECTION_ID);
    assert_string_equal(ops(f), "");

    memset(ip, 0, HV_PAGE_SIZE / 2);
    memset(event_flags(f, 0), 0, HV_EVENT_FLAGS_BYTES);
    unsigned irqs = f->fh.signals[0];
    xp_channel_notify_guest(f->ch[0]);
    assert_int_equal(ip[0], 1u << 1);
    assert_int_equal(event_flags(f, 0)[0], 1);
    assert_int_equal(f->fh.signals[0], irqs + 1);
    f->signals_seen[0] = f->fh.signals[0];
}

/* hv_sock connects are refused (no provider): the answer echoes the ids. */
static void test_tl_connect_refused(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10);
    struct vmbus_channel_tl_connect_request m = {.header.msgtype = CHANNELMSG_TL_CONNECT_REQUEST};
    memset(&m.guest_endpoint_id, 0x11, 16);
    memset(&m.host_service_id, 0x22, 16);
    assert_int_equal(POST(f, m), HV_STATUS_SUCCESS);
    struct vmbus_channel_tl_connect_result r;
    assert_int_equal(guest_take(f, &r, sizeof(r)), CHANNELMSG_TL_CONNECT_RESULT);
    assert_memory_equal(&r.guest_endpoint_id, &m.guest_endpoint_id, 16);
    assert_memory_equal(&r.host_service_id, &m.host_service_id, 16);
    assert_int_equal(r.status, 0xC0000236u);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
}

/* ------------------------------------------------------------------ */
/* Subchannels                                                         */

/* The OFFERCHANNEL of subchannel `index` of channel 0: the primary's offer
 * with its own relid and connection id. */
static void take_sub_offer(struct fx *f, uint16_t index, uint32_t expect_relid)
{
    struct vmbus_channel_offer_channel m;
    assert_int_equal(guest_take(f, &m, sizeof(m)), CHANNELMSG_OFFERCHANNEL);
    assert_int_equal(m.offer.sub_channel_index, index);
    assert_int_equal(m.offer.if_type.b[0], 0xC1);
    assert_int_equal(m.offer.if_instance.b[0], 0);
    assert_int_equal(m.offer.u.pipe.user_def[0], 0xA0);
    assert_int_equal(m.child_relid, expect_relid);
    assert_int_equal(m.connection_id, XP_CHANNEL_CONN_ID_BASE + expect_relid);
    assert_int_equal(m.is_dedicated_interrupt, 1);
    assert_int_equal(m.monitor_allocated, 0);
}

/* The guest closes the primary while a subchannel is open: the subchannel
 * is closed and rescinded, and the primary's close reaches the VSP only
 * after the subchannel's returned.  The released relid comes back for the
 * next subchannel after a re-open. */
static void test_subchannel_closes_first(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    uint32_t g = open_chan(f, 0, 0);
    f->ch[NCHANS] = xp_offer_subchannel(f->ch[0], 1, NULL, NULL);
    assert_non_null(f->ch[NCHANS]);
    take_sub_offer(f, 1, 3);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "eventfd_add(0x10003)");
    f->relid[NCHANS] = 3;
    open_chan(f, NCHANS, 1);

    f->fh.hold_close = true;
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "channel_close(ch2)");
    struct vmbus_channel_rescind_offer r;
    assert_int_equal(guest_take(f, &r, sizeof(r)), CHANNELMSG_RESCIND_CHANNELOFFER);
    assert_int_equal(r.child_relid, 3);
    assert_true(no_msg(f));
    xp_channel_close_done(f->ch[NCHANS]);
    assert_string_equal(ops(f), "channel_close(ch0)");
    xp_channel_close_done(f->ch[0]);
    assert_string_equal(ops(f), "");
    /* Linux closes the rescinded subchannel and releases it: it is freed */
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 3), HV_STATUS_SUCCESS);
    assert_int_equal(relid_post(f, CHANNELMSG_RELID_RELEASED, 3), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "eventfd_del(0x10003)");
    f->ch[NCHANS] = NULL;
    assert_true(no_msg(f));
    expect_no_warn(f);

    /* rmmod done; modprobe: the primary opens again and index 1 is free,
     * with the same relid */
    f->fh.hold_close = false;
    assert_int_equal(teardown_post(f, 1, g), HV_STATUS_SUCCESS);
    assert_true(torndown(f, g));
    open_chan(f, 0, 0);
    f->ch[NCHANS] = xp_offer_subchannel(f->ch[0], 1, NULL, NULL);
    assert_non_null(f->ch[NCHANS]);
    take_sub_offer(f, 1, 3);
    assert_string_equal(ops(f), "eventfd_add(0x10003)");
    expect_no_warn(f);
}

/* The VSP rescinds a primary with an open subchannel: the subchannel's
 * rescind goes out first, and the primary's close waits for the
 * subchannel's. */
static void test_subchannel_primary_rescinded(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    open_chan(f, 0, 0);
    f->ch[NCHANS] = xp_offer_subchannel(f->ch[0], 1, NULL, NULL);
    take_sub_offer(f, 1, 3);
    assert_string_equal(ops(f), "eventfd_add(0x10003)");
    f->relid[NCHANS] = 3;
    open_chan(f, NCHANS, 0);
    f->fh.hold_close = true;
    xp_rescind_channel(f->ch[0]);
    struct vmbus_channel_rescind_offer r;
    assert_int_equal(guest_take(f, &r, sizeof(r)), CHANNELMSG_RESCIND_CHANNELOFFER);
    assert_int_equal(r.child_relid, 3);
    assert_int_equal(guest_take(f, &r, sizeof(r)), CHANNELMSG_RESCIND_CHANNELOFFER);
    assert_int_equal(r.child_relid, 1);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "channel_close(ch2)");
    xp_channel_close_done(f->ch[NCHANS]);
    assert_string_equal(ops(f), "channel_close(ch0)");
    xp_channel_close_done(f->ch[0]);
    /* Linux: the driver's remove closes both, then releases both relids */
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 3), HV_STATUS_SUCCESS);
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    assert_int_equal(relid_post(f, CHANNELMSG_RELID_RELEASED, 3), HV_STATUS_SUCCESS);
    assert_int_equal(relid_post(f, CHANNELMSG_RELID_RELEASED, 1), HV_STATUS_SUCCESS);
    f->ch[NCHANS] = NULL;
    assert_string_equal(ops(f), "eventfd_del(0x10003) eventfd_del(0x10001)");
    assert_true(no_msg(f));
    expect_no_warn(f);
}

/* A subchannel that is closed when its primary closes is just rescinded;
 * UNLOAD forgets the rest, and the next connection offers no subchannel. */
static void test_subchannel_unload(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    open_chan(f, 0, 0);
    assert_non_null(xp_offer_subchannel(f->ch[0], 2, NULL, NULL));
    take_sub_offer(f, 2, 3);
    assert_string_equal(ops(f), "eventfd_add(0x10003)");
    struct vmbus_channel_message_header u = {.msgtype = CHANNELMSG_UNLOAD};
    assert_int_equal(POST(f, u), HV_STATUS_SUCCESS);
    /* no RESCIND for the guest that unloads: UNLOAD_RESPONSE only */
    expect_header_only(f, CHANNELMSG_UNLOAD_RESPONSE);
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "channel_close(ch0) eventfd_del(0x10001) eventfd_del(0x10002) "
                                "eventfd_del(0x10003)");
    bringup(f, VMBUS_VERSION_WIN10_V5_3); /* the primaries alone */
    expect_no_warn(f);
}

/* What vsp_subchannel_offer refuses, each with a warning naming the VM and
 * the primary's relid. */
static void test_subchannel_refused(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    assert_null(xp_offer_subchannel(f->ch[0], 1, NULL, NULL));
    expect_warn(f, "relid 1: subchannel 1 refused: the primary is not open");
    open_chan(f, 0, 0);
    assert_null(xp_offer_subchannel(f->ch[0], 0, NULL, NULL));
    expect_warn(f, "relid 1: subchannel 0 refused: the index is outside 1..64");
    assert_null(xp_offer_subchannel(f->ch[0], XP_MAX_SUBCHANNELS + 1, NULL, NULL));
    expect_warn(f, "subchannel 65 refused: the index is outside 1..64");
    struct xp_channel *sub = xp_offer_subchannel(f->ch[0], XP_MAX_SUBCHANNELS, NULL, NULL);
    assert_non_null(sub);
    take_sub_offer(f, XP_MAX_SUBCHANNELS, 3);
    assert_string_equal(ops(f), "eventfd_add(0x10003)");
    assert_null(xp_offer_subchannel(f->ch[0], XP_MAX_SUBCHANNELS, NULL, NULL));
    expect_warn(f, "relid 1: subchannel 64 refused: the index is offered already");
    assert_null(xp_offer_subchannel(sub, 1, NULL, NULL));
    expect_warn(f, "relid 3: subchannel 1 refused: the channel is a subchannel itself");
    assert_true(no_msg(f));
    assert_string_equal(ops(f), "");
}

/* Before VMBus 2.4 there are no subchannels. */
static void test_subchannel_needs_win8(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN7);
    open_chan(f, 0, 0);
    assert_null(xp_offer_subchannel(f->ch[0], 1, NULL, NULL));
    expect_warn(f, "subchannel 1 refused: the negotiated VMBus version has no subchannels");
    assert_true(no_msg(f));
}

/* Subchannels count against the partition's relids with everything else
 * that holds or waits for one. */
static void test_subchannel_relid_limit(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    open_chan(f, 0, 0);
    /* 2 offers + 2044 more (most wait: the message queue is full) */
    for (unsigned i = 0; i < VMBUS_MAX_RELID - 3; i++) {
        struct vmbus_channel_offer o = {0};
        o.if_type.b[0] = 0xC2;
        o.if_instance.b[1] = (uint8_t)i;
        o.if_instance.b[2] = (uint8_t)(i >> 8);
        assert_non_null(xp_offer_channel(f->xp, &o, NULL, NULL));
        if (f->fh.ncalls > FAKE_HOST_MAX_CALLS / 2)
            ops(f);
    }
    ops(f);
    assert_non_null(xp_offer_subchannel(f->ch[0], 1, NULL, NULL));
    f->warns = 0; /* the offers found no message room: not our subject */
    assert_null(xp_offer_subchannel(f->ch[0], 2, NULL, NULL));
    expect_warn(f, "relid 1: subchannel 2 refused: the partition has no relid left");
    ops(f);
}

/* Subchannels rescinded while their primary stays open are kept until it
 * closes (the VSP may hold their handles): a guest that has them rescinded
 * and asks again and again is stopped at 128, and the primary's close
 * frees them. */
static void test_subchannel_rescinded_bound(void **state)
{
    struct fx *f = *state;
    bringup(f, VMBUS_VERSION_WIN10_V5_3);
    uint32_t g = open_chan(f, 0, 0);
    for (int i = 0; i < 2 * XP_MAX_SUBCHANNELS; i++) {
        struct xp_channel *sub = xp_offer_subchannel(f->ch[0], 1, NULL, NULL);
        assert_non_null(sub);
        take_sub_offer(f, 1, 3);
        xp_rescind_channel(sub);
        struct vmbus_channel_rescind_offer r;
        assert_int_equal(guest_take(f, &r, sizeof(r)), CHANNELMSG_RESCIND_CHANNELOFFER);
        assert_int_equal(relid_post(f, CHANNELMSG_RELID_RELEASED, 3), HV_STATUS_SUCCESS);
        assert_string_equal(ops(f), "eventfd_add(0x10003) eventfd_del(0x10003)");
    }
    assert_null(xp_offer_subchannel(f->ch[0], 1, NULL, NULL));
    expect_warn(f, "relid 1: subchannel 1 refused: too many subchannels rescinded");
    assert_int_equal(relid_post(f, CHANNELMSG_CLOSECHANNEL, 1), HV_STATUS_SUCCESS);
    assert_string_equal(ops(f), "channel_close(ch0)");
    assert_int_equal(teardown_post(f, 1, g), HV_STATUS_SUCCESS);
    assert_true(torndown(f, g));
    open_chan(f, 0, 0);
    assert_non_null(xp_offer_subchannel(f->ch[0], 1, NULL, NULL));
    take_sub_offer(f, 1, 3);
    assert_string_equal(ops(f), "eventfd_add(0x10003)");
    assert_true(no_msg(f));
    expect_no_warn(f);
}

int main(void)
{
    log_set_level(getenv("XPTEST_LOG") ? LOG_DEBUG : LOG_WARN);
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_contact_accepts_supported_versions),
        T(test_contact_refused),
        T(test_contact_again_resets),
        T(test_post_message_input_checked),
        T(test_messages_before_contact),
        T(test_offers),
        T(test_offers_wait_for_ready),
        T(test_offers_beyond_queue),
        T(test_rescind_before_offered),
        T(test_gpadl_created),
        T(test_gpadl_refused),
        T(test_open_close),
        T(test_open_slow_vsp),
        T(test_open_refused),
        T(test_close_refused),
        T(test_gpadl_teardown_in_use),
        T(test_rescind_open_channel),
        T(test_rescind_closed_channel),
        T(test_rescind_slow_close),
        T(test_channel_fault),
        T(test_rescind_after_unload),
        T(test_offer_waits_for_eventfd),
        cmocka_unit_test(test_offer_needs_channel_ops),
        T(test_gpadl_pending_limit),
        T(test_unload),
        T(test_unload_drops_queued_messages),
        T(test_unload_needs_3_0),
        T(test_unload_during_open),
        T(test_reset),
        T(test_simp_disabled),
        T(test_slot_busy_pending_eom),
        T(test_slot_held_by_other_message),
        T(test_late_plumbing),
        T(test_queue_full_back_pressure),
        T(test_modify_channel_5_3),
        T(test_modify_channel_older),
        T(test_legacy_interrupt_page),
        T(test_tl_connect_refused),
        T(test_subchannel_closes_first),
        T(test_subchannel_unload),
        T(test_subchannel_primary_rescinded),
        T(test_subchannel_refused),
        T(test_subchannel_needs_win8),
        T(test_subchannel_relid_limit),
        T(test_subchannel_rescinded_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
