/* SPDX-License-Identifier: MIT */
#include "vsp/netvsp/rndis.h"

#include <errno.h>
#include <string.h>

#include "vsp/netvsp/offload.h"
#include "vsp/netvsp/protocol.h"

/* Longest transfer (one RNDIS message) the host takes: a frame of the
 * largest MTU with its PPIs, or several packed in one send section. */
#define RNDIS_MAX_XFER (128u * 1024u)

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static size_t reply_status(uint8_t *out, uint32_t type, uint32_t req_id, uint32_t status)
{
    struct rndis_hdr h = {type | RNDIS_MSG_COMPLETION, 16};
    struct rndis_set_complete c = {req_id, status};
    memcpy(out, &h, 8);
    memcpy(out + 8, &c, 8);
    return 16;
}

/* QUERY_C with data[0..n) (n may be 0 with a failure status). */
static size_t reply_query(uint8_t *out, uint32_t req_id, uint32_t status, const void *data,
                          uint32_t n)
{
    struct rndis_hdr h = {RNDIS_MSG_QUERY | RNDIS_MSG_COMPLETION, 24 + n};
    struct rndis_query_complete c = {req_id, status, n, n ? 16 : 0};
    memcpy(out, &h, 8);
    memcpy(out + 8, &c, 16);
    if (n)
        memcpy(out + 24, data, n);
    return 24 + n;
}

static size_t do_init(struct rndis_state *st, const struct rndis_init_req *rq, uint8_t *out)
{
    struct rndis_hdr h = {RNDIS_MSG_INIT | RNDIS_MSG_COMPLETION,
                          8 + sizeof(struct rndis_init_complete)};
    struct rndis_init_complete c = {
        .req_id = rq->req_id,
        .status = RNDIS_STATUS_SUCCESS,
        .major = 1,
        .minor = 0,
        .device_flags = 1, /* connectionless */
        .medium = 0,       /* 802.3 */
        .max_pkt_per_msg = RNDIS_MAX_PKT_PER_MSG,
        .max_xfer_size = RNDIS_MAX_XFER,
        .pkt_alignment_factor = RNDIS_PKT_ALIGN_LOG2,
    };
    st->initialized = true;
    st->packet_filter = 0;
    st->max_xfer = rq->max_xfer_size;
    memcpy(out, &h, 8);
    memcpy(out + 8, &c, sizeof(c));
    return h.len;
}

static size_t do_query(const struct rndis_state *st, const struct rndis_dev_info *dev,
                       const struct rndis_query_req *rq, const uint8_t *info, uint8_t *out)
{
    uint8_t data[NDIS_OFFLOAD_SIZE_REV3];
    uint32_t n = 0;
    uint64_t v64;
    memset(data, 0, sizeof(data));
    switch (rq->oid) {
    case OID_GEN_MAXIMUM_FRAME_SIZE:
        put32(data, dev->mtu);
        n = 4;
        break;
    case OID_GEN_MAXIMUM_TOTAL_SIZE:
        put32(data, dev->mtu + 14);
        n = 4;
        break;
    case OID_GEN_LINK_SPEED:
        put32(data, dev->link_speed);
        n = 4;
        break;
    case OID_GEN_MEDIA_CONNECT_STATUS:
        put32(data, dev->link_up ? 0 : 1); /* 0 = connected */
        n = 4;
        break;
    case OID_GEN_CURRENT_PACKET_FILTER:
        put32(data, st->packet_filter);
        n = 4;
        break;
    case OID_802_3_PERMANENT_ADDRESS:
    case OID_802_3_CURRENT_ADDRESS:
        memcpy(data, dev->mac, 6);
        n = 6;
        break;
    case OID_GEN_XMIT_OK:
    case OID_GEN_RCV_OK:
    case OID_GEN_XMIT_ERROR:
    case OID_GEN_RCV_ERROR:
    case OID_GEN_RCV_NO_BUFFER:
        v64 = rq->oid == OID_GEN_XMIT_OK      ? dev->tx_ok
              : rq->oid == OID_GEN_RCV_OK     ? dev->rx_ok
              : rq->oid == OID_GEN_XMIT_ERROR ? dev->tx_err
              : rq->oid == OID_GEN_RCV_ERROR  ? dev->rx_err
                                              : dev->rx_no_buffer;
        memcpy(data, &v64, 8);
        n = 8;
        break;
    case OID_TCP_OFFLOAD_HARDWARE_CAPS: {
        /* Answer in the revision the guest asked for (its header in the
         * request's info buffer).  Without offloads every capability is
         * zero: the guest computes checksums and segments itself. */
        struct ndis_object_header oh = {NDIS_OBJECT_TYPE_OFFLOAD, 1, NDIS_OFFLOAD_SIZE_REV1};
        if (rq->info_len >= sizeof(oh)) {
            struct ndis_object_header want;
            memcpy(&want, info, sizeof(want));
            if (want.revision >= 3) {
                oh.revision = 3;
                oh.size = NDIS_OFFLOAD_SIZE_REV3;
            } else if (want.revision == 2) {
                oh.revision = 2;
                oh.size = NDIS_OFFLOAD_SIZE_REV2;
            }
        }
        memcpy(data, &oh, sizeof(oh));
        if (dev->offload)
            offload_caps(data, oh.size);
        /* coalescing: Linux turns on LRO only when both are offered */
        if (dev->offload && dev->rsc && oh.size >= NDIS_OFFLOAD_SIZE_REV3) {
            data[NDIS_OFFLOAD_RSC_IP4_OFF] = 1;
            data[NDIS_OFFLOAD_RSC_IP6_OFF] = 1;
        }
        n = oh.size;
        break;
    }
    case OID_GEN_RECEIVE_SCALE_CAPABILITIES: {
        /* A failed query means one queue to the guest. */
        if (dev->queues < 2)
            return reply_query(out, rq->req_id, RNDIS_STATUS_NOT_SUPPORTED, NULL, 0);
        struct ndis_rss_caps c = {
            .hdr = {NDIS_OBJECT_TYPE_RSS_CAPABILITIES, 2, sizeof(c)},
            .cap_flags = NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4 | NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6,
            .num_int_msg = dev->queues,
            .num_recv_queues = dev->queues,
            .num_table_entries = NDIS_RSS_TABLE_DEFAULT,
        };
        memcpy(data, &c, sizeof(c));
        n = sizeof(c);
        break;
    }
    default:
        /* Unknown OIDs and the friendly name (optional for the guest)
         * fail with no data. */
        return reply_query(out, rq->req_id, RNDIS_STATUS_NOT_SUPPORTED, NULL, 0);
    }
    return reply_query(out, rq->req_id, RNDIS_STATUS_SUCCESS, data, n);
}

/* RSS parameters: the NDIS object, its indirection table and hash key
 * inside info[0..len).  RNDIS_STATUS_SUCCESS with st updated, or a failure
 * status with *why. */
static uint32_t set_rss(struct rndis_state *st, const struct rndis_dev_info *dev,
                        const uint8_t *info, uint32_t len, const char **why)
{
    struct ndis_rss_params p;
    if (len < sizeof(p)) {
        *why = "RSS parameters shorter than their NDIS object";
        return RNDIS_STATUS_INVALID_LENGTH;
    }
    memcpy(&p, info, sizeof(p));
    if (p.hdr.type != NDIS_OBJECT_TYPE_RSS_PARAMETERS || p.hdr.revision < 1 ||
        p.hdr.size < sizeof(p) || p.hdr.size > len) {
        *why = "RSS parameters: not an NDIS RSS parameters object";
        return RNDIS_STATUS_INVALID_DATA;
    }
    uint32_t entries = p.table_size / 4;
    if (p.table_size % 4 || entries == 0 || entries > NDIS_RSS_TABLE_MAX) {
        *why = "RSS parameters: indirection table not 1..256 entries of 4 bytes";
        return RNDIS_STATUS_INVALID_DATA;
    }
    if (p.table_offset > len || p.table_size > len - p.table_offset) {
        *why = "RSS parameters: indirection table runs past the information buffer";
        return RNDIS_STATUS_INVALID_LENGTH;
    }
    if (p.key_size != NDIS_RSS_HASH_KEY_SIZE) {
        *why = "RSS parameters: hash key is not 40 bytes";
        return RNDIS_STATUS_INVALID_DATA;
    }
    if (p.key_offset > len || p.key_size > len - p.key_offset) {
        *why = "RSS parameters: hash key runs past the information buffer";
        return RNDIS_STATUS_INVALID_LENGTH;
    }
    bool disable = p.flags & NDIS_RSS_PARAM_FLAG_DISABLE_RSS;
    if (!disable && !(p.hash_info & NDIS_HASH_FUNC_TOEPLITZ)) {
        *why = "RSS parameters: hash function is not Toeplitz";
        return RNDIS_STATUS_INVALID_DATA;
    }
    uint8_t table[NDIS_RSS_TABLE_MAX];
    for (uint32_t i = 0; i < entries; i++) {
        uint32_t q;
        memcpy(&q, info + p.table_offset + 4 * i, 4);
        if (q >= dev->queues) {
            *why = "RSS parameters: indirection table names a queue the NIC does not have";
            return RNDIS_STATUS_INVALID_DATA;
        }
        table[i] = (uint8_t)q;
    }
    st->rss_enabled = !disable;
    st->rss_hash_info = p.hash_info;
    st->rss_table_len = (uint16_t)entries;
    memcpy(st->rss_table, table, entries);
    memcpy(st->rss_key, info + p.key_offset, NDIS_RSS_HASH_KEY_SIZE);
    return RNDIS_STATUS_SUCCESS;
}

static size_t do_set(struct rndis_state *st, const struct rndis_dev_info *dev,
                     const struct rndis_query_req *rq, const uint8_t *info, uint8_t *out,
                     const char **why)
{
    uint32_t status = RNDIS_STATUS_SUCCESS;
    switch (rq->oid) {
    case OID_GEN_CURRENT_PACKET_FILTER:
        if (rq->info_len != 4) {
            status = RNDIS_STATUS_INVALID_LENGTH;
            break;
        }
        memcpy(&st->packet_filter, info, 4);
        break;
    case OID_TCP_OFFLOAD_PARAMETERS:
        /* Accepted: transmit offloads are per frame (its per-packet
         * info), so only receive coalescing, if offered, is kept. */
        if (dev->rsc && rq->info_len > NDIS_OFFLOAD_PARAMS_RSC_IP6_OFF) {
            uint8_t v4 = info[NDIS_OFFLOAD_PARAMS_RSC_IP4_OFF];
            uint8_t v6 = info[NDIS_OFFLOAD_PARAMS_RSC_IP6_OFF];
            if (v4 > NDIS_OFFLOAD_PARAMS_RSC_ENABLED || v6 > NDIS_OFFLOAD_PARAMS_RSC_ENABLED) {
                *why = "offload parameters: RSC value not 0, 1 or 2";
                status = RNDIS_STATUS_INVALID_DATA;
                break;
            }
            if (v4)
                st->rsc_ip4 = v4 == NDIS_OFFLOAD_PARAMS_RSC_ENABLED;
            if (v6)
                st->rsc_ip6 = v6 == NDIS_OFFLOAD_PARAMS_RSC_ENABLED;
        }
        break;
    case OID_802_3_MULTICAST_LIST:
        /* The backend gets every frame; the guest's stack filters. */
        break;
    case OID_GEN_RECEIVE_SCALE_PARAMETERS:
        /* Only for a NIC that reported RSS capabilities. */
        status = dev->queues < 2 ? RNDIS_STATUS_NOT_SUPPORTED
                                 : set_rss(st, dev, info, rq->info_len, why);
        break;
    default:
        /* A MAC change (config parameter). */
        status = RNDIS_STATUS_NOT_SUPPORTED;
        break;
    }
    return reply_status(out, RNDIS_MSG_SET, rq->req_id, status);
}

int rndis_control(struct rndis_state *st, const struct rndis_dev_info *dev, const uint8_t *msg,
                  size_t len, uint8_t *out, size_t cap, const char **why)
{
    struct rndis_hdr h;
    if (cap < RNDIS_REPLY_MAX) {
        *why = "reply buffer too small";
        return -EINVAL;
    }
    if (len < sizeof(h)) {
        *why = "RNDIS message shorter than its header";
        return -EPROTO;
    }
    memcpy(&h, msg, sizeof(h));
    if (h.len < sizeof(h) || h.len > len) {
        *why = "RNDIS msg_len runs past the buffer";
        return -EPROTO;
    }
    const uint8_t *body = msg + RNDIS_BODY_OFF;
    size_t blen = h.len - RNDIS_BODY_OFF;
    switch (h.type) {
    case RNDIS_MSG_INIT: {
        struct rndis_init_req rq;
        if (blen < sizeof(rq)) {
            *why = "RNDIS INITIALIZE truncated";
            return -EPROTO;
        }
        memcpy(&rq, body, sizeof(rq));
        return (int)do_init(st, &rq, out);
    }
    case RNDIS_MSG_QUERY:
    case RNDIS_MSG_SET: {
        struct rndis_query_req rq;
        if (blen < sizeof(rq)) {
            *why = h.type == RNDIS_MSG_QUERY ? "RNDIS QUERY truncated" : "RNDIS SET truncated";
            return -EPROTO;
        }
        memcpy(&rq, body, sizeof(rq));
        /* The information buffer, counted from the body, must lie inside
         * the message (an empty one may have any offset). */
        if (rq.info_len && (rq.info_offset > blen || rq.info_len > blen - rq.info_offset)) {
            *why = "RNDIS OID information buffer runs past the message";
            return -EPROTO;
        }
        const uint8_t *info = rq.info_len ? body + rq.info_offset : NULL;
        if (!st->initialized) {
            *why = "RNDIS QUERY/SET before INITIALIZE";
            if (h.type == RNDIS_MSG_QUERY)
                return (int)reply_query(out, rq.req_id, RNDIS_STATUS_FAILURE, NULL, 0);
            return (int)reply_status(out, RNDIS_MSG_SET, rq.req_id, RNDIS_STATUS_FAILURE);
        }
        if (h.type == RNDIS_MSG_QUERY)
            return (int)do_query(st, dev, &rq, info, out);
        return (int)do_set(st, dev, &rq, info, out, why);
    }
    case RNDIS_MSG_HALT:
        st->initialized = false;
        st->packet_filter = 0;
        st->rsc_ip4 = st->rsc_ip6 = false;
        return 0;
    case RNDIS_MSG_RESET: {
        /* RESET_C: status, addressing reset (no request id). */
        struct rndis_hdr r = {RNDIS_MSG_RESET | RNDIS_MSG_COMPLETION, 16};
        memcpy(out, &r, 8);
        put32(out + 8, RNDIS_STATUS_SUCCESS);
        put32(out + 12, 0);
        st->packet_filter = 0;
        return 16;
    }
    case RNDIS_MSG_KEEPALIVE: {
        uint32_t req_id;
        if (blen < 4) {
            *why = "RNDIS KEEPALIVE truncated";
            return -EPROTO;
        }
        memcpy(&req_id, body, 4);
        return (int)reply_status(out, RNDIS_MSG_KEEPALIVE, req_id, RNDIS_STATUS_SUCCESS);
    }
    default:
        *why = "unknown or host-only RNDIS message type";
        return -EPROTO;
    }
}

/* The checksum and LSO requests among a PACKET's per-packet info
 * (ppi[0..n), offsets relative to each record). */
static int parse_ppis(const uint8_t *ppi, size_t n, struct tx_offload *o, const char **why)
{
    memset(o, 0, sizeof(*o));
    size_t off = 0;
    while (n - off >= 12) {
        uint32_t size, type, doff;
        memcpy(&size, ppi + off, 4);
        memcpy(&type, ppi + off + 4, 4);
        memcpy(&doff, ppi + off + 8, 4);
        if (size < 12 || size > n - off || doff < 12 || doff > size) {
            *why = "RNDIS per-packet info record runs past its area";
            return -EPROTO;
        }
        uint32_t dlen = size - doff, v = 0;
        if (dlen >= 4)
            memcpy(&v, ppi + off + doff, 4);
        if (type == NDIS_PPI_CHECKSUM && dlen >= 4) {
            o->has_csum = true;
            o->csum = v;
        } else if (type == NDIS_PPI_LSO && dlen >= 4) {
            o->has_lso = true;
            o->lso = v;
        }
        /* others (VLAN, hash) carry nothing the backend uses */
        off += size;
    }
    if (off != n) {
        *why = "RNDIS per-packet info area ends inside a record";
        return -EPROTO;
    }
    return 0;
}

int rndis_tx_walk(uint8_t *buf, size_t len, rndis_frame_fn fn, void *arg, const char **why)
{
    size_t off = 0;
    int frames = 0;
    while (len - off >= sizeof(struct rndis_hdr)) {
        struct rndis_hdr h;
        memcpy(&h, buf + off, sizeof(h));
        if (h.type == 0 && h.len == 0 && frames > 0)
            break; /* zero padding after the last message */
        if (h.type != RNDIS_MSG_PACKET) {
            *why = "RNDIS message in a transmit is not a PACKET";
            return -EPROTO;
        }
        if (h.len < RNDIS_RX_HDR_LEN || h.len > len - off) {
            *why = "RNDIS PACKET msg_len shorter than its header or past the buffer";
            return -EPROTO;
        }
        struct rndis_packet p;
        memcpy(&p, buf + off + RNDIS_BODY_OFF, sizeof(p));
        size_t body = h.len - RNDIS_BODY_OFF;
        if (p.data_offset < sizeof(p) || p.data_offset > body ||
            p.data_len > body - p.data_offset) {
            *why = "RNDIS PACKET data runs past its message";
            return -EPROTO;
        }
        if (p.data_len < 14) {
            *why = "RNDIS PACKET frame shorter than an Ethernet header";
            return -EPROTO;
        }
        struct tx_offload o;
        memset(&o, 0, sizeof(o));
        if (p.ppi_len) {
            if (p.ppi_offset < sizeof(p) || p.ppi_offset > body ||
                p.ppi_len > body - p.ppi_offset) {
                *why = "RNDIS PACKET per-packet info runs past its message";
                return -EPROTO;
            }
            if (parse_ppis(buf + off + RNDIS_BODY_OFF + p.ppi_offset, p.ppi_len, &o, why) < 0)
                return -EPROTO;
        }
        frames++;
        if (fn(arg, buf + off + RNDIS_BODY_OFF + p.data_offset, p.data_len, &o) < 0)
            return frames;
        off += h.len;
    }
    if (frames == 0) {
        *why = "transmit without an RNDIS PACKET";
        return -EPROTO;
    }
    return frames;
}

bool rndis_tx_prefix_ok(const uint8_t *buf, size_t have, size_t len, size_t frame_hdr)
{
    struct rndis_hdr h;
    struct rndis_packet p;
    if (have < RNDIS_BODY_OFF + sizeof(p) || have > len)
        return false;
    memcpy(&h, buf, sizeof(h));
    memcpy(&p, buf + RNDIS_BODY_OFF, sizeof(p));
    if (h.type != RNDIS_MSG_PACKET || h.len != len)
        return false;
    /* 64-bit sums: the fields are the guest's */
    uint64_t data = (uint64_t)RNDIS_BODY_OFF + p.data_offset;
    uint64_t hdr = frame_hdr < p.data_len ? frame_hdr : p.data_len;
    uint64_t ppi_end = p.ppi_len ? (uint64_t)RNDIS_BODY_OFF + p.ppi_offset + p.ppi_len : 0;
    return data + hdr <= have && ppi_end <= have;
}

/* One per-packet-info record (size, type, offset to its value, value) at
 * out + *at; *at moves past it. */
static void put_ppi(uint8_t *out, uint32_t *at, uint32_t type, uint32_t value)
{
    uint32_t rec[4] = {16, type, 12, value};
    memcpy(out + *at, rec, sizeof(rec));
    *at += sizeof(rec);
}

void rndis_rx_header(uint8_t *out, uint32_t hdr_len, uint32_t frame_len, bool has_csum,
                     uint32_t csum, uint8_t frag, uint16_t pkt_id)
{
    struct rndis_hdr h = {RNDIS_MSG_PACKET, hdr_len + frame_len};
    struct rndis_packet p = {.data_offset = hdr_len - RNDIS_BODY_OFF, .data_len = frame_len};
    /* the records follow each other; the data starts at hdr_len whatever
     * they take (data_offset says where) */
    uint32_t at = RNDIS_RX_HDR_LEN;
    if (has_csum && hdr_len >= RNDIS_RX_HDR_PPI_LEN)
        put_ppi(out, &at, NDIS_PPI_CHECKSUM, csum);
    if (frag && hdr_len >= RNDIS_RX_HDR_RSC_LEN)
        put_ppi(out, &at, NDIS_PPI_PKTINFO_ID,
                NDIS_PKTINFO_ID_V1 | (uint32_t)frag << 8 | (uint32_t)pkt_id << 16);
    if (at > RNDIS_RX_HDR_LEN) {
        p.ppi_offset = RNDIS_RX_HDR_LEN - RNDIS_BODY_OFF;
        p.ppi_len = at - RNDIS_RX_HDR_LEN;
    }
    memcpy(out, &h, 8);
    memcpy(out + 8, &p, sizeof(p));
}

size_t rndis_indicate(uint8_t *out, uint32_t status)
{
    struct rndis_hdr h = {RNDIS_MSG_INDICATE, 20};
    struct rndis_indicate in = {status, 0, 0};
    memcpy(out, &h, 8);
    memcpy(out + 8, &in, sizeof(in));
    return 20;
}
