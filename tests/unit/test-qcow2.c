/*
 * The qcow2 driver against QEMU's own tools: images made by qemu-img and
 * qemu-io read back as `qemu-img convert -O raw` says; images blkd wrote
 * pass `qemu-img check` and `qemu-img compare` against a raw file that got
 * the same operations; refusals say why. Skips without qemu-img/qemu-io.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qcow2-test-helpers.h"
#include "block/block_int.h"
#include "block/qapi.h"
#include "block/qcow2.h"
#include "util/main-loop.h"

/* ---- reading what QEMU wrote ------------------------------------------- */

/* Data, zero clusters (plain and preallocated), discards, partial clusters. */
static void make_mixed_image(const char *name, const char *opts, int64_t cs)
{
    SH_OK("qemu-img create -q -f qcow2 -o %s,cluster_size=%" G_GINT64_FORMAT
          " %s %" G_GINT64_FORMAT, opts, cs, name, MAX(8 * MiB, 8 * cs));
    SH_OK("qemu-io -c 'write -P 0x11 0 %" G_GINT64_FORMAT "'"
          " -c 'write -P 0x22 %" G_GINT64_FORMAT " 3000'"
          " -c 'write -P 0x33 1M 1M' -c 'write -P 0x44 5000000 1234567'"
          " -c 'write -z 1M 512K' -c 'write -z -u 1536K 256K'"
          " -c 'discard 7M 1M' -c 'write -P 0x55 8387584 512' %s",
          3 * cs + 100, 5 * cs - 1000, name);
}

static void test_read_cluster_512(void)
{
    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_mixed_image("r512.qcow2", "compat=1.1", 512);
    assert_reads_like_qemu("r512.qcow2", NULL);
}

static void test_read_cluster_64k(void)
{
    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_mixed_image("r64k.qcow2", "compat=1.1", 64 * KiB);
    assert_reads_like_qemu("r64k.qcow2", NULL);
}

static void test_read_cluster_2m(void)
{
    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_mixed_image("r2m.qcow2", "compat=1.1", 2 * MiB);
    assert_reads_like_qemu("r2m.qcow2", NULL);
}

static void test_read_v2(void)
{
    if (!block_test_have_qemu_tools()) {
        return;
    }
    make_mixed_image("rv2.qcow2", "compat=0.10", 64 * KiB);
    assert_reads_like_qemu("rv2.qcow2", NULL);
}

static void test_read_compressed(void)
{
    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 src.qcow2 6M");
    SH_OK("qemu-io -c 'write -P 0x61 0 1M' -c 'write -P 0x62 1000000 3M'"
          " -c 'write -z 4M 64K' src.qcow2");
    SH_OK("qemu-img convert -c -O qcow2 -o cluster_size=4096 src.qcow2 c4k.qcow2");
    SH_OK("qemu-img convert -c -O qcow2 src.qcow2 c64k.qcow2");
    assert_reads_like_qemu("c4k.qcow2", NULL);
    assert_reads_like_qemu("c64k.qcow2", NULL);
}

static void test_read_backing_chain(void)
{
    if (!block_test_have_qemu_tools()) {
        return;
    }
    /* The backing file is shorter: past its end reads zeroes. */
    SH_OK("qemu-img create -q -f qcow2 base.qcow2 3M");
    SH_OK("qemu-io -c 'write -P 0x71 0 3M' base.qcow2");
    SH_OK("qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 mid.qcow2 4M");
    SH_OK("qemu-io -c 'write -P 0x72 100K 200K' -c 'write -z 1M 128K'"
          " mid.qcow2");
    SH_OK("qemu-img create -q -f qcow2 -o compat=0.10 -b mid.qcow2 -F qcow2 "
          "top.qcow2 6M");
    SH_OK("qemu-io -c 'write -P 0x73 150K 10K' top.qcow2");
    assert_reads_like_qemu("top.qcow2", NULL);
}

/* Copies [offset, offset+bytes) of image name to the same place of raw file dst. */
static int copy_range_to_raw(const char *name, const char *dst, int64_t offset,
                             int64_t bytes)
{
    g_autofree char *path = path_of(dst);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"file\", \"node-name\": \"d\", \"filename\": \"%s\"}", path);
    BlockDriverState *d, *qw, *dw;
    int ret;

    /* Raw nodes over both: their file children are the request's BdrvChild. */
    open_qcow2(name, true, NULL, &error_abort);
    d = block_test_open(json, &error_abort);
    qw = block_test_open("{\"driver\": \"raw\", \"node-name\": \"qw\", \"file\": \"q\"}",
                         &error_abort);
    dw = block_test_open("{\"driver\": \"raw\", \"node-name\": \"dw\", \"file\": \"d\"}",
                         &error_abort);
    g_assert_true(dw->file->bs == d);
    ret = bdrv_copy_range(qw->file, offset, dw->file, offset, bytes);
    g_assert_true(bdrv_del_node("qw", &error_abort));
    g_assert_true(bdrv_del_node("dw", &error_abort));
    g_assert_true(bdrv_del_node("q", &error_abort));
    g_assert_true(bdrv_del_node("d", &error_abort));
    return ret;
}

/* Copy offload from data clusters and the backing file; not zeroes nor compressed. */
static void test_copy_range_from_data_and_backing(void)
{
    g_autofree uint8_t *got = NULL, *want = NULL;
    gsize len;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 cbase.qcow2 3M");
    SH_OK("qemu-io -c 'write -P 0x71 0 3M' cbase.qcow2");
    SH_OK("qemu-img create -q -f qcow2 -b cbase.qcow2 -F qcow2 ctop.qcow2 4M");
    SH_OK("qemu-io -c 'write -P 0x72 1M 1M' -c 'write -z 2M 64K' ctop.qcow2");
    SH_OK("qemu-img convert -c -O qcow2 ctop.qcow2 ccomp.qcow2");
    SH_OK("qemu-img convert -O raw ctop.qcow2 cexpect.raw");
    SH_OK("qemu-img create -q -f raw cdst.raw 4M");

    g_assert_cmpint(copy_range_to_raw("ctop.qcow2", "cdst.raw", 0, 2 * MiB), ==, 0);
    g_assert_cmpint(copy_range_to_raw("ctop.qcow2", "cdst.raw", 2 * MiB, 64 * KiB),
                    ==, -ENOTSUP);
    /* Unallocated past the end of the backing file: zeroes, not bytes. */
    g_assert_cmpint(copy_range_to_raw("ctop.qcow2", "cdst.raw", 3 * MiB, 64 * KiB),
                    ==, -ENOTSUP);
    g_assert_cmpint(copy_range_to_raw("ccomp.qcow2", "cdst.raw", 0, 64 * KiB),
                    ==, -ENOTSUP);
    got = read_file("cdst.raw", &len);
    g_assert_cmpuint(len, ==, 4 * MiB);
    want = read_file("cexpect.raw", &len);
    g_assert_cmpmem(got, 2 * MiB, want, 2 * MiB);
}

/* ---- block status and queries ------------------------------------------ */

static void test_block_status_kinds(void)
{
    BlockDriverState *bs;
    BlockDriverState *file;
    int64_t pnum, map;
    int ret;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 bsraw.qcow2 1M");
    SH_OK("qemu-io -c 'write -P 1 0 64K' -c 'write -P 2 64K 64K'"
          " -c 'write -z 64K 64K' -c 'write -z 128K 64K' bsraw.qcow2");
    SH_OK("qemu-img convert -c -O qcow2 bsraw.qcow2 bsc.qcow2");
    SH_OK("qemu-io -c 'write -P 3 256K 64K' bsraw.qcow2");

    bs = open_qcow2("bsraw.qcow2", true, NULL, &error_abort);
    ret = bdrv_block_status(bs, true, 0, 1 * MiB, &pnum, &map, &file);
    g_assert_cmpint(ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID |
                           BDRV_BLOCK_ALLOCATED), ==,
                    BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID | BDRV_BLOCK_ALLOCATED);
    g_assert_cmpint(pnum, ==, 64 * KiB);
    g_assert_true(file == bdrv_file_bs(bs));
    /* preallocated zero: zero, with its offset */
    ret = bdrv_block_status(bs, true, 64 * KiB, 1 * MiB, &pnum, &map, &file);
    g_assert_cmpint(ret & ~BDRV_BLOCK_EOF, ==,
                    BDRV_BLOCK_ZERO | BDRV_BLOCK_OFFSET_VALID | BDRV_BLOCK_ALLOCATED);
    ret = bdrv_block_status(bs, true, 128 * KiB, 1 * MiB, &pnum, &map, &file);
    g_assert_cmpint(ret & ~BDRV_BLOCK_EOF, ==, BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED);
    g_assert_cmpint(pnum, ==, 64 * KiB);
    ret = bdrv_block_status(bs, true, 192 * KiB, 1 * MiB, &pnum, &map, &file);
    g_assert_cmpint(ret & ~BDRV_BLOCK_EOF, ==, 0);
    g_assert_cmpint(pnum, ==, 64 * KiB);
    g_assert_true(bdrv_del_node("q", &error_abort));

    bs = open_qcow2("bsc.qcow2", true, NULL, &error_abort);
    ret = bdrv_block_status(bs, true, 0, 1 * MiB, &pnum, &map, &file);
    g_assert_cmpint(ret & ~BDRV_BLOCK_EOF, ==, BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED);
    g_assert_true(bdrv_del_node("q", &error_abort));
}

static void test_query_info(void)
{
    BlockDriverState *bs;
    g_autoptr(BlockDeviceInfo) info = NULL;
    ImageInfoSpecificQCow2 *q;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 -o cluster_size=4096,refcount_bits=8,"
          "lazy_refcounts=on qi.qcow2 1M");
    bs = open_qcow2("qi.qcow2", true, NULL, &error_abort);
    info = bdrv_query_node_info(bs, true);
    g_assert_cmpint(info->image->cluster_size, ==, 4096);
    g_assert_true(info->image->has_dirty_flag && !info->image->dirty_flag);
    g_assert_cmpint(info->image->virtual_size, ==, 1 * MiB);
    g_assert_true(info->image->has_actual_size);
    q = info->image->format_specific->u.qcow2.data;
    g_assert_cmpstr(q->compat, ==, "1.1");
    g_assert_cmpint(q->refcount_bits, ==, 8);
    g_assert_true(q->has_lazy_refcounts && q->lazy_refcounts);
    g_assert_true(q->has_corrupt && !q->corrupt);
    g_assert_true(q->has_extended_l2 && !q->extended_l2);
    g_assert_cmpint(q->compression_type, ==, QCOW2_COMPRESSION_TYPE_ZLIB);
    g_assert_true(bdrv_del_node("q", &error_abort));

    SH_OK("qemu-img create -q -f qcow2 -o compat=0.10 qi2.qcow2 1M");
    bs = open_qcow2("qi2.qcow2", true, NULL, &error_abort);
    qapi_free_BlockDeviceInfo(info);
    info = bdrv_query_node_info(bs, true);
    q = info->image->format_specific->u.qcow2.data;
    g_assert_cmpstr(q->compat, ==, "0.10");
    g_assert_cmpint(q->refcount_bits, ==, 16);
    g_assert_false(q->has_corrupt);
    g_assert_true(bdrv_del_node("q", &error_abort));
}

/* ---- writing: random operations against a raw reference ---------------- */

typedef struct Workload {
    BlockBackend *blk;
    int ref_fd;
    int64_t size, cs;
    bool v2, backing;
    GRand *rand;
} Workload;

static void ref_write(Workload *w, int64_t off, int64_t len, const uint8_t *buf)
{
    g_assert_cmpint(pwrite(w->ref_fd, buf, len, off), ==, len);
}

static void ref_zero(Workload *w, int64_t off, int64_t len)
{
    g_autofree uint8_t *z = g_malloc0(len);

    ref_write(w, off, len, z);
}

static void op_write(Workload *w, int64_t off, int64_t len)
{
    g_autofree uint8_t *buf = g_malloc(len);
    uint8_t v = g_rand_int(w->rand);
    int64_t i;

    for (i = 0; i < len; i++) {
        buf[i] = v + i / 512;
    }
    g_assert_cmpint(blk_pwrite(w->blk, off, len, buf, 0), ==, 0);
    ref_write(w, off, len, buf);
}

static void op_zero(Workload *w, int64_t off, int64_t len, bool unmap)
{
    g_assert_cmpint(blk_pwrite_zeroes(w->blk, off, len,
                                      unmap ? BDRV_REQ_MAY_UNMAP : 0), ==, 0);
    ref_zero(w, off, len);
}

/* Whole clusters read as zeroes afterwards; parts of clusters are kept. */
static void op_discard(Workload *w, int64_t off, int64_t len)
{
    int64_t lo = (off + w->cs - 1) / w->cs * w->cs;
    int64_t hi = off + len == w->size ? off + len : (off + len) / w->cs * w->cs;

    g_assert_cmpint(blk_pdiscard(w->blk, off, len), ==, 0);
    if (hi > lo && !(w->v2 && w->backing)) {
        ref_zero(w, lo, hi - lo);
    }
}

static int64_t rand_len(Workload *w)
{
    switch (g_rand_int_range(w->rand, 0, 4)) {
    case 0:
        return g_rand_int_range(w->rand, 1, 4097);
    case 1:
        return w->cs + g_rand_int_range(w->rand, -100, 100);
    case 2:
        return g_rand_int_range(w->rand, 1, 4 * w->cs);
    default:
        return w->cs * g_rand_int_range(w->rand, 1, 9);
    }
}

static void random_ops(Workload *w, int n)
{
    while (n-- > 0) {
        int64_t len = MIN(MAX(rand_len(w), 1), w->size);
        int64_t off = g_rand_double(w->rand) * (w->size - len + 1);
        int kind = g_rand_int_range(w->rand, 0, 10);

        if (kind < 6) {
            op_write(w, off, len);
        } else if (kind < 8) {
            op_zero(w, off, len, kind == 7);
        } else {
            op_discard(w, off, len);
        }
    }
}

/*
 * Writes random operations into a new image made with create_opts (and
 * backing base.raw-in-qcow2 when backing), closes, then checks the image
 * with qemu-img against the reference.
 */
static void run_workload_opts(const char *create_opts, int64_t cs,
                              int64_t size, bool backing, int nops,
                              int64_t stride, const char *open_extra)
{
    Workload w = { .size = size, .cs = cs, .backing = backing };
    g_autofree char *ref = path_of("ref.raw");
    BlockDriverState *bs;
    int i;

    w.v2 = strstr(create_opts, "compat=0.10") != NULL;
    w.rand = g_rand_new_with_seed(g_test_rand_int());
    if (backing) {
        SH_OK("qemu-img create -q -f qcow2 wbase.qcow2 %" G_GINT64_FORMAT, size / 2);
        SH_OK("qemu-io -c 'write -P 0x5a 0 %" G_GINT64_FORMAT "' wbase.qcow2", size / 2);
        SH_OK("qemu-img create -q -f qcow2 -o %s,cluster_size=%" G_GINT64_FORMAT
              " -b wbase.qcow2 -F qcow2 w.qcow2 %" G_GINT64_FORMAT,
              create_opts, cs, size);
        SH_OK("qemu-img convert -O raw w.qcow2 ref.raw");
    } else {
        SH_OK("qemu-img create -q -f qcow2 -o %s,cluster_size=%" G_GINT64_FORMAT
              " w.qcow2 %" G_GINT64_FORMAT, create_opts, cs, size);
        SH_OK("rm -f ref.raw && truncate -s %" G_GINT64_FORMAT " ref.raw", size);
    }
    w.ref_fd = open(ref, O_RDWR);
    g_assert_cmpint(w.ref_fd, >=, 0);

    bs = open_qcow2("w.qcow2", false, open_extra, &error_abort);
    w.blk = attach(bs, true);
    random_ops(&w, nops);
    /* Spread over the image: more L2 tables, refcount blocks, a longer L1. */
    for (i = 0; stride && i < size / stride; i++) {
        op_write(&w, i * stride + g_rand_int_range(w.rand, 0, 512),
                 MIN(stride / 2, 64 * KiB));
    }
    random_ops(&w, nops);
    g_assert_cmpint(blk_flush(w.blk), ==, 0);
    close_node(w.blk);
    close(w.ref_fd);
    g_rand_free(w.rand);

    assert_check_clean("w.qcow2");
    assert_same_as_raw("w.qcow2", "ref.raw");
}

static void run_workload(const char *create_opts, int64_t cs, int64_t size,
                         bool backing, int nops, int64_t stride)
{
    run_workload_opts(create_opts, cs, size, backing, nops, stride, NULL);
}

static void test_write_cluster_512(void)
{
    if (block_test_have_qemu_tools()) {
        /* 16 MiB of 512-byte clusters: 512 L2 tables, the refcount table grows. */
        run_workload("compat=1.1", 512, 16 * MiB, false, 300, 16 * KiB);
    }
}

static void test_write_cluster_64k(void)
{
    if (block_test_have_qemu_tools()) {
        /* 2 GiB: more than one L2 table and one refcount block. */
        run_workload("compat=1.1", 64 * KiB, 2048 * MiB, false, 200, 16 * MiB);
    }
}

static void test_write_cluster_2m(void)
{
    if (block_test_have_qemu_tools()) {
        run_workload("compat=1.1", 2 * MiB, 64 * MiB, false, 100, 0);
    }
}

static void test_write_v2(void)
{
    if (block_test_have_qemu_tools()) {
        run_workload("compat=0.10", 4 * KiB, 32 * MiB, false, 300, 1 * MiB);
    }
}

static void test_write_over_backing(void)
{
    if (block_test_have_qemu_tools()) {
        run_workload("compat=1.1", 64 * KiB, 16 * MiB, true, 300, 0);
    }
}

static void test_write_v2_over_backing(void)
{
    if (block_test_have_qemu_tools()) {
        run_workload("compat=0.10", 4 * KiB, 8 * MiB, true, 300, 0);
    }
}

/* O_DIRECT: metadata smaller than a block goes through read-modify-write. */
static void test_write_cache_direct(void)
{
    if (block_test_have_qemu_tools()) {
        run_workload_opts("compat=1.1", 512, 8 * MiB, true, 200, 64 * KiB,
                          "\"cache\": {\"direct\": true}");
    }
}

static void test_write_refcount_widths(void)
{
    static const int widths[] = { 1, 2, 4, 8, 32, 64 };
    size_t i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    for (i = 0; i < G_N_ELEMENTS(widths); i++) {
        g_autofree char *opts = g_strdup_printf("refcount_bits=%d", widths[i]);

        run_workload(opts, 512, 4 * MiB, false, 100, 64 * KiB);
    }
}

/* A partial write into a compressed cluster: new cluster, old one freed. */
static void test_write_over_compressed(void)
{
    Workload w = { .size = 4 * MiB, .cs = 64 * KiB };
    BlockDriverState *bs;
    g_autofree char *ref = path_of("cref.raw");

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f raw cref.raw 4M");
    SH_OK("qemu-io -f raw -c 'write -P 0x31 0 3M' -c 'write -P 0x32 100K 5K' cref.raw");
    SH_OK("qemu-img convert -c -f raw -O qcow2 cref.raw wc.qcow2");
    w.ref_fd = open(ref, O_RDWR);
    w.rand = g_rand_new_with_seed(g_test_rand_int());
    bs = open_qcow2("wc.qcow2", false, NULL, &error_abort);
    w.blk = attach(bs, true);
    op_write(&w, 70 * KiB, 1000);
    op_write(&w, 1 * MiB - 10, 200 * KiB);
    op_zero(&w, 2 * MiB, 64 * KiB, false);
    op_discard(&w, 2 * MiB + 64 * KiB, 64 * KiB);
    close_node(w.blk);
    close(w.ref_fd);
    g_rand_free(w.rand);
    assert_check_clean("wc.qcow2");
    assert_same_as_raw("wc.qcow2", "cref.raw");
}

/* Writes never reach clusters an internal snapshot shares. */
static void test_write_keeps_snapshot(void)
{
    Workload w = { .size = 4 * MiB, .cs = 64 * KiB };
    g_autofree char *ref = path_of("sref.raw");
    BlockDriverState *bs;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 sn.qcow2 4M");
    SH_OK("qemu-io -c 'write -P 0x41 0 4M' sn.qcow2");
    SH_OK("qemu-img snapshot -c s1 sn.qcow2");
    SH_OK("qemu-img convert -O raw sn.qcow2 snap.raw && cp snap.raw sref.raw");
    w.ref_fd = open(ref, O_RDWR);
    w.rand = g_rand_new_with_seed(g_test_rand_int());
    bs = open_qcow2("sn.qcow2", false, NULL, &error_abort);
    w.blk = attach(bs, true);
    random_ops(&w, 100);
    close_node(w.blk);
    close(w.ref_fd);
    g_rand_free(w.rand);
    assert_check_clean("sn.qcow2");
    assert_same_as_raw("sn.qcow2", "sref.raw");
    SH_OK("qemu-img convert -l snapshot.name=s1 -O raw sn.qcow2 snap-after.raw");
    SH_OK("cmp snap.raw snap-after.raw");
}

/* ---- concurrency ------------------------------------------------------- */

#define NWRITERS 4

typedef struct Writer {
    BlockBackend *blk;
    int index;
    int64_t cs, size;
} Writer;

/* Writer i writes its quarter of every cluster, several times over. */
static gpointer writer_thread(gpointer opaque)
{
    Writer *wr = opaque;
    int64_t part = wr->cs / NWRITERS, c;
    g_autofree uint8_t *buf = g_malloc(part);
    int round;

    memset(buf, 0x10 + wr->index, part);
    for (round = 0; round < 2; round++) {
        for (c = 0; c < wr->size; c += wr->cs) {
            g_assert_cmpint(blk_pwrite(wr->blk, c + wr->index * part, part, buf, 0),
                            ==, 0);
        }
    }
    return NULL;
}

static gint readers_stop;

/* Whatever is read is old (the backing's 0x5a) or new, never garbage. */
static gpointer reader_thread(gpointer opaque)
{
    Writer *wr = opaque;
    g_autofree uint8_t *buf = g_malloc(256 * KiB);

    while (!g_atomic_int_get(&readers_stop)) {
        int64_t off = g_random_int_range(0, wr->size / (256 * KiB)) * 256 * KiB;
        int64_t i;

        g_assert_cmpint(blk_pread(wr->blk, off, 256 * KiB, buf, 0), ==, 0);
        for (i = 0; i < 256 * KiB; i++) {
            int q = (off + i) % wr->cs / (wr->cs / NWRITERS);

            if (buf[i] != 0x5a && buf[i] != 0x10 + q) {
                g_error("garbage %#x at %" G_GINT64_FORMAT, buf[i], off + i);
            }
        }
    }
    return NULL;
}

static void test_concurrent_writers(void)
{
    Writer wr[NWRITERS + 1];
    GThread *th[NWRITERS + 1];
    BlockDriverState *bs;
    BlockBackend *blk;
    int64_t cs = 64 * KiB, size = 32 * MiB, part = cs / NWRITERS, c;
    g_autofree uint8_t *ref = g_malloc(size);
    g_autofree char *refpath = path_of("tref.raw");
    int i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 tbase.qcow2 32M");
    SH_OK("qemu-io -c 'write -P 0x5a 0 32M' tbase.qcow2");
    SH_OK("qemu-img create -q -f qcow2 -b tbase.qcow2 -F qcow2 t.qcow2 32M");
    bs = open_qcow2("t.qcow2", false, NULL, &error_abort);
    blk = attach(bs, true);
    g_atomic_int_set(&readers_stop, 0);
    for (i = 0; i <= NWRITERS; i++) {
        wr[i] = (Writer) { .blk = blk, .index = i, .cs = cs, .size = size };
        th[i] = g_thread_new("qcow2-test", i < NWRITERS ? writer_thread :
                             reader_thread, &wr[i]);
    }
    for (i = 0; i < NWRITERS; i++) {
        g_thread_join(th[i]);
    }
    g_atomic_int_set(&readers_stop, 1);
    g_thread_join(th[NWRITERS]);
    close_node(blk);

    for (c = 0; c < size; c += cs) {
        for (i = 0; i < NWRITERS; i++) {
            memset(ref + c + i * part, 0x10 + i, part);
        }
    }
    g_assert_true(g_file_set_contents(refpath, (char *)ref, size, NULL));
    assert_check_clean("t.qcow2");
    assert_same_as_raw("t.qcow2", "tref.raw");
}

typedef struct MixedWorker {
    BlockBackend *blk;
    uint8_t *ref;           /* shared; each worker owns its clusters' bytes */
    int index;
    int64_t cs, size;
} MixedWorker;

/* Random writes, zeroes and discards in the clusters c with c % 4 == index. */
static gpointer mixed_thread(gpointer opaque)
{
    MixedWorker *mw = opaque;
    int64_t nclusters = mw->size / mw->cs;
    g_autofree uint8_t *buf = g_malloc(mw->cs);
    GRand *r = g_rand_new_with_seed(mw->index);
    int i;

    for (i = 0; i < 400; i++) {
        int64_t c = g_rand_int_range(r, 0, nclusters / NWRITERS) * NWRITERS + mw->index;
        int64_t start = g_rand_int_range(r, 0, mw->cs);
        int64_t len = g_rand_int_range(r, 1, mw->cs - start + 1);
        int64_t off = c * mw->cs + start;

        switch (g_rand_int_range(r, 0, 6)) {
        case 0:
            g_assert_cmpint(blk_pdiscard(mw->blk, c * mw->cs, mw->cs), ==, 0);
            memset(mw->ref + c * mw->cs, 0, mw->cs);
            break;
        case 1:
            g_assert_cmpint(blk_pwrite_zeroes(mw->blk, off, len, BDRV_REQ_MAY_UNMAP),
                            ==, 0);
            memset(mw->ref + off, 0, len);
            break;
        default:
            memset(buf, g_rand_int(r), len);
            g_assert_cmpint(blk_pwrite(mw->blk, off, len, buf, 0), ==, 0);
            memcpy(mw->ref + off, buf, len);
        }
    }
    g_rand_free(r);
    return NULL;
}

static gpointer flusher_thread(gpointer opaque)
{
    BlockBackend *blk = opaque;

    while (!g_atomic_int_get(&readers_stop)) {
        g_assert_cmpint(blk_flush(blk), ==, 0);
        g_usleep(1000);
    }
    return NULL;
}

/* Neighbouring clusters, shared tables, flushes freeing clusters meanwhile. */
static void test_concurrent_mixed(void)
{
    MixedWorker mw[NWRITERS];
    GThread *th[NWRITERS], *flusher;
    BlockDriverState *bs;
    BlockBackend *blk;
    int64_t cs = 4 * KiB, size = 4 * MiB;
    g_autofree uint8_t *ref = g_malloc0(size);
    g_autofree char *refpath = path_of("mref.raw");
    int i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 -o cluster_size=4096 m.qcow2 4M");
    bs = open_qcow2("m.qcow2", false, NULL, &error_abort);
    blk = attach(bs, true);
    g_atomic_int_set(&readers_stop, 0);
    flusher = g_thread_new("flusher", flusher_thread, blk);
    for (i = 0; i < NWRITERS; i++) {
        mw[i] = (MixedWorker) { .blk = blk, .ref = ref, .index = i, .cs = cs,
                                .size = size };
        th[i] = g_thread_new("mixed", mixed_thread, &mw[i]);
    }
    for (i = 0; i < NWRITERS; i++) {
        g_thread_join(th[i]);
    }
    g_atomic_int_set(&readers_stop, 1);
    g_thread_join(flusher);
    close_node(blk);
    g_assert_true(g_file_set_contents(refpath, (char *)ref, size, NULL));
    assert_check_clean("m.qcow2");
    assert_same_as_raw("m.qcow2", "mref.raw");
}

/* With discard=unmap, freed clusters are punched out of the file too. */
static void test_discard_reaches_file(void)
{
    BlockDriverState *bs;
    BlockBackend *blk;
    g_autofree char *before = NULL, *after = NULL;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 d.qcow2 8M");
    SH_OK("qemu-io -c 'write -P 0x13 0 8M' d.qcow2");
    g_assert_cmpint(sh(&before, "du -k d.qcow2 | cut -f1"), ==, 0);
    bs = open_qcow2("d.qcow2", false, NULL, &error_abort);
    blk = attach(bs, true);
    g_assert_cmpint(blk_pdiscard(blk, 0, 6 * MiB), ==, 0);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    close_node(blk);
    g_assert_cmpint(sh(&after, "du -k d.qcow2 | cut -f1"), ==, 0);
    g_assert_cmpint(atoi(after), <, atoi(before) - 5 * 1024);
    assert_check_clean("d.qcow2");
}

/* ---- compressed writes ------------------------------------------------- */

#define L2E_COMPRESSED (UINT64_C(1) << 62)

/* The L2 entries of guest clusters [0, n), read from the file. */
static void read_l2_entries(const char *name, uint64_t *entries, int64_t n)
{
    g_autofree char *path = path_of(name);
    uint64_t l1_offset, l2_offset = 0, e;
    uint32_t cluster_bits;
    int64_t i, per_l2;
    int fd = open(path, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, &cluster_bits, 4, 20), ==, 4);
    per_l2 = (INT64_C(1) << GUINT32_FROM_BE(cluster_bits)) / 8;
    g_assert_cmpint(pread(fd, &l1_offset, 8, 40), ==, 8);
    l1_offset = GUINT64_FROM_BE(l1_offset);
    for (i = 0; i < n; i++) {
        if (i % per_l2 == 0) {
            g_assert_cmpint(pread(fd, &l2_offset, 8, l1_offset + i / per_l2 * 8), ==, 8);
            l2_offset = GUINT64_FROM_BE(l2_offset) & UINT64_C(0x00fffffffffffe00);
        }
        e = 0;
        if (l2_offset) {
            g_assert_cmpint(pread(fd, &e, 8, l2_offset + i % per_l2 * 8), ==, 8);
        }
        entries[i] = GUINT64_FROM_BE(e);
    }
    close(fd);
}

/* The host cluster where a compressed cluster's data starts. */
static uint64_t compressed_host_cluster(uint64_t entry, int cluster_bits)
{
    int x = 62 - (cluster_bits - 8);

    return (entry & ((UINT64_C(1) << x) - 1)) >> cluster_bits;
}

/* Cluster c: random bytes (deflate cannot shrink them), or text that deflates. */
static void fill_cluster(uint8_t *p, int64_t len, int64_t c, bool random)
{
    int64_t i = 0;

    if (random) {
        GRand *r = g_rand_new_with_seed(c);

        for (; i < len; i++) {
            p[i] = g_rand_int(r);
        }
        g_rand_free(r);
        return;
    }
    while (i < len) {
        g_autofree char *line = g_strdup_printf("cluster %" G_GINT64_FORMAT
                                                " line %" G_GINT64_FORMAT "\n",
                                                c, i / 24);

        memcpy(p + i, line, MIN(len - i, (int64_t)strlen(line)));
        i += strlen(line);
    }
}

/* What compressed_layout wrote where. */
enum { CL_TEXT, CL_RANDOM, CL_UNWRITTEN };

static int cluster_kind(int64_t c)
{
    return c % 7 == 3 ? CL_RANDOM : c % 7 == 5 ? CL_UNWRITTEN : CL_TEXT;
}

/*
 * An image of n whole clusters and a partial last one of tail bytes,
 * written with compressed writes (the first three clusters in one
 * request); then blkd, qemu-img convert and qemu-img compare must agree,
 * qemu-img check must be clean, text clusters must be compressed and
 * packed several to a host cluster, random ones written as they are.
 */
static void compressed_layout(const char *opts, int64_t cs, int64_t n,
                              int64_t tail)
{
    int64_t size = n * cs + tail, total = n + (tail > 0), c;
    g_autofree uint8_t *data = g_malloc0(size);
    g_autofree uint8_t *got = g_malloc(size);
    g_autofree uint64_t *entries = g_new(uint64_t, total);
    g_autofree char *refpath = path_of("cref.raw");
    g_autoptr(GHashTable) hosts = g_hash_table_new(g_int64_hash, g_int64_equal);
    g_autofree int64_t *host_ids = g_new(int64_t, total);
    g_autofree char *check = NULL;
    BlockDriverState *bs;
    BlockBackend *blk;
    int64_t ncompressed = 0;
    int cluster_bits = g_bit_storage(cs) - 1;

    SH_OK("qemu-img create -q -f qcow2 -o %s,cluster_size=%" G_GINT64_FORMAT
          " cw.qcow2 %" G_GINT64_FORMAT, opts, cs, size);
    for (c = 0; c < total; c++) {
        if (cluster_kind(c) != CL_UNWRITTEN) {
            fill_cluster(data + c * cs, MIN(cs, size - c * cs), c,
                         cluster_kind(c) == CL_RANDOM);
        }
    }
    bs = open_qcow2("cw.qcow2", false, NULL, &error_abort);
    blk = attach(bs, true);
    g_assert_cmpint(blk_pwrite(blk, 0, 3 * cs, data, BDRV_REQ_WRITE_COMPRESSED),
                    ==, 0);
    for (c = 3; c < total; c++) {
        if (cluster_kind(c) != CL_UNWRITTEN) {
            g_assert_cmpint(blk_pwrite(blk, c * cs, MIN(cs, size - c * cs),
                                       data + c * cs, BDRV_REQ_WRITE_COMPRESSED),
                            ==, 0);
        }
    }
    g_assert_cmpint(blk_pread(blk, 0, size, got, 0), ==, 0);
    g_assert_true(memcmp(got, data, size) == 0);
    close_node(blk);

    g_assert_true(g_file_set_contents(refpath, (char *)data, size, NULL));
    assert_check_clean("cw.qcow2");
    assert_same_as_raw("cw.qcow2", "cref.raw");
    assert_reads_like_qemu("cw.qcow2", NULL);
    g_assert_cmpint(sh(&check, "qemu-img check cw.qcow2"), ==, 0);
    g_assert_nonnull(strstr(check, "compressed clusters"));

    read_l2_entries("cw.qcow2", entries, total);
    for (c = 0; c < total; c++) {
        switch (cluster_kind(c)) {
        case CL_TEXT:
            g_assert_true(entries[c] & L2E_COMPRESSED);
            host_ids[ncompressed] = compressed_host_cluster(entries[c], cluster_bits);
            g_hash_table_add(hosts, &host_ids[ncompressed++]);
            break;
        case CL_RANDOM:
            /* Fallen back to a normal cluster. */
            g_assert_false(entries[c] & L2E_COMPRESSED);
            g_assert_cmpuint(entries[c] & UINT64_C(0x00fffffffffffe00), !=, 0);
            break;
        default:
            g_assert_cmpuint(entries[c], ==, 0);
        }
    }
    /* Packed: fewer host clusters than compressed clusters. */
    g_assert_cmpint(g_hash_table_size(hosts), <, ncompressed);
}

static void test_compressed_cluster_512(void)
{
    if (block_test_have_qemu_tools()) {
        compressed_layout("compat=1.1", 512, 100, 0);
    }
}

static void test_compressed_cluster_64k(void)
{
    if (block_test_have_qemu_tools()) {
        compressed_layout("compat=1.1", 64 * KiB, 40, 1536);
    }
}

static void test_compressed_cluster_2m(void)
{
    if (block_test_have_qemu_tools()) {
        compressed_layout("compat=1.1", 2 * MiB, 6, 1 * MiB);
    }
}

static void test_compressed_v2(void)
{
    if (block_test_have_qemu_tools()) {
        compressed_layout("compat=0.10", 4 * KiB, 30, 512);
    }
}

/*
 * Narrow refcounts: 1 bit leaves a host cluster per compressed cluster,
 * 2 bits three at most, as in QEMU; either way the image is clean.
 */
static void test_compressed_refcount_widths(void)
{
    static const int widths[] = { 1, 2 };
    size_t i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    for (i = 0; i < G_N_ELEMENTS(widths); i++) {
        g_autofree char *opts = g_strdup_printf("refcount_bits=%d", widths[i]);
        g_autofree uint64_t *entries = g_new(uint64_t, 64);
        g_autoptr(GHashTable) hosts = g_hash_table_new(g_int64_hash, g_int64_equal);
        g_autofree int64_t *ids = g_new(int64_t, 64);
        BlockDriverState *bs;
        BlockBackend *blk;
        uint8_t buf[4096];
        int64_t c;

        SH_OK("qemu-img create -q -f qcow2 -o %s,cluster_size=4096 rw.qcow2 256K",
              opts);
        bs = open_qcow2("rw.qcow2", false, NULL, &error_abort);
        blk = attach(bs, true);
        for (c = 0; c < 64; c++) {
            fill_cluster(buf, sizeof(buf), c, false);
            g_assert_cmpint(blk_pwrite(blk, c * 4096, 4096, buf,
                                       BDRV_REQ_WRITE_COMPRESSED), ==, 0);
        }
        close_node(blk);
        assert_check_clean("rw.qcow2");
        read_l2_entries("rw.qcow2", entries, 64);
        for (c = 0; c < 64; c++) {
            g_assert_true(entries[c] & L2E_COMPRESSED);
            ids[c] = compressed_host_cluster(entries[c], 12);
            g_hash_table_add(hosts, &ids[c]);
        }
        if (widths[i] == 1) {
            g_assert_cmpint(g_hash_table_size(hosts), ==, 64);
        } else {
            g_assert_cmpint(g_hash_table_size(hosts), >=, 64 / 3);
            g_assert_cmpint(g_hash_table_size(hosts), <, 64);
        }
    }
}

/*
 * QEMU's refusals: misaligned requests, a partial cluster before the end,
 * a cluster that has host data already; a plain zero cluster is fine; a
 * node without compressed writes says so.
 */
static void test_compressed_refusals(void)
{
    g_autofree char *rawpath = NULL;
    g_autofree char *rawjson = NULL;
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    BlockDriverState *bs, *raw;
    BlockBackend *blk;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 cr.qcow2 1M");
    SH_OK("qemu-io -c 'write -P 1 0 64K' -c 'write -z 128K 64K' cr.qcow2");
    fill_cluster(buf, 64 * KiB, 1, false);
    bs = open_qcow2("cr.qcow2", false, NULL, &error_abort);
    g_assert_true(bdrv_supports_compressed_writes(bs));
    blk = attach(bs, true);
    g_assert_cmpint(blk_pwrite(blk, 512, 64 * KiB, buf, BDRV_REQ_WRITE_COMPRESSED),
                    ==, -EINVAL);
    g_assert_cmpint(blk_pwrite(blk, 64 * KiB, 4 * KiB, buf, BDRV_REQ_WRITE_COMPRESSED),
                    ==, -EINVAL);
    g_assert_cmpint(blk_pwrite(blk, 0, 64 * KiB, buf, BDRV_REQ_WRITE_COMPRESSED),
                    ==, -EIO);
    g_assert_cmpint(blk_pwrite(blk, 128 * KiB, 64 * KiB, buf,
                               BDRV_REQ_WRITE_COMPRESSED), ==, 0);
    g_assert_cmpint(blk_pwrite(blk, 128 * KiB, 64 * KiB, buf,
                               BDRV_REQ_WRITE_COMPRESSED), ==, -EIO);
    close_node(blk);
    assert_check_clean("cr.qcow2");
    SH_OK("qemu-io -c 'read -P 1 0 64K' -c 'read -P 0 64K 64K' cr.qcow2");

    SH_OK("truncate -s 1M cr.raw");
    rawpath = path_of("cr.raw");
    rawjson = g_strdup_printf("{\"driver\": \"raw\", \"node-name\": \"r\","
                              " \"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}",
                              rawpath);
    raw = block_test_open(rawjson, &error_abort);
    g_assert_false(bdrv_supports_compressed_writes(raw));
    blk = attach(raw, true);
    g_assert_cmpint(blk_pwrite(blk, 0, 64 * KiB, buf, BDRV_REQ_WRITE_COMPRESSED),
                    ==, -ENOTSUP);
    blk_unref(blk);
    g_assert_true(bdrv_del_node("r", &error_abort));
}

typedef struct CompressWorker {
    BlockBackend *blk;
    uint8_t *ref;           /* shared; each worker owns its clusters' bytes */
    int index;
} CompressWorker;

/*
 * Worker i of NWRITERS - 1 writes its clusters compressed; the last one
 * writes plain data to the others meanwhile, so the arena and the pool
 * hand out clusters in turn.
 */
static gpointer compress_thread(gpointer opaque)
{
    CompressWorker *cw = opaque;
    int64_t cs = 64 * KiB, c;
    g_autofree uint8_t *buf = g_malloc(cs);

    for (c = cw->index; c < 256; c += NWRITERS) {
        if (cw->index == NWRITERS - 1) {
            memset(buf, c, cs);
            g_assert_cmpint(blk_pwrite(cw->blk, c * cs, cs, buf, 0), ==, 0);
        } else {
            fill_cluster(buf, cs, c, c % 11 == 0);
            g_assert_cmpint(blk_pwrite(cw->blk, c * cs, cs, buf,
                                       BDRV_REQ_WRITE_COMPRESSED), ==, 0);
        }
        memcpy(cw->ref + c * cs, buf, cs);
    }
    return NULL;
}

static void test_compressed_concurrent(void)
{
    CompressWorker cw[NWRITERS];
    GThread *th[NWRITERS];
    BlockBackend *blk;
    int64_t size = 256 * 64 * KiB;
    g_autofree uint8_t *ref = g_malloc0(size);
    g_autofree char *refpath = path_of("ccref.raw");
    int i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 cc.qcow2 16M");
    blk = attach(open_qcow2("cc.qcow2", false, NULL, &error_abort), true);
    for (i = 0; i < NWRITERS; i++) {
        cw[i] = (CompressWorker) { .blk = blk, .ref = ref, .index = i };
        th[i] = g_thread_new("compress", compress_thread, &cw[i]);
    }
    for (i = 0; i < NWRITERS; i++) {
        g_thread_join(th[i]);
    }
    close_node(blk);
    g_assert_true(g_file_set_contents(refpath, (char *)ref, size, NULL));
    assert_check_clean("cc.qcow2");
    assert_same_as_raw("cc.qcow2", "ccref.raw");
}

/* ---- layout and performance -------------------------------------------- */

/* A fresh image written front to back keeps its data in one extent. */
static void test_sequential_write_is_contiguous(void)
{
    BlockDriverState *bs;
    BlockBackend *blk;
    g_autofree uint8_t *buf = g_malloc(64 * KiB);
    g_autofree char *map = NULL;
    g_auto(GStrv) lines = NULL;
    int64_t off;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 seq.qcow2 64M");
    bs = open_qcow2("seq.qcow2", false, NULL, &error_abort);
    blk = attach(bs, true);
    memset(buf, 0x77, 64 * KiB);
    for (off = 0; off < 64 * MiB; off += 64 * KiB) {
        g_assert_cmpint(blk_pwrite(blk, off, 64 * KiB, buf, 0), ==, 0);
    }
    close_node(blk);
    assert_check_clean("seq.qcow2");
    g_assert_cmpint(sh(&map, "qemu-img map --output=json seq.qcow2"), ==, 0);
    /* One line: one extent of data, mapped contiguously. */
    lines = g_strsplit(map, "\n", -1);
    g_assert_cmpint(g_strv_length(lines), <=, 2);
    g_assert_nonnull(strstr(map, "\"length\": 67108864"));
}

/* ---- resizing ---------------------------------------------------------- */

static void test_grow_reads_zeroes(void)
{
    BlockDriverState *bs;
    BlockBackend *blk;
    g_autofree uint8_t *buf = g_malloc(2 * MiB);
    Error *err = NULL;
    int64_t i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    /* A longer backing file must not show through the new area. */
    SH_OK("qemu-img create -q -f qcow2 gbase.qcow2 4M");
    SH_OK("qemu-io -c 'write -P 0x66 0 4M' gbase.qcow2");
    SH_OK("qemu-img create -q -f qcow2 -o cluster_size=512 -b gbase.qcow2 -F qcow2 "
          "g.qcow2 1000K");
    SH_OK("qemu-io -c 'write -P 0x67 999K 1K' g.qcow2");
    bs = open_qcow2("g.qcow2", false, NULL, &error_abort);
    blk = attach(bs, true);
    g_assert_true(bdrv_truncate(bs, 3 * MiB + 512, &error_abort));
    g_assert_cmpint(blk_getlength(blk), ==, 3 * MiB + 512);
    g_assert_cmpint(blk_pread(blk, 1000 * KiB, 2 * MiB, buf, 0), ==, 0);
    for (i = 0; i < 2 * MiB; i++) {
        g_assert_cmpint(buf[i], ==, 0);
    }
    g_assert_false(bdrv_truncate(bs, 4 * MiB + 1, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "The new size must be a multiple of 512");
    g_clear_pointer(&err, error_free);
    close_node(blk);
    assert_check_clean("g.qcow2");
    SH_OK("qemu-img info g.qcow2 | grep -q 'virtual size: 3 MiB (3146240 bytes)'");

    /* v2 cannot say "zeroes" over a longer backing file: QEMU's error. */
    SH_OK("qemu-img create -q -f qcow2 -o compat=0.10 -b gbase.qcow2 -F qcow2 "
          "g2.qcow2 1M");
    bs = open_qcow2("g2.qcow2", false, NULL, &error_abort);
    g_assert_false(bdrv_truncate(bs, 2 * MiB, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Failed to zero out new clusters: Operation not supported");
    error_free(err);
    g_assert_true(bdrv_del_node("q", &error_abort));
}

static void test_shrink_then_grow(void)
{
    BlockDriverState *bs;
    BlockBackend *blk;
    g_autofree uint8_t *buf = g_malloc(4 * MiB);
    int64_t i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 s.qcow2 8M");
    SH_OK("qemu-io -c 'write -P 0x21 0 8M' s.qcow2");
    bs = open_qcow2("s.qcow2", false, NULL, &error_abort);
    blk = attach(bs, true);
    g_assert_true(bdrv_truncate(bs, 1000448, &error_abort));
    g_assert_true(bdrv_truncate(bs, 4 * MiB, &error_abort));
    g_assert_cmpint(blk_pread(blk, 0, 4 * MiB, buf, 0), ==, 0);
    for (i = 0; i < 4 * MiB; i++) {
        g_assert_cmpint(buf[i], ==, i < 1000448 ? 0x21 : 0);
    }
    close_node(blk);
    assert_check_clean("s.qcow2");
    SH_OK("test $(stat -c %%s s.qcow2) -lt 2000000");
}

/* ---- refusals ---------------------------------------------------------- */

/* Sets incompatible feature bits in a v3 header. */
static void set_incompat(const char *name, uint8_t byte7)
{
    SH_OK("printf '\\%03o' %d | dd of=%s bs=1 seek=79 conv=notrunc status=none",
          byte7, byte7, name);
}

static void test_refuse_encrypted(void)
{
    if (!block_test_have_qemu_tools()) {
        return;
    }
    /* AES as qemu-img makes it; LUKS by its method number (its key setup is slow). */
    SH_OK("qemu-img create -q -f qcow2 --object secret,id=s0,data=pw "
          "-o encrypt.format=aes,encrypt.key-secret=s0 aes.qcow2 1M");
    assert_open_fails("aes.qcow2", true, NULL,
                      "Encrypted qcow2 images are not supported (encryption method 1)");
    SH_OK("qemu-img create -q -f qcow2 luks.qcow2 1M");
    SH_OK("printf '\\002' | dd of=luks.qcow2 bs=1 seek=35 conv=notrunc status=none");
    assert_open_fails("luks.qcow2", true, NULL,
                      "Encrypted qcow2 images are not supported (encryption method 2)");
}

static void test_refuse_corrupt_read_write(void)
{
    BlockDriverState *bs;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 corrupt.qcow2 1M");
    set_incompat("corrupt.qcow2", 2);
    assert_open_fails("corrupt.qcow2", false, NULL,
                      "qcow2: Image is corrupt; cannot be opened read/write");
    bs = open_qcow2("corrupt.qcow2", true, NULL, &error_abort);
    g_assert_nonnull(bs);
    g_assert_true(bdrv_del_node("q", &error_abort));
}

static void test_refuse_dirty_read_write(void)
{
    BlockDriverState *bs;
    g_autoptr(BlockDeviceInfo) info = NULL;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 1M");
    set_incompat("dirty.qcow2", 1);
    assert_open_fails("dirty.qcow2", false, NULL, "qemu-img check -r all");
    bs = open_qcow2("dirty.qcow2", true, NULL, &error_abort);
    info = bdrv_query_node_info(bs, true);
    g_assert_true(info->image->dirty_flag);
    g_assert_true(bdrv_del_node("q", &error_abort));
}

static void test_refuse_extended_l2(void)
{
    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 -o extended_l2=on el2.qcow2 1M");
    assert_open_fails("el2.qcow2", true, NULL,
                      "qcow2 images with extended L2 entries are not supported");
}

static void test_refuse_data_file(void)
{
    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 -o data_file=df.raw df.qcow2 1M");
    assert_open_fails("df.qcow2", true, NULL,
                      "qcow2 images with an external data file are not supported");
}

static void test_refuse_zstd(void)
{
    g_autofree char *out = NULL;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    if (sh(&out, "qemu-img create -q -f qcow2 -o compression_type=zstd zs.qcow2 1M")) {
        g_test_skip("qemu-img without zstd");
        return;
    }
    assert_open_fails("zs.qcow2", true, NULL,
                      "qcow2 compression type zstd is not supported, only zlib");
}

static void test_refuse_not_qcow2(void)
{
    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("head -c 1000 /dev/zero > zeroes.img && : > empty.img");
    assert_open_fails("zeroes.img", true, NULL, "Image is not in qcow2 format");
    assert_open_fails("empty.img", true, NULL, "Image is not in qcow2 format");
}

static void test_refuse_unknown_feature(void)
{
    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 unk.qcow2 1M");
    set_incompat("unk.qcow2", 0x20);
    assert_open_fails("unk.qcow2", true, NULL,
                      "Unsupported qcow2 feature(s): Unknown incompatible feature: 5");
}

/* A backing file named without a format: refused unless 'backing' is given. */
static void test_backing_without_format(void)
{
    BlockDriverState *bs, *base;
    BlockBackend *blk;
    g_autofree char *path = path_of("nfbase.qcow2");
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"qcow2\", \"node-name\": \"nfb\", \"read-only\": true,"
        " \"file\": {\"driver\": \"file\", \"filename\": \"%s\"}}", path);
    uint8_t buf[512];

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 nfbase.qcow2 1M");
    SH_OK("qemu-io -c 'write -P 0x19 0 1M' nfbase.qcow2");
    SH_OK("qemu-img create -q -f qcow2 -b nfbase.qcow2 -F qcow2 nf.qcow2 1M");
    /* Rename the backing format extension to an unknown type. */
    SH_OK("printf '\\001\\002\\003\\004' | "
          "dd of=nf.qcow2 bs=1 seek=112 conv=notrunc status=none");
    assert_open_fails("nf.qcow2", true, NULL, "has no format in the image header");

    base = block_test_open(json, &error_abort);
    bs = open_qcow2("nf.qcow2", true, "\"backing\": \"nfb\"", &error_abort);
    blk = attach(bs, false);
    g_assert_cmpint(blk_pread(blk, 4096, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, 0x19);
    close_node(blk);

    bs = open_qcow2("nf.qcow2", true, "\"backing\": null", &error_abort);
    blk = attach(bs, false);
    g_assert_cmpint(blk_pread(blk, 4096, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(buf[0], ==, 0);
    close_node(blk);
    g_assert_true(base != NULL && bdrv_del_node("nfb", &error_abort));
}

/* An L2 table at an unaligned offset: reads fail, the image is marked. */
static void test_corruption_marks_image(void)
{
    g_autofree char *path = path_of("bad.qcow2");
    BlockDriverState *bs;
    BlockBackend *blk;
    uint64_t l1_offset, entry;
    uint8_t buf[512];
    int fd;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 bad.qcow2 1M");
    SH_OK("qemu-io -c 'write -P 1 0 64K' bad.qcow2");
    fd = open(path, O_RDWR);
    g_assert_cmpint(pread(fd, &l1_offset, 8, 40), ==, 8);
    l1_offset = GUINT64_FROM_BE(l1_offset);
    g_assert_cmpint(pread(fd, &entry, 8, l1_offset), ==, 8);
    entry = GUINT64_TO_BE(GUINT64_FROM_BE(entry) + 512);
    g_assert_cmpint(pwrite(fd, &entry, 8, l1_offset), ==, 8);
    close(fd);

    bs = open_qcow2("bad.qcow2", false, NULL, &error_abort);
    blk = attach(bs, true);
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, -EIO);
    close_node(blk);
    SH_OK("qemu-img info bad.qcow2 | grep -q 'corrupt: true'");
    assert_open_fails("bad.qcow2", false, NULL, "Image is corrupt");
}

/* ---- header bits ------------------------------------------------------- */

/*
 * The header extensions of image name, one line each: type, length and
 * data in hex; for the bitmaps extension only its count, as blkd moves
 * the directory when it marks the bitmaps in use.
 */
static char *extensions_of(const char *name)
{
    gsize len;
    g_autofree uint8_t *img = read_file(name, &len);
    GString *out = g_string_new(NULL);
    uint32_t off = qcow2_ld32(img + 100);

    while (off + 8 <= len && qcow2_ld32(img + off) != QCOW2_EXT_END) {
        uint32_t type = qcow2_ld32(img + off);
        uint32_t ext_len = qcow2_ld32(img + off + 4);
        uint32_t i;

        g_string_append_printf(out, "%08x %u ", type, ext_len);
        if (type == QCOW2_EXT_BITMAPS) {
            g_string_append_printf(out, "%u bitmaps",
                                   qcow2_ld32(img + off + 8));
        }
        for (i = 0; type != QCOW2_EXT_BITMAPS && i < ext_len; i++) {
            g_string_append_printf(out, "%02x", img[off + 8 + i]);
        }
        g_string_append_c(out, '\n');
        off += 8 + ((ext_len + 7) & ~7u);
    }
    return g_string_free(out, false);
}

/*
 * Unknown autoclear bits go on a read-write open; the bitmaps bit stays
 * (blkd keeps the bitmaps), and so do the extensions, byte for byte.
 */
static void test_autoclear_cleared(void)
{
    g_autofree char *before = NULL, *after = NULL;
    g_autofree uint8_t *img = NULL;
    BlockDriverState *bs;
    gsize len;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 ac.qcow2 1M");
    SH_OK("qemu-img bitmap --add ac.qcow2 b0");
    SH_OK("printf '\\200' | dd of=ac.qcow2 bs=1 seek=88 conv=notrunc status=none");
    before = extensions_of("ac.qcow2");
    bs = open_qcow2("ac.qcow2", false, NULL, &error_abort);
    g_assert_nonnull(bs);
    g_assert_true(bdrv_del_node("q", &error_abort));
    img = read_file("ac.qcow2", &len);
    g_assert_cmphex(qcow2_ld64(img + 88), ==, QCOW2_AUTOCLEAR_BITMAPS);
    after = extensions_of("ac.qcow2");
    g_assert_cmpstr(after, ==, before);
    g_assert_nonnull(strstr(after, "23852875 24 1 bitmaps"));
    assert_check_clean("ac.qcow2");
}

/* The data of the header extension of that type in image name, or NULL. */
static GBytes *header_extension(const char *name, uint32_t type)
{
    gsize len;
    g_autofree uint8_t *buf = read_file(name, &len);
    size_t off = GUINT32_FROM_BE(*(uint32_t *)(buf + 100));

    while (off + 8 <= len) {
        uint32_t t = GUINT32_FROM_BE(*(uint32_t *)(buf + off));
        uint32_t n = GUINT32_FROM_BE(*(uint32_t *)(buf + off + 4));

        if (t == 0) {
            break;
        }
        if (t == type) {
            return g_bytes_new(buf + off + 8, n);
        }
        off += 8 + ((n + 7) & ~7u);
    }
    return NULL;
}

/* The backing file the node's header names, as its query shows it. */
static char *node_backing_file(BlockDriverState *bs)
{
    g_autoptr(BlockDeviceInfo) info = bdrv_query_node_info(bs, true);

    return g_strdup_printf("%s %s", info->image->backing_filename ?: "",
                           info->image->backing_filename_format ?: "");
}

/* qemu-img info's backing file and format of image name ("" if none). */
static char *backing_of(const char *name)
{
    g_autofree char *out = NULL;

    SH_OK("qemu-img info --output=json %s > info.json", name);
    g_assert_cmpint(sh(&out, "python3 -c 'import json; i = json.load(open(\"info.json\"));"
                       " print(i.get(\"backing-filename\", \"\"),"
                       " i.get(\"backing-filename-format\", \"\"))'"), ==, 0);
    return g_strstrip(g_steal_pointer(&out));
}

static void test_change_backing_file(void)
{
    BlockDriverState *bs;
    g_autoptr(GBytes) features = NULL;
    g_autoptr(GBytes) features_after = NULL;
    g_autofree char *before = NULL, *after = NULL, *gone = NULL, *node = NULL;
    g_autofree char *too_long = g_strnfill(1024, 'x');

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 old.qcow2 1M");
    SH_OK("qemu-img create -q -f qcow2 -b old.qcow2 -F qcow2 cb.qcow2 1M");
    SH_OK("qemu-io -c 'write -P 0x5a 64k 64k' cb.qcow2");
    features = header_extension("cb.qcow2", 0x6803f857);
    g_assert_nonnull(features);
    before = backing_of("cb.qcow2");
    g_assert_cmpstr(before, ==, "old.qcow2 qcow2");

    bs = open_qcow2("cb.qcow2", false, "\"backing\": null", &error_abort);
    g_assert_cmpint(bdrv_change_backing_file(bs, "a-longer-name-for-the-new-base.img",
                                             "raw"), ==, 0);
    node = node_backing_file(bs);
    g_assert_cmpstr(node, ==, "a-longer-name-for-the-new-base.img raw");
    /* Names that do not fit are refused, the header left as it is. */
    g_assert_cmpint(bdrv_change_backing_file(bs, too_long, "raw"), ==, -EINVAL);
    g_assert_true(bdrv_del_node("q", &error_abort));
    after = backing_of("cb.qcow2");
    g_assert_cmpstr(after, ==, "a-longer-name-for-the-new-base.img raw");
    /* Other extensions stay byte for byte; the data stays. */
    features_after = header_extension("cb.qcow2", 0x6803f857);
    g_assert_true(g_bytes_equal(features, features_after));
    SH_OK("qemu-img create -q -f raw a-longer-name-for-the-new-base.img 1M");
    SH_OK("qemu-img check -q cb.qcow2");
    SH_OK("qemu-io -c 'read -P 0x5a 64k 64k' cb.qcow2");

    bs = open_qcow2("cb.qcow2", false, "\"backing\": null", &error_abort);
    g_assert_cmpint(bdrv_change_backing_file(bs, NULL, NULL), ==, 0);
    g_free(node);
    node = node_backing_file(bs);
    g_assert_cmpstr(node, ==, " ");
    g_assert_true(bdrv_del_node("q", &error_abort));
    gone = backing_of("cb.qcow2");
    g_assert_cmpstr(gone, ==, "");
    g_assert_null(header_extension("cb.qcow2", 0xe2792aca));
    SH_OK("qemu-img check -q cb.qcow2");
    SH_OK("qemu-io -c 'read -P 0x5a 64k 64k' -c 'read -P 0 0 64k' cb.qcow2");
}

static void test_change_backing_file_no_space(void)
{
    BlockDriverState *bs;
    g_autofree char *name = g_strnfill(600, 'y');
    g_autofree char *info = NULL, *node = NULL;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    /* A 512-byte first cluster has no room for a 600-byte name. */
    SH_OK("qemu-img create -q -f qcow2 -o cluster_size=512 -b old.qcow2 "
          "-F qcow2 small.qcow2 1M");
    bs = open_qcow2("small.qcow2", false, "\"backing\": null", &error_abort);
    g_assert_cmpint(bdrv_change_backing_file(bs, name, "qcow2"), ==, -ENOSPC);
    node = node_backing_file(bs);
    g_assert_cmpstr(node, ==, "old.qcow2 qcow2");
    g_assert_true(bdrv_del_node("q", &error_abort));
    info = backing_of("small.qcow2");
    g_assert_cmpstr(info, ==, "old.qcow2 qcow2");
    SH_OK("qemu-img check -q small.qcow2");
}

static void test_set_writable(void)
{
    BlockDriverState *bs;
    BlockBackend *blk;
    Error *err = NULL;
    char buf[4096];

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 ro.qcow2 1M");
    bs = open_qcow2("ro.qcow2", true, NULL, &error_abort);
    g_assert_true(bdrv_is_read_only(bdrv_file_bs(bs)));
    g_assert_true(bdrv_set_writable(bs, &error_abort));
    /* The file opened with it follows. */
    g_assert_false(bdrv_is_read_only(bs));
    g_assert_false(bdrv_is_read_only(bdrv_file_bs(bs)));
    blk = attach(bs, true);
    memset(buf, 0x77, sizeof(buf));
    g_assert_cmpint(blk_pwrite(blk, 8192, sizeof(buf), buf, 0), ==, 0);
    blk_unref(blk);
    g_assert_true(bdrv_set_read_only(bs, &error_abort));
    g_assert_true(bdrv_is_read_only(bdrv_file_bs(bs)));
    g_assert_true(bdrv_del_node("q", &error_abort));
    SH_OK("qemu-img check -q ro.qcow2");
    SH_OK("qemu-io -c 'read -P 0x77 8k 4k' ro.qcow2");

    /* What a read-write open refuses, going read-write refuses too. */
    SH_OK("qemu-img create -q -f qcow2 bad.qcow2 1M");
    set_incompat("bad.qcow2", 2);
    bs = open_qcow2("bad.qcow2", true, NULL, &error_abort);
    g_assert_false(bdrv_set_writable(bs, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "qcow2: Image is corrupt; cannot be opened read/write");
    error_free(err);
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_true(bdrv_is_read_only(bdrv_file_bs(bs)));
    g_assert_true(bdrv_del_node("q", &error_abort));
}

/* ---- crashes ----------------------------------------------------------- */

/* One request of the crash tests: data, compressed, zeroes, discard, flush. */
static void random_request(BlockBackend *blk, GRand *r, uint8_t *buf)
{
    int64_t len = g_rand_int_range(r, 1, 8 * KiB);
    int64_t off = g_rand_int_range(r, 0, 32 * MiB - len);

    memset(buf, g_rand_int(r), len);
    switch (g_rand_int_range(r, 0, 9)) {
    case 0:
        blk_pdiscard(blk, off, len * 64);
        break;
    case 1:
        blk_pwrite_zeroes(blk, off, len * 16, BDRV_REQ_MAY_UNMAP);
        break;
    case 2:
        blk_flush(blk);
        break;
    case 3:
        /* Whole clusters (512 bytes), packed; -EIO where data is. */
        blk_pwrite(blk, off & ~511, 1024, buf, BDRV_REQ_WRITE_COMPRESSED);
        break;
    default:
        blk_pwrite(blk, off, len, buf, 0);
    }
}

/* Where the flushed child's last write goes, and its pattern. */
#define LAST_WRITE_OFFSET   (5 * MiB + 100)
#define LAST_WRITE_BYTES    7000
#define LAST_WRITE_PATTERN  0xa5

/*
 * In a child process: with requests < 0, requests until killed; else that
 * many, a last write and a flush, then a line on stdout for the parent,
 * and it waits to be killed.
 */
static G_GNUC_NORETURN void crash_child(const char *image, int requests)
{
    BlockDriverState *bs;
    BlockBackend *blk;
    uint8_t *buf = g_malloc(8 * KiB);     /* the child only ends killed */
    GRand *r = g_rand_new();
    int i;

    tmpdir = g_path_get_dirname(image);
    bs = open_qcow2(image + strlen(tmpdir) + 1, false, NULL, &error_abort);
    blk = attach(bs, true);
    for (i = 0; requests < 0 || i < requests; i++) {
        random_request(blk, r, buf);
    }
    memset(buf, LAST_WRITE_PATTERN, LAST_WRITE_BYTES);
    g_assert_cmpint(blk_pwrite(blk, LAST_WRITE_OFFSET, LAST_WRITE_BYTES, buf,
                               0), ==, 0);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    printf("flushed\n");
    fflush(stdout);
    for (;;) {
        pause();
    }
}

/* Starts this program as crash_child(image, requests); its stdout is *out. */
static pid_t start_crash_child(const char *image, int requests, int *out)
{
    g_autofree char *n = g_strdup_printf("%d", requests);
    const char *argv[] = { "/proc/self/exe", NULL };
    g_auto(GStrv) env = g_environ_setenv(g_get_environ(), "QCOW2_CRASH_CHILD",
                                         image, true);
    int fds[2];
    pid_t pid;

    env = g_environ_setenv(env, "QCOW2_CRASH_REQUESTS", n, true);
    g_assert_cmpint(pipe(fds), ==, 0);
    pid = fork();
    if (pid == 0) {
        /* Nothing but async-signal-safe calls between fork and exec. */
        dup2(fds[1], STDOUT_FILENO);
        execve(argv[0], (char **)argv, env);
        _exit(127);
    }
    close(fds[1]);
    *out = fds[0];
    return pid;
}

static void kill_child(pid_t pid)
{
    int status;

    kill(pid, SIGKILL);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFSIGNALED(status));
}

static void test_kill_leaves_no_corruption(void)
{
    g_autofree char *image = path_of("crash.qcow2");
    int round;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 -o cluster_size=512 crash.qcow2 32M");
    for (round = 0; round < 6; round++) {
        g_autofree char *out = NULL;
        int fd, status;
        pid_t pid = start_crash_child(image, -1, &fd);

        g_usleep(g_test_rand_int_range(50, 400) * 1000);
        kill_child(pid);
        close(fd);
        /*
         * 0: clean; 3: leaked clusters only (docs/devel/qcow2.md, "What
         * a crash leaves"). Never corruption (2).
         */
        status = sh(&out, "qemu-img check crash.qcow2");
        if (status != 0 && status != 3) {
            g_error("after kill -9: %s", out);
        }
        if (status == 3) {
            SH_OK("qemu-img check -q -r leaks crash.qcow2");
        }
    }
    assert_reads_like_qemu("crash.qcow2", NULL);
}

/*
 * kill -9 once a flush is done leaves the image exactly right: no leaked
 * cluster, what was written before the flush there (the caches were
 * written back in order, refcounts first, and the frees applied).
 */
static void test_kill_after_flush_leaves_clean_image(void)
{
    g_autofree char *image = path_of("flushed.qcow2");
    int round;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f qcow2 -o cluster_size=512 flushed.qcow2 32M");
    for (round = 0; round < 6; round++) {
        g_autofree char *out = NULL;
        char line[16] = "";
        int fd;
        pid_t pid = start_crash_child(image, round * 100, &fd);

        g_assert_cmpint(read(fd, line, sizeof(line) - 1), >, 0);
        g_assert_cmpstr(line, ==, "flushed\n");
        kill_child(pid);
        close(fd);
        if (sh(&out, "qemu-img check flushed.qcow2") != 0) {
            g_error("after a flush and kill -9: %s", out);
        }
        SH_OK("qemu-io -c 'read -P %d %" G_GINT64_FORMAT " %d' flushed.qcow2",
              LAST_WRITE_PATTERN, LAST_WRITE_OFFSET, LAST_WRITE_BYTES);
    }
    assert_reads_like_qemu("flushed.qcow2", NULL);
}

int main(int argc, char **argv)
{
    const char *crash_image = g_getenv("QCOW2_CRASH_CHILD");

    main_loop_init();
    if (crash_image) {
        crash_child(crash_image, atoi(g_getenv("QCOW2_CRASH_REQUESTS")));
    }
    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("blkd-test-qcow2-XXXXXX", NULL);

    g_test_add_func("/qcow2/read/cluster-512", test_read_cluster_512);
    g_test_add_func("/qcow2/read/cluster-64k", test_read_cluster_64k);
    g_test_add_func("/qcow2/read/cluster-2m", test_read_cluster_2m);
    g_test_add_func("/qcow2/read/v2", test_read_v2);
    g_test_add_func("/qcow2/read/compressed", test_read_compressed);
    g_test_add_func("/qcow2/read/backing-chain", test_read_backing_chain);
    g_test_add_func("/qcow2/status/cluster-kinds", test_block_status_kinds);
    g_test_add_func("/qcow2/query/info", test_query_info);
    g_test_add_func("/qcow2/write/cluster-512", test_write_cluster_512);
    g_test_add_func("/qcow2/write/cluster-64k", test_write_cluster_64k);
    g_test_add_func("/qcow2/write/cluster-2m", test_write_cluster_2m);
    g_test_add_func("/qcow2/write/v2", test_write_v2);
    g_test_add_func("/qcow2/write/over-backing", test_write_over_backing);
    g_test_add_func("/qcow2/write/v2-over-backing", test_write_v2_over_backing);
    g_test_add_func("/qcow2/write/cache-direct", test_write_cache_direct);
    g_test_add_func("/qcow2/write/refcount-widths", test_write_refcount_widths);
    g_test_add_func("/qcow2/write/over-compressed", test_write_over_compressed);
    g_test_add_func("/qcow2/write/keeps-snapshot", test_write_keeps_snapshot);
    g_test_add_func("/qcow2/compressed/cluster-512", test_compressed_cluster_512);
    g_test_add_func("/qcow2/compressed/cluster-64k", test_compressed_cluster_64k);
    g_test_add_func("/qcow2/compressed/cluster-2m", test_compressed_cluster_2m);
    g_test_add_func("/qcow2/compressed/v2", test_compressed_v2);
    g_test_add_func("/qcow2/compressed/refcount-widths",
                    test_compressed_refcount_widths);
    g_test_add_func("/qcow2/compressed/refusals", test_compressed_refusals);
    g_test_add_func("/qcow2/compressed/concurrent", test_compressed_concurrent);
    g_test_add_func("/qcow2/write/concurrent", test_concurrent_writers);
    g_test_add_func("/qcow2/write/concurrent-mixed", test_concurrent_mixed);
    g_test_add_func("/qcow2/discard/reaches-file", test_discard_reaches_file);
    g_test_add_func("/qcow2/write/sequential-is-contiguous",
                    test_sequential_write_is_contiguous);
    g_test_add_func("/qcow2/resize/grow-reads-zeroes", test_grow_reads_zeroes);
    g_test_add_func("/qcow2/resize/shrink-then-grow", test_shrink_then_grow);
    g_test_add_func("/qcow2/refuse/encrypted", test_refuse_encrypted);
    g_test_add_func("/qcow2/refuse/corrupt-read-write", test_refuse_corrupt_read_write);
    g_test_add_func("/qcow2/refuse/dirty-read-write", test_refuse_dirty_read_write);
    g_test_add_func("/qcow2/refuse/extended-l2", test_refuse_extended_l2);
    g_test_add_func("/qcow2/refuse/data-file", test_refuse_data_file);
    g_test_add_func("/qcow2/refuse/zstd", test_refuse_zstd);
    g_test_add_func("/qcow2/refuse/unknown-feature", test_refuse_unknown_feature);
    g_test_add_func("/qcow2/copy-range/from-data-and-backing",
                    test_copy_range_from_data_and_backing);
    g_test_add_func("/qcow2/refuse/not-qcow2", test_refuse_not_qcow2);
    g_test_add_func("/qcow2/corruption/marks-image", test_corruption_marks_image);
    g_test_add_func("/qcow2/backing/without-format", test_backing_without_format);
    g_test_add_func("/qcow2/header/autoclear-cleared", test_autoclear_cleared);
    g_test_add_func("/qcow2/header/change-backing-file", test_change_backing_file);
    g_test_add_func("/qcow2/header/change-backing-file-no-space",
                    test_change_backing_file_no_space);
    g_test_add_func("/qcow2/header/set-writable", test_set_writable);
    g_test_add_func("/qcow2/crash/kill-leaves-no-corruption",
                    test_kill_leaves_no_corruption);
    g_test_add_func("/qcow2/crash/kill-after-flush-leaves-clean-image",
                    test_kill_after_flush_leaves_clean_image);
    return qcow2_test_run();
}
