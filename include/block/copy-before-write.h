/*
 * The copy-before-write filter: in front of a source, it copies the old
 * data of every cluster a guest write touches to its target first, so
 * that the target and the source together keep the disk as it was when
 * the filter went in. A backup job puts one in for its lifetime
 * (bdrv_cbw_append()); blockdev-add makes one for fleecing, read through
 * a snapshot-access node, which uses the snapshot API below.
 */
#ifndef BLOCK_COPY_BEFORE_WRITE_H
#define BLOCK_COPY_BEFORE_WRITE_H

#include "block/block-copy.h"

/*
 * Opens a filter over source with target as its target (node name
 * filter_node_name, or generated) and puts it in front of source: every
 * user of source now goes through it. *bcs is its copy state.
 * bdrv_drop_filter() takes it away again and frees it. Main thread.
 */
BlockDriverState *bdrv_cbw_append(BlockDriverState *source,
                                  BlockDriverState *target,
                                  const char *filter_node_name,
                                  BlockCopyState **bcs, Error **errp);
/* The error that broke the snapshot (on-cbw-error=break-snapshot), or 0. */
int bdrv_cbw_snapshot_error(BlockDriverState *filter);

/*
 * The snapshot API, QEMU's, from any thread. The snapshot covers the
 * clusters of the "access" bitmap: all, or those of the filter's bitmap
 * option, less those discarded through it. A request with a byte outside
 * it, or after the snapshot broke (on-cbw-error=break-snapshot), fails
 * with -EACCES; one on a node that is not a copy-before-write filter with
 * -ENOTSUP, as QEMU answers for a node without the API.
 *
 * Reads come from the target where guest writes copied the old data to,
 * from the source elsewhere; guest writes into a range being read from
 * the source wait (after their copy) until that read is done.
 */
int bdrv_cbw_preadv_snapshot(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, void *buf);
/* bdrv_block_status() of the node the snapshot's range is read from. */
int bdrv_cbw_snapshot_block_status(BlockDriverState *bs, bool want_zero,
                                   int64_t offset, int64_t bytes,
                                   int64_t *pnum, int64_t *map,
                                   BlockDriverState **file);
/*
 * The user will not read the whole clusters in the range again: they
 * leave the snapshot, are not copied any more and are discarded on the
 * target. Partial clusters are left as they are.
 */
int bdrv_cbw_pdiscard_snapshot(BlockDriverState *bs, int64_t offset,
                               int64_t bytes);

#endif
