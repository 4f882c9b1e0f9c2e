/* SPDX-License-Identifier: MIT */
/*
 * storvsp: Hyper-V's synthetic SCSI controller (class
 * ba6163d9-04a1-4d29-b605-72e2ffb1dc7f), served to Linux's hv_storvsc.
 * docs/storvsp.md describes configuration, what is emulated and limits.
 *
 *   [vsp storvsp]   max_subchannels = N (0..64, default 8)
 *                   backend = auto | io_uring | threads
 *                   poll_us = N (0..1000, default 32; 0: off)
 *   [vm NAME]       storvsp.disk = PATH [lun=N] [controller=N] [readonly]
 *                   storvsp.max_transfer = SIZE (64K..2M, default 1M)
 *                   storvsp.max_subchannels = N (0..64, default: [vsp storvsp]'s)
 *
 * Every controller that has a disk (and controller 0 always, so a disk can
 * be hot-added) is one VMBus offer.  vmbusctl disk add|remove|list change
 * the disks of a running VM; the guest learns through ENUMERATE_BUS.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storvsp.h"

/* Instance GUIDs of the controllers: this base with the controller number
 * in the last byte (unique per VM, the same across boots). */
#define SV_INSTANCE_BASE "6e5f1a2c-0b7d-4c3e-9a41-5d2c7f000000"

/* A max_subchannels value (global or one VM's): 0..VSP_MAX_SUBCHANNELS,
 * or -1. */
/* A decimal 0..max, digits only: the value, or -1. */
static long parse_uint(const char *text, long max)
{
    char *end;
    errno = 0;
    long v = text[0] >= '0' && text[0] <= '9' ? strtol(text, &end, 10) : -1;
    if (v < 0 || errno || *end || v > max)
        return -1;
    return v;
}

static int parse_subchannels(const char *text)
{
    return (int)parse_uint(text, VSP_MAX_SUBCHANNELS);
}

static int sv_init(const char *const *keys, const char *const *values, void **state)
{
    struct sv_plugin *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return -ENOMEM;
    pl->max_subchannels = SV_DEFAULT_SUBCHANNELS;
    pl->poll_ns = SV_DEFAULT_POLL_US * 1000ull;
    for (int i = 0; keys[i]; i++) {
        if (strcmp(keys[i], "poll_us") == 0) {
            long us = parse_uint(values[i], SV_MAX_POLL_US);
            if (us < 0) {
                vsp_log(NULL, VSP_LOG_ERROR, "storvsp: poll_us must be 0..%d (microseconds)",
                        SV_MAX_POLL_US);
                free(pl);
                return -EINVAL;
            }
            pl->poll_ns = (uint64_t)us * 1000u;
        } else if (strcmp(keys[i], "max_subchannels") == 0) {
            int n = parse_subchannels(values[i]);
            if (n < 0) {
                vsp_log(NULL, VSP_LOG_ERROR, "storvsp: max_subchannels must be 0..%d",
                        VSP_MAX_SUBCHANNELS);
                free(pl);
                return -EINVAL;
            }
            pl->max_subchannels = (unsigned)n;
        } else if (strcmp(keys[i], "backend") == 0) {
            if (strcmp(values[i], "threads") == 0) {
                pl->queue_flags = STOR_QUEUE_THREADS;
            } else if (strcmp(values[i], "io_uring") == 0) {
                pl->need_uring = true;
            } else if (strcmp(values[i], "auto") != 0) {
                vsp_log(NULL, VSP_LOG_ERROR, "storvsp: backend must be auto, io_uring or threads");
                free(pl);
                return -EINVAL;
            }
        } else {
            vsp_log(NULL, VSP_LOG_ERROR, "storvsp: unknown parameter '%s' (max_subchannels, "
                    "backend, poll_us)", keys[i]);
            free(pl);
            return -EINVAL;
        }
    }
    *state = pl;
    return 0;
}

static void sv_fini(void *state) { free(state); }

/* storvsp.max_transfer: bytes, or with a K/KiB or M/MiB suffix (binary
 * units).  0 with *out, or -1 with the reason in why. */
static int parse_max_transfer(const char *text, uint32_t *out, char *why, size_t whylen)
{
    char *end = (char *)text;
    errno = 0;
    unsigned long long v = text[0] >= '0' && text[0] <= '9' ? strtoull(text, &end, 10) : 0;
    bool ok = end != text && !errno && v <= UINT32_MAX;
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024;
    else if (*end == 'm' || *end == 'M')
        mul = 1024 * 1024;
    if (mul > 1 && strcmp(++end, "iB") == 0)
        end += 2;
    if (!ok || *end) {
        snprintf(why, whylen, "not a size (bytes, or with K or M: 1M, 512K)");
        return -1;
    }
    uint64_t bytes = v * mul;
    if (bytes < SV_MIN_MAX_TRANSFER || bytes > SV_MAX_MAX_TRANSFER) {
        snprintf(why, whylen, "must be %uK..%uK", SV_MIN_MAX_TRANSFER / 1024,
                 SV_MAX_MAX_TRANSFER / 1024);
        return -1;
    }
    if (bytes % 4096) {
        snprintf(why, whylen, "must be a multiple of 4K (the guest's page)");
        return -1;
    }
    *out = (uint32_t)bytes;
    return 0;
}

/* The per-VM lines of params: the disks, each with its LUN settled
 * (lowest free one of its controller when not given), the transfer size
 * and the subchannel limit (-1 when not given: the plugin's).  0, or -1
 * with "WHERE: reason" in err. */
static int parse_params(const struct vsp_param *params, int n, struct disk_spec *out, int *nout,
                        uint32_t *max_transfer, int *max_sub, char *err, size_t errlen)
{
    bool used[SV_MAX_CONTROLLERS][SV_MAX_LUNS] = {{false}};
    const char *max_where = NULL, *sub_where = NULL;
    *nout = 0;
    *max_transfer = SV_DEFAULT_MAX_TRANSFER;
    *max_sub = -1;
    /* Explicit LUNs first, so an automatic one never takes a LUN a later
     * line names. */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < n; i++) {
            char why[200];
            if (strcmp(params[i].key, "max_subchannels") == 0) {
                if (pass)
                    continue;
                if (sub_where) {
                    snprintf(err, errlen,
                             "%s: storvsp.max_subchannels given twice (first at %s)",
                             params[i].where, sub_where);
                    return -1;
                }
                *max_sub = parse_subchannels(params[i].value);
                if (*max_sub < 0) {
                    snprintf(err, errlen, "%s: storvsp.max_subchannels = '%s': must be 0..%d",
                             params[i].where, params[i].value, VSP_MAX_SUBCHANNELS);
                    return -1;
                }
                sub_where = params[i].where;
                continue;
            }
            if (strcmp(params[i].key, "max_transfer") == 0) {
                if (pass)
                    continue;
                if (max_where) {
                    snprintf(err, errlen, "%s: storvsp.max_transfer given twice (first at %s)",
                             params[i].where, max_where);
                    return -1;
                }
                if (parse_max_transfer(params[i].value, max_transfer, why, sizeof(why)) < 0) {
                    snprintf(err, errlen, "%s: storvsp.max_transfer = '%s': %s",
                             params[i].where, params[i].value, why);
                    return -1;
                }
                max_where = params[i].where;
                continue;
            }
            if (strcmp(params[i].key, "disk") != 0) {
                snprintf(err, errlen,
                         "%s: unknown key storvsp.%s (expected storvsp.disk, "
                         "storvsp.max_transfer or storvsp.max_subchannels)",
                         params[i].where, params[i].key);
                return -1;
            }
            struct disk_spec s;
            if (disk_spec_parse(params[i].value, &s, why, sizeof(why)) < 0) {
                snprintf(err, errlen, "%s: %s", params[i].where, why);
                return -1;
            }
            if ((pass == 0) != (s.lun >= 0))
                continue;
            if (s.lun < 0) {
                for (int l = 0; l < SV_MAX_LUNS && s.lun < 0; l++)
                    if (!used[s.controller][l])
                        s.lun = l;
                if (s.lun < 0) {
                    snprintf(err, errlen, "%s: controller %d has no free LUN", params[i].where,
                             s.controller);
                    return -1;
                }
            } else if (used[s.controller][s.lun]) {
                snprintf(err, errlen, "%s: controller %d LUN %d is given twice", params[i].where,
                         s.controller, s.lun);
                return -1;
            }
            used[s.controller][s.lun] = true;
            out[(*nout)++] = s;
        }
    return 0;
}

static int sv_check(void *state, const char *vm, const struct vsp_param *params, int n,
                    char *err, size_t errlen)
{
    struct disk_spec *specs = calloc(n ? (size_t)n : 1, sizeof(*specs));
    if (!specs)
        return -ENOMEM;
    int nspecs, max_sub;
    uint32_t max_transfer;
    int ret = parse_params(params, n, specs, &nspecs, &max_transfer, &max_sub, err, errlen);
    free(specs);
    return ret < 0 ? -EINVAL : 0;
}

/* ------------------------------------------------------------------ */
/* Controllers and disks                                               */

/* Controller index of vm, offered on first use; NULL if it cannot be. */
static struct sv_ctrl *ctrl_get(struct sv_vm *vm, int index)
{
    pthread_mutex_lock(&vm->lock);
    struct sv_ctrl *ctrl = vm->ctrls[index];
    if (ctrl) {
        pthread_mutex_unlock(&vm->lock);
        return ctrl;
    }
    ctrl = calloc(1, sizeof(*ctrl));
    if (!ctrl) {
        pthread_mutex_unlock(&vm->lock);
        return NULL;
    }
    ctrl->vm = vm;
    ctrl->index = index;
    ctrl->pkt_size = VSTOR_PACKET_SIZE;
    pthread_mutex_init(&ctrl->lock, NULL);
    ctrl->primary.ctrl = ctrl;
    struct vsp_offer o = {.ops = &sv_chan_ops, .opaque = &ctrl->primary};
    vsp_guid_parse(VSTOR_CLASS_SCSI, &o.class_id);
    vsp_guid_parse(SV_INSTANCE_BASE, &o.instance_id);
    o.instance_id.b[15] = (uint8_t)index;
    /* Listed before the offer: the channel's callbacks may run at once. */
    vm->ctrls[index] = ctrl;
    ctrl->primary.ch = vsp_channel_offer(vm->p, &o);
    pthread_mutex_unlock(&vm->lock);
    if (!ctrl->primary.ch) {
        vsp_plog(vm->p, VSP_LOG_ERROR, "storvsp: cannot offer SCSI controller %d", index);
        return NULL; /* stays listed (freed in detach), unusable */
    }
    return ctrl;
}

/* Open the image of s: 0 and *out, or -errno with the reason in err. */
static int disk_open(struct sv_vm *vm, const struct disk_spec *s, struct sv_disk **out, char *err,
                     size_t errlen)
{
    struct sv_disk *d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->spec = *s;
    d->lun = s->lun;
    atomic_init(&d->refs, 1);
    /* Room for a long path and the reason after it (VSP_REFUSAL_MAX). */
    char why[512] = "";
    int ret = stor_backend_open(s->path, s->readonly, 0, &d->b, why, sizeof(why));
    if (ret < 0) {
        /* The backend's reason names the path itself, usually. */
        if (why[0] && strstr(why, s->path))
            snprintf(err, errlen, "disk %s", why);
        else
            snprintf(err, errlen, "disk %s: %s", s->path, why[0] ? why : strerror(-ret));
        free(d);
        return ret;
    }
    /* One queue made and dropped here tells which engine the channels
     * will get, for the log (and for backend = io_uring, whether it can). */
    struct stor_queue *q;
    ret = stor_queue_create(d->b, 1, vm->pl->queue_flags, &q);
    if (ret < 0) {
        snprintf(err, errlen, "disk %s: no I/O queue: %s", s->path, strerror(-ret));
        stor_backend_close(d->b);
        free(d);
        return ret;
    }
    bool uring = stor_queue_engine(q) == STOR_ENGINE_IO_URING;
    int uerr = stor_queue_uring_errno(q);
    char desc[256];
    stor_backend_describe(d->b, desc, sizeof(desc));
    if (stor_backend_info(d->b)->device_readonly)
        vsp_plog(vm->p, VSP_LOG_WARN,
                 "storvsp: controller %d LUN %d: %s is a read-only block device: "
                 "the guest gets a read-only disk",
                 s->controller, s->lun, s->path);
    vsp_plog(vm->p, VSP_LOG_INFO, "storvsp: controller %d LUN %d: %s (%s%s), %s%s%s%s",
             s->controller, s->lun, s->path, desc, s->readonly ? ", read-only" : "",
             stor_queue_engine_name(q), uerr ? " (io_uring unavailable: " : "",
             uerr ? strerror(uerr) : "", uerr ? ")" : "");
    stor_queue_destroy(q);
    if (vm->pl->need_uring && !uring) {
        snprintf(err, errlen, "disk %s: backend = io_uring, but io_uring is unavailable: %s",
                 s->path, strerror(uerr ? uerr : ENOSYS));
        stor_backend_close(d->b);
        free(d);
        return -ENOTSUP;
    }
    struct scsi_disk_config cfg = {.max_transfer = vm->max_transfer, .readonly = s->readonly};
    d->sd = scsi_disk_create(d->b, &cfg);
    if (!d->sd) {
        stor_backend_close(d->b);
        free(d);
        return -ENOMEM;
    }
    *out = d;
    return 0;
}

/* Put d at its LUN: 0, or -EEXIST if taken. */
static int disk_plug(struct sv_ctrl *ctrl, struct sv_disk *d)
{
    pthread_mutex_lock(&ctrl->lock);
    int ret = ctrl->disks[d->lun] ? -EEXIST : 0;
    if (!ret)
        ctrl->disks[d->lun] = d;
    pthread_mutex_unlock(&ctrl->lock);
    return ret;
}

/* ------------------------------------------------------------------ */
/* Attach / detach                                                     */

static int sv_attach(void *state, struct vsp_partition *p, void **part_state)
{
    struct sv_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return -ENOMEM;
    vm->pl = state;
    vm->p = p;
    pthread_mutex_init(&vm->lock, NULL);
    *part_state = vm;

    const struct vsp_param *params;
    int n = vsp_partition_params(p, &params);
    if (n < 0)
        n = 0;
    struct disk_spec *specs = calloc(n ? (size_t)n : 1, sizeof(*specs));
    if (!specs)
        return -ENOMEM;
    int nspecs, max_sub;
    char err[768];
    if (parse_params(params, n, specs, &nspecs, &vm->max_transfer, &max_sub, err, sizeof(err)) <
        0) {
        /* check() passed these lines at start: only memory can fail now. */
        vsp_partition_refuse(p, "%s", err);
        free(specs);
        return -EINVAL;
    }
    vm->max_subchannels = max_sub >= 0 ? (unsigned)max_sub : vm->pl->max_subchannels;
    /* Open every image before offering anything: a VM missing one is
     * refused as a whole, its VMM told which disk and why. */
    struct sv_disk **disks = calloc(nspecs ? (size_t)nspecs : 1, sizeof(*disks));
    int ret = disks ? 0 : -ENOMEM;
    for (int i = 0; i < nspecs && !ret; i++) {
        ret = disk_open(vm, &specs[i], &disks[i], err, sizeof(err));
        if (ret < 0) {
            vsp_plog(p, VSP_LOG_ERROR, "storvsp: %s", err);
            vsp_partition_refuse(p, "%s", err);
        }
    }
    for (int i = 0; i < nspecs && !ret; i++) {
        struct sv_ctrl *ctrl = ctrl_get(vm, specs[i].controller);
        if (!ctrl)
            ret = -ENOMEM;
        else if (disk_plug(ctrl, disks[i]) == 0)
            disks[i] = NULL;
    }
    if (!ret && !ctrl_get(vm, 0))
        ret = -ENOMEM;
    for (int i = 0; disks && i < nspecs; i++)
        sv_disk_unref(disks[i]);
    free(disks);
    free(specs);
    return ret;
}

static void sv_detach(void *state, struct vsp_partition *p, void *part_state)
{
    struct sv_vm *vm = part_state;
    if (!vm)
        return;
    /* Every channel is closed: their queues are gone. */
    for (int i = 0; i < SV_MAX_CONTROLLERS; i++) {
        struct sv_ctrl *ctrl = vm->ctrls[i];
        if (!ctrl)
            continue;
        for (int l = 0; l < SV_MAX_LUNS; l++)
            sv_disk_unref(ctrl->disks[l]);
        for (int s = 0; s <= VSP_MAX_SUBCHANNELS; s++)
            free(ctrl->subs[s]);
        pthread_mutex_destroy(&ctrl->lock);
        free(ctrl);
    }
    pthread_mutex_destroy(&vm->lock);
    free(vm);
}

/* ------------------------------------------------------------------ */
/* vmbusctl disk add | remove | list                                   */

static int disk_add(struct sv_vm *vm, const char *args, char *reply, size_t len)
{
    struct disk_spec s;
    char why[768];
    if (disk_spec_parse(args, &s, why, sizeof(why)) < 0) {
        snprintf(reply, len, "%s", why);
        return -EINVAL;
    }
    struct sv_ctrl *ctrl = ctrl_get(vm, s.controller);
    if (!ctrl) {
        snprintf(reply, len, "cannot offer SCSI controller %d", s.controller);
        return -ENOMEM;
    }
    if (s.lun < 0) {
        pthread_mutex_lock(&ctrl->lock);
        for (int l = 0; l < SV_MAX_LUNS && s.lun < 0; l++)
            if (!ctrl->disks[l])
                s.lun = l;
        pthread_mutex_unlock(&ctrl->lock);
        if (s.lun < 0) {
            snprintf(reply, len, "controller %d has no free LUN", s.controller);
            return -ENOSPC;
        }
    }
    struct sv_disk *d;
    int ret = disk_open(vm, &s, &d, why, sizeof(why));
    if (ret < 0) {
        snprintf(reply, len, "%s", why);
        return ret;
    }
    if (disk_plug(ctrl, d) < 0) {
        snprintf(reply, len, "controller %d LUN %d is in use", s.controller, s.lun);
        sv_disk_unref(d);
        return -EEXIST;
    }
    sv_ctrl_rescan(ctrl);
    snprintf(reply, len, "added %s as controller %d LUN %d%s", s.path, s.controller, s.lun,
             s.readonly ? " (read-only)" : "");
    return 0;
}

static int disk_remove(struct sv_vm *vm, const char *args, char *reply, size_t len)
{
    int c, lun;
    char why[200];
    if (disk_spec_parse_where(args, &c, &lun, why, sizeof(why)) < 0) {
        snprintf(reply, len, "%s", why);
        return -EINVAL;
    }
    pthread_mutex_lock(&vm->lock);
    struct sv_ctrl *ctrl = vm->ctrls[c];
    pthread_mutex_unlock(&vm->lock);
    struct sv_disk *d = NULL;
    if (ctrl) {
        pthread_mutex_lock(&ctrl->lock);
        d = ctrl->disks[lun];
        ctrl->disks[lun] = NULL;
        pthread_mutex_unlock(&ctrl->lock);
    }
    if (!d) {
        snprintf(reply, len, "no disk at controller %d LUN %d", c, lun);
        return -ENOENT;
    }
    snprintf(reply, len, "removed %s from controller %d LUN %d", d->spec.path, c, lun);
    vsp_plog(vm->p, VSP_LOG_INFO, "storvsp: %s", reply);
    /* New requests for the LUN now get INVALID_LUN; those in flight
     * complete, then the image closes with the last channel's queue. */
    sv_ctrl_forget_disk(ctrl, d);
    sv_disk_unref(d);
    sv_ctrl_rescan(ctrl);
    return 0;
}

static int disk_list(struct sv_vm *vm, char *reply, size_t len)
{
    size_t off = 0;
    reply[0] = 0;
    for (int c = 0; c < SV_MAX_CONTROLLERS; c++) {
        pthread_mutex_lock(&vm->lock);
        struct sv_ctrl *ctrl = vm->ctrls[c];
        pthread_mutex_unlock(&vm->lock);
        if (!ctrl)
            continue;
        pthread_mutex_lock(&ctrl->lock);
        for (int l = 0; l < SV_MAX_LUNS; l++) {
            struct sv_disk *d = ctrl->disks[l];
            if (!d || off >= len)
                continue;
            const struct stor_backend_info *bi = stor_backend_info(d->b);
            off += (size_t)snprintf(reply + off, len - off,
                                    "%scontroller=%d lun=%d path=%s size=%llu%s", off ? "; " : "",
                                    c, l, d->spec.path, (unsigned long long)bi->size,
                                    scsi_disk_readonly(d->sd) ? " readonly" : "");
        }
        pthread_mutex_unlock(&ctrl->lock);
    }
    if (!off)
        snprintf(reply, len, "no disks");
    return 0;
}

static int sv_control(void *state, struct vsp_partition *p, void *part_state, const char *cmd,
                      const char *args, char *reply, size_t len)
{
    struct sv_vm *vm = part_state;
    if (strcmp(cmd, "disk-add") == 0)
        return disk_add(vm, args, reply, len);
    if (strcmp(cmd, "disk-remove") == 0)
        return disk_remove(vm, args, reply, len);
    if (strcmp(cmd, "disk-list") == 0)
        return disk_list(vm, reply, len);
    snprintf(reply, len, "unknown command '%s' (disk-add, disk-remove, disk-list)", cmd);
    return -EINVAL;
}

const struct vsp_plugin storvsp_plugin = {
    .api_version = VSP_API_VERSION,
    .name = "storvsp",
    .description = "synthetic SCSI controller (Hyper-V storvsc) over disk images",
    .init = sv_init,
    .fini = sv_fini,
    .attach = sv_attach,
    .detach = sv_detach,
    .control = sv_control,
    .check = sv_check,
};
