/*
 * The active commit (QEMU 7.2 runs it as a mirror job of type commit,
 * block/mirror.c's commit_active_start; include/block/chain-jobs.h).
 *
 * Set-up (main thread): the base is made writable if it is not, and a
 * mirror_top filter goes in front of the active layer (the source), so
 * every user now goes through it; an unnamed bitmap on the source records
 * what the base lacks: at first what the chain holds above the base, then
 * every write guests make.
 *
 * run() (the job's thread) copies dirty chunks from the source into the
 * base, clearing their bits before it reads them (a write meanwhile marks
 * them again). Once nothing is dirty the job is ready (BLOCK_JOB_READY)
 * and keeps copying what guests write, until job-complete or a cancel.
 *
 * Completion (main thread), drained so that no guest write slips in: what
 * is still dirty is copied, then on job-complete the base takes the
 * source's place for every user, the source's bitmaps are merged into the
 * base's (blkd's), and the filter goes. A soft cancel of a ready job
 * (block-job-cancel) copies the rest but switches nothing; a failure or a
 * forced cancel only takes the filter away. The layers between leave the
 * chain with their headers as they were (QEMU's MIRROR_LEAVE_BACKING_CHAIN),
 * and, as in QEMU 7.2, a base made writable stays writable.
 */
#include <errno.h>

#include "block/block_int.h"
#include "block/chain-jobs.h"
#include "block/dirty-bitmap.h"

/* The most one copy takes. */
#define MIRROR_CHUNK (1 << 20)

typedef struct MirrorJob {
    BlockJob common;            /* first; its BlockBackend is on the filter */
    BlockDriverState *mirror_top;   /* the filter, until completion */
    BlockDriverState *source;
    BlockDriverState *base_bs;
    BlockDriverState *filtered_base;    /* what the copy stops above */
    BlockBackend *base;
    BdrvDirtyBitmap *dirty;     /* on the source: what the base lacks */
    BlockdevOnError on_error;
    int64_t granularity;
    int64_t cursor;             /* where the next copy looks from */
    gint should_complete;       /* job-complete was asked (atomic) */
} MirrorJob;

/* ---- the mirror_top filter ---------------------------------------------- */

static int64_t mirror_top_getlength(BlockDriverState *bs)
{
    return bdrv_child_getlength(bs->file);
}

static int mirror_top_preadv(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, void *buf, BdrvRequestFlags flags)
{
    return bdrv_pread(bs->file, offset, bytes, buf, flags);
}

/* Writes reach the source, whose dirty bitmap the job's is. */
static int mirror_top_pwritev(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, const void *buf,
                              BdrvRequestFlags flags)
{
    return bdrv_pwrite(bs->file, offset, bytes, buf, flags);
}

static int mirror_top_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes, BdrvRequestFlags flags)
{
    return bdrv_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int mirror_top_pdiscard(BlockDriverState *bs, int64_t offset,
                               int64_t bytes)
{
    return bdrv_pdiscard(bs->file, offset, bytes);
}

static const BlockDriver bdrv_mirror_top = {
    .format_name = "mirror_top",
    .is_filter = true,
    .getlength = mirror_top_getlength,
    .preadv = mirror_top_preadv,
    .pwritev = mirror_top_pwritev,
    .pwrite_zeroes = mirror_top_pwrite_zeroes,
    .pdiscard = mirror_top_pdiscard,
    .supports_fua = true,
};

/* ---- copying: the job's thread, and the main thread at the end ---------- */

/*
 * Claims the next dirty run (at most MIRROR_CHUNK) from the cursor on,
 * clearing its bits: 0 if nothing is dirty.
 */
static int64_t claim_dirty(MirrorJob *s, int64_t len, int64_t *offset)
{
    int64_t start = bdrv_dirty_bitmap_next_dirty(s->dirty, s->cursor,
                                                 len - s->cursor);
    int64_t end;

    if (start < 0) {
        start = bdrv_dirty_bitmap_next_dirty(s->dirty, 0, len);
        if (start < 0) {
            return 0;
        }
    }
    start = start / s->granularity * s->granularity;
    end = start + s->granularity;
    while (end < len && end - start < MIRROR_CHUNK &&
           bdrv_dirty_bitmap_get(s->dirty, end)) {
        end += s->granularity;
    }
    end = MIN(end, len);
    bdrv_reset_dirty_bitmap(s->dirty, start, end - start);
    s->cursor = end < len ? end : 0;
    *offset = start;
    return end - start;
}

/*
 * Copies one dirty run from the source into the base: its length, 0 when
 * nothing is dirty, or -errno (*is_read: which side failed; the run is
 * dirty again).
 */
static int64_t copy_dirty(MirrorJob *s, int64_t len, void *buf, bool *is_read)
{
    int64_t offset, n = claim_dirty(s, len, &offset);
    int ret;

    if (!n) {
        return 0;
    }
    *is_read = true;
    ret = blk_pread(s->common.blk, offset, n, buf, 0);
    if (ret == 0) {
        *is_read = false;
        ret = blk_pwrite(s->base, offset, n, buf, 0);
    }
    if (ret < 0) {
        bdrv_set_dirty_bitmap(s->dirty, offset, n);
        return ret;
    }
    return n;
}

/* ---- run(): the job's thread -------------------------------------------- */

static bool should_finish(MirrorJob *s)
{
    return g_atomic_int_get(&s->should_complete) ||
           job_cancel_requested(&s->common.job);
}

/* What the chain holds above the base is what the base lacks at first. */
static int mark_allocated(MirrorJob *s, int64_t len)
{
    int64_t offset, n;

    for (offset = 0; offset < len; offset += n) {
        int depth = 0;
        int ret;

        job_pause_point(&s->common.job);
        if (job_is_cancelled(&s->common.job)) {
            return 0;
        }
        /* As a request: a drained section waits for it. */
        blk_io_begin(s->common.blk);
        ret = bdrv_block_status_above(s->source, s->filtered_base, false,
                                      offset, len - offset, &n, &depth);
        blk_io_end(s->common.blk);
        if (ret < 0) {
            return ret;
        }
        if (depth > 0) {
            bdrv_set_dirty_bitmap(s->dirty, offset, n);
        }
    }
    return 0;
}

static int mirror_run(Job *job, Error **errp)
{
    MirrorJob *s = (MirrorJob *)job;
    int64_t len = bdrv_getlength(s->source);
    g_autofree void *buf = NULL;
    int ret;

    if (len < 0) {
        return len;
    }
    ret = commit_grow_base(s->base, len, errp);
    if (ret < 0) {
        return ret;
    }
    ret = mark_allocated(s, len);
    if (ret < 0) {
        return ret;
    }
    buf = g_malloc(MIRROR_CHUNK);
    for (;;) {
        int64_t n;
        bool is_read;

        if (job_is_cancelled(job)) {
            return 0;
        }
        job_progress_set_remaining(job, bdrv_get_dirty_count(s->dirty));
        n = copy_dirty(s, len, buf, &is_read);
        if (n < 0) {
            if (block_job_error_action(&s->common, s->on_error, is_read, -n) ==
                BLOCK_ERROR_ACTION_REPORT) {
                return n;
            }
            job_pause_point(job);
            continue;
        }
        if (n > 0) {
            job_progress_update(job, n);
            block_job_ratelimit_processed_bytes(&s->common, n);
            block_job_ratelimit_sleep(&s->common);
            continue;
        }
        /* In sync: ready once, then keep up with guests until told. */
        if (!job_is_ready(job)) {
            ret = blk_flush(s->base);
            if (ret < 0) {
                if (block_job_error_action(&s->common, s->on_error, false,
                                           -ret) == BLOCK_ERROR_ACTION_REPORT) {
                    return ret;
                }
                job_pause_point(job);
                continue;
            }
            job_transition_to_ready(job);
        }
        if (should_finish(s)) {
            return 0;
        }
        job_sleep_ns(job, BLOCK_JOB_SLICE_TIME);
    }
}

/* ---- completion: the main thread ---------------------------------------- */

/* Drained: the writes guests made since run() last looked. */
static int copy_the_rest(MirrorJob *s)
{
    int64_t len = bdrv_getlength(s->source);
    g_autofree void *buf = g_malloc(MIRROR_CHUNK);
    int64_t n;
    bool is_read;

    while ((n = copy_dirty(s, len, buf, &is_read)) > 0) {
        job_progress_update(&s->common.job, n);
    }
    return n < 0 ? n : blk_flush(s->base);
}

static int mirror_prepare(Job *job)
{
    MirrorJob *s = (MirrorJob *)job;
    Error *err = NULL;
    int ret;

    bdrv_drain_all_begin();
    ret = copy_the_rest(s);
    if (ret == 0 && g_atomic_int_get(&s->should_complete)) {
        /*
         * The job is done with the base. Its edge there needs write, and
         * resize if it grew the base, which the layers left above the base
         * share no more once it replaces the source: drop it first, as
         * QEMU does.
         */
        blk_remove_bs(s->base);
        if (commit_bitmaps_check(s->source, s->base_bs, &err) &&
            bdrv_replace_node(s->source, s->base_bs, &err)) {
            commit_bitmaps_merge(s->source, s->base_bs);
        } else {
            error_free(err);
            ret = -EPERM;
        }
    }
    bdrv_drain_all_end();
    return ret;
}

static void mirror_clean(Job *job)
{
    MirrorJob *s = (MirrorJob *)job;

    block_job_remove_all_bdrv(&s->common);
    bdrv_drop_filter(g_steal_pointer(&s->mirror_top));
    bdrv_release_dirty_bitmap(g_steal_pointer(&s->dirty));
}

/* Before it is ready a cancel is a cancel; after, a soft one completes. */
static bool mirror_cancel(Job *job, bool force)
{
    return force || !job_is_ready(job);
}

static void mirror_complete(Job *job, Error **errp)
{
    MirrorJob *s = (MirrorJob *)job;

    g_atomic_int_set(&s->should_complete, true);
    /* A paused job sees it once resumed. */
    job_enter(job);
}

static const BlockJobDriver commit_active_driver = {
    .job_driver = {
        .instance_size = sizeof(MirrorJob),
        .job_type = JOB_TYPE_COMMIT,
        .run = mirror_run,
        .prepare = mirror_prepare,
        .clean = mirror_clean,
        .cancel = mirror_cancel,
        .complete = mirror_complete,
    },
};

/* ---- creation: the main thread ------------------------------------------- */

BlockJob *commit_active_start(const char *job_id, BlockDriverState *bs,
                              BlockDriverState *base, int flags, int64_t speed,
                              BlockdevOnError on_error,
                              const char *filter_node_name, Error **errp)
{
    uint64_t base_perm = BLK_PERM_WRITE;
    uint64_t shared = BLK_PERM_WRITE_UNCHANGED | BLK_PERM_WRITE;
    bool base_read_only = bdrv_is_read_only(base);
    BlockDriverState *mirror_top;
    MirrorJob *s;

    if (!commit_bitmaps_check(bs, base, errp)) {
        return NULL;
    }
    if (base_read_only && !bdrv_set_writable(base, errp)) {
        return NULL;
    }
    mirror_top = bdrv_new_filter(&bdrv_mirror_top, filter_node_name, false,
                                 bs, errp);
    if (!mirror_top) {
        goto fail;
    }
    if (!bdrv_replace_node(bs, mirror_top, errp)) {
        bdrv_unref(mirror_top);
        goto fail;
    }
    /* QEMU's: the job reads the source; others may write it (guests). */
    s = block_job_create(job_id, &commit_active_driver, NULL, mirror_top,
                         BLK_PERM_CONSISTENT_READ,
                         BLK_PERM_CONSISTENT_READ | shared, speed, flags, errp);
    if (!s) {
        bdrv_drop_filter(mirror_top);
        goto fail;
    }
    s->mirror_top = mirror_top;
    /* No other job may take the source meanwhile. */
    if (!block_job_add_bdrv(&s->common, "source", bs, 0,
                            BLK_PERM_CONSISTENT_READ | shared, errp)) {
        goto fail_job;
    }
    if (bdrv_getlength(base) < bdrv_getlength(bs)) {
        base_perm |= BLK_PERM_RESIZE;
    }
    /* The base takes the guests' writes once it replaces the source. */
    s->base = block_job_add_bdrv(&s->common, "target", base, base_perm,
                                 BLK_PERM_CONSISTENT_READ | shared, errp);
    if (!s->base) {
        goto fail_job;
    }
    s->filtered_base = commit_filtered_base(bdrv_filter_or_cow_bs(bs), base);
    if (!commit_block_intermediates(&s->common, bdrv_filter_or_cow_bs(bs),
                                    base, s->filtered_base, shared, NULL,
                                    errp)) {
        goto fail_job;
    }
    s->source = bs;
    s->base_bs = base;
    s->on_error = on_error;
    s->granularity = bdrv_get_default_bitmap_granularity(base);
    s->dirty = bdrv_create_dirty_bitmap(bs, s->granularity, NULL, &error_abort);
    return &s->common;

fail_job:
    s->mirror_top = NULL;
    job_early_fail(&s->common.job);
    bdrv_drop_filter(mirror_top);
fail:
    if (base_read_only) {
        bdrv_set_read_only(base, NULL);
    }
    return NULL;
}
