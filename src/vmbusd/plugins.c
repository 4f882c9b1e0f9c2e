/* SPDX-License-Identifier: MIT */
/*
 * VSP plugins: the built-in ones (and those linked into an embedding
 * program), then, for every VSP a [vm] section names that none of them
 * provides, NAME.so from the first plugin directory that has it.  A plugin
 * file or directory that others could write, or that belongs to another
 * user, is refused; so is a plugin built for another API version.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "vmbusd/internal.h"
#include "vsp/builtin.h"

struct loaded_plugin *plugins_find(struct vmbusd *d, const char *name)
{
    for (int i = 0; i < d->nplugins; i++)
        if (strcmp(d->plugins[i].pl->name, name) == 0)
            return &d->plugins[i];
    return NULL;
}

static bool wanted(const struct vmbusd *d, const char *name)
{
    for (int i = 0; i < d->cfg.nvms; i++)
        for (int j = 0; j < d->cfg.vms[i].nvsps; j++)
            if (strcmp(d->cfg.vms[i].vsps[j], name) == 0)
                return true;
    return false;
}

static int add_plugin(struct vmbusd *d, const struct vsp_plugin *pl, void *dl, const char *path,
                      char *err, size_t errlen)
{
    if (pl->api_version != VSP_API_VERSION) {
        log_err("plugin %s: built for VSP API version %u, vmbusd provides %u; not loaded", path,
                pl->api_version, VSP_API_VERSION);
        return 0;
    }
    if (!pl->name || !*pl->name) {
        log_err("plugin %s has no name; not loaded", path);
        return 0;
    }
    if (plugins_find(d, pl->name)) {
        log_err("plugin %s: a VSP named '%s' is already loaded; not loaded", path, pl->name);
        return 0;
    }
    if (d->nplugins == CFG_MAX_VSPS) {
        snprintf(err, errlen, "more than %d VSP plugins", CFG_MAX_VSPS);
        return -1;
    }
    void *state = NULL;
    if (wanted(d, pl->name) && pl->init) {
        const struct cfg_vsp_params *p = config_vsp_params(&d->cfg, pl->name);
        static const char *const none[] = {NULL};
        int ret = pl->init(p ? (const char *const *)p->keys : none,
                           p ? (const char *const *)p->values : none, &state);
        if (ret < 0) {
            snprintf(err, errlen, "VSP %s refused its configuration: %s", pl->name,
                     strerror(-ret));
            return -1;
        }
    }
    struct loaded_plugin *lp = &d->plugins[d->nplugins++];
    lp->pl = pl;
    lp->state = state;
    lp->dl = dl;
    snprintf(lp->path, sizeof(lp->path), "%s", path);
    log_info("VSP %s loaded from %s", pl->name, path);
    return 0;
}

/* vmbusd runs the plugin's code with its own privileges (root, unless the
 * unit says otherwise): whoever can replace the file or the directory entry
 * owns the daemon.  Accept only what root or vmbusd's own user owns and
 * nobody else may write.  0, or -1 with the reason in err. */
static int check_owner_mode(const char *what, const char *path, bool want_dir, char *err,
                            size_t errlen)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    if (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s %s is not a %s", what, path,
                 want_dir ? "directory" : "regular file");
        return -1;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        snprintf(err, errlen,
                 "%s %s is owned by uid %u, not by root or vmbusd's user (uid %u); refused",
                 what, path, (unsigned)st.st_uid, (unsigned)geteuid());
        return -1;
    }
    if (st.st_mode & (S_IWGRP | S_IWOTH)) {
        snprintf(err, errlen, "%s %s is writable by group or others (mode %04o); refused",
                 what, path, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

/* Load the VSP `name` from the first plugin directory holding NAME.so:
 * 0 (loaded, or refused with a log line), 1 if no directory has it, -1 on a
 * refusal that stops vmbusd (reason in err). */
static int load_named(struct vmbusd *d, const char *name, char *err, size_t errlen)
{
    for (int i = 0; i < d->cfg.ndirs; i++) {
        const char *dir = d->cfg.plugin_dirs[i];
        char path[512];
        snprintf(path, sizeof(path), "%s/%s.so", dir, name);
        if (access(path, F_OK) < 0)
            continue;
        if (check_owner_mode("plugin directory", dir, true, err, errlen) < 0 ||
            check_owner_mode("plugin", path, false, err, errlen) < 0)
            return -1;
        void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
            log_err("plugin %s: %s", path, dlerror());
            return 0;
        }
        const struct vsp_plugin *pl = dlsym(dl, VSP_PLUGIN_SYMBOL);
        if (!pl) {
            log_err("plugin %s does not export %s; not loaded", path, VSP_PLUGIN_SYMBOL);
            dlclose(dl);
            return 0;
        }
        /* Checked before the name: a plugin of another API version may
         * have another struct layout. */
        if (pl->api_version == VSP_API_VERSION && (!pl->name || strcmp(pl->name, name) != 0)) {
            log_err("plugin %s calls its VSP '%s', not '%s'; not loaded", path,
                    pl->name ? pl->name : "", name);
            dlclose(dl);
            return 0;
        }
        int before = d->nplugins;
        int ret = add_plugin(d, pl, dl, path, err, errlen);
        if (d->nplugins == before)
            dlclose(dl);
        return ret;
    }
    return 1;
}

static bool vm_gets(const struct cfg_vm *vm, const char *vsp)
{
    for (int i = 0; i < vm->nvsps; i++)
        if (strcmp(vm->vsps[i], vsp) == 0)
            return true;
    return false;
}

/* Every [vm] section's "VSPNAME.key = value" lines go to that VSP's check()
 * (which every VM getting the VSP is shown, lines or not): a line for a VSP
 * the VM does not get, or for one without check, stops vmbusd like any bad
 * line.  0, or -1 with "FILE:LINE: reason" in err. */
static int check_vm_params(struct vmbusd *d, char *err, size_t errlen)
{
    for (int i = 0; i < d->cfg.nvms; i++) {
        const struct cfg_vm *vm = &d->cfg.vms[i];
        for (int j = 0; j < vm->nparams; j++) {
            const struct cfg_vm_param *cp = &vm->params[j];
            struct loaded_plugin *lp = plugins_find(d, cp->vsp);
            if (!vm_gets(vm, cp->vsp) || !lp) {
                snprintf(err, errlen, "%s: %s.%s for VSP %s, which [vm %s] does not get", cp->where,
                         cp->vsp, cp->key, cp->vsp, vm->name);
                return -1;
            }
            if (!lp->pl->check) {
                snprintf(err, errlen, "%s: VSP %s takes no per-VM parameters (%s.%s)", cp->where,
                         cp->vsp, cp->vsp, cp->key);
                return -1;
            }
        }
        for (int j = 0; j < vm->nvsps; j++) {
            struct loaded_plugin *lp = plugins_find(d, vm->vsps[j]);
            if (!lp || !lp->pl->check)
                continue;
            struct vsp_param params[CFG_MAX_VM_PARAMS];
            int n = 0;
            for (int k = 0; k < vm->nparams; k++)
                if (strcmp(vm->params[k].vsp, vm->vsps[j]) == 0)
                    params[n++] = (struct vsp_param){.key = vm->params[k].key,
                                                     .value = vm->params[k].value,
                                                     .where = vm->params[k].where};
            err[0] = 0;
            int ret = lp->pl->check(lp->state, vm->name, params, n, err, errlen);
            if (ret < 0) {
                if (!err[0])
                    snprintf(err, errlen, "[vm %s]: VSP %s refused its parameters: %s", vm->name,
                             lp->pl->name, strerror(-ret));
                return -1;
            }
        }
    }
    return 0;
}

int plugins_load(struct vmbusd *d, char *err, size_t errlen)
{
    for (int i = 0; builtin_plugins[i]; i++)
        if (add_plugin(d, builtin_plugins[i], NULL, "(built-in)", err, errlen) < 0)
            return -1;
    for (int i = 0; d->cfg.linked_plugins && d->cfg.linked_plugins[i]; i++)
        if (add_plugin(d, d->cfg.linked_plugins[i], NULL, "(linked in)", err, errlen) < 0)
            return -1;
    /* From the plugin directories only what a [vm] section names: a .so
     * nobody uses is not even opened (dlopen runs its constructors). */
    for (int i = 0; i < d->cfg.nvms; i++)
        for (int j = 0; j < d->cfg.vms[i].nvsps; j++) {
            const char *name = d->cfg.vms[i].vsps[j];
            if (!plugins_find(d, name) && load_named(d, name, err, errlen) < 0)
                return -1;
        }
    for (int i = 0; i < d->cfg.nvms; i++)
        for (int j = 0; j < d->cfg.vms[i].nvsps; j++)
            if (!plugins_find(d, d->cfg.vms[i].vsps[j])) {
                snprintf(err, errlen, "[vm %s] names VSP '%s', which no plugin provides",
                         d->cfg.vms[i].name, d->cfg.vms[i].vsps[j]);
                return -1;
            }
    return check_vm_params(d, err, errlen);
}

void plugins_unload(struct vmbusd *d)
{
    for (int i = d->nplugins - 1; i >= 0; i--) {
        struct loaded_plugin *lp = &d->plugins[i];
        if (lp->state && lp->pl->fini)
            lp->pl->fini(lp->state);
        if (lp->dl)
            dlclose(lp->dl);
    }
    d->nplugins = 0;
}
