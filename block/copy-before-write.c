/*
 * The "copy-before-write" filter; see include/block/copy-before-write.h.
 *
 * Reads, flushes and the source side of a copy offload go to the file
 * child (the source). A write, write-zeroes, discard or the target side
 * of a copy offload first copies what is still to be copied in the
 * clusters it touches from the source to the target (block-copy, which
 * also makes it wait for a copy of those clusters already under way),
 * then goes to the source. Its two unnamed bitmaps are QEMU's: "access"
 * (what the snapshot covers, all of it unless a bitmap narrows it) and
 * "done" (clusters copied because of guest writes).
 *
 * The snapshot API reads the target where "done" is set and the source
 * elsewhere. A source read must not see a guest write that came after
 * the snapshot, so the two sides meet under s->lock: a guest write, once
 * its copy is done, marks "done" and then waits for the snapshot reads of
 * the source in its clusters; a snapshot read checks "done" and, to read
 * the source, registers its range, in one critical section. A read that
 * registers before the mark is waited for; one after it reads the target,
 * which holds the old data already. Reads of the target wait for nothing:
 * guest writes never go there.
 */
#include <errno.h>

#include "block/block_int.h"
#include "block/copy-before-write.h"
#include "util/range.h"

typedef struct BDRVCbwState {
    BdrvChild *target;
    BlockCopyState *bcs;
    OnCbwError on_cbw_error;
    uint64_t timeout_ns;        /* cbw-timeout; 0: none */
    BdrvDirtyBitmap *done_bitmap;
    BdrvDirtyBitmap *access_bitmap;
    /*
     * Guards reads, and orders the changes of snapshot_error and of the
     * done and access bits (their bits are under the node's bitmap lock)
     * against the snapshot reads that look at them.
     */
    GMutex lock;
    GCond cond;                 /* a snapshot read of the source finished */
    GList *reads;               /* Range *: reading the source */
    int snapshot_error;         /* atomic: set once, then reads of the snapshot fail */
} BDRVCbwState;

static int cbw_open(BlockDriverState *bs, const BlockdevOptions *opts,
                    Error **errp)
{
    const BlockdevOptionsCbw *o = &opts->u.copy_before_write;
    BDRVCbwState *s = bs->opaque;
    BdrvDirtyBitmap *copy;
    int64_t cluster;

    if (!bdrv_open_child(bs, o->file, "file", BDRV_CHILD_FILTERED, errp)) {
        return -EINVAL;
    }
    s->target = bdrv_open_child(bs, o->target, "target", BDRV_CHILD_DATA, errp);
    if (!s->target) {
        return -EINVAL;
    }
    s->on_cbw_error = o->has_on_cbw_error ? o->on_cbw_error
                                          : ON_CBW_ERROR_BREAK_GUEST_WRITE;
    s->timeout_ns = o->has_cbw_timeout ? o->cbw_timeout * (uint64_t)1000000000
                                       : 0;
    s->bcs = block_copy_state_new(bs->file, s->target, errp);
    if (!s->bcs) {
        return -EINVAL;
    }
    copy = block_copy_dirty_bitmap(s->bcs);
    if (o->bitmap) {
        BlockDriverState *node = bdrv_find_node(o->bitmap->node);
        BdrvDirtyBitmap *user = node ? bdrv_find_dirty_bitmap(node, o->bitmap->name)
                                     : NULL;

        if (!user) {
            error_setg(errp, node ? "Dirty bitmap '%s' not found"
                                  : "Node '%s' not found",
                       node ? o->bitmap->name : o->bitmap->node);
            block_copy_state_free(s->bcs);
            return -EINVAL;
        }
        bdrv_clear_dirty_bitmap(copy, NULL);
        if (!bdrv_merge_dirty_bitmap(copy, user, NULL, errp)) {
            error_prepend(errp, "Failed to merge bitmap '%s' to internal "
                          "copy-bitmap: ", o->bitmap->name);
            block_copy_state_free(s->bcs);
            return -EINVAL;
        }
    }
    cluster = block_copy_cluster_size(s->bcs);
    s->done_bitmap = bdrv_create_dirty_bitmap(bs, cluster, NULL, &error_abort);
    bdrv_disable_dirty_bitmap(s->done_bitmap);
    s->access_bitmap = bdrv_create_dirty_bitmap(bs, cluster, NULL, &error_abort);
    bdrv_disable_dirty_bitmap(s->access_bitmap);
    bdrv_merge_dirty_bitmap(s->access_bitmap, copy, NULL, &error_abort);
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
    return 0;
}

static void cbw_close(BlockDriverState *bs)
{
    BDRVCbwState *s = bs->opaque;

    /* The done and access bitmaps go with the node. */
    g_assert(!s->reads);
    block_copy_state_free(s->bcs);
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->cond);
}

static int64_t cbw_getlength(BlockDriverState *bs)
{
    return bdrv_child_getlength(bs->file);
}

/* What makes the target the snapshot: copy first, then let the write go. */
static int copy_before_write(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVCbwState *s = bs->opaque;
    int64_t cluster = block_copy_cluster_size(s->bcs);
    int64_t start = offset / cluster * cluster;
    int64_t end = MIN(bdrv_child_getlength(bs->file),
                      (offset + bytes + cluster - 1) / cluster * cluster);
    bool is_read;
    int ret;

    if (g_atomic_int_get(&s->snapshot_error)) {
        return 0;
    }
    ret = block_copy(s->bcs, start, end - start, s->timeout_ns, &is_read);
    if (ret < 0 && s->on_cbw_error == ON_CBW_ERROR_BREAK_GUEST_WRITE) {
        return ret;
    }
    g_mutex_lock(&s->lock);
    if (ret < 0) {
        g_atomic_int_compare_and_exchange(&s->snapshot_error, 0, ret);
    } else {
        bdrv_set_dirty_bitmap(s->done_bitmap, start, end - start);
    }
    /* Who reads the old data from the source must finish first. */
    while (range_list_find(s->reads, start, end)) {
        g_cond_wait(&s->cond, &s->lock);
    }
    g_mutex_unlock(&s->lock);
    return 0;
}

static int cbw_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      void *buf, BdrvRequestFlags flags)
{
    return bdrv_pread(bs->file, offset, bytes, buf, flags);
}

static int cbw_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       const void *buf, BdrvRequestFlags flags)
{
    int ret = copy_before_write(bs, offset, bytes);

    return ret < 0 ? ret : bdrv_pwrite(bs->file, offset, bytes, buf, flags);
}

static int cbw_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                             BdrvRequestFlags flags)
{
    int ret = copy_before_write(bs, offset, bytes);

    return ret < 0 ? ret : bdrv_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int cbw_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    int ret = copy_before_write(bs, offset, bytes);

    return ret < 0 ? ret : bdrv_pdiscard(bs->file, offset, bytes);
}

static int cbw_copy_range_from(BlockDriverState *bs, int64_t offset,
                               BdrvChild *dst, int64_t dst_offset, int64_t bytes)
{
    return bdrv_copy_range(bs->file, offset, dst, dst_offset, bytes);
}

/* A backup's target being backed up in turn: its old data goes first, as for a write. */
static int cbw_copy_range_to(BlockDriverState *bs, int64_t offset,
                             BlockDriverState *src, int64_t src_offset,
                             int64_t bytes)
{
    int ret = copy_before_write(bs, offset, bytes);

    return ret < 0 ? ret : bdrv_copy_range_to(src, src_offset, bs->file, offset,
                                              bytes);
}

static void cbw_child_perm(BlockDriverState *bs, BdrvChild *c, uint64_t perm,
                           uint64_t shared, uint64_t *child_perm,
                           uint64_t *child_shared)
{
    if (c->role == BDRV_CHILD_DATA) {
        /* The target: we write it; others may do anything but resize it. */
        *child_perm = BLK_PERM_WRITE;
        *child_shared = BLK_PERM_ALL & ~BLK_PERM_RESIZE;
        return;
    }
    /* The source: what our users need, and we read it to copy. */
    *child_perm = perm | BLK_PERM_CONSISTENT_READ;
    *child_shared = shared;
    if (perm || shared != BLK_PERM_ALL) {
        /* With users, nobody may write or resize it behind our back. */
        *child_shared &= ~(BLK_PERM_WRITE | BLK_PERM_RESIZE);
    }
}

const BlockDriver bdrv_copy_before_write = {
    .format_name = "copy-before-write",
    .instance_size = sizeof(BDRVCbwState),
    .is_filter = true,
    .open = cbw_open,
    .close = cbw_close,
    .child_perm = cbw_child_perm,
    .getlength = cbw_getlength,
    .preadv = cbw_preadv,
    .pwritev = cbw_pwritev,
    .pwrite_zeroes = cbw_pwrite_zeroes,
    .pdiscard = cbw_pdiscard,
    .supports_fua = true,
    .copy_range_from = cbw_copy_range_from,
    .copy_range_to = cbw_copy_range_to,
};

BlockDriverState *bdrv_cbw_append(BlockDriverState *source,
                                  BlockDriverState *target,
                                  const char *filter_node_name,
                                  BlockCopyState **bcs, Error **errp)
{
    g_autoptr(BlockdevOptions) opts = g_new0(BlockdevOptions, 1);
    BlockDriverState *filter;

    opts->driver = BLOCKDEV_DRIVER_COPY_BEFORE_WRITE;
    opts->node_name = g_strdup(filter_node_name);
    opts->u.copy_before_write.file = bdrv_node_reference(source);
    opts->u.copy_before_write.target = bdrv_node_reference(target);
    filter = bdrv_insert_node(source, opts, errp);
    if (filter) {
        *bcs = ((BDRVCbwState *)filter->opaque)->bcs;
    }
    return filter;
}

int bdrv_cbw_snapshot_error(BlockDriverState *filter)
{
    return g_atomic_int_get(&((BDRVCbwState *)filter->opaque)->snapshot_error);
}

/*
 * Where the snapshot's [offset, offset+bytes) is, from offset on for
 * *pnum bytes: *child is the target where guest writes copied it there,
 * else the source, with the range registered in *read until
 * snapshot_read_end(), so that guest writes to it wait. -EACCES if the
 * snapshot does not cover it all, or is broken, as QEMU answers.
 */
static int snapshot_read_begin(BlockDriverState *bs, int64_t offset,
                               int64_t bytes, int64_t *pnum, BdrvChild **child,
                               Range *read)
{
    BDRVCbwState *s = bs->opaque;
    int64_t covered;
    int ret = 0;

    g_mutex_lock(&s->lock);
    if (g_atomic_int_get(&s->snapshot_error) ||
        !bdrv_dirty_bitmap_status(s->access_bitmap, offset, bytes, &covered) ||
        covered < bytes) {
        ret = -EACCES;
    } else if (bdrv_dirty_bitmap_status(s->done_bitmap, offset, bytes, pnum)) {
        *child = s->target;
    } else {
        *child = bs->file;
        read->start = offset;
        read->end = offset + *pnum;
        s->reads = g_list_prepend(s->reads, read);
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

/*
 * A read of the source lets the guest writes it held back go. They went
 * ahead without waiting once the snapshot broke: what it read may be
 * newer, so it fails.
 */
static int snapshot_read_end(BlockDriverState *bs, BdrvChild *child,
                             Range *read)
{
    BDRVCbwState *s = bs->opaque;
    int ret = 0;

    if (child == s->target) {
        return 0;
    }
    g_mutex_lock(&s->lock);
    s->reads = g_list_remove(s->reads, read);
    g_cond_broadcast(&s->cond);
    if (g_atomic_int_get(&s->snapshot_error)) {
        ret = -EACCES;
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

int bdrv_cbw_preadv_snapshot(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, void *buf)
{
    int ret = 0;

    if (bs->drv != &bdrv_copy_before_write) {
        return -ENOTSUP;
    }
    while (bytes > 0 && ret == 0) {
        Range read;
        BdrvChild *child;
        int64_t n;
        int end_ret;

        ret = snapshot_read_begin(bs, offset, bytes, &n, &child, &read);
        if (ret < 0) {
            return ret;
        }
        ret = bdrv_pread(child, offset, n, buf, 0);
        end_ret = snapshot_read_end(bs, child, &read);
        ret = ret < 0 ? ret : end_ret;
        offset += n;
        bytes -= n;
        buf = (uint8_t *)buf + n;
    }
    return ret;
}

int bdrv_cbw_snapshot_block_status(BlockDriverState *bs, bool want_zero,
                                   int64_t offset, int64_t bytes,
                                   int64_t *pnum, int64_t *map,
                                   BlockDriverState **file)
{
    Range read;
    BdrvChild *child;
    int64_t n;
    int ret, end_ret;

    if (bs->drv != &bdrv_copy_before_write) {
        return -ENOTSUP;
    }
    ret = snapshot_read_begin(bs, offset, bytes, &n, &child, &read);
    if (ret < 0) {
        return ret;
    }
    ret = bdrv_block_status(child->bs, want_zero, offset, n, pnum, map, file);
    /*
     * QEMU's status of one layer: where a format without a backing file
     * allocates nothing, it reads zeroes.
     */
    if (ret >= 0 && !(ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO)) &&
        child->bs->drv->supports_backing && !child->bs->backing) {
        ret |= BDRV_BLOCK_ZERO;
    }
    end_ret = snapshot_read_end(bs, child, &read);
    return ret >= 0 && end_ret < 0 ? end_ret : ret;
}

int bdrv_cbw_pdiscard_snapshot(BlockDriverState *bs, int64_t offset,
                               int64_t bytes)
{
    BDRVCbwState *s;
    int64_t cluster, start, end;

    if (bs->drv != &bdrv_copy_before_write) {
        return -ENOTSUP;
    }
    s = bs->opaque;
    cluster = block_copy_cluster_size(s->bcs);
    start = (offset + cluster - 1) / cluster * cluster;
    end = (offset + bytes) / cluster * cluster;
    if (end <= start) {
        return 0;
    }
    g_mutex_lock(&s->lock);
    bdrv_reset_dirty_bitmap(s->access_bitmap, start, end - start);
    g_mutex_unlock(&s->lock);
    /* Nobody will read the old data there: no copy is needed either. */
    block_copy_reset(s->bcs, start, end - start);
    return bdrv_pdiscard(s->target, start, end - start);
}
