/* SPDX-License-Identifier: MIT */
/*
 * The simulator's in-process vmbusd and the log capture tests assert on.
 */
#include "simvm.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "vmbusd/config.h"
#include "vmbusd/vmbusd.h"

struct sim_daemon {
    struct vmbusd_config cfg;
    struct vmbusd *d;
    char dir[64];
    pid_t pid;          /* spawned vmbusd, 0 if in-process */
    char conf_path[96];
    char log_path[96];
};

/* ------------------------------------------------------------------ */
/* Log capture                                                          */

#define SIM_LOG_MAX 50000

static pthread_mutex_t cap_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cap_cond = PTHREAD_COND_INITIALIZER;
static struct {
    int level;
    char *line;
} *cap;
static int ncap;
static int cap_verbose = -1;

static void sim_log_sink(enum log_level lvl, const char *line, void *arg)
{
    (void)arg;
    pthread_mutex_lock(&cap_lock);
    if (!cap)
        cap = calloc(SIM_LOG_MAX, sizeof(*cap));
    if (cap && ncap < SIM_LOG_MAX) {
        cap[ncap].level = (int)lvl;
        cap[ncap].line = strdup(line);
        ncap++;
    }
    pthread_cond_broadcast(&cap_cond);
    pthread_mutex_unlock(&cap_lock);
}

void sim_log_clear(void)
{
    pthread_mutex_lock(&cap_lock);
    for (int i = 0; i < ncap; i++)
        free(cap[i].line);
    ncap = 0;
    pthread_mutex_unlock(&cap_lock);
}

/* "#N" matches the number N as a whole token; anything else is a substring. */
static bool needle_in(const char *line, const char *n)
{
    if (!n)
        return true;
    if (n[0] != '#')
        return strstr(line, n) != NULL;
    const char *num = n + 1;
    size_t len = strlen(num);
    for (const char *p = strstr(line, num); p; p = strstr(p + 1, num)) {
        bool left_ok = p == line || !isalnum((unsigned char)p[-1]);
        bool right_ok = !isalnum((unsigned char)p[len]);
        /* also accept hex-looking "0x..." forms only when asked literally */
        if (left_ok && right_ok)
            return true;
    }
    return false;
}

static int count_locked(int max_level, const char *n1, const char *n2, const char *n3)
{
    int c = 0;
    for (int i = 0; i < ncap; i++)
        if (cap[i].level <= max_level && needle_in(cap[i].line, n1) &&
            needle_in(cap[i].line, n2) && needle_in(cap[i].line, n3))
            c++;
    return c;
}

int sim_log_count(int max_level, const char *n1, const char *n2, const char *n3)
{
    pthread_mutex_lock(&cap_lock);
    int c = count_locked(max_level, n1, n2, n3);
    pthread_mutex_unlock(&cap_lock);
    return c;
}

int sim_count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

struct timespec sim_deadline_ms(unsigned ms)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

bool sim_log_wait(int timeout_ms, int max_level, const char *n1, const char *n2, const char *n3)
{
    struct timespec ts = sim_deadline_ms(timeout_ms > 0 ? (unsigned)timeout_ms : 0);
    pthread_mutex_lock(&cap_lock);
    bool found;
    while (!(found = count_locked(max_level, n1, n2, n3) > 0))
        if (pthread_cond_timedwait(&cap_cond, &cap_lock, &ts) == ETIMEDOUT) {
            found = count_locked(max_level, n1, n2, n3) > 0;
            break;
        }
    pthread_mutex_unlock(&cap_lock);
    return found;
}

void sim_log_dump(const char *why)
{
    pthread_mutex_lock(&cap_lock);
    fprintf(stderr, "---- vmbusd log (%s): %d lines ----\n", why ? why : "", ncap);
    int from = ncap > 200 ? ncap - 200 : 0;
    for (int i = from; i < ncap; i++)
        fprintf(stderr, "  [%d] %s\n", cap[i].level, cap[i].line);
    pthread_mutex_unlock(&cap_lock);
}

/* ------------------------------------------------------------------ */
/* Daemon                                                               */

static void add_param(struct cfg_vsp_params *p, const char *k, const char *v)
{
    for (int i = 0; i < p->nparams; i++)
        if (strcmp(p->keys[i], k) == 0) {
            free(p->values[i]);
            p->values[i] = strdup(v);
            return;
        }
    if (p->nparams >= CFG_MAX_PARAMS)
        return;
    p->keys[p->nparams] = strdup(k);
    p->values[p->nparams] = strdup(v);
    p->nparams++;
    p->keys[p->nparams] = NULL;
    p->values[p->nparams] = NULL;
}

const struct vsp_plugin *const *simd_linked_plugins;
const struct sim_vm_param *simd_vm_params;
const char *simd_worker_sched;

struct sim_daemon *simd_start(const struct sim_vm_cfg *vms, int nvms, int echo_channels)
{
    return simd_start_params(vms, nvms, echo_channels, NULL, 0);
}

/* The [vsp NAME] section for name, created if missing (NULL if full). */
static struct cfg_vsp_params *vsp_section(struct vmbusd_config *cfg, const char *name)
{
    for (int i = 0; i < cfg->nvspparams; i++)
        if (strcmp(cfg->vspparams[i].name, name) == 0)
            return &cfg->vspparams[i];
    if (cfg->nvspparams >= CFG_MAX_VSPS)
        return NULL;
    struct cfg_vsp_params *p = &cfg->vspparams[cfg->nvspparams++];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    return p;
}

/* A daemon record with its own temporary directory and the default
 * configuration pointing its sockets there. */
static struct sim_daemon *simd_alloc(void)
{
    struct sim_daemon *sd = calloc(1, sizeof(*sd));
    if (!sd)
        return NULL;
    snprintf(sd->dir, sizeof(sd->dir), "/tmp/vmbusd-sim.XXXXXX");
    if (!mkdtemp(sd->dir)) {
        perror("mkdtemp");
        free(sd);
        return NULL;
    }
    config_defaults(&sd->cfg);
    if (simd_worker_sched)
        sd->cfg.worker_sched = strcmp(simd_worker_sched, "batch") == 0 ? CFG_WORKER_SCHED_BATCH
                                                                        : CFG_WORKER_SCHED_NORMAL;
    snprintf(sd->cfg.socket_path, sizeof(sd->cfg.socket_path), "%s/vu.sock", sd->dir);
    snprintf(sd->cfg.control_path, sizeof(sd->cfg.control_path), "%s/ctl.sock", sd->dir);
    return sd;
}

struct sim_daemon *simd_start_params(const struct sim_vm_cfg *vms, int nvms, int echo_channels,
                                     const struct sim_vsp_param *params, int nparams)
{
    struct sim_daemon *sd = simd_alloc();
    if (!sd)
        return NULL;
    if (cap_verbose < 0) {
        const char *v = getenv("SIM_VERBOSE");
        cap_verbose = v && *v && *v != '0';
    }
    sd->cfg.linked_plugins = simd_linked_plugins;
    const char *w = getenv("SIM_WORKERS"); /* vmbusd's worker pool size */
    if (w && atoi(w) > 0)
        sd->cfg.workers = atoi(w);
    sd->cfg.nvms = 0;
    for (int i = 0; i < nvms && i < CFG_MAX_VMS; i++) {
        struct cfg_vm *vm = &sd->cfg.vms[sd->cfg.nvms++];
        memset(vm, 0, sizeof(*vm));
        snprintf(vm->name, sizeof(vm->name), "%s", vms[i].name);
        char buf[512];
        snprintf(buf, sizeof(buf), "%s", vms[i].vsps ? vms[i].vsps : "");
        char *save = NULL;
        for (char *t = strtok_r(buf, " ,", &save); t && vm->nvsps < CFG_MAX_VSPS;
             t = strtok_r(NULL, " ,", &save))
            snprintf(vm->vsps[vm->nvsps++], sizeof(vm->vsps[0]), "%s", t);
        for (int k = 0; simd_vm_params && simd_vm_params[k].vm; k++) {
            const struct sim_vm_param *vp = &simd_vm_params[k];
            char where[32];
            snprintf(where, sizeof(where), "sim:%d", k + 1);
            if (strcmp(vp->vm, vm->name) == 0)
                config_vm_add_param(vm, vp->vsp, vp->key, vp->value, where);
        }
    }
    struct cfg_vsp_params *ep = NULL;
    for (int i = 0; i < sd->cfg.nvspparams; i++)
        if (strcmp(sd->cfg.vspparams[i].name, "echo") == 0)
            ep = &sd->cfg.vspparams[i];
    if (!ep && sd->cfg.nvspparams < CFG_MAX_VSPS) {
        ep = &sd->cfg.vspparams[sd->cfg.nvspparams++];
        memset(ep, 0, sizeof(*ep));
        /* (not snprintf: GCC 12 with ASan takes ep for NULL there) */
        memcpy(ep->name, "echo", sizeof("echo"));
    }
    if (ep) {
        char n[16];
        snprintf(n, sizeof(n), "%d", echo_channels);
        add_param(ep, "channels", n);
    }
    for (int i = 0; i < nparams; i++) {
        struct cfg_vsp_params *p = vsp_section(&sd->cfg, params[i].vsp);
        if (p)
            add_param(p, params[i].key, params[i].value);
    }

    log_set_sink(sim_log_sink, NULL);
    if (!cap_verbose)
        log_set_level(LOG_INFO);
    else
        log_set_level(LOG_DEBUG);

    char err[256] = "";
    vmbusd_raise_fd_limit(); /* as vmbusd's main() does */
    sd->d = vmbusd_create(&sd->cfg, err, sizeof(err));
    if (!sd->d) {
        fprintf(stderr, "simd_start: vmbusd_create failed: %s\n", err);
        config_free(&sd->cfg);
        rmdir(sd->dir);
        free(sd);
        return NULL;
    }
    if (vmbusd_start_thread(sd->d) != 0) {
        fprintf(stderr, "simd_start: vmbusd_start_thread failed\n");
        vmbusd_destroy(sd->d);
        config_free(&sd->cfg);
        rmdir(sd->dir);
        free(sd);
        return NULL;
    }
    return sd;
}

/* vmbusd_destroy() must return: if it hangs, dump every thread's stack
 * (gdb, if installed) and fail the test process instead of timing out. */
static pthread_mutex_t wd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wd_cond = PTHREAD_COND_INITIALIZER;
static bool wd_done;

static void *stop_watchdog(void *arg)
{
    (void)arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 15;
    pthread_mutex_lock(&wd_lock);
    while (!wd_done)
        if (pthread_cond_timedwait(&wd_cond, &wd_lock, &ts) == ETIMEDOUT)
            break;
    bool done = wd_done;
    pthread_mutex_unlock(&wd_lock);
    if (done)
        return NULL;
    fprintf(stderr, "simd_stop: vmbusd_destroy() hangs; thread stacks:\n");
    char cmd[160];
    snprintf(cmd, sizeof(cmd),
             "gdb -p %d -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^#|^Thread' >&2",
             (int)getpid());
    if (system(cmd) < 0)
        perror("system");
    sim_log_dump("vmbusd_destroy hang");
    _exit(99);
}

struct sim_daemon *simd_spawn(const char *exe, const char *conf, unsigned long nofile)
{
    struct sim_daemon *sd = simd_alloc();
    if (!sd)
        return NULL;
    snprintf(sd->conf_path, sizeof(sd->conf_path), "%s/vmbusd.conf", sd->dir);
    snprintf(sd->log_path, sizeof(sd->log_path), "%s/vmbusd.log", sd->dir);
    FILE *f = fopen(sd->conf_path, "w");
    if (!f || fputs(conf, f) < 0 || fclose(f) != 0) {
        perror("simd_spawn: config file");
        goto fail;
    }
    sd->pid = fork();
    if (sd->pid < 0) {
        perror("fork");
        goto fail;
    }
    if (sd->pid == 0) {
        struct rlimit rl = {.rlim_cur = nofile, .rlim_max = nofile};
        if (nofile && setrlimit(RLIMIT_NOFILE, &rl) < 0)
            _exit(126);
        int lfd = open(sd->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (lfd < 0 || dup2(lfd, 1) < 0 || dup2(lfd, 2) < 0)
            _exit(126);
        execl(exe, exe, "--config", sd->conf_path, "--socket", sd->cfg.socket_path, "--control",
              sd->cfg.control_path, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) {
        if (access(sd->cfg.socket_path, F_OK) == 0 && access(sd->cfg.control_path, F_OK) == 0)
            return sd;
        if (waitpid(sd->pid, NULL, WNOHANG) == sd->pid) {
            fprintf(stderr, "simd_spawn: %s exited; its log:\n", exe);
            FILE *lf = fopen(sd->log_path, "r");
            char line[512];
            while (lf && fgets(line, sizeof(line), lf))
                fputs(line, stderr);
            if (lf)
                fclose(lf);
            sd->pid = 0;
            goto fail;
        }
        usleep(10000);
    }
    fprintf(stderr, "simd_spawn: no sockets from %s after 10 s\n", exe);
    kill(sd->pid, SIGKILL);
    waitpid(sd->pid, NULL, 0);
    sd->pid = 0;
fail:
    unlink(sd->conf_path);
    unlink(sd->log_path);
    rmdir(sd->dir);
    free(sd);
    return NULL;
}

pid_t simd_pid(const struct sim_daemon *sd) { return sd->pid; }
const char *simd_log_path(const struct sim_daemon *sd) { return sd->log_path; }

static void simd_stop_process(struct sim_daemon *sd)
{
    kill(sd->pid, SIGTERM);
    int st = 0;
    for (int i = 0; i < 1000 && waitpid(sd->pid, &st, WNOHANG) != sd->pid; i++)
        usleep(10000);
    if (kill(sd->pid, 0) == 0) {
        fprintf(stderr, "simd_stop: vmbusd (pid %d) ignores SIGTERM: killed\n", (int)sd->pid);
        kill(sd->pid, SIGKILL);
        waitpid(sd->pid, &st, 0);
    }
    unlink(sd->cfg.socket_path);
    unlink(sd->cfg.control_path);
    unlink(sd->conf_path);
    unlink(sd->log_path);
    rmdir(sd->dir);
    free(sd);
}

void simd_stop(struct sim_daemon *sd)
{
    if (!sd)
        return;
    if (sd->pid) {
        simd_stop_process(sd);
        return;
    }
    pthread_t wd;
    wd_done = false;
    bool have_wd = pthread_create(&wd, NULL, stop_watchdog, NULL) == 0;
    vmbusd_stop(sd->d);
    vmbusd_destroy(sd->d);
    if (have_wd) {
        pthread_mutex_lock(&wd_lock);
        wd_done = true;
        pthread_cond_broadcast(&wd_cond);
        pthread_mutex_unlock(&wd_lock);
        pthread_join(wd, NULL);
    }
    config_free(&sd->cfg);
    unlink(sd->cfg.socket_path);
    unlink(sd->cfg.control_path);
    rmdir(sd->dir);
    free(sd);
}

/* One request line, one answer line.  true if an answer arrived. */
bool sim_ctl_call(const char *path, const char *req, char *out, size_t outlen)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    bool ok = false;
    size_t n = 0;
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
        size_t rl = strlen(req);
        char *line = malloc(rl + 2);
        if (line) {
            memcpy(line, req, rl);
            line[rl] = '\n';
            ok = write(fd, line, rl + 1) == (ssize_t)(rl + 1);
            free(line);
        }
        while (ok && n + 1 < outlen) {
            ssize_t r = read(fd, out + n, outlen - 1 - n);
            if (r <= 0) {
                ok = false;
                break;
            }
            n += (size_t)r;
            if (memchr(out, '\n', n))
                break;
        }
    }
    close(fd);
    out[n] = 0;
    return ok && n > 0;
}

const char *simd_socket_path(const struct sim_daemon *sd) { return sd->cfg.socket_path; }
const char *simd_control_path(const struct sim_daemon *sd) { return sd->cfg.control_path; }
struct vmbusd *simd_vmbusd(struct sim_daemon *sd) { return sd->d; }
