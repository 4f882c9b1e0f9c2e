/* SPDX-License-Identifier: MIT */
/*
 * The control socket vmbusctl talks to: a stream socket carrying one
 * request line and one JSON answer line per exchange.
 *
 *   list                              partitions, channels, published status
 *   control VM VSP COMMAND [ARGS...]  hand a command to one VSP of one VM
 *
 * Each client gets a thread of its own: a VSP command may block (it can wait
 * for the guest), and must not stall the event loop.  At most
 * CTL_MAX_CLIENTS are served at once; a request line may be at most
 * CTL_MAX_REQUEST bytes long (docs/vmbusctl.md).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/guid.h"
#include "common/log.h"
#include "common/utf8.h"
#include "vmbusd/internal.h"


struct strbuf {
    char *s;
    size_t len, cap;
};

static void sb_add(struct strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(struct strbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = (b->cap ? b->cap * 2 : 1024) + (size_t)n;
        char *ns = realloc(b->s, ncap);
        if (!ns)
            return;
        b->s = ns;
        b->cap = ncap;
    }
}

/* Values may come from the guest (KVP): control characters are escaped,
 * valid UTF-8 passes through, anything else becomes U+FFFD. */
static void sb_json_str(struct strbuf *b, const char *s)
{
    sb_add(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        size_t n = utf8_decode(s, strnlen(s, 4), NULL);
        if (c == '"' || c == '\\')
            sb_add(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            sb_add(b, "\\u%04x", c);
        else if (c < 0x80)
            sb_add(b, "%c", c);
        else if (n == 0)
            sb_add(b, "\\ufffd"); /* not UTF-8: say so rather than pass it on */
        else {
            sb_add(b, "%.*s", (int)n, s);
            s += n - 1;
        }
    }
    sb_add(b, "\"");
}

static void list_partition(struct strbuf *b, struct vmm_conn *c)
{
    struct xp_snapshot snap;
    xp_snapshot(c->xp, &snap); /* out of memory: listed without its channels */
    sb_add(b, "{\"id\":%u,\"name\":", snap.id);
    sb_json_str(b, c->name);
    sb_add(b, ",\"vcpus\":%u,\"connected\":%s,\"version\":\"%u.%u\",", snap.nvcpus,
           snap.connected ? "true" : "false", snap.version >> 16, snap.version & 0xffff);
    /* Who connected it: which VMM process vmbusctl commands for this VM reach. */
    sb_add(b, "\"vmm_pid\":%d,\"vmm_uid\":%d,\"vmm_gid\":%d,", (int)c->peer_pid,
           (int)c->peer_uid, (int)c->peer_gid);
    sb_add(b, "\"messages_in\":%llu,\"messages_out\":%llu,\"guest_errors\":%llu,\"channels\":[",
           (unsigned long long)snap.stats.msgs_in, (unsigned long long)snap.stats.msgs_out,
           (unsigned long long)snap.stats.violations);
    for (unsigned i = 0; i < snap.nchannels; i++) {
        const struct xp_chan_snapshot *ch = &snap.channels[i];
        char cls[GUID_STR_LEN], inst[GUID_STR_LEN];
        guid_format(&ch->class_id, cls);
        guid_format(&ch->instance_id, inst);
        sb_add(b,
               "%s{\"relid\":%u,\"class\":\"%s\",\"instance\":\"%s\",\"subchannel\":%u,"
               "\"state\":\"%s\",\"target_vp\":%u,\"in_fill_pct\":%u,\"out_fill_pct\":%u,",
               i ? "," : "", ch->relid, cls, inst, ch->sub_channel_index,
               xp_chan_state_name(ch->state), ch->target_vp, ch->in_fill_pct, ch->out_fill_pct);
        /* the ring headers as the guest and we left them: a stalled channel
         * shows who waits for whom */
        sb_add(b,
               "\"in_ring\":{\"write_index\":%u,\"read_index\":%u,\"interrupt_mask\":%u,"
               "\"pending_send_sz\":%u},"
               "\"out_ring\":{\"write_index\":%u,\"read_index\":%u,\"interrupt_mask\":%u,"
               "\"pending_send_sz\":%u}}",
               ch->in_write, ch->in_read, ch->in_mask, ch->in_pending, ch->out_write,
               ch->out_read, ch->out_mask, ch->out_pending);
    }
    xp_snapshot_free(&snap);
    sb_add(b, "],\"status\":{");
    char *st = c->vp ? host_partition_status_text(c->vp) : NULL;
    bool first = true;
    char *save = NULL;
    for (char *line = st ? strtok_r(st, "\n", &save) : NULL; line;
         line = strtok_r(NULL, "\n", &save)) {
        char *eq = strchr(line, '=');
        if (!eq)
            continue;
        *eq = 0;
        sb_add(b, "%s", first ? "" : ",");
        sb_json_str(b, line);
        sb_add(b, ":");
        sb_json_str(b, eq + 1);
        first = false;
    }
    free(st);
    sb_add(b, "}}");
}

static void do_list(struct vmbusd *d, struct strbuf *b)
{
    sb_add(b, "{\"ok\":true,\"partitions\":[");
    pthread_mutex_lock(&d->conns_lock);
    bool first = true;
    struct vmm_conn *c;
    LIST_FOREACH(c, &d->conns, link) {
        if (!c->xp)
            continue;
        sb_add(b, "%s", first ? "" : ",");
        list_partition(b, c);
        first = false;
    }
    pthread_mutex_unlock(&d->conns_lock);
    sb_add(b, "]}");
}

static void do_control(struct vmbusd *d, struct strbuf *b, char *args)
{
    char *save = NULL;
    char *vm = strtok_r(args, " ", &save), *vsp = strtok_r(NULL, " ", &save);
    char *cmd = strtok_r(NULL, " ", &save);
    char *rest = strtok_r(NULL, "", &save);
    if (!vm || !vsp || !cmd) {
        sb_add(b, "{\"ok\":false,\"error\":\"usage: control VM VSP COMMAND [ARGS]\"}");
        return;
    }
    /* A VM is named by its name first; a plain decimal number that names no
     * VM is taken as a partition id. */
    char *end;
    unsigned long id = strtoul(vm, &end, 10);
    bool numeric = *vm && !*end;
    struct vmm_conn *found = NULL;
    pthread_mutex_lock(&d->conns_lock);
    for (struct vmm_conn *c = LIST_FIRST(&d->conns); c && !found; c = LIST_NEXT(c, link))
        if (c->xp && c->vp && strcmp(c->name, vm) == 0)
            found = c;
    for (struct vmm_conn *c = LIST_FIRST(&d->conns); c && !found && numeric;
         c = LIST_NEXT(c, link))
        if (c->xp && c->vp && xp_id(c->xp) == id)
            found = c;
    if (found)
        atomic_fetch_add(&found->ctl_busy, 1); /* teardown waits for us */
    pthread_mutex_unlock(&d->conns_lock);
    if (!found) {
        sb_add(b, "{\"ok\":false,\"error\":");
        sb_json_str(b, "no such VM");
        sb_add(b, "}");
        return;
    }
    char reply[4096] = "";
    int ret = host_partition_control(found->vp, vsp, cmd, rest, reply, sizeof(reply));
    atomic_fetch_sub(&found->ctl_busy, 1);
    sb_add(b, "{\"ok\":%s,%s", ret == 0 ? "true" : "false", ret == 0 ? "\"reply\":" : "\"error\":");
    sb_json_str(b, reply[0] ? reply : strerror(-ret));
    sb_add(b, "}");
}

/* The clients being served: counted for the cap, and known so that
 * control_close can end them before the daemon goes. */
struct control {
    pthread_mutex_t lock;
    pthread_cond_t gone; /* a client left */
    int fds[CTL_MAX_CLIENTS];
    int nclients;
    bool full_logged; /* the cap was hit; logged once until a client leaves */
};

struct client {
    struct vmbusd *d;
    int fd;
};

static void send_all(int fd, const char *s, size_t len)
{
    while (len) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* the client went away */
        s += n;
        len -= (size_t)n;
    }
}

static void answer(struct vmbusd *d, int fd, char *line)
{
    struct strbuf b = {0};
    line[strcspn(line, "\r")] = 0;
    if (strcmp(line, "list") == 0)
        do_list(d, &b);
    else if (strncmp(line, "control ", 8) == 0)
        do_control(d, &b, line + 8);
    else
        sb_add(&b, "{\"ok\":false,\"error\":\"unknown request (list, control)\"}");
    if (b.s) {
        sb_add(&b, "\n");
        send_all(fd, b.s, b.len);
    }
    free(b.s);
}

static void *client_thread(void *arg)
{
    struct client *cl = arg;
    struct vmbusd *d = cl->d;
    int fd = cl->fd;
    free(cl);
    /* The limit applies while reading: a line (newline included) must fit
     * the buffer, so a client cannot make us hold more than this. */
    char *buf = malloc(CTL_MAX_REQUEST + 1);
    size_t len = 0;
    while (buf) {
        ssize_t n = recv(fd, buf + len, CTL_MAX_REQUEST - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        char *start = buf, *nl;
        while ((nl = memchr(start, '\n', len - (size_t)(start - buf)))) {
            *nl = 0;
            answer(d, fd, start);
            start = nl + 1;
        }
        len -= (size_t)(start - buf);
        memmove(buf, start, len);
        if (len == CTL_MAX_REQUEST) {
            static const char e[] = "{\"ok\":false,\"error\":\"request longer than "
                                    "16384 bytes\"}\n";
            _Static_assert(CTL_MAX_REQUEST == 16384, "the message above");
            send_all(fd, e, sizeof(e) - 1);
            log_warn("control client sent a request longer than %d bytes; disconnected",
                     CTL_MAX_REQUEST);
            break; /* no way to find the next request: the client is cut off */
        }
    }
    free(buf);
    struct control *ctl = d->ctl;
    pthread_mutex_lock(&ctl->lock);
    for (int i = 0; i < ctl->nclients; i++) {
        if (ctl->fds[i] == fd) {
            ctl->fds[i] = ctl->fds[--ctl->nclients];
            break;
        }
    }
    ctl->full_logged = false;
    close(fd);
    pthread_cond_broadcast(&ctl->gone);
    pthread_mutex_unlock(&ctl->lock);
    return NULL;
}

static void ctl_accept_cb(evutil_socket_t lfd, short what, void *arg)
{
    struct vmbusd *d = arg;
    struct control *ctl = d->ctl;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        daemon_accept_failed(d, d->ctl_ev, d->cfg.control_path, errno);
        return;
    }
    pthread_mutex_lock(&ctl->lock);
    if (ctl->nclients == CTL_MAX_CLIENTS) {
        bool log = !ctl->full_logged;
        ctl->full_logged = true;
        pthread_mutex_unlock(&ctl->lock);
        if (log)
            log_warn("control socket: %d clients connected, refusing more", CTL_MAX_CLIENTS);
        static const char e[] = "{\"ok\":false,\"error\":\"too many control clients\"}\n";
        (void)!send(fd, e, sizeof(e) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        return;
    }
    struct client *cl = malloc(sizeof(*cl));
    pthread_t t;
    if (cl) {
        *cl = (struct client){.d = d, .fd = fd};
        ctl->fds[ctl->nclients++] = fd;
        if (pthread_create(&t, NULL, client_thread, cl) == 0) {
            pthread_detach(t);
            pthread_mutex_unlock(&ctl->lock);
            return;
        }
        ctl->nclients--;
        free(cl);
    }
    pthread_mutex_unlock(&ctl->lock);
    close(fd);
}

int control_listen(struct vmbusd *d, char *err, size_t errlen)
{
    d->ctl = calloc(1, sizeof(*d->ctl));
    if (!d->ctl) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&d->ctl->lock, NULL);
    pthread_cond_init(&d->ctl->gone, NULL);
    d->ctl_fd = daemon_bind_unix(d->cfg.control_path, SOCK_STREAM, &d->cfg.control_access, err,
                                 errlen);
    if (d->ctl_fd < 0)
        return -1;
    d->ctl_ev = event_new(d->base, d->ctl_fd, EV_READ | EV_PERSIST, ctl_accept_cb, d);
    event_add(d->ctl_ev, NULL);
    return 0;
}

void control_close(struct vmbusd *d)
{
    if (d->ctl_ev)
        event_free(d->ctl_ev);
    d->ctl_ev = NULL;
    if (d->ctl_fd >= 0) {
        close(d->ctl_fd);
        unlink(d->cfg.control_path);
        d->ctl_fd = -1;
    }
    struct control *ctl = d->ctl;
    if (!ctl)
        return;
    /* The client threads use d: end their connections and wait for them. */
    pthread_mutex_lock(&ctl->lock);
    for (int i = 0; i < ctl->nclients; i++)
        shutdown(ctl->fds[i], SHUT_RDWR);
    while (ctl->nclients > 0)
        pthread_cond_wait(&ctl->gone, &ctl->lock);
    pthread_mutex_unlock(&ctl->lock);
    pthread_cond_destroy(&ctl->gone);
    pthread_mutex_destroy(&ctl->lock);
    free(ctl);
    d->ctl = NULL;
}
