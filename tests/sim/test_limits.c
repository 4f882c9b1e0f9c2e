/* SPDX-License-Identifier: MIT */
/*
 * File-descriptor exhaustion against a vmbusd process of its own (the
 * executable in $VMBUSD) with a small RLIMIT_NOFILE: a flood of VMM
 * connections that each hand over fds, and accept() failing with EMFILE.
 * vmbusd must stay idle (no accept loop spinning on the pending connection,
 * no flood of log lines), refuse what does not fit with an ERROR, and let a
 * well-behaved VM connect and work afterwards.
 *
 * The CPU check is the one measurement here: vmbusd's CPU time over one
 * second must stay under 30 % of one CPU.  A spinning accept loop takes
 * ~100 %; an idle daemon a few ms.  The bound is generous on purpose, so a
 * loaded machine cannot make it fail.
 */
#include "sim_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "common/fdpass.h"

#define NOFILE 1024       /* vmbusd's RLIMIT_NOFILE, soft and hard */
#define FLOOD_CONNS 160   /* connections the attacker establishes: the first */
#define FLOOD_FD_CONNS 80 /* ones hand over fds, the others only connect */
#define FLOOD_VCPUS 8     /* per connection: 1 region + 8 x 2 SINT fds */

static const char *vmbusd_exe;

static const char conf[] = "[vm default]\n"
                           "vsp = echo\n"
                           "[vsp echo]\n"
                           "channels = " "2" "\n";

/* CPU time (user + system) of process pid, in seconds. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* fields after "(comm)": state is field 3, utime 14, stime 15 */
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                     &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Share of one CPU vmbusd used over the next second. */
static double cpu_share(pid_t pid)
{
    struct timespec a, b;
    double c0 = cpu_seconds(pid);
    clock_gettime(CLOCK_MONOTONIC, &a);
    usleep(1000 * 1000);
    double c1 = cpu_seconds(pid);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double wall = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    SIM_ASSERT(c0 >= 0 && c1 >= 0, "cannot read /proc/%d/stat", (int)pid);
    return (c1 - c0) / wall;
}

/* Most warnings vmbusd's connection log limit lets through in the time
 * since start_ms: a burst of 5, then one a second (daemon.c), plus slack
 * for the lines that report how many were suppressed. */
static int log_bound(uint64_t start_ms)
{
    return 5 + (int)((sim_now_ms() - start_ms) / 1000) + 3;
}

/* Lines of the spawned vmbusd's log containing needle. */
static int log_lines(struct sim_daemon *d, const char *needle)
{
    FILE *f = fopen(simd_log_path(d), "r");
    if (!f)
        return -1;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f))
        if (strstr(line, needle))
            n++;
    fclose(f);
    return n;
}

static void log_dump(struct sim_daemon *d)
{
    FILE *f = fopen(simd_log_path(d), "r");
    if (!f)
        return;
    char line[1024];
    int n = 0;
    fprintf(stderr, "---- vmbusd log (first 60 lines) ----\n");
    while (fgets(line, sizeof(line), f) && n++ < 60)
        fputs(line, stderr);
    fclose(f);
}

static int fds_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *dir = opendir(path);
    if (!dir)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(dir)))
        if (e->d_name[0] != '.')
            n++;
    closedir(dir);
    return n;
}

static int send_vu(int s, uint32_t type, const void *body, uint32_t len, const int *fds, int nfds)
{
    uint8_t buf[VU_MAX_MSG_SIZE];
    struct vu_hdr h = {.type = type, .size = len, .seq = 1};
    memcpy(buf, &h, sizeof(h));
    if (len) /* body may be NULL then, which memcpy does not allow */
        memcpy(buf + sizeof(h), body, len);
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof(h) + len};
    return (int)fdpass_send(s, &iov, 1, fds, nfds, MSG_DONTWAIT);
}

/* One attacking VMM: connect (non-blocking; -1 while vmbusd's backlog is
 * full), then, if with_fds, HELLO, a memory region and a SINT route per
 * vCPU, each fd a new one in vmbusd.  Connections that only connect take
 * vmbusd's last fds one by one and never give them back. */
static int attack_conn(struct sim_daemon *d, int i, bool with_fds, int memfd, int e1, int e2)
{
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    SIM_ASSERT(s >= 0, "socket: %s", strerror(errno));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", simd_socket_path(d));
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(s);
        return -1;
    }
    if (!with_fds)
        return s;
    struct vu_hello h = {.major = VU_PROTOCOL_MAJOR, .vcpu_count = FLOOD_VCPUS};
    snprintf(h.vm_name, sizeof(h.vm_name), "flood-%d", i);
    send_vu(s, VU_MSG_HELLO, &h, sizeof(h), NULL, 0);
    struct vu_mem_region mr = {.guest_phys_addr = 0, .size = 1u << 20};
    send_vu(s, VU_MSG_MEM_REGION, &mr, sizeof(mr), &memfd, 1);
    for (uint32_t v = 0; v < FLOOD_VCPUS; v++) {
        struct vu_sint_route r = {.vp_index = v, .sint = VMBUS_MESSAGE_SINT};
        int fds[2] = {e1, e2};
        send_vu(s, VU_MSG_SINT_ROUTE, &r, sizeof(r), fds, 2);
    }
    return s;
}

/* The ERROR vmbusd sent on s (code), 0 if none arrived within 2 s. */
static uint32_t error_code_on(int s)
{
    uint8_t buf[VU_MAX_MSG_SIZE];
    uint64_t end = sim_now_ms() + 2000;
    while (sim_now_ms() < end) {
        ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0)
            return 0;
        if (n < 0) {
            usleep(10000);
            continue;
        }
        struct vu_hdr h;
        memcpy(&h, buf, sizeof(h));
        if (h.type == VU_MSG_ERROR && (size_t)n >= sizeof(h) + sizeof(uint32_t)) {
            uint32_t code;
            memcpy(&code, buf + sizeof(h), sizeof(code));
            return code;
        }
    }
    return 0;
}

/* A well-behaved VM: connect, contact, open an echo channel, round trip. */
static void good_vm_works(struct sim_daemon *d, const char *name)
{
    struct sim_vm *vm = NULL;
    /* the attackers' connections may still be closing: the limit frees up */
    for (int i = 0; i < 100 && !vm; i++) {
        vm = sim_up(d, name, VMBUS_VERSION_WIN10_V5_3);
        if (!vm)
            usleep(20000);
    }
    if (!vm)
        log_dump(d);
    SIM_ASSERT(vm != NULL, "well-behaved VM %s cannot connect", name);
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "%s: echo channel", name);
    SIM_ASSERT(sim_echo_roundtrip(ch, 100, 1, true) == 0, "%s: echo round trip", name);
    sim_vm_free(vm);
}

static int sealed_memfd(void)
{
    int fd = memfd_create("flood", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    SIM_ASSERT(fd >= 0 && ftruncate(fd, 1 << 20) == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) == 0,
               "memfd");
    return fd;
}

static int setup(void **state)
{
    if (!vmbusd_exe)
        return -1;
    struct sim_daemon *d = simd_spawn(vmbusd_exe, conf, NOFILE);
    if (!d)
        return -1;
    sim_expect_offers_default = 2;
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    simd_stop(*state);
    return 0;
}

/* Many VMM connections, each handing over fds: more than RLIMIT_NOFILE
 * holds.  vmbusd takes as many as fit (and says so), refuses the rest with
 * ERROR ECONNREFUSED, stays idle, and serves a good VM afterwards. */
static void test_connection_flood(void **state)
{
    struct sim_daemon *d = *state;
    pid_t pid = simd_pid(d);
    int memfd = sealed_memfd();
    int e1 = eventfd(0, EFD_CLOEXEC), e2 = eventfd(0, EFD_CLOEXEC);
    int socks[FLOOD_CONNS];
    int n = 0;
    uint64_t start = sim_now_ms(), end = start + 5000;
    while (n < FLOOD_CONNS && sim_now_ms() < end) {
        int s = attack_conn(d, n, n < FLOOD_FD_CONNS, memfd, e1, e2);
        if (s >= 0)
            socks[n++] = s;
        else
            usleep(1000); /* backlog full: vmbusd has not accepted yet */
    }
    print_message("  %d attacking connections established (%d of them with %d fds each)\n", n,
                  FLOOD_FD_CONNS, 2 + 2 * FLOOD_VCPUS);
    usleep(300 * 1000); /* let vmbusd take what it takes */
    double share = cpu_share(pid);
    int accept_lines = log_lines(d, "accept");
    int refused = log_lines(d, "refused");
    int nfds = fds_of(pid);
    print_message("  vmbusd: %.1f %% CPU over 1 s, %d fds, %d 'accept' and %d 'refused' log "
                  "lines\n",
                  share * 100, nfds, accept_lines, refused);
    int bound = log_bound(start);
    if (share >= 0.3 || accept_lines > bound)
        log_dump(d);
    SIM_ASSERT(kill(pid, 0) == 0, "vmbusd died");
    SIM_ASSERT(share < 0.3, "vmbusd busy (%.0f %% of a CPU) under a connection flood",
               share * 100);
    SIM_ASSERT(accept_lines <= bound, "%d log lines about accept", accept_lines);
    SIM_ASSERT(refused >= 1 && refused <= bound, "%d log lines about refused connections (at "
               "most %d expected)", refused, bound);
    SIM_ASSERT(nfds > 0 && nfds < NOFILE, "vmbusd holds %d fds (limit %d)", nfds, NOFILE);
    /* the last connection was refused, and told why */
    SIM_ASSERT(n == FLOOD_CONNS, "only %d connections established", n);
    uint32_t code = error_code_on(socks[n - 1]);
    SIM_ASSERT(code == ECONNREFUSED, "refused connection got ERROR code %u, expected %d", code,
               ECONNREFUSED);
    for (int i = 0; i < n; i++)
        close(socks[i]);
    close(memfd);
    close(e1);
    close(e2);
    good_vm_works(d, "after-flood");
    SIM_ASSERT(kill(pid, 0) == 0, "vmbusd died");
}

/* vmbusd out of fds: accept() fails with EMFILE while connections wait in
 * the backlog.  It must not spin on them, must log it a few times only,
 * and must take them once fds are free again. */
static void test_accept_emfile(void **state)
{
    struct sim_daemon *d = *state;
    pid_t pid = simd_pid(d);
    struct sim_vm *good = sim_up(d, "good", VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(good != NULL, "good VM up");
    struct sim_chan *ch = sim_open_echo(good, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "good VM channel");

    /* no fd left: the soft limit is what vmbusd has open now */
    int open_now = fds_of(pid);
    struct rlimit tight = {.rlim_cur = (rlim_t)open_now, .rlim_max = NOFILE};
    uint64_t start = sim_now_ms();
    SIM_ASSERT(prlimit(pid, RLIMIT_NOFILE, &tight, NULL) == 0, "prlimit: %s", strerror(errno));
    int waiting[4];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", simd_socket_path(d));
    for (int i = 0; i < 4; i++) {
        waiting[i] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        SIM_ASSERT(waiting[i] >= 0 &&
                       connect(waiting[i], (struct sockaddr *)&sa, sizeof(sa)) == 0,
                   "connect %d: %s", i, strerror(errno));
    }
    usleep(300 * 1000);
    double share = cpu_share(pid);
    int accept_lines = log_lines(d, "accept on");
    print_message("  vmbusd at its fd limit (%d): %.1f %% CPU over 1 s, %d 'accept on' lines\n",
                  open_now, share * 100, accept_lines);
    SIM_ASSERT(kill(pid, 0) == 0, "vmbusd died");
    SIM_ASSERT(share < 0.3, "vmbusd spins (%.0f %% of a CPU) when accept fails with EMFILE",
               share * 100);
    SIM_ASSERT(accept_lines >= 1 && accept_lines <= log_bound(start),
               "%d 'accept on' log lines (at most %d expected)", accept_lines, log_bound(start));
    /* the running VM is not affected */
    SIM_ASSERT(sim_echo_roundtrip(ch, 64, 2, true) == 0, "good VM broken at the fd limit");

    /* fds again: the waiting connections are served */
    struct rlimit back = {.rlim_cur = NOFILE, .rlim_max = NOFILE};
    SIM_ASSERT(prlimit(pid, RLIMIT_NOFILE, &back, NULL) == 0, "prlimit: %s", strerror(errno));
    struct vu_hello h = {.major = VU_PROTOCOL_MAJOR, .vcpu_count = 1};
    snprintf(h.vm_name, sizeof(h.vm_name), "was-waiting");
    SIM_ASSERT(send_vu(waiting[0], VU_MSG_HELLO, &h, sizeof(h), NULL, 0) > 0, "HELLO");
    bool replied = false;
    uint64_t end = sim_now_ms() + 5000;
    while (!replied && sim_now_ms() < end) {
        uint8_t buf[VU_MAX_MSG_SIZE];
        ssize_t n = recv(waiting[0], buf, sizeof(buf), MSG_DONTWAIT);
        if (n >= (ssize_t)sizeof(struct vu_hdr))
            replied = ((struct vu_hdr *)buf)->type == VU_MSG_HELLO_REPLY;
        else
            usleep(10000);
    }
    SIM_ASSERT(replied, "a connection that waited through EMFILE got no HELLO_REPLY");
    for (int i = 0; i < 4; i++)
        close(waiting[i]);
    SIM_ASSERT(sim_echo_roundtrip(ch, 64, 3, true) == 0, "good VM broken after the fd limit");
    sim_vm_free(good);
    good_vm_works(d, "after-emfile");
}

/* The next message vmbusd sends on s: its type (*code: an ERROR's code),
 * 0 if none within 5 s or the connection closed. */
static uint32_t next_msg(int s, uint32_t *code)
{
    uint8_t buf[VU_MAX_MSG_SIZE];
    uint64_t end = sim_now_ms() + 5000;
    *code = 0;
    while (sim_now_ms() < end) {
        ssize_t n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == ECONNRESET)) {
            usleep(5000);
            continue;
        }
        if (n < (ssize_t)sizeof(struct vu_hdr))
            return 0;
        struct vu_hdr h;
        memcpy(&h, buf, sizeof(h));
        if (h.type == VU_MSG_ERROR && (size_t)n >= sizeof(h) + sizeof(uint32_t))
            memcpy(code, buf + sizeof(h), sizeof(*code));
        return h.type;
    }
    return 0;
}

/* Two VMs let in while vmbusd had room, then both hand over their fds:
 * the second would pass RLIMIT_NOFILE and is refused (ERROR ENFILE), the
 * first keeps working, and everything comes back when they go (a good VM
 * connects and works). */
static void test_fd_budget(void **state)
{
    (void)state;
    static const char small[] = "[daemon]\n"
                                "max-fds-per-connection = 17\n"
                                "[vm default]\n"
                                "vsp = echo\n"
                                "[vsp echo]\n"
                                "channels = 2\n";
    /* 99 - 64 reserved = 35 fds for connections: 2 sockets + 17 + 16 */
    struct sim_daemon *d = simd_spawn(vmbusd_exe, small, 99);
    SIM_ASSERT(d != NULL, "vmbusd with RLIMIT_NOFILE 99");
    int memfd = sealed_memfd();
    int e1 = eventfd(0, EFD_CLOEXEC), e2 = eventfd(0, EFD_CLOEXEC);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", simd_socket_path(d));
    int s[2];
    uint32_t code;
    for (int i = 0; i < 2; i++) {
        s[i] = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
        SIM_ASSERT(s[i] >= 0 && connect(s[i], (struct sockaddr *)&sa, sizeof(sa)) == 0,
                   "connect %d", i);
        struct vu_hello h = {.major = VU_PROTOCOL_MAJOR, .vcpu_count = FLOOD_VCPUS};
        snprintf(h.vm_name, sizeof(h.vm_name), "budget-%d", i);
        send_vu(s[i], VU_MSG_HELLO, &h, sizeof(h), NULL, 0);
        SIM_ASSERT(next_msg(s[i], &code) == VU_MSG_HELLO_REPLY, "VM %d not let in (%u)", i, code);
    }
    for (int i = 0; i < 2; i++) {
        struct vu_mem_region mr = {.guest_phys_addr = 0, .size = 1u << 20};
        send_vu(s[i], VU_MSG_MEM_REGION, &mr, sizeof(mr), &memfd, 1);
        for (uint32_t v = 0; v < FLOOD_VCPUS; v++) {
            struct vu_sint_route r = {.vp_index = v, .sint = VMBUS_MESSAGE_SINT};
            int fds[2] = {e1, e2};
            send_vu(s[i], VU_MSG_SINT_ROUTE, &r, sizeof(r), fds, 2);
        }
        send_vu(s[i], VU_MSG_RESET, NULL, 0, NULL, 0); /* answered once all above is handled */
        uint32_t t = next_msg(s[i], &code);
        print_message("  VM %d, %d fds handed over: %s %u\n", i, 1 + 2 * FLOOD_VCPUS,
                      t == VU_MSG_ERROR ? "ERROR" : t == VU_MSG_RESET_DONE ? "RESET_DONE" : "?",
                      code);
        if (i == 0)
            SIM_ASSERT(t == VU_MSG_RESET_DONE, "first VM: message %u (ERROR code %u)", t, code);
        else
            SIM_ASSERT(t == VU_MSG_ERROR && code == ENFILE,
                       "second VM: message %u code %u, expected ERROR ENFILE", t, code);
    }
    send_vu(s[0], VU_MSG_RESET, NULL, 0, NULL, 0);
    SIM_ASSERT(next_msg(s[0], &code) == VU_MSG_RESET_DONE, "first VM broken (%u)", code);
    SIM_ASSERT(kill(simd_pid(d), 0) == 0, "vmbusd died");
    for (int i = 0; i < 2; i++)
        close(s[i]);
    close(memfd);
    close(e1);
    close(e2);
    good_vm_works(d, "after-budget");
    simd_stop(d);
}

int main(void)
{
    vmbusd_exe = getenv("VMBUSD");
    if (!vmbusd_exe || access(vmbusd_exe, X_OK) != 0) {
        fprintf(stderr, "SKIP: set VMBUSD to the vmbusd executable (meson does)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_connection_flood, setup, teardown),
        cmocka_unit_test_setup_teardown(test_accept_emfile, setup, teardown),
        cmocka_unit_test(test_fd_budget),
    };
    SIM_RUN("sim_limits", tests);
}
