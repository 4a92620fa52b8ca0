/* What the qcow2 tests share; see qcow2-test-helpers.h. */
#include <string.h>

#include "qcow2-test-helpers.h"

char *tmpdir;

char *path_of(const char *name)
{
    return g_build_filename(tmpdir, name, NULL);
}

BlockDriverState *open_qcow2(const char *name, bool read_only,
                             const char *extra, Error **errp)
{
    g_autofree char *path = path_of(name);
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"qcow2\", \"node-name\": \"q\", \"discard\": \"unmap\","
        " \"read-only\": %s, \"file\": {\"driver\": \"file\", \"filename\": \"%s\"}%s%s}",
        read_only ? "true" : "false", path, extra ? ", " : "", extra ? extra : "");

    return block_test_open(json, errp);
}

BlockBackend *attach(BlockDriverState *bs, bool write)
{
    return block_test_backend(bs, "test", write ? BLOCK_TEST_RW :
                              BLK_PERM_CONSISTENT_READ, BLK_PERM_ALL);
}

void close_node(BlockBackend *blk)
{
    blk_unref(blk);
    g_assert_true(bdrv_del_node("q", &error_abort));
}

uint8_t *read_file(const char *name, gsize *len)
{
    g_autofree char *path = path_of(name);
    char *data;

    g_assert_true(g_file_get_contents(path, &data, len, NULL));
    return (uint8_t *)data;
}

void assert_reads_like_qemu(const char *name, const char *extra)
{
    BlockDriverState *bs = open_qcow2(name, true, extra, &error_abort);
    BlockBackend *blk = attach(bs, false);
    int64_t len = blk_getlength(blk);
    g_autofree uint8_t *got = g_malloc(len);
    g_autofree uint8_t *want = NULL;
    gsize want_len;

    g_assert_cmpint(blk_pread(blk, 0, len, got, 0), ==, 0);
    close_node(blk);
    SH_OK("qemu-img convert -O raw %s expect.raw", name);
    want = read_file("expect.raw", &want_len);
    g_assert_cmpint(want_len, ==, len);
    g_assert_true(memcmp(got, want, len) == 0);
}

void assert_check_clean(const char *name)
{
    SH_OK("qemu-img check %s", name);
}

void assert_same_as_raw(const char *name, const char *raw)
{
    SH_OK("qemu-img compare -f qcow2 -F raw %s %s", name, raw);
}

void assert_open_fails(const char *name, bool read_only, const char *extra,
                       const char *text)
{
    Error *err = NULL;

    g_assert_null(open_qcow2(name, read_only, extra, &err));
    g_assert_nonnull(err);
    if (!strstr(error_get_pretty(err), text)) {
        g_error("'%s' does not contain '%s'", error_get_pretty(err), text);
    }
    error_free(err);
}

int qcow2_test_run(void)
{
    int ret = g_test_run();

    if (g_getenv("QCOW2_TEST_KEEP")) {
        g_printerr("images kept in %s\n", tmpdir);
    } else {
        g_autofree char *cmd = g_strdup_printf("rm -rf %s", tmpdir);

        if (system(cmd) != 0) {
            ret = 1;
        }
    }
    g_free(tmpdir);
    return ret;
}
