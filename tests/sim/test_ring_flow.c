/* SPDX-License-Identifier: MIT */
/*
 * Flow control on the guest->host ring while vmbusd's VSP consumes it: the
 * guest must see the space free up while the VSP is still draining, not only
 * once the ring is empty (a guest doing back-to-back round trips would find
 * its ring full although everything in it was consumed).
 *
 *   test_read_index_moves_while_draining  the guest fills its ring; while a
 *                                         VSP drains it, the published read
 *                                         index moves before the last packet
 *                                         is taken, and no signal is sent
 *                                         (the guest asked for none)
 *   test_pending_send_sz_signalled        same, with the guest blocked on
 *                                         pending_send_sz: it is signalled
 *                                         before the last packet is taken
 *   test_list_shows_ring_fill             vmbusctl list (xp_snapshot) shows
 *                                         the open channel and its full ring
 *
 * Deterministic: a gate VSP linked into the test (simd_linked_plugins)
 * consumes nothing until the guest has filled its ring, then drains it one
 * vsp_recv() at a time and, after each packet, records the guest's ring
 * header and event flag (guest memory, the guest thread does not touch them
 * meanwhile: it waits for the drain to end without servicing interrupts).
 * The records depend only on when vmbusd publishes, not on scheduling.
 */
#include "sim_test.h"

#include <pthread.h>
#include <time.h>

#include "vmbusd/vsp.h"

#define VM_GATE "vm-gate"
#define PAYLOAD 200

static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool go;                                /* receive may consume */
    struct vmbus_ring_header *ring;         /* the guest's guest->host ring */
    uint64_t *flags;                        /* its vCPU's SINT2 event flags */
    uint32_t relid;
    uint32_t start_read;                    /* read_index when the drain began */
    int taken;                              /* packets the VSP took */
    int moved_at;                           /* taken when read_index first moved (0: never) */
    int signalled_at;                       /* taken when the event flag first showed */
    bool drained;
} gt = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static const struct hv_guid gate_class = {
    {0x5d, 0x1b, 0x07, 0x3e, 0x2a, 0x44, 0x4c, 0x61, 0x8f, 0x02, 0x91, 0x7e, 0x3c, 0x55, 0x0a, 0x19}};

static bool flag_set(void)
{
    return (__atomic_load_n(&gt.flags[gt.relid / 64], __ATOMIC_SEQ_CST) >> (gt.relid % 64)) & 1;
}

static void gate_receive(struct vsp_channel *ch)
{
    pthread_mutex_lock(&gt.lock);
    bool go = gt.go;
    pthread_mutex_unlock(&gt.lock);
    if (!go)
        return; /* the guest is still filling its ring */
    struct vsp_packet pkt;
    while (vsp_recv(ch, &pkt) > 0) {
        pthread_mutex_lock(&gt.lock);
        gt.taken++;
        if (!gt.moved_at &&
            __atomic_load_n(&gt.ring->read_index, __ATOMIC_SEQ_CST) != gt.start_read)
            gt.moved_at = gt.taken;
        if (!gt.signalled_at && flag_set())
            gt.signalled_at = gt.taken;
        pthread_mutex_unlock(&gt.lock);
    }
    pthread_mutex_lock(&gt.lock);
    gt.drained = true;
    pthread_cond_broadcast(&gt.cond);
    pthread_mutex_unlock(&gt.lock);
}

static const struct vsp_channel_ops gate_ops = {.receive = gate_receive};

static int gate_attach(void *state, struct vsp_partition *p, void **part_state)
{
    (void)state;
    (void)part_state;
    struct vsp_offer o = {.class_id = gate_class, .ops = &gate_ops};
    return vsp_channel_offer(p, &o) ? 0 : -ENOMEM;
}

static const struct vsp_plugin gate_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "gate",
    .attach = gate_attach,
};
static const struct vsp_plugin *const linked[] = {&gate_plugin, NULL};

static int setup(void **state)
{
    static const struct sim_vm_cfg vms[] = {{VM_GATE, "gate"}};
    pthread_mutex_lock(&gt.lock);
    gt.go = gt.drained = false;
    gt.taken = gt.moved_at = gt.signalled_at = 0;
    pthread_mutex_unlock(&gt.lock);
    return fx_setup_linked(state, vms, linked);
}

/* Open the gate channel and fill its guest->host ring (the VSP takes
 * nothing).  Returns the packets written. */
static int fill(struct sim_vm *vm, struct sim_chan **out)
{
    vm->expect_offers = 1;
    SIM_ASSERT(sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) == 1, "bringup");
    struct sim_chan *ch = sim_open_class(vm, &gate_class, 0, 4, 4); /* 12 KiB of data */
    *out = ch;

    uint8_t payload[PAYLOAD];
    sim_fill_pattern(payload, sizeof(payload), 1);
    int n = 0;
    while (sim_chan_send(ch, VM_PKT_DATA_INBAND, 0, (uint64_t)n, payload, sizeof(payload)) == 0)
        n++;
    SIM_ASSERT(n > 8, "only %d packets fit", n);
    return n;
}

/* fill(), optionally block on pending_send_sz, then let the VSP drain the
 * ring and wait until it is done.  Returns the packets written. */
static int fill_and_drain(struct sim_vm *vm, struct sim_chan **out, bool pending)
{
    int n = fill(vm, out);
    struct sim_chan *ch = *out;
    struct sim_offer *of = sim_find_offer(vm, ch->relid);
    if (pending)
        /* blocked: "signal me once one more packet fits" (hv_sock style) */
        __atomic_store_n(&ch->out.hdr->pending_send_sz, 16u + PAYLOAD + 8u, __ATOMIC_SEQ_CST);

    uint64_t *flags = (uint64_t *)(vm->mem + vm->vp[ch->target_vp].siefp_off +
                                   VMBUS_MESSAGE_SINT * HV_EVENT_FLAGS_BYTES);
    __atomic_fetch_and(&flags[of->relid / 64], ~(1ull << (of->relid % 64)), __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&gt.lock);
    gt.ring = ch->out.hdr;
    gt.flags = flags;
    gt.relid = of->relid;
    gt.start_read = __atomic_load_n(&ch->out.hdr->read_index, __ATOMIC_SEQ_CST);
    gt.go = true;
    pthread_mutex_unlock(&gt.lock);
    SIM_ASSERT(sim_signal_event(vm, of->connection_id) == 0, "signal");

    struct timespec end;
    clock_gettime(CLOCK_REALTIME, &end);
    end.tv_sec += 20; /* bounds a hang only; the assertions are on the records */
    pthread_mutex_lock(&gt.lock);
    while (!gt.drained)
        if (pthread_cond_timedwait(&gt.cond, &gt.lock, &end) != 0)
            break;
    bool drained = gt.drained;
    int taken = gt.taken;
    pthread_mutex_unlock(&gt.lock);
    SIM_ASSERT(drained && taken == n, "the VSP took %d of %d packets", taken, n);
    return n;
}

static void test_read_index_moves_while_draining(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_vm_create(f->d, VM_GATE);
    SIM_ASSERT(vm != NULL, "create");
    struct sim_chan *ch;
    int n = fill_and_drain(vm, &ch, false);
    SIM_ASSERT(gt.moved_at > 0 && gt.moved_at < n,
               "read index first published after packet %d of %d (0: only once empty)",
               gt.moved_at, n);
    SIM_ASSERT(gt.signalled_at == 0, "signalled at packet %d though pending_send_sz is 0",
               gt.signalled_at);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

static void test_pending_send_sz_signalled(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_vm_create(f->d, VM_GATE);
    SIM_ASSERT(vm != NULL, "create");
    struct sim_chan *ch;
    int n = fill_and_drain(vm, &ch, true);
    uint64_t ev = ch->events; /* the guest has not serviced an interrupt since the fill */
    SIM_ASSERT(gt.signalled_at > 0 && gt.signalled_at < n,
               "guest blocked on pending_send_sz signalled after packet %d of %d "
               "(0: only once empty)", gt.signalled_at, n);
    SIM_ASSERT(gt.moved_at > 0 && gt.moved_at <= gt.signalled_at,
               "signalled at packet %d, read index published at %d", gt.signalled_at,
               gt.moved_at);
    /* and the guest's interrupt handler finds it */
    SIM_ASSERT(sim_chan_wait_event(ch, ev, sim_timeout_ms), "no event reached the guest");
    __atomic_store_n(&ch->out.hdr->pending_send_sz, 0, __ATOMIC_SEQ_CST);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

/* The number after "key": in a JSON line, or -1. */
static long json_num(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    const char *p = strstr(json, pat);
    return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

/* vmbusctl list (xp_snapshot): the open channel with its full guest->host
 * ring, as the guest filled it. */
static void test_list_shows_ring_fill(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_vm_create(f->d, VM_GATE);
    SIM_ASSERT(vm != NULL, "create");
    struct sim_chan *ch;
    fill(vm, &ch);
    static char buf[8192];
    SIM_ASSERT(sim_ctl_call(simd_control_path(f->d), "list", buf, sizeof(buf)), "list");
    SIM_ASSERT(strstr(buf, "\"state\":\"open\"") != NULL, "channel not open in %s", buf);
    SIM_ASSERT(json_num(buf, "relid") == (long)ch->relid, "relid in %s", buf);
    /* full but for less than one packet (224 of 12288 bytes) */
    SIM_ASSERT(json_num(buf, "in_fill_pct") >= 98, "guest->host fill in %s", buf);
    SIM_ASSERT(json_num(buf, "out_fill_pct") == 0, "host->guest fill in %s", buf);
    SIM_ASSERT(json_num(buf, "id") == (long)vm->partition_id, "partition id in %s", buf);
    SIM_ASSERT(strstr(buf, "\"version\":\"5.3\"") != NULL, "version in %s", buf);
    SIM_ASSERT(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_index_moves_while_draining, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pending_send_sz_signalled, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_shows_ring_fill, setup, fx_teardown),
    };
    SIM_RUN("sim_ring_flow", tests);
}
