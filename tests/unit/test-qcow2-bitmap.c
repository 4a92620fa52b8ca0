/*
 * Persistent dirty bitmaps in qcow2 images, against QEMU's tools: what
 * blkd stores, qemu-img checks and lists and qemu-nbd exports with the
 * same bits (nbdinfo --map); what qemu-img and qemu-io stored, blkd loads
 * with the same bits; QEMU's limits and texts; damaged directories are
 * refused and the image left alone; a failed store damages nothing.
 * Skips without qemu-img/qemu-io, qemu-nbd and nbdinfo.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "qcow2-test-helpers.h"
#include "block/dirty-bitmap.h"
#include "block/qcow2.h"
#include "qapi-commands.h"
#include "util/main-loop.h"

/* ---- helpers ----------------------------------------------------------- */

static bool have_tools(void)
{
    g_autofree char *nbd = g_find_program_in_path("qemu-nbd");
    g_autofree char *info = g_find_program_in_path("nbdinfo");

    if (!block_test_have_qemu_tools()) {
        return false;
    }
    if (!nbd || !info) {
        g_test_skip("qemu-nbd or nbdinfo missing");
        return false;
    }
    return true;
}

/* A new image of size (qemu-img's syntax) with qemu-img create -o opts. */
static void make_image(const char *name, const char *opts, const char *size)
{
    SH_OK("qemu-img create -q -f qcow2 %s %s %s %s", opts ? "-o" : "",
          opts ? opts : "", name, size);
}

static BlockBackend *open_rw(const char *name)
{
    return attach(open_qcow2(name, false, NULL, &error_abort), true);
}

static BdrvDirtyBitmap *bitmap(BlockBackend *blk, const char *name)
{
    BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(blk_bs(blk), name);

    g_assert_nonnull(bm);
    return bm;
}

static void add_persistent(const char *name, uint32_t granularity,
                           bool disabled)
{
    g_assert_true(qmp_block_dirty_bitmap_add("q", name, true, granularity,
                                             true, true, true, disabled,
                                             &error_abort));
}

static void write_at(BlockBackend *blk, int64_t off, int64_t len)
{
    g_autofree uint8_t *buf = g_malloc(len);

    memset(buf, 0x5a, len);
    g_assert_cmpint(blk_pwrite(blk, off, len, buf, 0), ==, 0);
}

/* The dirty extents ("offset+length ") blkd holds, adjacent ones merged. */
static char *blkd_map(BdrvDirtyBitmap *bm)
{
    int64_t size = bdrv_dirty_bitmap_size(bm);
    int64_t g = bdrv_dirty_bitmap_granularity(bm);
    GString *out = g_string_new(NULL);
    int64_t start = 0;

    while (start < size && (start = bdrv_dirty_bitmap_next_dirty(
                                bm, start, size - start)) >= 0) {
        int64_t end = start - start % g;

        while (end < size && bdrv_dirty_bitmap_get(bm, end)) {
            end += g;
        }
        g_string_append_printf(out, "%" PRId64 "+%" PRId64 " ", start,
                               MIN(end, size) - start);
        start = end;
    }
    return g_string_free(out, false);
}

/* The same as qemu-nbd exports it from the image (nbdinfo --map). */
static char *qemu_map(const char *image, const char *name)
{
    g_autofree char *out = NULL;
    g_auto(GStrv) lines = NULL;
    GString *map = g_string_new(NULL);
    uint64_t run_start = 0, run_end = 0;
    int i;

    g_assert_cmpint(sh(&out, "nbdinfo --map=qemu:dirty-bitmap:%s -- "
                       "[ qemu-nbd -r -B %s -f qcow2 %s ]", name, name,
                       image), ==, 0);
    lines = g_strsplit(out, "\n", -1);
    for (i = 0; lines[i]; i++) {
        uint64_t off, len;
        unsigned dirty;

        if (sscanf(lines[i], "%" SCNu64 " %" SCNu64 " %u", &off, &len,
                   &dirty) != 3 || !dirty) {
            continue;
        }
        if (off != run_end && run_end) {
            g_string_append_printf(map, "%" PRIu64 "+%" PRIu64 " ", run_start,
                                   run_end - run_start);
            run_start = off;
        } else if (!run_end) {
            run_start = off;
        }
        run_end = off + len;
    }
    if (run_end) {
        g_string_append_printf(map, "%" PRIu64 "+%" PRIu64 " ", run_start,
                               run_end - run_start);
    }
    return g_string_free(map, false);
}

static void assert_qemu_sees(const char *image, BdrvDirtyBitmap *bm)
{
    g_autofree char *want = blkd_map(bm);
    g_autofree char *got = qemu_map(image, bdrv_dirty_bitmap_name(bm));

    g_assert_cmpstr(got, ==, want);
}

/* qemu-img info's flags line for bitmap name, e.g. "auto" or "". */
static char *qemu_flags(const char *image, const char *name)
{
    g_autofree char *out = NULL;
    g_autofree char *pattern = g_strdup_printf(
        "\"flags\": \\[([^]]*)\\],[^}]*\"name\": \"%s\"", name);
    g_autoptr(GRegex) re = g_regex_new(pattern, G_REGEX_MULTILINE |
                                       G_REGEX_DOTALL, 0, NULL);
    g_autoptr(GMatchInfo) m = NULL;
    g_autofree char *flags = NULL;
    g_auto(GStrv) parts = NULL;

    g_assert_cmpint(sh(&out, "qemu-img info -U --output=json %s", image),
                    ==, 0);
    if (!g_regex_match(re, out, 0, &m)) {
        return NULL;
    }
    flags = g_match_info_fetch(m, 1);
    parts = g_strsplit_set(flags, " \n\"", -1);
    return g_strjoinv("", parts);
}

/* Where the bitmaps extension and the directory are in image name. */
typedef struct Layout {
    uint64_t ext;           /* the extension's header (type) */
    uint64_t dir;
    uint64_t first_table;
} Layout;

static Layout layout(const char *name)
{
    gsize len;
    g_autofree uint8_t *img = read_file(name, &len);
    Layout l = { 0 };
    uint64_t off = qcow2_ld32(img + 100);

    while (qcow2_ld32(img + off) != QCOW2_EXT_BITMAPS) {
        g_assert_cmpuint(qcow2_ld32(img + off), !=, QCOW2_EXT_END);
        off += 8 + ((qcow2_ld32(img + off + 4) + 7) & ~7u);
    }
    l.ext = off;
    l.dir = qcow2_ld64(img + off + 24);
    l.first_table = qcow2_ld64(img + l.dir);
    return l;
}

static void patch(const char *name, uint64_t off, const void *data, size_t len)
{
    g_autofree char *path = path_of(name);
    FILE *f = fopen(path, "r+b");

    g_assert_nonnull(f);
    g_assert_cmpint(fseek(f, off, SEEK_SET), ==, 0);
    g_assert_cmpuint(fwrite(data, 1, len, f), ==, len);
    g_assert_cmpint(fclose(f), ==, 0);
}

static void patch32(const char *name, uint64_t off, uint32_t v)
{
    uint8_t b[4];

    qcow2_st32(b, v);
    patch(name, off, b, 4);
}

static void patch64(const char *name, uint64_t off, uint64_t v)
{
    uint8_t b[8];

    qcow2_st64(b, v);
    patch(name, off, b, 8);
}

static char *file_sum(const char *name)
{
    gsize len;
    g_autofree uint8_t *data = read_file(name, &len);

    return g_compute_checksum_for_data(G_CHECKSUM_SHA256, data, len);
}

/* ---- round trips ------------------------------------------------------- */

/*
 * Bitmaps of several granularities, enabled and disabled, get writes,
 * are stored at close, and come back with the same bits and states;
 * qemu-img lists them with QEMU's flags and qemu-nbd exports the bits.
 */
static void test_round_trip(void)
{
    static const uint32_t grans[] = { 512, 4096, 65536, 2 * 1024 * 1024 };
    char *sums[G_N_ELEMENTS(grans)];
    BlockBackend *blk;
    GRand *r = g_rand_new_with_seed(7);
    unsigned i;

    if (!have_tools()) {
        return;
    }
    make_image("rt.qcow2", "cluster_size=4096", "64M");
    blk = open_rw("rt.qcow2");
    for (i = 0; i < G_N_ELEMENTS(grans); i++) {
        g_autofree char *name = g_strdup_printf("g%u", grans[i]);

        add_persistent(name, grans[i], false);
    }
    add_persistent("off", 65536, true);
    for (i = 0; i < 200; i++) {
        write_at(blk, g_rand_int_range(r, 0, 64 * MiB - 70000),
                 g_rand_int_range(r, 1, 70000));
    }
    write_at(blk, 64 * MiB - 1, 1);
    for (i = 0; i < G_N_ELEMENTS(grans); i++) {
        g_autofree char *name = g_strdup_printf("g%u", grans[i]);

        sums[i] = bdrv_dirty_bitmap_sha256(bitmap(blk, name));
    }
    close_node(blk);
    assert_check_clean("rt.qcow2");

    blk = open_rw("rt.qcow2");
    for (i = 0; i < G_N_ELEMENTS(grans); i++) {
        g_autofree char *name = g_strdup_printf("g%u", grans[i]);
        g_autofree char *sum = NULL;
        g_autofree char *flags = qemu_flags("rt.qcow2", name);
        BdrvDirtyBitmap *bm = bitmap(blk, name);

        /* Open for writing: in use in the image. */
        g_assert_cmpstr(flags, ==, "in-use,auto");
        sum = bdrv_dirty_bitmap_sha256(bm);
        g_assert_cmpstr(sum, ==, sums[i]);
        g_assert_true(bdrv_dirty_bitmap_persistent(bm));
        g_assert_true(bdrv_dirty_bitmap_enabled(bm));
        g_assert_cmpuint(bdrv_dirty_bitmap_granularity(bm), ==, grans[i]);
    }
    g_assert_false(bdrv_dirty_bitmap_enabled(bitmap(blk, "off")));
    g_assert_cmpint(bdrv_get_dirty_count(bitmap(blk, "off")), ==, 0);
    close_node(blk);

    blk = attach(open_qcow2("rt.qcow2", true, NULL, &error_abort), false);
    for (i = 0; i < G_N_ELEMENTS(grans); i++) {
        g_autofree char *name = g_strdup_printf("g%u", grans[i]);
        g_autofree char *flags = qemu_flags("rt.qcow2", name);

        g_assert_cmpstr(flags, ==, "auto");
        assert_qemu_sees("rt.qcow2", bitmap(blk, name));
        g_free(sums[i]);
    }
    sums[0] = qemu_flags("rt.qcow2", "off");
    g_assert_cmpstr(sums[0], ==, "");
    g_free(sums[0]);
    close_node(blk);
    assert_check_clean("rt.qcow2");
    g_rand_free(r);
}

/*
 * A 64 GiB image: a sparse 4 KiB-granularity bitmap takes a data cluster
 * only where it has bits; a partial last granule keeps its bit.
 */
static void test_large_sparse(void)
{
    static const int64_t offs[] = {
        0, INT64_C(1) << 30, 40 * INT64_C(1) << 30,
    };
    int64_t size = 64 * (INT64_C(1) << 30) + 512;
    g_autofree char *sum = NULL, *again = NULL;
    g_autofree uint8_t *img = NULL;
    BlockBackend *blk;
    Layout l;
    gsize len;
    unsigned i, data = 0;

    if (!have_tools()) {
        return;
    }
    make_image("big.qcow2", NULL, "68719477248");
    blk = open_rw("big.qcow2");
    add_persistent("sparse", 4096, false);
    for (i = 0; i < G_N_ELEMENTS(offs); i++) {
        write_at(blk, offs[i] + 100, 5000);
    }
    write_at(blk, size - 512, 512);
    sum = bdrv_dirty_bitmap_sha256(bitmap(blk, "sparse"));
    g_assert_cmpint(bdrv_get_dirty_count(bitmap(blk, "sparse")), ==,
                    (G_N_ELEMENTS(offs) * 2 + 1) * 4096);
    close_node(blk);
    assert_check_clean("big.qcow2");
    /*
     * 16 Mi granules and one: a table of 33 entries, each for 2 GiB; data
     * clusters only for the three stretches written (0, 40 GiB, the end).
     */
    l = layout("big.qcow2");
    img = read_file("big.qcow2", &len);
    g_assert_cmpuint(qcow2_ld32(img + l.dir + 8), ==, 33);
    for (i = 0; i < 33; i++) {
        data += qcow2_ld64(img + l.first_table + i * 8) != 0;
    }
    g_assert_cmpuint(data, ==, 3);

    blk = attach(open_qcow2("big.qcow2", true, NULL, &error_abort), false);
    again = bdrv_dirty_bitmap_sha256(bitmap(blk, "sparse"));
    g_assert_cmpstr(again, ==, sum);
    assert_qemu_sees("big.qcow2", bitmap(blk, "sparse"));
    close_node(blk);
}

/* Bytes of granularity g dirty after 1-byte writes at 2048 * [first, 500). */
static int64_t many_count(int first, uint32_t g)
{
    int64_t n = 0, last = -1;
    int j;

    for (j = first; j < 500; j++) {
        if (j * 2048 / g != last) {
            last = j * 2048 / g;
            n++;
        }
    }
    return n * g;
}

/* Hundreds of bitmaps, names up to the longest, in and out again. */
static void test_many(void)
{
    BlockBackend *blk;
    g_autofree char *out = NULL;
    g_autofree char *longest = g_strnfill(1023, 'n');
    int i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_image("many.qcow2", "cluster_size=4096", "1M");
    blk = open_rw("many.qcow2");
    add_persistent(longest, 65536, false);
    for (i = 0; i < 500; i++) {
        g_autofree char *name = g_strdup_printf("b%d", i);

        add_persistent(name, 512 << (i % 8), i % 3 == 0);
        write_at(blk, i * 2048, 1);
    }
    close_node(blk);
    assert_check_clean("many.qcow2");
    g_assert_cmpint(sh(&out, "qemu-img info many.qcow2 | grep -c 'name: '"),
                    ==, 0);
    g_assert_cmpint(atoi(out), ==, 501);

    blk = open_rw("many.qcow2");
    g_assert_nonnull(bitmap(blk, longest));
    for (i = 0; i < 500; i++) {
        g_autofree char *name = g_strdup_printf("b%d", i);
        BdrvDirtyBitmap *bm = bitmap(blk, name);

        g_assert_cmpuint(bdrv_dirty_bitmap_granularity(bm), ==, 512 << (i % 8));
        g_assert_cmpint(bdrv_dirty_bitmap_enabled(bm), ==, i % 3 != 0);
        /* Each saw the writes made while it was there and enabled. */
        g_assert_cmpint(bdrv_get_dirty_count(bm), ==,
                        i % 3 ? many_count(i, 512 << (i % 8)) : 0);
    }
    close_node(blk);
    assert_check_clean("many.qcow2");
}

/* ---- images QEMU's tools made and changed ------------------------------ */

/* What qemu-img bitmap and qemu-io stored loads with the same bits. */
static void test_loads_what_qemu_stored(void)
{
    static const char *const names[] = { "a", "b", "c", "d", "e" };
    char *maps[G_N_ELEMENTS(names)];
    BlockBackend *blk;
    unsigned i;

    if (!have_tools()) {
        return;
    }
    make_image("qm.qcow2", NULL, "64M");
    SH_OK("qemu-img bitmap --add -g 65536 qm.qcow2 a");
    SH_OK("qemu-img bitmap --add -g 4096 qm.qcow2 b");
    SH_OK("qemu-io -c 'write 1M 300k' -c 'write 10M 1' qm.qcow2");
    SH_OK("qemu-img bitmap --disable qm.qcow2 b");
    SH_OK("qemu-img bitmap --add --disable qm.qcow2 e");
    SH_OK("qemu-io -c 'write 20M 64k' qm.qcow2");
    SH_OK("qemu-img bitmap --add -g 512 qm.qcow2 c");
    SH_OK("qemu-img bitmap --merge a qm.qcow2 c");
    SH_OK("qemu-img bitmap --add qm.qcow2 d");
    SH_OK("qemu-io -c 'write 30M 4k' qm.qcow2");
    SH_OK("qemu-img bitmap --clear qm.qcow2 d");
    SH_OK("qemu-img bitmap --enable qm.qcow2 e");
    for (i = 0; i < G_N_ELEMENTS(names); i++) {
        maps[i] = qemu_map("qm.qcow2", names[i]);
    }
    g_assert_cmpstr(maps[1], ==, "1048576+307200 10485760+4096 ");
    g_assert_cmpstr(maps[3], ==, "");

    blk = attach(open_qcow2("qm.qcow2", true, NULL, &error_abort), false);
    for (i = 0; i < G_N_ELEMENTS(names); i++) {
        BdrvDirtyBitmap *bm = bitmap(blk, names[i]);
        g_autofree char *map = blkd_map(bm);

        g_assert_cmpstr(map, ==, maps[i]);
        g_free(maps[i]);
        g_assert_true(bdrv_dirty_bitmap_readonly(bm));
        g_assert_cmpint(bdrv_dirty_bitmap_enabled(bm), ==, i != 1);
    }
    g_assert_cmpuint(bdrv_dirty_bitmap_granularity(bitmap(blk, "c")), ==, 512);
    close_node(blk);
}

/* What blkd stored, qemu-img bitmap changes; blkd sees the changes. */
static void test_qemu_img_changes_what_blkd_stored(void)
{
    g_autofree char *a_map = NULL, *c_map = NULL;
    BlockBackend *blk;

    if (!have_tools()) {
        return;
    }
    make_image("qi.qcow2", NULL, "64M");
    blk = open_rw("qi.qcow2");
    add_persistent("a", 65536, false);
    add_persistent("b", 65536, true);
    write_at(blk, 5 * MiB, 3 * MiB);
    a_map = blkd_map(bitmap(blk, "a"));
    close_node(blk);

    SH_OK("qemu-img bitmap --remove qi.qcow2 b");
    SH_OK("qemu-img bitmap --add -g 8192 qi.qcow2 c");
    SH_OK("qemu-img bitmap --merge a qi.qcow2 c");
    SH_OK("qemu-img bitmap --disable qi.qcow2 a");
    assert_check_clean("qi.qcow2");

    blk = open_rw("qi.qcow2");
    g_assert_null(bdrv_find_dirty_bitmap(blk_bs(blk), "b"));
    c_map = blkd_map(bitmap(blk, "c"));
    g_assert_cmpstr(c_map, ==, a_map);
    g_assert_false(bdrv_dirty_bitmap_enabled(bitmap(blk, "a")));
    g_assert_cmpuint(bdrv_dirty_bitmap_granularity(bitmap(blk, "c")), ==, 8192);
    close_node(blk);
    assert_check_clean("qi.qcow2");
}

/* block-dirty-bitmap-copy (blkd's) makes persistent copies the same way. */
static void test_copy_persistent(void)
{
    g_autofree char *want = NULL, *got = NULL;
    Error *err = NULL;
    BlockBackend *blk;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_image("cp.qcow2", NULL, "64M");
    blk = open_rw("cp.qcow2");
    g_assert_true(qmp_block_dirty_bitmap_add("q", "live", false, 0, false,
                                             false, false, false,
                                             &error_abort));
    write_at(blk, 7 * MiB, 70000);
    g_assert_true(qmp_block_dirty_bitmap_copy("q", "live", "kept", NULL, true,
                                              4096, true, true, true, true,
                                              &error_abort));
    g_assert_false(qmp_block_dirty_bitmap_copy("q", "live", "kept", NULL,
                                               false, 0, true, true, false,
                                               false, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Bitmap already exists: kept");
    error_free(err);
    want = blkd_map(bitmap(blk, "live"));
    close_node(blk);

    blk = open_rw("cp.qcow2");
    g_assert_null(bdrv_find_dirty_bitmap(blk_bs(blk), "live"));
    got = blkd_map(bitmap(blk, "kept"));
    g_assert_cmpstr(got, ==, want);
    g_assert_false(bdrv_dirty_bitmap_enabled(bitmap(blk, "kept")));
    g_assert_cmpuint(bdrv_dirty_bitmap_granularity(bitmap(blk, "kept")), ==,
                     4096);
    close_node(blk);
    assert_check_clean("cp.qcow2");
}

/* ---- QEMU's limits and texts ------------------------------------------- */

static void assert_add_fails(const char *node, const char *name,
                             uint32_t granularity, const char *text)
{
    Error *err = NULL;

    g_assert_false(qmp_block_dirty_bitmap_add(node, name, true, granularity,
                                              true, true, false, false, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, text);
    error_free(err);
}

/* Fills node q with n persistent bitmaps named by fmt (one %d). */
static GPtrArray *fill(BlockDriverState *bs, int n, const char *fmt)
{
    GPtrArray *made = g_ptr_array_new();
    int i;

    for (i = 0; i < n; i++) {
        g_autofree char *name = g_strdup_printf(fmt, i);
        BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, 65536, name,
                                                       &error_abort);

        bdrv_dirty_bitmap_set_persistent(bm, true);
        g_ptr_array_add(made, bm);
    }
    return made;
}

/* Newest first, so that each goes from the head of the node's list. */
static void unfill(GPtrArray *made)
{
    guint i;

    for (i = made->len; i > 0; i--) {
        bdrv_release_dirty_bitmap(g_ptr_array_index(made, i - 1));
    }
    g_ptr_array_free(made, true);
}

/* 65535 bitmaps at most, as QEMU counts them: those the node holds. */
static void test_limit_count(void)
{
    BlockBackend *blk;
    GPtrArray *made;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_image("count.qcow2", "cluster_size=4096", "1M");
    blk = open_rw("count.qcow2");
    made = fill(blk_bs(blk), 65534, "b%d");
    add_persistent("last", 65536, false);
    assert_add_fails("q", "more", 65536, "Can't make bitmap 'more' persistent "
                     "in 'q': Maximum number of persistent bitmaps is already "
                     "reached");
    g_assert_true(qmp_block_dirty_bitmap_add("q", "more", false, 0, true, false,
                                             false, false, &error_abort));
    g_assert_true(qmp_block_dirty_bitmap_remove("q", "more", &error_abort));
    g_assert_true(qmp_block_dirty_bitmap_remove("q", "last", &error_abort));
    unfill(made);
    close_node(blk);
}

/* The directory holds at most 1024 * 65535 bytes of entries. */
static void test_limit_directory(void)
{
    g_autofree char *pad = g_strnfill(1018, 'n');
    g_autofree char *fmt = g_strdup_printf("%%05d%s", pad);
    g_autofree char *long_name = g_strdup_printf("x%s", pad);
    g_autofree char *long_name2 = NULL;
    g_autofree char *text = NULL;
    BlockBackend *blk;
    GPtrArray *made;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_image("dir.qcow2", "cluster_size=4096", "1M");
    blk = open_rw("dir.qcow2");
    /* 64034 entries of 1048 bytes, then room for 176 bytes. */
    made = fill(blk_bs(blk), 64034, fmt);
    long_name2 = g_strdup_printf("%s%s", long_name, "yyyy");
    g_assert_cmpuint(strlen(long_name2), ==, 1023);
    text = g_strdup_printf("Can't make bitmap '%s' persistent in 'q': Not "
                           "enough space in the bitmap directory", long_name2);
    assert_add_fails("q", long_name2, 65536, text);
    add_persistent("short", 65536, false);
    g_assert_true(qmp_block_dirty_bitmap_remove("q", "short", &error_abort));
    unfill(made);
    close_node(blk);
}

/* Name length, size against granularity, v2, names taken, other drivers. */
static void test_limits_and_texts(void)
{
    g_autofree char *too_long = g_strnfill(1024, 'l');
    g_autofree char *text = g_strdup_printf(
        "Can't make bitmap '%s' persistent in 'q': Name length exceeds "
        "maximum (1023 characters)", too_long);
    g_autofree char *raw = NULL, *json = NULL;
    BlockBackend *blk;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_image("lim.qcow2", NULL, "4T");
    blk = open_rw("lim.qcow2");
    assert_add_fails("q", too_long, 65536, text);
    /* 2^33 granules of 512 bytes: 1 GiB of bits, over QEMU's 512 MiB. */
    assert_add_fails("q", "fine", 512, "Can't make bitmap 'fine' persistent in "
                     "'q': Too much space will be occupied by the bitmap. Use "
                     "larger granularity");
    add_persistent("fine", 65536, false);
    assert_add_fails("q", "fine", 65536, "Bitmap already exists: fine");
    close_node(blk);
    assert_check_clean("lim.qcow2");

    make_image("v2.qcow2", "compat=0.10", "1M");
    blk = open_rw("v2.qcow2");
    assert_add_fails("q", "p", 65536, "Can't make bitmap 'p' persistent in "
                     "'q': Cannot store dirty bitmaps in qcow2 v2 files");
    close_node(blk);

    SH_OK("qemu-img create -q -f raw raw.img 1M");
    raw = path_of("raw.img");
    json = g_strdup_printf("{\"driver\": \"file\", \"node-name\": \"f\", "
                           "\"filename\": \"%s\"}", raw);
    g_assert_nonnull(block_test_open(json, &error_abort));
    assert_add_fails("f", "p", 65536, "Can't store persistent bitmaps to f: "
                     "Operation not supported");
    g_assert_true(bdrv_del_node("f", &error_abort));
}

/* ---- damaged images ---------------------------------------------------- */

typedef struct Damage {
    const char *what;
    /* Where (the extension, an entry, its table) and what to write. */
    enum { AT_EXT, AT_ENTRY, AT_TABLE } at;
    unsigned off;
    unsigned size;          /* 4 or 8 */
    uint64_t value;
    const char *text;
} Damage;

static const Damage damages[] = {
    { "reserved-flag", AT_ENTRY, 12, 4, 6,
      "Bitmap 'x' doesn't satisfy the constraints" },
    { "table-unaligned", AT_ENTRY, 0, 8, 0x30200,
      "Bitmap 'x' doesn't satisfy the constraints" },
    { "table-absent", AT_ENTRY, 0, 8, 0,
      "Bitmap 'x' doesn't satisfy the constraints" },
    { "type", AT_ENTRY, 16, 4, 0x02100001,
      "Bitmap 'x' doesn't satisfy the constraints" },
    { "granularity", AT_ENTRY, 16, 4, 0x01080001,
      "Bitmap 'x' doesn't satisfy the constraints" },
    { "name-past-end", AT_ENTRY, 16, 4, 0x01100400, "Broken bitmap directory" },
    { "extra-data", AT_ENTRY, 20, 4, 8, "Bitmap extra data is not supported" },
    { "table-size-wrong", AT_ENTRY, 8, 4, 2,
      "Could not read bitmap 'x' from image: Invalid argument" },
    { "table-entry-reserved", AT_TABLE, 0, 8, 2,
      "Could not read bitmap_table table from image for bitmap 'x': Invalid "
      "argument" },
    { "count-high", AT_EXT, 8, 4, 3,
      "Less bitmaps found than specified in header extension" },
    { "count-low", AT_EXT, 8, 4, 1,
      "More bitmaps found than specified in header extension" },
    { "count-zero", AT_EXT, 8, 4, 0,
      "found bitmaps extension with zero bitmaps" },
    { "count-over-limit", AT_EXT, 8, 4, 65536, "bitmaps_ext: Image has 65536 "
      "bitmaps, exceeding the QEMU supported maximum of 65535" },
    { "ext-reserved", AT_EXT, 12, 4, 1,
      "bitmaps_ext: Reserved field is not zero" },
    { "directory-short", AT_EXT, 16, 8, 16, "Broken bitmap directory" },
    { "directory-cut", AT_EXT, 16, 8, 48, "Broken bitmap directory" },
    { "directory-huge", AT_EXT, 16, 8, 67107841,
      "bitmaps_ext: bitmap directory size (67107841) exceeds the maximum "
      "supported size (67107840)" },
    { "directory-unaligned", AT_EXT, 24, 8, 0x30008,
      "bitmaps_ext: invalid bitmap directory offset" },
    { "ext-length", AT_EXT, 4, 4, 16, "bitmaps_ext: Invalid extension length" },
};

/*
 * Each damage to an image with bitmaps x and y is refused with QEMU's
 * text; the image stays byte for byte.
 */
static void test_damaged_directory_refused(gconstpointer opaque)
{
    const Damage *d = opaque;
    g_autofree char *before = NULL, *after = NULL;
    g_autofree char *template = path_of("dmg-template.qcow2");
    uint64_t base;
    Layout l;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    if (!g_file_test(template, G_FILE_TEST_EXISTS)) {
        make_image("dmg-template.qcow2", NULL, "64M");
        SH_OK("qemu-img bitmap --add dmg-template.qcow2 x && "
              "qemu-img bitmap --add dmg-template.qcow2 y");
    }
    SH_OK("cp dmg-template.qcow2 dmg.qcow2");
    l = layout("dmg.qcow2");
    base = d->at == AT_EXT ? l.ext : d->at == AT_ENTRY ? l.dir : l.first_table;
    if (d->size == 4) {
        patch32("dmg.qcow2", base + d->off, d->value);
    } else {
        patch64("dmg.qcow2", base + d->off, d->value);
    }
    before = file_sum("dmg.qcow2");
    assert_open_fails("dmg.qcow2", false, NULL, d->text);
    assert_open_fails("dmg.qcow2", true, NULL, d->text);
    after = file_sum("dmg.qcow2");
    g_assert_cmpstr(after, ==, before);
}

/* ---- in use, read-only, remove, resize --------------------------------- */

/* An image with bitmap "a" (64 KiB) stored, dirty at 1 MiB. */
static void make_with_bitmap(const char *name)
{
    BlockBackend *blk;

    make_image(name, NULL, "64M");
    blk = open_rw(name);
    add_persistent("a", 65536, false);
    write_at(blk, MiB, 4096);
    close_node(blk);
}

/* A copy of image name taken while blkd has it open: what a crash leaves. */
static void copy_while_open(const char *name, const char *copy)
{
    BlockBackend *blk = open_rw(name);

    write_at(blk, 2 * MiB, 4096);
    SH_OK("cp %s %s", name, copy);
    close_node(blk);
}

/* A qemu-img check with no corruption; leaks (3) are repaired. */
static void assert_check_no_corruption(const char *name)
{
    g_autofree char *out = NULL;
    int st = sh(&out, "qemu-img check %s", name);

    if (st != 0 && st != 3) {
        g_error("qemu-img check %s: %d: %s", name, st, out);
    }
    if (st == 3) {
        SH_OK("qemu-img check -q -r leaks %s", name);
    }
}

/*
 * Bitmaps of an image that was not closed are inconsistent: no bits, not
 * recording, only removable; they stay so until removed.
 */
static void test_in_use_is_inconsistent(void)
{
    Error *err = NULL;
    BlockBackend *blk;
    BdrvDirtyBitmap *bm;
    g_autofree char *flags = NULL;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_with_bitmap("iu.qcow2");
    copy_while_open("iu.qcow2", "crash.qcow2");
    assert_check_no_corruption("crash.qcow2");
    blk = open_rw("crash.qcow2");
    bm = bitmap(blk, "a");
    g_assert_true(bdrv_dirty_bitmap_inconsistent(bm));
    g_assert_true(bdrv_dirty_bitmap_persistent(bm));
    g_assert_false(bdrv_dirty_bitmap_recording(bm));
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 0);
    g_assert_false(qmp_block_dirty_bitmap_clear("q", "a", &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Bitmap 'a' is inconsistent and cannot be used");
    g_clear_pointer(&err, error_free);
    g_assert_false(bdrv_truncate(blk_bs(blk), 128 * MiB, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Bitmap 'a' is inconsistent and cannot be used");
    error_free(err);
    close_node(blk);
    flags = qemu_flags("crash.qcow2", "a");
    g_assert_cmpstr(flags, ==, "in-use,auto");
    assert_check_clean("crash.qcow2");

    blk = open_rw("crash.qcow2");
    g_assert_true(bdrv_dirty_bitmap_inconsistent(bitmap(blk, "a")));
    g_assert_true(qmp_block_dirty_bitmap_remove("q", "a", &error_abort));
    close_node(blk);
    g_clear_pointer(&flags, g_free);
    flags = qemu_flags("crash.qcow2", "a");
    g_assert_null(flags);
    assert_check_clean("crash.qcow2");
    /* The original was closed: its bitmap has both writes. */
    blk = open_rw("iu.qcow2");
    g_autofree char *map = blkd_map(bitmap(blk, "a"));
    g_assert_cmpstr(map, ==, "1048576+65536 2097152+65536 ");
    close_node(blk);
}

/* A read-only node loads read-only bitmaps and writes nothing. */
static void test_read_only(void)
{
    g_autofree char *before = NULL, *after = NULL;
    Error *err = NULL;
    BlockBackend *blk;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_with_bitmap("ro.qcow2");
    before = file_sum("ro.qcow2");
    blk = attach(open_qcow2("ro.qcow2", true, NULL, &error_abort), false);
    g_assert_true(bdrv_dirty_bitmap_readonly(bitmap(blk, "a")));
    g_assert_false(bdrv_dirty_bitmap_inconsistent(bitmap(blk, "a")));
    g_assert_cmpint(bdrv_get_dirty_count(bitmap(blk, "a")), ==, 65536);
    g_assert_false(qmp_block_dirty_bitmap_clear("q", "a", &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Bitmap 'a' is readonly and cannot be modified");
    g_clear_pointer(&err, error_free);
    g_assert_false(qmp_block_dirty_bitmap_remove("q", "a", &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Bitmap 'a' is readonly and cannot be modified");
    error_free(err);
    g_assert_true(qmp_block_dirty_bitmap_disable("q", "a", &error_abort));
    /* QEMU takes it, and loses it at close ("No write access"). */
    add_persistent("new", 65536, false);
    close_node(blk);
    after = file_sum("ro.qcow2");
    g_assert_cmpstr(after, ==, before);
}

/* Removing a persistent bitmap removes it from the image at once. */
static void test_remove_at_once(void)
{
    g_autofree char *out = NULL;
    g_autofree char *a = NULL, *b = NULL;
    BlockBackend *blk;
    gsize len;
    g_autofree uint8_t *img = NULL;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_with_bitmap("rm.qcow2");
    SH_OK("qemu-img bitmap --add rm.qcow2 b");
    blk = open_rw("rm.qcow2");
    g_assert_true(qmp_block_dirty_bitmap_remove("q", "a", &error_abort));
    a = qemu_flags("rm.qcow2", "a");
    b = qemu_flags("rm.qcow2", "b");
    g_assert_null(a);
    g_assert_cmpstr(b, ==, "in-use,auto");
    g_assert_true(qmp_block_dirty_bitmap_remove("q", "b", &error_abort));
    close_node(blk);
    assert_check_clean("rm.qcow2");
    /* No bitmap left: no extension, and the autoclear bit is clear. */
    img = read_file("rm.qcow2", &len);
    g_assert_cmpuint(qcow2_ld64(img + 88), ==, 0);
    g_assert_cmpint(sh(&out, "qemu-img info rm.qcow2 | grep -c bitmaps"),
                    ==, 1);
}

/* Resizing resizes the stored bitmaps; they load at the new size. */
static void test_resize(void)
{
    g_autofree char *map = NULL;
    BlockBackend *blk;

    if (!have_tools()) {
        return;
    }
    make_with_bitmap("rs.qcow2");
    blk = open_rw("rs.qcow2");
    g_assert_true(bdrv_truncate(blk_bs(blk), 128 * MiB, &error_abort));
    write_at(blk, 100 * MiB, 1);
    close_node(blk);
    assert_check_clean("rs.qcow2");
    blk = attach(open_qcow2("rs.qcow2", true, NULL, &error_abort), false);
    g_assert_cmpint(bdrv_dirty_bitmap_size(bitmap(blk, "a")), ==, 128 * MiB);
    map = blkd_map(bitmap(blk, "a"));
    g_assert_cmpstr(map, ==, "1048576+65536 104857600+65536 ");
    assert_qemu_sees("rs.qcow2", bitmap(blk, "a"));
    close_node(blk);
}

/* ---- the header -------------------------------------------------------- */

/*
 * The extension comes and goes behind the others; the backing file name
 * after them moves along, and the image keeps reading through it.
 */
static void test_header_with_backing_name(void)
{
    g_autofree char *out = NULL;
    BlockBackend *blk;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 base.qcow2 4M && "
          "qemu-io -c 'write -P 7 0 4M' base.qcow2 >/dev/null && "
          "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 top.qcow2 4M");
    blk = open_rw("top.qcow2");
    add_persistent("a", 65536, false);
    write_at(blk, 0, 512);
    close_node(blk);
    assert_check_clean("top.qcow2");
    g_assert_cmpint(sh(&out, "qemu-img info top.qcow2 | grep -E "
                       "'^backing file: base.qcow2$|name: a$' | wc -l"), ==, 0);
    g_assert_cmpint(atoi(out), ==, 2);
    assert_reads_like_qemu("top.qcow2", NULL);

    blk = open_rw("top.qcow2");
    g_assert_true(qmp_block_dirty_bitmap_remove("q", "a", &error_abort));
    close_node(blk);
    assert_check_clean("top.qcow2");
    assert_reads_like_qemu("top.qcow2", NULL);
}

/* ---- failures while storing -------------------------------------------- */

/* Opens name as "q" over blkdebug with one inject-error rule. */
static BlockBackend *open_failing(const char *name, const char *rule)
{
    g_autofree char *path = path_of(name);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"qcow2\", \"node-name\": \"q\", \"file\": "
        "{\"driver\": \"blkdebug\", \"inject-error\": [%s], \"image\": "
        "{\"driver\": \"file\", \"filename\": \"%s\"}}}", rule, path);

    return attach(block_test_open(json, &error_abort), true);
}

/*
 * A store that fails leaves the image as it was, but for leaked clusters:
 * the header is switched last, so a failing header write leaves the old
 * directory, as does a failing flush (the clusters' refcounts are not
 * stable: nothing is allocated). The image has an inconsistent bitmap, so
 * that opening it writes nothing (no bitmap to mark in use) and the rule
 * only hits the store at close.
 */
static void test_failed_store_damages_nothing(void)
{
    static const char *const rules[] = {
        "{\"event\": \"write_aio\", \"iotype\": \"write\", \"sector\": 0}",
        "{\"event\": \"flush_to_disk\", \"iotype\": \"flush\"}",
    };
    unsigned i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    for (i = 0; i < G_N_ELEMENTS(rules); i++) {
        g_autofree char *flags = NULL;
        BlockBackend *blk;

        make_with_bitmap("fs.qcow2");
        copy_while_open("fs.qcow2", "fs-crash.qcow2");
        assert_check_no_corruption("fs-crash.qcow2");
        blk = open_failing("fs-crash.qcow2", rules[i]);
        g_assert_true(bdrv_dirty_bitmap_inconsistent(bitmap(blk, "a")));
        add_persistent("b", 65536, false);
        close_node(blk);
        assert_check_no_corruption("fs-crash.qcow2");
        flags = qemu_flags("fs-crash.qcow2", "a");
        g_assert_cmpstr(flags, ==, "in-use,auto");
        g_clear_pointer(&flags, g_free);
        flags = qemu_flags("fs-crash.qcow2", "b");
        g_assert_null(flags);
    }
}

int main(int argc, char **argv)
{
    unsigned i;

    main_loop_init();
    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("blkd-test-qcow2-bitmap-XXXXXX", NULL);

    g_test_add_func("/qcow2-bitmap/round-trip", test_round_trip);
    g_test_add_func("/qcow2-bitmap/large-sparse", test_large_sparse);
    g_test_add_func("/qcow2-bitmap/many", test_many);
    g_test_add_func("/qcow2-bitmap/qemu/loads-what-qemu-stored",
                    test_loads_what_qemu_stored);
    g_test_add_func("/qcow2-bitmap/qemu/qemu-img-changes-what-blkd-stored",
                    test_qemu_img_changes_what_blkd_stored);
    g_test_add_func("/qcow2-bitmap/copy-persistent", test_copy_persistent);
    g_test_add_func("/qcow2-bitmap/limit/count", test_limit_count);
    g_test_add_func("/qcow2-bitmap/limit/directory", test_limit_directory);
    g_test_add_func("/qcow2-bitmap/limit/texts", test_limits_and_texts);
    for (i = 0; i < G_N_ELEMENTS(damages); i++) {
        g_autofree char *path = g_strdup_printf("/qcow2-bitmap/damaged/%s",
                                                damages[i].what);

        g_test_add_data_func(path, &damages[i], test_damaged_directory_refused);
    }
    g_test_add_func("/qcow2-bitmap/in-use-is-inconsistent",
                    test_in_use_is_inconsistent);
    g_test_add_func("/qcow2-bitmap/read-only", test_read_only);
    g_test_add_func("/qcow2-bitmap/remove-at-once", test_remove_at_once);
    g_test_add_func("/qcow2-bitmap/resize", test_resize);
    g_test_add_func("/qcow2-bitmap/header-with-backing-name",
                    test_header_with_backing_name);
    g_test_add_func("/qcow2-bitmap/failed-store-damages-nothing",
                    test_failed_store_damages_nothing);
    return qcow2_test_run();
}
