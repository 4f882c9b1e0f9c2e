/* SPDX-License-Identifier: MIT */
/*
 * netvsp with several queues (vRSS), driven by the simulated hv_netvsc:
 * the NIC's backend is four socketpairs (netvsp.fd = a,b,c,d: one packet
 * fd per queue); the test holds their other ends, so it sees on which
 * queue each transmitted frame left and picks the queue of each frame it
 * injects (what a multi-queue TAP's own hash does in sim_netvsp_tap).
 *
 *   test_vrss          over NVSP 5, 6 and 6.1: the RSS capabilities report
 *                      4 queues and a 128-entry table; the guest asks for 7
 *                      subchannels (8 vCPUs) as hv_netvsc does and gets 3,
 *                      opens them, sets the RSS parameters (disable, then
 *                      enable); the send indirection table arrives sized to
 *                      the version; frames sent on each channel leave on
 *                      that channel's queue; 8 flows injected on the four
 *                      queues arrive each on its own channel, in order;
 *                      vmbusctl status counts 4 channels
 *   test_vrss_single   a 1-vCPU guest asks for no subchannel and gets every
 *                      frame on the primary; over NVSP 4 there are no RSS
 *                      capabilities and a subchannel request is refused
 *   test_vrss_pool     the receive buffer is shared: with a small one, a
 *                      guest holding every data sub-allocation on channel 2
 *                      starves channel 1; completing them on channel 2
 *                      lets channel 1's frame through, and so does closing
 *                      channel 2 while it holds them (given back)
 *   test_vrss_cycles   50 rounds of rmmod/modprobe (primary closed with its
 *                      subchannels, opened again; every other time the old
 *                      subchannels released only after the new ones came)
 *                      with ip link down/up in
 *                      each (filter 0 stops every channel, filter on starts
 *                      them): frames flow on all channels every round, no
 *                      fd and no relid is left behind
 *   test_vrss_host_cap [vsp netvsp] max_queues = 2 caps the 4-queue NIC at 2
 *                      queues (and channels); a bad value stops vmbusd
 *   test_vrss_bad      RSS parameters with a bad key length, 0 and 1000
 *                      table entries, a table past the buffer, a queue the
 *                      NIC does not have; subchannel requests before RNDIS,
 *                      for 0 and 2^32-1 subchannels, twice, on a
 *                      subchannel; a receive completion sent on another
 *                      channel: each refused with a warning naming the VM,
 *                      the NIC goes on, a second VM's NIC too
 */
#include "sim_test.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sim_netvsc.h"
#include "vsp/netvsp/protocol.h"

#define VM_MQ "vm-mq"
#define VM_MQ2 "vm-mq2"
#define NQ 4

struct qfx {
    struct sim_daemon *d;
    int peer[NQ + 1];  /* the test's ends: VM_MQ's four queues, VM_MQ2's one */
    int host[NQ + 1];
    char fds[64], fd2[16];
    struct sim_vm_param params[4];
    uint64_t seed;
};

static int qfx_setup(void **state)
{
    struct qfx *f = calloc(1, sizeof(*f));
    for (int i = 0; i <= NQ; i++) {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
            return -1;
        f->peer[i] = sp[0];
        f->host[i] = sp[1];
    }
    snprintf(f->fds, sizeof(f->fds), "%d,%d,%d,%d", f->host[0], f->host[1], f->host[2],
             f->host[3]);
    snprintf(f->fd2, sizeof(f->fd2), "%d", f->host[NQ]);
    f->params[0] = (struct sim_vm_param){VM_MQ, "netvsp", "fd", f->fds};
    f->params[1] = (struct sim_vm_param){VM_MQ2, "netvsp", "fd", f->fd2};
    f->params[2] = (struct sim_vm_param){NULL, NULL, NULL, NULL};
    simd_vm_params = f->params;
    static const struct sim_vm_cfg vms[] = {{VM_MQ, "netvsp"}, {VM_MQ2, "netvsp"}};
    sim_log_clear();
    f->d = simd_start(vms, 2, 1);
    simd_vm_params = NULL;
    if (!f->d)
        return -1;
    f->seed = 1;
    *state = f;
    return 0;
}

static int qfx_teardown(void **state)
{
    struct qfx *f = *state;
    simd_stop(f->d);
    for (int i = 0; i <= NQ; i++) {
        close(f->peer[i]);
        close(f->host[i]);
    }
    free(f);
    return 0;
}

/* A frame to dst whose payload (and flow id at byte 14) comes from seed. */
static void make_frame(uint8_t *buf, uint32_t len, const uint8_t dst[6], uint64_t seed,
                       uint8_t flow)
{
    static const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x77};
    sim_fill_pattern(buf, len, seed);
    memcpy(buf, dst, 6);
    memcpy(buf + 6, src, 6);
    buf[12] = 0x88;
    buf[13] = 0xb5;
    buf[14] = flow;
}

/* The frame queue `peer` got from the NIC, or -1 by the deadline. */
static int peer_recv(int fd, void *buf, size_t cap)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, SIM_TIMEOUT_MS) != 1)
        return -1;
    return (int)recv(fd, buf, cap, MSG_DONTWAIT);
}

static bool peer_empty(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 0;
}

/* A frame sent on each channel leaves on that channel's queue. */
static void tx_each(struct qfx *f, struct sim_netvsc *nv, const char *what)
{
    static uint8_t out[1514], in[2048];
    for (int c = 0; c < nv->nch; c++) {
        uint32_t len = 200 + 300 * (uint32_t)c;
        make_frame(out, len, (const uint8_t[6]){0x02, 9, 9, 9, 9, 9}, f->seed++, (uint8_t)c);
        nv->tx_chan = c;
        int st = snv_send_frame(nv, out, len, c % 2 ? c : -1); /* section or GPA */
        SIM_ASSERT(st == NVSP_STAT_SUCCESS, "%s: transmit on channel %d: %d", what, c, st);
        int got = peer_recv(f->peer[c], in, sizeof(in));
        SIM_ASSERT(got == (int)len && memcmp(in, out, len) == 0,
                   "%s: channel %d's frame did not leave on queue %d (%d bytes)", what, c, c,
                   got);
    }
    nv->tx_chan = 0;
    for (int c = 0; c < NQ; c++)
        SIM_ASSERT(peer_empty(f->peer[c]), "%s: queue %d got a stray frame", what, c);
}

/* nflows flows, `per` frames each, flow i injected on queue i % nch:
 * every frame arrives, on the channel of its queue, each flow in order. */
static void rx_flows(struct qfx *f, struct sim_netvsc *nv, int nflows, int per,
                     const char *what)
{
    static uint8_t out[64][1000], in[2048];
    SIM_ASSERT(nflows * per <= 64, "test too big");
    uint64_t before[SNV_MAX_CHANNELS];
    memcpy(before, nv->rx_frames_on, sizeof(before));
    for (int k = 0; k < per; k++)
        for (int fl = 0; fl < nflows; fl++) {
            uint8_t *o = out[k * nflows + fl];
            uint32_t len = 100 + 10 * (uint32_t)fl;
            make_frame(o, len, nv->mac, f->seed++, (uint8_t)fl);
            o[15] = (uint8_t)k;
            SIM_ASSERT(send(f->peer[fl % nv->nch], o, len, 0) == (ssize_t)len, "inject");
        }
    int next[64] = {0};
    for (int i = 0; i < nflows * per; i++) {
        int got = snv_recv_frame(nv, in, sizeof(in), SIM_TIMEOUT_MS);
        SIM_ASSERT(got > 15, "%s: frame %d of %d did not arrive", what, i, nflows * per);
        int fl = in[14], k = in[15];
        SIM_ASSERT(fl < nflows && k == next[fl], "%s: flow %d frame %d out of order (want %d)",
                   what, fl, k, next[fl]);
        SIM_ASSERT(memcmp(in, out[k * nflows + fl], (size_t)got) == 0, "%s: frame bytes", what);
        SIM_ASSERT(nv->last_chan == fl % nv->nch, "%s: flow %d arrived on channel %d, not %d",
                   what, fl, nv->last_chan, fl % nv->nch);
        next[fl]++;
    }
    for (int c = 0; c < nv->nch && nflows >= nv->nch; c++)
        SIM_ASSERT(nv->rx_frames_on[c] > before[c], "%s: nothing on channel %d", what, c);
    SIM_ASSERT(nv->host_bad == 0, "%s: host sent packets Linux rejects", what);
}

static void wait_send_table(struct sim_netvsc *nv, int nch, const char *what)
{
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (nv->send_tables == 0 && sim_now_ms() < end)
        snv_poll(nv, 10, false);
    SIM_ASSERT(nv->send_tables == 1, "%s: %d send indirection tables", what, nv->send_tables);
    for (int i = 0; i < 16; i++)
        SIM_ASSERT(nv->send_table[i] == (uint32_t)(i % nch), "%s: send table[%d] = %u", what,
                   i, nv->send_table[i]);
}

static void test_vrss(void **state)
{
    struct qfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_MQ, 1);
    static const uint32_t versions[] = {NVSP_VERSION_5, NVSP_VERSION_6, NVSP_VERSION_61};
    for (size_t v = 0; v < 3; v++) {
        char what[64];
        snprintf(what, sizeof(what), "NVSP 0x%x", versions[v]);
        struct sim_netvsc *nv = snv_open(vm, 32);
        SIM_ASSERT(nv && snv_bringup(nv, versions[v]) == 0, "%s: bring-up", what);
        SIM_ASSERT(nv->rss_queues == NQ && nv->rss_table_entries == 128,
                   "%s: RSS capabilities %u queues, %u entries", what, nv->rss_queues,
                   nv->rss_table_entries);
        int nch = snv_vrss(nv, 8);
        SIM_ASSERT(nch == NQ && nv->nch == NQ, "%s: %d channels (%d open)", what, nch, nv->nch);
        wait_send_table(nv, NQ, what);
        tx_each(f, nv, what);
        rx_flows(f, nv, 8, 3, what);
        char out[1024];
        SIM_ASSERT(sim_ctl_call(simd_control_path(f->d), "control " VM_MQ " netvsp status", out,
                                sizeof(out)) &&
                       strstr(out, "queues 4 channels 4 "),
                   "%s: status: %s", what, out);
        static char list[16384];
        SIM_ASSERT(sim_ctl_call(simd_control_path(f->d), "list", list, sizeof(list)) &&
                       strstr(list, "\"netvsp.channels\":\"4\"") &&
                       strstr(list, "\"netvsp.queues\":\"4\""),
                   "%s: list: %s", what, list);
        snv_free(nv);
    }
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_MQ, "netvsp", NULL) == 0, "warnings for a good guest");
    sim_vm_free(vm);
}

static void test_vrss_single(void **state)
{
    struct qfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_MQ, 1);
    struct sim_netvsc *nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up");
    SIM_ASSERT(snv_vrss(nv, 1) == 1 && nv->nch == 1, "one vCPU, one channel");
    tx_each(f, nv, "single queue");
    rx_flows(f, nv, 4, 2, "single queue");
    SIM_ASSERT(nv->send_tables == 0, "a send table without subchannels");
    snv_free(nv);

    nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_4) == 0, "bring-up over NVSP 4");
    SIM_ASSERT(nv->rss_queues == 0, "RSS capabilities queried over NVSP 4");
    sim_log_clear();
    uint32_t got = 99;
    SIM_ASSERT(snv_subchannel_request(nv, 3, &got) == NVSP_STAT_FAIL,
               "subchannels over NVSP 4");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_MQ, "subchannel request over NVSP", NULL),
               "no warning for subchannels over NVSP 4");
    rx_flows(f, nv, 2, 2, "NVSP 4");
    snv_free(nv);
    sim_vm_free(vm);
}

/* Frames injected on queue q until the guest holds every data
 * sub-allocation (completions held): each frame takes one, 16 are kept
 * for control replies, so sub_count - 16 arrive and two more wait. */
static void fill_pool(struct qfx *f, struct sim_netvsc *nv, int q)
{
    uint8_t fr[200];
    uint64_t want = nv->sub_count - 16, got0 = nv->rx_frames_on[q];
    nv->hold_completions = true;
    for (uint64_t i = 0; i < want + 2; i++) {
        make_frame(fr, sizeof(fr), nv->mac, f->seed++, (uint8_t)q);
        SIM_ASSERT(send(f->peer[q], fr, sizeof(fr), 0) == sizeof(fr), "inject");
    }
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (nv->rx_frames_on[q] - got0 < want && sim_now_ms() < end)
        snv_poll(nv, 10, false);
    snv_poll(nv, 100, false);
    SIM_ASSERT(nv->rx_frames_on[q] - got0 == want, "%llu frames on channel %d, want %llu",
               (unsigned long long)(nv->rx_frames_on[q] - got0), q,
               (unsigned long long)want);
    while (nv->rxq_n) { /* the frames themselves are not looked at */
        uint8_t in[256];
        snv_recv_frame(nv, in, sizeof(in), 0);
    }
}

static void test_vrss_pool(void **state)
{
    struct qfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_MQ, 1);
    for (int round = 0; round < 2; round++) {
        struct sim_netvsc *nv = snv_open(vm, 32);
        SIM_ASSERT(nv && snv_nvsp_init(nv, NVSP_VERSION_61) == 1 &&
                       snv_buffers(nv, 40, 255) == 0 && snv_rndis_up(nv) == 0,
                   "bring-up with a 40-page receive buffer");
        uint32_t filter = NDIS_PACKET_TYPE_DIRECTED;
        SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &filter, 4) == 0, "filter");
        SIM_ASSERT(snv_vrss(nv, NQ) == NQ, "vRSS");
        fill_pool(f, nv, 2);
        for (int i = 0; i < nv->nheld; i++)
            SIM_ASSERT(nv->held_chan[i] == 2, "held on channel %d", nv->held_chan[i]);
        /* channel 1's frame waits for a sub-allocation */
        uint8_t fr[150], in[256];
        make_frame(fr, sizeof(fr), nv->mac, f->seed++, 1);
        SIM_ASSERT(send(f->peer[1], fr, sizeof(fr), 0) == sizeof(fr), "inject on queue 1");
        snv_poll(nv, 300, false);
        SIM_ASSERT(nv->rx_frames_on[1] == 0, "channel 1 got a frame from a dry pool");
        if (round == 0) {
            snv_release_held(nv); /* completions on channel 2 */
        } else {
            /* the guest closes channel 2 with the completions unsent */
            SIM_ASSERT(sim_chan_close(nv->chans[2]) == 0, "close channel 2");
            nv->nheld = 0;
        }
        nv->hold_completions = false;
        int got = -1;
        uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
        while (got < 0 && sim_now_ms() < end) {
            got = snv_recv_frame(nv, in, sizeof(in), 50);
            if (got >= 0 && nv->last_chan != 1)
                got = -1; /* channel 2's waiting frames (round 0) */
        }
        SIM_ASSERT(got == sizeof(fr) && memcmp(in, fr, sizeof(fr)) == 0,
                   "round %d: channel 1's frame did not come after channel 2 %s", round,
                   round ? "closed" : "completed");
        SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
        snv_free(nv);
        for (int q = 0; q < NQ; q++) { /* what queue 2 left unread */
            uint8_t b[256];
            while (recv(f->host[q], b, sizeof(b), MSG_DONTWAIT) > 0)
                ;
        }
    }
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_MQ, "netvsp", NULL) == 0, "warnings for a good guest");
    sim_vm_free(vm);
}

static void test_vrss_cycles(void **state)
{
    struct qfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_MQ, 1);
    int fds = -1;
    for (int round = 0; round < 50; round++) {
        char what[64];
        snprintf(what, sizeof(what), "round %d", round);
        struct sim_netvsc *nv = snv_open(vm, 16);
        SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "%s: bring-up", what);
        SIM_ASSERT(snv_vrss(nv, NQ) == NQ, "%s: vRSS", what);
        /* (odd rounds: the last round's subchannels are released only now,
         * after the new ones were offered: a guest slow to release) */
        SIM_ASSERT(sim_release_subchannels(vm) >= 0, "%s: release", what);
        rx_flows(f, nv, NQ, 1, what);
        /* ip link set down: filter 0 stops every channel at once */
        uint32_t filter = 0;
        SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &filter, 4) == 0, "filter 0");
        uint8_t fr[100];
        for (int q = 0; q < NQ; q++) {
            make_frame(fr, sizeof(fr), nv->mac, f->seed++, 0);
            SIM_ASSERT(send(f->peer[q], fr, sizeof(fr), 0) == sizeof(fr), "inject");
        }
        /* each queue's drained frame is gone before the guest turns
         * receive back on (no stale frames) */
        uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
        for (int q = 0; q < NQ; q++) {
            int pending = 1;
            while (pending && sim_now_ms() < end) {
                snv_poll(nv, 5, false);
                pending = !peer_empty(f->host[q]);
            }
            SIM_ASSERT(!pending, "%s: queue %d not drained with filter 0", what, q);
        }
        SIM_ASSERT(nv->rxq_n == 0, "%s: %d frames delivered with filter 0", what, nv->rxq_n);
        filter = NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_BROADCAST;
        SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &filter, 4) == 0, "filter on");
        rx_flows(f, nv, NQ, 1, what);
        tx_each(f, nv, what);
        /* rmmod: subchannels and primary closed, subchannels released
         * (every other round, later) */
        nv->defer_release = round % 2 == 0 && round < 48;
        snv_free(nv);
        if (round == 1) /* the first round that released all it had */
            fds = sim_count_fds();
    }
    /* (vmbusd may still be closing something of the last round: a leak
     * of one fd a round would show as 49 more) */
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (sim_count_fds() > fds && sim_now_ms() < end)
        sim_poll(vm, 10);
    SIM_ASSERT(sim_count_fds() <= fds, "fds: %d after round 1, %d after 50", fds, sim_count_fds());
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_MQ, "netvsp", NULL) == 0, "warnings for a good guest");
    sim_vm_free(vm);
}

static void test_vrss_host_cap(void **state)
{
    struct qfx *f = *state;
    /* a daemon of its own: the fixture's has no cap */
    static const struct sim_vm_cfg vms[] = {{VM_MQ, "netvsp"}};
    const struct sim_vsp_param cap[] = {{"netvsp", "max_queues", "2"}};
    simd_vm_params = f->params;
    struct sim_daemon *d = simd_start_params(vms, 1, 1, cap, 1);
    simd_vm_params = NULL;
    SIM_ASSERT(d != NULL, "vmbusd with max_queues = 2");
    struct sim_vm *vm = sim_up_offers(d, VM_MQ, 1);
    struct sim_netvsc *nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up");
    SIM_ASSERT(nv->rss_queues == 2, "RSS capabilities: %u queues under a cap of 2",
               nv->rss_queues);
    SIM_ASSERT(snv_vrss(nv, 8) == 2, "%d channels under a cap of 2", nv->nch);
    rx_flows(f, nv, 4, 2, "capped");
    snv_free(nv);
    sim_vm_free(vm);
    simd_stop(d);
    const struct sim_vsp_param bad[] = {{"netvsp", "max_queues", "65"}};
    sim_log_clear();
    simd_vm_params = f->params;
    d = simd_start_params(vms, 1, 1, bad, 1);
    simd_vm_params = NULL;
    if (d)
        simd_stop(d);
    SIM_ASSERT(d == NULL, "max_queues = 65 accepted");
    SIM_ASSERT(sim_log_count(LOG_ERR, "max_queues", "1..64", NULL) > 0,
               "no error names max_queues and its range");
}

/* ---- bad input ----------------------------------------------------------- */

static void other_vm_works(struct qfx *f, const char *after)
{
    struct sim_vm *vm = sim_up_offers(f->d, VM_MQ2, 1);
    struct sim_netvsc *nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "%s: second VM's bring-up", after);
    SIM_ASSERT(nv->rss_queues == 0, "a one-queue NIC reports RSS capabilities");
    uint8_t fr[300], in[512];
    make_frame(fr, sizeof(fr), (const uint8_t[6]){2, 1, 1, 1, 1, 1}, 77, 0);
    SIM_ASSERT(snv_send_frame(nv, fr, sizeof(fr), 0) == NVSP_STAT_SUCCESS, "second VM tx");
    SIM_ASSERT(peer_recv(f->peer[NQ], in, sizeof(in)) == sizeof(fr), "second VM's frame");
    make_frame(fr, sizeof(fr), nv->mac, 78, 0);
    SIM_ASSERT(send(f->peer[NQ], fr, sizeof(fr), 0) == sizeof(fr), "inject");
    SIM_ASSERT(snv_recv_frame(nv, in, sizeof(in), SIM_TIMEOUT_MS) == sizeof(fr),
               "%s: second VM rx", after);
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_MQ2, NULL, NULL) == 0, "second VM warned");
    snv_free(nv);
    sim_vm_free(vm);
}

static void rss_refused(struct sim_netvsc *nv, uint32_t entries, uint32_t channels,
                        uint16_t key, uint32_t table_bytes, const char *needle)
{
    sim_log_clear();
    int64_t st = snv_set_rss(nv, 0, entries, channels, key, table_bytes);
    SIM_ASSERT(st > 0, "RSS parameters (%u entries, key %u, table %u bytes) accepted: %lld",
               entries, key, table_bytes, (long long)st);
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_MQ, "netvsp", needle),
               "no warning naming %s with '%s'", VM_MQ, needle);
}

static void test_vrss_bad(void **state)
{
    struct qfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_MQ, 1);
    struct sim_netvsc *nv = snv_open(vm, 32);
    uint32_t got = 0;
    /* before RNDIS is up (buffers set up, as Linux would have) */
    SIM_ASSERT(nv && snv_nvsp_init(nv, NVSP_VERSION_61) == 1 && snv_buffers(nv, 512, 255) == 0,
               "init");
    sim_log_clear();
    SIM_ASSERT(snv_subchannel_request(nv, 3, &got) == NVSP_STAT_FAIL, "before RNDIS");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_MQ, "subchannel request before", NULL),
               "warning before RNDIS");
    SIM_ASSERT(snv_rndis_up(nv) == 0, "RNDIS");
    uint32_t filter = NDIS_PACKET_TYPE_DIRECTED;
    SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &filter, 4) == 0, "filter");
    static const uint32_t counts[] = {0, 64, 0xffffffffu};
    for (int i = 0; i < 3; i++) {
        sim_log_clear();
        SIM_ASSERT(snv_subchannel_request(nv, counts[i], &got) == NVSP_STAT_FAIL,
                   "%u subchannels", counts[i]);
        SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_MQ, "subchannel request for", NULL),
                   "warning for %u subchannels", counts[i]);
    }
    /* more than the NIC has: as many as it has */
    SIM_ASSERT(snv_subchannel_request(nv, 10, &got) == NVSP_STAT_SUCCESS && got == NQ - 1,
               "10 subchannels asked, %u allocated", got);
    SIM_ASSERT(snv_open_subchannels(nv, got) == 0 && nv->nch == NQ, "open");
    wait_send_table(nv, NQ, "after a clamped request");
    sim_log_clear();
    SIM_ASSERT(snv_subchannel_request(nv, 1, &got) == NVSP_STAT_FAIL, "twice");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_MQ, "second subchannel request", NULL),
               "warning for twice");
    /* on a subchannel */
    sim_log_clear();
    struct nvsp_msg m;
    memset(&m, 0, sizeof(m));
    m.type = NVSP_MSG5_SUBCHANNEL;
    m.u.subchannel.op = NVSP_SUBCHANNEL_ALLOCATE;
    m.u.subchannel.num_subchannels = 1;
    SIM_ASSERT(sim_chan_send(nv->chans[2], VM_PKT_DATA_INBAND,
                             VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, 4242, &m,
                             sizeof(m)) == 0,
               "send on a subchannel");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_MQ, "on subchannel 2", NULL),
               "warning for a request on a subchannel");
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (!(nv->comp_valid && nv->comp_tid == 4242) && sim_now_ms() < end)
        snv_poll(nv, 10, false);
    uint32_t st = 0;
    memcpy(&st, nv->comp + 4, 4);
    SIM_ASSERT(nv->comp_valid && nv->comp_tid == 4242 && st == NVSP_STAT_FAIL,
               "no failed completion on the subchannel");
    nv->comp_valid = false;

    /* RSS parameters */
    rss_refused(nv, 128, NQ, 39, 4 * 128, "hash key");
    rss_refused(nv, 128, NQ, 0, 4 * 128, "hash key");
    rss_refused(nv, 0, NQ, 40, 0, "indirection table not");
    rss_refused(nv, 1000, NQ, 40, 4000, "indirection table not");
    rss_refused(nv, 128, NQ, 40, 4 * 128 + 2, "indirection table not");
    rss_refused(nv, 128, NQ, 40, 4 * 128 + 4 * 64, "runs past");
    rss_refused(nv, 128, 2 * NQ, 40, 4 * 128, "names a queue");
    SIM_ASSERT(snv_set_rss(nv, 0, 128, NQ, 40, 4 * 128) == 0, "good RSS parameters refused");

    /* a receive completion on another channel than the packet's */
    nv->hold_completions = true;
    uint8_t fr[120], in[256];
    make_frame(fr, sizeof(fr), nv->mac, 5, 1);
    SIM_ASSERT(send(f->peer[1], fr, sizeof(fr), 0) == sizeof(fr), "inject");
    SIM_ASSERT(snv_recv_frame(nv, in, sizeof(in), SIM_TIMEOUT_MS) == sizeof(fr) &&
                   nv->last_chan == 1 && nv->nheld == 1,
               "held frame on channel 1");
    nv->hold_completions = false;
    sim_log_clear();
    struct {
        uint32_t type, status;
    } c = {NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE, NVSP_STAT_SUCCESS};
    SIM_ASSERT(sim_chan_send(nv->chans[3], VM_PKT_COMP, 0, nv->held_tids[0], &c, sizeof(c)) ==
                   0,
               "completion on channel 3");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_MQ, "does not hold on this channel", NULL),
               "no warning for a completion on the wrong channel");
    sim_log_clear();
    snv_release_held(nv); /* on channel 1: accepted */
    rx_flows(f, nv, 8, 2, "after bad input");
    tx_each(f, nv, "after bad input");
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_MQ, "netvsp", NULL) == 0, "the right completion warned");
    snv_free(nv);
    sim_vm_free(vm);
    other_vm_works(f, "bad vRSS input");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_vrss, qfx_setup, qfx_teardown),
        cmocka_unit_test_setup_teardown(test_vrss_single, qfx_setup, qfx_teardown),
        cmocka_unit_test_setup_teardown(test_vrss_pool, qfx_setup, qfx_teardown),
        cmocka_unit_test_setup_teardown(test_vrss_cycles, qfx_setup, qfx_teardown),
        cmocka_unit_test_setup_teardown(test_vrss_host_cap, qfx_setup, qfx_teardown),
        cmocka_unit_test_setup_teardown(test_vrss_bad, qfx_setup, qfx_teardown),
    };
    SIM_RUN("netvsp_vrss", tests);
}
