/*
 * What queries report about nodes: BlockDeviceInfo and ImageInfo with
 * QEMU's fields, and the graph for x-debug-query-block-graph.
 */
#include "block/core.h"
#include "block/dirty-bitmap.h"
#include "block/qapi.h"

static ImageInfo *image_info(BlockDriverState *bs, bool with_backing)
{
    ImageInfo *info = g_new0(ImageInfo, 1);
    BlockDriverInfo bdi = { 0 };
    BlockDriverState *backing = bdrv_backing_bs(bs);
    int64_t actual;

    info->filename = g_strdup(bs->filename ? bs->filename : "");
    info->format = g_strdup(bs->drv->format_name);
    info->virtual_size = bdrv_getlength(bs);
    actual = bdrv_get_allocated_file_size(bs);
    if (actual >= 0) {
        info->has_actual_size = true;
        info->actual_size = actual;
    }
    info->has_dirty_flag = true;
    if (bs->drv->get_info && bs->drv->get_info(bs, &bdi) == 0) {
        info->dirty_flag = bdi.is_dirty;
        if (bdi.cluster_size) {
            info->has_cluster_size = true;
            info->cluster_size = bdi.cluster_size;
        }
    }
    if (bs->drv->get_specific_info) {
        info->format_specific = bs->drv->get_specific_info(bs);
    }
    if (bs->backing_file) {
        info->backing_filename = g_strdup(bs->backing_file);
        if (backing) {
            info->full_backing_filename = g_strdup(backing->filename);
        }
        if (bs->backing_format) {
            info->backing_filename_format = g_strdup(bs->backing_format);
        }
    }
    if (with_backing && backing) {
        info->backing_image = image_info(backing, true);
    }
    return info;
}

static int backing_depth(BlockDriverState *bs)
{
    int depth = 0;

    for (bs = bdrv_backing_bs(bs); bs; bs = bdrv_backing_bs(bs)) {
        depth++;
    }
    return depth;
}

BlockDeviceInfo *bdrv_query_node_info(BlockDriverState *bs, bool flat)
{
    BlockDeviceInfo *info = g_new0(BlockDeviceInfo, 1);
    BlockDriverState *backing = bdrv_backing_bs(bs);

    info->file = g_strdup(bs->filename ? bs->filename : "");
    info->node_name = g_strdup(bs->node_name);
    info->ro = bs->read_only;
    info->drv = g_strdup(bs->drv->format_name);
    if (backing) {
        info->backing_file = g_strdup(backing->filename);
    }
    /* QEMU counts it while walking the chain, which flat output skips. */
    info->backing_file_depth = flat ? 0 : backing_depth(bs);
    info->detect_zeroes = bs->detect_zeroes;
    info->image = image_info(bs, !flat);
    info->cache = g_new0(BlockdevCacheInfo, 1);
    info->cache->writeback = true;
    info->cache->direct = bs->cache_direct;
    info->cache->no_flush = bs->cache_no_flush;
    info->dirty_bitmaps = bdrv_query_dirty_bitmaps(bs);
    return info;
}

static BlockPermissionList *perm_list(uint64_t perm)
{
    BlockPermissionList *head = NULL;
    int i;

    /* QEMU lists them from the highest bit down. */
    for (i = BLOCK_PERMISSION__MAX - 1; i >= 0; i--) {
        if (perm & (1ull << i)) {
            BlockPermissionList *node = g_new0(BlockPermissionList, 1);

            node->value = i;
            node->next = head;
            head = node;
        }
    }
    return head;
}

typedef struct GraphBuilder {
    XDbgBlockGraph *graph;
    GHashTable *ids;    /* BlockDriverState * or BlockBackend * -> id */
    XDbgBlockGraphNodeList **nodes_tail;
    XDbgBlockGraphEdgeList **edges_tail;
} GraphBuilder;

static uint64_t graph_id(GraphBuilder *gb, void *p, XDbgBlockGraphNodeType type,
                         const char *name)
{
    uint64_t id = GPOINTER_TO_SIZE(g_hash_table_lookup(gb->ids, p));
    XDbgBlockGraphNodeList *node;

    if (id) {
        return id;
    }
    id = g_hash_table_size(gb->ids) + 1;
    g_hash_table_insert(gb->ids, p, GSIZE_TO_POINTER(id));
    node = g_new0(XDbgBlockGraphNodeList, 1);
    node->value = g_new0(XDbgBlockGraphNode, 1);
    node->value->id = id;
    node->value->type = type;
    node->value->name = g_strdup(name);
    *gb->nodes_tail = node;
    gb->nodes_tail = &node->next;
    return id;
}

static void graph_edge(GraphBuilder *gb, uint64_t parent, BdrvChild *c)
{
    XDbgBlockGraphEdgeList *edge = g_new0(XDbgBlockGraphEdgeList, 1);

    edge->value = g_new0(XDbgBlockGraphEdge, 1);
    edge->value->parent = parent;
    edge->value->child = graph_id(gb, c->bs, X_DBG_BLOCK_GRAPH_NODE_TYPE_BLOCK_DRIVER,
                                  c->bs->node_name);
    edge->value->name = g_strdup(c->name);
    edge->value->perm = perm_list(c->perm);
    edge->value->shared_perm = perm_list(c->shared_perm);
    *gb->edges_tail = edge;
    gb->edges_tail = &edge->next;
}

XDbgBlockGraph *bdrv_query_graph(void)
{
    GraphBuilder gb = { .graph = g_new0(XDbgBlockGraph, 1) };
    BlockDriverState *bs;
    BlockBackend *blk;

    gb.ids = g_hash_table_new(NULL, NULL);
    gb.nodes_tail = &gb.graph->nodes;
    gb.edges_tail = &gb.graph->edges;
    for (blk = blk_next(NULL); blk; blk = blk_next(blk)) {
        uint64_t id = graph_id(&gb, blk, X_DBG_BLOCK_GRAPH_NODE_TYPE_BLOCK_BACKEND,
                               blk_owner(blk));

        if (blk_bs(blk)) {
            BdrvChild *root = NULL;
            guint i;

            for (i = 0; i < blk_bs(blk)->core->parents->len; i++) {
                BdrvChild *p = g_ptr_array_index(blk_bs(blk)->core->parents, i);

                if (p->parent == blk) {
                    root = p;
                }
            }
            graph_edge(&gb, id, root);
        }
    }
    for (bs = bdrv_next_node(NULL); bs; bs = bdrv_next_node(bs)) {
        uint64_t id = graph_id(&gb, bs, X_DBG_BLOCK_GRAPH_NODE_TYPE_BLOCK_DRIVER,
                               bs->node_name);
        guint i;

        for (i = 0; i < bs->core->children->len; i++) {
            graph_edge(&gb, id, g_ptr_array_index(bs->core->children, i));
        }
    }
    g_hash_table_destroy(gb.ids);
    return gb.graph;
}
