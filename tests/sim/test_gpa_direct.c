/* SPDX-License-Identifier: MIT */
/*
 * GPA-direct packets (VM_PKT_DATA_USING_GPA_DIRECT) handed to a VSP as
 * iovecs into guest RAM (vsp_packet_gpa).  A test VSP linked into this test
 * calls vsp_packet_gpa on every GPA-direct packet with the limits the guest
 * put in the payload, reads the bytes through the iovecs it got, and
 * answers with the result, the iovecs and a hash of those bytes.
 *
 *   test_multipage_over_hole   storvsc's form: one range of four pages, two
 *                              below the RAM hole and two above; one iovec
 *                              per piece of host memory, the guest's bytes
 *   test_page_ranges           netvsc's page-buffer form: three ranges of
 *                              one page each; ranges adjacent in memory are
 *                              merged, the bytes are the guest's
 *   test_bad_descriptors       every malformed range list, PFNs outside RAM
 *                              and the VSP's own limits: the error for that
 *                              packet, a warning naming the VM and the relid
 *                              for the guest's mistakes (none for the VSP's
 *                              limits), the channel and a second VM go on
 *   test_reset_waits_for_io    the guest resets while the VSP still has I/O
 *                              into its buffers in flight (its close waits
 *                              for it): RESET_DONE, after which the VMM
 *                              clears RAM and boots again, comes only once
 *                              that close returned
 */
#include "sim_test.h"

#include <pthread.h>
#include <time.h>

#include "vmbusd/vsp.h"

#define VM_GPA "vm-gpa"
#define VM_OTHER "vm-other"
#define MAX_IOV 16
#define MEM_SIZE (64ull << 20)
#define HOLE_START (32ull << 20)
#define HOLE_SIZE (256ull << 20)

static const struct hv_guid gpa_class = {
    {0x27, 0x9c, 0x41, 0x0b, 0x6e, 0x53, 0x4d, 0x1a, 0x9e, 0x7f, 0x10, 0x22, 0x5b, 0x8c, 0x3d, 0x66}};

/* Payload of a request: the limits the VSP passes to vsp_packet_gpa. */
struct gpa_req {
    uint64_t max_len;
    uint32_t max_iov;
    uint32_t hold; /* keep the buffers "in flight" until the channel closes */
};

/* The VSP's answer (completion payload). */
struct gpa_reply {
    int32_t ret;
    int32_t n;
    uint64_t len;
    uint64_t hash; /* FNV-1a of the bytes the iovecs point at, in order */
    struct {
        uint64_t base, len;
    } iov[MAX_IOV];
};

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ull

/* The partitions the VSP attached to, for vsp_guest_ptr in the checks. */
static struct {
    pthread_mutex_t lock;
    struct vsp_partition *p[2];
    char name[2][32];
} parts = {.lock = PTHREAD_MUTEX_INITIALIZER};

static struct vsp_partition *part_by_name(const char *name)
{
    struct vsp_partition *p = NULL;
    pthread_mutex_lock(&parts.lock);
    for (int i = 0; i < 2; i++)
        if (parts.p[i] && strcmp(parts.name[i], name) == 0)
            p = parts.p[i];
    pthread_mutex_unlock(&parts.lock);
    return p;
}

/* A request held in flight (hold = 1): its close ends the "I/O" by
 * writing the buffers once the test opens the gate. */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool held, close_started, gate, io_done;
    struct iovec iov[MAX_IOV];
    int n;
    uint64_t trans;
    int comp_ret;
} hold = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void gpa_close(struct vsp_channel *ch)
{
    pthread_mutex_lock(&hold.lock);
    if (!hold.held) {
        pthread_mutex_unlock(&hold.lock);
        return;
    }
    hold.close_started = true;
    pthread_cond_broadcast(&hold.cond);
    while (!hold.gate)
        pthread_cond_wait(&hold.cond, &hold.lock);
    for (int i = 0; i < hold.n; i++)
        memset(hold.iov[i].iov_base, 0xa5, hold.iov[i].iov_len);
    hold.comp_ret = vsp_send_completion(ch, hold.trans, NULL, 0);
    hold.held = false;
    hold.io_done = true;
    pthread_cond_broadcast(&hold.cond);
    pthread_mutex_unlock(&hold.lock);
}

static void gpa_receive(struct vsp_channel *ch)
{
    struct vsp_packet pkt;
    while (vsp_recv(ch, &pkt) > 0) {
        struct gpa_req req = {0};
        memcpy(&req, pkt.data, pkt.len < sizeof(req) ? pkt.len : sizeof(req));
        struct gpa_reply r = {0};
        struct iovec iov[MAX_IOV];
        size_t len = 0;
        int max_iov = req.max_iov < MAX_IOV ? (int)req.max_iov : MAX_IOV;
        r.ret = vsp_packet_gpa(ch, &pkt, req.max_len, iov, max_iov, &len);
        if (r.ret >= 0 && req.hold) {
            pthread_mutex_lock(&hold.lock);
            memcpy(hold.iov, iov, sizeof(iov));
            hold.n = r.ret;
            hold.trans = pkt.trans_id;
            hold.held = true;
            pthread_cond_broadcast(&hold.cond);
            pthread_mutex_unlock(&hold.lock);
            continue; /* answered when the I/O ends */
        }
        if (r.ret >= 0) {
            r.n = r.ret;
            r.len = len;
            r.hash = FNV_INIT;
            for (int i = 0; i < r.n; i++) {
                r.hash = fnv(r.hash, iov[i].iov_base, iov[i].iov_len);
                r.iov[i].base = (uintptr_t)iov[i].iov_base;
                r.iov[i].len = iov[i].iov_len;
            }
        }
        vsp_send_completion(ch, pkt.trans_id, &r, sizeof(r));
    }
}

static const struct vsp_channel_ops gpa_ops = {.receive = gpa_receive, .close = gpa_close};

static int gpa_attach(void *state, struct vsp_partition *p, void **part_state)
{
    (void)state;
    (void)part_state;
    pthread_mutex_lock(&parts.lock);
    for (int i = 0; i < 2; i++)
        if (!parts.p[i]) {
            parts.p[i] = p;
            snprintf(parts.name[i], sizeof(parts.name[i]), "%s", vsp_partition_name(p));
            break;
        }
    pthread_mutex_unlock(&parts.lock);
    struct vsp_offer o = {.class_id = gpa_class, .ops = &gpa_ops};
    return vsp_channel_offer(p, &o) ? 0 : -ENOMEM;
}

static void gpa_detach(void *state, struct vsp_partition *p, void *part_state)
{
    (void)state;
    (void)part_state;
    pthread_mutex_lock(&parts.lock);
    for (int i = 0; i < 2; i++)
        if (parts.p[i] == p)
            parts.p[i] = NULL;
    pthread_mutex_unlock(&parts.lock);
}

static const struct vsp_plugin gpa_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "gpa",
    .attach = gpa_attach,
    .detach = gpa_detach,
};
static const struct vsp_plugin *const linked[] = {&gpa_plugin, NULL};

static int setup(void **state)
{
    static const struct sim_vm_cfg vms[] = {{VM_GPA, "gpa"}, {VM_OTHER, "gpa"}};
    return fx_setup_linked_vms(state, vms, 2, linked);
}

/* A VM with RAM split around a hole, its gpa channel open. */
static struct sim_vm *gpa_vm(struct fx *f, const char *name, struct sim_chan **out)
{
    struct sim_vm_opts o = {.name = name, .mem_size = MEM_SIZE, .hole_start = HOLE_START,
                            .hole_size = HOLE_SIZE};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "create %s", name);
    vm->expect_offers = 1;
    SIM_ASSERT(sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) == 1, "bringup %s", name);
    *out = sim_open_class(vm, &gpa_class, 0, 4, 4);
    return vm;
}

/* A range list being built: hdr = reserved, rangecount, ranges. */
struct ranges {
    uint8_t b[1024];
    uint32_t len;
    uint32_t count;
};

static void ranges_init(struct ranges *r)
{
    memset(r, 0, sizeof(*r));
    r->len = 8;
}

static void ranges_add(struct ranges *r, uint32_t byte_count, uint32_t byte_offset,
                       const uint64_t *pfns, uint32_t npfn)
{
    memcpy(r->b + r->len, &byte_count, 4);
    memcpy(r->b + r->len + 4, &byte_offset, 4);
    memcpy(r->b + r->len + 8, pfns, npfn * 8u);
    r->len += 8 + npfn * 8u;
    r->count++;
    memcpy(r->b + 4, &r->count, 4);
}

/* Send one GPA-direct request and wait for the VSP's answer. */
static struct gpa_reply request(struct sim_chan *ch, uint16_t type, const void *hdr,
                                uint32_t hdr_len, uint64_t max_len, uint32_t max_iov)
{
    static uint64_t trans = 1000;
    uint64_t t = ++trans;
    struct gpa_req req = {.max_len = max_len, .max_iov = max_iov};
    SIM_ASSERT(sim_chan_send_hdr(ch, type, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, t, hdr,
                                 hdr_len, &req, sizeof(req)) == 0, "send");
    struct vmpacket_descriptor d;
    struct gpa_reply r;
    uint32_t got = 0;
    memset(&r, 0, sizeof(r));
    SIM_ASSERT(sim_chan_recv(ch, &d, &r, sizeof(r), &got, sim_timeout_ms) == 1, "no answer");
    SIM_ASSERT(d.type == VM_PKT_COMP && d.trans_id == t && got >= sizeof(r),
               "answer type %u trans_id %llu (want %llu), %u bytes", d.type,
               (unsigned long long)d.trans_id, (unsigned long long)t, got);
    return r;
}

/* One piece of a guest buffer: gpa and length. */
struct piece {
    uint64_t gpa;
    uint32_t len;
};

/* Check r against the buffer made of pieces (each inside one page): the
 * host pointers vmbusd itself gives for each piece, merged where adjacent,
 * and the guest's bytes. */
static void check_reply(struct sim_vm *vm, const struct gpa_reply *r, const struct piece *pc,
                        int npc)
{
    struct vsp_partition *p = part_by_name(vm->name);
    SIM_ASSERT(p != NULL, "partition %s attached", vm->name);
    struct iovec want[MAX_IOV];
    int n = 0;
    uint64_t total = 0, hash = FNV_INIT;
    for (int i = 0; i < npc; i++) {
        uint8_t *h = vsp_guest_ptr(p, pc[i].gpa, pc[i].len);
        SIM_ASSERT(h != NULL, "piece %d in RAM", i);
        hash = fnv(hash, sim_gpa_ptr(vm, pc[i].gpa), pc[i].len);
        total += pc[i].len;
        if (n && (uint8_t *)want[n - 1].iov_base + want[n - 1].iov_len == h)
            want[n - 1].iov_len += pc[i].len;
        else
            want[n++] = (struct iovec){.iov_base = h, .iov_len = pc[i].len};
    }
    SIM_ASSERT(r->ret == n, "vsp_packet_gpa returned %d, want %d iovecs", r->ret, n);
    SIM_ASSERT(r->len == total, "total %llu, want %llu", (unsigned long long)r->len,
               (unsigned long long)total);
    for (int i = 0; i < n; i++)
        SIM_ASSERT(r->iov[i].base == (uintptr_t)want[i].iov_base &&
                       r->iov[i].len == want[i].iov_len,
                   "iovec %d: %#llx+%llu, want %p+%zu", i, (unsigned long long)r->iov[i].base,
                   (unsigned long long)r->iov[i].len, want[i].iov_base, want[i].iov_len);
    SIM_ASSERT(r->hash == hash, "the VSP read other bytes than the guest wrote");
}

static void test_multipage_over_hole(void **state)
{
    struct fx *f = *state;
    struct sim_chan *ch;
    struct sim_vm *vm = gpa_vm(f, VM_GPA, &ch);
    /* two pages right below the hole, two right above it */
    uint64_t below = HOLE_START - 2 * HV_PAGE_SIZE, above = HOLE_START + HOLE_SIZE;
    sim_fill_pattern(sim_gpa_ptr(vm, below), 2 * HV_PAGE_SIZE, 7);
    sim_fill_pattern(sim_gpa_ptr(vm, above), 2 * HV_PAGE_SIZE, 8);
    uint64_t pfns[4] = {below >> 12, (below >> 12) + 1, above >> 12, (above >> 12) + 1};
    const uint32_t off = 100, count = 16000; /* ends 284 bytes before the fourth page's end */
    struct ranges rg;
    ranges_init(&rg);
    ranges_add(&rg, count, off, pfns, 4);
    struct gpa_reply r = request(ch, VM_PKT_DATA_USING_GPA_DIRECT, rg.b, rg.len, 1 << 20, MAX_IOV);
    const struct piece pc[] = {
        {below + off, HV_PAGE_SIZE - off},
        {below + HV_PAGE_SIZE, HV_PAGE_SIZE},
        {above, HV_PAGE_SIZE},
        {above + HV_PAGE_SIZE, count - (3 * HV_PAGE_SIZE - off)},
    };
    check_reply(vm, &r, pc, 4);
    /* regions are mapped apart: in practice the hole splits the buffer */
    SIM_ASSERT(r.n >= 2 || r.iov[0].len == count, "one iovec of %llu bytes",
               (unsigned long long)r.iov[0].len);
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_GPA, NULL, NULL) == 0, "a warning for a good packet");
    sim_vm_free(vm);
}

static void test_page_ranges(void **state)
{
    struct fx *f = *state;
    struct sim_chan *ch;
    struct sim_vm *vm = gpa_vm(f, VM_GPA, &ch);
    uint64_t a = 8ull << 20, b = 20ull << 20; /* away from the simulator's allocations */
    sim_fill_pattern(sim_gpa_ptr(vm, a), 2 * HV_PAGE_SIZE, 11);
    sim_fill_pattern(sim_gpa_ptr(vm, b), HV_PAGE_SIZE, 12);
    struct ranges rg;
    ranges_init(&rg);
    uint64_t pa = a >> 12, pa1 = pa + 1, pb = b >> 12;
    ranges_add(&rg, 4000, 96, &pa, 1);  /* to the end of page a */
    ranges_add(&rg, 1500, 0, &pa1, 1);  /* continues it: merged */
    ranges_add(&rg, 300, 200, &pb, 1);
    struct gpa_reply r = request(ch, VM_PKT_DATA_USING_GPA_DIRECT, rg.b, rg.len, 1 << 20, MAX_IOV);
    const struct piece pc[] = {{a + 96, 4000}, {a + HV_PAGE_SIZE, 1500}, {b + 200, 300}};
    check_reply(vm, &r, pc, 3);
    SIM_ASSERT(r.n == 2, "%d iovecs for two pieces of memory", r.n);
    sim_vm_free(vm);
}

/* A bad request: the VSP gets `err`; the guest's mistakes are logged
 * naming the VM and relid, with `why` in the line. */
static void expect_bad(struct sim_vm *vm, struct sim_chan *ch, const char *what, uint16_t type,
                       const void *hdr, uint32_t hdr_len, uint64_t max_len, uint32_t max_iov,
                       int err, const char *why)
{
    char relid[32];
    snprintf(relid, sizeof(relid), "relid %u (", ch->relid);
    int before = sim_log_count(LOG_WARN, vm->name, NULL, NULL);
    int before_why = why ? sim_log_count(LOG_WARN, vm->name, relid, why) : 0;
    struct gpa_reply r = request(ch, type, hdr, hdr_len, max_len, max_iov);
    SIM_ASSERT(r.ret == err, "%s: vsp_packet_gpa returned %d, want %d", what, r.ret, err);
    /* logged before the VSP answered */
    int after = sim_log_count(LOG_WARN, vm->name, NULL, NULL);
    if (why)
        SIM_ASSERT(after == before + 1 &&
                       sim_log_count(LOG_WARN, vm->name, relid, why) == before_why + 1,
                   "%s: %d warnings, none naming %s, %s and \"%s\"", what, after - before,
                   vm->name, relid, why);
    else
        SIM_ASSERT(after == before, "%s: a warning for the VSP's own limit", what);
}

/* expect_bad for a GPA-direct request with the ranges rg and room enough. */
static void expect_bad_ranges(struct sim_vm *vm, struct sim_chan *ch, const char *what,
                              const struct ranges *rg, int err, const char *why)
{
    expect_bad(vm, ch, what, VM_PKT_DATA_USING_GPA_DIRECT, rg->b, rg->len, 1 << 20, MAX_IOV, err,
               why);
}

static void test_bad_descriptors(void **state)
{
    struct fx *f = *state;
    struct sim_chan *ch, *och;
    struct sim_vm *vm = gpa_vm(f, VM_GPA, &ch);
    struct sim_vm *other = gpa_vm(f, VM_OTHER, &och);
    uint64_t a = 8ull << 20, pa = a >> 12, pa1 = pa + 1;
    struct ranges rg;

    /* the header ends before the range count */
    expect_bad(vm, ch, "no range count", VM_PKT_DATA_USING_GPA_DIRECT, NULL, 0, 1 << 20, MAX_IOV,
               -EPROTO, "has no range count");

    ranges_init(&rg);
    ranges_add(&rg, 4096, 0, &pa, 1);
    uint32_t zero = 0, huge = 0xffffffffu;
    memcpy(rg.b + 4, &zero, 4);
    expect_bad_ranges(vm, ch, "zero ranges", &rg, -EPROTO, "range count 0 ");
    memcpy(rg.b + 4, &huge, 4);
    expect_bad_ranges(vm, ch, "absurd range count", &rg, -EPROTO, "range count 4294967295");

    ranges_init(&rg);
    ranges_add(&rg, 100, 4096, &pa, 1);
    expect_bad_ranges(vm, ch, "offset past the page", &rg, -EPROTO, "past its first page");

    ranges_init(&rg);
    ranges_add(&rg, 0, 0, &pa, 1);
    expect_bad_ranges(vm, ch, "empty range", &rg, -EPROTO, "is empty");

    /* 9000 bytes need 3 PFNs; one is there */
    ranges_init(&rg);
    ranges_add(&rg, 9000, 0, &pa, 1);
    expect_bad_ranges(vm, ch, "PFNs past the header", &rg, -EPROTO, "more than the header holds");

    /* the second of two ranges runs past the header */
    ranges_init(&rg);
    ranges_add(&rg, 4096, 0, &pa, 1);
    ranges_add(&rg, 9000, 0, &pa1, 1);
    expect_bad_ranges(vm, ch, "second range past the header", &rg, -EPROTO, "range 1 of 2");

    /* pages outside RAM: in the hole, beyond the end, beyond 2^64 bytes */
    uint64_t hole = (HOLE_START + HV_PAGE_SIZE) >> 12;
    uint64_t end = (HOLE_START + HOLE_SIZE + MEM_SIZE - HOLE_START) >> 12;
    uint64_t wild = 1ull << 60;
    uint64_t bad_pfns[3][2] = {{pa, hole}, {end, pa}, {pa, wild}};
    for (int i = 0; i < 3; i++) {
        ranges_init(&rg);
        ranges_add(&rg, 8192, 0, bad_pfns[i], 2);
        expect_bad_ranges(vm, ch, "page outside RAM", &rg, -EFAULT, "outside guest RAM");
    }

    /* the VSP's limits: not the guest's fault, not logged */
    uint64_t far = (20ull << 20) >> 12;
    uint64_t three[3] = {pa, far, pa1 + 100};
    ranges_init(&rg);
    ranges_add(&rg, 3 * 4096, 0, three, 3);
    expect_bad(vm, ch, "longer than max_len", VM_PKT_DATA_USING_GPA_DIRECT, rg.b, rg.len,
               3 * 4096 - 1, MAX_IOV, -E2BIG, NULL);
    expect_bad(vm, ch, "more iovecs than max_iov", VM_PKT_DATA_USING_GPA_DIRECT, rg.b, rg.len,
               1 << 20, 2, -E2BIG, NULL);
    expect_bad(vm, ch, "not GPA-direct", VM_PKT_DATA_INBAND, NULL, 0, 1 << 20, MAX_IOV, -EINVAL,
               NULL);

    /* the channel still serves good packets, and so does the other VM's */
    sim_fill_pattern(sim_gpa_ptr(vm, a), HV_PAGE_SIZE, 3);
    sim_fill_pattern(sim_gpa_ptr(other, a), HV_PAGE_SIZE, 4);
    ranges_init(&rg);
    ranges_add(&rg, 4096, 0, &pa, 1);
    const struct piece pc[] = {{a, 4096}};
    struct gpa_reply r = request(ch, VM_PKT_DATA_USING_GPA_DIRECT, rg.b, rg.len, 1 << 20, MAX_IOV);
    check_reply(vm, &r, pc, 1);
    r = request(och, VM_PKT_DATA_USING_GPA_DIRECT, rg.b, rg.len, 1 << 20, MAX_IOV);
    check_reply(other, &r, pc, 1);
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_OTHER, NULL, NULL) == 0, "warnings about %s",
               VM_OTHER);
    sim_vm_free(other);
    sim_vm_free(vm);
}

/* Wait (bounded, for a hang only) until *flag. */
static bool wait_hold(const bool *flag)
{
    struct timespec end = sim_deadline_ms(20000);
    pthread_mutex_lock(&hold.lock);
    while (!*flag && pthread_cond_timedwait(&hold.cond, &hold.lock, &end) == 0)
        ;
    bool got = *flag;
    pthread_mutex_unlock(&hold.lock);
    return got;
}

static void test_reset_waits_for_io(void **state)
{
    struct fx *f = *state;
    struct sim_chan *ch;
    struct sim_vm *vm = gpa_vm(f, VM_GPA, &ch);
    pthread_mutex_lock(&hold.lock);
    hold.held = hold.close_started = hold.gate = hold.io_done = false;
    pthread_mutex_unlock(&hold.lock);
    uint64_t a = 8ull << 20, pa = a >> 12;
    memset(sim_gpa_ptr(vm, a), 0, HV_PAGE_SIZE);
    struct ranges rg;
    ranges_init(&rg);
    ranges_add(&rg, 4096, 0, &pa, 1);
    struct gpa_req req = {.max_len = 1 << 20, .max_iov = MAX_IOV, .hold = 1};
    SIM_ASSERT(sim_chan_send_hdr(ch, VM_PKT_DATA_USING_GPA_DIRECT,
                                 VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 77, rg.b, rg.len,
                                 &req, sizeof(req)) == 0, "send");
    SIM_ASSERT(wait_hold(&hold.held), "the VSP never took the request");

    int seq = sim_vu_send(vm, VU_MSG_RESET, NULL, 0, NULL, 0);
    SIM_ASSERT(seq > 0, "RESET");
    SIM_ASSERT(wait_hold(&hold.close_started), "the reset did not close the channel");
    /* Everything the VMM sent before is handled once this is answered:
     * vmbusd handles a connection's requests in order. */
    sim_post(vm, vm->msg_conn_id, HV_MESSAGE_TYPE_VMBUS + 1, NULL, 0);
    SIM_ASSERT(vm->reset_done_seq != (uint32_t)seq,
               "RESET_DONE while the VSP's close still waits for I/O into guest memory");

    pthread_mutex_lock(&hold.lock);
    hold.gate = true;
    pthread_cond_broadcast(&hold.cond);
    pthread_mutex_unlock(&hold.lock);
    uint64_t end = sim_now_ms() + 20000; /* bounds a hang only */
    while (vm->reset_done_seq != (uint32_t)seq && sim_now_ms() < end && !vm->dead)
        sim_vu_alive(vm, 20);
    SIM_ASSERT(vm->reset_done_seq == (uint32_t)seq, "no RESET_DONE after the close returned");
    SIM_ASSERT(hold.io_done && ((uint8_t *)sim_gpa_ptr(vm, a))[HV_PAGE_SIZE - 1] == 0xa5,
               "the I/O did not land before RESET_DONE");
    SIM_ASSERT(hold.comp_ret == -EPIPE, "completion after the reset: %d", hold.comp_ret);
    sim_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_multipage_over_hole, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_page_ranges, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_descriptors, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reset_waits_for_io, setup, fx_teardown),
    };
    SIM_RUN("sim_gpa_direct", tests);
}
