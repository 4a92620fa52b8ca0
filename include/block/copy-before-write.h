/*
 * The copy-before-write filter, as a backup job uses it: put in front of
 * the source for the job's lifetime, it copies the old data of every
 * cluster a guest write touches to the target first, so the target ends
 * as the disk was when the job started. Main thread.
 */
#ifndef BLOCK_COPY_BEFORE_WRITE_H
#define BLOCK_COPY_BEFORE_WRITE_H

#include "block/block-copy.h"

/*
 * Opens a filter over source with target as its target (node name
 * filter_node_name, or generated) and puts it in front of source: every
 * user of source now goes through it. *bcs is its copy state.
 * bdrv_drop_filter() takes it away again and frees it.
 */
BlockDriverState *bdrv_cbw_append(BlockDriverState *source,
                                  BlockDriverState *target,
                                  const char *filter_node_name,
                                  BlockCopyState **bcs, Error **errp);
/* The error that broke the snapshot (on-cbw-error=break-snapshot), or 0. */
int bdrv_cbw_snapshot_error(BlockDriverState *filter);

#endif
