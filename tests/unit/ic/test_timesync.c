/* SPDX-License-Identifier: MIT */
/* Timesync VSP: version offer, SYNC then SAMPLE, layouts per version. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "ic_test.h"

extern const struct vsp_plugin timesync_plugin;

#define EPOCH_DELTA 116444736000000000ull

static uint64_t now_filetime(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 10000000ull + (uint64_t)ts.tv_nsec / 100 + EPOCH_DELTA;
}

static struct vsp_partition *setup(const char *maxv, void **state, void **part,
                                   struct vsp_channel **ch)
{
    const char *keys[] = {"max_version", NULL}, *vals[] = {maxv, NULL};
    struct vsp_partition *p = plugin_setup(&timesync_plugin, maxv ? keys : NULL,
                                           maxv ? vals : NULL, state, part);

    *ch = fake_channel(p, 0);
    fake_open(*ch);
    return p;
}

/* The message versions the host offered in its negotiate request. */
static unsigned offered(struct vsp_channel *ch, struct ic_version *out)
{
    const struct fake_sent *s = fake_sent_get(ch, 0);
    struct ic_negotiate neg;

    memcpy(&neg, s->data + 28, 8);
    memcpy(out, s->data + 36 + 4 * neg.fw_count, 4 * neg.msg_count);
    return neg.msg_count;
}

/* Without a reference-time source 4.0 is not offered; the v3 layout is used. */
static void test_v3_without_reftime(void **s)
{
    struct vsp_channel *ch;
    struct ic_version v[8];
    void *st, *part;
    struct vsp_partition *p;
    const struct fake_sent *m;
    uint64_t host, t0;

    fake_ref_time_available = false;
    p = setup(NULL, &st, &part, &ch);
    assert_int_equal(offered(ch, v), 2);
    assert_int_equal(v[0].major, 3);
    assert_int_equal(v[1].major, 1);
    t0 = now_filetime();
    guest_negotiate(ch, linux_ts_msg, 3);
    assert_string_equal(fake_status(p, "timesync.version"), "3.0");
    assert_int_equal(fake_sent_count(ch), 2);
    m = fake_sent_last(ch);
    assert_int_equal(m->len, icg_timesync_len((struct icg_ver){3, 0}));
    assert_int_equal(sent_hdr(m).msg_type, IC_MSG_TIMESYNC);
    assert_int_equal(sent_hdr(m).msg_size, 25);
    host = icg_timesync_host_time(m->data);
    assert_true(host >= t0 && host - t0 < 50000000ull); /* within 5 s */
    assert_int_equal(icg_timesync_flags(m->data, (struct icg_ver){3, 0}), ICG_TS_SYNC);
    assert_int_equal(fake_timer_count(), 1);

    fake_fire_timers(ch);
    m = fake_sent_last(ch);
    assert_int_equal(m->len, 53);
    assert_int_equal(icg_timesync_flags(m->data, (struct icg_ver){3, 0}), ICG_TS_SAMPLE);
    assert_string_equal(fake_status(p, "timesync.samples"), "2");

    /* Answers are counted; bad ones logged. */
    uint8_t buf[128];
    size_t len = guest_echo(m, buf, sizeof(buf));
    guest_send(ch, m->trans_id, buf, len);
    unsigned warns = fake_log_count(VSP_LOG_WARN);
    guest_send(ch, 12345, buf, len);          /* never sent */
    icg_set_status(buf, ICG_E_FAIL);
    guest_send(ch, m->trans_id, buf, len);    /* refused */
    guest_send(ch, m->trans_id, buf, 20);     /* truncated */
    assert_int_equal(fake_log_count(VSP_LOG_WARN), warns + 3);
    char reply[256];
    assert_int_equal(timesync_plugin.control(st, p, part, "timesync", "", reply, sizeof(reply)),
                     0);
    assert_non_null(strstr(reply, "1 answered"));
    plugin_teardown(&timesync_plugin, p, st, part);
}

/* With the reference time available, Linux picks 4.0 and gets the v4 layout. */
static void test_v4_with_reftime(void **s)
{
    struct vsp_channel *ch;
    struct ic_version v[8];
    void *st, *part;
    struct vsp_partition *p;
    const struct fake_sent *m;
    uint64_t ref;

    fake_ref_time_available = true;
    fake_ref_time = 0x1122334455667788ull;
    p = setup(NULL, &st, &part, &ch);
    assert_int_equal(offered(ch, v), 3);
    assert_int_equal(v[0].major, 4);
    guest_negotiate(ch, linux_ts_msg, 3);
    assert_string_equal(fake_status(p, "timesync.version"), "4.0");
    m = fake_sent_last(ch);
    assert_int_equal(m->len, icg_timesync_len((struct icg_ver){4, 0}));
    assert_int_equal(sent_hdr(m).msg_version.major, 4);
    memcpy(&ref, m->data + 36, 8);
    assert_true(ref == fake_ref_time);
    assert_int_equal(icg_timesync_flags(m->data, (struct icg_ver){4, 0}), ICG_TS_SYNC);

    /* The source disappearing later: the sample is skipped, not garbage. */
    fake_ref_time_available = false;
    unsigned n = fake_sent_count(ch);
    fake_fire_timers(ch);
    assert_int_equal(fake_sent_count(ch), n);
    fake_ref_time_available = true;
    fake_fire_timers(ch);
    m = fake_sent_last(ch);
    assert_int_equal(m->data[28 + 16], 2); /* SAMPLE */

    /* Control: an immediate SYNC. */
    char reply[256];
    assert_int_equal(timesync_plugin.control(st, p, part, "timesync", "sync", reply,
                                             sizeof(reply)), 0);
    assert_int_equal(fake_sent_last(ch)->data[28 + 16], 1);
    assert_int_equal(timesync_plugin.control(st, p, part, "timesync", "bogus", reply,
                                             sizeof(reply)), -EINVAL);
    plugin_teardown(&timesync_plugin, p, st, part);
    fake_ref_time_available = false;
}

/* max_version caps the offer; a 1.0-only guest uses the old layout. */
static void test_max_version(void **s)
{
    struct vsp_channel *ch;
    struct ic_version v[8];
    void *st, *part;
    struct vsp_partition *p;
    const struct icg_ver old[1] = {{1, 0}};
    const char *keys[] = {"max_version", NULL}, *bad[] = {"2.5", NULL};
    char reply[128];

    fake_ref_time_available = true;
    p = setup("3.0", &st, &part, &ch);
    assert_int_equal(offered(ch, v), 2);
    assert_int_equal(v[0].major, 3);
    assert_int_equal(timesync_plugin.control(st, p, part, "timesync", "sync", reply,
                                             sizeof(reply)), -ENOTCONN);
    guest_negotiate(ch, old, 1);
    assert_string_equal(fake_status(p, "timesync.version"), "1.0");
    assert_int_equal(fake_sent_last(ch)->len, 53);
    plugin_teardown(&timesync_plugin, p, st, part);
    fake_ref_time_available = false;
    assert_int_equal(timesync_plugin.init(keys, bad, &st), -EINVAL);
}

/* A SYNC hitting a full ring is parked and delivered when writable. */
static void test_sync_parked(void **s)
{
    struct vsp_channel *ch;
    void *st, *part;
    struct vsp_partition *p = setup(NULL, &st, &part, &ch);
    unsigned n;

    fake_fail_sends(ch, -EAGAIN, 1);
    n = fake_sent_count(ch);
    guest_negotiate(ch, linux_ts_msg, 3);
    assert_int_equal(fake_sent_count(ch), n);
    fake_writable(ch);
    assert_int_equal(fake_sent_count(ch), n + 1);
    assert_int_equal(fake_sent_last(ch)->data[28 + 24], 1);
    plugin_teardown(&timesync_plugin, p, st, part);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v3_without_reftime),
        cmocka_unit_test(test_v4_with_reftime),
        cmocka_unit_test(test_max_version),
        cmocka_unit_test(test_sync_parked),
    };
    return cmocka_run_group_tests_name("timesync vsp", tests, NULL, NULL);
}
