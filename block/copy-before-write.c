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
 */
#include <errno.h>

#include "block/block_int.h"
#include "block/copy-before-write.h"

typedef struct BDRVCbwState {
    BdrvChild *target;
    BlockCopyState *bcs;
    BdrvDirtyBitmap *done_bitmap;
    BdrvDirtyBitmap *access_bitmap;
    OnCbwError on_cbw_error;
    uint64_t timeout_ns;        /* cbw-timeout; 0: none */
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
    return 0;
}

static void cbw_close(BlockDriverState *bs)
{
    BDRVCbwState *s = bs->opaque;

    /* The done and access bitmaps go with the node. */
    block_copy_state_free(s->bcs);
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
    if (ret < 0) {
        if (s->on_cbw_error == ON_CBW_ERROR_BREAK_GUEST_WRITE) {
            return ret;
        }
        g_atomic_int_compare_and_exchange(&s->snapshot_error, 0, ret);
        return 0;
    }
    bdrv_set_dirty_bitmap(s->done_bitmap, start, end - start);
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
