/* SPDX-License-Identifier: MIT */
/*
 * Fixture of the storvsp sim tests: disk images in a temporary directory
 * and an in-process vmbusd whose VMs get storvsp with them.
 *
 *   stor-a      img[0] at LUN 0                  stor-b  img[1] at LUN 0
 *   stor-multi  img[2] controller 0, img[3] controller 1 read-only
 *   stor-hot    no disk (img[4] is hot-added)    stor-bad  img[5]
 *   stor-missing  a disk image that does not exist
 *   stor-big    img[6] at LUN 0, storvsp.max_transfer = 2M
 */
#ifndef VMBUSD_TESTS_STOR_FX_H
#define VMBUSD_TESTS_STOR_FX_H

#include <fcntl.h>
#include <unistd.h>

#include "sim_storvsc.h"
#include "sim_test.h"

#define VM_STOR_A "stor-a"
#define VM_STOR_B "stor-b"
#define VM_STOR_MULTI "stor-multi"
#define VM_STOR_HOT "stor-hot"
#define VM_STOR_BAD "stor-bad"
#define VM_STOR_MISSING "stor-missing"
/* Its image: missing, and with a path longer than ERROR's fixed 128-byte
 * message, so the reason must reach the VMM and the log whole. */
#define STOR_DIR_30 "a-pool-with-long-folder-names/"
#define STOR_MISSING_IMG                                                                  \
    "/nonexistent/" STOR_DIR_30 STOR_DIR_30 STOR_DIR_30 STOR_DIR_30 STOR_DIR_30 STOR_DIR_30 \
        STOR_DIR_30 STOR_DIR_30 "missing.img"
#define VM_STOR_BIG "stor-big"
/* storvsp.max_subchannels = 1 for this VM alone, no disk (controller 0 is
 * offered all the same); every other VM has [vsp storvsp]'s limit. */
#define VM_STOR_FEW "stor-few"
#define STOR_FX_BIG_MAX (2u << 20)
#define STOR_FX_IMAGES 7
#define STOR_FX_IMAGE_SIZE (4u << 20)
#define STOR_FX_SUBCHANNELS 4

struct stor_fx {
    struct sim_daemon *d;
    char dir[64];
    char img[STOR_FX_IMAGES][96];
    char ctl[128]; /* control socket */
};

static inline void stor_read_image(const char *path, uint64_t off, void *buf, size_t len)
{
    int fd = open(path, O_RDONLY);
    memset(buf, 0, len);
    if (fd >= 0) {
        if (pread(fd, buf, len, (off_t)off) < 0)
            perror("pread");
        close(fd);
    }
}

/* The fixture with [vsp storvsp] backend = backend (NULL: not set). */
static inline int stor_fx_start(void **state, const char *backend)
{
    struct stor_fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/vmbusd-stor.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    uint8_t *pat = malloc(STOR_FX_IMAGE_SIZE);
    if (!pat)
        return -1;
    for (int i = 0; i < STOR_FX_IMAGES; i++) {
        snprintf(f->img[i], sizeof(f->img[i]), "%s/disk%d.img", f->dir, i);
        sim_fill_pattern(pat, STOR_FX_IMAGE_SIZE, 77 + (uint64_t)i);
        int fd = open(f->img[i], O_CREAT | O_RDWR | O_TRUNC, 0600);
        if (fd < 0 || write(fd, pat, STOR_FX_IMAGE_SIZE) != (ssize_t)STOR_FX_IMAGE_SIZE) {
            perror(f->img[i]);
            free(pat);
            return -1;
        }
        close(fd);
    }
    free(pat);
    static char p[6][256];
    snprintf(p[0], sizeof(p[0]), "%s lun=0", f->img[0]);
    snprintf(p[1], sizeof(p[1]), "%s", f->img[1]);
    snprintf(p[2], sizeof(p[2]), "%s", f->img[2]);
    snprintf(p[3], sizeof(p[3]), "%s controller=1 readonly", f->img[3]);
    snprintf(p[4], sizeof(p[4]), "%s lun=0", f->img[5]);
    snprintf(p[5], sizeof(p[5]), "%s lun=0", f->img[6]);
    static const struct sim_vm_cfg vms[] = {
        {VM_STOR_A, "storvsp"},     {VM_STOR_B, "storvsp"},   {VM_STOR_MULTI, "storvsp"},
        {VM_STOR_HOT, "storvsp"},   {VM_STOR_BAD, "storvsp"}, {VM_STOR_MISSING, "storvsp"},
        {VM_STOR_BIG, "storvsp"},   {VM_STOR_FEW, "storvsp"},
    };
    const struct sim_vm_param vp[] = {
        {VM_STOR_A, "storvsp", "disk", p[0]},
        {VM_STOR_B, "storvsp", "disk", p[1]},
        {VM_STOR_MULTI, "storvsp", "disk", p[2]},
        {VM_STOR_MULTI, "storvsp", "disk", p[3]},
        {VM_STOR_BAD, "storvsp", "disk", p[4]},
        {VM_STOR_MISSING, "storvsp", "disk", STOR_MISSING_IMG},
        {VM_STOR_BIG, "storvsp", "disk", p[5]},
        {VM_STOR_BIG, "storvsp", "max_transfer", "2M"},
        {VM_STOR_FEW, "storvsp", "max_subchannels", "1"},
        {NULL, NULL, NULL, NULL},
    };
    simd_vm_params = vp;
    char n[8];
    snprintf(n, sizeof(n), "%d", STOR_FX_SUBCHANNELS);
    const struct sim_vsp_param params[] = {{"storvsp", "max_subchannels", n},
                                           {"storvsp", "backend", backend}};
    sim_log_clear();
    sim_expect_offers_default = 0;
    f->d = simd_start_params(vms, (int)(sizeof(vms) / sizeof(vms[0])), 1, params, backend ? 2 : 1);
    simd_vm_params = NULL;
    if (!f->d)
        return -1;
    snprintf(f->ctl, sizeof(f->ctl), "%s", simd_control_path(f->d));
    *state = f;
    return 0;
}

static inline int stor_fx_setup(void **state) { return stor_fx_start(state, NULL); }
static inline int stor_fx_setup_threads(void **state) { return stor_fx_start(state, "threads"); }

static inline int stor_fx_teardown(void **state)
{
    struct stor_fx *f = *state;
    if (!f)
        return 0;
    simd_stop(f->d);
    for (int i = 0; i < STOR_FX_IMAGES; i++)
        unlink(f->img[i]);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* A VM of the fixture up on VMBus 5.3 with its offers in. */
static inline struct sim_vm *stor_vm(struct stor_fx *f, const char *name)
{
    struct sim_vm *vm = sim_vm_create(f->d, name);
    if (!vm)
        return NULL;
    vm->expect_offers = 0;
    if (sim_bringup(vm, VMBUS_VERSION_WIN10_V5_3) < 0) {
        sim_vm_free(vm);
        return NULL;
    }
    return vm;
}

/* Controller n of vm opened and initialised like Linux 6.1 does. */
static inline struct sim_stor *stor_up(struct sim_vm *vm, int n)
{
    static const uint16_t v[] = {VSTOR_VERSION_WIN10, VSTOR_VERSION_WIN8_1, VSTOR_VERSION_WIN8};
    if (!vm)
        return NULL;
    struct sim_stor *s = sim_stor_open(vm, n);
    if (s && sim_stor_init(s, v, 3, VSTOR_PACKET_SIZE) < 0) {
        sim_stor_free(s);
        return NULL;
    }
    return s;
}

#endif
