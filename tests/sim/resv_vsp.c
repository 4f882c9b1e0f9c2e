/* SPDX-License-Identifier: MIT */
/* The reserving test VSP of resv_vsp.h. */
#include "resv_vsp.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

#include "sim_test.h"

struct resv_vsp resv = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

void resv_vsp_init(const struct hv_guid *class_id, size_t reply_len)
{
    resv.class_id = *class_id;
    resv.reply_len = reply_len <= RESV_MAX_REPLY ? reply_len : RESV_MAX_REPLY;
}

void resv_vsp_reset(void)
{
    pthread_mutex_lock(&resv.lock);
    resv.gate = resv.fill = resv.batch = resv.batched = false;
    resv.credits = 0;
    resv.qhead = resv.qlen = 0;
    resv.taken = resv.eagain = resv.writable = resv.closes = resv.fillers = resv.fill_ret = 0;
    resv.sent = resv.sent_ok = resv.sent_epipe = resv.sent_eio = resv.sent_other = 0;
    pthread_mutex_unlock(&resv.lock);
}

void resv_set_gate(bool open)
{
    pthread_mutex_lock(&resv.lock);
    resv.gate = open;
    pthread_cond_broadcast(&resv.cond);
    pthread_mutex_unlock(&resv.lock);
}

void resv_send(int n)
{
    pthread_mutex_lock(&resv.lock);
    resv.credits += n;
    pthread_cond_broadcast(&resv.cond);
    pthread_mutex_unlock(&resv.lock);
}

void resv_set_fill(bool fill)
{
    pthread_mutex_lock(&resv.lock);
    resv.fill = fill;
    pthread_mutex_unlock(&resv.lock);
}

void resv_set_batch(bool on)
{
    pthread_mutex_lock(&resv.lock);
    resv.batch = on;
    pthread_cond_broadcast(&resv.cond);
    while (resv.batched != on)
        pthread_cond_wait(&resv.cond, &resv.lock);
    pthread_mutex_unlock(&resv.lock);
}

int resv_get(const int *v) { return sim_count(&resv.lock, v); }

int resv_wait(const int *v, int want) { return sim_wait_count(&resv.lock, &resv.cond, v, want); }

/* After reserve's -EAGAIN: with fill asked for, fill what is not reserved
 * with ordinary sends until they too get -EAGAIN. */
static void stopped_pulling(struct vsp_channel *ch)
{
    pthread_mutex_lock(&resv.lock);
    bool fill = resv.fill;
    resv.fill = false;
    pthread_mutex_unlock(&resv.lock);
    int n = 0, fr = 0;
    uint8_t filler[RESV_FILL_LEN] = {0};
    while (fill &&
           (fr = vsp_send_inband(ch, filler, sizeof(filler), RESV_FILLER_TRANS, false)) == 0)
        n++;
    pthread_mutex_lock(&resv.lock);
    if (fill) {
        resv.fillers += n;
        resv.fill_ret = fr;
    }
    resv.eagain++; /* last: a test reads the fill counts once it sees this */
    pthread_cond_broadcast(&resv.cond);
    pthread_mutex_unlock(&resv.lock);
}

/* Pull requests while a completion can be reserved for each. */
static void pump(struct vsp_channel *ch)
{
    for (;;) {
        int r = vsp_send_reserve(ch, resv.reply_len);
        if (r == -EAGAIN) {
            stopped_pulling(ch);
            return; /* writable follows */
        }
        if (r < 0)
            return;
        struct vsp_packet pkt;
        if (vsp_recv(ch, &pkt) <= 0) {
            vsp_send_unreserve(ch, resv.reply_len);
            return;
        }
        pthread_mutex_lock(&resv.lock);
        if (resv.qlen < RESV_MAX_QUEUE) {
            resv.queue[(resv.qhead + resv.qlen++) % RESV_MAX_QUEUE] = pkt.trans_id;
            resv.taken++;
            pthread_cond_broadcast(&resv.cond);
            pthread_mutex_unlock(&resv.lock);
        } else { /* the test sent more than it said it would */
            pthread_mutex_unlock(&resv.lock);
            vsp_send_unreserve(ch, resv.reply_len);
            return;
        }
    }
}

static void resv_receive(struct vsp_channel *ch) { pump(ch); }

static void resv_writable(struct vsp_channel *ch)
{
    pthread_mutex_lock(&resv.lock);
    resv.writable++;
    pthread_mutex_unlock(&resv.lock);
    pump(ch);
}

static void resv_close(struct vsp_channel *ch)
{
    (void)ch;
    pthread_mutex_lock(&resv.lock);
    resv.closes++;
    pthread_cond_broadcast(&resv.cond);
    pthread_mutex_unlock(&resv.lock);
}

/* The VSP's I/O thread: completes requests in order, into their
 * reservations, while the gate is open.  Each completion's payload is its
 * trans_id's low byte repeated. */
static void *completer(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&resv.lock);
    for (;;) {
        while (!resv.stop && !((resv.gate || resv.credits > 0) && resv.qlen) &&
               resv.batch == resv.batched)
            pthread_cond_wait(&resv.cond, &resv.lock);
        if (resv.stop)
            break;
        if (resv.batch != resv.batched) {
            bool on = resv.batch;
            struct vsp_channel *ch = resv.ch;
            pthread_mutex_unlock(&resv.lock);
            if (on)
                vsp_send_batch_begin(ch);
            else
                vsp_send_batch_end(ch);
            pthread_mutex_lock(&resv.lock);
            resv.batched = on;
            pthread_cond_broadcast(&resv.cond);
            continue;
        }
        if (!resv.gate)
            resv.credits--;
        uint64_t t = resv.queue[resv.qhead];
        resv.qhead = (resv.qhead + 1) % RESV_MAX_QUEUE;
        resv.qlen--;
        struct vsp_channel *ch = resv.ch;
        pthread_mutex_unlock(&resv.lock);
        uint8_t reply[RESV_MAX_REPLY];
        memset(reply, (int)(t & 0xff), resv.reply_len);
        struct iovec iov = {reply, resv.reply_len};
        int r = vsp_send_reserved(ch, resv.reply_len, VM_PKT_COMP, 0, t, NULL, 0, &iov, 1);
        pthread_mutex_lock(&resv.lock);
        resv.sent++;
        if (r == 0)
            resv.sent_ok++;
        else if (r == -EPIPE)
            resv.sent_epipe++;
        else if (r == -EIO)
            resv.sent_eio++;
        else
            resv.sent_other++;
        pthread_cond_broadcast(&resv.cond);
    }
    pthread_mutex_unlock(&resv.lock);
    return NULL;
}

static const struct vsp_channel_ops resv_ops = {
    .receive = resv_receive, .writable = resv_writable, .close = resv_close};

static int resv_attach(void *state, struct vsp_partition *p, void **part_state)
{
    (void)state;
    (void)part_state;
    struct vsp_offer o = {.class_id = resv.class_id, .ops = &resv_ops};
    struct vsp_channel *ch = vsp_channel_offer(p, &o);
    if (!ch)
        return -ENOMEM;
    pthread_mutex_lock(&resv.lock);
    resv.ch = ch;
    resv.stop = false;
    pthread_mutex_unlock(&resv.lock);
    return pthread_create(&resv.thread, NULL, completer, NULL) == 0 ? 0 : -EAGAIN;
}

static void resv_detach(void *state, struct vsp_partition *p, void *part_state)
{
    (void)state;
    (void)p;
    (void)part_state;
    pthread_mutex_lock(&resv.lock);
    resv.stop = true;
    pthread_cond_broadcast(&resv.cond);
    pthread_mutex_unlock(&resv.lock);
    pthread_join(resv.thread, NULL);
}

static const struct vsp_plugin resv_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "resv",
    .attach = resv_attach,
    .detach = resv_detach,
};
const struct vsp_plugin *const resv_vsp_linked[] = {&resv_plugin, NULL};
