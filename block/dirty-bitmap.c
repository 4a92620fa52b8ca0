/*
 * Dirty bitmaps on block nodes; see include/block/dirty-bitmap.h.
 *
 * Bits are kept per byte range in an HBitmap whose granularity is the
 * bitmap's. The node's bitmap_lock guards its list and all their bits:
 * the write path marks under it from any thread, the main thread changes
 * states and bits under it. The list pointer is read without the lock
 * first, so a node without bitmaps costs the write path one load.
 */
#include <inttypes.h>
#include <string.h>

#include "block/core.h"
#include "block/dirty-bitmap.h"

struct BdrvDirtyBitmap {
    BlockDriverState *bs;
    HBitmap *bitmap;
    char *name;                 /* NULL: internal, unnamed */
    int64_t size;
    bool disabled;
    bool busy;
    bool readonly;
    bool persistent;
    bool inconsistent;
    BdrvDirtyBitmap *successor;
};

static void lock(BlockDriverState *bs)
{
    g_mutex_lock(&bs->core->bitmap_lock);
}

static void unlock(BlockDriverState *bs)
{
    g_mutex_unlock(&bs->core->bitmap_lock);
}

uint32_t bdrv_get_default_bitmap_granularity(BlockDriverState *bs)
{
    int64_t cluster = bdrv_get_cluster_size(bs);

    return cluster ? CLAMP(cluster, 4096, 65536) : 65536;
}

BdrvDirtyBitmap *bdrv_find_dirty_bitmap(BlockDriverState *bs, const char *name)
{
    GHashTable *names = bs->core->bitmap_names;

    return names ? g_hash_table_lookup(names, name) : NULL;
}

BdrvDirtyBitmap *bdrv_dirty_bitmap_next(BlockDriverState *bs,
                                        BdrvDirtyBitmap *bm)
{
    GList *l = bm ? g_list_find(bs->core->bitmaps, bm)->next : bs->core->bitmaps;

    return l ? l->data : NULL;
}

BdrvDirtyBitmap *bdrv_create_dirty_bitmap(BlockDriverState *bs,
                                          uint32_t granularity,
                                          const char *name, Error **errp)
{
    BdrvDirtyBitmap *bm;
    int64_t size = bdrv_getlength(bs);

    g_assert(granularity >= 512 && !(granularity & (granularity - 1)));
    if (name) {
        if (!*name) {
            error_setg(errp, "Bitmap name cannot be empty");
            return NULL;
        }
        if (bdrv_find_dirty_bitmap(bs, name)) {
            error_setg(errp, "Bitmap already exists: %s", name);
            return NULL;
        }
        if (strlen(name) > BDRV_BITMAP_MAX_NAME_SIZE) {
            error_setg(errp, "Bitmap name too long: %s", name);
            return NULL;
        }
    }
    bm = g_new0(BdrvDirtyBitmap, 1);
    bm->bs = bs;
    bm->size = size;
    bm->bitmap = hbitmap_alloc(size, __builtin_ctz(granularity));
    bm->name = g_strdup(name);
    lock(bs);
    bs->core->bitmaps = g_list_prepend(bs->core->bitmaps, bm);
    if (name) {
        if (!bs->core->bitmap_names) {
            bs->core->bitmap_names = g_hash_table_new(g_str_hash, g_str_equal);
        }
        g_hash_table_insert(bs->core->bitmap_names, bm->name, bm);
    }
    unlock(bs);
    return bm;
}

static void release_locked(BdrvDirtyBitmap *bm)
{
    bm->bs->core->bitmaps = g_list_remove(bm->bs->core->bitmaps, bm);
    if (bm->name) {
        g_hash_table_remove(bm->bs->core->bitmap_names, bm->name);
    }
    hbitmap_free(bm->bitmap);
    g_free(bm->name);
    g_free(bm);
}

void bdrv_release_dirty_bitmap(BdrvDirtyBitmap *bm)
{
    BlockDriverState *bs = bm->bs;

    g_assert(!bm->busy && !bm->successor);
    lock(bs);
    release_locked(bm);
    unlock(bs);
}

void bdrv_release_all_dirty_bitmaps(BlockDriverState *bs)
{
    lock(bs);
    while (bs->core->bitmaps) {
        release_locked(bs->core->bitmaps->data);
    }
    g_clear_pointer(&bs->core->bitmap_names, g_hash_table_unref);
    unlock(bs);
}

bool bdrv_dirty_bitmap_check(const BdrvDirtyBitmap *bm, unsigned flags,
                             Error **errp)
{
    if ((flags & BDRV_BITMAP_BUSY) && bm->busy) {
        error_setg(errp, "Bitmap '%s' is currently in use by another operation "
                   "and cannot be used", bm->name);
        return false;
    }
    if ((flags & BDRV_BITMAP_RO) && bm->readonly) {
        error_setg(errp, "Bitmap '%s' is readonly and cannot be modified",
                   bm->name);
        return false;
    }
    if ((flags & BDRV_BITMAP_INCONSISTENT) && bm->inconsistent) {
        error_setg(errp, "Bitmap '%s' is inconsistent and cannot be used",
                   bm->name);
        return false;
    }
    return true;
}

const char *bdrv_dirty_bitmap_name(const BdrvDirtyBitmap *bm)
{
    return bm->name;
}

BlockDriverState *bdrv_dirty_bitmap_bs(const BdrvDirtyBitmap *bm)
{
    return bm->bs;
}

uint32_t bdrv_dirty_bitmap_granularity(const BdrvDirtyBitmap *bm)
{
    return 1u << hbitmap_granularity(bm->bitmap);
}

int64_t bdrv_dirty_bitmap_size(const BdrvDirtyBitmap *bm)
{
    return bm->size;
}

int64_t bdrv_get_dirty_count(BdrvDirtyBitmap *bm)
{
    int64_t count;

    lock(bm->bs);
    count = hbitmap_count(bm->bitmap);
    unlock(bm->bs);
    return count;
}

bool bdrv_dirty_bitmap_enabled(const BdrvDirtyBitmap *bm)
{
    return !bm->disabled;
}

bool bdrv_dirty_bitmap_recording(const BdrvDirtyBitmap *bm)
{
    return !bm->disabled || (bm->successor && !bm->successor->disabled);
}

bool bdrv_dirty_bitmap_busy(const BdrvDirtyBitmap *bm)
{
    return bm->busy;
}

bool bdrv_dirty_bitmap_persistent(const BdrvDirtyBitmap *bm)
{
    return bm->persistent;
}

bool bdrv_dirty_bitmap_inconsistent(const BdrvDirtyBitmap *bm)
{
    return bm->inconsistent;
}

void bdrv_dirty_bitmap_set_inconsistent(BdrvDirtyBitmap *bm)
{
    lock(bm->bs);
    g_assert(bm->persistent);
    bm->inconsistent = true;
    bm->disabled = true;
    unlock(bm->bs);
}

void bdrv_enable_dirty_bitmap(BdrvDirtyBitmap *bm)
{
    lock(bm->bs);
    bm->disabled = false;
    unlock(bm->bs);
}

void bdrv_disable_dirty_bitmap(BdrvDirtyBitmap *bm)
{
    lock(bm->bs);
    bm->disabled = true;
    unlock(bm->bs);
}

void bdrv_dirty_bitmap_set_busy(BdrvDirtyBitmap *bm, bool busy)
{
    bm->busy = busy;
}

void bdrv_dirty_bitmap_set_persistent(BdrvDirtyBitmap *bm, bool persistent)
{
    bm->persistent = persistent;
}

bool bdrv_dirty_bitmap_readonly(const BdrvDirtyBitmap *bm)
{
    return bm->readonly;
}

void bdrv_dirty_bitmap_set_readonly(BdrvDirtyBitmap *bm, bool readonly)
{
    bm->readonly = readonly;
}

GPtrArray *bdrv_dirty_bitmap_list(BlockDriverState *bs)
{
    GPtrArray *list = g_ptr_array_new();
    GList *l;

    for (l = bs->core->bitmaps; l; l = l->next) {
        g_ptr_array_add(list, l->data);
    }
    return list;
}

bool bdrv_can_store_new_dirty_bitmap(BlockDriverState *bs, const char *name,
                                     uint32_t granularity, Error **errp)
{
    if (!bs->drv->can_store_new_dirty_bitmap) {
        error_setg(errp, "Can't store persistent bitmaps to %s: Operation not "
                   "supported", bdrv_get_node_name(bs));
        return false;
    }
    if (bdrv_find_dirty_bitmap(bs, name)) {
        error_setg(errp, "Bitmap already exists: %s", name);
        return false;
    }
    if (!bs->drv->can_store_new_dirty_bitmap(bs, name, granularity, errp)) {
        error_prepend(errp, "Can't make bitmap '%s' persistent in '%s': ",
                      name, bdrv_get_node_name(bs));
        return false;
    }
    return true;
}

bool bdrv_remove_persistent_dirty_bitmap(BlockDriverState *bs, const char *name,
                                         Error **errp)
{
    return !bs->drv->remove_persistent_dirty_bitmap ||
           bs->drv->remove_persistent_dirty_bitmap(bs, name, errp);
}

uint64_t bdrv_dirty_bitmap_serialization_coverage(uint64_t bytes,
                                                  const BdrvDirtyBitmap *bm)
{
    return bytes * 8 << hbitmap_granularity(bm->bitmap);
}

uint64_t bdrv_dirty_bitmap_serialization_size(const BdrvDirtyBitmap *bm,
                                              uint64_t start, uint64_t count)
{
    return hbitmap_serialization_size(bm->bitmap, start, count);
}

void bdrv_dirty_bitmap_serialize_part(BdrvDirtyBitmap *bm, uint8_t *buf,
                                      uint64_t start, uint64_t count)
{
    lock(bm->bs);
    hbitmap_serialize_part(bm->bitmap, buf, start, count);
    unlock(bm->bs);
}

void bdrv_dirty_bitmap_deserialize_part(BdrvDirtyBitmap *bm, const uint8_t *buf,
                                        uint64_t start, uint64_t count)
{
    lock(bm->bs);
    hbitmap_deserialize_part(bm->bitmap, buf, start, count, false);
    unlock(bm->bs);
}

void bdrv_dirty_bitmap_deserialize_ones(BdrvDirtyBitmap *bm, uint64_t start,
                                        uint64_t count)
{
    lock(bm->bs);
    hbitmap_deserialize_ones(bm->bitmap, start, count, false);
    unlock(bm->bs);
}

void bdrv_dirty_bitmap_deserialize_finish(BdrvDirtyBitmap *bm)
{
    lock(bm->bs);
    hbitmap_deserialize_finish(bm->bitmap);
    unlock(bm->bs);
}

void bdrv_clear_dirty_bitmap(BdrvDirtyBitmap *bm, HBitmap **backup)
{
    lock(bm->bs);
    if (backup) {
        /* Swap in an empty bitmap: undo is a swap back. */
        *backup = bm->bitmap;
        bm->bitmap = hbitmap_alloc(bm->size, hbitmap_granularity(*backup));
    } else {
        hbitmap_reset_all(bm->bitmap);
    }
    unlock(bm->bs);
}

void bdrv_restore_dirty_bitmap(BdrvDirtyBitmap *bm, HBitmap *backup)
{
    HBitmap *now;

    lock(bm->bs);
    now = bm->bitmap;
    bm->bitmap = backup;
    unlock(bm->bs);
    hbitmap_free(now);
}

bool bdrv_merge_dirty_bitmap(BdrvDirtyBitmap *dest, const BdrvDirtyBitmap *src,
                             HBitmap **backup, Error **errp)
{
    BlockDriverState *a = dest->bs, *b = src->bs;

    if (!hbitmap_can_merge(dest->bitmap, src->bitmap)) {
        error_setg(errp, "Bitmaps are of different sizes (destination size is %"
                   PRId64 ", source size is %" PRId64 ") and can't be merged",
                   dest->size, src->size);
        return false;
    }
    /* Two nodes: take their locks in address order. */
    if (a != b && (uintptr_t)a > (uintptr_t)b) {
        lock(b);
        lock(a);
    } else {
        lock(a);
        if (a != b) {
            lock(b);
        }
    }
    if (backup) {
        *backup = hbitmap_copy(dest->bitmap);
    }
    hbitmap_merge(dest->bitmap, src->bitmap, dest->bitmap);
    unlock(a);
    if (a != b) {
        unlock(b);
    }
    return true;
}

char *bdrv_dirty_bitmap_sha256(BdrvDirtyBitmap *bm)
{
    char *sum;

    lock(bm->bs);
    sum = hbitmap_sha256(bm->bitmap);
    unlock(bm->bs);
    return sum;
}

void bdrv_set_dirty(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    GList *l;

    if (!g_atomic_pointer_get(&bs->core->bitmaps) || bytes <= 0) {
        return;
    }
    lock(bs);
    for (l = bs->core->bitmaps; l; l = l->next) {
        BdrvDirtyBitmap *bm = l->data;

        if (!bm->disabled) {
            hbitmap_set(bm->bitmap, offset, bytes);
        }
    }
    unlock(bs);
}

void bdrv_set_dirty_bitmap(BdrvDirtyBitmap *bm, int64_t offset, int64_t bytes)
{
    lock(bm->bs);
    hbitmap_set(bm->bitmap, offset, bytes);
    unlock(bm->bs);
}

void bdrv_reset_dirty_bitmap(BdrvDirtyBitmap *bm, int64_t offset, int64_t bytes)
{
    lock(bm->bs);
    hbitmap_reset(bm->bitmap, offset, bytes);
    unlock(bm->bs);
}

int64_t bdrv_dirty_bitmap_next_dirty(BdrvDirtyBitmap *bm, int64_t offset,
                                     int64_t bytes)
{
    int64_t next;

    lock(bm->bs);
    next = hbitmap_next_dirty(bm->bitmap, offset, bytes);
    unlock(bm->bs);
    return next;
}

bool bdrv_dirty_bitmap_get(BdrvDirtyBitmap *bm, int64_t offset)
{
    bool dirty;

    lock(bm->bs);
    dirty = hbitmap_get(bm->bitmap, offset);
    unlock(bm->bs);
    return dirty;
}

bool bdrv_dirty_bitmap_status(BdrvDirtyBitmap *bm, int64_t offset,
                              int64_t bytes, int64_t *pnum)
{
    bool dirty;
    int64_t next;

    /* The run ends where the other state starts: never below offset. */
    lock(bm->bs);
    dirty = hbitmap_get(bm->bitmap, offset);
    next = dirty ? hbitmap_next_zero(bm->bitmap, offset, bytes)
                 : hbitmap_next_dirty(bm->bitmap, offset, bytes);
    unlock(bm->bs);
    *pnum = next < 0 ? bytes : next - offset;
    return dirty;
}

void bdrv_dirty_bitmap_lock(BdrvDirtyBitmap *bm)
{
    lock(bm->bs);
}

void bdrv_dirty_bitmap_unlock(BdrvDirtyBitmap *bm)
{
    unlock(bm->bs);
}

bool bdrv_dirty_bitmap_next_dirty_area_locked(BdrvDirtyBitmap *bm,
                                              uint64_t start, uint64_t end,
                                              uint64_t max_count,
                                              uint64_t *dirty_start,
                                              uint64_t *dirty_count)
{
    return hbitmap_next_dirty_area(bm->bitmap, start, end, max_count,
                                   dirty_start, dirty_count);
}

bool bdrv_dirty_bitmap_create_successor(BdrvDirtyBitmap *bm, Error **errp)
{
    BdrvDirtyBitmap *child;

    if (!bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_BUSY, errp)) {
        return false;
    }
    if (bm->successor) {
        error_setg(errp, "Cannot create a successor for a bitmap that already "
                   "has one");
        return false;
    }
    child = bdrv_create_dirty_bitmap(bm->bs, bdrv_dirty_bitmap_granularity(bm),
                                     NULL, &error_abort);
    lock(bm->bs);
    child->disabled = bm->disabled;
    bm->disabled = true;
    bm->successor = child;
    bm->busy = true;
    unlock(bm->bs);
    return true;
}

BdrvDirtyBitmap *bdrv_dirty_bitmap_abdicate(BdrvDirtyBitmap *bm)
{
    BdrvDirtyBitmap *successor = bm->successor;

    g_assert(successor);
    lock(bm->bs);
    successor->name = g_steal_pointer(&bm->name);
    successor->persistent = bm->persistent;
    if (successor->name) {
        g_hash_table_insert(bm->bs->core->bitmap_names, successor->name,
                            successor);
    }
    bm->successor = NULL;
    bm->busy = false;
    release_locked(bm);
    unlock(successor->bs);
    return successor;
}

BdrvDirtyBitmap *bdrv_reclaim_dirty_bitmap(BdrvDirtyBitmap *bm)
{
    BdrvDirtyBitmap *successor = bm->successor;

    g_assert(successor);
    lock(bm->bs);
    hbitmap_merge(bm->bitmap, successor->bitmap, bm->bitmap);
    bm->disabled = successor->disabled;
    bm->busy = false;
    bm->successor = NULL;
    release_locked(successor);
    unlock(bm->bs);
    return bm;
}

bool bdrv_dirty_bitmaps_allow_resize(BlockDriverState *bs, Error **errp)
{
    GList *l;

    for (l = bs->core->bitmaps; l; l = l->next) {
        BdrvDirtyBitmap *bm = l->data;

        if (bm->busy || bm->successor) {
            if (bm->name) {
                return bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_BUSY, errp);
            }
            error_setg(errp, "Node '%s' has a bitmap in use by another "
                       "operation and cannot be resized", bs->node_name);
            return false;
        }
    }
    return true;
}

void bdrv_dirty_bitmaps_truncate(BlockDriverState *bs, int64_t size)
{
    GList *l;

    lock(bs);
    for (l = bs->core->bitmaps; l; l = l->next) {
        BdrvDirtyBitmap *bm = l->data;

        hbitmap_truncate(bm->bitmap, size);
        bm->size = size;
    }
    unlock(bs);
}

BlockDirtyInfoList *bdrv_query_dirty_bitmaps(BlockDriverState *bs)
{
    BlockDirtyInfoList *head = NULL, **tail = &head;
    GList *l;

    lock(bs);
    for (l = bs->core->bitmaps; l; l = l->next) {
        BdrvDirtyBitmap *bm = l->data;
        BlockDirtyInfoList *node = g_new0(BlockDirtyInfoList, 1);
        BlockDirtyInfo *info = g_new0(BlockDirtyInfo, 1);

        info->name = g_strdup(bm->name);
        info->count = hbitmap_count(bm->bitmap);
        info->granularity = bdrv_dirty_bitmap_granularity(bm);
        info->recording = bdrv_dirty_bitmap_recording(bm);
        info->busy = bm->busy;
        info->persistent = bm->persistent;
        if (bm->inconsistent) {
            info->has_inconsistent = true;
            info->inconsistent = true;
        }
        node->value = info;
        *tail = node;
        tail = &node->next;
    }
    unlock(bs);
    return head;
}
