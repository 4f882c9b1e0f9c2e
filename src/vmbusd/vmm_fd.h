/* SPDX-License-Identifier: MIT */
/*
 * I/O on file descriptors vmbusd shares with a VMM: the SINT irqfds and
 * resample fds it receives, and the guest-signal eventfds it hands out.
 * The VMM holds the same open file description, so it can clear O_NONBLOCK,
 * preload a counter or read concurrently; nothing here may block.
 */
#ifndef VMBUSD_VMM_FD_H
#define VMBUSD_VMM_FD_H

#include <stdbool.h>
#include <stddef.h>

/* 0 if fd is an eventfd (and, for a fd vmbusd reads, not in semaphore mode);
 * otherwise -1 with the reason in why. */
int vmm_fd_check_eventfd(int fd, bool we_read, char *why, size_t len);

/* Take the counter of an eventfd the VMM shares, never blocking whatever
 * its O_NONBLOCK flag says.  True if it was non-zero. */
bool vmm_eventfd_drain(int fd);

/* Close a fd that came from a VMM without waiting on anyone.  Closing can
 * block: a FUSE file's flush waits for its server, the last reference to a
 * TCP socket with SO_LINGER waits for the peer, a unix socket releases the
 * fds queued in it.  Eventfds, pipes and memfd/tmpfs files are closed here;
 * anything else on a short-lived thread of its own. */
void vmm_fd_close(int fd);

/* Room for the most fds one SCM_RIGHTS message can carry (the kernel's
 * SCM_MAX_FD): with less, recvmsg would drop the excess itself, and that
 * drop is a close in the receiving thread. */
#define VMM_FD_MAX_PASSED 253

#endif
