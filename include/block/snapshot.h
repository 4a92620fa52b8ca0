/*
 * External snapshots: blockdev-snapshot and blockdev-snapshot-sync, as
 * commands and as transaction actions (QEMU's external_snapshot_*). An
 * overlay goes on top of a node: the node's users use the overlay, the
 * node becomes its backing node and, at commit, read-only. Main thread.
 */
#ifndef BLOCK_SNAPSHOT_H
#define BLOCK_SNAPSHOT_H

#include "block/block.h"
#include "qapi-types.h"

typedef struct ExternalSnapshot {
    BlockDriverState *old_bs;   /* the node under the overlay */
    BlockDriverState *new_bs;   /* the overlay, on top once prepared */
    bool opened;                /* -sync opened new_bs (abort closes it) */
} ExternalSnapshot;

/*
 * Checks as QEMU does, in its order and with its texts, then puts the
 * overlay on: @snap for blockdev-snapshot, @sync (with @snap NULL) for
 * blockdev-snapshot-sync, which creates or opens the image first. On
 * failure nothing has changed (but an image created stays, as in QEMU).
 */
bool external_snapshot_prepare(ExternalSnapshot *s, const BlockdevSnapshot *snap,
                               const BlockdevSnapshotSync *sync, Error **errp);
/* The old node becomes read-only (QEMU ignores a failure here too). */
void external_snapshot_commit(ExternalSnapshot *s);
/* Takes the overlay away again; an overlay -sync opened is closed. */
void external_snapshot_abort(ExternalSnapshot *s);

#endif
