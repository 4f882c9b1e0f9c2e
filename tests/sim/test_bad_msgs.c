/* SPDX-License-Identifier: MIT */
/*
 * Malformed and out-of-order channel messages from a guest.  For every case:
 * vmbusd keeps running, logs a warning naming the partition (and the relid
 * where there is one), a second, healthy partition keeps working, and the
 * offending partition gets what each case expects (bad_done's outcome).
 */
#include "sim_test.h"

static int post_raw(struct bad *b, uint32_t msg_type, const void *payload, uint32_t size)
{
    b->post_status = sim_post(b->vm, b->vm->msg_conn_id, msg_type, payload, size);
    return b->post_status;
}

/* Messages shorter than their type's fixed part. */
static void test_truncated(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    static const struct {
        uint32_t type, full;
    } t[] = {
        {CHANNELMSG_REQUESTOFFERS, 8},   {CHANNELMSG_OPENCHANNEL, 148},
        {CHANNELMSG_CLOSECHANNEL, 12},   {CHANNELMSG_GPADL_HEADER, 36},
        {CHANNELMSG_GPADL_BODY, 24},     {CHANNELMSG_GPADL_TEARDOWN, 16},
        {CHANNELMSG_RELID_RELEASED, 12}, {CHANNELMSG_INITIATE_CONTACT, 40},
        {CHANNELMSG_UNLOAD, 8},          {CHANNELMSG_TL_CONNECT_REQUEST, 40},
        {CHANNELMSG_MODIFYCHANNEL, 16},
    };
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        uint32_t sizes[3] = {t[i].full - 1, 4, 0};
        if (t[i].type == CHANNELMSG_GPADL_HEADER)
            sizes[0] = 27; /* header without its range */
        for (int k = 0; k < 3; k++) {
            struct bad b;
            char tag[48];
            snprintf(tag, sizeof(tag), "trunc-%u-%u", t[i].type, sizes[k]);
            bad_up(f, &b, tag, VMBUS_VERSION_WIN10_V5_3, true);
            /* a plausible message for the open channel, cut short */
            uint8_t m[240];
            memset(m, 0, sizeof(m));
            memcpy(m, &t[i].type, 4);
            uint32_t relid = b.c0->relid;
            memcpy(m + 8, &relid, 4);
            memcpy(m + 12, &relid, 4);
            uint32_t gp = b.c0->gpadl;
            if (t[i].type == CHANNELMSG_GPADL_TEARDOWN || t[i].type == CHANNELMSG_GPADL_BODY)
                memcpy(m + 12, &gp, 4);
            if (t[i].type == CHANNELMSG_INITIATE_CONTACT) {
                uint32_t v = VMBUS_VERSION_WIN10_V5_3;
                memcpy(m + 8, &v, 4);
            }
            post_raw(&b, HV_MESSAGE_TYPE_VMBUS, m, sizes[k]);
            char what[64];
            snprintf(what, sizeof(what), "type %u truncated to %u", t[i].type, sizes[k]);
            bad_done(f, &b, what, -1, true, BAD_WORKS);
        }
    }
}

/* payload_size beyond the 240-byte slot. */
static void test_oversized(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    static const uint32_t sizes[] = {241, 255, 256, 4096, 0x7fffffff, 0xffffffff};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        struct bad b;
        char tag[32];
        snprintf(tag, sizeof(tag), "big-%zu", i);
        bad_up(f, &b, tag, VMBUS_VERSION_WIN10_V5_3, true);
        uint8_t m[HV_MESSAGE_PAYLOAD_SIZE] = {0}; /* sim_post copies up to 240 bytes */
        struct vmbus_channel_relid_msg c = {.header.msgtype = CHANNELMSG_CLOSECHANNEL,
                                            .child_relid = b.c0->relid};
        memcpy(m, &c, sizeof(c));
        post_raw(&b, HV_MESSAGE_TYPE_VMBUS, m, sizes[i]);
        SIM_ASSERT(b.post_status != 0, "payload_size %u accepted", sizes[i]);
        char what[64];
        snprintf(what, sizeof(what), "payload_size %u", sizes[i]);
        bad_done(f, &b, what, -1, true, BAD_WORKS);
    }
}

/* Channel message types nobody handles, and host->guest types. */
static void test_unknown_types(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    static const uint32_t types[] = {0,  25, 26, 0xffffffff, 0x80000001, 18, 19, 20, 23,
                                     CHANNELMSG_OFFERCHANNEL, CHANNELMSG_VERSION_RESPONSE,
                                     CHANNELMSG_GPADL_CREATED, CHANNELMSG_UNLOAD_RESPONSE};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct bad b;
        char tag[32];
        snprintf(tag, sizeof(tag), "type-%zu", i);
        bad_up(f, &b, tag, VMBUS_VERSION_WIN10_V5_3, true);
        uint8_t m[200];
        memset(m, 0, sizeof(m));
        memcpy(m, &types[i], 4);
        post_raw(&b, HV_MESSAGE_TYPE_VMBUS, m, sizeof(m));
        char what[64];
        snprintf(what, sizeof(what), "channel msgtype 0x%x", types[i]);
        bad_done(f, &b, what, -1, true, BAD_WORKS);
    }
    /* hypervisor message types other than 1 */
    static const uint32_t mtypes[] = {0, 2, 0x80000010, 0xffffffff};
    for (size_t i = 0; i < sizeof(mtypes) / sizeof(mtypes[0]); i++) {
        struct bad b;
        char tag[32];
        snprintf(tag, sizeof(tag), "mtype-%zu", i);
        bad_up(f, &b, tag, VMBUS_VERSION_WIN10_V5_3, true);
        struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
        post_raw(&b, mtypes[i], &h, sizeof(h));
        char what[64];
        snprintf(what, sizeof(what), "HvPostMessage message_type 0x%x", mtypes[i]);
        /* a post with a non-VMBus message type may be refused without a log */
        bad_done(f, &b, what, -1, false, BAD_WORKS);
    }
}

/* Relids that were never offered. */
static void test_wrong_relids(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    static const uint32_t relids[] = {999, 2047, 2048, 0x7fffffff, 0};
    int nmissing = 0;
    for (size_t r = 0; r < sizeof(relids) / sizeof(relids[0]); r++) {
        uint32_t relid = relids[r];
        for (int kind = 0; kind < 6; kind++) {
            struct bad b;
            char tag[40];
            snprintf(tag, sizeof(tag), "relid-%zu-%d", r, kind);
            bad_up(f, &b, tag, VMBUS_VERSION_WIN10_V5_3, true);
            const char *name = "";
            if (kind == 0) {
                name = "OPENCHANNEL";
                struct vmbus_channel_open_channel m = {
                    .header.msgtype = CHANNELMSG_OPENCHANNEL, .child_relid = relid,
                    .openid = relid, .ringbuffer_gpadlhandle = b.c0->gpadl,
                    .downstream_ringbuffer_pageoffset = 4};
                post_raw(&b, 1, &m, sizeof(m));
                struct sim_qmsg q;
                SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_OPENCHANNEL_RESULT, NULL, NULL, &q, 2000),
                           "no OPENCHANNEL_RESULT for relid %u", relid);
                struct vmbus_channel_open_result res;
                memcpy(&res, q.payload, sizeof(res));
                SIM_ASSERT(res.status != 0, "open of relid %u succeeded", relid);
            } else if (kind == 1) {
                name = "CLOSECHANNEL";
                struct vmbus_channel_relid_msg m = {.header.msgtype = CHANNELMSG_CLOSECHANNEL,
                                                    .child_relid = relid};
                post_raw(&b, 1, &m, sizeof(m));
            } else if (kind == 2) {
                name = "GPADL_HEADER";
                uint64_t pfn = sim_page_pfn(b.vm, sim_alloc_pages(b.vm, 1));
                b.post_status = sim_gpadl_post(b.vm, relid, 0x5000, &pfn, 1, 1, 0, 0);
                /* refused with GPADL_CREATED: Linux waits for it */
                struct sim_qmsg q;
                SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_GPADL_CREATED, NULL, NULL, &q, 2000),
                           "no GPADL_CREATED for a GPADL of relid %u (guest would hang)", relid);
                struct vmbus_channel_gpadl_created c;
                memcpy(&c, q.payload, sizeof(c));
                SIM_ASSERT(c.creation_status != 0, "GPADL for relid %u created", relid);
            } else if (kind == 3) {
                name = "GPADL_TEARDOWN";
                struct vmbus_channel_gpadl_teardown m = {
                    .header.msgtype = CHANNELMSG_GPADL_TEARDOWN, .child_relid = relid,
                    .gpadl = b.c0->gpadl};
                post_raw(&b, 1, &m, sizeof(m));
            } else if (kind == 4) {
                name = "MODIFYCHANNEL";
                struct vmbus_channel_modifychannel m = {
                    .header.msgtype = CHANNELMSG_MODIFYCHANNEL, .child_relid = relid};
                post_raw(&b, 1, &m, sizeof(m));
            } else {
                name = "RELID_RELEASED";
                struct vmbus_channel_relid_msg m = {.header.msgtype = CHANNELMSG_RELID_RELEASED,
                                                    .child_relid = relid};
                post_raw(&b, 1, &m, sizeof(m));
            }
            char what[64], tok[16];
            snprintf(what, sizeof(what), "%s relid %u", name, relid);
            snprintf(tok, sizeof(tok), "#%u", relid);
            fx_good_check(f, what);
            /* the log line must name the partition and the bogus relid;
             * collect misses and fail at the end, so every case runs */
            bool logged = sim_log_wait(1000, LOG_WARN, b.name, tok, NULL);
            if (!logged) {
                nmissing++;
                fprintf(stderr, "MISSING: no warning naming %s and relid %u for %s\n", b.name,
                        relid, what);
            }
            bad_expect(&b, what, BAD_WORKS);
            print_message("  %-46s post=%-3d %s%s\n", what, b.post_status,
                          bad_outcome_str(BAD_WORKS), logged ? "" : " [NOT LOGGED]");
            SIM_ASSERT(b.vm->bad_host_msgs == 0, "malformed host messages");
            sim_vm_free(b.vm);
        }
    }
    SIM_ASSERT(nmissing == 0, "%d wrong-relid cases without a warning naming the relid",
               nmissing);
}

/* Channel messages before INITIATE_CONTACT / before REQUESTOFFERS. */
static void test_before_contact(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    static const uint32_t types[] = {CHANNELMSG_REQUESTOFFERS, CHANNELMSG_OPENCHANNEL,
                                     CHANNELMSG_GPADL_HEADER,  CHANNELMSG_GPADL_BODY,
                                     CHANNELMSG_CLOSECHANNEL,  CHANNELMSG_UNLOAD,
                                     CHANNELMSG_MODIFYCHANNEL, CHANNELMSG_RELID_RELEASED,
                                     CHANNELMSG_GPADL_TEARDOWN, CHANNELMSG_TL_CONNECT_REQUEST};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        struct bad b;
        char tag[32];
        snprintf(tag, sizeof(tag), "early-%u", types[i]);
        bad_up(f, &b, tag, 0, false);
        uint8_t m[148];
        memset(m, 0, sizeof(m));
        memcpy(m, &types[i], 4);
        uint32_t one = 1;
        memcpy(m + 8, &one, 4);
        uint32_t len = types[i] == CHANNELMSG_OPENCHANNEL ? 148 : 40;
        post_raw(&b, 1, m, len);
        char what[64];
        snprintf(what, sizeof(what), "msgtype %u before INITIATE_CONTACT", types[i]);
        fx_good_check(f, what);
        SIM_ASSERT_LOGGED(b.name, -1, what);
        /* the partition can still connect properly afterwards */
        sim_drain_msgs(b.vm);
        int n = sim_bringup(b.vm, VMBUS_VERSION_WIN10_V5_3);
        print_message("  %-46s post=%-3d later connect -> %d offers\n", what, b.post_status, n);
        SIM_ASSERT(n >= ECHO_CHANNELS, "%s: connect afterwards failed (%d)", what, n);
        sim_vm_free(b.vm);
    }
    /* OPEN before REQUESTOFFERS, after a good INITIATE_CONTACT */
    struct bad b;
    bad_up(f, &b, "open-before-offers", 0, false);
    SIM_ASSERT(sim_connect_version(b.vm, VMBUS_VERSION_WIN10_V5_3) == 1, "connect");
    struct vmbus_channel_open_channel m = {.header.msgtype = CHANNELMSG_OPENCHANNEL,
                                           .child_relid = 1, .openid = 1,
                                           .ringbuffer_gpadlhandle = 0xE1E10,
                                           .downstream_ringbuffer_pageoffset = 2};
    post_raw(&b, 1, &m, sizeof(m));
    bad_done(f, &b, "OPENCHANNEL before REQUESTOFFERS", -1, true, BAD_WORKS);
}

/* Valid messages in a wrong state. */
static void test_state_abuse(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct bad b;
    struct sim_qmsg q;

    /* open an already open channel */
    bad_up(f, &b, "double-open", VMBUS_VERSION_WIN10_V5_3, true);
    {
        uint32_t h;
        SIM_ASSERT(sim_gpadl_create_pages(b.vm, b.c0->relid, 4, &h, NULL) == 0, "gpadl");
        struct vmbus_channel_open_channel m = {.header.msgtype = CHANNELMSG_OPENCHANNEL,
                                               .child_relid = b.c0->relid,
                                               .openid = b.c0->relid,
                                               .ringbuffer_gpadlhandle = h,
                                               .downstream_ringbuffer_pageoffset = 2};
        post_raw(&b, 1, &m, sizeof(m));
        SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_OPENCHANNEL_RESULT, NULL, NULL, &q, 2000),
                   "no OPENCHANNEL_RESULT for a second open");
        struct vmbus_channel_open_result r;
        memcpy(&r, q.payload, sizeof(r));
        SIM_ASSERT(r.status != 0, "second open of an open channel succeeded");
    }
    bad_done(f, &b, "OPENCHANNEL on an open channel", b.c0->relid, true, BAD_WORKS);

    /* open with a GPADL handle that does not exist */
    bad_up(f, &b, "open-nogpadl", VMBUS_VERSION_WIN10_V5_3, false);
    {
        struct sim_offer *o = sim_offer_by_class(b.vm, sim_echo_class(), 0);
        struct vmbus_channel_open_channel m = {.header.msgtype = CHANNELMSG_OPENCHANNEL,
                                               .child_relid = o->relid,
                                               .openid = o->relid,
                                               .ringbuffer_gpadlhandle = 0x12345,
                                               .downstream_ringbuffer_pageoffset = 2};
        post_raw(&b, 1, &m, sizeof(m));
        SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_OPENCHANNEL_RESULT, NULL, NULL, &q, 2000),
                   "no OPENCHANNEL_RESULT for an unknown GPADL (guest would hang)");
        struct vmbus_channel_open_result r;
        memcpy(&r, q.payload, sizeof(r));
        SIM_ASSERT(r.status != 0, "open with unknown GPADL succeeded");
        b.c0 = NULL;
        bad_done(f, &b, "OPENCHANNEL with unknown GPADL", (int)o->relid, true, BAD_WORKS);
    }

    /* open with another channel's GPADL */
    bad_up(f, &b, "open-othergpadl", VMBUS_VERSION_WIN10_V5_3, false);
    {
        struct sim_offer *o0 = sim_offer_by_class(b.vm, sim_echo_class(), 0);
        struct sim_offer *o1 = sim_offer_by_class(b.vm, sim_echo_class(), 1);
        uint32_t h;
        SIM_ASSERT(sim_gpadl_create_pages(b.vm, o1->relid, 4, &h, NULL) == 0, "gpadl");
        struct vmbus_channel_open_channel m = {.header.msgtype = CHANNELMSG_OPENCHANNEL,
                                               .child_relid = o0->relid,
                                               .openid = o0->relid,
                                               .ringbuffer_gpadlhandle = h,
                                               .downstream_ringbuffer_pageoffset = 2};
        post_raw(&b, 1, &m, sizeof(m));
        SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_OPENCHANNEL_RESULT, NULL, NULL, &q, 2000),
                   "no OPENCHANNEL_RESULT for another channel's GPADL (guest would hang)");
        struct vmbus_channel_open_result r;
        memcpy(&r, q.payload, sizeof(r));
        SIM_ASSERT(r.status != 0, "open with another channel's GPADL succeeded");
        bad_done(f, &b, "OPENCHANNEL with another channel's GPADL", (int)o0->relid, true,
                 BAD_WORKS);
    }

    /* tear down the ring GPADL of an open channel */
    bad_up(f, &b, "teardown-open-ring", VMBUS_VERSION_WIN10_V5_3, true);
    {
        struct vmbus_channel_gpadl_teardown m = {.header.msgtype = CHANNELMSG_GPADL_TEARDOWN,
                                                 .child_relid = b.c0->relid,
                                                 .gpadl = b.c0->gpadl};
        post_raw(&b, 1, &m, sizeof(m));
        /* deferred: the ring stays mapped while the channel is open, and
         * GPADL_TORNDOWN comes once the guest closed it */
        SIM_ASSERT(!sim_wait_msg(b.vm, CHANNELMSG_GPADL_TORNDOWN, NULL, NULL, NULL, 300),
                   "GPADL_TORNDOWN for the ring of an open channel");
        SIM_ASSERT(sim_echo_roundtrip(b.c0, 64, 1, true) == 0, "ring of an open channel gone");
        SIM_ASSERT(sim_chan_close(b.c0) == 0, "no GPADL_TORNDOWN after the close");
        b.c0 = NULL;
    }
    bad_done(f, &b, "GPADL_TEARDOWN of an open ring", -1, false, BAD_WORKS);

    /* close twice, then close of a never-opened channel */
    bad_up(f, &b, "double-close", VMBUS_VERSION_WIN10_V5_3, true);
    {
        SIM_ASSERT(sim_chan_close(b.c1) == 0, "close");
        struct vmbus_channel_relid_msg m = {.header.msgtype = CHANNELMSG_CLOSECHANNEL,
                                            .child_relid = b.c1->relid};
        post_raw(&b, 1, &m, sizeof(m));
        b.c1 = NULL;
    }
    bad_done(f, &b, "CLOSECHANNEL on a closed channel", -1, false, BAD_WORKS);

    /* RELID_RELEASED for a live (not rescinded) channel */
    bad_up(f, &b, "release-live", VMBUS_VERSION_WIN10_V5_3, true);
    {
        struct vmbus_channel_relid_msg m = {.header.msgtype = CHANNELMSG_RELID_RELEASED,
                                            .child_relid = b.c1->relid};
        post_raw(&b, 1, &m, sizeof(m));
        b.c1 = NULL;
    }
    bad_done(f, &b, "RELID_RELEASED for a live channel", -1, false, BAD_WORKS);

    /* INITIATE_CONTACT while connected, REQUESTOFFERS twice, UNLOAD twice */
    bad_up(f, &b, "recontact", VMBUS_VERSION_WIN10_V5_3, true);
    {
        /* a guest reconnecting without UNLOAD (kexec) starts over */
        int r = sim_connect_version(b.vm, VMBUS_VERSION_WIN10_V5_3);
        SIM_ASSERT(r == 1, "INITIATE_CONTACT while connected -> %d", r);
    }
    bad_done(f, &b, "INITIATE_CONTACT while connected", -1, false, BAD_RESET);

    bad_up(f, &b, "reoffers", VMBUS_VERSION_WIN10_V5_3, true);
    {
        sim_timeout_ms = 500;
        int n = sim_request_offers(b.vm);
        sim_timeout_ms = 5000;
        SIM_ASSERT(n == -ETIMEDOUT, "second REQUESTOFFERS answered (%d)", n);
    }
    bad_done(f, &b, "REQUESTOFFERS twice", -1, true, BAD_WORKS);

    bad_up(f, &b, "unload2", VMBUS_VERSION_WIN10_V5_3, true);
    {
        SIM_ASSERT(sim_unload(b.vm) == 0, "unload");
        struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_UNLOAD};
        post_raw(&b, 1, &h, sizeof(h));
        /* not connected any more: refused like any message before contact */
        SIM_ASSERT(!sim_wait_msg(b.vm, CHANNELMSG_UNLOAD_RESPONSE, NULL, NULL, NULL, 300),
                   "UNLOAD_RESPONSE to an UNLOAD without a connection");
        SIM_ASSERT_LOGGED(b.name, -1, "UNLOAD twice");
        b.c0 = b.c1 = NULL;
        SIM_ASSERT(sim_bringup(b.vm, VMBUS_VERSION_WIN10_V5_3) >= ECHO_CHANNELS,
                   "reconnect after double unload");
        b.c0 = sim_open_echo(b.vm, 0, 4, 4);
        SIM_ASSERT(b.c0 != NULL, "open after double unload");
    }
    bad_done(f, &b, "UNLOAD twice", -1, false, BAD_WORKS);

    /* UNLOAD below 3.0 and MODIFYCHANNEL below 4.1 */
    bad_up(f, &b, "old-unload", VMBUS_VERSION_WIN8, true);
    {
        struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_UNLOAD};
        post_raw(&b, 1, &h, sizeof(h));
        /* UNLOAD exists from 3.0 on: refused, the connection stays */
        SIM_ASSERT(!sim_wait_msg(b.vm, CHANNELMSG_UNLOAD_RESPONSE, NULL, NULL, NULL, 300),
                   "UNLOAD_RESPONSE on a 2.4 connection");
    }
    bad_done(f, &b, "UNLOAD on a 2.4 connection", -1, true, BAD_WORKS);

    bad_up(f, &b, "old-modify", VMBUS_VERSION_WIN10, true);
    {
        struct vmbus_channel_modifychannel m = {.header.msgtype = CHANNELMSG_MODIFYCHANNEL,
                                                .child_relid = b.c0->relid, .target_vp = 1};
        post_raw(&b, 1, &m, sizeof(m));
        bool resp = sim_wait_msg(b.vm, CHANNELMSG_MODIFYCHANNEL_RESPONSE, NULL, NULL, NULL, 300);
        SIM_ASSERT(!resp, "MODIFYCHANNEL_RESPONSE sent to a 4.0 guest");
    }
    bad_done(f, &b, "MODIFYCHANNEL on a 4.0 connection", -1, true, BAD_WORKS);

    /* target vCPUs out of range */
    bad_up(f, &b, "modify-vp", VMBUS_VERSION_WIN10_V5_3, true);
    {
        struct vmbus_channel_modifychannel m = {.header.msgtype = CHANNELMSG_MODIFYCHANNEL,
                                                .child_relid = b.c0->relid,
                                                .target_vp = 9999};
        post_raw(&b, 1, &m, sizeof(m));
        /* 5.3 guests wait for the answer (Linux does) */
        SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_MODIFYCHANNEL_RESPONSE, NULL, NULL, &q, 2000),
                   "no MODIFYCHANNEL_RESPONSE for vCPU 9999");
        struct vmbus_channel_modifychannel_response r;
        memcpy(&r, q.payload, sizeof(r));
        SIM_ASSERT(r.status != 0, "MODIFYCHANNEL to vCPU 9999 accepted");
    }
    bad_done(f, &b, "MODIFYCHANNEL target_vp 9999", -1, true, BAD_WORKS);

    bad_up(f, &b, "open-vp", VMBUS_VERSION_WIN10_V5_3, false);
    {
        struct sim_offer *o = sim_offer_by_class(b.vm, sim_echo_class(), 0);
        uint32_t h;
        SIM_ASSERT(sim_gpadl_create_pages(b.vm, o->relid, 8, &h, NULL) == 0, "gpadl");
        struct vmbus_channel_open_channel m = {.header.msgtype = CHANNELMSG_OPENCHANNEL,
                                               .child_relid = o->relid,
                                               .openid = o->relid,
                                               .ringbuffer_gpadlhandle = h,
                                               .target_vp = 4096,
                                               .downstream_ringbuffer_pageoffset = 4};
        post_raw(&b, 1, &m, sizeof(m));
        SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_OPENCHANNEL_RESULT, NULL, NULL, &q, 2000),
                   "no OPENCHANNEL_RESULT for target_vp 4096 (guest would hang)");
        struct vmbus_channel_open_result r;
        memcpy(&r, q.payload, sizeof(r));
        SIM_ASSERT(r.status != 0, "OPENCHANNEL with target_vp 4096 accepted");
        bad_done(f, &b, "OPENCHANNEL target_vp 4096", (int)o->relid, true, BAD_WORKS);
    }

    /* INITIATE_CONTACT with target_vcpu out of range, or monitor pages
     * outside guest memory */
    bad_up(f, &b, "contact-vp", 0, false);
    {
        struct vmbus_channel_initiate_contact m;
        memset(&m, 0, sizeof(m));
        m.header.msgtype = CHANNELMSG_INITIATE_CONTACT;
        m.vmbus_version_requested = VMBUS_VERSION_WIN10_V5_3;
        m.target_vcpu = 77;
        m.u.s.msg_sint = 2;
        m.monitor_page1 = 1ull << 50;
        m.monitor_page2 = 1ull << 50;
        b.post_status = sim_post(b.vm, 4, 1, &m, sizeof(m));
    }
    bad_done(f, &b, "INITIATE_CONTACT target_vcpu 77", -1, true, BAD_WORKS);
}

/* OPENCHANNEL with a downstream offset that does not split the GPADL. */
static void test_open_offsets(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    static const struct {
        uint32_t pages, downstream;
    } c[] = {{8, 0}, {8, 8}, {8, 9}, {8, 1}, {8, 7}, {8, 0xffffffff}, {1, 1}};
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        struct bad b;
        char tag[32];
        snprintf(tag, sizeof(tag), "offset-%zu", i);
        bad_up(f, &b, tag, VMBUS_VERSION_WIN10_V5_3, false);
        struct sim_offer *o = sim_offer_by_class(b.vm, sim_echo_class(), 0);
        uint32_t h;
        SIM_ASSERT(sim_gpadl_create_pages(b.vm, o->relid, c[i].pages, &h, NULL) == 0, "gpadl");
        struct vmbus_channel_open_channel m = {
            .header.msgtype = CHANNELMSG_OPENCHANNEL, .child_relid = o->relid,
            .openid = o->relid, .ringbuffer_gpadlhandle = h,
            .downstream_ringbuffer_pageoffset = c[i].downstream};
        b.post_status = sim_post(b.vm, b.vm->msg_conn_id, 1, &m, sizeof(m));
        struct sim_qmsg q;
        char what[64];
        snprintf(what, sizeof(what), "OPEN %u-page GPADL, downstream %u", c[i].pages,
                 c[i].downstream);
        SIM_ASSERT(sim_wait_msg(b.vm, CHANNELMSG_OPENCHANNEL_RESULT, NULL, NULL, &q, 2000),
                   "%s: no OPENCHANNEL_RESULT (guest would hang)", what);
        struct vmbus_channel_open_result r;
        memcpy(&r, q.payload, sizeof(r));
        SIM_ASSERT(r.status != 0, "%s: accepted", what);
        fx_good_check(f, what);
        SIM_ASSERT_LOGGED(b.name, (int)o->relid, what);
        /* the guest tears its GPADL down and may open properly */
        SIM_ASSERT(sim_gpadl_teardown(b.vm, o->relid, h) == 0, "%s: teardown", what);
        b.c0 = sim_open_echo(b.vm, 0, 4, 4);
        SIM_ASSERT(b.c0 != NULL, "%s: proper open afterwards", what);
        bad_expect(&b, what, BAD_WORKS);
        print_message("  %-46s status 0x%x; %s\n", what, r.status, bad_outcome_str(BAD_WORKS));
        sim_vm_free(b.vm);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_truncated, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_oversized, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_types, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_relids, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_before_contact, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_state_abuse, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_open_offsets, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_bad_msgs", tests);
}
