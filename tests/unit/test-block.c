/*
 * The block core, through its public API: the request path (alignment,
 * read-modify-write under concurrency, transfer limits, bounds, discard,
 * write-zeroes), permissions and QEMU's file locks, drained sections,
 * blkdebug, and block status.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block-test-helpers.h"

#define RW BLOCK_TEST_RW

static void test_null_reads_zeroes(void)
{
    BlockDriverState *bs = block_test_open("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"size\": 65536, \"read-zeroes\": true}",
                                     &error_abort);
    BlockBackend *blk = block_test_backend(bs, "test", RW, BLK_PERM_ALL);
    char buf[4096];

    memset(buf, 0xaa, sizeof(buf));
    g_assert_cmpint(blk_pread(blk, 4096, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(buf[0] | buf[4095], ==, 0);
    g_assert_cmpint(blk_getlength(blk), ==, 65536);
    blk_unref(blk);
    g_assert_true(bdrv_del_node("n", &error_abort));
}

static void test_out_of_bounds_is_eio(void)
{
    BlockDriverState *bs = block_test_open("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"size\": 4096}", &error_abort);
    BlockBackend *blk = block_test_backend(bs, "test", RW, BLK_PERM_ALL);
    char buf[512];

    g_assert_cmpint(blk_pread(blk, 4000, 512, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite(blk, -1, 1, buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 4096, 1, 0), ==, -EIO);
    g_assert_cmpint(blk_pread(blk, 4096, 0, buf, 0), ==, 0);
    blk_unref(blk);
    bdrv_del_node("n", &error_abort);
}

static void test_file_write_read_back(void)
{
    g_autofree char *path = block_test_file("rw.img", 1 << 20);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"file\", \"node-name\": \"f\", \"filename\": \"%s\"}", path);
    BlockDriverState *bs = block_test_open(json, &error_abort);
    BlockBackend *blk = block_test_backend(bs, "test", RW, 0);
    char out[10000], in[10000];
    size_t i;

    for (i = 0; i < sizeof(out); i++) {
        out[i] = i * 7;
    }
    g_assert_cmpint(blk_pwrite(blk, 12345, sizeof(out), out, BDRV_REQ_FUA), ==, 0);
    g_assert_cmpint(blk_pread(blk, 12345, sizeof(in), in, 0), ==, 0);
    g_assert_cmpmem(in, sizeof(in), out, sizeof(out));
    g_assert_cmpint(blk_flush(blk), ==, 0);
    blk_unref(blk);
    bdrv_del_node("f", &error_abort);
}

typedef struct RmwWorker {
    BlockBackend *blk;
    int index;
} RmwWorker;

/* Each worker writes its own bytes, all inside the same 4 KiB blocks. */
static gpointer rmw_worker(gpointer opaque)
{
    RmwWorker *w = opaque;
    int round;

    for (round = 0; round < 50; round++) {
        char byte = (char)(w->index + 1);
        int64_t off = (int64_t)(round % 4) * 4096 + w->index * 100;

        g_assert_cmpint(blk_pwrite(w->blk, off, 100 - 1, (char[100]){ [0 ... 98] = byte }, 0),
                        ==, 0);
        (void)byte;
    }
    return NULL;
}

static void test_unaligned_writes_serialise(void)
{
    g_autofree char *path = block_test_file("align.img", 1 << 20);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"blkdebug\", \"node-name\": \"d\", \"align\": 4096,"
        " \"image\": {\"driver\": \"file\", \"filename\": \"%s\"}}", path);
    BlockDriverState *bs = block_test_open(json, &error_abort);
    BlockBackend *blk = block_test_backend(bs, "test", RW, 0);
    RmwWorker w[8];
    GThread *t[8];
    char buf[4 * 4096];
    int i, round;

    for (i = 0; i < 8; i++) {
        w[i] = (RmwWorker) { blk, i };
        t[i] = g_thread_new("rmw", rmw_worker, &w[i]);
    }
    for (i = 0; i < 8; i++) {
        g_thread_join(t[i]);
    }
    /* No worker's bytes were lost to another's read-modify-write. */
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    for (round = 0; round < 4; round++) {
        for (i = 0; i < 8; i++) {
            char *p = buf + round * 4096 + i * 100;
            int j;

            for (j = 0; j < 99; j++) {
                g_assert_cmpint(p[j], ==, i + 1);
            }
        }
    }
    blk_unref(blk);
    bdrv_del_node("d", &error_abort);
}

typedef struct OverlapWriter {
    BlockBackend *blk;
    bool aligned;
} OverlapWriter;

static gpointer overlap_writer(gpointer opaque)
{
    OverlapWriter *w = opaque;
    char *block = g_malloc(4096);
    int i;

    /* The aligned writer writes the whole block, the other its first 100 bytes. */
    memset(block, w->aligned ? 0x22 : 0x11, 4096);
    for (i = 0; i < 300; i++) {
        g_assert_cmpint(blk_pwrite(w->blk, 0, w->aligned ? 4096 : 100, block, 0),
                        ==, 0);
    }
    g_free(block);
    return NULL;
}

static void test_aligned_write_not_undone_by_rmw(void)
{
    g_autofree char *path = block_test_file("overlap.img", 1 << 20);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"blkdebug\", \"node-name\": \"d\", \"align\": 4096,"
        " \"image\": {\"driver\": \"file\", \"filename\": \"%s\"}}", path);
    BlockDriverState *bs = block_test_open(json, &error_abort);
    BlockBackend *blk = block_test_backend(bs, "test", RW, 0);
    OverlapWriter a = { blk, true }, b = { blk, false };
    GThread *ta = g_thread_new("aligned", overlap_writer, &a);
    GThread *tb = g_thread_new("rmw", overlap_writer, &b);
    char buf[4096];
    int i;

    g_thread_join(ta);
    g_thread_join(tb);
    /* Only the aligned writer ever wrote bytes 100..4095. */
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    for (i = 100; i < 4096; i++) {
        g_assert_cmpint(buf[i], ==, 0x22);
    }
    blk_unref(blk);
    bdrv_del_node("d", &error_abort);
}

static void test_max_transfer_splits(void)
{
    g_autofree char *path = block_test_file("split.img", 1 << 20);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"blkdebug\", \"node-name\": \"d\", \"max-transfer\": 4096,"
        " \"image\": {\"driver\": \"file\", \"filename\": \"%s\"}}", path);
    BlockDriverState *bs = block_test_open(json, &error_abort);
    BlockBackend *blk = block_test_backend(bs, "test", RW, 0);
    g_autofree char *out = g_malloc(100000), *in = g_malloc(100000);
    int i;

    for (i = 0; i < 100000; i++) {
        out[i] = i % 251;
    }
    g_assert_cmpint(blk_pwrite(blk, 3, 100000, out, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 3, 100000, in, 0), ==, 0);
    g_assert_cmpmem(in, 100000, out, 100000);
    blk_unref(blk);
    bdrv_del_node("d", &error_abort);
}

static void test_odirect_bounces_misaligned_buffers(void)
{
    g_autofree char *path = block_test_file("direct.img", 1 << 20);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"file\", \"node-name\": \"f\", \"filename\": \"%s\","
        " \"cache\": {\"direct\": true}, \"aio\": \"native\"}", path);
    g_autoptr(Error) err = NULL;
    BlockDriverState *bs = block_test_open(json, &err);
    BlockBackend *blk;
    char *out = g_malloc(9000), *in = g_malloc(9000);
    int i;

    if (!bs) {
        g_test_skip(error_get_pretty(err));
        g_free(out);
        g_free(in);
        return;
    }
    blk = block_test_backend(bs, "test", RW, 0);
    for (i = 0; i < 9000; i++) {
        out[i] = i % 13;
    }
    /* Odd offset and length, heap buffer not 4 KiB aligned. */
    g_assert_cmpint(blk_pwrite(blk, 777, 9000, out + 0, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 777, 9000, in, 0), ==, 0);
    g_assert_cmpmem(in, 9000, out, 9000);
    blk_unref(blk);
    bdrv_del_node("f", &error_abort);
    g_free(out);
    g_free(in);
}

static void test_aio_native_needs_direct(void)
{
    g_autofree char *path = block_test_file("native.img", 4096);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"file\", \"filename\": \"%s\", \"aio\": \"native\"}", path);
    g_autoptr(Error) err = NULL;

    g_assert_null(block_test_open(json, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "aio=native was specified, but it "
                    "requires cache.direct=on, which was not specified.");
}

static void test_discard_policy(void)
{
    g_autofree char *path = block_test_file("discard.img", 1 << 20);
    g_autofree char *ignore = g_strdup_printf(
        "{\"driver\": \"file\", \"node-name\": \"f\", \"filename\": \"%s\"}", path);
    g_autofree char *unmap = g_strdup_printf(
        "{\"driver\": \"file\", \"node-name\": \"f\", \"filename\": \"%s\","
        " \"discard\": \"unmap\"}", path);
    BlockDriverState *bs = block_test_open(ignore, &error_abort);
    BlockBackend *blk = block_test_backend(bs, "test", RW, 0);
    char buf[65536];
    int64_t pnum;
    int ret;

    memset(buf, 1, sizeof(buf));
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_pdiscard(blk, 0, sizeof(buf)), ==, 0);
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(buf[100], ==, 1);   /* discard=ignore kept the data */
    blk_unref(blk);
    bdrv_del_node("f", &error_abort);

    bs = block_test_open(unmap, &error_abort);
    blk = block_test_backend(bs, "test", RW, 0);
    g_assert_cmpint(blk_pdiscard(blk, 0, sizeof(buf)), ==, 0);
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(buf[100], ==, 0);
    ret = blk_block_status(blk, true, 0, sizeof(buf), &pnum, NULL);
    g_assert_cmpint(ret & (BDRV_BLOCK_ZERO | BDRV_BLOCK_DATA), ==, BDRV_BLOCK_ZERO);
    g_assert_cmpint(pnum, >=, (int64_t)sizeof(buf));
    blk_unref(blk);
    bdrv_del_node("f", &error_abort);
}

static void test_write_zeroes_unaligned_and_no_fallback(void)
{
    g_autofree char *path = block_test_file("zero.img", 1 << 20);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"blkdebug\", \"node-name\": \"d\", \"align\": 4096,"
        " \"image\": {\"driver\": \"file\", \"filename\": \"%s\"}}", path);
    BlockDriverState *bs = block_test_open(json, &error_abort);
    BlockBackend *blk = block_test_backend(bs, "test", RW, 0);
    char buf[3 * 4096];
    int i;

    memset(buf, 0xff, sizeof(buf));
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 100, 3 * 4096 - 200,
                                      BDRV_REQ_NO_FALLBACK), ==, -ENOTSUP);
    g_assert_cmpint(blk_pwrite_zeroes(blk, 100, 3 * 4096 - 200, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    for (i = 0; i < (int)sizeof(buf); i++) {
        g_assert_cmpint((unsigned char)buf[i], ==,
                        i < 100 || i >= 3 * 4096 - 100 ? 0xff : 0);
    }
    blk_unref(blk);
    bdrv_del_node("d", &error_abort);
}

static void test_blkdebug_injects_once(void)
{
    g_autofree char *path = block_test_file("inject.img", 1 << 20);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"blkdebug\", \"node-name\": \"d\", \"inject-error\":"
        " [{\"event\": \"read_aio\", \"errno\": 28, \"sector\": 7, \"once\": true}],"
        " \"image\": {\"driver\": \"file\", \"filename\": \"%s\"}}", path);
    BlockDriverState *bs = block_test_open(json, &error_abort);
    BlockBackend *blk = block_test_backend(bs, "test", RW, 0);
    char buf[4096];

    g_assert_cmpint(blk_pread(blk, 0, 512, buf, 0), ==, 0);         /* sector 0 */
    g_assert_cmpint(blk_pread(blk, 0, 4096, buf, 0), ==, -ENOSPC);  /* covers 7 */
    g_assert_cmpint(blk_pread(blk, 0, 4096, buf, 0), ==, 0);        /* spent */
    blk_unref(blk);
    bdrv_del_node("d", &error_abort);
}

static void test_permission_conflict_names_user(void)
{
    BlockDriverState *bs = block_test_open("{\"driver\": \"null-co\", \"node-name\": \"n\"}",
                                     &error_abort);
    BlockBackend *a = block_test_backend(bs, "block export 'e0'", RW, BLK_PERM_CONSISTENT_READ);
    BlockBackend *b = blk_new("job 'j0'", RW, BLK_PERM_ALL);
    g_autoptr(Error) err = NULL;

    g_assert_false(blk_insert_bs(b, bs, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Permission conflict on node 'n': permissions 'write' are both "
                    "required by job 'j0' (uses node 'n' as 'root' child) and "
                    "unshared by block export 'e0' (uses node 'n' as 'root' child).");
    g_clear_pointer(&err, error_free);
    g_assert_false(bdrv_del_node("n", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Node 'n' is in use by block export 'e0'");
    g_clear_pointer(&err, error_free);
    g_assert_false(bdrv_truncate(bs, 8192, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "unshared by block export 'e0'"));
    blk_unref(b);
    blk_unref(a);
    bdrv_del_node("n", &error_abort);
}

/* A node another user holds a reference to (an export of its bitmap). */
static void test_referenced_node_not_deleted(void)
{
    BlockDriverState *bs = block_test_open("{\"driver\": \"null-co\", \"node-name\": \"n\"}",
                                           &error_abort);
    g_autoptr(Error) err = NULL;

    bdrv_ref(bs);
    g_assert_false(bdrv_del_node("n", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Block device n is in use");
    bdrv_unref(bs);
    g_assert_true(bdrv_del_node("n", &error_abort));
    g_assert_null(bdrv_find_node("n"));
}

static void test_read_only_node_refuses_writers(void)
{
    BlockDriverState *bs = block_test_open("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"read-only\": true}", &error_abort);
    BlockBackend *blk = blk_new("block export 'e0'", RW, BLK_PERM_ALL);
    g_autoptr(Error) err = NULL;

    g_assert_false(blk_insert_bs(blk, bs, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Block node is read-only");
    blk_unref(blk);
    bdrv_del_node("n", &error_abort);
}

static void test_file_locks_like_qemu(void)
{
    g_autofree char *path = block_test_file("locked.img", 65536);
    g_autofree char *json1 = g_strdup_printf(
        "{\"driver\": \"file\", \"node-name\": \"a\", \"filename\": \"%s\"}", path);
    g_autofree char *json2 = g_strdup_printf(
        "{\"driver\": \"file\", \"node-name\": \"b\", \"filename\": \"%s\"}", path);
    g_autofree char *cmd_rw = g_strdup_printf("qemu-io -f raw -c 'write 0 512' %s", path);
    BlockDriverState *a = block_test_open(json1, &error_abort);
    BlockDriverState *b = block_test_open(json2, &error_abort);
    BlockBackend *wa = block_test_backend(a, "block export 'e0'", RW, BLK_PERM_CONSISTENT_READ);
    BlockBackend *wb = blk_new("block export 'e1'", RW, BLK_PERM_CONSISTENT_READ);
    g_autoptr(Error) err = NULL;
    g_autofree char *out = NULL, *errout = NULL, *qemu_io = NULL;
    int status;

    /* Another open file description, even in this process, is refused. */
    g_assert_false(blk_insert_bs(wb, b, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "Failed to get \"write\" lock"));
    /* And so is QEMU: its qemu-io cannot write the image we write. */
    qemu_io = g_find_program_in_path("qemu-io");
    if (qemu_io) {
        g_assert_true(g_spawn_command_line_sync(cmd_rw, &out, &errout, &status, NULL));
        g_assert_false(g_spawn_check_wait_status(status, NULL));
        g_assert_nonnull(strstr(errout, "Failed to get \"write\" lock"));
    }
    blk_unref(wb);
    blk_unref(wa);
    bdrv_del_node("a", &error_abort);
    bdrv_del_node("b", &error_abort);
}

typedef struct DrainWorker {
    BlockBackend *blk;
    gint stop;
    gint completed;
} DrainWorker;

static gpointer drain_worker(gpointer opaque)
{
    DrainWorker *w = opaque;
    char buf[512];

    while (!g_atomic_int_get(&w->stop)) {
        g_assert_cmpint(blk_pread(w->blk, 0, sizeof(buf), buf, 0), ==, 0);
        g_atomic_int_inc(&w->completed);
    }
    return NULL;
}

static void test_drain_holds_new_requests(void)
{
    BlockDriverState *bs = block_test_open("{\"driver\": \"null-co\", \"node-name\": \"n\","
                                     " \"latency-ns\": 100000}", &error_abort);
    DrainWorker w = { block_test_backend(bs, "test", RW, BLK_PERM_ALL), 0, 0 };
    GThread *threads[4];
    int i, before;

    for (i = 0; i < 4; i++) {
        threads[i] = g_thread_new("drain", drain_worker, &w);
    }
    g_usleep(20000);
    bdrv_drain_all_begin();
    before = g_atomic_int_get(&w.completed);
    g_usleep(50000);
    /*
     * While drained no request enters: a worker may only still count the
     * one it finished before the section began (one per thread), where
     * 50 ms undrained would see hundreds.
     */
    g_assert_cmpint(g_atomic_int_get(&w.completed) - before, <=, 4);
    before = g_atomic_int_get(&w.completed);
    bdrv_drain_all_end();
    /* Requests resume: wait for one, however loaded the machine is. */
    for (i = 0; i < 500 && g_atomic_int_get(&w.completed) == before; i++) {
        g_usleep(10000);
    }
    g_assert_cmpint(g_atomic_int_get(&w.completed), >, before);
    g_atomic_int_set(&w.stop, 1);
    for (i = 0; i < 4; i++) {
        g_thread_join(threads[i]);
    }
    blk_unref(w.blk);
    bdrv_del_node("n", &error_abort);
}

static void test_block_status_of_sparse_raw(void)
{
    g_autofree char *path = block_test_file("sparse.img", 1 << 20);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"raw\", \"node-name\": \"r\", \"offset\": 65536,"
        " \"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}", path);
    BlockDriverState *bs = block_test_open(json, &error_abort);
    BlockBackend *blk = block_test_backend(bs, "test", RW, 0);
    char buf[65536];
    int64_t pnum;
    int ret;

    memset(buf, 3, sizeof(buf));
    g_assert_cmpint(blk_getlength(blk), ==, (1 << 20) - 65536);
    g_assert_cmpint(blk_pwrite(blk, 65536, sizeof(buf), buf, 0), ==, 0);
    ret = blk_block_status(blk, true, 0, 1 << 20, &pnum, NULL);
    g_assert_cmpint(ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO), ==, BDRV_BLOCK_ZERO);
    g_assert_cmpint(pnum, ==, 65536);
    ret = blk_block_status(blk, true, 65536, 1 << 20, &pnum, NULL);
    g_assert_cmpint(ret & BDRV_BLOCK_DATA, ==, BDRV_BLOCK_DATA);
    g_assert_cmpint(pnum, ==, 65536);
    blk_unref(blk);
    bdrv_del_node("r", &error_abort);
}

static void test_inline_child_inherits_read_only(void)
{
    g_autofree char *path = block_test_file("ro.img", 65536);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"raw\", \"node-name\": \"r\", \"read-only\": true,"
        " \"file\": {\"driver\": \"file\", \"node-name\": \"f\", \"filename\": \"%s\"}}",
        path);
    BlockDriverState *bs = block_test_open(json, &error_abort);

    g_assert_true(bdrv_is_read_only(bdrv_file_bs(bs)));
    /* An implicitly created node is not the monitor's to delete. */
    {
        g_autoptr(Error) err = NULL;

        g_assert_false(bdrv_del_node("f", &err));
        g_assert_cmpstr(error_get_pretty(err), ==, "Node f is not owned by the monitor");
    }
    bdrv_del_node("r", &error_abort);
    g_assert_null(bdrv_find_node("f"));
}

int main(int argc, char **argv)
{
    block_test_init(&argc, &argv);
    g_test_add_func("/block/null/reads-zeroes", test_null_reads_zeroes);
    g_test_add_func("/block/io/out-of-bounds-is-eio", test_out_of_bounds_is_eio);
    g_test_add_func("/block/io/file-write-read-back", test_file_write_read_back);
    g_test_add_func("/block/io/unaligned-writes-serialise", test_unaligned_writes_serialise);
    g_test_add_func("/block/io/aligned-write-not-undone-by-rmw",
                    test_aligned_write_not_undone_by_rmw);
    g_test_add_func("/block/io/max-transfer-splits", test_max_transfer_splits);
    g_test_add_func("/block/io/odirect-bounces-misaligned-buffers",
                    test_odirect_bounces_misaligned_buffers);
    g_test_add_func("/block/file/aio-native-needs-direct", test_aio_native_needs_direct);
    g_test_add_func("/block/io/discard-policy", test_discard_policy);
    g_test_add_func("/block/io/write-zeroes-unaligned-and-no-fallback",
                    test_write_zeroes_unaligned_and_no_fallback);
    g_test_add_func("/block/blkdebug/injects-once", test_blkdebug_injects_once);
    g_test_add_func("/block/perm/conflict-names-user", test_permission_conflict_names_user);
    g_test_add_func("/block/graph/referenced-node-not-deleted",
                    test_referenced_node_not_deleted);
    g_test_add_func("/block/perm/read-only-node-refuses-writers",
                    test_read_only_node_refuses_writers);
    g_test_add_func("/block/file/locks-like-qemu", test_file_locks_like_qemu);
    g_test_add_func("/block/drain/holds-new-requests", test_drain_holds_new_requests);
    g_test_add_func("/block/status/sparse-raw", test_block_status_of_sparse_raw);
    g_test_add_func("/block/graph/inline-child-inherits-read-only",
                    test_inline_child_inherits_read_only);
    return block_test_run();
}
