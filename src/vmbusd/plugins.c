/* SPDX-License-Identifier: MIT */
/*
 * VSP plugins: the built-in ones, then every *.so in the configured plugin
 * directories.  A plugin built for another API version is refused.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

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

static int load_dir(struct vmbusd *d, const char *dir, char *err, size_t errlen)
{
    DIR *dh = opendir(dir);
    if (!dh) {
        log_warn("plugin directory %s: %s", dir, strerror(errno));
        return 0;
    }
    struct dirent *de;
    int ret = 0;
    while (ret == 0 && (de = readdir(dh))) {
        size_t n = strlen(de->d_name);
        if (n < 4 || strcmp(de->d_name + n - 3, ".so") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!dl) {
            log_err("plugin %s: %s", path, dlerror());
            continue;
        }
        const struct vsp_plugin *pl = dlsym(dl, VSP_PLUGIN_SYMBOL);
        if (!pl) {
            log_err("plugin %s does not export %s; not loaded", path, VSP_PLUGIN_SYMBOL);
            dlclose(dl);
            continue;
        }
        int before = d->nplugins;
        ret = add_plugin(d, pl, dl, path, err, errlen);
        if (d->nplugins == before)
            dlclose(dl);
    }
    closedir(dh);
    return ret;
}

int plugins_load(struct vmbusd *d, char *err, size_t errlen)
{
    for (int i = 0; builtin_plugins[i]; i++)
        if (add_plugin(d, builtin_plugins[i], NULL, "(built-in)", err, errlen) < 0)
            return -1;
    for (int i = 0; d->cfg.linked_plugins && d->cfg.linked_plugins[i]; i++)
        if (add_plugin(d, d->cfg.linked_plugins[i], NULL, "(linked in)", err, errlen) < 0)
            return -1;
    for (int i = 0; i < d->cfg.ndirs; i++)
        if (load_dir(d, d->cfg.plugin_dirs[i], err, errlen) < 0)
            return -1;
    for (int i = 0; i < d->cfg.nvms; i++)
        for (int j = 0; j < d->cfg.vms[i].nvsps; j++)
            if (!plugins_find(d, d->cfg.vms[i].vsps[j])) {
                snprintf(err, errlen, "[vm %s] names VSP '%s', which no plugin provides",
                         d->cfg.vms[i].name, d->cfg.vms[i].vsps[j]);
                return -1;
            }
    return 0;
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
