/* SPDX-License-Identifier: MIT */
/*
 * The control socket (src/vmbusd/control.c) against clients that misbehave:
 *
 *   test_long_request   1 MiB without a newline: cut off at 16 KiB with an
 *                       error line, the connection closed; others still served
 *   test_client_cap     CTL_MAX_CLIENTS idle connections: the next one is
 *                       refused with an error line; once one leaves, a new
 *                       client is served again
 */
#include "sim_test.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmbusd/internal.h"

static int ctl_connect(struct fx *f)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", simd_control_path(f->d));
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Write out (may be cut short by the server closing), read everything the
 * server sends until it closes or the sim deadline; returns bytes read and
 * sets *closed when EOF was seen. */
static size_t exchange(int fd, const char *out, size_t outlen, char *in, size_t incap,
                       bool *closed)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    size_t sent = 0, got = 0;
    *closed = false;
    uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
    while (!*closed && sim_now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN | (sent < outlen ? POLLOUT : 0)};
        if (poll(&p, 1, 50) <= 0)
            continue;
        if (p.revents & POLLIN) {
            ssize_t n = recv(fd, in + got, incap - 1 - got, 0);
            if (n == 0)
                *closed = true;
            else if (n > 0)
                got += (size_t)n;
            else if (errno != EAGAIN && errno != EINTR)
                *closed = true;
        }
        if (sent < outlen && (p.revents & POLLOUT)) {
            ssize_t n = send(fd, out + sent, outlen - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                sent = outlen; /* the server closed: stop writing, keep reading */
        }
        if (!(p.revents & POLLIN) && (p.revents & (POLLHUP | POLLERR)))
            *closed = true;
        if (got >= incap - 1)
            break;
    }
    in[got] = 0;
    return got;
}

/* One request, one answer line (sim deadline). */
static bool ctl_line(int fd, const char *req, char *in, size_t incap)
{
    if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req))
        return false;
    size_t got = 0;
    uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
    while (sim_now_ms() < end && got < incap - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t n = recv(fd, in + got, incap - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (memchr(in, '\n', got))
            break;
    }
    in[got] = 0;
    return memchr(in, '\n', got) != NULL;
}

static void test_long_request(void **state)
{
    struct fx *f = *state;
    int fd = ctl_connect(f);
    SIM_ASSERT(fd >= 0, "connect");
    size_t len = 1u << 20;
    char *big = malloc(len);
    memset(big, 'x', len);
    char in[512];
    bool closed;
    exchange(fd, big, len, in, sizeof(in), &closed);
    free(big);
    close(fd);
    SIM_ASSERT(strstr(in, "request longer than 16384 bytes") != NULL,
               "no error for 1 MiB without a newline: got '%s'", in);
    SIM_ASSERT(closed, "the connection stayed open");
    SIM_ASSERT(sim_log_count(LOG_WARN, "control client", "longer than", NULL) > 0,
               "not logged");

    /* a request of exactly the limit (newline included) is still served */
    fd = ctl_connect(f);
    SIM_ASSERT(fd >= 0, "connect");
    char *edge = malloc(CTL_MAX_REQUEST + 1);
    memset(edge, ' ', CTL_MAX_REQUEST);
    memcpy(edge, "list", 4);
    edge[CTL_MAX_REQUEST - 1] = '\n';
    edge[CTL_MAX_REQUEST] = 0;
    char out[4096];
    bool ok = ctl_line(fd, edge, out, sizeof(out));
    free(edge);
    SIM_ASSERT(ok && strstr(out, "unknown request"), "16384-byte line: '%s'", out);
    SIM_ASSERT(ctl_line(fd, "list\n", out, sizeof(out)) && strncmp(out, "{\"ok\":true", 10) == 0,
               "list on the same connection: '%s'", out);
    close(fd);
}

static void test_client_cap(void **state)
{
    struct fx *f = *state;
    int fds[CTL_MAX_CLIENTS];
    char out[4096];
    for (int i = 0; i < CTL_MAX_CLIENTS; i++) {
        fds[i] = ctl_connect(f);
        SIM_ASSERT(fds[i] >= 0, "connect %d", i);
        /* served: its thread runs */
        SIM_ASSERT(ctl_line(fds[i], "list\n", out, sizeof(out)) &&
                       strncmp(out, "{\"ok\":true", 10) == 0,
                   "client %d: '%s'", i, out);
    }
    /* One more: refused without having to ask (sending first could race
     * with the server's close and fail with EPIPE). */
    int extra = ctl_connect(f);
    SIM_ASSERT(extra >= 0, "connect");
    bool closed;
    exchange(extra, NULL, 0, out, sizeof(out), &closed);
    close(extra);
    SIM_ASSERT(strstr(out, "too many control clients") && closed,
               "client %d not refused: got '%s'%s", CTL_MAX_CLIENTS + 1, out,
               closed ? "" : ", connection left open");
    SIM_ASSERT(sim_log_count(LOG_WARN, "control socket", "refusing more", NULL) == 1,
               "refusal not logged once");

    close(fds[0]);
    /* its thread sees EOF and leaves; then a newcomer is served again */
    bool served = false;
    uint64_t end = sim_now_ms() + (uint64_t)sim_timeout_ms;
    while (!served && sim_now_ms() < end) {
        int fd = ctl_connect(f);
        SIM_ASSERT(fd >= 0, "connect");
        served = ctl_line(fd, "list\n", out, sizeof(out)) && strncmp(out, "{\"ok\":true", 10) == 0;
        close(fd);
        if (!served)
            usleep(10000);
    }
    SIM_ASSERT(served, "no client served after one left: '%s'", out);
    for (int i = 1; i < CTL_MAX_CLIENTS; i++)
        close(fds[i]);
}

/* vmbusd goes away while clients are connected and idle: their threads end
 * before the daemon is freed (ASan would see a use after free otherwise). */
static void test_stop_with_clients(void **state)
{
    struct fx *f = *state;
    int fds[4];
    char out[4096];
    for (int i = 0; i < 4; i++) {
        fds[i] = ctl_connect(f);
        SIM_ASSERT(fds[i] >= 0 && ctl_line(fds[i], "list\n", out, sizeof(out)), "client %d", i);
    }
    simd_stop(f->d);
    f->d = NULL;
    for (int i = 0; i < 4; i++) {
        struct pollfd p = {.fd = fds[i], .events = POLLIN};
        char c;
        bool eof = poll(&p, 1, sim_timeout_ms) == 1 && recv(fds[i], &c, 1, 0) == 0;
        SIM_ASSERT(eof, "client %d still connected after vmbusd_destroy", i);
        close(fds[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_long_request, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_cap, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stop_with_clients, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_control", tests);
}
