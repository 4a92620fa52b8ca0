/*
 * The jobs that shorten a backing chain (QMP block-stream and
 * block-commit): streaming the layers below a node into it, committing
 * layers into the one below them, and the active commit, a mirror of the
 * active layer into the base. Each creates its job (not started) on the
 * main thread, with QEMU 7.2's checks and texts; the caller starts it.
 * docs/devel/block.md says how each changes the graph.
 */
#ifndef BLOCK_CHAIN_JOBS_H
#define BLOCK_CHAIN_JOBS_H

#include "block/blockjob.h"

/*
 * Streams into bs what its chain holds above base (NULL: the whole
 * chain), or down to bottom included; at the end base becomes bs's
 * backing node, named backing_file (default: its file name) in bs's
 * header.
 */
BlockJob *stream_start(const char *job_id, BlockDriverState *bs,
                       BlockDriverState *base, const char *backing_file,
                       BlockDriverState *bottom, int flags, int64_t speed,
                       BlockdevOnError on_error, const char *filter_node_name,
                       Error **errp);

/*
 * Commits top (not the active layer bs) and the layers below it down to
 * base's overlay into base; at the end the node above top names base
 * (backing_file, default its file name) as backing file.
 */
BlockJob *commit_start(const char *job_id, BlockDriverState *bs,
                       BlockDriverState *base, BlockDriverState *top,
                       int flags, int64_t speed, BlockdevOnError on_error,
                       const char *backing_file, const char *filter_node_name,
                       Error **errp);

/*
 * The active commit: mirrors bs (the active layer) into base, its
 * backing chain's node; ready once in sync, and on job-complete base
 * takes bs's place.
 */
BlockJob *commit_active_start(const char *job_id, BlockDriverState *bs,
                              BlockDriverState *base, int flags, int64_t speed,
                              BlockdevOnError on_error,
                              const char *filter_node_name, Error **errp);

/*
 * The topmost of the filters right on base in from's chain, base if there
 * are none (QEMU's filtered base, below its base_overlay): they show
 * base's data as it is, so a commit copies what the layers above it hold.
 */
BlockDriverState *commit_filtered_base(BlockDriverState *from,
                                       BlockDriverState *base);
/*
 * Holds the layers from `from` down to base (excluded) for a commit job as
 * its "intermediate node"s: they leave the chain and are inconsistent
 * meanwhile, so the job shares only `shared` (writes, or the base could
 * not be written), and consistent reads of the filters right on base
 * too (from filtered_base, commit_filtered_base()'s), as QEMU. *from_blk,
 * if given, is from's BlockBackend.
 */
bool commit_block_intermediates(BlockJob *job, BlockDriverState *from,
                                BlockDriverState *base,
                                BlockDriverState *filtered_base,
                                uint64_t shared, BlockBackend **from_blk,
                                Error **errp);
/*
 * From a commit's thread: grows base to len if it is shorter, as QEMU's
 * commits do, on the main thread (resizes are its). 0 or -errno.
 */
int commit_grow_base(BlockBackend *base, int64_t len, Error **errp);

/*
 * blkd's: once a commit completes, each named bitmap of the committed
 * layers (top down to the node above base) is merged into the bitmap of
 * the same name on base, made first like it if base has none. check: the
 * refusals, before the job starts and again before the graph changes.
 */
bool commit_bitmaps_check(BlockDriverState *top, BlockDriverState *base,
                          Error **errp);
void commit_bitmaps_merge(BlockDriverState *top, BlockDriverState *base);

#endif
