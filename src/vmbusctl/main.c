/* SPDX-License-Identifier: MIT */
/*
 * vmbusctl: operator tool for vmbusd.  Talks to the control socket
 * (src/vmbusd/control.c): one request line, one JSON answer line.
 *
 *   list                          -> "list"
 *   heartbeat [VM], status VM     -> "list", then the published status keys
 *   shutdown VM [--reboot] [--force]
 *                                 -> "control VM shutdown shutdown poweroff|reboot [force]"
 *   kvp get|set|delete|list ...   -> "control VM kvp kvp-get|kvp-set|... POOL ..."
 *   disk add|remove|list VM ...   -> "control VM storvsp disk-add|disk-remove|disk-list ..."
 *   nic list                      -> "list", then each VM's netvsp.* status keys
 *   nic link VM up|down, nic status VM
 *                                 -> "control VM netvsp link up|down" / "... status"
 *   control VM VSP COMMAND [ARGS] -> passed through
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/utf8.h"
#include "vmbusd/hv_guids.h"

#ifndef VMBUSD_VERSION
#define VMBUSD_VERSION "unknown"
#endif

#define DEFAULT_SOCKET "/run/vmbusd/control.sock"
/* vmbusd reads a request with fgets() into 1024 bytes: the line and its
 * newline must fit in 1023. */
#define MAX_REQUEST 1022
#define MAX_ANSWER (16u << 20)

struct ctl {
    const char *socket;
    bool json;
    int timeout_s;
};

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: vmbusctl [OPTIONS] COMMAND [ARGS]\n"
            "Inspect and control the VMs served by vmbusd.\n"
            "\n"
            "Commands:\n"
            "  list [--rings]                  connected VMs and their VMBus channels (--rings:\n"
            "                                  each ring's indices, interrupt mask and\n"
            "                                  pending_send_sz, e.g. for a stalled channel)\n"
            "  heartbeat [VM]                  guest heartbeat per VM (exit 1 unless all \"ok\")\n"
            "  status VM                       every status value the VSPs publish for VM\n"
            "  shutdown VM [--reboot] [--force]\n"
            "                                  ask the guest to power off (or reboot)\n"
            "  kvp get VM POOL KEY             read a key from the guest's KVP pool\n"
            "  kvp set VM POOL KEY VALUE       write a key (pool 0 is kept by the host)\n"
            "  kvp delete VM POOL KEY          delete a key\n"
            "  kvp list VM POOL                list a pool's keys and values\n"
            "  disk add VM PATH [lun=N] [controller=N] [readonly]\n"
            "                                  hot-add a disk image to VM's SCSI controller\n"
            "  disk remove VM [controller=N] lun=N   hot-remove a disk\n"
            "  disk list VM                    the VM's disks\n"
            "  nic list                        the synthetic NICs: MAC, link, queues, backend\n"
            "  nic link VM up|down             carrier up or down, as the guest sees it\n"
            "  nic status VM                   the NIC's counters\n"
            "  control VM VSP COMMAND [ARGS]   send any command to one VSP of VM\n"
            "\n"
            "VM is the name the VMM announced (vmbus-vmm --name) or the partition id.\n"
            "POOL is 0-4 or external, guest, auto, auto-external, auto-internal.\n"
            "\n"
            "Options:\n"
            "  -s, --socket PATH   vmbusd's control socket (default " DEFAULT_SOCKET ")\n"
            "  -j, --json          print vmbusd's JSON answer as it is (for scripts)\n"
            "  -t, --timeout SEC   give up waiting for an answer after SEC seconds\n"
            "                      (default 60)\n"
            "  -V, --version       print the version and exit\n"
            "  -h, --help          this text\n"
            "\n"
            "Exit status: 0 on success, 1 on any error.\n");
}

static void err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void err(const char *fmt, ...)
{
    va_list ap;
    fputs("vmbusctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ---- terminal-safe output -------------------------------------------- */

/* Values can come from the guest (KVP): print valid UTF-8 text, but never a
 * control character (C0, DEL, C1) or a broken sequence, which could drive
 * the terminal.  Those become \xNN.  With keep_newlines, '\n' passes. */
static void put_safe(FILE *f, const char *s, bool keep_newlines)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned char c = *p;
        if (c == '\n' && keep_newlines) {
            fputc('\n', f);
            p++;
            continue;
        }
        if (c == '\t') {
            fputc('\t', f);
            p++;
            continue;
        }
        if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\x%02x", c);
            p++;
            continue;
        }
        if (c < 0x80) {
            fputc(c, f);
            p++;
            continue;
        }
        uint32_t cp;
        size_t need = utf8_decode(p, strnlen((const char *)p, 4), &cp);
        if (!need || cp <= 0x9f) { /* broken, or a C1 control */
            fprintf(f, "\\x%02x", c);
            p++;
            continue;
        }
        fwrite(p, 1, need, f);
        p += need;
    }
}

/* Display width of a (sanitised) string, approximately: code points. */
static int text_width(const char *s)
{
    int w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xc0) != 0x80)
            w += (*p < 0x20 || *p == 0x7f) ? 4 : 1;
    return w;
}

static void put_padded(const char *s, int width)
{
    put_safe(stdout, s, false);
    for (int w = text_width(s); w < width; w++)
        fputc(' ', stdout);
}

/* ---- talking to vmbusd ----------------------------------------------- */

static int ctl_connect(const struct ctl *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(c->socket) >= sizeof(sa.sun_path)) {
        err("socket path %s is longer than %zu bytes", c->socket, sizeof(sa.sun_path) - 1);
        return -1;
    }
    memcpy(sa.sun_path, c->socket, strlen(c->socket) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        err("socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    int e = errno;
    close(fd);
    switch (e) {
    case ENOENT:
    case ECONNREFUSED:
        err("vmbusd is not running: %s %s (%s).\n"
            "  Start it with 'systemctl start vmbusd', or run 'vmbusd --control %s';\n"
            "  if vmbusd listens elsewhere, name its control socket with --socket PATH.",
            e == ENOENT ? "there is no control socket at" : "nothing listens on",
            c->socket, strerror(e), c->socket);
        break;
    case EACCES:
    case EPERM:
        err("cannot connect to vmbusd's control socket %s: %s.\n"
            "  vmbusctl needs write access to the socket: run it as root.",
            c->socket, strerror(e));
        break;
    default:
        err("cannot connect to vmbusd's control socket %s: %s", c->socket, strerror(e));
        break;
    }
    return -1;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Send one request line, read one answer line (without its newline) into
 * *answer.  0, or -1 with the reason printed. */
static int ctl_exchange(const struct ctl *c, const char *req, char **answer, size_t *answer_len)
{
    size_t rlen = strlen(req);
    if (rlen > MAX_REQUEST) {
        err("request too long (%zu bytes; vmbusd takes at most %d)", rlen, MAX_REQUEST);
        return -1;
    }
    for (const char *p = req; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            err("control characters (newline, tab, ...) cannot be sent to vmbusd");
            return -1;
        }
    int fd = ctl_connect(c);
    if (fd < 0)
        return -1;
    char *line = malloc(rlen + 2);
    if (!line) {
        close(fd);
        err("out of memory");
        return -1;
    }
    memcpy(line, req, rlen);
    line[rlen] = '\n';
    size_t off = 0;
    while (off < rlen + 1) {
        ssize_t n = send(fd, line + off, rlen + 1 - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err("sending to vmbusd (%s): %s", c->socket, n < 0 ? strerror(errno) : "closed");
            free(line);
            close(fd);
            return -1;
        }
        off += (size_t)n;
    }
    free(line);
    shutdown(fd, SHUT_WR); /* one request per connection */

    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    long long deadline = now_ms() + (long long)c->timeout_s * 1000;
    if (!buf) {
        close(fd);
        err("out of memory");
        return -1;
    }
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            err("vmbusd did not answer within %d s (socket %s)", c->timeout_s, c->socket);
            goto fail;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, left > 1000000 ? 1000000 : (int)left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0) {
            err("poll: %s", strerror(errno));
            goto fail;
        }
        if (pr == 0)
            continue;
        if (len + 1 >= cap) {
            if (cap >= MAX_ANSWER) {
                err("answer from vmbusd longer than %u bytes", MAX_ANSWER);
                goto fail;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                err("out of memory");
                goto fail;
            }
            buf = nb;
            cap *= 2;
        }
        ssize_t n = recv(fd, buf + len, cap - 1 - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err("reading from vmbusd (%s): %s", c->socket, strerror(errno));
            goto fail;
        }
        if (n == 0) {
            err("vmbusd closed the connection without answering (socket %s)", c->socket);
            goto fail;
        }
        char *nl = memchr(buf + len, '\n', (size_t)n);
        len += (size_t)n;
        if (nl) {
            len = (size_t)(nl - buf);
            buf[len] = 0;
            break;
        }
    }
    close(fd);
    *answer = buf;
    *answer_len = len;
    return 0;
fail:
    free(buf);
    close(fd);
    return -1;
}

/* Exchange and parse.  Returns the parsed answer (also when "ok" is false),
 * or NULL with the reason printed.  In --json mode the raw line is printed. */
static json_t *ctl_request(const struct ctl *c, const char *req)
{
    char *ans;
    size_t len;
    if (ctl_exchange(c, req, &ans, &len) < 0)
        return NULL;
    if (c->json) {
        fwrite(ans, 1, len, stdout);
        fputc('\n', stdout);
    }
    /* Numbers as doubles: a counter above 2^63 is shown rounded, it does
     * not make the whole answer unreadable. */
    json_error_t jerr;
    json_t *j = json_loadb(ans, len, JSON_DECODE_INT_AS_REAL | JSON_DECODE_ANY, &jerr);
    free(ans);
    if (!j) {
        err("malformed answer from vmbusd: %s (at byte %d)", jerr.text, jerr.position);
        return NULL;
    }
    if (!json_is_boolean(json_object_get(j, "ok"))) {
        err("unexpected answer from vmbusd (no \"ok\" member)");
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Member key of object j as text, or fallback when j is not an object or
 * the member is missing or not a string (lookups chain without checks). */
static const char *str_of(const json_t *j, const char *key, const char *fallback)
{
    const char *s = json_string_value(json_object_get(j, key));
    return s ? s : fallback;
}

/* Member key of object j as a number, or fallback when it is not one. */
static double num_or(const json_t *j, const char *key, double fallback)
{
    const json_t *v = json_object_get(j, key);
    return json_is_number(v) ? json_number_value(v) : fallback;
}

/* Member key of object j as a count (0 when missing, negative or no number). */
static unsigned long long num_of(const json_t *j, const char *key)
{
    double d = num_or(j, key, 0);
    return d > 0 ? (unsigned long long)d : 0;
}

static bool answer_ok(const json_t *j) { return json_is_true(json_object_get(j, "ok")); }

/* Print the error of a failed answer; the VM name makes "no such VM" clear. */
static void answer_error(const json_t *j, const char *vm)
{
    const char *e = str_of(j, "error", "unknown error");
    if (vm && strcmp(e, "no such VM") == 0) {
        fputs("vmbusctl: no VM '", stderr);
        put_safe(stderr, vm, false);
        fputs("' is connected to vmbusd (see 'vmbusctl list')\n", stderr);
        return;
    }
    fputs("vmbusctl: ", stderr);
    if (vm) {
        put_safe(stderr, vm, false);
        fputs(": ", stderr);
    }
    put_safe(stderr, e, true);
    fputc('\n', stderr);
}

/* ---- building requests ----------------------------------------------- */

struct req {
    char s[MAX_REQUEST + 2];
    size_t len;
    bool overflow;
};

static void req_add(struct req *r, const char *word)
{
    size_t n = strlen(word);
    if (r->len + n + 1 > MAX_REQUEST) {
        r->overflow = true;
        return;
    }
    if (r->len)
        r->s[r->len++] = ' ';
    memcpy(r->s + r->len, word, n);
    r->len += n;
    r->s[r->len] = 0;
}

/* A word vmbusd splits on: non-empty, no blanks or control characters. */
static bool check_word(const char *what, const char *s)
{
    if (!*s) {
        err("%s must not be empty", what);
        return false;
    }
    for (const char *p = s; *p; p++) {
        if (*p == ' ' || *p == '\t') {
            err("%s '%s' contains a blank; vmbusd cannot take that", what, s);
            return false;
        }
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            err("%s contains a control character", what);
            return false;
        }
    }
    return true;
}

static bool check_text(const char *what, const char *s)
{
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            err("%s contains a control character (newline, tab, ...); vmbusd cannot take that",
                what);
            return false;
        }
    return true;
}

/* Send "control VM VSP CMD ARGS..." and print the VSP's reply.  Words in
 * args are joined with single blanks. */
static int do_control(const struct ctl *c, const char *vm, const char *vsp, const char *cmd,
                      int argc, char **argv)
{
    struct req r = {.len = 0};
    if (!check_word("VM", vm) || !check_word("VSP", vsp) || !check_word("command", cmd))
        return 1;
    req_add(&r, "control");
    req_add(&r, vm);
    req_add(&r, vsp);
    req_add(&r, cmd);
    for (int i = 0; i < argc; i++) {
        if (!check_text("argument", argv[i]))
            return 1;
        req_add(&r, argv[i]);
    }
    if (r.overflow) {
        err("command too long: vmbusd takes requests of at most %d bytes", MAX_REQUEST);
        return 1;
    }
    json_t *j = ctl_request(c, r.s);
    if (!j)
        return 1;
    int ret = 0;
    if (!answer_ok(j)) {
        answer_error(j, vm); /* stderr: stdout keeps the JSON in --json mode */
        ret = 1;
    } else if (!c->json) {
        const char *reply = str_of(j, "reply", "");
        put_safe(stdout, reply, true);
        if (*reply && reply[strlen(reply) - 1] != '\n')
            fputc('\n', stdout);
    }
    json_decref(j);
    return ret;
}

/* ---- list ------------------------------------------------------------ */

static const struct {
    const char *guid, *name;
} known_classes[] = {
    {HV_CLASS_HEARTBEAT, "heartbeat"},
    {HV_CLASS_SHUTDOWN, "shutdown"},
    {HV_CLASS_TIMESYNC, "timesync"},
    {HV_CLASS_KVP, "kvp"},
    {HV_CLASS_ECHO, "echo"},
    {HV_CLASS_SCSI, "scsi"},
    {HV_CLASS_NETVSC, "netvsc"},
};

static const char *class_name(const char *guid)
{
    for (size_t i = 0; i < sizeof(known_classes) / sizeof(known_classes[0]); i++)
        if (strcasecmp(known_classes[i].guid, guid) == 0)
            return known_classes[i].name;
    return "-";
}

/* "list" answer, or NULL (error printed; in --json mode the raw answer too). */
static json_t *fetch_list(const struct ctl *c)
{
    json_t *j = ctl_request(c, "list");
    if (!j)
        return NULL;
    if (!answer_ok(j)) {
        answer_error(j, NULL);
        json_decref(j);
        return NULL;
    }
    const json_t *parts = json_object_get(j, "partitions");
    if (!json_is_array(parts)) {
        err("unexpected answer from vmbusd (no partitions array)");
        json_decref(j);
        return NULL;
    }
    return j;
}

static bool partition_matches(const json_t *p, const char *vm)
{
    const char *name = str_of(p, "name", "");
    if (strcmp(name, vm) == 0)
        return true;
    char id[32];
    snprintf(id, sizeof(id), "%llu", num_of(p, "id"));
    return strcmp(id, vm) == 0;
}

static const json_t *find_partition(const json_t *list, const char *vm)
{
    const json_t *parts = json_object_get(list, "partitions");
    /* a name wins over an id */
    for (size_t i = 0; i < json_array_size(parts); i++)
        if (strcmp(str_of(json_array_get(parts, i), "name", ""), vm) == 0)
            return json_array_get(parts, i);
    for (size_t i = 0; i < json_array_size(parts); i++)
        if (partition_matches(json_array_get(parts, i), vm))
            return json_array_get(parts, i);
    return NULL;
}

static void no_vm(const char *vm)
{
    fputs("vmbusctl: no VM '", stderr);
    put_safe(stderr, vm, false);
    fputs("' is connected to vmbusd (see 'vmbusctl list')\n", stderr);
}

/* One ring's shared header words (list --rings). */
static void print_ring(const char *what, const json_t *r)
{
    if (!json_is_object(r)) {
        printf("         %s not reported (vmbusd older than vmbusctl)\n", what);
        return;
    }
    printf("         %s write %llu read %llu mask %llu pending_send_sz %llu\n", what,
           num_of(r, "write_index"), num_of(r, "read_index"), num_of(r, "interrupt_mask"),
           num_of(r, "pending_send_sz"));
}

static void print_partition(const json_t *p, bool rings)
{
    const json_t *chans = json_object_get(p, "channels");
    printf("VM ");
    put_safe(stdout, str_of(p, "name", "?"), false);
    printf(" (partition %llu): %llu vCPU%s, VMBus ", num_of(p, "id"),
           num_of(p, "vcpus"), num_of(p, "vcpus") == 1 ? "" : "s");
    const char *ver = str_of(p, "version", "?");
    if (!json_is_true(json_object_get(p, "connected")) || strcmp(ver, "0.0") == 0)
        printf("not connected");
    else
        put_safe(stdout, ver, false);
    printf(", messages %llu in / %llu out, %llu guest error%s\n",
           num_of(p, "messages_in"), num_of(p, "messages_out"),
           num_of(p, "guest_errors"),
           num_of(p, "guest_errors") == 1 ? "" : "s");
    /* The VMM process that connected the VM (vmbusd read it with
     * SO_PEERCRED): the process vmbusctl commands for this VM reach. */
    if (json_object_get(p, "vmm_pid")) {
        double pid = num_or(p, "vmm_pid", 0);
        double uid = num_or(p, "vmm_uid", -1);
        double gid = num_or(p, "vmm_gid", -1);
        printf("  VMM: pid %.0f, uid %.0f, gid %.0f\n", pid, uid, gid);
    }
    if (json_array_size(chans) == 0) {
        printf("  (no channels)\n");
        return;
    }
    printf("  %5s  %-10s %-36s  %-36s  %-9s %4s %4s\n", "RELID", "SERVICE", "CLASS", "INSTANCE",
           "STATE", "IN%", "OUT%");
    for (size_t i = 0; i < json_array_size(chans); i++) {
        const json_t *ch = json_array_get(chans, i);
        unsigned long long relid = num_of(ch, "relid");
        const char *cls = str_of(ch, "class", "?");
        char service[32];
        unsigned long long sub = num_of(ch, "subchannel");
        if (sub)
            snprintf(service, sizeof(service), "%s/%llu", class_name(cls), sub);
        else
            snprintf(service, sizeof(service), "%s", class_name(cls));
        if (relid)
            printf("  %5llu  ", relid);
        else
            printf("  %5s  ", "-");
        put_padded(service, 10);
        putchar(' ');
        put_padded(cls, 36);
        printf("  ");
        put_padded(str_of(ch, "instance", "?"), 36);
        printf("  ");
        put_padded(str_of(ch, "state", "?"), 9);
        printf(" %3llu%% %3llu%%\n", num_of(ch, "in_fill_pct"),
               num_of(ch, "out_fill_pct"));
        if (rings && strcmp(str_of(ch, "state", ""), "open") == 0) {
            print_ring("guest->host ring:", json_object_get(ch, "in_ring"));
            print_ring("host->guest ring:", json_object_get(ch, "out_ring"));
        }
    }
}

static int cmd_list(const struct ctl *c, int argc, char **argv)
{
    bool rings = argc == 1 && strcmp(argv[0], "--rings") == 0;
    if (argc > (rings ? 1 : 0)) {
        err("usage: list [--rings]");
        return 1;
    }
    json_t *j = fetch_list(c);
    if (!j)
        return 1;
    if (!c->json) {
        const json_t *parts = json_object_get(j, "partitions");
        if (json_array_size(parts) == 0)
            printf("No VMs connected to vmbusd.\n");
        for (size_t i = 0; i < json_array_size(parts); i++) {
            if (i)
                putchar('\n');
            print_partition(json_array_get(parts, i), rings);
        }
    }
    json_decref(j);
    return 0;
}

/* ---- heartbeat, status ----------------------------------------------- */

static const char *status_of(const json_t *p, const char *key, const char *fallback)
{
    return str_of(json_object_get(p, "status"), key, fallback);
}

static int cmd_heartbeat(const struct ctl *c, int argc, char **argv)
{
    if (argc > 1) {
        err("usage: heartbeat [VM]");
        return 1;
    }
    json_t *j = fetch_list(c);
    if (!j)
        return 1;
    const json_t *parts = json_object_get(j, "partitions");
    const json_t *only = NULL;
    if (argc == 1) {
        only = find_partition(j, argv[0]);
        if (!only) {
            no_vm(argv[0]);
            json_decref(j);
            return 1;
        }
    }
    int ret = 0;
    if (!c->json && !only && json_array_size(parts) == 0)
        printf("No VMs connected to vmbusd.\n");
    else if (!c->json)
        printf("%-20s %5s  %-9s %-20s %s\n", "VM", "ID", "HEARTBEAT", "SEQ", "VERSION");
    for (size_t i = 0; i < json_array_size(parts); i++) {
        const json_t *p = json_array_get(parts, i);
        if (only && p != only)
            continue;
        const char *state = status_of(p, "heartbeat.state", NULL);
        if (!state || strcmp(state, "ok") != 0)
            ret = 1;
        if (c->json)
            continue;
        put_padded(str_of(p, "name", "?"), 20);
        printf(" %5llu  ", num_of(p, "id"));
        put_padded(state ? state : "-", 9);
        putchar(' ');
        put_padded(status_of(p, "heartbeat.seq", "-"), 20);
        putchar(' ');
        put_safe(stdout, status_of(p, "heartbeat.version", "-"), false);
        if (!state)
            printf("  (no heartbeat service)");
        putchar('\n');
    }
    json_decref(j);
    return ret;
}

static int cmp_keys(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmd_status(const struct ctl *c, int argc, char **argv)
{
    if (argc != 1) {
        err("usage: status VM");
        return 1;
    }
    json_t *j = fetch_list(c);
    if (!j)
        return 1;
    const json_t *p = find_partition(j, argv[0]);
    if (!p) {
        no_vm(argv[0]);
        json_decref(j);
        return 1;
    }
    if (!c->json) {
        json_t *st = json_object_get(p, "status");
        size_t n = json_object_size(st);
        printf("VM ");
        put_safe(stdout, str_of(p, "name", "?"), false);
        printf(" (partition %llu)\n", num_of(p, "id"));
        if (n == 0) {
            printf("  (no status published)\n");
        } else {
            /* jansson keeps document order; print sorted by key */
            const char **keys = calloc(n, sizeof(*keys));
            const char *k;
            json_t *v;
            size_t nk = 0;
            int width = 0;
            if (!keys) {
                err("out of memory");
                json_decref(j);
                return 1;
            }
            json_object_foreach(st, k, v) {
                (void)v;
                keys[nk++] = k;
                if (text_width(k) > width)
                    width = text_width(k);
            }
            qsort(keys, nk, sizeof(*keys), cmp_keys);
            for (size_t i = 0; i < nk; i++) {
                printf("  ");
                put_padded(keys[i], width);
                printf("  ");
                put_safe(stdout, str_of(st, keys[i], ""), false);
                putchar('\n');
            }
            free(keys);
        }
    }
    json_decref(j);
    return 0;
}

/* ---- shutdown, kvp ---------------------------------------------------- */

static int cmd_shutdown(const struct ctl *c, int argc, char **argv)
{
    const char *vm = NULL;
    bool reboot = false, force = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--reboot") == 0 || strcmp(argv[i], "-r") == 0)
            reboot = true;
        else if (strcmp(argv[i], "--force") == 0 || strcmp(argv[i], "-f") == 0)
            force = true;
        else if (argv[i][0] == '-' && argv[i][1]) {
            err("shutdown: unknown option '%s' (--reboot, --force)", argv[i]);
            return 1;
        } else if (!vm)
            vm = argv[i];
        else {
            err("usage: shutdown VM [--reboot] [--force]");
            return 1;
        }
    }
    if (!vm) {
        err("usage: shutdown VM [--reboot] [--force]");
        return 1;
    }
    char *args[2] = {reboot ? "reboot" : "poweroff", "force"};
    return do_control(c, vm, "shutdown", "shutdown", force ? 2 : 1, args);
}

/* ---- disk (storvsp) ---------------------------------------------------- */

static int cmd_disk(const struct ctl *c, int argc, char **argv)
{
    static const char usage_text[] =
        "usage: disk add VM PATH [lun=N] [controller=N] [readonly] | "
        "disk remove VM [controller=N] lun=N | disk list VM";
    if (argc < 2) {
        err("%s", usage_text);
        return 1;
    }
    const char *sub = argv[0], *cmd;
    if (strcmp(sub, "add") == 0 && argc >= 3)
        cmd = "disk-add";
    else if ((strcmp(sub, "remove") == 0 || strcmp(sub, "rm") == 0) && argc >= 3)
        cmd = "disk-remove";
    else if (strcmp(sub, "list") == 0 && argc == 2)
        cmd = "disk-list";
    else {
        err("disk: %s", usage_text);
        return 1;
    }
    return do_control(c, argv[1], "storvsp", cmd, argc - 2, argv + 2);
}

/* ---- nic ------------------------------------------------------------- */

static int cmd_nic(const struct ctl *c, int argc, char **argv)
{
    static const char usage_text[] = "usage: nic list | nic link VM up|down | nic status VM";
    if (argc == 2 && strcmp(argv[0], "status") == 0)
        return do_control(c, argv[1], "netvsp", "status", 0, NULL);
    if (argc == 3 && strcmp(argv[0], "link") == 0) {
        if (strcmp(argv[2], "up") && strcmp(argv[2], "down")) {
            err("%s", usage_text);
            return 1;
        }
        return do_control(c, argv[1], "netvsp", "link", 1, argv + 2);
    }
    if (argc != 1 || strcmp(argv[0], "list") != 0) {
        err("%s", usage_text);
        return 1;
    }
    json_t *j = fetch_list(c);
    if (!j)
        return 1;
    if (!c->json) {
        const json_t *parts = json_object_get(j, "partitions");
        int n = 0;
        for (size_t i = 0; i < json_array_size(parts); i++) {
            const json_t *p = json_array_get(parts, i);
            const char *mac = status_of(p, "netvsp.mac", NULL);
            if (!mac)
                continue;
            if (n++ == 0)
                printf("%-20s %5s  %-17s %-6s %-8s %-7s %s\n", "VM", "ID", "MAC", "LINK",
                       "NVSP", "QUEUES", "BACKEND");
            put_padded(str_of(p, "name", "?"), 20);
            printf(" %5llu  ", num_of(p, "id"));
            put_padded(mac, 17);
            putchar(' ');
            put_padded(status_of(p, "netvsp.link", "-"), 6);
            putchar(' ');
            put_padded(status_of(p, "netvsp.nvsp", "-"), 8);
            putchar(' ');
            /* channels the guest has open / queues the NIC has */
            char q[40];
            snprintf(q, sizeof(q), "%s/%s", status_of(p, "netvsp.channels", "0"),
                     status_of(p, "netvsp.queues", "-"));
            put_padded(q, 7);
            putchar(' ');
            put_safe(stdout, status_of(p, "netvsp.backend", "-"), false);
            putchar('\n');
        }
        if (n == 0)
            printf("No VM with a synthetic NIC (netvsp) connected.\n");
    }
    json_decref(j);
    return 0;
}

static const char *const pool_names[] = {"external", "guest", "auto", "auto-external",
                                         "auto-internal"};

static const char *parse_pool(const char *s)
{
    static const char *const nums[] = {"0", "1", "2", "3", "4"};
    for (int i = 0; i < 5; i++)
        if (strcmp(s, nums[i]) == 0 || strcasecmp(s, pool_names[i]) == 0)
            return nums[i];
    err("bad pool '%s': 0-4, or external, guest, auto, auto-external, auto-internal", s);
    return NULL;
}

static int cmd_kvp(const struct ctl *c, int argc, char **argv)
{
    static const char usage_text[] = "usage: kvp get VM POOL KEY | kvp set VM POOL KEY VALUE | "
                                     "kvp delete VM POOL KEY | kvp list VM POOL";
    if (argc < 1) {
        err("%s", usage_text);
        return 1;
    }
    const char *sub = argv[0];
    const char *cmd;
    int want; /* arguments after VM POOL */
    if (strcmp(sub, "get") == 0)
        cmd = "kvp-get", want = 1;
    else if (strcmp(sub, "set") == 0)
        cmd = "kvp-set", want = 2;
    else if (strcmp(sub, "delete") == 0 || strcmp(sub, "del") == 0)
        cmd = "kvp-delete", want = 1;
    else if (strcmp(sub, "list") == 0)
        cmd = "kvp-list", want = 0;
    else {
        err("kvp: unknown subcommand '%s'; %s", sub, usage_text);
        return 1;
    }
    /* set: the value may be given as several words, joined with blanks */
    if (want == 2 ? argc < 5 : argc != 3 + want) {
        err("%s", usage_text);
        return 1;
    }
    const char *pool = parse_pool(argv[2]);
    if (!pool)
        return 1;
    char *args[64];
    int n = 0;
    args[n++] = (char *)pool;
    if (want >= 1) {
        if (!check_word("KVP key", argv[3]))
            return 1;
        args[n++] = argv[3];
    }
    for (int i = 4; i < argc && n < 64; i++)
        args[n++] = argv[i];
    if (want == 2 && argc - 4 > 62) {
        err("kvp set: too many words in VALUE; quote it");
        return 1;
    }
    if (want == 2 && (argv[4][0] == ' ' || argv[4][0] == '\t'))
        fprintf(stderr, "vmbusctl: note: vmbusd drops the leading blanks of a KVP value\n");
    return do_control(c, argv[1], "kvp", cmd, n, args);
}

static int cmd_control(const struct ctl *c, int argc, char **argv)
{
    if (argc < 3) {
        err("usage: control VM VSP COMMAND [ARGS]");
        return 1;
    }
    return do_control(c, argv[0], argv[1], argv[2], argc - 3, argv + 3);
}

/* ---- main ------------------------------------------------------------- */

int main(int argc, char **argv)
{
    struct ctl c = {.socket = DEFAULT_SOCKET, .timeout_s = 60};
    const char *env = getenv("VMBUSCTL_SOCKET");
    if (env && *env)
        c.socket = env;

    /* Global options may stand anywhere before "--"; everything else is the
     * command and its arguments (so "vmbusctl list --json" works too). */
    char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    int npos = 0;
    bool dashdash = false;
    if (!pos) {
        err("out of memory");
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
        if (dashdash || a[0] != '-' || !a[1]) {
            pos[npos++] = argv[i];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            dashdash = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            free(pos);
            return 0;
        } else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
            printf("vmbusctl %s\n", VMBUSD_VERSION);
            free(pos);
            return 0;
        } else if (strcmp(a, "-j") == 0 || strcmp(a, "--json") == 0) {
            c.json = true;
        } else if (strcmp(a, "-s") == 0 || strcmp(a, "--socket") == 0 ||
                   strcmp(a, "-t") == 0 || strcmp(a, "--timeout") == 0) {
            if (i + 1 >= argc) {
                err("option %s needs an argument (see --help)", a);
                free(pos);
                return 1;
            }
            val = argv[++i];
        } else if (strncmp(a, "--socket=", 9) == 0 || strncmp(a, "--timeout=", 10) == 0) {
            val = strchr(a, '=') + 1;
        } else {
            /* command options (shutdown --reboot) and negative numbers */
            pos[npos++] = argv[i];
            continue;
        }
        if (!val)
            continue;
        if (a[1] == 's' || strncmp(a, "--socket", 8) == 0) {
            if (!*val) {
                err("--socket needs a path");
                free(pos);
                return 1;
            }
            c.socket = val;
        } else {
            char *end;
            long t = strtol(val, &end, 10);
            if (*end || t < 1 || t > 86400) {
                err("--timeout must be 1..86400 seconds");
                free(pos);
                return 1;
            }
            c.timeout_s = (int)t;
        }
    }
    if (npos == 0) {
        usage(stderr);
        free(pos);
        return 1;
    }

    static const struct {
        const char *name;
        int (*fn)(const struct ctl *, int, char **);
    } cmds[] = {
        {"list", cmd_list},         {"heartbeat", cmd_heartbeat}, {"status", cmd_status},
        {"shutdown", cmd_shutdown}, {"kvp", cmd_kvp},             {"control", cmd_control},
        {"disk", cmd_disk},
        {"nic", cmd_nic},
    };
    int ret = -1;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (strcmp(pos[0], cmds[i].name) == 0)
            ret = cmds[i].fn(&c, npos - 1, pos + 1);
    if (ret < 0) {
        err("unknown command '%s' (see vmbusctl --help)", pos[0]);
        ret = 1;
    }
    free(pos);
    if (fflush(stdout) != 0) {
        err("writing output: %s", strerror(errno));
        ret = 1;
    }
    return ret;
}
