// SPDX-License-Identifier: MIT
/*
 * netxfer: one TCP transfer of a reproducible byte stream, for the network
 * e2e test (tests/e2e/net-l1 and the guest's tests/e2e/guest/net.sh).  It is
 * linked statically so that the same binary runs in L1 and in the L2 guest's
 * busybox initramfs.
 *
 *   netxfer send|recv (-l PORT [-a S] | HOST PORT [-w S])
 *                     [-n BYTES] [-s SEED] [-t S]
 *
 * send writes BYTES bytes of the stream SEED (a 64-bit xorshift sequence)
 * and closes; recv reads until the peer closes.  Both hash what passed
 * through the socket and print one line
 *
 *   netxfer: send|recv bytes=N hash=HEX mss=M seconds=S mbit=R peer=ADDR
 *
 * so that the two ends can be compared.  recv with -s also compares every
 * byte with the stream and fails at the first difference (its offset is
 * printed); recv with -n fails when the byte count differs.
 * -l PORT listens on [::]:PORT (IPv4 too) and takes one connection within
 * -a seconds (default: -t); HOST PORT connects, retrying for -w seconds
 * (default 0) while the peer is not there yet.  -t: give up when nothing
 * moves for that many seconds (default 60).  Exit status 0 on success, 1
 * on any failure.
 */
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_BYTES (256 * 1024)

struct stream {
    uint64_t state; /* generator: the next word of the stream */
    uint64_t hash;
    uint64_t bytes;
    uint8_t part[8]; /* a word not complete yet (recv) */
    unsigned nparts;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t next_word(struct stream *st)
{
    uint64_t x = st->state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    st->state = x;
    return x * 0x2545f4914f6cdd1dULL;
}

static void hash_word(struct stream *st, uint64_t w)
{
    uint64_t h = (st->hash ^ w) * 0x9e3779b97f4a7c15ULL;
    st->hash = (h << 29) | (h >> 35);
}

static uint64_t final_hash(const struct stream *st)
{
    uint64_t w = 0, h;
    memcpy(&w, st->part, st->nparts);
    h = st->hash ^ w ^ st->bytes;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static void stream_init(struct stream *st, uint64_t seed)
{
    memset(st, 0, sizeof(*st));
    /* xorshift needs a state other than 0 */
    st->state = seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
    st->hash = 0xcbf29ce484222325ULL;
}

/* Feeds received bytes into the hash; with verify, compares them with the
 * stream and returns the offset of the first difference, or -1. */
static int64_t stream_take(struct stream *st, const uint8_t *p, size_t n, bool verify)
{
    while (n > 0) {
        if (st->nparts == 0 && n >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (verify && w != next_word(st)) {
                uint64_t off = st->bytes;
                return (int64_t)off;
            }
            hash_word(st, w);
            st->bytes += 8;
            p += 8;
            n -= 8;
            continue;
        }
        st->part[st->nparts++] = *p++;
        n--;
        st->bytes++;
        if (st->nparts == 8) {
            uint64_t w;
            memcpy(&w, st->part, 8);
            if (verify && w != next_word(st))
                return (int64_t)(st->bytes - 8);
            hash_word(st, w);
            st->nparts = 0;
        }
    }
    return -1;
}

/* The stream's bytes left in a partial last word must also match. */
static bool stream_tail_ok(struct stream *st)
{
    uint64_t w;
    if (st->nparts == 0)
        return true;
    w = next_word(st);
    return memcmp(&w, st->part, st->nparts) == 0;
}

static int wait_fd(int fd, short ev, int timeout_s)
{
    struct pollfd pfd = { .fd = fd, .events = ev };
    int r;
    do {
        r = poll(&pfd, 1, timeout_s * 1000);
    } while (r < 0 && errno == EINTR);
    return r;
}

static int listen_one(const char *port, int timeout_s, char *peer, size_t peerlen)
{
    struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_ANY_INIT };
    struct sockaddr_storage pa;
    socklen_t pl = sizeof(pa);
    int one = 1, zero = 0, s, c;

    a.sin6_port = htons((uint16_t)atoi(port));
    s = socket(AF_INET6, SOCK_STREAM, 0);
    if (s < 0) {
        perror("netxfer: socket");
        return -1;
    }
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 1) < 0) {
        fprintf(stderr, "netxfer: listen on port %s: %s\n", port, strerror(errno));
        close(s);
        return -1;
    }
    /* The listener exists from here: scripts wait for this line. */
    printf("netxfer: listening on port %s\n", port);
    fflush(stdout);
    if (wait_fd(s, POLLIN, timeout_s) <= 0) {
        fprintf(stderr, "netxfer: no connection on port %s within %d s\n", port, timeout_s);
        close(s);
        return -1;
    }
    c = accept(s, (struct sockaddr *)&pa, &pl);
    close(s);
    if (c < 0) {
        perror("netxfer: accept");
        return -1;
    }
    if (!inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&pa)->sin6_addr, peer, (socklen_t)peerlen))
        snprintf(peer, peerlen, "?");
    return c;
}

/* A numeric IPv4 or IPv6 address (no name lookup: the binary is static). */
static socklen_t parse_addr(const char *host, const char *port, struct sockaddr_storage *ss)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    uint16_t p = htons((uint16_t)atoi(port));

    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = p;
        return sizeof(*a4);
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = p;
        return sizeof(*a6);
    }
    return 0;
}

static int connect_to(const char *host, const char *port, int retry_s, char *peer, size_t peerlen)
{
    struct sockaddr_storage ss;
    socklen_t sl = parse_addr(host, port, &ss);
    double end = now_s() + retry_s;

    if (!sl) {
        fprintf(stderr, "netxfer: '%s' is not a numeric IPv4 or IPv6 address\n", host);
        return -1;
    }
    snprintf(peer, peerlen, "%s", host);
    for (;;) {
        int r, s = socket(ss.ss_family, SOCK_STREAM, 0);
        if (s < 0) {
            perror("netxfer: socket");
            return -1;
        }
        if (connect(s, (struct sockaddr *)&ss, sl) == 0)
            return s;
        r = errno;
        close(s);
        if (now_s() >= end) {
            fprintf(stderr, "netxfer: connect to %s port %s: %s\n", host, port, strerror(r));
            return -1;
        }
        usleep(200 * 1000);
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: netxfer send|recv (-l PORT [-a ACCEPT_S] | HOST PORT [-w RETRY_S]) "
                    "[-n BYTES] [-s SEED] [-t IDLE_S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *lport = NULL, *host = NULL, *port = NULL;
    uint64_t want = 0, seed = 1;
    bool have_n = false, have_seed = false, sending;
    int retry_s = 0, idle_s = 60, accept_s = -1, fd, opt, rc = 0;
    static uint8_t buf[BUF_BYTES];
    struct stream st;
    char peer[128];
    int mss = 0;
    socklen_t ml = sizeof(mss);
    double t0, dt;

    if (argc < 2)
        usage();
    if (strcmp(argv[1], "send") == 0)
        sending = true;
    else if (strcmp(argv[1], "recv") == 0)
        sending = false;
    else
        usage();
    optind = 2;
    while ((opt = getopt(argc, argv, "l:a:n:s:w:t:")) != -1) {
        switch (opt) {
        case 'l': lport = optarg; break;
        case 'a': accept_s = atoi(optarg); break;
        case 'n': want = strtoull(optarg, NULL, 0); have_n = true; break;
        case 's': seed = strtoull(optarg, NULL, 0); have_seed = true; break;
        case 'w': retry_s = atoi(optarg); break;
        case 't': idle_s = atoi(optarg); break;
        default: usage();
        }
    }
    if (!lport) {
        if (argc - optind != 2)
            usage();
        host = argv[optind];
        port = argv[optind + 1];
    } else if (argc != optind) {
        usage();
    }
    if (sending && !have_n)
        usage();

    setvbuf(stdout, NULL, _IOLBF, 0);
    fd = lport ? listen_one(lport, accept_s >= 0 ? accept_s : idle_s, peer, sizeof(peer))
               : connect_to(host, port, retry_s, peer, sizeof(peer));
    if (fd < 0)
        return 1;
    getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, &ml);
    stream_init(&st, seed);
    t0 = now_s();
    if (sending) {
        /* gen makes the stream; st hashes it as recv will, by the same path */
        struct stream gen;
        uint64_t left = want, sent = 0;
        size_t have = 0, off = 0;
        stream_init(&gen, seed);
        while (left > 0 || off < have) {
            ssize_t w;
            if (off == have) {
                size_t i, n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
                for (i = 0; i < n; i += 8) {
                    uint64_t x = next_word(&gen);
                    memcpy(buf + i, &x, n - i < 8 ? n - i : 8);
                }
                stream_take(&st, buf, n, false);
                off = 0;
                have = n;
                left -= n;
            }
            if (wait_fd(fd, POLLOUT, idle_s) <= 0) {
                fprintf(stderr, "netxfer: nothing sent for %d s after %" PRIu64 " bytes\n",
                        idle_s, sent);
                rc = 1;
                break;
            }
            w = write(fd, buf + off, have - off);
            if (w < 0) {
                if (errno == EINTR || errno == EAGAIN)
                    continue;
                fprintf(stderr, "netxfer: write after %" PRIu64 " bytes: %s\n", sent,
                        strerror(errno));
                rc = 1;
                break;
            }
            off += (size_t)w;
            sent += (uint64_t)w;
        }
        /* The peer reads to the end before it closes: wait for that, so that
         * "sent" means "delivered". */
        shutdown(fd, SHUT_WR);
        while (rc == 0) {
            ssize_t r;
            if (wait_fd(fd, POLLIN, idle_s) <= 0) {
                fprintf(stderr, "netxfer: the peer did not close within %d s\n", idle_s);
                rc = 1;
                break;
            }
            r = read(fd, buf, sizeof(buf));
            if (r == 0)
                break;
            if (r < 0 && errno != EINTR) {
                fprintf(stderr, "netxfer: waiting for the peer's close: %s\n", strerror(errno));
                rc = 1;
            }
        }
    } else {
        for (;;) {
            ssize_t r;
            int64_t bad;
            if (wait_fd(fd, POLLIN, idle_s) <= 0) {
                fprintf(stderr, "netxfer: nothing received for %d s after %" PRIu64 " bytes\n",
                        idle_s, st.bytes);
                rc = 1;
                break;
            }
            r = read(fd, buf, sizeof(buf));
            if (r == 0)
                break;
            if (r < 0) {
                if (errno == EINTR || errno == EAGAIN)
                    continue;
                fprintf(stderr, "netxfer: read after %" PRIu64 " bytes: %s\n", st.bytes,
                        strerror(errno));
                rc = 1;
                break;
            }
            bad = stream_take(&st, buf, (size_t)r, have_seed);
            if (bad >= 0) {
                fprintf(stderr, "netxfer: byte %" PRId64 " differs from stream %" PRIu64 "\n", bad,
                        seed);
                rc = 1;
                break;
            }
        }
        if (rc == 0 && have_seed && !stream_tail_ok(&st)) {
            fprintf(stderr, "netxfer: the last %u bytes differ from stream %" PRIu64 "\n",
                    st.nparts, seed);
            rc = 1;
        }
        if (rc == 0 && have_n && st.bytes != want) {
            fprintf(stderr, "netxfer: %" PRIu64 " bytes received, %" PRIu64 " expected\n",
                    st.bytes, want);
            rc = 1;
        }
    }
    dt = now_s() - t0;
    close(fd);
    printf("netxfer: %s bytes=%" PRIu64 " hash=%016" PRIx64 " mss=%d seconds=%.2f mbit=%.0f "
           "peer=%s%s\n",
           sending ? "send" : "recv", st.bytes, final_hash(&st), mss, dt,
           dt > 0 ? st.bytes * 8 / dt / 1e6 : 0.0, peer, rc ? " FAILED" : "");
    return rc;
}
