/* SPDX-License-Identifier: MIT */
/*
 * storvsp against a hostile guest: every vstor packet truncated and
 * oversized, unknown operations, operations out of order, SRBs whose
 * lengths, CDBs, ranges or pages are wrong, LBAs past the end, packets
 * that are not vstor requests, and a guest that never reads its
 * completions.  Each is answered by an error for that request (or, for a
 * packet that is no request at all, the channel stops serving until the
 * guest closes it), with a warning naming the VM, and the other VM's disk
 * keeps working.
 */
#include "sim_test.h"

#include "sim_storvsc.h"
#include "stor_fx.h"

/* The other VM: a write and a read on its disk still work. */
static void other_vm_works(struct stor_fx *f)
{
    struct sim_vm *vm = stor_vm(f, VM_STOR_A);
    struct sim_stor *s = stor_up(vm, 0);
    SIM_ASSERT(s != NULL, "the other VM's controller");
    uint64_t buf = sim_alloc_pages(vm, 1);
    struct vstor_srb srb;
    SIM_ASSERT(sim_stor_rw(s, 0, 0, true, 8, 8, buf, &srb) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS &&
                   sim_stor_rw(s, 0, 0, false, 8, 8, buf, &srb) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS,
               "the other VM's disk stopped working");
    sim_stor_free(s);
    sim_vm_free(vm);
}

static void warned(const char *what)
{
    SIM_ASSERT(sim_log_wait(SIM_TIMEOUT_MS, LOG_WARN, VM_STOR_BAD, what, NULL),
               "no warning naming %s and '%s'", VM_STOR_BAD, what);
}

/* Send len bytes starting with operation op (the rest of a valid 64-byte
 * packet, then zeros): the completion's status, or -1 without one. */
static int64_t raw(struct sim_stor *s, int i, uint32_t op, uint32_t len)
{
    uint8_t buf[4096] = {0};
    struct vstor_packet p = {.operation = op, .flags = 1};
    p.u.version.major_minor = VSTOR_VERSION_WIN10;
    memcpy(buf, &p, sizeof(p) < len ? sizeof(p) : len);
    uint64_t t = s->next_trans++;
    if (sim_stor_send(s, i, buf, len, t) < 0)
        return -1;
    struct vstor_packet rep;
    if (sim_stor_wait(s, i, t, &rep, NULL, SIM_TIMEOUT_MS) != 1)
        return -1;
    if (rep.operation != VSTOR_OP_COMPLETE_IO)
        return -2;
    return rep.status;
}

static void test_truncated_oversized(void **state)
{
    struct stor_fx *f = *state;
    struct sim_vm *vm = stor_vm(f, VM_STOR_BAD);
    struct sim_stor *s = sim_stor_open(vm, 0);
    SIM_ASSERT(s != NULL, "open");
    /* Before init: a 48-byte packet is the smallest a guest may send. */
    /* (VMBus pads to 8 bytes: 41..47 would arrive as 48.) */
    static const uint32_t short_lens[] = {0, 1, 4, 8, 12, 33, 40};
    static const uint32_t long_lens[] = {65, 72, 128, 1000, 4000};
    for (uint32_t op = 0; op <= 14; op++) {
        for (size_t k = 0; k < sizeof(short_lens) / sizeof(short_lens[0]); k++) {
            int64_t st = raw(s, 0, op, short_lens[k]);
            SIM_ASSERT(st == VSTOR_STATUS_INVALID_PARAMETER,
                       "op %u truncated to %u bytes: status %#llx", op, short_lens[k],
                       (long long)st);
        }
        for (size_t k = 0; k < sizeof(long_lens) / sizeof(long_lens[0]); k++) {
            int64_t st = raw(s, 0, op, long_lens[k]);
            SIM_ASSERT(st == VSTOR_STATUS_INVALID_PARAMETER, "op %u of %u bytes: status %#llx",
                       op, long_lens[k], (long long)st);
        }
    }
    warned("bytes");
    /* None of that moved the init state: a normal init works now. */
    static const uint16_t v[] = {VSTOR_VERSION_WIN10};
    SIM_ASSERT(sim_stor_init(s, v, 1, VSTOR_PACKET_SIZE) == 0, "init after garbage");
    /* WIN10 negotiated: 48-byte SRBs are truncated now. */
    for (uint32_t op = 1; op <= 14; op++) {
        int64_t st = raw(s, 0, op, VSTOR_PACKET_SIZE_PRE_WIN8);
        SIM_ASSERT(st == VSTOR_STATUS_INVALID_PARAMETER, "op %u of 48 bytes after WIN10: %#llx",
                   op, (long long)st);
        st = raw(s, 0, op, 72);
        SIM_ASSERT(st == VSTOR_STATUS_INVALID_PARAMETER, "op %u of 72 bytes after WIN10: %#llx",
                   op, (long long)st);
    }
    uint64_t buf = sim_alloc_pages(vm, 1);
    struct vstor_srb srb;
    SIM_ASSERT(sim_stor_rw(s, 0, 0, false, 0, 8, buf, &srb) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS,
               "I/O after the bad packets");
    SIM_ASSERT(s->bad_packets == 0, "host packets Linux would drop");
    sim_stor_free(s);
    sim_vm_free(vm);
    other_vm_works(f);
}

static void test_unknown_and_out_of_order(void **state)
{
    struct stor_fx *f = *state;
    struct sim_vm *vm = stor_vm(f, VM_STOR_BAD);
    struct sim_stor *s = sim_stor_open(vm, 0);
    SIM_ASSERT(s != NULL, "open");
    /* Host-to-guest operations and FC's are unknown requests too. */
    static const uint32_t unknown[] = {0,  VSTOR_OP_COMPLETE_IO, VSTOR_OP_REMOVE_DEVICE,
                                       VSTOR_OP_ENUMERATE_BUS, VSTOR_OP_FCHBA_DATA,
                                       14, 15, 100, 0x80000003u, 0xFFFFFFFFu};
    for (size_t k = 0; k < sizeof(unknown) / sizeof(unknown[0]); k++)
        SIM_ASSERT(raw(s, 0, unknown[k], 64) == VSTOR_STATUS_INVALID_DEVICE_REQUEST,
                   "unknown op %#x", unknown[k]);
    warned("unknown vstor operation");
    /* Before BEGIN_INITIALIZATION everything else is out of order. */
    static const uint32_t early[] = {VSTOR_OP_EXECUTE_SRB, VSTOR_OP_END_INITIALIZATION,
                                     VSTOR_OP_QUERY_PROTOCOL_VERSION, VSTOR_OP_QUERY_PROPERTIES,
                                     VSTOR_OP_CREATE_SUB_CHANNELS};
    for (size_t k = 0; k < sizeof(early) / sizeof(early[0]); k++)
        SIM_ASSERT(raw(s, 0, early[k], 64) == VSTOR_STATUS_INVALID_DEVICE_STATE,
                   "op %u before BEGIN", early[k]);
    warned("out of order");
    SIM_ASSERT(raw(s, 0, VSTOR_OP_BEGIN_INITIALIZATION, 64) == 0, "BEGIN");
    SIM_ASSERT(raw(s, 0, VSTOR_OP_BEGIN_INITIALIZATION, 64) == VSTOR_STATUS_INVALID_DEVICE_STATE,
               "BEGIN twice");
    SIM_ASSERT(raw(s, 0, VSTOR_OP_QUERY_PROPERTIES, 64) == VSTOR_STATUS_INVALID_DEVICE_STATE,
               "QUERY_PROPERTIES before a version");
    SIM_ASSERT(raw(s, 0, VSTOR_OP_END_INITIALIZATION, 64) == VSTOR_STATUS_INVALID_DEVICE_STATE,
               "END before a version");
    SIM_ASSERT(raw(s, 0, VSTOR_OP_QUERY_PROTOCOL_VERSION, 64) == 0, "version (WIN10)");
    SIM_ASSERT(raw(s, 0, VSTOR_OP_QUERY_PROTOCOL_VERSION, 64) ==
                   VSTOR_STATUS_INVALID_DEVICE_STATE,
               "a second version");
    SIM_ASSERT(raw(s, 0, VSTOR_OP_EXECUTE_SRB, 64) == VSTOR_STATUS_INVALID_DEVICE_STATE,
               "SRB before END");
    SIM_ASSERT(raw(s, 0, VSTOR_OP_END_INITIALIZATION, 64) == 0, "END");
    SIM_ASSERT(raw(s, 0, VSTOR_OP_END_INITIALIZATION, 64) == VSTOR_STATUS_INVALID_DEVICE_STATE,
               "END twice");
    /* More subchannels than offered in the properties. */
    struct vstor_packet p = {.operation = VSTOR_OP_CREATE_SUB_CHANNELS, .flags = 1}, rep;
    p.u.sub_channel_count = STOR_FX_SUBCHANNELS + 1;
    SIM_ASSERT(sim_stor_call(s, 0, &p, 64, &rep, NULL) == 0 &&
                   rep.status == VSTOR_STATUS_INVALID_PARAMETER,
               "too many subchannels: %#x", rep.status);
    p.u.sub_channel_count = 0xFFFF;
    SIM_ASSERT(sim_stor_call(s, 0, &p, 64, &rep, NULL) == 0 &&
                   rep.status == VSTOR_STATUS_INVALID_PARAMETER,
               "65535 subchannels: %#x", rep.status);
    /* Resets are answered (nothing to abort). */
    SIM_ASSERT(raw(s, 0, VSTOR_OP_RESET_BUS, 64) == 0 && raw(s, 0, VSTOR_OP_RESET_LUN, 64) == 0 &&
                   raw(s, 0, VSTOR_OP_RESET_ADAPTER, 64) == 0,
               "resets");
    /* Init operations on a subchannel are refused. */
    SIM_ASSERT(sim_stor_subchannels(s, 1) == 0, "one subchannel");
    SIM_ASSERT(raw(s, 1, VSTOR_OP_BEGIN_INITIALIZATION, 64) ==
                   VSTOR_STATUS_INVALID_DEVICE_REQUEST,
               "BEGIN on a subchannel");
    uint64_t buf = sim_alloc_pages(vm, 1);
    struct vstor_srb srb;
    SIM_ASSERT(sim_stor_rw(s, 1, 0, false, 0, 8, buf, &srb) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS,
               "I/O on the subchannel still works");
    sim_stor_free(s);
    sim_vm_free(vm);
    other_vm_works(f);
}

/* An SRB from fields: the completion's SRB status (-1: none). */
static int srb_with(struct sim_stor *s, struct vstor_packet *p, uint32_t range_len,
                    const uint64_t *pfns, uint32_t npfn, uint32_t pgoff)
{
    uint64_t t = s->next_trans++;
    int r = npfn || range_len ? sim_stor_send_gpa(s, 0, t, range_len, pgoff, pfns, npfn, p, 64)
                              : sim_stor_send(s, 0, p, 64, t);
    struct vstor_packet rep;
    if (r < 0 || sim_stor_wait(s, 0, t, &rep, NULL, SIM_TIMEOUT_MS) != 1)
        return -1;
    return rep.u.srb.srb_status;
}

/* The READ(10) packet of s (fields then spoiled one by one). */
static struct vstor_packet read10(const struct sim_stor *s, uint32_t lba, uint16_t blocks)
{
    uint8_t cdb[10];
    sim_stor_rw10_cdb(cdb, false, lba, blocks);
    return sim_stor_srb_packet(s, 0, cdb, 10, VSTOR_DATA_IN, blocks * 512u);
}

static void test_bad_srbs(void **state)
{
    struct stor_fx *f = *state;
    struct sim_vm *vm = stor_vm(f, VM_STOR_BAD);
    struct sim_stor *s = stor_up(vm, 0);
    SIM_ASSERT(s != NULL, "init");
    uint64_t off = sim_alloc_pages(vm, 2);
    uint64_t pfns[2] = {sim_page_pfn(vm, off), sim_page_pfn(vm, off + 4096)};
    struct vstor_packet p = read10(s, 0, 8);
    SIM_ASSERT(srb_with(s, &p, 4096, pfns, 1, 0) == SRB_STATUS_SUCCESS, "a good read");

    /* Transfer longer than the range it names. */
    p = read10(s, 0, 16);
    SIM_ASSERT(srb_with(s, &p, 4096, pfns, 1, 0) == SRB_STATUS_INVALID_REQUEST,
               "8 KiB transfer into a 4 KiB range");
    warned("longer than its GPA ranges");
    /* A page outside guest RAM, in the first and in a later slot. */
    uint64_t outside[2] = {vm->mem_size / 4096 + 10, pfns[0]};
    p = read10(s, 0, 16);
    SIM_ASSERT(srb_with(s, &p, 8192, outside, 2, 0) == SRB_STATUS_INVALID_REQUEST,
               "first page outside RAM");
    outside[0] = pfns[0];
    outside[1] = ~0ull >> 12;
    SIM_ASSERT(srb_with(s, &p, 8192, outside, 2, 0) == SRB_STATUS_INVALID_REQUEST,
               "second page outside RAM");
    /* Malformed ranges: offset past the page, length beyond the PFNs. */
    p = read10(s, 0, 8);
    SIM_ASSERT(srb_with(s, &p, 4096, pfns, 1, 4096) == SRB_STATUS_INVALID_REQUEST,
               "range offset 4096");
    SIM_ASSERT(srb_with(s, &p, 8192, pfns, 1, 0) == SRB_STATUS_INVALID_REQUEST,
               "range longer than its PFN list");
    /* Data without ranges, CDB lengths, direction, transfer size. */
    p = read10(s, 0, 8);
    SIM_ASSERT(srb_with(s, &p, 0, NULL, 0, 0) == SRB_STATUS_INVALID_REQUEST,
               "data transfer in an inband packet");
    p.u.srb.cdb_length = 0;
    SIM_ASSERT(srb_with(s, &p, 4096, pfns, 1, 0) == SRB_STATUS_INVALID_REQUEST, "CDB length 0");
    p.u.srb.cdb_length = 17;
    SIM_ASSERT(srb_with(s, &p, 4096, pfns, 1, 0) == SRB_STATUS_INVALID_REQUEST, "CDB length 17");
    p = read10(s, 0, 8);
    p.u.srb.data_in = 3;
    SIM_ASSERT(srb_with(s, &p, 4096, pfns, 1, 0) == SRB_STATUS_INVALID_REQUEST, "data_in 3");
    p = read10(s, 0, 8);
    p.u.srb.data_transfer_length = 0xFFFFFFFFu;
    SIM_ASSERT(srb_with(s, &p, 4096, pfns, 1, 0) == SRB_STATUS_INVALID_REQUEST,
               "4 GiB transfer");
    /* LBAs past the end: CHECK CONDITION, ILLEGAL REQUEST, LBA OUT OF RANGE. */
    uint32_t blocks = STOR_FX_IMAGE_SIZE / 512;
    uint32_t lbas[] = {blocks, blocks - 4, 0xFFFFFFFFu};
    for (size_t k = 0; k < sizeof(lbas) / sizeof(lbas[0]); k++) {
        p = read10(s, lbas[k], 8);
        uint64_t t = s->next_trans++;
        struct vstor_packet rep;
        SIM_ASSERT(sim_stor_send_gpa(s, 0, t, 4096, 0, pfns, 1, &p, 64) == 0 &&
                       sim_stor_wait(s, 0, t, &rep, NULL, SIM_TIMEOUT_MS) == 1,
                   "read at LBA %u", lbas[k]);
        SIM_ASSERT(rep.u.srb.scsi_status == 2 &&
                       (rep.u.srb.srb_status & SRB_STATUS_AUTOSENSE_VALID) &&
                       (rep.u.srb.cdb_sense[2] & 0xf) == 5 && rep.u.srb.cdb_sense[12] == 0x21 &&
                       rep.u.srb.data_transfer_length == 0,
                   "read at LBA %u: scsi %#x srb %#x sense %#x/%#x", lbas[k],
                   rep.u.srb.scsi_status, rep.u.srb.srb_status, rep.u.srb.cdb_sense[2],
                   rep.u.srb.cdb_sense[12]);
    }
    /* Every opcode with garbage in the CDB and the buffer: each completes. */
    uint8_t cdb[16];
    for (int op = 0; op < 256; op++) {
        sim_fill_pattern(cdb, sizeof(cdb), (uint64_t)op);
        cdb[0] = (uint8_t)op;
        for (int dir = 0; dir < 3; dir++) {
            uint64_t t = sim_stor_srb_send(s, 0, (uint8_t)(op & 1), cdb, 16, (uint8_t)dir, off,
                                           0, dir == 2 ? 0 : 8192);
            SIM_ASSERT(t && sim_stor_wait(s, 0, t, NULL, NULL, SIM_TIMEOUT_MS) == 1,
                       "opcode %#x direction %d: no completion", op, dir);
        }
    }
    SIM_ASSERT(s->bad_packets == 0, "host packets Linux would drop");
    sim_stor_free(s);
    sim_vm_free(vm);
    other_vm_works(f);
}

/* A VMBus packet that is no vstor request (a completion, a GPADL packet
 * type): the channel stops serving; closed and opened again it works. */
static void test_wrong_packet_type(void **state)
{
    struct stor_fx *f = *state;
    struct sim_vm *vm = stor_vm(f, VM_STOR_BAD);
    struct sim_stor *s = stor_up(vm, 0);
    SIM_ASSERT(s != NULL, "init");
    struct vstor_packet p = {.operation = VSTOR_OP_RESET_BUS, .flags = 1};
    SIM_ASSERT(sim_chan_send(s->ch[0], VM_PKT_COMP, 0, 99, &p, 64) == 0, "send a COMP");
    warned("not a vstor request");
    uint64_t t = s->next_trans++;
    SIM_ASSERT(sim_stor_send(s, 0, &p, 64, t) == 0, "send");
    SIM_ASSERT(sim_stor_wait(s, 0, t, NULL, NULL, 300) == 0, "a failed channel answered");
    sim_stor_free(s);
    s = stor_up(vm, 0);
    SIM_ASSERT(s != NULL, "init after reopen");
    uint64_t buf = sim_alloc_pages(vm, 1);
    struct vstor_srb srb;
    SIM_ASSERT(sim_stor_rw(s, 0, 0, false, 0, 8, buf, &srb) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS,
               "I/O after reopen");
    sim_stor_free(s);
    sim_vm_free(vm);
    other_vm_works(f);
}

/* The guest fills its ring with requests and never reads a completion:
 * storvsp takes only what it can answer and waits; once the guest reads,
 * every request is completed exactly once. */
static void test_completion_flood(void **state)
{
    struct stor_fx *f = *state;
    struct sim_vm *vm = stor_vm(f, VM_STOR_BAD);
    /* 8 KiB for completions (about 100), 128 KiB for requests (~1200). */
    struct sim_stor *s = sim_stor_open_rings(vm, 0, SIM_STOR_RING_PAGES, 3);
    static const uint16_t v[] = {VSTOR_VERSION_WIN10};
    SIM_ASSERT(s != NULL && sim_stor_init(s, v, 1, VSTOR_PACKET_SIZE) == 0, "init");
    uint64_t off = sim_alloc_pages(vm, 1);
    uint64_t pfn = sim_page_pfn(vm, off);
    struct vstor_packet p = read10(s, 0, 8);
    uint64_t first = s->next_trans;
    unsigned sent = 0;
    /* Until the guest->host ring is full, with pauses so the host takes
     * what it can: the completions fill the host->guest ring first. */
    for (int idle = 0; idle < 20;) {
        uint32_t hlen = 24;
        uint8_t hdr[24] = {0};
        uint32_t one = 1, len = 4096;
        memcpy(hdr + 4, &one, 4);
        memcpy(hdr + 8, &len, 4);
        memcpy(hdr + 16, &pfn, 8);
        int r = sim_chan_send_hdr(s->ch[0], VM_PKT_DATA_USING_GPA_DIRECT, 1, s->next_trans, hdr,
                                  hlen, &p, 64);
        if (r == -EAGAIN) {
            idle++;
            sim_poll(vm, 20);
            continue;
        }
        SIM_ASSERT(r == 0, "send: %d", r);
        s->next_trans++;
        sent++;
    }
    SIM_ASSERT(sent > 1000, "only %u requests fit", sent);
    /* storvsp took only what it could answer: most requests still wait in
     * the guest's ring. */
    struct vmbus_ring_header *out = s->ch[0]->out.hdr;
    uint32_t waiting = (out->write_index - out->read_index + s->ch[0]->out.size) %
                       s->ch[0]->out.size;
    SIM_ASSERT(waiting > s->ch[0]->out.size / 2, "only %u bytes of requests left unread",
               waiting);
    /* Now read: every one completes, once. */
    unsigned got = 0;
    for (uint64_t t = first; t < s->next_trans; t++) {
        struct vstor_packet rep;
        SIM_ASSERT(sim_stor_wait(s, 0, t, &rep, NULL, SIM_TIMEOUT_MS) == 1,
                   "request %llu of %u never completed", (unsigned long long)(t - first), sent);
        SIM_ASSERT(rep.u.srb.srb_status == SRB_STATUS_SUCCESS, "request %llu failed",
                   (unsigned long long)(t - first));
        got++;
    }
    struct vstor_packet extra;
    SIM_ASSERT(sim_stor_wait(s, 0, first - 1, &extra, NULL, 200) == 0 && s->bad_packets == 0,
               "stray completions");
    SIM_ASSERT(got == sent, "%u of %u", got, sent);
    sim_stor_free(s);
    sim_vm_free(vm);
    other_vm_works(f);
}

/* The VMM goes away with requests in flight on every channel: vmbusd
 * completes them into the closed channels, closes the image, and the same
 * VM connects again and finds its disk. */
static void test_vm_gone_with_io(void **state)
{
    struct stor_fx *f = *state;
    for (int round = 0; round < 3; round++) {
        struct sim_vm *vm = stor_vm(f, VM_STOR_BAD);
        struct sim_stor *s = stor_up(vm, 0);
        SIM_ASSERT(s != NULL && sim_stor_subchannels(s, 2) == 0, "init, round %d", round);
        uint64_t bufs = sim_alloc_pages(vm, 96);
        for (int k = 0; k < 96; k++) {
            SIM_ASSERT(sim_stor_rw_send(s, k % s->nch, 0, k & 1, (uint32_t)k * 8, 8,
                                        bufs + 4096ull * (uint64_t)k) != 0,
                       "send %d", k);
        }
        /* no close, no unload: the VMM just disconnects */
        free(s);
        sim_vm_free(vm);
    }
    struct sim_vm *vm = stor_vm(f, VM_STOR_BAD);
    struct sim_stor *s = stor_up(vm, 0);
    SIM_ASSERT(s != NULL, "the VM comes back");
    uint64_t buf = sim_alloc_pages(vm, 1);
    struct vstor_srb srb;
    SIM_ASSERT(sim_stor_rw(s, 0, 0, false, 0, 8, buf, &srb) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS,
               "I/O after reconnecting");
    sim_stor_free(s);
    sim_vm_free(vm);
    other_vm_works(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_truncated_oversized, stor_fx_setup,
                                        stor_fx_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_out_of_order, stor_fx_setup,
                                        stor_fx_teardown),
        cmocka_unit_test_setup_teardown(test_bad_srbs, stor_fx_setup, stor_fx_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_packet_type, stor_fx_setup, stor_fx_teardown),
        cmocka_unit_test_setup_teardown(test_completion_flood, stor_fx_setup, stor_fx_teardown),
        cmocka_unit_test_setup_teardown(test_vm_gone_with_io, stor_fx_setup, stor_fx_teardown),
    };
    SIM_RUN("storvsp bad input", tests);
}
