/* SPDX-License-Identifier: MIT */
/*
 * Send reservations (vsp_send_reserve / vsp_send_reserved) and completions
 * from a VSP's own thread, with the reserving test VSP of resv_vsp.h (it
 * works like a storage VSP: it reserves a completion's room before it
 * pulls the request, stops pulling when the guest's host->guest ring has
 * no room left for another, and its I/O thread sends the completions into
 * the reservations whenever the test lets it).
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
 *   test_batch_signals_once                completions sent inside a send
 *                                          batch (vsp_send_batch_begin /
 *                                          end), each finding the guest's
 *                                          ring read to the end and its
 *                                          interrupt unmasked: no signal
 *                                          until the batch ends, then one
 *   test_batch_end_finds_room              a VSP blocked for room sends
 *                                          completions inside a batch while
 *                                          the guest reads the ones before
 *                                          it: the guest never sees the
 *                                          room it frees cross the
 *                                          pending_send_sz measured against
 *                                          the unpublished packets, so the
 *                                          batch's end looks for the room
 *                                          itself; writable comes, every
 *                                          request is answered
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

#include "resv_vsp.h"
#include "vmbusd/vsp.h"

#define VM_RESV "vm-resv"
#define NREQ 80
#define REPLY_LEN 64   /* completion payload */
#define RECV_PAGES 2   /* host->guest ring: one data page */
#define RING_DATA 4096u
#define PKT_BYTES(len) ((((16u + (len)) + 7u) & ~7u) + 8u) /* as the ring counts */

static const struct hv_guid resv_class = {
    {0x61, 0x0e, 0x7a, 0x2c, 0x15, 0x9b, 0x4f, 0x3d, 0xa4, 0x28, 0x6c, 0x0f, 0x91, 0xd2, 0x57, 0x3e}};

static int setup(void **state)
{
    static const struct sim_vm_cfg vms[] = {{VM_RESV, "resv"}};
    resv_vsp_init(&resv_class, REPLY_LEN);
    resv_vsp_reset();
    return fx_setup_linked(state, vms, resv_vsp_linked);
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
    SIM_ASSERT(resv_wait(&resv.eagain, want_eagain) >= want_eagain, "reserve never got -EAGAIN");
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
                   resv_count(taken), resv_count(writable));
        if (d.trans_id == RESV_FILLER_TRANS) {
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
    resv_set_fill(fill);
    send_requests(*ch, 1, 1);
    int k = fit(REPLY_LEN, 0);
    SIM_ASSERT(resv_count(taken) == k, "took %d requests with room for %d completions",
               resv_count(taken), k);
    return k;
}

static void test_reserve_until_full_then_writable(void **state)
{
    struct sim_vm *vm;
    struct sim_chan *ch;
    int k = up_with_requests(*state, false, &vm, &ch);
    SIM_ASSERT(sim_chan_try_recv(ch, NULL, NULL, 0, NULL) == 0, "a packet before any completion");
    SIM_ASSERT(resv_count(writable) == 0, "writable before the guest read anything");

    resv_set_gate(true);
    SIM_ASSERT(resv_wait(&resv.sent, k) == k, "completions sent");
    SIM_ASSERT(resv_count(sent_ok) == k, "%d of %d completions went out", resv_count(sent_ok), k);
    read_all(ch, 1, 0);
    SIM_ASSERT(resv_count(writable) >= 1, "requests answered without writable");
    SIM_ASSERT(resv_wait(&resv.sent, NREQ) == NREQ && resv_count(sent_ok) == NREQ,
               "%d of %d completions went out", resv_count(sent_ok), NREQ);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

static void test_completions_fit_full_ring(void **state)
{
    struct sim_vm *vm;
    struct sim_chan *ch;
    int k = up_with_requests(*state, true, &vm, &ch);
    int fillers = fit(RESV_FILL_LEN, (uint32_t)k * PKT_BYTES(REPLY_LEN));
    SIM_ASSERT(resv_count(fillers) == fillers && resv_count(fill_ret) == -EAGAIN,
               "%d ordinary sends fitted beside the reservations (want %d), then %d",
               resv_count(fillers), fillers, resv_count(fill_ret));

    /* the ring is full but for the reservations: every completion fits */
    resv_set_gate(true);
    SIM_ASSERT(resv_wait(&resv.sent, k) == k, "completions sent");
    SIM_ASSERT(resv_count(sent_ok) == k, "%d of %d completions fitted the full ring",
               resv_count(sent_ok), k);
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
    SIM_ASSERT(resv_count(closes) == 1, "close ran %d times", resv_count(closes));

    /* the I/O ends after the close: its completions find the channel gone */
    resv_set_gate(true);
    SIM_ASSERT(resv_wait(&resv.sent, k) == k, "completions sent");
    SIM_ASSERT(resv_count(sent_epipe) == k && resv_count(sent_ok) == 0 &&
                   resv_count(sent_other) == 0,
               "after close: %d ok, %d -EPIPE, %d other of %d", resv_count(sent_ok),
               resv_count(sent_epipe), resv_count(sent_other), k);

    /* reopened: nothing reserved from before, every request answered */
    pthread_mutex_lock(&resv.lock);
    resv.taken = resv.eagain = resv.sent = resv.sent_ok = 0;
    pthread_mutex_unlock(&resv.lock);
    ch = open_chan(vm);
    send_requests(ch, 1001, 0);
    read_all(ch, 1001, 0);
    SIM_ASSERT(resv_count(sent_ok) == NREQ, "%d of %d answered after the reopen",
               resv_count(sent_ok), NREQ);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

/* Let the guest take the interrupts that came within ms. */
static void take_interrupts(struct sim_vm *vm, int ms)
{
    uint64_t end = sim_now_ms() + (uint64_t)ms;
    while (sim_now_ms() < end)
        sim_poll(vm, 10);
}

/* Completions sent from the VSP's own I/O thread inside a send batch: the
 * guest, which has read everything and waits with its interrupt unmasked,
 * sees none of them and gets no signal until the batch ends; then all of
 * them, in order, with exactly one signal. */
static void test_batch_signals_once(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_RESV, 1);
    struct sim_chan *ch = open_chan(vm);
    resv_set_gate(true);
    resv_set_batch(true);
    take_interrupts(vm, 50);
    uint64_t ev0 = ch->events;
    struct vmpacket_descriptor d;
    uint8_t buf[REPLY_LEN];
    uint32_t len;
    for (int i = 0; i < 3; i++) {
        uint8_t req[8] = {0};
        SIM_ASSERT(sim_chan_send(ch, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
                                 1 + (uint64_t)i, req, sizeof(req)) == 0,
                   "request %d", i);
        SIM_ASSERT(resv_wait(&resv.sent, i + 1) == i + 1 && resv_count(sent_ok) == i + 1,
                   "completion %d not sent", i);
        SIM_ASSERT(sim_chan_try_recv(ch, &d, buf, sizeof(buf), &len) == 0,
                   "completion %d visible before the batch ended", i);
        SIM_ASSERT(__atomic_load_n(&ch->in.hdr->interrupt_mask, __ATOMIC_SEQ_CST) == 0,
                   "interrupt masked");
        take_interrupts(vm, 100);
    }
    SIM_ASSERT(ch->events == ev0, "%llu signals during the batch of 3 completions",
               (unsigned long long)(ch->events - ev0));
    resv_set_batch(false);
    uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
    while (ch->events == ev0 && sim_now_ms() < end)
        sim_poll(vm, 10);
    take_interrupts(vm, 100);
    SIM_ASSERT(ch->events == ev0 + 1, "%llu signals at the end of the batch (want 1)",
               (unsigned long long)(ch->events - ev0));
    for (int i = 0; i < 3; i++)
        SIM_ASSERT(sim_chan_try_recv(ch, &d, buf, sizeof(buf), &len) == 1 &&
                       d.trans_id == 1 + (uint64_t)i,
                   "completion %d not in the ring after the batch", i);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

/* The guest reads the completion of trans_id want (the next in order). */
static void read_one(struct sim_chan *ch, uint64_t want)
{
    struct vmpacket_descriptor d;
    uint8_t buf[REPLY_LEN];
    uint32_t len;
    SIM_ASSERT(sim_chan_recv(ch, &d, buf, sizeof(buf), &len, sim_timeout_ms) == 1 &&
                   d.type == VM_PKT_COMP && d.trans_id == want,
               "completion %llu never came (taken %d, writable %d)", (unsigned long long)want,
               resv_count(taken), resv_count(writable));
}

/* The VSP is blocked for room (reserve got -EAGAIN) and sends its
 * completions: m of them as usual, the rest inside a batch.  Each send
 * measures the room the blocked reserve needs against the packets written
 * so far, published or not, and leaves pending_send_sz for what is
 * missing.  While the batch is open the guest reads the m it sees; by its
 * count the ring had plenty of room before each read, so it does not
 * signal, though by the host's count it freed what pending_send_sz asked
 * for.  Once the batch ends every later read finds more room than asked
 * for already: no signal either.  So the batch's end has to look again
 * (CI, 2026-12-03: storvsp's completion flood under ASan stalled so). */
static void test_batch_end_finds_room(void **state)
{
    struct sim_vm *vm;
    struct sim_chan *ch;
    int k = up_with_requests(*state, false, &vm, &ch);
    const int m = 10;
    SIM_ASSERT(k > 2 * m, "only %d completions fit", k);
    resv_send(m);
    SIM_ASSERT(resv_wait(&resv.sent_ok, m) == m, "the first %d completions", m);
    resv_set_batch(true);
    resv_send(k - m);
    SIM_ASSERT(resv_wait(&resv.sent_ok, k) == k, "the batch's %d completions", k - m);
    uint64_t ev0 = ch->signals_sent;
    for (int i = 0; i < m; i++)
        read_one(ch, 1 + (uint64_t)i);
    SIM_ASSERT(sim_chan_try_recv(ch, NULL, NULL, 0, NULL) == 0, "the batch's packets visible");
    SIM_ASSERT(ch->signals_sent == ev0, "the guest signalled while the batch was open");
    SIM_ASSERT(resv_count(writable) == 0, "writable while the batch was open");
    resv_set_batch(false);
    for (int i = m; i < k; i++)
        read_one(ch, 1 + (uint64_t)i);
    SIM_ASSERT(resv_wait(&resv.writable, 1) >= 1 && resv_wait(&resv.taken, NREQ) == NREQ,
               "the VSP stayed blocked: writable %d, %d of %d requests taken",
               resv_count(writable), resv_count(taken), NREQ);
    resv_set_gate(true);
    for (int i = k; i < NREQ; i++)
        read_one(ch, 1 + (uint64_t)i);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

static void test_reserved_room_taken_back(void **state)
{
    struct sim_vm *vm;
    struct sim_chan *ch;
    int k = up_with_requests(*state, true, &vm, &ch);
    SIM_ASSERT(resv_count(fillers) >= 1, "%d fillers", resv_count(fillers));
    /* The guest claims to have read nothing but 8 bytes of a full ring:
     * read index just past the write index. */
    uint32_t w = __atomic_load_n(&ch->in.hdr->write_index, __ATOMIC_SEQ_CST);
    __atomic_store_n(&ch->in.hdr->read_index, (w + 8) % ch->in.size, __ATOMIC_SEQ_CST);
    resv_set_gate(true);
    SIM_ASSERT(resv_wait(&resv.sent, k) == k, "completions sent");
    SIM_ASSERT(resv_count(sent_eio) == 1 && resv_count(sent_epipe) == k - 1 &&
                   resv_count(sent_ok) == 0,
               "%d -EIO, %d -EPIPE, %d ok of %d", resv_count(sent_eio), resv_count(sent_epipe),
               resv_count(sent_ok), k);
    SIM_ASSERT(resv_wait(&resv.closes, 1) == 1, "the channel was not closed");
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
        cmocka_unit_test_setup_teardown(test_batch_signals_once, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_batch_end_finds_room, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reserved_room_taken_back, setup, fx_teardown),
    };
    SIM_RUN("sim_reserve", tests);
}
