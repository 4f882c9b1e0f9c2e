/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vsp/netvsp/netvsp.h"

static int open_tap(const char *name, bool offload, char *err, size_t errlen)
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
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0);
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        if (e == EPERM || e == EACCES)
            snprintf(err, errlen,
                     "TAP %s: %s (create it for vmbusd's user: ip tuntap add dev %s mode "
                     "tap user USER, or give vmbusd CAP_NET_ADMIN)",
                     name, strerror(e), name);
        else
            snprintf(err, errlen, "TAP %s: %s (is it a single-queue TAP device, not "
                     "multi_queue?)", name, strerror(e));
        return -e;
    }
    if (offload) {
        /* A 10-byte virtio_net_hdr precedes every frame.  Frames to the
         * guest may carry a partial checksum (netvsp completes it) or one
         * the host checked (the guest is told), never GSO: the guest's
         * receive coalescing is not offered. */
        int sz = 10;
        if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0 || ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM) < 0) {
            int e = errno;
            close(fd);
            snprintf(err, errlen, "TAP %s: virtio-net headers: %s (netvsp.offload = off "
                     "works without them)", name, strerror(e));
            return -e;
        }
    }
    return fd;
}

int backend_open(const struct nic_cfg *cfg, char *err, size_t errlen)
{
    if (cfg->tap[0])
        return open_tap(cfg->tap, cfg->offload, err, errlen);
    int fd = fcntl(cfg->fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "packet fd %d: %s", cfg->fd, strerror(e));
        return -e;
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        int e = errno;
        close(fd);
        snprintf(err, errlen, "packet fd %d: O_NONBLOCK: %s", cfg->fd, strerror(e));
        return -e;
    }
    return fd;
}
