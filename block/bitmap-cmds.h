/*
 * The bitmap operations behind the QMP commands, shared with the
 * transaction actions (which keep the undo data). Main thread only.
 */
#ifndef BLOCK_BITMAP_CMDS_H
#define BLOCK_BITMAP_CMDS_H

#include "block/dirty-bitmap.h"

/* "Node 'X' not found" / "Dirty bitmap 'X' not found", as QEMU. */
BdrvDirtyBitmap *block_dirty_bitmap_lookup(const char *node, const char *name,
                                           BlockDriverState **pbs, Error **errp);
BdrvDirtyBitmap *block_dirty_bitmap_add(const char *node, const char *name,
                                        bool has_granularity, uint32_t granularity,
                                        bool persistent, bool disabled,
                                        Error **errp);
/* Checks; with release, also frees. Returns the bitmap (NULL on error). */
BdrvDirtyBitmap *block_dirty_bitmap_remove(const char *node, const char *name,
                                           bool release, Error **errp);
/* *backup (if not NULL): the target's bits before, for undo. */
BdrvDirtyBitmap *block_dirty_bitmap_merge(const char *node, const char *target,
                                          BlockDirtyBitmapOrStrList *bitmaps,
                                          HBitmap **backup, Error **errp);
BdrvDirtyBitmap *block_dirty_bitmap_copy(const BlockDirtyBitmapCopy *args,
                                         Error **errp);

#endif
