/* QMP handlers for backups (qapi/backup.json). Main thread. */
#include "block/backup.h"
#include "qapi-commands.h"

bool qmp_blockdev_backup(BlockdevBackup *arg, Error **errp)
{
    BlockDriverState *bs, *target;
    BlockJob *job;

    bs = bdrv_lookup_bs(arg->device, arg->device, errp);
    if (!bs) {
        return false;
    }
    target = bdrv_lookup_bs(arg->target, arg->target, errp);
    if (!target) {
        return false;
    }
    job = backup_create(qapi_BlockdevBackup_base(arg), bs, target, NULL, errp);
    if (!job) {
        return false;
    }
    job_start(&job->job);
    return true;
}

bool qmp_drive_backup(DriveBackup *arg, Error **errp)
{
    BlockJob *job = drive_backup_create(arg, NULL, errp);

    if (!job) {
        return false;
    }
    job_start(&job->job);
    return true;
}
