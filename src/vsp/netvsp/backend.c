/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vsp/netvsp/netvsp.h"

/* One fd of TAP `name`: a queue of a multi-queue device when mq.  Every
 * open passes the same flags: the kernel keeps IFF_VNET_HDR and the
 * header size per device, and each TUNSETIFF sets them for all queues. */
static int open_tap(const char *name, bool offload, bool mq, char *err, size_t errlen)
{
    int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "TAP %s: /dev/net/tun: %s (load the tun module)", name,
                 strerror(e));
        return -e;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    /* Plain frames, no packet-information prefix: one read or write is
     * one Ethernet frame. */
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0) |
                    (mq ? IFF_MULTI_QUEUE : 0);
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        if (e == EPERM || e == EACCES)
            snprintf(err, errlen,
                     "TAP %s: %s (create it for vmbusd's user: ip tuntap add dev %s mode "
                     "tap user USER, or give vmbusd CAP_NET_ADMIN)",
                     name, strerror(e), name);
        else if (e == EINVAL && !mq)
            snprintf(err, errlen, "TAP %s: %s (not a TAP device; or a multi_queue one, which "
                     "needs netvsp.queues = 2 or more)", name, strerror(e));
        else
            snprintf(err, errlen, "TAP %s: %s", name, strerror(e));
        return -e;
    }
    if (offload) {
        /* A 10-byte virtio_net_hdr precedes every frame.  Frames to the
         * guest may carry a partial checksum (netvsp completes it) or one
         * the host checked (the guest is told); GSO frames only once the
         * guest turns receive coalescing on (backend_tap_offload). */
        int sz = 10;
        if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0 || backend_tap_offload(fd, false, false) < 0) {
            int e = errno;
            close(fd);
            snprintf(err, errlen, "TAP %s: virtio-net headers: %s (netvsp.offload = off "
                     "works without them)", name, strerror(e));
            return -e;
        }
    } else if (ioctl(fd, TUNSETOFFLOAD, 0) < 0) {
        /* A device keeps the offloads its last user set (an offloading
         * VM, QEMU): left on, the host's frames would come with partial
         * checksums and no header to say so, and the guest drops them. */
        int e = errno;
        close(fd);
        snprintf(err, errlen, "TAP %s: turning its offloads off: %s", name, strerror(e));
        return -e;
    }
    return fd;
}

int backend_tap_offload(int fd, bool tso4, bool tso6)
{
    unsigned flags = TUN_F_CSUM | (tso4 ? TUN_F_TSO4 : 0) | (tso6 ? TUN_F_TSO6 : 0);
    return ioctl(fd, TUNSETOFFLOAD, flags) < 0 ? -errno : 0;
}

int backend_tap_queue(int fd, bool attach)
{
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = attach ? IFF_ATTACH_QUEUE : IFF_DETACH_QUEUE;
    return ioctl(fd, TUNSETQUEUE, &ifr) < 0 ? -errno : 0;
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

/* cfg->queues queue fds of a multi-queue TAP (created so if it does not
 * exist), queues 1.. detached; an existing single-queue TAP (the kernel
 * refuses a multi-queue open with EINVAL) gives one fd. */
static int open_tap_queues(const struct nic_cfg *cfg, int *fds, char *err, size_t errlen)
{
    if (cfg->queues == 1) {
        int fd = open_tap(cfg->tap, cfg->offload, false, err, errlen);
        if (fd < 0)
            return fd;
        fds[0] = fd;
        return 1;
    }
    int n = 0;
    for (; n < (int)cfg->queues; n++) {
        int fd = open_tap(cfg->tap, cfg->offload, true, err, errlen);
        if (fd == -EINVAL && n == 0) {
            fd = open_tap(cfg->tap, cfg->offload, false, err, errlen);
            if (fd < 0)
                return fd;
            fds[0] = fd;
            return 1;
        }
        if (fd < 0) {
            close_all(fds, n);
            return fd;
        }
        fds[n] = fd;
        int r = n > 0 ? backend_tap_queue(fd, false) : 0;
        if (r < 0) {
            close_all(fds, n + 1);
            snprintf(err, errlen, "TAP %s: detaching queue %d: %s", cfg->tap, n, strerror(-r));
            return r;
        }
    }
    return n;
}

int backend_open(const struct nic_cfg *cfg, int fds[NETVSP_MAX_QUEUES], char *err,
                 size_t errlen)
{
    if (cfg->tap[0])
        return open_tap_queues(cfg, fds, err, errlen);
    unsigned n = cfg->nfds < cfg->queues ? cfg->nfds : cfg->queues;
    for (unsigned i = 0; i < n; i++) {
        int fd = fcntl(cfg->fds[i], F_DUPFD_CLOEXEC, 3);
        if (fd < 0) {
            int e = errno;
            close_all(fds, (int)i);
            snprintf(err, errlen, "packet fd %d: %s", cfg->fds[i], strerror(e));
            return -e;
        }
        fds[i] = fd;
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
            int e = errno;
            close_all(fds, (int)i + 1);
            snprintf(err, errlen, "packet fd %d: O_NONBLOCK: %s", cfg->fds[i], strerror(e));
            return -e;
        }
    }
    return (int)n;
}
