/* Query results about block nodes, for the QMP handlers. Main thread. */
#ifndef BLOCK_QAPI_H
#define BLOCK_QAPI_H

#include "block/block.h"
#include "qapi-types.h"

/* One node as query-named-block-nodes shows it; flat: no backing-image. */
BlockDeviceInfo *bdrv_query_node_info(BlockDriverState *bs, bool flat);
XDbgBlockGraph *bdrv_query_graph(void);

#endif
