/* What the block layer's unit tests share; see block-test-helpers.h. */
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "block-test-helpers.h"
#include "block/block_int.h"
#include "qapi/event.h"
#include "qapi-visit.h"
#include "util/json-stream.h"
#include "util/main-loop.h"

static char *scratch_dir;

GMutex block_test_events_lock;
GPtrArray *block_test_events;

void qapi_event_emit(const char *name, json_t *data)
{
    json_t *ev = json_pack("{s:s}", "event", name);

    json_object_set_new(ev, "data", data ? data : json_object());
    g_mutex_lock(&block_test_events_lock);
    g_ptr_array_add(block_test_events, ev);
    g_mutex_unlock(&block_test_events_lock);
}

void block_test_init(int *argc, char ***argv)
{
    block_test_events = g_ptr_array_new_with_free_func(
        (GDestroyNotify)json_decref);
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
    g_clear_pointer(&block_test_events, g_ptr_array_unref);
    return ret;
}

const char *block_test_dir(void)
{
    return scratch_dir;
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

char *block_test_blkdebug_json(const char *node, int64_t size, const char *rules)
{
    g_autofree char *name = g_strdup_printf("%s.img", node);
    g_autofree char *path = block_test_file(name, size);

    return g_strdup_printf("{\"driver\": \"blkdebug\", \"node-name\": \"%s\","
                           " \"inject-error\": %s, \"image\":"
                           " {\"driver\": \"file\", \"filename\": \"%s\"}}",
                           node, rules, path);
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

static GMutex gate_lock;
static GCond gate_cond;
static bool gate_hold, gate_entered, gate_released;

static int gate_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       void *buf, BdrvRequestFlags flags)
{
    g_mutex_lock(&gate_lock);
    if (gate_hold) {
        gate_hold = false;
        gate_entered = true;
        g_cond_broadcast(&gate_cond);
        while (!gate_released) {
            g_cond_wait(&gate_cond, &gate_lock);
        }
    }
    g_mutex_unlock(&gate_lock);
    return bdrv_pread(bs->file, offset, bytes, buf, flags);
}

static int gate_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        const void *buf, BdrvRequestFlags flags)
{
    return bdrv_pwrite(bs->file, offset, bytes, buf, flags);
}

static int64_t gate_getlength(BlockDriverState *bs)
{
    return bdrv_child_getlength(bs->file);
}

static const BlockDriver gate_driver = {
    .format_name = "test-gate",
    .is_filter = true,
    .getlength = gate_getlength,
    .preadv = gate_preadv,
    .pwritev = gate_pwritev,
};

BlockDriverState *block_test_gate_new(const char *node_name,
                                      BlockDriverState *child)
{
    return bdrv_new_filter(&gate_driver, node_name, false, child, &error_abort);
}

void block_test_gate_hold(void)
{
    g_mutex_lock(&gate_lock);
    gate_hold = true;
    gate_entered = gate_released = false;
    g_mutex_unlock(&gate_lock);
}

void block_test_gate_wait(void)
{
    g_mutex_lock(&gate_lock);
    while (!gate_entered) {
        g_cond_wait(&gate_cond, &gate_lock);
    }
    g_mutex_unlock(&gate_lock);
}

void block_test_gate_release(void)
{
    g_mutex_lock(&gate_lock);
    gate_released = true;
    g_cond_broadcast(&gate_cond);
    g_mutex_unlock(&gate_lock);
}

bool block_test_have_qemu_tools(void)
{
    g_autofree char *img = g_find_program_in_path("qemu-img");
    g_autofree char *io = g_find_program_in_path("qemu-io");

    if (!img || !io) {
        g_test_skip("qemu-img or qemu-io missing");
        return false;
    }
    return true;
}

int block_test_sh(const char *dir, char **out, const char *fmt, ...)
{
    g_autofree char *cmd = NULL;
    g_autofree char *o = NULL, *e = NULL;
    const char *argv[] = { "/bin/sh", "-c", NULL, NULL };
    g_autoptr(GError) err = NULL;
    int status;
    va_list ap;

    va_start(ap, fmt);
    cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    argv[2] = cmd;
    g_assert_true(g_spawn_sync(dir, (char **)argv, NULL, 0, NULL, NULL,
                               &o, &e, &status, &err));
    if (out) {
        *out = g_strconcat(o, e, NULL);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}
