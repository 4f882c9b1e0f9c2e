/* SPDX-License-Identifier: MIT */
/*
 * vmbusd-bench --net: frames through netvsp.  The simulated hv_netvsc sends
 * frames through send sections (up to 128 in flight, like netvsc's queue)
 * and receives frames a thread writes into the NIC's backend; the backend
 * is a SOCK_SEQPACKET socketpair whose other end a thread of this process
 * reads or writes.  Each figure comes with its ratio to moving the same
 * frames through the same kind of socketpair directly, one thread on each
 * end: what netvsp costs on top of the backend itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench.h"
#include "net.h"
#include "common/log.h"
#include "sim_netvsc.h"
#include "vsp/netvsp/offload.h"
#include "vsp/netvsp/protocol.h"

struct pump {
    int fd;
    uint32_t len;
    volatile bool stop;
    uint64_t frames;
    pthread_t th;
};

/* Read frames off fd until stopped. */
static void *drain_main(void *arg)
{
    struct pump *p = arg;
    uint8_t buf[2048];
    while (!p->stop) {
        struct pollfd pf = {p->fd, POLLIN, 0};
        if (poll(&pf, 1, 20) != 1)
            continue;
        while (recv(p->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
            p->frames++;
    }
    return NULL;
}

/* Write frames of len bytes into fd until stopped (waiting when full). */
static void *inject_main(void *arg)
{
    struct pump *p = arg;
    uint8_t frame[2048];
    memset(frame, 0x5a, sizeof(frame));
    memset(frame, 0xff, 6); /* broadcast: the guest's filter takes it */
    frame[12] = 0x88;
    frame[13] = 0xb5;
    while (!p->stop) {
        struct pollfd pf = {p->fd, POLLOUT, 0};
        if (poll(&pf, 1, 20) != 1)
            continue;
        while (!p->stop && send(p->fd, frame, p->len, MSG_DONTWAIT) == (ssize_t)p->len)
            p->frames++;
    }
    return NULL;
}

static void pump_start(struct pump *p, int fd, uint32_t len, void *(*fn)(void *))
{
    memset(p, 0, sizeof(*p));
    p->fd = fd;
    p->len = len;
    pthread_create(&p->th, NULL, fn, p);
}

static uint64_t pump_stop(struct pump *p)
{
    p->stop = true;
    pthread_join(p->th, NULL);
    return p->frames;
}

static void drain_fd(int fd)
{
    uint8_t buf[2048];
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
        ;
}

/* Guest -> backend, frames/s (completions the guest got): frame[0..len)
 * with per-packet info ppi (may be NULL) through send sections, or as
 * GPA-direct ranges when it does not fit one.  A thread drains peer unless
 * it is -1 (a TAP: the host's stack takes the frames). */
double guest_tx(struct sim_netvsc *nv, int peer, const uint8_t *frame, uint32_t len,
                const void *ppi, uint32_t ppi_len, double seconds)
{
    struct pump d;
    if (peer >= 0)
        pump_start(&d, peer, len, drain_main);
    bool gpa = len + ppi_len + 44 > nv->section_size;
    uint8_t *place = gpa ? snv_gpa_frame(nv, len, ppi_len) : NULL;
    if (place) {
        /* built where the guest sends it from, as a guest's stack builds
         * a large frame in the pages hv_netvsc hands over */
        memcpy(place, frame, len);
        frame = place;
    }
    uint64_t sent = 0, done0 = nv->tx_done;
    uint32_t window = nv->nsections < 128 ? nv->nsections : 128;
    double t0 = now_s();
    /* the clock every 16 turns: the guest's own CPU time counts */
    for (unsigned turn = 0; (turn & 15) || now_s() - t0 < seconds; turn++) {
        while (sent - (nv->tx_done - done0) < window) {
            uint64_t tid;
            if (snv_send_frame_ppi(nv, frame, len, gpa ? -1 : (int)(sent % window), ppi,
                                   ppi_len, &tid) < 0)
                break;
            sent++;
        }
        snv_poll(nv, 1, false);
    }
    uint64_t done = nv->tx_done - done0;
    double el = now_s() - t0;
    while (nv->tx_done - done0 < sent && now_s() - t0 < seconds + 5)
        snv_poll(nv, 10, false);
    if (peer >= 0)
        pump_stop(&d);
    return (double)done / el;
}

/* Backend -> guest, frames/s the guest received. */
static double guest_rx(struct sim_netvsc *nv, int peer, uint32_t len, double seconds)
{
    struct pump in;
    pump_start(&in, peer, len, inject_main);
    uint64_t f0 = nv->rx_frames;
    double t0 = now_s();
    while (now_s() - t0 < seconds)
        snv_poll(nv, 1, false);
    double el = now_s() - t0;
    uint64_t got = nv->rx_frames - f0;
    pump_stop(&in);
    /* let the NIC deliver what is still in the backend */
    for (uint64_t last = ~0ull; last != nv->rx_frames;) {
        last = nv->rx_frames;
        snv_poll(nv, 50, false);
    }
    return (double)got / el;
}

/* Backend -> guest over nq queues (vRSS): one thread injects into each
 * queue's socketpair, the guest takes frames from all its channels. */
static double guest_rx_mq(struct sim_netvsc *nv, const int *peers, int nq, uint32_t len,
                          double seconds)
{
    struct pump in[8];
    for (int q = 0; q < nq; q++)
        pump_start(&in[q], peers[q], len, inject_main);
    uint64_t f0 = nv->rx_frames;
    double t0 = now_s();
    while (now_s() - t0 < seconds)
        snv_poll(nv, 1, false);
    double el = now_s() - t0;
    uint64_t got = nv->rx_frames - f0;
    for (int q = 0; q < nq; q++)
        pump_stop(&in[q]);
    for (uint64_t last = ~0ull; last != nv->rx_frames;) {
        last = nv->rx_frames;
        snv_poll(nv, 50, false);
    }
    return (double)got / el;
}

/* 1514-byte frames to a 4-queue NIC (four socketpairs): the rate with
 * four channels against one_queue, the same NIC's figure with one. */
static int net_mq(double secs, double one_queue)
{
    enum { NQ = 4 };
    int peers[NQ], hosts[NQ];
    char fds[64] = "";
    for (int q = 0; q < NQ; q++) {
        int sp[2];
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
            perror("socketpair");
            return 1;
        }
        peers[q] = sp[0];
        hosts[q] = sp[1];
        snprintf(fds + strlen(fds), sizeof(fds) - strlen(fds), "%s%d", q ? "," : "", sp[1]);
    }
    const struct sim_vm_param params[] = {{"bench-mq", "netvsp", "fd", fds},
                                          {NULL, NULL, NULL, NULL}};
    static const struct sim_vm_cfg vms[] = {{"bench-mq", "netvsp"}};
    simd_vm_params = params;
    struct sim_daemon *d = simd_start(vms, 1, 1);
    simd_vm_params = NULL;
    int rc = 1;
    struct sim_netvsc *nv = NULL;
    struct sim_vm *vm = d ? sim_vm_create(d, "bench-mq") : NULL;
    if (!vm)
        goto out;
    vm->expect_offers = 1;
    if (sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) != 1)
        goto out;
    nv = snv_open(vm, 128);
    if (!nv || snv_bringup(nv, NVSP_VERSION_61) != 0 || snv_vrss(nv, NQ) != NQ) {
        fprintf(stderr, "vmbusd-bench: 4-queue NIC bring-up failed\n");
        goto out;
    }
    printf("netvsp: 1514-byte frames over %d queues ...\n", NQ);
    double rx = guest_rx_mq(nv, peers, NQ, 1514, secs);
    add_fig("net_rx_1514B_4q_pps", "netvsp backend->guest 1514 B, 4 queues", rx, "pkt/s",
            "pkt/s", rx / one_queue, "/ 1 queue");
    rc = nv->host_bad ? 1 : 0;
out:
    snv_free(nv);
    if (vm)
        sim_vm_free(vm);
    if (d)
        simd_stop(d);
    for (int q = 0; q < NQ; q++) {
        close(peers[q]);
        close(hosts[q]);
    }
    return rc;
}

/* The same frames through a socketpair of the same kind, one thread on
 * each end, frames/s. */
static double direct(uint32_t len, double seconds)
{
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        return 0;
    struct pump in, d;
    pump_start(&d, sp[1], len, drain_main);
    pump_start(&in, sp[0], len, inject_main);
    double t0 = now_s();
    uint64_t d0 = d.frames;
    while (now_s() - t0 < seconds)
        usleep(10000);
    uint64_t got = d.frames - d0;
    double el = now_s() - t0;
    pump_stop(&in);
    pump_stop(&d);
    close(sp[0]);
    close(sp[1]);
    return (double)got / el;
}

int net_run(void)
{
    if (net_tap_only) {
        int rc = net_tap();
        if (rc == 0) {
            print_table();
            printf("\nLoad average at the end %.2f.\n\n", loadavg());
            print_bench_lines();
        }
        return rc;
    }
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        perror("socketpair");
        return 1;
    }
    char fdstr[16];
    snprintf(fdstr, sizeof(fdstr), "%d", sp[1]);
    const struct sim_vm_param params[] = {{"bench-nic", "netvsp", "fd", fdstr},
                                          {NULL, NULL, NULL, NULL}};
    static const struct sim_vm_cfg vms[] = {{"bench-nic", "netvsp"}};
    simd_vm_params = params;
    struct sim_daemon *d = simd_start(vms, 1, 1);
    simd_vm_params = NULL;
    if (!d) {
        fprintf(stderr, "vmbusd-bench: cannot start vmbusd\n");
        return 1;
    }
    if (!verbose)
        log_set_level(LOG_WARN);
    int rc = 1;
    struct sim_netvsc *nv = NULL;
    struct sim_vm *vm = sim_vm_create(d, "bench-nic");
    if (!vm)
        goto out;
    vm->expect_offers = 1;
    if (sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) != 1)
        goto out;
    nv = snv_open(vm, 128); /* Linux's ring: 128 pages each way */
    if (!nv || snv_bringup(nv, NVSP_VERSION_61) != 0) {
        fprintf(stderr, "vmbusd-bench: NIC bring-up failed\n");
        goto out;
    }
    double secs = quick ? 0.3 : 2.0;
    double rx_1514 = 0;
    static const uint32_t lens[] = {64, 1514};
    for (size_t i = 0; i < 2; i++) {
        uint32_t len = lens[i];
        char name[40], label[48];
        printf("netvsp: %u-byte frames ...\n", len);
        double base = direct(len, secs);
        snprintf(name, sizeof(name), "net_direct_%uB_pps", len);
        snprintf(label, sizeof(label), "socketpair direct %u B frames", len);
        add_fig(name, label, base, "pkt/s", "pkt/s", -1, "");
        uint8_t frame[2048];
        memset(frame, 0x3c, sizeof(frame));
        memset(frame, 0xff, 6);
        frame[12] = 0x88;
        frame[13] = 0xb5;
        double tx = guest_tx(nv, sp[0], frame, len, NULL, 0, secs);
        drain_fd(sp[0]);
        snprintf(name, sizeof(name), "net_tx_%uB_pps", len);
        snprintf(label, sizeof(label), "netvsp guest->backend %u B", len);
        add_fig(name, label, tx, "pkt/s", "pkt/s", tx / base, "/ socketpair direct");
        double rx = guest_rx(nv, sp[0], len, secs);
        snprintf(name, sizeof(name), "net_rx_%uB_pps", len);
        snprintf(label, sizeof(label), "netvsp backend->guest %u B", len);
        add_fig(name, label, rx, "pkt/s", "pkt/s", rx / base, "/ socketpair direct");
        if (len > 1000) {
            rx_1514 = rx;
            add_fig("net_tx_1514B_gbps", "netvsp guest->backend 1514 B", tx * len * 8 / 1e9,
                    "Gbit/s", "Gbit/s", tx / base, "/ socketpair direct");
            add_fig("net_rx_1514B_gbps", "netvsp backend->guest 1514 B", rx * len * 8 / 1e9,
                    "Gbit/s", "Gbit/s", rx / base, "/ socketpair direct");
        }
    }
    if (nv->host_bad) {
        fprintf(stderr, "vmbusd-bench: %llu packets Linux would reject\n",
                (unsigned long long)nv->host_bad);
        goto out;
    }
    rc = 0;
out:
    snv_free(nv);
    if (vm)
        sim_vm_free(vm);
    simd_stop(d);
    close(sp[0]);
    close(sp[1]);
    if (rc) {
        sim_log_dump("vmbusd-bench --net failed");
        return rc;
    }
    if (net_mq(secs, rx_1514) != 0) {
        sim_log_dump("vmbusd-bench --net (4 queues) failed");
        return 1;
    }
    if (net_tap() != 0)
        return 1;
    print_table();
    printf("\nNotes: the socketpair figures use a SOCK_SEQPACKET socketpair as the backend;\n"
           "'socketpair direct' moves the same frames through one with a thread on each\n"
           "end.  The TAP figures (bench/net_tap.c) share one multi-queue TAP between\n"
           "netvsp and the bench's own queue: 'TAP write/read direct' is one thread\n"
           "writing / reading the same frames with the same virtio-net header handling.\n"
           "The guest transmits through send sections (GPA-direct pages for LSO), up to\n"
           "128 frames in flight; netvsp copies a section into its private buffer, and of\n"
           "a large GPA-direct frame only the first 4 KiB (headers), the rest going to the\n"
           "backend from guest memory.  Received frames are read into the receive buffer\n"
           "directly.  The netvsp side includes the simulated guest's own CPU time.\n"
           "Load average at the end %.2f.\n\n",
           loadavg());
    print_bench_lines();
    return 0;
}
