/*
 * What only the job core (block/job.c, job-run.c, job-complete.c) and the
 * block-job layer (block/blockjob.c) see. Drivers include block/job.h or
 * block/blockjob.h instead.
 *
 * The job lock (job_lock()) guards the fields of Job marked so in
 * block/job.h, for every job at once; functions named _locked expect it
 * held. It is never held across a driver or layer hook that may block,
 * nor across I/O.
 */
#ifndef BLOCK_JOB_INT_H
#define BLOCK_JOB_INT_H

#include "block/job.h"

/*
 * Hooks of the layer that embeds Job (block jobs): what the generic job
 * does not know. The event hooks and user_resume are called with the job
 * lock held (event_ready in the job thread, the others on the main
 * thread) and must not take it or block; free is called on the main
 * thread without it, after the driver's free.
 */
typedef struct JobLayerOps {
    void (*event_pending)(Job *job);
    void (*event_ready)(Job *job);
    void (*event_cancelled)(Job *job);
    void (*event_completed)(Job *job);
    /* job-resume, or a cancel, lifts the user's pause */
    void (*user_resume)(Job *job);
    void (*free)(Job *job);
} JobLayerOps;

/* A group of jobs that finish together; main thread only. */
struct JobTxn {
    GList *jobs;        /* Job *, newest first (QEMU's order of events) */
    int refcnt;
    bool aborting;      /* one job failed; the first to see it aborts all */
};

void job_lock(void);
void job_unlock(void);
/* The job lock itself, for condition variables (job-run.c). */
extern GMutex job_mutex;

/* The tables of docs/devel/jobs.md (QEMU's JobSTT and JobVerbTable). */
bool job_transition_allowed(JobStatus from, JobStatus to);
bool job_verb_allowed(JobVerb verb, JobStatus status);

/* Asserts the table allows it; emits JOB_STATUS_CHANGE on a change. */
void job_state_transition_locked(Job *job, JobStatus to);
/* 0, or -EPERM with "Job 'ID' in state 'S' cannot accept command verb 'V'". */
int job_apply_verb_locked(Job *job, JobVerb verb, Error **errp);

bool job_is_completed_locked(Job *job);
bool job_is_ready_locked(Job *job);
/* Cancelled for good (forced); job_cancel_requested_locked: asked at all. */
bool job_is_cancelled_locked(Job *job);
bool job_cancel_requested_locked(Job *job);

/* Wakes a sleeping job if fn (when given) agrees; see job_enter(). */
void job_enter_cond_locked(Job *job, bool (*fn)(Job *job));
/* The job sleeps with a deadline (QEMU: its sleep timer is pending). */
bool job_timer_pending_locked(Job *job);
bool job_timer_not_pending_locked(Job *job);
void job_pause_locked(Job *job);
void job_resume_locked(Job *job);
void job_unref_locked(Job *job);

/* ---- between job.c, job-run.c and job-complete.c ---------------------- */

/* job-complete.c: the completion of a job whose run() returned. */
void job_exit_locked(Job *job);
/* job-complete.c: run a job's completion now (a never-started job). */
void job_completed_locked(Job *job);
/* job-complete.c: leave the transaction, go to null, drop the creation reference. */
void job_do_dismiss_locked(Job *job);
/* job-run.c: runs the completions that job threads have queued (main thread). */
void job_run_completions_locked(void);
/*
 * job-run.c: waits (lock dropped meanwhile) until no job thread is left in
 * run(), or until deadline_us (monotonic) passes: false then.
 */
bool job_wait_threads_locked(int64_t deadline_us);
/*
 * job-run.c: waits (lock dropped meanwhile) until a job thread queues a
 * completion or deadline_us (monotonic; -1: none) passes. False on
 * timeout.
 */
bool job_wait_completion_locked(int64_t deadline_us);
void job_txn_ref(JobTxn *txn);
void job_txn_del_job_locked(Job *job);

#endif
