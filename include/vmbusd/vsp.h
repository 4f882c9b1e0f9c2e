/* SPDX-License-Identifier: MIT */
/*
 * The vmbusd VSP plugin API (virtualization service providers).
 *
 * A VSP is a shared object (or a built-in module written the same way) that
 * exports one symbol, VSP_PLUGIN_SYMBOL, pointing at a struct vsp_plugin.
 * vmbusd refuses a plugin whose api_version differs from VSP_API_VERSION.
 * The functions declared here are all a plugin can call: vmbusd exports
 * exactly these (vsp.sym is the linker's list of them).
 *
 * Model (after the Windows kernel-mode client library):
 *   - For every partition (VM) that is configured to get the VSP, vmbusd calls
 *     plugin->attach(); the VSP offers channels there with vsp_channel_offer()
 *     and returns its per-partition state, which detach and control get back.
 *   - The guest opens a channel -> ops->open(); it closes -> ops->close().
 *   - Packets from the guest -> ops->receive(), called once per batch; the VSP
 *     pulls packets with vsp_recv() until it returns 0.
 *   - The VSP sends with vsp_send_*(); if the guest's ring is full, send returns
 *     -EAGAIN and ops->writable() is called when space frees up.
 *
 * Data path (API 3): a VSP may take a request in receive, return, and
 * complete it later from any thread (vsp_send_* are thread-safe).  To be
 * sure the completion fits, it reserves the room in the guest's ring before
 * it pulls the request (vsp_send_reserve), and sends the completion into
 * that room (vsp_send_reserved): no side queue, no completion ever refused
 * for want of space.  Guest buffers named by GPA-direct packets come as
 * iovecs into guest memory (vsp_packet_gpa), validated by vmbusd.  An fd
 * (an io_uring completion eventfd) can call the VSP back on the worker pool
 * (vsp_fd_watch_add).  Subchannels are offered on the guest's request
 * (vsp_subchannel_offer).
 *
 * Threading: every callback of one channel runs serialised (never two at
 * once for the same channel) on vmbusd's worker pool, never on the event
 * loop, so a callback may block (disk I/O) without stalling other guests.
 * The vsp_* functions may be called from any thread.
 */
#ifndef VMBUSD_VSP_H
#define VMBUSD_VSP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "hv_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VSP_API_VERSION   3
#define VSP_PLUGIN_SYMBOL "vmbusd_vsp_plugin"

struct vsp_partition; /* one child VM */
struct vsp_channel;   /* one offered channel of one VM */
struct vsp_timer;
struct vsp_fd_watch;

enum vsp_log_level { VSP_LOG_ERROR = 0, VSP_LOG_WARN = 1, VSP_LOG_INFO = 2, VSP_LOG_DEBUG = 3 };

/* A packet pulled from the guest->host ring.  The VSP sees a private copy:
 * the guest cannot change it after it was validated.  Valid until the next
 * vsp_recv() on the same channel or the end of the callback. */
struct vsp_packet {
    uint16_t type;            /* enum vmbus_packet_type */
    uint16_t flags;           /* VMBUS_DATA_PACKET_FLAG_* */
    uint64_t trans_id;
    const void *data;         /* payload at offset8 * 8 */
    uint32_t len;             /* payload length, including the padding to 8 bytes the
                                 ring adds (VMBus does not carry the unpadded length) */
    const void *header;       /* whole packet from the descriptor on */
    uint32_t header_len;      /* offset8 * 8: descriptor + type-specific header */
};

struct vsp_channel_ops {
    /* Guest sent OPENCHANNEL.  Return 0 to accept, or a negative errno to
     * refuse, like every other callback (never an NTSTATUS): the guest gets
     * OPENCHANNEL_RESULT with STATUS_UNSUCCESSFUL, vmbusd logs the refusal,
     * and the VSP logs why.  user_data is the 120-byte open data (guest
     * controlled).
     * Order, guaranteed: when open returns 0, vmbusd marks the channel open
     * and queues OPENCHANNEL_RESULT for the guest before anything else of
     * the channel runs.  A work item queued from open (vsp_queue_work(ch,
     * ...)) and the first receive run after that, and find
     * vsp_channel_is_open() true unless the guest has closed the channel
     * meanwhile (close then follows).  Sends from open itself fail with
     * -EPIPE: send the first packets from such a work item. */
    int (*open)(struct vsp_channel *ch, const uint8_t *user_data, size_t len);
    /* Guest closed the channel, or the partition went away. */
    void (*close)(struct vsp_channel *ch);
    /* Packets are waiting: drain them with vsp_recv(). */
    void (*receive)(struct vsp_channel *ch);
    /* The host->guest ring has room again after a send returned -EAGAIN. */
    void (*writable)(struct vsp_channel *ch);
};

struct vsp_offer {
    struct hv_guid class_id;    /* interface type: selects the guest driver */
    struct hv_guid instance_id; /* unique per VM among primary channels */
    uint16_t chn_flags;         /* VMBUS_CHANNEL_* */
    uint16_t mmio_megabytes;
    uint16_t sub_channel_index; /* 0 = primary */
    uint8_t user_def[120];      /* offer user-defined area */
    const struct vsp_channel_ops *ops;
    void *opaque;               /* returned by vsp_channel_opaque() */
};

/* One per-VM parameter: a "VSPNAME.key = value" line of the VM's [vm]
 * section in vmbusd's configuration, the "VSPNAME." prefix stripped. */
struct vsp_param {
    const char *key;
    const char *value;
    const char *where; /* "FILE:LINE" of the line, for error messages */
};

struct vsp_plugin {
    uint32_t api_version;       /* VSP_API_VERSION */
    const char *name;           /* short name used in config and logs */
    const char *description;
    /* Called once at load with the plugin's config parameters (key=value
     * pairs, NULL-terminated arrays).  Return 0, or -errno to refuse loading. */
    int (*init)(const char *const *keys, const char *const *values, void **plugin_state);
    void (*fini)(void *plugin_state);
    /* A partition that is configured to get this VSP connected: offer
     * channels, and store the VSP's state for this partition in *part_state
     * (it starts NULL).  vmbusd hands part_state back to detach and control
     * of this partition.  Return 0, or -errno to refuse the VM: vmbusd
     * answers the VMM's HELLO with ERROR (that errno, and the text of
     * vsp_partition_refuse() if called, e.g. "VSP storvsp: disk /x.img: No
     * such file or directory") and drops the connection; later VSPs are not
     * attached.  HELLO_REPLY is sent only once every attach returned 0.
     * Either way detach follows with *part_state: channels offered before a
     * failure stay offered until the VM goes, so what their opaque points at
     * is freed in detach, not in attach. */
    int (*attach)(void *plugin_state, struct vsp_partition *p, void **part_state);
    /* The partition is going away; its channels are already closed and no
     * control call for it runs.  Free part_state. */
    void (*detach)(void *plugin_state, struct vsp_partition *p, void *part_state);
    /* Optional: an operator command from vmbusctl for partition p, e.g.
     * cmd "shutdown", args "reboot".  Write a human-readable answer (or JSON
     * when the command says so) into reply; return 0 or -errno.  Runs on the
     * control client's thread, concurrently with channel callbacks and other
     * control calls: the plugin protects its own state.  Called only after
     * attach succeeded (before that vmbusd answers "not attached" itself). */
    int (*control)(void *plugin_state, struct vsp_partition *p, void *part_state,
                   const char *cmd, const char *args, char *reply, size_t reply_len);
    /* Optional: judge the per-VM parameters of [vm NAME] (params[0..n), in
     * file order; n may be 0), once for every [vm] section that gets this
     * VSP, when vmbusd starts (and for vmbusd --check-config), after init.
     * Return 0, or -errno with "FILE:LINE: reason" in err (the bad line's
     * `where`): vmbusd then refuses to start.  Without check, any
     * "NAME.key" line for this VSP is refused.  Only the lines are judged
     * here (syntax, ranges): what may change until a VM connects (a disk
     * image present) is attach's business. */
    int (*check)(void *plugin_state, const char *vm, const struct vsp_param *params, int n,
                 char *err, size_t errlen);
};

/* ---- partitions ---------------------------------------------------- */
const char *vsp_partition_name(const struct vsp_partition *p);
uint32_t vsp_partition_id(const struct vsp_partition *p);
/* The partition's reference counter as the guest would read it now
 * (TIME_REF_COUNT: 100 ns units since the VM started): 0 with *ref set, or
 * -ENOTSUP when vmbusd cannot read it.  The VMM does not pass the counter
 * to vmbusd yet (no vmbus-user message carries it), so today the answer is
 * always -ENOTSUP: a VSP must work without it (timesync then offers message
 * version 3.0 at most). */
int vsp_partition_reference_time(struct vsp_partition *p, uint64_t *ref);
/* The per-VM parameters of p for the calling VSP ("VSPNAME.key = value"
 * lines of the VM's [vm] section, or of [vm default] when it has none; the
 * prefix stripped, file order): the count, *params set (valid until
 * detach returns).  Only from the VSP's own attach, detach or control
 * callbacks (vmbusd knows the caller from them); elsewhere -EINVAL. */
int vsp_partition_params(struct vsp_partition *p, const struct vsp_param **params);
/* From attach, before it returns -errno: why the VM is refused, one line
 * for vmbusd's log and the VMM's ERROR (cut at VSP_REFUSAL_MAX bytes, with
 * "VSP NAME: " in front; a VMM that reads only the fixed part of ERROR
 * sees the first 127 of those, so name the culprit first). */
#define VSP_REFUSAL_MAX 768
void vsp_partition_refuse(struct vsp_partition *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- channels ------------------------------------------------------ */
/* Add an offer to the partition's LOCAL_OFFER list.  It reaches the guest
 * when the guest asks for offers (or at once if it already has). */
struct vsp_channel *vsp_channel_offer(struct vsp_partition *p, const struct vsp_offer *o);
/* Rescind an offer; the channel object stays valid until ops->close. */
void vsp_channel_rescind(struct vsp_channel *ch);
void *vsp_channel_opaque(const struct vsp_channel *ch);
struct vsp_partition *vsp_channel_partition(const struct vsp_channel *ch);
uint32_t vsp_channel_relid(const struct vsp_channel *ch);
bool vsp_channel_is_open(const struct vsp_channel *ch);

/* Subchannel `index` (1..VSP_MAX_SUBCHANNELS) of the open primary channel:
 * offered to the guest at once with the primary's class and instance and
 * sub_channel_index = index, with its own ops and opaque (its callbacks
 * are serialised among themselves, not with the primary's).  The guest
 * opens it like any channel.  When the primary closes, or is rescinded,
 * or the VM goes, every subchannel of it is closed (ops->close) and
 * rescinded first: the primary's ops->close starts only after those closes
 * returned.  A subchannel handle is valid until the primary's ops->close
 * has returned, not after: free per-subchannel state there, and cancel a
 * subchannel's timers in its own close.  After the primary's next open the
 * same indexes may be offered again.  NULL (logged with the VM and the
 * primary's relid) if primary is not an open primary channel, index is out
 * of range or already offered, the guest's VMBus version predates
 * subchannels (2.4), or the VM has no relid left. */
#define VSP_MAX_SUBCHANNELS 64
struct vsp_channel *vsp_subchannel_offer(struct vsp_channel *primary, uint16_t index,
                                         const struct vsp_channel_ops *ops, void *opaque);
/* 0 for a primary channel. */
uint16_t vsp_channel_subindex(const struct vsp_channel *ch);
/* The primary of a subchannel; ch itself for a primary. */
struct vsp_channel *vsp_channel_primary(struct vsp_channel *ch);

/* ---- receiving ----------------------------------------------------- */
/* 1: *pkt filled; 0: ring empty, or this callback's batch budget is spent
 * (vmbusd calls receive again after other channels' work had its turn);
 * <0: the guest corrupted the ring (the
 * channel is being torn down; stop using it).  The guest sees the space
 * freed (its read index) when vsp_recv() returns 0, after every quarter of
 * the ring a long batch consumes, as soon as a guest waiting for space
 * (pending_send_sz) can have it, and when the receive callback returns. */
int vsp_recv(struct vsp_channel *ch, struct vsp_packet *pkt);

/* Quiet receiving, for a VSP that will call vsp_recv() again soon anyway,
 * e.g. from the completion of requests it has in flight: while on, the
 * guest is asked not to signal new packets on ch (its ring's
 * interrupt_mask stays set), which saves the guest a signal and vmbusd a
 * worker wake-up per burst of requests, and the VSP must look for packets
 * without being told (receive is not called for them).  Turning it off
 * unmasks the ring and returns true if packets came meanwhile: receive
 * them, no signal will announce them.  Off after every open.  Only from
 * ch's callbacks. */
bool vsp_recv_quiet(struct vsp_channel *ch, bool quiet);

/* ---- sending ------------------------------------------------------- */
/* 0 on success, -EAGAIN if the guest's ring is full (ops->writable follows),
 * -EPIPE if the channel is not open, -EMSGSIZE if it can never fit, -EIO if
 * the guest corrupted the ring (the channel is being torn down; so for the
 * reservation calls below too). */
int vsp_send_inband(struct vsp_channel *ch, const void *data, size_t len,
                    uint64_t trans_id, bool completion_requested);
int vsp_send_completion(struct vsp_channel *ch, uint64_t trans_id, const void *data, size_t len);
/* Any packet type: hdr is the type-specific header after the descriptor
 * (may be NULL/0), iov the payload. */
int vsp_send_packet(struct vsp_channel *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
                    const void *hdr, size_t hdr_len, const struct iovec *iov, int iovcnt);

/* Room reserved ahead for one packet of up to len bytes after the
 * descriptor (type-specific header + payload, as vsp_send_packet counts
 * them): 0, -EAGAIN if the guest's ring has not that much room beyond what
 * is already reserved (ops->writable follows once it has; pull no request
 * meanwhile), -EPIPE if the channel is not open, -EMSGSIZE if it can never
 * fit.  Ordinary sends cannot take reserved room. */
int vsp_send_reserve(struct vsp_channel *ch, size_t len);
/* Give back a reservation of len bytes unused. */
void vsp_send_unreserve(struct vsp_channel *ch, size_t len);
/* Send into a reservation of `reserved` bytes (what vsp_send_reserve got):
 * like vsp_send_packet, but never -EAGAIN; the reservation is used up
 * whatever the result (-EPIPE once the channel closed, -EMSGSIZE if the
 * packet is larger than reserved, -EIO if the guest took the room back by
 * moving its read index backwards: the channel is then torn down).
 * Reservations end with the channel: after a close (and a reopen) the
 * channel starts with none, and returning an old one is a no-op. */
int vsp_send_reserved(struct vsp_channel *ch, size_t reserved, uint16_t type, uint16_t flags,
                      uint64_t trans_id, const void *hdr, size_t hdr_len,
                      const struct iovec *iov, int iovcnt);

/* Several sends, one interrupt: between begin and end, this thread's sends
 * on ch go into the guest's ring as usual (room, reservations, errors)
 * but reach the guest together at the end, with one update of the ring's
 * write index and at most one interrupt (none if the guest masked them or
 * had not read all before).  For a VSP completing a batch of requests in
 * one callback.  Pairs nest; sends of other threads are not held back;
 * one channel per thread at a time (a begin on another channel inside a
 * batch is a no-op).  Never wait for the guest between begin and end. */
void vsp_send_batch_begin(struct vsp_channel *ch);
void vsp_send_batch_end(struct vsp_channel *ch);

/* ---- guest memory ---------------------------------------------------- */
/* The guest buffers a VM_PKT_DATA_USING_GPA_DIRECT packet names (its range
 * descriptors, in pkt->header): vmbusd checks the range count, every
 * range's offset and length against its PFN list and the packet, and every
 * page against guest RAM, then fills iov[0..n) with host pointers into
 * guest memory in order (pages that are adjacent in host memory merged)
 * and *len with the total byte count.  Returns n >= 0, or: -EINVAL not a
 * GPA-direct packet; -EPROTO malformed descriptors, -EFAULT a page outside
 * guest RAM (both logged as guest errors); -E2BIG more than max_len bytes
 * or more than max_iov entries.  The memory is the guest's: it may change
 * under the VSP at any time (copy before validating).  The pointers stay
 * valid until the channel's ops->close returns: close must first wait for
 * the VSP's I/O on them to end. */
int vsp_packet_gpa(struct vsp_channel *ch, const struct vsp_packet *pkt, size_t max_len,
                   struct iovec *iov, int max_iov, size_t *len);

/* Map a GPADL the guest created on this channel: returns the pages back to
 * back in host memory and their byte length, or NULL if no such GPADL.
 * Every successful map needs its own vsp_gpadl_unmap() on the same channel;
 * the mapping stays valid until the last one, and the guest's GPADL_TEARDOWN
 * of it is answered only after that. */
void *vsp_gpadl_map(struct vsp_channel *ch, uint32_t gpadl_id, size_t *len);
void vsp_gpadl_unmap(struct vsp_channel *ch, uint32_t gpadl_id);
/* Host pointer to [gpa, gpa+len) of guest RAM if it lies inside one memory
 * region, else NULL. */
void *vsp_guest_ptr(struct vsp_partition *p, uint64_t gpa, size_t len);

/* ---- work items and timers ----------------------------------------- */
typedef void (*vsp_work_fn)(void *arg);
/* Run fn(arg) on the worker pool, serialised with ch's callbacks (ch may be
 * NULL for no serialisation). */
int vsp_queue_work(struct vsp_channel *ch, vsp_work_fn fn, void *arg);
/* Periodic (period_ms > 0 after first_ms) or one-shot (period_ms == 0) timer;
 * fn runs as a work item of ch (or of the partition when ch is NULL).
 * Cancel with vsp_timer_cancel (waits for a running callback to end unless
 * called from it); cancelling from close() or detach() is allowed.  A
 * one-shot timer is freed once its callback has returned: after that its
 * handle must not be used (not even to cancel it).  When the partition goes,
 * vmbusd stops its remaining timers and waits for running callbacks before
 * the first detach(), so detach() may free what the callbacks use.  NULL
 * once the partition is being torn down. */
struct vsp_timer *vsp_timer_start(struct vsp_partition *p, struct vsp_channel *ch,
                                  unsigned first_ms, unsigned period_ms,
                                  vsp_work_fn fn, void *arg);
void vsp_timer_cancel(struct vsp_timer *t);

/* Call fn(arg) on the worker pool, as a work item of ch (of the partition
 * when ch is NULL), whenever fd is readable (level-triggered: the watch is
 * armed again after fn returns, so fn consumes what made fd readable, e.g.
 * reads its eventfd).  The first call may come before this returns.  fd stays the VSP's; it must not block.  Remove with
 * vsp_fd_watch_remove (waits for a running fn unless called from it,
 * allowed from close() and detach()).  When the partition goes, vmbusd
 * removes its remaining watches before the first detach(), like timers.
 * fn may run before this returns (fd readable already): a fn that removes
 * its own watch reads the handle under a lock the adder holds until it
 * has stored it.
 * NULL (errno set) on failure or once the partition is being torn down. */
struct vsp_fd_watch *vsp_fd_watch_add(struct vsp_partition *p, struct vsp_channel *ch, int fd,
                                      vsp_work_fn fn, void *arg);
void vsp_fd_watch_remove(struct vsp_fd_watch *w);

/* ---- logging ------------------------------------------------------- */
/* Logged with the partition name and the channel's relid and class; ch may
 * be NULL (e.g. from init()) for a line without them. */
void vsp_log(const struct vsp_channel *ch, enum vsp_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void vsp_plog(const struct vsp_partition *p, enum vsp_log_level lvl, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The guest did something wrong on ch (a malformed or unexpected packet, a
 * broken protocol rule): a warning naming the VM, the relid and the class,
 * counted in the partition's guest errors (vmbusctl list).  It shares the
 * partition's log rate limit with vmbusd's own checks of that guest, so a
 * guest cannot flood the host log through a VSP: use it, not vsp_log, for
 * everything a guest can trigger at will.  The limit is per VM, not per
 * channel: a VSP with many channels may cap each channel too, so one
 * flooding channel does not hide the others' lines (src/vsp/ic does). */
void vsp_guest_error(const struct vsp_channel *ch, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- helpers ------------------------------------------------------- */
/* "57164f39-9115-4e78-ab55-382f3bd5422d" -> GUID in wire (mixed-endian)
 * order; 0, or -EINVAL for a malformed string. */
int vsp_guid_parse(const char *s, struct hv_guid *g);

/* ---- host-side state a control tool may read or change --------------- */
/* Publish a named value for vmbusctl (e.g. "heartbeat.seq" = "42"). */
void vsp_partition_set_status(struct vsp_partition *p, const char *key, const char *value);

#ifdef __cplusplus
}
#endif
#endif /* VMBUSD_VSP_H */
