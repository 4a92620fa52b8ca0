/*
 * The request path every read and write takes, from any thread: bounds,
 * alignment for the driver, transfer limits, FUA, write-zeroes fallback,
 * discard policy, detect-zeroes, copy offload (a read of one node that
 * is a write of another), and block status through backing chains.
 *
 * Alignment: drivers see only requests aligned to bl.request_alignment.
 * An unaligned write is a read-modify-write of the aligned blocks around
 * it, which would write back stale bytes over any write to those blocks
 * made meanwhile. So on a node whose alignment is above one byte, writes
 * are tracked: a read-modify-write waits for every overlapping write and
 * is waited for by them; aligned writes do not wait for each other
 * (overlapping aligned writes are the caller's business, as on a disk).
 * Nodes with byte alignment never read-modify-write and take no lock
 * (unless fleecing, below).
 *
 * Fleecing: while bdrv_serialise_writes_ref() holds a node, reads are
 * tracked too and every write is serialising, so a write waits for the
 * reads it overlaps and they wait for it.
 */
#include <errno.h>
#include <string.h>

#include "block/core.h"
#include "block/dirty-bitmap.h"
#include "util/range.h"

#define ZERO_CHUNK (1 << 20)    /* largest zero buffer the fallback writes */

typedef struct BdrvTrackedRequest {
    int64_t start, end;
    bool tracked;               /* in the node's list */
    bool serialising;           /* a read-modify-write, or a fleecing write */
} BdrvTrackedRequest;

void bdrv_node_io_init(BlockDriverState *bs)
{
    g_mutex_init(&bs->core->req_lock);
    g_cond_init(&bs->core->req_cond);
}

void bdrv_node_io_cleanup(BlockDriverState *bs)
{
    g_assert(!bs->core->tracked);
    g_mutex_clear(&bs->core->req_lock);
    g_cond_clear(&bs->core->req_cond);
}

static void serialise_begin(BlockDriverState *bs, BdrvTrackedRequest *req)
{
    BdrvNodeCore *core = bs->core;
    GList *l;

    g_mutex_lock(&core->req_lock);
retry:
    for (l = core->tracked; l; l = l->next) {
        BdrvTrackedRequest *r = l->data;

        if (ranges_overlap(r->start, r->end, req->start, req->end) &&
            (r->serialising || req->serialising)) {
            g_cond_wait(&core->req_cond, &core->req_lock);
            goto retry;
        }
    }
    core->tracked = g_list_prepend(core->tracked, req);
    g_mutex_unlock(&core->req_lock);
}

static void serialise_end(BlockDriverState *bs, BdrvTrackedRequest *req)
{
    g_mutex_lock(&bs->core->req_lock);
    bs->core->tracked = g_list_remove(bs->core->tracked, req);
    g_cond_broadcast(&bs->core->req_cond);
    g_mutex_unlock(&bs->core->req_lock);
}

void bdrv_serialise_writes_ref(BlockDriverState *bs)
{
    g_atomic_int_inc(&bs->core->serialise_writes);
}

void bdrv_serialise_writes_unref(BlockDriverState *bs)
{
    g_atomic_int_add(&bs->core->serialise_writes, -1);
}

static bool serialises_writes(BlockDriverState *bs)
{
    return g_atomic_int_get(&bs->core->serialise_writes) > 0;
}

/*
 * A request in flight on a node that may read-modify-write or serialises
 * writes: keep out of the way of (and hold back) those it must not cross.
 */
static void track_begin(BlockDriverState *bs, BdrvTrackedRequest *req,
                        int64_t offset, int64_t bytes, bool is_write)
{
    bool serialise = serialises_writes(bs);

    req->start = offset;
    req->end = offset + bytes;
    req->serialising = is_write && serialise;
    req->tracked = serialise || (is_write && bs->bl.request_alignment > 1);
    if (req->tracked) {
        serialise_begin(bs, req);
    }
}

static void track_end(BlockDriverState *bs, BdrvTrackedRequest *req)
{
    if (req->tracked) {
        serialise_end(bs, req);
    }
}

static int check_bounds(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    int64_t len = node_length(bs);

    if (offset < 0 || bytes < 0 || offset > len || bytes > len - offset) {
        return -EIO;
    }
    return 0;
}

static bool mem_aligned(BlockDriverState *bs, const void *buf)
{
    return ((uintptr_t)buf & (bs->bl.min_mem_alignment - 1)) == 0;
}

static uint64_t max_chunk(BlockDriverState *bs)
{
    return bs->bl.max_transfer ? bs->bl.max_transfer : INT32_MAX & ~(uint64_t)4095;
}

/* Aligned read: split by the transfer limit, bounced if memory is misaligned. */
static int aligned_read(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        void *buf, BdrvRequestFlags flags)
{
    uint64_t chunk = max_chunk(bs);
    bool bounce = !mem_aligned(bs, buf);
    void *tmp = bounce ? bdrv_blockalign(bs, MIN((uint64_t)bytes, chunk)) : NULL;
    int ret = 0;

    while (bytes > 0 && ret == 0) {
        int64_t n = MIN((uint64_t)bytes, chunk);

        ret = bs->drv->preadv(bs, offset, n, bounce ? tmp : buf, flags);
        if (ret == 0 && bounce) {
            memcpy(buf, tmp, n);
        }
        offset += n;
        bytes -= n;
        buf = (char *)buf + n;
    }
    free(tmp);
    return ret;
}

static int aligned_write(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         const void *buf, BdrvRequestFlags flags)
{
    uint64_t chunk = max_chunk(bs);
    bool bounce = !mem_aligned(bs, buf);
    void *tmp = bounce ? bdrv_blockalign(bs, MIN((uint64_t)bytes, chunk)) : NULL;
    BdrvRequestFlags drv_flags = bs->drv->supports_fua ? flags & BDRV_REQ_FUA : 0;
    int ret = 0;

    while (bytes > 0 && ret == 0) {
        int64_t n = MIN((uint64_t)bytes, chunk);

        if (bounce) {
            memcpy(tmp, buf, n);
        }
        ret = bs->drv->pwritev(bs, offset, n, bounce ? tmp : buf, drv_flags);
        offset += n;
        bytes -= n;
        buf = (const char *)buf + n;
    }
    free(tmp);
    if (ret == 0 && (flags & BDRV_REQ_FUA) && !bs->drv->supports_fua) {
        ret = bdrv_flush(bs);
    }
    return ret;
}

int bdrv_pread(BdrvChild *child, int64_t offset, int64_t bytes, void *buf,
               BdrvRequestFlags flags)
{
    BlockDriverState *bs = child->bs;
    uint32_t align = bs->bl.request_alignment;
    BdrvTrackedRequest req;
    int64_t astart, aend;
    char *tmp = NULL;
    int ret = check_bounds(bs, offset, bytes);

    if (ret < 0 || bytes == 0) {
        return ret;
    }
    astart = offset & ~(int64_t)(align - 1);
    aend = (offset + bytes + align - 1) & ~(int64_t)(align - 1);
    track_begin(bs, &req, astart, aend - astart, false);
    if (astart == offset && aend == offset + bytes) {
        ret = aligned_read(bs, offset, bytes, buf, flags);
    } else {
        tmp = bdrv_blockalign(bs, aend - astart);
        ret = aligned_read(bs, astart, aend - astart, tmp, flags);
        if (ret == 0) {
            memcpy(buf, tmp + (offset - astart), bytes);
        }
    }
    track_end(bs, &req);
    free(tmp);
    return ret;
}

/* Unaligned write: read the aligned blocks around it, patch, write back. */
static int rmw_write(BlockDriverState *bs, int64_t offset, int64_t bytes,
                     const void *buf, BdrvRequestFlags flags)
{
    uint32_t align = bs->bl.request_alignment;
    BdrvTrackedRequest req;
    char *tmp;
    int ret = 0;

    req.start = offset & ~(int64_t)(align - 1);
    req.end = (offset + bytes + align - 1) & ~(int64_t)(align - 1);
    req.serialising = true;
    serialise_begin(bs, &req);
    tmp = bdrv_blockalign(bs, req.end - req.start);
    if (offset != req.start) {
        ret = aligned_read(bs, req.start, align, tmp, 0);
    }
    if (ret == 0 && offset + bytes != req.end &&
        (req.end - align != req.start || offset == req.start)) {
        ret = aligned_read(bs, req.end - align, align,
                           tmp + (req.end - align - req.start), 0);
    }
    if (ret == 0) {
        if (buf) {
            memcpy(tmp + (offset - req.start), buf, bytes);
        } else {
            memset(tmp + (offset - req.start), 0, bytes);
        }
        ret = aligned_write(bs, req.start, req.end - req.start, tmp, flags);
    }
    free(tmp);
    serialise_end(bs, &req);
    return ret;
}

bool buffer_is_zero(const void *buf, int64_t bytes)
{
    const char *p = buf;

    /* Compare with itself shifted: one pass, no zero buffer needed. */
    return bytes == 0 || (p[0] == 0 && memcmp(p, p + 1, bytes - 1) == 0);
}

/*
 * Compressed: the driver takes the request whole (it packs clusters, so
 * neither splitting nor read-modify-write would make sense) or refuses it.
 */
static int compressed_write(BlockDriverState *bs, int64_t offset,
                            int64_t bytes, const void *buf)
{
    BdrvTrackedRequest req;
    int ret;

    if (!bs->drv->pwritev_compressed) {
        return -ENOTSUP;
    }
    if ((offset | bytes) & (bs->bl.request_alignment - 1)) {
        return -EINVAL;
    }
    track_begin(bs, &req, offset, bytes, true);
    ret = bs->drv->pwritev_compressed(bs, offset, bytes, buf);
    track_end(bs, &req);
    return ret;
}

int bdrv_pwrite(BdrvChild *child, int64_t offset, int64_t bytes,
                const void *buf, BdrvRequestFlags flags)
{
    BlockDriverState *bs = child->bs;
    uint32_t align = bs->bl.request_alignment;
    int ret = check_bounds(bs, offset, bytes);

    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    if (bs->detect_zeroes != BLOCKDEV_DETECT_ZEROES_OPTIONS_OFF &&
        buffer_is_zero(buf, bytes)) {
        if (bs->detect_zeroes == BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP) {
            flags |= BDRV_REQ_MAY_UNMAP;
        }
        return bdrv_pwrite_zeroes(child, offset, bytes,
                                  flags & ~BDRV_REQ_WRITE_COMPRESSED);
    }
    if (flags & BDRV_REQ_WRITE_COMPRESSED) {
        ret = compressed_write(bs, offset, bytes, buf);
    } else if (!((offset | bytes) & (align - 1))) {
        BdrvTrackedRequest req;

        track_begin(bs, &req, offset, bytes, true);
        ret = aligned_write(bs, offset, bytes, buf, flags);
        track_end(bs, &req);
    } else {
        ret = rmw_write(bs, offset, bytes, buf, flags);
    }
    /* The write hook: what was asked, failed or not, as QEMU marks it. */
    if (!(flags & BDRV_REQ_WRITE_UNCHANGED)) {
        bdrv_set_dirty(bs, offset, bytes);
    }
    return ret;
}

/* Zeroes by writing zero buffers: the fallback, in bounded chunks. */
static int write_zero_buffers(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, BdrvRequestFlags flags)
{
    int64_t chunk = MIN(bytes, (int64_t)MIN((uint64_t)ZERO_CHUNK, max_chunk(bs)));
    void *zeroes = bdrv_blockalign(bs, chunk);
    int ret = 0;

    memset(zeroes, 0, chunk);
    while (bytes > 0 && ret == 0) {
        int64_t n = MIN(bytes, chunk);

        ret = aligned_write(bs, offset, n, zeroes, flags & BDRV_REQ_FUA);
        offset += n;
        bytes -= n;
    }
    free(zeroes);
    return ret;
}

static int zeroes_aligned(BlockDriverState *bs, int64_t offset, int64_t bytes,
                          BdrvRequestFlags flags);

int bdrv_pwrite_zeroes(BdrvChild *child, int64_t offset, int64_t bytes,
                       BdrvRequestFlags flags)
{
    BlockDriverState *bs = child->bs;
    int ret = check_bounds(bs, offset, bytes);

    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    if (!bs->discard_unmap) {
        flags &= ~BDRV_REQ_MAY_UNMAP;
    }
    ret = zeroes_aligned(bs, offset, bytes, flags & ~BDRV_REQ_WRITE_UNCHANGED);
    if (!(flags & BDRV_REQ_WRITE_UNCHANGED)) {
        bdrv_set_dirty(bs, offset, bytes);
    }
    return ret;
}

/* Write-zeroes after the checks: partial blocks as data, the rest by the driver. */
static int zeroes_aligned(BlockDriverState *bs, int64_t offset, int64_t bytes,
                          BdrvRequestFlags flags)
{
    uint32_t align = bs->bl.request_alignment;
    BdrvTrackedRequest req;
    int64_t head, tail;
    int ret = 0;

    /* The unaligned head and tail are partial blocks: written as data. */
    head = MIN(bytes, (int64_t)((align - (offset & (align - 1))) & (align - 1)));
    tail = (offset + bytes) & (align - 1);
    if (head + tail > bytes) {
        tail = 0;       /* one partial block: the head covers it */
    }
    if ((head || tail) && (flags & BDRV_REQ_NO_FALLBACK)) {
        return -ENOTSUP;
    }
    if (head) {
        ret = rmw_write(bs, offset, head, NULL, flags & BDRV_REQ_FUA);
        offset += head;
        bytes -= head;
    }
    if (ret == 0 && tail) {
        ret = rmw_write(bs, offset + bytes - tail, tail, NULL, flags & BDRV_REQ_FUA);
        bytes -= tail;
    }
    if (ret < 0 || bytes == 0) {
        return ret;
    }
    track_begin(bs, &req, offset, bytes, true);
    ret = bs->drv->pwrite_zeroes ?
          bs->drv->pwrite_zeroes(bs, offset, bytes, flags) : -ENOTSUP;
    if (ret == -ENOTSUP && !(flags & BDRV_REQ_NO_FALLBACK)) {
        ret = write_zero_buffers(bs, offset, bytes, flags);
    } else if (ret == 0 && (flags & BDRV_REQ_FUA)) {
        ret = bdrv_flush(bs);
    }
    track_end(bs, &req);
    return ret;
}

int bdrv_pdiscard(BdrvChild *child, int64_t offset, int64_t bytes)
{
    BlockDriverState *bs = child->bs;
    uint32_t align = bs->bl.pdiscard_alignment ? bs->bl.pdiscard_alignment :
                     bs->bl.request_alignment;
    BdrvTrackedRequest req;
    int64_t start, end;
    int ret = check_bounds(bs, offset, bytes);

    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    /* discard=ignore, or a driver that cannot: a discard may do nothing. */
    if (!bs->discard_unmap || !bs->drv->pdiscard) {
        return 0;
    }
    start = (offset + align - 1) / align * align;
    end = (offset + bytes) / align * align;
    if (offset + bytes == node_length(bs)) {
        end = offset + bytes;   /* the end of the node counts as aligned */
    }
    if (start >= end) {
        bdrv_set_dirty(bs, offset, bytes);
        return 0;
    }
    track_begin(bs, &req, start, end - start, true);
    ret = bs->drv->pdiscard(bs, start, end - start);
    track_end(bs, &req);
    bdrv_set_dirty(bs, offset, bytes);
    return ret == -ENOTSUP ? 0 : ret;
}

int bdrv_flush(BlockDriverState *bs)
{
    guint i;
    int ret = 0;

    if (!bs->read_only && bs->drv->flush_to_os) {
        ret = bs->drv->flush_to_os(bs);
    }
    if (ret == 0 && !bs->read_only && !bs->cache_no_flush && bs->drv->flush) {
        ret = bs->drv->flush(bs);
    }
    for (i = 0; ret == 0 && i < bs->core->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->core->children, i);

        ret = bdrv_flush(c->bs);
    }
    return ret;
}

/* Copy offload is all or nothing: no read-modify-write for partial blocks. */
static bool copy_range_aligned(BlockDriverState *bs, int64_t offset,
                               int64_t bytes)
{
    return !((offset | bytes) & (bs->bl.request_alignment - 1));
}

/* The source side: checked, tracked and split as a read. */
int bdrv_copy_range(BdrvChild *src, int64_t src_offset, BdrvChild *dst,
                    int64_t dst_offset, int64_t bytes)
{
    BlockDriverState *bs = src->bs;
    uint64_t chunk = max_chunk(bs);
    BdrvTrackedRequest req;
    int ret = check_bounds(bs, src_offset, bytes);

    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (!bs->drv->copy_range_from || !copy_range_aligned(bs, src_offset, bytes)) {
        return -ENOTSUP;
    }
    track_begin(bs, &req, src_offset, bytes, false);
    while (bytes > 0 && ret == 0) {
        int64_t n = MIN((uint64_t)bytes, chunk);

        ret = bs->drv->copy_range_from(bs, src_offset, dst, dst_offset, n);
        src_offset += n;
        dst_offset += n;
        bytes -= n;
    }
    track_end(bs, &req);
    return ret;
}

/* The target side: checked, tracked, split and marked as an aligned write. */
int bdrv_copy_range_to(BlockDriverState *src, int64_t src_offset,
                       BdrvChild *dst, int64_t dst_offset, int64_t bytes)
{
    BlockDriverState *bs = dst->bs;
    uint64_t chunk = max_chunk(bs);
    int64_t offset = dst_offset, left = bytes;
    BdrvTrackedRequest req;
    int ret = check_bounds(bs, dst_offset, bytes);

    if (ret < 0 || bytes == 0) {
        return ret;
    }
    if (bs->read_only) {
        return -EPERM;
    }
    if (!bs->drv->copy_range_to || !copy_range_aligned(bs, dst_offset, bytes)) {
        return -ENOTSUP;
    }
    track_begin(bs, &req, dst_offset, bytes, true);
    while (left > 0 && ret == 0) {
        int64_t n = MIN((uint64_t)left, chunk);

        ret = bs->drv->copy_range_to(bs, offset, src, src_offset, n);
        src_offset += n;
        offset += n;
        left -= n;
    }
    track_end(bs, &req);
    /* The write hook, as bdrv_pwrite() marks: failed or not. */
    bdrv_set_dirty(bs, dst_offset, bytes);
    return ret;
}

int bdrv_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                      int64_t bytes, int64_t *pnum, int64_t *map,
                      BlockDriverState **file)
{
    int64_t len = node_length(bs), n, local_map = 0;
    BlockDriverState *local_file = NULL;
    int ret;

    if (offset < 0 || bytes < 0) {
        return -EINVAL;
    }
    if (offset >= len || bytes == 0) {
        *pnum = 0;
        return offset >= len ? BDRV_BLOCK_EOF : 0;
    }
    bytes = MIN(bytes, len - offset);
    if (bs->drv->block_status) {
        ret = bs->drv->block_status(bs, want_zero, offset, bytes, &n,
                                    &local_map, &local_file);
    } else if (bs->drv->is_filter) {
        ret = bdrv_block_status(bs->file->bs, want_zero, offset, bytes, &n,
                                &local_map, &local_file);
    } else {
        n = bytes;
        ret = BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID;
        local_map = offset;
        local_file = bs;
    }
    if (ret < 0) {
        return ret;
    }
    g_assert(n > 0 && n <= bytes);
    /* Whatever a layer knows the content of, it decides. */
    if (ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) {
        ret |= BDRV_BLOCK_ALLOCATED;
    }
    if (offset + n == len) {
        ret |= BDRV_BLOCK_EOF;
    }
    *pnum = n;
    if (map) {
        *map = local_map;
    }
    if (file) {
        *file = local_file;
    }
    return ret;
}

int bdrv_block_status_above(BlockDriverState *bs, BlockDriverState *base,
                            bool want_zero, int64_t offset, int64_t bytes,
                            int64_t *pnum, int *depth)
{
    BlockDriverState *p, *bottom = NULL;
    int d = 1, ret = 0;
    int64_t n = bytes;

    /* A filter counts as a layer, as in QEMU's depth. */
    for (p = bs; p && p != base; p = bdrv_filter_or_cow_bs(p), d++) {
        if (offset >= node_length(p)) {
            /*
             * Past the end of a shorter backing file: reads return zeroes,
             * which that layer decides (QEMU's depth counts it).
             */
            *pnum = n;
            if (depth) {
                *depth = d;
            }
            return BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED;
        }
        ret = bdrv_block_status(p, want_zero, offset, n, &n, NULL, NULL);
        if (ret < 0) {
            return ret;
        }
        if (ret & BDRV_BLOCK_ALLOCATED) {
            *pnum = n;
            if (depth) {
                *depth = d;
            }
            return ret & ~BDRV_BLOCK_EOF;
        }
        bottom = p;
    }
    /* Nothing above base decides this range. */
    *pnum = MIN(n, node_length(bs) - offset);
    if (depth) {
        *depth = 0;
    }
    if (base) {
        return 0;
    }
    /*
     * A format without a backing file reads it as zeroes; a node that
     * cannot have one and tells neither (null-co without read-zeroes)
     * leaves it unknown, as QEMU does: readers copy it as data.
     */
    return bottom->drv->supports_backing ? BDRV_BLOCK_ZERO : 0;
}
