/*
 * Hierarchical dirty bitmap.
 *
 * Layout.  The lowest level is the real bitmap: bit i of the array of
 * 64-bit words is set iff granule i, items [i << g, (i + 1) << g), is
 * dirty.  Above it sit further levels of the same shape, each with one
 * bit per word of the level below:
 *
 *     bit j of level k-1 is set  <=>  word j of level k is non-zero
 *
 * Each level is 64 times smaller than the one below, so with seven levels
 * the top one (level 0) is a single word even for the 2^41 granules
 * allowed (2^35 lowest words, then 2^29, 2^23, 2^17, 2^11, 2^5, 1).  The
 * number of levels is fixed rather than fitted to the size because it
 * keeps every loop bound a constant and costs at most a few words for
 * small bitmaps.  Every level keeps at least one word, which is also why
 * an empty bitmap still serialises and hashes as one zero word, as in
 * QEMU.
 *
 * Invariants, which every mutator keeps on return:
 *  1. the upper-level rule above holds at every level;
 *  2. bits past the end of a level (granules >= size in the lowest level,
 *     words that do not exist below for the others) are zero, so searches
 *     need no masking at the tail;
 *  3. count is the number of set bits of the lowest level.
 * Deserialisation alone suspends 1 and 3 until hbitmap_deserialize_finish.
 *
 * Costs, for n granules and a range of L granules:
 *  - set/reset write L/64 words below and the range shifted right by 6 on
 *    each level above, stopping as soon as a level sees no word change
 *    between zero and non-zero: O(L/64 + log64 n).  Reset touches only
 *    the words the level above marks non-zero and first skips to the
 *    first dirty granule, so clearing clean space (say the tail dropped
 *    by a shrink) costs O(L/4096) at most and O(log64 n) when all clean.
 *  - finding the next dirty granule climbs while the rest of the current
 *    word is zero and descends along first set bits, at most two passes
 *    over the seven levels: O(log64 n) however much clean space is
 *    skipped.  Clean granules cannot be found the same way (a set upper
 *    bit says "some dirty bit below", not "all dirty"), so next_zero scans
 *    the lowest level: O(L/64).
 *  - count is kept up to date by set/reset, which popcount only the words
 *    they touch, so reading it is O(1).
 *  - memory is n/8 bytes for the lowest level plus 1/64 of that for each
 *    level above: n/8 * (1 + 1/63) overall, i.e. within 2% of a flat bitmap.
 *
 * Words are always uint64_t whatever the host's long is, so that the
 * geometry, the serialised form and the SHA-256 match QEMU on 64-bit
 * little-endian hosts and stay the same elsewhere.
 */
#include <string.h>

#include "util/hbitmap.h"

/* 64-bit words: one bit per word of the level below. */
#define WORD_BITS (1 << HBITMAP_BITS_PER_LEVEL)
#define LOWEST (HBITMAP_LEVELS - 1)
#define ALL_ONES (~UINT64_C(0))
/* "No such granule": larger than any granule index, which is <= 2^41. */
#define NONE UINT64_MAX

struct HBitmap {
    uint64_t orig_size;                 /* items, as given by the caller */
    uint64_t size;                      /* granules: bits used at the bottom */
    uint64_t count;                     /* dirty granules */
    int granularity;
    uint64_t sizes[HBITMAP_LEVELS];     /* words per level */
    uint64_t *levels[HBITMAP_LEVELS];   /* levels[0] is the one-word top */
};

static inline unsigned popcount64(uint64_t w)
{
#if (defined(__x86_64__) || defined(__i386__)) && !defined(__POPCNT__)
    /*
     * Baseline x86 has no popcount instruction and GCC would call libgcc's
     * table-driven __popcountdi2; this bit-slicing form is a few times
     * faster, which shows in reset, merge and deserialisation.
     */
    w -= (w >> 1) & UINT64_C(0x5555555555555555);
    w = (w & UINT64_C(0x3333333333333333)) +
        ((w >> 2) & UINT64_C(0x3333333333333333));
    w = (w + (w >> 4)) & UINT64_C(0x0f0f0f0f0f0f0f0f);
    return (unsigned)((w * UINT64_C(0x0101010101010101)) >> 56);
#else
    return (unsigned)__builtin_popcountll(w);
#endif
}

/* Precondition: w != 0. */
static inline unsigned ctz64(uint64_t w)
{
    return (unsigned)__builtin_ctzll(w);
}

/* Bits >= bit of a word. */
static inline uint64_t mask_from(uint64_t bit)
{
    return ALL_ONES << (bit % WORD_BITS);
}

/* Bits <= bit of a word. */
static inline uint64_t mask_upto(uint64_t bit)
{
    return ALL_ONES >> (WORD_BITS - 1 - bit % WORD_BITS);
}

/* ceil(size / 2^g), written so that it cannot overflow. */
static uint64_t granules_for(uint64_t size, int granularity)
{
    return size ? ((size - 1) >> granularity) + 1 : 0;
}

static void check_geometry(uint64_t size, int granularity)
{
    g_assert(granularity >= 0 && granularity < 64);
    /* Item positions are returned as int64_t. */
    g_assert(size <= INT64_MAX);
    g_assert(granules_for(size, granularity) <= HBITMAP_MAX_GRANULES);
}

static void level_sizes(uint64_t granules, uint64_t sizes[HBITMAP_LEVELS])
{
    uint64_t bits = granules;

    for (int i = LOWEST; i >= 0; i--) {
        sizes[i] = MAX((bits + WORD_BITS - 1) / WORD_BITS, 1);
        bits = sizes[i];
    }
}

static uint64_t popcount_words(const uint64_t *words, uint64_t n)
{
    uint64_t total = 0;

    for (uint64_t i = 0; i < n; i++) {
        total += popcount64(words[i]);
    }
    return total;
}

/*
 * OR @mask into *@w; add the bits that were clean to *@added and note in
 * *@woke whether the word was zero, i.e. whether the level above may lack
 * the word's bit.
 */
static inline void word_set(uint64_t *w, uint64_t mask, uint64_t *added,
                            bool *woke)
{
    uint64_t old = *w;

    *added += popcount64(mask & ~old);
    *woke |= old == 0;
    *w = old | mask;
}

/* Clear @mask in *@w; returns how many bits were set there. */
static inline uint64_t word_clear(uint64_t *w, uint64_t mask)
{
    uint64_t gone = *w & mask;

    *w &= ~mask;
    return popcount64(gone);
}

/*
 * Set bits [first, last] of one level.  Adds the newly set bits to
 * *@added; returns whether some word in the range was zero before.
 */
static bool level_set(uint64_t *words, uint64_t first, uint64_t last,
                      uint64_t *added)
{
    uint64_t fw = first / WORD_BITS, lw = last / WORD_BITS;
    bool woke = false;

    if (fw == lw) {
        word_set(&words[fw], mask_from(first) & mask_upto(last), added, &woke);
        return woke;
    }
    word_set(&words[fw], mask_from(first), added, &woke);
    for (uint64_t i = fw + 1; i < lw; i++) {
        uint64_t old = words[i];

        /* Whole words: skip the popcount in the common clean case. */
        if (old == 0) {
            *added += WORD_BITS;
            woke = true;
        } else {
            *added += WORD_BITS - popcount64(old);
        }
        words[i] = ALL_ONES;
    }
    word_set(&words[lw], mask_upto(last), added, &woke);
    return woke;
}

/*
 * Clear bits [first, last] of level @i; returns how many were set.  The
 * words strictly inside the range are visited only where the level above
 * says they are non-zero, so clean stretches cost 1/64 of a word each.
 */
static uint64_t level_clear(HBitmap *hb, int i, uint64_t first, uint64_t last)
{
    uint64_t *words = hb->levels[i];
    uint64_t fw = first / WORD_BITS, lw = last / WORD_BITS;
    uint64_t removed;

    if (fw == lw) {
        return word_clear(&words[fw], mask_from(first) & mask_upto(last));
    }
    /* Several words, so i > 0: the top level has a single word. */
    removed = word_clear(&words[fw], mask_from(first));
    if (lw - fw > 1) {
        const uint64_t *above = hb->levels[i - 1];
        uint64_t lo = fw + 1, hi = lw - 1;

        for (uint64_t a = lo / WORD_BITS; a <= hi / WORD_BITS; a++) {
            uint64_t aw = above[a];

            if (a == lo / WORD_BITS) {
                aw &= mask_from(lo);
            }
            if (a == hi / WORD_BITS) {
                aw &= mask_upto(hi);
            }
            if (aw == ALL_ONES) {
                /* All 64 words dirty: a straight loop beats bit walking. */
                uint64_t *group = words + a * WORD_BITS;

                for (int k = 0; k < WORD_BITS; k++) {
                    removed += popcount64(group[k]);
                    group[k] = 0;
                }
                continue;
            }
            for (; aw; aw &= aw - 1) {
                uint64_t k = a * WORD_BITS + ctz64(aw);

                removed += popcount64(words[k]);
                words[k] = 0;
            }
        }
    }
    return removed + word_clear(&words[lw], mask_upto(last));
}

/*
 * The first dirty granule >= @pos, or NONE.  Climb while the rest of the
 * current word is zero; a set bit at level k names a non-zero word at
 * level k+1 lying wholly after the words already ruled out, so descend
 * along lowest set bits.
 */
static uint64_t hb_next_set(const HBitmap *hb, uint64_t pos)
{
    int i = LOWEST;

    for (;;) {
        uint64_t idx = pos / WORD_BITS;
        uint64_t w;

        if (idx >= hb->sizes[i]) {
            return NONE;
        }
        w = hb->levels[i][idx] & mask_from(pos);
        if (w) {
            pos = idx * WORD_BITS + ctz64(w);
            break;
        }
        if (i == 0) {
            return NONE;
        }
        /* Bit idx + 1 of the level above stands for the next word. */
        pos = idx + 1;
        i--;
    }
    while (i < LOWEST) {
        i++;
        pos = pos * WORD_BITS + ctz64(hb->levels[i][pos]);
    }
    return pos;
}

/* Mark granules [first, last] dirty.  Precondition: last < hb->size. */
static void hb_set_granules(HBitmap *hb, uint64_t first, uint64_t last)
{
    for (int i = LOWEST;; i--) {
        uint64_t added = 0;
        bool woke = level_set(hb->levels[i], first, last, &added);

        if (i == LOWEST) {
            hb->count += added;
        }
        /*
         * Words that were already non-zero have their bit above already;
         * now every word in the range is non-zero, so the whole
         * shifted range may be set above without looking closer.
         */
        if (!woke || i == 0) {
            return;
        }
        first /= WORD_BITS;
        last /= WORD_BITS;
    }
}

/* Mark granules [first, last] clean.  Precondition: last < hb->size. */
static void hb_reset_granules(HBitmap *hb, uint64_t first, uint64_t last)
{
    /*
     * Skip the clean prefix, found in O(log64 n): resetting a clean range
     * then costs O(log64 n) instead of a walk over the level above.
     */
    first = hb_next_set(hb, first);
    if (first > last) {
        return;
    }
    for (int i = LOWEST;; i--) {
        uint64_t *words = hb->levels[i];
        uint64_t fw = first / WORD_BITS, lw = last / WORD_BITS;
        uint64_t removed = level_clear(hb, i, first, last);

        if (i == LOWEST) {
            hb->count -= removed;
        }
        /* No bit changed, so no word became zero: the levels above hold. */
        if (removed == 0 || i == 0) {
            return;
        }
        /*
         * The words strictly inside the range are zero now; the two end
         * words may keep bits outside the range, and then their bit above
         * must stay.
         */
        first = words[fw] ? fw + 1 : fw;
        if (words[lw]) {
            if (lw == fw) {
                return;
            }
            last = lw - 1;
        } else {
            last = lw;
        }
        if (first > last) {
            return;
        }
    }
}

/*
 * The first clean granule in [pos, last], or NONE.  Linear in the lowest
 * level: upper bits cannot tell full words from partly dirty ones.
 * Precondition: pos <= last < hb->size.
 */
static uint64_t hb_next_clear(const HBitmap *hb, uint64_t pos, uint64_t last)
{
    const uint64_t *words = hb->levels[LOWEST];
    uint64_t idx = pos / WORD_BITS, lw = last / WORD_BITS;
    uint64_t w = ~words[idx] & mask_from(pos);

    while (!w) {
        if (idx == lw) {
            return NONE;
        }
        w = ~words[++idx];
    }
    pos = idx * WORD_BITS + ctz64(w);
    return pos <= last ? pos : NONE;
}

HBitmap *hbitmap_alloc(uint64_t size, int granularity)
{
    HBitmap *hb;

    check_geometry(size, granularity);
    hb = g_new0(HBitmap, 1);
    hb->orig_size = size;
    hb->size = granules_for(size, granularity);
    hb->granularity = granularity;
    level_sizes(hb->size, hb->sizes);
    for (int i = 0; i < HBITMAP_LEVELS; i++) {
        hb->levels[i] = g_new0(uint64_t, hb->sizes[i]);
    }
    return hb;
}

void hbitmap_free(HBitmap *hb)
{
    if (!hb) {
        return;
    }
    for (int i = 0; i < HBITMAP_LEVELS; i++) {
        g_free(hb->levels[i]);
    }
    g_free(hb);
}

int hbitmap_granularity(const HBitmap *hb)
{
    return hb->granularity;
}

uint64_t hbitmap_size(const HBitmap *hb)
{
    return hb->orig_size;
}

size_t hbitmap_memory_usage(const HBitmap *hb)
{
    size_t total = sizeof(*hb);

    for (int i = 0; i < HBITMAP_LEVELS; i++) {
        total += hb->sizes[i] * sizeof(uint64_t);
    }
    return total;
}

void hbitmap_set(HBitmap *hb, uint64_t start, uint64_t count)
{
    g_assert(start <= hb->orig_size && count <= hb->orig_size - start);
    if (count == 0) {
        return;
    }
    hb_set_granules(hb, start >> hb->granularity,
                    (start + count - 1) >> hb->granularity);
}

void hbitmap_reset(HBitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t gmask = (UINT64_C(1) << hb->granularity) - 1;

    g_assert(start <= hb->orig_size && count <= hb->orig_size - start);
    /* A partial reset of a granule cannot be represented. */
    g_assert((start & gmask) == 0);
    g_assert((count & gmask) == 0 || start + count == hb->orig_size);
    if (count == 0) {
        return;
    }
    hb_reset_granules(hb, start >> hb->granularity,
                      (start + count - 1) >> hb->granularity);
}

void hbitmap_reset_all(HBitmap *hb)
{
    for (int i = 0; i < HBITMAP_LEVELS; i++) {
        memset(hb->levels[i], 0, hb->sizes[i] * sizeof(uint64_t));
    }
    hb->count = 0;
}

bool hbitmap_get(const HBitmap *hb, uint64_t item)
{
    uint64_t pos;

    g_assert(item < hb->orig_size);
    pos = item >> hb->granularity;
    return (hb->levels[LOWEST][pos / WORD_BITS] >> (pos % WORD_BITS)) & 1;
}

uint64_t hbitmap_count(const HBitmap *hb)
{
    return hb->count << hb->granularity;
}

bool hbitmap_is_empty(const HBitmap *hb)
{
    return hb->count == 0;
}

/* End of [start, start + count) clamped to the size.  Needs start < size. */
static uint64_t clamped_end(const HBitmap *hb, uint64_t start, uint64_t count)
{
    return count < hb->orig_size - start ? start + count : hb->orig_size;
}

int64_t hbitmap_next_dirty(const HBitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t end, pos;

    if (start >= hb->orig_size || count == 0) {
        return -1;
    }
    end = clamped_end(hb, start, count);
    pos = hb_next_set(hb, start >> hb->granularity);
    if (pos == NONE || pos > (end - 1) >> hb->granularity) {
        return -1;
    }
    return (int64_t)MAX(pos << hb->granularity, start);
}

int64_t hbitmap_next_zero(const HBitmap *hb, uint64_t start, uint64_t count)
{
    uint64_t end, pos;

    if (start >= hb->orig_size || count == 0) {
        return -1;
    }
    end = clamped_end(hb, start, count);
    pos = hb_next_clear(hb, start >> hb->granularity,
                        (end - 1) >> hb->granularity);
    if (pos == NONE) {
        return -1;
    }
    return (int64_t)MAX(pos << hb->granularity, start);
}

bool hbitmap_next_dirty_area(const HBitmap *hb, uint64_t start, uint64_t end,
                             uint64_t max_count, uint64_t *dirty_start,
                             uint64_t *dirty_count)
{
    int64_t first, zero;
    uint64_t limit;

    g_assert(max_count > 0);
    end = MIN(end, hb->orig_size);
    if (start >= end) {
        return false;
    }
    first = hbitmap_next_dirty(hb, start, end - start);
    if (first < 0) {
        return false;
    }
    limit = MIN(max_count, end - (uint64_t)first);
    zero = hbitmap_next_zero(hb, (uint64_t)first, limit);
    *dirty_start = (uint64_t)first;
    *dirty_count = zero < 0 ? limit : (uint64_t)(zero - first);
    return true;
}

void hbitmap_iter_init(HBitmapIter *it, const HBitmap *hb, uint64_t first)
{
    uint64_t pos = first >> hb->granularity;

    it->hb = hb;
    it->granularity = hb->granularity;
    if (pos >= hb->size) {
        /* Past the last word: the next search starts beyond every level. */
        it->pos = hb->sizes[LOWEST];
        it->cur = 0;
        return;
    }
    it->pos = pos / WORD_BITS;
    it->cur = hb->levels[LOWEST][it->pos] & mask_from(pos);
}

int64_t hbitmap_iter_next(HBitmapIter *it)
{
    const HBitmap *hb = it->hb;
    uint64_t cur = it->cur;

    /*
     * Re-read the live word so that granules reset since it was cached
     * are skipped; the search below reads live words too.
     */
    if (cur) {
        cur &= hb->levels[LOWEST][it->pos];
    }
    if (!cur) {
        uint64_t next = hb_next_set(hb, (it->pos + 1) * WORD_BITS);

        if (next == NONE) {
            it->cur = 0;
            return -1;
        }
        it->pos = next / WORD_BITS;
        cur = hb->levels[LOWEST][it->pos];
    }
    it->cur = cur & (cur - 1);
    return (int64_t)((it->pos * WORD_BITS + ctz64(cur)) << it->granularity);
}

bool hbitmap_can_merge(const HBitmap *a, const HBitmap *b)
{
    return a->orig_size == b->orig_size;
}

/* OR every dirty run of @src into @dst, which may be coarser or finer. */
static void merge_runs(HBitmap *dst, const HBitmap *src)
{
    uint64_t pos = 0;

    while ((pos = hb_next_set(src, pos)) != NONE) {
        uint64_t end = hb_next_clear(src, pos, src->size - 1);
        uint64_t first_item, end_item;

        if (end == NONE) {
            end = src->size;
        }
        first_item = pos << src->granularity;
        end_item = MIN(end << src->granularity, src->orig_size);
        hb_set_granules(dst, first_item >> dst->granularity,
                        (end_item - 1) >> dst->granularity);
        pos = end;
    }
}

void hbitmap_merge(const HBitmap *a, const HBitmap *b, HBitmap *result)
{
    g_assert(hbitmap_can_merge(a, b) && hbitmap_can_merge(a, result));

    if (a->granularity == result->granularity &&
        b->granularity == result->granularity) {
        /*
         * Same geometry: a word of an upper level is non-zero iff one of
         * the words it covers is, so OR-ing every level keeps the rule.
         */
        for (int i = 0; i < HBITMAP_LEVELS; i++) {
            const uint64_t *wa = a->levels[i], *wb = b->levels[i];
            uint64_t *wr = result->levels[i];

            for (uint64_t j = 0; j < result->sizes[i]; j++) {
                wr[j] = wa[j] | wb[j];
            }
        }
        result->count = popcount_words(result->levels[LOWEST],
                                       result->sizes[LOWEST]);
        return;
    }

    if (result != a && result != b) {
        hbitmap_reset_all(result);
    }
    if (a != result) {
        merge_runs(result, a);
    }
    if (b != result && b != a) {
        merge_runs(result, b);
    }
}

HBitmap *hbitmap_copy(const HBitmap *hb)
{
    HBitmap *copy = g_new(HBitmap, 1);

    *copy = *hb;
    for (int i = 0; i < HBITMAP_LEVELS; i++) {
        copy->levels[i] = g_new(uint64_t, hb->sizes[i]);
        memcpy(copy->levels[i], hb->levels[i], hb->sizes[i] * sizeof(uint64_t));
    }
    return copy;
}

void hbitmap_truncate(HBitmap *hb, uint64_t size)
{
    uint64_t granules, sizes[HBITMAP_LEVELS];

    check_geometry(size, hb->granularity);
    granules = granules_for(size, hb->granularity);
    /*
     * Clearing the dropped granules first zeroes every word past the new
     * end on every level (by the upper-level rule), so the arrays can
     * simply be cut and the tail bits of the kept words are clean.
     */
    if (granules < hb->size) {
        hb_reset_granules(hb, granules, hb->size - 1);
    }
    level_sizes(granules, sizes);
    for (int i = 0; i < HBITMAP_LEVELS; i++) {
        if (sizes[i] == hb->sizes[i]) {
            continue;
        }
        hb->levels[i] = g_renew(uint64_t, hb->levels[i], sizes[i]);
        if (sizes[i] > hb->sizes[i]) {
            memset(&hb->levels[i][hb->sizes[i]], 0,
                   (sizes[i] - hb->sizes[i]) * sizeof(uint64_t));
        }
        hb->sizes[i] = sizes[i];
    }
    hb->size = granules;
    hb->orig_size = size;
}

uint64_t hbitmap_serialization_align(const HBitmap *hb)
{
    g_assert(hb->granularity < 58);
    return (uint64_t)WORD_BITS << hb->granularity;
}

/*
 * Check a serialisation range and find the words it covers.  Alignment is
 * tested on granules so that it works for any granularity, even where
 * hbitmap_serialization_align() would overflow.
 */
static void serial_words(const HBitmap *hb, uint64_t start, uint64_t count,
                         uint64_t *first_word, uint64_t *nwords)
{
    int g = hb->granularity;
    uint64_t gmask = (UINT64_C(1) << g) - 1;

    g_assert(start <= hb->orig_size && count <= hb->orig_size - start);
    g_assert((start & gmask) == 0 && ((start >> g) % WORD_BITS) == 0);
    g_assert(start + count == hb->orig_size ||
             ((count & gmask) == 0 && ((count >> g) % WORD_BITS) == 0));
    *first_word = (start >> g) / WORD_BITS;
    *nwords = count ? ((start + count - 1) >> g) / WORD_BITS - *first_word + 1
                    : 0;
}

/* Clear the unused bits of the last lowest-level word (invariant 2). */
static void clear_tail(HBitmap *hb)
{
    if (hb->size % WORD_BITS) {
        hb->levels[LOWEST][hb->size / WORD_BITS] &= mask_upto(hb->size - 1);
    }
}

uint64_t hbitmap_serialization_size(const HBitmap *hb, uint64_t start,
                                    uint64_t count)
{
    uint64_t first, n;

    serial_words(hb, start, count, &first, &n);
    return n * sizeof(uint64_t);
}

void hbitmap_serialize_part(const HBitmap *hb, uint8_t *buf, uint64_t start,
                            uint64_t count)
{
    const uint64_t *words = hb->levels[LOWEST];
    uint64_t first, n;

    serial_words(hb, start, count, &first, &n);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t le = GUINT64_TO_LE(words[first + i]);

        memcpy(buf + i * sizeof(le), &le, sizeof(le));
    }
}

void hbitmap_deserialize_part(HBitmap *hb, const uint8_t *buf, uint64_t start,
                              uint64_t count, bool finish)
{
    uint64_t *words = hb->levels[LOWEST];
    uint64_t first, n;

    serial_words(hb, start, count, &first, &n);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t le;

        memcpy(&le, buf + i * sizeof(le), sizeof(le));
        words[first + i] = GUINT64_FROM_LE(le);
    }
    clear_tail(hb);
    if (finish) {
        hbitmap_deserialize_finish(hb);
    }
}

/* Fill the words covering a serialisation range with @byte. */
static void deserialize_fill(HBitmap *hb, int byte, uint64_t start,
                             uint64_t count, bool finish)
{
    uint64_t first, n;

    serial_words(hb, start, count, &first, &n);
    memset(&hb->levels[LOWEST][first], byte, n * sizeof(uint64_t));
    clear_tail(hb);
    if (finish) {
        hbitmap_deserialize_finish(hb);
    }
}

void hbitmap_deserialize_zeroes(HBitmap *hb, uint64_t start, uint64_t count,
                                bool finish)
{
    deserialize_fill(hb, 0, start, count, finish);
}

void hbitmap_deserialize_ones(HBitmap *hb, uint64_t start, uint64_t count,
                              bool finish)
{
    deserialize_fill(hb, 0xff, start, count, finish);
}

void hbitmap_deserialize_finish(HBitmap *hb)
{
    for (int i = LOWEST; i > 0; i--) {
        const uint64_t *below = hb->levels[i];
        uint64_t *above = hb->levels[i - 1];

        /* Whole words built without branches: dirty data is random. */
        for (uint64_t a = 0; a < hb->sizes[i - 1]; a++) {
            const uint64_t *group = below + a * WORD_BITS;
            uint64_t n = MIN(WORD_BITS, hb->sizes[i] - a * WORD_BITS);
            uint64_t bits = 0;

            for (uint64_t k = 0; k < n; k++) {
                bits |= (uint64_t)(group[k] != 0) << k;
            }
            above[a] = bits;
        }
    }
    hb->count = popcount_words(hb->levels[LOWEST], hb->sizes[LOWEST]);
}

char *hbitmap_sha256(const HBitmap *hb)
{
    const uint64_t *words = hb->levels[LOWEST];
    uint64_t n = hb->sizes[LOWEST];
    /* Words pass through a buffer in little-endian order on any host. */
    uint64_t chunk[512];
    GChecksum *sum = g_checksum_new(G_CHECKSUM_SHA256);
    char *hex;

    for (uint64_t i = 0; i < n;) {
        uint64_t k = MIN(n - i, G_N_ELEMENTS(chunk));

        for (uint64_t j = 0; j < k; j++) {
            chunk[j] = GUINT64_TO_LE(words[i + j]);
        }
        g_checksum_update(sum, (const guchar *)chunk,
                          (gssize)(k * sizeof(uint64_t)));
        i += k;
    }
    hex = g_strdup(g_checksum_get_string(sum));
    g_checksum_free(sum);
    return hex;
}
