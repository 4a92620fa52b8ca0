/* What the block layer's unit tests share: set-up, scratch files, nodes. */
#ifndef BLOCK_TEST_HELPERS_H
#define BLOCK_TEST_HELPERS_H

#include <jansson.h>

#include "block/block-backend.h"

#define BLOCK_TEST_RW (BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE)

/*
 * The events the block layer emitted (a job's, also from the drivers that
 * reach the job core), in order: block-test-helpers.c provides the
 * qapi_event_emit() the monitor would. Each is a json_t * {"event": name,
 * "data": {...}}; read them holding the lock.
 */
extern GMutex block_test_events_lock;
extern GPtrArray *block_test_events;

/* g_test_init, the main loop (the graph's owner), a scratch directory. */
void block_test_init(int *argc, char ***argv);
/* Runs the tests, removes the scratch directory, returns g_test_run's. */
int block_test_run(void);
/* The scratch directory block_test_init() made. */
const char *block_test_dir(void);
/* A new scratch file of size bytes (sparse); g_free the path. */
char *block_test_file(const char *name, int64_t size);
/*
 * The JSON options of a blkdebug node named node over a new scratch file
 * "<node>.img" of size bytes, with rules (JSON text, an array) as its
 * inject-error; g_free them.
 */
char *block_test_blkdebug_json(const char *node, int64_t size, const char *rules);
/* Opens a node from JSON options text, as blockdev-add does. */
BlockDriverState *block_test_open(const char *json, Error **errp);
/* A BlockBackend attached to bs (attaching must succeed). */
BlockBackend *block_test_backend(BlockDriverState *bs, const char *owner,
                                 uint64_t perm, uint64_t shared);

/*
 * A filter node over child whose first read after block_test_gate_hold()
 * stops until block_test_gate_release(), so a test can catch a request
 * in the middle. block_test_gate_wait() returns once that read arrived.
 * One gate at a time; hold re-arms it.
 */
BlockDriverState *block_test_gate_new(const char *node_name,
                                      BlockDriverState *child);
void block_test_gate_hold(void);
void block_test_gate_wait(void);
void block_test_gate_release(void);

/* Whether qemu-img and qemu-io are installed; if not, the test is skipped. */
bool block_test_have_qemu_tools(void);
/*
 * Runs a shell command in dir: returns its exit status, and its output
 * (stdout, then stderr) in *out unless out is NULL.
 */
int block_test_sh(const char *dir, char **out, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
/* block_test_sh() that must succeed; prints the output if it does not. */
#define BLOCK_TEST_SH_OK(dir, ...) do { \
        g_autofree char *out_ = NULL; \
        int st_ = block_test_sh(dir, &out_, __VA_ARGS__); \
        if (st_ != 0) { \
            g_printerr("command failed (%d): %s\n", st_, out_); \
        } \
        g_assert_cmpint(st_, ==, 0); \
    } while (0)

#endif
