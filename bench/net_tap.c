/* SPDX-License-Identifier: MIT */
/*
 * vmbusd-bench --net, TAP part: netvsp against one TAP device in a network
 * namespace of our own, next to this thread using the very same TAP.
 *
 * The TAP is multi-queue, opened with netvsp's flags (virtio-net headers
 * of 10 bytes, TUN_F_CSUM).  The bench holds one queue fd ("direct"),
 * netvsp the others (its queue 0 is attached, the rest detached: the
 * simulated guest asks for no subchannels).  Each load runs in slices,
 * direct and netvsp taking turns, each figure the median of its slices:
 *   - guest -> TAP: the simulated guest sends frames (send sections, or
 *     GPA-direct for LSO; 128 in flight) and netvsp writes each with its
 *     virtio-net header; direct: one thread writes the same header + frame
 *     (fixed up by the same offload code) to its queue fd.  Both counted
 *     by the kernel (the TAP device's receive counter);
 *   - TAP -> guest: a thread sends frames out of the TAP device through a
 *     packet socket (sendmmsg, 32 at a time) and netvsp reads them into
 *     the guest's receive buffer (the guest counts them); direct: one
 *     thread reads header + frame with readv and completes the checksum
 *     request like netvsp.  During a direct slice both queues are
 *     attached and the frames' flow is steered to the bench's queue by a
 *     frame written from it first (the TAP sends a flow back to the queue
 *     that last wrote it); during a netvsp slice the bench's queue is
 *     detached.  Frames that reached the wrong side are reported.
 * Frames: IPv4 UDP 192.0.2.1 -> 192.0.2.2 to the broadcast MAC (the
 * namespace has no address: its stack drops them), 64 and 1514 bytes, and
 * TCP LSO sends of the largest size netvsp announces (62 KB, MSS 1448).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <arpa/inet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "bench.h"
#include "common/log.h"
#include "net.h"
#include "sim_tcprx.h"
#include "vsp/netvsp/offload.h"
#include "vsp/netvsp/protocol.h"

#define TAP_NAME "nvbench0"
#define SLICES 5

/* A queue of the multi-queue TAP, with netvsp's flags (backend.c). */
static int tap_queue_open(const char *name)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR | IFF_MULTI_QUEUE;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    int sz = 10;
    if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) < 0 || ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0 ||
        ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* The bench's queue attached or not (the kernel refuses to attach an
 * attached queue again). */
static bool attached = true;

static int tap_attach(int fd, bool on)
{
    if (attached == on)
        return 0;
    attached = on;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = on ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    return ioctl(fd, TUNSETQUEUE, &ifr);
}

/* Frames the kernel took from the TAP's writers (its receive counter),
 * from this namespace's /proc/net/dev. */
static uint64_t tap_written(void)
{
    FILE *f = fopen("/proc/net/dev", "r");
    char line[512];
    unsigned long long bytes = 0, pkts = 0;
    while (f && fgets(line, sizeof(line), f)) {
        char *c = strchr(line, ':');
        if (!c)
            continue;
        *c = 0;
        char *n = line;
        while (*n == ' ')
            n++;
        if (strcmp(n, TAP_NAME) == 0 && sscanf(c + 1, "%llu %llu", &bytes, &pkts) == 2)
            break;
    }
    if (f)
        fclose(f);
    return pkts;
}

/* IPv4 UDP frame of len bytes (>= 42) to the broadcast MAC; reverse swaps
 * the addresses and ports (the same flow for the TAP's symmetric hash). */
static void udp_frame(uint8_t *f, uint32_t len, bool reverse)
{
    memset(f, 0, len);
    memset(f, 0xff, 6);
    memcpy(f + 6, (const uint8_t[6]){0x00, 0x15, 0x5d, 9, 9, 9}, 6);
    f[12] = 0x08;
    uint8_t *ip = f + 14, *udp = f + 34;
    ip[0] = 0x45;
    ip[2] = (uint8_t)((len - 14) >> 8);
    ip[3] = (uint8_t)(len - 14);
    ip[8] = 64;
    ip[9] = 17;
    memcpy(ip + 12, (const uint8_t[8]){192, 0, 2, 1, 192, 0, 2, 2}, 8);
    udp[1] = 0x89; /* ports 5001 -> 5002 */
    udp[0] = 0x13;
    udp[2] = 0x13;
    udp[3] = 0x8a;
    if (reverse) {
        memcpy(ip + 12, (const uint8_t[8]){192, 0, 2, 2, 192, 0, 2, 1}, 8);
        udp[1] = 0x8a;
        udp[3] = 0x89;
    }
    udp[4] = (uint8_t)((len - 34) >> 8);
    udp[5] = (uint8_t)(len - 34);
    uint16_t c = snv_csum_fold(snv_csum_add(ip, 20, 0));
    ip[10] = (uint8_t)(c >> 8);
    ip[11] = (uint8_t)c;
    for (uint32_t i = 42; i < len; i++)
        f[i] = (uint8_t)(i * 7 + 3);
}

/* ---- guest -> TAP ---- */

/* One thread writes header + frame (fixed up as netvsp does) to fd:
 * frames/s the kernel took; *cpu_us gets the process's CPU time per frame. */
static double direct_tx(int fd, const struct tx_offload *o, const uint8_t *frame, uint32_t len,
                        double seconds, double *cpu_us)
{
    static uint8_t copy[65536];
    *cpu_us = 0;
    memcpy(copy, frame, len);
    struct vnet_hdr vh;
    const char *why = "";
    if (offload_tx_prepare(copy, len, o, &vh, &why) < 0) {
        fprintf(stderr, "vmbusd-bench: %s\n", why);
        return 0;
    }
    struct iovec iov[2] = {{&vh, sizeof(vh)}, {copy, len}};
    uint64_t k0 = tap_written();
    double t0 = now_s(), t, c0 = cpu_s();
    while ((t = now_s()) - t0 < seconds)
        for (int i = 0; i < 64; i++)
            if (writev(fd, iov, 2) < 0 && errno != EAGAIN)
                return 0;
    uint64_t got = tap_written() - k0;
    *cpu_us = got ? (cpu_s() - c0) * 1e6 / (double)got : 0;
    return (double)got / (t - t0);
}

/* The guest sends through netvsp: frames/s completed; frames the kernel
 * did not get (netvsp dropped them) are added to *lost; *cpu_us gets the
 * process's CPU time (the guest's and vmbusd's) per frame. */
static double netvsp_tx(struct sim_netvsc *nv, const uint8_t *frame, uint32_t len,
                        const void *ppi, uint32_t ppi_len, double seconds, uint64_t *lost,
                        double *cpu_us)
{
    uint64_t k0 = tap_written(), d0 = nv->tx_done;
    double c0 = cpu_s();
    double r = guest_tx(nv, -1, frame, len, ppi, ppi_len, seconds);
    uint64_t done = nv->tx_done - d0, got = tap_written() - k0;
    *cpu_us = got ? (cpu_s() - c0) * 1e6 / (double)got : 0;
    if (got < done)
        *lost += done - got;
    return r;
}

/* ---- TAP -> guest ---- */

struct injector {
    int ps;
    struct sockaddr_ll sll;
    const uint8_t *frame;
    uint32_t len;
    volatile bool stop;
    pthread_t th;
};

/* Frames out of the TAP device (into its readers) as fast as it goes. */
static void *inject_main(void *arg)
{
    struct injector *in = arg;
    enum { BATCH = 32 };
    struct iovec iov = {(void *)in->frame, in->len};
    struct mmsghdr mm[BATCH];
    memset(mm, 0, sizeof(mm));
    for (int i = 0; i < BATCH; i++) {
        mm[i].msg_hdr.msg_name = &in->sll;
        mm[i].msg_hdr.msg_namelen = sizeof(in->sll);
        mm[i].msg_hdr.msg_iov = &iov;
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    while (!in->stop)
        if (sendmmsg(in->ps, mm, BATCH, 0) < 0)
            usleep(50); /* ENOBUFS: the device's queue is full */
    return NULL;
}

static int inject_start(struct injector *in, const uint8_t *frame, uint32_t len)
{
    memset(in, 0, sizeof(*in));
    in->ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    in->sll.sll_family = AF_PACKET;
    in->sll.sll_ifindex = (int)if_nametoindex(TAP_NAME);
    in->sll.sll_halen = 6;
    in->frame = frame;
    in->len = len;
    if (in->ps < 0 || pthread_create(&in->th, NULL, inject_main, in) != 0) {
        if (in->ps >= 0)
            close(in->ps);
        return -1;
    }
    return 0;
}

static void inject_stop(struct injector *in)
{
    in->stop = true;
    pthread_join(in->th, NULL);
    close(in->ps);
}

/* Let the guest take what netvsp still has for it; returns how many. */
static uint64_t guest_settle(struct sim_netvsc *nv)
{
    uint64_t f0 = nv->rx_frames;
    for (uint64_t last = ~0ull; last != nv->rx_frames;) {
        last = nv->rx_frames;
        snv_poll(nv, 50, false);
    }
    return nv->rx_frames - f0;
}

/* Read whatever waits on fd; returns how many frames. */
static uint64_t fd_settle(int fd)
{
    uint8_t buf[2048];
    uint64_t n = 0;
    while (read(fd, buf, sizeof(buf)) > 0)
        n++;
    return n;
}

/* One thread reads header + frame off fd (non-blocking, poll when empty)
 * as netvsp does: frames/s. */
static double direct_rx(int fd, const uint8_t *frame, uint32_t len, double seconds)
{
    struct injector in;
    if (inject_start(&in, frame, len) < 0)
        return 0;
    uint8_t buf[2048];
    uint64_t n = 0;
    double t0 = now_s(), t;
    while ((t = now_s()) - t0 < seconds) {
        struct vnet_hdr vh;
        struct iovec iov[2] = {{&vh, sizeof(vh)}, {buf, sizeof(buf)}};
        ssize_t got = readv(fd, iov, 2);
        if (got < 0) {
            struct pollfd pf = {fd, POLLIN, 0};
            poll(&pf, 1, 20);
            continue;
        }
        uint32_t csum;
        if (got >= (ssize_t)sizeof(vh) + 14 && vh.gso_type == VNET_HDR_GSO_NONE &&
            offload_rx_complete(buf, (size_t)got - sizeof(vh), &vh, &csum) >= 0)
            n++;
    }
    inject_stop(&in);
    return (double)n / (t - t0);
}

static double netvsp_rx(struct sim_netvsc *nv, const uint8_t *frame, uint32_t len,
                        double seconds)
{
    struct injector in;
    if (inject_start(&in, frame, len) < 0)
        return 0;
    uint64_t f0 = nv->rx_frames;
    double t0 = now_s(), t;
    while ((t = now_s()) - t0 < seconds)
        snv_poll(nv, 1, false);
    uint64_t got = nv->rx_frames - f0;
    inject_stop(&in);
    guest_settle(nv);
    return (double)got / (t - t0);
}

/* ---- TAP -> guest: the namespace's own TCP ---- */

/* A new session of the guest on the NIC (its LRO on or off): the old one
 * closed, the channel opened and brought up again. */
static struct sim_netvsc *guest_session(struct sim_vm *vm, struct sim_netvsc *nv, bool lro_off)
{
    snv_free(nv);
    nv = snv_open(vm, 128);
    if (!nv)
        return NULL;
    nv->lro_off = lro_off;
    if (snv_bringup(nv, NVSP_VERSION_61) != 0) {
        snv_free(nv);
        return NULL;
    }
    return nv;
}

/* One TCP connection from the namespace (192.0.2.1) to the guest's
 * receiver (sim_tcprx) on port, sending for `seconds`: bits/s the guest
 * took in order; *segments gets how many frames carried them. */
static double netvsp_tcp(struct sim_netvsc *nv, const uint8_t host_mac[6], uint16_t port,
                         double seconds, uint64_t *segments, uint64_t *bytes)
{
    int cs = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "192.0.2.2", &sin.sin_addr);
    struct snv_tcprx t;
    if (cs < 0 ||
        (connect(cs, (struct sockaddr *)&sin, sizeof(sin)) < 0 && errno != EINPROGRESS) ||
        snv_tcprx_accept(nv, &t, host_mac, port, 2000) < 0) {
        fprintf(stderr, "vmbusd-bench: TCP to the guest: no connection\n");
        if (cs >= 0)
            close(cs);
        return 0;
    }
    t.fast = true;
    static uint8_t buf[65536];
    /* the first bytes taken start the clock (connection set-up is not
     * the stream) */
    while (t.bytes == 0 && snv_tcprx_take(nv, &t, 1, 5) == 0)
        if (send(cs, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN)
            break;
    uint64_t b0 = t.bytes, s0 = t.segments;
    double t0 = now_s(), t1;
    while ((t1 = now_s()) - t0 < seconds) {
        while (send(cs, buf, sizeof(buf), MSG_DONTWAIT | MSG_NOSIGNAL) > 0)
            ;
        snv_tcprx_take(nv, &t, UINT64_MAX, 2);
    }
    close(cs);
    guest_settle(nv);
    *segments += t.segments - s0;
    *bytes += t.bytes - b0;
    return (double)(t.bytes - b0) * 8 / (t1 - t0);
}

/* The namespace's TCP streams to the guest with its LRO off (MTU-sized
 * frames) and on (coalesced ones), taking turns: Gbit/s each, the ratio
 * on / off. */
static int tcp_figures(struct sim_vm *vm, struct sim_netvsc **nvp, int nslices, double secs)
{
    uint8_t host_mac[6];
    if (snv_if_mac(TAP_NAME, host_mac) < 0 || snv_ipv4_setup(TAP_NAME, (*nvp)->mac) < 0) {
        printf("netvsp TCP figures skipped: no address on the TAP (%s)\n", strerror(errno));
        return 0;
    }
    double v[2][SLICES];
    uint64_t segs[2] = {0, 0}, bytes[2] = {0, 0};
    uint16_t port = 6000;
    for (int k = 0; k < nslices; k++)
        for (int lro = 0; lro < 2; lro++) {
            *nvp = guest_session(vm, *nvp, !lro);
            if (!*nvp)
                return -1;
            v[lro][k] = netvsp_tcp(*nvp, host_mac, port++, secs, &segs[lro], &bytes[lro]) / 1e9;
            if ((*nvp)->host_bad)
                return -1;
        }
    double off = quantile(v[0], (size_t)nslices, 0.5), on = quantile(v[1], (size_t)nslices, 0.5);
    add_fig("tap_tcp_rx_nolro_gbps", "netvsp TAP->guest TCP, LRO off", off, "Gbit/s", "Gbit/s",
            -1, "");
    add_fig("tap_tcp_rx_rsc_gbps", "netvsp TAP->guest TCP, RSC", on, "Gbit/s", "Gbit/s",
            off > 0 ? on / off : 0, "/ LRO off");
    printf("netvsp TCP to the guest: %.0f bytes per frame with LRO off, %.0f with RSC\n",
           segs[0] ? (double)bytes[0] / (double)segs[0] : 0,
           segs[1] ? (double)bytes[1] / (double)segs[1] : 0);
    return 0;
}

/* ---- the run ---- */

struct load {
    const char *tag, *label;
    bool rx;
    uint32_t len;
    bool lso;
};

static const struct load loads[] = {
    {"tx_64B", "guest->TAP 64 B", false, 64, false},
    {"tx_1514B", "guest->TAP 1514 B", false, 1514, false},
    {"tx_lso", "guest->TAP 62 KB LSO", false, 0, true},
    {"rx_64B", "TAP->guest 64 B", true, 64, false},
    {"rx_1514B", "TAP->guest 1514 B", true, 1514, false},
};

static void figures(const struct load *l, uint32_t len, double direct, double vsp)
{
    char name[40], label[48];
    double ratio = direct > 0 ? vsp / direct : 0;
    const char *vs = l->rx ? "/ TAP read direct" : "/ TAP write direct";
    snprintf(name, sizeof(name), "tap_direct_%s_pps", l->tag);
    snprintf(label, sizeof(label), "TAP %s direct %s", l->rx ? "read" : "write",
             l->label + strlen("guest->TAP "));
    add_fig(name, label, direct, "pkt/s", "pkt/s", -1, "");
    snprintf(name, sizeof(name), "tap_%s_pps", l->tag);
    snprintf(label, sizeof(label), "netvsp %s", l->label);
    add_fig(name, label, vsp, "pkt/s", "pkt/s", ratio, vs);
    snprintf(name, sizeof(name), "tap_%s_gbps", l->tag);
    add_fig(name, label, vsp * len * 8 / 1e9, "Gbit/s", "Gbit/s", ratio, vs);
}

/* Transmit: the process's CPU time per frame each side (what the rate
 * becomes when the machine's other work leaves this process one CPU). */
static void cpu_figures(const struct load *l, double direct, double vsp)
{
    char name[40], label[48];
    snprintf(name, sizeof(name), "tap_direct_%s_cpu", l->tag);
    snprintf(label, sizeof(label), "TAP write direct %s, CPU/frame",
             l->label + strlen("guest->TAP "));
    add_fig(name, label, direct, "us", "µs", -1, "");
    snprintf(name, sizeof(name), "tap_%s_cpu", l->tag);
    snprintf(label, sizeof(label), "netvsp %s, CPU/frame", l->label);
    add_fig(name, label, vsp, "us", "µs", direct > 0 ? vsp / direct : 0, "x direct's CPU");
}

int net_tap(void)
{
    if ((geteuid() != 0 || unshare(CLONE_NEWNET) < 0) &&
        unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0) {
        printf("netvsp TAP figures skipped: no network namespace of our own (%s)\n",
               strerror(errno));
        return 0;
    }
    int bq = tap_queue_open(TAP_NAME);
    attached = true;
    if (bq < 0 || snv_link_up(TAP_NAME) < 0) {
        printf("netvsp TAP figures skipped: cannot create a multi-queue TAP (%s)\n",
               strerror(errno));
        if (bq >= 0)
            close(bq);
        return 0;
    }
    static const struct sim_vm_param params[] = {{"bench-tap", "netvsp", "tap", TAP_NAME},
                                                 {"bench-tap", "netvsp", "offload", "on"},
                                                 {NULL, NULL, NULL, NULL}};
    static const struct sim_vm_cfg vms[] = {{"bench-tap", "netvsp"}};
    simd_vm_params = params;
    struct sim_daemon *d = simd_start(vms, 1, 1);
    simd_vm_params = NULL;
    int rc = 1;
    struct sim_netvsc *nv = NULL;
    struct sim_vm *vm = NULL;
    if (!d)
        goto out;
    if (!verbose)
        log_set_level(LOG_WARN);
    vm = sim_vm_create(d, "bench-tap");
    if (!vm)
        goto out;
    vm->expect_offers = 1;
    if (sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) != 1)
        goto out;
    nv = snv_open(vm, 128);
    if (!nv || snv_bringup(nv, NVSP_VERSION_61) != 0)
        goto out;
    int nslices = quick ? 1 : SLICES;
    double secs = quick ? 0.2 : 0.4;
    printf("netvsp: TAP %s, %d x %.1f s per load and side ...\n", TAP_NAME, nslices, secs);
    static uint8_t frame[65536], rev[2048];
    static const uint8_t bcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    uint64_t lost = 0, misrouted = 0, stray = 0;
    for (size_t i = 0; i < sizeof(loads) / sizeof(loads[0]); i++) {
        const struct load *l = &loads[i];
        if (net_tap_load && strncmp(net_tap_load, l->tag, strlen(net_tap_load)) != 0)
            continue;
        uint32_t len = l->len;
        uint32_t ppi[4] = {16, NDIS_PPI_LSO, 12, 1448u | (34u << 20) | (1u << 30)};
        struct tx_offload o = {0};
        if (l->lso) {
            len = snv_lso_frame(frame, false, 62000, bcast);
            o.has_lso = true;
            o.lso = ppi[3];
        } else {
            udp_frame(frame, len, false);
            udp_frame(rev, len, true);
        }
        double vd[SLICES], vn[SLICES], cd[SLICES], cn[SLICES];
        for (int k = 0; k < nslices; k++) {
            /* direct: the bench's queue attached, the flow steered to it */
            if (tap_attach(bq, true) < 0) {
                perror("vmbusd-bench: TUNSETQUEUE attach");
                goto out;
            }
            if (l->rx) {
                struct vnet_hdr vh;
                memset(&vh, 0, sizeof(vh));
                struct iovec iov[2] = {{&vh, sizeof(vh)}, {rev, len}};
                if (writev(bq, iov, 2) < 0)
                    perror("vmbusd-bench: steering write");
                guest_settle(nv);
                uint64_t g0 = nv->rx_frames;
                vd[k] = direct_rx(bq, frame, len, secs);
                guest_settle(nv);
                misrouted += nv->rx_frames - g0;
                fd_settle(bq);
            } else {
                vd[k] = direct_tx(bq, &o, frame, len, secs, &cd[k]);
            }
            /* netvsp: the bench's queue detached, netvsp's is the only one */
            if (tap_attach(bq, false) < 0) {
                perror("vmbusd-bench: TUNSETQUEUE detach");
                goto out;
            }
            stray += fd_settle(bq);
            vn[k] = l->rx ? netvsp_rx(nv, frame, len, secs)
                          : netvsp_tx(nv, frame, len, l->lso ? ppi : NULL,
                                      l->lso ? sizeof(ppi) : 0, secs, &lost, &cn[k]);
        }
        figures(l, len, quantile(vd, (size_t)nslices, 0.5), quantile(vn, (size_t)nslices, 0.5));
        if (!l->rx)
            cpu_figures(l, quantile(cd, (size_t)nslices, 0.5), quantile(cn, (size_t)nslices, 0.5));
    }
    if (lost)
        printf("note: %llu frames the guest sent never reached the TAP (netvsp dropped them)\n",
               (unsigned long long)lost);
    if (misrouted)
        printf("note: %llu frames of direct read slices went to netvsp's queue instead\n",
               (unsigned long long)misrouted);
    if (stray)
        printf("note: %llu frames were left on the bench's queue\n", (unsigned long long)stray);
    if (nv->host_bad || (!net_tap_load && tcp_figures(vm, &nv, nslices, secs) < 0))
        goto out;
    rc = 0;
out:
    snv_free(nv);
    if (vm)
        sim_vm_free(vm);
    if (d)
        simd_stop(d);
    close(bq);
    if (rc)
        fprintf(stderr, "vmbusd-bench: netvsp TAP run failed\n");
    return rc;
}
