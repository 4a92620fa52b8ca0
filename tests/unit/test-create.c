/*
 * Creating images: blockdev-create's qcow2 jobs and bdrv_img_create(),
 * against qemu-img. Where QEMU would lay the image out the same way the
 * files must be byte for byte what `qemu-img create` writes; every image
 * must pass `qemu-img check`, open in blkd, take writes there and read
 * back in qemu-io. Skips without qemu-img/qemu-io.
 */
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include "job-test-helpers.h"
#include "block/create.h"
#include "qapi-commands.h"
#include "qapi-visit.h"
#include "util/json-stream.h"

#define SH_OK(...) BLOCK_TEST_SH_OK(block_test_dir(), __VA_ARGS__)

static char *path_of(const char *name)
{
    return g_build_filename(block_test_dir(), name, NULL);
}

/*
 * Runs blockdev-create with the qcow2 options json (without "driver" and
 * "file") on a new empty file name, to the end. Returns the job's error,
 * or NULL.
 */
static char *create_qcow2(const char *name, const char *json)
{
    g_autofree char *path = block_test_file(name, 0);
    g_autofree char *text = g_strdup_printf(
        "{\"driver\": \"qcow2\", \"file\": {\"driver\": \"file\", "
        "\"filename\": \"%s\"}, %s}", path, json);
    json_t *tree = json_parse_text(text, &error_abort);
    g_autoptr(BlockdevCreateOptions) opts = NULL;
    g_autoptr(JobInfo) info = NULL;
    QapiDecoder d;

    qapi_decoder_init(&d, false);
    qapi_decode_BlockdevCreateOptions(&d, NULL, tree, &opts, &error_abort);
    qapi_decoder_cleanup(&d);
    json_decref(tree);
    g_assert_true(qmp_blockdev_create("c0", opts, &error_abort));
    JOB_TEST_WAIT(job_status(job_get("c0")) == JOB_STATUS_CONCLUDED);
    info = job_query(job_get("c0"));
    g_assert_true(qmp_job_dismiss("c0", &error_abort));
    return g_steal_pointer(&info->error);
}

/* Writes a pattern through blkd at offsets spread over the image. */
static void write_through_blkd(const char *name)
{
    g_autofree char *path = path_of(name);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"qcow2\", \"node-name\": \"q\", \"file\": "
        "{\"driver\": \"file\", \"filename\": \"%s\"}}", path);
    BlockDriverState *bs = block_test_open(json, &error_abort);
    BlockBackend *blk = block_test_backend(bs, "test", BLOCK_TEST_RW,
                                           BLK_PERM_ALL);
    int64_t len = blk_getlength(blk);
    uint8_t buf[4096];

    memset(buf, 0x5a, sizeof(buf));
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(blk, len / 2 + 512, sizeof(buf), buf, 0), ==, 0);
    g_assert_cmpint(blk_pwrite(blk, len - sizeof(buf), sizeof(buf), buf, 0),
                    ==, 0);
    blk_unref(blk);
    g_assert_true(bdrv_del_node("q", &error_abort));
}

/* qemu-img info, as JSON, without what differs between two files. */
static json_t *info_of(const char *name)
{
    g_autofree char *path = path_of("info.json");
    json_t *info;

    SH_OK("qemu-img info --output=json %s > info.json", name);
    info = json_load_file(path, 0, NULL);
    g_assert_nonnull(info);
    json_object_del(info, "filename");
    json_object_del(info, "actual-size");
    json_object_del(info, "dirty-flag");
    return info;
}

/*
 * qemu-img check is clean after blkd wrote to the image (of at least 8
 * KiB), and qemu-io reads what blkd wrote.
 */
static void assert_usable(const char *name, int64_t len)
{
    if (len == 0) {
        return;
    }
    write_through_blkd(name);
    SH_OK("qemu-img check %s", name);
    SH_OK("qemu-io -c 'read -P 0x5a 0 4k' -c 'read -P 0x5a %" G_GINT64_FORMAT
          " 4k' -c 'read -P 0x5a %" G_GINT64_FORMAT " 4k' -c 'read -P 0 4k 4k'"
          " %s", len / 2 + 512, len - 4096, name);
}

/* ---- blockdev-create, as qemu-img create ---------------------------------- */

static const struct {
    int64_t size;
    const char *json;           /* blockdev-create's other options */
    const char *qemu_img;       /* qemu-img create's */
    bool same_layout;           /* QEMU's allocator places it as blkd does */
} like_qemu[] = {
    { 1 << 30, "", "", true },
    { 0, "", "", true },
    { 1 << 30, ", \"cluster-size\": 2097152", "-o cluster_size=2M", true },
    { 64 << 20, ", \"refcount-bits\": 1", "-o refcount_bits=1", true },
    { 64 << 20, ", \"lazy-refcounts\": true, \"refcount-bits\": 64",
      "-o lazy_refcounts=on,refcount_bits=64", true },
    { 64 << 20, ", \"version\": \"v2\", \"cluster-size\": 512, "
      "\"backing-file\": \"base.raw\", \"backing-fmt\": \"raw\"",
      "-u -b base.raw -F raw -o compat=0.10,cluster_size=512", true },
    { (64 << 20) + 1536, ", \"preallocation\": \"metadata\"",
      "-o preallocation=metadata", true },
    { INT64_C(1) << 44, "", "", true },
    /*
     * QEMU puts the refcount blocks between the L2 tables, and moves the
     * refcount table when it outgrows its cluster.
     */
    { 2 << 20, ", \"cluster-size\": 512, \"refcount-bits\": 64, "
      "\"preallocation\": \"metadata\"",
      "-o cluster_size=512,refcount_bits=64,preallocation=metadata", false },
    /* QEMU allocates the data first, and moves the refcount table. */
    { 16 << 20, ", \"preallocation\": \"falloc\"", "-o preallocation=falloc",
      false },
    { 1 << 20, ", \"cluster-size\": 512, \"preallocation\": \"full\"",
      "-o cluster_size=512,preallocation=full", false },
};

static void test_create_like_qemu_img(void)
{
    guint i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f raw base.raw 64M");
    for (i = 0; i < G_N_ELEMENTS(like_qemu); i++) {
        g_autofree char *json = g_strdup_printf(
            "\"size\": %" G_GINT64_FORMAT "%s", like_qemu[i].size,
            like_qemu[i].json);
        g_autofree char *err = NULL, *statuses = NULL;
        json_t *ours, *theirs;

        g_test_message("%s", json);
        job_test_reset();
        err = create_qcow2("blkd.qcow2", json);
        g_assert_null(err);
        statuses = job_test_statuses("c0");
        g_assert_cmpstr(statuses, ==,
                        "created,running,waiting,pending,concluded,null");
        SH_OK("qemu-img create -q -f qcow2 %s qemu.qcow2 %" G_GINT64_FORMAT,
              like_qemu[i].qemu_img, like_qemu[i].size);
        if (like_qemu[i].same_layout) {
            SH_OK("cmp blkd.qcow2 qemu.qcow2");
        } else {
            SH_OK("qemu-img check blkd.qcow2");
        }
        ours = info_of("blkd.qcow2");
        theirs = info_of("qemu.qcow2");
        g_assert_true(json_equal(ours, theirs));
        json_decref(ours);
        json_decref(theirs);
        assert_usable("blkd.qcow2", like_qemu[i].size);
    }
}

/* Each with QEMU's text, or blkd's refusal where QEMU would go on. */
static const struct {
    const char *json;
    const char *error;
} refused[] = {
    { "\"size\": 1000", "Image size must be a multiple of 512 bytes" },
    { "\"size\": 65536, \"cluster-size\": 1000",
      "Cluster size must be a power of two between 512 and 2048k" },
    { "\"size\": 65536, \"cluster-size\": 4194304",
      "Cluster size must be a power of two between 512 and 2048k" },
    { "\"size\": 65536, \"version\": \"v2\", \"refcount-bits\": 8",
      "Different refcount widths than 16 bits require compatibility level "
      "1.1 or above (use version=v3 or greater)" },
    { "\"size\": 65536, \"refcount-bits\": 128",
      "Refcount width must be a power of two and may not exceed 64 bits" },
    { "\"size\": 65536, \"version\": \"v2\", \"lazy-refcounts\": true",
      "Lazy refcounts only supported with compatibility level 1.1 and above "
      "(use version=v3 or greater)" },
    { "\"size\": 65536, \"backing-fmt\": \"raw\"",
      "Backing format cannot be used without backing file" },
    { "\"size\": 65536, \"backing-file\": \"b\", \"preallocation\": \"full\"",
      "Backing file and preallocation can only be used at the same time if "
      "extended_l2 is on" },
    { "\"size\": 4611686018427387904",
      "Could not resize image: Failed to grow the L1 table: File too large" },
    { "\"size\": 65536, \"cluster-size\": 512, \"backing-fmt\": \"qcow2\", "
      "\"backing-file\": \"" "0123456789012345678901234567890123456789"
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "\"",
      "Could not assign backing file '0123456789012345678901234567890123456789"
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "0123456789012345678901234567890123456789012345678901234567890123456789"
      "' with format 'qcow2': No space left on device" },
    { "\"size\": 65536, \"extended-l2\": true",
      "qcow2 images with extended L2 entries are not supported" },
    { "\"size\": 65536, \"data-file\": {\"driver\": \"null-co\"}",
      "qcow2 images with an external data file are not supported" },
    { "\"size\": 65536, \"compression-type\": \"zstd\"",
      "qcow2 compression type zstd is not supported, only zlib" },
    { "\"size\": 65536, \"encrypt\": {\"format\": \"luks\"}",
      "Encrypted qcow2 images are not supported" },
};

static void test_create_refusals(void)
{
    guint i;

    for (i = 0; i < G_N_ELEMENTS(refused); i++) {
        g_autofree char *path = path_of("refused.qcow2");
        g_autofree char *err = NULL;
        g_autofree char *statuses = NULL;
        GStatBuf st;

        job_test_reset();
        err = create_qcow2("refused.qcow2", refused[i].json);
        g_assert_cmpstr(err, ==, refused[i].error);
        statuses = job_test_statuses("c0");
        g_assert_cmpstr(statuses, ==, "created,running,aborting,concluded,null");
        /* Refused before anything was written. */
        g_assert_cmpint(g_stat(path, &st), ==, 0);
        g_assert_cmpint(st.st_size, ==, 0);
    }
}

/* ---- bdrv_img_create ----------------------------------------------------- */

static void test_img_create_qcow2_like_qemu_img(void)
{
    static const struct {
        const char *backing, *fmt;
        int64_t size;
        const char *qemu_img;
    } cases[] = {
        { NULL, NULL, 1 << 30, "" },
        { "base.raw", "raw", 64 << 20, "-u -b base.raw -F raw" },
        { "base.qcow2", "qcow2", 1000, "-u -b base.qcow2 -F qcow2" },
    };
    guint i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-img create -q -f raw base.raw 64M");
    SH_OK("qemu-img create -q -f qcow2 base.qcow2 64M");
    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = path_of("img.qcow2");

        g_assert_true(bdrv_img_create(path, "qcow2", cases[i].backing,
                                      cases[i].fmt, cases[i].size,
                                      &error_abort));
        SH_OK("qemu-img create -q -f qcow2 %s qemu.qcow2 %" G_GINT64_FORMAT,
              cases[i].qemu_img, cases[i].size);
        SH_OK("cmp img.qcow2 qemu.qcow2");
        SH_OK("qemu-img check img.qcow2");
    }
}

static void test_img_create_overwrites(void)
{
    g_autofree char *path = block_test_file("over.img", 8 << 20);
    g_autofree char *contents = NULL;
    gsize len;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    SH_OK("qemu-io -f raw -c 'write -P 0x33 0 8M' over.img");
    /* raw: the size rounded up to 512, as QEMU does, and all zero. */
    g_assert_true(bdrv_img_create(path, "raw", NULL, NULL, 1000, &error_abort));
    g_assert_true(g_file_get_contents(path, &contents, &len, NULL));
    g_assert_cmpuint(len, ==, 1024);
    g_assert_true(contents[0] == 0 && !memcmp(contents, contents + 1, len - 1));

    SH_OK("qemu-io -f raw -c 'write -P 0x33 0 1k' over.img");
    g_assert_true(bdrv_img_create(path, "qcow2", NULL, NULL, 4 << 20,
                                  &error_abort));
    SH_OK("qemu-img check over.img");
    assert_usable("over.img", 4 << 20);
}

static void test_img_create_refusals(void)
{
    static const struct {
        const char *fmt, *backing, *backing_fmt;
        int64_t size;
        const char *error;
    } cases[] = {
        { "vmdk", NULL, NULL, 0, "Unknown file format 'vmdk'" },
        { "null-co", NULL, NULL, 0,
          "Format driver 'null-co' does not support image creation" },
        { "raw", "b", NULL, 0,
          "Backing file not supported for file format 'raw'" },
        { "raw", NULL, "raw", 0,
          "Backing file format not supported for file format 'raw'" },
        { "qcow2", "", "raw", 0,
          "Expected backing file name, got empty string" },
        { "qcow2", "b", "vmdk", 0,
          "Parameter 'backing-fmt' does not accept value 'vmdk'" },
        { "qcow2", NULL, NULL, -1, "Image creation needs a size parameter" },
        { "qcow2", NULL, NULL, INT64_C(1) << 62,
          "The image size is too large for file format 'qcow2'" },
    };
    g_autofree char *path = path_of("refused.img");
    Error *err = NULL;
    guint i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_assert_false(bdrv_img_create(path, cases[i].fmt, cases[i].backing,
                                       cases[i].backing_fmt, cases[i].size,
                                       &err));
        g_assert_cmpstr(error_get_pretty(err), ==, cases[i].error);
        g_clear_pointer(&err, error_free);
        /* Refused before the file was made, or removed again. */
        g_assert_cmpint(access(path, F_OK), ==, -1);
    }
    g_assert_false(bdrv_img_create(path, "qcow2", path, "raw", 0, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Error: Trying to create an "
                    "image with the same filename as the backing file");
    error_free(err);
}

int main(int argc, char **argv)
{
    job_test_init(&argc, &argv);
    g_test_add_func("/create/qcow2/like-qemu-img", test_create_like_qemu_img);
    g_test_add_func("/create/qcow2/refusals", test_create_refusals);
    g_test_add_func("/create/img/qcow2-like-qemu-img",
                    test_img_create_qcow2_like_qemu_img);
    g_test_add_func("/create/img/overwrites", test_img_create_overwrites);
    g_test_add_func("/create/img/refusals", test_img_create_refusals);
    return block_test_run();
}
