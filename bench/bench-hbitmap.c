/*
 * hbitmap throughput, each figure beside memset or memcpy of the lowest
 * level's bytes measured in the same run, so results from different
 * machines can be compared by ratio.
 *
 * Usage: hbitmap [--quick] [--tib N]...
 *   default   1 TiB and 64 TiB disks at 64 KiB granularity
 *   --quick   1 TiB only
 *   --tib N   a disk of N TiB (repeatable; replaces the defaults)
 *
 * Times are medians over repetitions lasting at least MIN_SECONDS in all.
 * "ratio" is the operation's time over the baseline's time for the whole
 * lowest level: 1.00 means as fast as memset/memcpy of the bitmap.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/hbitmap.h"

#define GRANULARITY 16          /* 64 KiB */
#define MIN_SECONDS 0.5
#define MIN_REPS 3
#define MAX_REPS 2000
#define DIRTY_PERCENT 1
#define TIB (UINT64_C(1) << 40)

typedef struct Bench {
    uint64_t disk;              /* bytes of the disk, i.e. bitmap items */
    uint64_t granules;
    size_t bytes;               /* lowest level: one bit per granule */
    HBitmap *work;              /* scratch for set/reset */
    HBitmap *sparse;            /* DIRTY_PERCENT of granules, at random */
    HBitmap *sparse2;           /* another such pattern, for merges */
    HBitmap *result;
    HBitmap *coarse_empty;      /* 1 MiB granularity, for merges */
    HBitmap *coarse_result;
    HBitmap *restored;          /* deserialisation target */
    uint64_t *dirty;            /* the random granules of sparse */
    uint64_t ndirty;
    uint8_t *src, *dst;         /* memset/memcpy and serialisation buffers */
    uint64_t loops;             /* calls per run for O(1) operations */
    double memset_s, memcpy_s;
} Bench;

typedef void (*BenchFn)(Bench *b);

static volatile uint64_t sink;

/* Keep the compiler from dropping stores to @p as dead. */
static void escape(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Median time of @fn, running @setup untimed before each repetition. */
static double measure(Bench *b, BenchFn setup, BenchFn fn)
{
    double times[MAX_REPS], total = 0;
    int reps = 0;

    while (reps < MAX_REPS && (reps < MIN_REPS || total < MIN_SECONDS)) {
        double t0;

        if (setup) {
            setup(b);
        }
        t0 = now();
        fn(b);
        times[reps] = now() - t0;
        total += times[reps++];
    }
    qsort(times, (size_t)reps, sizeof(times[0]), cmp_double);
    return times[reps / 2];
}

/* xorshift64*: fixed seed so every run dirties the same granules. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t x = *state;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(2685821657736338717);
}

static void fill_sparse(HBitmap *hb, uint64_t *dirty, uint64_t n,
                        uint64_t granules, uint64_t seed)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t gr = next_random(&seed) % granules;

        if (dirty) {
            dirty[i] = gr;
        }
        hbitmap_set(hb, gr << GRANULARITY, UINT64_C(1) << GRANULARITY);
    }
}

/* ---- the operations ---- */

static void op_memset(Bench *b)
{
    memset(b->dst, 0xff, b->bytes);
    escape(b->dst);
}

static void op_memcpy(Bench *b)
{
    memcpy(b->dst, b->src, b->bytes);
    escape(b->dst);
}

static void prep_clean(Bench *b)
{
    hbitmap_reset_all(b->work);
}

static void prep_full(Bench *b)
{
    hbitmap_set(b->work, 0, b->disk);
}

static void prep_sparse_work(Bench *b)
{
    hbitmap_reset_all(b->work);
    for (uint64_t i = 0; i < b->ndirty; i++) {
        hbitmap_set(b->work, b->dirty[i] << GRANULARITY,
                    UINT64_C(1) << GRANULARITY);
    }
}

static void op_set_whole(Bench *b)
{
    hbitmap_set(b->work, 0, b->disk);
}

static void op_reset_whole(Bench *b)
{
    hbitmap_reset(b->work, 0, b->disk);
}

static void op_set_each(Bench *b)
{
    for (uint64_t i = 0; i < b->ndirty; i++) {
        hbitmap_set(b->work, b->dirty[i] << GRANULARITY,
                    UINT64_C(1) << GRANULARITY);
    }
}

static void op_reset_each(Bench *b)
{
    for (uint64_t i = 0; i < b->ndirty; i++) {
        hbitmap_reset(b->work, b->dirty[i] << GRANULARITY,
                      UINT64_C(1) << GRANULARITY);
    }
}

static void op_next_dirty_walk(Bench *b)
{
    uint64_t found = 0;
    int64_t pos = 0;

    while ((pos = hbitmap_next_dirty(b->sparse, (uint64_t)pos,
                                     UINT64_MAX)) >= 0) {
        found++;
        pos += INT64_C(1) << GRANULARITY;
    }
    sink = found;
}

static void op_iter_walk(Bench *b)
{
    HBitmapIter it;
    uint64_t found = 0;

    hbitmap_iter_init(&it, b->sparse, 0);
    while (hbitmap_iter_next(&it) >= 0) {
        found++;
    }
    sink = found;
}

static void op_dirty_area_walk(Bench *b)
{
    uint64_t start = 0, ds, dc, runs = 0;

    while (hbitmap_next_dirty_area(b->sparse, start, UINT64_MAX, UINT64_MAX,
                                   &ds, &dc)) {
        runs++;
        start = ds + dc;
    }
    sink = runs;
}

static void op_next_dirty_clean(Bench *b)
{
    uint64_t acc = 0;

    for (uint64_t i = 0; i < b->loops; i++) {
        acc += (uint64_t)hbitmap_next_dirty(b->coarse_empty, i & 0xffff,
                                            UINT64_MAX);
    }
    sink = acc;
}

static void op_count(Bench *b)
{
    uint64_t acc = 0;

    for (uint64_t i = 0; i < b->loops; i++) {
        acc += hbitmap_count(b->sparse);
        escape(b->sparse);
    }
    sink = acc;
}

static void op_merge_same(Bench *b)
{
    hbitmap_merge(b->sparse, b->sparse2, b->result);
}

static void op_merge_coarse(Bench *b)
{
    hbitmap_merge(b->sparse, b->coarse_empty, b->coarse_result);
}

static void op_copy(Bench *b)
{
    hbitmap_free(hbitmap_copy(b->sparse));
}

static void op_serialize(Bench *b)
{
    hbitmap_serialize_part(b->sparse, b->dst, 0, b->disk);
    escape(b->dst);
}

static void prep_serialized(Bench *b)
{
    hbitmap_serialize_part(b->sparse, b->src, 0, b->disk);
}

static void op_deserialize(Bench *b)
{
    hbitmap_deserialize_part(b->restored, b->src, 0, b->disk, true);
}

static void op_sha256(Bench *b)
{
    g_free(hbitmap_sha256(b->sparse));
}

/* ---- output ---- */

static void print_row(const char *name, double seconds, double amount,
                      const char *unit, double baseline, const char *base)
{
    double rate = amount / seconds;
    double ratio = seconds / baseline;
    const char *prefix = "";

    if (rate >= 1e9) {
        rate /= 1e9;
        prefix = "G";
    } else if (rate >= 1e6) {
        rate /= 1e6;
        prefix = "M";
    } else if (rate >= 1e3) {
        rate /= 1e3;
        prefix = "k";
    }
    printf("%-44s %10.3f ms %8.2f %1s%-8s ", name, seconds * 1e3, rate,
           prefix, unit);
    if (ratio >= 0.01) {
        printf("%9.2f x %s\n", ratio, base);
    } else {
        printf("%9.1e x %s\n", ratio, base);
    }
}

/* A whole-bitmap operation: rate in bytes of lowest level per second. */
static void row_bytes(Bench *b, const char *name, BenchFn setup, BenchFn fn,
                      bool vs_memcpy)
{
    double t = measure(b, setup, fn);

    print_row(name, t, (double)b->bytes, "B/s",
              vs_memcpy ? b->memcpy_s : b->memset_s,
              vs_memcpy ? "memcpy" : "memset");
}

/* An operation of @calls calls: rate in calls per second. */
static void row_calls(Bench *b, const char *name, BenchFn setup, BenchFn fn,
                      double calls, bool vs_memcpy)
{
    double t = measure(b, setup, fn);

    print_row(name, t, calls, "op/s",
              vs_memcpy ? b->memcpy_s : b->memset_s,
              vs_memcpy ? "memcpy" : "memset");
}

static void run_size(uint64_t tib)
{
    Bench b = { .disk = tib * TIB };
    size_t mem;

    b.granules = b.disk >> GRANULARITY;
    b.bytes = (size_t)(b.granules / 8);
    b.ndirty = b.granules * DIRTY_PERCENT / 100;
    b.loops = 10 * 1000 * 1000;
    b.work = hbitmap_alloc(b.disk, GRANULARITY);
    b.sparse = hbitmap_alloc(b.disk, GRANULARITY);
    b.sparse2 = hbitmap_alloc(b.disk, GRANULARITY);
    b.result = hbitmap_alloc(b.disk, GRANULARITY);
    b.restored = hbitmap_alloc(b.disk, GRANULARITY);
    b.coarse_empty = hbitmap_alloc(b.disk, GRANULARITY + 4);
    b.coarse_result = hbitmap_alloc(b.disk, GRANULARITY + 4);
    b.dirty = g_new(uint64_t, b.ndirty);
    b.src = g_malloc(b.bytes);
    b.dst = g_malloc(b.bytes);
    /* Fault every page in now so that no timed run pays for it. */
    memset(b.src, 0x5a, b.bytes);
    memset(b.dst, 0, b.bytes);
    hbitmap_set(b.work, 0, b.disk);
    hbitmap_set(b.result, 0, b.disk);
    hbitmap_set(b.restored, 0, b.disk);
    hbitmap_set(b.coarse_result, 0, b.disk);
    fill_sparse(b.sparse, b.dirty, b.ndirty, b.granules, 1);
    fill_sparse(b.sparse2, NULL, b.ndirty, b.granules, 2);
    mem = hbitmap_memory_usage(b.sparse);

    printf("\n%" G_GUINT64_FORMAT " TiB disk, 64 KiB granularity: "
           "%" G_GUINT64_FORMAT " granules, lowest level %.2f MiB, "
           "hbitmap memory %.2f MiB (+%.2f%%)\n",
           tib, b.granules, (double)b.bytes / (1 << 20),
           (double)mem / (1 << 20),
           100.0 * ((double)mem - (double)b.bytes) / (double)b.bytes);
    printf("%" G_GUINT64_FORMAT " random granules dirty (%d%%), "
           "%" G_GUINT64_FORMAT " distinct\n",
           b.ndirty, DIRTY_PERCENT,
           hbitmap_count(b.sparse) >> GRANULARITY);
    printf("%-44s %13s %18s %16s\n", "operation", "time", "rate", "ratio");

    b.memset_s = measure(&b, NULL, op_memset);
    b.memcpy_s = measure(&b, NULL, op_memcpy);
    print_row("memset of lowest level (baseline)", b.memset_s,
              (double)b.bytes, "B/s", b.memset_s, "memset");
    print_row("memcpy of lowest level (baseline)", b.memcpy_s,
              (double)b.bytes, "B/s", b.memcpy_s, "memcpy");

    row_bytes(&b, "set whole disk (clean -> dirty)", prep_clean,
              op_set_whole, false);
    row_bytes(&b, "reset whole disk (dirty -> clean)", prep_full,
              op_reset_whole, false);
    row_calls(&b, "set 1% granules, one 64 KiB call each", prep_clean,
              op_set_each, (double)b.ndirty, false);
    row_calls(&b, "reset 1% granules, one 64 KiB call each",
              prep_sparse_work, op_reset_each, (double)b.ndirty, false);
    row_bytes(&b, "next_dirty walk, 1% dirty", NULL, op_next_dirty_walk,
              true);
    row_bytes(&b, "iterator walk, 1% dirty", NULL, op_iter_walk, true);
    row_bytes(&b, "next_dirty_area walk, 1% dirty", NULL,
              op_dirty_area_walk, true);
    row_calls(&b, "next_dirty over a clean bitmap", NULL,
              op_next_dirty_clean, (double)b.loops, true);
    row_calls(&b, "count", NULL, op_count, (double)b.loops, true);
    row_bytes(&b, "merge, same granularity (a | b -> c)", NULL,
              op_merge_same, true);
    row_bytes(&b, "merge 1% dirty 64 KiB into 1 MiB bitmap", NULL,
              op_merge_coarse, true);
    row_bytes(&b, "copy (allocation, copy, free)", NULL, op_copy, true);
    row_bytes(&b, "serialize whole", NULL, op_serialize, true);
    row_bytes(&b, "deserialize whole + finish", prep_serialized,
              op_deserialize, true);
    row_bytes(&b, "sha256", NULL, op_sha256, true);

    hbitmap_free(b.work);
    hbitmap_free(b.sparse);
    hbitmap_free(b.sparse2);
    hbitmap_free(b.result);
    hbitmap_free(b.restored);
    hbitmap_free(b.coarse_empty);
    hbitmap_free(b.coarse_result);
    g_free(b.dirty);
    g_free(b.src);
    g_free(b.dst);
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: hbitmap [--quick] [--tib N]...\n"
                 "  (default: 1 and 64 TiB; --quick: 1 TiB only)\n");
}

int main(int argc, char **argv)
{
    uint64_t sizes[16];
    size_t n = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            sizes[0] = 1;
            n = 1;
        } else if (!strcmp(argv[i], "--tib") && i + 1 < argc &&
                   n < G_N_ELEMENTS(sizes)) {
            char *end;
            unsigned long long v;

            errno = 0;
            v = strtoull(argv[++i], &end, 10);
            /* 2^41 granules of 64 KiB = 2^57 bytes = 2^17 TiB. */
            if (errno || *end || v == 0 || v > (1u << 17)) {
                fprintf(stderr, "hbitmap: bad size '%s'\n", argv[i]);
                return 2;
            }
            sizes[n++] = v;
        } else if (!strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (n == 0) {
        sizes[n++] = 1;
        sizes[n++] = 64;
    }
    printf("hbitmap benchmark: medians of >= %d runs / %.1f s; ratio = "
           "time / time of memset or memcpy of the lowest level\n",
           MIN_REPS, MIN_SECONDS);
    for (size_t i = 0; i < n; i++) {
        run_size(sizes[i]);
    }
    return 0;
}
