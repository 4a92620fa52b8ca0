/* What the block layer's unit tests share: set-up, scratch files, nodes. */
#ifndef BLOCK_TEST_HELPERS_H
#define BLOCK_TEST_HELPERS_H

#include "block/block-backend.h"

#define BLOCK_TEST_RW (BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE)

/* g_test_init, the main loop (the graph's owner), a scratch directory. */
void block_test_init(int *argc, char ***argv);
/* Runs the tests, removes the scratch directory, returns g_test_run's. */
int block_test_run(void);
/* A new scratch file of size bytes (sparse); g_free the path. */
char *block_test_file(const char *name, int64_t size);
/* Opens a node from JSON options text, as blockdev-add does. */
BlockDriverState *block_test_open(const char *json, Error **errp);
/* A BlockBackend attached to bs (attaching must succeed). */
BlockBackend *block_test_backend(BlockDriverState *bs, const char *owner,
                                 uint64_t perm, uint64_t shared);

#endif
