/*
 * Hierarchical dirty bitmap: a bit array with fast skipping of clean areas.
 *
 * An HBitmap tracks @size items (for dirty bitmaps the items are bytes of
 * a disk) at a granularity of 2^g items per bit.  Positions and lengths in
 * this API are always in items; the bitmap rounds them to granules.  See
 * util/hbitmap.c for the layout and its costs.
 *
 * Preconditions are checked with g_assert(); breaking one aborts.  An
 * HBitmap is not thread safe: callers serialise access themselves.
 */
#ifndef UTIL_HBITMAP_H
#define UTIL_HBITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

/* Each level has one bit per 64-bit word of the level below. */
#define HBITMAP_BITS_PER_LEVEL 6

/*
 * Levels including the lowest; fixed so that the top level is one word.
 * Seven levels could address 2^42 granules; QEMU reserves a top bit as an
 * iteration sentinel and so stops at 2^41, and we keep its limit so that
 * any bitmap one of them accepts the other accepts too.
 */
#define HBITMAP_LEVELS 7
#define HBITMAP_MAX_GRANULES (UINT64_C(1) << 41)

typedef struct HBitmap HBitmap;

/*
 * Iterator over dirty granules.  Allocate it anywhere (typically on the
 * stack); the fields are private.  It holds no reference: the bitmap must
 * outlive it and must not be truncated, freed or deserialised while the
 * iterator is in use.  Resetting bits while iterating is allowed (reset
 * granules ahead are never returned); granules set while iterating may or
 * may not be returned.
 */
typedef struct HBitmapIter {
    const HBitmap *hb;
    uint64_t pos;   /* index of the current word of the lowest level */
    uint64_t cur;   /* bits of that word not yet returned */
    int granularity;
} HBitmapIter;

/*
 * Allocate a clean bitmap of @size items, one bit per 2^@granularity
 * items.  Preconditions: 0 <= @granularity < 64, @size <= INT64_MAX and
 * ceil(@size / 2^@granularity) <= HBITMAP_MAX_GRANULES.  Aborts when out
 * of memory.  Free with hbitmap_free().
 */
HBitmap *hbitmap_alloc(uint64_t size, int granularity);

/* Free @hb and its arrays.  NULL is allowed. */
void hbitmap_free(HBitmap *hb);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(HBitmap, hbitmap_free)

/* The granularity g given at allocation: one bit covers 2^g items. */
int hbitmap_granularity(const HBitmap *hb);

/* The size in items given at allocation or by the last truncate. */
uint64_t hbitmap_size(const HBitmap *hb);

/*
 * Bytes of heap used by @hb: the structure and all levels.  The lowest
 * level dominates, at about one bit per granule plus 1/63 for the rest.
 */
size_t hbitmap_memory_usage(const HBitmap *hb);

/*
 * Mark dirty every granule that touches [@start, @start + @count).
 * Precondition: @start + @count <= hbitmap_size().  @count may be 0.
 * Cost O(@count / 2^g / 64 + log64 n).
 */
void hbitmap_set(HBitmap *hb, uint64_t start, uint64_t count);

/*
 * Mark clean the granules covering [@start, @start + @count).
 * Preconditions: @start + @count <= hbitmap_size(); @start is a multiple
 * of 2^g; @count is a multiple of 2^g unless the range ends at the size.
 * @count may be 0.  Cost as hbitmap_set().
 */
void hbitmap_reset(HBitmap *hb, uint64_t start, uint64_t count);

/* Mark every granule clean.  Cost O(n / 64). */
void hbitmap_reset_all(HBitmap *hb);

/* Whether the granule holding @item is dirty.  Precondition: @item < size. */
bool hbitmap_get(const HBitmap *hb, uint64_t item);

/*
 * Number of dirty items, i.e. dirty granules << g, in O(1).  If the last
 * granule is partial and dirty it counts in full, so the result may
 * exceed hbitmap_size() (as in QEMU).
 */
uint64_t hbitmap_count(const HBitmap *hb);

/* Whether no granule is dirty, in O(1). */
bool hbitmap_is_empty(const HBitmap *hb);

/*
 * First dirty item in [@start, @start + @count), the range clamped to the
 * size, or -1 if there is none.  The result is never below @start, even if
 * @start lies inside a dirty granule.  Cost O(log64 n) however large the
 * clean area skipped.
 */
int64_t hbitmap_next_dirty(const HBitmap *hb, uint64_t start, uint64_t count);

/*
 * First clean item in [@start, @start + @count), the range clamped to the
 * size, or -1 if there is none.  Never below @start.  Cost O(length / 64):
 * the upper levels cannot skip dirty areas.
 */
int64_t hbitmap_next_zero(const HBitmap *hb, uint64_t start, uint64_t count);

/*
 * Find the first dirty run that starts within [@start, @end), the range
 * clamped to the size.  On success store its start (>= @start) in
 * *@dirty_start and its length, capped at @max_count and at the clamped
 * @end, in *@dirty_count, and return true.  Return false, leaving the
 * outputs alone, if the range holds no dirty item.
 * Precondition: @max_count > 0.
 */
bool hbitmap_next_dirty_area(const HBitmap *hb, uint64_t start, uint64_t end,
                             uint64_t max_count, uint64_t *dirty_start,
                             uint64_t *dirty_count);

/*
 * Start iterating over the dirty granules of @hb from the granule that
 * holds item @first.  @first may be at or past the size, which yields an
 * empty iteration.
 */
void hbitmap_iter_init(HBitmapIter *it, const HBitmap *hb, uint64_t first);

/*
 * The first item of the next dirty granule, or -1 at the end.  For the
 * first granule this may be below the @first passed to hbitmap_iter_init().
 * Amortised O(1) per word of the lowest level.
 */
int64_t hbitmap_iter_next(HBitmapIter *it);

/* Whether @a and @b may be merged: they have the same size in items. */
bool hbitmap_can_merge(const HBitmap *a, const HBitmap *b);

/*
 * @result = @a | @b; the old contents of @result are discarded unless it
 * is @a or @b.  Preconditions: all three have the same size in items
 * (granularities may differ).  With equal granularities the merge is a
 * word-wise OR, O(n / 64); otherwise each dirty run of a source is set in
 * @result, rounded out to its granules, costing O(runs * log64 n + n / 64).
 */
void hbitmap_merge(const HBitmap *a, const HBitmap *b, HBitmap *result);

/* An independent copy of @hb with the same size, granularity and bits. */
HBitmap *hbitmap_copy(const HBitmap *hb);

/*
 * Change the size to @size items, keeping the granularity.  Growing adds
 * clean granules.  Shrinking drops the granules wholly past the new end;
 * a partially covered last granule keeps its bit.  Preconditions as for
 * hbitmap_alloc().  Iterators of @hb become invalid.
 */
void hbitmap_truncate(HBitmap *hb, uint64_t size);

/*
 * Serialisation of the lowest level as little-endian 64-bit words, so the
 * format is the same on every host.  Each word covers
 * hbitmap_serialization_align() items.  Bits past the size in the last
 * word are written as zero and ignored when read back.
 *
 * Ranges passed to the functions below: @start must be a multiple of
 * hbitmap_serialization_align(); so must @count unless the range ends at
 * the size; @start + @count <= size.
 */

/*
 * Items covered by one serialised word: 64 << g.
 * Precondition: g < 58, so that the value fits in 64 bits.
 */
uint64_t hbitmap_serialization_align(const HBitmap *hb);

/* Bytes that serialising [@start, @start + @count) produces: 8 per word. */
uint64_t hbitmap_serialization_size(const HBitmap *hb, uint64_t start,
                                    uint64_t count);

/*
 * Write the words covering [@start, @start + @count) to @buf, which must
 * hold hbitmap_serialization_size() bytes; it need not be aligned.
 */
void hbitmap_serialize_part(const HBitmap *hb, uint8_t *buf, uint64_t start,
                            uint64_t count);

/*
 * Replace the bits of [@start, @start + @count) with the words in @buf,
 * which holds hbitmap_serialization_size() bytes.  The deserialize
 * functions update only the lowest level: until hbitmap_deserialize_finish()
 * runs (directly or by passing @finish = true) the bitmap may be used
 * only by further deserialize calls.
 */
void hbitmap_deserialize_part(HBitmap *hb, const uint8_t *buf, uint64_t start,
                              uint64_t count, bool finish);

/* As hbitmap_deserialize_part() with a buffer of zero words. */
void hbitmap_deserialize_zeroes(HBitmap *hb, uint64_t start, uint64_t count,
                                bool finish);

/* As hbitmap_deserialize_part() with a buffer of all-ones words. */
void hbitmap_deserialize_ones(HBitmap *hb, uint64_t start, uint64_t count,
                              bool finish);

/*
 * Rebuild the upper levels and the count from the lowest level after
 * deserialisation.  Cost O(n / 64).
 */
void hbitmap_deserialize_finish(HBitmap *hb);

/*
 * SHA-256 of the lowest level as little-endian 64-bit words, 8 bytes per
 * word and at least one word, as lowercase hex in a g_malloc()ed string.
 * Equal to QEMU's x-debug-block-dirty-bitmap-sha256 for the same bits.
 */
char *hbitmap_sha256(const HBitmap *hb);

#endif /* UTIL_HBITMAP_H */
