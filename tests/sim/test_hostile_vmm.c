/* SPDX-License-Identifier: MIT */
/*
 * A VMM that turns the fds it shares with vmbusd against it.  SINT_ROUTE
 * fds that are not eventfds are refused with an ERROR; eventfds that would
 * make vmbusd's I/O block (an irqfd preloaded to the maximum in blocking
 * mode, or switched to blocking after SINT_ROUTE; vmbusd's own eventfds
 * switched to blocking and read by the VMM first) may break that VM only:
 * another VM still connects, gets its offers and echoes, and the hostile
 * partition is torn down when its VMM goes away.  A worker that writes an
 * irqfd itself (the VMM made it non-blocking) is not held by a VMM that
 * switches it back to blocking and fills it at the wrong moment, and the
 * interrupt still reaches the guest once the VMM lets it.
 */
#include "sim_test.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "vmbusd/internal.h" /* the event base, to park the loop (white-box) */
#include "vmbusd/sint_signal.h" /* sint_direct_test_any_mode (white-box) */

#define EVENTFD_MAX 0xfffffffffffffffeull

/* The good VM does everything a VM does, from HELLO on. */
static void good_vm_works(struct fx *f, const char *after)
{
    static int serial;
    char name[32];
    snprintf(name, sizeof(name), "good-%d", ++serial);
    struct sim_vm *vm = sim_up(f->d, name, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "good VM: HELLO and offers after %s", after);
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "good VM: open after %s", after);
    for (int i = 0; i < 20; i++)
        SIM_ASSERT(sim_echo_roundtrip(ch, 64 + i, (uint64_t)i + 1, i & 1) == 0,
                   "good VM: echo %d after %s", i, after);
    SIM_ASSERT(vm->bad_host_msgs == 0, "good VM: malformed messages after %s", after);
    sim_vm_free(vm);
}

/* Wait until only `n` partitions are left (the hostile one went away). */
static void wait_partitions(struct fx *f, unsigned n, const char *what)
{
    for (int i = 0; i < 1000 && vmbusd_partition_count(simd_vmbusd(f->d)) > n; i++)
        usleep(10000);
    SIM_ASSERT(vmbusd_partition_count(simd_vmbusd(f->d)) == n, "%s: partition not torn down",
               what);
}

/* ---- fds that are not eventfds ---- */

enum bad_kind { PIPE_IRQ, PIPE_RESAMPLE, SOCKET, REGULAR_FILE, SEMAPHORE_RESAMPLE };

static void bad_fd_case(struct fx *f, enum bad_kind k, const char *what, const char *expect)
{
    char name[64];
    snprintf(name, sizeof(name), "hostile-fd-%d", (int)k);
    struct sim_vm_opts o = {.name = name, .no_setup = true, .mem_size = 8u << 20};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "connect");
    SIM_ASSERT(sim_vmm_hello(vm) == 0, "HELLO");
    int p[2] = {-1, -1}, extra = -1;
    int fds[2] = {vm->vp[0].irqfd, vm->vp[0].resamplefd};
    switch (k) {
    case PIPE_IRQ:
        SIM_ASSERT(pipe2(p, O_CLOEXEC) == 0, "pipe");
        fds[0] = p[1];
        break;
    case PIPE_RESAMPLE:
        SIM_ASSERT(pipe2(p, O_CLOEXEC) == 0, "pipe");
        fds[1] = p[0];
        break;
    case SOCKET:
        SIM_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p) == 0, "socketpair");
        fds[0] = p[0];
        break;
    case REGULAR_FILE:
        extra = memfd_create("not-an-eventfd", MFD_CLOEXEC);
        SIM_ASSERT(extra >= 0, "memfd");
        fds[0] = extra;
        break;
    case SEMAPHORE_RESAMPLE:
        extra = eventfd(0, EFD_CLOEXEC | EFD_SEMAPHORE);
        SIM_ASSERT(extra >= 0, "eventfd");
        fds[1] = extra;
        break;
    }
    struct vu_sint_route r = {.vp_index = 0, .sint = VMBUS_MESSAGE_SINT};
    SIM_ASSERT(sim_vu_send(vm, VU_MSG_SINT_ROUTE, &r, sizeof(r), fds, 2) > 0, "send");
    sim_vu_alive(vm, 2000);
    print_message("  %-40s %s\n", what, vm->error[0] ? vm->error : "(no ERROR)");
    SIM_ASSERT(vm->error[0] && strstr(vm->error, "SINT_ROUTE") && strstr(vm->error, expect),
               "%s: expected an ERROR saying '%s', got '%s'", what, expect, vm->error);
    SIM_ASSERT(vm->dead, "%s: connection still open after ERROR", what);
    sim_vm_free(vm);
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0)
            close(p[i]);
    if (extra >= 0)
        close(extra);
}

static void test_not_eventfds(void **state)
{
    struct fx *f = *state;
    bad_fd_case(f, PIPE_IRQ, "irqfd is a pipe", "irqfd is not an eventfd");
    bad_fd_case(f, PIPE_RESAMPLE, "resample fd is a pipe", "resample fd is not an eventfd");
    bad_fd_case(f, SOCKET, "irqfd is a socket", "irqfd is not an eventfd");
    bad_fd_case(f, REGULAR_FILE, "irqfd is a memfd", "irqfd is not an eventfd");
    bad_fd_case(f, SEMAPHORE_RESAMPLE, "resample fd in semaphore mode", "semaphore");
    wait_partitions(f, 0, "refused SINT_ROUTEs");
    good_vm_works(f, "refused SINT_ROUTEs");
}

/* ---- eventfds whose write would block ---- */

/* Some vmbusd SINT thread (src/vmbusd/sint_signal.c) sits in write(2): the
 * hostile irqfd's, since every other one can take a write.  Seen from
 * /proc, so that the checks below run while the write is really stuck. */
static bool sint_write_stuck(void)
{
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return false;
    bool stuck = false;
    struct dirent *e;
    while (!stuck && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], buf[64] = "";
        snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        bool ours = fgets(buf, sizeof(buf), f) && strncmp(buf, "vmbusd-sint", 11) == 0;
        fclose(f);
        if (!ours)
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/syscall", e->d_name);
        f = fopen(path, "re");
        long nr = -1;
        if (f) {
            if (fscanf(f, "%ld", &nr) != 1)
                nr = -1;
            fclose(f);
        }
        stuck = nr == SYS_write;
    }
    closedir(d);
    return stuck;
}

/* A hostile VM whose vp 0 irqfd cannot take another write; vmbusd has to
 * raise its SINT (VERSION_RESPONSE).  The hostile "guest" never services
 * that irqfd (reading it would unblock the write). */
static void blocked_irqfd_case(struct fx *f, bool switch_after)
{
    const char *what = switch_after ? "irqfd switched to blocking and filled after SINT_ROUTE"
                                    : "irqfd blocking and preloaded to the maximum";
    char name[64];
    snprintf(name, sizeof(name), "hostile-irq-%s", switch_after ? "switched" : "preloaded");
    struct sim_vm_opts o = {.name = name, .no_setup = true, .mem_size = 8u << 20};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "connect");
    uint64_t max = EVENTFD_MAX;
    if (!switch_after) {
        close(vm->vp[0].irqfd);
        vm->vp[0].irqfd = eventfd(0, EFD_CLOEXEC); /* blocking */
        SIM_ASSERT(write(vm->vp[0].irqfd, &max, sizeof(max)) == sizeof(max), "preload");
    }
    SIM_ASSERT(sim_vmm_setup(vm) == 0, "%s: setup", what);
    if (switch_after) {
        /* the same open file description as vmbusd's copy */
        SIM_ASSERT(fcntl(vm->vp[0].irqfd, F_SETFL, 0) == 0, "F_SETFL");
        SIM_ASSERT(write(vm->vp[0].irqfd, &max, sizeof(max)) == sizeof(max), "fill");
    }
    /* vmbusd answers on vp 0: that SINT write cannot complete */
    int st = sim_contact_post(vm, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(st == 0, "%s: INITIATE_CONTACT post -> %d", what, st);
    for (int i = 0; i < 1000 && !sint_write_stuck(); i++)
        usleep(10000);
    SIM_ASSERT(sint_write_stuck(), "%s: vmbusd never wrote the irqfd", what);
    good_vm_works(f, what);
    sim_log_clear();
    sim_vm_free(vm); /* the VMM goes away; vmbusd must cut its stuck write */
    SIM_ASSERT(sim_log_wait(10000, LOG_WARN, name, "write interrupted", NULL),
               "%s: no sign that vmbusd stopped the partition's SINT thread", what);
    wait_partitions(f, 0, what);
    print_message("  %-56s other VM fine, partition torn down\n", what);
}

static void test_irqfd_preloaded(void **state)
{
    blocked_irqfd_case(*state, false);
    good_vm_works(*state, "hostile teardown");
}

static void test_irqfd_switched_to_blocking(void **state)
{
    blocked_irqfd_case(*state, true);
    good_vm_works(*state, "hostile teardown");
}

/* ---- the VMM reads vmbusd's eventfds itself ---- */

/*
 * The race a hostile VMM can win by reading in a loop (take the counter
 * between vmbusd's "readable" event and vmbusd's read), made deterministic.
 * The resample fd is read on vmbusd's event loop, which is parked twice,
 * white-box, through its event base: park 1 (a one-shot callback) holds
 * the loop while the test makes a pipe and then the shared eventfd
 * readable; released, the loop collects both in one wake-up, pipe first,
 * and park 2 (the pipe's callback) holds it again before the eventfd's
 * callback runs.  A guest-signal eventfd is read on a worker: the worker
 * is parked by vmbusd_eventfd_test_hook, right before its read.  The VMM
 * takes the counter then, and vmbusd goes on to read an empty eventfd.
 */
struct loop_parker {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int parked; /* times the loop (or the worker) sat in park_cb */
    bool go;
    int pipe_fd[2];
    struct event *pipe_ev;
    uint32_t hook_conn_id; /* the guest-signal eventfd the worker parks for */
};

static void park_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct loop_parker *p = arg;
    char b;
    if (fd >= 0 && read(fd, &b, 1) < 0)
        perror("park pipe");
    pthread_mutex_lock(&p->lock);
    p->parked++;
    pthread_cond_broadcast(&p->cond);
    while (!p->go)
        pthread_cond_wait(&p->cond, &p->lock);
    p->go = false;
    pthread_cond_broadcast(&p->cond); /* see steal_before_worker_read */
    pthread_mutex_unlock(&p->lock);
}

static struct loop_parker *hook_parker;
static atomic_bool hook_armed; /* parks one worker, once */

static void park_hook(const char *vm, uint32_t conn_id)
{
    if (strcmp(vm, "hostile-thief") == 0 && conn_id == hook_parker->hook_conn_id &&
        atomic_exchange(&hook_armed, false))
        park_cb(-1, 0, hook_parker);
}

static bool wait_parked(struct loop_parker *p, int n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    pthread_mutex_lock(&p->lock);
    while (p->parked < n)
        if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) != 0)
            break;
    bool ok = p->parked >= n;
    pthread_mutex_unlock(&p->lock);
    return ok;
}

static void release(struct loop_parker *p)
{
    pthread_mutex_lock(&p->lock);
    p->go = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

/* Make fd (shared with vmbusd, blocking mode) readable, and take its
 * counter back after vmbusd's loop saw it readable, before it reads. */
static void steal_after_event(struct fx *f, struct loop_parker *p, int fd, const char *what)
{
    struct event_base *base = ((struct vmbusd *)simd_vmbusd(f->d))->base;
    int before = p->parked;
    struct timeval now = {0, 0};
    SIM_ASSERT(event_base_once(base, -1, EV_TIMEOUT, park_cb, p, &now) == 0, "park 1");
    SIM_ASSERT(wait_parked(p, before + 1), "%s: the loop did not park", what);
    uint64_t v = 1;
    SIM_ASSERT(write(p->pipe_fd[1], "x", 1) == 1 && write(fd, &v, sizeof(v)) == sizeof(v),
               "%s: writes", what);
    release(p);
    SIM_ASSERT(wait_parked(p, before + 2), "%s: the loop did not park again", what);
    struct iovec iov = {.iov_base = &v, .iov_len = sizeof(v)};
    SIM_ASSERT(preadv2(fd, &iov, 1, -1, RWF_NOWAIT) == sizeof(v), "%s: steal", what);
    release(p); /* the loop now runs the eventfd's callback on an empty counter */
}

/* The same for a guest-signal eventfd, read on a worker. */
static void steal_before_worker_read(struct loop_parker *p, int fd, uint32_t conn_id,
                                     const char *what)
{
    int before = p->parked;
    p->hook_conn_id = conn_id;
    hook_parker = p;
    atomic_store(&hook_armed, true);
    vmbusd_eventfd_test_hook = park_hook;
    uint64_t v = 1;
    SIM_ASSERT(write(fd, &v, sizeof(v)) == sizeof(v), "%s: write", what);
    SIM_ASSERT(wait_parked(p, before + 1), "%s: no worker came to read it", what);
    struct iovec iov = {.iov_base = &v, .iov_len = sizeof(v)};
    SIM_ASSERT(preadv2(fd, &iov, 1, -1, RWF_NOWAIT) == sizeof(v), "%s: steal", what);
    release(p); /* the worker now reads an empty counter */
    /* It has taken the release before the loop is parked for the next
     * case (else the loop's first park could take it instead). */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    pthread_mutex_lock(&p->lock);
    while (p->go && pthread_cond_timedwait(&p->cond, &p->lock, &ts) == 0)
        ;
    bool taken = !p->go;
    pthread_mutex_unlock(&p->lock);
    SIM_ASSERT(taken, "%s: the parked worker never went on", what);
    vmbusd_eventfd_test_hook = NULL;
}

static void test_vmm_reads_our_eventfds(void **state)
{
    struct fx *f = *state;
    struct sim_vm *vm = sim_up(f->d, "hostile-thief", VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "hostile VM up");
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "hostile VM open");
    sim_vu_alive(vm, 50); /* pick up every EVENTFD_ADD */
    int evfd = -1;
    struct sim_offer *of = sim_find_offer(vm, ch->relid);
    for (int i = 0; i < vm->nevfd && of; i++)
        if (vm->evfd[i].conn_id == of->connection_id)
            evfd = vm->evfd[i].fd;
    SIM_ASSERT(evfd >= 0, "no eventfd for the channel's connection id");
    fx_good_start(f);

    struct loop_parker p = {.lock = PTHREAD_MUTEX_INITIALIZER,
                            .cond = PTHREAD_COND_INITIALIZER};
    SIM_ASSERT(pipe2(p.pipe_fd, O_CLOEXEC | O_NONBLOCK) == 0, "pipe");
    struct event_base *base = ((struct vmbusd *)simd_vmbusd(f->d))->base;
    p.pipe_ev = event_new(base, p.pipe_fd[0], EV_READ | EV_PERSIST, park_cb, &p);
    SIM_ASSERT(p.pipe_ev && event_add(p.pipe_ev, NULL) == 0, "pipe event");

    /* vmbusd's guest-signal eventfd, then the VMM's resample fd: both put
     * in blocking mode (the flag is shared with vmbusd's copies). */
    static const char *const what[2] = {"guest-signal eventfd", "resample fd"};
    int fds[2] = {evfd, vm->vp[0].resamplefd};
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        SIM_ASSERT(fl >= 0 && fcntl(fds[i], F_SETFL, fl & ~O_NONBLOCK) == 0, "F_SETFL");
        if (i == 0)
            steal_before_worker_read(&p, fds[i], of->connection_id, what[i]);
        else
            steal_after_event(f, &p, fds[i], what[i]);
        char after[96];
        snprintf(after, sizeof(after), "the VMM emptied vmbusd's %s under it", what[i]);
        fx_good_check(f, after);
        print_message("  %-60s other VM fine\n", after);
    }
    event_free(p.pipe_ev);
    close(p.pipe_fd[0]);
    close(p.pipe_fd[1]);
    sim_vm_free(vm);
    wait_partitions(f, 1, "thief");
    good_vm_works(f, "thief teardown");
}

/* ---- fds whose close would block ---- */

/* A TCP socket whose close, once it is the last reference, waits up to
 * 60 s for a peer that never reads (SO_LINGER, full send buffer). */
struct lingerer {
    int listener, sock;
};

static void lingerer_new(struct lingerer *l)
{
    l->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    SIM_ASSERT(l->listener >= 0 && bind(l->listener, (struct sockaddr *)&a, sizeof(a)) == 0 &&
                   listen(l->listener, 4) == 0 &&
                   getsockname(l->listener, (struct sockaddr *)&a, &al) == 0,
               "listener");
    l->sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    SIM_ASSERT(l->sock >= 0, "socket");
    int r = connect(l->sock, (struct sockaddr *)&a, sizeof(a));
    SIM_ASSERT(r == 0 || errno == EINPROGRESS, "connect");
    for (int i = 0; i < 100; i++) {
        struct pollfd pf = {.fd = l->sock, .events = POLLOUT};
        if (poll(&pf, 1, 10) == 1)
            break;
    }
    static char junk[65536];
    while (write(l->sock, junk, sizeof(junk)) > 0)
        ; /* never accepted, never read: this stays queued */
    struct linger lg = {.l_onoff = 1, .l_linger = 60};
    SIM_ASSERT(setsockopt(l->sock, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0, "linger");
}

/* Closing the listener resets the connection: a close still lingering on
 * it in vmbusd returns. */
static void lingerer_free(struct lingerer *l) { close(l->listener); }

enum close_case { EXTRA_FD, TOO_MANY_FDS, QUEUED_AT_TEARDOWN };

static void blocking_close_case(struct fx *f, struct loop_parker *p, enum close_case k,
                                const char *what)
{
    char name[64];
    snprintf(name, sizeof(name), "hostile-close-%d", (int)k);
    struct sim_vm_opts o = {.name = name, .no_setup = true, .mem_size = 8u << 20};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "connect");
    if (k != QUEUED_AT_TEARDOWN) /* that one stays before HELLO: torn down on the loop */
        SIM_ASSERT(sim_vmm_hello(vm) == 0, "HELLO");
    struct lingerer l;
    lingerer_new(&l);
    /* vmbusd's loop is parked while the VMM sends and drops its own copy,
     * so vmbusd ends up with the last reference. */
    struct event_base *base = ((struct vmbusd *)simd_vmbusd(f->d))->base;
    struct timeval now = {0, 0};
    int before = p->parked;
    SIM_ASSERT(event_base_once(base, -1, EV_TIMEOUT, park_cb, p, &now) == 0, "park");
    SIM_ASSERT(wait_parked(p, before + 1), "%s: the loop did not park", what);
    struct vu_signal_event se = {.vp_index = 0, .connection_id = 0x999};
    int fds[5] = {vm->vp[0].irqfd, vm->vp[0].irqfd, vm->vp[0].irqfd, vm->vp[0].irqfd, l.sock};
    switch (k) {
    case EXTRA_FD: /* SIGNAL_EVENT takes no fd: refused, its fd closed */
        SIM_ASSERT(sim_vu_send(vm, VU_MSG_SIGNAL_EVENT, &se, sizeof(se), &l.sock, 1) > 0, "send");
        break;
    case TOO_MANY_FDS: /* more than vmbusd's VU_MAX_FDS */
        SIM_ASSERT(sim_vu_send(vm, VU_MSG_SIGNAL_EVENT, &se, sizeof(se), fds, 5) > 0, "send");
        break;
    case QUEUED_AT_TEARDOWN: { /* a bad message, and one more queued behind it */
        struct vu_hdr h = {.type = VU_MSG_SIGNAL_EVENT, .size = 0, .flags = 1};
        SIM_ASSERT(sim_vu_send_raw(vm, &h, sizeof(h), NULL, 0) == 0, "send");
        SIM_ASSERT(sim_vu_send(vm, VU_MSG_SIGNAL_EVENT, &se, sizeof(se), &l.sock, 1) > 0, "send");
        break;
    }
    }
    close(l.sock);
    release(p);
    sim_vu_alive(vm, 500);
    print_message("  %-56s %s\n", what, vm->error[0] ? vm->error : "(no ERROR)");
    SIM_ASSERT(vm->error[0], "%s: no ERROR", what);
    fx_good_check(f, what);
    good_vm_works(f, what);
    sim_vm_free(vm);
    lingerer_free(&l);
}

static void test_fds_whose_close_blocks(void **state)
{
    struct fx *f = *state;
    struct loop_parker p = {.lock = PTHREAD_MUTEX_INITIALIZER,
                            .cond = PTHREAD_COND_INITIALIZER};
    fx_good_start(f);
    blocking_close_case(f, &p, EXTRA_FD, "lingering TCP socket on a message that takes none");
    blocking_close_case(f, &p, TOO_MANY_FDS, "lingering TCP socket as a 5th fd");
    blocking_close_case(f, &p, QUEUED_AT_TEARDOWN,
                        "lingering TCP socket queued when the connection ends");
    wait_partitions(f, 1, "blocking closes");
}

/* ---- irqfds written by the workers themselves ---- */

/* One worker in the pool: if the hostile VM's irqfd held it, the good VM
 * would get no echo at all. */
static int fx_setup_one_worker(void **state)
{
    setenv("SIM_WORKERS", "1", 1);
    int r = fx_setup(state);
    unsetenv("SIM_WORKERS");
    return r;
}

/* A VMM whose irqfds are blocking (not made non-blocking by it): every
 * interrupt goes through the SINT thread, and none is lost. */
static void test_irqfd_blocking_mode(void **state)
{
    struct fx *f = *state;
    struct sim_vm_opts o = {.name = "blocking-irqfds", .no_setup = true};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "connect");
    for (uint32_t i = 0; i < vm->vcpus; i++) {
        close(vm->vp[i].irqfd);
        vm->vp[i].irqfd = eventfd(0, EFD_CLOEXEC); /* blocking, as the VMM may */
        SIM_ASSERT(vm->vp[i].irqfd >= 0, "eventfd");
    }
    SIM_ASSERT(sim_vmm_setup(vm) == 0, "setup");
    vm->expect_offers = ECHO_CHANNELS;
    SIM_ASSERT(sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) >= 0, "contact and offers");
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open");
    for (int i = 0; i < 50; i++)
        SIM_ASSERT(sim_echo_roundtrip(ch, 64, (uint64_t)i + 1, i & 1) == 0, "echo %d", i);
    sim_vm_free(vm);
    wait_partitions(f, 0, "blocking-mode irqfds");
}

/* The VMM gave a non-blocking irqfd (so workers write it themselves), then
 * switches it to blocking and fills it just as a worker is about to write:
 * vmbusd saw O_NONBLOCK (sint_direct_test_any_mode stands in for that
 * race).  The worker's write is cut, the only worker serves another VM,
 * and the interrupt is raised by the SINT thread as soon as the VMM empties
 * the counter. */
static void test_irqfd_blocked_under_a_worker(void **state)
{
    struct fx *f = *state;
    const char *name = "hostile-irq-worker";
    const char *what = "irqfd switched to blocking under a worker's write";
    struct sim_vm *vm = sim_up(f->d, name, VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "up");
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "open");
    SIM_ASSERT(sim_echo_roundtrip(ch, 64, 1, false) == 0, "echo before");

    /* Filled while still non-blocking (a write that finds the counter
     * non-zero fails instead of hanging the test), then switched. */
    int irqfd = vm->vp[ch->target_vp].irqfd;
    uint64_t v, max = EVENTFD_MAX;
    int tries = 0;
    while (write(irqfd, &max, sizeof(max)) != sizeof(max) && tries++ < 100)
        SIM_ASSERT(errno == EAGAIN && read(irqfd, &v, sizeof(v)) == sizeof(v), "fill");
    SIM_ASSERT(tries < 100, "fill");
    SIM_ASSERT(fcntl(irqfd, F_SETFL, 0) == 0, "F_SETFL");
    sim_log_clear();
    atomic_store(&sint_direct_test_any_mode, true);
    uint8_t payload[64] = {0x5a};
    SIM_ASSERT(sim_chan_send(ch, VM_PKT_DATA_INBAND, 0, 77, payload, sizeof(payload)) == 0,
               "send");
    SIM_ASSERT(sim_log_wait(10000, LOG_WARN, name, "it blocked", NULL),
               "%s: no sign that the worker's write was cut", what);
    atomic_store(&sint_direct_test_any_mode, false);
    good_vm_works(f, what);

    /* The VMM takes the counter: the interrupt the worker could not raise
     * must come now (from the SINT thread). */
    SIM_ASSERT(read(irqfd, &v, sizeof(v)) == sizeof(v) && v == EVENTFD_MAX, "drain");
    struct pollfd p = {.fd = irqfd, .events = POLLIN};
    SIM_ASSERT(poll(&p, 1, 10000) == 1, "%s: the guest never got the interrupt", what);
    SIM_ASSERT(fcntl(irqfd, F_SETFL, O_NONBLOCK) == 0, "F_SETFL");
    struct vmpacket_descriptor d;
    uint8_t buf[128];
    uint32_t len = 0;
    SIM_ASSERT(sim_chan_recv(ch, &d, buf, sizeof(buf), &len, 10000) == 1, "%s: no echo", what);
    SIM_ASSERT(d.trans_id == 77 && len == sizeof(payload), "%s: echo %llu of %u bytes", what,
               (unsigned long long)d.trans_id, len);
    sim_vm_free(vm);
    wait_partitions(f, 0, what);
    good_vm_works(f, "hostile teardown");
    print_message("  %-56s worker free, interrupt delivered\n", what);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_not_eventfds, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_irqfd_preloaded, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_irqfd_switched_to_blocking, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_vmm_reads_our_eventfds, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fds_whose_close_blocks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_irqfd_blocking_mode, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_irqfd_blocked_under_a_worker, fx_setup_one_worker,
                                        fx_teardown),
    };
    SIM_RUN("sim_hostile_vmm", tests);
}
