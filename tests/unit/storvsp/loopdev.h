/* SPDX-License-Identifier: MIT */
/* Loop devices for the block-device backend tests: what
 * `losetup --find --show [--sector-size N] [-r] FILE` does, through the loop
 * ioctls, with autoclear set so the kernel detaches the device when its last
 * opener closes it: a test that fails, aborts or is killed leaves no loop
 * device behind (its holder fd dies with it). */
#ifndef STOR_LOOPDEV_H
#define STOR_LOOPDEV_H

#include <stdbool.h>
#include <stddef.h>

struct loopdev {
    int fd;          /* holds the device; closing it detaches it */
    char path[32];   /* /dev/loopN */
};

/* Why loop devices cannot be made here ("not root", "no /dev/loop-control"),
 * or NULL when they can: the tests exit 77 with it. */
const char *loopdev_unavailable(void);
/* Attach file (sector_size 0 = 512; ro: a read-only device).  Fails the
 * test on error. */
void loopdev_attach(const char *file, unsigned sector_size, bool ro, struct loopdev *out);
/* Detach now (LOOP_CLR_FD, then close the holder). */
void loopdev_detach(struct loopdev *l);

#endif
