/* SPDX-License-Identifier: MIT */
#include "ic_test.h"

#include <string.h>

const struct ic_version linux_fw[2] = {{3, 0}, {1, 0}};
const struct ic_version linux_hb_msg[2] = {{3, 0}, {1, 0}};
const struct ic_version linux_sd_msg[4] = {{3, 2}, {3, 1}, {3, 0}, {1, 0}};
const struct ic_version linux_ts_msg[3] = {{4, 0}, {3, 0}, {1, 0}};
const struct ic_version linux_kvp_msg[3] = {{4, 0}, {3, 0}, {1, 0}};

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
    out[8 + 17] = IC_FLAG_TRANSACTION | IC_FLAG_RESPONSE;
    return s->len;
}

/* Linux walks its own list and takes the first entry the host offered. */
static int pick(const struct ic_version *mine, unsigned n_mine, const uint8_t *offered,
                unsigned n_off, struct ic_version *out)
{
    for (unsigned i = 0; i < n_mine; i++) {
        for (unsigned j = 0; j < n_off; j++) {
            struct ic_version v;
            memcpy(&v, offered + 4 * j, 4);
            if (v.major == mine[i].major && v.minor == mine[i].minor) {
                *out = v;
                return 0;
            }
        }
    }
    return -1;
}

size_t guest_negotiate_reply(const struct fake_sent *s, uint8_t *out, size_t cap,
                             const struct ic_version *msg, unsigned n_msg)
{
    size_t len = guest_echo(s, out, cap);
    uint8_t *body = out + IC_HDRS_SIZE;
    struct ic_negotiate neg;
    struct ic_version fw = {0, 0}, mv = {0, 0};
    bool ok;
    uint16_t sz = 16;

    memcpy(&neg, body, sizeof(neg));
    assert_true(neg.fw_count <= 100 && neg.msg_count <= 100);
    assert_true(len >= IC_HDRS_SIZE + 8 + 4u * (neg.fw_count + neg.msg_count));
    ok = pick(linux_fw, 2, body + 8, neg.fw_count, &fw) == 0 &&
         pick(msg, n_msg, body + 8 + 4u * neg.fw_count, neg.msg_count, &mv) == 0;
    neg.fw_count = ok ? 1 : 0;
    neg.msg_count = ok ? 1 : 0;
    memcpy(body, &neg, sizeof(neg));
    memcpy(body + 8, &fw, 4);
    memcpy(body + 12, &mv, 4);
    memcpy(out + 8 + 10, &sz, 2);
    return len;
}

void guest_send(struct vsp_channel *ch, uint64_t trans_id, const void *data, size_t len)
{
    fake_inject(ch, VM_PKT_DATA_INBAND, trans_id, data, len);
    fake_receive(ch);
}

void guest_negotiate(struct vsp_channel *ch, const struct ic_version *msg, unsigned n_msg)
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
