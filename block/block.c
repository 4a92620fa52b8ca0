/*
 * The node graph: opening nodes from BlockdevOptions, their names and
 * children, lookup, reference counting, deletion. Main thread only.
 */
#include <errno.h>
#include <string.h>

#include "block/core.h"
#include "block/dirty-bitmap.h"
#include "util/main-loop.h"
#include "util/id.h"

static GList *all_nodes;        /* BlockDriverState *, newest first */
static unsigned node_counter;

/* What an inline child inherits from its parent when it does not say. */
typedef struct BdrvInherit {
    bool read_only;
    bool cache_direct;
    bool cache_no_flush;
    bool discard_unmap;
} BdrvInherit;

BlockDriverState *bdrv_find_node(const char *node_name)
{
    GList *l;

    for (l = all_nodes; l; l = l->next) {
        BlockDriverState *bs = l->data;

        if (!strcmp(bs->node_name, node_name)) {
            return bs;
        }
    }
    return NULL;
}

BlockDriverState *bdrv_lookup_bs(const char *device, const char *node_name,
                                 Error **errp)
{
    BlockDriverState *bs = NULL;

    /* blkd has no devices, only nodes: a device name is a node name too. */
    if (device) {
        bs = bdrv_find_node(device);
    }
    if (!bs && node_name) {
        bs = bdrv_find_node(node_name);
    }
    if (!bs) {
        error_setg(errp, "Cannot find device='%s' nor node-name='%s'",
                   device ? device : "", node_name ? node_name : "");
    }
    return bs;
}

BlockDriverState *bdrv_next_node(BlockDriverState *bs)
{
    GList *l;

    if (!bs) {
        return all_nodes ? all_nodes->data : NULL;
    }
    l = g_list_find(all_nodes, bs);
    return l && l->next ? l->next->data : NULL;
}

const char *bdrv_get_node_name(const BlockDriverState *bs)
{
    return bs->node_name;
}

const char *bdrv_get_format_name(const BlockDriverState *bs)
{
    return bs->drv->format_name;
}

bool bdrv_is_read_only(const BlockDriverState *bs)
{
    return bs->read_only;
}

BlockDriverState *bdrv_backing_bs(const BlockDriverState *bs)
{
    return bs->backing ? bs->backing->bs : NULL;
}

BlockDriverState *bdrv_file_bs(const BlockDriverState *bs)
{
    return bs->file ? bs->file->bs : NULL;
}

/*
 * The driver's length in whole 512-byte sectors: QEMU counts a node's
 * length so (total_sectors), and exports, queries and bitmaps show it.
 * Drivers read what lies past their end as zeroes.
 */
static int64_t driver_length(BlockDriverState *bs)
{
    int64_t len = bs->drv->getlength(bs);

    return len < 0 ? len : (len + BDRV_SECTOR_SIZE - 1) & -BDRV_SECTOR_SIZE;
}

int64_t bdrv_getlength(BlockDriverState *bs)
{
    /* During its open (a filter making its bitmaps), the driver knows it. */
    int64_t len = node_length(bs);

    return len >= 0 ? len : driver_length(bs);
}

int64_t bdrv_get_cluster_size(BlockDriverState *bs)
{
    BlockDriverInfo bdi = { 0 };

    if (!bs->drv->get_info || bs->drv->get_info(bs, &bdi) < 0) {
        return 0;
    }
    return bdi.cluster_size;
}

bool bdrv_supports_compressed_writes(BlockDriverState *bs)
{
    /* As QEMU's: only a driver with the entry; no blkd filter passes them on. */
    return bs->drv->pwritev_compressed != NULL;
}

void *bdrv_blockalign(BlockDriverState *bs, size_t size)
{
    size_t align = MAX(bs->bl.min_mem_alignment, sizeof(void *));
    void *p = NULL;

    if (posix_memalign(&p, align, size ? size : align) != 0) {
        g_error("out of memory allocating %zu bytes", size);
    }
    return p;
}

/* ---- edges ------------------------------------------------------------- */

BdrvChild *bdrv_attach_child_edge(BlockDriverState *child_bs, void *parent,
                                  bool parent_is_node, const char *name,
                                  BdrvChildRole role, uint64_t perm,
                                  uint64_t shared, Error **errp)
{
    BdrvChild *c = g_new0(BdrvChild, 1);

    c->bs = child_bs;
    c->name = g_strdup(name);
    c->role = role;
    c->parent = parent;
    c->parent_is_node = parent_is_node;
    c->perm = perm;
    c->shared_perm = shared;
    g_ptr_array_add(child_bs->core->parents, c);
    if (!bdrv_refresh_perms(child_bs, errp)) {
        g_ptr_array_remove(child_bs->core->parents, c);
        /* The graph as it was: refreshing it cannot fail. */
        bdrv_refresh_perms(child_bs, &error_abort);
        g_free(c->name);
        g_free(c);
        return NULL;
    }
    bdrv_ref(child_bs);
    return c;
}

void bdrv_detach_child_edge(BdrvChild *c)
{
    BlockDriverState *child_bs = c->bs;

    g_ptr_array_remove(child_bs->core->parents, c);
    bdrv_refresh_perms(child_bs, &error_abort);
    g_free(c->name);
    g_free(c);
    bdrv_unref(child_bs);
}

/* ---- opening ------------------------------------------------------------- */

static BlockDriverState *bdrv_open_inherit(const BlockdevOptions *opts,
                                           const BdrvInherit *inherit,
                                           Error **errp);

static BdrvInherit inherit_from(const BlockDriverState *parent, bool read_only)
{
    return (BdrvInherit) {
        .read_only = read_only || parent->read_only,
        .cache_direct = parent->cache_direct,
        .cache_no_flush = parent->cache_no_flush,
        .discard_unmap = parent->discard_unmap,
    };
}

/* The node ref names (a new reference), or one opened from its definition. */
static BlockDriverState *open_ref(const BlockdevRef *ref,
                                  const BdrvInherit *inherit, Error **errp)
{
    BlockDriverState *bs;

    if (ref->type != QTYPE_QSTRING) {
        return bdrv_open_inherit(ref->u.definition, inherit, errp);
    }
    bs = bdrv_lookup_bs(ref->u.reference, ref->u.reference, errp);
    if (bs) {
        bdrv_ref(bs);
    }
    return bs;
}

BlockDriverState *bdrv_open_blockdev_ref(const BlockdevRef *ref, Error **errp)
{
    static const BdrvInherit defaults = { 0 };

    g_assert(main_loop_is_main_thread());
    return open_ref(ref, &defaults, errp);
}

static BdrvChild *open_child(BlockDriverState *parent, const BlockdevRef *ref,
                             const char *child_name, BdrvChildRole role,
                             bool read_only, Error **errp)
{
    BdrvInherit inherit = inherit_from(parent, read_only);
    BlockDriverState *child_bs = open_ref(ref, &inherit, errp);
    BdrvChild *c;
    uint64_t perm, shared;

    if (!child_bs) {
        return NULL;
    }
    if (parent->drv->child_perm) {
        BdrvChild probe = { .bs = child_bs, .name = (char *)child_name, .role = role };

        parent->drv->child_perm(parent, &probe, parent->core->perm,
                                parent->core->shared, &perm, &shared);
    } else {
        bdrv_default_child_perm(parent, role, &perm, &shared);
    }
    c = bdrv_attach_child_edge(child_bs, parent, true, child_name, role, perm,
                               shared, errp);
    bdrv_unref(child_bs);   /* the edge holds its own reference */
    if (!c) {
        return NULL;
    }
    g_ptr_array_add(parent->core->children, c);
    return c;
}

BdrvChild *bdrv_open_child(BlockDriverState *parent, const BlockdevRef *ref,
                           const char *child_name, BdrvChildRole role,
                           Error **errp)
{
    BdrvChild *c = open_child(parent, ref, child_name, role, false, errp);

    if (c && role == BDRV_CHILD_FILE) {
        parent->file = c;
    } else if (c && role == BDRV_CHILD_FILTERED) {
        parent->file = c;
    }
    return c;
}

/* A relative backing file name is relative to the image's directory. */
static char *backing_path(const BlockDriverState *bs)
{
    g_autofree char *dir = NULL;

    if (g_path_is_absolute(bs->backing_file) || !bs->filename) {
        return g_strdup(bs->backing_file);
    }
    dir = g_path_get_dirname(bs->filename);
    return g_build_filename(dir, bs->backing_file, NULL);
}

bool bdrv_open_backing(BlockDriverState *bs, const BlockdevRefOrNull *ref,
                       Error **errp)
{
    BlockdevRef child_ref = { 0 };
    g_autoptr(BlockdevOptions) from_header = NULL;
    BdrvChild *c;

    if (ref && ref->type == QTYPE_QNULL) {
        return true;
    }
    if (ref) {
        child_ref.type = ref->type;
        if (ref->type == QTYPE_QSTRING) {
            child_ref.u.reference = ref->u.reference;
        } else {
            child_ref.u.definition = ref->u.definition;
        }
        c = open_child(bs, &child_ref, "backing", BDRV_CHILD_BACKING, false, errp);
    } else if (!bs->backing_file) {
        return true;
    } else if (!bs->backing_format) {
        error_setg(errp, "Backing file '%s' of '%s' has no format in the "
                   "image header; blkd does not probe formats: give the "
                   "'backing' option", bs->backing_file, bs->filename);
        return false;
    } else {
        BlockdevOptions *file_opts = g_new0(BlockdevOptions, 1);
        int drv = qapi_enum_find(&BlockdevDriver_lookup, bs->backing_format);

        if (drv < 0 || drv == BLOCKDEV_DRIVER_FILE) {
            g_free(file_opts);
            error_setg(errp, "Unknown backing file format '%s' of '%s'",
                       bs->backing_format, bs->filename);
            return false;
        }
        file_opts->driver = BLOCKDEV_DRIVER_FILE;
        file_opts->u.file.filename = backing_path(bs);

        from_header = g_new0(BlockdevOptions, 1);
        from_header->driver = drv;
        from_header->has_read_only = true;
        from_header->read_only = true;
        /* Only the formats with a "file" child can be backing files here. */
        if (drv == BLOCKDEV_DRIVER_RAW) {
            from_header->u.raw.file = g_new0(BlockdevRef, 1);
            from_header->u.raw.file->type = QTYPE_QDICT;
            from_header->u.raw.file->u.definition = file_opts;
        } else if (drv == BLOCKDEV_DRIVER_QCOW2) {
            from_header->u.qcow2.file = g_new0(BlockdevRef, 1);
            from_header->u.qcow2.file->type = QTYPE_QDICT;
            from_header->u.qcow2.file->u.definition = file_opts;
        } else {
            qapi_free_BlockdevOptions(file_opts);
            error_setg(errp, "Backing file format '%s' of '%s' is not supported",
                       bs->backing_format, bs->filename);
            return false;
        }
        child_ref.type = QTYPE_QDICT;
        child_ref.u.definition = from_header;
        c = open_child(bs, &child_ref, "backing", BDRV_CHILD_BACKING, true, errp);
        if (!c) {
            error_prepend(errp, "Could not open backing file: ");
        }
    }
    if (!c) {
        return false;
    }
    bs->backing = c;
    return true;
}

static void bdrv_free(BlockDriverState *bs)
{
    g_assert(bs->core->parents->len == 0);
    /* Children go last-opened first: backing after file is fine either way. */
    while (bs->core->children->len) {
        BdrvChild *c = g_ptr_array_steal_index(bs->core->children,
                                               bs->core->children->len - 1);
        bdrv_detach_child_edge(c);
    }
    bdrv_release_all_dirty_bitmaps(bs);
    g_mutex_clear(&bs->core->bitmap_lock);
    bdrv_node_io_cleanup(bs);
    g_ptr_array_unref(bs->core->children);
    g_ptr_array_unref(bs->core->parents);
    g_free(bs->core);
    g_free(bs->opaque);
    g_free(bs->node_name);
    g_free(bs->filename);
    g_free(bs->backing_file);
    g_free(bs->backing_format);
    g_free(bs);
}

/* QEMU's checks of a node name a user gives. */
static bool check_node_name(const char *node_name, Error **errp)
{
    if (!id_wellformed(node_name)) {
        error_setg(errp, "Invalid node-name: '%s'", node_name);
        return false;
    }
    if (bdrv_find_node(node_name)) {
        error_setg(errp, "Duplicate nodes with node-name='%s'", node_name);
        return false;
    }
    return true;
}

/* A node of drv, not open yet: its core state, its name. */
static BlockDriverState *bdrv_new(const BlockDriver *drv,
                                  const char *node_name, bool read_only)
{
    BlockDriverState *bs = g_new0(BlockDriverState, 1);

    bs->drv = drv;
    bs->opaque = g_malloc0(MAX(drv->instance_size, 1));
    bs->core = g_new0(BdrvNodeCore, 1);
    bs->core->refcnt = 1;
    bs->core->children = g_ptr_array_new();
    bs->core->parents = g_ptr_array_new();
    bs->core->shared = BLK_PERM_ALL;
    set_node_length(bs, -1);
    g_mutex_init(&bs->core->bitmap_lock);
    bdrv_node_io_init(bs);
    /* QEMU's names for unnamed nodes: a counter and two random digits. */
    bs->node_name = node_name ? g_strdup(node_name) :
        g_strdup_printf("#block%u%02d", ++node_counter, g_random_int_range(0, 100));
    bs->read_only = read_only;
    bs->bl.request_alignment = 1;
    bs->bl.min_mem_alignment = 1;
    return bs;
}

/* The driver opened bs: its length is known, and it joins the list. */
static bool bdrv_opened(BlockDriverState *bs, Error **errp)
{
    int64_t len = driver_length(bs);

    if (len < 0) {
        error_setg_errno(errp, -len, "Could not get the size of '%s'",
                         bs->node_name);
        if (bs->drv->close) {
            bs->drv->close(bs);
        }
        bdrv_free(bs);
        return false;
    }
    set_node_length(bs, len);
    if (!bs->filename && bs->file) {
        bs->filename = g_strdup(bs->file->bs->filename);
    }
    all_nodes = g_list_prepend(all_nodes, bs);
    return true;
}

static BlockDriverState *bdrv_open_inherit(const BlockdevOptions *opts,
                                           const BdrvInherit *inherit,
                                           Error **errp)
{
    const char *drv_name = BlockdevDriver_str(opts->driver);
    const BlockDriver *drv = bdrv_find_driver(drv_name);
    BlockDriverState *bs;

    if (!drv) {
        /* In the schema but not built yet: refuse clearly. */
        error_setg(errp, "Driver '%s' is not supported by this blkd", drv_name);
        return NULL;
    }
    if (opts->node_name && !check_node_name(opts->node_name, errp)) {
        return NULL;
    }
    if (opts->has_force_share && opts->force_share &&
        !(opts->has_read_only && opts->read_only)) {
        error_setg(errp, "force-share=on can only be used with read-only images");
        return NULL;
    }

    bs = bdrv_new(drv, opts->node_name,
                  opts->has_read_only ? opts->read_only : inherit->read_only);
    bs->cache_direct = opts->cache && opts->cache->has_direct ?
                       opts->cache->direct : inherit->cache_direct;
    bs->cache_no_flush = opts->cache && opts->cache->has_no_flush ?
                         opts->cache->no_flush : inherit->cache_no_flush;
    bs->discard_unmap = opts->has_discard ?
                        opts->discard == BLOCKDEV_DISCARD_OPTIONS_UNMAP :
                        inherit->discard_unmap;
    bs->force_share = opts->has_force_share && opts->force_share;
    bs->detect_zeroes = opts->has_detect_zeroes ? opts->detect_zeroes :
                        BLOCKDEV_DETECT_ZEROES_OPTIONS_OFF;
    if (bs->detect_zeroes == BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP &&
        !bs->discard_unmap) {
        error_setg(errp, "setting detect-zeroes to unmap is not allowed "
                   "without setting discard operation to unmap");
        bdrv_free(bs);
        return NULL;
    }
    if (drv->open(bs, opts, errp) < 0) {
        bdrv_free(bs);
        return NULL;
    }
    return bdrv_opened(bs, errp) ? bs : NULL;
}

BlockDriverState *bdrv_new_filter(const BlockDriver *drv,
                                  const char *node_name, bool read_only,
                                  BlockDriverState *child, Error **errp)
{
    BlockDriverState *bs;
    uint64_t perm, shared;
    BdrvChild *c;

    g_assert(main_loop_is_main_thread() && drv->is_filter);
    if (node_name && !check_node_name(node_name, errp)) {
        return NULL;
    }
    bs = bdrv_new(drv, node_name, read_only);
    bs->cache_direct = child->cache_direct;
    bs->cache_no_flush = child->cache_no_flush;
    bs->discard_unmap = child->discard_unmap;
    bdrv_child_perm(bs, &(BdrvChild){ .bs = child, .role = BDRV_CHILD_FILTERED },
                    &perm, &shared);
    c = bdrv_attach_child_edge(child, bs, true, "backing", BDRV_CHILD_FILTERED,
                               perm, shared, errp);
    if (!c) {
        bdrv_free(bs);
        return NULL;
    }
    g_ptr_array_add(bs->core->children, c);
    bs->file = c;
    return bdrv_opened(bs, errp) ? bs : NULL;
}

BlockDriverState *bdrv_open_options(const BlockdevOptions *options, Error **errp)
{
    static const BdrvInherit defaults = { 0 };
    BlockDriverState *bs;

    g_assert(main_loop_is_main_thread());
    bs = bdrv_open_inherit(options, &defaults, errp);
    if (bs) {
        bs->core->monitor_owned = true;
    }
    return bs;
}

BlockDriverState *bdrv_open_internal(const BlockdevOptions *options, Error **errp)
{
    static const BdrvInherit defaults = { 0 };

    g_assert(main_loop_is_main_thread());
    return bdrv_open_inherit(options, &defaults, errp);
}

static BlockdevRef *file_definition(const char *filename)
{
    BlockdevRef *ref = g_new0(BlockdevRef, 1);

    ref->type = QTYPE_QDICT;
    ref->u.definition = g_new0(BlockdevOptions, 1);
    ref->u.definition->driver = BLOCKDEV_DRIVER_FILE;
    ref->u.definition->u.file.filename = g_strdup(filename);
    return ref;
}

BlockdevOptions *bdrv_image_options(const char *filename,
                                    const BlockDriver *drv, Error **errp)
{
    BlockdevOptions *opts = g_new0(BlockdevOptions, 1);

    opts->driver = qapi_enum_find(&BlockdevDriver_lookup, drv->format_name);
    switch (opts->driver) {
    case BLOCKDEV_DRIVER_FILE:
        opts->u.file.filename = g_strdup(filename);
        break;
    case BLOCKDEV_DRIVER_RAW:
        opts->u.raw.file = file_definition(filename);
        break;
    case BLOCKDEV_DRIVER_QCOW2:
        opts->u.qcow2.file = file_definition(filename);
        break;
    default:
        error_setg(errp, "Driver '%s' does not open image files",
                   drv->format_name);
        g_free(opts);
        return NULL;
    }
    return opts;
}

void bdrv_ref(BlockDriverState *bs)
{
    bs->core->refcnt++;
}

void bdrv_unref(BlockDriverState *bs)
{
    if (!bs || --bs->core->refcnt > 0) {
        return;
    }
    all_nodes = g_list_remove(all_nodes, bs);
    bdrv_flush(bs);
    if (bs->drv->close) {
        bs->drv->close(bs);
    }
    bdrv_free(bs);
}

bool bdrv_del_node(const char *node_name, Error **errp)
{
    BlockDriverState *bs = bdrv_find_node(node_name);

    if (!bs) {
        error_setg(errp, "Failed to find node with node-name='%s'", node_name);
        return false;
    }
    if (!bs->core->monitor_owned) {
        error_setg(errp, "Node %s is not owned by the monitor", node_name);
        return false;
    }
    if (bs->core->parents->len) {
        g_autofree char *user =
            bdrv_child_user_desc(g_ptr_array_index(bs->core->parents, 0));

        error_setg(errp, "Node '%s' is in use by %s", node_name, user);
        return false;
    }
    /* Held by a user that is not a parent: an export of one of its bitmaps. */
    if (bs->core->refcnt > 1) {
        error_setg(errp, "Block device %s is in use", node_name);
        return false;
    }
    bs->core->monitor_owned = false;
    bdrv_unref(bs);
    return true;
}

void bdrv_close_all(void)
{
    GList *l, *owned = NULL;

    /* Users (exports, jobs) are gone by now; drop the monitor's nodes. */
    for (l = all_nodes; l; l = l->next) {
        BlockDriverState *bs = l->data;

        if (bs->core->monitor_owned) {
            owned = g_list_prepend(owned, bs);
        }
    }
    /* Oldest first is fine: a node's parents hold references to it. */
    for (l = owned; l; l = l->next) {
        BlockDriverState *bs = l->data;

        bs->core->monitor_owned = false;
        bdrv_unref(bs);
    }
    g_list_free(owned);
    g_assert(!all_nodes);
}

bool bdrv_truncate(BlockDriverState *bs, int64_t size, Error **errp)
{
    return bdrv_truncate_for(bs, size, NULL, errp);
}

bool bdrv_truncate_for(BlockDriverState *bs, int64_t size,
                       const BdrvChild *user, Error **errp)
{
    guint i;
    int ret;
    int64_t len;

    if (size < 0) {
        error_setg(errp, "New image size must be positive");
        return false;
    }
    if (bs->read_only) {
        error_setg(errp, "Image is read-only");
        return false;
    }
    /* Users are asked first, as QEMU takes the permission before resizing. */
    for (i = 0; i < bs->core->parents->len; i++) {
        BdrvChild *p = g_ptr_array_index(bs->core->parents, i);

        if (p != user && !(p->shared_perm & BLK_PERM_RESIZE)) {
            g_autofree char *user = bdrv_child_user_desc(p);

            error_setg(errp, "Permission conflict on node '%s': permissions "
                       "'resize' are both required by an unnamed block device "
                       "(uses node '%s' as 'root' child) and unshared by %s "
                       "(uses node '%s' as '%s' child).",
                       bs->node_name, bs->node_name, user, bs->node_name, p->name);
            return false;
        }
    }
    if (!bs->drv->truncate) {
        error_setg(errp, "Image format driver does not support resize");
        return false;
    }
    if (!bdrv_dirty_bitmaps_allow_resize(bs, errp)) {
        return false;
    }
    bdrv_drain_all_begin();
    ret = bs->drv->truncate(bs, size, errp);
    len = ret < 0 ? -1 : driver_length(bs);
    if (len >= 0) {
        set_node_length(bs, len);
        bdrv_dirty_bitmaps_truncate(bs, len);
    }
    bdrv_drain_all_end();
    if (ret < 0) {
        return false;
    }
    if (len < 0) {
        error_setg_errno(errp, -len, "Could not refresh the size of '%s'",
                         bs->node_name);
        return false;
    }
    return true;
}

int bdrv_child_truncate(BdrvChild *child, int64_t size, Error **errp)
{
    BlockDriverState *bs = child->bs;
    int ret;
    int64_t len;

    if (!bs->drv->truncate) {
        error_setg(errp, "Image format driver does not support resize");
        return -ENOTSUP;
    }
    /*
     * A format growing its file (from an I/O thread) only adds clean bits;
     * a busy bitmap must not lose any.
     */
    if (size < node_length(bs) && !bdrv_dirty_bitmaps_allow_resize(bs, errp)) {
        return -EBUSY;
    }
    ret = bs->drv->truncate(bs, size, errp);
    if (ret < 0) {
        return ret;
    }
    len = driver_length(bs);
    if (len < 0) {
        error_setg_errno(errp, -len, "Could not refresh the size of '%s'",
                         bs->node_name);
        return len;
    }
    set_node_length(bs, len);
    bdrv_dirty_bitmaps_truncate(bs, len);
    return 0;
}

int64_t bdrv_child_getlength(BdrvChild *child)
{
    return node_length(child->bs);
}

/* Moves edge c from its child to new_child (both keep their references right). */
static void move_edge(BdrvChild *c, BlockDriverState *new_child)
{
    BlockDriverState *old = c->bs;

    g_ptr_array_remove(old->core->parents, c);
    c->bs = new_child;
    g_ptr_array_add(new_child->core->parents, c);
    bdrv_ref(new_child);
    bdrv_unref(old);
}

/* Whether node is bs or lies somewhere below it. */
static bool bdrv_is_below(BlockDriverState *bs, const BlockDriverState *node)
{
    guint i;

    if (bs == node) {
        return true;
    }
    for (i = 0; i < bs->core->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->core->children, i);

        if (bdrv_is_below(c->bs, node)) {
            return true;
        }
    }
    return false;
}

bool bdrv_replace_node(BlockDriverState *from, BlockDriverState *to,
                       Error **errp)
{
    g_autoptr(GPtrArray) moved = g_ptr_array_new();
    guint i;

    g_assert(main_loop_is_main_thread());
    bdrv_ref(from);
    bdrv_drain_all_begin();
    for (i = 0; i < from->core->parents->len;) {
        BdrvChild *c = g_ptr_array_index(from->core->parents, i);

        /*
         * Edges from `to` or from below it stay, or the graph would loop:
         * `to` itself sits in front now, and a backup's target (below the
         * copy-before-write filter) keeps the source as its backing.
         */
        if (c->parent_is_node && bdrv_is_below(to, c->parent)) {
            i++;
            continue;
        }
        move_edge(c, to);
        g_ptr_array_add(moved, c);
    }
    /*
     * `from` first: without its users its own edges relax (a filter taken
     * away no longer forbids writes to what is below it).
     */
    bdrv_refresh_perms(from, &error_abort);
    if (!bdrv_refresh_perms(to, errp)) {
        for (i = 0; i < moved->len; i++) {
            move_edge(g_ptr_array_index(moved, i), from);
        }
        bdrv_refresh_perms(to, &error_abort);
        bdrv_refresh_perms(from, &error_abort);
        bdrv_drain_all_end();
        bdrv_unref(from);
        return false;
    }
    bdrv_drain_all_end();
    bdrv_unref(from);
    return true;
}

bool bdrv_set_backing_hd(BlockDriverState *bs, BlockDriverState *backing,
                         Error **errp)
{
    BdrvChild *old = bs->backing, *c = NULL;
    uint64_t perm, shared;

    g_assert(main_loop_is_main_thread() && bs->drv->supports_backing);
    if (backing == bdrv_backing_bs(bs)) {
        return true;
    }
    bdrv_drain_all_begin();
    if (backing) {
        bdrv_default_child_perm(bs, BDRV_CHILD_BACKING, &perm, &shared);
        c = bdrv_attach_child_edge(backing, bs, true, "backing",
                                   BDRV_CHILD_BACKING, perm, shared, errp);
        if (!c) {
            bdrv_drain_all_end();
            return false;
        }
        g_ptr_array_add(bs->core->children, c);
    }
    bs->backing = c;
    if (old) {
        g_ptr_array_remove(bs->core->children, old);
        bdrv_detach_child_edge(old);
    }
    bdrv_drain_all_end();
    return true;
}

bool bdrv_append_overlay(BlockDriverState *overlay, BlockDriverState *bs,
                         Error **errp)
{
    g_assert(main_loop_is_main_thread());
    g_assert(!overlay->backing && overlay->drv->supports_backing);
    if (!bdrv_set_backing_hd(overlay, bs, errp)) {
        return false;
    }
    /* The overlay's own backing edge stays: it is below the overlay. */
    if (!bdrv_replace_node(bs, overlay, errp)) {
        bdrv_remove_overlay(overlay);
        return false;
    }
    return true;
}

void bdrv_remove_overlay(BlockDriverState *overlay)
{
    BlockDriverState *bs = bdrv_backing_bs(overlay);

    g_assert(main_loop_is_main_thread());
    bdrv_ref(bs);
    /* Users moved to the overlay go back (none if the append failed). */
    if (overlay->core->parents->len) {
        bdrv_replace_node(overlay, bs, &error_abort);
    }
    bdrv_set_backing_hd(overlay, NULL, &error_abort);
    bdrv_unref(bs);
}

BlockdevRef *bdrv_node_reference(const BlockDriverState *bs)
{
    BlockdevRef *ref = g_new0(BlockdevRef, 1);

    ref->type = QTYPE_QSTRING;
    ref->u.reference = g_strdup(bs->node_name);
    return ref;
}

BlockDriverState *bdrv_insert_node(BlockDriverState *bs,
                                   const BlockdevOptions *opts, Error **errp)
{
    BlockDriverState *filter = bdrv_open_internal(opts, errp);

    if (!filter) {
        error_prepend(errp, "Could not create node: ");
        return NULL;
    }
    if (!bdrv_replace_node(bs, filter, errp)) {
        bdrv_unref(filter);
        return NULL;
    }
    return filter;
}

void bdrv_drop_filter(BlockDriverState *filter)
{
    g_assert(filter->drv->is_filter);
    bdrv_replace_node(filter, bdrv_file_bs(filter), &error_abort);
    bdrv_unref(filter);
}

/*
 * A file opened with bs (inline, as QEMU's options inherit) follows it
 * to read-only and back; a node of its own (blockdev-add) stays as it is.
 */
static BlockDriverState *inline_file(BlockDriverState *bs)
{
    if (bs->file && bs->file->role == BDRV_CHILD_FILE &&
        !bs->file->bs->core->monitor_owned &&
        bs->file->bs->core->parents->len == 1) {
        return bs->file->bs;
    }
    return NULL;
}

bool bdrv_set_read_only(BlockDriverState *bs, Error **errp)
{
    BlockDriverState *file = inline_file(bs);
    int ret;

    g_assert(main_loop_is_main_thread());
    if (bs->read_only) {
        return true;
    }
    ret = bdrv_flush(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not flush '%s'", bs->node_name);
        return false;
    }
    if (bs->drv->set_read_only) {
        bs->drv->set_read_only(bs);
    }
    bs->read_only = true;
    /* The node's edges to its children drop write and resize. */
    if (!bdrv_refresh_perms(bs, errp)) {
        bs->read_only = false;
        return false;
    }
    return file ? bdrv_set_read_only(file, errp) : true;
}

bool bdrv_set_writable(BlockDriverState *bs, Error **errp)
{
    BlockDriverState *file = inline_file(bs);
    bool file_too = file && file->read_only;
    int ret = 0;

    g_assert(main_loop_is_main_thread());
    if (!bs->read_only) {
        return true;
    }
    if (file_too && !bdrv_set_writable(file, errp)) {
        return false;
    }
    /* A driver may reopen its file or write its header: nobody else may. */
    bdrv_drain_all_begin();
    bs->read_only = false;
    /* The node's edges to its children take write and resize first. */
    if (!bdrv_refresh_perms(bs, errp)) {
        ret = -EPERM;
    } else if (bs->drv->set_writable) {
        ret = bs->drv->set_writable(bs, errp);
    }
    if (ret < 0) {
        bs->read_only = true;
        bdrv_refresh_perms(bs, &error_abort);
    }
    bdrv_drain_all_end();
    if (ret < 0 && file_too) {
        bdrv_set_read_only(file, NULL);
    }
    return ret == 0;
}

int64_t bdrv_get_allocated_file_size(BlockDriverState *bs)
{
    if (bs->drv->get_allocated_file_size) {
        return bs->drv->get_allocated_file_size(bs);
    }
    /* A format or filter takes what its file takes. */
    return bs->file ? bdrv_get_allocated_file_size(bs->file->bs) : -ENOTSUP;
}
