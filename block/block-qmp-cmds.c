/*
 * QMP handlers for block nodes (qapi/block-core.json) and external
 * snapshots (qapi/block-snapshot.json). Main thread.
 */
#include "block/block.h"
#include "block/blockjob.h"
#include "block/qapi.h"
#include "block/snapshot.h"
#include "qapi-commands.h"

bool qmp_blockdev_add(BlockdevOptions *options, Error **errp)
{
    return bdrv_open_options(options, errp) != NULL;
}

bool qmp_blockdev_del(const char *node_name, Error **errp)
{
    BlockDriverState *bs = bdrv_find_node(node_name);

    /* QEMU's op blocker comes before its other checks. */
    if (bs && block_job_node_busy(bs, errp)) {
        return false;
    }
    return bdrv_del_node(node_name, errp);
}

bool qmp_block_resize(const char *device, const char *node_name, int64_t size,
                      Error **errp)
{
    BlockDriverState *bs = bdrv_lookup_bs(device, node_name, errp);

    return bs && bdrv_truncate(bs, size, errp);
}

BlockDeviceInfoList *qmp_query_named_block_nodes(bool has_flat, bool flat,
                                                 Error **errp)
{
    BlockDeviceInfoList *head = NULL, **tail = &head;
    BlockDriverState *bs;

    for (bs = bdrv_next_node(NULL); bs; bs = bdrv_next_node(bs)) {
        BlockDeviceInfoList *node = g_new0(BlockDeviceInfoList, 1);

        node->value = bdrv_query_node_info(bs, has_flat && flat);
        *tail = node;
        tail = &node->next;
    }
    return head;
}

XDbgBlockGraph *qmp_x_debug_query_block_graph(Error **errp)
{
    return bdrv_query_graph();
}

/* As QEMU runs them: a transaction of one action. */
bool qmp_blockdev_snapshot(BlockdevSnapshot *arg, Error **errp)
{
    ExternalSnapshot s = { 0 };

    if (!external_snapshot_prepare(&s, arg, NULL, errp)) {
        return false;
    }
    external_snapshot_commit(&s);
    return true;
}

bool qmp_blockdev_snapshot_sync(BlockdevSnapshotSync *arg, Error **errp)
{
    ExternalSnapshot s = { 0 };

    if (!external_snapshot_prepare(&s, NULL, arg, errp)) {
        return false;
    }
    external_snapshot_commit(&s);
    return true;
}
