/*
 * BlockBackend: a user's handle on a node (an NBD export, a job). It
 * states the permissions it needs and those it shares with other users;
 * attaching fails, naming the conflicting user, when they clash. Its I/O
 * functions are where drained sections hold new requests.
 *
 * Threads: create, attach, detach and free on the main thread; I/O from
 * any thread, many requests at once.
 */
#ifndef BLOCK_BLOCK_BACKEND_H
#define BLOCK_BLOCK_BACKEND_H

#include "block/block.h"

typedef struct BlockBackend BlockBackend;

/*
 * owner describes the user in errors and graph queries ("block export
 * 'e0'", "job 'j0'"). perm/shared are BLK_PERM_* flags.
 */
BlockBackend *blk_new(const char *owner, uint64_t perm, uint64_t shared);
/* Attaches to bs; fails if the permissions conflict with another user. */
bool blk_insert_bs(BlockBackend *blk, BlockDriverState *bs, Error **errp);
/* The same with the edge named child_name, not "root" (a job's "main node"). */
bool blk_insert_bs_named(BlockBackend *blk, BlockDriverState *bs,
                         const char *child_name, Error **errp);
void blk_remove_bs(BlockBackend *blk);
/* Detaches (if attached) and frees; requests must have finished. */
void blk_unref(BlockBackend *blk);

BlockDriverState *blk_bs(BlockBackend *blk);
/* Iterates every BlockBackend (main thread): start with NULL. */
BlockBackend *blk_next(BlockBackend *blk);
const char *blk_owner(const BlockBackend *blk);
int64_t blk_getlength(BlockBackend *blk);
/*
 * Resizes the node of a user that needs resize (a commit growing its
 * base): block_resize's checks but of the user itself. Main thread.
 */
bool blk_truncate(BlockBackend *blk, int64_t size, Error **errp);

/*
 * For a user that does I/O on the nodes below its root itself (a backup's
 * block-copy through the filter's children): counts that work as a request
 * in flight, so a drained section waits for it and holds it back.
 */
void blk_io_begin(BlockBackend *blk);
void blk_io_end(BlockBackend *blk);

int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags);
int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags);
int blk_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags);
int blk_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes);
int blk_flush(BlockBackend *blk);
/* bdrv_block_status_above() of the whole chain, as a request. */
int blk_block_status(BlockBackend *blk, bool want_zero, int64_t offset,
                     int64_t bytes, int64_t *pnum, int *depth);

#endif
