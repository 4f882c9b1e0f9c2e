/* SPDX-License-Identifier: MIT */
/*
 * storvsp internals shared by its files: the VM, its SCSI controllers (one
 * VMBus primary channel each, plus the subchannels the guest asks for),
 * their disks (one per LUN) and the per-channel request state.
 *
 *   storvsp.c  the plugin: configuration, attach/detach, disks, vmbusctl
 *   chan.c     one channel: the vstor protocol, SRBs to the SCSI target,
 *              completions from the backend queues
 */
#ifndef VMBUSD_STORVSP_H
#define VMBUSD_STORVSP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmbusd/vsp.h"

#include "backend.h"
#include "disk_spec.h"
#include "scsi_disk.h"
#include "vstor.h"

/* Largest transfer one SRB may move (QUERY_PROPERTIES max_transfer_bytes),
 * per VM: storvsp.max_transfer.  Linux makes it its max_hw_sectors and
 * sg_tablesize (pages + 1) and splits larger I/O into SRBs of at most
 * this.  1 MiB by default: a guest's 1 MiB read is one SRB, not four as
 * with 256 KiB (docs/storvsp.md has the figures).  A multiple of 4 KiB
 * (the guest rounds it down to that); at least 64 KiB; at most 2 MiB, so
 * that one request's iovecs (pages + 1) stay well inside what preadv and
 * io_uring take (STOR_MAX_IOV) and a request's state stays small. */
#define SV_DEFAULT_MAX_TRANSFER (1024u * 1024u)
#define SV_MIN_MAX_TRANSFER (64u * 1024u)
#define SV_MAX_MAX_TRANSFER (2048u * 1024u)
/* iovecs of one request of max_transfer bytes: every 4 KiB page, plus one
 * for a buffer that does not start on a page boundary. */
#define SV_IOV_FOR(max_transfer) ((max_transfer) / 4096u + 1u)
_Static_assert(SV_IOV_FOR(SV_MAX_MAX_TRANSFER) <= STOR_MAX_IOV,
               "a request of the largest max_transfer fits one backend request");
/* Requests one channel holds at once (taken from the guest, not yet
 * completed).  Linux keeps at most ~350 per channel of 128 KiB rings. */
#define SV_MAX_INFLIGHT 512u
/* Room reserved in the guest's ring for every request's completion: the
 * whole vstor packet (the descriptor is not counted, vsp.h). */
#define SV_COMP_RESERVE VSTOR_PACKET_SIZE
#define SV_DEFAULT_SUBCHANNELS 8
/* [vsp storvsp] poll_us: the longest polling window (chan.c, poll_requests).
 * 32 µs as QEMU's iothreads poll by default; a worker spins at most this
 * long per turn. */
#define SV_DEFAULT_POLL_US 32
#define SV_MAX_POLL_US 1000

struct sv_plugin {
    unsigned max_subchannels; /* [vsp storvsp] max_subchannels */
    unsigned queue_flags;     /* STOR_QUEUE_THREADS for backend = threads */
    bool need_uring;          /* backend = io_uring: no silent fallback */
    uint64_t poll_ns;         /* [vsp storvsp] poll_us: the longest polling window */
};

/* One disk: a LUN of a controller.  Referenced by the controller's table
 * and by each channel queue made for it; freed with the last reference. */
struct sv_disk {
    atomic_int refs;
    struct stor_backend *b;
    struct scsi_disk *sd;
    struct disk_spec spec;
    int lun;
};

struct sv_chan;

/* One backend queue of one channel for one disk. */
struct sv_queue {
    struct sv_chan *c;
    struct sv_disk *disk;
    struct stor_queue *q;
    struct vsp_fd_watch *watch;
    bool kick;    /* submitted since the last kick */
};

struct sv_req;

/* One channel (primary or subchannel) of a controller. */
struct sv_chan {
    struct sv_ctrl *ctrl;
    struct vsp_channel *ch;
    uint16_t index;          /* 0 primary, else sub_channel_index */
    bool failed;             /* the guest broke the protocol: packets dropped until close */
    bool stalled;            /* SV_MAX_INFLIGHT reached: receive resumes on completions */
    bool quiet;              /* receiving without the guest's signals (vsp_recv_quiet) */
    struct vsp_timer *quiet_watch; /* while quiet: ends it if completions stop */
    uint64_t last_reap_ns;   /* last reap turn, or when requests went in flight after none */
    uint64_t reap_gap_ns;    /* moving average of the time between reaps while busy */
    unsigned inflight;
    unsigned nreqs;          /* allocated (in flight + on the free list) */
    struct sv_req *free;
    struct sv_queue queues[SV_MAX_LUNS];
    int nqueues;
    uint64_t srbs, errors;
    uint64_t poll_ns;        /* this channel's polling window now (poll_requests) */
    unsigned poll_probe;     /* turns without a window, for the next probe */
    uint64_t polls, polls_caught;
};

enum sv_init_state {
    SV_INIT_WAIT_BEGIN,  /* channel opened: BEGIN_INITIALIZATION first */
    SV_INIT_BEGUN,       /* QUERY_PROTOCOL_VERSION until one is accepted */
    SV_INIT_VERSIONED,   /* QUERY_PROPERTIES, END_INITIALIZATION */
    SV_INIT_READY,       /* SRBs */
};

/* One synthetic SCSI controller: a primary channel of its own instance. */
struct sv_ctrl {
    struct sv_vm *vm;
    int index;                 /* controller=N */
    pthread_mutex_t lock;      /* disks[], subs[] */
    struct sv_disk *disks[SV_MAX_LUNS];
    struct sv_chan primary;
    struct sv_chan *subs[VSP_MAX_SUBCHANNELS + 1]; /* by sub_channel_index, kept until detach */
    /* protocol state: the primary's callbacks write it, subchannels read */
    enum sv_init_state state;
    uint16_t version;
    uint32_t pkt_size;         /* 48 before WIN8, 64 from WIN8 on */
    atomic_bool ready;
    atomic_bool rescan;        /* ENUMERATE_BUS owed to the guest */
};

struct sv_vm {
    struct sv_plugin *pl;
    struct vsp_partition *p;
    uint32_t max_transfer;     /* storvsp.max_transfer: bytes per SRB */
    unsigned max_subchannels;  /* storvsp.max_subchannels, else the plugin's */
    pthread_mutex_t lock;      /* ctrls[] (controllers are added, never removed) */
    struct sv_ctrl *ctrls[SV_MAX_CONTROLLERS];
};

/* chan.c */
extern const struct vsp_channel_ops sv_chan_ops;
/* tests/sim only (NULL otherwise): called in a channel's turn after its
 * submit-and-reap, before the queue signals again, so a test can let a
 * completion land in that window. */
extern _Atomic(void (*)(struct stor_queue *q)) sv_test_quiet_hook;
/* tests/sim only (NULL otherwise): while set, every turn that took a
 * request polls for the longest window, and this is called as the window
 * opens (the guest's ring masked), so a test can add a request in it. */
extern _Atomic(void (*)(void)) sv_test_poll_hook;
void sv_disk_unref(struct sv_disk *d);
/* From any thread: the guest is told to rescan the controller's bus. */
void sv_ctrl_rescan(struct sv_ctrl *ctrl);
/* From any thread, after disk left ctrl's table: every channel drops its
 * queue for it (waiting for its requests), as work items of the channels. */
void sv_ctrl_forget_disk(struct sv_ctrl *ctrl, struct sv_disk *disk);

#endif
