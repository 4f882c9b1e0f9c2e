/* SPDX-License-Identifier: MIT */
/*
 * Guest simulator: one object that is at once a VMM (it speaks vmbus-user
 * to vmbusd over a unix socket and hands over a memfd, SynIC page addresses
 * and SINT irqfds) and a guest whose VMBus driver behaves like Linux 6.1's
 * hv_vmbus (same message order, same validation, same ring rules).
 *
 * Everything is single-threaded per simulated VM: the guest's "interrupts"
 * (irqfd readable) and the VMM's socket are serviced whenever a sim_* call
 * waits, so a test runs deterministically.  Different VMs may be driven from
 * different threads.  Every wait has a deadline; nothing blocks forever.
 */
#ifndef VMBUSD_TESTS_SIMVM_H
#define VMBUSD_TESTS_SIMVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "vmbusd/hv_wire.h"
#include "vmbusd/vmbus_user.h"

/* Deadline of every wait (ms); tests may lower it while probing. */
extern int sim_timeout_ms;
/* expect_offers of new VMs (see struct sim_vm). */
extern int sim_expect_offers_default;
#define SIM_TIMEOUT_MS sim_timeout_ms
#define SIM_MAX_VCPUS 8
#define SIM_MAX_CHANNELS 64
#define SIM_MAX_EVENTFDS 256
#define SIM_MSGQ_LEN 4096

/* ------------------------------------------------------------------ */
/* In-process vmbusd                                                   */

struct sim_daemon;

struct sim_vm_cfg {
    const char *name;     /* [vm NAME] */
    const char *vsps;     /* space separated VSP names, e.g. "echo" */
};

/* Start vmbusd in this process with the given VM sections and
 * "[vsp echo] channels = echo_channels".  The socket lives in a fresh
 * temporary directory.  Returns NULL (and prints why) on failure. */
struct sim_daemon *simd_start(const struct sim_vm_cfg *vms, int nvms, int echo_channels);
/* One "[vsp VSP] KEY = VALUE" line for simd_start_params(). */
struct sim_vsp_param {
    const char *vsp, *key, *value;
};
/* simd_start() plus VSP parameters (applied after the echo channel count). */
struct sim_daemon *simd_start_params(const struct sim_vm_cfg *vms, int nvms, int echo_channels,
                                     const struct sim_vsp_param *params, int nparams);
/* vmbusd as a process of its own: the executable exe with config text conf
 * (written to a file), its sockets in a fresh temporary directory, its log
 * in simd_log_path(), and RLIMIT_NOFILE (soft and hard) nofile if non-zero.
 * Returns once both sockets exist; NULL (and prints why) on failure. */
struct sim_daemon *simd_spawn(const char *exe, const char *conf, unsigned long nofile);
pid_t simd_pid(const struct sim_daemon *d);        /* 0: in-process */
const char *simd_log_path(const struct sim_daemon *d);
/* In-process: vmbusd_destroy; spawned: SIGTERM and wait (SIGKILL after 10 s). */
void simd_stop(struct sim_daemon *d);
/* Per-VM "VSP.key = value" lines ([vm NAME] section) the next
 * simd_start*() configures, ending with an entry whose vm is NULL; their
 * FILE:LINE is "sim:N", N counting from 1 in this array. */
struct sim_vm_param {
    const char *vm, *vsp, *key, *value;
};
extern const struct sim_vm_param *simd_vm_params;
/* [daemon] worker-sched of the next simd_start*(): "batch", "normal", or
 * NULL for the default. */
extern const char *simd_worker_sched;
/* Test VSPs (NULL-terminated) the next simd_start*() offers besides the
 * built-in ones, named in sim_vm_cfg.vsps like them. */
struct vsp_plugin;
extern const struct vsp_plugin *const *simd_linked_plugins;
const char *simd_socket_path(const struct sim_daemon *d);
/* vmbusd's control socket (the "list" / "control VM VSP CMD" protocol). */
const char *simd_control_path(const struct sim_daemon *d);
struct vmbusd *simd_vmbusd(struct sim_daemon *d);
/* One request line to the control socket at path, its answer line into out
 * (NUL-terminated); false if no answer came (20 s). */
bool sim_ctl_call(const char *path, const char *req, char *out, size_t cap);

/* Log capture (all vmbusd log lines since the last clear). */
void sim_log_clear(void);
/* Number of captured lines at level <= max_level that contain every
 * non-NULL needle.  A needle "#N" matches the decimal number N as a whole
 * token (not inside a longer number). */
int sim_log_count(int max_level, const char *n1, const char *n2, const char *n3);
/* CLOCK_REALTIME ms from now, for pthread_cond_timedwait. */
struct timespec sim_deadline_ms(unsigned ms);
/* This process's open fds (the directory's own included), -1 if unknown:
 * compared before and after, it shows a leak. */
int sim_count_fds(void);
/* Wait (up to timeout_ms) until sim_log_count(...) > 0. */
bool sim_log_wait(int timeout_ms, int max_level, const char *n1, const char *n2,
                  const char *n3);
void sim_log_dump(const char *why); /* print the capture (on failure) */

/* ------------------------------------------------------------------ */
/* Simulated VM                                                        */

struct sim_vm_opts {
    const char *name;
    uint64_t mem_size;   /* bytes of RAM (default 64 MiB) */
    uint64_t hole_start; /* if non-zero: RAM is split at hole_start and the */
    uint64_t hole_size;  /* rest mapped at hole_start + hole_size (2 regions) */
    uint32_t vcpus;      /* default 2 */
    bool no_setup;       /* connect only: no HELLO/MEM/SINT/SYNIC (raw tests) */
    const char *sock_path; /* vmbusd's socket if not d's (d may then be NULL): a
                              VMM in another process than the daemon */
};

struct sim_offer {
    bool valid;
    bool rescinded;
    uint32_t relid;
    struct hv_guid if_type;
    struct hv_guid if_instance;
    uint16_t chn_flags;
    uint16_t sub_channel_index;
    uint32_t connection_id;
    uint8_t monitorid;
    bool monitor_allocated;
    bool is_dedicated_interrupt;
};

/* Guest side of one VMBus ring (as Linux's hv_ring_buffer_info). */
struct sim_ring {
    struct vmbus_ring_header *hdr;
    uint8_t *data;
    uint32_t size;          /* data bytes */
    uint32_t priv_read;     /* inbound: private read index */
    uint32_t max_pkt;       /* inbound: max packet copied out (Linux max_pkt_size) */
};

struct sim_chan {
    struct sim_vm *vm;
    uint32_t relid;
    bool open;
    uint32_t gpadl;          /* ring GPADL handle */
    uint32_t send_pages;     /* pages incl. header page, guest->host */
    uint32_t recv_pages;
    uint64_t ring_off;       /* memfd offset of the ring pages */
    struct sim_ring out;     /* guest -> host */
    struct sim_ring in;      /* host -> guest */
    uint64_t events;         /* host->guest signals seen (event flag bit) */
    uint64_t signals_sent;   /* HvSignalEvent calls made */
    uint32_t target_vp;
    /* Receives copy the whole packet from its descriptor on, not only the
     * payload after offset8 (a guest that reads transfer-page ranges). */
    bool recv_whole;
    /* How long sim_chan_open waited for the host (for the benchmark): ring
     * GPADL_HEADER posted -> GPADL_CREATED taken, OPENCHANNEL posted ->
     * OPENCHANNEL_RESULT taken. */
    uint64_t open_gpadl_ns, open_msg_ns;
};

struct sim_qmsg {
    uint32_t type;          /* channel message type */
    uint32_t vp;            /* vCPU whose slot delivered it */
    uint8_t size;           /* payload size */
    uint8_t payload[HV_MESSAGE_PAYLOAD_SIZE];
};

struct sim_vm {
    char name[VU_VM_NAME_LEN];
    int sock;
    uint32_t seq;
    bool dead;               /* socket closed / VU_MSG_ERROR seen */
    char error[VU_ERROR_MESSAGE_MAX + 16]; /* VU_MSG_ERROR "code: text", whole */
    uint32_t error_code;     /* VU_MSG_ERROR code (errno), 0 if none came */
    uint32_t partition_id;
    /* last reply vmbusd sent (HELLO_REPLY / POST_RESULT) */
    bool rep_valid;
    uint32_t rep_type, rep_seq, rep_size;
    uint8_t rep[64];
    uint64_t vu_unknown;     /* datagrams of unknown type from vmbusd */
    uint64_t post_results;   /* POST_RESULTs received */
    uint32_t reset_done_seq; /* seq of the last RESET_DONE received (0: none) */
    const char *sock_path;

    /* memory */
    int memfd;
    uint8_t *mem;
    uint64_t mem_size;
    uint64_t hole_start, hole_size;
    uint64_t alloc_next;     /* bump allocator over memfd offsets */
    uint64_t alloc_floor;    /* where it wraps to (above the fixed pages) */

    /* vCPUs */
    uint32_t vcpus;
    struct {
        uint64_t simp_off, siefp_off; /* memfd offsets */
        int irqfd, resamplefd;
        uint64_t interrupts, eoms;
    } vp[SIM_MAX_VCPUS];

    /* eventfds vmbusd registered (connection id -> fd) */
    struct {
        uint32_t conn_id;
        int fd;
    } evfd[SIM_MAX_EVENTFDS];
    int nevfd;
    uint64_t signal_event_msgs; /* signals routed via VU_MSG_SIGNAL_EVENT */

    /* guest VMBus state */
    uint32_t version;        /* negotiated, 0 if none */
    uint32_t msg_conn_id;    /* connection id for posts */
    uint32_t target_vcpu;
    uint64_t int_page_off, mon1_off, mon2_off;
    uint32_t next_gpadl;     /* starts at 0xE1E10 */
    bool consume_msgs;       /* ISR copies + EOMs the slot (default true) */
    bool post_no_retry;      /* sim_post_msg: no retry on INSUFFICIENT_* (flood tests) */
    bool lose_eoms;          /* buggy guest: never writes EOM (host must re-check) */
    struct sim_offer offers[SIM_MAX_CHANNELS];
    int noffers;
    bool all_offers_delivered;
    int expect_offers;       /* sim_request_offers also waits for this many */
    struct sim_chan chans[SIM_MAX_CHANNELS];

    /* received channel messages (FIFO) */
    struct sim_qmsg *q;
    unsigned qhead, qlen;
    uint64_t msgs_received;
    uint64_t bad_host_msgs;  /* dropped by the Linux checks: a vmbusd bug */
    uint64_t unload_responses;
    uint64_t stray_events;   /* event bits for relids without an open channel */
    uint64_t q_overflow;
    uint64_t max_pkt;        /* inbound copy buffer for new channels (0: ring size) */
};

struct sim_vm *sim_vm_new(struct sim_daemon *d, const struct sim_vm_opts *o);
/* Like sim_vm_new(d, {.name = name}). */
struct sim_vm *sim_vm_create(struct sim_daemon *d, const char *name);
void sim_vm_free(struct sim_vm *vm);
/* Send HELLO..SYNIC_STATE (done by sim_vm_new unless no_setup). */
int sim_vmm_setup(struct sim_vm *vm);
/* Its steps, for tests that change their order: HELLO (waits for the
 * reply), the MEM_REGION(s), every vCPU's SINT_ROUTE, every vCPU's
 * SYNIC_STATE (SCONTROL, SIMP and SIEFP enabled).  0 / -errno. */
int sim_vmm_hello(struct sim_vm *vm);
int sim_vmm_send_memory(struct sim_vm *vm);
int sim_vmm_send_routes(struct sim_vm *vm);
int sim_vmm_send_synic(struct sim_vm *vm);
/* Guest reboot: VU_MSG_RESET, guest state forgotten, SynIC pages cleared
 * and re-announced (the rebooted guest writes its MSRs again). */
int sim_vmm_reset(struct sim_vm *vm);

/* ---- memory ---- */
uint64_t sim_off_to_gpa(const struct sim_vm *vm, uint64_t off);
void *sim_gpa_ptr(struct sim_vm *vm, uint64_t gpa);
uint64_t sim_alloc_pages(struct sim_vm *vm, uint32_t npages); /* memfd offset, zeroed */
uint64_t sim_page_pfn(const struct sim_vm *vm, uint64_t off);  /* pfn of the page at off */

/* ---- raw vmbus-user (VMM side) ---- */
/* Send one datagram: header (type, size = len, the next seq, flags 0) +
 * payload + fds.  Returns the seq used, or -errno. */
int sim_vu_send(struct sim_vm *vm, uint32_t type, const void *payload, uint32_t len,
                const int *fds, int nfds);
/* Send arbitrary bytes as one datagram (no header added). */
int sim_vu_send_raw(struct sim_vm *vm, const void *buf, size_t len, const int *fds, int nfds);
/* Service the socket for up to timeout_ms; returns false if it is closed. */
bool sim_vu_alive(struct sim_vm *vm, int timeout_ms);

/* ---- hypercalls ---- */
/* HvPostMessage: returns the HV status, or -errno if the socket failed /
 * no POST_RESULT arrived in time.  payload_size goes into the input page
 * as given (bad-input tests use > 240); min(payload_size, 240) bytes are
 * read from payload. */
int sim_post(struct sim_vm *vm, uint32_t conn_id, uint32_t msg_type, const void *payload,
             uint32_t payload_size);
/* Post a channel message on the negotiated connection id (what
 * vmbus_post_msg does, including its retry on INSUFFICIENT_* and
 * INVALID_CONNECTION_ID, up to 100 tries). */
int sim_post_msg(struct sim_vm *vm, const void *msg, uint32_t len);
/* HvSignalEvent(conn_id): eventfd if vmbusd registered one, else VU_MSG_SIGNAL_EVENT. */
int sim_signal_event(struct sim_vm *vm, uint32_t conn_id);

/* ---- guest interrupt servicing ---- */
/* Stop / resume consuming SynIC messages (no copy, no EOM while off). */
void sim_set_consume(struct sim_vm *vm, bool on);
/* Poll sockets and irqfds once for up to timeout_ms, run ISRs. */
void sim_poll(struct sim_vm *vm, int timeout_ms);
/* Wait for a host message of the given type (first in FIFO order matching
 * match(msg, arg) if match is non-NULL); it is removed from the queue.
 * Returns true if found before the deadline. */
typedef bool (*sim_msg_match_fn)(const struct sim_qmsg *m, const void *arg);
bool sim_wait_msg(struct sim_vm *vm, uint32_t type, sim_msg_match_fn match, const void *arg,
                  struct sim_qmsg *out, int timeout_ms);
/* Take a queued message without waiting. */
bool sim_take_msg(struct sim_vm *vm, uint32_t type, sim_msg_match_fn match, const void *arg,
                  struct sim_qmsg *out);
void sim_drain_msgs(struct sim_vm *vm); /* forget queued messages */

/* ---- connection ---- */
/* INITIATE_CONTACT with this version (conn id 4 + msg_sint for >= 5.0,
 * else conn id 1 + interrupt page).  Returns 1 accepted, 0 refused,
 * -errno on post failure / timeout.  On accept records version and
 * msg_conn_id. */
int sim_connect_version(struct sim_vm *vm, uint32_t version);
/* sim_connect_version() in two halves: post INITIATE_CONTACT (returns the
 * HV status or -errno) and wait for VERSION_RESPONSE (1 / 0 / -errno). */
int sim_contact_post(struct sim_vm *vm, uint32_t version);
int sim_contact_wait(struct sim_vm *vm, uint32_t version);
/* Walk Linux's list (5.3 ... 2.4), then 1.1, 0.13; returns the accepted
 * version or 0. */
uint32_t sim_connect(struct sim_vm *vm);
/* REQUESTOFFERS and collect offers until ALLOFFERS_DELIVERED. Returns the
 * number of offers or -errno. */
int sim_request_offers(struct sim_vm *vm);
struct sim_offer *sim_find_offer(struct sim_vm *vm, uint32_t relid);
/* n-th offer (0-based) with this class GUID, or NULL. */
struct sim_offer *sim_offer_by_class(struct sim_vm *vm, const struct hv_guid *cls, int n);
/* UNLOAD -> UNLOAD_RESPONSE; forgets all guest channel state. 0 / -errno. */
int sim_unload(struct sim_vm *vm);
/* The guest forgets its offers, channels and negotiated version (a new
 * kernel, or a guest that lost its state); vmbusd is told nothing. */
void sim_guest_forget(struct sim_vm *vm);
/* Connect + REQUESTOFFERS in one go; returns number of offers or -errno. */
int sim_bringup(struct sim_vm *vm, uint32_t version);

/* ---- GPADLs ---- */
/* Post GPADL_HEADER + BODYs describing pages (pfns) and wait for
 * GPADL_CREATED.  Returns creation_status (0 ok) or -errno; *handle set. */
int sim_gpadl_create(struct sim_vm *vm, uint32_t relid, const uint64_t *pfns, uint32_t npages,
                     uint32_t *handle);
/* Same for npages freshly allocated contiguous pages; *off = memfd offset. */
int sim_gpadl_create_pages(struct sim_vm *vm, uint32_t relid, uint32_t npages, uint32_t *handle,
                           uint64_t *off);
/* Building block for bad inputs: post a header that announces
 * total_pfns pages (range_buflen = 8 + 8*total_pfns unless buflen_override
 * != 0, byte_count = total_pfns*4096 unless byte_count_override != 0)
 * but send only send_pfns of them (header + bodies).  Returns the HV status
 * of the last post or -errno; nothing waited for. */
int sim_gpadl_post(struct sim_vm *vm, uint32_t relid, uint32_t handle, const uint64_t *pfns,
                   uint32_t total_pfns, uint32_t send_pfns, uint32_t byte_count_override,
                   uint32_t buflen_override);
/* GPADL_TEARDOWN and wait for GPADL_TORNDOWN.  0 / -errno. */
int sim_gpadl_teardown(struct sim_vm *vm, uint32_t relid, uint32_t handle);

/* ---- channels ---- */
/* Linux __vmbus_open: allocate send_pages + recv_pages (each including its
 * header page), init both rings, ring GPADL, OPENCHANNEL, wait result.
 * Returns the channel (open) or NULL; *status gets OPENCHANNEL_RESULT's status
 * (or -errno).  The inbound copy buffer (Linux max_pkt_size) is vm->max_pkt,
 * 0 meaning the whole ring. */
struct sim_chan *sim_chan_open(struct sim_vm *vm, uint32_t relid, uint32_t send_pages,
                               uint32_t recv_pages, int *status);
/* vmbus_close: CLOSECHANNEL, GPADL_TEARDOWN(ring), wait TORNDOWN. 0/-errno. */
int sim_chan_close(struct sim_chan *ch);
struct sim_chan *sim_chan(struct sim_vm *vm, uint32_t relid);
/* MODIFYCHANNEL; on >= 5.3 waits for the response and returns its status. */
int sim_chan_modify(struct sim_vm *vm, uint32_t relid, uint32_t target_vp);
/* RELID_RELEASED. */
int sim_relid_released(struct sim_vm *vm, uint32_t relid);
/* What Linux does with a rescinded subchannel (vmbus_onoffer_rescind ->
 * hv_process_channel_removal): once it is closed, forget it and send
 * RELID_RELEASED.  Returns how many were released, or -errno. */
int sim_release_subchannels(struct sim_vm *vm);

/* Write one packet (descriptor + payload + padding + trailer) to the
 * guest->host ring like hv_ringbuffer_write (incl. signalling).
 * 0, -EAGAIN if full, -ENODEV if rescinded/closed. */
int sim_chan_send(struct sim_chan *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
                  const void *payload, uint32_t len);
/* The same with a type-specific header of hdr_len bytes (a multiple of 8)
 * between the descriptor and the payload (offset8 = (16 + hdr_len) / 8),
 * e.g. the range list of a GPA-direct packet.  -EINVAL if hdr_len is not. */
int sim_chan_send_hdr(struct sim_chan *ch, uint16_t type, uint16_t flags, uint64_t trans_id,
                      const void *hdr, uint32_t hdr_len, const void *payload, uint32_t len);
/* Read one packet (Linux clamping).  *desc gets the clamped descriptor,
 * payload (from offset8*8) is copied to buf (up to buflen; *len = full
 * payload length).  1 got one, 0 ring empty. */
int sim_chan_try_recv(struct sim_chan *ch, struct vmpacket_descriptor *desc, void *buf,
                      uint32_t buflen, uint32_t *len);
/* A guest that drops whatever the host wrote without parsing it (packets
 * a fuzzing host may have made unparseable): the read index jumps to the
 * write index, and the host is signalled if it waits for room. */
void sim_chan_discard(struct sim_chan *ch);
/* Batched receive, as Linux's NAPI-style readers do: interrupt_mask is set
 * while packets are taken; when the ring looks empty it is cleared and the
 * ring checked once more, so a packet written meanwhile is not missed.
 * Returns 1 with a packet (mask still set), else what sim_chan_try_recv
 * returned for the empty ring (mask cleared). */
int sim_chan_recv_batched(struct sim_chan *ch, struct vmpacket_descriptor *desc, void *buf,
                          uint32_t cap, uint32_t *len);
/* Blocking version: waits for a host signal when empty.  1 / 0 timeout. */
int sim_chan_recv(struct sim_chan *ch, struct vmpacket_descriptor *desc, void *buf,
                  uint32_t buflen, uint32_t *len, int timeout_ms);
/* Wait until ch->events changes from 'since' (a host signal). */
bool sim_chan_wait_event(struct sim_chan *ch, uint64_t since, int timeout_ms);
/* One echo round trip: send len bytes (pattern from seed) with
 * completion-requested or not, receive the echo, check type, trans_id
 * and payload.  0 ok, -1 mismatch (message printed), -ETIMEDOUT. */
int sim_echo_roundtrip(struct sim_chan *ch, uint32_t len, uint64_t trans_id, bool want_comp);
/* Send n packets of len bytes pumping the ring both ways (flow control),
 * verify every echo in order.  0 ok. */
int sim_echo_stream(struct sim_chan *ch, uint32_t n, uint32_t len, bool want_comp);

/* Full healthy cycle on a fresh VM: bringup(version), open the first echo
 * channel, one round trip, close, unload.  0 ok. */
int sim_healthy_cycle(struct sim_daemon *d, const char *vm_name, uint32_t version);

/* ---- misc ---- */
extern const uint32_t sim_linux_versions[8];   /* 5.3 ... 2.4 */
extern const uint32_t sim_all_versions[10];    /* 0.13 ... 5.3 */
const char *sim_version_str(uint32_t v);       /* "5.3" (static buffer per call site ok) */
/* Parsed HV_CLASS_ECHO. */
const struct hv_guid *sim_echo_class(void);
uint64_t sim_now_ms(void);
uint64_t sim_now_ns(void);
void sim_fill_pattern(void *buf, uint32_t len, uint64_t seed);

#endif
