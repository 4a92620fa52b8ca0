/*
 * Dirty bitmaps on block nodes: each records, at its granularity, which
 * bytes of its node were written (write, write-zeroes, discard) while it
 * was enabled, as QEMU's do.
 *
 * A node lists its bitmaps newest first. One lock per node guards the
 * list and the bits, so I/O threads mark while the main thread queries or
 * changes them; everything but marking and counting is main-thread only.
 */
#ifndef BLOCK_DIRTY_BITMAP_H
#define BLOCK_DIRTY_BITMAP_H

#include "block/block.h"
#include "qapi-types.h"
#include "util/hbitmap.h"

typedef struct BdrvDirtyBitmap BdrvDirtyBitmap;

/* What bdrv_dirty_bitmap_check() refuses, QEMU's names. */
enum {
    BDRV_BITMAP_BUSY = 1 << 0,
    BDRV_BITMAP_RO = 1 << 1,
    BDRV_BITMAP_INCONSISTENT = 1 << 2,
    BDRV_BITMAP_DEFAULT = BDRV_BITMAP_BUSY | BDRV_BITMAP_RO |
                          BDRV_BITMAP_INCONSISTENT,
    BDRV_BITMAP_ALLOW_RO = BDRV_BITMAP_BUSY | BDRV_BITMAP_INCONSISTENT,
};

#define BDRV_BITMAP_MAX_NAME_SIZE 1023

/*
 * Creates an enabled bitmap covering bs (name NULL: an internal, unnamed
 * one). granularity is a power of two, at least 512.
 */
BdrvDirtyBitmap *bdrv_create_dirty_bitmap(BlockDriverState *bs,
                                          uint32_t granularity,
                                          const char *name, Error **errp);
/* Frees a bitmap that is not busy and has no successor. */
void bdrv_release_dirty_bitmap(BdrvDirtyBitmap *bm);
BdrvDirtyBitmap *bdrv_find_dirty_bitmap(BlockDriverState *bs, const char *name);
/* QEMU's default: the cluster size clamped to [4 KiB, 64 KiB], else 64 KiB. */
uint32_t bdrv_get_default_bitmap_granularity(BlockDriverState *bs);

/* Fails with QEMU's text if bm is busy, read-only or inconsistent (flags). */
bool bdrv_dirty_bitmap_check(const BdrvDirtyBitmap *bm, unsigned flags,
                             Error **errp);

const char *bdrv_dirty_bitmap_name(const BdrvDirtyBitmap *bm);
BlockDriverState *bdrv_dirty_bitmap_bs(const BdrvDirtyBitmap *bm);
uint32_t bdrv_dirty_bitmap_granularity(const BdrvDirtyBitmap *bm);
int64_t bdrv_dirty_bitmap_size(const BdrvDirtyBitmap *bm);
/* Dirty bytes: dirty granules times the granularity. */
int64_t bdrv_get_dirty_count(BdrvDirtyBitmap *bm);
bool bdrv_dirty_bitmap_enabled(const BdrvDirtyBitmap *bm);
/* Enabled, or its successor is: what queries call "recording". */
bool bdrv_dirty_bitmap_recording(const BdrvDirtyBitmap *bm);
bool bdrv_dirty_bitmap_busy(const BdrvDirtyBitmap *bm);
bool bdrv_dirty_bitmap_persistent(const BdrvDirtyBitmap *bm);
bool bdrv_dirty_bitmap_inconsistent(const BdrvDirtyBitmap *bm);

void bdrv_enable_dirty_bitmap(BdrvDirtyBitmap *bm);
void bdrv_disable_dirty_bitmap(BdrvDirtyBitmap *bm);
void bdrv_dirty_bitmap_set_busy(BdrvDirtyBitmap *bm, bool busy);
void bdrv_dirty_bitmap_set_persistent(BdrvDirtyBitmap *bm, bool persistent);
/*
 * For a persistent bitmap loaded with its in-use flag set (the daemon
 * that wrote it stopped without saving it): it stops recording and may
 * only be removed, as in QEMU.
 */
void bdrv_dirty_bitmap_set_inconsistent(BdrvDirtyBitmap *bm);

/* Clears every bit; *backup (if not NULL) receives the old bits for undo. */
void bdrv_clear_dirty_bitmap(BdrvDirtyBitmap *bm, HBitmap **backup);
/* Puts back bits saved by clear or merge, and frees them. */
void bdrv_restore_dirty_bitmap(BdrvDirtyBitmap *bm, HBitmap *backup);
/*
 * dest |= src (any granularity, same size); *backup (if not NULL) receives
 * dest's old bits. Checks sizes only: callers check states.
 */
bool bdrv_merge_dirty_bitmap(BdrvDirtyBitmap *dest, const BdrvDirtyBitmap *src,
                             HBitmap **backup, Error **errp);
/* SHA-256 of the bits, as x-debug-block-dirty-bitmap-sha256 answers. */
char *bdrv_dirty_bitmap_sha256(BdrvDirtyBitmap *bm);

/* Marks [offset, offset+bytes) in every enabled bitmap of bs (any thread). */
void bdrv_set_dirty(BlockDriverState *bs, int64_t offset, int64_t bytes);
/* Sets or clears a range of one bitmap (jobs; any thread). */
void bdrv_set_dirty_bitmap(BdrvDirtyBitmap *bm, int64_t offset, int64_t bytes);
void bdrv_reset_dirty_bitmap(BdrvDirtyBitmap *bm, int64_t offset, int64_t bytes);
/* Next dirty byte in [offset, offset+bytes), or -1 (any thread). */
int64_t bdrv_dirty_bitmap_next_dirty(BdrvDirtyBitmap *bm, int64_t offset,
                                     int64_t bytes);
bool bdrv_dirty_bitmap_get(BdrvDirtyBitmap *bm, int64_t offset);

/*
 * The successor protocol of backup jobs. create_successor freezes bm
 * (busy, disabled) and starts an unnamed successor that records new
 * writes if bm did. abdicate: the successor replaces bm (bm's bits are
 * dropped) and is returned. reclaim: bm takes back the successor's bits
 * and recording state, and is returned.
 */
bool bdrv_dirty_bitmap_create_successor(BdrvDirtyBitmap *bm, Error **errp);
BdrvDirtyBitmap *bdrv_dirty_bitmap_abdicate(BdrvDirtyBitmap *bm);
BdrvDirtyBitmap *bdrv_reclaim_dirty_bitmap(BdrvDirtyBitmap *bm);

/* Whether bs may be resized: no bitmap busy (QEMU asserts; blkd refuses). */
bool bdrv_dirty_bitmaps_allow_resize(BlockDriverState *bs, Error **errp);
/* Follows a resize of bs: new bytes clean, dropped bytes dropped. */
void bdrv_dirty_bitmaps_truncate(BlockDriverState *bs, int64_t size);
/* Frees every bitmap of bs (its close). */
void bdrv_release_all_dirty_bitmaps(BlockDriverState *bs);

/* The "dirty-bitmaps" of a node's query entry, newest first; NULL if none. */
BlockDirtyInfoList *bdrv_query_dirty_bitmaps(BlockDriverState *bs);

#endif
