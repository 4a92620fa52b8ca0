/*
 * Jobs: long-running operations (creating an image, a backup) with QEMU's
 * life cycle, states, verbs and events. docs/devel/jobs.md has the design.
 *
 * A job is a JobDriver table plus a struct that embeds Job first
 * (BackupJob { BlockJob common; ... }, a BlockJob embedding Job). Its
 * run() executes in a thread of its own and does blocking I/O there;
 * everything else happens on the main thread: creating and starting,
 * the QMP verbs, and once run() returns, the completion (prepare, then
 * exactly one of commit or abort, then clean) and the events.
 *
 * Life cycle (JobStatus; every change goes through one transition table
 * and emits JOB_STATUS_CHANGE unless the job is internal):
 *
 *   created -> running <-> paused          (ready <-> standby, for jobs
 *                 |                         that wait for job-complete)
 *                 v
 *   success:   waiting -> pending -> [prepare, commit, clean] -> concluded
 *   failure:   aborting -> [abort, clean] -> concluded
 *   concluded -> null (at once when auto-dismiss, else at job-dismiss)
 *
 * A job waits in "waiting" for the other jobs of its transaction; in
 * "pending" for job-finalize when auto-finalize is off. If one job of a
 * transaction fails or is cancelled, the others are cancelled and all
 * abort.
 */
#ifndef BLOCK_JOB_H
#define BLOCK_JOB_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "qapi/error.h"
#include "qapi-types.h"

typedef struct Job Job;
typedef struct JobDriver JobDriver;
typedef struct JobTxn JobTxn;

/* job_create() flags. */
typedef enum JobCreateFlags {
    JOB_DEFAULT = 0,
    JOB_INTERNAL = 1 << 0,          /* no ID: not listed, no events */
    JOB_MANUAL_FINALIZE = 1 << 1,   /* auto-finalize=false */
    JOB_MANUAL_DISMISS = 1 << 2,    /* auto-dismiss=false */
} JobCreateFlags;

struct JobDriver {
    /* Size of the driver's struct, which embeds Job first. */
    size_t instance_size;
    JobType job_type;

    /*
     * The work, in the job's own thread. Blocking I/O is fine here; the
     * main thread must never be waited for (it may be waiting for this
     * thread). Call job_pause_point() between pieces of work, check
     * job_is_cancelled() and return soon when it is true. Returns 0 or
     * -errno; errp, when set, gives the error text (otherwise
     * strerror(-ret)).
     */
    int (*run)(Job *job, Error **errp);

    /*
     * Completion, on the main thread, without the job lock, once every
     * job of the transaction has left run():
     * - prepare (optional): only on success, before commit; may still
     *   fail (-errno), which aborts the whole transaction;
     * - then exactly one of commit (success) or abort (failure, cancel,
     *   or another job of the transaction failed);
     * - then clean, always.
     * Each is optional. Graph changes belong here, not in run().
     */
    int (*prepare)(Job *job);
    void (*commit)(Job *job);
    void (*abort)(Job *job);
    void (*clean)(Job *job);

    /*
     * Wake-ups for a run() that blocks on something of its own (a
     * condition variable, a socket): called without the job lock, by the
     * thread that asked (the main thread for QMP verbs, the job thread
     * itself for an error policy's stop), after the request is recorded.
     * A run() that only sleeps in job_sleep_ns()/job_yield() and does
     * bounded I/O needs none of them.
     * - pause: a pause was asked for; run() should reach
     *   job_pause_point() soon.
     * - resume: the last pause was lifted.
     * - cancel: the job is being cancelled; stop in-flight work. Returns
     *   whether the cancel is forced (always true but for jobs that treat
     *   a soft cancel as "complete without switching over"); NULL: forced.
     */
    void (*pause)(Job *job);
    void (*resume)(Job *job);
    bool (*cancel)(Job *job, bool force);

    /* job-complete on a ready job (main thread). NULL: not completable. */
    void (*complete)(Job *job, Error **errp);

    /* The last reference is gone: free the driver's own state (main thread). */
    void (*free)(Job *job);
};

/*
 * The generic part of every job. Its fields are private to block/job*.c
 * and the block-job layer (block/job-int.h): drivers use the functions
 * below. The comments say who may touch what.
 */
struct Job {
    char *id;                   /* NULL for internal jobs */
    const JobDriver *driver;
    const struct JobLayerOps *layer;
    bool auto_finalize;
    bool auto_dismiss;

    /* main thread only */
    int refcnt;
    JobTxn *txn;
    GThread *thread;

    /* under the job lock */
    JobStatus status;
    int pause_count;            /* > 0: should pause (paused:true in queries) */
    bool user_paused;
    bool paused;                /* asleep at a pause point */
    bool busy;                  /* false while asleep or paused */
    bool delegating;            /* run() waits for its own workers */
    bool started;
    bool thread_running;        /* the job thread took its first pause point */
    bool cancelled;
    bool force_cancel;
    bool deferred_to_main_loop; /* run() has returned */
    bool woken;                 /* job_enter() ended the current sleep */
    int64_t sleep_deadline_ns;  /* of the current sleep; -1: none */
    GCond wake;
    int ret;
    Error *err;
    uint64_t progress_current;
    uint64_t progress_total;
};

/* ---- transactions: main thread ------------------------------------- */

/*
 * A group of jobs that finish together (transaction completion-mode
 * "grouped"). Pass it to job_create() for each job, then drop the
 * caller's reference; each job holds one while in the group.
 */
JobTxn *job_txn_new(void);
void job_txn_unref(JobTxn *txn);

/* ---- creation and lifetime: main thread ---------------------------- */

/*
 * A new job in state "created" (not started), holding one reference
 * that completion drops. id: NULL only with JOB_INTERNAL; otherwise it
 * must be well formed (a letter, then letters, digits, '-', '.', '_')
 * and unused: "Invalid job ID 'X'", "Job ID 'X' already in use". txn:
 * NULL for a job of its own. Returns the driver's struct.
 */
void *job_create(const char *job_id, const JobDriver *driver, JobTxn *txn,
                 int flags, Error **errp);
/* Starts run() in the job's thread: created -> running. */
void job_start(Job *job);
/* Setting up a created job failed after job_create(): it goes away. */
void job_early_fail(Job *job);
void job_ref(Job *job);
void job_unref(Job *job);

Job *job_get(const char *id);
/* Every job, newest first: start with NULL, ends with NULL. */
Job *job_next(Job *job);
bool job_is_internal(const Job *job);
JobType job_type(const Job *job);
const char *job_type_str(const Job *job);
JobStatus job_status(Job *job);
/* waiting, pending, aborting, concluded or null */
bool job_is_completed(Job *job);
/* ready or standby */
bool job_is_ready(Job *job);

/* ---- in run(): the job's thread -------------------------------------- */

/* Sleeps while a pause is asked for: running -> paused -> running. */
void job_pause_point(Job *job);
/*
 * Sleeps ns nanoseconds, less if woken (pause, cancel, job_enter()); then
 * a pause point. Returns at once if the job is cancelled.
 */
void job_sleep_ns(Job *job, int64_t ns);
/*
 * Sleeps until woken by job_enter() or a cancel (a sync=none backup's
 * wait); then a pause point. Returns at once if the job is cancelled.
 */
void job_yield(Job *job);
/*
 * run() hands its work to workers of its own and only waits for them and
 * paces them (on), or works itself again (off; before it returns). The
 * job reports busy false meanwhile, as QEMU's job coroutine that yields
 * while its copy tasks run; sleeps and pause points work as ever.
 */
void job_set_delegating(Job *job, bool on);
/* Whether the job was cancelled (run() should return soon). Any thread. */
bool job_is_cancelled(Job *job);
/*
 * Whether a cancel was asked for at all: also a soft one, which a ready
 * job whose cancel hook allows it takes as "finish, but do not switch
 * over". Any thread.
 */
bool job_cancel_requested(Job *job);
/* The job becomes ready (for job-complete): running -> ready. */
void job_transition_to_ready(Job *job);
/*
 * Runs fn(opaque) on the main thread and waits for it: for the graph
 * changes a run() (or a driver's create) cannot make itself, such as
 * opening a node. The main thread runs it even while it waits for jobs,
 * so this does not deadlock. On the main thread, fn runs at once.
 */
void job_call_main(void (*fn)(void *opaque), void *opaque);

/*
 * Progress, in the job's unit (bytes for block jobs): current/total in
 * query-jobs, offset/len in block-job queries. Any thread.
 */
void job_progress_update(Job *job, uint64_t done);
/* total := current + remaining */
void job_progress_set_remaining(Job *job, uint64_t remaining);
void job_progress_increase_remaining(Job *job, uint64_t delta);

/* ---- acting on a job: main thread ------------------------------------ */

/*
 * Ends a sleep in job_sleep_ns()/job_yield() early (any thread); nothing
 * if the job is working, paused (see job_resume) or done.
 */
void job_enter(Job *job);
/* Internal pauses, nesting with the user's: the job pauses at its next pause point. */
void job_pause(Job *job);
void job_resume(Job *job);

/*
 * The QMP verbs. Each checks the verb table first: "Job 'ID' in state
 * 'STATE' cannot accept command verb 'VERB'".
 * - pause: "Job is already paused" if the user paused it already;
 * - resume: "Can't resume a job that was not paused" (checked before the
 *   table);
 * - cancel: force is QEMU's (see JobDriver.cancel);
 * - complete: "The active block job 'ID' cannot be completed" for jobs
 *   that never become ready or are being cancelled;
 * - finalize: a pending job and its whole transaction;
 * - dismiss: a concluded job goes away (*jobptr is set to NULL).
 */
bool job_user_pause(Job *job, Error **errp);
bool job_user_paused(Job *job);
bool job_user_resume(Job *job, Error **errp);
bool job_user_cancel(Job *job, bool force, Error **errp);
bool job_complete(Job *job, Error **errp);
bool job_finalize(Job *job, Error **errp);
bool job_dismiss(Job **jobptr, Error **errp);

/* Cancels without the verb check (a transaction rolling back). */
void job_cancel(Job *job, bool force);
/*
 * Cancels and waits until the job has concluded (a created job never
 * started goes away at once). Returns the job's result: 0 if it had
 * already succeeded, else -errno (-ECANCELED). Must not be called inside
 * a drained section while the job's thread may be doing I/O.
 */
int job_cancel_sync(Job *job, bool force);
/*
 * Shutdown: cancels every job and waits for all of them to go away, at
 * most timeout_ms. Returns false if some job thread did not stop in time
 * (its nodes must then be left open).
 */
bool job_cancel_sync_all(int64_t timeout_ms);

/* query-jobs' entry for a job with an ID. */
JobInfo *job_query(Job *job);

#endif
