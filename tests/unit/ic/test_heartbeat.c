/* SPDX-License-Identifier: MIT */
/* Heartbeat VSP: sequence numbers, liveness states, bad guest answers. */
#include <errno.h>
#include <string.h>

#include "ic_test.h"

extern const struct vsp_plugin heartbeat_plugin;

static int fx_setup(void **s)
{
    static struct fx f;
    const char *keys[] = {"interval_ms", NULL}, *vals[] = {"1000", NULL};

    f.p = plugin_setup(&heartbeat_plugin, keys, vals, &f.state, &f.part);
    f.ch = fake_channel(f.p, 0);
    fake_open(f.ch);
    guest_negotiate(f.ch, linux_hb_msg, 2);
    *s = &f;
    return 0;
}

static int fx_teardown(void **s)
{
    struct fx *f = *s;

    plugin_teardown(&heartbeat_plugin, f->p, f->state, f->part);
    return 0;
}

static uint64_t sent_seq(const struct fake_sent *s)
{
    assert_int_equal(s->len, ICG_HDRS + 40);
    return icg_heartbeat_seq(s->data);
}

/* Answer the last heartbeat like Linux: seq + 1 (plus an optional tweak). */
static void answer(struct fx *f, const struct fake_sent *s, int64_t seq_delta, uint32_t status,
                   size_t len_override)
{
    uint8_t buf[128];
    size_t len = guest_echo(s, buf, sizeof(buf));

    icg_wr64(buf + ICG_HDRS, icg_heartbeat_seq(buf) + (uint64_t)seq_delta);
    icg_set_status(buf, status);
    guest_send(f->ch, s->trans_id, buf, len_override ? len_override : len);
}

static void test_beat_ok(void **s)
{
    struct fx *f = *s;
    const struct fake_sent *hb = fake_sent_last(f->ch);

    assert_int_equal(sent_hdr(hb).msg_type, IC_MSG_HEARTBEAT);
    assert_int_equal(sent_hdr(hb).msg_version.major, 3);
    assert_int_equal(sent_hdr(hb).msg_size, 40);
    assert_int_equal(sent_seq(hb), 1);
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "none");
    answer(f, hb, 1, 0, 0);
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "ok");
    assert_string_equal(fake_status(f->p, "heartbeat.seq"), "2");

    /* Next tick: next sequence number. */
    fake_advance_ms(1000);
    assert_int_equal(fake_fire_timers(f->ch), 1);
    hb = fake_sent_last(f->ch);
    assert_int_equal(sent_seq(hb), 2);
    answer(f, hb, 1, 0, 0);
    assert_string_equal(fake_status(f->p, "heartbeat.seq"), "3");
}

static void test_wrong_seq_ignored(void **s)
{
    struct fx *f = *s;
    const struct fake_sent *hb = fake_sent_last(f->ch);
    unsigned warns = fake_log_count(VSP_LOG_WARN);

    answer(f, hb, 0, 0, 0);      /* echoed unchanged */
    answer(f, hb, 5, 0, 0);      /* nonsense */
    assert_int_equal(fake_log_count(VSP_LOG_WARN), warns + 2);
    assert_true(fake_log_contains("expected 2"));
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "none");
    /* the right one is still accepted */
    answer(f, hb, 1, 0, 0);
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "ok");
}

static void test_bad_answers(void **s)
{
    struct fx *f = *s;
    const struct fake_sent *hb = fake_sent_last(f->ch);
    uint8_t buf[128];
    size_t len = guest_echo(hb, buf, sizeof(buf));
    unsigned warns = fake_log_count(VSP_LOG_WARN);

    answer(f, hb, 1, 0, 28 + 4);             /* body too short for seq */
    guest_send(f->ch, hb->trans_id + 50, buf, len); /* unknown trans_id */
    answer(f, hb, 1, IC_E_FAIL, 0);           /* guest refused */
    assert_int_equal(fake_log_count(VSP_LOG_WARN), warns + 3);
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "none");
    /* The refused request is forgotten: a later good echo of it is unknown. */
    answer(f, hb, 1, 0, 0);
    assert_int_equal(fake_log_count(VSP_LOG_WARN), warns + 4);
    /* Minimal 36-byte answers (seq only) are fine. */
    fake_fire_timers(f->ch);
    hb = fake_sent_last(f->ch);
    answer(f, hb, 1, 0, 36);
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "ok");
}

static void test_late(void **s)
{
    struct fx *f = *s;

    answer(f, fake_sent_last(f->ch), 1, 0, 0);
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "ok");
    /* The guest stops answering: late after 3 intervals. */
    for (int i = 0; i < 3; i++) {
        fake_advance_ms(1000);
        fake_fire_timers(f->ch);
    }
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "ok");
    fake_advance_ms(1000);
    fake_fire_timers(f->ch);
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "late");
    assert_true(fake_log_contains("no answer from the guest"));
    /* A late answer to an older outstanding request revives it. */
    answer(f, fake_sent_get(f->ch, fake_sent_count(f->ch) - 2), 1, 0, 0);
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "ok");
}

static void test_ring_full_skips(void **s)
{
    struct fx *f = *s;
    unsigned n = fake_sent_count(f->ch);

    fake_fail_sends(f->ch, -EAGAIN, 1);
    fake_fire_timers(f->ch);
    assert_int_equal(fake_sent_count(f->ch), n); /* skipped, not parked */
    fake_fire_timers(f->ch);
    assert_int_equal(fake_sent_count(f->ch), n + 1);
    assert_int_equal(sent_seq(fake_sent_last(f->ch)), 2);
}

static void test_control(void **s)
{
    struct fx *f = *s;
    char reply[256];

    assert_int_equal(heartbeat_plugin.control(f->state, f->p, f->part, "heartbeat", "", reply,
                                              sizeof(reply)), 0);
    assert_non_null(strstr(reply, "no answer"));
    answer(f, fake_sent_last(f->ch), 1, 0, 0);
    assert_int_equal(heartbeat_plugin.control(f->state, f->p, f->part, "heartbeat", "", reply,
                                              sizeof(reply)), 0);
    assert_non_null(strstr(reply, "state ok"));
    assert_non_null(strstr(reply, "seq 2"));
    assert_int_equal(heartbeat_plugin.control(f->state, f->p, f->part, "reboot", "", reply,
                                              sizeof(reply)), -EOPNOTSUPP);
}

static void test_close_stops(void **s)
{
    struct fx *f = *s;

    answer(f, fake_sent_last(f->ch), 1, 0, 0);
    fake_close(f->ch);
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "none");
    assert_string_equal(fake_status(f->p, "heartbeat.version"), "none");
    /* The timer idles while the channel is closed. */
    unsigned n = fake_sent_count(f->ch);
    fake_fire_timers(f->ch);
    assert_int_equal(fake_sent_count(f->ch), n);
    assert_string_equal(fake_status(f->p, "heartbeat.state"), "none");
}

static void test_params(void **s)
{
    void *st, *part;
    const char *k1[] = {"interval_ms", NULL}, *v1[] = {"5", NULL};
    const char *k2[] = {"bogus", NULL}, *v2[] = {"5", NULL};
    const char *k3[] = {"instance_id", NULL}, *v3[] = {"not-a-guid", NULL};
    const char *k4[] = {"instance_id", "late_ms", NULL},
               *v4[] = {"11111111-2222-3333-4444-555555555555", "9000", NULL};
    struct vsp_partition *p;
    struct hv_guid g;

    assert_int_equal(heartbeat_plugin.init(k1, v1, &st), -EINVAL);
    assert_int_equal(heartbeat_plugin.init(k2, v2, &st), -EINVAL);
    assert_int_equal(heartbeat_plugin.init(k3, v3, &st), -EINVAL);
    p = plugin_setup(&heartbeat_plugin, k4, v4, &st, &part);
    ic_guid_parse("11111111-2222-3333-4444-555555555555", &g);
    assert_memory_equal(fake_channel_offer(fake_channel(p, 0))->instance_id.b, g.b, 16);
    plugin_teardown(&heartbeat_plugin, p, st, part);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_beat_ok, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_seq_ignored, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_answers, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_late, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_ring_full_skips, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_control, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_stops, fx_setup, fx_teardown),
        cmocka_unit_test(test_params),
    };
    return cmocka_run_group_tests_name("heartbeat vsp", tests, NULL, NULL);
}
