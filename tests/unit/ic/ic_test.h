/* SPDX-License-Identifier: MIT */
/* Shared helpers of the IC unit tests: the Linux-like guest of
 * tests/icguest on the fake channel, and control calls on a second thread
 * (control commands block until the guest answers). */
#ifndef VMBUSD_TEST_IC_TEST_H
#define VMBUSD_TEST_IC_TEST_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fake_vsp.h"
#include "ic_guest.h"
#include "vsp/ic/ic.h"

/* Linux 6.1's message version lists (preference order), per service, from
 * the shared guest (tests/icguest); 2, 4, 3 and 3 entries. */
extern const struct icg_ver *const linux_hb_msg;
extern const struct icg_ver *const linux_sd_msg;
extern const struct icg_ver *const linux_ts_msg;
extern const struct icg_ver *const linux_kvp_msg;

/* Copy host packet s into out as the guest's reply (flags = 5). */
size_t guest_echo(const struct fake_sent *s, uint8_t *out, size_t cap);
/* Answer the negotiate request s the way Linux does (icg_negotiate_lists),
 * with Linux's framework list and message list msg. */
size_t guest_negotiate_reply(const struct fake_sent *s, uint8_t *out, size_t cap,
                             const struct icg_ver *msg, unsigned n_msg);
/* Inject out[0..len) as a DATA_INBAND reply with trans_id and deliver it. */
void guest_send(struct vsp_channel *ch, uint64_t trans_id, const void *data, size_t len);
/* Answer the last packet sent (a negotiate) like Linux; returns its reply. */
void guest_negotiate(struct vsp_channel *ch, const struct icg_ver *msg, unsigned n_msg);

struct ic_hdr sent_hdr(const struct fake_sent *s);

/* A plugin control command on its own thread. */
struct ctl_call {
    const struct vsp_plugin *pl;
    void *state;
    struct vsp_partition *p;
    void *part_state;
    const char *cmd;
    const char *args;
    char reply[4096];
    int ret;
    pthread_t th;
};
void ctl_start(struct ctl_call *c);
int ctl_join(struct ctl_call *c);

/* A test's plugin, its partition and the partition's one channel. */
struct fx {
    void *state;
    void *part; /* what attach returned */
    struct vsp_partition *p;
    struct vsp_channel *ch;
};

/* Attach plugin pl (init with NULL-terminated key/value arrays) to a new
 * partition; returns the partition, plugin state in *state and what attach
 * returned for the partition in *part_state. */
struct vsp_partition *plugin_setup(const struct vsp_plugin *pl, const char *const *keys,
                                   const char *const *values, void **state, void **part_state);
void plugin_teardown(const struct vsp_plugin *pl, struct vsp_partition *p, void *state,
                     void *part_state);

#endif
