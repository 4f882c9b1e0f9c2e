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
 *   test_tap_refused  netvsp.tap naming a device that is not a TAP (lo)
 *                     refuses that VM, the reason naming the device
 */
#include "sim_test.h"

#include <arpa/inet.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <net/if.h>
#include <linux/if_packet.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sim_netvsc.h"
#include "vsp/netvsp/protocol.h"

#define VM_TAP "vm-tap"
#define VM_LO "vm-lo"
#define TAP_NAME "nvsim0"
#define VM_TAP_OFF "vm-tap-offload"
#define TAP_OFF_NAME "nvsim1"
#define ETHERTYPE_TEST 0x88b5

struct tfx {
    struct sim_daemon *d;
};

static int tfx_setup(void **state)
{
    static const struct sim_vm_param params[] = {{VM_TAP, "netvsp", "tap", TAP_NAME},
                                                 {VM_LO, "netvsp", "tap", "lo"},
                                                 {VM_TAP_OFF, "netvsp", "tap", TAP_OFF_NAME},
                                                 {VM_TAP_OFF, "netvsp", "offload", "on"},
                                                 {NULL, NULL, NULL, NULL}};
    static const struct sim_vm_cfg vms[] = {
        {VM_TAP, "netvsp"}, {VM_LO, "netvsp"}, {VM_TAP_OFF, "netvsp"}};
    struct tfx *f = calloc(1, sizeof(*f));
    simd_vm_params = params;
    sim_log_clear();
    f->d = simd_start(vms, 3, 1);
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

/* 192.0.2.1/24 on the interface, and 192.0.2.2 at mac (no ARP needed). */
static int ipv4_setup(const char *name, const uint8_t mac[6])
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.1", &sin->sin_addr);
    int r = ioctl(s, SIOCSIFADDR, &ifr);
    inet_pton(AF_INET, "255.255.255.0", &sin->sin_addr);
    if (r == 0)
        r = ioctl(s, SIOCSIFNETMASK, &ifr);
    struct arpreq ar;
    memset(&ar, 0, sizeof(ar));
    sin = (struct sockaddr_in *)&ar.arp_pa;
    sin->sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.2", &sin->sin_addr);
    ar.arp_ha.sa_family = ARPHRD_ETHER;
    memcpy(ar.arp_ha.sa_data, mac, 6);
    ar.arp_flags = ATF_COM | ATF_PERM;
    snprintf(ar.arp_dev, sizeof(ar.arp_dev), "%s", name);
    if (r == 0)
        r = ioctl(s, SIOCSARP, &ar);
    close(s);
    return r;
}

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
    SIM_ASSERT(ipv4_setup(TAP_OFF_NAME, nv->mac) == 0, "address and neighbour: %s",
               strerror(errno));
    uint8_t host_mac[6];
    {
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr;
        memset(&ifr, 0, sizeof(ifr));
        snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", TAP_OFF_NAME);
        SIM_ASSERT(ioctl(s, SIOCGIFHWADDR, &ifr) == 0, "hw address");
        memcpy(host_mac, ifr.ifr_hwaddr.sa_data, 6);
        close(s);
    }
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
        SIM_ASSERT(nv->last_has_csum && nv->last_csum == (1u << 3),
                   "SYN without 'TCP checksum good' (%d %x)", nv->last_has_csum, nv->last_csum);
    }
    close(cs);
    SIM_ASSERT(syn, "no SYN from the host kernel");
    SIM_ASSERT(nv->host_bad == 0, "host sent packets Linux rejects");
    snv_free(nv);
    sim_vm_free(vm);
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
        cmocka_unit_test_setup_teardown(test_tap_refused, tfx_setup, tfx_teardown),
    };
    SIM_RUN("netvsp_tap", tests);
}
