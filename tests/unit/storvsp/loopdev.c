/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cmocka.h>

#include "loopdev.h"

const char *loopdev_unavailable(void)
{
    static char why[128];
    if (geteuid() != 0)
        return "not root: cannot create loop devices";
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0) {
        snprintf(why, sizeof(why), "/dev/loop-control: %s", strerror(errno));
        return why;
    }
    int n = ioctl(ctl, LOOP_CTL_GET_FREE);
    close(ctl);
    if (n < 0) {
        snprintf(why, sizeof(why), "LOOP_CTL_GET_FREE: %s", strerror(errno));
        return why;
    }
    return NULL;
}

void loopdev_attach(const char *file, unsigned sector_size, bool ro, struct loopdev *out)
{
    int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    assert_true(ctl >= 0);
    int backing = open(file, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    assert_true(backing >= 0);
    /* another process may take the free device between GET_FREE and
     * CONFIGURE (EBUSY): ask again */
    for (int tries = 0; tries < 32; tries++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0)
            fail_msg("LOOP_CTL_GET_FREE: %s", strerror(errno));
        snprintf(out->path, sizeof(out->path), "/dev/loop%d", n);
        /* the loop is read-only unless configured through a writable fd */
        int fd = open(out->path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (fd < 0)
            fail_msg("%s: %s", out->path, strerror(errno));
        struct loop_config cfg = {
            .fd = (uint32_t)backing,
            .block_size = sector_size,
            .info.lo_flags = LO_FLAGS_AUTOCLEAR | (ro ? LO_FLAGS_READ_ONLY : 0),
        };
        if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0) {
            out->fd = fd;
            close(backing);
            close(ctl);
            return;
        }
        int e = errno;
        close(fd);
        if (e != EBUSY)
            fail_msg("LOOP_CONFIGURE %s: %s", out->path, strerror(e));
    }
    fail_msg("no free loop device after 32 tries");
}

void loopdev_detach(struct loopdev *l)
{
    if (l->fd < 0)
        return;
    ioctl(l->fd, LOOP_CLR_FD); /* autoclear does it at close anyway */
    close(l->fd);
    l->fd = -1;
}
