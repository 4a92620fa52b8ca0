/*
 * Fleecing: a copy-before-write node added as blockdev-add adds it, and a
 * snapshot-access node over it. Reads of the snapshot come from the
 * target where guest writes copied the old data and from the source
 * elsewhere; a guest write into what a snapshot read is reading from the
 * source waits for that read; the access bitmap, discards, a broken
 * snapshot and cbw-timeout.
 */
#include <errno.h>
#include <string.h>

#include "block-test-helpers.h"
#include "block/block_int.h"
#include "block/copy-before-write.h"
#include "block/dirty-bitmap.h"

#define SIZE (4 << 20)
#define CLUSTER 65536

/* The graph each test starts from, and its users. */
typedef struct Fleece {
    BlockDriverState *src;      /* the file fleece_open() made, or NULL */
    BlockDriverState *tgt, *cbw, *acc;
    BlockBackend *guest;        /* on cbw */
    BlockBackend *reader;       /* on acc */
    char *old;                  /* the source's data when cbw went in */
} Fleece;

static BlockDriverState *file_node(const char *name, const char *extra)
{
    g_autofree char *fname = g_strdup_printf("%s.img", name);
    g_autofree char *path = block_test_file(fname, SIZE);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"file\", \"node-name\": \"%s\", \"filename\": \"%s\"%s}",
        name, path, extra);

    return block_test_open(json, &error_abort);
}

/*
 * The source "src" (random data, through the node src_top if it is not
 * NULL), the target "tgt" from tgt_json (NULL: a file), "cbw" with
 * cbw_extra options and "acc" over it.
 */
static void fleece_open(Fleece *f, BlockDriverState *src_top,
                        const char *tgt_json, const char *cbw_extra)
{
    g_autofree char *cbw_json = NULL;
    BlockBackend *fill;
    GRand *rand = g_rand_new_with_seed(42);
    int i;

    if (!src_top) {
        f->src = file_node("src", "");
    }
    f->tgt = tgt_json ? block_test_open(tgt_json, &error_abort)
                      : file_node("tgt", "");
    f->old = g_malloc(SIZE);
    for (i = 0; i < SIZE; i++) {
        f->old[i] = g_rand_int(rand);
    }
    g_rand_free(rand);
    fill = block_test_backend(src_top ? src_top : f->src, "fill", BLOCK_TEST_RW,
                              BLK_PERM_ALL);
    g_assert_cmpint(blk_pwrite(fill, 0, SIZE, f->old, 0), ==, 0);
    blk_unref(fill);

    cbw_json = g_strdup_printf("{\"driver\": \"copy-before-write\", \"node-name\":"
                               " \"cbw\", \"file\": \"%s\", \"target\": \"tgt\"%s}",
                               src_top ? bdrv_get_node_name(src_top) : "src",
                               cbw_extra);
    f->cbw = block_test_open(cbw_json, &error_abort);
    f->acc = block_test_open("{\"driver\": \"snapshot-access\", \"node-name\":"
                             " \"acc\", \"file\": \"cbw\", \"discard\": \"unmap\"}",
                             &error_abort);
    f->guest = block_test_backend(f->cbw, "guest", BLOCK_TEST_RW, BLK_PERM_ALL);
    f->reader = block_test_backend(f->acc, "reader", BLOCK_TEST_RW, BLK_PERM_ALL);
}

static void fleece_close(Fleece *f)
{
    blk_unref(f->reader);
    blk_unref(f->guest);
    g_assert_true(bdrv_del_node("acc", &error_abort));
    g_assert_true(bdrv_del_node("cbw", &error_abort));
    g_assert_true(bdrv_del_node("tgt", &error_abort));
    if (f->src) {
        g_assert_true(bdrv_del_node("src", &error_abort));
    }
    g_free(f->old);
}

/* What is left to copy: the unnamed bitmap cbw put on its source, the newest. */
static BdrvDirtyBitmap *copy_bitmap(BlockDriverState *source)
{
    return bdrv_dirty_bitmap_next(source, NULL);
}

static void guest_write(Fleece *f, int64_t offset, int64_t bytes, char byte)
{
    g_autofree char *buf = g_malloc(bytes);

    memset(buf, byte, bytes);
    g_assert_cmpint(blk_pwrite(f->guest, offset, bytes, buf, 0), ==, 0);
}

/* The snapshot's [offset, offset+bytes) is the source's old data. */
static void assert_snapshot_old(Fleece *f, int64_t offset, int64_t bytes)
{
    g_autofree char *buf = g_malloc(bytes);

    g_assert_cmpint(blk_pread(f->reader, offset, bytes, buf, 0), ==, 0);
    g_assert_cmpmem(buf, bytes, f->old + offset, bytes);
}

/* Which node the snapshot's block status at offset comes from, and how far. */
static BlockDriverState *status_from(Fleece *f, int64_t offset, int64_t *pnum)
{
    BlockDriverState *file = NULL;
    int64_t map;
    int ret = bdrv_cbw_snapshot_block_status(f->cbw, true, offset, SIZE - offset,
                                             pnum, &map, &file);

    g_assert_cmpint(ret, >=, 0);
    g_assert_true(ret & BDRV_BLOCK_DATA);
    return file;
}

static void test_reads_come_from_target_where_guest_wrote(void)
{
    Fleece f = { 0 };
    g_autofree char *buf = g_malloc(CLUSTER);
    BlockBackend *tgt_writer;
    int64_t pnum;

    fleece_open(&f, NULL, NULL, "");
    guest_write(&f, CLUSTER + 100, 3 * CLUSTER, 0x5a);
    assert_snapshot_old(&f, 0, SIZE);

    /* The four clusters written: from the target, the rest from the source. */
    g_assert_true(status_from(&f, 0, &pnum) == f.src);
    g_assert_cmpint(pnum, ==, CLUSTER);
    g_assert_true(status_from(&f, CLUSTER, &pnum) == f.tgt);
    g_assert_cmpint(pnum, ==, 4 * CLUSTER);
    g_assert_true(status_from(&f, 5 * CLUSTER, &pnum) == f.src);
    g_assert_cmpint(pnum, ==, SIZE - 5 * CLUSTER);

    /* Data put into the target there shows through; not elsewhere. */
    tgt_writer = block_test_backend(f.tgt, "other", BLOCK_TEST_RW, BLK_PERM_ALL);
    memset(buf, 0xee, CLUSTER);
    g_assert_cmpint(blk_pwrite(tgt_writer, 2 * CLUSTER, CLUSTER, buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(tgt_writer, 6 * CLUSTER, CLUSTER, buf, 0), ==, 0);
    g_assert_cmpint(blk_pread(f.reader, 2 * CLUSTER, CLUSTER, buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, (char)0xee);
    g_assert_cmpint(buf[CLUSTER - 1], ==, (char)0xee);
    assert_snapshot_old(&f, 6 * CLUSTER, CLUSTER);
    blk_unref(tgt_writer);

    /* The guest sees its writes; the snapshot refuses them. */
    g_assert_cmpint(blk_pread(f.guest, CLUSTER + 100, CLUSTER, buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, 0x5a);
    g_assert_cmpint(blk_pwrite(f.reader, 0, CLUSTER, buf, 0), ==, -ENOTSUP);
    g_assert_cmpint(blk_pwrite_zeroes(f.reader, 0, CLUSTER, 0), ==, -ENOTSUP);
    fleece_close(&f);
}

static void test_outside_access_bitmap_is_eacces(void)
{
    BlockDriverState *src = file_node("src", "");
    BdrvDirtyBitmap *bm = bdrv_create_dirty_bitmap(src, CLUSTER, "b0", &error_abort);
    Fleece f = { 0 };
    g_autofree char *buf = g_malloc(2 * CLUSTER);
    BlockDriverState *file;
    int64_t pnum, map;

    bdrv_disable_dirty_bitmap(bm);
    bdrv_set_dirty_bitmap(bm, 0, 8 * CLUSTER);
    fleece_open(&f, src, NULL, ", \"bitmap\": {\"node\": \"src\", \"name\": \"b0\"}");
    guest_write(&f, 0, 16 * CLUSTER, 0x11);
    assert_snapshot_old(&f, 0, 8 * CLUSTER);
    g_assert_cmpint(blk_pread(f.reader, 8 * CLUSTER, 512, buf, 0), ==, -EACCES);
    /* One byte outside is enough. */
    g_assert_cmpint(blk_pread(f.reader, 7 * CLUSTER, 2 * CLUSTER, buf, 0), ==,
                    -EACCES);
    g_assert_cmpint(bdrv_cbw_snapshot_block_status(f.cbw, true, 9 * CLUSTER,
                                                   CLUSTER, &pnum, &map, &file),
                    ==, -EACCES);
    /* Only the bitmap's clusters were copied. */
    g_assert_cmpint(bdrv_get_dirty_count(copy_bitmap(src)), ==, 0);
    fleece_close(&f);
    g_assert_true(bdrv_del_node("src", &error_abort));
}

static void test_discard_leaves_whole_clusters(void)
{
    Fleece f = { 0 };
    BdrvDirtyBitmap *copy;
    char buf[512];

    fleece_open(&f, NULL, NULL, "");
    copy = copy_bitmap(f.src);
    /* Unaligned: the whole clusters in it, [64K, 192K). */
    g_assert_cmpint(blk_pdiscard(f.reader, CLUSTER - 100, 2 * CLUSTER + 200), ==, 0);
    g_assert_cmpint(blk_pread(f.reader, CLUSTER, sizeof(buf), buf, 0), ==, -EACCES);
    g_assert_cmpint(blk_pread(f.reader, 3 * CLUSTER - 1, 1, buf, 0), ==, -EACCES);
    assert_snapshot_old(&f, 0, CLUSTER);
    assert_snapshot_old(&f, 3 * CLUSTER, CLUSTER);
    /* Nothing to copy there any more. */
    g_assert_cmpint(bdrv_get_dirty_count(copy), ==, SIZE - 2 * CLUSTER);
    guest_write(&f, CLUSTER, 2 * CLUSTER, 0x22);
    g_assert_cmpint(bdrv_get_dirty_count(copy), ==, SIZE - 2 * CLUSTER);
    /* Less than a cluster: nothing. */
    g_assert_cmpint(blk_pdiscard(f.reader, 5 * CLUSTER + 1, CLUSTER), ==, 0);
    assert_snapshot_old(&f, 5 * CLUSTER, 2 * CLUSTER);
    fleece_close(&f);
}

static void test_broken_snapshot_fails_reads(void)
{
    g_autofree char *tgt_json = block_test_blkdebug_json(
        "tgt", SIZE, "[{\"event\": \"write_aio\", \"errno\": 5}]");
    Fleece f = { 0 };
    BlockDriverState *file;
    int64_t pnum, map;
    char buf[512];

    fleece_open(&f, NULL, tgt_json, ", \"on-cbw-error\": \"break-snapshot\"");
    assert_snapshot_old(&f, 0, SIZE);
    /* The copy fails: the write goes ahead, the snapshot is gone. */
    guest_write(&f, 0, 512, 0x33);
    g_assert_cmpint(bdrv_cbw_snapshot_error(f.cbw), ==, -EIO);
    g_assert_cmpint(blk_pread(f.guest, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, 0x33);
    g_assert_cmpint(blk_pread(f.reader, SIZE / 2, sizeof(buf), buf, 0), ==, -EACCES);
    g_assert_cmpint(bdrv_cbw_snapshot_block_status(f.cbw, true, SIZE / 2, 512,
                                                   &pnum, &map, &file),
                    ==, -EACCES);
    /* Later writes copy nothing. */
    guest_write(&f, SIZE / 2, 512, 0x34);
    fleece_close(&f);
}

static void test_not_over_cbw_is_enotsup(void)
{
    BlockDriverState *src = file_node("src", "");
    BlockDriverState *acc = block_test_open("{\"driver\": \"snapshot-access\","
                                            " \"node-name\": \"acc\", \"file\": \"src\"}",
                                            &error_abort);
    BlockBackend *blk = block_test_backend(acc, "reader", BLK_PERM_CONSISTENT_READ,
                                           BLK_PERM_ALL);
    char buf[512];

    /* QEMU checks nothing at open: the requests fail. */
    g_assert_cmpint(blk_getlength(blk), ==, bdrv_getlength(src));
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, -ENOTSUP);
    blk_unref(blk);
    g_assert_true(bdrv_del_node("acc", &error_abort));
    g_assert_true(bdrv_del_node("src", &error_abort));
}

typedef struct Job {
    Fleece *f;
    char *buf;
    gint done;
} Job;

static gpointer snapshot_read(gpointer opaque)
{
    Job *j = opaque;

    g_assert_cmpint(blk_pread(j->f->reader, 0, CLUSTER, j->buf, 0), ==, 0);
    g_atomic_int_set(&j->done, 1);
    return NULL;
}

static gpointer write_over(gpointer opaque)
{
    Job *j = opaque;

    guest_write(j->f, 0, 4096, 0x44);
    g_atomic_int_set(&j->done, 1);
    return NULL;
}

static void test_guest_write_waits_for_source_read(void)
{
    BlockDriverState *src = file_node("src", "");
    BlockDriverState *gate = block_test_gate_new("gate", src);
    BlockBackend *src_reader = block_test_backend(src, "src-reader",
                                                  BLK_PERM_CONSISTENT_READ,
                                                  BLK_PERM_ALL);
    BdrvDirtyBitmap *done;
    Fleece f = { 0 };
    Job reader = { &f, g_malloc(CLUSTER) }, writer = { &f };
    GThread *rt, *wt;
    char now[1];

    fleece_open(&f, gate, NULL, "");
    done = bdrv_dirty_bitmap_next(f.cbw, bdrv_dirty_bitmap_next(f.cbw, NULL));
    block_test_gate_hold();
    rt = g_thread_new("reader", snapshot_read, &reader);
    block_test_gate_wait();

    /* The write copies and marks its cluster done, then waits for the read. */
    wt = g_thread_new("writer", write_over, &writer);
    while (!bdrv_get_dirty_count(done)) {
        g_usleep(1000);
    }
    g_usleep(100 * 1000);
    g_assert_false(g_atomic_int_get(&writer.done));
    g_assert_cmpint(blk_pread(src_reader, 0, 1, now, 0), ==, 0);
    g_assert_cmpint(now[0], ==, f.old[0]);
    block_test_gate_release();
    g_thread_join(rt);
    g_thread_join(wt);
    /* The read saw the old data; the write went through after it. */
    g_assert_cmpmem(reader.buf, CLUSTER, f.old, CLUSTER);
    g_assert_cmpint(blk_pread(f.guest, 0, 1, now, 0), ==, 0);
    g_assert_cmpint(now[0], ==, 0x44);
    /* Reads from now on come from the target. */
    assert_snapshot_old(&f, 0, CLUSTER);
    g_free(reader.buf);
    fleece_close(&f);
    bdrv_unref(gate);
    blk_unref(src_reader);
    g_assert_true(bdrv_del_node("src", &error_abort));
}

/* A target that takes 2 s a write, and a copy allowed 1 s. */
static void timed_out(const char *on_error, Fleece *f, gint64 *elapsed)
{
    g_autofree char *extra = g_strdup_printf(", \"cbw-timeout\": 1,"
                                             " \"on-cbw-error\": \"%s\"", on_error);
    char buf[512];
    gint64 start;
    int ret;

    fleece_open(f, NULL, "{\"driver\": \"null-co\", \"node-name\": \"tgt\","
                " \"size\": 4194304, \"latency-ns\": 2000000000}", extra);
    memset(buf, 0x55, sizeof(buf));
    start = g_get_monotonic_time();
    ret = blk_pwrite(f->guest, 0, sizeof(buf), buf, 0);
    *elapsed = g_get_monotonic_time() - start;
    g_assert_cmpint(ret, ==, strcmp(on_error, "break-guest-write") ? 0 : -ETIMEDOUT);
    g_assert_cmpint(*elapsed, >=, G_USEC_PER_SEC);
    g_assert_cmpint(*elapsed, <, 2 * G_USEC_PER_SEC);
}

static void test_timeout_fails_guest_write(void)
{
    Fleece f = { 0 };
    gint64 elapsed, start;
    char buf[512];

    timed_out("break-guest-write", &f, &elapsed);
    g_assert_cmpint(bdrv_cbw_snapshot_error(f.cbw), ==, 0);
    g_assert_cmpint(blk_pread(f.guest, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpmem(buf, sizeof(buf), f.old, sizeof(buf));
    /* The copy goes on: a drained section waits for it. */
    start = g_get_monotonic_time();
    bdrv_drain_all_begin();
    bdrv_drain_all_end();
    g_assert_cmpint(elapsed + g_get_monotonic_time() - start, >=,
                    2 * G_USEC_PER_SEC - 100 * 1000);
    fleece_close(&f);
}

static void test_timeout_breaks_snapshot(void)
{
    Fleece f = { 0 };
    gint64 elapsed;
    char buf[512];

    timed_out("break-snapshot", &f, &elapsed);
    g_assert_cmpint(bdrv_cbw_snapshot_error(f.cbw), ==, -ETIMEDOUT);
    g_assert_cmpint(blk_pread(f.reader, SIZE / 2, sizeof(buf), buf, 0), ==, -EACCES);
    /* Closing waits for the copy still under way. */
    fleece_close(&f);
}

int main(int argc, char **argv)
{
    block_test_init(&argc, &argv);
    g_test_add_func("/snapshot-access/reads-come-from-target-where-guest-wrote",
                    test_reads_come_from_target_where_guest_wrote);
    g_test_add_func("/snapshot-access/outside-access-bitmap-is-eacces",
                    test_outside_access_bitmap_is_eacces);
    g_test_add_func("/snapshot-access/discard-leaves-whole-clusters",
                    test_discard_leaves_whole_clusters);
    g_test_add_func("/snapshot-access/broken-snapshot-fails-reads",
                    test_broken_snapshot_fails_reads);
    g_test_add_func("/snapshot-access/not-over-cbw-is-enotsup",
                    test_not_over_cbw_is_enotsup);
    g_test_add_func("/snapshot-access/guest-write-waits-for-source-read",
                    test_guest_write_waits_for_source_read);
    g_test_add_func("/snapshot-access/timeout-fails-guest-write",
                    test_timeout_fails_guest_write);
    g_test_add_func("/snapshot-access/timeout-breaks-snapshot",
                    test_timeout_breaks_snapshot);
    return block_test_run();
}
