/*
 * drive-backup: QEMU's older form of blockdev-backup, which makes the
 * target itself. The image is created (mode absolute-paths) or found
 * (mode existing), opened as an unnamed node that the job holds, and
 * handed to backup_create(). The order of the steps, and so which error a
 * bad request meets first, is QEMU's: the image is created before the
 * backup's own arguments are checked, so a refused backup can leave the
 * new image behind, as in QEMU. Main thread.
 */
#include "block/backup.h"
#include "block/core.h"
#include "block/create.h"

/* What the target's backing file is: see @DriveBackup in qapi/backup.json. */
static BlockDriverState *backing_source(DriveBackup *a, BlockDriverState *bs)
{
    BlockDriverState *top = bs;

    if (a->sync == MIRROR_SYNC_MODE_NONE) {
        return bs;
    }
    if (a->sync != MIRROR_SYNC_MODE_TOP) {
        return NULL;
    }
    while (top->drv->is_filter && bdrv_file_bs(top)) {
        top = bdrv_file_bs(top);
    }
    if (!bdrv_backing_bs(top)) {
        /* Nothing below the top layer: everything is the top layer's. */
        a->sync = MIRROR_SYNC_MODE_FULL;
        return NULL;
    }
    return bdrv_backing_bs(top);
}

/*
 * Opens the target as QEMU does: discard and detect-zeroes "unmap", and
 * for sync none the source node itself as the backing node (the backup
 * holds only what guests overwrite; the rest reads through).
 */
static BlockDriverState *open_target(const char *filename,
                                     const BlockDriver *drv,
                                     BlockDriverState *backing, Error **errp)
{
    g_autoptr(BlockdevOptions) opts = bdrv_image_options(filename, drv, errp);

    if (!opts) {
        return NULL;
    }
    opts->has_discard = true;
    opts->discard = BLOCKDEV_DISCARD_OPTIONS_UNMAP;
    opts->has_detect_zeroes = true;
    opts->detect_zeroes = BLOCKDEV_DETECT_ZEROES_OPTIONS_UNMAP;
    if (backing && opts->driver == BLOCKDEV_DRIVER_QCOW2) {
        opts->u.qcow2.backing = g_new0(BlockdevRefOrNull, 1);
        opts->u.qcow2.backing->type = QTYPE_QSTRING;
        opts->u.qcow2.backing->u.reference = g_strdup(bdrv_get_node_name(backing));
    }
    return bdrv_open_internal(opts, errp);
}

BlockJob *drive_backup_create(DriveBackup *a, JobTxn *txn, Error **errp)
{
    NewImageMode mode = a->has_mode ? a->mode : NEW_IMAGE_MODE_ABSOLUTE_PATHS;
    BlockDriverState *bs, *source, *target;
    const BlockDriver *drv;
    const char *format;
    BlockJob *job;
    int64_t size;

    bs = bdrv_lookup_bs(a->device, a->device, errp);
    if (!bs) {
        return NULL;
    }
    format = a->format ? a->format :
             mode == NEW_IMAGE_MODE_EXISTING ? NULL : bdrv_get_format_name(bs);
    source = backing_source(a, bs);
    size = bdrv_getlength(bs);
    if (size < 0) {
        error_setg_errno(errp, -size, "bdrv_getlength failed");
        return NULL;
    }
    if (mode != NEW_IMAGE_MODE_EXISTING &&
        !bdrv_img_create(a->target, format, source ? source->filename : NULL,
                         source ? bdrv_get_format_name(source) : NULL, size,
                         errp)) {
        return NULL;
    }
    if (format) {
        drv = bdrv_find_driver(format);
        if (!drv) {
            error_setg(errp, "Unknown driver '%s'", format);
            return NULL;
        }
    } else {
        drv = bdrv_probe_format(a->target, errp);
        if (!drv) {
            return NULL;
        }
    }
    target = open_target(a->target, drv,
                         a->sync == MIRROR_SYNC_MODE_NONE ? bs : NULL, errp);
    if (!target) {
        return NULL;
    }
    if (a->sync == MIRROR_SYNC_MODE_NONE && !drv->supports_backing) {
        /* Only an existing image gets here: creating one said so already. */
        error_setg(errp, "Driver '%s' of node '%s' does not support backing "
                   "files", drv->format_name, bdrv_get_node_name(target));
        bdrv_unref(target);
        return NULL;
    }
    job = backup_create(qapi_DriveBackup_base(a), bs, target, txn, errp);
    /* The job holds the target now (or nothing does, and it closes). */
    bdrv_unref(target);
    return job;
}
