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
/* bs's bitmaps, newest first: start with NULL, ends with NULL. */
BdrvDirtyBitmap *bdrv_dirty_bitmap_next(BlockDriverState *bs,
                                        BdrvDirtyBitmap *bm);
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
/* Loaded from a read-only image: its bits may not change (QEMU's "RO"). */
bool bdrv_dirty_bitmap_readonly(const BdrvDirtyBitmap *bm);
void bdrv_dirty_bitmap_set_readonly(BdrvDirtyBitmap *bm, bool readonly);

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
 * Whether offset is dirty; *pnum: how many bytes from offset on, at most
 * bytes, are in that same state (any thread).
 */
bool bdrv_dirty_bitmap_status(BdrvDirtyBitmap *bm, int64_t offset,
                              int64_t bytes, int64_t *pnum);

/*
 * A reader walking many runs (NBD block status) holds the node's bitmap
 * lock over the walk: writes wait to mark, so the walk sees one state.
 */
void bdrv_dirty_bitmap_lock(BdrvDirtyBitmap *bm);
void bdrv_dirty_bitmap_unlock(BdrvDirtyBitmap *bm);
/* hbitmap_next_dirty_area() of bm's bits, under bdrv_dirty_bitmap_lock(). */
bool bdrv_dirty_bitmap_next_dirty_area_locked(BdrvDirtyBitmap *bm,
                                              uint64_t start, uint64_t end,
                                              uint64_t max_count,
                                              uint64_t *dirty_start,
                                              uint64_t *dirty_count);

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
/* The bitmaps of bs, newest first, in a new array (main thread). */
GPtrArray *bdrv_dirty_bitmap_list(BlockDriverState *bs);

/*
 * Persistent bitmaps: the driver stores them in the image (qcow2). Whether
 * a new bitmap may be made persistent on bs, with QEMU's texts ("Can't
 * store persistent bitmaps to ...", "Can't make bitmap ... persistent in
 * ...: reason"). Main thread.
 */
bool bdrv_can_store_new_dirty_bitmap(BlockDriverState *bs, const char *name,
                                     uint32_t granularity, Error **errp);
/* Deletes name from the image at once (not stored there: nothing to do). */
bool bdrv_remove_persistent_dirty_bitmap(BlockDriverState *bs, const char *name,
                                         Error **errp);

/*
 * For drivers that store bitmaps: the bits as little-endian 64-bit words,
 * bit n for the granule at n * granularity (the qcow2 layout). start and
 * count are bytes of the node, start a multiple of the coverage of a word
 * (64 granules), count too unless the range ends at the bitmap's size.
 */
/* Bytes of the node that `bytes` of serialised bits cover. */
uint64_t bdrv_dirty_bitmap_serialization_coverage(uint64_t bytes,
                                                  const BdrvDirtyBitmap *bm);
/* Bytes that serialising [start, start + count) takes: 8 per word. */
uint64_t bdrv_dirty_bitmap_serialization_size(const BdrvDirtyBitmap *bm,
                                              uint64_t start, uint64_t count);
void bdrv_dirty_bitmap_serialize_part(BdrvDirtyBitmap *bm, uint8_t *buf,
                                      uint64_t start, uint64_t count);
/*
 * Loading: replace the bits of a range from buf, or set them all; then
 * finish once, before the bitmap is used (it recounts).
 */
void bdrv_dirty_bitmap_deserialize_part(BdrvDirtyBitmap *bm, const uint8_t *buf,
                                        uint64_t start, uint64_t count);
void bdrv_dirty_bitmap_deserialize_ones(BdrvDirtyBitmap *bm, uint64_t start,
                                        uint64_t count);
void bdrv_dirty_bitmap_deserialize_finish(BdrvDirtyBitmap *bm);

/* The "dirty-bitmaps" of a node's query entry, newest first; NULL if none. */
BlockDirtyInfoList *bdrv_query_dirty_bitmaps(BlockDriverState *bs);

#endif
