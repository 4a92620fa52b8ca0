/*
 * QMP handlers for dirty bitmaps (qapi/dirty-bitmap.json), with QEMU's
 * checks in QEMU's order. Main thread only.
 */
#include "block/bitmap-cmds.h"
#include "qapi-commands.h"

BdrvDirtyBitmap *block_dirty_bitmap_lookup(const char *node, const char *name,
                                           BlockDriverState **pbs, Error **errp)
{
    BlockDriverState *bs = bdrv_lookup_bs(node, node, NULL);
    BdrvDirtyBitmap *bm;

    if (!bs) {
        error_setg(errp, "Node '%s' not found", node);
        return NULL;
    }
    bm = bdrv_find_dirty_bitmap(bs, name);
    if (!bm) {
        error_setg(errp, "Dirty bitmap '%s' not found", name);
        return NULL;
    }
    if (pbs) {
        *pbs = bs;
    }
    return bm;
}

static bool granularity_ok(uint32_t granularity, Error **errp)
{
    if (granularity < 512 || (granularity & (granularity - 1))) {
        error_setg(errp, "Granularity must be power of 2 and at least 512");
        return false;
    }
    return true;
}

BdrvDirtyBitmap *block_dirty_bitmap_add(const char *node, const char *name,
                                        bool has_granularity, uint32_t granularity,
                                        bool persistent, bool disabled,
                                        Error **errp)
{
    BlockDriverState *bs;
    BdrvDirtyBitmap *bm;

    if (!name[0]) {
        error_setg(errp, "Bitmap name cannot be empty");
        return NULL;
    }
    bs = bdrv_lookup_bs(node, node, errp);
    if (!bs) {
        return NULL;
    }
    if (!has_granularity) {
        granularity = bdrv_get_default_bitmap_granularity(bs);
    } else if (!granularity_ok(granularity, errp)) {
        return NULL;
    }
    if (persistent &&
        !bdrv_can_store_new_dirty_bitmap(bs, name, granularity, errp)) {
        return NULL;
    }
    bm = bdrv_create_dirty_bitmap(bs, granularity, name, errp);
    if (bm) {
        bdrv_dirty_bitmap_set_persistent(bm, persistent);
        if (disabled) {
            bdrv_disable_dirty_bitmap(bm);
        }
    }
    return bm;
}

BdrvDirtyBitmap *block_dirty_bitmap_remove(const char *node, const char *name,
                                           bool release, Error **errp)
{
    BlockDriverState *bs;
    BdrvDirtyBitmap *bm = block_dirty_bitmap_lookup(node, name, &bs, errp);

    /* Inconsistent bitmaps may go: that is the only thing they may do. */
    if (!bm || !bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_BUSY | BDRV_BITMAP_RO,
                                        errp)) {
        return NULL;
    }
    /* As QEMU: the image forgets it now, even if a transaction aborts. */
    if (bdrv_dirty_bitmap_persistent(bm) &&
        !bdrv_remove_persistent_dirty_bitmap(bs, name, errp)) {
        return NULL;
    }
    if (release) {
        bdrv_release_dirty_bitmap(bm);
    }
    return bm;
}

BdrvDirtyBitmap *block_dirty_bitmap_merge(const char *node, const char *target,
                                          BlockDirtyBitmapOrStrList *bitmaps,
                                          HBitmap **backup, Error **errp)
{
    BlockDriverState *bs;
    BdrvDirtyBitmap *dst = block_dirty_bitmap_lookup(node, target, &bs, errp);
    BlockDirtyBitmapOrStrList *l;
    HBitmap *saved = NULL;

    if (!dst || !bdrv_dirty_bitmap_check(dst, BDRV_BITMAP_DEFAULT, errp)) {
        return NULL;
    }
    for (l = bitmaps; l; l = l->next) {
        BdrvDirtyBitmap *src;

        if (l->value->type == QTYPE_QSTRING) {
            src = bdrv_find_dirty_bitmap(bs, l->value->u.local);
            if (!src) {
                error_setg(errp, "Dirty bitmap '%s' not found", l->value->u.local);
                goto fail;
            }
        } else {
            src = block_dirty_bitmap_lookup(l->value->u.external->node,
                                            l->value->u.external->name, NULL, errp);
            if (!src) {
                goto fail;
            }
        }
        if (!bdrv_dirty_bitmap_check(src, BDRV_BITMAP_ALLOW_RO, errp) ||
            !bdrv_merge_dirty_bitmap(dst, src, saved ? NULL : &saved, errp)) {
            goto fail;
        }
    }
    if (backup) {
        *backup = saved;
    } else if (saved) {
        hbitmap_free(saved);
    }
    return dst;

fail:
    /* What earlier sources merged is taken back. */
    if (saved) {
        bdrv_restore_dirty_bitmap(dst, saved);
    }
    return NULL;
}

BdrvDirtyBitmap *block_dirty_bitmap_copy(const BlockDirtyBitmapCopy *args,
                                         Error **errp)
{
    BlockDriverState *bs, *target_bs;
    BdrvDirtyBitmap *src = block_dirty_bitmap_lookup(args->node, args->name,
                                                     &bs, errp);
    BdrvDirtyBitmap *copy;
    uint32_t granularity;

    if (!src || !bdrv_dirty_bitmap_check(src, BDRV_BITMAP_ALLOW_RO, errp)) {
        return NULL;
    }
    target_bs = bs;
    if (args->target_node) {
        target_bs = bdrv_lookup_bs(args->target_node, args->target_node, errp);
        if (!target_bs) {
            return NULL;
        }
    }
    granularity = args->has_granularity ? args->granularity
                                        : bdrv_dirty_bitmap_granularity(src);
    if (!granularity_ok(granularity, errp)) {
        return NULL;
    }
    if (args->has_persistent && args->persistent &&
        !bdrv_can_store_new_dirty_bitmap(target_bs, args->target, granularity,
                                         errp)) {
        return NULL;
    }
    if (bdrv_getlength(target_bs) != bdrv_dirty_bitmap_size(src)) {
        error_setg(errp, "Bitmaps are of different sizes (destination size is %"
                   G_GINT64_FORMAT ", source size is %" G_GINT64_FORMAT
                   ") and can't be merged", bdrv_getlength(target_bs),
                   bdrv_dirty_bitmap_size(src));
        return NULL;
    }
    copy = bdrv_create_dirty_bitmap(target_bs, granularity, args->target, errp);
    if (!copy) {
        return NULL;
    }
    bdrv_merge_dirty_bitmap(copy, src, NULL, &error_abort);
    bdrv_dirty_bitmap_set_persistent(copy, args->has_persistent &&
                                     args->persistent);
    if (args->has_disabled && args->disabled) {
        bdrv_disable_dirty_bitmap(copy);
    }
    return copy;
}

bool qmp_block_dirty_bitmap_add(const char *node, const char *name,
                                bool has_granularity, uint32_t granularity,
                                bool has_persistent, bool persistent,
                                bool has_disabled, bool disabled, Error **errp)
{
    return block_dirty_bitmap_add(node, name, has_granularity, granularity,
                                  has_persistent && persistent,
                                  has_disabled && disabled, errp) != NULL;
}

bool qmp_block_dirty_bitmap_remove(const char *node, const char *name,
                                   Error **errp)
{
    return block_dirty_bitmap_remove(node, name, true, errp) != NULL;
}

bool qmp_block_dirty_bitmap_clear(const char *node, const char *name,
                                  Error **errp)
{
    BdrvDirtyBitmap *bm = block_dirty_bitmap_lookup(node, name, NULL, errp);

    if (!bm || !bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_DEFAULT, errp)) {
        return false;
    }
    bdrv_clear_dirty_bitmap(bm, NULL);
    return true;
}

bool qmp_block_dirty_bitmap_enable(const char *node, const char *name,
                                   Error **errp)
{
    BdrvDirtyBitmap *bm = block_dirty_bitmap_lookup(node, name, NULL, errp);

    if (!bm || !bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_ALLOW_RO, errp)) {
        return false;
    }
    bdrv_enable_dirty_bitmap(bm);
    return true;
}

bool qmp_block_dirty_bitmap_disable(const char *node, const char *name,
                                    Error **errp)
{
    BdrvDirtyBitmap *bm = block_dirty_bitmap_lookup(node, name, NULL, errp);

    if (!bm || !bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_ALLOW_RO, errp)) {
        return false;
    }
    bdrv_disable_dirty_bitmap(bm);
    return true;
}

bool qmp_block_dirty_bitmap_merge(const char *node, const char *target,
                                  BlockDirtyBitmapOrStrList *bitmaps,
                                  Error **errp)
{
    return block_dirty_bitmap_merge(node, target, bitmaps, NULL, errp) != NULL;
}

bool qmp_block_dirty_bitmap_copy(const char *node, const char *name,
                                 const char *target, const char *target_node,
                                 bool has_granularity, uint32_t granularity,
                                 bool has_persistent, bool persistent,
                                 bool has_disabled, bool disabled, Error **errp)
{
    BlockDirtyBitmapCopy args = {
        .node = (char *)node, .name = (char *)name, .target = (char *)target,
        .target_node = (char *)target_node,
        .has_granularity = has_granularity, .granularity = granularity,
        .has_persistent = has_persistent, .persistent = persistent,
        .has_disabled = has_disabled, .disabled = disabled,
    };

    return block_dirty_bitmap_copy(&args, errp) != NULL;
}

BlockDirtyBitmapSha256 *qmp_x_debug_block_dirty_bitmap_sha256(const char *node,
                                                              const char *name,
                                                              Error **errp)
{
    BdrvDirtyBitmap *bm = block_dirty_bitmap_lookup(node, name, NULL, errp);
    BlockDirtyBitmapSha256 *ret;

    if (!bm) {
        return NULL;
    }
    ret = g_new0(BlockDirtyBitmapSha256, 1);
    ret->sha256 = bdrv_dirty_bitmap_sha256(bm);
    return ret;
}
