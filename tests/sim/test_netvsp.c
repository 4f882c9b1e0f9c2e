/* SPDX-License-Identifier: MIT */
/*
 * netvsp, the synthetic NIC, driven by a simulated hv_netvsc (sim_netvsc.c)
 * with a socketpair as the backend (netvsp.fd): the test holds the other
 * end and sees exactly the frames the NIC transmits, and injects the
 * frames it receives.
 *
 *   test_versions        bring-up over every NVSP version Linux proposes
 *                        (INIT, buffers, RNDIS and the probe OIDs, filter),
 *                        the configured MAC, one frame each way through a
 *                        send section and through GPA-direct ranges, two
 *                        frames in one partial-copy request; an
 *                        unknown version refused first
 *   test_filter_zero     packet filter 0 stops receive: a frame arriving
 *                        meanwhile is dropped, not delivered later
 *   test_backpressure    a guest holding its receive completions gets at
 *                        most the data sub-allocations, control replies still
 *                        come (the reserve), and every frame arrives in order
 *                        once it completes them
 *   test_rx_stream_tx    a stream of received frames with the guest's
 *                        transmits in it (TCP's acknowledgements), each
 *                        waited for: every frame arrives in order, every
 *                        transmit reaches the backend, the last ones after
 *                        the backend ran empty, and the guest's ring ends
 *                        unmasked (a netvsp that stopped taking the guest's
 *                        packets while busy receiving, e.g. by masking its
 *                        ring, fails here)
 *   test_link            vmbusctl link down/up reach the guest as RNDIS
 *                        indications; status counts the frames
 *   test_revoke          REVOKE of both buffers lets their GPADLs be torn
 *                        down while the channel is open (Linux's removal)
 *   test_offload         netvsp.offload = on: the capabilities Linux needs
 *                        for TX checksums and TSO; LSO frames (IPv4, IPv6)
 *                        reach the backend with a GSO virtio-net header and
 *                        the lengths and checksums hv_netvsc leaves at 0
 *                        filled in; UDP checksum requests; mismatched
 *                        requests fail; a NIC without offloads refuses them;
 *                        received partial checksums completed, checked ones
 *                        and completed ones reported to the guest
 *   test_rsc             receive coalescing: offered over NVSP 6.1 with
 *                        offloads; the backend's GSO frames (IPv4, IPv6,
 *                        partial or checked checksum, up to 64 KB) reach
 *                        the guest as fragments of one packet it joins into
 *                        one valid segment; 200 of them through a smaller
 *                        receive buffer; bad GSO frames dropped; none with
 *                        LRO off, over NVSP 6, or with a small receive
 *                        buffer
 *   test_jumbo           the guest's NDIS config MTU (9000) sizes the receive
 *                        buffer; larger is refused; oversized frames dropped
 *   test_backend_closed  the packet fd's peer closes: one warning, no more
 *                        reads, transmits dropped and completed
 *   test_bad_*           malformed NVSP and RNDIS input: the error for that
 *                        message, a warning naming the VM, the NIC goes on
 *                        working, a second VM's NIC unaffected
 *   test_refused         a VM whose packet fd is not open is refused with a
 *                        reason naming it; a bad config line names FILE:LINE
 */
#include "sim_test.h"
#include "vsp/netvsp/offload.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sim_netvsc.h"
#include "vmbusd/vsp.h"
#include "vsp/netvsp/protocol.h"

#define VM_NIC "vm-nic"
#define VM_NIC2 "vm-nic2"
#define VM_NIC_NOFD "vm-nic-nofd"
#define VM_NIC_OFF "vm-nic-offload"
#define NIC_MAC "00:15:5d:12:34:56"

struct nfx {
    struct sim_daemon *d;
    int peer[3];   /* the test's ends of the three NICs' socketpairs */
    int host[3];   /* the ends given to vmbusd (it dups them) */
    char fdstr[3][16];
    struct sim_vm_param params[8];
    struct sim_vm *vm2;
    struct sim_netvsc *nv2;
    uint64_t seed;
};

static int nfx_setup(void **state)
{
    struct nfx *f = calloc(1, sizeof(*f));
    for (int i = 0; i < 3; i++) {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
            return -1;
        f->peer[i] = sp[0];
        f->host[i] = sp[1];
        snprintf(f->fdstr[i], sizeof(f->fdstr[i]), "%d", sp[1]);
    }
    f->params[0] = (struct sim_vm_param){VM_NIC, "netvsp", "fd", f->fdstr[0]};
    f->params[1] = (struct sim_vm_param){VM_NIC, "netvsp", "mac", NIC_MAC};
    f->params[2] = (struct sim_vm_param){VM_NIC2, "netvsp", "fd", f->fdstr[1]};
    f->params[3] = (struct sim_vm_param){VM_NIC_NOFD, "netvsp", "fd", "999"};
    f->params[4] = (struct sim_vm_param){VM_NIC_OFF, "netvsp", "fd", f->fdstr[2]};
    f->params[5] = (struct sim_vm_param){VM_NIC_OFF, "netvsp", "offload", "on"};
    f->params[6] = (struct sim_vm_param){NULL, NULL, NULL, NULL};
    simd_vm_params = f->params;
    static const struct sim_vm_cfg vms[] = {{VM_NIC, "netvsp"},
                                            {VM_NIC2, "netvsp"},
                                            {VM_NIC_NOFD, "netvsp"},
                                            {VM_NIC_OFF, "netvsp"}};
    sim_log_clear();
    f->d = simd_start(vms, 4, 1);
    simd_vm_params = NULL;
    if (!f->d)
        return -1;
    f->seed = 1;
    *state = f;
    return 0;
}

static int nfx_teardown(void **state)
{
    struct nfx *f = *state;
    snv_free(f->nv2);
    if (f->vm2)
        sim_vm_free(f->vm2);
    simd_stop(f->d);
    for (int i = 0; i < 3; i++) {
        if (f->peer[i] >= 0)
            close(f->peer[i]);
        close(f->host[i]);
    }
    free(f);
    return 0;
}

/* A NIC on VM name brought up like Linux (NVSP 6.1, 32 pages of send
 * buffer); *vm is its VM. */
static struct sim_netvsc *nic_up(struct nfx *f, const char *name, struct sim_vm **vm)
{
    *vm = sim_up_offers(f->d, name, 1);
    struct sim_netvsc *nv = snv_open(*vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "%s: bring-up", name);
    return nv;
}

/* An Ethernet frame to dst of len bytes, payload from seed. */
static void make_frame(uint8_t *buf, uint32_t len, const uint8_t dst[6], uint64_t seed)
{
    static const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x99};
    sim_fill_pattern(buf, len, seed);
    memcpy(buf, dst, 6);
    memcpy(buf + 6, src, 6);
    buf[12] = 0x88; /* local experimental ethertype */
    buf[13] = 0xb5;
}

/* The next frame the NIC transmitted into the backend, or -1 by the deadline. */
static int peer_recv(int fd, void *buf, size_t cap)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, SIM_TIMEOUT_MS) != 1)
        return -1;
    return (int)recv(fd, buf, cap, MSG_DONTWAIT);
}

/* One frame each way: guest -> backend through section (or GPA-direct
 * when section < 0), backend -> guest. */
static void roundtrip(struct nfx *f, struct sim_netvsc *nv, int peer, int section, uint32_t len,
                      const char *what)
{
    static uint8_t out[9100], in[9100];
    make_frame(out, len, (const uint8_t[6]){0x02, 1, 2, 3, 4, 5}, f->seed++);
    int st = snv_send_frame(nv, out, len, section);
    SIM_ASSERT(st == NVSP_STAT_SUCCESS, "%s: transmit status %d", what, st);
    int got = peer_recv(peer, in, sizeof(in));
    SIM_ASSERT(got == (int)len && memcmp(in, out, len) == 0,
               "%s: backend got %d bytes, not the %u sent", what, got, len);
    make_frame(out, len, nv->mac, f->seed++);
    SIM_ASSERT(send(peer, out, len, 0) == (ssize_t)len, "%s: inject", what);
    got = snv_recv_frame(nv, in, sizeof(in), SIM_TIMEOUT_MS);
    SIM_ASSERT(got == (int)len && memcmp(in, out, len) == 0,
               "%s: guest got %d bytes, not the %u injected", what, got, len);
    SIM_ASSERT(nv->host_bad == 0, "%s: host sent packets Linux rejects", what);
}

/* The second VM's NIC comes up (once) and moves a frame each way. */
static void other_nic_works(struct nfx *f, const char *after)
{
    if (!f->nv2) {
        f->nv2 = nic_up(f, VM_NIC2, &f->vm2);
    }
    char what[128];
    snprintf(what, sizeof(what), "second NIC after %s", after);
    roundtrip(f, f->nv2, f->peer[1], 1, 300, what);
}

static void test_versions(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_NIC, 1);
    static const uint32_t versions[] = {NVSP_VERSION_61, NVSP_VERSION_6, NVSP_VERSION_5,
                                        NVSP_VERSION_4,  NVSP_VERSION_2, NVSP_VERSION_1};
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        struct sim_netvsc *nv = snv_open(vm, 32);
        SIM_ASSERT(nv != NULL, "open for 0x%x", versions[i]);
        if (i == 0)
            SIM_ASSERT(snv_nvsp_init(nv, 0x70000) == 0, "NVSP 7.0 (unknown) accepted");
        int r = snv_bringup(nv, versions[i]);
        SIM_ASSERT(r == 0, "bring-up over NVSP 0x%x: %d", versions[i], r);
        SIM_ASSERT(memcmp(nv->mac, (const uint8_t[6]){0x00, 0x15, 0x5d, 0x12, 0x34, 0x56}, 6) ==
                       0,
                   "MAC is not the configured one");
        SIM_ASSERT(nv->link_status == 0, "link reported down");
        SIM_ASSERT(nv->sub_count > 16 && nv->nsections == 255 * 4096 / 6144,
                   "buffers: %u sub-allocations, %u sections", nv->sub_count, nv->nsections);
        /* offload off: no coalesced frames, sub-allocations of one frame */
        SIM_ASSERT(nv->sub_size < 2048, "NVSP 0x%x: %u-byte sub-allocations", versions[i],
                   nv->sub_size);
        char what[64];
        snprintf(what, sizeof(what), "NVSP 0x%x section", versions[i]);
        roundtrip(f, nv, f->peer[0], 0, 60, what);
        roundtrip(f, nv, f->peer[0], (int)nv->nsections - 1, 1514, what);
        snprintf(what, sizeof(what), "NVSP 0x%x GPA-direct", versions[i]);
        roundtrip(f, nv, f->peer[0], -1, 1514, what);
        /* partial copy: one request, two frames, the second's bytes in
         * GPA ranges after the section */
        static uint8_t fa[200], fb[1500], got[2048];
        make_frame(fa, sizeof(fa), nv->mac, 500 + i);
        make_frame(fb, sizeof(fb), nv->mac, 600 + i);
        SIM_ASSERT(snv_send_partial(nv, fa, sizeof(fa), fb, sizeof(fb), 5) ==
                       NVSP_STAT_SUCCESS,
                   "partial copy over 0x%x", versions[i]);
        int ga = peer_recv(f->peer[0], got, sizeof(got));
        SIM_ASSERT(ga == sizeof(fa) && memcmp(got, fa, sizeof(fa)) == 0, "partial: A %d", ga);
        int gb = peer_recv(f->peer[0], got, sizeof(got));
        SIM_ASSERT(gb == sizeof(fb) && memcmp(got, fb, sizeof(fb)) == 0, "partial: B %d", gb);
        snv_free(nv);
    }
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_NIC, NULL, NULL) == 0, "warnings for a good guest");
    sim_vm_free(vm);
}

/* A burst of transmits, more than two of netvsp's bursts of completions:
 * every one completed once, in the order sent, every frame out in order,
 * and a statistics query sent right after them counts them all, its reply
 * after their completions. */
static void test_tx_burst(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_NIC, 1);
    struct sim_netvsc *nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up");
    enum { N = 150 };
    SIM_ASSERT(nv->nsections >= N, "%u sections", nv->nsections);
    static uint8_t frames[N][300], got[2048];
    uint64_t done0 = nv->tx_done, tid, tid0 = 0;
    SIM_ASSERT(done0 + N + 1 <= sizeof(nv->tx_tids) / sizeof(nv->tx_tids[0]), "tid log");
    for (int i = 0; i < N; i++) {
        make_frame(frames[i], sizeof(frames[i]), nv->mac, 7000 + (uint64_t)i);
        SIM_ASSERT(snv_send_frame_async(nv, frames[i], sizeof(frames[i]), i, &tid) == 0,
                   "send %d", i);
        if (i == 0)
            tid0 = tid;
    }
    uint64_t sent = 0;
    uint32_t n = 0;
    SIM_ASSERT(snv_query(nv, OID_GEN_XMIT_OK, NULL, 0, &sent, sizeof(sent), &n) == 0 && n >= 4,
               "XMIT_OK query");
    /* (the query is a SEND_RNDIS_PKT too: N + 1) */
    SIM_ASSERT(nv->tx_done - done0 == N + 1, "%llu of %d completions with the query's reply",
               (unsigned long long)(nv->tx_done - done0), N + 1);
    SIM_ASSERT(sent == N, "XMIT_OK %llu after %d frames", (unsigned long long)sent, N);
    for (int i = 0; i < N; i++)
        SIM_ASSERT(nv->tx_tids[done0 + (uint64_t)i] == tid0 + (uint64_t)i,
                   "completion %d is for transaction %llu, not %llu", i,
                   (unsigned long long)nv->tx_tids[done0 + (uint64_t)i],
                   (unsigned long long)(tid0 + (uint64_t)i));
    for (int i = 0; i < N; i++) {
        int g = peer_recv(f->peer[0], got, sizeof(got));
        SIM_ASSERT(g == (int)sizeof(frames[i]) && memcmp(got, frames[i], (size_t)g) == 0,
                   "frame %d: %d bytes", i, g);
    }
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    snv_free(nv);
    sim_vm_free(vm);
}

/* Bytes the NIC's backend has not read yet. */
static int backend_pending(struct nfx *f, int i)
{
    int n = 0;
    /* The socket vmbusd reads from is the host end (its dup shares it). */
    if (ioctl(f->host[i], FIONREAD, &n) < 0)
        return -1;
    return n;
}

static void test_filter_zero(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = nic_up(f, VM_NIC, &vm);
    roundtrip(f, nv, f->peer[0], 0, 100, "filter on");
    uint32_t zero = 0;
    SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &zero, 4) == 0, "SET filter 0");
    uint8_t x[200], y[200], in[256];
    make_frame(x, sizeof(x), nv->mac, 77);
    make_frame(y, sizeof(y), nv->mac, 78);
    SIM_ASSERT(send(f->peer[0], x, sizeof(x), 0) == sizeof(x), "inject X");
    /* The NIC reads X off the backend and drops it. */
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (backend_pending(f, 0) > 0 && sim_now_ms() < end)
        snv_poll(nv, 10, false);
    SIM_ASSERT(backend_pending(f, 0) == 0, "frame X left in the backend with filter 0");
    uint32_t on = NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_BROADCAST;
    SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &on, 4) == 0, "SET filter on");
    SIM_ASSERT(send(f->peer[0], y, sizeof(y), 0) == sizeof(y), "inject Y");
    int got = snv_recv_frame(nv, in, sizeof(in), SIM_TIMEOUT_MS);
    SIM_ASSERT(got == sizeof(y) && memcmp(in, y, sizeof(y)) == 0,
               "first frame after filter 0 is not Y (%d bytes, X %s)", got,
               got == sizeof(x) && memcmp(in, x, sizeof(x)) == 0 ? "came late" : "no");
    snv_free(nv);
    sim_vm_free(vm);
}

static void test_backpressure(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_NIC, 1);
    struct sim_netvsc *nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_nvsp_init(nv, NVSP_VERSION_61) == 1, "init");
    SIM_ASSERT(snv_buffers(nv, 16, 255) == 0, "small receive buffer");
    SIM_ASSERT(snv_rndis_up(nv) == 0, "RNDIS");
    uint32_t on = NDIS_PACKET_TYPE_DIRECTED;
    SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &on, 4) == 0, "filter");
    uint32_t data_subs = nv->sub_count - 16;
    SIM_ASSERT(nv->sub_count > 16 && nv->sub_count < 64, "%u sub-allocations", nv->sub_count);
    enum { N = 80 };
    static uint8_t frames[N][128];
    nv->hold_completions = true;
    for (int i = 0; i < N; i++) {
        make_frame(frames[i], 128, nv->mac, 1000 + (uint64_t)i);
        SIM_ASSERT(send(f->peer[0], frames[i], 128, 0) == 128, "inject %d", i);
    }
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (nv->rx_frames < data_subs && sim_now_ms() < end)
        snv_poll(nv, 10, false);
    SIM_ASSERT(nv->rx_frames == data_subs, "%llu frames with %u data sub-allocations held",
               (unsigned long long)nv->rx_frames, data_subs);
    /* Control replies still come from the reserve. */
    uint8_t mac[6];
    uint32_t n;
    SIM_ASSERT(snv_query(nv, OID_802_3_PERMANENT_ADDRESS, NULL, 0, mac, 6, &n) == 0 && n == 6,
               "query with the data sub-allocations held");
    SIM_ASSERT(nv->rx_frames == data_subs, "more frames than sub-allocations (%llu)",
               (unsigned long long)nv->rx_frames);
    /* Completing them lets the rest in, in order. */
    nv->hold_completions = false;
    snv_release_held(nv);
    uint8_t in[256];
    for (int i = 0; i < N; i++) {
        int got = snv_recv_frame(nv, in, sizeof(in), SIM_TIMEOUT_MS);
        SIM_ASSERT(got == 128 && memcmp(in, frames[i], 128) == 0, "frame %d: %d bytes", i,
                   got);
    }
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    snv_free(nv);
    sim_vm_free(vm);
}

/* The backend's side of a receive stream, from a thread of its own (a
 * send blocks while the socket is full).  At most STREAM_AHEAD frames
 * ahead of the guest, whose queue of received frames (SNV_RXQ) must not
 * overflow while it waits for a transmit's completion. */
struct injector {
    int fd;
    const uint8_t *mac;
    int n, sent;
    atomic_int taken; /* by the guest */
};

enum { STREAM_FRAME = 300, STREAM_TX = 200, STREAM_EVERY = 16, STREAM_AHEAD = SNV_RXQ / 2 };

static void *inject_stream(void *arg)
{
    struct injector *in = arg;
    uint8_t fr[STREAM_FRAME];
    for (in->sent = 0; in->sent < in->n; in->sent++) {
        uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
        while (in->sent - atomic_load(&in->taken) >= STREAM_AHEAD && sim_now_ms() < end)
            usleep(100);
        make_frame(fr, sizeof(fr), in->mac, 50000 + (uint64_t)in->sent);
        if (send(in->fd, fr, sizeof(fr), 0) != (ssize_t)sizeof(fr))
            break;
    }
    return NULL;
}

static void test_rx_stream_tx(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = nic_up(f, VM_NIC, &vm);
    enum { N = 1500 };
    struct injector in = {f->peer[0], nv->mac, N, 0, 0};
    pthread_t t;
    SIM_ASSERT(pthread_create(&t, NULL, inject_stream, &in) == 0, "injector thread");
    static uint8_t got[2048], want[STREAM_FRAME], tx[STREAM_TX];
    int i, bad = -1, tx_status = NVSP_STAT_SUCCESS, n = 0;
    for (i = 0; i < N && bad < 0 && tx_status == NVSP_STAT_SUCCESS; i++) {
        n = snv_recv_frame(nv, got, sizeof(got), SIM_TIMEOUT_MS);
        atomic_store(&in.taken, i + 1);
        make_frame(want, sizeof(want), nv->mac, 50000 + (uint64_t)i);
        if (n != STREAM_FRAME || memcmp(got, want, sizeof(want)) != 0)
            bad = i;
        if (i % STREAM_EVERY == STREAM_EVERY - 1) {
            make_frame(tx, sizeof(tx), (const uint8_t[6]){0x02, 1, 2, 3, 4, 5}, 90000 + (uint64_t)i);
            /* waits for the completion */
            tx_status = snv_send_frame(nv, tx, sizeof(tx), (i / STREAM_EVERY) % 2 ? 1 : -1);
        }
    }
    if (i < N)
        shutdown(f->peer[0], SHUT_WR); /* ends a blocked injector */
    pthread_join(t, NULL);
    SIM_ASSERT(bad < 0, "frame %d of the stream: %d bytes, or not the frame sent", bad, n);
    SIM_ASSERT(tx_status == NVSP_STAT_SUCCESS,
               "transmit after frame %d: status %d (not taken from the ring?)", i - 1, tx_status);
    for (int k = 0; k < N / STREAM_EVERY; k++) {
        int g = peer_recv(f->peer[0], got, sizeof(got));
        make_frame(tx, sizeof(tx), (const uint8_t[6]){0x02, 1, 2, 3, 4, 5},
                   90000 + (uint64_t)(k * STREAM_EVERY + STREAM_EVERY - 1));
        SIM_ASSERT(g == STREAM_TX && memcmp(got, tx, sizeof(tx)) == 0,
                   "transmit %d on the backend: %d bytes", k, g);
    }
    /* the backend is empty: the guest's signals are wanted again */
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (__atomic_load_n(&nv->ch->out.hdr->interrupt_mask, __ATOMIC_SEQ_CST) &&
           sim_now_ms() < end)
        usleep(1000);
    SIM_ASSERT(!__atomic_load_n(&nv->ch->out.hdr->interrupt_mask, __ATOMIC_SEQ_CST),
               "the backend is empty and the guest's ring is still masked");
    print_message("  %d frames, %d transmits: %llu guest signals\n", N, N / STREAM_EVERY,
                  (unsigned long long)nv->ch->signals_sent);
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    snv_free(nv);
    sim_vm_free(vm);
}

static void test_link(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = nic_up(f, VM_NIC, &vm);
    char req[128], out[1024];
    snprintf(req, sizeof(req), "control %s netvsp link down", VM_NIC);
    SIM_ASSERT(sim_ctl_call(simd_control_path(f->d), req, out, sizeof(out)), "link down");
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (nv->nind < 1 && sim_now_ms() < end)
        snv_poll(nv, 10, false);
    SIM_ASSERT(nv->nind == 1 && nv->indications[0] == RNDIS_STATUS_MEDIA_DISCONNECT,
               "no disconnect indication (%d)", nv->nind);
    uint8_t buf[4];
    uint32_t n;
    SIM_ASSERT(snv_query(nv, OID_GEN_MEDIA_CONNECT_STATUS, NULL, 0, buf, 4, &n) == 0 &&
                   buf[0] == 1,
               "media status not disconnected");
    snprintf(req, sizeof(req), "control %s netvsp link up", VM_NIC);
    SIM_ASSERT(sim_ctl_call(simd_control_path(f->d), req, out, sizeof(out)), "link up");
    end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (nv->nind < 2 && sim_now_ms() < end)
        snv_poll(nv, 10, false);
    SIM_ASSERT(nv->nind == 2 && nv->indications[1] == RNDIS_STATUS_MEDIA_CONNECT,
               "no connect indication (%d)", nv->nind);
    roundtrip(f, nv, f->peer[0], 2, 400, "after link up");
    snprintf(req, sizeof(req), "control %s netvsp status", VM_NIC);
    SIM_ASSERT(sim_ctl_call(simd_control_path(f->d), req, out, sizeof(out)) &&
                   strstr(out, "mac " NIC_MAC) && strstr(out, "link up") &&
                   strstr(out, "tx 1 ") && strstr(out, "rx 1 "),
               "status: %s", out);
    /* vmbusctl nic list / status (the binary, when the suite names it) */
    const char *ctl = getenv("VMBUSCTL");
    if (ctl && *ctl) {
        char cmd[1024], line[512], all[4096] = "";
        snprintf(cmd, sizeof(cmd), "%s --socket %s nic list; %s --socket %s nic status %s", ctl,
                 simd_control_path(f->d), ctl, simd_control_path(f->d), VM_NIC);
        FILE *pf = popen(cmd, "r");
        SIM_ASSERT(pf != NULL, "popen vmbusctl");
        while (fgets(line, sizeof(line), pf))
            strncat(all, line, sizeof(all) - strlen(all) - 1);
        int st = pclose(pf);
        SIM_ASSERT(st == 0 && strstr(all, VM_NIC " ") && strstr(all, NIC_MAC " up ") &&
                       strstr(all, "0x60001  1/1 ") && strstr(all, "tx 1 "),
                   "vmbusctl nic list/status (%d):\n%s", st, all);
        if (getenv("SIM_VERBOSE"))
            printf("%s", all);
    } else {
        printf("(VMBUSCTL not set: vmbusctl nic not run)\n");
    }
    /* vmbusctl status (the list's status values) shows the NIC */
    static char list[16384];
    SIM_ASSERT(sim_ctl_call(simd_control_path(f->d), "list", list, sizeof(list)) &&
                   strstr(list, "\"netvsp.mac\":\"" NIC_MAC "\"") &&
                   strstr(list, "\"netvsp.nvsp\":\"0x60001\"") &&
                   strstr(list, "\"netvsp.link\":\"up\""),
               "list: %s", list);
    snv_free(nv);
    sim_vm_free(vm);
}

/* The guest's teardown (netvsc_device_remove): REVOKE both buffers, then
 * their GPADLs go while the channel is still open - vmbusd answers the
 * teardowns only once netvsp let go of the mappings.  Frames arriving
 * meanwhile are dropped. */
static void test_revoke(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = nic_up(f, VM_NIC, &vm);
    roundtrip(f, nv, f->peer[0], 0, 100, "before revoke");
    uint32_t zero = 0;
    SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &zero, 4) == 0, "filter 0");
    struct nvsp_msg m = {.type = NVSP_MSG1_REVOKE_RECV_BUF};
    m.u.revoke.id = NVSP_RECV_BUF_ID;
    SIM_ASSERT(snv_send_raw(nv, VM_PKT_DATA_INBAND, 0, ++nv->tid, NULL, 0, &m, sizeof(m)) == 0,
               "revoke recv");
    m.type = NVSP_MSG1_REVOKE_SEND_BUF;
    m.u.revoke.id = NVSP_SEND_BUF_ID;
    SIM_ASSERT(snv_send_raw(nv, VM_PKT_DATA_INBAND, 0, ++nv->tid, NULL, 0, &m, sizeof(m)) == 0,
               "revoke send");
    uint8_t fr[100];
    make_frame(fr, sizeof(fr), nv->mac, 9);
    SIM_ASSERT(send(f->peer[0], fr, sizeof(fr), 0) == sizeof(fr), "inject");
    SIM_ASSERT(sim_gpadl_teardown(vm, nv->ch->relid, nv->recv_gpadl) == 0,
               "receive buffer GPADL not torn down after REVOKE");
    SIM_ASSERT(sim_gpadl_teardown(vm, nv->ch->relid, nv->send_gpadl) == 0,
               "send buffer GPADL not torn down after REVOKE");
    SIM_ASSERT(nv->rx_frames == 1 && nv->host_bad == 0, "frames after revoke: %llu",
               (unsigned long long)nv->rx_frames);
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_NIC, NULL, NULL) == 0, "warnings for a good guest");
    snv_free(nv);
    sim_vm_free(vm);
}

/* Jumbo frames: the MTU the guest sends in NDIS config (as Linux does
 * after `ip link set mtu 9000`) sizes the receive sub-allocations, and the
 * maximum frame size the host reports lets the guest keep that MTU (Linux
 * lowers its MTU to the host's figure); a 9014-byte frame goes both ways.  An MTU past 9000 is refused, and a
 * frame longer than the sub-allocations is dropped, not cut short. */
static void test_jumbo(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_NIC, 1);
    static uint8_t out[9014], in[9100];
    for (int k = 0; k < 2; k++) {
        struct sim_netvsc *nv = snv_open(vm, 32);
        SIM_ASSERT(nv != NULL, "open");
        nv->ndis_mtu = k == 0 ? 9000 : 20000;
        SIM_ASSERT(snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up");
        if (k == 0) {
            SIM_ASSERT(nv->sub_size >= 9014 + 44, "sub-allocation %u", nv->sub_size);
            SIM_ASSERT(nv->mtu == 9000, "the guest's MTU fell back to %u (host's maximum frame size)",
                       nv->mtu);
            roundtrip(f, nv, f->peer[0], -1, 9014, "jumbo");
        } else {
            SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "NDIS config MTU", NULL),
                       "MTU 20000 taken");
            SIM_ASSERT(nv->sub_size < 9014, "sub-allocation %u for MTU 20000", nv->sub_size);
            make_frame(out, sizeof(out), nv->mac, 41);
            SIM_ASSERT(send(f->peer[0], out, sizeof(out), 0) == sizeof(out), "inject");
            make_frame(out, 200, nv->mac, 42);
            SIM_ASSERT(send(f->peer[0], out, 200, 0) == 200, "inject");
            int got = snv_recv_frame(nv, in, sizeof(in), SIM_TIMEOUT_MS);
            SIM_ASSERT(got == 200 && memcmp(in, out, 200) == 0,
                       "first frame %d bytes: the oversized one was not dropped", got);
        }
        snv_free(nv);
    }
    sim_vm_free(vm);
}

/* ---- offloads (netvsp.offload = on: virtio-net headers on the backend) ---- */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t ppi_record(uint8_t *p, uint32_t type, uint32_t value)
{
    uint32_t rec[4] = {16, type, 12, value};
    memcpy(p, rec, 16);
    return 16;
}

struct vhdr {
    uint8_t flags, gso_type;
    uint16_t hdr_len, gso_size, csum_start, csum_offset;
} __attribute__((packed));

static void test_offload(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = nic_up(f, VM_NIC_OFF, &vm);
    uint32_t ip4tx, ip6tx, lso4, lso4max, lso6, lso6opts;
    memcpy(&ip4tx, nv->offload_caps + 8, 4);
    memcpy(&ip6tx, nv->offload_caps + 24, 4);
    memcpy(&lso4, nv->offload_caps + 80, 4);
    memcpy(&lso4max, nv->offload_caps + 84, 4);
    memcpy(&lso6, nv->offload_caps + 92, 4);
    memcpy(&lso6opts, nv->offload_caps + 104, 4);
    /* what rndis_netdev_set_hwcaps needs for TX checksums and TSO */
    SIM_ASSERT((ip4tx & 0x14) == 0x14 && (ip4tx & 0x40) && (ip6tx & 0x15) == 0x15 &&
                   (lso4 & 2) && (lso6 & 2) && (lso6opts & 5) == 5 && lso4max >= 16384,
               "offload caps %x %x %x %x %x", ip4tx, ip6tx, lso4, lso6, lso6opts);
    static uint8_t fr[65536], in[65600];
    static const uint8_t dst[6] = {0x02, 0, 0, 0, 0, 1};
    /* 4000 bytes are copied whole; 60000 leave the payload in guest memory
     * (netvsp copies the headers only): both arrive the same */
    for (int k = 0; k < 4; k++) {
        int v6 = k & 1;
        uint32_t len = snv_lso_frame(fr, v6, k < 2 ? 4000 : 60000, dst), l4 = v6 ? 54 : 34;
        uint8_t ppi[16];
        uint32_t lso = 1448 | (l4 << 20) | (1u << 30) | ((uint32_t)v6 << 31);
        uint32_t pl = ppi_record(ppi, NDIS_PPI_LSO, lso);
        uint64_t tid;
        nv->comp_valid = false;
        SIM_ASSERT(snv_send_frame_ppi(nv, fr, len, -1, ppi, pl, &tid) == 0, "LSO send");
        uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
        while (!(nv->comp_valid && nv->comp_tid == tid) && sim_now_ms() < end)
            snv_poll(nv, 10, false);
        uint32_t st;
        memcpy(&st, nv->comp + 4, 4);
        SIM_ASSERT(nv->comp_valid && st == NVSP_STAT_SUCCESS, "LSO v%d status %u", v6 ? 6 : 4,
                   st);
        int got = peer_recv(f->peer[2], in, sizeof(in));
        SIM_ASSERT(got == (int)(10 + len), "LSO v%d: %d bytes", v6 ? 6 : 4, got);
        struct vhdr vh;
        memcpy(&vh, in, 10);
        SIM_ASSERT(vh.flags == 1 && vh.gso_type == (v6 ? 4 : 1) && vh.gso_size == 1448 &&
                       vh.hdr_len == l4 + 20 && vh.csum_start == l4 && vh.csum_offset == 16,
                   "LSO v%d virtio-net header %u %u %u %u %u %u", v6 ? 6 : 4, vh.flags,
                   vh.gso_type, vh.gso_size, vh.hdr_len, vh.csum_start, vh.csum_offset);
        const uint8_t *o = in + 10;
        if (v6) {
            SIM_ASSERT(rd16(o + 14 + 4) == len - 54, "IPv6 payload length %u", rd16(o + 18));
        } else {
            SIM_ASSERT(rd16(o + 14 + 2) == len - 14, "IPv4 total length %u", rd16(o + 16));
            SIM_ASSERT(snv_csum_fold(snv_csum_add(o + 14, 20, 0)) == 0xffff,
                       "IPv4 header checksum");
        }
        uint32_t ps = v6 ? snv_csum_add(o + 22, 32, 0) : snv_csum_add(o + 26, 8, 0);
        SIM_ASSERT(rd16(o + l4 + 16) == snv_csum_fold(ps + 6 + len - l4),
                   "TCP pseudo-header checksum without the length");
        SIM_ASSERT(memcmp(o + l4 + 20, fr + l4 + 20, len - l4 - 20) == 0, "payload changed");
    }
    /* UDP checksum offload over IPv4: the header says where, the frame is
     * untouched */
    uint32_t len = snv_lso_frame(fr, false, 200, dst);
    fr[14 + 9] = 17;
    uint8_t ppi[16];
    uint32_t pl = ppi_record(ppi, NDIS_PPI_CHECKSUM, 1u | (1u << 3) | (34u << 16));
    uint64_t tid;
    SIM_ASSERT(snv_send_frame_ppi(nv, fr, len, 3, ppi, pl, &tid) == 0, "UDP csum send");
    int got = peer_recv(f->peer[2], in, sizeof(in));
    struct vhdr vh;
    memcpy(&vh, in, 10);
    SIM_ASSERT(got == (int)(10 + len) && vh.flags == 1 && vh.gso_type == 0 &&
                   vh.csum_start == 34 && vh.csum_offset == 6 && memcmp(in + 10, fr, len) == 0,
               "UDP checksum: %d bytes, %u %u %u", got, vh.flags, vh.csum_start,
               vh.csum_offset);
    /* no request: an all-zero header; receive strips the peer's header */
    make_frame(fr, 300, dst, 31);
    SIM_ASSERT(snv_send_frame(nv, fr, 300, 2) == NVSP_STAT_SUCCESS, "plain frame");
    got = peer_recv(f->peer[2], in, sizeof(in));
    static const uint8_t zero10[10];
    SIM_ASSERT(got == 310 && memcmp(in, zero10, 10) == 0 && memcmp(in + 10, fr, 300) == 0,
               "plain frame: %d bytes", got);
    memset(in, 0, 10);
    make_frame(in + 10, 300, nv->mac, 32);
    SIM_ASSERT(send(f->peer[2], in, 310, 0) == 310, "inject");
    got = snv_recv_frame(nv, fr, sizeof(fr), SIM_TIMEOUT_MS);
    SIM_ASSERT(got == 300 && memcmp(fr, in + 10, 300) == 0, "received %d bytes", got);
    SIM_ASSERT(!nv->last_has_csum, "checksum info for a frame the host did not check");
    /* receive: a partial checksum (the host's own TCP traffic) is completed
     * and reported good; a checked one (DATA_VALID) is reported good */
    for (int k = 0; k < 2; k++) {
        uint32_t flen = snv_lso_frame(in + 10, false, 700, nv->mac);
        uint8_t *ip = in + 10 + 14, *th = in + 10 + 34;
        ip[2] = (uint8_t)((flen - 14) >> 8);
        ip[3] = (uint8_t)(flen - 14);
        uint16_t ic = (uint16_t)~snv_csum_fold(snv_csum_add(ip, 20, 0));
        ip[10] = (uint8_t)(ic >> 8);
        ip[11] = (uint8_t)ic;
        uint16_t ps = snv_csum_fold(snv_csum_add(ip + 12, 8, 6 + flen - 34));
        th[16] = (uint8_t)(ps >> 8);
        th[17] = (uint8_t)ps;
        struct vhdr rvh = {k == 0 ? 1 : 2, 0, 0, 0, k == 0 ? 34 : 0, k == 0 ? 16 : 0};
        memcpy(in, &rvh, 10);
        SIM_ASSERT(send(f->peer[2], in, 10 + flen, 0) == (ssize_t)(10 + flen), "inject");
        got = snv_recv_frame(nv, fr, sizeof(fr), SIM_TIMEOUT_MS);
        SIM_ASSERT(got == (int)flen && nv->last_has_csum && nv->last_csum == (1u << 3),
                   "%s: %d bytes, checksum info %d %x", k == 0 ? "NEEDS_CSUM" : "DATA_VALID",
                   got, nv->last_has_csum, nv->last_csum);
        if (k == 0)
            SIM_ASSERT(snv_csum_fold(snv_csum_add(fr + 34, flen - 34,
                                                  snv_csum_add(fr + 26, 8, 6 + flen - 34))) ==
                           0xffff,
                       "partial TCP checksum not completed");
        else
            SIM_ASSERT(memcmp(fr, in + 10, flen) == 0, "checked frame changed");
    }
    /* requests that do not match the frame fail that transmit */
    len = snv_lso_frame(fr, false, 100, dst);
    pl = ppi_record(ppi, NDIS_PPI_LSO, 1448u | (200u << 20) | (1u << 30));
    sim_log_clear();
    SIM_ASSERT(snv_send_frame_ppi(nv, fr, len, 4, ppi, pl, &tid) == 0, "send");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC_OFF, "LSO TCP header offset", NULL),
               "bad LSO offset");
    fr[12] = 0x08;
    fr[13] = 0x06; /* ARP */
    pl = ppi_record(ppi, NDIS_PPI_CHECKSUM, 1u | (1u << 2) | (34u << 16));
    SIM_ASSERT(snv_send_frame_ppi(nv, fr, len, 5, ppi, pl, &tid) == 0, "send");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC_OFF, "not IPv4 or IPv6", NULL), "ARP csum");
    uint32_t badrec[4] = {40, NDIS_PPI_CHECKSUM, 12, 0};
    SIM_ASSERT(snv_send_frame_ppi(nv, fr, len, 6, badrec, 16, &tid) == 0, "send");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC_OFF, "per-packet info record", NULL),
               "PPI record past its area");
    make_frame(fr, 300, dst, 33);
    SIM_ASSERT(snv_send_frame(nv, fr, 300, 7) == NVSP_STAT_SUCCESS, "after the bad ones");
    do {
        got = peer_recv(f->peer[2], in, sizeof(in));
    } while (got >= 0 && got != 310);
    SIM_ASSERT(got == 310 && memcmp(in + 10, fr, 300) == 0, "frame after bad ones");
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    /* the NIC without offloads refuses a checksum request */
    struct sim_vm *vm1;
    struct sim_netvsc *nv1 = nic_up(f, VM_NIC, &vm1);
    SIM_ASSERT(nv1->offload_caps[8] == 0 && nv1->offload_caps[80] == 0, "offloads offered");
    len = snv_lso_frame(fr, false, 100, dst);
    pl = ppi_record(ppi, NDIS_PPI_CHECKSUM, 1u | (1u << 2) | (34u << 16));
    SIM_ASSERT(snv_send_frame_ppi(nv1, fr, len, 0, ppi, pl, &tid) == 0, "send");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "no offload was offered", NULL),
               "csum request without offloads");
    snv_free(nv1);
    sim_vm_free(vm1);
    snv_free(nv);
    sim_vm_free(vm);
}

/* Receive coalescing (RSC): a guest of NVSP 6.1 that asks for it is
 * offered it and gets the backend's GSO frames whole, each spread over
 * sub-allocations of one transfer-page packet as fragments Linux joins;
 * one valid TCP segment of the whole length, reported checksum-good (one
 * longer than OFFLOAD_RSC_FRAME_MAX: two, cut at a segment boundary).  A
 * guest whose LRO is off, or of NVSP 6, gets none; GSO frames that do not
 * fit what they claim are dropped and the NIC goes on. */
static void test_rsc(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = nic_up(f, VM_NIC_OFF, &vm);
    SIM_ASSERT(nv->offload_caps[NDIS_OFFLOAD_RSC_IP4_OFF] &&
                   nv->offload_caps[NDIS_OFFLOAD_RSC_IP6_OFF] && nv->rsc_offered,
               "RSC not offered to an NVSP 6.1 guest with offload = on");
    /* a guest that takes coalesced frames, with a 2 MiB receive buffer:
     * 16 KiB sub-allocations (5 for a 64 KB frame, not ~40) */
    SIM_ASSERT(nv->sub_size == 16384, "sub-allocation of %u bytes", nv->sub_size);
    static uint8_t in[10 + 70000], fr[70000];
    int peer = f->peer[2];
    /* IPv4 and IPv6, a partial checksum and a checked one, up to the
     * largest IPv4 segment */
    for (int k = 0; k < 4; k++) {
        bool v6 = k & 1, valid = k >= 2;
        uint32_t payload = k == 2 ? 65535 - 40 : 60000 + (uint32_t)k;
        uint32_t n = snv_gso_frame(in, v6, payload, nv->mac, valid);
        uint64_t c0 = nv->rx_coalesced;
        SIM_ASSERT(send(peer, in, n, 0) == (ssize_t)n, "inject");
        /* one frame; or, longer than Linux takes in 64 KiB, two: the
         * whole segments that fit, then the rest */
        uint32_t data = v6 ? 74 : 54; /* the payload: headers fixed up */
        uint32_t want = n - 10, at = data, parts = 0;
        if (want > OFFLOAD_RSC_FRAME_MAX)
            want = data + (OFFLOAD_RSC_FRAME_MAX - data) / 1448 * 1448;
        while (at < n - 10) {
            int got = snv_recv_frame(nv, fr, sizeof(fr), SIM_TIMEOUT_MS);
            SIM_ASSERT(got == (int)want, "GSO frame %d part %u: guest got %d bytes, not %u", k,
                       parts, got, want);
            SIM_ASSERT(nv->last_has_csum && (nv->last_csum & (1u << 3)),
                       "GSO frame %d without 'TCP checksum good' (%x)", k, nv->last_csum);
            SIM_ASSERT(snv_tcp_frame_ok(fr, (uint32_t)got),
                       "GSO frame %d part %u: not a valid segment", k, parts);
            SIM_ASSERT(memcmp(fr + data, in + 10 + at, (size_t)got - data) == 0 &&
                           memcmp(fr, in + 10, 14) == 0,
                       "GSO frame %d part %u: bytes changed", k, parts);
            at += (uint32_t)got - data;
            want = data + (n - 10 - at);
            parts++;
        }
        SIM_ASSERT(parts == (k == 2 ? 2u : 1u), "GSO frame %d came in %u parts", k, parts);
        SIM_ASSERT(nv->rx_coalesced == c0 + 1, "GSO frame %d not coalesced", k);
    }
    /* a frame spans several sub-allocations, all in one packet */
    SIM_ASSERT(nv->rx_max_ranges >= 65535 / nv->sub_size + 1, "most ranges in a packet: %u",
               nv->rx_max_ranges);
    /* far more than the receive buffer holds: the guest's completions (one
     * per packet) give every fragment back */
    uint64_t c0 = nv->rx_coalesced, b0 = nv->rx_bytes;
    uint32_t n = snv_gso_frame(in, false, 40000, nv->mac, false);
    for (int i = 0; i < 200; i++) {
        SIM_ASSERT(send(peer, in, n, 0) == (ssize_t)n, "inject %d", i);
        int got = snv_recv_frame(nv, fr, sizeof(fr), SIM_TIMEOUT_MS);
        SIM_ASSERT(got == (int)(n - 10), "frame %d: %d bytes", i, got);
    }
    SIM_ASSERT(nv->rx_coalesced == c0 + 200 && nv->rx_bytes == b0 + 200ull * (n - 10),
               "200 coalesced frames: %llu, %llu bytes",
               (unsigned long long)(nv->rx_coalesced - c0),
               (unsigned long long)(nv->rx_bytes - b0));
    /* GSO frames that are not what they claim: dropped, the next plain
     * frame arrives */
    for (int k = 0; k < 5; k++) {
        n = snv_gso_frame(in, k == 0, 20000, nv->mac, false);
        if (k == 0)
            in[1] = 1;               /* an IPv6 frame said to be TCPV4 */
        else if (k == 1)
            in[10 + 23] = 17;        /* UDP in IPv4, said to be TCPV4 */
        else if (k == 2)
            n = 10 + 40;             /* cut short inside its headers */
        else if (k == 3)
            in[1] = 3;               /* GSO_UDP */
        else
            n = 10 + snv_lso_frame(in + 10, false, 70000 - 54, nv->mac); /* too long */
        SIM_ASSERT(send(peer, in, n, 0) == (ssize_t)n, "inject bad %d", k);
        uint8_t plain[310] = {0};
        make_frame(plain + 10, 300, nv->mac, 40 + (uint64_t)k);
        SIM_ASSERT(send(peer, plain, 310, 0) == 310, "inject plain");
        int got = snv_recv_frame(nv, fr, sizeof(fr), SIM_TIMEOUT_MS);
        SIM_ASSERT(got == 300 && memcmp(fr, plain + 10, 300) == 0,
                   "after bad GSO frame %d the guest got %d bytes", k, got);
    }
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    snv_free(nv);
    /* LRO off (RSC disabled in the offload parameters): a GSO frame is
     * dropped, never sent as fragments */
    nv = snv_open(vm, 32);
    nv->lro_off = true;
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up, LRO off");
    SIM_ASSERT(nv->rsc_offered, "RSC offered");
    n = snv_gso_frame(in, false, 20000, nv->mac, false);
    SIM_ASSERT(send(peer, in, n, 0) == (ssize_t)n, "inject");
    uint8_t plain[310] = {0};
    make_frame(plain + 10, 300, nv->mac, 50);
    SIM_ASSERT(send(peer, plain, 310, 0) == 310, "inject plain");
    int got = snv_recv_frame(nv, fr, sizeof(fr), SIM_TIMEOUT_MS);
    SIM_ASSERT(got == 300 && nv->rx_coalesced == 0, "LRO off: got %d bytes, %llu coalesced",
               got, (unsigned long long)nv->rx_coalesced);
    SIM_ASSERT(nv->host_bad == 0, "host sent fragments to a guest without LRO");
    snv_free(nv);
    /* a receive buffer of 64 pages: room for too few 64 KB frames beside
     * the control reserve; RSC not offered, a GSO frame dropped */
    nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_nvsp_init(nv, NVSP_VERSION_61) == 1 && snv_buffers(nv, 64, 32) == 0 &&
                   snv_rndis_up(nv) == 0,
               "bring-up, small receive buffer");
    uint32_t filter = NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_BROADCAST;
    SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &filter, 4) == 0, "filter");
    SIM_ASSERT(!nv->rsc_offered, "RSC offered with %u sub-allocations", nv->sub_count);
    SIM_ASSERT(nv->sub_size < 16384, "%u-byte sub-allocations in a 64-page buffer",
               nv->sub_size);
    snv_free(nv);
    /* NVSP 6.0 has no coalesced frames: sub-allocations of one frame */
    nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_6) == 0, "bring-up over NVSP 6");
    SIM_ASSERT(!nv->rsc_offered && nv->sub_size < 2048, "NVSP 6: %u-byte sub-allocations%s",
               nv->sub_size, nv->rsc_offered ? ", RSC offered" : "");
    snv_free(nv);
    /* (the small buffer again, for the checks below) */
    nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_nvsp_init(nv, NVSP_VERSION_61) == 1 && snv_buffers(nv, 64, 32) == 0 &&
                   snv_rndis_up(nv) == 0,
               "bring-up, small receive buffer");
    SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &filter, 4) == 0, "filter");
    n = snv_gso_frame(in, false, 20000, nv->mac, false);
    SIM_ASSERT(send(peer, in, n, 0) == (ssize_t)n, "inject");
    make_frame(plain + 10, 300, nv->mac, 51);
    SIM_ASSERT(send(peer, plain, 310, 0) == 310, "inject plain");
    got = snv_recv_frame(nv, fr, sizeof(fr), SIM_TIMEOUT_MS);
    SIM_ASSERT(got == 300 && nv->rx_coalesced == 0 && nv->host_bad == 0,
               "small buffer: got %d bytes, %llu coalesced", got,
               (unsigned long long)nv->rx_coalesced);
    snv_free(nv);
    /* NVSP 6 (no RSC capability in its NDIS config): not offered */
    nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_6) == 0, "bring-up, NVSP 6");
    SIM_ASSERT(!nv->rsc_offered && !nv->offload_caps[NDIS_OFFLOAD_RSC_IP4_OFF],
               "RSC offered over NVSP 6");
    snv_free(nv);
    sim_vm_free(vm);
}

/* The packet fd's peer goes away: vmbusd says so once, stops reading it
 * (no spinning on a readable EOF), drops the guest's frames (no SIGPIPE)
 * and still completes them; the other NIC goes on. */
static void test_backend_closed(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = nic_up(f, VM_NIC, &vm);
    roundtrip(f, nv, f->peer[0], 0, 100, "before the peer closes");
    close(f->peer[0]);
    f->peer[0] = -1;
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "peer closed", NULL), "no warning");
    uint8_t fr[100];
    make_frame(fr, sizeof(fr), (const uint8_t[6]){2, 0, 0, 0, 0, 1}, 3);
    for (int i = 0; i < 5; i++)
        SIM_ASSERT(snv_send_frame(nv, fr, sizeof(fr), i) == NVSP_STAT_SUCCESS, "transmit %d", i);
    char req[128], out[1024];
    snprintf(req, sizeof(req), "control %s netvsp status", VM_NIC);
    SIM_ASSERT(sim_ctl_call(simd_control_path(f->d), req, out, sizeof(out)) &&
                   strstr(out, "tx_dropped 5 "),
               "status: %s", out);
    other_nic_works(f, "a closed backend");
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_NIC, "peer closed", NULL) == 1, "warned %d times",
               sim_log_count(LOG_WARN, VM_NIC, "peer closed", NULL));
    snv_free(nv);
    sim_vm_free(vm);
}

/* ---- bad input ----------------------------------------------------------- */

enum bad_stage { UP, INIT_ONLY };

/* A NIC on VM_NIC at `stage`, for one bad-input case. */
static struct sim_netvsc *bad_nic(struct nfx *f, struct sim_vm **vm, enum bad_stage stage)
{
    *vm = sim_up_offers(f->d, VM_NIC, 1);
    struct sim_netvsc *nv = snv_open(*vm, 32);
    SIM_ASSERT(nv != NULL, "open");
    if (stage == UP)
        SIM_ASSERT(snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up");
    else
        SIM_ASSERT(snv_nvsp_init(nv, NVSP_VERSION_61) == 1, "init");
    sim_log_clear();
    return nv;
}

/* After the bad input: a warning naming VM_NIC containing needle, the NIC
 * (brought up the rest of the way if needed) moves frames, the other VM's
 * NIC too. */
static void bad_after(struct nfx *f, struct sim_vm *vm, struct sim_netvsc *nv,
                      const char *needle)
{
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "netvsp", needle),
               "no warning naming %s with '%s'", VM_NIC, needle);
    if (!nv->sub_size) {
        SIM_ASSERT(snv_buffers(nv, 512, 255) == 0, "buffers after the bad input");
        SIM_ASSERT(snv_rndis_up(nv) == 0, "RNDIS after the bad input");
        uint32_t on = NDIS_PACKET_TYPE_DIRECTED;
        SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, &on, 4) == 0, "filter");
    }
    roundtrip(f, nv, f->peer[0], 0, 200, needle);
    roundtrip(f, nv, f->peer[0], -1, 200, needle);
    other_nic_works(f, needle);
    snv_free(nv);
    sim_vm_free(vm);
}

static int nvsp_raw(struct sim_netvsc *nv, const void *m, uint32_t len)
{
    return snv_send_raw(nv, VM_PKT_DATA_INBAND, VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED,
                        ++nv->tid, NULL, 0, m, len);
}

static void test_bad_nvsp(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = bad_nic(f, &vm, UP);
    uint32_t t = NVSP_MSG1_SEND_RNDIS_PKT;
    SIM_ASSERT(nvsp_raw(nv, &t, 4) == 0, "send");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "truncated", NULL), "truncated");
    /* every message type with a body longer than what the ring's padding
     * supplies, cut to its type */
    static const uint32_t types[] = {NVSP_MSG_INIT, NVSP_MSG1_SEND_NDIS_VERSION,
                                     NVSP_MSG1_SEND_RECV_BUF, NVSP_MSG1_SEND_SEND_BUF,
                                     NVSP_MSG1_SEND_RNDIS_PKT, NVSP_MSG2_SEND_NDIS_CONFIG,
                                     NVSP_MSG5_SUBCHANNEL};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        sim_log_clear();
        SIM_ASSERT(nvsp_raw(nv, &types[i], 4) == 0, "send");
        SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "truncated", NULL),
                   "type %u cut to 4 bytes", types[i]);
    }
    uint32_t m[10] = {999};
    SIM_ASSERT(nvsp_raw(nv, m, sizeof(m)) == 0, "send");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "unknown NVSP", NULL), "unknown type");
    /* (a 1-byte message arrives padded to 8: type 1 = INIT, truncated) */
    SIM_ASSERT(nvsp_raw(nv, NULL, 0) == 0, "send");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "shorter than its type", NULL), "0 bytes");
    /* An oversized message: the NVSP part is read, the rest ignored. */
    uint8_t big[4000];
    memset(big, 0xee, sizeof(big));
    memcpy(big, (uint32_t[]){NVSP_MSG1_SEND_NDIS_VERSION, 6, 30}, 12);
    SIM_ASSERT(nvsp_raw(nv, big, sizeof(big)) == 0, "send");
    /* A second receive buffer is refused. */
    struct nvsp_msg rb = {.type = NVSP_MSG1_SEND_RECV_BUF};
    rb.u.send_buf.gpadl = nv->recv_gpadl;
    rb.u.send_buf.id = NVSP_RECV_BUF_ID;
    SIM_ASSERT(snv_nvsp_request(nv, &rb, sizeof(rb)) == NVSP_STAT_FAIL, "second recv buffer");
    SIM_ASSERT(snv_send_raw(nv, VM_PKT_DATA_USING_GPADL, 0, 5, NULL, 0, m, sizeof(m)) == 0,
               "send");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "unexpected packet type", NULL),
               "packet type");
    bad_after(f, vm, nv, "second receive buffer");
}

static void test_bad_buffers(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = bad_nic(f, &vm, INIT_ONLY);
    /* RNDIS before the buffers exist */
    struct nvsp_msg m = {.type = NVSP_MSG1_SEND_RNDIS_PKT};
    m.u.rndis_pkt.channel_type = 1;
    m.u.rndis_pkt.section_index = 0;
    m.u.rndis_pkt.section_size = 100;
    SIM_ASSERT(snv_nvsp_request(nv, &m, sizeof(m)) == NVSP_STAT_FAIL, "RNDIS without buffers");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "before both buffers", NULL), "warning");
    /* a GPADL that does not exist; the wrong transfer-page set id */
    struct nvsp_msg rb = {.type = NVSP_MSG1_SEND_RECV_BUF};
    rb.u.send_buf.gpadl = 0x7777;
    rb.u.send_buf.id = NVSP_RECV_BUF_ID;
    SIM_ASSERT(snv_nvsp_request(nv, &rb, sizeof(rb)) == NVSP_STAT_FAIL, "bogus GPADL");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "names no GPADL", NULL), "warning");
    rb.u.send_buf.id = 0x1234;
    SIM_ASSERT(snv_nvsp_request(nv, &rb, sizeof(rb)) == NVSP_STAT_FAIL, "bad id");
    bad_after(f, vm, nv, "is not 0xcafe");
}

static void test_bad_sections(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = bad_nic(f, &vm, UP);
    struct nvsp_msg m = {.type = NVSP_MSG1_SEND_RNDIS_PKT};
    m.u.rndis_pkt.section_index = nv->nsections;
    m.u.rndis_pkt.section_size = 100;
    SIM_ASSERT(snv_nvsp_request(nv, &m, sizeof(m)) == NVSP_STAT_FAIL, "index = count");
    m.u.rndis_pkt.section_index = 0xfffffffe;
    SIM_ASSERT(snv_nvsp_request(nv, &m, sizeof(m)) == NVSP_STAT_FAIL, "index huge");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "out of range", NULL), "warning");
    m.u.rndis_pkt.section_index = nv->nsections - 1;
    m.u.rndis_pkt.section_size = 6145;
    SIM_ASSERT(snv_nvsp_request(nv, &m, sizeof(m)) == NVSP_STAT_FAIL, "size past section");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "past its send section", NULL), "warning");
    /* a PACKET whose data runs past its message, in a section */
    uint8_t *sb = sim_gpa_ptr(vm, sim_off_to_gpa(vm, nv->send_off));
    struct rndis_hdr h = {RNDIS_MSG_PACKET, 44 + 100};
    struct rndis_packet p = {.data_offset = 36, .data_len = 101};
    memcpy(sb, &h, 8);
    memcpy(sb + 8, &p, sizeof(p));
    m.u.rndis_pkt.section_index = 0;
    m.u.rndis_pkt.section_size = 144;
    SIM_ASSERT(snv_nvsp_request(nv, &m, sizeof(m)) == NVSP_STAT_FAIL, "data past message");
    /* msg_len past the section size */
    h.len = 145;
    memcpy(sb, &h, 8);
    SIM_ASSERT(snv_nvsp_request(nv, &m, sizeof(m)) == NVSP_STAT_FAIL, "msg_len past data");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "past the buffer", NULL), "warning");
    bad_after(f, vm, nv, "data runs past its message");
}

static void test_bad_rndis(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = bad_nic(f, &vm, UP);
    /* QUERY whose information buffer runs past the message */
    uint8_t q[28];
    struct rndis_hdr h = {RNDIS_MSG_QUERY, 28};
    struct rndis_query_req rq = {++nv->req_id, OID_802_3_PERMANENT_ADDRESS, 1000, 20, 0};
    memcpy(q, &h, 8);
    memcpy(q + 8, &rq, sizeof(rq));
    SIM_ASSERT(snv_rndis_request(nv, q, sizeof(q)) == -EPROTO, "OID past the buffer answered");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "information buffer", NULL), "warning");
    /* msg_len past the GPA range */
    h.len = 200;
    rq.info_len = 0;
    memcpy(q, &h, 8);
    memcpy(q + 8, &rq, sizeof(rq));
    SIM_ASSERT(snv_rndis_request(nv, q, sizeof(q)) == -EPROTO, "msg_len past the range");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "msg_len runs past", NULL), "warning");
    /* truncated INITIALIZE, unknown type, a host-only type */
    struct rndis_hdr t = {RNDIS_MSG_INIT, 12};
    uint8_t ti[12] = {0};
    memcpy(ti, &t, 8);
    SIM_ASSERT(snv_rndis_request(nv, ti, sizeof(ti)) == -EPROTO, "short INIT answered");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "INITIALIZE truncated", NULL), "warning");
    /* QUERY, SET and KEEPALIVE cut short of their bodies */
    static const struct {
        uint32_t type, len;
        const char *needle;
    } cut[] = {{RNDIS_MSG_QUERY, 24, "QUERY truncated"},
               {RNDIS_MSG_SET, 12, "SET truncated"},
               {RNDIS_MSG_KEEPALIVE, 8, "KEEPALIVE truncated"}};
    for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
        uint8_t c[28] = {0};
        struct rndis_hdr ch = {cut[i].type, cut[i].len};
        memcpy(c, &ch, 8);
        SIM_ASSERT(snv_rndis_request(nv, c, cut[i].len) == -EPROTO, "%s answered",
                   cut[i].needle);
        SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, cut[i].needle, NULL), "%s",
                   cut[i].needle);
    }
    t.type = RNDIS_MSG_INDICATE;
    memcpy(ti, &t, 8);
    SIM_ASSERT(snv_rndis_request(nv, ti, sizeof(ti)) == -EPROTO, "INDICATE from the guest");
    t.type = 0x12345;
    memcpy(ti, &t, 8);
    SIM_ASSERT(snv_rndis_request(nv, ti, sizeof(ti)) == -EPROTO, "unknown type");
    /* packet filter with the wrong length: answered INVALID_LENGTH */
    uint8_t two[2] = {1, 0};
    SIM_ASSERT(snv_set(nv, OID_GEN_CURRENT_PACKET_FILTER, two, 2) ==
                   (int64_t)RNDIS_STATUS_INVALID_LENGTH,
               "2-byte packet filter");
    bad_after(f, vm, nv, "unknown or host-only RNDIS");
}

static void test_bad_completions(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm;
    struct sim_netvsc *nv = bad_nic(f, &vm, UP);
    struct {
        uint32_t type, status;
    } c = {NVSP_MSG1_SEND_RNDIS_PKT_COMPLETE, NVSP_STAT_SUCCESS};
    /* never handed out: past the pool, and inside it but not sent */
    SIM_ASSERT(snv_send_raw(nv, VM_PKT_COMP, 0, 1u << 30, NULL, 0, &c, sizeof(c)) == 0, "send");
    SIM_ASSERT(snv_send_raw(nv, VM_PKT_COMP, 0, nv->sub_count - 1, NULL, 0, &c, sizeof(c)) == 0,
               "send");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "does not hold", NULL), "warning");
    /* twice: hold one frame's completion, send it, then again */
    nv->hold_completions = true;
    uint8_t fr[100], in[128];
    make_frame(fr, sizeof(fr), nv->mac, 5);
    SIM_ASSERT(send(f->peer[0], fr, sizeof(fr), 0) == sizeof(fr), "inject");
    SIM_ASSERT(snv_recv_frame(nv, in, sizeof(in), SIM_TIMEOUT_MS) == sizeof(fr), "frame");
    SIM_ASSERT(nv->nheld == 1, "%d held", nv->nheld);
    uint64_t tid = nv->held_tids[0];
    snv_release_held(nv);
    nv->hold_completions = false;
    sim_log_clear();
    SIM_ASSERT(snv_send_raw(nv, VM_PKT_COMP, 0, tid, NULL, 0, &c, sizeof(c)) == 0, "again");
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_NIC, "does not hold", NULL), "twice");
    /* a completion that is not an RNDIS packet completion */
    c.type = 42;
    SIM_ASSERT(snv_send_raw(nv, VM_PKT_COMP, 0, 0, NULL, 0, &c, sizeof(c)) == 0, "send");
    bad_after(f, vm, nv, "not an RNDIS packet completion");
}

/* A VM whose backend cannot be opened is refused, the reason naming it. */
static void test_refused(void **state)
{
    struct nfx *f = *state;
    struct sim_vm *vm = sim_vm_new(f->d, &(struct sim_vm_opts){.name = VM_NIC_NOFD});
    SIM_ASSERT(vm == NULL, "a VM with a closed packet fd came up");
    SIM_ASSERT(sim_log_count(LOG_ERR, VM_NIC_NOFD, "packet fd 999", NULL) > 0,
               "no log line names the VM and the fd");
    other_nic_works(f, "a refused VM");
}

extern const struct vsp_plugin netvsp_plugin;

/* Bad configuration lines stop vmbusd; netvsp's check names FILE:LINE and
 * the reason. */
static void test_bad_config(void **state)
{
    (void)state;
    static const struct {
        const char *key, *value, *needle;
    } cases[] = {
        {"mac", "01:00:5e:00:00:01", "unicast"},
        {"mac", "00:15:5d:00:00", "unicast"},
        {"queues", "0", "1..64"},
        {"offload", "maybe", "on or off"},
        {"colour", "blue", "unknown key"},
        {"tap", "a/b", "interface name"},
    };
    static const struct sim_vm_cfg vms[] = {{VM_NIC, "netvsp"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sim_vm_param params[] = {{VM_NIC, "netvsp", "fd", "0"},
                                        {VM_NIC, "netvsp", cases[i].key, cases[i].value},
                                        {NULL, NULL, NULL, NULL}};
        simd_vm_params = params;
        sim_log_clear();
        struct sim_daemon *d = simd_start(vms, 1, 1);
        simd_vm_params = NULL;
        if (d)
            simd_stop(d);
        SIM_ASSERT(d == NULL, "netvsp.%s = %s accepted", cases[i].key, cases[i].value);
        struct vsp_param vp[] = {{"link", "up", "f.conf:3"},
                                 {cases[i].key, cases[i].value, "f.conf:4"}};
        char err[256] = "";
        int r = netvsp_plugin.check(NULL, VM_NIC, vp, 2, err, sizeof(err));
        SIM_ASSERT(r == -EINVAL && strncmp(err, "f.conf:4: ", 10) == 0 &&
                       strstr(err, cases[i].needle),
                   "netvsp.%s = %s: check %d '%s'", cases[i].key, cases[i].value, r, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_versions, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_filter_zero, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_backpressure, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_tx_burst, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_rx_stream_tx, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_link, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_revoke, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_offload, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_rsc, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_jumbo, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_backend_closed, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_nvsp, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_buffers, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_sections, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_rndis, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_completions, nfx_setup, nfx_teardown),
        cmocka_unit_test_setup_teardown(test_refused, nfx_setup, nfx_teardown),
        cmocka_unit_test(test_bad_config),
    };
    SIM_RUN("netvsp", tests);
}
