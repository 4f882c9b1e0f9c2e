/* SPDX-License-Identifier: MIT */
/*
 * The guest side of the integration services (heartbeat, shutdown,
 * timesync, KVP) as Linux 6.1's hv_utils and hv_kvp_daemon behave
 * (docs: linux-guest-contract section 4), for every test that plays such a
 * guest: the simulator suite (tests/sim/test_ic.c), vmbus-simguest and the
 * IC unit tests (tests/unit/ic).
 *
 * Written from the guest's point of view, independently of src/vsp/ic, so
 * the two check each other: nothing here includes vmbusd's IC code.
 *
 * Only what a guest does to a packet buffer lives here (parse, answer in
 * place); how the packet travels (simulated rings, the unit tests' fake
 * channel) and what a test asserts stay with the caller.  A packet buffer
 * starts with the 8-byte pipe header, then the 20-byte IC header.
 */
#ifndef VMBUSD_TEST_IC_GUEST_H
#define VMBUSD_TEST_IC_GUEST_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct icg_ver {
    uint16_t major, minor;
} __attribute__((packed));

/* icmsg_hdr, after the 8-byte vmbuspipe_hdr */
struct icg_hdr {
    struct icg_ver fw; /* +0 */
    uint16_t type;     /* +4 */
    struct icg_ver ver; /* +6 */
    uint16_t size;     /* +10: body size */
    uint32_t status;   /* +12 */
    uint8_t tid;       /* +16 */
    uint8_t flags;     /* +17 */
    uint8_t rsvd[2];
} __attribute__((packed));
_Static_assert(sizeof(struct icg_hdr) == 20, "icmsg_hdr");

#define ICG_HDRS 28u /* vmbuspipe_hdr + icmsg_hdr: where the body starts */
#define ICG_TRANSACTION 1u
#define ICG_REQUEST 2u
#define ICG_RESPONSE 4u

#define ICG_T_NEGOTIATE 0u
#define ICG_T_HEARTBEAT 1u
#define ICG_T_KVP 2u
#define ICG_T_SHUTDOWN 3u
#define ICG_T_TIMESYNC 4u

#define ICG_S_OK 0u
#define ICG_E_FAIL 0x80004005u
#define ICG_S_CONT 0x80070103u

#define ICG_MAX_VERCNT 100u /* Linux refuses more versions per list */
/* 100 ns units from 1601-01-01 (the host's clock) to 1970-01-01 */
#define ICG_EPOCH 116444736000000000ull
/* hv_utils: VMBUS_RING_SIZE(3 pages) = 4 pages incl. the header, each way */
#define ICG_RING_PAGES 4u
/* receive buffers: one page (heartbeat/shutdown/timesync), four for KVP */
#define ICG_BUF_UTIL 4096u
#define ICG_BUF_KVP 16384u

/* shutdown_msg_data {reason u32, timeout u32, flags u32, message[2048]} */
#define ICG_SHUTDOWN_BODY 2060u
/* hv_kvp_msg: {op u8, pool u8, pad u16} + union (7426) */
#define ICG_KVP_MSG 7430u
#define ICG_KVP_KEY 512u
#define ICG_KVP_VAL 2048u
#define ICG_KVP_GET 0u
#define ICG_KVP_SET 1u
#define ICG_KVP_ENUM 3u
#define ICG_KVP_AUTO_POOL 2u

/* The four services as Linux drives them. */
enum { ICG_HB, ICG_SD, ICG_TS, ICG_KV, ICG_NSVC };

struct icg_svc {
    const char *name;     /* vmbusd's VSP name, the status key prefix */
    const char *cls;      /* class GUID (vmbusd/hv_guids.h) */
    uint16_t type;        /* IC message type of its requests */
    struct icg_ver fw[2]; /* framework versions, in Linux's preference order */
    struct icg_ver msg[4]; /* message versions, likewise */
    unsigned nmsg;
    uint32_t buf;         /* Linux's receive buffer: a longer packet is lost */
};

extern const struct icg_svc icg_svcs[ICG_NSVC];

static inline uint16_t icg_rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline uint32_t icg_rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t icg_rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline void icg_wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void icg_wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void icg_wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static inline bool icg_ver_eq(struct icg_ver a, struct icg_ver b)
{
    return a.major == b.major && a.minor == b.minor;
}

struct icg_hdr icg_hdr_get(const uint8_t *pkt);
void icg_hdr_put(uint8_t *pkt, const struct icg_hdr *h);
/* The status the guest answers with (ICG_S_OK, ICG_E_FAIL, ...). */
void icg_set_status(uint8_t *pkt, uint32_t status);
/* Turn the host's request in pkt into the guest's response: every hv_utils
 * driver answers in the same buffer with flags TRANSACTION | RESPONSE. */
void icg_make_response(uint8_t *pkt);

/* The result of answering a negotiate request. */
enum icg_neg {
    ICG_NEG_SHORT,      /* too short for the counts: Linux sends it back unchanged */
    ICG_NEG_BAD_COUNTS, /* counts above 100 or beyond the packet: answered 0/0 */
    ICG_NEG_NO_MATCH,   /* no common framework or message version: answered 0/0 */
    ICG_NEG_OK,         /* answered 1/1 with the chosen versions */
};

/* Rewrite the negotiate request pkt[0..len) into Linux's answer
 * (vmbus_prep_negotiate_resp): walk the guest's own lists in preference
 * order, take the first version the host offers.  pkt needs room for the
 * two answer entries (ICG_HDRS + 16 bytes) even when len is shorter.  The
 * chosen versions go to *fw / *ver (either may be NULL).  Flags untouched:
 * see icg_make_response(). */
enum icg_neg icg_negotiate_lists(const struct icg_ver *fw_list, unsigned nfw_list,
                                 const struct icg_ver *msg_list, unsigned nmsg_list,
                                 uint8_t *pkt, uint32_t len, struct icg_ver *fw,
                                 struct icg_ver *ver);
/* The same with the service's Linux lists. */
enum icg_neg icg_negotiate(const struct icg_svc *s, uint8_t *pkt, uint32_t len,
                           struct icg_ver *fw, struct icg_ver *ver);

/* Heartbeat {seq u64, reserved}: the request's seq; answer_heartbeat writes
 * seq + 1 in place, as Linux does.  Both need len >= ICG_HDRS + 8. */
uint64_t icg_heartbeat_seq(const uint8_t *pkt);
void icg_heartbeat_answer(uint8_t *pkt);

/* Timesync: message version 4 {host u64, ref u64, flags u8, leap, stratum,
 * rsvd[3]}, older {host u64, child u64, round trip u64, flags u8}. */
uint32_t icg_timesync_len(struct icg_ver ver); /* bytes Linux needs, headers included */
uint64_t icg_timesync_host_time(const uint8_t *pkt);
uint8_t icg_timesync_flags(const uint8_t *pkt, struct icg_ver ver);
#define ICG_TS_PROBE 0u
#define ICG_TS_SYNC 1u
#define ICG_TS_SAMPLE 2u

/* Shutdown: the request's fields (len >= ICG_HDRS + ICG_SHUTDOWN_BODY) and
 * the status Linux answers for its flags: power off and reboot (forced or
 * not) are accepted, hibernation (off by default) and anything else not. */
uint32_t icg_shutdown_reason(const uint8_t *pkt);
uint32_t icg_shutdown_timeout(const uint8_t *pkt);
uint32_t icg_shutdown_flags(const uint8_t *pkt);
uint32_t icg_shutdown_status(uint32_t flags);

/* KVP strings are UTF-16LE with a NUL; these handle ASCII only.  put
 * returns the size in bytes including the NUL; is compares a string of
 * `size` bytes (NUL included) with s. */
uint32_t icg_u16_put(uint8_t *dst, const char *s);
bool icg_u16_is(const uint8_t *src, uint32_t size, const char *s);
/* record {value type u32 (1 = REG_SZ), key size u32, value size u32,
 * key[512], value[2048]}: what hv_kvp_daemon writes; key NULL leaves the
 * key as it is. */
void icg_kvp_rec_put(uint8_t *rec, const char *key, const char *value);

/* The auto pool (2) a Linux guest's hv_kvp_daemon reports, index order. */
#define ICG_KVP_AUTO_N 10u
extern const char *const icg_kvp_auto_keys[ICG_KVP_AUTO_N];
extern const char *const icg_kvp_auto_values[ICG_KVP_AUTO_N];

#endif
