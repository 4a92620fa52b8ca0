/*
 * The "file" protocol driver: a regular file (or block device).
 *
 * aio=threads does blocking preadv/pwritev in the calling thread, which is
 * already a worker (an NBD client's, a job's). aio=native submits to a
 * Linux AIO context and waits for its completion, which a per-node thread
 * collects; it needs O_DIRECT, as in QEMU. Copy offload between two file
 * nodes is copy_file_range(2), in the calling thread whatever the aio mode.
 *
 * Locking: the same open file description locks QEMU takes, so that QEMU
 * and blkd processes see each other: for each permission bit i a shared
 * lock on byte 100+i while some user needs it, and on byte 200+i while
 * some user does not share it. A conflicting lock held elsewhere refuses
 * the permission.
 */
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "block/block_int.h"

#define LOCK_PERM_BASE 100
#define LOCK_SHARED_BASE 200
#define LOCK_BITS 4                 /* consistent read, write, write unchanged, resize */
#define AIO_DEPTH 128

typedef struct FileAio {
    io_context_t ctx;
    GThread *reaper;
    GMutex lock;
    GCond cond;
    int in_flight;
    bool stopping;
} FileAio;

typedef struct BDRVFileState {
    int fd;
    bool locking;
    uint64_t locked_perm, locked_unshared;
    FileAio *aio;               /* aio=native only */
} BDRVFileState;

typedef struct FileAioRequest {
    struct iocb cb;
    long ret;
    bool done;
} FileAioRequest;

/* ---- Linux AIO ---------------------------------------------------------- */

static gpointer aio_reaper(gpointer opaque)
{
    FileAio *aio = opaque;
    struct io_event events[AIO_DEPTH];

    for (;;) {
        int i, n = io_getevents(aio->ctx, 1, AIO_DEPTH, events, NULL);

        if (n == -EINTR) {
            continue;
        }
        g_assert(n > 0);
        g_mutex_lock(&aio->lock);
        for (i = 0; i < n; i++) {
            FileAioRequest *req = events[i].data;

            if (!req) {             /* the wake-up sent at close */
                aio->stopping = true;
                continue;
            }
            req->ret = (long)events[i].res;
            req->done = true;
            aio->in_flight--;
        }
        g_cond_broadcast(&aio->cond);
        if (aio->stopping && aio->in_flight == 0) {
            g_mutex_unlock(&aio->lock);
            return NULL;
        }
        g_mutex_unlock(&aio->lock);
    }
}

static int aio_rw(FileAio *aio, int fd, bool write, int64_t offset,
                  int64_t bytes, void *buf)
{
    FileAioRequest req = { .done = false };
    struct iocb *cbs[1] = { &req.cb };
    int ret;

    if (write) {
        io_prep_pwrite(&req.cb, fd, buf, bytes, offset);
    } else {
        io_prep_pread(&req.cb, fd, buf, bytes, offset);
    }
    req.cb.data = &req;
    g_mutex_lock(&aio->lock);
    while (aio->in_flight >= AIO_DEPTH) {
        g_cond_wait(&aio->cond, &aio->lock);
    }
    aio->in_flight++;
    ret = io_submit(aio->ctx, 1, cbs);
    if (ret != 1) {
        aio->in_flight--;
        g_mutex_unlock(&aio->lock);
        return ret < 0 ? ret : -EIO;
    }
    while (!req.done) {
        g_cond_wait(&aio->cond, &aio->lock);
    }
    g_mutex_unlock(&aio->lock);
    if (req.ret < 0) {
        return req.ret;
    }
    return req.ret;     /* bytes transferred */
}

static FileAio *aio_start(Error **errp)
{
    FileAio *aio = g_new0(FileAio, 1);
    int ret = io_setup(AIO_DEPTH, &aio->ctx);

    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to set up Linux AIO");
        g_free(aio);
        return NULL;
    }
    g_mutex_init(&aio->lock);
    g_cond_init(&aio->cond);
    aio->reaper = g_thread_new("blkd-aio", aio_reaper, aio);
    return aio;
}

static void aio_stop(FileAio *aio, int fd)
{
    struct iocb cb;
    struct iocb *cbs[1] = { &cb };
    char byte;

    /* A read whose event carries no request tells the reaper to finish. */
    io_prep_pread(&cb, fd, &byte, 0, 0);
    cb.data = NULL;
    if (io_submit(aio->ctx, 1, cbs) == 1) {
        g_thread_join(aio->reaper);
    }
    io_destroy(aio->ctx);
    g_mutex_clear(&aio->lock);
    g_cond_clear(&aio->cond);
    g_free(aio);
}

/* ---- locks -------------------------------------------------------------- */

static int lock_byte(int fd, int64_t byte, bool lock)
{
    struct flock fl = {
        .l_whence = SEEK_SET,
        .l_start = byte,
        .l_len = 1,
        .l_type = lock ? F_RDLCK : F_UNLCK,
    };

    return fcntl(fd, F_OFD_SETLK, &fl) < 0 ? -errno : 0;
}

/* Whether another open file description holds a lock on the byte. */
static bool byte_locked_elsewhere(int fd, int64_t byte)
{
    struct flock fl = {
        .l_whence = SEEK_SET,
        .l_start = byte,
        .l_len = 1,
        .l_type = F_WRLCK,
    };

    return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

/* -EAGAIN if another process holds what perm needs or what unshared denies. */
static int locks_clash(int fd, uint64_t perm, uint64_t unshared, Error **errp)
{
    char name[32];
    int i;

    for (i = 0; i < LOCK_BITS; i++) {
        uint64_t bit = 1ull << i;

        /* QEMU's hint ("Is another process using the image?") is not sent over QMP. */
        if ((perm & bit) && byte_locked_elsewhere(fd, LOCK_SHARED_BASE + i)) {
            error_setg(errp, "Failed to get \"%s\" lock",
                       bdrv_perm_names(bit, name, sizeof(name)));
            return -EAGAIN;
        }
        if ((unshared & bit) && byte_locked_elsewhere(fd, LOCK_PERM_BASE + i)) {
            error_setg(errp, "Failed to get shared \"%s\" lock",
                       bdrv_perm_names(bit, name, sizeof(name)));
            return -EAGAIN;
        }
    }
    return 0;
}

static int file_check_perm(BlockDriverState *bs, uint64_t perm, uint64_t shared,
                           Error **errp)
{
    BDRVFileState *s = bs->opaque;

    return s->locking ? locks_clash(s->fd, perm, ~shared, errp) : 0;
}

static void file_set_perm(BlockDriverState *bs, uint64_t perm, uint64_t shared)
{
    BDRVFileState *s = bs->opaque;
    uint64_t unshared = ~shared & BLK_PERM_ALL;
    int i;

    if (!s->locking) {
        return;
    }
    for (i = 0; i < LOCK_BITS; i++) {
        uint64_t bit = 1ull << i;

        if ((perm ^ s->locked_perm) & bit) {
            lock_byte(s->fd, LOCK_PERM_BASE + i, perm & bit);
        }
        if ((unshared ^ s->locked_unshared) & bit) {
            lock_byte(s->fd, LOCK_SHARED_BASE + i, unshared & bit);
        }
    }
    s->locked_perm = perm;
    s->locked_unshared = unshared;
}

/* ---- open/close ----------------------------------------------------------- */

static int file_open(BlockDriverState *bs, const BlockdevOptions *opts,
                     Error **errp)
{
    const BlockdevOptionsFile *o = &opts->u.file;
    BDRVFileState *s = bs->opaque;
    int flags = O_CLOEXEC | (bs->read_only ? O_RDONLY : O_RDWR);
    bool native = o->has_aio && o->aio == BLOCKDEV_AIO_OPTIONS_NATIVE;
    struct stat st;

    if (native && !bs->cache_direct) {
        error_setg(errp, "aio=native was specified, but it requires "
                   "cache.direct=on, which was not specified.");
        return -EINVAL;
    }
    if (bs->cache_direct) {
        flags |= O_DIRECT;
    }
    s->fd = open(o->filename, flags);
    if (s->fd < 0) {
        int err = errno;

        error_setg_errno(errp, err, "Could not open '%s'", o->filename);
        return -err;
    }
    if (fstat(s->fd, &st) < 0 || S_ISDIR(st.st_mode)) {
        error_setg(errp, "'%s' is not a file or block device", o->filename);
        close(s->fd);
        return -EINVAL;
    }
    s->locking = !o->has_locking || o->locking != ON_OFF_AUTO_OFF;
    if (native) {
        s->aio = aio_start(errp);
        if (!s->aio) {
            close(s->fd);
            return -EIO;
        }
    }
    bs->filename = g_strdup(o->filename);
    if (bs->cache_direct) {
        /* Safe for every device and file system O_DIRECT is used on. */
        bs->bl.request_alignment = 4096;
        bs->bl.min_mem_alignment = 4096;
    }
    return 0;
}

static void file_close(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;

    if (s->aio) {
        aio_stop(s->aio, s->fd);
    }
    close(s->fd);   /* drops the locks with it */
}

/*
 * Going read-write takes a new open file description, as QEMU's reopen
 * does. It takes the old one's locks before the old one closes, so other
 * processes never see them lapse. Drained: no request uses the old one.
 */
static int file_set_writable(BlockDriverState *bs, Error **errp)
{
    BDRVFileState *s = bs->opaque;
    int fd = open(bs->filename, O_CLOEXEC | O_RDWR |
                  (bs->cache_direct ? O_DIRECT : 0));
    int i;

    if (fd < 0) {
        int err = errno;

        error_setg_errno(errp, err, "Could not reopen file");
        return -err;
    }
    for (i = 0; s->locking && i < LOCK_BITS; i++) {
        if (s->locked_perm & (1ull << i)) {
            lock_byte(fd, LOCK_PERM_BASE + i, true);
        }
        if (s->locked_unshared & (1ull << i)) {
            lock_byte(fd, LOCK_SHARED_BASE + i, true);
        }
    }
    close(s->fd);
    s->fd = fd;
    return 0;
}

/* ---- I/O ---------------------------------------------------------------- */

static int64_t file_getlength(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    off_t end = lseek(s->fd, 0, SEEK_END);

    return end < 0 ? -errno : end;
}

static int file_rw(BlockDriverState *bs, bool write, int64_t offset,
                   int64_t bytes, void *buf, BdrvRequestFlags flags)
{
    BDRVFileState *s = bs->opaque;

    while (bytes > 0) {
        ssize_t n;

        if (s->aio) {
            n = aio_rw(s->aio, s->fd, write, offset, bytes, buf);
        } else if (write) {
            struct iovec iov = { buf, bytes };

            n = pwritev2(s->fd, &iov, 1, offset,
                         (flags & BDRV_REQ_FUA) ? RWF_DSYNC : 0);
            n = n < 0 ? -errno : n;
        } else {
            n = pread(s->fd, buf, bytes, offset);
            n = n < 0 ? -errno : n;
        }
        if (n == -EINTR) {
            continue;
        }
        if (n < 0) {
            return n;
        }
        if (n == 0) {
            if (write) {
                return -EIO;
            }
            /* Past the end of the file: reads return zeroes. */
            memset(buf, 0, bytes);
            return 0;
        }
        offset += n;
        bytes -= n;
        buf = (char *)buf + n;
    }
    return 0;
}

static int file_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       void *buf, BdrvRequestFlags flags)
{
    return file_rw(bs, false, offset, bytes, buf, 0);
}

static int file_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        const void *buf, BdrvRequestFlags flags)
{
    BDRVFileState *s = bs->opaque;
    int ret = file_rw(bs, true, offset, bytes, (void *)buf, flags);

    /* Linux AIO has no per-request FUA here: sync after it. */
    if (ret == 0 && s->aio && (flags & BDRV_REQ_FUA) && fdatasync(s->fd) < 0) {
        ret = -errno;
    }
    return ret;
}

static int file_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, BdrvRequestFlags flags)
{
    BDRVFileState *s = bs->opaque;
    int mode = (flags & BDRV_REQ_MAY_UNMAP) ?
               FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE;

    if (fallocate(s->fd, mode, offset, bytes) == 0) {
        return 0;
    }
    return errno == EOPNOTSUPP || errno == EINVAL ? -ENOTSUP : -errno;
}

static int file_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVFileState *s = bs->opaque;

    if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  offset, bytes) == 0) {
        return 0;
    }
    return errno == EOPNOTSUPP ? -ENOTSUP : -errno;
}

static int file_flush(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;

    return fdatasync(s->fd) < 0 ? -errno : 0;
}

/* The source side ends here: the target side copies from this file. */
static int file_copy_range_from(BlockDriverState *bs, int64_t offset,
                                BdrvChild *dst, int64_t dst_offset,
                                int64_t bytes)
{
    return bdrv_copy_range_to(bs, offset, dst, dst_offset, bytes);
}

static int file_copy_range_to(BlockDriverState *bs, int64_t offset,
                              BlockDriverState *src, int64_t src_offset,
                              int64_t bytes)
{
    BDRVFileState *s = bs->opaque;
    int src_fd;

    if (src->drv != bs->drv) {
        return -ENOTSUP;
    }
    src_fd = ((BDRVFileState *)src->opaque)->fd;
    while (bytes > 0) {
        loff_t in = src_offset, out = offset;
        ssize_t n = copy_file_range(src_fd, &in, s->fd, &out, bytes, 0);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            /* Not between these files (file systems, kernel, O_DIRECT). */
            return errno == EXDEV || errno == ENOSYS || errno == EOPNOTSUPP ||
                   errno == EINVAL ? -ENOTSUP : -errno;
        }
        if (n == 0) {
            /* The source ended early: the read path knows what that reads. */
            return -ENOTSUP;
        }
        src_offset += n;
        offset += n;
        bytes -= n;
    }
    return 0;
}

static int file_block_status(BlockDriverState *bs, bool want_zero,
                             int64_t offset, int64_t bytes, int64_t *pnum,
                             int64_t *map, BlockDriverState **file)
{
    BDRVFileState *s = bs->opaque;
    off_t data, hole;

    *map = offset;
    *file = bs;
    if (!want_zero) {
        *pnum = bytes;
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    data = lseek(s->fd, offset, SEEK_DATA);
    if (data < 0 && errno == ENXIO) {
        *pnum = bytes;      /* a hole up to the end of the file */
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    if (data < 0) {
        *pnum = bytes;      /* no SEEK_DATA here: everything is data */
        return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
    }
    if (data > offset) {
        *pnum = MIN(bytes, data - offset);
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID;
    }
    hole = lseek(s->fd, offset, SEEK_HOLE);
    *pnum = hole < 0 ? bytes : MIN(bytes, MAX(hole - offset, 1));
    return BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
}

static int file_truncate(BlockDriverState *bs, int64_t offset, Error **errp)
{
    BDRVFileState *s = bs->opaque;

    if (ftruncate(s->fd, offset) < 0) {
        int err = errno;

        error_setg_errno(errp, err, "Failed to resize the file");
        return -err;
    }
    return 0;
}

static int64_t file_get_allocated_file_size(BlockDriverState *bs)
{
    BDRVFileState *s = bs->opaque;
    struct stat st;

    return fstat(s->fd, &st) < 0 ? -errno : (int64_t)st.st_blocks * 512;
}

/* ---- blockdev-create ---------------------------------------------------- */

/*
 * Sets the new (empty) file's length, preallocated as asked: QEMU's
 * handle_aiocb_truncate() from length 0, with its texts.
 */
static int file_create_truncate(int fd, int64_t size, PreallocMode prealloc,
                                Error **errp)
{
    g_autofree char *buf = NULL;
    int64_t left = size;
    int err;

    if (size < 0 && prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Cannot use preallocation for shrinking files");
        return -ENOTSUP;
    }
    switch (prealloc) {
    case PREALLOC_MODE_OFF:
        if (ftruncate(fd, size) < 0) {
            err = errno;
            error_setg_errno(errp, err, "Could not resize file");
            return -err;
        }
        return 0;
    case PREALLOC_MODE_FALLOC:
        err = size ? posix_fallocate(fd, 0, size) : 0;
        if (err) {
            error_setg_errno(errp, err, "Could not preallocate new data");
            return -err;
        }
        return 0;
    case PREALLOC_MODE_FULL:
        /* The final size first, so the file system can plan the extents. */
        if (ftruncate(fd, size) < 0) {
            err = errno;
            error_setg_errno(errp, err, "Could not resize file");
            return -err;
        }
        buf = g_malloc0(65536);
        while (left > 0) {
            ssize_t n = pwrite(fd, buf, MIN(left, 65536), size - left);

            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n < 0) {
                err = errno;
                error_setg_errno(errp, err,
                                 "Could not write zeros for preallocation");
                goto fail;
            }
            left -= n;
        }
        if (fsync(fd) < 0) {
            err = errno;
            error_setg_errno(errp, err, "Could not flush file to disk");
            goto fail;
        }
        return 0;
    default:
        error_setg(errp, "Unsupported preallocation mode: %s",
                   PreallocMode_str(prealloc));
        return -ENOTSUP;
    }

fail:
    if (ftruncate(fd, 0) < 0) {
        /* The error above is the one to report. */
    }
    return -err;
}

/*
 * QEMU's raw_co_create: create or truncate the file, hold the lock bytes
 * of write and resize (resize unshared: nobody may resize it meanwhile),
 * set the optional attributes, then the length. Runs in the create job's
 * thread; QEMU's texts.
 */
static int file_create(BlockdevCreateOptions *options, Error **errp)
{
    const BlockdevCreateOptionsFile *o = &options->u.file;
    const uint64_t perm = BLK_PERM_WRITE | BLK_PERM_RESIZE;
    const uint64_t unshared = BLK_PERM_RESIZE;
    uint64_t extent_size_hint = o->has_extent_size_hint ? o->extent_size_hint
                                                        : 1 << 20;
    int fd, i, ret = 0;

    g_assert(options->driver == BLOCKDEV_DRIVER_FILE);
    if (extent_size_hint > UINT32_MAX) {
        error_setg(errp, "Extent size hint is too large");
        return -EINVAL;
    }
    fd = open(o->filename, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not create '%s'", o->filename);
        return ret;
    }

    for (i = 0; i < LOCK_BITS && ret == 0; i++) {
        if (perm & (1ULL << i)) {
            ret = lock_byte(fd, LOCK_PERM_BASE + i, true);
        }
        if (ret == 0 && (unshared & (1ULL << i))) {
            ret = lock_byte(fd, LOCK_SHARED_BASE + i, true);
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to lock byte %d",
                             LOCK_PERM_BASE + i);
        }
    }
    if (ret == 0) {
        ret = locks_clash(fd, perm, unshared, errp);
    }

    if (ret == 0 && ftruncate(fd, 0) < 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not resize file");
    }
    if (ret == 0 && o->has_nocow && o->nocow) {
        /* btrfs: an optimisation, so failures are ignored, as in QEMU. */
        int attr;

        if (ioctl(fd, FS_IOC_GETFLAGS, &attr) == 0) {
            attr |= FS_NOCOW_FL;
            ioctl(fd, FS_IOC_SETFLAGS, &attr);
        }
    }
    if (ret == 0) {
        /* XFS: likewise best effort (QEMU only warns on failure). */
        struct fsxattr attr;

        if (ioctl(fd, FS_IOC_FSGETXATTR, &attr) == 0) {
            attr.fsx_xflags |= FS_XFLAG_EXTSIZE;
            attr.fsx_extsize = extent_size_hint;
            ioctl(fd, FS_IOC_FSSETXATTR, &attr);
        }
        ret = file_create_truncate(fd, (int64_t)o->size,
                                   o->has_preallocation ? o->preallocation
                                                        : PREALLOC_MODE_OFF,
                                   errp);
    }

    /* Closing drops the locks. */
    if (close(fd) < 0 && ret == 0) {
        ret = -errno;
        error_setg_errno(errp, -ret, "Could not close the new file");
    }
    return ret;
}

const BlockDriver bdrv_file = {
    .format_name = "file",
    .instance_size = sizeof(BDRVFileState),
    .open = file_open,
    .close = file_close,
    .set_writable = file_set_writable,
    .truncate = file_truncate,
    .get_allocated_file_size = file_get_allocated_file_size,
    .check_perm = file_check_perm,
    .set_perm = file_set_perm,
    .getlength = file_getlength,
    .preadv = file_preadv,
    .pwritev = file_pwritev,
    .pwrite_zeroes = file_pwrite_zeroes,
    .pdiscard = file_pdiscard,
    .flush = file_flush,
    .block_status = file_block_status,
    .supports_fua = true,
    .copy_range_from = file_copy_range_from,
    .copy_range_to = file_copy_range_to,
    .create = file_create,
};
