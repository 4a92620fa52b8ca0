/* What the block layer's unit tests share; see block-test-helpers.h. */
#include <fcntl.h>
#include <unistd.h>

#include "block-test-helpers.h"
#include "qapi-visit.h"
#include "util/json-stream.h"
#include "util/main-loop.h"

static char *scratch_dir;

void block_test_init(int *argc, char ***argv)
{
    g_test_init(argc, argv, NULL);
    main_loop_init();
    scratch_dir = g_dir_make_tmp("blkd-unit-XXXXXX", NULL);
    g_assert_nonnull(scratch_dir);
}

int block_test_run(void)
{
    g_autofree char *rm = NULL;
    int ret = g_test_run();

    rm = g_strdup_printf("rm -rf %s", scratch_dir);
    g_assert_true(g_spawn_command_line_sync(rm, NULL, NULL, NULL, NULL));
    g_clear_pointer(&scratch_dir, g_free);
    return ret;
}

char *block_test_file(const char *name, int64_t size)
{
    char *path = g_build_filename(scratch_dir, name, NULL);
    int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    close(fd);
    return path;
}

BlockDriverState *block_test_open(const char *json, Error **errp)
{
    json_t *tree = json_parse_text(json, &error_abort);
    g_autoptr(BlockdevOptions) opts = NULL;
    BlockDriverState *bs = NULL;
    QapiDecoder d;

    qapi_decoder_init(&d, false);
    if (qapi_decode_BlockdevOptions(&d, NULL, tree, &opts, errp)) {
        bs = bdrv_open_options(opts, errp);
    }
    qapi_decoder_cleanup(&d);
    json_decref(tree);
    return bs;
}

BlockBackend *block_test_backend(BlockDriverState *bs, const char *owner,
                                 uint64_t perm, uint64_t shared)
{
    BlockBackend *blk = blk_new(owner, perm, shared);

    g_assert_true(blk_insert_bs(blk, bs, &error_abort));
    return blk;
}
