/* SPDX-License-Identifier: MIT */
/* IC framework: framing, negotiation, UTF conversions, and the channel state
 * machine (driven through the heartbeat plugin, the simplest service). */
#include <errno.h>
#include <string.h>

#include "ic_test.h"
#include "vmbusd/hv_guids.h"

extern const struct vsp_plugin heartbeat_plugin;

static const struct ic_version fw2[] = {{3, 0}, {1, 0}};
static const struct ic_version sd4[] = {{3, 2}, {3, 1}, {3, 0}, {1, 0}};

/* Headers land at the offsets the guest reads. */
static void test_build_layout(void **s)
{
    uint8_t buf[64];
    size_t len = ic_build(buf, sizeof(buf), IC_MSG_HEARTBEAT, (struct ic_version){3, 0},
                          (struct ic_version){3, 0}, 36, 7);
    uint32_t u32;
    uint16_t u16;

    assert_int_equal(len, 64);
    memcpy(&u32, buf, 4);
    assert_int_equal(u32, 1);          /* pipe flags: data */
    memcpy(&u32, buf + 4, 4);
    assert_int_equal(u32, 20 + 36);
    memcpy(&u16, buf + 8, 2);
    assert_int_equal(u16, 3);          /* framework major */
    memcpy(&u16, buf + 12, 2);
    assert_int_equal(u16, IC_MSG_HEARTBEAT);
    memcpy(&u16, buf + 14, 2);
    assert_int_equal(u16, 3);          /* message major */
    memcpy(&u16, buf + 18, 2);
    assert_int_equal(u16, 36);         /* msg size */
    memcpy(&u32, buf + 20, 4);
    assert_int_equal(u32, 0);          /* status */
    assert_int_equal(buf[24], 7);      /* IC transaction id */
    assert_int_equal(buf[25], IC_FLAG_TRANSACTION | IC_FLAG_REQUEST);
    /* Too small a buffer is refused, never overrun. */
    assert_int_equal(ic_build(buf, 63, 1, fw2[0], fw2[0], 36, 0), 0);
    assert_int_equal(ic_build(buf, 10, 1, fw2[0], fw2[0], 0, 0), 0);
}

static void test_build_negotiate(void **s)
{
    uint8_t buf[128];
    size_t len = ic_build_negotiate(buf, sizeof(buf), fw2, 2, sd4, 4, 0);
    uint16_t u16;

    assert_int_equal(len, 28 + 8 + 6 * 4);
    memcpy(&u16, buf + 12, 2);
    assert_int_equal(u16, IC_MSG_NEGOTIATE);
    memcpy(&u16, buf + 28, 2);
    assert_int_equal(u16, 2);
    memcpy(&u16, buf + 30, 2);
    assert_int_equal(u16, 4);
    memcpy(&u16, buf + 36, 2);
    assert_int_equal(u16, 3);          /* fw[0] = 3.0 */
    memcpy(&u16, buf + 44, 2);
    assert_int_equal(u16, 3);          /* msg[0] = 3.2 */
    memcpy(&u16, buf + 46, 2);
    assert_int_equal(u16, 2);
    assert_int_equal(ic_build_negotiate(buf, sizeof(buf), fw2, 0, sd4, 4, 0), 0);
    assert_int_equal(ic_build_negotiate(buf, 40, fw2, 2, sd4, 4, 0), 0);
}

static void test_parse(void **s)
{
    uint8_t buf[64] = {0};
    struct ic_msg m;
    const char *why = NULL;

    ic_build(buf, sizeof(buf), 1, fw2[0], fw2[0], 8, 0);
    assert_int_equal(ic_parse(buf, 36, &m, &why), -EBADMSG); /* request, not response */
    buf[25] = 5;
    assert_int_equal(ic_parse(buf, 36, &m, &why), 0);
    assert_int_equal(m.body_len, 8);
    assert_ptr_equal(m.body, buf + 28);
    assert_int_equal(ic_parse(buf, 27, &m, &why), -EBADMSG);
    assert_non_null(why);
    assert_int_equal(ic_parse(buf, 0, &m, NULL), -EBADMSG);
    assert_int_equal(ic_parse(NULL, 40, &m, NULL), -EBADMSG);
}

/* Build a negotiate reply body with the given counts and entries. */
static size_t neg_reply(uint8_t *buf, uint16_t nfw, uint16_t nmsg, const struct ic_version *v,
                        unsigned nv, uint32_t status)
{
    struct ic_negotiate neg = {nfw, nmsg, 0};
    size_t len = IC_HDRS_SIZE + 8 + 4 * nv;

    memset(buf, 0, len);
    ic_build(buf, len, IC_MSG_NEGOTIATE, fw2[1], fw2[1], len - IC_HDRS_SIZE, 0);
    buf[25] = 5;
    memcpy(buf + 20, &status, 4);
    memcpy(buf + 28, &neg, 8);
    memcpy(buf + 36, v, 4 * nv);
    return len;
}

static void test_parse_negotiate(void **s)
{
    uint8_t buf[600];
    struct ic_version good[2] = {{3, 0}, {3, 1}}, bad_fw[2] = {{2, 0}, {3, 1}},
                      bad_msg[2] = {{3, 0}, {9, 9}}, fw, mv;
    struct ic_msg m;
    size_t len;

    len = neg_reply(buf, 1, 1, good, 2, 0);
    assert_int_equal(ic_parse(buf, len, &m, NULL), 0);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), 0);
    assert_int_equal(fw.major, 3);
    assert_int_equal(mv.minor, 1);

    /* 0/0: the guest has no common version. */
    len = neg_reply(buf, 0, 0, good, 2, 0);
    ic_parse(buf, len, &m, NULL);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), -EPROTONOSUPPORT);
    /* Counts above 100. */
    len = neg_reply(buf, 101, 1, good, 2, 0);
    ic_parse(buf, len, &m, NULL);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), -EBADMSG);
    len = neg_reply(buf, 1, 0xffff, good, 2, 0);
    ic_parse(buf, len, &m, NULL);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), -EBADMSG);
    /* Counts other than 1/1. */
    len = neg_reply(buf, 2, 1, good, 2, 0);
    ic_parse(buf, len, &m, NULL);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), -EBADMSG);
    len = neg_reply(buf, 1, 0, good, 2, 0);
    ic_parse(buf, len, &m, NULL);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), -EBADMSG);
    /* 1/1 but the entries are cut off. */
    len = neg_reply(buf, 1, 1, good, 1, 0);
    ic_parse(buf, len, &m, NULL);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), -EBADMSG);
    len = neg_reply(buf, 1, 1, good, 0, 0);
    ic_parse(buf, len - 2, &m, NULL);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), -EBADMSG);
    /* Versions that were never offered. */
    len = neg_reply(buf, 1, 1, bad_fw, 2, 0);
    ic_parse(buf, len, &m, NULL);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), -EBADMSG);
    len = neg_reply(buf, 1, 1, bad_msg, 2, 0);
    ic_parse(buf, len, &m, NULL);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), -EBADMSG);
    /* A failure status. */
    len = neg_reply(buf, 1, 1, good, 2, IC_E_FAIL);
    ic_parse(buf, len, &m, NULL);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), -EPROTONOSUPPORT);
    /* Not a negotiate message at all. */
    len = neg_reply(buf, 1, 1, good, 2, 0);
    buf[12] = IC_MSG_HEARTBEAT;
    ic_parse(buf, len, &m, NULL);
    assert_int_equal(ic_parse_negotiate(&m, fw2, 2, sd4, 4, &fw, &mv, NULL), -EBADMSG);
}

static void test_utf8_to_utf16(void **s)
{
    uint8_t out[16];
    const uint8_t want[] = {'A', 0, 0xe9, 0, 0xac, 0x20, 0x3d, 0xd8, 0x00, 0xde, 0, 0};

    /* "A", e-acute, euro sign, U+1F600 (surrogate pair) */
    assert_int_equal(ic_utf8_to_utf16le("A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10, out,
                                        sizeof(out)), 12);
    assert_memory_equal(out, want, 12);
    assert_int_equal(ic_utf8_to_utf16le("", 0, out, sizeof(out)), 2);
    assert_int_equal(ic_utf8_to_utf16le("abcdefgh", 8, out, sizeof(out)), -ENOSPC); /* no NUL room */
    assert_int_equal(ic_utf8_to_utf16le("abcdefg", 7, out, sizeof(out)), 16);
    assert_int_equal(ic_utf8_to_utf16le("\xc0\x80", 2, out, sizeof(out)), -EILSEQ); /* overlong */
    assert_int_equal(ic_utf8_to_utf16le("\x80", 1, out, sizeof(out)), -EILSEQ);
    assert_int_equal(ic_utf8_to_utf16le("\xe2\x82", 2, out, sizeof(out)), -EILSEQ); /* cut */
    assert_int_equal(ic_utf8_to_utf16le("\xed\xa0\x80", 3, out, sizeof(out)), -EILSEQ);
    assert_int_equal(ic_utf8_to_utf16le("\xf4\x90\x80\x80", 4, out, sizeof(out)), -EILSEQ);
    assert_int_equal(ic_utf8_to_utf16le("a\0b", 3, out, sizeof(out)), -EILSEQ);
    assert_int_equal(ic_utf8_to_utf16le("\xff", 1, out, sizeof(out)), -EILSEQ);
}

static void test_utf16_to_utf8(void **s)
{
    const uint8_t in[] = {'A', 0, 0xe9, 0, 0xac, 0x20, 0x3d, 0xd8, 0x00, 0xde, 0, 0};
    const uint8_t unterminated[] = {'A', 0, 'B', 0};
    const uint8_t lone_hi[] = {0x3d, 0xd8, 'A', 0, 0, 0};
    const uint8_t lone_lo[] = {0x00, 0xde, 0, 0};
    const uint8_t hi_at_end[] = {0x3d, 0xd8};
    char out[32];

    assert_int_equal(ic_utf16le_to_utf8(in, sizeof(in), out, sizeof(out)), 10);
    assert_string_equal(out, "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    assert_int_equal(ic_utf16le_to_utf8(unterminated, 4, out, sizeof(out)), -EILSEQ);
    assert_int_equal(ic_utf16le_to_utf8(in, 3, out, sizeof(out)), -EILSEQ); /* odd */
    assert_int_equal(ic_utf16le_to_utf8(lone_hi, 6, out, sizeof(out)), -EILSEQ);
    assert_int_equal(ic_utf16le_to_utf8(lone_lo, 4, out, sizeof(out)), -EILSEQ);
    assert_int_equal(ic_utf16le_to_utf8(hi_at_end, 2, out, sizeof(out)), -EILSEQ);
    assert_int_equal(ic_utf16le_to_utf8(in, sizeof(in), out, 10), -ENOSPC);
    assert_int_equal(ic_utf16le_to_utf8(in, sizeof(in), out, 11), 10);
    assert_int_equal(ic_utf16le_to_utf8(in, 0, out, sizeof(out)), -EILSEQ);
    /* Text after the NUL is ignored. */
    const uint8_t after[] = {'x', 0, 0, 0, 0x00, 0xde};
    assert_int_equal(ic_utf16le_to_utf8(after, 6, out, sizeof(out)), 1);
}

static void test_guid_and_params(void **s)
{
    struct hv_guid g;
    const uint8_t want[16] = {0x39, 0x4f, 0x16, 0x57, 0x15, 0x91, 0x78, 0x4e,
                              0xab, 0x55, 0x38, 0x2f, 0x3b, 0xd5, 0x42, 0x2d};
    unsigned v;
    const char *str = NULL;
    unsigned num = 0;
    const struct ic_param table[] = {{"n", 1, 10, &num, NULL}, {"s", 0, 0, NULL, &str},
                                     {"pre.", 0, 0, NULL, &str}};
    const char *k1[] = {"n", "s", NULL}, *v1[] = {"7", "x", NULL};
    const char *k2[] = {"bogus", NULL}, *v2[] = {"1", NULL};
    const char *k3[] = {"n", NULL}, *v3[] = {"11", NULL};
    const char *k4[] = {"pre.", NULL}, *v4[] = {"1", NULL};

    assert_int_equal(ic_guid_parse("57164f39-9115-4e78-ab55-382f3bd5422d", &g), 0);
    assert_memory_equal(g.b, want, 16);
    assert_int_equal(ic_guid_parse("57164f39-9115-4e78-ab55-382f3bd5422", &g), -EINVAL);
    assert_int_equal(ic_guid_parse("57164f39+9115-4e78-ab55-382f3bd5422d", &g), -EINVAL);
    assert_int_equal(ic_guid_parse("57164f39-9115-4e78-ab55-382f3bd5422g", &g), -EINVAL);
    assert_int_equal(ic_guid_parse(NULL, &g), -EINVAL);

    assert_int_equal(ic_param_uint("100", 1, 100, &v), 0);
    assert_int_equal(v, 100);
    assert_int_equal(ic_param_uint("101", 1, 100, &v), -EINVAL);
    assert_int_equal(ic_param_uint("-1", 0, 100, &v), -EINVAL);
    assert_int_equal(ic_param_uint("1x", 0, 100, &v), -EINVAL);
    assert_int_equal(ic_param_uint("", 0, 100, &v), -EINVAL);

    assert_int_equal(ic_parse_params("t", k1, v1, table, 3), 0);
    assert_int_equal(num, 7);
    assert_string_equal(str, "x");
    assert_int_equal(ic_parse_params("t", k2, v2, table, 3), -EINVAL);
    assert_int_equal(ic_parse_params("t", k3, v3, table, 3), -EINVAL);
    assert_int_equal(ic_parse_params("t", k4, v4, table, 3), -EINVAL); /* empty suffix */
    assert_int_equal(ic_parse_params("t", NULL, NULL, table, 3), 0);
}

/* ---- the channel state machine ------------------------------------------ */

static int fx_setup(void **s)
{
    static struct fx f;

    f.p = plugin_setup(&heartbeat_plugin, NULL, NULL, &f.state, &f.part);
    f.ch = fake_channel(f.p, 0);
    *s = &f;
    return 0;
}

static int fx_teardown(void **s)
{
    struct fx *f = *s;

    plugin_teardown(&heartbeat_plugin, f->p, f->state, f->part);
    return 0;
}

/* Open sends the negotiate (after open returned) with the offered lists. */
static void test_open_negotiates(void **s)
{
    struct fx *f = *s;
    const struct fake_sent *n;
    struct ic_negotiate neg;
    struct hv_guid cls;

    ic_guid_parse(HV_CLASS_HEARTBEAT, &cls);
    assert_memory_equal(fake_channel_offer(f->ch)->class_id.b, cls.b, 16);
    assert_int_equal(fake_sent_count(f->ch), 0);
    assert_int_equal(fake_open(f->ch), 0);
    assert_int_equal(fake_sent_count(f->ch), 1);
    n = fake_sent_last(f->ch);
    assert_int_equal(sent_hdr(n).msg_type, IC_MSG_NEGOTIATE);
    assert_int_equal(sent_hdr(n).flags, IC_FLAG_TRANSACTION | IC_FLAG_REQUEST);
    memcpy(&neg, n->data + 28, 8);
    assert_int_equal(neg.fw_count, 2);
    assert_int_equal(neg.msg_count, 2);
    assert_int_equal(n->len, 28 + 8 + 16);
    assert_string_equal(fake_status(f->p, "heartbeat.version"), "none");

    guest_negotiate(f->ch, linux_hb_msg, 2);
    assert_string_equal(fake_status(f->p, "heartbeat.version"), "3.0");
    /* Ready: the first heartbeat followed at once. */
    assert_int_equal(fake_sent_count(f->ch), 2);
    assert_int_equal(sent_hdr(fake_sent_last(f->ch)).msg_type, IC_MSG_HEARTBEAT);
    assert_int_equal(sent_hdr(fake_sent_last(f->ch)).framework.major, 3);
}

/* The guest offers nothing in common (0/0): the channel fails quietly. */
static void test_negotiate_zero(void **s)
{
    struct fx *f = *s;
    const struct icg_ver none[1] = {{7, 7}};

    fake_open(f->ch);
    guest_negotiate(f->ch, none, 1);
    assert_string_equal(fake_status(f->p, "heartbeat.version"), "unsupported");
    assert_int_equal(fake_sent_count(f->ch), 1); /* no heartbeat */
    assert_int_equal(fake_timer_count(), 0);
    /* Anything after that is ignored with a log line. */
    const struct fake_sent *n = fake_sent_last(f->ch);
    uint8_t buf[128];
    size_t len = guest_echo(n, buf, sizeof(buf));
    unsigned warns = fake_log_count(VSP_LOG_WARN);
    guest_send(f->ch, n->trans_id, buf, len);
    assert_true(fake_log_count(VSP_LOG_WARN) > warns);
}

/* Malformed replies are logged and ignored; a good one still works after. */
static void test_bad_replies_then_good(void **s)
{
    struct fx *f = *s;
    const struct fake_sent *n;
    uint8_t buf[256], good[256];
    size_t glen;
    struct ic_negotiate neg;
    unsigned warns, guest_errors;

    fake_open(f->ch);
    n = fake_sent_last(f->ch);
    glen = guest_negotiate_reply(n, good, sizeof(good), linux_hb_msg, 2);

    warns = fake_log_count(VSP_LOG_WARN);
    guest_errors = fake_guest_error_count();
    /* truncated below the IC headers */
    guest_send(f->ch, n->trans_id, good, 20);
    /* empty */
    guest_send(f->ch, n->trans_id, good, 0);
    /* not a response */
    memcpy(buf, good, glen);
    buf[25] = IC_FLAG_TRANSACTION | IC_FLAG_REQUEST;
    guest_send(f->ch, n->trans_id, buf, glen);
    /* counts > 100 */
    memcpy(buf, good, glen);
    neg = (struct ic_negotiate){200, 1, 0};
    memcpy(buf + 28, &neg, 4);
    guest_send(f->ch, n->trans_id, buf, glen);
    /* counts 1/1 but truncated before the versions */
    guest_send(f->ch, n->trans_id, good, 28 + 8 + 4);
    /* a version that was not offered */
    memcpy(buf, good, glen);
    buf[28 + 12] = 9;
    guest_send(f->ch, n->trans_id, buf, glen);
    /* wrong trans_id */
    guest_send(f->ch, n->trans_id + 100, good, glen);
    /* a wrong message type on this channel */
    memcpy(buf, good, glen);
    buf[12] = IC_MSG_SHUTDOWN;
    guest_send(f->ch, n->trans_id, buf, glen);
    /* a heartbeat reply before negotiation */
    memcpy(buf, good, glen);
    buf[12] = IC_MSG_HEARTBEAT;
    guest_send(f->ch, n->trans_id, buf, glen);
    /* a completion packet instead of inband data */
    fake_inject(f->ch, VM_PKT_COMP, n->trans_id, good, glen);
    fake_receive(f->ch);
    assert_int_equal(fake_log_count(VSP_LOG_WARN) - warns, 10);
    /* reported as the guest's errors (vmbusd counts and rate-limits those) */
    assert_int_equal(fake_guest_error_count() - guest_errors, 10);
    assert_true(fake_log_contains("bad guest message ignored"));
    assert_string_equal(fake_status(f->p, "heartbeat.version"), "none");
    assert_int_equal(fake_sent_count(f->ch), 1);

    guest_send(f->ch, n->trans_id, good, glen);
    assert_string_equal(fake_status(f->p, "heartbeat.version"), "3.0");
    assert_int_equal(fake_sent_count(f->ch), 2);
    /* A second negotiate reply is unexpected now (new log window first). */
    fake_advance_ms(20000);
    warns = fake_log_count(VSP_LOG_WARN);
    guest_send(f->ch, n->trans_id, good, glen);
    assert_int_equal(fake_log_count(VSP_LOG_WARN), warns + 1);
}

/* A flood of bad packets is rate-limited in the log. */
static void test_log_rate_limit(void **s)
{
    struct fx *f = *s;
    uint8_t junk[8] = {0};

    fake_open(f->ch);
    unsigned warns = fake_log_count(VSP_LOG_WARN);
    for (int i = 0; i < 50; i++)
        fake_inject(f->ch, VM_PKT_DATA_INBAND, 1, junk, sizeof(junk));
    fake_receive(f->ch);
    assert_int_equal(fake_log_count(VSP_LOG_WARN) - warns, 10);
    fake_advance_ms(20000);
    fake_inject(f->ch, VM_PKT_DATA_INBAND, 1, junk, sizeof(junk));
    fake_receive(f->ch);
    assert_true(fake_log_contains("40 more bad guest messages"));
}

/* A full ring parks the negotiate; ops->writable sends it. */
static void test_park_on_full_ring(void **s)
{
    struct fx *f = *s;

    fake_fail_sends(f->ch, -EAGAIN, 1);
    fake_open(f->ch);
    assert_int_equal(fake_sent_count(f->ch), 0);
    fake_writable(f->ch);
    assert_int_equal(fake_sent_count(f->ch), 1);
    guest_negotiate(f->ch, linux_hb_msg, 2);
    assert_string_equal(fake_status(f->p, "heartbeat.version"), "3.0");
    fake_writable(f->ch); /* nothing parked: harmless */
}

/* vmbusd runs work queued from open only once the channel is open (vsp.h):
 * the negotiate goes out from that first work item, with no retry timer. */
static void test_start_after_open(void **s)
{
    struct fx *f = *s;
    uint8_t ud[120] = {0};

    assert_int_equal(fake_channel_offer(f->ch)->ops->open(f->ch, ud, sizeof(ud)), 0);
    assert_int_equal(fake_sent_count(f->ch), 0); /* never from open itself */
    fake_set_open(f->ch, true);                  /* what vmbusd does after open */
    fake_run_work();
    assert_int_equal(fake_sent_count(f->ch), 1);
    assert_int_equal(sent_hdr(fake_sent_last(f->ch)).msg_type, IC_MSG_NEGOTIATE);
    assert_int_equal(fake_timer_count(), 0);
}

/* The guest closed the channel before the start work ran: nothing is sent or
 * retried; close follows and the next open negotiates. */
static void test_start_closed_meanwhile(void **s)
{
    struct fx *f = *s;
    uint8_t ud[120] = {0};

    assert_int_equal(fake_channel_offer(f->ch)->ops->open(f->ch, ud, sizeof(ud)), 0);
    fake_run_work();
    assert_int_equal(fake_sent_count(f->ch), 0);
    assert_int_equal(fake_timer_count(), 0);
    fake_close(f->ch);
    fake_open(f->ch);
    assert_int_equal(fake_sent_count(f->ch), 1);
    assert_int_equal(sent_hdr(fake_sent_last(f->ch)).msg_type, IC_MSG_NEGOTIATE);
}

/* Close and reopen: state resets and negotiation starts again. */
static void test_reopen(void **s)
{
    struct fx *f = *s;

    fake_open(f->ch);
    guest_negotiate(f->ch, linux_hb_msg, 2);
    assert_int_equal(fake_timer_count(), 1);
    fake_close(f->ch);
    /* The timer stays (vmbusd cancels it with the partition) but idles. */
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "none");
    fake_sent_clear(f->ch);
    fake_set_open(f->ch, true);
    fake_fire_timers(f->ch);
    assert_int_equal(fake_sent_count(f->ch), 0);
    fake_set_open(f->ch, false);
    fake_open(f->ch);
    assert_int_equal(fake_sent_count(f->ch), 1);
    assert_int_equal(sent_hdr(fake_sent_last(f->ch)).msg_type, IC_MSG_NEGOTIATE);
    guest_negotiate(f->ch, linux_hb_msg + 1, 1); /* an old guest: 1.0 only */
    assert_string_equal(fake_status(f->p, "heartbeat.version"), "1.0");
    assert_int_equal(fake_timer_count(), 1); /* reused, not doubled */
    fake_fire_timers(f->ch);
    assert_int_equal(sent_hdr(fake_sent_last(f->ch)).msg_type, IC_MSG_HEARTBEAT);
    assert_int_equal(sent_hdr(fake_sent_last(f->ch)).msg_version.major, 1);
}

/* A ring error from vsp_recv is logged, not fatal. */
static void test_recv_error(void **s)
{
    struct fx *f = *s;

    fake_open(f->ch);
    fake_set_recv_error(f->ch, -EIO);
    unsigned warns = fake_log_count(VSP_LOG_WARN);
    fake_receive(f->ch);
    assert_int_equal(fake_log_count(VSP_LOG_WARN), warns + 1);
}

/* ---- mutated answers to every service (run under ASan/UBSan too) -------- */

extern const struct vsp_plugin shutdown_plugin;
extern const struct vsp_plugin timesync_plugin;
extern const struct vsp_plugin kvp_plugin;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static void mutate_service(const struct vsp_plugin *pl, const struct icg_ver *msg, unsigned n,
                           const char *const *keys, const char *const *vals)
{
    static uint8_t buf[8192];
    void *st, *part;
    struct vsp_partition *p = plugin_setup(pl, keys, vals, &st, &part);
    struct vsp_channel *ch = fake_channel(p, 0);

    fake_open(ch);
    guest_negotiate(ch, msg, n);
    for (int i = 0; i < 3000; i++) {
        const struct fake_sent *s = fake_sent_last(ch);
        size_t len = guest_echo(s, buf, sizeof(buf));
        unsigned flips = 1 + rnd() % 6;

        if (len > 36 + 2572 && buf[12] == IC_MSG_KVP && buf[28] == 3 && rnd() % 2) {
            /* a well-formed ENUMERATE answer as the base to mutate */
            uint32_t t = 1, ks = 8, vs = 4;
            memcpy(buf + 36, &t, 4);
            memcpy(buf + 40, &ks, 4);
            memcpy(buf + 44, &vs, 4);
            memcpy(buf + 48, "K\0e\0y\0\0\0", 8);
            memcpy(buf + 48 + 512, "v\0\0\0", 4);
            flips = rnd() % 3;
        }

        for (unsigned k = 0; k < flips; k++) {
            /* mostly the headers and the first record fields */
            size_t pos = (rnd() & 1) ? rnd() % 64 : rnd() % (len ? len : 1);
            buf[pos] = (uint8_t)rnd();
        }
        if (rnd() % 4 == 0)
            len = rnd() % (len + 1);
        if (rnd() % 3)
            buf[25] |= IC_FLAG_RESPONSE;
        guest_send(ch, (rnd() % 8) ? s->trans_id : rnd(), buf, len);
        if (rnd() % 5 == 0) {
            fake_advance_ms(rnd() % 3000);
            fake_fire_timers(ch);
        }
        if (rnd() % 500 == 0) {
            fake_close(ch);
            fake_open(ch);
            guest_negotiate(ch, msg, n);
        }
        if (fake_sent_count(ch) > 400) {
            fake_sent_clear(ch);
            fake_fire_timers(ch); /* something to answer again */
            if (!fake_sent_count(ch)) {
                fake_close(ch);
                fake_open(ch);
                guest_negotiate(ch, msg, n);
            }
        }
    }
    plugin_teardown(pl, p, st, part);
}

static void test_mutated_answers(void **s)
{
    const char *kk[] = {"poll_ms", "timeout_ms", "enumerate", NULL},
               *kv[] = {"1000", "1000", "0,1,2,3,4", NULL};

    mutate_service(&heartbeat_plugin, linux_hb_msg, 2, NULL, NULL);
    mutate_service(&shutdown_plugin, linux_sd_msg, 4, NULL, NULL);
    mutate_service(&timesync_plugin, linux_ts_msg, 3, NULL, NULL);
    mutate_service(&kvp_plugin, linux_kvp_msg, 3, kk, kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_layout),
        cmocka_unit_test(test_build_negotiate),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_negotiate),
        cmocka_unit_test(test_utf8_to_utf16),
        cmocka_unit_test(test_utf16_to_utf8),
        cmocka_unit_test(test_guid_and_params),
        cmocka_unit_test_setup_teardown(test_open_negotiates, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_negotiate_zero, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_replies_then_good, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_log_rate_limit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_park_on_full_ring, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_start_after_open, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_start_closed_meanwhile, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reopen, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_recv_error, fx_setup, fx_teardown),
        cmocka_unit_test(test_mutated_answers),
    };
    return cmocka_run_group_tests_name("ic framework", tests, NULL, NULL);
}
