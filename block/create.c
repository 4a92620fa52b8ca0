/*
 * blockdev-create: a job of type "create" that runs the driver's create
 * function (BlockDriver.create) in the job's thread, as QEMU's
 * block/create.c runs bdrv_co_create in a job. The job does not dismiss
 * itself: its result stays in query-jobs until job-dismiss. Creating is
 * not a block job: no BLOCK_JOB_* events, not in query-block-jobs.
 *
 * bdrv_img_create() (drive-backup) calls the same create functions on the
 * main thread.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "block/core.h"
#include "block/create.h"
#include "block/job.h"
#include "qapi-commands.h"
#include "qapi-visit.h"
#include "util/main-loop.h"

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

/*
 * The options QEMU's qcow2_co_create_opts makes: an inline file node;
 * backing_fmt is a BlockdevDriver, or -1 for none.
 */
static BlockdevCreateOptions *qcow2_options(const char *filename,
                                            const char *backing_file,
                                            int backing_fmt, uint64_t size)
{
    BlockdevCreateOptions *o = g_new0(BlockdevCreateOptions, 1);
    BlockdevCreateOptionsQcow2 *q = &o->u.qcow2;
    BlockdevOptions *file = g_new0(BlockdevOptions, 1);

    file->driver = BLOCKDEV_DRIVER_FILE;
    file->u.file.filename = g_strdup(filename);
    o->driver = BLOCKDEV_DRIVER_QCOW2;
    q->file = g_new0(BlockdevRef, 1);
    q->file->type = QTYPE_QDICT;
    q->file->u.definition = file;
    q->size = size;
    q->backing_file = g_strdup(backing_file);
    if (backing_fmt >= 0) {
        q->has_backing_fmt = true;
        q->backing_fmt = backing_fmt;
    }
    return o;
}

bool bdrv_img_create(const char *filename, const char *fmt,
                     const char *backing_file, const char *backing_fmt,
                     int64_t size, Error **errp)
{
    g_autoptr(BlockdevCreateOptions) file = g_new0(BlockdevCreateOptions, 1);
    g_autoptr(BlockdevCreateOptions) qcow2 = NULL;
    bool is_qcow2 = !strcmp(fmt, "qcow2");
    int drv = -1;
    Error *err = NULL;
    int ret;

    g_assert(main_loop_is_main_thread());
    /* QEMU's checks and texts, in its order. */
    if (!bdrv_find_driver(fmt)) {
        error_setg(errp, "Unknown file format '%s'", fmt);
        return false;
    }
    if (!is_qcow2 && strcmp(fmt, "raw")) {
        error_setg(errp, "Format driver '%s' does not support image creation",
                   fmt);
        return false;
    }
    if (!is_qcow2 && backing_file) {
        error_setg(errp, "Backing file not supported for file format '%s'",
                   fmt);
        return false;
    }
    if (!is_qcow2 && backing_fmt) {
        error_setg(errp, "Backing file format not supported for file format "
                   "'%s'", fmt);
        return false;
    }
    if (backing_file && !strcmp(filename, backing_file)) {
        error_setg(errp, "Error: Trying to create an image with the same "
                   "filename as the backing file");
        return false;
    }
    if (backing_file && !backing_file[0]) {
        error_setg(errp, "Expected backing file name, got empty string");
        return false;
    }
    if (size < 0) {
        error_setg(errp, "Image creation needs a size parameter");
        return false;
    }
    if (backing_fmt) {
        drv = qapi_enum_find(&BlockdevDriver_lookup, backing_fmt);
        if (drv < 0) {
            error_setg(errp, "Parameter 'backing-fmt' does not accept value "
                       "'%s'", backing_fmt);
            return false;
        }
    }

    /* The file first (a qcow2 image starts empty), size rounded up as QEMU. */
    file->driver = BLOCKDEV_DRIVER_FILE;
    file->u.file.filename = g_strdup(filename);
    file->u.file.size = is_qcow2 ? 0 : ((uint64_t)size + 511) & ~511ull;
    if (bdrv_find_driver("file")->create(file, errp) < 0) {
        return false;
    }
    if (!is_qcow2) {
        return true;
    }
    qcow2 = qcow2_options(filename, backing_file, drv,
                          ((uint64_t)size + 511) & ~511ull);
    ret = bdrv_find_driver("qcow2")->create(qcow2, &err);
    if (ret == -EFBIG) {
        /* QEMU's text: clearer than what the driver says. */
        error_free(err);
        err = NULL;
        error_setg(&err, "The image size is too large for file format '%s'",
                   fmt);
    }
    if (ret < 0) {
        /* As QEMU, no half-made image is left behind. */
        unlink(filename);
        error_propagate(errp, err);
        return false;
    }
    return true;
}
