/*
 * The stream job (QEMU 7.2's block/stream.c; include/block/chain-jobs.h).
 *
 * Set-up (main thread): the node streamed into (the target) is made
 * writable if it is not, and a copy-on-read filter goes in front of it
 * (every user of the target now reads and writes through the filter),
 * its bottom the lowest node copied from. The job holds the target and
 * the nodes down to the base (no one may write or resize those).
 *
 * run() (the job's thread) walks the target in chunks: what the target
 * does not allocate but a layer above the base does is read through the
 * filter, which writes it into the target; guest reads through the
 * filter copy too, and guest writes are never overwritten (the filter
 * orders copies and writes of the same clusters).
 *
 * Completion (main thread): the filter goes, then, drained, the base
 * becomes the target's backing node and the target's header names it;
 * the nodes between leave the chain (and close once no one holds them).
 * A target that was read-only is made read-only again.
 */
#include <errno.h>

#include "block/block_int.h"
#include "block/chain-jobs.h"

/* How much one read through the filter takes (QEMU's STREAM_CHUNK). */
#define STREAM_CHUNK (512 * 1024)

typedef struct StreamJob {
    BlockJob common;            /* first; its BlockBackend is on the filter */
    BlockDriverState *target;
    BlockDriverState *base_overlay; /* the lowest node copied from */
    BlockDriverState *above_base;   /* the node right above the base */
    BlockDriverState *cor;      /* the filter, until completion */
    BlockdevOnError on_error;
    char *backing_file;
    bool target_read_only;
} StreamJob;

/* ---- run(): the job's thread -------------------------------------------- */

/*
 * Whether the first *n bytes at offset are to be copied: the target does
 * not allocate them, a layer down to base_overlay does.
 */
static int stream_wants_copy(StreamJob *s, int64_t offset, int64_t bytes,
                             int64_t *n, bool *copy)
{
    BlockDriverState *base = bdrv_filter_or_cow_bs(s->above_base);
    int depth = 0;
    int ret = bdrv_block_status(s->target, false, offset, bytes, n, NULL, NULL);

    *copy = false;
    if (ret < 0 || (ret & BDRV_BLOCK_ALLOCATED)) {
        return ret;
    }
    ret = bdrv_block_status_above(bdrv_filter_or_cow_bs(s->target), base, false,
                                  offset, *n, n, &depth);
    if (ret >= 0 && *n == 0) {
        *n = bytes;             /* past the end of the backing file */
    }
    *copy = ret >= 0 && depth > 0;
    return ret;
}

static int stream_run(Job *job, Error **errp)
{
    StreamJob *s = (StreamJob *)job;
    g_autofree void *buf = NULL;
    int64_t len, offset, n = 0;
    int error = 0;

    if (s->target == s->base_overlay) {
        return 0;               /* nothing between the target and the base */
    }
    len = bdrv_getlength(s->target);
    if (len < 0) {
        return len;
    }
    job_progress_set_remaining(job, len);
    buf = g_malloc(STREAM_CHUNK);
    for (offset = 0; offset < len; offset += n) {
        bool copy;
        int ret;

        /* A pause point, and the speed limit's sleep, between chunks. */
        block_job_ratelimit_sleep(&s->common);
        if (job_is_cancelled(job)) {
            break;
        }
        /* As a request: a drained section (a graph change) waits for it. */
        blk_io_begin(s->common.blk);
        ret = stream_wants_copy(s, offset, MIN(len - offset, STREAM_CHUNK),
                                &n, &copy);
        blk_io_end(s->common.blk);
        if (copy) {
            /* The filter writes it into the target on the way. */
            ret = blk_pread(s->common.blk, offset, n, buf, 0);
        }
        if (ret < 0) {
            BlockErrorAction action = block_job_error_action(&s->common,
                                                             s->on_error, true,
                                                             -ret);
            if (action == BLOCK_ERROR_ACTION_STOP) {
                n = 0;
                continue;
            }
            if (!error) {
                error = ret;
            }
            if (action == BLOCK_ERROR_ACTION_REPORT) {
                break;
            }
        }
        job_progress_update(job, n);
        if (copy) {
            block_job_ratelimit_processed_bytes(&s->common, n);
        }
    }
    /* An error ignored still keeps the backing file, as in QEMU. */
    return error;
}

/* ---- completion: the main thread ---------------------------------------- */

static int stream_prepare(Job *job)
{
    StreamJob *s = (StreamJob *)job;
    BlockDriverState *base;
    Error *err = NULL;
    int ret = 0;

    /* The filter goes first: it holds the chain it copies from. */
    bdrv_drop_filter(s->cor);
    s->cor = NULL;
    if (!bdrv_backing_bs(s->target)) {
        return 0;
    }
    bdrv_drain_all_begin();
    base = bdrv_filter_or_cow_bs(s->above_base);
    if (!bdrv_set_backing_hd(s->target, base, &err)) {
        error_free(err);
        ret = -EPERM;
    } else if (!base) {
        ret = bdrv_change_backing_file(s->target, NULL, NULL);
    } else {
        ret = bdrv_change_backing_file(s->target, s->backing_file ?
                                       s->backing_file : base->filename,
                                       bdrv_get_format_name(base));
    }
    bdrv_drain_all_end();
    return ret;
}

static void stream_clean(Job *job)
{
    StreamJob *s = (StreamJob *)job;

    if (s->cor) {
        bdrv_drop_filter(s->cor);
        s->cor = NULL;
    }
    if (s->target_read_only) {
        bdrv_set_read_only(s->target, NULL);
    }
}

static void stream_free(Job *job)
{
    g_free(((StreamJob *)job)->backing_file);
}

static const BlockJobDriver stream_driver = {
    .job_driver = {
        .instance_size = sizeof(StreamJob),
        .job_type = JOB_TYPE_STREAM,
        .run = stream_run,
        .prepare = stream_prepare,
        .clean = stream_clean,
        .free = stream_free,
    },
};

/* ---- creation: the main thread ------------------------------------------- */

static BlockDriverState *insert_cor(BlockDriverState *bs,
                                    BlockDriverState *bottom,
                                    const char *filter_node_name, Error **errp)
{
    g_autoptr(BlockdevOptions) opts = g_new0(BlockdevOptions, 1);

    opts->driver = BLOCKDEV_DRIVER_COPY_ON_READ;
    opts->node_name = g_strdup(filter_node_name);
    opts->u.copy_on_read.file = bdrv_node_reference(bs);
    opts->u.copy_on_read.bottom = g_strdup(bdrv_get_node_name(bottom));
    return bdrv_insert_node(bs, opts, errp);
}

BlockJob *stream_start(const char *job_id, BlockDriverState *bs,
                       BlockDriverState *base, const char *backing_file,
                       BlockDriverState *bottom, int flags, int64_t speed,
                       BlockdevOnError on_error, const char *filter_node_name,
                       Error **errp)
{
    /* What the job lets others do with the nodes it reads (QEMU's). */
    const uint64_t basic = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED;
    BlockDriverState *base_overlay, *above_base, *iter, *cor;
    bool read_only = bdrv_is_read_only(bs);
    StreamJob *s;

    g_assert(!(base && bottom));
    if (bottom) {
        base_overlay = above_base = bottom;
    } else {
        base_overlay = above_base = bdrv_find_overlay(bs, base);
        if (!base_overlay) {
            error_setg(errp, "'%s' is not in the backing chain of '%s'",
                       bdrv_get_node_name(base), bdrv_get_node_name(bs));
            return NULL;
        }
    }
    if (read_only && !bdrv_set_writable(bs, errp)) {
        return NULL;
    }
    cor = insert_cor(bs, base_overlay, filter_node_name, errp);
    if (!cor) {
        goto fail;
    }
    s = block_job_create(job_id, &stream_driver, NULL, cor,
                         BLK_PERM_CONSISTENT_READ, basic | BLK_PERM_WRITE,
                         speed, flags, errp);
    if (!s) {
        goto fail;
    }
    /*
     * No other job may change this part of the graph, and nobody resize
     * the target (its length is read once); the nodes below, which leave
     * the chain, are read once each: nobody may write them.
     */
    if (!block_job_add_bdrv(&s->common, "active node", bs, 0,
                            basic | BLK_PERM_WRITE, errp)) {
        goto fail_job;
    }
    base = bdrv_filter_or_cow_bs(above_base);
    for (iter = bdrv_filter_or_cow_bs(bs); iter != base;
         iter = bdrv_filter_or_cow_bs(iter)) {
        if (!block_job_add_bdrv(&s->common, "intermediate node", iter, 0,
                                basic, errp)) {
            goto fail_job;
        }
    }
    s->target = bs;
    s->base_overlay = base_overlay;
    s->above_base = above_base;
    s->cor = cor;
    s->on_error = on_error;
    s->backing_file = g_strdup(backing_file);
    s->target_read_only = read_only;
    return &s->common;

fail_job:
    job_early_fail(&s->common.job);
fail:
    if (cor) {
        bdrv_drop_filter(cor);
    }
    if (read_only) {
        bdrv_set_read_only(bs, NULL);
    }
    return NULL;
}
