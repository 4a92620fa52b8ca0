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
 * not data. Any thread.
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
/* sync=top: clusters the source's top layer does not allocate are skipped. */
void block_copy_set_skip_unallocated(BlockCopyState *s, bool skip);

/*
 * Copies what is dirty in [offset, offset+bytes), cluster-aligned outwards,
 * waiting for copies of those clusters already in flight. Returns 0, or
 * -errno with *error_is_read telling which side failed (the clusters are
 * dirty again). *copied (if not NULL) is the number of bytes this call
 * copied.
 */
int block_copy(BlockCopyState *s, int64_t offset, int64_t bytes,
               int64_t *copied, bool *error_is_read);
/*
 * The bytes block_copy() calls (copies ahead of guest writes) copied since
 * the last call: a job counts them as progress, as QEMU's does, but not
 * against its speed limit.
 */
int64_t block_copy_take_on_demand(BlockCopyState *s);
/*
 * Background copy: claims the next dirty chunk (up to max_chunk bytes of
 * contiguous dirty clusters) and copies it. Returns 0 with *copied set,
 * -ENOENT when nothing dirty is left, or -errno (*error_is_read).
 */
int block_copy_next(BlockCopyState *s, int64_t max_chunk, int64_t *copied,
                    bool *error_is_read);

#endif
