/*
 * Jobs: the state machine and verb tables, creation and lifetime, queries
 * and progress. The job thread, pausing and sleeping are in job-run.c;
 * completion, cancelling and transactions in job-complete.c.
 * docs/devel/jobs.md has the design.
 *
 * The job lock guards the state both the main thread and job threads
 * read; it is held across no hook and no I/O, only across the event
 * emission of a state change, so that JOB_STATUS_CHANGE events come out
 * in the order of the changes whichever thread makes them.
 */
#include <errno.h>
#include <string.h>

#include "block/job-int.h"
#include "qapi-events.h"
#include "util/main-loop.h"
#include "util/id.h"

GMutex job_mutex;
static GList *jobs;             /* Job *, newest first; main thread */

/* Which state may follow which: QEMU's JobSTT, reference section 2.7. */
static const bool job_stt[JOB_STATUS__MAX][JOB_STATUS__MAX] = {
    /*                          U, C, R, P, Y, S, W, D, X, E, N */
    [JOB_STATUS_UNDEFINED] = { 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
    [JOB_STATUS_CREATED]   = { 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1 },
    [JOB_STATUS_RUNNING]   = { 0, 0, 0, 1, 1, 0, 1, 0, 1, 0, 0 },
    [JOB_STATUS_PAUSED]    = { 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0 },
    [JOB_STATUS_READY]     = { 0, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0 },
    [JOB_STATUS_STANDBY]   = { 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0 },
    [JOB_STATUS_WAITING]   = { 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0 },
    [JOB_STATUS_PENDING]   = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0 },
    [JOB_STATUS_ABORTING]  = { 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0 },
    [JOB_STATUS_CONCLUDED] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 },
    [JOB_STATUS_NULL]      = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 },
};

/* Which state accepts which verb: QEMU's JobVerbTable. */
static const bool job_verb_table[JOB_VERB__MAX][JOB_STATUS__MAX] = {
    /*                          U, C, R, P, Y, S, W, D, X, E, N */
    [JOB_VERB_CANCEL]      = { 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0 },
    [JOB_VERB_PAUSE]       = { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
    [JOB_VERB_RESUME]      = { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
    [JOB_VERB_SET_SPEED]   = { 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0 },
    [JOB_VERB_COMPLETE]    = { 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0 },
    [JOB_VERB_DISMISS]     = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0 },
    [JOB_VERB_FINALIZE]    = { 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0 },
};

void job_lock(void)
{
    g_mutex_lock(&job_mutex);
}

void job_unlock(void)
{
    g_mutex_unlock(&job_mutex);
}

bool job_transition_allowed(JobStatus from, JobStatus to)
{
    return job_stt[from][to];
}

bool job_verb_allowed(JobVerb verb, JobStatus status)
{
    return job_verb_table[verb][status];
}

void job_state_transition_locked(Job *job, JobStatus to)
{
    JobStatus from = job->status;

    g_assert(to >= 0 && to < JOB_STATUS__MAX);
    if (!job_stt[from][to]) {
        g_error("job '%s': illegal transition %s -> %s", job->id,
                JobStatus_str(from), JobStatus_str(to));
    }
    job->status = to;
    if (!job_is_internal(job) && from != to) {
        qapi_event_send_job_status_change(job->id, to);
    }
}

int job_apply_verb_locked(Job *job, JobVerb verb, Error **errp)
{
    if (job_verb_table[verb][job->status]) {
        return 0;
    }
    error_setg(errp, "Job '%s' in state '%s' cannot accept command verb '%s'",
               job->id, JobStatus_str(job->status), JobVerb_str(verb));
    return -EPERM;
}

/* ---- queries ---------------------------------------------------------- */

bool job_is_internal(const Job *job)
{
    return job->id == NULL;
}

JobType job_type(const Job *job)
{
    return job->driver->job_type;
}

const char *job_type_str(const Job *job)
{
    return JobType_str(job_type(job));
}

JobStatus job_status(Job *job)
{
    JobStatus s;

    job_lock();
    s = job->status;
    job_unlock();
    return s;
}

bool job_is_completed_locked(Job *job)
{
    switch (job->status) {
    case JOB_STATUS_WAITING:
    case JOB_STATUS_PENDING:
    case JOB_STATUS_ABORTING:
    case JOB_STATUS_CONCLUDED:
    case JOB_STATUS_NULL:
        return true;
    default:
        return false;
    }
}

bool job_is_completed(Job *job)
{
    bool ret;

    job_lock();
    ret = job_is_completed_locked(job);
    job_unlock();
    return ret;
}

bool job_is_ready_locked(Job *job)
{
    return job->status == JOB_STATUS_READY || job->status == JOB_STATUS_STANDBY;
}

bool job_is_ready(Job *job)
{
    bool ret;

    job_lock();
    ret = job_is_ready_locked(job);
    job_unlock();
    return ret;
}

/*
 * QEMU distinguishes a cancel that was asked for from one that is forced:
 * a soft cancel of a ready mirror means "complete without switching over"
 * and is not a cancel to the job's eyes.
 */
bool job_is_cancelled_locked(Job *job)
{
    return job->cancelled && job->force_cancel;
}

bool job_cancel_requested_locked(Job *job)
{
    return job->cancelled;
}

bool job_cancel_requested(Job *job)
{
    bool ret;

    job_lock();
    ret = job_cancel_requested_locked(job);
    job_unlock();
    return ret;
}

bool job_is_cancelled(Job *job)
{
    bool ret;

    job_lock();
    ret = job_is_cancelled_locked(job);
    job_unlock();
    return ret;
}

Job *job_get(const char *id)
{
    GList *l;

    g_assert(main_loop_is_main_thread());
    for (l = jobs; l; l = l->next) {
        Job *job = l->data;

        if (job->id && !strcmp(job->id, id)) {
            return job;
        }
    }
    return NULL;
}

Job *job_next(Job *job)
{
    GList *l;

    g_assert(main_loop_is_main_thread());
    if (!job) {
        return jobs ? jobs->data : NULL;
    }
    l = g_list_find(jobs, job);
    return l && l->next ? l->next->data : NULL;
}

JobInfo *job_query(Job *job)
{
    JobInfo *info = g_new0(JobInfo, 1);

    g_assert(!job_is_internal(job));
    job_lock();
    info->id = g_strdup(job->id);
    info->type = job_type(job);
    info->status = job->status;
    info->current_progress = job->progress_current;
    info->total_progress = job->progress_total;
    info->error = job->err ? g_strdup(error_get_pretty(job->err)) : NULL;
    job_unlock();
    return info;
}

/* ---- transactions ----------------------------------------------------- */

JobTxn *job_txn_new(void)
{
    JobTxn *txn = g_new0(JobTxn, 1);

    txn->refcnt = 1;
    return txn;
}

void job_txn_ref(JobTxn *txn)
{
    txn->refcnt++;
}

void job_txn_unref(JobTxn *txn)
{
    if (txn && --txn->refcnt == 0) {
        g_assert(!txn->jobs);
        g_free(txn);
    }
}

static void job_txn_add_job(JobTxn *txn, Job *job)
{
    g_assert(!job->txn);
    job->txn = txn;
    txn->jobs = g_list_prepend(txn->jobs, job);
    txn->refcnt++;
}

void job_txn_del_job_locked(Job *job)
{
    if (job->txn) {
        job->txn->jobs = g_list_remove(job->txn->jobs, job);
        job_txn_unref(job->txn);
        job->txn = NULL;
    }
}

/* ---- creation and lifetime ------------------------------------------- */

void *job_create(const char *job_id, const JobDriver *driver, JobTxn *txn,
                 int flags, Error **errp)
{
    Job *job;

    g_assert(main_loop_is_main_thread());
    g_assert(driver->instance_size >= sizeof(Job) && driver->run);
    if (job_id) {
        if (flags & JOB_INTERNAL) {
            error_setg(errp, "Cannot specify job ID for internal job");
            return NULL;
        }
        if (!id_wellformed(job_id)) {
            error_setg(errp, "Invalid job ID '%s'", job_id);
            return NULL;
        }
        if (job_get(job_id)) {
            error_setg(errp, "Job ID '%s' already in use", job_id);
            return NULL;
        }
    } else if (!(flags & JOB_INTERNAL)) {
        error_setg(errp, "An explicit job ID is required");
        return NULL;
    }

    job = g_malloc0(driver->instance_size);
    job->driver = driver;
    job->id = g_strdup(job_id);
    job->refcnt = 1;
    /* A job counts as paused until job_start(): a pause may come first. */
    job->paused = true;
    job->pause_count = 1;
    job->auto_finalize = !(flags & JOB_MANUAL_FINALIZE);
    job->auto_dismiss = !(flags & JOB_MANUAL_DISMISS);
    job->sleep_deadline_ns = -1;
    g_cond_init(&job->wake);

    job_lock();
    job_state_transition_locked(job, JOB_STATUS_CREATED);
    job_unlock();
    jobs = g_list_prepend(jobs, job);

    /* A job on its own is a transaction of one: one completion path. */
    if (!txn) {
        txn = job_txn_new();
        job_txn_add_job(txn, job);
        job_txn_unref(txn);
    } else {
        job_txn_add_job(txn, job);
    }
    return job;
}

void job_ref(Job *job)
{
    g_assert(main_loop_is_main_thread());
    job->refcnt++;
}

void job_unref_locked(Job *job)
{
    g_assert(main_loop_is_main_thread());
    g_assert(job->refcnt > 0);
    if (--job->refcnt > 0) {
        return;
    }
    g_assert(job->status == JOB_STATUS_NULL);
    g_assert(!job->txn && !job->thread);
    jobs = g_list_remove(jobs, job);

    /* The hooks may take the lock; nobody else can reach the job now. */
    job_unlock();
    if (job->driver->free) {
        job->driver->free(job);
    }
    if (job->layer && job->layer->free) {
        job->layer->free(job);
    }
    error_free(job->err);
    g_free(job->id);
    g_cond_clear(&job->wake);
    g_free(job);
    job_lock();
}

void job_unref(Job *job)
{
    job_lock();
    job_unref_locked(job);
    job_unlock();
}

void job_early_fail(Job *job)
{
    job_lock();
    g_assert(job->status == JOB_STATUS_CREATED);
    job_do_dismiss_locked(job);
    job_unlock();
}

/* ---- progress --------------------------------------------------------- */

void job_progress_update(Job *job, uint64_t done)
{
    job_lock();
    job->progress_current += done;
    job_unlock();
}

void job_progress_set_remaining(Job *job, uint64_t remaining)
{
    job_lock();
    job->progress_total = job->progress_current + remaining;
    job_unlock();
}

void job_progress_increase_remaining(Job *job, uint64_t delta)
{
    job_lock();
    job->progress_total += delta;
    job_unlock();
}
