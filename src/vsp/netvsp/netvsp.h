/* SPDX-License-Identifier: MIT */
/*
 * netvsp: the synthetic network VSP (what Linux's hv_netvsc drives), one
 * single-queue NIC per VM backed by a TAP device or a packet fd.
 *   netvsp.c   plugin: configuration, attach/detach, vmbusctl commands
 *   nvsp.c     the channel: NVSP messages, buffers, RNDIS transport,
 *              receive path from the backend
 *   nvsp_msg.c NVSP message checks (pure)
 *   rndis.c    RNDIS control and packet parsing (pure)
 *   rxpool.c   receive-buffer sub-allocations
 *   offload.c  transmit checksum / LSO requests -> virtio-net header (pure)
 *   backend.c  TAP / packet fd
 */
#ifndef VMBUSD_VSP_NETVSP_NETVSP_H
#define VMBUSD_VSP_NETVSP_NETVSP_H

#include <net/if.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmbusd/vsp.h"
#include "vsp/netvsp/rndis.h"
#include "vsp/netvsp/rxpool.h"

/* Largest MTU a guest may ask for (jumbo frames); frames up to it + 18
 * fit a receive sub-allocation. */
#define NETVSP_MTU_MAX 9000u

/* Per-VM configuration ("netvsp.KEY = VALUE" lines of its [vm] section). */
struct nic_cfg {
    char tap[IFNAMSIZ];   /* TAP device name, or "" */
    int fd;               /* packet fd the embedding program passes (tests), or -1 */
    uint8_t mac[6];
    bool has_mac;         /* else derived from the VM name */
    unsigned queues;      /* asked for; one is served today */
    bool link_up;         /* initial carrier */
    bool offload;         /* checksum + LSOv2 to the guest; the backend speaks
                             virtio-net headers (TAP: IFF_VNET_HDR) */
    unsigned mtu;
};

/* Parse and judge params[0..n) into cfg: 0, or -EINVAL with
 * "FILE:LINE: reason" in err. */
int nic_cfg_parse(const struct vsp_param *params, int n, struct nic_cfg *cfg, char *err,
                  size_t errlen);

/* Backend: a TAP device opened by name, or a dup of a packet fd; both
 * non-blocking, one read or write per frame.  Returns the fd, or -errno
 * with a line in err naming the fix. */
int backend_open(const struct nic_cfg *cfg, char *err, size_t errlen);

struct nic_stats {
    uint64_t tx_frames, tx_dropped, rx_frames, rx_dropped, rx_filtered, guest_errors;
};

struct nic {
    struct vsp_partition *p;
    struct vsp_channel *ch;
    struct nic_cfg cfg;
    int fd;
    bool fd_is_socket;    /* sendmsg(MSG_NOSIGNAL): a closed peer is EPIPE, not SIGPIPE */

    /* Shared with the control thread (vmbusctl), under lock. */
    pthread_mutex_t lock;
    bool link_up;
    struct nic_stats stats;

    /* Everything below belongs to the channel's serialised callbacks (its
     * ops, its fd watch and its work items). */
    uint32_t version;     /* negotiated NVSP version, 0 before INIT */
    uint32_t guest_mtu;   /* from NDIS config (jumbo frames), 0 if none came */
    uint32_t msg_size;    /* NVSP message size of that version */
    uint8_t *recv_buf;    /* guest receive buffer (GPADL mapping) */
    size_t recv_len;
    uint32_t recv_gpadl;
    uint32_t sub_size;    /* receive sub-allocation size */
    struct rx_pool pool;
    uint8_t *send_buf;    /* guest send buffer (GPADL mapping) */
    size_t send_len;
    uint32_t send_gpadl;
    uint32_t nsections;
    struct rndis_state rndis;
    bool link_reported;   /* carrier the guest was last told (queried or indicated) */
    struct vsp_fd_watch *watch;
    bool rx_paused;       /* watch removed: no ring room or no sub-allocation */
    bool backend_closed;  /* the packet fd's peer went away: never read again */
    uint8_t *txcopy;      /* private copy of one transmit's RNDIS bytes */
};

extern const struct vsp_channel_ops nvsp_channel_ops;
/* Tell the guest the carrier changed (a work item of the channel). */
void nvsp_link_changed(void *nic);

#endif
