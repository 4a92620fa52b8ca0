/*
 * Copy offload (bdrv_copy_range()): through formats and filters that map
 * offsets 1:1 down to two files, the target side as a write (checks,
 * copy-before-write, dirty bitmaps), and -ENOTSUP wherever a node cannot,
 * so that the caller copies by read and write.
 *
 * A request needs a BdrvChild on each side: each test wraps the node it
 * copies from or to in a raw node ("<name>-w") and uses that one's file
 * child. The files are filled and checked with plain POSIX I/O, apart from
 * blkd's read path.
 */
#include <errno.h>
#include <string.h>

#include "block-test-helpers.h"
#include "block/block_int.h"
#include "block/copy-before-write.h"

#define SIZE (4 << 20)
#define MiB (1 << 20)

static char *pattern(guint32 seed)
{
    GRand *rand = g_rand_new_with_seed(seed);
    char *buf = g_malloc(SIZE);
    int i;

    for (i = 0; i < SIZE; i++) {
        buf[i] = g_rand_int(rand);
    }
    g_rand_free(rand);
    return buf;
}

/* A scratch file holding data (NULL: zeroes, sparse); g_free the path. */
static char *scratch(const char *name, const char *data)
{
    char *path = block_test_file(name, SIZE);

    if (data) {
        g_assert_true(g_file_set_contents(path, data, SIZE, NULL));
    }
    return path;
}

static char *contents(const char *path)
{
    char *buf;
    gsize len;

    g_assert_true(g_file_get_contents(path, &buf, &len, NULL));
    g_assert_cmpuint(len, ==, SIZE);
    return buf;
}

static BlockDriverState *open_node(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

static BlockDriverState *open_node(const char *fmt, ...)
{
    g_autofree char *json = NULL;
    va_list ap;

    va_start(ap, fmt);
    json = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return block_test_open(json, &error_abort);
}

static BlockDriverState *open_file(const char *name, const char *path,
                                   const char *extra)
{
    return open_node("{\"driver\": \"file\", \"node-name\": \"%s\","
                     " \"filename\": \"%s\"%s}", name, path, extra);
}

/* A raw node over node: its file child is a BdrvChild on node. */
static BdrvChild *wrap(const char *node)
{
    BlockDriverState *w = open_node("{\"driver\": \"raw\", \"node-name\": \"%s-w\","
                                    " \"file\": \"%s\"}", node, node);

    return w->file;
}

static void del_wrapped(const char *node)
{
    g_autofree char *w = g_strdup_printf("%s-w", node);

    g_assert_true(bdrv_del_node(w, &error_abort));
    g_assert_true(bdrv_del_node(node, &error_abort));
}

static void test_copies_between_files_with_raw_offsets(void)
{
    g_autofree char *data = pattern(1);
    g_autofree char *src_path = scratch("src.img", data);
    g_autofree char *dst_path = scratch("dst.img", NULL);
    g_autofree char *after = NULL;
    g_autofree char *zeroes = g_malloc0(SIZE);
    BdrvChild *src, *dst;

    open_node("{\"driver\": \"raw\", \"node-name\": \"s\", \"offset\": 12288,"
              " \"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}", src_path);
    open_node("{\"driver\": \"raw\", \"node-name\": \"t\", \"offset\": 8192,"
              " \"size\": %d, \"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}",
              2 * MiB, dst_path);
    src = wrap("s");
    dst = wrap("t");

    g_assert_cmpint(bdrv_copy_range(src, 65536, dst, 131072, MiB), ==, 0);
    /* Each side shifted by its own offset; nothing else of the target written. */
    after = contents(dst_path);
    g_assert_cmpmem(after + 8192 + 131072, MiB, data + 12288 + 65536, MiB);
    g_assert_cmpmem(after, 8192 + 131072, zeroes, 8192 + 131072);
    g_assert_cmpmem(after + 8192 + 131072 + MiB, SIZE - (8192 + 131072 + MiB),
                    zeroes, SIZE - (8192 + 131072 + MiB));
    /* The raw window's size bounds the target side. */
    g_assert_cmpint(bdrv_copy_range(src, 0, dst, 2 * MiB - 65536, 2 * 65536), ==, -EIO);

    del_wrapped("s");
    del_wrapped("t");
}

/*
 * The source side passes through a copy-before-write filter as a read
 * (nothing copied to its target); the target side as a write: the old
 * data of the clusters written goes to that filter's target first.
 */
static void test_passes_through_copy_before_write_filters(void)
{
    g_autofree char *data = pattern(2), *old = pattern(3);
    g_autofree char *s_path = scratch("s.img", data), *t_path = scratch("t.img", old);
    g_autofree char *sv_path = scratch("sv.img", NULL);
    g_autofree char *tv_path = scratch("tv.img", NULL);
    g_autofree char *zeroes = g_malloc0(SIZE);
    g_autofree char *t = NULL, *tv = NULL, *sv = NULL;
    BlockDriverState *s_cbw, *t_cbw;
    BlockCopyState *bcs;
    BdrvChild *src, *dst;

    open_file("s", s_path, "");
    open_file("t", t_path, "");
    open_file("sv", sv_path, "");
    open_file("tv", tv_path, "");
    src = wrap("s");
    dst = wrap("t");
    s_cbw = bdrv_cbw_append(bdrv_find_node("s"), bdrv_find_node("sv"), "s-cbw",
                            &bcs, &error_abort);
    t_cbw = bdrv_cbw_append(bdrv_find_node("t"), bdrv_find_node("tv"), "t-cbw",
                            &bcs, &error_abort);
    g_assert_true(src->bs == s_cbw && dst->bs == t_cbw);

    /* 100 KiB at 100 KiB: the target's 64 KiB clusters 1 to 3 saved first. */
    g_assert_cmpint(bdrv_copy_range(src, 102400, dst, 102400, 102400), ==, 0);
    t = contents(t_path);
    tv = contents(tv_path);
    sv = contents(sv_path);
    g_assert_cmpmem(t + 102400, 102400, data + 102400, 102400);
    g_assert_cmpmem(tv + 65536, 3 * 65536, old + 65536, 3 * 65536);
    g_assert_cmpmem(tv, 65536, zeroes, 65536);
    g_assert_cmpmem(tv + 4 * 65536, SIZE - 4 * 65536, zeroes, SIZE - 4 * 65536);
    g_assert_cmpmem(sv, SIZE, zeroes, SIZE);

    bdrv_drop_filter(s_cbw);
    bdrv_drop_filter(t_cbw);
    del_wrapped("s");
    del_wrapped("t");
    g_assert_true(bdrv_del_node("sv", &error_abort));
    g_assert_true(bdrv_del_node("tv", &error_abort));
}

static void test_marks_the_target_bitmaps_as_a_write(void)
{
    g_autofree char *data = pattern(4);
    g_autofree char *src_path = scratch("src.img", data);
    g_autofree char *dst_path = scratch("dst.img", NULL);
    BdrvDirtyBitmap *on_src, *on_dst, *on_dst_file;
    BlockDriverState *t;
    BdrvChild *src, *dst;

    open_file("s", src_path, "");
    t = open_node("{\"driver\": \"raw\", \"node-name\": \"t\", \"offset\": 65536,"
                  " \"file\": {\"driver\": \"file\", \"node-name\": \"tf\","
                  " \"filename\": \"%s\"}}", dst_path);
    src = wrap("s");
    dst = wrap("t");
    on_src = bdrv_create_dirty_bitmap(src->bs, 65536, "b", &error_abort);
    on_dst = bdrv_create_dirty_bitmap(t, 65536, "b", &error_abort);
    on_dst_file = bdrv_create_dirty_bitmap(t->file->bs, 65536, "b", &error_abort);

    /* [100000, 300000): granules 1-4 of t, 2-5 of its file (64 KiB further). */
    g_assert_cmpint(bdrv_copy_range(src, 0, dst, 100000, 200000), ==, 0);
    g_assert_cmpint(bdrv_get_dirty_count(on_dst), ==, 4 * 65536);
    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(on_dst, 0, SIZE), ==, 65536);
    g_assert_cmpint(bdrv_get_dirty_count(on_dst_file), ==, 4 * 65536);
    g_assert_cmpint(bdrv_dirty_bitmap_next_dirty(on_dst_file, 0, SIZE), ==, 2 * 65536);
    /* A read of the source marks nothing. */
    g_assert_cmpint(bdrv_get_dirty_count(on_src), ==, 0);

    bdrv_release_dirty_bitmap(on_src);
    bdrv_release_dirty_bitmap(on_dst);
    bdrv_release_dirty_bitmap(on_dst_file);
    del_wrapped("s");
    del_wrapped("t");
}

/* Nodes that cannot offload say so before writing anything. */
static void test_unsupported_nodes_refuse_with_enotsup(void)
{
    g_autofree char *data = pattern(5);
    g_autofree char *src_path = scratch("src.img", data);
    g_autofree char *dst_path = scratch("dst.img", NULL);
    g_autofree char *zeroes = g_malloc0(SIZE), *after = NULL;
    BdrvChild *file_src, *file_dst, *debug_src, *debug_dst, *null_src, *null_dst;

    open_file("fs", src_path, "");
    open_file("fd", dst_path, "");
    open_node("{\"driver\": \"blkdebug\", \"node-name\": \"ds\", \"image\": \"fs\"}");
    open_node("{\"driver\": \"blkdebug\", \"node-name\": \"dd\", \"image\": \"fd\"}");
    open_node("{\"driver\": \"null-co\", \"node-name\": \"ns\", \"size\": %d}", SIZE);
    open_node("{\"driver\": \"null-co\", \"node-name\": \"nd\", \"size\": %d}", SIZE);
    file_src = wrap("fs");
    file_dst = wrap("fd");
    debug_src = wrap("ds");
    debug_dst = wrap("dd");
    null_src = wrap("ns");
    null_dst = wrap("nd");

    g_assert_cmpint(bdrv_copy_range(debug_src, 0, file_dst, 0, MiB), ==, -ENOTSUP);
    g_assert_cmpint(bdrv_copy_range(null_src, 0, file_dst, 0, MiB), ==, -ENOTSUP);
    g_assert_cmpint(bdrv_copy_range(file_src, 0, debug_dst, 0, MiB), ==, -ENOTSUP);
    g_assert_cmpint(bdrv_copy_range(file_src, 0, null_dst, 0, MiB), ==, -ENOTSUP);
    after = contents(dst_path);
    g_assert_cmpmem(after, SIZE, zeroes, SIZE);

    del_wrapped("nd");
    del_wrapped("ns");
    del_wrapped("dd");
    del_wrapped("ds");
    del_wrapped("fd");
    del_wrapped("fs");
}

/* A target that would need a read-modify-write, or is read-only, refuses. */
static void test_target_checks_of_a_write(void)
{
    g_autofree char *data = pattern(6);
    g_autofree char *src_path = scratch("src.img", data);
    g_autofree char *dst_path = scratch("dst.img", NULL);
    g_autofree char *ro_path = scratch("ro.img", NULL);
    BdrvChild *src, *direct, *ro;

    open_file("s", src_path, "");
    open_file("d", dst_path, ", \"cache\": {\"direct\": true}");
    open_file("r", ro_path, ", \"read-only\": true");
    src = wrap("s");
    direct = wrap("d");
    ro = wrap("r");

    g_assert_cmpint(bdrv_copy_range(src, 0, direct, 512, 4096), ==, -ENOTSUP);
    g_assert_cmpint(bdrv_copy_range(src, 512, direct, 0, 4096), ==, 0);
    g_assert_cmpint(bdrv_copy_range(src, 0, ro, 0, 4096), ==, -EPERM);
    g_assert_cmpint(bdrv_copy_range(src, SIZE - 4096, direct, 0, 8192), ==, -EIO);

    del_wrapped("r");
    del_wrapped("d");
    del_wrapped("s");
}

int main(int argc, char **argv)
{
    block_test_init(&argc, &argv);
    g_test_add_func("/copy-range/copies-between-files-with-raw-offsets",
                    test_copies_between_files_with_raw_offsets);
    g_test_add_func("/copy-range/passes-through-copy-before-write-filters",
                    test_passes_through_copy_before_write_filters);
    g_test_add_func("/copy-range/marks-the-target-bitmaps-as-a-write",
                    test_marks_the_target_bitmaps_as_a_write);
    g_test_add_func("/copy-range/unsupported-nodes-refuse-with-enotsup",
                    test_unsupported_nodes_refuse_with_enotsup);
    g_test_add_func("/copy-range/target-checks-of-a-write",
                    test_target_checks_of_a_write);
    return block_test_run();
}
