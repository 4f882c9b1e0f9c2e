/* SPDX-License-Identifier: MIT */
/*
 * The partition's state, private to src/xpartition: the daemon and the VSP
 * host see struct xpartition only as a handle (xpartition.h) and read what
 * they need through calls (xp_id, xp_snapshot, ...), so the model can change
 * without them.
 */
#ifndef VMBUSD_XP_PARTITION_H
#define VMBUSD_XP_PARTITION_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/queue.h>

#include "common/ratelimit.h"
#include "xpartition/synic.h"
#include "xpartition/xpartition.h"

struct xp_region {
    uint64_t gpa, size;
    int fd;
    uint64_t fd_offset;
    uint8_t *hva;
};

struct xp_vcpu {
    bool has_route;
    uint64_t scontrol, simp, siefp;
    _Atomic(struct hv_message *) msg_slot;       /* SIMP + SINT2 slot, or NULL */
    _Atomic(uint8_t *) event_flags;              /* SIEFP + SINT2 bitmap, or NULL */
};

struct xp_gpadl {
    LIST_ENTRY(xp_gpadl) link; /* xp->gpadls */
    uint32_t id;
    uint32_t relid;          /* channel the guest created it for */
    uint32_t npages;         /* announced */
    uint32_t filled;         /* PFNs received so far */
    uint32_t byte_offset, byte_count;
    uint64_t *pfns;
    bool complete;
    bool teardown_requested; /* answer TORNDOWN once users drops to 0 */
    int users;               /* ring mapping or VSP mappings */
    void *vsp_map;           /* a VSP mapping of the whole GPADL */
    int vsp_maps;            /* xp_gpadl_map calls not yet unmapped */
    size_t vsp_map_len;
};

/* A VSP mapping whose GPADL the guest took away (UNLOAD, reset, release)
 * while the VSP may still use it: the range now holds anonymous memory so a
 * late access neither faults nor reaches guest memory; freed at destroy. */
struct xp_orphan_map {
    SLIST_ENTRY(xp_orphan_map) link; /* xp->orphans */
    void *addr;
    size_t len;
};

struct xpartition {
    pthread_mutex_t lock;
    uint32_t id;
    char name[64];
    uint32_t nvcpus;
    const struct xp_transport_ops *transport;
    void *transport_ctx;
    const struct xp_channel_ops *chan_ops; /* NULL until xp_set_channel_ops */
    void *chan_ctx;

    /* Guest RAM.  Append-only: an entry is written before nregions
     * (release) counts it and never changes after, so readers (ring and
     * GPA-direct lookups on VSP threads) take no lock; the mappings go only
     * with the partition (xp_destroy). */
    struct xp_region regions[XP_MAX_REGIONS];
    _Atomic int nregions;
    struct xp_vcpu vcpus[XP_MAX_VCPUS];

    /* connection state */
    bool connected;            /* INITIATE_CONTACT accepted */
    bool offers_requested;
    uint32_t version;
    const struct vmbus_version_info *vinfo; /* what version implies; NULL: not connected */
    uint32_t target_vcpu;
    uint64_t interrupt_page;   /* < 2.4 guests: shared interrupt page GPA */
    _Atomic(uint8_t *) interrupt_page_hva;
    bool alloffers_sent;
    bool offers_ready;         /* the VSPs made their boot-time offers */
    bool legacy_eventfd;       /* conn id 2 registered for pre-WIN8 guests */
    bool destroying;           /* xp_destroy runs: channels are freed with the list */
    /* Loops over `offers` that call the channel ops, which may complete a
     * close at once: no subchannel is unlinked under them. */
    unsigned offers_walkers;

    struct synic_queue msgq;   /* host -> guest messages waiting for a slot */

    STAILQ_HEAD(, xp_channel) offers; /* LOCAL_OFFER list, in offer order */
    struct xp_channel *relids[VMBUS_MAX_RELID + 1];
    LIST_HEAD(, xp_gpadl) gpadls;
    unsigned ngpadls, npending_gpadls;
    SLIST_HEAD(, xp_orphan_map) orphans;

    struct xp_stats stats;
    struct ratelimit log_rl;   /* guest-triggered log lines */
#ifdef VMBUSD_GUESTFUZZ
    struct xp_fuzz *fuzz;      /* vmbusd-guestfuzz's state (fuzz_hook.c) */
#endif
};

#endif
