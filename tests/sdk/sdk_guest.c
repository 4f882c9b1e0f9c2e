/* SPDX-License-Identifier: MIT */
/*
 * sdk-guest: a simulated guest (tests/sim/simvm.c) that connects to an
 * already running vmbusd process and exercises the echo-upper example
 * plugin through it:
 *
 *   sdk-guest VU_SOCKET VM_NAME PREFIX MAX_PAYLOAD [-- COMMAND [ARGS...]]
 *
 * It brings the VM up (VMBus 5.3), opens the echo-upper channel and checks
 * the answers (upper-casing, prefix, completion vs inband, trans_id,
 * malformed and oversized messages dropped, flow control with a full
 * host->guest ring).
 * Then, while the VM stays connected and its channel open, it runs COMMAND
 * (the vmbusctl checks) and exits with COMMAND's status.  Exit 0 = all good.
 *
 * simvm.c normally runs against an in-process vmbusd (tests/sim/simd.c);
 * here the "daemon" is only the socket path of the external one.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/guid.h"
#include "echo_upper.h" /* examples/echo-upper: the channel protocol */
#include "simvm.h"

/* ---- the parts of tests/sim/simd.c simvm.c may refer to --------------- */

struct sim_daemon {
    const char *socket_path;
};

const char *simd_socket_path(const struct sim_daemon *d) { return d->socket_path; }
struct vmbusd *simd_vmbusd(struct sim_daemon *d) { return NULL; }
struct sim_daemon *simd_start(const struct sim_vm_cfg *vms, int nvms, int echo_channels)
{
    return NULL;
}
void simd_stop(struct sim_daemon *d) {}
void sim_log_clear(void) {}
int sim_log_count(int max_level, const char *n1, const char *n2, const char *n3) { return 0; }
bool sim_log_wait(int timeout_ms, int max_level, const char *n1, const char *n2, const char *n3)
{
    return false;
}
void sim_log_dump(const char *why) {}

/* ---- checks ------------------------------------------------------------ */

static int failures;

#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "sdk-guest: FAIL %s:%d: ", __FILE__, __LINE__);                \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fprintf(stderr, "\n");                                                         \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

static const char *prefix;
static size_t prefix_len;

/* header + text, as the protocol frames it */
static uint8_t *frame(const void *text, uint32_t len, uint32_t reserved, uint32_t hdr_len)
{
    uint8_t *m = malloc(ECHO_UPPER_HDR_SIZE + len + 1);
    struct echo_upper_hdr h = {.len = hdr_len, .reserved = reserved};
    if (!m)
        abort();
    memcpy(m, &h, sizeof(h));
    memcpy(m + ECHO_UPPER_HDR_SIZE, text, len);
    return m;
}

/* Receive one answer and compare it with what echo-upper must send. */
static bool check_answer(struct sim_chan *ch, const uint8_t *text, uint32_t len, uint64_t trans,
                         bool comp, const char *what)
{
    size_t want_len = prefix_len + len;
    size_t cap = ECHO_UPPER_HDR_SIZE + want_len + 64;
    uint8_t *want = malloc(want_len + 1), *got = malloc(cap);
    struct vmpacket_descriptor d;
    struct echo_upper_hdr h;
    uint32_t got_len = 0;
    bool ok = false;
    if (!want || !got)
        abort();
    memcpy(want, prefix, prefix_len);
    for (uint32_t i = 0; i < len; i++)
        want[prefix_len + i] = text[i] >= 'a' && text[i] <= 'z' ? (uint8_t)(text[i] - 32) : text[i];
    int r = sim_chan_recv(ch, &d, got, (uint32_t)cap, &got_len, 5000);
    CHECK(r == 1, "%s: no answer", what);
    if (r != 1)
        goto out;
    memcpy(&h, got, sizeof(h));
    /* got_len is padded to 8 bytes: the header says how much is text */
    bool type_ok = d.type == (comp ? VM_PKT_COMP : VM_PKT_DATA_INBAND);
    bool len_ok = got_len >= ECHO_UPPER_HDR_SIZE + want_len && got_len % 8 == 0 &&
                  got_len < ECHO_UPPER_HDR_SIZE + want_len + 8 && h.len == want_len &&
                  h.reserved == 0;
    bool text_ok = len_ok && memcmp(got + ECHO_UPPER_HDR_SIZE, want, want_len) == 0;
    CHECK(type_ok, "%s: packet type %u", what, d.type);
    CHECK(d.trans_id == trans, "%s: trans_id %llu, sent %llu", what,
          (unsigned long long)d.trans_id, (unsigned long long)trans);
    CHECK(len_ok, "%s: %u bytes, header len %u reserved %u; want len %zu", what, got_len, h.len,
          h.reserved, want_len);
    CHECK(!len_ok || text_ok, "%s: wrong text", what);
    ok = type_ok && d.trans_id == trans && text_ok;
out:
    free(want);
    free(got);
    return ok;
}

static int send_raw(struct sim_chan *ch, uint16_t type, bool comp, uint64_t trans,
                    const void *data, uint32_t len)
{
    return sim_chan_send(ch, type, comp ? VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED : 0, trans,
                         data, len);
}

static void roundtrip(struct sim_chan *ch, const void *text, uint32_t len, uint64_t trans,
                      bool comp, const char *what)
{
    uint8_t *m = frame(text, len, 0, len);
    int r = send_raw(ch, VM_PKT_DATA_INBAND, comp, trans, m, ECHO_UPPER_HDR_SIZE + len);
    free(m);
    CHECK(r == 0, "%s: send: %s", what, strerror(-r));
    if (r == 0)
        check_answer(ch, text, len, trans, comp, what);
}

/* A message echo-upper must drop without answering. */
static void send_bad(struct sim_chan *ch, const void *data, uint32_t len, uint16_t type,
                     uint64_t trans, const char *what)
{
    CHECK(send_raw(ch, type, true, trans, data, len) == 0, "%s: send", what);
}

/* The host is blocked on a full host->guest ring: vmbusd's ring writer
 * stores pending_send_sz in that ring's header when an answer does not fit,
 * and clears it only once a write succeeds (src/xpartition/ring.c). */
static bool host_ring_full(const struct sim_chan *ch)
{
    return __atomic_load_n(&ch->in.hdr->pending_send_sz, __ATOMIC_ACQUIRE) != 0;
}

static int send_flood_packet(struct sim_chan *ch, uint8_t *buf, uint32_t len, uint32_t seq)
{
    for (uint32_t i = 0; i < len; i++)
        buf[i] = (uint8_t)('a' + (seq + i) % 26);
    uint8_t *m = frame(buf, len, 0, len);
    int r = send_raw(ch, VM_PKT_DATA_INBAND, false, 1000 + seq, m, ECHO_UPPER_HDR_SIZE + len);
    free(m);
    return r;
}

/* Many messages without reading: the host->guest ring fills, echo-upper gets
 * -EAGAIN and must hold its answer, then resume on writable.
 * The guest reads nothing until vmbusd shows it is blocked on the full ring
 * (n answers are far more than both rings hold), so echo-upper meets a full
 * ring however the threads are scheduled. */
static void flood(struct sim_chan *ch, uint32_t n, uint32_t len)
{
    uint8_t *buf = malloc(len);
    uint32_t sent = 0, answered = 0;
    uint64_t stuck_since = sim_now_ms();
    if (!buf)
        return;
    while (sent < n && !host_ring_full(ch)) {
        int r = send_flood_packet(ch, buf, len, sent);
        if (r == 0) {
            sent++;
            continue;
        }
        CHECK(r == -EAGAIN, "flood: send: %s", strerror(-r));
        if (r != -EAGAIN || sim_now_ms() > stuck_since + 10000)
            break;
        sim_poll(ch->vm, 1); /* our ring is full: let the host drain it */
    }
    CHECK(host_ring_full(ch), "flood: %u packets sent without reading, host never blocked", sent);
    stuck_since = sim_now_ms();
    while (answered < n) {
        if (sent < n) {
            int r = send_flood_packet(ch, buf, len, sent);
            if (r == 0) {
                sent++;
                stuck_since = sim_now_ms();
                continue;
            }
            CHECK(r == -EAGAIN, "flood: send: %s", strerror(-r));
            if (r != -EAGAIN)
                break;
            if (answered == sent) {
                /* Our ring looked full, but every packet in it has been
                 * answered: the host just has not published its read
                 * index yet.  Wait for room, not for an answer. */
                if (sim_now_ms() > stuck_since + 5000) {
                    CHECK(false, "flood: no room in the guest->host ring for 5 s");
                    break;
                }
                sim_poll(ch->vm, 1);
                continue;
            }
        }
        stuck_since = sim_now_ms();
        /* ring full (or all sent): read the next answer in order */
        for (uint32_t i = 0; i < len; i++)
            buf[i] = (uint8_t)('a' + (answered + i) % 26);
        char what[48];
        snprintf(what, sizeof(what), "flood answer %u", answered);
        if (!check_answer(ch, buf, len, 1000 + answered, false, what))
            break;
        answered++;
    }
    CHECK(answered == n, "flood: %u of %u answered", answered, n);
    free(buf);
}

static int run_while_connected(struct sim_vm *vm, char **argv)
{
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "sdk-guest: %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            perror("waitpid");
            return 1;
        }
        sim_poll(vm, 20); /* keep servicing the guest's interrupts */
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: sdk-guest VU_SOCKET VM_NAME PREFIX MAX_PAYLOAD [-- CMD...]\n");
        return 2;
    }
    struct sim_daemon d = {.socket_path = argv[1]};
    const char *name = argv[2];
    prefix = argv[3];
    prefix_len = strlen(prefix);
    uint32_t max_payload = (uint32_t)strtoul(argv[4], NULL, 10);
    char **cmd = argc > 6 && strcmp(argv[5], "--") == 0 ? argv + 6 : NULL;
    struct hv_guid cls;
    guid_parse(ECHO_UPPER_CLASS, &cls);

    struct sim_vm *vm = sim_vm_create(&d, name);
    if (!vm) {
        fprintf(stderr, "sdk-guest: cannot connect VM %s to %s\n", name, argv[1]);
        return 1;
    }
    int n = sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3);
    if (n < 0) {
        fprintf(stderr, "sdk-guest: VMBus bring-up failed: %s\n", strerror(-n));
        sim_vm_free(vm);
        return 1;
    }
    struct sim_offer *of = NULL;
    for (uint64_t end = sim_now_ms() + 5000; !(of = sim_offer_by_class(vm, &cls, 0)) &&
                                              sim_now_ms() < end;)
        sim_poll(vm, 10);
    if (!of) {
        fprintf(stderr, "sdk-guest: vmbusd offered no echo-upper channel (%d offers)\n", n);
        sim_vm_free(vm);
        return 1;
    }
    int st = 0;
    struct sim_chan *ch = sim_chan_open(vm, of->relid, 4, 4, &st);
    if (!ch) {
        fprintf(stderr, "sdk-guest: opening relid %u failed (status %d)\n", of->relid, st);
        sim_vm_free(vm);
        return 1;
    }
    printf("sdk-guest: %s up, echo-upper channel relid %u open\n", name, of->relid);

    static const char hello[] = "Hello, VMBus 1!";
    roundtrip(ch, hello, sizeof(hello) - 1, 7, true, "hello (completion)");
    roundtrip(ch, hello, sizeof(hello) - 1, 8, false, "hello (inband)");
    roundtrip(ch, "", 0, 9, true, "empty text");
    uint8_t all[256];
    for (int i = 0; i < 256; i++)
        all[i] = (uint8_t)i;
    roundtrip(ch, all, sizeof(all), 10, false, "all byte values");

    /* Five messages echo-upper must drop (4) or ignore (1) without an
     * answer; the answer to the next good one proves nothing came back. */
    uint8_t *big = calloc(1, max_payload + 1);
    if (!big || max_payload + 1 > 8000)
        abort();
    memset(big, 'x', max_payload + 1);
    uint8_t *m = frame(big, max_payload + 1, 0, max_payload + 1);
    send_bad(ch, m, ECHO_UPPER_HDR_SIZE + max_payload + 1, VM_PKT_DATA_INBAND, 11,
             "text longer than max_payload");
    free(m);
    free(big);
    send_bad(ch, "", 0, VM_PKT_DATA_INBAND, 12, "no header");
    m = frame("abcdefgh", 8, 1, 8);
    send_bad(ch, m, 16, VM_PKT_DATA_INBAND, 13, "reserved field set");
    free(m);
    m = frame("abcdefgh", 8, 0, 100);
    send_bad(ch, m, 16, VM_PKT_DATA_INBAND, 14, "length beyond the packet");
    free(m);
    m = frame("abcdefgh", 8, 0, 8);
    send_bad(ch, m, 16, VM_PKT_COMP, 15, "a completion from the guest");
    free(m);
    roundtrip(ch, "after", 5, 16, true, "answer after the bad messages");

    flood(ch, 300, 700);
    CHECK(vm->bad_host_msgs == 0, "%llu malformed host messages",
          (unsigned long long)vm->bad_host_msgs);
    printf("sdk-guest: data path checks done, %d failure(s)\n", failures);
    fflush(stdout);

    int ret = failures ? 1 : 0;
    if (cmd) {
        int r = run_while_connected(vm, cmd);
        if (r != 0) {
            fprintf(stderr, "sdk-guest: '%s' exited with %d\n", cmd[0], r);
            ret = 1;
        }
    }
    CHECK(sim_chan_close(ch) == 0, "close");
    sim_vm_free(vm);
    return ret || failures ? 1 : 0;
}
