/* SPDX-License-Identifier: MIT */
/* Shutdown VSP: the control command, the message layout, guest answers. */
#include <errno.h>
#include <string.h>

#include "ic_test.h"

extern const struct vsp_plugin shutdown_plugin;

static struct fx *fx_new(const char *timeout_ms)
{
    static struct fx f;
    const char *keys[] = {"control_timeout_ms", NULL}, *vals[] = {timeout_ms, NULL};

    f.p = plugin_setup(&shutdown_plugin, keys, vals, &f.state, &f.part);
    f.ch = fake_channel(f.p, 0);
    fake_open(f.ch);
    return &f;
}

static int fx_setup(void **s)
{
    struct fx *f = fx_new("5000");

    guest_negotiate(f->ch, linux_sd_msg, 4);
    *s = f;
    return 0;
}

static int fx_setup_short(void **s)
{
    struct fx *f = fx_new("50");

    guest_negotiate(f->ch, linux_sd_msg, 4);
    *s = f;
    return 0;
}

static int fx_teardown(void **s)
{
    struct fx *f = *s;

    plugin_teardown(&shutdown_plugin, f->p, f->state, f->part);
    return 0;
}

struct sd_seen {
    uint32_t reason, timeout, flags;
    uint8_t message[2048];
};

/* Run "shutdown ARGS" on a thread, wait for the request, answer it with
 * status (or not at all when answer is false). */
static int run(struct fx *f, const char *args, bool answer, uint32_t status, char *reply,
               struct sd_seen *seen)
{
    struct ctl_call c = {.pl = &shutdown_plugin, .state = f->state, .p = f->p,
                         .part_state = f->part, .cmd = "shutdown", .args = args};
    unsigned before = fake_sent_count(f->ch);

    ctl_start(&c);
    if (answer) {
        const struct fake_sent *s;
        uint8_t buf[4096];
        size_t len;

        assert_true(fake_wait_sent(f->ch, before + 1, 5000));
        s = fake_sent_last(f->ch);
        assert_int_equal(s->len, 2088);
        assert_int_equal(sent_hdr(s).msg_type, IC_MSG_SHUTDOWN);
        assert_int_equal(sent_hdr(s).msg_version.major, 3);
        assert_int_equal(sent_hdr(s).msg_version.minor, 2);
        assert_int_equal(sent_hdr(s).msg_size, 2060);
        if (seen)
            memcpy(seen, s->data + ICG_HDRS, sizeof(*seen));
        len = guest_echo(s, buf, sizeof(buf));
        icg_set_status(buf, status);
        guest_send(f->ch, s->trans_id, buf, len);
    }
    ctl_join(&c);
    strcpy(reply, c.reply);
    return c.ret;
}

static void test_reboot_accepted(void **s)
{
    struct fx *f = *s;
    struct sd_seen seen;
    char reply[4096];

    assert_int_equal(run(f, "reboot", true, IC_S_OK, reply, &seen), 0);
    assert_int_equal(seen.flags, 2);
    assert_int_equal(seen.reason, 0);
    assert_non_null(strstr(reply, "accepted reboot"));
    assert_string_equal(fake_status(f->p, "shutdown.last"), "reboot: S_OK (0x00000000)");

    assert_int_equal(run(f, "poweroff force timeout=30 reason=7 message=bye now", true,
                         IC_S_OK, reply, &seen), 0);
    assert_int_equal(seen.flags, 1);
    assert_int_equal(seen.timeout, 30);
    assert_int_equal(seen.reason, 7);
    const uint8_t want[] = {'b', 0, 'y', 0, 'e', 0, ' ', 0, 'n', 0, 'o', 0, 'w', 0, 0, 0};
    assert_memory_equal(seen.message, want, sizeof(want));

    assert_int_equal(run(f, "force reboot", true, IC_S_OK, reply, &seen), 0);
    assert_int_equal(seen.flags, 3);
}

static void test_refused(void **s)
{
    struct fx *f = *s;
    char reply[4096];
    struct sd_seen seen;

    assert_int_equal(run(f, "hibernate", true, IC_E_FAIL, reply, &seen), -EREMOTEIO);
    assert_int_equal(seen.flags, 4);
    assert_non_null(strstr(reply, "0x80004005"));
    assert_non_null(strstr(reply, "E_FAIL"));
    /* The next request is possible again. */
    assert_int_equal(run(f, "poweroff", true, IC_S_OK, reply, NULL), 0);
}

static void test_bad_answers(void **s)
{
    struct fx *f = *s;
    char reply[4096];
    uint8_t buf[4096];
    const struct fake_sent *req;
    size_t len;

    /* Unsolicited answers are logged and ignored. */
    unsigned warns = fake_log_count(VSP_LOG_WARN);
    req = fake_sent_last(f->ch); /* the negotiate */
    len = guest_echo(req, buf, sizeof(buf));
    buf[12] = IC_MSG_SHUTDOWN;
    guest_send(f->ch, 99, buf, len);
    assert_int_equal(fake_log_count(VSP_LOG_WARN), warns + 1);

    /* A wrong trans_id, then a truncated packet, then the right answer. */
    struct ctl_call c = {.pl = &shutdown_plugin, .state = f->state, .p = f->p,
                         .part_state = f->part, .cmd = "shutdown", .args = "reboot"};
    unsigned before = fake_sent_count(f->ch);
    ctl_start(&c);
    assert_true(fake_wait_sent(f->ch, before + 1, 5000));
    req = fake_sent_last(f->ch);
    len = guest_echo(req, buf, sizeof(buf));
    guest_send(f->ch, req->trans_id + 1, buf, len);
    guest_send(f->ch, req->trans_id, buf, 27);
    guest_send(f->ch, req->trans_id, buf, len);
    assert_int_equal(ctl_join(&c), 0);
    assert_int_equal(fake_log_count(VSP_LOG_WARN), warns + 3);
    (void)reply;
}

static void test_timeout(void **s)
{
    struct fx *f = *s;
    char reply[4096];
    const struct fake_sent *req;
    uint8_t buf[4096];
    size_t len;

    assert_int_equal(run(f, "reboot", false, 0, reply, NULL), -ETIMEDOUT);
    assert_non_null(strstr(reply, "no answer"));
    /* The late answer is logged and ignored. */
    unsigned warns = fake_log_count(VSP_LOG_WARN);
    req = fake_sent_last(f->ch);
    len = guest_echo(req, buf, sizeof(buf));
    guest_send(f->ch, req->trans_id, buf, len);
    assert_int_equal(fake_log_count(VSP_LOG_WARN), warns + 1);
}

static void test_close_while_waiting(void **s)
{
    struct fx *f = *s;
    struct ctl_call c = {.pl = &shutdown_plugin, .state = f->state, .p = f->p,
                         .part_state = f->part, .cmd = "shutdown", .args = "poweroff"};
    unsigned before = fake_sent_count(f->ch);

    ctl_start(&c);
    assert_true(fake_wait_sent(f->ch, before + 1, 5000));
    fake_close(f->ch);
    assert_int_equal(ctl_join(&c), -EPIPE);
    assert_non_null(strstr(c.reply, "closed"));
}

static void test_not_ready_and_bad_args(void **s)
{
    struct fx *f = fx_new("5000");
    char reply[512];

    /* Before negotiation. */
    assert_int_equal(shutdown_plugin.control(f->state, f->p, f->part, "shutdown", "reboot",
                                             reply, sizeof(reply)), -ENOTCONN);
    assert_non_null(strstr(reply, "negotiating"));
    guest_negotiate(f->ch, linux_sd_msg, 4);
    assert_int_equal(shutdown_plugin.control(f->state, f->p, f->part, "shutdown", "", reply,
                                             sizeof(reply)), -EINVAL);
    assert_int_equal(shutdown_plugin.control(f->state, f->p, f->part, "shutdown", "explode",
                                             reply, sizeof(reply)), -EINVAL);
    assert_int_equal(shutdown_plugin.control(f->state, f->p, f->part, "shutdown", "force",
                                             reply, sizeof(reply)), -EINVAL);
    assert_int_equal(shutdown_plugin.control(f->state, f->p, f->part, "shutdown",
                                             "reboot timeout=abc", reply, sizeof(reply)),
                     -EINVAL);
    assert_int_equal(shutdown_plugin.control(f->state, f->p, f->part, "shutdown",
                                             "reboot message=\xff", reply, sizeof(reply)),
                     -EINVAL);
    assert_int_equal(shutdown_plugin.control(f->state, f->p, f->part, "reboot", "", reply,
                                             sizeof(reply)), -EOPNOTSUPP);
    assert_int_equal(fake_sent_count(f->ch), 1); /* only the negotiate */
    plugin_teardown(&shutdown_plugin, f->p, f->state, f->part);
}

/* Old guests: negotiation falls back to 1.0; a new host list is accepted. */
static void test_old_guest(void **s)
{
    struct fx *f = fx_new("5000");
    const struct icg_ver old[1] = {{1, 0}};
    char reply[512];

    guest_negotiate(f->ch, old, 1);
    assert_string_equal(fake_status(f->p, "shutdown.version"), "1.0");
    (void)reply;
    plugin_teardown(&shutdown_plugin, f->p, f->state, f->part);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reboot_accepted, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_refused, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_answers, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_timeout, fx_setup_short, fx_teardown),
        cmocka_unit_test_setup_teardown(test_close_while_waiting, fx_setup, fx_teardown),
        cmocka_unit_test(test_not_ready_and_bad_args),
        cmocka_unit_test(test_old_guest),
    };
    return cmocka_run_group_tests_name("shutdown vsp", tests, NULL, NULL);
}
