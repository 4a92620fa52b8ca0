/*
 * The copy-on-read filter: reads through it copy what the backing chain
 * holds into its node, and a copy never overwrites what guests write
 * meanwhile. Writers, readers and a streaming reader run at once through
 * the filter; at the end the disk is what the writers wrote over the
 * backing file, the node holds all of it, and qemu-img check and compare
 * agree. Skips without qemu-img.
 */
#include <string.h>

#include "block-test-helpers.h"

#define SIZE (16 << 20)
#define STRIPE (64 << 10)
#define WRITERS 4
#define ROUNDS 1000

typedef struct Shared {
    BlockBackend *blk;
    uint8_t *model;             /* each writer owns its stripes of it */
    gint stop;
} Shared;

typedef struct Writer {
    Shared *sh;
    int index;
    GThread *thread;
} Writer;

/* Unaligned writes inside the writer's own stripes (index modulo WRITERS). */
static gpointer writer(gpointer opaque)
{
    Writer *w = opaque;
    GRand *rand = g_rand_new_with_seed(w->index);
    uint8_t buf[STRIPE];
    int round;

    for (round = 0; round < ROUNDS; round++) {
        int64_t stripe = g_rand_int_range(rand, 0, SIZE / STRIPE / WRITERS) *
                         WRITERS + w->index;
        int64_t off = g_rand_int_range(rand, 0, STRIPE - 1);
        int64_t len = g_rand_int_range(rand, 1, STRIPE - off + 1);
        int64_t at = stripe * STRIPE + off;

        memset(buf, g_rand_int(rand), len);
        if (round % 7 == 0) {
            memset(buf, 0, len);
            g_assert_cmpint(blk_pwrite_zeroes(w->sh->blk, at, len, 0), ==, 0);
        } else {
            g_assert_cmpint(blk_pwrite(w->sh->blk, at, len, buf, 0), ==, 0);
        }
        memcpy(w->sh->model + at, buf, len);
    }
    g_rand_free(rand);
    return NULL;
}

/* Random reads, each copying what the node lacks of it. */
static gpointer reader(gpointer opaque)
{
    Shared *sh = opaque;
    GRand *rand = g_rand_new_with_seed(100);
    g_autofree uint8_t *buf = g_malloc(1 << 20);

    while (!g_atomic_int_get(&sh->stop)) {
        int64_t len = g_rand_int_range(rand, 1, 1 << 20);
        int64_t at = g_rand_int_range(rand, 0, SIZE - len);

        g_assert_cmpint(blk_pread(sh->blk, at, len, buf, 0), ==, 0);
    }
    g_rand_free(rand);
    return NULL;
}

/* The whole disk in stream-sized chunks, as block-stream reads it. */
static void stream_pass(Shared *sh)
{
    g_autofree uint8_t *buf = g_malloc(512 << 10);
    int64_t at;

    for (at = 0; at < SIZE; at += 512 << 10) {
        g_assert_cmpint(blk_pread(sh->blk, at, 512 << 10, buf, 0), ==, 0);
    }
}

/* Passes until the writers are done. */
static gpointer streamer(gpointer opaque)
{
    Shared *sh = opaque;

    while (!g_atomic_int_get(&sh->stop)) {
        stream_pass(sh);
    }
    return NULL;
}

static void test_copies_never_overwrite_writes(void)
{
    const char *dir = block_test_dir();
    g_autofree char *json = NULL;
    g_autofree uint8_t *got = g_malloc(SIZE);
    g_autofree char *model_path = g_build_filename(dir, "model.raw", NULL);
    Shared sh = { .model = g_malloc(SIZE) };
    Writer w[WRITERS];
    GThread *readers[2], *streams[2];
    BlockDriverState *bs;
    GRand *rand;
    int i;

    if (!block_test_have_qemu_tools()) {
        return;
    }
    /* A backing file of random data; the node starts empty over it. */
    rand = g_rand_new_with_seed(7);
    for (i = 0; i < SIZE; i++) {
        sh.model[i] = g_rand_int(rand);
    }
    g_rand_free(rand);
    g_assert_true(g_file_set_contents(model_path, (char *)sh.model, SIZE, NULL));
    BLOCK_TEST_SH_OK(dir, "cp model.raw base.raw && qemu-img create -q -f qcow2 "
                     "-b base.raw -F raw top.qcow2");
    json = g_strdup_printf("{\"driver\": \"copy-on-read\", \"node-name\": \"cor\","
                           " \"file\": {\"driver\": \"qcow2\", \"file\": "
                           "{\"driver\": \"file\", \"filename\": \"%s/top.qcow2\"}}}",
                           dir);
    bs = block_test_open(json, &error_abort);
    sh.blk = block_test_backend(bs, "guest", BLOCK_TEST_RW, BLK_PERM_ALL);

    for (i = 0; i < WRITERS; i++) {
        w[i] = (Writer){ .sh = &sh, .index = i };
        w[i].thread = g_thread_new("writer", writer, &w[i]);
    }
    for (i = 0; i < 2; i++) {
        readers[i] = g_thread_new("reader", reader, &sh);
        streams[i] = g_thread_new("streamer", streamer, &sh);
    }
    for (i = 0; i < WRITERS; i++) {
        g_thread_join(w[i].thread);
    }
    g_atomic_int_set(&sh.stop, 1);
    for (i = 0; i < 2; i++) {
        g_thread_join(streams[i]);
        g_thread_join(readers[i]);
    }
    /* One more pass copies what is left. */
    stream_pass(&sh);

    g_assert_cmpint(blk_pread(sh.blk, 0, SIZE, got, 0), ==, 0);
    g_assert_true(memcmp(got, sh.model, SIZE) == 0);
    blk_unref(sh.blk);
    g_assert_true(bdrv_del_node("cor", &error_abort));

    /* The node holds everything, without its backing file. */
    g_assert_true(g_file_set_contents(model_path, (char *)sh.model, SIZE, NULL));
    BLOCK_TEST_SH_OK(dir, "qemu-img check -q top.qcow2");
    BLOCK_TEST_SH_OK(dir, "qemu-img rebase -u -b '' top.qcow2 && "
                     "qemu-img compare -q -f qcow2 -F raw top.qcow2 model.raw");
    g_free(sh.model);
}

int main(int argc, char **argv)
{
    block_test_init(&argc, &argv);
    g_test_add_func("/cor/copies-never-overwrite-writes",
                    test_copies_never_overwrite_writes);
    return block_test_run();
}
