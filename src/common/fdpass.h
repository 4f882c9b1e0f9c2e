/* SPDX-License-Identifier: MIT */
/*
 * One datagram with file descriptors attached (SCM_RIGHTS) over a Unix
 * socket: how vmbus-user messages travel between vmbusd, vmbus-vmm and the
 * simulator's VMM side.
 */
#ifndef VMBUSD_FDPASS_H
#define VMBUSD_FDPASS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#define FDPASS_MAX_FDS 16 /* the most one call sends or keeps */

/* sendmsg() of iov[0..iovcnt) with fds[0..nfds) attached, retried on EINTR;
 * flags as for sendmsg (MSG_NOSIGNAL is added).  Returns the bytes sent, or
 * -1 with errno (EINVAL for more than FDPASS_MAX_FDS fds). */
ssize_t fdpass_send(int sock, const struct iovec *iov, int iovcnt, const int *fds, int nfds,
                    int flags);

/* recvmsg() of one datagram into buf[0..len), fds close-on-exec (not retried:
 * EINTR is the caller's to handle).  Up to max_fds (at most FDPASS_MAX_FDS)
 * received descriptors go to fds[], their count to *nfds; any beyond that
 * are closed.  *truncated: the datagram or its fds did not fit (the caller
 * treats the message as malformed and closes fds[]).  Returns the bytes
 * received, 0 at EOF, -1 with errno. */
ssize_t fdpass_recv(int sock, void *buf, size_t len, int *fds, int max_fds, int *nfds,
                    bool *truncated, int flags);

/* close() each of fds[0..n). */
void fdpass_close(const int *fds, int n);

#endif
