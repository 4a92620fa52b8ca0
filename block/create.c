/*
 * blockdev-create: a job of type "create" that runs the driver's create
 * function (BlockDriver.create) in the job's thread, as QEMU's
 * block/create.c runs bdrv_co_create in a job. The job does not dismiss
 * itself: its result stays in query-jobs until job-dismiss. Creating is
 * not a block job: no BLOCK_JOB_* events, not in query-block-jobs.
 */
#include "block/core.h"
#include "block/job.h"
#include "qapi-commands.h"
#include "qapi-visit.h"

typedef struct BlockdevCreateJob {
    Job common;
    const BlockDriver *drv;
    BlockdevCreateOptions *opts;    /* the job's own copy */
} BlockdevCreateJob;

static int blockdev_create_run(Job *job, Error **errp)
{
    BlockdevCreateJob *s = (BlockdevCreateJob *)job;
    int ret;

    /* One unit of progress, as in QEMU: 0/1 while creating, then 1/1. */
    job_progress_set_remaining(job, 1);
    ret = s->drv->create(s->opts, errp);
    job_progress_update(job, 1);
    return ret;
}

static void blockdev_create_free(Job *job)
{
    BlockdevCreateJob *s = (BlockdevCreateJob *)job;

    qapi_free_BlockdevCreateOptions(s->opts);
}

static const JobDriver blockdev_create_job_driver = {
    .instance_size = sizeof(BlockdevCreateJob),
    .job_type = JOB_TYPE_CREATE,
    .run = blockdev_create_run,
    .free = blockdev_create_free,
};

/*
 * The arguments belong to the marshaller and go when the command returns;
 * the job outlives it. A copy through the generated encoder and decoder
 * (there is no generated clone).
 */
static BlockdevCreateOptions *create_options_copy(const BlockdevCreateOptions *o)
{
    json_t *tree = qapi_encode_BlockdevCreateOptions(o);
    BlockdevCreateOptions *copy = NULL;
    QapiDecoder d;

    qapi_decoder_init(&d, false);
    qapi_decode_BlockdevCreateOptions(&d, NULL, tree, &copy, &error_abort);
    qapi_decoder_cleanup(&d);
    json_decref(tree);
    return copy;
}

bool qmp_blockdev_create(const char *job_id, BlockdevCreateOptions *options,
                         Error **errp)
{
    const char *fmt = BlockdevDriver_str(options->driver);
    const BlockDriver *drv = bdrv_find_driver(fmt);
    BlockdevCreateJob *s;

    if (!drv) {
        error_setg(errp, "Block driver '%s' not found or not supported", fmt);
        return false;
    }
    if (!drv->create) {
        error_setg(errp, "Driver does not support blockdev-create");
        return false;
    }
    s = job_create(job_id, &blockdev_create_job_driver, NULL,
                   JOB_DEFAULT | JOB_MANUAL_DISMISS, errp);
    if (!s) {
        return false;
    }
    s->drv = drv;
    s->opts = create_options_copy(options);
    job_start(&s->common);
    return true;
}
