/*
 * Block-copy: copies the dirty clusters of a copy bitmap from a source
 * node to a target node, for the backup job's background copy and for the
 * copy-before-write filter's copies ahead of guest writes.
 *
 * The copy bitmap lives on the source node, unnamed and disabled (guest
 * writes do not mark it), at the backup cluster size: max(64 KiB, the
 * target's cluster size). A copy claims its clusters (clears their bits
 * and registers the range as in flight) before it reads, so a guest write
 * and the background copy never copy the same cluster twice and a guest
 * write waits for a copy of its clusters already under way; a failed copy
 * sets its bits again. Zero areas (block status) are written as zeroes,
 * not data. Data goes by copy offload (bdrv_copy_range()) while source
 * and target allow it: decided at creation by their alignment, and given
 * up for good, for read and write, the first time an offload fails. Any
 * thread.
 */
#ifndef BLOCK_BLOCK_COPY_H
#define BLOCK_BLOCK_COPY_H

#include "block/block.h"
#include "block/dirty-bitmap.h"

typedef struct BlockCopyState BlockCopyState;

/* Chunks the background copy takes at a time (QEMU: max(cluster, 1 MiB)). */
#define BLOCK_COPY_MAX_CHUNK (1 << 20)

/*
 * A copy state from source to target (children of the caller's node or
 * job). The copy bitmap starts all dirty. Main thread.
 */
BlockCopyState *block_copy_state_new(BdrvChild *source, BdrvChild *target,
                                     Error **errp);
void block_copy_state_free(BlockCopyState *s);

int64_t block_copy_cluster_size(BlockCopyState *s);
BdrvDirtyBitmap *block_copy_dirty_bitmap(BlockCopyState *s);
/*
 * @progress is told the bytes of each chunk copied, by either kind of copy,
 * as the copy completes, from the copying thread (a job's progress, as
 * QEMU's block-copy reports to the job's progress meter). Set it before
 * the first copy.
 */
void block_copy_set_progress(BlockCopyState *s,
                             void (*progress)(void *opaque, int64_t bytes),
                             void *opaque);
/* sync=top: clusters the source's top layer does not allocate are skipped. */
void block_copy_set_skip_unallocated(BlockCopyState *s, bool skip);
/*
 * compress=true: data is written with BDRV_REQ_WRITE_COMPRESSED (zeroes
 * still as zeroes), in whole clusters, and the background copy takes one
 * cluster a chunk. Set before any copy (the caller runs drained).
 */
void block_copy_set_compress(BlockCopyState *s, bool compress);

/*
 * Copies what is dirty in [offset, offset+bytes), cluster-aligned outwards,
 * waiting for copies of those clusters already in flight (copies ahead of
 * guest writes: not against a job's speed limit, as in QEMU). Returns 0,
 * or -errno with *error_is_read telling which side failed (the clusters
 * are dirty again).
 *
 * timeout_ns > 0 (copy-before-write's cbw-timeout): after that long,
 * returns -ETIMEDOUT (*error_is_read untouched) while the copy goes on in
 * another thread, as QEMU's does: it finishes the chunk in hand and claims
 * nothing more; drained sections and block_copy_state_free() wait for it.
 * Called from within a request (it is counted in flight as one).
 */
int block_copy(BlockCopyState *s, int64_t offset, int64_t bytes,
               uint64_t timeout_ns, bool *error_is_read);
/*
 * The clusters of [offset, offset+bytes) (whole ones, or up to the end)
 * need no copy any more: a snapshot's user gave them up.
 */
void block_copy_reset(BlockCopyState *s, int64_t offset, int64_t bytes);
/*
 * Background copy, in two steps so that a job can count a chunk against
 * its speed before copying it, as QEMU's rate limit counts a chunk when it
 * starts. block_copy_claim() takes the next dirty chunk (up to max_chunk
 * bytes of contiguous dirty clusters; NULL when nothing dirty is left),
 * looking on from the last one it took: a chunk that failed comes again
 * after the others.
 * block_copy_run() copies it, in any thread, and frees it: 0, or -errno
 * (*error_is_read) with the chunk dirty again.
 */
typedef struct BlockCopyTask BlockCopyTask;

BlockCopyTask *block_copy_claim(BlockCopyState *s, int64_t max_chunk);
int64_t block_copy_task_bytes(const BlockCopyTask *task);
int block_copy_run(BlockCopyState *s, BlockCopyTask *task, bool *error_is_read);

#endif
