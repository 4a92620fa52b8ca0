/*
 * Dirty bitmaps on nodes: what the write path marks (whole granules,
 * failed requests too, only what reaches the node), states, the successor
 * protocol, resize, merge, and a randomized check of counts against a
 * model of the written extents.
 */
#include <errno.h>

#include "block-test-helpers.h"
#include "block/dirty-bitmap.h"
#include "qapi-commands.h"


static char *file_json(const char *node, int64_t size, const char *extra)
{
    g_autofree char *name = g_strdup_printf("%s.img", node);
    g_autofree char *path = block_test_file(name, size);

    return g_strdup_printf("{\"driver\": \"file\", \"node-name\": \"%s\","
                           " \"filename\": \"%s\"%s}", node, path, extra);
}

static BlockDriverState *open_node(const char *json)
{
    return block_test_open(json, &error_abort);
}

static BlockBackend *attach(BlockDriverState *bs)
{
    return block_test_backend(bs, "test", BLOCK_TEST_RW, BLK_PERM_ALL);
}

static void test_marks_whole_granules(void)
{
    BlockDriverState *bs = open_node("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"size\": 1048576}");
    BlockBackend *blk = attach(bs);
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, 65536, "a", &error_abort);
    char byte = 1;

    g_assert_cmpint(blk_pwrite(blk, 65537, 1, &byte, 0), ==, 0);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 65536);
    /* Across a granule boundary: two granules. */
    g_assert_cmpint(blk_pwrite_zeroes(blk, 65536 * 3 - 1, 2, 0), ==, 0);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 3 * 65536);
    blk_unref(blk);
    bdrv_del_node("n", &error_abort);
}

static void test_disabled_bitmap_not_marked(void)
{
    BlockDriverState *bs = open_node("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"size\": 1048576}");
    BlockBackend *blk = attach(bs);
    BdrvDirtyBitmap *on = bdrv_create_dirty_bitmap(bs, 512, "on", &error_abort);
    BdrvDirtyBitmap *off = bdrv_create_dirty_bitmap(bs, 512, "off", &error_abort);
    char buf[1024] = { 1 };

    bdrv_disable_dirty_bitmap(off);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(bdrv_get_dirty_count(on), ==, 1024);
    g_assert_cmpint(bdrv_get_dirty_count(off), ==, 0);
    g_assert_false(bdrv_dirty_bitmap_recording(off));
    blk_unref(blk);
    bdrv_del_node("n", &error_abort);
}

static void test_failed_write_is_marked(void)
{
    g_autofree char *file = file_json("img", 1048576, "");
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"blkdebug\", \"node-name\": \"d\", \"inject-error\":"
        " [{\"event\": \"write_aio\"}], \"image\": %s}", file);
    BlockDriverState *bs = open_node(json);
    BlockBackend *blk = attach(bs);
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, 4096, "a", &error_abort);
    char buf[512] = { 1 };

    g_assert_cmpint(blk_pwrite(blk, 8192, sizeof(buf), buf, 0), ==, -EIO);
    /* QEMU marks by what was asked, not by what succeeded. */
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 4096);
    blk_unref(blk);
    bdrv_del_node("d", &error_abort);
}

static void test_discard_marks_only_when_passed_on(void)
{
    g_autofree char *ignore = file_json("ign", 1048576, "");
    g_autofree char *unmap = file_json("unm", 1048576, ", \"discard\": \"unmap\"");
    BlockDriverState *a = open_node(ignore), *b = open_node(unmap);
    BlockBackend *ba = attach(a), *bb = attach(b);
    BdrvDirtyBitmap *ma = bdrv_create_dirty_bitmap(a, 65536, "m", &error_abort);
    BdrvDirtyBitmap *mb = bdrv_create_dirty_bitmap(b, 65536, "m", &error_abort);

    g_assert_cmpint(blk_pdiscard(ba, 0, 65536), ==, 0);
    g_assert_cmpint(blk_pdiscard(bb, 0, 65536), ==, 0);
    g_assert_cmpint(bdrv_get_dirty_count(ma), ==, 0);
    g_assert_cmpint(bdrv_get_dirty_count(mb), ==, 65536);
    blk_unref(ba);
    blk_unref(bb);
    bdrv_del_node("ign", &error_abort);
    bdrv_del_node("unm", &error_abort);
}

static void test_unaligned_write_marks_what_was_asked(void)
{
    g_autofree char *file = file_json("al", 1048576, "");
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"blkdebug\", \"node-name\": \"d\", \"align\": 4096,"
        " \"image\": %s}", file);
    BlockDriverState *bs = open_node(json);
    BlockBackend *blk = attach(bs);
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, 512, "a", &error_abort);
    BdrvDirtyBitmap *below = bdrv_create_dirty_bitmap(bdrv_file_bs(bs), 512, "a",
                                                      &error_abort);
    char buf[512] = { 1 };

    g_assert_cmpint(blk_pwrite(blk, 1024, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 512);
    /* The file below saw the read-modify-write of the whole block. */
    g_assert_cmpint(bdrv_get_dirty_count(below), ==, 4096);
    blk_unref(blk);
    bdrv_del_node("d", &error_abort);
}

static void test_successor_abdicate_and_reclaim(void)
{
    BlockDriverState *bs = open_node("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"size\": 1048576}");
    BlockBackend *blk = attach(bs);
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, 65536, "a", &error_abort);
    g_autoptr(Error) err = NULL;
    char byte = 1;

    blk_pwrite(blk, 0, 1, &byte, 0);
    g_assert_true(bdrv_dirty_bitmap_create_successor(bm, &error_abort));
    g_assert_true(bdrv_dirty_bitmap_busy(bm));
    g_assert_true(bdrv_dirty_bitmap_recording(bm));
    g_assert_false(bdrv_dirty_bitmap_create_successor(bm, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Bitmap 'a' is currently in use by "
                    "another operation and cannot be used");
    blk_pwrite(blk, 65536 * 5, 1, &byte, 0);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 65536);   /* frozen */
    bm = bdrv_reclaim_dirty_bitmap(bm);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 2 * 65536);
    g_assert_false(bdrv_dirty_bitmap_busy(bm));

    g_assert_true(bdrv_dirty_bitmap_create_successor(bm, &error_abort));
    blk_pwrite(blk, 65536 * 9, 1, &byte, 0);
    bm = bdrv_dirty_bitmap_abdicate(bm);
    g_assert_cmpstr(bdrv_dirty_bitmap_name(bm), ==, "a");
    g_assert_true(bdrv_find_dirty_bitmap(bs, "a") == bm);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 65536);   /* only the new write */
    g_assert_true(bdrv_dirty_bitmap_recording(bm));
    blk_unref(blk);
    bdrv_del_node("n", &error_abort);
}

static void test_resize_follows_and_busy_refuses(void)
{
    g_autofree char *file = file_json("rs", 1048576, "");
    BlockDriverState *bs = open_node(file);
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, 65536, "a", &error_abort);
    g_autoptr(Error) err = NULL;

    bdrv_set_dirty_bitmap(bm, 1048576 - 1, 1);
    g_assert_true(bdrv_truncate(bs, 2 * 1048576, &error_abort));
    g_assert_cmpint(bdrv_dirty_bitmap_size(bm), ==, 2 * 1048576);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 65536);
    g_assert_true(bdrv_truncate(bs, 1048576 - 65536 + 1, &error_abort));
    /* The partly covered last granule keeps its bit. */
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 65536);
    g_assert_true(bdrv_truncate(bs, 1048576 - 65536, &error_abort));
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 0);

    g_assert_true(bdrv_dirty_bitmap_create_successor(bm, &error_abort));
    g_assert_false(bdrv_truncate(bs, 1048576, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Bitmap 'a' is currently in use by "
                    "another operation and cannot be used");
    bdrv_reclaim_dirty_bitmap(bm);
    bdrv_del_node("rs", &error_abort);
}

static void test_merge_different_granularity(void)
{
    BlockDriverState *bs = open_node("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"size\": 1048576}");
    BdrvDirtyBitmap *fine = bdrv_create_dirty_bitmap(bs, 512, "fine", &error_abort);
    BdrvDirtyBitmap *coarse = bdrv_create_dirty_bitmap(bs, 65536, "coarse",
                                                       &error_abort);
    HBitmap *backup = NULL;

    bdrv_set_dirty_bitmap(fine, 1000, 10);
    g_assert_true(bdrv_merge_dirty_bitmap(coarse, fine, &backup, &error_abort));
    g_assert_cmpint(bdrv_get_dirty_count(coarse), ==, 65536);
    bdrv_restore_dirty_bitmap(coarse, backup);
    g_assert_cmpint(bdrv_get_dirty_count(coarse), ==, 0);
    bdrv_del_node("n", &error_abort);
}

static void test_query_lists_newest_first(void)
{
    BlockDriverState *bs = open_node("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"size\": 1048576}");
    BlockDirtyInfoList *list;

    bdrv_create_dirty_bitmap(bs, 65536, "old", &error_abort);
    bdrv_create_dirty_bitmap(bs, 65536, NULL, &error_abort);
    bdrv_create_dirty_bitmap(bs, 4096, "new", &error_abort);
    list = bdrv_query_dirty_bitmaps(bs);
    g_assert_cmpstr(list->value->name, ==, "new");
    g_assert_cmpuint(list->value->granularity, ==, 4096);
    g_assert_null(list->next->value->name);
    g_assert_cmpstr(list->next->next->value->name, ==, "old");
    qapi_free_BlockDirtyInfoList(list);
    bdrv_del_node("n", &error_abort);
}

/* Checks the refusal in *errp and clears it for the next command. */
static void expect_inconsistent(Error **errp)
{
    g_assert_nonnull(*errp);
    g_assert_cmpint(error_get_class(*errp), ==, ERROR_CLASS_GENERIC_ERROR);
    g_assert_cmpstr(error_get_pretty(*errp), ==,
                    "Bitmap 'bad' is inconsistent and cannot be used");
    g_clear_pointer(errp, error_free);
}

/*
 * An inconsistent bitmap (what a crash leaves in a qcow2 image) stops
 * recording, refuses every QMP use with QEMU's text and changes nothing,
 * and may only be removed.
 */
static void test_inconsistent_may_only_be_removed(void)
{
    BlockDriverState *bs = open_node("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"size\": 1048576}");
    BlockBackend *blk = attach(bs);
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, 65536, "bad", &error_abort);
    BlockDirtyBitmapOrStrList src = {
        .value = &(BlockDirtyBitmapOrStr) { .type = QTYPE_QSTRING,
                                            .u.local = "bad" },
    };
    BlockDirtyBitmapOrStrList dst_src = {
        .value = &(BlockDirtyBitmapOrStr) { .type = QTYPE_QSTRING,
                                            .u.local = "good" },
    };
    BlockDirtyInfoList *list;
    Error *err = NULL;
    uint8_t buf[512] = { 0 };

    bdrv_set_dirty_bitmap(bm, 0, 65536);
    bdrv_dirty_bitmap_set_persistent(bm, true);
    bdrv_dirty_bitmap_set_inconsistent(bm);
    bdrv_create_dirty_bitmap(bs, 65536, "good", &error_abort);

    g_assert_cmpint(blk_pwrite(blk, 524288, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 65536);

    qmp_block_dirty_bitmap_clear("n", "bad", &err);
    expect_inconsistent(&err);
    qmp_block_dirty_bitmap_enable("n", "bad", &err);
    expect_inconsistent(&err);
    qmp_block_dirty_bitmap_disable("n", "bad", &err);
    expect_inconsistent(&err);
    qmp_block_dirty_bitmap_merge("n", "bad", &dst_src, &err);
    expect_inconsistent(&err);
    qmp_block_dirty_bitmap_merge("n", "good", &src, &err);
    expect_inconsistent(&err);
    qmp_block_dirty_bitmap_copy("n", "bad", "copy", NULL, false, 0, false,
                                false, false, false, &err);
    expect_inconsistent(&err);
    g_assert_cmpint(bdrv_get_dirty_count(bm), ==, 65536);
    g_assert_false(bdrv_dirty_bitmap_recording(bm));

    list = bdrv_query_dirty_bitmaps(bs);
    g_assert_cmpstr(list->value->name, ==, "good");
    g_assert_cmpuint(list->value->count, ==, 65536);  /* the write */
    g_assert_cmpstr(list->next->value->name, ==, "bad");
    g_assert_true(list->next->value->has_inconsistent);
    g_assert_true(list->next->value->inconsistent);
    g_assert_false(list->next->value->recording);
    g_assert_null(list->next->next);
    qapi_free_BlockDirtyInfoList(list);

    g_assert_true(qmp_block_dirty_bitmap_remove("n", "bad", &error_abort));
    g_assert_null(bdrv_find_dirty_bitmap(bs, "bad"));
    blk_unref(blk);
    bdrv_del_node("n", &error_abort);
}

/* The runs a reader walks under the lock: whole granules, clipped to the range. */
static void test_walk_dirty_areas(void)
{
    BlockDriverState *bs = open_node("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"size\": 1048576}");
    BlockBackend *blk = attach(bs);
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, 4096, "a", &error_abort);
    const uint64_t want[][2] = {
        { 8192, 4096 }, { 61440, 8192 }, { 1044480, 4096 },
    };
    uint64_t start = 0, s, n;
    char buf[100] = { 1 };
    size_t i = 0;

    g_assert_cmpint(blk_pwrite(blk, 8192, 100, buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(blk, 65535, 2, buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(blk, 1048575, 1, buf, 0), ==, 0);
    bdrv_dirty_bitmap_lock(bm);
    while (bdrv_dirty_bitmap_next_dirty_area_locked(bm, start, 1048576,
                                                    1048576, &s, &n)) {
        g_assert_cmpuint(i, <, G_N_ELEMENTS(want));
        g_assert_cmpuint(s, ==, want[i][0]);
        g_assert_cmpuint(n, ==, want[i][1]);
        start = s + n;
        i++;
    }
    g_assert_cmpuint(i, ==, G_N_ELEMENTS(want));
    /* From inside a run, up to a limit. */
    g_assert_true(bdrv_dirty_bitmap_next_dirty_area_locked(bm, 63000, 65000,
                                                           1000, &s, &n));
    g_assert_cmpuint(s, ==, 63000);
    g_assert_cmpuint(n, ==, 1000);
    g_assert_false(bdrv_dirty_bitmap_next_dirty_area_locked(bm, 12288, 61440,
                                                            4096, &s, &n));
    bdrv_dirty_bitmap_unlock(bm);
    blk_unref(blk);
    bdrv_del_node("n", &error_abort);
}

/*
 * Runs of one state from an offset. A dirty start followed by a clean
 * granule in the range is dirty: QEMU 7.2's hbitmap_status() said clean.
 */
static void test_status_runs(void)
{
    BlockDriverState *bs = open_node("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"size\": 1048576}");
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, 65536, NULL, &error_abort);
    int64_t pnum;

    bdrv_set_dirty_bitmap(bm, 65536, 2 * 65536);
    g_assert_false(bdrv_dirty_bitmap_status(bm, 0, 1048576, &pnum));
    g_assert_cmpint(pnum, ==, 65536);
    g_assert_true(bdrv_dirty_bitmap_status(bm, 65536, 1048576 - 65536, &pnum));
    g_assert_cmpint(pnum, ==, 2 * 65536);
    /* From inside a granule, and cut at the range's end. */
    g_assert_true(bdrv_dirty_bitmap_status(bm, 70000, 1000, &pnum));
    g_assert_cmpint(pnum, ==, 1000);
    g_assert_false(bdrv_dirty_bitmap_status(bm, 200000, 848576, &pnum));
    g_assert_cmpint(pnum, ==, 848576);
    g_assert_true(bdrv_dirty_bitmap_status(bm, 65536, 2 * 65536, &pnum));
    g_assert_cmpint(pnum, ==, 2 * 65536);
    bdrv_release_dirty_bitmap(bm);
    bdrv_del_node("n", &error_abort);
}

/* Counts against a model: one byte per granule of the finest granularity. */
static void test_random_extents_match_model(void)
{
    const int64_t size = 64 << 20;
    const uint32_t grans[] = { 512, 4096, 65536, 1 << 20 };
    BlockDriverState *bs = open_node("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"size\": 67108864}");
    BlockBackend *blk = attach(bs);
    BdrvDirtyBitmap *bms[G_N_ELEMENTS(grans)];
    g_autofree guint8 *model = g_malloc0(size / 512);
    GRand *rand = g_rand_new_with_seed(42);
    g_autofree char *buf = g_malloc0(256 * 1024);
    size_t b;
    int i;

    for (b = 0; b < G_N_ELEMENTS(grans); b++) {
        g_autofree char *name = g_strdup_printf("g%u", grans[b]);

        bms[b] = bdrv_create_dirty_bitmap(bs, grans[b], name, &error_abort);
    }
    bdrv_disable_dirty_bitmap(bms[3]);
    for (i = 0; i < 5000; i++) {
        int64_t off = g_rand_int_range(rand, 0, size - 1);
        int64_t want = g_rand_int_range(rand, 1, 256 * 1024);
        int64_t len = MIN(want, size - off);
        int64_t s;

        switch (i % 3) {
        case 0:
            g_assert_cmpint(blk_pwrite(blk, off, len, buf + 1, 0), ==, 0);
            break;
        case 1:
            g_assert_cmpint(blk_pwrite_zeroes(blk, off, len, 0), ==, 0);
            break;
        default:
            g_assert_cmpint(blk_pwrite(blk, off, len, buf, 0), ==, 0);
            break;
        }
        for (s = off / 512; s <= (off + len - 1) / 512; s++) {
            model[s] = 1;
        }
    }
    for (b = 0; b < 3; b++) {
        int64_t per = grans[b] / 512, want = 0, g, s;

        for (g = 0; g < size / grans[b]; g++) {
            for (s = g * per; s < (g + 1) * per; s++) {
                if (model[s]) {
                    want += grans[b];
                    break;
                }
            }
        }
        g_assert_cmpint(bdrv_get_dirty_count(bms[b]), ==, want);
    }
    g_assert_cmpint(bdrv_get_dirty_count(bms[3]), ==, 0);
    g_rand_free(rand);
    blk_unref(blk);
    bdrv_del_node("n", &error_abort);
}

int main(int argc, char **argv)
{
    block_test_init(&argc, &argv);
    g_test_add_func("/dirty-bitmap/marks-whole-granules", test_marks_whole_granules);
    g_test_add_func("/dirty-bitmap/disabled-not-marked", test_disabled_bitmap_not_marked);
    g_test_add_func("/dirty-bitmap/failed-write-is-marked", test_failed_write_is_marked);
    g_test_add_func("/dirty-bitmap/discard-marks-only-when-passed-on",
                    test_discard_marks_only_when_passed_on);
    g_test_add_func("/dirty-bitmap/unaligned-write-marks-what-was-asked",
                    test_unaligned_write_marks_what_was_asked);
    g_test_add_func("/dirty-bitmap/successor-abdicate-and-reclaim",
                    test_successor_abdicate_and_reclaim);
    g_test_add_func("/dirty-bitmap/resize-follows-and-busy-refuses",
                    test_resize_follows_and_busy_refuses);
    g_test_add_func("/dirty-bitmap/merge-different-granularity",
                    test_merge_different_granularity);
    g_test_add_func("/dirty-bitmap/query-lists-newest-first", test_query_lists_newest_first);
    g_test_add_func("/dirty-bitmap/inconsistent-may-only-be-removed",
                    test_inconsistent_may_only_be_removed);
    g_test_add_func("/dirty-bitmap/random-extents-match-model",
                    test_random_extents_match_model);
    g_test_add_func("/dirty-bitmap/walk-dirty-areas", test_walk_dirty_areas);
    g_test_add_func("/dirty-bitmap/status-runs", test_status_runs);
    return block_test_run();
}
