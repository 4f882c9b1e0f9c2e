/* SPDX-License-Identifier: MIT */
/*
 * vmbus-user protocol abuse by a VMM: wrong sizes, unknown types, missing
 * or extra fds, bad memory regions, vCPU indices out of range.  vmbusd must
 * survive, must not leak fds, must log the partition's name once it is
 * known, and other partitions must keep working.
 */
#include "sim_test.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

/* A raw connection: HELLO done (named) unless hello is false. */
/* INITIATE_CONTACT for 5.3 on the message SINT: the message these tests
 * use to make vmbusd write into a vCPU's SIMP slot. */
static struct vmbus_channel_initiate_contact contact_53(void)
{
    struct vmbus_channel_initiate_contact ic;
    memset(&ic, 0, sizeof(ic));
    ic.header.msgtype = CHANNELMSG_INITIATE_CONTACT;
    ic.vmbus_version_requested = VMBUS_VERSION_WIN10_V5_3;
    ic.u.s.msg_sint = VMBUS_MESSAGE_SINT;
    return ic;
}

/* Post it on message connection id 4 (HV message type 1), as a 5.x guest does. */
static int post_contact_53(struct sim_vm *vm)
{
    struct vmbus_channel_initiate_contact ic = contact_53();
    return sim_post(vm, 4, 1, &ic, sizeof(ic));
}

static struct sim_vm *raw_vm(struct fx *f, const char *base, bool hello)
{
    static int serial;
    char name[64];
    if (strcmp(base, VM_GOOD) == 0)
        snprintf(name, sizeof(name), "%s", base);
    else
        snprintf(name, sizeof(name), "%s-%d", base, ++serial);
    struct sim_vm_opts o = {.name = name, .no_setup = true, .mem_size = 8u << 20};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "connect %s", name);
    if (hello) {
        struct vu_hello h = {.major = VU_PROTOCOL_MAJOR, .minor = VU_PROTOCOL_MINOR,
                             .vcpu_count = vm->vcpus};
        snprintf(h.vm_name, sizeof(h.vm_name), "%s", name);
        int seq = sim_vu_send(vm, VU_MSG_HELLO, &h, sizeof(h), NULL, 0);
        SIM_ASSERT(seq > 0, "hello");
        uint64_t end = sim_now_ms() + 2000;
        while (sim_now_ms() < end && !(vm->rep_valid && vm->rep_type == VU_MSG_HELLO_REPLY))
            sim_vu_alive(vm, 10);
        SIM_ASSERT(vm->rep_valid && vm->rep_type == VU_MSG_HELLO_REPLY, "hello reply");
    }
    return vm;
}

/* Wait (up to 2 s) for vmbusd to close the connection; true if it did. */
static bool vu_wait_dead(struct sim_vm *vm)
{
    uint64_t end = sim_now_ms() + 2000;
    while (!vm->dead && sim_now_ms() < end)
        sim_vu_alive(vm, 10);
    return vm->dead;
}

/* What vmbusd must do with a connection that sent an abusive message. */
enum vu_outcome {
    VU_REFUSED,  /* ERROR with a reason, then the connection is closed */
    VU_CLOSED,   /* closed without a word (a 0-byte datagram is EOF) */
    VU_ACCEPTED, /* ignored or taken: no ERROR, the connection stays open and
                    a POST_MESSAGE still gets its POST_RESULT */
};

static void vu_expect(struct sim_vm *vm, const char *what, enum vu_outcome expect)
{
    if (expect == VU_ACCEPTED) {
        sim_vu_alive(vm, 100);
        SIM_ASSERT(!vm->dead && !vm->error[0], "%s: connection closed (ERROR '%s')", what,
                   vm->error);
        struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
        int st = sim_post(vm, VMBUS_MESSAGE_CONNECTION_ID, HV_MESSAGE_TYPE_VMBUS, &h, sizeof(h));
        SIM_ASSERT(st >= 0, "%s: POST_MESSAGE afterwards not answered (%d)", what, st);
        return;
    }
    uint64_t end = sim_now_ms() + 2000;
    while (!vm->dead && sim_now_ms() < end)
        sim_vu_alive(vm, 20);
    SIM_ASSERT(vm->dead, "%s: connection still open", what);
    if (expect == VU_REFUSED)
        SIM_ASSERT(vm->error[0], "%s: closed without an ERROR saying why", what);
}

static void vu_done(struct fx *f, struct sim_vm *vm, const char *what, bool named,
                    enum vu_outcome expect)
{
    fx_good_check(f, what);
    /* vmbusd logs VMM protocol errors (warning) when it closes the connection */
    if (named)
        SIM_ASSERT(sim_log_wait(2000, LOG_WARN, vm->name, NULL, NULL),
                   "no warning naming %s for %s", vm->name, what);
    vu_expect(vm, what, expect);
    print_message("  %-52s %s%s\n", what, expect == VU_ACCEPTED ? "accepted" : "closed",
                  vm->error[0] ? " after ERROR " : "");
    sim_vm_free(vm);
}

static void test_framing(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct sim_vm *vm;
    uint8_t junk[2048];
    memset(junk, 0x5a, sizeof(junk));

    static const size_t short_lens[] = {0, 1, 15};
    for (size_t i = 0; i < 3; i++) {
        vm = raw_vm(f, "vu-short", true);
        sim_vu_send_raw(vm, junk, short_lens[i], NULL, 0);
        char what[64];
        snprintf(what, sizeof(what), "datagram of %zu bytes", short_lens[i]);
        /* 0 bytes: EOF to vmbusd (SOCK_SEQPACKET), a plain close */
        vu_done(f, vm, what, short_lens[i] > 0, short_lens[i] > 0 ? VU_REFUSED : VU_CLOSED);
    }

    /* header size disagrees with the datagram */
    vm = raw_vm(f, "vu-size-big", true);
    {
        struct vu_hdr h = {.type = VU_MSG_POST_MESSAGE, .size = 264, .seq = 99};
        memcpy(junk, &h, sizeof(h));
        sim_vu_send_raw(vm, junk, sizeof(h) + 10, NULL, 0);
    }
    vu_done(f, vm, "hdr.size > datagram", true, VU_REFUSED);

    vm = raw_vm(f, "vu-size-small", true);
    {
        struct vu_hdr h = {.type = VU_MSG_SYNIC_STATE, .size = 4, .seq = 99};
        memcpy(junk, &h, sizeof(h));
        sim_vu_send_raw(vm, junk, sizeof(h) + 32, NULL, 0);
    }
    vu_done(f, vm, "hdr.size < datagram", true, VU_REFUSED);

    vm = raw_vm(f, "vu-huge", true);
    sim_vu_send_raw(vm, junk, sizeof(junk), NULL, 0);
    vu_done(f, vm, "2048-byte datagram", true, VU_REFUSED);

    vm = raw_vm(f, "vu-flags", true);
    {
        struct vu_hdr h = {.type = VU_MSG_SYNIC_STATE, .size = 32, .seq = 99, .flags = 0xff};
        memset(junk, 0, sizeof(junk));
        memcpy(junk, &h, sizeof(h));
        sim_vu_send_raw(vm, junk, sizeof(h) + 32, NULL, 0);
    }
    vu_done(f, vm, "hdr.flags != 0", true, VU_REFUSED);

    /* every message type with a wrong payload size */
    static const uint32_t types[] = {VU_MSG_MEM_REGION, VU_MSG_SINT_ROUTE, VU_MSG_SYNIC_STATE,
                                     VU_MSG_POST_MESSAGE, VU_MSG_RESET, VU_MSG_SIGNAL_EVENT};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        vm = raw_vm(f, "vu-wrongsize", true);
        memset(junk, 0, sizeof(junk));
        sim_vu_send(vm, types[i], junk, 3, NULL, 0);
        char what[64];
        snprintf(what, sizeof(what), "type %u with 3-byte payload", types[i]);
        vu_done(f, vm, what, types[i] != VU_MSG_RESET, VU_REFUSED);
    }
}

static void test_types_and_order(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct sim_vm *vm;
    uint8_t zero[64] = {0};

    static const uint32_t types[] = {0, 8, 63, VU_MSG_HELLO_REPLY, VU_MSG_POST_RESULT,
                                     VU_MSG_EVENTFD_ADD, VU_MSG_ERROR, 1000, 0xffffffff};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        vm = raw_vm(f, "vu-type", true);
        sim_vu_send(vm, types[i], zero, 8, NULL, 0);
        char what[64];
        snprintf(what, sizeof(what), "message type %u", types[i]);
        vu_done(f, vm, what, true, VU_REFUSED);
    }

    /* messages before HELLO */
    static const uint32_t early[] = {VU_MSG_MEM_REGION, VU_MSG_SINT_ROUTE, VU_MSG_SYNIC_STATE,
                                     VU_MSG_POST_MESSAGE, VU_MSG_RESET, VU_MSG_SIGNAL_EVENT};
    for (size_t i = 0; i < sizeof(early) / sizeof(early[0]); i++) {
        vm = raw_vm(f, "vu-early", false);
        uint8_t p[264] = {0};
        uint32_t sz = early[i] == VU_MSG_POST_MESSAGE ? 264
                      : early[i] == VU_MSG_MEM_REGION ? 24
                      : early[i] == VU_MSG_SYNIC_STATE ? 32
                      : early[i] == VU_MSG_RESET      ? 0
                                                      : 16;
        sim_vu_send(vm, early[i], p, sz, early[i] == VU_MSG_MEM_REGION ? &vm->memfd : NULL,
                    early[i] == VU_MSG_MEM_REGION ? 1 : 0);
        char what[64];
        snprintf(what, sizeof(what), "type %u before HELLO", early[i]);
        vu_done(f, vm, what, false, VU_REFUSED);
    }

    /* HELLO variants */
    /* code: the ERROR code expected; 0: accepted (unknown features are
     * ignored, docs/vmbus-user-protocol.md HELLO) */
    static const struct {
        const char *what;
        uint16_t major;
        uint32_t vcpus, features;
        bool fill_name;
        uint32_t code;
    } hv[] = {
        {"HELLO major 2", 2, 2, 0, false, EPROTONOSUPPORT},
        {"HELLO vcpu_count 0", 1, 0, 0, false, EINVAL},
        {"HELLO vcpu_count 257", 1, 257, 0, false, EINVAL},
        {"HELLO vcpu_count ~0", 1, ~0u, 0, false, EINVAL},
        {"HELLO features ~0", 1, 2, ~0u, false, 0},
        {"HELLO name not terminated", 1, 2, 0, true, ENAMETOOLONG},
    };
    for (size_t i = 0; i < sizeof(hv) / sizeof(hv[0]); i++) {
        vm = raw_vm(f, "vu-hello", false);
        struct vu_hello h = {.major = hv[i].major, .vcpu_count = hv[i].vcpus,
                             .features = hv[i].features};
        if (hv[i].fill_name)
            memset(h.vm_name, 'x', sizeof(h.vm_name));
        else
            snprintf(h.vm_name, sizeof(h.vm_name), "vu-hello-%zu", i);
        sim_vu_send(vm, VU_MSG_HELLO, &h, sizeof(h), NULL, 0);
        uint64_t end = sim_now_ms() + 2000;
        while (sim_now_ms() < end && !vm->dead && !vm->rep_valid)
            sim_vu_alive(vm, 10);
        bool replied = vm->rep_valid && vm->rep_type == VU_MSG_HELLO_REPLY;
        print_message("    %s: %s\n", hv[i].what, replied ? "HELLO_REPLY" : "no reply");
        if (hv[i].code)
            SIM_ASSERT(!replied && vu_wait_dead(vm) && vm->error_code == hv[i].code,
                       "%s: %s, ERROR '%s' (expected code %u)", hv[i].what,
                       replied ? "HELLO_REPLY" : "no reply", vm->error, hv[i].code);
        else
            SIM_ASSERT(replied && !vm->dead, "%s refused: %s", hv[i].what, vm->error);
        vu_done(f, vm, hv[i].what, false, hv[i].code ? VU_REFUSED : VU_ACCEPTED);
    }

    /* HELLO twice */
    vm = raw_vm(f, "vu-hello2", true);
    {
        struct vu_hello h = {.major = 1, .vcpu_count = 8};
        snprintf(h.vm_name, sizeof(h.vm_name), "vu-other-name");
        sim_vu_send(vm, VU_MSG_HELLO, &h, sizeof(h), NULL, 0);
    }
    vu_done(f, vm, "HELLO twice", true, VU_REFUSED);

}

/* The id of partition name in the control socket's "list", its VMM's pid
 * in *pid; 0 if it is not listed, -1 if listed more than once. */
static long listed(struct fx *f, const char *name, long *pid)
{
    static char buf[256 * 1024];
    SIM_ASSERT(sim_ctl_call(simd_control_path(f->d), "list", buf, sizeof(buf)), "list");
    char needle[96];
    snprintf(needle, sizeof(needle), ",\"name\":\"%s\",", name);
    long id = 0;
    for (char *p = strstr(buf, needle); p; p = strstr(p + 1, needle)) {
        if (id)
            return -1;
        char *o = p;
        while (o > buf && strncmp(o, "{\"id\":", 6) != 0)
            o--;
        id = strtol(o + 6, NULL, 10);
        char *pp = strstr(p, "\"vmm_pid\":");
        *pid = pp ? strtol(pp + 10, NULL, 10) : 0;
    }
    return id;
}

/* A second VMM that announces the name of a connected VM is refused: the
 * name (and with it vmbusctl's commands, KVP values included) stays with the
 * first.  Once the first goes, the name is free again. */
static void test_duplicate_name(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    long pid = 0;
    long id = listed(f, VM_GOOD, &pid);
    SIM_ASSERT(id == f->good->partition_id, "list shows %s as partition %ld, expected %u",
               VM_GOOD, id, f->good->partition_id);
    SIM_ASSERT(pid == getpid(), "list shows the VMM of %s as pid %ld, expected %d", VM_GOOD, pid,
               (int)getpid());
    SIM_ASSERT(sim_log_count(LOG_INFO, VM_GOOD, "VMM connected (pid", NULL) == 1,
               "no 'VMM connected' line with the VMM's pid");

    struct sim_vm_opts o = {.name = VM_GOOD, .no_setup = true, .mem_size = 8u << 20};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "connect");
    struct vu_hello h = {.major = VU_PROTOCOL_MAJOR, .vcpu_count = 2};
    snprintf(h.vm_name, sizeof(h.vm_name), "%s", VM_GOOD);
    sim_vu_send(vm, VU_MSG_HELLO, &h, sizeof(h), NULL, 0);
    SIM_ASSERT(vu_wait_dead(vm), "second VMM named %s accepted", VM_GOOD);
    SIM_ASSERT(vm->error_code == EEXIST && strstr(vm->error, VM_GOOD),
               "second VMM: ERROR '%s', expected EEXIST naming %s", vm->error, VM_GOOD);
    SIM_ASSERT(!(vm->rep_valid && vm->rep_type == VU_MSG_HELLO_REPLY), "HELLO_REPLY sent");
    char pid_s[32];
    snprintf(pid_s, sizeof(pid_s), "(pid %d,", (int)getpid());
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, VM_GOOD, "is in use by partition", pid_s),
               "refusal not logged with the VMM's pid");
    fx_good_check(f, "a second VMM with the same name");
    SIM_ASSERT(listed(f, VM_GOOD, &pid) == id, "%s no longer listed once as partition %ld",
               VM_GOOD, id);
    sim_vm_free(vm);

    /* the first VMM leaves: the name is free */
    sim_vm_free(f->good);
    f->good = NULL;
    for (int i = 0; i < 200 && listed(f, VM_GOOD, &pid) != 0; i++)
        usleep(10000);
    SIM_ASSERT(listed(f, VM_GOOD, &pid) == 0, "%s still listed after its VMM left", VM_GOOD);
    fx_good_check(f, "the name taken again after its VMM left");
    SIM_ASSERT(listed(f, VM_GOOD, &pid) == f->good->partition_id, "new %s not listed", VM_GOOD);
}

static void test_memory_regions(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct sim_vm *vm;
    struct vu_mem_region mr;

    vm = raw_vm(f, "vu-mem-nofd", true);
    mr = (struct vu_mem_region){.guest_phys_addr = 0, .size = vm->mem_size};
    sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), NULL, 0);
    vu_done(f, vm, "MEM_REGION without fd", true, VU_REFUSED);

    vm = raw_vm(f, "vu-mem-2fd", true);
    {
        int fds[2] = {vm->memfd, vm->memfd};
        sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), fds, 2);
    }
    vu_done(f, vm, "MEM_REGION with 2 fds", true, VU_REFUSED);

    vm = raw_vm(f, "vu-mem-evfd", true);
    {
        int e = eventfd(0, EFD_CLOEXEC);
        sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &e, 1);
        close(e);
    }
    vu_done(f, vm, "MEM_REGION with an eventfd", true, VU_REFUSED);

    static const struct {
        const char *what;
        uint64_t gpa, size, off;
    } bad[] = {
        {"MEM_REGION gpa unaligned", 0x123, 0x100000, 0},
        {"MEM_REGION size 0", 0, 0, 0},
        {"MEM_REGION size unaligned", 0, 0x100001, 0},
        {"MEM_REGION offset unaligned", 0, 0x100000, 0x10},
        {"MEM_REGION gpa+size wraps", ~0ull - 0xfff, 0x2000, 0},
        {"MEM_REGION offset+size beyond the fd", 0, 0x100000, 0x780000},
        {"MEM_REGION larger than the fd", 0, 1ull << 30, 0},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        vm = raw_vm(f, "vu-mem-bad", true);
        mr = (struct vu_mem_region){bad[i].gpa, bad[i].size, bad[i].off};
        sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &vm->memfd, 1);
        if (i >= 5) {
            /* make vmbusd touch the part beyond the fd: SIMP up there */
            for (uint32_t v = 0; v < vm->vcpus; v++) {
                struct vu_sint_route r = {.vp_index = v, .sint = 2};
                int fds[2] = {vm->vp[v].irqfd, vm->vp[v].resamplefd};
                sim_vu_send(vm, VU_MSG_SINT_ROUTE, &r, sizeof(r), fds, 2);
                struct vu_synic_state s = {.vp_index = v, .scontrol = 1,
                                           .simp = (i == 5 ? 0xFE000ull : 64ull << 20) | 1,
                                           .siefp = (i == 5 ? 0xFF000ull : 65ull << 20) | 1};
                sim_vu_send(vm, VU_MSG_SYNIC_STATE, &s, sizeof(s), NULL, 0);
            }
            post_contact_53(vm);
        }
        vu_done(f, vm, bad[i].what, true, VU_REFUSED);
    }

    /* overlapping regions */
    vm = raw_vm(f, "vu-mem-overlap", true);
    mr = (struct vu_mem_region){0, 4u << 20, 0};
    sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &vm->memfd, 1);
    mr = (struct vu_mem_region){2u << 20, 4u << 20, 0};
    sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &vm->memfd, 1);
    vu_done(f, vm, "overlapping MEM_REGIONs", true, VU_REFUSED);

    /* more regions than allowed */
    vm = raw_vm(f, "vu-mem-many", true);
    for (int i = 0; i < VU_MAX_MEM_REGIONS + 4; i++) {
        mr = (struct vu_mem_region){(uint64_t)i << 16, 0x10000, (uint64_t)i << 16};
        sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &vm->memfd, 1);
    }
    vu_done(f, vm, "36 MEM_REGIONs", true, VU_REFUSED);
}

static void test_vcpus(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct sim_vm *vm;

    static const struct {
        const char *what;
        uint32_t vp, sint;
        int nfds;
    } sr[] = {
        {"SINT_ROUTE vp = vcpu_count", 2, 2, 2},   {"SINT_ROUTE vp 100000", 100000, 2, 2},
        {"SINT_ROUTE sint 16", 0, 16, 2},          {"SINT_ROUTE sint ~0", 0, ~0u, 2},
        {"SINT_ROUTE without fds", 0, 2, 0},       {"SINT_ROUTE with 1 fd", 0, 2, 1},
    };
    for (size_t i = 0; i < sizeof(sr) / sizeof(sr[0]); i++) {
        vm = raw_vm(f, "vu-sint", true);
        struct vu_sint_route r = {.vp_index = sr[i].vp, .sint = sr[i].sint};
        int fds[2] = {vm->vp[0].irqfd, vm->vp[0].resamplefd};
        sim_vu_send(vm, VU_MSG_SINT_ROUTE, &r, sizeof(r), fds, sr[i].nfds);
        vu_done(f, vm, sr[i].what, true, VU_REFUSED);
    }

    static const struct {
        const char *what;
        uint32_t vp;
        uint64_t simp, siefp;
    } ss[] = {
        {"SYNIC_STATE vp = vcpu_count", 2, 0x200001, 0x201001},
        {"SYNIC_STATE vp ~0", ~0u, 0x200001, 0x201001},
        {"SYNIC_STATE simp outside memory", 0, (1ull << 40) | 1, 0x201001},
        {"SYNIC_STATE siefp outside memory", 0, 0x200001, (64ull << 20) | 1},
        {"SYNIC_STATE simp last page + 1", 0, (8ull << 20) | 1, 0x201001},
    };
    for (size_t i = 0; i < sizeof(ss) / sizeof(ss[0]); i++) {
        vm = raw_vm(f, "vu-synic", true);
        struct vu_mem_region mr = {0, vm->mem_size, 0};
        sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &vm->memfd, 1);
        for (uint32_t v = 0; v < vm->vcpus; v++) {
            struct vu_sint_route r = {.vp_index = v, .sint = 2};
            int fds[2] = {vm->vp[v].irqfd, vm->vp[v].resamplefd};
            sim_vu_send(vm, VU_MSG_SINT_ROUTE, &r, sizeof(r), fds, 2);
        }
        struct vu_synic_state s = {.vp_index = ss[i].vp, .scontrol = 1, .simp = ss[i].simp,
                                   .siefp = ss[i].siefp};
        sim_vu_send(vm, VU_MSG_SYNIC_STATE, &s, sizeof(s), NULL, 0);
        /* provoke a message to that vCPU */
        vm->version = 0;
        post_contact_53(vm);
        /* a vp out of range is refused; a SIMP/SIEFP outside guest memory
         * only warned about (the guest's own problem) */
        vu_done(f, vm, ss[i].what, true, i < 2 ? VU_REFUSED : VU_ACCEPTED);
    }

    /* POST_MESSAGE and SIGNAL_EVENT from a vCPU that does not exist */
    vm = sim_vm_create(f->d, "vu-post-vp");
    SIM_ASSERT(vm != NULL, "vm");
    {
        struct vu_post_message pm;
        memset(&pm, 0, sizeof(pm));
        pm.vp_index = 1000;
        pm.msg.connection_id = 4;
        pm.msg.message_type = 1;
        pm.msg.payload_size = 40;
        struct vmbus_channel_initiate_contact ic = contact_53();
        memcpy(pm.msg.payload, &ic, sizeof(ic));
        int seq = sim_vu_send(vm, VU_MSG_POST_MESSAGE, &pm, sizeof(pm), NULL, 0);
        uint64_t end = sim_now_ms() + 2000;
        while (sim_now_ms() < end && !vm->dead &&
               !(vm->rep_valid && vm->rep_type == VU_MSG_POST_RESULT &&
                 vm->rep_seq == (uint32_t)seq))
            sim_vu_alive(vm, 10);
        bool replied = vm->rep_valid && vm->rep_type == VU_MSG_POST_RESULT &&
                       vm->rep_seq == (uint32_t)seq;
        struct vu_post_result pr;
        memcpy(&pr, vm->rep, sizeof(pr));
        SIM_ASSERT(vm->dead || (replied && pr.hv_status != 0),
                   "POST_MESSAGE from vp 1000 %s", replied ? "succeeded" : "not answered");
        struct vu_signal_event se = {.vp_index = 5000, .connection_id = 1};
        sim_vu_send(vm, VU_MSG_SIGNAL_EVENT, &se, sizeof(se), NULL, 0);
    }
    /* refused with a status; a log line is optional here */
    vu_done(f, vm, "POST_MESSAGE / SIGNAL_EVENT vp out of range", false, VU_REFUSED);

    /* SynIC disabled: messages must wait, not be written */
    vm = sim_vm_create(f->d, "vu-synic-off");
    SIM_ASSERT(vm != NULL, "vm");
    {
        struct vu_synic_state s = {.vp_index = 0, .scontrol = 1, .simp = 0, .siefp = 0};
        sim_vu_send(vm, VU_MSG_SYNIC_STATE, &s, sizeof(s), NULL, 0);
        int st = post_contact_53(vm);
        struct hv_message *slot =
            (struct hv_message *)(vm->mem + vm->vp[0].simp_off) + VMBUS_MESSAGE_SINT;
        sim_vu_alive(vm, 100);
        SIM_ASSERT(slot->header.message_type == 0, "message written to a disabled SIMP");
        /* re-enable: the queued response arrives */
        s.simp = sim_off_to_gpa(vm, vm->vp[0].simp_off) | 1;
        s.siefp = sim_off_to_gpa(vm, vm->vp[0].siefp_off) | 1;
        sim_vu_send(vm, VU_MSG_SYNIC_STATE, &s, sizeof(s), NULL, 0);
        SIM_ASSERT(st == 0, "INITIATE_CONTACT with the SIMP disabled: status %d", st);
        SIM_ASSERT(sim_wait_msg(vm, CHANNELMSG_VERSION_RESPONSE, NULL, NULL, NULL, 2000),
                   "VERSION_RESPONSE lost while the SIMP was disabled");
    }
    vu_done(f, vm, "SIMP disabled", false, VU_ACCEPTED);
}

/* A memfd of size bytes with these seals (0: unsealed). */
static int memfd_sealed(size_t size, int seals)
{
    int fd = memfd_create("vu-mem", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0 || (seals && fcntl(fd, F_ADD_SEALS, seals) < 0))
        fail_msg("memfd: %s", strerror(errno));
    return fd;
}

/* MEM_REGION takes only a memfd sealed against shrinking: anything else
 * could shrink under vmbusd's mapping (SIGBUS) or is memory the VMM's guest
 * never sees.  Each is refused with an ERROR whose code says why. */
static void test_memory_fd_kinds(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    const size_t size = 8u << 20;
    char tmpl[] = "/tmp/vmbusd-sim-ram.XXXXXX";
    int file = mkstemp(tmpl);
    SIM_ASSERT(file >= 0 && ftruncate(file, (off_t)size) == 0, "regular file");
    unlink(tmpl);
    int zero = open("/dev/zero", O_RDWR | O_CLOEXEC);
    SIM_ASSERT(zero >= 0, "/dev/zero");
    const struct {
        const char *what;
        int fd;
        uint32_t code;
    } cases[] = {
        {"MEM_REGION with an unsealed memfd", memfd_sealed(size, 0), EPERM},
        {"MEM_REGION with a memfd sealed F_SEAL_GROW only", memfd_sealed(size, F_SEAL_GROW),
         EPERM},
        {"MEM_REGION with a regular file", file, EBADF},
        {"MEM_REGION with /dev/zero", zero, EBADF},
        {"MEM_REGION with a write-sealed memfd",
         memfd_sealed(size, F_SEAL_SHRINK | F_SEAL_WRITE), EROFS},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct sim_vm *vm = raw_vm(f, "vu-mem-kind", true);
        struct vu_mem_region mr = {.guest_phys_addr = 0, .size = size};
        sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &cases[i].fd, 1);
        close(cases[i].fd);
        SIM_ASSERT(vu_wait_dead(vm), "%s: accepted", cases[i].what);
        SIM_ASSERT(vm->error_code == cases[i].code && strstr(vm->error, "MEM_REGION"),
                   "%s: ERROR '%s', expected code %u", cases[i].what, vm->error, cases[i].code);
        vu_done(f, vm, cases[i].what, true, VU_REFUSED);
    }
}

/* A VMM that shrinks guest RAM under its running partition.  vmbusd took
 * its memfd only with F_SEAL_SHRINK, so the kernel refuses the shrink; the
 * partition and every other one keep running.  (A vmbusd that accepts an
 * unsealed memfd dies of SIGBUS in the first half, and this test with it.) */
static void test_memory_shrink(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);

    /* A hostile VMM offers an unsealed memfd, then truncates it and makes
     * vmbusd write the SIMP page in it. */
    struct sim_vm *vm = raw_vm(f, "vu-shrink-unsealed", true);
    int u = memfd_sealed(vm->mem_size, 0);
    struct vu_mem_region mr = {.guest_phys_addr = 0, .size = vm->mem_size};
    sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &u, 1);
    if (!vu_wait_dead(vm)) {
        for (uint32_t v = 0; v < vm->vcpus; v++) {
            struct vu_sint_route r = {.vp_index = v, .sint = 2};
            int fds[2] = {vm->vp[v].irqfd, vm->vp[v].resamplefd};
            sim_vu_send(vm, VU_MSG_SINT_ROUTE, &r, sizeof(r), fds, 2);
            struct vu_synic_state s = {.vp_index = v, .scontrol = 1,
                                       .simp = sim_off_to_gpa(vm, vm->vp[v].simp_off) | 1,
                                       .siefp = sim_off_to_gpa(vm, vm->vp[v].siefp_off) | 1};
            sim_vu_send(vm, VU_MSG_SYNIC_STATE, &s, sizeof(s), NULL, 0);
        }
        int t = ftruncate(u, 0);
        print_message("    unsealed memfd accepted; ftruncate(0) -> %d; INITIATE_CONTACT...\n", t);
        post_contact_53(vm);
        sim_vu_alive(vm, 200);
    }
    close(u);
    SIM_ASSERT(vm->dead && vm->error_code == EPERM, "unsealed memfd: ERROR '%s'", vm->error);
    vu_done(f, vm, "unsealed memfd, shrunk under the partition", true, VU_REFUSED);

    /* A well-behaved VMM turns hostile: its sealed memfd cannot shrink. */
    vm = sim_up(f->d, "vu-shrink-sealed", VMBUS_VERSION_WIN10_V5_3);
    SIM_ASSERT(vm != NULL, "partition up");
    struct sim_chan *ch = sim_open_echo(vm, 0, 4, 4);
    SIM_ASSERT(ch != NULL, "channel open");
    errno = 0;
    int r = ftruncate(vm->memfd, 0);
    SIM_ASSERT(r == -1 && errno == EPERM, "ftruncate(memfd, 0) -> %d (%s), expected EPERM", r,
               strerror(errno));
    r = ftruncate(vm->memfd, 4096);
    SIM_ASSERT(r == -1 && errno == EPERM, "ftruncate(memfd, 4096) -> %d, expected EPERM", r);
    SIM_ASSERT(sim_echo_roundtrip(ch, 200, 1, true) == 0, "partition broken after the shrink");
    SIM_ASSERT(!vm->dead, "partition's connection closed after the shrink: %s", vm->error);
    fx_good_check(f, "shrink attempt");
    sim_vm_free(vm);
}

/* A VMM may make vmbusd keep at most max-fds-per-connection fds (default
 * 160): a 256-vCPU VM's SINT routes pass it and are refused with EMFILE,
 * and everything it handed over is closed with the connection. */
static void test_fd_quota(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    int before = sim_count_fds();
    struct sim_vm_opts o = {.name = "vu-fd-quota", .no_setup = true, .mem_size = 8u << 20};
    struct sim_vm *vm = sim_vm_new(f->d, &o);
    SIM_ASSERT(vm != NULL, "connect");
    struct vu_hello h = {.major = VU_PROTOCOL_MAJOR, .vcpu_count = VU_MAX_VCPUS};
    snprintf(h.vm_name, sizeof(h.vm_name), "%s", o.name);
    sim_vu_send(vm, VU_MSG_HELLO, &h, sizeof(h), NULL, 0);
    struct vu_mem_region mr = {.guest_phys_addr = 0, .size = vm->mem_size};
    sim_vu_send(vm, VU_MSG_MEM_REGION, &mr, sizeof(mr), &vm->memfd, 1);
    uint32_t sent = 0;
    for (uint32_t v = 0; v < VU_MAX_VCPUS && !vm->dead; v++, sent++) {
        struct vu_sint_route r = {.vp_index = v, .sint = VMBUS_MESSAGE_SINT};
        int fds[2] = {vm->vp[0].irqfd, vm->vp[0].resamplefd};
        sim_vu_send(vm, VU_MSG_SINT_ROUTE, &r, sizeof(r), fds, 2);
        sim_vu_alive(vm, 0);
    }
    SIM_ASSERT(vu_wait_dead(vm), "%u SINT routes (%u fds) accepted", sent, 1 + 2 * sent);
    SIM_ASSERT(vm->error_code == EMFILE && strstr(vm->error, "max-fds-per-connection"),
               "ERROR '%s', expected EMFILE", vm->error);
    SIM_ASSERT(sim_log_wait(2000, LOG_WARN, o.name, "max-fds-per-connection", NULL),
               "refusal not logged");
    sim_vm_free(vm);
    fx_good_check(f, "fd quota");
    int after = sim_count_fds();
    for (int i = 0; i < 200 && after - before > 5; i++) {
        usleep(10000);
        after = sim_count_fds();
    }
    SIM_ASSERT(after - before <= 5, "fds grew from %d to %d", before, after);
}

/* fds attached to messages that take none are closed, not leaked. */
static void test_fd_leaks(void **state)
{
    struct fx *f = *state;
    fx_good_start(f);
    struct sim_vm *vm = sim_vm_create(f->d, "vu-fdleak");
    SIM_ASSERT(vm != NULL, "vm");
    /* warm up, so lazily created fds exist */
    SIM_ASSERT(sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) >= ECHO_CHANNELS, "bringup");
    int before = sim_count_fds();
    for (int i = 0; i < 200; i++) {
        int e = eventfd(0, EFD_CLOEXEC);
        struct vu_signal_event se = {.vp_index = 0, .connection_id = 0x999};
        sim_vu_send(vm, VU_MSG_SIGNAL_EVENT, &se, sizeof(se), &e, 1);
        struct vmbus_channel_message_header h = {.msgtype = CHANNELMSG_REQUESTOFFERS};
        (void)h;
        close(e);
    }
    sim_vu_alive(vm, 200);
    int after = sim_count_fds();
    SIM_ASSERT(after - before < 20, "fds grew from %d to %d: vmbusd keeps unexpected fds", before,
               after);
    fx_good_check(f, "unexpected fds");
    sim_vm_free(vm);
    /* connections that die at every setup step leave nothing behind */
    before = sim_count_fds();
    for (int i = 0; i < 30; i++) {
        struct sim_vm *v = sim_vm_create(f->d, "vu-churn");
        SIM_ASSERT(v != NULL, "churn %d", i);
        if (i % 3 == 1)
            sim_bringup(v, VMBUS_VERSION_WIN10_V5_3);
        if (i % 3 == 2) {
            sim_bringup(v, VMBUS_VERSION_WIN10_V5_3);
            sim_open_echo(v, 0, 4, 4);
        }
        sim_vm_free(v);
    }
    for (int i = 0; i < 200 && vmbusd_partition_count(simd_vmbusd(f->d)) > 1; i++)
        usleep(10000);
    for (int i = 0; i < 300 && sim_count_fds() - before >= 10; i++)
        usleep(10000);
    fx_good_check(f, "connect/disconnect churn");
    after = sim_count_fds();
    if (after - before >= 10 && getenv("SIM_FD_DUMP"))
        if (system("ls -l /proc/$PPID/fd | awk '{print $NF}' | sed 's/[0-9]*]$//' | "
                   "sort | uniq -c") < 0)
            perror("system");
    print_message("  fds before churn %d, after %d (partitions %u)\n", before, after,
                  vmbusd_partition_count(simd_vmbusd(f->d)));
    SIM_ASSERT(after - before < 10, "30 connect/disconnect cycles leaked %d fds", after - before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_framing, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_types_and_order, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_duplicate_name, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_vcpus, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fd_leaks, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fd_quota, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_memory_fd_kinds, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_memory_shrink, fx_setup, fx_teardown),
        /* last: a daemon that maps beyond the memfd dies of SIGBUS here */
        cmocka_unit_test_setup_teardown(test_memory_regions, fx_setup, fx_teardown),
    };
    SIM_RUN("sim_bad_vu", tests);
}
