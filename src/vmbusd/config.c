/* SPDX-License-Identifier: MIT */
#include "vmbusd/config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

void config_defaults(struct vmbusd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->socket_path, sizeof(cfg->socket_path), "/run/vmbusd/vmbus-user.sock");
    snprintf(cfg->control_path, sizeof(cfg->control_path), "/run/vmbusd/control.sock");
    cfg->workers = 4;
    cfg->worker_sched = CFG_WORKER_SCHED_NORMAL;
    cfg->log_level = LOG_INFO;
    cfg->socket_access = (struct cfg_sock_access){.mode = 0660, .gid = (gid_t)-1};
    cfg->control_access = (struct cfg_sock_access){.mode = 0600, .gid = (gid_t)-1};
    cfg->max_connections = CFG_DEF_MAX_CONNECTIONS;
    cfg->max_fds_per_conn = CFG_DEF_MAX_FDS_PER_CONN;
}

/* [daemon] socket-mode, socket-group, control-mode, control-group.
 * Returns 1 if key is one of them, 0 if not, -1 with the reason in why if
 * its value is bad. */
static int sock_access_key(struct vmbusd_config *cfg, const char *key, const char *val,
                           char *why, size_t whylen)
{
#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(why, whylen, __VA_ARGS__);                                                        \
        return -1;                                                                                 \
    } while (0)
    struct cfg_sock_access *a;
    const char *what;
    if (strncmp(key, "socket-", 7) == 0) {
        a = &cfg->socket_access;
        what = key + 7;
    } else if (strncmp(key, "control-", 8) == 0) {
        a = &cfg->control_access;
        what = key + 8;
    } else {
        return 0;
    }
    if (strcmp(what, "mode") == 0) {
        char *end;
        unsigned long m = strtoul(val, &end, 8);
        /* rw for the owner, never for others: any local user could reach
         * every VM (or control all of them) */
        if (!*val || *end || m > 0777 || (m & 0600) != 0600 || (m & 0007))
            BAD("%s must be octal, rw for the owner, nothing for others (e.g. %s)", key,
                a == &cfg->socket_access ? "0660" : "0600");
        a->mode = (unsigned)m;
        return 1;
    }
    if (strcmp(what, "group") == 0) {
        if (!*val || strlen(val) >= sizeof(a->group))
            BAD("%s: bad group name", key);
        struct group *g = getgrnam(val);
        char *end;
        unsigned long id = strtoul(val, &end, 10);
        if (!g && (*end || id >= (gid_t)-1))
            BAD("%s: no group '%s'", key, val);
        a->gid = g ? g->gr_gid : (gid_t)id;
        snprintf(a->group, sizeof(a->group), "%s", val);
        return 1;
    }
    return 0;
#undef BAD
}

void config_default_vms(struct vmbusd_config *cfg)
{
    if (cfg->nvms)
        return;
    struct cfg_vm *vm = &cfg->vms[cfg->nvms++];
    snprintf(vm->name, sizeof(vm->name), "default");
    static const char *const ics[] = {"heartbeat", "shutdown", "timesync", "kvp"};
    for (unsigned i = 0; i < 4; i++)
        snprintf(vm->vsps[vm->nvsps++], sizeof(vm->vsps[0]), "%s", ics[i]);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = 0;
    return s;
}

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) >= 64)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
            return false;
    return true;
}

enum section { SEC_NONE, SEC_DAEMON, SEC_VM, SEC_VSP };

int config_load(struct vmbusd_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char line[1024];
    int lineno = 0;
    enum section sec = SEC_NONE;
    struct cfg_vm *vm = NULL;
    struct cfg_vsp_params *vp = NULL;
    char why[160];
    int r;
#define FAIL(...)                                                                                  \
    do {                                                                                           \
        int o_ = snprintf(err, errlen, "%s:%d: ", path, lineno);                                   \
        snprintf(err + o_, errlen - (size_t)o_, __VA_ARGS__);                                      \
        fclose(f);                                                                                 \
        return -1;                                                                                 \
    } while (0)
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f))
            FAIL("line longer than %zu characters", sizeof(line) - 2);
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *s = trim(line);
        if (!*s)
            continue;
        if (*s == '[') {
            char *end = strchr(s, ']');
            if (!end || end[1])
                FAIL("malformed section header");
            *end = 0;
            char *name = trim(s + 1);
            char *arg = strchr(name, ' ');
            if (arg) {
                *arg++ = 0;
                arg = trim(arg);
            }
            if (strcmp(name, "daemon") == 0 && !arg) {
                sec = SEC_DAEMON;
            } else if (strcmp(name, "vm") == 0 && arg) {
                if (!valid_name(arg))
                    FAIL("bad VM name '%s' (letters, digits, - _ . only)", arg);
                sec = SEC_VM;
                vm = NULL;
                for (int i = 0; i < cfg->nvms; i++)
                    if (strcmp(cfg->vms[i].name, arg) == 0)
                        vm = &cfg->vms[i];
                if (!vm) {
                    if (cfg->nvms == CFG_MAX_VMS)
                        FAIL("more than %d [vm] sections", CFG_MAX_VMS);
                    vm = &cfg->vms[cfg->nvms++];
                    snprintf(vm->name, sizeof(vm->name), "%s", arg);
                }
            } else if (strcmp(name, "vsp") == 0 && arg) {
                if (!valid_name(arg))
                    FAIL("bad VSP name '%s'", arg);
                sec = SEC_VSP;
                vp = NULL;
                for (int i = 0; i < cfg->nvspparams; i++)
                    if (strcmp(cfg->vspparams[i].name, arg) == 0)
                        vp = &cfg->vspparams[i];
                if (!vp) {
                    if (cfg->nvspparams == CFG_MAX_VSPS)
                        FAIL("more than %d [vsp] sections", CFG_MAX_VSPS);
                    vp = &cfg->vspparams[cfg->nvspparams++];
                    snprintf(vp->name, sizeof(vp->name), "%s", arg);
                }
            } else {
                FAIL("unknown section [%s%s%s] (expected [daemon], [vm NAME] or [vsp NAME])",
                     name, arg ? " " : "", arg ? arg : "");
            }
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq)
            FAIL("expected 'key = value'");
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        if (!*key)
            FAIL("empty key");
        switch (sec) {
        case SEC_NONE:
            FAIL("'%s' outside a section", key);
        case SEC_DAEMON:
            if (strcmp(key, "socket") == 0 || strcmp(key, "control") == 0) {
                char *dst = key[0] == 's' ? cfg->socket_path : cfg->control_path;
                if (strlen(val) >= sizeof(cfg->socket_path))
                    FAIL("%s path longer than %zu bytes", key, sizeof(cfg->socket_path) - 1);
                snprintf(dst, sizeof(cfg->socket_path), "%s", val);
            } else if (strcmp(key, "workers") == 0) {
                char *end;
                long n = strtol(val, &end, 10);
                if (*end || n < 1 || n > 64)
                    FAIL("workers must be 1..64");
                cfg->workers = (int)n;
            } else if (strcmp(key, "worker-sched") == 0) {
                if (strcmp(val, "batch") == 0)
                    cfg->worker_sched = CFG_WORKER_SCHED_BATCH;
                else if (strcmp(val, "normal") == 0)
                    cfg->worker_sched = CFG_WORKER_SCHED_NORMAL;
                else
                    FAIL("worker-sched must be batch or normal");
            } else if (strcmp(key, "max-connections") == 0) {
                char *end;
                long n = strtol(val, &end, 10);
                if (*end || n < 1 || n > 1000000)
                    FAIL("max-connections must be 1..1000000");
                cfg->max_connections = (unsigned)n;
            } else if (strcmp(key, "max-fds-per-connection") == 0) {
                char *end;
                long n = strtol(val, &end, 10);
                if (*end || n < CFG_MIN_FDS_PER_CONN || n > CFG_MAX_FDS_PER_CONN)
                    FAIL("max-fds-per-connection must be %d..%d", CFG_MIN_FDS_PER_CONN,
                         CFG_MAX_FDS_PER_CONN);
                cfg->max_fds_per_conn = (unsigned)n;
            } else if (strcmp(key, "log-level") == 0) {
                int l = log_parse_level(val);
                if (l < 0)
                    FAIL("log-level must be error, warn, info or debug");
                cfg->log_level = l;
            } else if ((r = sock_access_key(cfg, key, val, why, sizeof(why))) != 0) {
                if (r < 0)
                    FAIL("%s", why);
            } else if (strcmp(key, "plugin-dir") == 0) {
                if (cfg->ndirs == CFG_MAX_DIRS)
                    FAIL("more than %d plugin-dir lines", CFG_MAX_DIRS);
                if (strlen(val) >= sizeof(cfg->plugin_dirs[0]))
                    FAIL("plugin-dir too long");
                snprintf(cfg->plugin_dirs[cfg->ndirs++], sizeof(cfg->plugin_dirs[0]), "%s", val);
            } else {
                FAIL("unknown key '%s' in [daemon]", key);
            }
            break;
        case SEC_VM: {
            char *dot = strchr(key, '.');
            if (dot) {
                /* VSPNAME.key: the VSP's own per-VM parameter; its check()
                 * judges it once the plugins are loaded (plugins.c). */
                *dot = 0;
                if (!valid_name(key) || !dot[1])
                    FAIL("expected VSPNAME.key, got '%s.%s'", key, dot + 1);
                char where[300];
                snprintf(where, sizeof(where), "%s:%d", path, lineno);
                if (config_vm_add_param(vm, key, dot + 1, val, where) < 0)
                    FAIL("more than %d VSP parameters in [vm %s]", CFG_MAX_VM_PARAMS, vm->name);
                break;
            }
            if (strcmp(key, "vsp") != 0)
                FAIL("unknown key '%s' in [vm %s] (expected vsp or VSPNAME.key)", key,
                     vm->name);
            vm->nvsps = 0;
            for (char *tok = strtok(val, " \t,"); tok; tok = strtok(NULL, " \t,")) {
                if (!valid_name(tok))
                    FAIL("bad VSP name '%s'", tok);
                if (vm->nvsps == CFG_MAX_VSPS)
                    FAIL("more than %d VSPs for one VM", CFG_MAX_VSPS);
                snprintf(vm->vsps[vm->nvsps++], sizeof(vm->vsps[0]), "%s", tok);
            }
            break;
        }
        case SEC_VSP:
            if (vp->nparams == CFG_MAX_PARAMS)
                FAIL("more than %d parameters for VSP %s", CFG_MAX_PARAMS, vp->name);
            vp->keys[vp->nparams] = strdup(key);
            vp->values[vp->nparams] = strdup(val);
            vp->nparams++;
            vp->keys[vp->nparams] = vp->values[vp->nparams] = NULL;
            break;
        }
    }
#undef FAIL
    fclose(f);
    return 0;
}

const struct cfg_vm *config_vm(const struct vmbusd_config *cfg, const char *name)
{
    const struct cfg_vm *def = NULL;
    for (int i = 0; i < cfg->nvms; i++) {
        if (strcmp(cfg->vms[i].name, name) == 0)
            return &cfg->vms[i];
        if (strcmp(cfg->vms[i].name, "default") == 0)
            def = &cfg->vms[i];
    }
    return def;
}

const struct cfg_vsp_params *config_vsp_params(const struct vmbusd_config *cfg, const char *vsp)
{
    for (int i = 0; i < cfg->nvspparams; i++)
        if (strcmp(cfg->vspparams[i].name, vsp) == 0)
            return &cfg->vspparams[i];
    return NULL;
}

int config_vm_add_param(struct cfg_vm *vm, const char *vsp, const char *key, const char *value,
                        const char *where)
{
    if (vm->nparams == CFG_MAX_VM_PARAMS)
        return -1;
    struct cfg_vm_param *p = &vm->params[vm->nparams];
    p->vsp = strdup(vsp);
    p->key = strdup(key);
    p->value = strdup(value);
    p->where = strdup(where);
    if (!p->vsp || !p->key || !p->value || !p->where) {
        free(p->vsp);
        free(p->key);
        free(p->value);
        free(p->where);
        memset(p, 0, sizeof(*p));
        return -1;
    }
    vm->nparams++;
    return 0;
}

void config_free(struct vmbusd_config *cfg)
{
    for (int i = 0; i < cfg->nvms; i++) {
        for (int j = 0; j < cfg->vms[i].nparams; j++) {
            struct cfg_vm_param *p = &cfg->vms[i].params[j];
            free(p->vsp);
            free(p->key);
            free(p->value);
            free(p->where);
        }
        cfg->vms[i].nparams = 0;
    }
    for (int i = 0; i < cfg->nvspparams; i++) {
        for (int j = 0; j < cfg->vspparams[i].nparams; j++) {
            free(cfg->vspparams[i].keys[j]);
            free(cfg->vspparams[i].values[j]);
        }
        cfg->vspparams[i].nparams = 0;
    }
}
