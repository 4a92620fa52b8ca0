/*
 * Jobs: the job thread and what run() calls in it (pause points, sleeps,
 * yields), waking it, pausing and resuming, and the hand-over of its
 * completion (and of job_call_main() requests) to the main thread.
 *
 * Only the job thread moves a started job between running, paused, ready
 * and standby, and only until run() returns; every other change happens
 * on the main thread (job.c, job-complete.c). docs/devel/jobs.md.
 */
#include "block/job-int.h"
#include "util/main-loop.h"

/*
 * Completions queued by job threads whose run() returned, each holding the
 * thread's reference to its job; the main thread runs them from an idle
 * callback, or at once when it waits for a job (job_finish_sync). Job
 * lock.
 */
static GQueue completions = G_QUEUE_INIT;
static GCond completion_cond;   /* signalled when one is queued */
static int threads_in_run;      /* job threads that have not queued theirs */

/* job_call_main() requests, served where completions are. Job lock. */
typedef struct MainCall {
    void (*fn)(void *opaque);
    void *opaque;
    bool done;
} MainCall;
static GQueue main_calls = G_QUEUE_INIT;
static GCond main_call_done;

/* ---- the job thread --------------------------------------------------- */

static void job_pause_point_locked(Job *job);

static gboolean job_completions_idle(gpointer opaque)
{
    job_lock();
    job_run_completions_locked();
    job_unlock();
    return G_SOURCE_REMOVE;
}

static void job_run_main_calls_locked(void)
{
    MainCall *call;

    while ((call = g_queue_pop_head(&main_calls))) {
        job_unlock();
        call->fn(call->opaque);
        job_lock();
        call->done = true;
        g_cond_broadcast(&main_call_done);
    }
}

void job_run_completions_locked(void)
{
    Job *job;

    g_assert(main_loop_is_main_thread());
    job_run_main_calls_locked();
    while ((job = g_queue_pop_head(&completions))) {
        job_exit_locked(job);
        job_run_main_calls_locked();
    }
}

bool job_wait_completion_locked(int64_t deadline_us)
{
    if (!g_queue_is_empty(&completions) || !g_queue_is_empty(&main_calls)) {
        return true;
    }
    if (deadline_us < 0) {
        g_cond_wait(&completion_cond, &job_mutex);
        return true;
    }
    return g_cond_wait_until(&completion_cond, &job_mutex, deadline_us) ||
           !g_queue_is_empty(&completions) || !g_queue_is_empty(&main_calls);
}

void job_call_main(void (*fn)(void *opaque), void *opaque)
{
    MainCall call = { .fn = fn, .opaque = opaque };

    if (main_loop_is_main_thread()) {
        fn(opaque);
        return;
    }
    job_lock();
    g_queue_push_tail(&main_calls, &call);
    /* A main thread waiting for jobs serves it from there. */
    g_cond_broadcast(&completion_cond);
    job_unlock();
    main_loop_invoke(job_completions_idle, NULL);
    job_lock();
    while (!call.done) {
        g_cond_wait(&main_call_done, &job_mutex);
    }
    job_unlock();
}

bool job_wait_threads_locked(int64_t deadline_us)
{
    for (;;) {
        job_run_main_calls_locked();
        if (threads_in_run == 0) {
            return true;
        }
        if (!g_cond_wait_until(&completion_cond, &job_mutex, deadline_us) &&
            threads_in_run > 0 && g_queue_is_empty(&main_calls)) {
            return false;
        }
    }
}

static gpointer job_thread(gpointer opaque)
{
    Job *job = opaque;
    Error *err = NULL;
    int ret;

    /*
     * QEMU's job_start() runs the job's coroutine up to its first yield,
     * the initial pause point included. Likewise job_start() waits until
     * this thread holds the lock here: a pause asked for before the start
     * takes effect before any work, one asked for later waits for a pause
     * point of run().
     */
    job_lock();
    job->thread_running = true;
    g_cond_broadcast(&job->wake);
    job_pause_point_locked(job);
    job_unlock();
    ret = job->driver->run(job, &err);

    job_lock();
    g_assert(!job->delegating);
    job->ret = ret;
    g_assert(!job->err);
    job->err = err;
    job->deferred_to_main_loop = true;
    job->busy = true;
    /* The thread's reference passes to the queue. */
    g_queue_push_tail(&completions, job);
    threads_in_run--;
    g_cond_broadcast(&completion_cond);
    job_unlock();
    /* The data is NULL: a callback that runs late finds an empty queue. */
    main_loop_invoke(job_completions_idle, NULL);
    return NULL;
}

void job_start(Job *job)
{
    g_assert(main_loop_is_main_thread());
    job_lock();
    g_assert(!job->started && job->paused && job->status == JOB_STATUS_CREATED);
    job->started = true;
    job->pause_count--;
    job->busy = true;
    job->paused = false;
    job_state_transition_locked(job, JOB_STATUS_RUNNING);
    threads_in_run++;
    job_unlock();

    job->refcnt++;              /* the thread's, until its completion ran */
    job->thread = g_thread_new("job", job_thread, job);
    job_lock();
    while (!job->thread_running) {
        g_cond_wait(&job->wake, &job_mutex);
    }
    job_unlock();
}

/* ---- sleeping and waking ---------------------------------------------- */

/*
 * The job thread sleeps (busy false) until job_enter_cond_locked() wakes
 * it, or until deadline_ns (monotonic) when it is not -1: the part of
 * QEMU's sleep timer a thread needs.
 */
static void job_do_yield_locked(Job *job, int64_t deadline_ns)
{
    g_assert(job->busy);
    job->sleep_deadline_ns = deadline_ns;
    job->woken = false;
    job->busy = false;
    while (!job->woken) {
        if (deadline_ns < 0) {
            g_cond_wait(&job->wake, &job_mutex);
        } else if (!g_cond_wait_until(&job->wake, &job_mutex,
                                      deadline_ns / 1000) &&
                   g_get_monotonic_time() * 1000 >= deadline_ns) {
            break;              /* the timer fired */
        }
    }
    job->woken = false;
    job->busy = true;
    job->sleep_deadline_ns = -1;
}

void job_enter_cond_locked(Job *job, bool (*fn)(Job *job))
{
    if (!job->started || job->deferred_to_main_loop || job->busy) {
        return;
    }
    if (fn && !fn(job)) {
        return;
    }
    /* busy at once, as QEMU does, so a second wake-up is a no-op. */
    job->busy = true;
    job->woken = true;
    job->sleep_deadline_ns = -1;
    g_cond_broadcast(&job->wake);
}

static bool job_not_paused_locked(Job *job)
{
    return !job->paused;
}

void job_enter(Job *job)
{
    job_lock();
    /* A paused job wakes when resumed, not before (QEMU's callers check). */
    job_enter_cond_locked(job, job_not_paused_locked);
    job_unlock();
}

bool job_timer_pending_locked(Job *job)
{
    return !job->busy && job->sleep_deadline_ns >= 0;
}

bool job_timer_not_pending_locked(Job *job)
{
    return !job_timer_pending_locked(job);
}

static bool job_should_pause_locked(Job *job)
{
    return job->pause_count > 0;
}

static void job_pause_point_locked(Job *job)
{
    JobStatus status;

    g_assert(job->started);
    if (!job_should_pause_locked(job) || job_is_cancelled_locked(job)) {
        return;
    }
    status = job->status;
    job_state_transition_locked(job, status == JOB_STATUS_READY
                                     ? JOB_STATUS_STANDBY : JOB_STATUS_PAUSED);
    job->paused = true;
    job_do_yield_locked(job, -1);
    job->paused = false;
    job_state_transition_locked(job, status);
}

void job_pause_point(Job *job)
{
    job_lock();
    job_pause_point_locked(job);
    job_unlock();
}

void job_sleep_ns(Job *job, int64_t ns)
{
    job_lock();
    g_assert(job->busy);
    /* Checked before busy goes false: a cancel must not be slept through. */
    if (!job_is_cancelled_locked(job)) {
        if (!job_should_pause_locked(job)) {
            job_do_yield_locked(job, g_get_monotonic_time() * 1000 + ns);
        }
        job_pause_point_locked(job);
    }
    job_unlock();
}

void job_yield(Job *job)
{
    job_lock();
    g_assert(job->busy);
    if (!job_is_cancelled_locked(job)) {
        if (!job_should_pause_locked(job)) {
            job_do_yield_locked(job, -1);
        }
        job_pause_point_locked(job);
    }
    job_unlock();
}

void job_set_delegating(Job *job, bool on)
{
    job_lock();
    job->delegating = on;
    job_unlock();
}

void job_transition_to_ready(Job *job)
{
    job_lock();
    job_state_transition_locked(job, JOB_STATUS_READY);
    if (job->layer && job->layer->event_ready) {
        job->layer->event_ready(job);
    }
    job_unlock();
}

/* ---- pausing ---------------------------------------------------------- */

void job_pause_locked(Job *job)
{
    job->pause_count++;
    /* A sleeping job wakes up to reach its pause point. */
    if (!job->paused) {
        job_enter_cond_locked(job, NULL);
    }
}

void job_resume_locked(Job *job)
{
    g_assert(job->pause_count > 0);
    if (--job->pause_count > 0) {
        return;
    }
    /* A paused job wakes; one sleeping on its timer keeps sleeping. */
    job_enter_cond_locked(job, job_timer_not_pending_locked);
}

void job_pause(Job *job)
{
    job_lock();
    job_pause_locked(job);
    job_unlock();
    if (job->driver->pause) {
        job->driver->pause(job);
    }
}

void job_resume(Job *job)
{
    bool resumed;

    job_lock();
    job_resume_locked(job);
    resumed = job->pause_count == 0;
    job_unlock();
    if (resumed && job->driver->resume) {
        job->driver->resume(job);
    }
}

bool job_user_pause(Job *job, Error **errp)
{
    job_lock();
    if (job_apply_verb_locked(job, JOB_VERB_PAUSE, errp) < 0) {
        job_unlock();
        return false;
    }
    if (job->user_paused) {
        job_unlock();
        error_setg(errp, "Job is already paused");
        return false;
    }
    job->user_paused = true;
    job_pause_locked(job);
    job_unlock();
    if (job->driver->pause) {
        job->driver->pause(job);
    }
    return true;
}

bool job_user_paused(Job *job)
{
    bool ret;

    job_lock();
    ret = job->user_paused;
    job_unlock();
    return ret;
}

bool job_user_resume(Job *job, Error **errp)
{
    bool resumed;

    job_lock();
    /* QEMU checks this before the verb table. */
    if (!job->user_paused || job->pause_count <= 0) {
        job_unlock();
        error_setg(errp, "Can't resume a job that was not paused");
        return false;
    }
    if (job_apply_verb_locked(job, JOB_VERB_RESUME, errp) < 0) {
        job_unlock();
        return false;
    }
    if (job->layer && job->layer->user_resume) {
        job->layer->user_resume(job);
    }
    job->user_paused = false;
    job_resume_locked(job);
    resumed = job->pause_count == 0;
    job_unlock();
    if (resumed && job->driver->resume) {
        job->driver->resume(job);
    }
    return true;
}
