/*
 * QMP handlers for jobs (qapi/job.json) and block jobs
 * (qapi/block-job.json), with QEMU's texts: job-* look jobs up by ID
 * ("Job not found", GenericError), block-job-* only among block jobs
 * ("Block job 'X' not found", DeviceNotActive). Main thread.
 */
#include "block/blockjob.h"
#include "qapi-commands.h"

static Job *find_job(const char *id, Error **errp)
{
    Job *job = job_get(id);

    if (!job) {
        error_setg(errp, "Job not found");
    }
    return job;
}

static BlockJob *find_block_job(const char *id, Error **errp)
{
    BlockJob *job = block_job_get(id);

    if (!job) {
        error_set(errp, ERROR_CLASS_DEVICE_NOT_ACTIVE,
                  "Block job '%s' not found", id);
    }
    return job;
}

/* ---- job-* ------------------------------------------------------------ */

bool qmp_job_pause(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    return job && job_user_pause(job, errp);
}

bool qmp_job_resume(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    return job && job_user_resume(job, errp);
}

bool qmp_job_cancel(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    return job && job_user_cancel(job, true, errp);
}

bool qmp_job_complete(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    return job && job_complete(job, errp);
}

bool qmp_job_finalize(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    return job && job_finalize(job, errp);
}

bool qmp_job_dismiss(const char *id, Error **errp)
{
    Job *job = find_job(id, errp);

    return job && job_dismiss(&job, errp);
}

JobInfoList *qmp_query_jobs(Error **errp)
{
    JobInfoList *head = NULL, **tail = &head;
    Job *job;

    for (job = job_next(NULL); job; job = job_next(job)) {
        if (!job_is_internal(job)) {
            JobInfoList *entry = g_new0(JobInfoList, 1);

            entry->value = job_query(job);
            *tail = entry;
            tail = &entry->next;
        }
    }
    return head;
}

/* ---- block-job-* ------------------------------------------------------ */

bool qmp_block_job_set_speed(const char *device, int64_t speed, Error **errp)
{
    BlockJob *job = find_block_job(device, errp);

    return job && block_job_set_speed(job, speed, errp);
}

bool qmp_block_job_cancel(const char *device, bool has_force, bool force,
                          Error **errp)
{
    BlockJob *job = find_block_job(device, errp);

    if (!job) {
        return false;
    }
    if (!has_force) {
        force = false;
    }
    if (job_user_paused(&job->job) && !force) {
        error_setg(errp, "The block job for device '%s' is currently paused",
                   device);
        return false;
    }
    return job_user_cancel(&job->job, force, errp);
}

bool qmp_block_job_pause(const char *device, Error **errp)
{
    BlockJob *job = find_block_job(device, errp);

    return job && job_user_pause(&job->job, errp);
}

bool qmp_block_job_resume(const char *device, Error **errp)
{
    BlockJob *job = find_block_job(device, errp);

    return job && job_user_resume(&job->job, errp);
}

bool qmp_block_job_complete(const char *device, Error **errp)
{
    BlockJob *job = find_block_job(device, errp);

    return job && job_complete(&job->job, errp);
}

bool qmp_block_job_finalize(const char *id, Error **errp)
{
    BlockJob *job = find_block_job(id, errp);

    return job && job_finalize(&job->job, errp);
}

bool qmp_block_job_dismiss(const char *id, Error **errp)
{
    BlockJob *bjob = find_block_job(id, errp);
    Job *job = bjob ? &bjob->job : NULL;

    return job && job_dismiss(&job, errp);
}

BlockJobInfoList *qmp_query_block_jobs(Error **errp)
{
    BlockJobInfoList *head = NULL, **tail = &head;
    BlockJob *job;

    for (job = block_job_next(NULL); job; job = block_job_next(job)) {
        BlockJobInfoList *entry;

        if (block_job_is_internal(job)) {
            continue;
        }
        entry = g_new0(BlockJobInfoList, 1);
        entry->value = block_job_query(job, &error_abort);
        *tail = entry;
        tail = &entry->next;
    }
    return head;
}
