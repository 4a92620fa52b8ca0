/*
 * The backup job: copies a node to a target node as the node was when the
 * job started, whatever is written to it meanwhile (a copy-before-write
 * filter goes in front of it for the job's lifetime), copying only what
 * the sync mode asks for, and leaves the bitmap as the bitmap-mode says.
 * Main thread.
 */
#ifndef BLOCK_BACKUP_H
#define BLOCK_BACKUP_H

#include "block/blockjob.h"

/*
 * Checks the arguments as QEMU does, in QEMU's order and with its texts,
 * and creates the job (not started) from bs to target, in txn (NULL: on
 * its own). What it changed is undone if it fails.
 */
BlockJob *backup_create(const BackupCommon *args, BlockDriverState *bs,
                        BlockDriverState *target, JobTxn *txn, Error **errp);

/*
 * drive-backup: creates the target image (or opens the existing one) as
 * QEMU does, then backup_create() into it; the job holds the unnamed
 * target node. May change a->sync (top without a backing file is full).
 */
BlockJob *drive_backup_create(DriveBackup *a, JobTxn *txn, Error **errp);

#endif
