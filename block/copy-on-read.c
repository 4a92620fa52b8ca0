/*
 * The "copy-on-read" filter, as QEMU 7.2's: a read through it of what the
 * node below (its file, a format with a backing chain) does not allocate
 * itself, but a layer of the chain above the bottom does, also writes that
 * data into the node, which holds it from then on. block-stream puts one
 * in front of the node it streams into and reads everything through it.
 *
 * A copy reads clusters of the node (the chain shows through where the
 * node allocates nothing) and writes back those the node still does not
 * allocate. A guest write landing between the two would be overwritten by
 * older data: QEMU serialises such requests in its generic request path;
 * here the filter does, since once it is in front every write to the node
 * passes it. Each copy and each write registers its range: a copy waits
 * for every overlapping copy or write, a write for overlapping copies;
 * writes among themselves do not wait.
 *
 * Copies are written with BDRV_REQ_WRITE_UNCHANGED: the node's dirty
 * bitmaps do not record them, as QEMU's do not.
 */
#include <errno.h>
#include <string.h>

#include "block/block_int.h"

typedef struct CorRange {
    int64_t start, end;
    bool copy;
} CorRange;

typedef struct BDRVCorState {
    BlockDriverState *bottom;   /* NULL: the whole chain; a reference */
    GMutex lock;
    GCond cond;                 /* a range was released */
    GList *ranges;              /* CorRange *, in flight */
} BDRVCorState;

static int cor_open(BlockDriverState *bs, const BlockdevOptions *opts,
                    Error **errp)
{
    const BlockdevOptionsCor *o = &opts->u.copy_on_read;
    BDRVCorState *s = bs->opaque;

    if (!bdrv_open_child(bs, o->file, "file", BDRV_CHILD_FILTERED, errp)) {
        return -EINVAL;
    }
    if (o->bottom) {
        /* QEMU's texts. */
        s->bottom = bdrv_find_node(o->bottom);
        if (!s->bottom) {
            error_setg(errp, "Bottom node '%s' not found", o->bottom);
            return -EINVAL;
        }
        if (s->bottom->drv->is_filter) {
            error_setg(errp, "Bottom node '%s' is a filter", o->bottom);
            s->bottom = NULL;
            return -EINVAL;
        }
        bdrv_ref(s->bottom);
    }
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
    return 0;
}

static void cor_close(BlockDriverState *bs)
{
    BDRVCorState *s = bs->opaque;

    g_assert(!s->ranges);
    bdrv_unref(s->bottom);
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->cond);
}

static int64_t cor_getlength(BlockDriverState *bs)
{
    return bdrv_child_getlength(bs->file);
}

static void range_begin(BDRVCorState *s, CorRange *r, int64_t start,
                        int64_t end, bool copy)
{
    GList *l;

    r->start = start;
    r->end = end;
    r->copy = copy;
    g_mutex_lock(&s->lock);
retry:
    for (l = s->ranges; l; l = l->next) {
        CorRange *o = l->data;

        if (o->start < end && start < o->end && (o->copy || copy)) {
            g_cond_wait(&s->cond, &s->lock);
            goto retry;
        }
    }
    s->ranges = g_list_prepend(s->ranges, r);
    g_mutex_unlock(&s->lock);
}

static void range_end(BDRVCorState *s, CorRange *r)
{
    g_mutex_lock(&s->lock);
    s->ranges = g_list_remove(s->ranges, r);
    g_cond_broadcast(&s->cond);
    g_mutex_unlock(&s->lock);
}

/*
 * Of [offset, offset+bytes), how much from offset on (*pnum) is to be
 * copied (true) or only read (false): not allocated by the node, but by a
 * layer of its chain down to the bottom. In doubt, copy, as QEMU does.
 */
static bool wants_copy(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       int64_t *pnum)
{
    BDRVCorState *s = bs->opaque;
    BlockDriverState *node = bdrv_file_bs(bs);
    BlockDriverState *base = s->bottom ? bdrv_filter_or_cow_bs(s->bottom)
                                       : NULL;
    BlockDriverState *below = bdrv_filter_or_cow_bs(node);
    int depth = 0;
    int ret = bdrv_block_status(node, false, offset, bytes, pnum, NULL, NULL);

    if (ret >= 0 && (ret & BDRV_BLOCK_ALLOCATED)) {
        return false;
    }
    if (ret < 0) {
        *pnum = bytes;
    }
    if (!below || below == base) {
        return false;
    }
    ret = bdrv_block_status_above(below, base, false, offset, *pnum, pnum,
                                  &depth);
    return ret < 0 || depth > 0;
}

/*
 * Reads [offset, offset+bytes) into buf, writing what is to be copied into
 * the node, in whole clusters of the node.
 */
static int cor_copy(BlockDriverState *bs, int64_t offset, int64_t bytes,
                    void *buf)
{
    BDRVCorState *s = bs->opaque;
    BlockDriverState *node = bdrv_file_bs(bs);
    int64_t cluster = MAX(bdrv_get_cluster_size(node), 512);
    int64_t start = offset / cluster * cluster;
    int64_t end = MIN(bdrv_child_getlength(bs->file),
                      (offset + bytes + cluster - 1) / cluster * cluster);
    uint8_t *bounce = bdrv_blockalign(node, end - start);
    CorRange r;
    int64_t pos, n;
    int ret;

    /* Nothing writes these clusters while we hold them: the check holds. */
    range_begin(s, &r, start, end, true);
    ret = bdrv_pread(bs->file, start, end - start, bounce, 0);
    for (pos = start; ret == 0 && pos < end; pos += n) {
        if (!wants_copy(bs, pos, end - pos, &n)) {
            continue;
        }
        if (buffer_is_zero(bounce + (pos - start), n)) {
            ret = bdrv_pwrite_zeroes(bs->file, pos, n,
                                     BDRV_REQ_WRITE_UNCHANGED);
        } else {
            ret = bdrv_pwrite(bs->file, pos, n, bounce + (pos - start),
                              BDRV_REQ_WRITE_UNCHANGED);
        }
    }
    if (ret == 0) {
        memcpy(buf, bounce + (offset - start), bytes);
    }
    range_end(s, &r);
    free(bounce);
    return ret;
}

static int cor_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      void *buf, BdrvRequestFlags flags)
{
    int ret = 0;

    while (bytes > 0 && ret == 0) {
        int64_t n;

        /* A copy holds its clusters' bounce buffer: at most 1 MiB at once. */
        if (wants_copy(bs, offset, MIN(bytes, 1 << 20), &n)) {
            ret = cor_copy(bs, offset, n, buf);
        } else {
            ret = bdrv_pread(bs->file, offset, n, buf, flags);
        }
        offset += n;
        bytes -= n;
        buf = (uint8_t *)buf + n;
    }
    return ret;
}

static int cor_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       const void *buf, BdrvRequestFlags flags)
{
    BDRVCorState *s = bs->opaque;
    CorRange r;
    int ret;

    range_begin(s, &r, offset, offset + bytes, false);
    ret = bdrv_pwrite(bs->file, offset, bytes, buf, flags);
    range_end(s, &r);
    return ret;
}

static int cor_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, BdrvRequestFlags flags)
{
    BDRVCorState *s = bs->opaque;
    CorRange r;
    int ret;

    range_begin(s, &r, offset, offset + bytes, false);
    ret = bdrv_pwrite_zeroes(bs->file, offset, bytes, flags);
    range_end(s, &r);
    return ret;
}

static int cor_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVCorState *s = bs->opaque;
    CorRange r;
    int ret;

    range_begin(s, &r, offset, offset + bytes, false);
    ret = bdrv_pdiscard(bs->file, offset, bytes);
    range_end(s, &r);
    return ret;
}

/*
 * QEMU's: what the users need passes through; the filter itself writes
 * unchanged data, and lets others do that too.
 */
static void cor_child_perm(BlockDriverState *bs, BdrvChild *c, uint64_t perm,
                           uint64_t shared, uint64_t *child_perm,
                           uint64_t *child_shared)
{
    *child_perm = perm | BLK_PERM_WRITE_UNCHANGED;
    *child_shared = shared | BLK_PERM_WRITE_UNCHANGED;
}

const BlockDriver bdrv_copy_on_read = {
    .format_name = "copy-on-read",
    .instance_size = sizeof(BDRVCorState),
    .is_filter = true,
    .open = cor_open,
    .close = cor_close,
    .child_perm = cor_child_perm,
    .getlength = cor_getlength,
    .preadv = cor_preadv,
    .pwritev = cor_pwritev,
    .pwrite_zeroes = cor_pwrite_zeroes,
    .pdiscard = cor_pdiscard,
    .supports_fua = true,
};
