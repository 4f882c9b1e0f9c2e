/* SPDX-License-Identifier: MIT */
/*
 * storvsp serving block devices (loop devices made by the test, see
 * tests/unit/storvsp/loopdev.h) to the storvsc-like guest:
 *   bd-a: LUN 0 a 512-byte-sector device, LUN 1 a read-only device the
 *         configuration asks read-write for, LUN 2 a 4096-byte-sector device;
 *   bd-b: LUN 0 the same device as bd-a's LUN 0.
 * What was written is on the device (its backing file), the read-only device
 * is a read-only LUN with a warning naming the VM, the 4K device shows 512e
 * geometry, and bd-b is refused while bd-a holds the device; bd-a is not
 * disturbed by that.  Exits 77 where loop devices cannot be made.
 */
#include "sim_test.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "../unit/storvsp/loopdev.h"
#include "sim_storvsc.h"
#include "stor_fx.h"

#define VM_BD_A "bd-a"
#define VM_BD_B "bd-b"
#define IMG_SIZE (4u << 20)
#define NDEV 3

struct bd_fx {
    struct stor_fx sf;     /* its daemon (sf.d) and directory; no images of its own */
    char file[NDEV][96];
    struct loopdev loop[NDEV];
};

static void make_file(const char *path, uint64_t seed)
{
    uint8_t *pat = malloc(IMG_SIZE);
    assert_non_null(pat);
    sim_fill_pattern(pat, IMG_SIZE, seed);
    int fd = open(path, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, pat, IMG_SIZE), IMG_SIZE);
    close(fd);
    free(pat);
}

static int bd_setup(void **state)
{
    struct bd_fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    for (int i = 0; i < NDEV; i++)
        f->loop[i].fd = -1;
    *state = f;
    snprintf(f->sf.dir, sizeof(f->sf.dir), "/tmp/vmbusd-bd.XXXXXX");
    assert_non_null(mkdtemp(f->sf.dir));
    static const unsigned sector[NDEV] = { 512, 512, 4096 };
    static const bool ro[NDEV] = { false, true, false };
    for (int i = 0; i < NDEV; i++) {
        snprintf(f->file[i], sizeof(f->file[i]), "%s/dev%d.img", f->sf.dir, i);
        make_file(f->file[i], 500 + (uint64_t)i);
        loopdev_attach(f->file[i], sector[i], ro[i], &f->loop[i]);
    }
    static char p[NDEV + 1][96];
    for (int i = 0; i < NDEV; i++)
        snprintf(p[i], sizeof(p[i]), "%s lun=%d", f->loop[i].path, i);
    snprintf(p[NDEV], sizeof(p[NDEV]), "%s lun=0", f->loop[0].path);
    static const struct sim_vm_cfg vms[] = { { VM_BD_A, "storvsp" }, { VM_BD_B, "storvsp" } };
    const struct sim_vm_param vp[] = {
        { VM_BD_A, "storvsp", "disk", p[0] }, { VM_BD_A, "storvsp", "disk", p[1] },
        { VM_BD_A, "storvsp", "disk", p[2] }, { VM_BD_B, "storvsp", "disk", p[3] },
        { NULL, NULL, NULL, NULL },
    };
    simd_vm_params = vp;
    sim_log_clear();
    sim_expect_offers_default = 0;
    f->sf.d = simd_start_params(vms, 2, 1, NULL, 0);
    simd_vm_params = NULL;
    return f->sf.d ? 0 : -1;
}

static int bd_teardown(void **state)
{
    struct bd_fx *f = *state;
    if (!f)
        return 0;
    if (f->sf.d)
        simd_stop(f->sf.d);
    for (int i = 0; i < NDEV; i++) {
        loopdev_detach(&f->loop[i]);
        unlink(f->file[i]);
    }
    rmdir(f->sf.dir);
    free(f);
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* READ CAPACITY(16) of lun into out[32]. */
static void read_capacity16(struct sim_stor *s, uint8_t lun, uint8_t *out)
{
    uint64_t off = sim_alloc_pages(s->vm, 1);
    uint8_t cdb[16] = { 0x9e, 0x10 };
    cdb[13] = 32;
    struct vstor_srb srb;
    SIM_ASSERT(sim_stor_srb(s, 0, lun, cdb, 16, VSTOR_DATA_IN, off, 32, &srb, NULL) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS,
               "READ CAPACITY(16) of LUN %u: srb %#x", lun, srb.srb_status);
    memcpy(out, s->vm->mem + off, 32);
}

/* bd-a: I/O on the 512-byte device lands in its backing file; the
 * read-only device refuses writes (DATA PROTECT) and reads; the 4K device is
 * 512e; the log says which device is read-only, naming the VM. */
static void test_block_devices(void **state)
{
    struct bd_fx *f = *state;
    struct sim_vm *vm = stor_vm(&f->sf, VM_BD_A);
    struct sim_stor *s = stor_up(vm, 0);
    SIM_ASSERT(s != NULL, "init");
    SIM_ASSERT(sim_log_count(LOG_WARN, VM_BD_A, f->loop[1].path, "read-only block device") > 0,
               "no warning names the VM and the read-only device");

    const uint16_t blocks = 16;
    uint64_t wbuf = sim_alloc_pages(vm, 2), rbuf = sim_alloc_pages(vm, 2);
    sim_fill_pattern(vm->mem + wbuf, blocks * 512, 4242);
    struct vstor_srb srb;
    SIM_ASSERT(sim_stor_rw(s, 0, 0, true, 300, blocks, wbuf, &srb) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS,
               "write: srb %#x scsi %#x", srb.srb_status, srb.scsi_status);
    uint8_t sync[10] = { 0x35 };
    SIM_ASSERT(sim_stor_srb(s, 0, 0, sync, 10, VSTOR_DATA_NONE, 0, 0, &srb, NULL) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS,
               "SYNCHRONIZE CACHE: srb %#x", srb.srb_status);
    SIM_ASSERT(sim_stor_rw(s, 0, 0, false, 300, blocks, rbuf, &srb) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS &&
                   memcmp(vm->mem + rbuf, vm->mem + wbuf, blocks * 512) == 0,
               "read back differs (srb %#x)", srb.srb_status);
    uint8_t file[16 * 512];
    stor_read_image(f->file[0], 300 * 512, file, sizeof(file));
    SIM_ASSERT(memcmp(file, vm->mem + wbuf, sizeof(file)) == 0,
               "the device's backing file does not hold what was written");

    SIM_ASSERT(sim_stor_rw(s, 0, 1, true, 0, 8, wbuf, &srb) == 0 &&
                   (srb.srb_status & ~SRB_STATUS_AUTOSENSE_VALID) == SRB_STATUS_ERROR &&
                   (srb.cdb_sense[2] & 0xf) == 0x7 && srb.cdb_sense[12] == 0x27,
               "write to the read-only device: srb %#x sense %x/%02x", srb.srb_status,
               srb.cdb_sense[2] & 0xf, srb.cdb_sense[12]);
    uint8_t orig[8 * 512];
    SIM_ASSERT(sim_stor_rw(s, 0, 1, false, 0, 8, rbuf, &srb) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS,
               "read from the read-only device");
    stor_read_image(f->file[1], 0, orig, sizeof(orig));
    SIM_ASSERT(memcmp(orig, vm->mem + rbuf, sizeof(orig)) == 0,
               "the read-only device reads other data than its file");

    uint8_t cap[32];
    read_capacity16(s, 2, cap);
    SIM_ASSERT(be32(cap + 4) == IMG_SIZE / 512 - 1 && be32(cap + 8) == 512 &&
                   (cap[13] & 0xf) == 3 && !(cap[14] & 0x80),
               "4K device: last LBA %u, block %u, exponent %u, LBPME %u", be32(cap + 4),
               be32(cap + 8), cap[13] & 0xf, cap[14] >> 7);
    SIM_ASSERT(s->bad_packets == 0 && vm->bad_host_msgs == 0, "malformed host packets");
    sim_stor_free(s);
    sim_vm_free(vm);
}

/* bd-b names bd-a's device: while bd-a holds it, bd-b is refused at HELLO
 * with EBUSY and a reason; bd-a keeps working. */
static void test_device_in_use(void **state)
{
    struct bd_fx *f = *state;
    struct sim_vm *a = stor_vm(&f->sf, VM_BD_A);
    struct sim_stor *s = stor_up(a, 0);
    SIM_ASSERT(s != NULL, "bd-a up");
    struct sim_vm *b = sim_vm_new(f->sf.d, &(struct sim_vm_opts){.name = VM_BD_B, .no_setup = true});
    SIM_ASSERT(b != NULL, "connect bd-b");
    SIM_ASSERT(sim_vmm_hello(b) < 0, "bd-b was accepted with a device bd-a serves");
    SIM_ASSERT(b->error_code == EBUSY && strstr(b->error, f->loop[0].path) &&
                   strstr(b->error, "in use"),
               "bd-b's VMM got '%s' (code %u)", b->error, b->error_code);
    sim_vm_free(b);
    SIM_ASSERT(sim_log_count(LOG_ERR, VM_BD_B, f->loop[0].path, "in use") > 0,
               "no log line names bd-b and the device in use");
    uint64_t buf = sim_alloc_pages(a, 1);
    struct vstor_srb srb;
    SIM_ASSERT(sim_stor_rw(s, 0, 0, true, 8, 8, buf, &srb) == 0 &&
                   srb.srb_status == SRB_STATUS_SUCCESS,
               "bd-a still writes");
    sim_stor_free(s);
    sim_vm_free(a);
}

int main(void)
{
    const char *why = loopdev_unavailable();
    if (why) {
        fprintf(stderr, "SKIP: %s\n", why);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_block_devices, bd_setup, bd_teardown),
        cmocka_unit_test_setup_teardown(test_device_in_use, bd_setup, bd_teardown),
    };
    return cmocka_run_group_tests_name("storvsp on block devices", tests, NULL, NULL);
}
