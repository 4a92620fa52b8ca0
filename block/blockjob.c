/*
 * Block jobs: a Job with BlockBackends on its nodes, a speed, error
 * policies and QEMU's BLOCK_JOB_* events (blockjob.c in QEMU). The
 * generic life cycle is block/job.c's; this layer plugs in through
 * JobLayerOps.
 */
#include <errno.h>

#include "block/blockjob.h"
#include "block/job-int.h"
#include "qapi-events.h"
#include "util/main-loop.h"

static void block_job_event_pending(Job *job);
static void block_job_event_ready(Job *job);
static void block_job_event_cancelled(Job *job);
static void block_job_event_completed(Job *job);
static void block_job_user_resume(Job *job);
static void block_job_free(Job *job);

static const JobLayerOps block_job_layer = {
    .event_pending = block_job_event_pending,
    .event_ready = block_job_event_ready,
    .event_cancelled = block_job_event_cancelled,
    .event_completed = block_job_event_completed,
    .user_resume = block_job_user_resume,
    .free = block_job_free,
};

static BlockJob *block_job_of(Job *job)
{
    return job && job->layer == &block_job_layer ? (BlockJob *)job : NULL;
}

static const BlockJobDriver *block_job_driver(BlockJob *job)
{
    return (const BlockJobDriver *)job->job.driver;
}

bool block_job_is_internal(BlockJob *job)
{
    return job_is_internal(&job->job);
}

BlockJob *block_job_get(const char *id)
{
    return block_job_of(job_get(id));
}

BlockJob *block_job_next(BlockJob *job)
{
    Job *j = job ? &job->job : NULL;

    while ((j = job_next(j))) {
        if (block_job_of(j)) {
            return (BlockJob *)j;
        }
    }
    return NULL;
}

BlockJob *block_job_using_node(BlockDriverState *bs)
{
    BlockJob *job = NULL;
    GSList *l;

    while ((job = block_job_next(job))) {
        if (blk_bs(job->blk) == bs) {
            return job;
        }
        for (l = job->nodes; l; l = l->next) {
            if (blk_bs(l->data) == bs) {
                return job;
            }
        }
    }
    return NULL;
}

bool block_job_node_busy(BlockDriverState *bs, Error **errp)
{
    BlockJob *job = block_job_using_node(bs);

    if (job) {
        error_setg(errp, "Node '%s' is busy: block device is in use by block "
                   "job: %s", bdrv_get_node_name(bs), job_type_str(&job->job));
    }
    return job != NULL;
}

void block_job_remove_all_bdrv(BlockJob *job)
{
    g_assert(main_loop_is_main_thread());
    g_slist_free_full(g_steal_pointer(&job->nodes), (GDestroyNotify)blk_unref);
}

/* ---- events: called by job.c with the job lock held ------------------- */

static void block_job_event_pending(Job *job)
{
    if (!job_is_internal(job)) {
        qapi_event_send_block_job_pending(job_type(job), job->id);
    }
}

static void block_job_event_ready(Job *job)
{
    BlockJob *bjob = (BlockJob *)job;

    if (!job_is_internal(job)) {
        qapi_event_send_block_job_ready(job_type(job), job->id,
                                        job->progress_total,
                                        job->progress_current, bjob->speed);
    }
}

static void block_job_event_cancelled(Job *job)
{
    BlockJob *bjob = (BlockJob *)job;

    if (!job_is_internal(job)) {
        qapi_event_send_block_job_cancelled(job_type(job), job->id,
                                            job->progress_total,
                                            job->progress_current,
                                            bjob->speed);
    }
}

static void block_job_event_completed(Job *job)
{
    BlockJob *bjob = (BlockJob *)job;
    const char *msg = job->ret < 0 ? error_get_pretty(job->err) : NULL;

    if (!job_is_internal(job)) {
        qapi_event_send_block_job_completed(job_type(job), job->id,
                                            job->progress_total,
                                            job->progress_current,
                                            bjob->speed, msg);
    }
}

/* job-resume (or a cancel) after an error policy's stop: io-status is ok again. */
static void block_job_user_resume(Job *job)
{
    BlockJob *bjob = (BlockJob *)job;

    if (bjob->iostatus != BLOCK_DEVICE_IO_STATUS_OK) {
        g_assert(job->user_paused && job->pause_count > 0);
        bjob->iostatus = BLOCK_DEVICE_IO_STATUS_OK;
    }
}

static void block_job_free(Job *job)
{
    BlockJob *bjob = (BlockJob *)job;

    block_job_remove_all_bdrv(bjob);
    blk_unref(g_steal_pointer(&bjob->blk));
    ratelimit_destroy(&bjob->limit);
}

/* ---- creation --------------------------------------------------------- */

static char *block_job_owner(BlockJob *job)
{
    if (block_job_is_internal(job)) {
        return g_strdup_printf("internal %s job", job_type_str(&job->job));
    }
    return g_strdup_printf("%s job '%s'", job_type_str(&job->job), job->job.id);
}

BlockBackend *block_job_add_bdrv(BlockJob *job, const char *name,
                                 BlockDriverState *bs, uint64_t perm,
                                 uint64_t shared_perm, Error **errp)
{
    g_autofree char *owner = block_job_owner(job);
    BlockBackend *blk = blk_new(owner, perm, shared_perm);

    g_assert(main_loop_is_main_thread());
    if (!blk_insert_bs_named(blk, bs, name, errp)) {
        blk_unref(blk);
        return NULL;
    }
    job->nodes = g_slist_prepend(job->nodes, blk);
    return blk;
}

static bool block_job_set_speed_locked(BlockJob *job, int64_t speed,
                                       Error **errp)
{
    const BlockJobDriver *drv = block_job_driver(job);
    int64_t old_speed = job->speed;

    if (job_apply_verb_locked(&job->job, JOB_VERB_SET_SPEED, errp) < 0) {
        return false;
    }
    if (speed < 0) {
        error_setg(errp, "Parameter 'speed' expects a non-negative value");
        return false;
    }
    ratelimit_set_speed(&job->limit, speed, BLOCK_JOB_SLICE_TIME);
    job->speed = speed;
    if (drv->set_speed) {
        job_unlock();
        drv->set_speed(job, speed);
        job_lock();
    }
    if (speed && speed <= old_speed) {
        return true;
    }
    /* Faster (or unlimited): a job sleeping for the limit wakes now. */
    job_enter_cond_locked(&job->job, job_timer_pending_locked);
    return true;
}

bool block_job_set_speed(BlockJob *job, int64_t speed, Error **errp)
{
    bool ok;

    g_assert(main_loop_is_main_thread());
    job_lock();
    ok = block_job_set_speed_locked(job, speed, errp);
    job_unlock();
    return ok;
}

int64_t block_job_get_speed(BlockJob *job)
{
    int64_t speed;

    job_lock();
    speed = job->speed;
    job_unlock();
    return speed;
}

void *block_job_create(const char *job_id, const BlockJobDriver *driver,
                       JobTxn *txn, BlockDriverState *bs, uint64_t perm,
                       uint64_t shared_perm, int64_t speed, int flags,
                       Error **errp)
{
    BlockJob *job;

    g_assert(driver->job_driver.instance_size >= sizeof(BlockJob));
    /*
     * QEMU falls back to the node's device name, which nodes do not have
     * in a storage daemon: "Invalid job ID ''".
     */
    if (!job_id && !(flags & JOB_INTERNAL)) {
        job_id = "";
    }
    job = job_create(job_id, &driver->job_driver, txn, flags, errp);
    if (!job) {
        return NULL;
    }
    /* Set first, so that an early failure frees through block_job_free. */
    job->job.layer = &block_job_layer;
    ratelimit_init(&job->limit);
    job->iostatus = BLOCK_DEVICE_IO_STATUS_OK;

    {
        g_autofree char *owner = block_job_owner(job);

        job->blk = blk_new(owner, perm, shared_perm);
    }
    if (!blk_insert_bs_named(job->blk, bs, "main node", errp) ||
        !block_job_set_speed(job, speed, errp)) {
        job_early_fail(&job->job);
        return NULL;
    }
    return job;
}

/* ---- queries ---------------------------------------------------------- */

BlockJobInfo *block_job_query(BlockJob *job, Error **errp)
{
    BlockJobInfo *info;
    Job *j = &job->job;

    if (block_job_is_internal(job)) {
        error_setg(errp, "Cannot query QEMU internal jobs");
        return NULL;
    }
    info = g_new0(BlockJobInfo, 1);
    job_lock();
    info->type = g_strdup(job_type_str(j));
    info->device = g_strdup(j->id);
    info->busy = j->busy && !j->delegating;
    info->paused = j->pause_count > 0;
    info->offset = j->progress_current;
    info->len = j->progress_total;
    info->speed = job->speed;
    info->io_status = job->iostatus;
    info->ready = job_is_ready_locked(j);
    info->status = j->status;
    info->auto_finalize = j->auto_finalize;
    info->auto_dismiss = j->auto_dismiss;
    if (j->ret) {
        info->error = g_strdup(j->err ? error_get_pretty(j->err)
                                      : g_strerror(-j->ret));
    }
    job_unlock();
    return info;
}

/* ---- in run() --------------------------------------------------------- */

void block_job_ratelimit_processed_bytes(BlockJob *job, uint64_t n)
{
    ratelimit_calculate_delay(&job->limit, n);
}

void block_job_ratelimit_sleep(BlockJob *job)
{
    int64_t delay_ns;

    /*
     * Sleep at least once (a pause point). Woken early (a pause, a speed
     * change), sleep again for what is left: the delay is computed anew
     * each time, since the speed may have changed meanwhile.
     */
    do {
        delay_ns = ratelimit_calculate_delay(&job->limit, 0);
        job_sleep_ns(&job->job, delay_ns);
    } while (delay_ns && !job_is_cancelled(&job->job));
}

BlockErrorAction block_job_error_action(BlockJob *job, BlockdevOnError on_err,
                                        bool is_read, int error)
{
    BlockErrorAction action;
    bool paused = false;

    switch (on_err) {
    case BLOCKDEV_ON_ERROR_ENOSPC:
    case BLOCKDEV_ON_ERROR_AUTO:
        action = error == ENOSPC ? BLOCK_ERROR_ACTION_STOP
                                 : BLOCK_ERROR_ACTION_REPORT;
        break;
    case BLOCKDEV_ON_ERROR_STOP:
        action = BLOCK_ERROR_ACTION_STOP;
        break;
    case BLOCKDEV_ON_ERROR_REPORT:
        action = BLOCK_ERROR_ACTION_REPORT;
        break;
    case BLOCKDEV_ON_ERROR_IGNORE:
        action = BLOCK_ERROR_ACTION_IGNORE;
        break;
    default:
        g_assert_not_reached();
    }
    if (!block_job_is_internal(job)) {
        qapi_event_send_block_job_error(job->job.id,
                                        is_read ? IO_OPERATION_TYPE_READ
                                                : IO_OPERATION_TYPE_WRITE,
                                        action);
    }
    if (action == BLOCK_ERROR_ACTION_STOP) {
        job_lock();
        if (!job->job.user_paused) {
            /* A user-visible pause: job-resume lifts it. */
            job_pause_locked(&job->job);
            job->job.user_paused = true;
            paused = true;
        }
        if (job->iostatus == BLOCK_DEVICE_IO_STATUS_OK) {
            job->iostatus = error == ENOSPC ? BLOCK_DEVICE_IO_STATUS_NOSPACE
                                            : BLOCK_DEVICE_IO_STATUS_FAILED;
        }
        job_unlock();
        if (paused && job->job.driver->pause) {
            job->job.driver->pause(&job->job);
        }
    }
    return action;
}
