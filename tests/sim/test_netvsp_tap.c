/* SPDX-License-Identifier: MIT */
/*
 * netvsp on a real TAP device, in a network namespace the test makes for
 * itself (unshare: CLONE_NEWNET as root, else with CLONE_NEWUSER; skipped,
 * exit 77, where neither is allowed).  vmbusd creates the TAP device
 * (netvsp.tap names one that does not exist: it has CAP_NET_ADMIN in the
 * namespace); the test brings it up and talks to it with a packet socket.
 *
 *   test_tap_frames   the simulated guest brings the NIC up; frames it
 *                     sends arrive on the TAP interface, frames sent out
 *                     of the interface reach the guest, both byte for byte
 *   test_tap_lso      with netvsp.offload = on, an LSO segment as hv_netvsc
 *                     sends it (lengths and IP checksum 0) is taken by the
 *                     host's kernel: its RST comes back to the guest; a
 *                     host connect()'s SYN (partial checksum) reaches the
 *                     guest completed and reported good
 *   test_tap_rsc      receive coalescing: the host's own TCP streams 4 MiB
 *                     to the guest (sim_tcprx answers and acks), which
 *                     gets frames longer than the MTU but none longer
 *                     than OFFLOAD_RSC_FRAME_MAX, each a valid
 *                     segment, every byte in order; with the guest's LRO
 *                     off, 1 MiB in MTU-sized segments only
 *   test_tap_vrss     a multi-queue TAP (netvsp.queues = 4, offloads on:
 *                     every queue fd carries virtio-net headers): the guest
 *                     gets 3 subchannels; a frame sent on each channel
 *                     arrives whole on the interface; 16 UDP flows sent out
 *                     of the interface reach the guest, each flow on one
 *                     channel, the flows spread over several (the kernel's
 *                     flow hash picks the TAP queue, one per channel)
 *   test_tap_single   an existing single-queue TAP with netvsp.queues = 4:
 *                     the VM comes up with one queue (no RSS capabilities)
 *   test_tap_stale_offload  a TAP a previous user left with TUN_F_CSUM
 *                     (an offloading VM, QEMU) served with offload = off:
 *                     the host's SYN reaches the guest with its checksum
 *                     complete (the kernel must not leave it partial: the
 *                     guest is told nothing about it)
 *   test_tap_refused  netvsp.tap naming a device that is not a TAP (lo)
 *                     refuses that VM, the reason naming the device
 */
#include "sim_test.h"
#include "vsp/netvsp/offload.h"

#include <arpa/inet.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <net/if.h>
#include <linux/if_packet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sim_netvsc.h"
#include "sim_tcprx.h"
#include "vsp/netvsp/protocol.h"

#define VM_TAP "vm-tap"
#define VM_LO "vm-lo"
#define TAP_NAME "nvsim0"
#define VM_TAP_OFF "vm-tap-offload"
#define TAP_OFF_NAME "nvsim1"
#define ETHERTYPE_TEST 0x88b5
#define VM_TAP_MQ "vm-tap-mq"
#define TAP_MQ_NAME "nvsim2"
#define VM_TAP_SQ "vm-tap-sq"
#define TAP_SQ_NAME "nvsim3"
#define VM_TAP_ST "vm-tap-stale"
#define TAP_ST_NAME "nvsim4"

struct tfx {
    struct sim_daemon *d;
};

static int tfx_setup(void **state)
{
    static const struct sim_vm_param params[] = {{VM_TAP, "netvsp", "tap", TAP_NAME},
                                                 {VM_LO, "netvsp", "tap", "lo"},
                                                 {VM_TAP_OFF, "netvsp", "tap", TAP_OFF_NAME},
                                                 {VM_TAP_OFF, "netvsp", "offload", "on"},
                                                 {VM_TAP_MQ, "netvsp", "tap", TAP_MQ_NAME},
                                                 {VM_TAP_MQ, "netvsp", "offload", "on"},
                                                 {VM_TAP_MQ, "netvsp", "queues", "4"},
                                                 {VM_TAP_SQ, "netvsp", "tap", TAP_SQ_NAME},
                                                 {VM_TAP_SQ, "netvsp", "queues", "4"},
                                                 {VM_TAP_ST, "netvsp", "tap", TAP_ST_NAME},
                                                 {VM_TAP_ST, "netvsp", "queues", "1"},
                                                 {NULL, NULL, NULL, NULL}};
    static const struct sim_vm_cfg vms[] = {{VM_TAP, "netvsp"},
                                            {VM_LO, "netvsp"},
                                            {VM_TAP_OFF, "netvsp"},
                                            {VM_TAP_MQ, "netvsp"},
                                            {VM_TAP_SQ, "netvsp"},
                                            {VM_TAP_ST, "netvsp"}};
    struct tfx *f = calloc(1, sizeof(*f));
    simd_vm_params = params;
    sim_log_clear();
    f->d = simd_start(vms, 6, 1);
    simd_vm_params = NULL;
    if (!f->d)
        return -1;
    *state = f;
    return 0;
}

static int tfx_teardown(void **state)
{
    struct tfx *f = *state;
    simd_stop(f->d);
    free(f);
    return 0;
}

/* The next test-ethertype frame received on the interface (not one the
 * host sent, not the kernel's own IPv6 chatter). */
static int packet_recv(int ps, uint8_t *buf, size_t cap)
{
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (sim_now_ms() < end) {
        struct pollfd p = {ps, POLLIN, 0};
        if (poll(&p, 1, 100) != 1)
            continue;
        struct sockaddr_ll from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(ps, buf, cap, 0, (struct sockaddr *)&from, &fl);
        if (n >= 14 && from.sll_pkttype != PACKET_OUTGOING && buf[12] == 0x88 &&
            buf[13] == 0xb5)
            return (int)n;
    }
    return -1;
}

/* The next test-ethertype frame the guest received. */
static int guest_recv(struct sim_netvsc *nv, uint8_t *buf, uint32_t cap)
{
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (sim_now_ms() < end) {
        int n = snv_recv_frame(nv, buf, cap, 200);
        if (n >= 14 && buf[12] == 0x88 && buf[13] == 0xb5)
            return n;
    }
    return -1;
}

static void test_tap_frames(void **state)
{
    struct tfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_TAP, 1);
    SIM_ASSERT(snv_link_up(TAP_NAME) == 0, "ip link set %s up: %s", TAP_NAME, strerror(errno));
    unsigned ifindex = if_nametoindex(TAP_NAME);
    int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(0x0003 /* ETH_P_ALL */));
    SIM_ASSERT(ps >= 0 && ifindex, "packet socket: %s", strerror(errno));
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_protocol = htons(0x0003),
                              .sll_ifindex = (int)ifindex};
    SIM_ASSERT(bind(ps, (struct sockaddr *)&sll, sizeof(sll)) == 0, "bind");

    struct sim_netvsc *nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up");
    static const uint8_t peer_mac[6] = {0x02, 0, 0, 0, 0, 0x42};
    uint8_t out[1514], in[2048];
    for (int i = 0; i < 20; i++) {
        uint32_t len = i % 2 ? 1514 : 60 + (uint32_t)i;
        /* guest -> TAP */
        sim_fill_pattern(out, len, 100 + (uint64_t)i);
        memcpy(out, peer_mac, 6);
        memcpy(out + 6, nv->mac, 6);
        out[12] = 0x88;
        out[13] = 0xb5;
        SIM_ASSERT(snv_send_frame(nv, out, len, i % 3 == 0 ? -1 : i) == NVSP_STAT_SUCCESS,
                   "transmit %d", i);
        int n = packet_recv(ps, in, sizeof(in));
        SIM_ASSERT(n == (int)len && memcmp(in, out, len) == 0,
                   "frame %d on the TAP: %d bytes, %u sent", i, n, len);
        /* interface -> guest */
        sim_fill_pattern(out, len, 200 + (uint64_t)i);
        memcpy(out, nv->mac, 6);
        memcpy(out + 6, peer_mac, 6);
        out[12] = 0x88;
        out[13] = 0xb5;
        SIM_ASSERT(sendto(ps, out, len, 0, (struct sockaddr *)&sll, sizeof(sll)) == (ssize_t)len,
                   "send on the interface: %s", strerror(errno));
        n = guest_recv(nv, in, sizeof(in));
        SIM_ASSERT(n == (int)len && memcmp(in, out, len) == 0,
                   "frame %d in the guest: %d bytes, %u sent", i, n, len);
    }
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    close(ps);
    snv_free(nv);
    sim_vm_free(vm);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void host_syn(struct sim_netvsc *nv, bool told_good);

/* An LSO segment exactly as hv_netvsc hands it over (IPv4 total length and
 * header checksum 0, TCP checksum without the length) from the guest
 * 192.0.2.2:40000 to the host's closed port 192.0.2.1:9: the host kernel
 * takes it only if netvsp filled those fields in, and answers with a RST
 * that comes back through the TAP to the guest. */
static void test_tap_lso(void **state)
{
    struct tfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_TAP_OFF, 1);
    struct sim_netvsc *nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up");
    SIM_ASSERT(snv_link_up(TAP_OFF_NAME) == 0, "link up: %s", strerror(errno));
    SIM_ASSERT(snv_ipv4_setup(TAP_OFF_NAME, nv->mac) == 0, "address and neighbour: %s",
               strerror(errno));
    uint8_t host_mac[6];
    SIM_ASSERT(snv_if_mac(TAP_OFF_NAME, host_mac) == 0, "hw address: %s", strerror(errno));
    static uint8_t fr[8192];
    const uint32_t payload = 5000, len = 14 + 20 + 20 + payload;
    memset(fr, 0, len);
    memcpy(fr, host_mac, 6);
    memcpy(fr + 6, nv->mac, 6);
    fr[12] = 0x08;
    uint8_t *ip = fr + 14, *th = fr + 34;
    ip[0] = 0x45;
    ip[8] = 64;
    ip[9] = 6;
    memcpy(ip + 12, (const uint8_t[8]){192, 0, 2, 2, 192, 0, 2, 1}, 8);
    th[0] = 40000 >> 8;
    th[1] = 40000 & 0xff;
    th[3] = 9;
    th[7] = 1;                 /* seq 1 */
    th[8] = 0x12;              /* ack 0x12345678 */
    th[9] = 0x34;
    th[10] = 0x56;
    th[11] = 0x78;
    th[12] = 0x50;
    th[13] = 0x18;             /* PSH | ACK */
    th[14] = 0xff;
    for (uint32_t i = 0; i < payload; i++)
        th[20 + i] = (uint8_t)i;
    uint16_t ps = snv_csum_fold(snv_csum_add(ip + 12, 8, 6)); /* no length: hv_netvsc's */
    th[16] = (uint8_t)(ps >> 8);
    th[17] = (uint8_t)ps;
    uint32_t ppi[4] = {16, NDIS_PPI_LSO, 12, 1448u | (34u << 20) | (1u << 30)};
    uint64_t tid;
    nv->comp_valid = false;
    SIM_ASSERT(snv_send_frame_ppi(nv, fr, len, -1, ppi, sizeof(ppi), &tid) == 0, "send");
    /* the RST (ack 0x12345678 -> its seq) */
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    bool rst = false;
    uint8_t in[2048];
    while (!rst && sim_now_ms() < end) {
        int n = snv_recv_frame(nv, in, sizeof(in), 200);
        if (n < 54 || in[12] != 0x08 || in[13] != 0 || in[23] != 6)
            continue;
        const uint8_t *rt = in + 14 + (in[14] & 0xf) * 4;
        rst = rd16(rt) == 9 && rd16(rt + 2) == 40000 && (rt[13] & 0x04) &&
              rd16(rt + 4) == 0x1234 && rd16(rt + 6) == 0x5678 &&
              snv_csum_fold(snv_csum_add(in + 14, (size_t)(in[14] & 0xf) * 4, 0)) == 0xffff;
        if (rst) {
            /* the kernel's RST comes with a partial or a checked checksum:
             * either way it is whole now, and the guest is told it is good */
            size_t tl = (size_t)n - (size_t)(rt - in);
            uint32_t rps = snv_csum_add(in + 26, 8, 6 + (uint32_t)tl);
            SIM_ASSERT(snv_csum_fold(snv_csum_add(rt, tl, rps)) == 0xffff,
                       "RST's TCP checksum is not complete");
            SIM_ASSERT(!nv->last_has_csum || nv->last_csum == (1u << 3),
                       "RST with checksum info %x", nv->last_csum);
        }
    }
    SIM_ASSERT(rst, "no RST from the host kernel for the LSO segment");
    /* The host connects to the guest: its SYN leaves the kernel with a
     * partial checksum (the TAP takes TUN_F_CSUM), which netvsp completes
     * and reports good. */
    host_syn(nv, true);
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    snv_free(nv);
    sim_vm_free(vm);
}

/* The host's TCP streams total bytes to the guest's port (its own
 * connection, a byte pattern it hashes as the guest does); the guest's
 * receiver (sim_tcprx) takes them in order. */
static void host_stream(struct sim_netvsc *nv, const uint8_t host_mac[6], uint16_t port,
                        uint32_t total, struct snv_tcprx *t)
{
    int cs = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "192.0.2.2", &sin.sin_addr);
    SIM_ASSERT(cs >= 0 && (connect(cs, (struct sockaddr *)&sin, sizeof(sin)) == 0 ||
                           errno == EINPROGRESS),
               "connect: %s", strerror(errno));
    SIM_ASSERT(snv_tcprx_accept(nv, t, host_mac, port, SIM_TIMEOUT_MS) == 0,
               "no SYN to port %u", port);
    static uint8_t buf[65536];
    uint32_t sent = 0, check = 0;
    uint64_t end = sim_now_ms() + 4 * SIM_TIMEOUT_MS;
    while (t->bytes < total && sim_now_ms() < end) {
        while (sent < total) {
            uint32_t chunk = total - sent < sizeof(buf) ? total - sent : sizeof(buf);
            for (uint32_t i = 0; i < chunk; i++)
                buf[i] = (uint8_t)((sent + i) * 13 + 7);
            ssize_t w = send(cs, buf, chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w <= 0)
                break;
            for (ssize_t i = 0; i < w; i++)
                check = check * 31 + buf[i];
            sent += (uint32_t)w;
        }
        snv_tcprx_take(nv, t, total, 50);
    }
    close(cs);
    SIM_ASSERT(t->bytes == total && t->data_check == check,
               "guest took %llu of %u bytes (%u sent), data %s", (unsigned long long)t->bytes,
               total, sent, t->data_check == check ? "matches" : "differs");
    SIM_ASSERT(t->bad == 0, "%llu frames with bad checksums or lengths",
               (unsigned long long)t->bad);
}

/* Receive coalescing over a real TAP: the guest (NVSP 6.1, LRO on) gets
 * the host's TCP stream in frames longer than the MTU (the TAP hands over
 * its GSO frames), every one a valid segment, all bytes in order; the
 * same guest with LRO off gets MTU-sized segments only (netvsp took the
 * TAP's TSO off again). */
static void test_tap_rsc(void **state)
{
    struct tfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_TAP_OFF, 1);
    struct sim_netvsc *nv = snv_open(vm, 64);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up");
    SIM_ASSERT(nv->rsc_offered, "RSC not offered");
    SIM_ASSERT(snv_link_up(TAP_OFF_NAME) == 0, "link up: %s", strerror(errno));
    SIM_ASSERT(snv_ipv4_setup(TAP_OFF_NAME, nv->mac) == 0, "address and neighbour: %s",
               strerror(errno));
    uint8_t host_mac[6];
    SIM_ASSERT(snv_if_mac(TAP_OFF_NAME, host_mac) == 0, "hw address: %s", strerror(errno));
    struct snv_tcprx t;
    host_stream(nv, host_mac, 5001, 4u << 20, &t);
    SIM_ASSERT(nv->rx_coalesced > 0 && t.max_segment > 1460,
               "LRO on: no coalesced frame (%llu, longest segment %llu bytes)",
               (unsigned long long)nv->rx_coalesced, (unsigned long long)t.max_segment);
    /* the kernel's 64 KB frames (45 segments) come split, the longer part
     * short enough for Linux to take in 64 KiB (OFFLOAD_RSC_FRAME_MAX) */
    SIM_ASSERT(t.max_segment + 14 + 20 + 20 <= OFFLOAD_RSC_FRAME_MAX,
               "a coalesced frame of %llu bytes of payload: longer than %u bytes",
               (unsigned long long)t.max_segment, OFFLOAD_RSC_FRAME_MAX);
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    snv_free(nv);
    nv = snv_open(vm, 64);
    SIM_ASSERT(nv, "reopen");
    nv->lro_off = true;
    SIM_ASSERT(snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up, LRO off");
    host_stream(nv, host_mac, 5002, 1u << 20, &t);
    SIM_ASSERT(nv->rx_coalesced == 0 && t.max_segment <= 1448,
               "LRO off: %llu coalesced frames, longest segment %llu bytes",
               (unsigned long long)nv->rx_coalesced, (unsigned long long)t.max_segment);
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    snv_free(nv);
    sim_vm_free(vm);
}

/* The host (192.0.2.1) connects to the guest's port 7: its SYN reaches the
 * guest with a complete TCP checksum; told_good: the guest is told it is
 * good. */
static void host_syn(struct sim_netvsc *nv, bool told_good)
{
    uint8_t in[2048];
    uint64_t end;
    int cs = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(7)};
    inet_pton(AF_INET, "192.0.2.2", &sin.sin_addr);
    SIM_ASSERT(cs >= 0 && (connect(cs, (struct sockaddr *)&sin, sizeof(sin)) == 0 ||
                           errno == EINPROGRESS),
               "connect: %s", strerror(errno));
    bool syn = false;
    end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (!syn && sim_now_ms() < end) {
        int n = snv_recv_frame(nv, in, sizeof(in), 200);
        if (n < 54 || in[12] != 0x08 || in[13] != 0 || in[23] != 6)
            continue;
        const uint8_t *rt = in + 14 + (in[14] & 0xf) * 4;
        if (rd16(rt + 2) != 7 || !(rt[13] & 0x02))
            continue;
        syn = true;
        size_t tl = (size_t)n - (size_t)(rt - in);
        uint32_t sps = snv_csum_add(in + 26, 8, 6 + (uint32_t)tl);
        SIM_ASSERT(snv_csum_fold(snv_csum_add(rt, tl, sps)) == 0xffff,
                   "SYN's TCP checksum is not complete");
        SIM_ASSERT(!told_good || (nv->last_has_csum && nv->last_csum == (1u << 3)),
                   "SYN without 'TCP checksum good' (%d %x)", nv->last_has_csum, nv->last_csum);
    }
    close(cs);
    SIM_ASSERT(syn, "no SYN from the host kernel");
}

/* A TAP the host made, left by its last user with virtio-net headers and
 * the checksum offload on (an offloading VM before, or QEMU), served with
 * netvsp.offload = off: netvsp turns the TAP's offloads off, so the host's
 * kernel completes checksums before frames reach the guest. */
static void test_tap_stale_offload(void **state)
{
    struct tfx *f = *state;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), sz = 10;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TAP_ST_NAME);
    SIM_ASSERT(fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) == 0 && ioctl(fd, TUNSETPERSIST, 1) == 0 &&
                   ioctl(fd, TUNSETVNETHDRSZ, &sz) == 0 && ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM) == 0,
               "an offloading TAP: %s", strerror(errno));
    close(fd);
    struct sim_vm *vm = sim_up_offers(f->d, VM_TAP_ST, 1);
    struct sim_netvsc *nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up");
    SIM_ASSERT(snv_link_up(TAP_ST_NAME) == 0, "link up: %s", strerror(errno));
    SIM_ASSERT(snv_ipv4_setup(TAP_ST_NAME, nv->mac) == 0, "address and neighbour: %s",
               strerror(errno));
    host_syn(nv, false);
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    snv_free(nv);
    sim_vm_free(vm);
    fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) == 0)
        ioctl(fd, TUNSETPERSIST, 0);
    if (fd >= 0)
        close(fd);
}

/* A packet socket bound to ifname (which is brought up): its fd and the
 * address to send with. */
static int packet_socket(const char *ifname, struct sockaddr_ll *sll)
{
    SIM_ASSERT(snv_link_up(ifname) == 0, "ip link set %s up: %s", ifname, strerror(errno));
    unsigned ifindex = if_nametoindex(ifname);
    int ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(0x0003 /* ETH_P_ALL */));
    SIM_ASSERT(ps >= 0 && ifindex, "packet socket: %s", strerror(errno));
    *sll = (struct sockaddr_ll){.sll_family = AF_PACKET, .sll_protocol = htons(0x0003),
                                .sll_ifindex = (int)ifindex};
    SIM_ASSERT(bind(ps, (struct sockaddr *)sll, sizeof(*sll)) == 0, "bind");
    return ps;
}

/* An IPv4/UDP frame of flow `flow` (192.0.2.(10 + flow):(1000 + flow) ->
 * 192.0.2.2:2000), frame number k in its payload. */
static uint32_t udp_frame(uint8_t *f, const uint8_t dst[6], int flow, int k)
{
    static const uint8_t src[6] = {0x02, 0, 0, 0, 0, 0x43};
    uint32_t len = 14 + 20 + 8 + 32;
    memset(f, 0, len);
    memcpy(f, dst, 6);
    memcpy(f + 6, src, 6);
    f[12] = 0x08;
    f[14] = 0x45;
    f[17] = (uint8_t)(len - 14);
    f[22] = 64;
    f[23] = 17;
    memcpy(f + 26, (const uint8_t[8]){192, 0, 2, (uint8_t)(10 + flow), 192, 0, 2, 2}, 8);
    uint16_t c = snv_csum_fold(snv_csum_add(f + 14, 20, 0));
    f[24] = (uint8_t)~(c >> 8);
    f[25] = (uint8_t)~c;
    f[34] = (uint8_t)((1000 + flow) >> 8);
    f[35] = (uint8_t)(1000 + flow);
    f[36] = 2000 >> 8;
    f[37] = 2000 & 0xff;
    f[39] = 8 + 32;
    f[42] = (uint8_t)flow;
    f[43] = (uint8_t)k;
    return len;
}

static void test_tap_vrss(void **state)
{
    struct tfx *f = *state;
    struct sim_vm *vm = sim_up_offers(f->d, VM_TAP_MQ, 1);
    struct sockaddr_ll sll;
    int ps = packet_socket(TAP_MQ_NAME, &sll);
    struct sim_netvsc *nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up");
    SIM_ASSERT(nv->rss_queues == 4, "RSS capabilities: %u queues", nv->rss_queues);
    SIM_ASSERT(snv_vrss(nv, 4) == 4, "vRSS: %d channels", nv->nch);
    static const uint8_t peer_mac[6] = {0x02, 0, 0, 0, 0, 0x42};
    uint8_t out[1514], in[2048];
    for (int c = 0; c < 4; c++) {
        /* guest -> TAP on channel c: its queue fd writes a virtio-net
         * header before the frame, the interface shows the frame alone */
        uint32_t len = 300 + 200 * (uint32_t)c;
        sim_fill_pattern(out, len, 300 + (uint64_t)c);
        memcpy(out, peer_mac, 6);
        memcpy(out + 6, nv->mac, 6);
        out[12] = 0x88;
        out[13] = 0xb5;
        nv->tx_chan = c;
        SIM_ASSERT(snv_send_frame(nv, out, len, c % 2 ? c : -1) == NVSP_STAT_SUCCESS,
                   "transmit on channel %d", c);
        int n = packet_recv(ps, in, sizeof(in));
        SIM_ASSERT(n == (int)len && memcmp(in, out, len) == 0,
                   "channel %d's frame on the TAP: %d bytes, %u sent", c, n, len);
    }
    nv->tx_chan = 0;
    enum { FLOWS = 16, PER = 2 };
    for (int k = 0; k < PER; k++)
        for (int fl = 0; fl < FLOWS; fl++) {
            uint32_t len = udp_frame(out, nv->mac, fl, k);
            SIM_ASSERT(sendto(ps, out, len, 0, (struct sockaddr *)&sll, sizeof(sll)) ==
                           (ssize_t)len,
                       "send on the interface: %s", strerror(errno));
        }
    int chan_of[FLOWS], got[FLOWS] = {0};
    bool used[4] = {false};
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    int total = 0;
    while (total < FLOWS * PER && sim_now_ms() < end) {
        int n = snv_recv_frame(nv, in, sizeof(in), 200);
        if (n < 44 || in[12] != 0x08 || in[23] != 17 || in[36] != (2000 >> 8))
            continue; /* the kernel's own chatter */
        int fl = in[42], k = in[43];
        SIM_ASSERT(fl < FLOWS && k == got[fl], "flow %d frame %d out of order", fl, k);
        if (k == 0)
            chan_of[fl] = nv->last_chan;
        SIM_ASSERT(nv->last_chan == chan_of[fl], "flow %d on channels %d and %d", fl,
                   chan_of[fl], nv->last_chan);
        used[nv->last_chan] = true;
        got[fl]++;
        total++;
    }
    SIM_ASSERT(total == FLOWS * PER, "%d of %d frames reached the guest", total, FLOWS * PER);
    int nused = used[0] + used[1] + used[2] + used[3];
    SIM_ASSERT(nused >= 2, "16 flows all on one channel");
    if (getenv("SIM_VERBOSE"))
        printf("16 flows over %d channels: %llu %llu %llu %llu frames\n", nused,
               (unsigned long long)nv->rx_frames_on[0], (unsigned long long)nv->rx_frames_on[1],
               (unsigned long long)nv->rx_frames_on[2], (unsigned long long)nv->rx_frames_on[3]);
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    close(ps);
    snv_free(nv);
    sim_vm_free(vm);
}

/* A single-queue TAP the host made: netvsp.queues = 4 falls back to one
 * queue, said in the log. */
static void test_tap_single(void **state)
{
    struct tfx *f = *state;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TAP_SQ_NAME);
    SIM_ASSERT(fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) == 0 && ioctl(fd, TUNSETPERSIST, 1) == 0,
               "create the single-queue TAP: %s", strerror(errno));
    close(fd);
    struct sim_vm *vm = sim_vm_create(f->d, VM_TAP_SQ);
    SIM_ASSERT(vm != NULL, "VM with a single-queue TAP came up");
    SIM_ASSERT(sim_log_count(LOG_INFO, VM_TAP_SQ, "1 queue", "multi_queue") > 0,
               "no log line says the TAP gives one queue");
    vm->expect_offers = 1;
    SIM_ASSERT(sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) == 1, "offer");
    struct sockaddr_ll sll;
    int ps = packet_socket(TAP_SQ_NAME, &sll);
    struct sim_netvsc *nv = snv_open(vm, 32);
    SIM_ASSERT(nv && snv_bringup(nv, NVSP_VERSION_61) == 0, "bring-up");
    SIM_ASSERT(nv->rss_queues == 0 && snv_vrss(nv, 4) == 1, "RSS on a single-queue TAP");
    uint8_t out[200], in[2048];
    uint32_t len = udp_frame(out, nv->mac, 1, 0);
    SIM_ASSERT(sendto(ps, out, len, 0, (struct sockaddr *)&sll, sizeof(sll)) == (ssize_t)len,
               "send");
    int n = -1;
    uint64_t end = sim_now_ms() + SIM_TIMEOUT_MS;
    while (sim_now_ms() < end && (n < 44 || in[23] != 17))
        n = snv_recv_frame(nv, in, sizeof(in), 200);
    SIM_ASSERT(n == (int)len && memcmp(in, out, len) == 0, "frame in the guest");
    close(ps);
    snv_free(nv);
    sim_vm_free(vm);
    fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) == 0)
        ioctl(fd, TUNSETPERSIST, 0);
    if (fd >= 0)
        close(fd);
}

static void test_tap_refused(void **state)
{
    struct tfx *f = *state;
    struct sim_vm *vm = sim_vm_new(f->d, &(struct sim_vm_opts){.name = VM_LO});
    SIM_ASSERT(vm == NULL, "a VM whose TAP is lo came up");
    SIM_ASSERT(sim_log_count(LOG_ERR, VM_LO, "TAP lo", NULL) > 0,
               "no log line names the VM and the device");
}

int main(void)
{
    /* Before any thread exists: unshare(CLONE_NEWUSER) refuses a
     * multi-threaded process. */
    int r = geteuid() == 0 ? unshare(CLONE_NEWNET) : -1;
    if (r < 0 && unshare(CLONE_NEWUSER | CLONE_NEWNET) < 0) {
        printf("SKIP: no network namespace of our own (unshare: %s)\n", strerror(errno));
        return 77;
    }
    if (access("/dev/net/tun", R_OK | W_OK) < 0) {
        printf("SKIP: /dev/net/tun: %s\n", strerror(errno));
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tap_frames, tfx_setup, tfx_teardown),
        cmocka_unit_test_setup_teardown(test_tap_lso, tfx_setup, tfx_teardown),
        cmocka_unit_test_setup_teardown(test_tap_rsc, tfx_setup, tfx_teardown),
        cmocka_unit_test_setup_teardown(test_tap_vrss, tfx_setup, tfx_teardown),
        cmocka_unit_test_setup_teardown(test_tap_single, tfx_setup, tfx_teardown),
        cmocka_unit_test_setup_teardown(test_tap_stale_offload, tfx_setup, tfx_teardown),
        cmocka_unit_test_setup_teardown(test_tap_refused, tfx_setup, tfx_teardown),
    };
    SIM_RUN("netvsp_tap", tests);
}
