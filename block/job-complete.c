/*
 * Jobs: how they end. Completion after run() returns, transactions
 * (waiting for each other, aborting together), finalising, cancelling,
 * dismissing, and waiting for a job to end. All on the main thread, with
 * the job lock held except across the driver's hooks, which may change
 * the graph, drain, or wait for I/O of other jobs (whose threads need
 * the lock). The order of steps and events is QEMU 7.2's (job.c).
 */
#include <errno.h>
#include <string.h>

#include "block/job-int.h"
#include "util/main-loop.h"

static int job_finish_sync_locked(Job *job, int64_t deadline_us);

/* Applies fn to every job of job's transaction, newest first, until one fails. */
static int job_txn_apply_locked(Job *job, int (*fn)(Job *job))
{
    JobTxn *txn = job->txn;
    GList *l, *copy;
    int rc = 0;

    /* fn may take jobs out of the transaction: walk a copy, held alive. */
    job->refcnt++;
    copy = g_list_copy(txn->jobs);
    for (l = copy; l; l = l->next) {
        ((Job *)l->data)->refcnt++;
    }
    for (l = copy; l && !rc; l = l->next) {
        rc = fn(l->data);
    }
    for (l = copy; l; l = l->next) {
        job_unref_locked(l->data);
    }
    g_list_free(copy);
    job_unref_locked(job);
    return rc;
}

/* A failure or cancel turns into ret and err, and the job into aborting. */
static void job_update_rc_locked(Job *job)
{
    if (!job->ret && job_is_cancelled_locked(job)) {
        job->ret = -ECANCELED;
    }
    if (job->ret) {
        if (!job->err) {
            error_setg(&job->err, "%s", strerror(-job->ret));
        }
        job_state_transition_locked(job, JOB_STATUS_ABORTING);
    }
}

void job_do_dismiss_locked(Job *job)
{
    job->busy = false;
    job->paused = false;
    job->deferred_to_main_loop = true;
    job_txn_del_job_locked(job);
    job_state_transition_locked(job, JOB_STATUS_NULL);
    job_unref_locked(job);
}

static void job_conclude_locked(Job *job)
{
    job_state_transition_locked(job, JOB_STATUS_CONCLUDED);
    /* A job that never started has nothing to show: it goes at once. */
    if (job->auto_dismiss || !job->started) {
        job_do_dismiss_locked(job);
    }
}

/* Exactly one of commit or abort, then clean, then the event. */
static int job_finalize_single_locked(Job *job)
{
    const JobDriver *drv = job->driver;
    int ret;

    g_assert(job_is_completed_locked(job));
    /* A transaction may fail after this job succeeded. */
    job_update_rc_locked(job);
    ret = job->ret;

    job_unlock();
    if (!ret) {
        if (drv->commit) {
            drv->commit(job);
        }
    } else if (drv->abort) {
        drv->abort(job);
    }
    if (drv->clean) {
        drv->clean(job);
    }
    job_lock();

    /* QEMU sends the block-job events only for jobs that started. */
    if (job->started && job->layer) {
        if (job_is_cancelled_locked(job)) {
            if (job->layer->event_cancelled) {
                job->layer->event_cancelled(job);
            }
        } else if (job->layer->event_completed) {
            job->layer->event_completed(job);
        }
    }
    job_txn_del_job_locked(job);
    job_conclude_locked(job);
    return 0;
}

static void job_cancel_async_locked(Job *job, bool force)
{
    if (job->driver->cancel) {
        job_unlock();
        force = job->driver->cancel(job, force);
        job_lock();
    } else {
        force = true;           /* no soft cancel without a hook */
    }
    if (job->user_paused) {
        /* The caller wakes the job. */
        if (job->layer && job->layer->user_resume) {
            job->layer->user_resume(job);
        }
        job->user_paused = false;
        g_assert(job->pause_count > 0);
        job->pause_count--;
    }
    /* A soft cancel of a job that has already finished is ignored. */
    if (force || !job->deferred_to_main_loop) {
        job->cancelled = true;
        job->force_cancel |= force;
    }
}

/* One job failed or was cancelled: cancel the others, all abort. */
static void job_completed_txn_abort_locked(Job *job)
{
    JobTxn *txn = job->txn;
    GList *l;

    if (txn->aborting) {
        return;                 /* another job of the group does it */
    }
    txn->aborting = true;
    /* Keep txn alive: the loop below empties it. */
    job_txn_ref(txn);
    job->refcnt++;

    /* The others are cancelled by us; job itself may or may not be. */
    for (l = txn->jobs; l; l = l->next) {
        if (l->data != job) {
            /* No result matters any more: stop them as fast as possible. */
            job_cancel_async_locked(l->data, true);
        }
    }
    while (txn->jobs) {
        Job *other = txn->jobs->data;

        if (!job_is_completed_locked(other)) {
            g_assert(job_cancel_requested_locked(other));
            job_finish_sync_locked(other, -1);
        }
        job_finalize_single_locked(other);
    }
    job_unref_locked(job);
    job_txn_unref(txn);
}

static int job_prepare_locked(Job *job)
{
    if (job->ret == 0 && job->driver->prepare) {
        int ret;

        job_unlock();
        ret = job->driver->prepare(job);
        job_lock();
        job->ret = ret;
        job_update_rc_locked(job);
    }
    return job->ret;
}

static void job_do_finalize_locked(Job *job)
{
    if (job_txn_apply_locked(job, job_prepare_locked)) {
        job_completed_txn_abort_locked(job);
    } else {
        job_txn_apply_locked(job, job_finalize_single_locked);
    }
}

static int job_transition_to_pending_locked(Job *job)
{
    job_state_transition_locked(job, JOB_STATUS_PENDING);
    if (!job->auto_finalize && job->layer && job->layer->event_pending) {
        job->layer->event_pending(job);
    }
    return 0;
}

static int job_needs_finalize_locked(Job *job)
{
    return !job->auto_finalize;
}

static void job_completed_txn_success_locked(Job *job)
{
    GList *l;

    job_state_transition_locked(job, JOB_STATUS_WAITING);
    /* The last job of the group to finish moves them all on. */
    for (l = job->txn->jobs; l; l = l->next) {
        Job *other = l->data;

        if (!job_is_completed_locked(other)) {
            return;
        }
        g_assert(other->ret == 0);
    }
    job_txn_apply_locked(job, job_transition_to_pending_locked);
    if (job_txn_apply_locked(job, job_needs_finalize_locked) == 0) {
        job_do_finalize_locked(job);
    }
}

void job_completed_locked(Job *job)
{
    g_assert(job->txn && !job_is_completed_locked(job));
    job_update_rc_locked(job);
    if (job->ret) {
        job_completed_txn_abort_locked(job);
    } else {
        job_completed_txn_success_locked(job);
    }
}

void job_exit_locked(Job *job)
{
    GThread *thread = job->thread;

    /* run() has returned; the thread is about to end. */
    job->thread = NULL;
    job_unlock();
    g_thread_join(thread);
    job_lock();
    job->busy = false;
    job_completed_locked(job);
    job_unref_locked(job);      /* the thread's reference */
}

/* ---- verbs ------------------------------------------------------------ */

static void job_cancel_locked(Job *job, bool force)
{
    if (job->status == JOB_STATUS_CONCLUDED) {
        job_do_dismiss_locked(job);
        return;
    }
    job_cancel_async_locked(job, force);
    if (!job->started) {
        job_completed_locked(job);
    } else if (job->deferred_to_main_loop) {
        /* Done already: only a forced cancel still changes the outcome. */
        if (job_is_cancelled_locked(job)) {
            job_completed_txn_abort_locked(job);
        }
    } else {
        job_enter_cond_locked(job, NULL);
    }
}

void job_cancel(Job *job, bool force)
{
    g_assert(main_loop_is_main_thread());
    job_lock();
    job_cancel_locked(job, force);
    job_unlock();
}

bool job_user_cancel(Job *job, bool force, Error **errp)
{
    g_assert(main_loop_is_main_thread());
    job_lock();
    if (job_apply_verb_locked(job, JOB_VERB_CANCEL, errp) < 0) {
        job_unlock();
        return false;
    }
    job_cancel_locked(job, force);
    job_unlock();
    return true;
}

bool job_complete(Job *job, Error **errp)
{
    g_assert(main_loop_is_main_thread() && job->id);
    job_lock();
    if (job_apply_verb_locked(job, JOB_VERB_COMPLETE, errp) < 0) {
        job_unlock();
        return false;
    }
    if (job_cancel_requested_locked(job) || !job->driver->complete) {
        job_unlock();
        error_setg(errp, "The active block job '%s' cannot be completed",
                   job->id);
        return false;
    }
    job_unlock();
    {
        Error *local_err = NULL;

        job->driver->complete(job, &local_err);
        if (local_err) {
            error_propagate(errp, local_err);
            return false;
        }
    }
    return true;
}

bool job_finalize(Job *job, Error **errp)
{
    g_assert(main_loop_is_main_thread() && job->id);
    job_lock();
    if (job_apply_verb_locked(job, JOB_VERB_FINALIZE, errp) < 0) {
        job_unlock();
        return false;
    }
    job->refcnt++;
    job_do_finalize_locked(job);
    job_unref_locked(job);
    job_unlock();
    return true;
}

bool job_dismiss(Job **jobptr, Error **errp)
{
    Job *job = *jobptr;

    g_assert(main_loop_is_main_thread() && job->id);
    job_lock();
    if (job_apply_verb_locked(job, JOB_VERB_DISMISS, errp) < 0) {
        job_unlock();
        return false;
    }
    job_do_dismiss_locked(job);
    job_unlock();
    *jobptr = NULL;
    return true;
}

/* ---- waiting ---------------------------------------------------------- */

/*
 * Waits until the job has completed, running the completions job threads
 * queue meanwhile (this one's and others'), as QEMU's job_finish_sync
 * polls. -ETIMEDOUT once deadline_us (monotonic; -1: none) passes.
 */
static int job_finish_sync_locked(Job *job, int64_t deadline_us)
{
    int ret;

    job->refcnt++;
    while (!job_is_completed_locked(job)) {
        /* A sleeping job wakes to see the cancel. */
        job_enter_cond_locked(job, NULL);
        job_run_completions_locked();
        if (job_is_completed_locked(job)) {
            break;
        }
        if (!job_wait_completion_locked(deadline_us)) {
            job_unref_locked(job);
            return -ETIMEDOUT;
        }
    }
    ret = (job_is_cancelled_locked(job) && job->ret == 0) ? -ECANCELED
                                                          : job->ret;
    job_unref_locked(job);
    return ret;
}

int job_cancel_sync(Job *job, bool force)
{
    int ret;

    g_assert(main_loop_is_main_thread());
    job_lock();
    job->refcnt++;
    job_cancel_locked(job, force);
    ret = job_finish_sync_locked(job, -1);
    job_unref_locked(job);
    job_unlock();
    return ret;
}

bool job_cancel_sync_all(int64_t timeout_ms)
{
    int64_t deadline = g_get_monotonic_time() + timeout_ms * 1000;
    Job *job;

    g_assert(main_loop_is_main_thread());
    job_lock();
    /*
     * First every job thread is told to stop and waited for, with the
     * deadline: completions (which may wait for other jobs of their
     * transaction) run only once no thread is left in run(), so that
     * they cannot block.
     */
    for (job = job_next(NULL); job; job = job_next(job)) {
        if (job->started && !job->deferred_to_main_loop) {
            job_cancel_locked(job, true);
        }
    }
    if (!job_wait_threads_locked(deadline)) {
        job_unlock();
        return false;
    }
    /* Cancelling a concluded job dismisses it: this ends with no job. */
    while ((job = job_next(NULL))) {
        job->refcnt++;
        job_cancel_locked(job, true);
        job_finish_sync_locked(job, -1);
        job_unref_locked(job);
    }
    job_unlock();
    return true;
}
