/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous block backend of the storage VSP: a raw image file or a block
 * device, read and written through per-channel queues.
 *
 *   struct stor_backend  one open image (shared by every channel of a disk);
 *   struct stor_queue    one submission/completion queue, created by the VSP
 *                        for each channel worker: an io_uring, or, where
 *                        io_uring is unavailable (io_uring_queue_init fails:
 *                        seccomp, sysctl kernel.io_uring_disabled, old
 *                        kernel), a small thread pool doing preadv/pwritev/
 *                        fdatasync/fallocate with the same interface;
 *   struct stor_req      one request, owned by the caller (embed it), handed
 *                        back through its done callback.
 *
 * Completion contract (same for both engines): stor_queue_fd() is an eventfd
 * that is readable while completions wait to be reaped.  The VSP gives it to
 * vmbusd (vsp_fd_watch_add) and calls stor_queue_reap() from the watch
 * callback; reap reads the eventfd and runs the done callbacks of finished
 * requests on the calling thread.  Requests reach the kernel (or the pool) at
 * stor_queue_kick(), so a batch of submits costs one system call.  Reaping
 * right after a kick is allowed and cheap: page-cache hits often complete
 * inside io_uring_submit, and reaping them there saves a trip through the
 * eventfd watch (one wake-up of a worker) per request.
 *
 * Threading: a queue is not locked.  All calls on one queue (submit, kick,
 * reap, destroy) must be serialised, which a channel's vmbusd callbacks are.
 * Different queues of one backend may be used from different threads at once.
 * Submit from threads that outlive their requests (vmbusd's worker pool
 * threads do; a short-lived thread such as a control client's does not):
 * io_uring ties a request to the thread that submitted it and may cancel
 * what a leaving thread left in flight.
 *
 * Nothing here logs: the VSP asks stor_backend_describe() and
 * stor_queue_engine_name() and logs them with the VM's name.
 */
#ifndef VMBUSD_STORVSP_BACKEND_H
#define VMBUSD_STORVSP_BACKEND_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#define STOR_BLOCK_SIZE 512u /* the logical block size every backend presents */

struct stor_backend;
struct stor_queue;

struct stor_backend_info {
    uint64_t size;       /* bytes, rounded down to STOR_BLOCK_SIZE */
    uint32_t block_size; /* STOR_BLOCK_SIZE */
    bool readonly;       /* opened read-only: writes and discards complete -EROFS */
    bool device_readonly; /* read-only because the block device is (BLKROGET),
                             though read-write was asked for: the VSP logs it */
    bool blockdev;       /* a block device, not a regular file */
    uint32_t dev_block_size;  /* the device's logical block size (BLKSSZGET);
                                 512 for a file.  Above 512 the guest still sees
                                 512-byte blocks, through the page cache */
    uint32_t phys_block_size; /* reported to the guest as the physical block:
                                 the device's (BLKPBSZGET, at least its logical
                                 block size); 4096 for a file (page-sized holes) */
    bool direct;         /* O_DIRECT in use */
    uint32_t dio_mem_align; /* O_DIRECT memory alignment (1 when buffered); guest
                               buffers not aligned to it are bounced, transparently */
    bool discard;        /* discard punches holes, which read back as zeros (a file
                            system that can punch; a block device with WRITE ZEROES
                            and 512-byte logical blocks) */
    uint64_t file_id;    /* stable per image: a hash of its device and inode numbers */
    char why_buffered[64]; /* when !direct: why ("tmpfs refuses O_DIRECT", ...) */
};

/* stor_backend_open flags */
#define STOR_OPEN_NO_DIRECT 0x1u /* never use O_DIRECT (page-cache I/O) */

/* Open path (regular file or block device).  0 and *out, or -errno with a
 * one-line reason in err ("not a regular file or block device", "size 0 ...").
 * A file whose size is not a multiple of 512 serves the whole blocks only.
 * A block device is opened exclusively (O_EXCL): one that is mounted, part of
 * an md/dm/LVM stack, or served to another VM fails with -EBUSY ("in use"). */
int stor_backend_open(const char *path, bool readonly, unsigned flags,
                      struct stor_backend **out, char *err, size_t errlen);
/* Same over an fd the caller opened (e.g. one passed by a management
 * process); the backend takes ownership of fd even on failure.  Exclusive
 * use of a block device is then the caller's business.  O_DIRECT is
 * used only if fd already has it.  readonly must be true if fd is not
 * writable (not checked: a write then fails with a medium error, which tests
 * use to inject I/O errors deterministically). */
int stor_backend_open_fd(int fd, bool readonly, struct stor_backend **out,
                         char *err, size_t errlen);
/* Every queue must be destroyed first. */
void stor_backend_close(struct stor_backend *b);
const struct stor_backend_info *stor_backend_info(const struct stor_backend *b);
/* One line for the log: "4294967296 bytes, block device, O_DIRECT, discard";
 * a block device's block sizes too ("logical 4096 (512 emulated), physical 4096"). */
void stor_backend_describe(const struct stor_backend *b, char *buf, size_t len);

/* ---- requests ------------------------------------------------------ */
enum stor_op {
    STOR_OP_READ,    /* offset, iov: fill the buffers from the image */
    STOR_OP_WRITE,   /* offset, iov: write the buffers to the image */
    STOR_OP_FLUSH,   /* fdatasync: everything completed before is durable */
    STOR_OP_DISCARD, /* offset, len: punch a hole (fallocate PUNCH_HOLE|KEEP_SIZE;
                        on a block device the kernel makes that WRITE ZEROES
                        without fallback, unmapping where the device can) */
};

struct stor_req;
/* res: bytes transferred (read/write; always the full length, short
 * transfers are continued internally), 0 (flush/discard), or -errno. */
typedef void (*stor_done_fn)(struct stor_req *req, ssize_t res);

struct stor_req {
    /* set by the caller before stor_queue_submit */
    enum stor_op op;
    bool fua;                 /* write: durable before completion (RWF_DSYNC) */
    uint64_t offset;          /* bytes; multiple of STOR_BLOCK_SIZE */
    uint64_t len;             /* discard: bytes (multiple of 512); read/write: set by
                                 submit to the iovecs' total */
    const struct iovec *iov;  /* read/write: must stay valid until done runs */
    int iovcnt;               /* 1..STOR_MAX_IOV */
    stor_done_fn done;
    void *arg;                /* free for the caller */

    /* private to the backend */
    struct {
        struct stor_req *next;
        void *bounce;         /* aligned copy for O_DIRECT */
        struct iovec bounce_iov; /* what of the bounce is left to transfer */
        struct iovec *rest;   /* remainder after a short transfer */
        int restcnt;
        uint64_t done_bytes;
        ssize_t res;
    } priv;
};

#define STOR_MAX_IOV 1024

/* ---- queues -------------------------------------------------------- */
/* stor_queue_create flags */
#define STOR_QUEUE_THREADS 0x1u /* use the thread pool even if io_uring works */

enum stor_engine { STOR_ENGINE_IO_URING, STOR_ENGINE_THREADS };

/* A queue of up to depth requests in flight (1..4096).  0 and *out or -errno.
 * If io_uring cannot be set up, the thread pool is used and
 * stor_queue_uring_errno() says why (0 when io_uring runs or was not tried). */
int stor_queue_create(struct stor_backend *b, unsigned depth, unsigned flags,
                      struct stor_queue **out);
/* Waits for every request in flight and runs their done callbacks (so the
 * caller's buffers are no longer used when it returns), then frees q. */
void stor_queue_destroy(struct stor_queue *q);

enum stor_engine stor_queue_engine(const struct stor_queue *q);
const char *stor_queue_engine_name(const struct stor_queue *q); /* "io_uring", "thread pool" */
int stor_queue_uring_errno(const struct stor_queue *q);
unsigned stor_queue_depth(const struct stor_queue *q);
unsigned stor_queue_inflight(const struct stor_queue *q); /* submitted, not yet reaped */

/* Queue req.  0: done will run from a later stor_queue_reap (never from
 * inside submit).  -EAGAIN: depth requests already in flight.  -EINVAL:
 * malformed (offset/len not block-aligned, past the end, no iovecs, too many
 * iovecs).  -EROFS: write or discard on a read-only backend.  On an error
 * done is not called. */
int stor_queue_submit(struct stor_queue *q, struct stor_req *req);
/* Hand every submitted request to the kernel / the pool (io_uring_submit). */
void stor_queue_kick(struct stor_queue *q);
/* Eventfd, readable while completions wait; owned by q. */
int stor_queue_fd(const struct stor_queue *q);
/* Run the done callbacks of up to max (0 = no limit) finished requests;
 * returns how many ran.  If more are left the eventfd stays readable.  A done
 * callback may submit (and kick) new requests on q. */
unsigned stor_queue_reap(struct stor_queue *q, unsigned max);
/* While quiet, finished requests do not signal the eventfd: for a caller
 * that is about to reap anyway (a completion that comes while it submits
 * would otherwise wake another thread for nothing).  Returns true if
 * finished requests wait to be reaped: after ending quiet, the caller must
 * reap them, nothing else will signal them.  (io_uring only: the thread
 * pool always signals, and this returns false.) */
bool stor_queue_quiet(struct stor_queue *q, bool quiet);

/* tests/sim only (NULL otherwise): a thread-pool thread calls it before
 * each request it carries out, so a test can keep requests in flight. */
extern _Atomic(void (*)(void)) stor_test_pool_hook;

#endif
