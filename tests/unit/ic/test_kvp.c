/* SPDX-License-Identifier: MIT */
/* KVP VSP: transactions, the queue, control commands, hostile answers. */
#include <errno.h>
#include <stdio.h>
#include <time.h>
#include <string.h>

#include "ic_test.h"

extern const struct vsp_plugin kvp_plugin;

#define KVP_LEN (28 + 7430)
#define REC 12 + 512 + 2048

static struct fx fxs;

/* keys/values: extra parameters, NULL-terminated; negotiate when ready. */
static struct fx *fx_new(const char *const *keys, const char *const *vals, bool ready)
{
    fxs.p = plugin_setup(&kvp_plugin, keys, vals, &fxs.state, &fxs.part);
    fxs.ch = fake_channel(fxs.p, 0);
    fake_open(fxs.ch);
    if (ready)
        guest_negotiate(fxs.ch, linux_kvp_msg, 3);
    return &fxs;
}

static void fx_free(struct fx *f)
{
    /* KVP answers are ~7.5 KiB: never send the next request before the
     * batch holding the previous answer is drained. */
    assert_int_equal(fake_sends_before_commit(f->ch), 0);
    plugin_teardown(&kvp_plugin, f->p, f->state, f->part);
}

static int body_op(const struct fake_sent *s)
{
    return s->data[28];
}

static int body_pool(const struct fake_sent *s)
{
    return s->data[29];
}

/* Answer the last request like Linux would: ENUMERATE -> key/value, GET ->
 * value, others just the status. */
static void answer(struct fx *f, uint32_t status, const char *key, const char *value)
{
    static uint8_t buf[KVP_LEN];
    const struct fake_sent *s = fake_sent_last(f->ch);
    size_t len = guest_echo(s, buf, sizeof(buf));

    assert_int_equal(len, KVP_LEN);
    icg_set_status(buf, status);
    if (status == IC_S_OK && body_op(s) == 3)
        icg_kvp_rec_put(buf + 28 + 8, key, value);
    else if (status == IC_S_OK && body_op(s) == 0)
        icg_kvp_rec_put(buf + 28 + 4, NULL, value);
    guest_send(f->ch, s->trans_id, buf, len);
}

static char *utf16_key(const struct fake_sent *s, size_t off, char *out)
{
    uint32_t ks;
    size_t i;

    memcpy(&ks, s->data + off, 4);
    for (i = 0; i + 1 < ks / 2; i++)
        out[i] = (char)s->data[off + 8 + 2 * i];
    out[i] = '\0';
    return out;
}

/* ---- without hv_kvp_daemon, then with it ------------------------------- */

static void test_no_daemon_then_ready(void **s)
{
    const char *keys[] = {"pool0.Preset", NULL}, *vals[] = {"from-config", NULL};
    struct fx *f = fx_new(keys, vals, false);
    char reply[4096], k[600];
    const struct fake_sent *m;
    uint32_t u32;

    /* The guest never answers the negotiate: commands fail, nothing else. */
    assert_int_equal(fake_sent_count(f->ch), 1);
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-get", "2 OSName", reply,
                                        sizeof(reply)), -ENOTCONN);
    assert_non_null(strstr(reply, "hv_kvp_daemon"));
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-list", "2", reply,
                                        sizeof(reply)), -ENOTCONN);
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-set", "1 A b", reply,
                                        sizeof(reply)), -ENOTCONN);
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-set", "0 Later value two",
                                        reply, sizeof(reply)), 0);
    assert_non_null(strstr(reply, "stored"));
    assert_int_equal(fake_sent_count(f->ch), 1);
    assert_int_equal(fake_timer_count(), 0);

    /* The daemon starts: the negotiate is answered, pool 0 is pushed. */
    guest_negotiate(f->ch, linux_kvp_msg, 3);
    assert_string_equal(fake_status(f->p, "kvp.version"), "4.0");
    assert_int_equal(fake_sent_count(f->ch), 2); /* one at a time */
    m = fake_sent_last(f->ch);
    assert_int_equal(m->len, KVP_LEN);
    assert_int_equal(sent_hdr(m).msg_type, IC_MSG_KVP);
    assert_int_equal(sent_hdr(m).msg_size, 7430);
    assert_int_equal(body_op(m), 1);
    assert_int_equal(body_pool(m), 0);
    memcpy(&u32, m->data + 32, 4);
    assert_int_equal(u32, 1); /* REG_SZ */
    assert_string_equal(utf16_key(m, 32 + 4, k), "Preset");
    memcpy(&u32, m->data + 36, 4);
    assert_int_equal(u32, 14);
    memcpy(&u32, m->data + 40, 4);
    assert_int_equal(u32, 24); /* "from-config" + NUL */
    assert_int_equal(m->data[32 + 12 + 512], 'f');
    answer(f, IC_S_OK, NULL, NULL);

    m = fake_sent_last(f->ch);
    assert_int_equal(body_op(m), 1);
    assert_string_equal(utf16_key(m, 32 + 4, k), "Later");
    assert_int_equal(m->data[32 + 12 + 512 + 2 * 6], 't'); /* "value two" */
    answer(f, IC_S_OK, NULL, NULL);

    /* Then the auto pool is enumerated and published. */
    m = fake_sent_last(f->ch);
    assert_int_equal(body_op(m), 3);
    assert_int_equal(body_pool(m), 2);
    memcpy(&u32, m->data + 32, 4);
    assert_int_equal(u32, 0);
    answer(f, IC_S_OK, "FullyQualifiedDomainName", "vm1.example.org");
    m = fake_sent_last(f->ch);
    memcpy(&u32, m->data + 32, 4);
    assert_int_equal(u32, 1);
    answer(f, IC_S_OK, "OSName", "Debian GNU/Linux");
    answer(f, IC_S_CONT, NULL, NULL);
    assert_string_equal(fake_status(f->p, "kvp.2.FullyQualifiedDomainName"), "vm1.example.org");
    assert_string_equal(fake_status(f->p, "kvp.2.OSName"), "Debian GNU/Linux");
    unsigned n = fake_sent_count(f->ch);
    fake_fire_timers(f->ch);
    assert_int_equal(fake_sent_count(f->ch), n); /* idle */
    fx_free(f);
}

/* ---- control commands over a thread ------------------------------------ */

static struct ctl_call *ctl(struct fx *f, const char *cmd, const char *args)
{
    static struct ctl_call c;
    unsigned before = fake_sent_count(f->ch);

    memset(&c, 0, sizeof(c));
    c.pl = &kvp_plugin;
    c.state = f->state;
    c.p = f->p;
    c.part_state = f->part;
    c.cmd = cmd;
    c.args = args;
    ctl_start(&c);
    assert_true(fake_wait_sent(f->ch, before + 1, 5000));
    return &c;
}

static const char *const no_enum_k[] = {"enumerate", NULL};
static const char *const no_enum_v[] = {"none", NULL};

static void test_list_get_delete(void **s)
{
    struct fx *f = fx_new(no_enum_k, no_enum_v, true);
    struct ctl_call *c;
    char k[600];

    assert_int_equal(fake_sent_count(f->ch), 1);
    c = ctl(f, "kvp-list", "3");
    assert_int_equal(body_pool(fake_sent_last(f->ch)), 3);
    answer(f, IC_S_OK, "alpha", "1");
    answer(f, IC_S_OK, "beta", "two words");
    answer(f, IC_S_OK, "gamma", "");
    answer(f, IC_S_CONT, NULL, NULL);
    assert_int_equal(ctl_join(c), 0);
    assert_string_equal(c->reply, "alpha=1\nbeta=two words\ngamma=\n");
    assert_string_equal(fake_status(f->p, "kvp.3.beta"), "two words");

    c = ctl(f, "kvp-get", "1 color");
    assert_int_equal(body_op(fake_sent_last(f->ch)), 0);
    assert_string_equal(utf16_key(fake_sent_last(f->ch), 32 + 4, k), "color");
    answer(f, IC_S_OK, NULL, "blue");
    assert_int_equal(ctl_join(c), 0);
    assert_string_equal(c->reply, "blue");
    assert_string_equal(fake_status(f->p, "kvp.1.color"), "blue");

    c = ctl(f, "kvp-get", "1 nothing");
    answer(f, IC_S_CONT, NULL, NULL);
    assert_int_equal(ctl_join(c), -ENOENT);

    c = ctl(f, "kvp-delete", "1 color");
    assert_int_equal(body_op(fake_sent_last(f->ch)), 2);
    uint32_t ks;
    memcpy(&ks, fake_sent_last(f->ch)->data + 32, 4);
    assert_int_equal(ks, 12);
    assert_int_equal(fake_sent_last(f->ch)->data[36], 'c');
    answer(f, IC_S_OK, NULL, NULL);
    assert_int_equal(ctl_join(c), 0);
    assert_string_equal(fake_status(f->p, "kvp.1.color"), "");

    c = ctl(f, "kvp-set", "0 Name some value");
    answer(f, IC_E_FAIL, NULL, NULL);
    assert_int_equal(ctl_join(c), -EREMOTEIO);
    assert_non_null(strstr(c->reply, "0x80004005"));

    char reply[512];
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-status", "", reply,
                                        sizeof(reply)), 0);
    assert_non_null(strstr(reply, "1 host keys in pool 0"));
    fx_free(f);
}

/* One malformed answer to a kvp-list: the command fails, nothing crashes. */
typedef void (*mutate_fn)(uint8_t *buf, size_t *len);

static void bad_list_answer(struct fx *f, mutate_fn mut, int want)
{
    static uint8_t buf[KVP_LEN];
    struct ctl_call *c = ctl(f, "kvp-list", "2");
    const struct fake_sent *m = fake_sent_last(f->ch);
    size_t len = guest_echo(m, buf, sizeof(buf));
    unsigned warns = fake_log_count(VSP_LOG_WARN);

    fake_advance_ms(20000); /* a fresh log window every time */
    icg_kvp_rec_put(buf + 28 + 8, "Key", "Value");
    mut(buf, &len);
    guest_send(f->ch, m->trans_id, buf, len);
    assert_int_equal(ctl_join(c), want);
    if (want == -EBADMSG)
        assert_int_equal(fake_log_count(VSP_LOG_WARN), warns + 1);
}

static void m_key_size_big(uint8_t *b, size_t *len)
{
    uint32_t v = 1024;
    memcpy(b + 36 + 4, &v, 4);
}
static void m_key_size_odd(uint8_t *b, size_t *len)
{
    uint32_t v = 7;
    memcpy(b + 36 + 4, &v, 4);
}
static void m_key_size_zero(uint8_t *b, size_t *len)
{
    uint32_t v = 0;
    memcpy(b + 36 + 4, &v, 4);
}
static void m_key_unterminated(uint8_t *b, size_t *len)
{
    uint32_t v = 512;
    for (int i = 0; i < 256; i++) {
        b[36 + 12 + 2 * i] = 'A';
        b[36 + 12 + 2 * i + 1] = 0;
    }
    memcpy(b + 36 + 4, &v, 4);
}
static void m_key_empty(uint8_t *b, size_t *len)
{
    memset(b + 36 + 12, 0, 4);
}
static void m_key_lone_surrogate(uint8_t *b, size_t *len)
{
    b[36 + 12] = 0x00;
    b[36 + 13] = 0xdc;
}
static void m_value_size_big(uint8_t *b, size_t *len)
{
    uint32_t v = 4096;
    memcpy(b + 36 + 8, &v, 4);
}
static void m_value_size_odd(uint8_t *b, size_t *len)
{
    uint32_t v = 3;
    memcpy(b + 36 + 8, &v, 4);
}
static void m_value_unterminated(uint8_t *b, size_t *len)
{
    uint32_t v = 2048;
    memset(b + 36 + 12 + 512, 'x', 2048);
    memcpy(b + 36 + 8, &v, 4);
}
static void m_value_type(uint8_t *b, size_t *len)
{
    uint32_t v = 7;
    memcpy(b + 36, &v, 4);
}
static void m_u32_bad_size(uint8_t *b, size_t *len)
{
    uint32_t v = 4, sz = 8;
    memcpy(b + 36, &v, 4);
    memcpy(b + 36 + 8, &sz, 4);
}
static void m_wrong_index(uint8_t *b, size_t *len)
{
    b[32] = 5;
}
static void m_wrong_op(uint8_t *b, size_t *len)
{
    b[28] = 1;
}
static void m_wrong_pool(uint8_t *b, size_t *len)
{
    b[29] = 4;
}
static void m_short(uint8_t *b, size_t *len)
{
    *len = 28 + 2;
}
static void m_record_cut(uint8_t *b, size_t *len)
{
    *len = 28 + 8 + 100;
}
static void m_not_response(uint8_t *b, size_t *len)
{
    b[25] = 2;
}

static void test_hostile_answers(void **s)
{
    struct fx *f = fx_new(no_enum_k, no_enum_v, true);
    static const mutate_fn bad[] = {
        m_key_size_big, m_key_size_odd, m_key_size_zero, m_key_unterminated, m_key_empty,
        m_key_lone_surrogate, m_value_size_big, m_value_size_odd, m_value_unterminated,
        m_value_type, m_u32_bad_size, m_wrong_index, m_wrong_op, m_wrong_pool, m_short,
        m_record_cut,
    };

    for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        bad_list_answer(f, bad[i], -EBADMSG);
    assert_null(fake_status(f->p, "kvp.2.Key"));

    /* A framing error is dropped; the transaction stays open until the tick
     * times it out (timeout_ms default 35 s). */
    struct ctl_call *c = ctl(f, "kvp-list", "2");
    static uint8_t buf[KVP_LEN];
    const struct fake_sent *m = fake_sent_last(f->ch);
    size_t len = guest_echo(m, buf, sizeof(buf));
    m_not_response(buf, &len);
    guest_send(f->ch, m->trans_id, buf, len);
    fake_advance_ms(36000);
    fake_fire_timers(f->ch);
    assert_int_equal(ctl_join(c), -ETIMEDOUT);
    assert_true(fake_log_contains("no answer to op 3"));
    fx_free(f);
}

static void m_u32(uint8_t *b, size_t *len)
{
    uint32_t t = 4, sz = 4, v = 42;
    memcpy(b + 36, &t, 4);
    memcpy(b + 36 + 8, &sz, 4);
    memcpy(b + 36 + 12 + 512, &v, 4);
}

static void test_value_types_and_sanitising(void **s)
{
    struct fx *f = fx_new(no_enum_k, no_enum_v, true);
    struct ctl_call *c = ctl(f, "kvp-list", "2");
    static uint8_t buf[KVP_LEN];
    const struct fake_sent *m = fake_sent_last(f->ch);
    size_t len = guest_echo(m, buf, sizeof(buf));

    icg_kvp_rec_put(buf + 36, "Num", "");
    m_u32(buf, &len);
    guest_send(f->ch, m->trans_id, buf, len);
    answer(f, IC_S_OK, "Evil\nKey", "line1\nline2\x1b[0m");
    answer(f, IC_S_CONT, NULL, NULL);
    assert_int_equal(ctl_join(c), 0);
    assert_string_equal(fake_status(f->p, "kvp.2.Num"), "42");
    assert_string_equal(fake_status(f->p, "kvp.2.Evil?Key"), "line1?line2?[0m");
    assert_non_null(strstr(c->reply, "Num=42\n"));
    assert_null(strchr(c->reply + strlen("Num=42\n"), '\x1b'));
    fx_free(f);
}

/* The guest keeps answering S_OK: publishing stops at publish_max. */
static void test_publish_cap(void **s)
{
    const char *keys[] = {"enumerate", "publish_max", NULL}, *vals[] = {"none", "2", NULL};
    struct fx *f = fx_new(keys, vals, true);
    struct ctl_call *c = ctl(f, "kvp-list", "4");
    char key[16];

    for (int i = 0; i < 5; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        answer(f, IC_S_OK, key, "v");
    }
    answer(f, IC_S_CONT, NULL, NULL);
    assert_int_equal(ctl_join(c), 0);
    assert_non_null(fake_status(f->p, "kvp.4.k1"));
    assert_null(fake_status(f->p, "kvp.4.k2"));
    assert_true(fake_log_contains("publish_max"));
    fx_free(f);
}

/* A transaction the guest never answers times out; its late answer is
 * ignored and the queue moves on. */
static void test_timeout_and_stale_answer(void **s)
{
    const char *keys[] = {"timeout_ms", "control_timeout_ms", NULL},
               *vals[] = {"1000", "100", NULL};
    struct fx *f = fx_new(keys, vals, true);
    const struct fake_sent *first = fake_sent_last(f->ch); /* enumerate pool 2 */
    static uint8_t stale[KVP_LEN];
    size_t len = guest_echo(first, stale, sizeof(stale));
    char reply[512];

    assert_int_equal(body_op(first), 3);
    /* A control command queued behind it gives up after 100 ms. */
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-get", "0 x", reply,
                                        sizeof(reply)), -ETIMEDOUT);
    assert_non_null(strstr(reply, "pending"));
    unsigned n = fake_sent_count(f->ch);
    fake_advance_ms(1500);
    fake_fire_timers(f->ch);
    assert_true(fake_log_contains("no answer to op 3"));
    assert_int_equal(fake_sent_count(f->ch), n + 1); /* the GET went out */
    assert_int_equal(body_op(fake_sent_last(f->ch)), 0);

    unsigned warns = fake_log_count(VSP_LOG_WARN);
    icg_kvp_rec_put(stale + 36, "Late", "answer");
    guest_send(f->ch, first->trans_id, stale, len);
    assert_int_equal(fake_log_count(VSP_LOG_WARN), warns + 1);
    assert_null(fake_status(f->p, "kvp.2.Late"));
    answer(f, IC_S_OK, NULL, "found");
    assert_string_equal(fake_status(f->p, "kvp.0.x"), "found");
    fx_free(f);
}

static void test_full_ring(void **s)
{
    struct fx *f = fx_new(no_enum_k, no_enum_v, true);
    struct ctl_call *c;
    unsigned n = fake_sent_count(f->ch);

    /* The ring is full: the message is parked and sent when writable. */
    fake_fail_sends(f->ch, -EAGAIN, 1);
    memset(&c, 0, sizeof(c));
    static struct ctl_call cc;
    cc = (struct ctl_call){.pl = &kvp_plugin, .state = f->state, .p = f->p,
                           .part_state = f->part, .cmd = "kvp-get", .args = "0 k"};
    ctl_start(&cc);
    while (fake_sent_count(f->ch) == n) {
        fake_writable(f->ch);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    answer(f, IC_S_OK, NULL, "v");
    assert_int_equal(ctl_join(&cc), 0);
    assert_string_equal(cc.reply, "v");
    (void)c;
    fx_free(f);
}

static void test_close_fails_waiters(void **s)
{
    struct fx *f = fx_new(no_enum_k, no_enum_v, true);
    struct ctl_call *c = ctl(f, "kvp-list", "2");

    fake_close(f->ch);
    assert_int_equal(ctl_join(c), -EPIPE);
    /* Reopen: pool 0 push and enumeration start over; no stale state. */
    fake_sent_clear(f->ch);
    fake_open(f->ch);
    guest_negotiate(f->ch, linux_kvp_msg, 3);
    assert_int_equal(fake_sent_count(f->ch), 1);
    fx_free(f);
}

/* Pool 0 changes made while the guest is not listening reach it later. */
static void test_pool0_offline_changes(void **s)
{
    struct fx *f = fx_new(no_enum_k, no_enum_v, false);
    char reply[512], k[600];
    const struct fake_sent *m;

    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-set", "0 A 1", reply,
                                        sizeof(reply)), 0);
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-set", "0 C 3", reply,
                                        sizeof(reply)), 0);
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-delete", "0 A", reply,
                                        sizeof(reply)), 0);
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-delete", "0 B", reply,
                                        sizeof(reply)), 0);
    guest_negotiate(f->ch, linux_kvp_msg, 3);
    const char *want_key[] = {"A", "B", "C"};
    const int want_op[] = {2, 2, 1};
    for (int i = 0; i < 3; i++) {
        m = fake_sent_last(f->ch);
        assert_int_equal(body_op(m), want_op[i]);
        if (want_op[i] == 2)
            assert_int_equal(m->data[36], want_key[i][0]);
        else
            assert_string_equal(utf16_key(m, 36, k), want_key[i]);
        answer(f, IC_S_OK, NULL, NULL);
    }
    unsigned n = fake_sent_count(f->ch);
    /* The tombstones are gone: a reconnect pushes only C. */
    fake_close(f->ch);
    fake_open(f->ch);
    guest_negotiate(f->ch, linux_kvp_msg, 3);
    assert_int_equal(fake_sent_count(f->ch), n + 2);
    assert_int_equal(body_op(fake_sent_last(f->ch)), 1);
    answer(f, IC_S_OK, NULL, NULL);
    assert_int_equal(fake_sent_count(f->ch), n + 2);
    fx_free(f);
}

static void test_bad_commands(void **s)
{
    struct fx *f = fx_new(no_enum_k, no_enum_v, true);
    char reply[512], longkey[700];

    memset(longkey, 'k', sizeof(longkey));
    memcpy(longkey, "0 ", 2);
    longkey[sizeof(longkey) - 1] = '\0';
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-set", "7 a b", reply,
                                        sizeof(reply)), -EINVAL);
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-set", "x a b", reply,
                                        sizeof(reply)), -EINVAL);
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-get", "0", reply,
                                        sizeof(reply)), -EINVAL);
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-get", "0 a b", reply,
                                        sizeof(reply)), -EINVAL);
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-list", "", reply,
                                        sizeof(reply)), -EINVAL);
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-get", longkey, reply,
                                        sizeof(reply)), -EINVAL);
    assert_non_null(strstr(reply, "too long"));
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-set", "0 k \xc3", reply,
                                        sizeof(reply)), -EINVAL);
    assert_non_null(strstr(reply, "UTF-8"));
    assert_int_equal(kvp_plugin.control(f->state, f->p, f->part, "kvp-frob", "", reply,
                                        sizeof(reply)), -EOPNOTSUPP);
    assert_int_equal(fake_sent_count(f->ch), 1);
    fx_free(f);

    void *st;
    const char *k1[] = {"enumerate", NULL}, *v1[] = {"9", NULL};
    const char *k2[] = {"pool0.", NULL}, *v2[] = {"x", NULL};
    const char *k3[] = {"pool0.k", NULL}, *v3[] = {"\xff", NULL};
    assert_int_equal(kvp_plugin.init(k1, v1, &st), -EINVAL);
    assert_int_equal(kvp_plugin.init(k2, v2, &st), -EINVAL);
    assert_int_equal(kvp_plugin.init(k3, v3, &st), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_daemon_then_ready),
        cmocka_unit_test(test_list_get_delete),
        cmocka_unit_test(test_hostile_answers),
        cmocka_unit_test(test_value_types_and_sanitising),
        cmocka_unit_test(test_publish_cap),
        cmocka_unit_test(test_timeout_and_stale_answer),
        cmocka_unit_test(test_full_ring),
        cmocka_unit_test(test_close_fails_waiters),
        cmocka_unit_test(test_pool0_offline_changes),
        cmocka_unit_test(test_bad_commands),
    };
    return cmocka_run_group_tests_name("kvp vsp", tests, NULL, NULL);
}
