/* SPDX-License-Identifier: MIT */
/*
 * netvsp plugin: per-VM configuration, the NIC's offer, vmbusctl commands.
 * Per-VM parameters ([vm NAME], see docs/netvsp.md):
 *   netvsp.tap = NAME          TAP device (exists, or created when vmbusd
 *                              has CAP_NET_ADMIN)
 *   netvsp.fd = N[,N...]       open packet fds instead, one per queue
 *                              (embedding programs and tests: SOCK_SEQPACKET /
 *                              SOCK_DGRAM)
 *   netvsp.mac = 00:15:5d:..   default: 00:15:5d + 3 bytes of the VM name's hash
 *   netvsp.queues = N          1..64 (default 8): most channels (vRSS queues);
 *                              a TAP gets as many queue fds (IFF_MULTI_QUEUE)
 *   netvsp.offload = on|off    transmit checksum and LSOv2 through virtio-net
 *                              headers (TAP: IFF_VNET_HDR); default off
 *   netvsp.link = up|down      initial carrier (default up)
 * Host-wide ([vsp netvsp]):
 *   max_queues = N             1..64 (default 64): no VM's NIC gets more
 *                              queues than this, whatever netvsp.queues says
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vsp/netvsp/netvsp.h"

/* f8615163-df3e-46c5-913f-f2d2f965ed0e: the synthetic network adapter. */
#define NETVSP_CLASS "f8615163-df3e-46c5-913f-f2d2f965ed0e"

static int parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char tail;
    if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
               &tail) != 6 || strlen(s) != 17)
        return -EINVAL;
    for (int i = 0; i < 6; i++)
        mac[i] = (uint8_t)v[i];
    if (mac[0] & 1)
        return -EINVAL; /* multicast bit: not a station address */
    static const uint8_t zero[6];
    if (memcmp(mac, zero, 6) == 0)
        return -EINVAL;
    return 0;
}

static bool parse_uint(const char *s, unsigned lo, unsigned hi, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return false;
    *out = (unsigned)v;
    return true;
}

int nic_cfg_parse(const struct vsp_param *params, int n, struct nic_cfg *cfg, char *err,
                  size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->queues = NETVSP_DEFAULT_QUEUES;
    cfg->link_up = true;
    cfg->mtu = 1500;
    const char *backend_where = NULL;
    for (int i = 0; i < n; i++) {
        const struct vsp_param *pa = &params[i];
        unsigned u;
        if (strcmp(pa->key, "tap") == 0 || strcmp(pa->key, "fd") == 0) {
            if (backend_where) {
                snprintf(err, errlen, "%s: netvsp.%s: the VM has a backend already (%s)",
                         pa->where, pa->key, backend_where);
                return -EINVAL;
            }
            backend_where = pa->where;
            if (pa->key[0] == 't') {
                if (!pa->value[0] || strlen(pa->value) >= IFNAMSIZ || strchr(pa->value, '/') ||
                    strchr(pa->value, ' ')) {
                    snprintf(err, errlen, "%s: netvsp.tap = '%s': not an interface name "
                             "(1..%d characters, no '/' or space)", pa->where, pa->value,
                             IFNAMSIZ - 1);
                    return -EINVAL;
                }
                snprintf(cfg->tap, sizeof(cfg->tap), "%s", pa->value);
            } else {
                /* one fd per queue, comma-separated */
                char buf[512];
                snprintf(buf, sizeof(buf), "%s", pa->value);
                char *save = NULL;
                for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                    if (cfg->nfds == NETVSP_MAX_QUEUES || !parse_uint(t, 0, 1 << 20, &u)) {
                        snprintf(err, errlen, "%s: netvsp.fd = '%s': want 1..%u file descriptor "
                                 "numbers, comma-separated", pa->where, pa->value,
                                 NETVSP_MAX_QUEUES);
                        return -EINVAL;
                    }
                    cfg->fds[cfg->nfds++] = (int)u;
                }
                if (!cfg->nfds) {
                    snprintf(err, errlen, "%s: netvsp.fd = '%s': not a file descriptor number",
                             pa->where, pa->value);
                    return -EINVAL;
                }
            }
        } else if (strcmp(pa->key, "mac") == 0) {
            if (parse_mac(pa->value, cfg->mac) < 0) {
                snprintf(err, errlen, "%s: netvsp.mac = '%s': want a unicast address "
                         "xx:xx:xx:xx:xx:xx", pa->where, pa->value);
                return -EINVAL;
            }
            cfg->has_mac = true;
        } else if (strcmp(pa->key, "queues") == 0) {
            if (!parse_uint(pa->value, 1, NETVSP_MAX_QUEUES, &u)) {
                snprintf(err, errlen, "%s: netvsp.queues = '%s': want 1..%u", pa->where,
                         pa->value, NETVSP_MAX_QUEUES);
                return -EINVAL;
            }
            cfg->queues = u;
        } else if (strcmp(pa->key, "offload") == 0) {
            if (strcmp(pa->value, "on") && strcmp(pa->value, "off")) {
                snprintf(err, errlen, "%s: netvsp.offload = '%s': want on or off", pa->where,
                         pa->value);
                return -EINVAL;
            }
            cfg->offload = pa->value[1] == 'n';
        } else if (strcmp(pa->key, "link") == 0) {
            if (strcmp(pa->value, "up") && strcmp(pa->value, "down")) {
                snprintf(err, errlen, "%s: netvsp.link = '%s': want up or down", pa->where,
                         pa->value);
                return -EINVAL;
            }
            cfg->link_up = pa->value[0] == 'u';
        } else {
            snprintf(err, errlen, "%s: netvsp.%s: unknown key (tap, fd, mac, queues, "
                     "offload, link)", pa->where, pa->key);
            return -EINVAL;
        }
    }
    if (!backend_where) {
        snprintf(err, errlen, "%s: netvsp needs a backend: netvsp.tap = NAME",
                 n ? params[0].where : "the VM's [vm] section");
        return -EINVAL;
    }
    return 0;
}

/* 00:15:5d (the Hyper-V range) and three bytes of the VM name's FNV-1a
 * hash: stable across restarts, different between VMs. */
static void default_mac(const char *vm, uint8_t mac[6])
{
    uint32_t h = 2166136261u;
    for (const char *c = vm; *c; c++)
        h = (h ^ (uint8_t)*c) * 16777619u;
    mac[0] = 0x00;
    mac[1] = 0x15;
    mac[2] = 0x5d;
    mac[3] = (uint8_t)(h >> 16);
    mac[4] = (uint8_t)(h >> 8);
    mac[5] = (uint8_t)h;
}

struct netvsp_host {
    unsigned max_queues;
};

static int netvsp_init(const char *const *keys, const char *const *values, void **state)
{
    struct netvsp_host *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->max_queues = NETVSP_MAX_QUEUES;
    for (int i = 0; keys[i]; i++) {
        if (strcmp(keys[i], "max_queues") == 0 &&
            parse_uint(values[i], 1, NETVSP_MAX_QUEUES, &h->max_queues))
            continue;
        vsp_log(NULL, VSP_LOG_ERROR, "netvsp: [vsp netvsp] %s = %s: %s", keys[i], values[i],
                strcmp(keys[i], "max_queues") == 0
                    ? "want 1..64"
                    : "unknown (max_queues; configure each VM with netvsp.KEY lines in its "
                      "[vm] section)");
        free(h);
        return -EINVAL;
    }
    *state = h;
    return 0;
}

static void netvsp_fini(void *state) { free(state); }

static int netvsp_check(void *state, const char *vm, const struct vsp_param *params, int n,
                        char *err, size_t errlen)
{
    struct nic_cfg cfg;
    if (n == 0) {
        snprintf(err, errlen, "[vm %s]: netvsp needs a backend: netvsp.tap = NAME", vm);
        return -EINVAL;
    }
    return nic_cfg_parse(params, n, &cfg, err, errlen);
}

static int netvsp_attach(void *state, struct vsp_partition *p, void **part_state)
{
    const struct vsp_param *params;
    int n = vsp_partition_params(p, &params);
    char err[256];
    struct nic_cfg cfg;
    if (n < 0 || nic_cfg_parse(params, n < 0 ? 0 : n, &cfg, err, sizeof(err)) < 0) {
        vsp_partition_refuse(p, "%s", n < 0 ? "no parameters" : err);
        return -EINVAL;
    }
    struct nic *nic = calloc(1, sizeof(*nic));
    if (!nic)
        return -ENOMEM;
    pthread_mutex_init(&nic->lock, NULL);
    pthread_mutex_init(&nic->pool_lock, NULL);
    /* Writers (revoke, filter off) must not starve behind a steady
     * stream of subchannel batches holding the read lock. */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&nic->buf_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    nic->p = p;
    const struct netvsp_host *h = state;
    if (cfg.queues > h->max_queues)
        cfg.queues = h->max_queues;
    nic->cfg = cfg;
    nic->link_up = cfg.link_up;
    for (unsigned i = 0; i < NETVSP_MAX_QUEUES; i++) {
        nic->q[i].nic = nic;
        nic->q[i].index = (uint8_t)i;
        nic->q[i].fd = -1;
        nic->q[i].wake_fd = -1;
    }
    if (!cfg.has_mac)
        default_mac(vsp_partition_name(p), nic->cfg.mac);
    *part_state = nic;
    int fds[NETVSP_MAX_QUEUES];
    int n_fds = backend_open(&nic->cfg, fds, err, sizeof(err));
    if (n_fds < 0) {
        vsp_plog(p, VSP_LOG_ERROR, "netvsp: %s", err);
        vsp_partition_refuse(p, "%s", err);
        return n_fds;
    }
    nic->nqueues = (unsigned)n_fds;
    for (unsigned i = 0; i < nic->nqueues; i++) {
        struct nic_queue *q = &nic->q[i];
        q->fd = fds[i];
        struct stat st;
        q->fd_is_socket = fstat(q->fd, &st) == 0 && S_ISSOCK(st.st_mode);
        q->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (q->wake_fd < 0) {
            int e = errno;
            vsp_partition_refuse(p, "netvsp: eventfd: %s", strerror(e));
            return -e;
        }
    }
    if (nic->nqueues < cfg.queues)
        vsp_plog(p, VSP_LOG_INFO, "netvsp: %u queue%s (netvsp.queues = %u; %s)", nic->nqueues,
                 nic->nqueues == 1 ? "" : "s", cfg.queues,
                 cfg.tap[0] ? "the TAP is single-queue: create it with multi_queue"
                            : "one packet fd per queue");
    struct vsp_offer o;
    memset(&o, 0, sizeof(o));
    vsp_guid_parse(NETVSP_CLASS, &o.class_id);
    /* Instance: unique per VM among its primaries; the class with the
     * last bytes changed is enough for the one NIC. */
    o.instance_id = o.class_id;
    o.instance_id.b[15] ^= 0x01;
    o.ops = &nvsp_channel_ops;
    o.opaque = &nic->q[0];
    nic->ch = vsp_channel_offer(p, &o);
    if (!nic->ch)
        return -ENOMEM;
    nic->q[0].ch = nic->ch;
    const uint8_t *m = nic->cfg.mac;
    char v[64];
    snprintf(v, sizeof(v), "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    vsp_partition_set_status(p, "netvsp.mac", v);
    snprintf(v, sizeof(v), "%s%s%s", cfg.tap[0] ? "tap " : "fd", cfg.tap,
             cfg.offload ? " offload" : "");
    vsp_partition_set_status(p, "netvsp.backend", v);
    snprintf(v, sizeof(v), "%u", nic->nqueues);
    vsp_partition_set_status(p, "netvsp.queues", v);
    vsp_partition_set_status(p, "netvsp.link", cfg.link_up ? "up" : "down");
    vsp_plog(p, VSP_LOG_INFO,
             "netvsp: NIC %02x:%02x:%02x:%02x:%02x:%02x on %s%s, %u queue%s%s", m[0], m[1],
             m[2], m[3], m[4], m[5], cfg.tap[0] ? "TAP " : "packet fd",
             cfg.tap[0] ? cfg.tap : "", nic->nqueues, nic->nqueues == 1 ? "" : "s",
             cfg.link_up ? "" : " (link down)");
    return 0;
}

static void netvsp_detach(void *state, struct vsp_partition *p, void *part_state)
{
    struct nic *nic = part_state;
    if (!nic)
        return;
    for (unsigned i = 0; i < NETVSP_MAX_QUEUES; i++) {
        if (nic->q[i].fd >= 0)
            close(nic->q[i].fd);
        if (nic->q[i].wake_fd >= 0)
            close(nic->q[i].wake_fd);
    }
    pthread_mutex_destroy(&nic->lock);
    pthread_mutex_destroy(&nic->pool_lock);
    pthread_rwlock_destroy(&nic->buf_lock);
    free(nic);
}

static int netvsp_control(void *state, struct vsp_partition *p, void *part_state,
                          const char *cmd, const char *args, char *reply, size_t reply_len)
{
    struct nic *nic = part_state;
    if (strcmp(cmd, "link") == 0) {
        bool up;
        if (args && strcmp(args, "up") == 0)
            up = true;
        else if (args && strcmp(args, "down") == 0)
            up = false;
        else {
            snprintf(reply, reply_len, "usage: link up|down");
            return -EINVAL;
        }
        pthread_mutex_lock(&nic->lock);
        bool changed = nic->link_up != up;
        nic->link_up = up;
        pthread_mutex_unlock(&nic->lock);
        if (changed) {
            vsp_partition_set_status(p, "netvsp.link", up ? "up" : "down");
            vsp_queue_work(nic->ch, nvsp_link_changed, nic);
        }
        snprintf(reply, reply_len, "link %s", up ? "up" : "down");
        return 0;
    }
    if (strcmp(cmd, "status") == 0) {
        pthread_mutex_lock(&nic->lock);
        struct nic_stats s = nic->stats;
        bool up = nic->link_up;
        unsigned channels = nic->stats_channels;
        pthread_mutex_unlock(&nic->lock);
        const uint8_t *m = nic->cfg.mac;
        snprintf(reply, reply_len,
                 "mac %02x:%02x:%02x:%02x:%02x:%02x backend %s%s link %s queues %u channels %u "
                 "tx %llu tx_dropped %llu rx %llu rx_dropped %llu rx_filtered %llu "
                 "guest_errors %llu rx_coalesced %llu",
                 m[0], m[1], m[2], m[3], m[4], m[5], nic->cfg.tap[0] ? "tap:" : "fd",
                 nic->cfg.tap, up ? "up" : "down", nic->nqueues, channels,
                 (unsigned long long)s.tx_frames,
                 (unsigned long long)s.tx_dropped, (unsigned long long)s.rx_frames,
                 (unsigned long long)s.rx_dropped, (unsigned long long)s.rx_filtered,
                 (unsigned long long)s.guest_errors, (unsigned long long)s.rx_coalesced);
        return 0;
    }
    snprintf(reply, reply_len, "netvsp commands: status, link up|down");
    return -EINVAL;
}

const struct vsp_plugin netvsp_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "netvsp",
    .description = "synthetic network adapter (hv_netvsc) on a TAP device",
    .init = netvsp_init,
    .fini = netvsp_fini,
    .check = netvsp_check,
    .attach = netvsp_attach,
    .detach = netvsp_detach,
    .control = netvsp_control,
};
