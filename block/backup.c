/*
 * The backup job; see include/block/backup.h.
 *
 * Set-up (main thread): the bitmap gets a successor that records the
 * writes made during the job, and a copy-before-write filter goes in
 * front of the source; its block-copy state holds the copy bitmap: what
 * is left to copy.
 *
 * run() (the job's thread) seeds the copy bitmap by sync mode, then keeps
 * up to BACKUP_WORKERS chunk copies in flight on a thread pool, each
 * counted at the drain gate from before it is claimed, and between chunks
 * honours the speed limit (a chunk counts when it is claimed, so the
 * first goes at once and the next waits its turn, as in QEMU), pauses,
 * cancels and the error policies. Guest writes meanwhile copy
 * their clusters first (the filter), so the target is the disk as it was
 * at the start.
 *
 * Completion (main thread): the bitmap ends as the bitmap-mode says
 * (reference table: on-success and always give up the old bits on
 * success, always also on failure keeping what was not copied; never
 * keeps them), then the filter goes away.
 */
#include <errno.h>

#include "block/backup.h"
#include "block/copy-before-write.h"

#define BACKUP_WORKERS 8

typedef struct BackupJob {
    BlockJob common;            /* first: a BackupJob is a BlockJob */
    BlockDriverState *source;
    BlockDriverState *cbw;
    BlockCopyState *bcs;
    BdrvDirtyBitmap *sync_bitmap;
    MirrorSyncMode sync;        /* top, full, none or bitmap */
    BitmapSyncMode bitmap_mode;
    BlockdevOnError on_source_error;
    BlockdevOnError on_target_error;

    /* Between the job thread and its copy workers. */
    GMutex lock;
    GCond cond;
    int in_flight;
    int error;                  /* first failure not yet handled (-errno) */
    bool error_is_read;
} BackupJob;

/* ---- run(): the job's thread -------------------------------------------- */

/* A claimed chunk, in a pool thread; copy_all() entered the gate for it. */
static void copy_one(gpointer data, gpointer opaque)
{
    BackupJob *s = opaque;
    bool is_read = false;
    int ret;

    ret = block_copy_run(s->bcs, data, &is_read);
    blk_io_end(s->common.blk);
    g_mutex_lock(&s->lock);
    s->in_flight--;
    if (ret < 0 && !s->error) {
        s->error = ret;
        s->error_is_read = is_read;
    }
    g_cond_broadcast(&s->cond);
    g_mutex_unlock(&s->lock);
}

static void wait_in_flight_below(BackupJob *s, int limit)
{
    g_mutex_lock(&s->lock);
    while (s->in_flight > limit) {
        g_cond_wait(&s->cond, &s->lock);
    }
    g_mutex_unlock(&s->lock);
}

/* sync=top: what the top layer does not allocate is not copied. */
static void skip_unallocated(BackupJob *s, BdrvDirtyBitmap *copy)
{
    int64_t len = bdrv_getlength(s->source);
    int64_t cluster = block_copy_cluster_size(s->bcs);
    int64_t offset = 0, pnum;

    while (offset < len && !job_is_cancelled(&s->common.job)) {
        int ret = bdrv_block_status(s->source, false, offset, len - offset,
                                    &pnum, NULL, NULL);

        if (ret < 0 || pnum <= 0) {
            break;              /* unknown: copy it all */
        }
        if (!(ret & BDRV_BLOCK_ALLOCATED)) {
            int64_t start = (offset + cluster - 1) / cluster * cluster;
            int64_t end = offset + pnum == len ? len : (offset + pnum) / cluster * cluster;

            if (end > start) {
                bdrv_reset_dirty_bitmap(copy, start, end - start);
            }
        }
        offset += pnum;
    }
}

/* The background copy, until done, cancelled or failed: 0 or -errno. */
static int copy_all(BackupJob *s)
{
    Job *job = &s->common.job;
    GThreadPool *pool = g_thread_pool_new(copy_one, s, BACKUP_WORKERS, FALSE, NULL);
    int ret = 0;

    /* The workers copy; this thread only hands out chunks and paces them. */
    job_set_delegating(job, true);
    for (;;) {
        BlockCopyTask *task;
        int error;
        bool error_is_read;

        wait_in_flight_below(s, BACKUP_WORKERS - 1);
        g_mutex_lock(&s->lock);
        error = s->error;
        error_is_read = s->error_is_read;
        s->error = 0;
        g_mutex_unlock(&s->lock);

        if (error) {
            BlockErrorAction action;

            wait_in_flight_below(s, 0);
            action = block_job_error_action(&s->common,
                                            error_is_read ? s->on_source_error
                                                          : s->on_target_error,
                                            error_is_read, -error);
            if (action == BLOCK_ERROR_ACTION_REPORT) {
                ret = error;
                break;
            }
            /* stop: paused until job-resume; ignore: at once. Then again. */
            job_pause_point(job);
            continue;
        }
        if (job_is_cancelled(job)) {
            ret = -ECANCELED;
            break;
        }
        ret = -bdrv_cbw_snapshot_error(s->cbw);
        if (ret < 0) {
            break;
        }
        block_job_ratelimit_sleep(&s->common);
        if (job_is_cancelled(job)) {
            continue;
        }
        blk_io_begin(s->common.blk);
        task = block_copy_claim(s->bcs, BLOCK_COPY_MAX_CHUNK);
        if (!task) {
            blk_io_end(s->common.blk);
            /* Copies still in flight may fail and leave work behind. */
            wait_in_flight_below(s, 0);
            if (!bdrv_get_dirty_count(block_copy_dirty_bitmap(s->bcs)) && !s->error) {
                ret = 0;
                break;
            }
            continue;
        }
        block_job_ratelimit_processed_bytes(&s->common, block_copy_task_bytes(task));
        g_mutex_lock(&s->lock);
        s->in_flight++;
        g_mutex_unlock(&s->lock);
        g_thread_pool_push(pool, task, NULL);
    }
    wait_in_flight_below(s, 0);
    g_thread_pool_free(pool, FALSE, TRUE);
    job_set_delegating(job, false);
    /* The job's error is strerror(-ret), as QEMU reports it: no errp. */
    return ret;
}

static int backup_run(Job *job, Error **errp)
{
    BackupJob *s = (BackupJob *)job;
    BdrvDirtyBitmap *copy = block_copy_dirty_bitmap(s->bcs);

    if (s->sync == MIRROR_SYNC_MODE_BITMAP) {
        /* The frozen bitmap's clusters, widened to backup clusters. */
        bdrv_clear_dirty_bitmap(copy, NULL);
        bdrv_merge_dirty_bitmap(copy, s->sync_bitmap, NULL, &error_abort);
    } else if (s->sync == MIRROR_SYNC_MODE_TOP) {
        /*
         * Until the scan is done, guest writes ahead of it must not copy
         * what the top layer does not allocate either (QEMU's order).
         */
        block_copy_set_skip_unallocated(s->bcs, true);
        skip_unallocated(s, copy);
        block_copy_set_skip_unallocated(s->bcs, false);
    }
    job_progress_set_remaining(job, bdrv_get_dirty_count(copy));
    if (s->sync == MIRROR_SYNC_MODE_NONE) {
        /* Only the filter copies, as guests write; until cancelled. */
        while (!job_is_cancelled(job)) {
            job_yield(job);
        }
        return -ECANCELED;
    }
    return copy_all(s);
}

/*
 * Each chunk copied, by the job or ahead of a guest write, as it completes
 * (any thread): the job's progress, as QEMU's block-copy reports it.
 */
static void backup_progress(void *opaque, int64_t bytes)
{
    job_progress_update(opaque, bytes);
}

/* ---- completion: the main thread ---------------------------------------- */

static void backup_commit(Job *job)
{
    BackupJob *s = (BackupJob *)job;

    if (!s->sync_bitmap) {
        return;
    }
    if (s->bitmap_mode == BITMAP_SYNC_MODE_NEVER) {
        bdrv_reclaim_dirty_bitmap(s->sync_bitmap);
    } else {
        /* Backed up: the bitmap keeps only what was written since. */
        bdrv_dirty_bitmap_abdicate(s->sync_bitmap);
    }
    s->sync_bitmap = NULL;
}

static void backup_abort(Job *job)
{
    BackupJob *s = (BackupJob *)job;

    if (!s->sync_bitmap) {
        return;
    }
    if (s->bitmap_mode == BITMAP_SYNC_MODE_ALWAYS) {
        BdrvDirtyBitmap *bm = bdrv_dirty_bitmap_abdicate(s->sync_bitmap);

        /* What was not copied stays dirty. */
        bdrv_merge_dirty_bitmap(bm, block_copy_dirty_bitmap(s->bcs), NULL,
                                &error_abort);
    } else {
        bdrv_reclaim_dirty_bitmap(s->sync_bitmap);
    }
    s->sync_bitmap = NULL;
}

static void backup_clean(Job *job)
{
    BackupJob *s = (BackupJob *)job;

    if (s->cbw) {
        bdrv_drop_filter(s->cbw);
        s->cbw = NULL;
    }
}

static void backup_free(Job *job)
{
    BackupJob *s = (BackupJob *)job;

    g_mutex_clear(&s->lock);
    g_cond_clear(&s->cond);
}

static const BlockJobDriver backup_driver = {
    .job_driver = {
        .instance_size = sizeof(BackupJob),
        .job_type = JOB_TYPE_BACKUP,
        .run = backup_run,
        .commit = backup_commit,
        .abort = backup_abort,
        .clean = backup_clean,
        .free = backup_free,
    },
};

/* ---- creation: the main thread ------------------------------------------- */

/* blockdev.c's do_backup_common: the sync/bitmap rules, in QEMU's order. */
static bool check_sync(const BackupCommon *args, BlockDriverState *bs,
                       MirrorSyncMode *sync, BitmapSyncMode *mode,
                       BdrvDirtyBitmap **bitmap, Error **errp)
{
    bool has_mode = args->has_bitmap_mode;

    *sync = args->sync;
    *mode = args->bitmap_mode;
    if ((*sync == MIRROR_SYNC_MODE_BITMAP || *sync == MIRROR_SYNC_MODE_INCREMENTAL ||
         *sync == MIRROR_SYNC_MODE_DIFFERENTIAL) && !args->bitmap) {
        error_setg(errp, "must provide a valid bitmap name for '%s' sync mode",
                   MirrorSyncMode_str(*sync));
        return false;
    }
    if (*sync == MIRROR_SYNC_MODE_INCREMENTAL) {
        if (has_mode && *mode != BITMAP_SYNC_MODE_ON_SUCCESS) {
            error_setg(errp, "Bitmap sync mode must be '%s' when using sync mode '%s'",
                       BitmapSyncMode_str(BITMAP_SYNC_MODE_ON_SUCCESS),
                       MirrorSyncMode_str(*sync));
            return false;
        }
        has_mode = true;
        *mode = BITMAP_SYNC_MODE_ON_SUCCESS;
        *sync = MIRROR_SYNC_MODE_BITMAP;
    } else if (*sync == MIRROR_SYNC_MODE_DIFFERENTIAL) {
        /* blkd's: the changes since the last full backup, bitmap kept. */
        if (has_mode && *mode != BITMAP_SYNC_MODE_NEVER) {
            error_setg(errp, "Bitmap sync mode must be '%s' when using sync mode '%s'",
                       BitmapSyncMode_str(BITMAP_SYNC_MODE_NEVER),
                       MirrorSyncMode_str(*sync));
            return false;
        }
        has_mode = true;
        *mode = BITMAP_SYNC_MODE_NEVER;
        *sync = MIRROR_SYNC_MODE_BITMAP;
    }
    *bitmap = NULL;
    if (args->bitmap) {
        *bitmap = bdrv_find_dirty_bitmap(bs, args->bitmap);
        if (!*bitmap) {
            error_setg(errp, "Bitmap '%s' could not be found", args->bitmap);
            return false;
        }
        if (!has_mode) {
            error_setg(errp, "Bitmap sync mode must be given when providing a bitmap");
            return false;
        }
        if (!bdrv_dirty_bitmap_check(*bitmap, BDRV_BITMAP_ALLOW_RO, errp)) {
            return false;
        }
        if (*sync == MIRROR_SYNC_MODE_NONE) {
            error_setg(errp, "sync mode '%s' does not produce meaningful bitmap "
                       "outputs", MirrorSyncMode_str(*sync));
            return false;
        }
        if (*mode == BITMAP_SYNC_MODE_NEVER && *sync != MIRROR_SYNC_MODE_BITMAP) {
            error_setg(errp, "Bitmap sync mode '%s' has no meaningful effect when "
                       "combined with sync mode '%s'", BitmapSyncMode_str(*mode),
                       MirrorSyncMode_str(*sync));
            return false;
        }
    } else if (has_mode) {
        error_setg(errp, "Cannot specify bitmap sync mode without a bitmap");
        return false;
    }
    return true;
}

BlockJob *backup_create(const BackupCommon *args, BlockDriverState *bs,
                        BlockDriverState *target, JobTxn *txn, Error **errp)
{
    MirrorSyncMode sync;
    BitmapSyncMode mode;
    BdrvDirtyBitmap *bitmap;
    BlockDriverState *cbw;
    BlockCopyState *bcs;
    BackupJob *s;
    bool compress = args->has_compress && args->compress;
    int flags = JOB_DEFAULT;

    if (!check_sync(args, bs, &sync, &mode, &bitmap, errp)) {
        return NULL;
    }
    /* block/backup.c's backup_job_create, in its order. */
    if (bs == target) {
        error_setg(errp, "Source and target cannot be the same");
        return NULL;
    }
    if (compress && !bdrv_supports_compressed_writes(target)) {
        /* QEMU's text, ending in the device name QSD nodes do not have. */
        error_setg(errp, "Compression is not supported for this drive ");
        return NULL;
    }
    if (bitmap) {
        if (mode != BITMAP_SYNC_MODE_NEVER &&
            !bdrv_dirty_bitmap_check(bitmap, BDRV_BITMAP_DEFAULT, errp)) {
            return NULL;
        }
        if (!bdrv_dirty_bitmap_create_successor(bitmap, errp)) {
            return NULL;
        }
    }
    if (bdrv_getlength(bs) != bdrv_getlength(target)) {
        error_setg(errp, "Source and target image have different sizes");
        goto fail_bitmap;
    }
    /* Drained: no guest write may copy a cluster before compress is set. */
    bdrv_drain_all_begin();
    cbw = bdrv_cbw_append(bs, target, args->filter_node_name, &bcs, errp);
    if (cbw) {
        block_copy_set_compress(bcs, compress);
    }
    bdrv_drain_all_end();
    if (!cbw) {
        goto fail_bitmap;
    }
    if (args->has_auto_finalize && !args->auto_finalize) {
        flags |= JOB_MANUAL_FINALIZE;
    }
    if (args->has_auto_dismiss && !args->auto_dismiss) {
        flags |= JOB_MANUAL_DISMISS;
    }
    /* QSD has no device names to default the ID to: '' is refused. */
    s = block_job_create(args->job_id ? args->job_id : "", &backup_driver, txn,
                         cbw, 0, BLK_PERM_ALL, args->has_speed ? args->speed : 0,
                         flags, errp);
    if (!s) {
        bdrv_drop_filter(cbw);
        goto fail_bitmap;
    }
    /* Needing nothing of the target, this cannot conflict. */
    block_job_add_bdrv(&s->common, "target", target, 0, BLK_PERM_ALL, &error_abort);
    s->source = bs;
    s->cbw = cbw;
    s->bcs = bcs;
    /* Before any copy: the transaction creating the job runs drained. */
    block_copy_set_progress(bcs, backup_progress, &s->common.job);
    s->sync_bitmap = bitmap;
    s->sync = sync;
    s->bitmap_mode = mode;
    s->on_source_error = args->has_on_source_error ? args->on_source_error
                                                   : BLOCKDEV_ON_ERROR_REPORT;
    s->on_target_error = args->has_on_target_error ? args->on_target_error
                                                   : BLOCKDEV_ON_ERROR_REPORT;
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
    return &s->common;

fail_bitmap:
    if (bitmap) {
        bdrv_reclaim_dirty_bitmap(bitmap);
    }
    return NULL;
}
