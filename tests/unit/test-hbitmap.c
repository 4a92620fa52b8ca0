/*
 * Hierarchical bitmap: every public function, word and level boundaries,
 * truncation, serialisation, hashing, merging, iteration, a bitmap of
 * more than 2^32 bits, and a long randomised run against a plain array.
 */
#include <string.h>

#include "util/hbitmap.h"

#define L1 UINT64_C(64)
#define L2 (L1 * L1)
#define L3 (L2 * L1)
#define L4 (L3 * L1)

/* SHA-256 of 8 zero bytes: one clean word. */
#define SHA256_ZERO_WORD \
    "af5570f5a1810b7af78caf4bc70a660f0df51e42baf91d4de5b2328de0e83dfc"

static HBitmap *alloc_with_bits(uint64_t size, int g, const uint64_t *items,
                                size_t n)
{
    HBitmap *hb = hbitmap_alloc(size, g);

    for (size_t i = 0; i < n; i++) {
        hbitmap_set(hb, items[i], 1);
    }
    return hb;
}

/* Collect what an iterator from @first returns, terminated by -1. */
static GArray *iter_collect(const HBitmap *hb, uint64_t first)
{
    GArray *out = g_array_new(FALSE, FALSE, sizeof(int64_t));
    HBitmapIter it;
    int64_t v;

    hbitmap_iter_init(&it, hb, first);
    do {
        v = hbitmap_iter_next(&it);
        g_array_append_val(out, v);
    } while (v >= 0);
    return out;
}

static void assert_iter_yields(const HBitmap *hb, uint64_t first,
                               const int64_t *expected, size_t n)
{
    g_autoptr(GArray) got = iter_collect(hb, first);

    g_assert_cmpuint(got->len, ==, n + 1);
    for (size_t i = 0; i < n; i++) {
        g_assert_cmpint(g_array_index(got, int64_t, i), ==, expected[i]);
    }
    g_assert_cmpint(g_array_index(got, int64_t, n), ==, -1);
}

/* ---- allocation and geometry ---- */

static void test_alloc_empty(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(0, 0);
    g_autofree char *sha = hbitmap_sha256(hb);
    HBitmapIter it;

    g_assert_cmpuint(hbitmap_size(hb), ==, 0);
    g_assert_cmpuint(hbitmap_count(hb), ==, 0);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 100), ==, -1);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 100), ==, -1);
    hbitmap_iter_init(&it, hb, 0);
    g_assert_cmpint(hbitmap_iter_next(&it), ==, -1);
    hbitmap_set(hb, 0, 0);
    hbitmap_reset(hb, 0, 0);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_cmpuint(hbitmap_serialization_size(hb, 0, 0), ==, 0);
    /* Like QEMU, an empty bitmap still has one (clean) word. */
    g_assert_cmpstr(sha, ==, SHA256_ZERO_WORD);
}

static void test_alloc_getters(void)
{
    g_autoptr(HBitmap) a = hbitmap_alloc(1000, 0);
    g_autoptr(HBitmap) b = hbitmap_alloc(UINT64_C(1) << 40, 16);

    g_assert_cmpint(hbitmap_granularity(a), ==, 0);
    g_assert_cmpuint(hbitmap_size(a), ==, 1000);
    g_assert_cmpint(hbitmap_granularity(b), ==, 16);
    g_assert_cmpuint(hbitmap_size(b), ==, UINT64_C(1) << 40);
    g_assert_true(hbitmap_is_empty(b));
}

static void test_alloc_memory_usage(void)
{
    /* 2^24 granules: 2 MiB lowest level, upper levels add about 1/63. */
    g_autoptr(HBitmap) hb = hbitmap_alloc(UINT64_C(1) << 40, 16);
    size_t flat = (size_t)(UINT64_C(1) << 24) / 8;
    size_t used = hbitmap_memory_usage(hb);

    g_assert_cmpuint(used, >, flat);
    g_assert_cmpuint(used, <=, flat + flat / 50);
}

static void test_alloc_too_large(void)
{
    if (g_test_subprocess()) {
        hbitmap_free(hbitmap_alloc(HBITMAP_MAX_GRANULES + 1, 0));
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
}

static void test_alloc_max_granules_by_granularity(void)
{
    /* The limit is on granules, not items: 2^41 granules of 2^21 items. */
    if (g_test_subprocess()) {
        hbitmap_free(hbitmap_alloc((HBITMAP_MAX_GRANULES << 21) + 1, 21));
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
}

/* ---- set ---- */

static void test_set_single(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(1000, 0);

    hbitmap_set(hb, 500, 1);
    g_assert_true(hbitmap_get(hb, 500));
    g_assert_false(hbitmap_get(hb, 499));
    g_assert_false(hbitmap_get(hb, 501));
    g_assert_cmpuint(hbitmap_count(hb), ==, 1);
    g_assert_false(hbitmap_is_empty(hb));
}

static void test_set_across_word_boundary(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(200, 0);

    hbitmap_set(hb, 60, 10);
    g_assert_cmpuint(hbitmap_count(hb), ==, 10);
    g_assert_false(hbitmap_get(hb, 59));
    g_assert_true(hbitmap_get(hb, 60));
    g_assert_true(hbitmap_get(hb, 63));
    g_assert_true(hbitmap_get(hb, 64));
    g_assert_true(hbitmap_get(hb, 69));
    g_assert_false(hbitmap_get(hb, 70));
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 200), ==, 60);
    g_assert_cmpint(hbitmap_next_dirty(hb, 64, 200), ==, 64);
    g_assert_cmpint(hbitmap_next_zero(hb, 60, 200), ==, 70);
}

static void test_set_bits_63_64(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(128, 0);
    const int64_t expected[] = { 63, 64 };

    hbitmap_set(hb, 63, 1);
    hbitmap_set(hb, 64, 1);
    g_assert_cmpuint(hbitmap_count(hb), ==, 2);
    assert_iter_yields(hb, 0, expected, 2);
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 128), ==, 63);
    g_assert_cmpint(hbitmap_next_zero(hb, 63, 128), ==, 65);
}

static void test_set_whole_unaligned_size(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(1000, 0);

    hbitmap_set(hb, 0, 1000);
    g_assert_cmpuint(hbitmap_count(hb), ==, 1000);
    g_assert_true(hbitmap_get(hb, 999));
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 1000), ==, -1);
    g_assert_cmpint(hbitmap_next_dirty(hb, 999, 1), ==, 999);
}

static void test_set_idempotent_and_overlap(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(10000, 0);

    hbitmap_set(hb, 100, 200);
    hbitmap_set(hb, 100, 200);
    g_assert_cmpuint(hbitmap_count(hb), ==, 200);
    hbitmap_set(hb, 250, 100);
    g_assert_cmpuint(hbitmap_count(hb), ==, 250);
    hbitmap_set(hb, 0, 10000);
    g_assert_cmpuint(hbitmap_count(hb), ==, 10000);
}

static void test_set_granularity_rounding(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(1 << 20, 9);

    /* [1000, 1030) touches granules 1 and 2. */
    hbitmap_set(hb, 1000, 30);
    g_assert_cmpuint(hbitmap_count(hb), ==, 1024);
    g_assert_false(hbitmap_get(hb, 511));
    g_assert_true(hbitmap_get(hb, 512));
    g_assert_true(hbitmap_get(hb, 1535));
    g_assert_false(hbitmap_get(hb, 1536));
    /* A single item marks its whole granule. */
    hbitmap_set(hb, (UINT64_C(1) << 20) - 1, 1);
    g_assert_cmpuint(hbitmap_count(hb), ==, 1536);
    g_assert_true(hbitmap_get(hb, (UINT64_C(1) << 20) - 512));
}

static void test_set_granularity_16(void)
{
    uint64_t size = UINT64_C(1) << 36;
    g_autoptr(HBitmap) hb = hbitmap_alloc(size, 16);

    hbitmap_set(hb, 65535, 2);
    g_assert_cmpuint(hbitmap_count(hb), ==, 2 << 16);
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, size), ==, 0);
    g_assert_cmpint(hbitmap_next_dirty(hb, 70000, size), ==, 70000);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, size), ==, 2 << 16);
    g_assert_cmpint(hbitmap_next_dirty(hb, 2 << 16, size), ==, -1);
}

static void test_set_partial_last_granule(void)
{
    /* 1000 items at g = 9: two granules, the second covers 488 items. */
    g_autoptr(HBitmap) hb = hbitmap_alloc(1000, 9);

    hbitmap_set(hb, 999, 1);
    g_assert_cmpuint(hbitmap_count(hb), ==, 512);
    hbitmap_set(hb, 0, 1000);
    /* Counted in whole granules: more than the size, as in QEMU. */
    g_assert_cmpuint(hbitmap_count(hb), ==, 1024);
}

/*
 * At each level boundary n = 64, 64^2, 64^3, 64^4 granules: bits on either
 * side of the boundary, found across it, in a bitmap a little bigger.
 */
static void test_set_level_boundaries(void)
{
    const uint64_t bounds[] = { L1, L2, L3, L4 };

    for (size_t i = 0; i < G_N_ELEMENTS(bounds); i++) {
        uint64_t n = bounds[i];
        g_autoptr(HBitmap) hb = hbitmap_alloc(2 * n + 3, 0);
        const int64_t both[] = { (int64_t)n - 1, (int64_t)n };

        hbitmap_set(hb, n - 1, 2);
        g_assert_cmpuint(hbitmap_count(hb), ==, 2);
        g_assert_cmpint(hbitmap_next_dirty(hb, 0, 2 * n + 3), ==, n - 1);
        g_assert_cmpint(hbitmap_next_dirty(hb, n, 2 * n + 3), ==, n);
        g_assert_cmpint(hbitmap_next_dirty(hb, n + 1, 2 * n + 3), ==, -1);
        assert_iter_yields(hb, 0, both, 2);
        hbitmap_reset(hb, n - 1, 1);
        g_assert_cmpint(hbitmap_next_dirty(hb, 0, 2 * n + 3), ==, n);
        assert_iter_yields(hb, 0, both + 1, 1);
        hbitmap_reset(hb, n, 1);
        g_assert_true(hbitmap_is_empty(hb));
        g_assert_cmpint(hbitmap_next_dirty(hb, 0, 2 * n + 3), ==, -1);

        /* The very last granule, far from the first. */
        hbitmap_set(hb, 2 * n + 2, 1);
        g_assert_cmpint(hbitmap_next_dirty(hb, 0, 2 * n + 3), ==, 2 * n + 2);
        g_assert_cmpint(hbitmap_next_zero(hb, 2 * n + 2, 1), ==, -1);
    }
}

/* ---- reset ---- */

static void test_reset_partial_words(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(200, 0);

    hbitmap_set(hb, 0, 200);
    hbitmap_reset(hb, 60, 10);
    g_assert_cmpuint(hbitmap_count(hb), ==, 190);
    g_assert_true(hbitmap_get(hb, 59));
    g_assert_false(hbitmap_get(hb, 60));
    g_assert_false(hbitmap_get(hb, 69));
    g_assert_true(hbitmap_get(hb, 70));
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 200), ==, 60);
    g_assert_cmpint(hbitmap_next_dirty(hb, 60, 200), ==, 70);
}

static void test_reset_whole_words(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(L3, 0);

    hbitmap_set(hb, 5, 1);
    hbitmap_set(hb, 100, 1000);
    hbitmap_set(hb, L2 + 100, 1);
    /* Clears many words, some of which empty whole upper-level words. */
    hbitmap_reset(hb, 64, L2);
    g_assert_cmpuint(hbitmap_count(hb), ==, 2);
    g_assert_cmpint(hbitmap_next_dirty(hb, 6, L3), ==, L2 + 100);
    hbitmap_reset(hb, 0, L3);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, L3), ==, -1);
}

static void test_reset_keeps_neighbours(void)
{
    /* Bits outside the range in the end words keep their upper bits. */
    g_autoptr(HBitmap) hb = hbitmap_alloc(L2 * 2, 0);

    hbitmap_set(hb, L2 - 1, 2);
    hbitmap_set(hb, L2 - 64, 1);
    hbitmap_set(hb, L2 + 63, 1);
    hbitmap_reset(hb, L2 - 1, 2);
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 2 * L2), ==, L2 - 64);
    g_assert_cmpint(hbitmap_next_dirty(hb, L2 - 63, 2 * L2), ==, L2 + 63);
    g_assert_cmpuint(hbitmap_count(hb), ==, 2);
}

static void test_reset_granularity_to_end(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(1000, 9);

    hbitmap_set(hb, 0, 1000);
    /* Unaligned count is allowed because the range ends at the size. */
    hbitmap_reset(hb, 512, 488);
    g_assert_cmpuint(hbitmap_count(hb), ==, 512);
    g_assert_false(hbitmap_get(hb, 999));
    hbitmap_reset(hb, 0, 512);
    g_assert_true(hbitmap_is_empty(hb));
}

static void test_reset_unaligned_aborts(void)
{
    if (g_test_subprocess()) {
        g_autoptr(HBitmap) hb = hbitmap_alloc(4096, 9);

        hbitmap_reset(hb, 1, 511);
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
}

static void test_reset_all(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(L3 + 5, 3);
    HBitmapIter it;

    hbitmap_set(hb, 0, 10);
    hbitmap_set(hb, L3, 5);
    hbitmap_reset_all(hb);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_cmpuint(hbitmap_count(hb), ==, 0);
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, L3 + 5), ==, -1);
    hbitmap_iter_init(&it, hb, 0);
    g_assert_cmpint(hbitmap_iter_next(&it), ==, -1);
    hbitmap_set(hb, L3, 1);
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, L3 + 5), ==, L3);
}

/* ---- searches ---- */

static void test_next_dirty_bounds(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(10000, 4);

    hbitmap_set(hb, 1000, 1);   /* granule 62: items 992..1007 */
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 10000), ==, 992);
    /* Inside the dirty granule the answer is the start itself. */
    g_assert_cmpint(hbitmap_next_dirty(hb, 1000, 1), ==, 1000);
    g_assert_cmpint(hbitmap_next_dirty(hb, 1007, 5), ==, 1007);
    g_assert_cmpint(hbitmap_next_dirty(hb, 1008, 10000), ==, -1);
    /* The range must reach the granule. */
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 992), ==, -1);
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 993), ==, 992);
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 0), ==, -1);
    /* Counts past the end are clamped; starts past the end find nothing. */
    g_assert_cmpint(hbitmap_next_dirty(hb, 900, UINT64_MAX), ==, 992);
    g_assert_cmpint(hbitmap_next_dirty(hb, 10000, 10), ==, -1);
    g_assert_cmpint(hbitmap_next_dirty(hb, UINT64_MAX, 1), ==, -1);
}

static void test_next_zero_bounds(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(1000, 4);

    hbitmap_set(hb, 0, 1000);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 1000), ==, -1);
    hbitmap_reset(hb, 160, 16);  /* granule 10 */
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 1000), ==, 160);
    g_assert_cmpint(hbitmap_next_zero(hb, 170, 1000), ==, 170);
    g_assert_cmpint(hbitmap_next_zero(hb, 176, 1000), ==, -1);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 160), ==, -1);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 161), ==, 160);
    g_assert_cmpint(hbitmap_next_zero(hb, 100, 0), ==, -1);
    g_assert_cmpint(hbitmap_next_zero(hb, 1000, 1), ==, -1);
    /* Partial last granule (items 992..999) when clean. */
    hbitmap_reset(hb, 992, 8);
    g_assert_cmpint(hbitmap_next_zero(hb, 995, UINT64_MAX), ==, 995);
    g_assert_cmpint(hbitmap_next_zero(hb, 176, UINT64_MAX), ==, 992);
}

static void test_next_zero_long_scan(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(L3, 0);

    hbitmap_set(hb, 0, L3);
    hbitmap_reset(hb, L3 - 1, 1);
    g_assert_cmpint(hbitmap_next_zero(hb, 3, L3), ==, L3 - 1);
    g_assert_cmpint(hbitmap_next_zero(hb, 3, L3 - 4), ==, -1);
}

static void test_next_dirty_area(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(10000, 0);
    uint64_t start = 0, count = 0;

    hbitmap_set(hb, 100, 50);
    hbitmap_set(hb, 5000, 5000);

    g_assert_true(hbitmap_next_dirty_area(hb, 0, 10000, 1000, &start, &count));
    g_assert_cmpuint(start, ==, 100);
    g_assert_cmpuint(count, ==, 50);
    /* Starting inside a run. */
    g_assert_true(hbitmap_next_dirty_area(hb, 120, 10000, 1000, &start,
                                          &count));
    g_assert_cmpuint(start, ==, 120);
    g_assert_cmpuint(count, ==, 30);
    /* Capped by max_count. */
    g_assert_true(hbitmap_next_dirty_area(hb, 0, 10000, 7, &start, &count));
    g_assert_cmpuint(start, ==, 100);
    g_assert_cmpuint(count, ==, 7);
    /* Capped by end. */
    g_assert_true(hbitmap_next_dirty_area(hb, 0, 110, 1000, &start, &count));
    g_assert_cmpuint(start, ==, 100);
    g_assert_cmpuint(count, ==, 10);
    /* A run reaching the end of the bitmap; end past the size clamps. */
    g_assert_true(hbitmap_next_dirty_area(hb, 150, UINT64_MAX, UINT64_MAX,
                                          &start, &count));
    g_assert_cmpuint(start, ==, 5000);
    g_assert_cmpuint(count, ==, 5000);
    /* Nothing: outputs untouched. */
    start = count = 42;
    g_assert_false(hbitmap_next_dirty_area(hb, 150, 5000, 10, &start,
                                           &count));
    g_assert_false(hbitmap_next_dirty_area(hb, 10000, 20000, 10, &start,
                                           &count));
    g_assert_false(hbitmap_next_dirty_area(hb, 120, 120, 10, &start, &count));
    g_assert_cmpuint(start, ==, 42);
    g_assert_cmpuint(count, ==, 42);
}

static void test_next_dirty_area_granularity(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(1000, 9);
    uint64_t start, count;

    hbitmap_set(hb, 600, 1);   /* granule 1: items 512..999 */
    g_assert_true(hbitmap_next_dirty_area(hb, 0, 1000, 10000, &start,
                                          &count));
    g_assert_cmpuint(start, ==, 512);
    g_assert_cmpuint(count, ==, 488);
}

/* ---- iterator ---- */

static void test_iter_basic(void)
{
    const uint64_t bits[] = { 0, 63, 64, 4095, 4096, 262143, 262144, 300000 };
    g_autoptr(HBitmap) hb = alloc_with_bits(300001, 0, bits,
                                            G_N_ELEMENTS(bits));
    int64_t expected[G_N_ELEMENTS(bits)];

    for (size_t i = 0; i < G_N_ELEMENTS(bits); i++) {
        expected[i] = (int64_t)bits[i];
    }
    assert_iter_yields(hb, 0, expected, G_N_ELEMENTS(bits));
    assert_iter_yields(hb, 64, expected + 2, G_N_ELEMENTS(bits) - 2);
    assert_iter_yields(hb, 65, expected + 3, G_N_ELEMENTS(bits) - 3);
    assert_iter_yields(hb, 300000, expected + 7, 1);
}

static void test_iter_granularity(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(100000, 9);
    const int64_t expected[] = { 1024, 1536, 99840 };

    hbitmap_set(hb, 1100, 600);
    hbitmap_set(hb, 99999, 1);
    /* The first granule may start below the position asked for. */
    assert_iter_yields(hb, 1200, expected, 3);
    assert_iter_yields(hb, 1536, expected + 1, 2);
}

static void test_iter_past_end(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(1000, 0);
    HBitmapIter it;

    hbitmap_set(hb, 0, 1000);
    hbitmap_iter_init(&it, hb, 1000);
    g_assert_cmpint(hbitmap_iter_next(&it), ==, -1);
    hbitmap_iter_init(&it, hb, UINT64_MAX);
    g_assert_cmpint(hbitmap_iter_next(&it), ==, -1);
    hbitmap_iter_init(&it, hb, 999);
    g_assert_cmpint(hbitmap_iter_next(&it), ==, 999);
    g_assert_cmpint(hbitmap_iter_next(&it), ==, -1);
    g_assert_cmpint(hbitmap_iter_next(&it), ==, -1);
}

static void test_iter_reset_during(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(L3, 0);
    HBitmapIter it;
    int64_t v, prev = -1;
    uint64_t returned = 0;

    /* Every third bit dirty; while walking, reset the next two dirty ones. */
    for (uint64_t i = 0; i < L3; i += 3) {
        hbitmap_set(hb, i, 1);
    }
    hbitmap_iter_init(&it, hb, 0);
    while ((v = hbitmap_iter_next(&it)) >= 0) {
        g_assert_cmpint(v, >, prev);
        g_assert_true(hbitmap_get(hb, (uint64_t)v));
        g_assert_cmpint(v % 9, ==, 0);
        returned++;
        for (uint64_t k = (uint64_t)v + 3; k <= (uint64_t)v + 6 && k < L3;
             k += 3) {
            hbitmap_reset(hb, k, 1);
        }
        prev = v;
    }
    g_assert_cmpuint(returned, ==, (L3 + 8) / 9);

    /* Reset the whole rest while in the middle of a word. */
    hbitmap_set(hb, 0, L3);
    hbitmap_iter_init(&it, hb, 10);
    g_assert_cmpint(hbitmap_iter_next(&it), ==, 10);
    hbitmap_reset(hb, 11, L3 - 11);
    g_assert_cmpint(hbitmap_iter_next(&it), ==, -1);
}

/* ---- merge ---- */

static void test_merge_can_merge(void)
{
    g_autoptr(HBitmap) a = hbitmap_alloc(1000, 0);
    g_autoptr(HBitmap) b = hbitmap_alloc(1000, 9);
    g_autoptr(HBitmap) c = hbitmap_alloc(1001, 0);

    g_assert_true(hbitmap_can_merge(a, b));
    g_assert_false(hbitmap_can_merge(a, c));
}

static void test_merge_same_granularity(void)
{
    const uint64_t size = L3 + 77;
    g_autoptr(HBitmap) a = hbitmap_alloc(size, 0);
    g_autoptr(HBitmap) b = hbitmap_alloc(size, 0);
    g_autoptr(HBitmap) r = hbitmap_alloc(size, 0);
    const int64_t expected[] = { 10, 11, 12, 4096, (int64_t)L3 + 76 };

    hbitmap_set(a, 10, 2);
    hbitmap_set(b, 11, 2);
    hbitmap_set(b, 4096, 1);
    hbitmap_set(a, L3 + 76, 1);
    /* Old contents of the result are discarded. */
    hbitmap_set(r, 5000, 100);
    hbitmap_merge(a, b, r);
    g_assert_cmpuint(hbitmap_count(r), ==, 5);
    assert_iter_yields(r, 0, expected, G_N_ELEMENTS(expected));
    g_assert_cmpint(hbitmap_next_dirty(r, 13, size), ==, 4096);
    /* Sources unchanged. */
    g_assert_cmpuint(hbitmap_count(a), ==, 3);
    g_assert_cmpuint(hbitmap_count(b), ==, 3);
}

static void test_merge_alias(void)
{
    g_autoptr(HBitmap) a = hbitmap_alloc(10000, 2);
    g_autoptr(HBitmap) b = hbitmap_alloc(10000, 2);

    hbitmap_set(a, 0, 8);
    hbitmap_set(b, 9000, 4);
    hbitmap_merge(a, b, a);
    g_assert_cmpuint(hbitmap_count(a), ==, 12);
    g_assert_cmpint(hbitmap_next_dirty(a, 8, 10000), ==, 9000);

    hbitmap_set(b, 4000, 4);
    hbitmap_merge(a, b, b);
    g_assert_cmpuint(hbitmap_count(b), ==, 16);

    hbitmap_merge(b, b, b);
    g_assert_cmpuint(hbitmap_count(b), ==, 16);
}

/* Dirty granules of @hb, as a byte per granule of granularity @g. */
static uint8_t *rounded_items(const HBitmap *a, const HBitmap *b, int g)
{
    uint64_t size = hbitmap_size(a);
    uint8_t *out = g_new0(uint8_t, (size >> g) + 1);

    for (uint64_t i = 0; i < size; i++) {
        if (hbitmap_get(a, i) || hbitmap_get(b, i)) {
            out[i >> g] = 1;
        }
    }
    return out;
}

static void test_merge_different_granularity(void)
{
    const uint64_t size = 100003;
    g_autoptr(HBitmap) a = hbitmap_alloc(size, 0);
    g_autoptr(HBitmap) b = hbitmap_alloc(size, 5);
    g_autoptr(HBitmap) r = hbitmap_alloc(size, 3);
    g_autoptr(GRand) rnd = g_rand_new_with_seed(7);
    g_autofree uint8_t *want = NULL;

    for (int i = 0; i < 300; i++) {
        hbitmap_set(a, (uint64_t)g_rand_int_range(rnd, 0, (gint32)size - 20),
                    (uint64_t)g_rand_int_range(rnd, 1, 20));
        hbitmap_set(b, (uint64_t)g_rand_int_range(rnd, 0, (gint32)size - 100),
                    (uint64_t)g_rand_int_range(rnd, 1, 100));
    }
    /* Both last granules, b's being partial (100003 = 3125 * 32 + 3). */
    hbitmap_set(a, size - 1, 1);
    hbitmap_set(b, size - 1, 1);
    hbitmap_set(r, 0, size);    /* discarded */
    want = rounded_items(a, b, 3);
    hbitmap_merge(a, b, r);
    for (uint64_t i = 0; i < size; i++) {
        g_assert_cmpint(hbitmap_get(r, i), ==, want[i >> 3]);
    }

    /* result aliasing the finer source: b's runs rounded down to g = 0. */
    {
        g_autoptr(HBitmap) a2 = hbitmap_copy(a);
        g_autofree uint8_t *want0 = rounded_items(a, b, 0);
        uint64_t n = 0;

        hbitmap_merge(a2, b, a2);
        for (uint64_t i = 0; i < size; i++) {
            g_assert_cmpint(hbitmap_get(a2, i), ==, want0[i]);
            n += want0[i];
        }
        g_assert_cmpuint(hbitmap_count(a2), ==, n);
    }

    /* result aliasing the coarser source. */
    {
        g_autoptr(HBitmap) b2 = hbitmap_copy(b);
        g_autofree uint8_t *want5 = rounded_items(a, b, 5);

        hbitmap_merge(a, b2, b2);
        for (uint64_t i = 0; i < size; i++) {
            g_assert_cmpint(hbitmap_get(b2, i), ==, want5[i >> 5]);
        }
    }
}

/* ---- copy ---- */

static void test_copy_independent(void)
{
    g_autoptr(HBitmap) a = hbitmap_alloc(L2 + 9, 1);
    g_autoptr(HBitmap) c = NULL;
    g_autofree char *sha_a = NULL;
    g_autofree char *sha_c = NULL;

    hbitmap_set(a, 100, 1000);
    c = hbitmap_copy(a);
    g_assert_cmpuint(hbitmap_size(c), ==, hbitmap_size(a));
    g_assert_cmpint(hbitmap_granularity(c), ==, 1);
    g_assert_cmpuint(hbitmap_count(c), ==, hbitmap_count(a));
    sha_a = hbitmap_sha256(a);
    sha_c = hbitmap_sha256(c);
    g_assert_cmpstr(sha_a, ==, sha_c);

    hbitmap_reset(c, 100, 1000);
    hbitmap_set(c, L2, 1);
    g_assert_cmpuint(hbitmap_count(a), ==, 1000);
    g_assert_true(hbitmap_get(a, 100));
    g_assert_false(hbitmap_get(a, L2));
    g_assert_cmpint(hbitmap_next_dirty(c, 0, L2 + 9), ==, L2);
    g_assert_cmpint(hbitmap_next_dirty(a, 0, L2 + 9), ==, 100);
}

/* ---- truncate ---- */

static void test_truncate_grow(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(100, 0);

    hbitmap_set(hb, 0, 100);
    hbitmap_truncate(hb, L3 + 10);
    g_assert_cmpuint(hbitmap_size(hb), ==, L3 + 10);
    g_assert_cmpuint(hbitmap_count(hb), ==, 100);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, L3 + 10), ==, 100);
    g_assert_cmpint(hbitmap_next_dirty(hb, 100, L3 + 10), ==, -1);
    hbitmap_set(hb, L3 + 9, 1);
    g_assert_cmpint(hbitmap_next_dirty(hb, 100, L3 + 10), ==, L3 + 9);
    g_assert_cmpuint(hbitmap_count(hb), ==, 101);
}

static void test_truncate_shrink(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(L3, 0);
    HBitmapIter it;

    hbitmap_set(hb, 0, 10);
    hbitmap_set(hb, 90, 20);
    hbitmap_set(hb, L2 + 5, 1);
    hbitmap_set(hb, L3 - 1, 1);
    hbitmap_truncate(hb, 100);
    g_assert_cmpuint(hbitmap_size(hb), ==, 100);
    g_assert_cmpuint(hbitmap_count(hb), ==, 20);
    g_assert_cmpint(hbitmap_next_dirty(hb, 10, UINT64_MAX), ==, 90);
    g_assert_cmpint(hbitmap_next_dirty(hb, 100, UINT64_MAX), ==, -1);
    hbitmap_iter_init(&it, hb, 95);
    for (int64_t i = 95; i < 100; i++) {
        g_assert_cmpint(hbitmap_iter_next(&it), ==, i);
    }
    g_assert_cmpint(hbitmap_iter_next(&it), ==, -1);

    /* Growing again shows no trace of the dropped bits. */
    hbitmap_truncate(hb, L3);
    g_assert_cmpuint(hbitmap_count(hb), ==, 20);
    g_assert_cmpint(hbitmap_next_dirty(hb, 100, L3), ==, -1);
    g_assert_false(hbitmap_get(hb, 100));
    g_assert_false(hbitmap_get(hb, L3 - 1));
}

static void test_truncate_shrink_partial_granule(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(4096, 9);
    g_autofree uint8_t *buf = NULL;

    hbitmap_set(hb, 0, 4096);
    /* 1000 items: granule 1 (512..1023) is partly covered and kept. */
    hbitmap_truncate(hb, 1000);
    g_assert_cmpuint(hbitmap_count(hb), ==, 1024);
    g_assert_true(hbitmap_get(hb, 999));
    g_assert_cmpint(hbitmap_next_dirty(hb, 999, UINT64_MAX), ==, 999);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, UINT64_MAX), ==, -1);
    buf = g_malloc(hbitmap_serialization_size(hb, 0, 1000));
    hbitmap_serialize_part(hb, buf, 0, 1000);
    g_assert_cmpuint(buf[0], ==, 0x03);
    for (int i = 1; i < 8; i++) {
        g_assert_cmpuint(buf[i], ==, 0);
    }
    /* Shrink to zero and back. */
    hbitmap_truncate(hb, 0);
    g_assert_true(hbitmap_is_empty(hb));
    hbitmap_truncate(hb, 4096);
    g_assert_true(hbitmap_is_empty(hb));
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, 4096), ==, -1);
}

static void test_truncate_same_word(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(64, 0);

    hbitmap_set(hb, 0, 64);
    hbitmap_truncate(hb, 40);
    g_assert_cmpuint(hbitmap_count(hb), ==, 40);
    hbitmap_truncate(hb, 64);
    g_assert_cmpuint(hbitmap_count(hb), ==, 40);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, 64), ==, 40);
    g_assert_cmpint(hbitmap_next_dirty(hb, 40, 64), ==, -1);
}

/* ---- serialisation ---- */

/*
 * A 200-bit pattern: bits 0, 5, 63, 64, 130, 199, which as little-endian
 * words is exactly the byte array below.
 */
static const uint64_t pattern_bits[] = { 0, 5, 63, 64, 130, 199 };
static const uint8_t pattern_le[32] = {
    0x21, 0, 0, 0, 0, 0, 0, 0x80,   /* bits 0, 5, 63 */
    0x01, 0, 0, 0, 0, 0, 0, 0,      /* bit 64 */
    0x04, 0, 0, 0, 0, 0, 0, 0,      /* bit 130 */
    0x80, 0, 0, 0, 0, 0, 0, 0,      /* bit 199 */
};

static void test_serialize_align_size(void)
{
    g_autoptr(HBitmap) a = hbitmap_alloc(1000, 0);
    g_autoptr(HBitmap) b = hbitmap_alloc(UINT64_C(1) << 30, 16);

    g_assert_cmpuint(hbitmap_serialization_align(a), ==, 64);
    g_assert_cmpuint(hbitmap_serialization_align(b), ==, 64 << 16);
    g_assert_cmpuint(hbitmap_serialization_size(a, 0, 1000), ==, 16 * 8);
    g_assert_cmpuint(hbitmap_serialization_size(a, 64, 64), ==, 8);
    g_assert_cmpuint(hbitmap_serialization_size(a, 960, 40), ==, 8);
    g_assert_cmpuint(hbitmap_serialization_size(a, 128, 0), ==, 0);
    g_assert_cmpuint(hbitmap_serialization_size(b, 0, UINT64_C(1) << 30), ==,
                     (UINT64_C(1) << 14) / 8);
}

static void test_serialize_le_layout(void)
{
    g_autoptr(HBitmap) hb = alloc_with_bits(200, 0, pattern_bits,
                                            G_N_ELEMENTS(pattern_bits));
    uint8_t buf[32];

    g_assert_cmpuint(hbitmap_serialization_size(hb, 0, 200), ==, 32);
    memset(buf, 0xaa, sizeof(buf));
    hbitmap_serialize_part(hb, buf, 0, 200);
    g_assert_cmpmem(buf, sizeof(buf), pattern_le, sizeof(pattern_le));
    /* A part in the middle. */
    memset(buf, 0xaa, sizeof(buf));
    hbitmap_serialize_part(hb, buf, 64, 128);
    g_assert_cmpmem(buf, 16, pattern_le + 8, 16);
}

static void test_serialize_unaligned_buffer(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(200, 0);
    uint8_t buf[33];

    memcpy(buf + 1, pattern_le, sizeof(pattern_le));
    hbitmap_deserialize_part(hb, buf + 1, 0, 200, true);
    for (size_t i = 0; i < G_N_ELEMENTS(pattern_bits); i++) {
        g_assert_true(hbitmap_get(hb, pattern_bits[i]));
    }
    g_assert_cmpuint(hbitmap_count(hb), ==, G_N_ELEMENTS(pattern_bits));
    memset(buf, 0, sizeof(buf));
    hbitmap_serialize_part(hb, buf + 1, 0, 200);
    g_assert_cmpmem(buf + 1, 32, pattern_le, 32);
}

/* Fill @hb with a reproducible pattern of runs. */
static void fill_random_runs(HBitmap *hb, guint32 seed, int runs)
{
    g_autoptr(GRand) rnd = g_rand_new_with_seed(seed);
    uint64_t size = hbitmap_size(hb);

    for (int i = 0; i < runs; i++) {
        uint64_t start = (uint64_t)g_rand_double_range(rnd, 0, (double)size);
        uint64_t len = (uint64_t)g_rand_int_range(rnd, 1, 3000);

        hbitmap_set(hb, start, MIN(len, size - start));
    }
}

static void assert_same_bits(const HBitmap *a, const HBitmap *b)
{
    g_autofree char *sa = hbitmap_sha256(a);
    g_autofree char *sb = hbitmap_sha256(b);
    g_autoptr(GArray) ia = iter_collect(a, 0);
    g_autoptr(GArray) ib = iter_collect(b, 0);

    g_assert_cmpstr(sa, ==, sb);
    g_assert_cmpuint(hbitmap_count(a), ==, hbitmap_count(b));
    g_assert_cmpmem(ia->data, ia->len * sizeof(int64_t),
                    ib->data, ib->len * sizeof(int64_t));
}

static void test_serialize_round_trip_whole(void)
{
    const uint64_t size = L3 + 1234;
    g_autoptr(HBitmap) hb = hbitmap_alloc(size, 0);
    g_autoptr(HBitmap) back = hbitmap_alloc(size, 0);
    uint64_t len = hbitmap_serialization_size(hb, 0, size);
    g_autofree uint8_t *buf = g_malloc(len);

    fill_random_runs(hb, 1, 500);
    hbitmap_set(hb, size - 1, 1);
    hbitmap_serialize_part(hb, buf, 0, size);
    hbitmap_deserialize_part(back, buf, 0, size, true);
    assert_same_bits(hb, back);
    /* Upper levels were rebuilt: searches from anywhere agree. */
    for (uint64_t s = 0; s < size; s += 4099) {
        g_assert_cmpint(hbitmap_next_dirty(back, s, size), ==,
                        hbitmap_next_dirty(hb, s, size));
    }
}

static void test_serialize_round_trip_parts(void)
{
    const uint64_t size = 3 * L3 + 1000;  /* not a multiple of the align */
    g_autoptr(HBitmap) hb = hbitmap_alloc(size, 9);
    g_autoptr(HBitmap) back = hbitmap_alloc(size, 9);
    uint64_t chunk = hbitmap_serialization_align(hb) * 7;
    g_autofree uint8_t *buf = g_malloc(hbitmap_serialization_size(hb, 0,
                                                                  chunk));

    fill_random_runs(hb, 2, 200);
    hbitmap_set(hb, size - 1, 1);
    /* Stale contents in the target must be replaced. */
    hbitmap_set(back, 0, size);
    for (uint64_t s = 0; s < size; s += chunk) {
        uint64_t n = MIN(chunk, size - s);

        hbitmap_serialize_part(hb, buf, s, n);
        hbitmap_deserialize_part(back, buf, s, n, s + n == size);
    }
    assert_same_bits(hb, back);
}

static void test_deserialize_zeroes_ones(void)
{
    const uint64_t size = L2 + 70;
    g_autoptr(HBitmap) hb = hbitmap_alloc(size, 0);
    uint8_t buf[16];

    hbitmap_set(hb, 0, size);
    hbitmap_deserialize_zeroes(hb, 64, 128, false);
    hbitmap_deserialize_zeroes(hb, L2, 70, true);
    g_assert_cmpuint(hbitmap_count(hb), ==, L2 - 128);
    g_assert_cmpint(hbitmap_next_zero(hb, 0, size), ==, 64);
    g_assert_cmpint(hbitmap_next_dirty(hb, 64, size), ==, 192);
    g_assert_cmpint(hbitmap_next_dirty(hb, L2, size), ==, -1);

    hbitmap_reset_all(hb);
    /* Ones up to the end: the 58 unused bits of the last word stay clear. */
    hbitmap_deserialize_ones(hb, L2, 70, false);
    hbitmap_deserialize_ones(hb, 128, 64, true);
    g_assert_cmpuint(hbitmap_count(hb), ==, 70 + 64);
    g_assert_cmpint(hbitmap_next_dirty(hb, 0, size), ==, 128);
    g_assert_cmpint(hbitmap_next_dirty(hb, 192, size), ==, L2);
    hbitmap_serialize_part(hb, buf, L2, 70);
    g_assert_cmphex(buf[8], ==, 0x3f);
    for (int i = 9; i < 16; i++) {
        g_assert_cmphex(buf[i], ==, 0);
    }
}

static void test_deserialize_ignores_tail_bits(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(70, 0);
    uint8_t ones[16], out[16];

    memset(ones, 0xff, sizeof(ones));
    hbitmap_deserialize_part(hb, ones, 0, 70, true);
    g_assert_cmpuint(hbitmap_count(hb), ==, 70);
    hbitmap_serialize_part(hb, out, 0, 70);
    g_assert_cmphex(out[8], ==, 0x3f);
    g_assert_cmphex(out[15], ==, 0);
}

static void test_deserialize_finish_explicit(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(200, 0);
    g_autoptr(HBitmap) big = hbitmap_alloc(L3, 0);
    g_autofree uint8_t *buf = g_malloc0(L3 / 8);
    const int64_t expected[] = { 100 * 64, (int64_t)L3 - 1 };

    hbitmap_deserialize_part(hb, pattern_le, 0, 200, false);
    hbitmap_deserialize_finish(hb);
    g_assert_cmpuint(hbitmap_count(hb), ==, G_N_ELEMENTS(pattern_bits));
    g_assert_cmpint(hbitmap_next_dirty(hb, 131, 200), ==, 199);

    /* Lone bits in words far apart: found only via the rebuilt levels. */
    buf[100 * 8] = 0x01;
    buf[L3 / 8 - 1] = 0x80;
    hbitmap_deserialize_part(big, buf, 0, L3, false);
    hbitmap_deserialize_finish(big);
    g_assert_cmpint(hbitmap_next_dirty(big, 0, L3), ==, 100 * 64);
    g_assert_cmpint(hbitmap_next_dirty(big, 100 * 64 + 1, L3), ==, L3 - 1);
    assert_iter_yields(big, 0, expected, 2);
}

/* ---- sha256 ---- */

static void test_sha256_zero_word(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(64, 0);
    g_autofree char *sha = hbitmap_sha256(hb);

    g_assert_cmpstr(sha, ==, SHA256_ZERO_WORD);
}

static void test_sha256_pattern(void)
{
    g_autoptr(HBitmap) hb = alloc_with_bits(200, 0, pattern_bits,
                                            G_N_ELEMENTS(pattern_bits));
    g_autofree char *sha = hbitmap_sha256(hb);
    g_autofree char *want = g_compute_checksum_for_data(G_CHECKSUM_SHA256,
                                                        pattern_le,
                                                        sizeof(pattern_le));

    g_assert_cmpstr(sha, ==, want);
}

/*
 * QEMU 7.2's x-debug-block-dirty-bitmap-sha256 returned this hash for a
 * 64 KiB-granularity bitmap of a 100 MiB qcow2 image after these writes
 * with qemu-io (count 327680: granules 0, 64, 65, 1000 and 1599).
 */
static void test_sha256_matches_qemu(void)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(100 * 1024 * 1024, 16);
    g_autofree char *sha = NULL;

    hbitmap_set(hb, 0, 512);
    hbitmap_set(hb, 4194304, 131072);
    hbitmap_set(hb, 65536000, 1);
    hbitmap_set(hb, 104857000, 600);
    g_assert_cmpuint(hbitmap_count(hb), ==, 327680);
    sha = hbitmap_sha256(hb);
    g_assert_cmpstr(sha, ==, "e2e5d7cb2ea7c943feb1a457f3f91876"
                             "4755ffc900843f9be17390bf2f88b544");
}

/* ---- more than 2^32 bits ---- */

static void test_large_beyond_2_32(void)
{
    const uint64_t b32 = UINT64_C(1) << 32;
    const uint64_t size = (UINT64_C(1) << 33) + 123;
    g_autoptr(HBitmap) hb = hbitmap_alloc(size, 0);
    const int64_t all[] = {
        0, (int64_t)b32 - 1, (int64_t)b32, (int64_t)b32 + 1,
        (int64_t)size - 2, (int64_t)size - 1,
    };
    uint64_t ds, dc;
    uint8_t buf[16];

    hbitmap_set(hb, 0, 1);
    hbitmap_set(hb, b32 - 1, 3);
    hbitmap_set(hb, size - 2, 2);
    g_assert_cmpuint(hbitmap_count(hb), ==, 6);
    g_assert_true(hbitmap_get(hb, b32));
    g_assert_false(hbitmap_get(hb, b32 + 2));
    /* Skipping ~2^33 clean bits is cheap thanks to the upper levels. */
    g_assert_cmpint(hbitmap_next_dirty(hb, 1, size), ==, b32 - 1);
    g_assert_cmpint(hbitmap_next_dirty(hb, b32 + 2, size), ==, size - 2);
    g_assert_cmpint(hbitmap_next_dirty(hb, b32 + 2, size - b32 - 4), ==, -1);
    g_assert_cmpint(hbitmap_next_zero(hb, b32 - 1, 100), ==, b32 + 2);
    assert_iter_yields(hb, 0, all, G_N_ELEMENTS(all));
    g_assert_true(hbitmap_next_dirty_area(hb, 1, size, UINT64_MAX, &ds, &dc));
    g_assert_cmpuint(ds, ==, b32 - 1);
    g_assert_cmpuint(dc, ==, 3);

    /* The last serialised word: bits 121 and 122 of the final 123. */
    hbitmap_serialize_part(hb, buf, UINT64_C(1) << 33, 123);
    g_assert_cmphex(buf[0], ==, 0);
    g_assert_cmphex(buf[15], ==, 0x06);

    hbitmap_reset(hb, b32, 1);
    g_assert_cmpint(hbitmap_next_dirty(hb, b32, size), ==, b32 + 1);
    g_assert_cmpuint(hbitmap_count(hb), ==, 5);

    /*
     * Shrink below 2^32, dropping bits on both sides of it, then grow a
     * little: the new part is clean.  (Truncating to another size above
     * 2^32 bits would mostly time realloc copying 512 MiB under ASan; the
     * large-items test covers truncation across 2^32.)
     */
    hbitmap_truncate(hb, L4 + 5);
    g_assert_cmpuint(hbitmap_count(hb), ==, 1);
    g_assert_cmpint(hbitmap_next_dirty(hb, 1, UINT64_MAX), ==, -1);
    hbitmap_truncate(hb, L4 + L3);
    g_assert_cmpuint(hbitmap_count(hb), ==, 1);
    g_assert_cmpint(hbitmap_next_dirty(hb, 1, UINT64_MAX), ==, -1);
    hbitmap_set(hb, L4 + L3 - 1, 1);
    g_assert_cmpint(hbitmap_next_dirty(hb, 1, UINT64_MAX), ==, L4 + L3 - 1);
}

/* Truncation across 2^32 items at g = 9 (2^23 granules). */
static void test_large_truncate_items(void)
{
    const uint64_t b32 = UINT64_C(1) << 32;
    const uint64_t size0 = b32 - 1000;
    g_autoptr(HBitmap) hb = hbitmap_alloc(size0, 9);
    const int64_t expected[] = { (int64_t)b32 - 1024 };

    /* The last granule, [2^32 - 1024, 2^32 - 512), is partial. */
    hbitmap_set(hb, size0 - 1, 1);
    g_assert_cmpuint(hbitmap_count(hb), ==, 512);
    hbitmap_truncate(hb, (UINT64_C(1) << 33) + 123);
    g_assert_cmpuint(hbitmap_count(hb), ==, 512);
    /* The dirty granule now covers more items; beyond it all is clean. */
    g_assert_true(hbitmap_get(hb, size0));
    g_assert_cmpint(hbitmap_next_dirty(hb, size0, UINT64_MAX), ==, size0);
    g_assert_cmpint(hbitmap_next_dirty(hb, b32 - 512, UINT64_MAX), ==, -1);
    hbitmap_set(hb, (UINT64_C(1) << 33) + 122, 1);
    g_assert_cmpuint(hbitmap_count(hb), ==, 1024);
    g_assert_cmpint(hbitmap_next_dirty(hb, b32 - 512, UINT64_MAX), ==,
                    UINT64_C(1) << 33);
    hbitmap_truncate(hb, b32 + 1);
    g_assert_cmpuint(hbitmap_count(hb), ==, 512);
    g_assert_cmpint(hbitmap_next_dirty(hb, b32 - 512, UINT64_MAX), ==, -1);
    assert_iter_yields(hb, 0, expected, 1);
}

/* ---- randomised comparison with a plain array ---- */

/* One byte per granule; positions and lengths in items like the API. */
typedef struct Ref {
    uint8_t *bits;
    uint64_t size;
    uint64_t granules;
    uint64_t count;
    int g;
} Ref;

static void ref_fill(Ref *ref, uint64_t first, uint64_t last, uint8_t v)
{
    for (uint64_t i = first; i <= last; i++) {
        ref->count += (uint64_t)v - ref->bits[i];
        ref->bits[i] = v;
    }
}

/* First granule in [first, last] holding @v, or -1. */
static int64_t ref_find(const Ref *ref, uint64_t first, uint64_t last,
                        uint8_t v)
{
    const uint8_t *p = memchr(ref->bits + first, v, last - first + 1);

    return p ? p - ref->bits : -1;
}

static int64_t ref_next(const Ref *ref, uint64_t start, uint64_t count,
                        uint8_t v)
{
    uint64_t end;
    int64_t pos;

    if (start >= ref->size || count == 0) {
        return -1;
    }
    end = MIN(count, ref->size - start) + start;
    pos = ref_find(ref, start >> ref->g, (end - 1) >> ref->g, v);
    return pos < 0 ? -1 : (int64_t)MAX((uint64_t)pos << ref->g, start);
}

typedef struct RandomCase {
    uint64_t size;
    int g;
    uint64_t ops;
} RandomCase;

static uint64_t rnd_below(GRand *rnd, uint64_t n)
{
    return (uint64_t)g_rand_double_range(rnd, 0, (double)n) % n;
}

/* A length in items: mostly short, sometimes up to the whole bitmap. */
static uint64_t rnd_len(GRand *rnd, const Ref *ref)
{
    static const uint64_t scale[] = { 8, 8, 100, 100, 1000, 1000, 1000 };
    int k = g_rand_int_range(rnd, 0, 20);
    uint64_t granules = k < (int)G_N_ELEMENTS(scale)
                        ? 1 + rnd_below(rnd, scale[k])
                        : k == 19 ? 1 + rnd_below(rnd, ref->granules) : 1;

    return (granules << ref->g) - rnd_below(rnd, UINT64_C(1) << ref->g);
}

/* Full iteration and count of @hb agree with @ref. */
static void random_check_iter(const HBitmap *hb, const Ref *ref)
{
    HBitmapIter it;
    int64_t v;
    uint64_t pos = 0;

    g_assert_cmpuint(hbitmap_count(hb), ==, ref->count << ref->g);
    hbitmap_iter_init(&it, hb, 0);
    while ((v = hbitmap_iter_next(&it)) >= 0) {
        uint64_t gr = (uint64_t)v >> ref->g;

        g_assert_cmpint(ref_find(ref, pos, gr, 1), ==, gr);
        pos = gr + 1;
    }
    if (pos < ref->granules) {
        g_assert_cmpint(ref_find(ref, pos, ref->granules - 1, 1), ==, -1);
    }
}

/* Iteration, count and serialised form, also after a round trip. */
static void random_full_check(const HBitmap *hb, const Ref *ref)
{
    uint64_t nbytes = hbitmap_serialization_size(hb, 0, ref->size);
    g_autofree uint8_t *buf = g_malloc(nbytes);
    g_autoptr(HBitmap) back = hbitmap_alloc(ref->size, ref->g);

    random_check_iter(hb, ref);
    hbitmap_serialize_part(hb, buf, 0, ref->size);
    for (uint64_t i = 0; i < ref->granules; i++) {
        g_assert_cmpuint((buf[i / 8] >> (i % 8)) & 1, ==, ref->bits[i]);
    }
    for (uint64_t i = ref->granules; i < nbytes * 8; i++) {
        g_assert_cmpuint((buf[i / 8] >> (i % 8)) & 1, ==, 0);
    }
    hbitmap_deserialize_part(back, buf, 0, ref->size, true);
    random_check_iter(back, ref);
}

static uint64_t random_run(const RandomCase *rc, GRand *rnd)
{
    g_autoptr(HBitmap) hb = hbitmap_alloc(rc->size, rc->g);
    /* Truncation moves the size within [size / 2, 2 * size]. */
    uint64_t max_size = rc->size * 2;
    Ref ref = {
        .bits = g_new0(uint8_t, (max_size >> rc->g) + 1),
        .size = rc->size,
        .granules = ((rc->size - 1) >> rc->g) + 1,
        .g = rc->g,
    };
    HBitmapIter it;
    bool iter_valid = false;
    uint64_t iter_next = 0;  /* granule the iterator is expected to reach */
    uint64_t ops = 0;

    while (ops < rc->ops) {
        int op = g_rand_int_range(rnd, 0, 100);
        uint64_t start = rnd_below(rnd, ref.size);
        uint64_t len = rnd_len(rnd, &ref);

        ops++;
        if (op < 22) {
            len = MIN(len, ref.size - start);
            hbitmap_set(hb, start, len);
            ref_fill(&ref, start >> ref.g, (start + len - 1) >> ref.g, 1);
            iter_valid = false; /* sets during iteration are not exact */
        } else if (op < 42) {
            start = start >> ref.g << ref.g;
            len = ((len >> ref.g) + 1) << ref.g;
            len = MIN(len, ref.size - start);
            hbitmap_reset(hb, start, len);
            ref_fill(&ref, start >> ref.g, (start + len - 1) >> ref.g, 0);
        } else if (op < 50) {
            g_assert_cmpint(hbitmap_get(hb, start), ==,
                            ref.bits[start >> ref.g]);
        } else if (op < 62) {
            g_assert_cmpint(hbitmap_next_dirty(hb, start, len), ==,
                            ref_next(&ref, start, len, 1));
        } else if (op < 70) {
            g_assert_cmpint(hbitmap_next_zero(hb, start, len), ==,
                            ref_next(&ref, start, len, 0));
        } else if (op < 75) {
            g_assert_cmpuint(hbitmap_count(hb), ==, ref.count << ref.g);
            g_assert_cmpint(hbitmap_is_empty(hb), ==, ref.count == 0);
        } else if (op < 85) {
            uint64_t end = start + len + rnd_below(rnd, 3) * ref.size;
            uint64_t max = rnd_len(rnd, &ref);
            uint64_t ds = 0, dc = 0;
            bool found = hbitmap_next_dirty_area(hb, start, end, max,
                                                 &ds, &dc);
            int64_t first = ref_next(&ref, start, end - start, 1);

            g_assert_cmpint(found, ==, first >= 0);
            if (found) {
                uint64_t lim = MIN(max, MIN(end, ref.size) - (uint64_t)first);
                int64_t z = ref_next(&ref, (uint64_t)first, lim, 0);

                g_assert_cmpuint(ds, ==, (uint64_t)first);
                g_assert_cmpuint(dc, ==, z < 0 ? lim : (uint64_t)z - ds);
            }
        } else if (op < 99) {
            int steps = g_rand_int_range(rnd, 1, 9);

            if (!iter_valid) {
                hbitmap_iter_init(&it, hb, start);
                iter_next = start >> ref.g;
                iter_valid = true;
            }
            for (int s = 0; s < steps; s++) {
                int64_t got = hbitmap_iter_next(&it);
                int64_t want = iter_next < ref.granules
                    ? ref_find(&ref, iter_next, ref.granules - 1, 1) : -1;

                ops++;
                g_assert_cmpint(got, ==, want < 0 ? -1 : want << ref.g);
                if (got < 0) {
                    break;
                }
                iter_next = ((uint64_t)got >> ref.g) + 1;
            }
        } else {
            uint64_t new_size = rc->size / 2 + rnd_below(rnd, max_size -
                                                         rc->size / 2);
            uint64_t new_granules = ((new_size - 1) >> ref.g) + 1;

            hbitmap_truncate(hb, new_size);
            if (new_granules < ref.granules) {
                ref_fill(&ref, new_granules, ref.granules - 1, 0);
            }
            ref.size = new_size;
            ref.granules = new_granules;
            iter_valid = false;
        }
        if (ops % 20000 == 0) {
            random_full_check(hb, &ref);
        }
    }
    random_full_check(hb, &ref);
    g_free(ref.bits);
    return ops;
}

static void test_random_reference(void)
{
    /*
     * Sizes straddle 64^2 and 64^3 granules and end mid-word; granularity
     * 0 and larger ones exercise the item/granule rounding.
     */
    static const RandomCase cases[] = {
        { 5000, 0, 300000 },
        { 100003, 4, 250000 },
        { L3 + 4321, 0, 300000 },
        { (UINT64_C(1) << 21) + 5, 9, 150000 },
    };
    g_autoptr(GRand) rnd = g_rand_new_with_seed(20240601);
    uint64_t ops = 0;

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        ops += random_run(&cases[i], rnd);
    }
    g_assert_cmpuint(ops, >=, 1000000);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/hbitmap/alloc/empty", test_alloc_empty);
    g_test_add_func("/hbitmap/alloc/getters", test_alloc_getters);
    g_test_add_func("/hbitmap/alloc/memory-usage", test_alloc_memory_usage);
    g_test_add_func("/hbitmap/alloc/too-large", test_alloc_too_large);
    g_test_add_func("/hbitmap/alloc/too-large-granularity",
                    test_alloc_max_granules_by_granularity);
    g_test_add_func("/hbitmap/set/single", test_set_single);
    g_test_add_func("/hbitmap/set/across-word-boundary",
                    test_set_across_word_boundary);
    g_test_add_func("/hbitmap/set/bits-63-64", test_set_bits_63_64);
    g_test_add_func("/hbitmap/set/whole-unaligned-size",
                    test_set_whole_unaligned_size);
    g_test_add_func("/hbitmap/set/idempotent-overlap",
                    test_set_idempotent_and_overlap);
    g_test_add_func("/hbitmap/set/granularity-rounding",
                    test_set_granularity_rounding);
    g_test_add_func("/hbitmap/set/granularity-16", test_set_granularity_16);
    g_test_add_func("/hbitmap/set/partial-last-granule",
                    test_set_partial_last_granule);
    g_test_add_func("/hbitmap/set/level-boundaries",
                    test_set_level_boundaries);
    g_test_add_func("/hbitmap/reset/partial-words", test_reset_partial_words);
    g_test_add_func("/hbitmap/reset/whole-words", test_reset_whole_words);
    g_test_add_func("/hbitmap/reset/keeps-neighbours",
                    test_reset_keeps_neighbours);
    g_test_add_func("/hbitmap/reset/granularity-to-end",
                    test_reset_granularity_to_end);
    g_test_add_func("/hbitmap/reset/unaligned-aborts",
                    test_reset_unaligned_aborts);
    g_test_add_func("/hbitmap/reset/all", test_reset_all);
    g_test_add_func("/hbitmap/next-dirty/bounds", test_next_dirty_bounds);
    g_test_add_func("/hbitmap/next-zero/bounds", test_next_zero_bounds);
    g_test_add_func("/hbitmap/next-zero/long-scan", test_next_zero_long_scan);
    g_test_add_func("/hbitmap/next-dirty-area/basic", test_next_dirty_area);
    g_test_add_func("/hbitmap/next-dirty-area/granularity",
                    test_next_dirty_area_granularity);
    g_test_add_func("/hbitmap/iter/basic", test_iter_basic);
    g_test_add_func("/hbitmap/iter/granularity", test_iter_granularity);
    g_test_add_func("/hbitmap/iter/past-end", test_iter_past_end);
    g_test_add_func("/hbitmap/iter/reset-during", test_iter_reset_during);
    g_test_add_func("/hbitmap/merge/can-merge", test_merge_can_merge);
    g_test_add_func("/hbitmap/merge/same-granularity",
                    test_merge_same_granularity);
    g_test_add_func("/hbitmap/merge/alias", test_merge_alias);
    g_test_add_func("/hbitmap/merge/different-granularity",
                    test_merge_different_granularity);
    g_test_add_func("/hbitmap/copy/independent", test_copy_independent);
    g_test_add_func("/hbitmap/truncate/grow", test_truncate_grow);
    g_test_add_func("/hbitmap/truncate/shrink", test_truncate_shrink);
    g_test_add_func("/hbitmap/truncate/shrink-partial-granule",
                    test_truncate_shrink_partial_granule);
    g_test_add_func("/hbitmap/truncate/same-word", test_truncate_same_word);
    g_test_add_func("/hbitmap/serialize/align-size",
                    test_serialize_align_size);
    g_test_add_func("/hbitmap/serialize/le-layout", test_serialize_le_layout);
    g_test_add_func("/hbitmap/serialize/unaligned-buffer",
                    test_serialize_unaligned_buffer);
    g_test_add_func("/hbitmap/serialize/round-trip-whole",
                    test_serialize_round_trip_whole);
    g_test_add_func("/hbitmap/serialize/round-trip-parts",
                    test_serialize_round_trip_parts);
    g_test_add_func("/hbitmap/deserialize/zeroes-ones",
                    test_deserialize_zeroes_ones);
    g_test_add_func("/hbitmap/deserialize/ignores-tail-bits",
                    test_deserialize_ignores_tail_bits);
    g_test_add_func("/hbitmap/deserialize/finish-explicit",
                    test_deserialize_finish_explicit);
    g_test_add_func("/hbitmap/sha256/zero-word", test_sha256_zero_word);
    g_test_add_func("/hbitmap/sha256/pattern", test_sha256_pattern);
    g_test_add_func("/hbitmap/sha256/matches-qemu", test_sha256_matches_qemu);
    g_test_add_func("/hbitmap/large/beyond-2-32", test_large_beyond_2_32);
    g_test_add_func("/hbitmap/large/truncate-items",
                    test_large_truncate_items);
    g_test_add_func("/hbitmap/random/reference", test_random_reference);

    return g_test_run();
}
