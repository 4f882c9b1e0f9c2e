/* SPDX-License-Identifier: MIT */
/*
 * Send reservations (vsp_send_reserve / vsp_send_reserved) and completions
 * from a VSP's own thread.  A test VSP linked into this test works like a
 * storage VSP: before it pulls a request it reserves the room for the
 * request's completion; when the guest's host->guest ring has no room left
 * for another reservation it stops pulling; its I/O thread sends the
 * completions into the reservations whenever the test lets it.
 *
 *   test_reserve_until_full_then_writable  the VSP takes exactly as many
 *                                          requests as completions fit the
 *                                          ring (descriptor, padding and
 *                                          trailer counted), reserve gets
 *                                          -EAGAIN; once the guest reads
 *                                          the completions, writable comes
 *                                          and every request is answered
 *   test_completions_fit_full_ring         ordinary sends fill what is not
 *                                          reserved and then get -EAGAIN;
 *                                          the completions from the other
 *                                          thread still all go out
 *   test_completions_after_close           completions sent after the
 *                                          guest closed the channel get
 *                                          -EPIPE; reopened, the channel
 *                                          starts with nothing reserved
 *   test_reserved_room_taken_back          a guest that moves its read index
 *                                          so the reserved room is gone: the
 *                                          completion gets -EIO, the channel
 *                                          is torn down with a warning
 *                                          naming the VM and relid
 *
 * Deterministic: the completion thread sends only when the test opens its
 * gate, and the guest reads only when the test says so; the counts
 * asserted follow from the ring size alone.
 */
#include "sim_test.h"

#include <pthread.h>
#include <time.h>

#include "vmbusd/vsp.h"

#define VM_RESV "vm-resv"
#define NREQ 80
#define REPLY_LEN 64   /* completion payload */
#define FILL_LEN 8     /* ordinary filler packets */
#define RECV_PAGES 2   /* host->guest ring: one data page */
#define RING_DATA 4096u
#define PKT_BYTES(len) ((((16u + (len)) + 7u) & ~7u) + 8u) /* as the ring counts */

static const struct hv_guid resv_class = {
    {0x61, 0x0e, 0x7a, 0x2c, 0x15, 0x9b, 0x4f, 0x3d, 0xa4, 0x28, 0x6c, 0x0f, 0x91, 0xd2, 0x57, 0x3e}};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct vsp_channel *ch;
    pthread_t thread;
    bool stop;
    bool gate;              /* the completion thread may send */
    bool fill;              /* after reserve's -EAGAIN, fill the rest with ordinary sends */
    uint64_t queue[NREQ * 2];
    int qhead, qlen;
    int taken, eagain, writable, closes;
    int fillers, fill_ret;
    int sent, sent_ok, sent_epipe, sent_eio, sent_other;
} rs = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

/* Pull requests while a completion can be reserved for each. */
static void pump(struct vsp_channel *ch)
{
    for (;;) {
        int r = vsp_send_reserve(ch, REPLY_LEN);
        if (r == -EAGAIN) {
            pthread_mutex_lock(&rs.lock);
            bool fill = rs.fill;
            rs.fill = false;
            pthread_mutex_unlock(&rs.lock);
            int n = 0, fr = 0;
            uint8_t filler[FILL_LEN] = {0};
            while (fill && (fr = vsp_send_inband(ch, filler, sizeof(filler), 0xf111, false)) == 0)
                n++;
            pthread_mutex_lock(&rs.lock);
            if (fill) {
                rs.fillers += n;
                rs.fill_ret = fr;
            }
            rs.eagain++; /* last: the test reads the fill counts once it sees this */
            pthread_cond_broadcast(&rs.cond);
            pthread_mutex_unlock(&rs.lock);
            return; /* writable follows */
        }
        if (r < 0)
            return;
        struct vsp_packet pkt;
        if (vsp_recv(ch, &pkt) <= 0) {
            vsp_send_unreserve(ch, REPLY_LEN);
            return;
        }
        pthread_mutex_lock(&rs.lock);
        rs.queue[(rs.qhead + rs.qlen++) % (NREQ * 2)] = pkt.trans_id;
        rs.taken++;
        pthread_cond_broadcast(&rs.cond);
        pthread_mutex_unlock(&rs.lock);
    }
}

static void resv_receive(struct vsp_channel *ch) { pump(ch); }

static void resv_writable(struct vsp_channel *ch)
{
    pthread_mutex_lock(&rs.lock);
    rs.writable++;
    pthread_mutex_unlock(&rs.lock);
    pump(ch);
}

static void resv_close(struct vsp_channel *ch)
{
    (void)ch;
    pthread_mutex_lock(&rs.lock);
    rs.closes++;
    pthread_cond_broadcast(&rs.cond);
    pthread_mutex_unlock(&rs.lock);
}

/* The VSP's I/O thread: completes requests in order, into their
 * reservations. */
static void *completer(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&rs.lock);
    for (;;) {
        while (!rs.stop && !(rs.gate && rs.qlen))
            pthread_cond_wait(&rs.cond, &rs.lock);
        if (rs.stop)
            break;
        uint64_t t = rs.queue[rs.qhead];
        rs.qhead = (rs.qhead + 1) % (NREQ * 2);
        rs.qlen--;
        struct vsp_channel *ch = rs.ch;
        pthread_mutex_unlock(&rs.lock);
        uint8_t reply[REPLY_LEN];
        memset(reply, (int)(t & 0xff), sizeof(reply));
        struct iovec iov = {reply, sizeof(reply)};
        int r = vsp_send_reserved(ch, REPLY_LEN, VM_PKT_COMP, 0, t, NULL, 0, &iov, 1);
        pthread_mutex_lock(&rs.lock);
        rs.sent++;
        if (r == 0)
            rs.sent_ok++;
        else if (r == -EPIPE)
            rs.sent_epipe++;
        else if (r == -EIO)
            rs.sent_eio++;
        else
            rs.sent_other++;
        pthread_cond_broadcast(&rs.cond);
    }
    pthread_mutex_unlock(&rs.lock);
    return NULL;
}

static const struct vsp_channel_ops resv_ops = {
    .receive = resv_receive, .writable = resv_writable, .close = resv_close};

static int resv_attach(void *state, struct vsp_partition *p, void **part_state)
{
    (void)state;
    (void)part_state;
    struct vsp_offer o = {.class_id = resv_class, .ops = &resv_ops};
    struct vsp_channel *ch = vsp_channel_offer(p, &o);
    if (!ch)
        return -ENOMEM;
    pthread_mutex_lock(&rs.lock);
    rs.ch = ch;
    rs.stop = false;
    pthread_mutex_unlock(&rs.lock);
    return pthread_create(&rs.thread, NULL, completer, NULL) == 0 ? 0 : -EAGAIN;
}

static void resv_detach(void *state, struct vsp_partition *p, void *part_state)
{
    (void)state;
    (void)p;
    (void)part_state;
    pthread_mutex_lock(&rs.lock);
    rs.stop = true;
    pthread_cond_broadcast(&rs.cond);
    pthread_mutex_unlock(&rs.lock);
    pthread_join(rs.thread, NULL);
}

static const struct vsp_plugin resv_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "resv",
    .attach = resv_attach,
    .detach = resv_detach,
};
static const struct vsp_plugin *const linked[] = {&resv_plugin, NULL};

static int setup(void **state)
{
    static const struct sim_vm_cfg vms[] = {{VM_RESV, "resv"}};
    pthread_mutex_lock(&rs.lock);
    rs.gate = rs.fill = false;
    rs.qhead = rs.qlen = 0;
    rs.taken = rs.eagain = rs.writable = rs.closes = rs.fillers = rs.fill_ret = 0;
    rs.sent = rs.sent_ok = rs.sent_epipe = rs.sent_eio = rs.sent_other = 0;
    pthread_mutex_unlock(&rs.lock);
    return fx_setup_linked(state, vms, linked);
}

static int wait_count(const int *v, int want)
{
    return sim_wait_count(&rs.lock, &rs.cond, v, want);
}
static int get(const int *v) { return sim_count(&rs.lock, v); }

static void open_gate(void)
{
    pthread_mutex_lock(&rs.lock);
    rs.gate = true;
    pthread_cond_broadcast(&rs.cond);
    pthread_mutex_unlock(&rs.lock);
}

static struct sim_chan *open_chan(struct sim_vm *vm)
{
    struct sim_chan *ch = sim_open_class(vm, &resv_class, 0, 8, RECV_PAGES);
    SIM_ASSERT(ch->in.size == RING_DATA, "host->guest ring of %u bytes", ch->in.size);
    return ch;
}

/* NREQ requests with trans_id first.., then wait until the VSP stopped
 * pulling for want of room (eagain reaches want_eagain). */
static void send_requests(struct sim_chan *ch, uint64_t first, int want_eagain)
{
    uint8_t req[8] = {0};
    for (int i = 0; i < NREQ; i++)
        SIM_ASSERT(sim_chan_send(ch, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
                                 first + (uint64_t)i, req, sizeof(req)) == 0,
                   "request %d", i);
    SIM_ASSERT(wait_count(&rs.eagain, want_eagain) >= want_eagain, "reserve never got -EAGAIN");
}

/* Completions that fit an empty ring of RING_DATA bytes: a packet needs
 * strictly more free bytes than it takes. */
static int fit(uint32_t len, uint32_t used) { return (int)((RING_DATA - 1 - used) / PKT_BYTES(len)); }

/* The guest reads until it has every completion first..first+NREQ-1 in
 * order (and `fillers` ordinary packets among them). */
static void read_all(struct sim_chan *ch, uint64_t first, int fillers)
{
    int comps = 0, fills = 0;
    while (comps < NREQ) {
        struct vmpacket_descriptor d;
        uint8_t buf[REPLY_LEN];
        uint32_t len;
        SIM_ASSERT(sim_chan_recv(ch, &d, buf, sizeof(buf), &len, sim_timeout_ms) == 1,
                   "completion %d of %d never came (taken %d, writable %d)", comps, NREQ,
                   get(&rs.taken), get(&rs.writable));
        if (d.trans_id == 0xf111) {
            fills++;
            continue;
        }
        SIM_ASSERT(d.type == VM_PKT_COMP && d.trans_id == first + (uint64_t)comps &&
                       len == REPLY_LEN && buf[0] == (uint8_t)(first + (uint64_t)comps),
                   "completion %d: type %u trans_id %llu len %u", comps, d.type,
                   (unsigned long long)d.trans_id, len);
        comps++;
    }
    SIM_ASSERT(fills == fillers, "%d fillers read, %d sent", fills, fillers);
}

/* The resv VM up, its channel open and NREQ requests sent from trans_id 1
 * (with fill, the VSP also fills the ring beside its reservations): the
 * VSP took the k requests whose completions fit an empty ring.  Returns k. */
static int up_with_requests(struct fx *f, bool fill, struct sim_vm **vm, struct sim_chan **ch)
{
    *vm = sim_up_offers(f->d, VM_RESV, 1);
    *ch = open_chan(*vm);
    pthread_mutex_lock(&rs.lock);
    rs.fill = fill;
    pthread_mutex_unlock(&rs.lock);
    send_requests(*ch, 1, 1);
    int k = fit(REPLY_LEN, 0);
    SIM_ASSERT(get(&rs.taken) == k, "took %d requests with room for %d completions",
               get(&rs.taken), k);
    return k;
}

static void test_reserve_until_full_then_writable(void **state)
{
    struct sim_vm *vm;
    struct sim_chan *ch;
    int k = up_with_requests(*state, false, &vm, &ch);
    SIM_ASSERT(sim_chan_try_recv(ch, NULL, NULL, 0, NULL) == 0, "a packet before any completion");
    SIM_ASSERT(get(&rs.writable) == 0, "writable before the guest read anything");

    open_gate();
    SIM_ASSERT(wait_count(&rs.sent, k) == k, "completions sent");
    SIM_ASSERT(get(&rs.sent_ok) == k, "%d of %d completions went out", get(&rs.sent_ok), k);
    read_all(ch, 1, 0);
    SIM_ASSERT(get(&rs.writable) >= 1, "requests answered without writable");
    SIM_ASSERT(wait_count(&rs.sent, NREQ) == NREQ && get(&rs.sent_ok) == NREQ,
               "%d of %d completions went out", get(&rs.sent_ok), NREQ);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

static void test_completions_fit_full_ring(void **state)
{
    struct sim_vm *vm;
    struct sim_chan *ch;
    int k = up_with_requests(*state, true, &vm, &ch);
    int fillers = fit(FILL_LEN, (uint32_t)k * PKT_BYTES(REPLY_LEN));
    SIM_ASSERT(get(&rs.fillers) == fillers && get(&rs.fill_ret) == -EAGAIN,
               "%d ordinary sends fitted beside the reservations (want %d), then %d",
               get(&rs.fillers), fillers, get(&rs.fill_ret));

    /* the ring is full but for the reservations: every completion fits */
    open_gate();
    SIM_ASSERT(wait_count(&rs.sent, k) == k, "completions sent");
    SIM_ASSERT(get(&rs.sent_ok) == k, "%d of %d completions fitted the full ring",
               get(&rs.sent_ok), k);
    read_all(ch, 1, fillers);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

static void test_completions_after_close(void **state)
{
    struct sim_vm *vm;
    struct sim_chan *ch;
    int k = up_with_requests(*state, false, &vm, &ch);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    SIM_ASSERT(get(&rs.closes) == 1, "close ran %d times", get(&rs.closes));

    /* the I/O ends after the close: its completions find the channel gone */
    open_gate();
    SIM_ASSERT(wait_count(&rs.sent, k) == k, "completions sent");
    SIM_ASSERT(get(&rs.sent_epipe) == k && get(&rs.sent_ok) == 0 && get(&rs.sent_other) == 0,
               "after close: %d ok, %d -EPIPE, %d other of %d", get(&rs.sent_ok),
               get(&rs.sent_epipe), get(&rs.sent_other), k);

    /* reopened: nothing reserved from before, every request answered */
    pthread_mutex_lock(&rs.lock);
    rs.taken = rs.eagain = rs.sent = rs.sent_ok = 0;
    pthread_mutex_unlock(&rs.lock);
    ch = open_chan(vm);
    send_requests(ch, 1001, 0);
    read_all(ch, 1001, 0);
    SIM_ASSERT(get(&rs.sent_ok) == NREQ, "%d of %d answered after the reopen", get(&rs.sent_ok),
               NREQ);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

static void test_reserved_room_taken_back(void **state)
{
    struct sim_vm *vm;
    struct sim_chan *ch;
    int k = up_with_requests(*state, true, &vm, &ch);
    SIM_ASSERT(get(&rs.fillers) >= 1, "%d fillers", get(&rs.fillers));
    /* The guest claims to have read nothing but 8 bytes of a full ring:
     * read index just past the write index. */
    uint32_t w = __atomic_load_n(&ch->in.hdr->write_index, __ATOMIC_SEQ_CST);
    __atomic_store_n(&ch->in.hdr->read_index, (w + 8) % ch->in.size, __ATOMIC_SEQ_CST);
    open_gate();
    SIM_ASSERT(wait_count(&rs.sent, k) == k, "completions sent");
    SIM_ASSERT(get(&rs.sent_eio) == 1 && get(&rs.sent_epipe) == k - 1 && get(&rs.sent_ok) == 0,
               "%d -EIO, %d -EPIPE, %d ok of %d", get(&rs.sent_eio), get(&rs.sent_epipe),
               get(&rs.sent_ok), k);
    SIM_ASSERT(wait_count(&rs.closes, 1) == 1, "the channel was not closed");
    char relid[32];
    snprintf(relid, sizeof(relid), "relid %u (", ch->relid);
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_RESV, relid, "room reserved for completions") == 1,
               "no warning naming %s and %s", VM_RESV, relid);
    sim_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reserve_until_full_then_writable, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_completions_fit_full_ring, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_completions_after_close, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reserved_room_taken_back, setup, fx_teardown),
    };
    SIM_RUN("sim_reserve", tests);
}
