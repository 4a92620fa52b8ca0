/*
 * QMP handlers for block-stream and block-commit (qapi/block-chain.json):
 * blockdev.c's checks, in QEMU 7.2's order and with its texts and error
 * classes, then the job (include/block/chain-jobs.h). Main thread.
 */
#include <string.h>

#include "block/chain-jobs.h"
#include "block/core.h"
#include "qapi-commands.h"

static int job_flags(bool has_auto_finalize, bool auto_finalize,
                     bool has_auto_dismiss, bool auto_dismiss)
{
    int flags = JOB_DEFAULT;

    if (has_auto_finalize && !auto_finalize) {
        flags |= JOB_MANUAL_FINALIZE;
    }
    if (has_auto_dismiss && !auto_dismiss) {
        flags |= JOB_MANUAL_DISMISS;
    }
    return flags;
}

/* Every node from top down to end (excluded) is free of block jobs. */
static bool chain_not_busy(BlockDriverState *top, BlockDriverState *end,
                           Error **errp)
{
    for (; top && top != end; top = bdrv_filter_or_cow_bs(top)) {
        if (block_job_node_busy(top, errp)) {
            return false;
        }
    }
    return true;
}

bool qmp_block_stream(BlockStream *arg, Error **errp)
{
    BlockDriverState *bs, *base = NULL, *bottom = NULL, *end;
    BlockJob *job;

    if (arg->base && arg->base_node) {
        error_setg(errp, "'base' and 'base-node' cannot be specified at the "
                   "same time");
        return false;
    }
    if (arg->base && arg->bottom) {
        error_setg(errp, "'base' and 'bottom' cannot be specified at the "
                   "same time");
        return false;
    }
    if (arg->bottom && arg->base_node) {
        error_setg(errp, "'bottom' and 'base-node' cannot be specified at the "
                   "same time");
        return false;
    }
    bs = bdrv_lookup_bs(arg->device, arg->device, errp);
    if (!bs) {
        return false;
    }
    if (arg->base) {
        base = bdrv_find_backing_image(bs, arg->base);
        if (!base) {
            error_setg(errp, "Can't find '%s' in the backing chain", arg->base);
            return false;
        }
    }
    if (arg->base_node) {
        base = bdrv_lookup_bs(NULL, arg->base_node, errp);
        if (!base) {
            return false;
        }
        if (bs == base || !bdrv_chain_contains(bs, base)) {
            error_setg(errp, "Node '%s' is not a backing image of '%s'",
                       arg->base_node, arg->device);
            return false;
        }
    }
    if (arg->bottom) {
        bottom = bdrv_lookup_bs(NULL, arg->bottom, errp);
        if (!bottom) {
            return false;
        }
        if (bottom->drv->is_filter) {
            error_setg(errp, "Node '%s' is a filter, use a non-filter node as "
                       "'bottom'", arg->bottom);
            return false;
        }
        if (!bdrv_chain_contains(bs, bottom)) {
            error_setg(errp, "Node '%s' is not in a chain starting from '%s'",
                       arg->bottom, arg->device);
            return false;
        }
    }
    end = bottom ? bdrv_filter_or_cow_bs(bottom) : base;
    if (!chain_not_busy(bs, end, errp)) {
        return false;
    }
    /* Streaming the whole chain leaves no backing file to name. */
    if (!base && arg->backing_file) {
        error_setg(errp, "backing file specified, but streaming the entire "
                   "chain");
        return false;
    }
    job = stream_start(arg->job_id, bs, base, arg->backing_file, bottom,
                       job_flags(arg->has_auto_finalize, arg->auto_finalize,
                                 arg->has_auto_dismiss, arg->auto_dismiss),
                       arg->has_speed ? arg->speed : 0,
                       arg->has_on_error ? arg->on_error
                                         : BLOCKDEV_ON_ERROR_REPORT,
                       arg->filter_node_name, errp);
    if (!job) {
        return false;
    }
    job_start(&job->job);
    return true;
}

/* QEMU's qmp_get_root_bs(): a node no other node uses. */
static bool is_root(BlockDriverState *bs)
{
    guint i;

    for (i = 0; i < bs->core->parents->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->core->parents, i);

        if (c->parent_is_node) {
            return false;
        }
    }
    return true;
}

/* Someone writes to top: QEMU commits it actively (mirrors it). */
static bool has_writer(BlockDriverState *top)
{
    return top->core->perm & BLK_PERM_WRITE;
}

bool qmp_block_commit(BlockCommit *arg, Error **errp)
{
    BlockDriverState *bs, *top, *base, *iter;
    BlockJob *job;
    int flags = job_flags(arg->has_auto_finalize, arg->auto_finalize,
                          arg->has_auto_dismiss, arg->auto_dismiss);
    int64_t speed = arg->has_speed ? arg->speed : 0;
    BlockdevOnError on_error = arg->has_on_error ? arg->on_error
                                                 : BLOCKDEV_ON_ERROR_REPORT;

    /* libvirt probes for this class, so the device comes first. */
    bs = bdrv_lookup_bs(arg->device, arg->device, NULL);
    if (!bs) {
        error_set(errp, ERROR_CLASS_DEVICE_NOT_FOUND, "Device '%s' not found",
                  arg->device);
        return false;
    }
    if (!is_root(bs)) {
        error_setg(errp, "Need a root block node");
        return false;
    }
    if (block_job_node_busy(bs, errp)) {
        return false;
    }

    /* By default the active layer is committed. */
    top = bs;
    if (arg->top_node && arg->top) {
        error_setg(errp, "'top-node' and 'top' are mutually exclusive");
        return false;
    } else if (arg->top_node) {
        top = bdrv_lookup_bs(NULL, arg->top_node, errp);
        if (!top) {
            return false;
        }
        if (!bdrv_chain_contains(bs, top)) {
            error_setg(errp, "'%s' is not in this backing file chain",
                       arg->top_node);
            return false;
        }
    } else if (arg->top && (!bs->filename || strcmp(bs->filename, arg->top))) {
        top = bdrv_find_backing_image(bs, arg->top);
    }
    if (!top) {
        error_setg(errp, "Top image file %s not found", arg->top);
        return false;
    }

    if (arg->base_node && arg->base) {
        error_setg(errp, "'base-node' and 'base' are mutually exclusive");
        return false;
    } else if (arg->base_node) {
        base = bdrv_lookup_bs(NULL, arg->base_node, errp);
        if (!base) {
            return false;
        }
        if (!bdrv_chain_contains(top, base)) {
            error_setg(errp, "'%s' is not in this backing file chain",
                       arg->base_node);
            return false;
        }
    } else if (arg->base) {
        base = bdrv_find_backing_image(top, arg->base);
        if (!base) {
            error_setg(errp, "Can't find '%s' in the backing chain", arg->base);
            return false;
        }
    } else {
        base = bdrv_find_base(top);
        if (!base) {
            error_setg(errp, "There is no backimg image");
            return false;
        }
    }
    /* The committed layers and the base. */
    for (iter = top; iter != bdrv_filter_or_cow_bs(base);
         iter = bdrv_filter_or_cow_bs(iter)) {
        if (block_job_node_busy(iter, errp)) {
            return false;
        }
    }
    if (top == base) {
        error_setg(errp, "cannot commit an image into itself");
        return false;
    }

    /* A top someone writes to can only be committed by mirroring it. */
    if (has_writer(top) || top == bs) {
        if (arg->backing_file) {
            error_setg(errp, top == bs ? "'backing-file' specified, but 'top' "
                       "is the active layer" : "'backing-file' specified, but "
                       "'top' has a writer on it");
            return false;
        }
        job = commit_active_start(arg->job_id, top, base, flags, speed,
                                  on_error, arg->filter_node_name, errp);
    } else {
        if (block_job_node_busy(bdrv_find_overlay(bs, top), errp)) {
            return false;
        }
        job = commit_start(arg->job_id, bs, base, top, flags, speed, on_error,
                           arg->backing_file, arg->filter_node_name, errp);
    }
    if (!job) {
        return false;
    }
    job_start(&job->job);
    return true;
}
