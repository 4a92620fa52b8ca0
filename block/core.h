/*
 * What only the block core sees: the per-node state behind
 * BlockDriverState.core, and the functions the core files share.
 * Drivers never include this.
 */
#ifndef BLOCK_CORE_H
#define BLOCK_CORE_H

#include "block/block_int.h"
#include "block/block-backend.h"

typedef struct BdrvNodeCore {
    int refcnt;
    bool monitor_owned;         /* added by blockdev-add: blockdev-del may free */
    GPtrArray *children;        /* BdrvChild *, owned */
    GPtrArray *parents;         /* BdrvChild *, the edges to this node */
    uint64_t perm, shared;      /* what the parents need / share, cumulated */

    /*
     * Cached; set at open and by resizes, which may come from I/O threads
     * (a format growing its file): use node_length()/set_node_length().
     */
    int64_t length;

    /* Requests in flight, to serialise read-modify-write and fleecing. */
    GMutex req_lock;
    GCond req_cond;
    GList *tracked;             /* BdrvTrackedRequest * */
    int serialise_writes;       /* atomic: bdrv_serialise_writes_ref() count */

    /* Dirty bitmaps, newest first, and the lock of the list and bits. */
    GMutex bitmap_lock;
    GList *bitmaps;             /* BdrvDirtyBitmap * */
    /* The named ones by name (an image may bring 65535 of them). */
    GHashTable *bitmap_names;   /* bm->name -> BdrvDirtyBitmap *, or NULL */
} BdrvNodeCore;

static inline int64_t node_length(const BlockDriverState *bs)
{
    return __atomic_load_n(&bs->core->length, __ATOMIC_ACQUIRE);
}

static inline void set_node_length(BlockDriverState *bs, int64_t len)
{
    __atomic_store_n(&bs->core->length, len, __ATOMIC_RELEASE);
}

/* block/drivers.c: the driver table. */
const BlockDriver *bdrv_find_driver(const char *name);
/*
 * The format of the image in filename, as QEMU probes it: the driver whose
 * probe knows its first bytes, else raw. NULL with errp if unreadable.
 */
const BlockDriver *bdrv_probe_format(const char *filename, Error **errp);

/* block/perm.c: permissions across the graph (main thread). */
bool bdrv_refresh_perms(BlockDriverState *bs, Error **errp);
char *bdrv_child_user_desc(const BdrvChild *c);
void bdrv_default_child_perm(BlockDriverState *parent, BdrvChildRole role,
                             uint64_t *perm, uint64_t *shared);
/* The driver's child_perm, or the default for the edge's role. */
void bdrv_child_perm(BlockDriverState *parent, BdrvChild *c, uint64_t *perm,
                     uint64_t *shared);

/* block/block.c */
/*
 * The options that open the image file filename with drv (file, raw or
 * qcow2; others: NULL with errp), for the caller to add to: how
 * drive-backup and blockdev-snapshot-sync open the images they make.
 */
BlockdevOptions *bdrv_image_options(const char *filename,
                                    const BlockDriver *drv, Error **errp);
BdrvChild *bdrv_attach_child_edge(BlockDriverState *child_bs, void *parent,
                                  bool parent_is_node, const char *name,
                                  BdrvChildRole role, uint64_t perm,
                                  uint64_t shared, Error **errp);
void bdrv_detach_child_edge(BdrvChild *c);
/* bdrv_truncate() for user, which holds resize: only the others are asked. */
bool bdrv_truncate_for(BlockDriverState *bs, int64_t size,
                       const BdrvChild *user, Error **errp);

/* block/io.c */
void bdrv_node_io_init(BlockDriverState *bs);
void bdrv_node_io_cleanup(BlockDriverState *bs);

#endif
