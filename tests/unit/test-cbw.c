/*
 * Copy-before-write and block-copy: the target ends as the source was when
 * the filter went in, whatever is written meanwhile; bitmaps as QEMU
 * shows them; permissions while the filter is in place; errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "block-test-helpers.h"
#include "block/copy-before-write.h"
#include "block/create.h"

#define SIZE (8 << 20)

static char *file_node(const char *name, const char *extra)
{
    g_autofree char *fname = g_strdup_printf("%s.img", name);
    g_autofree char *path = block_test_file(fname, SIZE);

    return g_strdup_printf("{\"driver\": \"file\", \"node-name\": \"%s\","
                           " \"filename\": \"%s\"%s}", name, path, extra);
}

/* The nodes and users each test starts from. */
typedef struct Setup {
    BlockDriverState *src, *tgt;
    BlockBackend *guest;
    BlockBackend *reader;       /* on tgt, or NULL */
} Setup;

/*
 * Opens file node "src" with a guest taking guest_perm, and "tgt" from
 * tgt_json (NULL: a file node) with a reader if asked.
 */
static void setup(Setup *s, const char *tgt_json, uint64_t guest_perm,
                  bool reader)
{
    g_autofree char *src_json = file_node("src", "");
    g_autofree char *file_tgt = tgt_json ? NULL : file_node("tgt", "");

    s->src = block_test_open(src_json, &error_abort);
    s->tgt = block_test_open(tgt_json ? tgt_json : file_tgt, &error_abort);
    s->guest = block_test_backend(s->src, "guest", BLOCK_TEST_RW, guest_perm);
    s->reader = reader ? block_test_backend(s->tgt, "reader",
                                            BLK_PERM_CONSISTENT_READ,
                                            BLK_PERM_ALL) : NULL;
}

static void teardown(Setup *s)
{
    if (s->reader) {
        blk_unref(s->reader);
    }
    blk_unref(s->guest);
    bdrv_del_node("src", &error_abort);
    bdrv_del_node("tgt", &error_abort);
}

static void fill(BlockBackend *blk, guint32 seed, char *copy)
{
    GRand *rand = g_rand_new_with_seed(seed);
    int i;

    for (i = 0; i < SIZE; i++) {
        copy[i] = g_rand_int(rand);
    }
    g_rand_free(rand);
    g_assert_cmpint(blk_pwrite(blk, 0, SIZE, copy, 0), ==, 0);
}

static int64_t count(BlockDriverState *bs, int index)
{
    BlockDirtyInfoList *list = bdrv_query_dirty_bitmaps(bs), *l = list;
    int64_t c;

    while (index--) {
        l = l->next;
    }
    c = l->value->count;
    qapi_free_BlockDirtyInfoList(list);
    return c;
}

static void test_guest_write_copies_old_data_first(void)
{
    Setup st;
    g_autofree char *orig = g_malloc(SIZE), *buf = g_malloc(65536);
    char news[4096];
    BlockCopyState *bcs;
    BlockDriverState *filter;

    setup(&st, NULL, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED |
          BLK_PERM_WRITE, true);
    fill(st.guest, 1, orig);
    filter = bdrv_cbw_append(st.src, st.tgt, "cbw0", &bcs, &error_abort);
    g_assert_true(blk_bs(st.guest) == filter);
    memset(news, 0x5a, sizeof(news));
    g_assert_cmpint(blk_pwrite(st.guest, 100 * 1024, sizeof(news), news, 0), ==, 0);
    /* The target holds the old data of the whole 64 KiB cluster written. */
    g_assert_cmpint(blk_pread(st.reader, 65536, 65536, buf, 0), ==, 0);
    g_assert_cmpmem(buf, 65536, orig + 65536, 65536);
    /* The guest reads its new data. */
    g_assert_cmpint(blk_pread(st.guest, 100 * 1024, sizeof(news), buf, 0), ==, 0);
    g_assert_cmpmem(buf, sizeof(news), news, sizeof(news));
    /* Source: the copy bitmap, all but the copied cluster left. */
    g_assert_cmpint(count(st.src, 0), ==, SIZE - 65536);
    /* Filter: access (everything) newest, then done (the copied cluster). */
    g_assert_cmpint(count(filter, 0), ==, SIZE);
    g_assert_cmpint(count(filter, 1), ==, 65536);

    bdrv_drop_filter(filter);
    g_assert_true(blk_bs(st.guest) == st.src);
    g_assert_null(bdrv_query_dirty_bitmaps(st.src));
    teardown(&st);
}

typedef struct Writer {
    BlockBackend *blk;
    guint32 seed;
    gint *stop;
} Writer;

static gpointer write_loop(gpointer opaque)
{
    Writer *w = opaque;
    GRand *rand = g_rand_new_with_seed(w->seed);
    char buf[8192];

    memset(buf, w->seed, sizeof(buf));
    while (!g_atomic_int_get(w->stop)) {
        int64_t off = g_rand_int_range(rand, 0, SIZE - sizeof(buf));

        g_assert_cmpint(blk_pwrite(w->blk, off, g_rand_int_range(rand, 1, sizeof(buf)),
                                   buf, 0), ==, 0);
    }
    g_rand_free(rand);
    return NULL;
}

static void test_point_in_time_under_concurrent_writes(void)
{
    Setup st;
    g_autofree char *orig = g_malloc(SIZE), *after = g_malloc(SIZE);
    gint stop = 0;
    Writer w[4];
    GThread *t[4];
    BlockCopyState *bcs;
    BlockCopyTask *task;
    BlockDriverState *filter;
    int64_t total = 0;
    bool is_read;
    int i;

    setup(&st, NULL, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED |
          BLK_PERM_WRITE, true);
    fill(st.guest, 7, orig);
    filter = bdrv_cbw_append(st.src, st.tgt, NULL, &bcs, &error_abort);
    for (i = 0; i < 4; i++) {
        w[i] = (Writer) { st.guest, 100 + i, &stop };
        t[i] = g_thread_new("writer", write_loop, &w[i]);
    }
    /* The background copy, 1 MiB at a time, while the guest writes. */
    while ((task = block_copy_claim(bcs, BLOCK_COPY_MAX_CHUNK))) {
        total += block_copy_task_bytes(task);
        g_assert_cmpint(block_copy_run(bcs, task, &is_read), ==, 0);
        g_usleep(2000);
    }
    g_atomic_int_set(&stop, 1);
    for (i = 0; i < 4; i++) {
        g_thread_join(t[i]);
    }
    /* Everything was copied once, by one side or the other. */
    g_assert_cmpint(total + count(filter, 1), >=, SIZE);
    g_assert_cmpint(blk_pread(st.reader, 0, SIZE, after, 0), ==, 0);
    g_assert_true(memcmp(after, orig, SIZE) == 0);
    bdrv_drop_filter(filter);
    teardown(&st);
}

typedef struct Pending {
    BlockBackend *blk;
    int64_t offset, bytes;
    char *buf;
    gint done;
} Pending;

static gpointer pending_read(gpointer opaque)
{
    Pending *p = opaque;

    g_assert_cmpint(blk_pread(p->blk, p->offset, p->bytes, p->buf, 0), ==, 0);
    g_atomic_int_set(&p->done, 1);
    return NULL;
}

static gpointer pending_write(gpointer opaque)
{
    Pending *p = opaque;

    g_assert_cmpint(blk_pwrite(p->blk, p->offset, p->bytes, p->buf, 0), ==, 0);
    g_atomic_int_set(&p->done, 1);
    return NULL;
}

/*
 * Image fleecing: the target's backing node is the source (through a gate
 * here) and the target is read while the guest writes. A read that found
 * a cluster unallocated in the target and is reading it from the source
 * must not see a guest write that comes meanwhile: the copy of the
 * cluster to the target waits for the read, and the guest write for the
 * copy.
 */
static void test_fleecing_read_holds_back_guest_write(void)
{
    g_autofree char *src_json = file_node("src", "");
    g_autofree char *tgt_path = g_build_filename(block_test_dir(), "tgt.qcow2",
                                                 NULL);
    g_autofree char *tgt_json = g_strdup_printf(
        "{\"driver\": \"qcow2\", \"node-name\": \"tgt\", \"backing\": \"gate\","
        " \"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}", tgt_path);
    g_autofree char *orig = g_malloc(SIZE), *buf = g_malloc(65536);
    char news[4096];
    BlockDriverState *src, *gate, *tgt, *filter;
    BlockBackend *guest, *reader;
    BlockCopyState *bcs;
    Pending r, w;
    GThread *rt, *wt;

    src = block_test_open(src_json, &error_abort);
    guest = block_test_backend(src, "guest", BLOCK_TEST_RW,
                               BLK_PERM_CONSISTENT_READ |
                               BLK_PERM_WRITE_UNCHANGED | BLK_PERM_WRITE);
    fill(guest, 3, orig);
    gate = block_test_gate_new("gate", src);
    g_assert_true(bdrv_img_create(tgt_path, "qcow2", NULL, NULL, SIZE,
                                  &error_abort));
    tgt = block_test_open(tgt_json, &error_abort);
    reader = block_test_backend(tgt, "reader", BLK_PERM_CONSISTENT_READ,
                                BLK_PERM_ALL);
    filter = bdrv_cbw_append(src, tgt, "cbw0", &bcs, &error_abort);

    /* The reader is caught reading the second cluster from the source. */
    block_test_gate_hold();
    r = (Pending) { reader, 65536, 65536, buf };
    rt = g_thread_new("reader", pending_read, &r);
    block_test_gate_wait();
    memset(news, 0x5a, sizeof(news));
    w = (Pending) { guest, 65536 + 4096, sizeof(news), news };
    wt = g_thread_new("writer", pending_write, &w);
    g_usleep(200 * 1000);
    g_assert_false(g_atomic_int_get(&w.done));
    block_test_gate_release();
    g_thread_join(rt);
    g_thread_join(wt);
    g_assert_cmpmem(buf, 65536, orig + 65536, 65536);
    /* Later reads find the copy in the target. */
    g_assert_cmpint(count(src, 0), ==, SIZE - 65536);
    g_assert_cmpint(blk_pread(reader, 65536, 65536, buf, 0), ==, 0);
    g_assert_cmpmem(buf, 65536, orig + 65536, 65536);
    g_assert_cmpint(blk_pread(guest, 65536 + 4096, sizeof(news), buf, 0), ==, 0);
    g_assert_cmpmem(buf, sizeof(news), news, sizeof(news));

    bdrv_drop_filter(filter);
    blk_unref(reader);
    g_assert_true(bdrv_del_node("tgt", &error_abort));
    bdrv_unref(gate);
    blk_unref(guest);
    g_assert_true(bdrv_del_node("src", &error_abort));
}

static void test_source_cannot_be_written_or_resized_behind_it(void)
{
    Setup st;
    BlockBackend *other = blk_new("job 'j1'", BLOCK_TEST_RW, BLK_PERM_ALL);
    g_autoptr(Error) err = NULL;
    BlockCopyState *bcs;
    BlockDriverState *filter;

    setup(&st, NULL, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, false);
    filter = bdrv_cbw_append(st.src, st.tgt, "f", &bcs, &error_abort);
    g_assert_false(blk_insert_bs(other, st.src, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "unshared by node 'f'"));
    g_clear_pointer(&err, error_free);
    g_assert_false(bdrv_truncate(st.src, SIZE * 2, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "resize"));
    blk_unref(other);
    bdrv_drop_filter(filter);
    teardown(&st);
}

static void test_copy_error_breaks_guest_write(void)
{
    g_autofree char *tgt_json = block_test_blkdebug_json(
        "tgt", SIZE, "[{\"event\": \"write_aio\", \"errno\": 28}]");
    Setup st;
    BlockCopyState *bcs;
    BlockDriverState *filter;
    g_autofree char *orig = g_malloc(SIZE);
    char buf[512] = { 1 };

    setup(&st, tgt_json, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, false);
    fill(st.guest, 3, orig);    /* data to copy, not zeroes */
    filter = bdrv_cbw_append(st.src, st.tgt, NULL, &bcs, &error_abort);
    /* The old data could not be saved: the write must not happen. */
    g_assert_cmpint(blk_pwrite(st.guest, 0, sizeof(buf), buf, 0), ==, -ENOSPC);
    g_assert_cmpint(bdrv_cbw_snapshot_error(filter), ==, 0);
    /* The cluster is still to be copied. */
    g_assert_cmpint(count(st.src, 0), ==, SIZE);
    bdrv_drop_filter(filter);
    teardown(&st);
}

static void test_failed_chunk_retried_after_the_others(void)
{
    g_autofree char *tgt_json = block_test_blkdebug_json(
        "tgt", SIZE, "[{\"event\": \"write_aio\", \"errno\": 5, \"sector\": 0}]");
    Setup st;
    BlockCopyState *bcs;
    BlockDriverState *filter;
    g_autofree char *orig = g_malloc(SIZE);
    bool is_read;
    int i;

    setup(&st, tgt_json, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, false);
    fill(st.guest, 4, orig);
    filter = bdrv_cbw_append(st.src, st.tgt, NULL, &bcs, &error_abort);
    /* The first chunk fails for good, and is dirty again... */
    g_assert_cmpint(block_copy_run(bcs, block_copy_claim(bcs, BLOCK_COPY_MAX_CHUNK),
                                   &is_read), ==, -EIO);
    g_assert_false(is_read);
    /* ...but the next claims take the seven others first. */
    for (i = 0; i < SIZE / BLOCK_COPY_MAX_CHUNK - 1; i++) {
        g_assert_cmpint(block_copy_run(bcs, block_copy_claim(bcs, BLOCK_COPY_MAX_CHUNK),
                                       &is_read), ==, 0);
    }
    g_assert_cmpint(count(st.src, 0), ==, BLOCK_COPY_MAX_CHUNK);
    g_assert_cmpint(block_copy_run(bcs, block_copy_claim(bcs, BLOCK_COPY_MAX_CHUNK),
                                   &is_read), ==, -EIO);
    bdrv_drop_filter(filter);
    teardown(&st);
}

/*
 * compress: data goes into a qcow2 target compressed, ahead of guest
 * writes and in the background, in whole clusters even where the source
 * has a hole shorter than one (a compressed write takes no less).
 */
static void test_compressed_copy_takes_whole_clusters(void)
{
    g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
    g_autofree char *tgt_path = block_test_file("tgt.qcow2", 0);
    g_autofree char *create = g_strdup_printf("qemu-img create -q -f qcow2 %s %d",
                                              tgt_path, SIZE);
    g_autofree char *tgt_json = g_strdup_printf(
        "{\"driver\": \"qcow2\", \"node-name\": \"tgt\", \"file\":"
        " {\"driver\": \"file\", \"filename\": \"%s\"}}", tgt_path);
    g_autofree char *orig = g_malloc0(SIZE), *after = g_malloc(SIZE);
    char news[512] = { 7 };
    int64_t off, pnum, map;
    BlockCopyTask *task;
    BlockDriverState *filter, *file;
    BlockCopyState *bcs;
    bool is_read;
    Setup st;
    int ret;

    if (!qemu_img) {
        g_test_skip("qemu-img missing");
        return;
    }
    g_assert_true(g_spawn_command_line_sync(create, NULL, NULL, &ret, NULL));
    g_assert_cmpint(ret, ==, 0);
    setup(&st, tgt_json, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED |
          BLK_PERM_WRITE, true);
    for (off = 0; off < SIZE; off += 24) {
        g_snprintf(orig + off, MIN(24, SIZE - off), "%023" G_GINT64_FORMAT, off);
    }
    /* All but [68K, 72K): the sparse file keeps a hole there. */
    g_assert_cmpint(blk_pwrite(st.guest, 0, 68 * 1024, orig, 0), ==, 0);
    memset(orig + 68 * 1024, 0, 4096);
    g_assert_cmpint(blk_pwrite(st.guest, 72 * 1024, SIZE - 72 * 1024,
                               orig + 72 * 1024, 0), ==, 0);
    if (!(bdrv_block_status(st.src, true, 68 * 1024, 4096, &pnum, NULL, NULL) &
          BDRV_BLOCK_ZERO)) {
        g_test_skip("no holes in the scratch file system");
        teardown(&st);
        return;
    }

    filter = bdrv_cbw_append(st.src, st.tgt, NULL, &bcs, &error_abort);
    block_copy_set_compress(bcs, true);
    /* Copied ahead of the guest write, then in the background. */
    g_assert_cmpint(blk_pwrite(st.guest, 5 << 20, sizeof(news), news, 0), ==, 0);
    while ((task = block_copy_claim(bcs, BLOCK_COPY_MAX_CHUNK))) {
        g_assert_cmpint(block_copy_task_bytes(task), ==, 65536);
        g_assert_cmpint(block_copy_run(bcs, task, &is_read), ==, 0);
    }
    g_assert_cmpint(blk_pread(st.reader, 0, SIZE, after, 0), ==, 0);
    g_assert_true(memcmp(after, orig, SIZE) == 0);
    /* Compressed clusters: data with no offset in the file. */
    for (off = 0; off < SIZE; off += 65536) {
        ret = bdrv_block_status(st.tgt, true, off, 65536, &pnum, &map, &file);
        g_assert_cmpint(ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID), ==,
                        BDRV_BLOCK_DATA);
    }
    bdrv_drop_filter(filter);
    teardown(&st);
}

/* Whether [offset, offset+bytes) of the file is a hole. */
static bool file_hole(const char *path, off_t offset, off_t bytes)
{
    int fd = open(path, O_RDONLY);
    off_t data;

    g_assert_cmpint(fd, >=, 0);
    data = lseek(fd, offset, SEEK_DATA);
    close(fd);
    return data < 0 || data >= offset + bytes;
}

/*
 * Block-copy of a source whose first MiB is zero data (allocated), into a
 * target with detect-zeroes=unmap: read and write hand the target a zero
 * buffer, which it punches out; an offload copies the bytes as they are.
 * blkdebug in front of the source cannot offload.
 */
static void copy_zero_data(bool via_blkdebug)
{
    g_autofree char *tgt_path = block_test_file("tgt.img", SIZE);
    g_autofree char *tgt_json = g_strdup_printf(
        "{\"driver\": \"raw\", \"node-name\": \"tgt\", \"detect-zeroes\": \"unmap\","
        " \"discard\": \"unmap\","
        " \"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}", tgt_path);
    g_autofree char *orig = g_malloc(SIZE), *after = g_malloc(SIZE);
    BlockDriverState *src_top = NULL, *filter;
    BlockCopyState *bcs;
    BlockCopyTask *task;
    bool is_read;
    Setup st;

    setup(&st, tgt_json, BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE, true);
    fill(st.guest, 9, orig);
    memset(orig, 0, 1 << 20);
    g_assert_cmpint(blk_pwrite(st.guest, 0, 1 << 20, orig, 0), ==, 0);
    if (via_blkdebug) {
        src_top = block_test_open("{\"driver\": \"blkdebug\", \"node-name\": \"dbg\","
                                  " \"image\": \"src\"}", &error_abort);
    }
    filter = bdrv_cbw_append(src_top ? src_top : st.src, st.tgt, NULL, &bcs,
                             &error_abort);
    while ((task = block_copy_claim(bcs, BLOCK_COPY_MAX_CHUNK))) {
        g_assert_cmpint(block_copy_run(bcs, task, &is_read), ==, 0);
    }
    g_assert_cmpint(blk_pread(st.reader, 0, SIZE, after, 0), ==, 0);
    g_assert_true(memcmp(after, orig, SIZE) == 0);
    g_assert_cmpint(file_hole(tgt_path, 0, 1 << 20), ==, via_blkdebug);
    g_assert_false(file_hole(tgt_path, 1 << 20, SIZE - (1 << 20)));
    bdrv_drop_filter(filter);
    if (src_top) {
        g_assert_true(bdrv_del_node("dbg", &error_abort));
    }
    teardown(&st);
}

static void test_block_copy_offloads_data_as_it_is(void)
{
    copy_zero_data(false);
}

static void test_block_copy_falls_back_to_read_and_write(void)
{
    copy_zero_data(true);
}

int main(int argc, char **argv)
{
    block_test_init(&argc, &argv);
    g_test_add_func("/cbw/guest-write-copies-old-data-first",
                    test_guest_write_copies_old_data_first);
    g_test_add_func("/cbw/point-in-time-under-concurrent-writes",
                    test_point_in_time_under_concurrent_writes);
    g_test_add_func("/cbw/fleecing-read-holds-back-guest-write",
                    test_fleecing_read_holds_back_guest_write);
    g_test_add_func("/cbw/source-cannot-be-written-or-resized-behind-it",
                    test_source_cannot_be_written_or_resized_behind_it);
    g_test_add_func("/cbw/copy-error-breaks-guest-write",
                    test_copy_error_breaks_guest_write);
    g_test_add_func("/cbw/failed-chunk-retried-after-the-others",
                    test_failed_chunk_retried_after_the_others);
    g_test_add_func("/cbw/compressed-copy-takes-whole-clusters",
                    test_compressed_copy_takes_whole_clusters);
    g_test_add_func("/cbw/block-copy-offloads-data-as-it-is",
                    test_block_copy_offloads_data_as_it_is);
    g_test_add_func("/cbw/block-copy-falls-back-to-read-and-write",
                    test_block_copy_falls_back_to_read_and_write);
    return block_test_run();
}
