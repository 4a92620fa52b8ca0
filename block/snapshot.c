/*
 * External snapshots (include/block/snapshot.h). The bitmaps stay on the
 * node they were on, which becomes the backing node: they keep what was
 * written up to the snapshot and record nothing after it, which is what
 * checkpoints across snapshots need (docs/interop/bitmaps.rst).
 */
#include "block/snapshot.h"
#include "block/blockjob.h"
#include "block/core.h"
#include "block/create.h"

/* QEMU's op blockers for an external snapshot, with their texts. */
static bool check_not_busy(BlockDriverState *bs, Error **errp)
{
    guint i;

    if (block_job_node_busy(bs, errp)) {
        return false;
    }
    for (i = 0; i < bs->core->parents->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->core->parents, i);

        if (c->role == BDRV_CHILD_BACKING) {
            error_setg(errp, "Node '%s' is busy: node is used as backing hd "
                       "of '%s'", bdrv_get_node_name(bs),
                       bdrv_get_node_name(c->parent));
            return false;
        }
    }
    return true;
}

/*
 * blockdev-snapshot-sync's overlay: created unless mode is existing, then
 * opened without its backing file (the node becomes its backing node) and
 * owned by the monitor like a node of blockdev-add.
 */
static BlockDriverState *open_overlay(const BlockdevSnapshotSync *a,
                                      BlockDriverState *old, Error **errp)
{
    const char *format = a->format ? a->format : "qcow2";
    g_autoptr(BlockdevOptions) opts = NULL;
    const BlockDriver *drv;

    if (a->node_name && !a->snapshot_node_name) {
        error_setg(errp, "New overlay node-name missing");
        return NULL;
    }
    if (a->snapshot_node_name && bdrv_find_node(a->snapshot_node_name)) {
        error_setg(errp, "New overlay node-name already in use");
        return NULL;
    }
    if ((!a->has_mode || a->mode != NEW_IMAGE_MODE_EXISTING) &&
        !bdrv_img_create(a->snapshot_file, format, old->filename,
                         bdrv_get_format_name(old), bdrv_getlength(old), errp)) {
        return NULL;
    }
    drv = bdrv_find_driver(format);
    if (!drv) {
        error_setg(errp, "Unknown driver '%s'", format);
        return NULL;
    }
    opts = bdrv_image_options(a->snapshot_file, drv, errp);
    if (!opts) {
        return NULL;
    }
    opts->node_name = g_strdup(a->snapshot_node_name);
    if (opts->driver == BLOCKDEV_DRIVER_QCOW2) {
        opts->u.qcow2.backing = g_new0(BlockdevRefOrNull, 1);
        opts->u.qcow2.backing->type = QTYPE_QNULL;
    }
    return bdrv_open_options(opts, errp);
}

/* Closes an overlay open_overlay() opened and nothing uses. */
static void close_overlay(BlockDriverState *bs)
{
    g_autofree char *name = g_strdup(bdrv_get_node_name(bs));

    bdrv_del_node(name, &error_abort);
}

bool external_snapshot_prepare(ExternalSnapshot *s, const BlockdevSnapshot *snap,
                               const BlockdevSnapshotSync *sync, Error **errp)
{
    BlockDriverState *old, *new;

    old = snap ? bdrv_lookup_bs(snap->node, snap->node, errp)
               : bdrv_lookup_bs(sync->device, sync->node_name, errp);
    if (!old || !check_not_busy(old, errp)) {
        return false;
    }
    if (!old->read_only && bdrv_flush(old) < 0) {
        error_setg(errp, "An IO error has occurred");
        return false;
    }
    new = snap ? bdrv_lookup_bs(snap->overlay, snap->overlay, errp)
               : open_overlay(sync, old, errp);
    if (!new) {
        return false;
    }
    /* Users that read it expect a valid image as it is (QEMU's rule). */
    if (new->core->perm & BLK_PERM_CONSISTENT_READ) {
        error_setg(errp, "The overlay is already in use");
    } else if (new->drv->is_filter) {
        error_setg(errp, "Filters cannot be used as overlays");
    } else if (new->backing) {
        error_setg(errp, "The overlay already has a backing image");
    } else if (!new->drv->supports_backing) {
        error_setg(errp, "The overlay does not support backing images");
    } else if (bdrv_append_overlay(new, old, errp)) {
        s->old_bs = old;
        s->new_bs = new;
        s->opened = !snap;
        return true;
    }
    if (!snap) {
        close_overlay(new);
    }
    return false;
}

void external_snapshot_commit(ExternalSnapshot *s)
{
    bdrv_set_read_only(s->old_bs, NULL);
}

void external_snapshot_abort(ExternalSnapshot *s)
{
    bdrv_remove_overlay(s->new_bs);
    if (s->opened) {
        close_overlay(s->new_bs);
    }
}
