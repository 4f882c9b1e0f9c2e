/* SPDX-License-Identifier: MIT */
/*
 * netvsp: the synthetic network VSP (what Linux's hv_netvsc drives), one
 * NIC per VM backed by a TAP device or packet fds, with a queue (VMBus
 * channel: the primary and the subchannels vRSS asks for) per backend
 * queue (TAP IFF_MULTI_QUEUE queue fd, or packet fd).
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
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmbusd/vsp.h"
#include "vsp/netvsp/rndis.h"
#include "vsp/netvsp/rxpool.h"

/* Largest MTU a guest may ask for (jumbo frames); frames up to it + 18
 * fit a receive sub-allocation. */
#define NETVSP_MTU_MAX 9000u
/* Queues per NIC: the primary channel and up to 63 subchannels (Linux's
 * VRSS_CHANNEL_MAX is 64 channels). */
#define NETVSP_MAX_QUEUES 64u
#define NETVSP_DEFAULT_QUEUES 8u
/* Transmit completions a queue holds back to send in one burst, with one
 * signal: every signal wakes the guest (on a busy host the woken guest
 * also preempts the worker), so fewer, larger bursts cost less per frame
 * (docs/netvsp.md, Figures).  Only a ring the guest keeps filling makes a
 * burst this long: what is left when the ring is empty goes out at once. */
#define NETVSP_COMP_BATCH 64u

/* Per-VM configuration ("netvsp.KEY = VALUE" lines of its [vm] section). */
struct nic_cfg {
    char tap[IFNAMSIZ];   /* TAP device name, or "" */
    int fds[NETVSP_MAX_QUEUES]; /* packet fds the embedding program passes (tests),
                                   one per queue */
    unsigned nfds;
    uint8_t mac[6];
    bool has_mac;         /* else derived from the VM name */
    unsigned queues;      /* most queues (channels) the guest may use */
    bool link_up;         /* initial carrier */
    bool offload;         /* checksum + LSOv2 to the guest; the backend speaks
                             virtio-net headers (TAP: IFF_VNET_HDR) */
    unsigned mtu;
};

/* Parse and judge params[0..n) into cfg: 0, or -EINVAL with
 * "FILE:LINE: reason" in err. */
int nic_cfg_parse(const struct vsp_param *params, int n, struct nic_cfg *cfg, char *err,
                  size_t errlen);

/* Backend: a TAP device opened by name (cfg->queues queue fds of a
 * multi-queue TAP, or one fd of a single-queue TAP), or dups of the packet
 * fds; all non-blocking, one read or write per frame.  Fills fds[] and
 * returns how many (the NIC's queues), or -errno with a line in err naming
 * the fix.  A TAP's queues 1.. are left detached (backend_tap_queue). */
int backend_open(const struct nic_cfg *cfg, int fds[NETVSP_MAX_QUEUES], char *err,
                 size_t errlen);
/* Attach or detach a multi-queue TAP's queue fd: the kernel spreads the
 * frames for the guest over the attached queues only, so a queue no
 * channel reads must be detached.  0 or -errno. */
int backend_tap_queue(int fd, bool attach);
/* What a TAP (any queue fd: the kernel keeps it per device) may hand over
 * with its virtio-net headers: partial checksums always, and whole TCP
 * frames of up to 64 KB (GSO) over IPv4 / IPv6 when the guest takes
 * coalesced frames.  0 or -errno. */
int backend_tap_offload(int fd, bool tso4, bool tso6);

struct nic_stats {
    uint64_t tx_frames, tx_dropped, rx_frames, rx_dropped, rx_filtered, guest_errors;
    uint64_t rx_coalesced; /* of rx_frames: coalesced frames (RSC), several sub-allocations each */
};

struct nic;

/* One queue: a channel (index 0 the primary, i subchannel i) and its
 * backend queue.  Belongs to that channel's serialised callbacks. */
struct nic_queue {
    struct nic *nic;
    struct vsp_channel *ch; /* NULL for a subchannel not offered */
    uint8_t index;
    int fd;               /* backend queue */
    bool fd_is_socket;    /* sendmsg(MSG_NOSIGNAL): a closed peer is EPIPE, not SIGPIPE */
    int wake_fd;          /* eventfd another queue writes when it freed sub-allocations
                             this one waits for (created at attach) */
    struct vsp_fd_watch *watch, *wake_watch;
    bool rx_paused;       /* backend watch removed: no ring room or no sub-allocation */
    bool backend_closed;  /* the packet fd's peer went away: never read again */
    uint16_t rsc_id;      /* packet id of the next coalesced frame */
    uint8_t *txcopy;      /* private copy of one transmit's RNDIS bytes */
    /* Completions of transmitted frames not sent yet, each into ring room
     * reserved before its request was pulled: sent together at the end of
     * the receive callback (or when full), so the guest is signalled once
     * for them, not once per frame.  With the frame counts they bring. */
    struct {
        uint64_t trans_id;
        uint32_t status;
    } comp[NETVSP_COMP_BATCH];
    unsigned ncomp;
    uint64_t comp_sent, comp_dropped;
    /* How receive went on this queue, logged when the channel closes:
     * what says whether the backend, the ring, the sub-allocations or the
     * guest held frames back (docs/netvsp.md "Reading the close log"). */
    struct nic_rx_trace {
        uint64_t wakeups;      /* backend callbacks */
        uint64_t empty;        /* of them: no frame read */
        uint64_t pkts, frames; /* transfer-page packets and the frames in them */
        uint64_t pause_ring, pause_pool; /* receive stopped: no ring room, no sub-allocation */
        uint64_t busy_ns;      /* in backend callbacks */
        uint64_t turns, taken; /* receive callbacks (guest signals), packets they took */
        uint64_t comps;        /* of them: receive completions */
        uint32_t out_max;      /* most sub-allocations out of the pool at a send */
    } trace;
};

struct nic {
    struct vsp_partition *p;
    struct vsp_channel *ch; /* the primary */
    struct nic_cfg cfg;
    unsigned nqueues;     /* backend queues: the most channels served */
    struct nic_queue q[NETVSP_MAX_QUEUES];

    /* Shared with the control thread (vmbusctl), under lock. */
    pthread_mutex_t lock;
    bool link_up;
    struct nic_stats stats;
    unsigned stats_channels; /* channels open (primary and subchannels) */

    /* The guest's buffers are shared by every channel (Linux sets them up
     * on the primary).  The primary's callbacks change them under the
     * write lock (map, revoke, close, the packet filter turned off); every
     * queue holds the read lock while it uses them, so a revoke waits for
     * the frames being delivered on subchannels. */
    pthread_rwlock_t buf_lock;
    uint8_t *recv_buf;    /* guest receive buffer (GPADL mapping) */
    size_t recv_len;
    uint32_t recv_gpadl;
    uint32_t sub_size;    /* receive sub-allocation size */
    uint8_t *send_buf;    /* guest send buffer (GPADL mapping) */
    size_t send_len;
    uint32_t send_gpadl;
    uint32_t nsections;
    atomic_bool rx_enabled; /* RNDIS initialised and packet filter not 0 */
    /* Coalesced frames (RSC) the guest takes: bit 0 TCP over IPv4, bit 1
     * over IPv6; the TAP hands such GSO frames over only then. */
    _Atomic uint8_t rsc_mask;
    /* The sub-allocations, taken and completed by every queue. */
    pthread_mutex_t pool_lock;
    struct rx_pool pool;
    uint64_t pool_waiters; /* queues paused for want of a sub-allocation */

    /* The primary's serialised callbacks only (subchannels read version
     * and msg_size, which do not change while subchannels exist). */
    uint32_t version;     /* negotiated NVSP version, 0 before INIT */
    uint32_t guest_mtu;   /* from NDIS config (jumbo frames), 0 if none came */
    bool guest_rsc;       /* NDIS config: the guest takes coalesced frames */
    uint32_t msg_size;    /* NVSP message size of that version */
    bool sub_requested;   /* the guest's subchannel request was granted */
    unsigned nsub;        /* subchannels offered since the primary opened */
    struct rndis_state rndis;
    bool link_reported;   /* carrier the guest was last told (queried or indicated) */
};

extern const struct vsp_channel_ops nvsp_channel_ops;     /* primary */
extern const struct vsp_channel_ops nvsp_subchannel_ops;
/* Tell the guest the carrier changed (a work item of the channel). */
void nvsp_link_changed(void *nic);

#endif
