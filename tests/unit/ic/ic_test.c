/* SPDX-License-Identifier: MIT */
#include "ic_test.h"

#include <string.h>

const struct icg_ver *const linux_hb_msg = icg_svcs[ICG_HB].msg;
const struct icg_ver *const linux_sd_msg = icg_svcs[ICG_SD].msg;
const struct icg_ver *const linux_ts_msg = icg_svcs[ICG_TS].msg;
const struct icg_ver *const linux_kvp_msg = icg_svcs[ICG_KV].msg;

struct ic_hdr sent_hdr(const struct fake_sent *s)
{
    struct ic_hdr h;

    assert_non_null(s);
    assert_true(s->len >= IC_HDRS_SIZE);
    memcpy(&h, s->data + 8, sizeof(h));
    return h;
}

size_t guest_echo(const struct fake_sent *s, uint8_t *out, size_t cap)
{
    assert_true(s->len <= cap);
    memcpy(out, s->data, s->len);
    icg_make_response(out);
    return s->len;
}

size_t guest_negotiate_reply(const struct fake_sent *s, uint8_t *out, size_t cap,
                             const struct icg_ver *msg, unsigned n_msg)
{
    size_t len = guest_echo(s, out, cap);

    assert_true(cap >= ICG_HDRS + 16);
    /* the host's request must be well-formed, whatever the answer */
    assert_true(icg_negotiate_lists(icg_svcs[ICG_HB].fw, 2, msg, n_msg, out, (uint32_t)len,
                                    NULL, NULL) >= ICG_NEG_NO_MATCH);
    return len;
}

void guest_send(struct vsp_channel *ch, uint64_t trans_id, const void *data, size_t len)
{
    fake_inject(ch, VM_PKT_DATA_INBAND, trans_id, data, len);
    fake_receive(ch);
}

void guest_negotiate(struct vsp_channel *ch, const struct icg_ver *msg, unsigned n_msg)
{
    const struct fake_sent *s = fake_sent_last(ch);
    uint8_t buf[512];
    size_t len;

    assert_non_null(s);
    assert_int_equal(sent_hdr(s).msg_type, IC_MSG_NEGOTIATE);
    len = guest_negotiate_reply(s, buf, sizeof(buf), msg, n_msg);
    guest_send(ch, s->trans_id, buf, len);
}

static void *ctl_thread(void *arg)
{
    struct ctl_call *c = arg;

    c->ret = c->pl->control(c->state, c->p, c->part_state, c->cmd, c->args, c->reply,
                            sizeof(c->reply));
    return NULL;
}

void ctl_start(struct ctl_call *c)
{
    c->reply[0] = '\0';
    assert_int_equal(pthread_create(&c->th, NULL, ctl_thread, c), 0);
}

int ctl_join(struct ctl_call *c)
{
    pthread_join(c->th, NULL);
    return c->ret;
}

struct vsp_partition *plugin_setup(const struct vsp_plugin *pl, const char *const *keys,
                                   const char *const *values, void **state, void **part_state)
{
    struct vsp_partition *p = fake_partition_new("vm1");

    ic_clock_ms = fake_clock_ms;
    fake_log_reset();
    assert_int_equal(pl->api_version, VSP_API_VERSION);
    assert_int_equal(pl->init(keys, values, state), 0);
    *part_state = NULL;
    assert_int_equal(pl->attach(*state, p, part_state), 0);
    assert_non_null(*part_state);
    assert_int_equal(fake_channel_count(p), 1);
    return p;
}

void plugin_teardown(const struct vsp_plugin *pl, struct vsp_partition *p, void *state,
                     void *part_state)
{
    struct vsp_channel *ch = fake_channel(p, 0);

    if (ch && vsp_channel_is_open(ch))
        fake_close(ch);
    fake_run_work();
    pl->detach(state, p, part_state);
    pl->fini(state);
    fake_partition_free(p);
}
