/* SPDX-License-Identifier: MIT */
/*
 * netvsp's RNDIS control answers and transmit walk, on their own: what the
 * simulated guest does not exercise (statistics, KEEPALIVE, RESET, HALT,
 * the offload capability revisions, several packets in one section, the
 * RSS capabilities' fields and the RSS parameters kept).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vsp/netvsp/offload.h"
#include "vsp/netvsp/protocol.h"
#include "vsp/netvsp/rndis.h"

static const struct rndis_dev_info dev = {
    .mac = {0x00, 0x15, 0x5d, 1, 2, 3}, .mtu = 1500, .link_up = true, .link_speed = 100000000,
    .tx_ok = 11, .rx_ok = 22, .tx_err = 3, .rx_err = 4, .rx_no_buffer = 5};

static uint8_t out[RNDIS_REPLY_MAX];

static int req(struct rndis_state *st, const struct rndis_dev_info *d, uint32_t type,
               const void *body, uint32_t blen)
{
    uint8_t msg[512];
    struct rndis_hdr h = {type, 8 + blen};
    memcpy(msg, &h, 8);
    memcpy(msg + 8, body, blen);
    const char *why = NULL;
    memset(out, 0, sizeof(out));
    return rndis_control(st, d, msg, h.len, out, sizeof(out), &why);
}

static void init(struct rndis_state *st)
{
    uint32_t in[4] = {1, 1, 0, 0x4000};
    assert_int_equal(req(st, &dev, RNDIS_MSG_INIT, in, sizeof(in)), 52);
    assert_true(st->initialized);
}

/* QUERY oid with info; returns the reply's info length, *status, data at out+24. */
static int query(struct rndis_state *st, const struct rndis_dev_info *d, uint32_t oid,
                 const void *info, uint32_t ilen, uint32_t *status)
{
    uint8_t body[256];
    struct rndis_query_req q = {7, oid, ilen, 20, 0};
    memcpy(body, &q, sizeof(q));
    if (ilen)
        memcpy(body + 20, info, ilen);
    int n = req(st, d, RNDIS_MSG_QUERY, body, 20 + ilen);
    assert_true(n >= 24);
    struct rndis_query_complete qc;
    memcpy(&qc, out + 8, sizeof(qc));
    assert_int_equal(qc.req_id, 7);
    *status = qc.status;
    assert_int_equal(24 + qc.info_len, n);
    return (int)qc.info_len;
}

static void test_statistics_and_addresses(void **state)
{
    struct rndis_state st = {0};
    init(&st);
    uint32_t status;
    uint64_t v;
    static const struct {
        uint32_t oid;
        uint64_t want;
    } stats[] = {{OID_GEN_XMIT_OK, 11}, {OID_GEN_RCV_OK, 22}, {OID_GEN_XMIT_ERROR, 3},
                 {OID_GEN_RCV_ERROR, 4}, {OID_GEN_RCV_NO_BUFFER, 5}};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(query(&st, &dev, stats[i].oid, NULL, 0, &status), 8);
        assert_int_equal(status, RNDIS_STATUS_SUCCESS);
        memcpy(&v, out + 24, 8);
        assert_int_equal(v, stats[i].want);
    }
    assert_int_equal(query(&st, &dev, OID_802_3_CURRENT_ADDRESS, NULL, 0, &status), 6);
    assert_memory_equal(out + 24, dev.mac, 6);
    uint32_t u;
    assert_int_equal(query(&st, &dev, OID_GEN_MAXIMUM_TOTAL_SIZE, NULL, 0, &status), 4);
    memcpy(&u, out + 24, 4);
    assert_int_equal(u, 1514);
    /* optional ones fail with no data: friendly name, RSS (one queue) */
    assert_int_equal(query(&st, &dev, OID_GEN_FRIENDLY_NAME, NULL, 0, &status), 0);
    assert_int_equal(status, RNDIS_STATUS_NOT_SUPPORTED);
    assert_int_equal(query(&st, &dev, OID_GEN_RECEIVE_SCALE_CAPABILITIES, NULL, 0, &status), 0);
    assert_int_equal(status, RNDIS_STATUS_NOT_SUPPORTED);
}

static void test_offload_revisions(void **state)
{
    struct rndis_state st = {0};
    init(&st);
    uint32_t status;
    static const struct {
        uint8_t rev;
        uint16_t size;
    } revs[] = {{1, 112}, {2, 144}, {3, 156}, {9, 156}};
    for (size_t i = 0; i < 4; i++) {
        for (int off = 0; off < 2; off++) {
            struct rndis_dev_info d = dev;
            d.offload = off;
            struct ndis_object_header h = {NDIS_OBJECT_TYPE_OFFLOAD, revs[i].rev, revs[i].size};
            int n = query(&st, &d, OID_TCP_OFFLOAD_HARDWARE_CAPS, &h, 4, &status);
            assert_int_equal(status, RNDIS_STATUS_SUCCESS);
            uint16_t want = revs[i].size;
            assert_int_equal(n, want);
            struct ndis_object_header got;
            memcpy(&got, out + 24, 4);
            assert_int_equal(got.type, NDIS_OBJECT_TYPE_OFFLOAD);
            assert_int_equal(got.size, want);
            uint32_t ip4tx;
            memcpy(&ip4tx, out + 24 + 8, 4);
            assert_int_equal(ip4tx != 0, off);
        }
    }
}

/* SET offload parameters (Linux's 28-byte form) with the RSC bytes v4, v6:
 * the completion's status. */
static uint32_t set_rsc(struct rndis_state *st, const struct rndis_dev_info *d, uint8_t v4,
                        uint8_t v6, uint32_t plen)
{
    uint8_t body[20 + 28];
    struct rndis_query_req q = {9, OID_TCP_OFFLOAD_PARAMETERS, plen, 20, 0};
    memcpy(body, &q, 20);
    memset(body + 20, 0, 28);
    body[20] = 0x80;
    body[21] = 3;
    body[22] = (uint8_t)plen;
    body[20 + NDIS_OFFLOAD_PARAMS_RSC_IP4_OFF] = v4;
    body[20 + NDIS_OFFLOAD_PARAMS_RSC_IP6_OFF] = v6;
    assert_int_equal(req(st, d, RNDIS_MSG_SET, body, 20 + plen), 16);
    uint32_t status;
    memcpy(&status, out + 12, 4);
    return status;
}

/* Receive coalescing: offered in the revision-3 capabilities only when the
 * NIC has it; the guest's offload parameters turn it on and off per IP
 * version (0 leaves it), a value past 2 is refused, HALT ends it. */
static void test_rsc(void **state)
{
    struct rndis_state st = {0};
    init(&st);
    uint32_t status;
    for (int rsc = 0; rsc < 2; rsc++)
        for (uint8_t rev = 2; rev <= 3; rev++) {
            struct rndis_dev_info d = dev;
            d.offload = true;
            d.rsc = rsc;
            uint16_t size = rev == 3 ? NDIS_OFFLOAD_SIZE_REV3 : NDIS_OFFLOAD_SIZE_REV2;
            struct ndis_object_header h = {NDIS_OBJECT_TYPE_OFFLOAD, rev, size};
            assert_int_equal(query(&st, &d, OID_TCP_OFFLOAD_HARDWARE_CAPS, &h, 4, &status),
                             size);
            if (rev == 3) {
                assert_int_equal(out[24 + NDIS_OFFLOAD_RSC_IP4_OFF], rsc);
                assert_int_equal(out[24 + NDIS_OFFLOAD_RSC_IP6_OFF], rsc);
            }
        }
    struct rndis_dev_info d = dev;
    d.offload = d.rsc = true;
    assert_int_equal(set_rsc(&st, &d, 2, 2, 28), RNDIS_STATUS_SUCCESS);
    assert_true(st.rsc_ip4 && st.rsc_ip6);
    assert_int_equal(set_rsc(&st, &d, 0, 1, 28), RNDIS_STATUS_SUCCESS);
    assert_true(st.rsc_ip4 && !st.rsc_ip6);
    assert_int_equal(set_rsc(&st, &d, 3, 2, 28), RNDIS_STATUS_INVALID_DATA);
    assert_true(st.rsc_ip4 && !st.rsc_ip6);
    /* the 22-byte form (NVSP 4 and before) has no RSC bytes */
    assert_int_equal(set_rsc(&st, &d, 1, 1, 22), RNDIS_STATUS_SUCCESS);
    assert_true(st.rsc_ip4);
    /* a NIC without RSC keeps it off whatever the guest asks */
    struct rndis_state st2 = {0};
    init(&st2);
    assert_int_equal(set_rsc(&st2, &dev, 2, 2, 28), RNDIS_STATUS_SUCCESS);
    assert_false(st2.rsc_ip4 || st2.rsc_ip6);
    assert_int_equal(req(&st, &d, RNDIS_MSG_HALT, (uint32_t[]){5}, 4), 0);
    assert_false(st.rsc_ip4 || st.rsc_ip6);
}

static void test_keepalive_reset_halt(void **state)
{
    struct rndis_state st = {0};
    init(&st);
    uint32_t filter = 0x0d;
    uint8_t set[24];
    struct rndis_query_req q = {8, OID_GEN_CURRENT_PACKET_FILTER, 4, 20, 0};
    memcpy(set, &q, 20);
    memcpy(set + 20, &filter, 4);
    assert_int_equal(req(&st, &dev, RNDIS_MSG_SET, set, 24), 16);
    assert_int_equal(st.packet_filter, 0x0d);
    uint32_t id = 42;
    assert_int_equal(req(&st, &dev, RNDIS_MSG_KEEPALIVE, &id, 4), 16);
    uint32_t r[4];
    memcpy(r, out, 16);
    assert_int_equal(r[0], RNDIS_MSG_KEEPALIVE | RNDIS_MSG_COMPLETION);
    assert_int_equal(r[2], 42);
    assert_int_equal(r[3], RNDIS_STATUS_SUCCESS);
    uint32_t zero = 0;
    assert_int_equal(req(&st, &dev, RNDIS_MSG_RESET, &zero, 4), 16);
    assert_int_equal(st.packet_filter, 0); /* a reset stops receive */
    /* HALT: no answer, receive stops, QUERY/SET fail until INITIALIZE */
    assert_int_equal(req(&st, &dev, RNDIS_MSG_SET, set, 24), 16);
    assert_int_equal(req(&st, &dev, RNDIS_MSG_HALT, &id, 4), 0);
    assert_false(st.initialized);
    assert_int_equal(st.packet_filter, 0);
    uint32_t status;
    assert_int_equal(query(&st, &dev, OID_802_3_PERMANENT_ADDRESS, NULL, 0, &status), 0);
    assert_int_equal(status, RNDIS_STATUS_FAILURE);
}

struct walked {
    int n;
    size_t len[8];
    bool lso[8];
};

static int on_frame(void *arg, uint8_t *frame, size_t len, const struct tx_offload *o)
{
    struct walked *w = arg;
    w->len[w->n] = len;
    w->lso[w->n] = o->has_lso;
    w->n++;
    return 0;
}

/* Three PACKETs in one section, each padded to 8 (msg_len includes the
 * padding, as hv_netvsc does), the second with a VLAN and an LSO record,
 * then zero padding. */
static void test_walk_batched(void **state)
{
    uint8_t buf[1024];
    memset(buf, 0, sizeof(buf));
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        uint32_t flen = 60 + (uint32_t)i, ppi_len = i == 1 ? 32 : 0;
        uint32_t len = (44 + ppi_len + flen + 7) & ~7u;
        struct rndis_hdr h = {RNDIS_MSG_PACKET, len};
        struct rndis_packet p = {.data_offset = 36 + ppi_len, .data_len = flen,
                                 .ppi_offset = ppi_len ? 36 : 0, .ppi_len = ppi_len};
        memcpy(buf + off, &h, 8);
        memcpy(buf + off + 8, &p, sizeof(p));
        if (ppi_len) {
            uint32_t vlan[4] = {16, 6, 12, 5}, lso[4] = {16, NDIS_PPI_LSO, 12, 1u << 30};
            memcpy(buf + off + 44, vlan, 16);
            memcpy(buf + off + 60, lso, 16);
        }
        off += len;
    }
    struct walked w = {0};
    const char *why = NULL;
    assert_int_equal(rndis_tx_walk(buf, off + 16, on_frame, &w, &why), 3);
    assert_int_equal(w.len[0], 60);
    assert_int_equal(w.len[1], 61);
    assert_int_equal(w.len[2], 62);
    assert_true(w.lso[1]);
    assert_false(w.lso[0] || w.lso[2]);
    /* a PPI record that claims more than its area */
    uint32_t bad[4] = {40, NDIS_PPI_LSO, 12, 0};
    uint32_t len0;
    memcpy(&len0, buf + 4, 4);
    memcpy(buf + len0 + 44, bad, 16);
    memset(&w, 0, sizeof(w));
    assert_int_equal(rndis_tx_walk(buf, off, on_frame, &w, &why), -EPROTO);
    assert_int_equal(w.n, 1); /* the frames before it went out */
}

static int set_rss(struct rndis_state *st, const struct rndis_dev_info *d, uint16_t flags,
                   uint32_t entries, uint32_t channels, uint32_t *status, const char **why)
{
    uint8_t body[400];
    struct ndis_rss_params p = {.hdr = {NDIS_OBJECT_TYPE_RSS_PARAMETERS, 2, sizeof(p)},
                                .flags = flags,
                                .hash_info = NDIS_HASH_FUNC_TOEPLITZ,
                                .table_size = (uint16_t)(4 * entries),
                                .table_offset = sizeof(p),
                                .key_size = 40,
                                .key_offset = sizeof(p) + 4 * entries};
    uint32_t ilen = sizeof(p) + 4 * entries + 40;
    struct rndis_query_req q = {9, OID_GEN_RECEIVE_SCALE_PARAMETERS, ilen, 20, 0};
    memcpy(body, &q, sizeof(q));
    memcpy(body + 20, &p, sizeof(p));
    for (uint32_t i = 0; i < entries; i++) {
        uint32_t v = (entries - 1 - i) % channels;
        memcpy(body + 20 + sizeof(p) + 4 * i, &v, 4);
    }
    for (uint32_t i = 0; i < 40; i++)
        body[20 + sizeof(p) + 4 * entries + i] = (uint8_t)(i + 1);
    uint8_t msg[512];
    struct rndis_hdr h = {RNDIS_MSG_SET, 8 + 20 + ilen};
    memcpy(msg, &h, 8);
    memcpy(msg + 8, body, 20 + ilen);
    *why = NULL;
    int n = rndis_control(st, d, msg, h.len, out, sizeof(out), why);
    assert_int_equal(n, 16);
    memcpy(status, out + 12, 4);
    return n;
}

static void test_rss(void **state)
{
    struct rndis_dev_info mq = dev;
    mq.queues = 4;
    struct rndis_state st = {0};
    init(&st);
    uint32_t status;
    const char *why;
    /* one queue: no capabilities, parameters not supported */
    assert_int_equal(query(&st, &dev, OID_GEN_RECEIVE_SCALE_CAPABILITIES, NULL, 0, &status), 0);
    assert_int_equal(status, RNDIS_STATUS_NOT_SUPPORTED);
    set_rss(&st, &dev, 0, 16, 1, &status, &why);
    assert_int_equal(status, RNDIS_STATUS_NOT_SUPPORTED);
    /* four: the 18-byte object Linux reads */
    assert_int_equal(query(&st, &mq, OID_GEN_RECEIVE_SCALE_CAPABILITIES, NULL, 0, &status), 18);
    assert_int_equal(status, RNDIS_STATUS_SUCCESS);
    struct ndis_rss_caps c;
    memcpy(&c, out + 24, sizeof(c));
    assert_int_equal(c.hdr.type, NDIS_OBJECT_TYPE_RSS_CAPABILITIES);
    assert_int_equal(c.hdr.revision, 2);
    assert_int_equal(c.hdr.size, 18);
    assert_int_equal(c.num_recv_queues, 4);
    assert_int_equal(c.num_table_entries, 128);
    /* disable keeps the table and key but RSS off; enable turns it on */
    set_rss(&st, &mq, NDIS_RSS_PARAM_FLAG_DISABLE_RSS, 16, 4, &status, &why);
    assert_int_equal(status, RNDIS_STATUS_SUCCESS);
    assert_null(why);
    assert_false(st.rss_enabled);
    set_rss(&st, &mq, 0, 32, 3, &status, &why);
    assert_int_equal(status, RNDIS_STATUS_SUCCESS);
    assert_true(st.rss_enabled);
    assert_int_equal(st.rss_table_len, 32);
    assert_int_equal(st.rss_table[0], 31 % 3);
    assert_int_equal(st.rss_table[31], 0);
    assert_int_equal(st.rss_key[39], 40);
    /* a queue past the NIC's: refused, the state as it was */
    set_rss(&st, &mq, 0, 16, 8, &status, &why);
    assert_int_equal(status, RNDIS_STATUS_INVALID_DATA);
    assert_non_null(why);
    assert_true(st.rss_enabled);
    assert_int_equal(st.rss_table_len, 32);
}

/* The RSS parameters exactly as Linux 6.1's hv_netvsc lays them out: its
 * structure is not packed, so the 16-bit sizes are followed by 2 bytes of
 * padding and the object is 40 bytes; 128 entries, a 40-byte key. */
static void test_rss_linux_layout(void **state)
{
    struct rndis_dev_info mq = dev;
    mq.queues = 2;
    struct rndis_state st = {0};
    init(&st);
    static uint8_t msg[8 + 20 + 592];
    uint8_t *info = msg + 8 + 20;
    uint32_t ilen = 40 + 512 + 40, v;
    struct rndis_hdr h = {RNDIS_MSG_SET, sizeof(msg)};
    struct rndis_query_req q = {9, OID_GEN_RECEIVE_SCALE_PARAMETERS, ilen, 20, 0};
    memcpy(msg, &h, 8);
    memcpy(msg + 8, &q, sizeof(q));
    info[0] = NDIS_OBJECT_TYPE_RSS_PARAMETERS;
    info[1] = 2;
    v = 40;
    memcpy(info + 2, &v, 2);                 /* header size */
    v = NDIS_HASH_FUNC_TOEPLITZ;
    memcpy(info + 8, &v, 4);                 /* hash info */
    v = 512;
    memcpy(info + 12, &v, 2);                /* table size, 2 bytes of padding */
    v = 40;
    memcpy(info + 16, &v, 4);                /* table offset */
    v = 40;
    memcpy(info + 20, &v, 2);                /* key size, 2 bytes of padding */
    v = 40 + 512;
    memcpy(info + 24, &v, 4);                /* key offset */
    for (uint32_t i = 0; i < 128; i++) {
        v = i % 2;
        memcpy(info + 40 + 4 * i, &v, 4);
    }
    for (uint32_t i = 0; i < 40; i++)
        info[552 + i] = (uint8_t)(0x80 + i);
    const char *why = NULL;
    uint32_t status;
    assert_int_equal(rndis_control(&st, &mq, msg, sizeof(msg), out, sizeof(out), &why), 16);
    memcpy(&status, out + 12, 4);
    assert_int_equal(status, RNDIS_STATUS_SUCCESS);
    assert_null(why);
    assert_true(st.rss_enabled);
    assert_int_equal(st.rss_table_len, 128);
    assert_int_equal(st.rss_table[127], 1);
    assert_int_equal(st.rss_key[0], 0x80);
    assert_int_equal(st.rss_key[39], 0x80 + 39);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statistics_and_addresses),
        cmocka_unit_test(test_offload_revisions),
        cmocka_unit_test(test_rsc),
        cmocka_unit_test(test_keepalive_reset_halt),
        cmocka_unit_test(test_walk_batched),
        cmocka_unit_test(test_rss),
        cmocka_unit_test(test_rss_linux_layout),
    };
    return cmocka_run_group_tests_name("netvsp_rndis", tests, NULL, NULL);
}
