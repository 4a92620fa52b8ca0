/*
 * Block jobs: jobs that work on block nodes (backup), as QEMU's
 * blockjob.c. On top of a Job (embedded first: BlockJob { Job job; ... },
 * BackupJob { BlockJob common; ... }) a block job has
 * - a BlockBackend on its main node and on each further node it uses,
 *   owned "<type> job '<id>'" (QEMU's text in permission errors), so a
 *   node in use cannot be deleted, and cannot be resized unless the job
 *   shares that;
 * - a speed with a rate limiter in 100 ms slices;
 * - error policies (on-source-error, on-target-error);
 * - the BLOCK_JOB_* events and an entry in query-block-jobs.
 *
 * Threads as for jobs (job.h): creation, speed changes and queries on the
 * main thread; the rate limiter and the error policy from run(), in the
 * job's thread.
 */
#ifndef BLOCK_BLOCKJOB_H
#define BLOCK_BLOCKJOB_H

#include "block/block-backend.h"
#include "block/job.h"
#include "util/ratelimit.h"

/* QEMU's BLOCK_JOB_SLICE_TIME: the rate limiter's slice. */
#define BLOCK_JOB_SLICE_TIME 100000000LL

typedef struct BlockJobDriver BlockJobDriver;

typedef struct BlockJob {
    Job job;                    /* first: a BlockJob is a Job */
    /* The main node's BlockBackend: I/O goes through it. Main thread. */
    BlockBackend *blk;
    /* Further nodes the job uses (block_job_add_bdrv). Main thread. */
    GSList *nodes;              /* BlockBackend * */
    /* Under the job lock. */
    int64_t speed;              /* bytes/s, 0 for no limit */
    BlockDeviceIoStatus iostatus;
    RateLimit limit;            /* its own lock */
} BlockJob;

struct BlockJobDriver {
    JobDriver job_driver;       /* first; job_type is the block job's type */
    /* The speed changed (main thread, optional). */
    void (*set_speed)(BlockJob *job, int64_t speed);
};

/*
 * Creates a block job on bs (not started): job_create() with its checks
 * and texts, then a BlockBackend "<type> job '<id>'" on bs needing perm
 * and sharing shared_perm (the permission error names the users), then
 * the speed ("Parameter 'speed' expects a non-negative value"). On
 * failure after job_create(), the job goes away (JOB_STATUS_CHANGE
 * created, then null, as in QEMU). Main thread.
 */
void *block_job_create(const char *job_id, const BlockJobDriver *driver,
                       JobTxn *txn, BlockDriverState *bs, uint64_t perm,
                       uint64_t shared_perm, int64_t speed, int flags,
                       Error **errp);
/*
 * A further node the job uses (a target): a BlockBackend named like the
 * main one, freed with the job. Returns it, or NULL with errp set. Main
 * thread.
 */
BlockBackend *block_job_add_bdrv(BlockJob *job, const char *name,
                                 BlockDriverState *bs, uint64_t perm,
                                 uint64_t shared_perm, Error **errp);

/* The block job with that ID: NULL if none, or if that job is not a block job. */
BlockJob *block_job_get(const char *id);
/* Every block job, newest first: start with NULL, ends with NULL. */
BlockJob *block_job_next(BlockJob *job);
/* The block job whose main node or added node bs is, if any. Main thread. */
BlockJob *block_job_using_node(BlockDriverState *bs);
/*
 * QEMU's op blocker of the nodes block jobs use: true, with "Node 'X' is
 * busy: block device is in use by block job: TYPE", if one uses bs.
 */
bool block_job_node_busy(BlockDriverState *bs, Error **errp);
/* The job lets go of the further nodes (before it changes the graph). */
void block_job_remove_all_bdrv(BlockJob *job);
bool block_job_is_internal(BlockJob *job);

/* block-job-set-speed: the verb check, then a negative speed is refused. */
bool block_job_set_speed(BlockJob *job, int64_t speed, Error **errp);
int64_t block_job_get_speed(BlockJob *job);
/* query-block-jobs' entry ("Cannot query QEMU internal jobs"). */
BlockJobInfo *block_job_query(BlockJob *job, Error **errp);

/* ---- in run(): the job's thread --------------------------------------- */

/* Accounts n bytes just transferred against the speed limit. */
void block_job_ratelimit_processed_bytes(BlockJob *job, uint64_t n);
/*
 * Sleeps as long as the speed limit asks (at least a pause point), woken
 * early by a pause, a cancel or a speed change; call after each chunk.
 */
void block_job_ratelimit_sleep(BlockJob *job);

/*
 * An I/O error (errno > 0) under policy on_err: returns what to do and
 * emits BLOCK_JOB_ERROR. For BLOCK_ERROR_ACTION_STOP the job is paused as
 * if by the user (job-resume retries) with io-status failed, or nospace
 * for ENOSPC; run() should then reach job_pause_point() before retrying.
 */
BlockErrorAction block_job_error_action(BlockJob *job, BlockdevOnError on_err,
                                        bool is_read, int error);

#endif
