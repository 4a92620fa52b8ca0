/*
 * The transaction engine and its actions. Every action is a table of
 * prepare/commit/abort/clean; the engine holds all I/O back (a drained
 * section) for the whole transaction, prepares the actions in order,
 * undoes the prepared ones in reverse order if one fails, and otherwise
 * commits them all. Exactly one of commit or abort runs for a prepared
 * action, then clean. Main thread only.
 */
#include "block/backup.h"
#include "block/bitmap-cmds.h"
#include "block/snapshot.h"
#include "qapi-commands.h"

typedef struct TransactionState TransactionState;

typedef struct TransactionActionOps {
    bool supports_grouped;
    bool (*prepare)(TransactionState *st, Error **errp);
    void (*commit)(TransactionState *st);
    void (*abort)(TransactionState *st);
    void (*clean)(TransactionState *st);
} TransactionActionOps;

struct TransactionState {
    const TransactionActionOps *ops;
    TransactionAction *action;
    ActionCompletionMode mode;
    JobTxn *txn;                /* the jobs' group (grouped), or NULL */
    BlockJob *job;              /* a backup: created, started at commit */
    BdrvDirtyBitmap *bitmap;    /* the bitmap the action works on */
    HBitmap *backup;            /* its bits before (clear, merge) */
    bool was_enabled;           /* enable, disable */
    ExternalSnapshot snapshot;  /* blockdev-snapshot, -sync */
    bool prepared;
};

static bool abort_prepare(TransactionState *st, Error **errp)
{
    error_setg(errp, "Transaction aborted using Abort action");
    return false;
}

static bool add_prepare(TransactionState *st, Error **errp)
{
    BlockDirtyBitmapAdd *a = st->action->u.block_dirty_bitmap_add.data;

    st->bitmap = block_dirty_bitmap_add(a->node, a->name, a->has_granularity,
                                        a->granularity,
                                        a->has_persistent && a->persistent,
                                        a->has_disabled && a->disabled, errp);
    return st->bitmap != NULL;
}

/* Undo of add and copy: the bitmap made goes away. */
static void release_abort(TransactionState *st)
{
    bdrv_release_dirty_bitmap(st->bitmap);
}

static bool remove_prepare(TransactionState *st, Error **errp)
{
    BlockDirtyBitmap *a = st->action->u.block_dirty_bitmap_remove.data;

    st->bitmap = block_dirty_bitmap_remove(a->node, a->name, false, errp);
    if (!st->bitmap) {
        return false;
    }
    /* Busy until commit, so later actions cannot use it. */
    bdrv_dirty_bitmap_set_busy(st->bitmap, true);
    return true;
}

static void remove_commit(TransactionState *st)
{
    bdrv_dirty_bitmap_set_busy(st->bitmap, false);
    bdrv_release_dirty_bitmap(st->bitmap);
}

static void remove_abort(TransactionState *st)
{
    bdrv_dirty_bitmap_set_busy(st->bitmap, false);
}

static bool clear_prepare(TransactionState *st, Error **errp)
{
    BlockDirtyBitmap *a = st->action->u.block_dirty_bitmap_clear.data;

    st->bitmap = block_dirty_bitmap_lookup(a->node, a->name, NULL, errp);
    if (!st->bitmap ||
        !bdrv_dirty_bitmap_check(st->bitmap, BDRV_BITMAP_DEFAULT, errp)) {
        return false;
    }
    bdrv_clear_dirty_bitmap(st->bitmap, &st->backup);
    return true;
}

/* Undo of clear and merge: the old bits come back. */
static void restore_abort(TransactionState *st)
{
    if (st->backup) {
        bdrv_restore_dirty_bitmap(st->bitmap, g_steal_pointer(&st->backup));
    }
}

static void backup_clean(TransactionState *st)
{
    g_clear_pointer(&st->backup, hbitmap_free);
}

static bool toggle_prepare(TransactionState *st, BlockDirtyBitmap *a,
                           bool enable, Error **errp)
{
    st->bitmap = block_dirty_bitmap_lookup(a->node, a->name, NULL, errp);
    if (!st->bitmap ||
        !bdrv_dirty_bitmap_check(st->bitmap, BDRV_BITMAP_ALLOW_RO, errp)) {
        return false;
    }
    st->was_enabled = bdrv_dirty_bitmap_enabled(st->bitmap);
    if (enable) {
        bdrv_enable_dirty_bitmap(st->bitmap);
    } else {
        bdrv_disable_dirty_bitmap(st->bitmap);
    }
    return true;
}

static bool enable_prepare(TransactionState *st, Error **errp)
{
    return toggle_prepare(st, st->action->u.block_dirty_bitmap_enable.data,
                          true, errp);
}

static bool disable_prepare(TransactionState *st, Error **errp)
{
    return toggle_prepare(st, st->action->u.block_dirty_bitmap_disable.data,
                          false, errp);
}

static void toggle_abort(TransactionState *st)
{
    if (st->was_enabled) {
        bdrv_enable_dirty_bitmap(st->bitmap);
    } else {
        bdrv_disable_dirty_bitmap(st->bitmap);
    }
}

static bool merge_prepare(TransactionState *st, Error **errp)
{
    BlockDirtyBitmapMerge *a = st->action->u.block_dirty_bitmap_merge.data;

    st->bitmap = block_dirty_bitmap_merge(a->node, a->target, a->bitmaps,
                                          &st->backup, errp);
    return st->bitmap != NULL;
}

static bool copy_prepare(TransactionState *st, Error **errp)
{
    st->bitmap = block_dirty_bitmap_copy(st->action->u.block_dirty_bitmap_copy.data,
                                         errp);
    return st->bitmap != NULL;
}

static bool backup_prepare(TransactionState *st, Error **errp)
{
    BlockdevBackup *a = st->action->u.blockdev_backup.data;
    BlockDriverState *bs = bdrv_lookup_bs(a->device, a->device, errp);
    BlockDriverState *target = bs ? bdrv_lookup_bs(a->target, a->target, errp) : NULL;

    if (!target) {
        return false;
    }
    /* A later action may use what this one set up; the job starts at commit. */
    st->job = backup_create(qapi_BlockdevBackup_base(a), bs, target, st->txn, errp);
    return st->job != NULL;
}

static bool drive_backup_prepare(TransactionState *st, Error **errp)
{
    st->job = drive_backup_create(st->action->u.drive_backup.data, st->txn, errp);
    return st->job != NULL;
}

static bool snapshot_prepare(TransactionState *st, Error **errp)
{
    return external_snapshot_prepare(&st->snapshot,
                                     st->action->u.blockdev_snapshot.data, NULL,
                                     errp);
}

static bool snapshot_sync_prepare(TransactionState *st, Error **errp)
{
    return external_snapshot_prepare(&st->snapshot, NULL,
                                     st->action->u.blockdev_snapshot_sync.data,
                                     errp);
}

static void snapshot_commit(TransactionState *st)
{
    external_snapshot_commit(&st->snapshot);
}

static void snapshot_abort(TransactionState *st)
{
    external_snapshot_abort(&st->snapshot);
}

static void backup_commit(TransactionState *st)
{
    job_start(&st->job->job);
}

static void backup_abort(TransactionState *st)
{
    /* Never started: it goes at once, its bitmap and filter undone. */
    job_cancel_sync(&st->job->job, true);
}

static const TransactionActionOps action_ops[TRANSACTION_ACTION_KIND__MAX] = {
    [TRANSACTION_ACTION_KIND_ABORT] = {
        .prepare = abort_prepare,
    },
    [TRANSACTION_ACTION_KIND_BLOCK_DIRTY_BITMAP_ADD] = {
        .prepare = add_prepare, .abort = release_abort,
    },
    [TRANSACTION_ACTION_KIND_BLOCK_DIRTY_BITMAP_REMOVE] = {
        .prepare = remove_prepare, .commit = remove_commit, .abort = remove_abort,
    },
    [TRANSACTION_ACTION_KIND_BLOCK_DIRTY_BITMAP_CLEAR] = {
        .prepare = clear_prepare, .abort = restore_abort, .clean = backup_clean,
    },
    [TRANSACTION_ACTION_KIND_BLOCK_DIRTY_BITMAP_ENABLE] = {
        .prepare = enable_prepare, .abort = toggle_abort,
    },
    [TRANSACTION_ACTION_KIND_BLOCK_DIRTY_BITMAP_DISABLE] = {
        .prepare = disable_prepare, .abort = toggle_abort,
    },
    [TRANSACTION_ACTION_KIND_BLOCK_DIRTY_BITMAP_MERGE] = {
        .prepare = merge_prepare, .abort = restore_abort, .clean = backup_clean,
    },
    [TRANSACTION_ACTION_KIND_BLOCK_DIRTY_BITMAP_COPY] = {
        .prepare = copy_prepare, .abort = release_abort,
    },
    [TRANSACTION_ACTION_KIND_BLOCKDEV_BACKUP] = {
        .supports_grouped = true,
        .prepare = backup_prepare, .commit = backup_commit, .abort = backup_abort,
    },
    [TRANSACTION_ACTION_KIND_BLOCKDEV_SNAPSHOT] = {
        .prepare = snapshot_prepare, .commit = snapshot_commit,
        .abort = snapshot_abort,
    },
    [TRANSACTION_ACTION_KIND_BLOCKDEV_SNAPSHOT_SYNC] = {
        .prepare = snapshot_sync_prepare, .commit = snapshot_commit,
        .abort = snapshot_abort,
    },
    [TRANSACTION_ACTION_KIND_DRIVE_BACKUP] = {
        .supports_grouped = true,
        .prepare = drive_backup_prepare, .commit = backup_commit,
        .abort = backup_abort,
    },
};

/* An action's own error, with which action it was (1-based). */
static bool prepare_action(TransactionState *st, unsigned index, Error **errp)
{
    const char *kind = TransactionActionKind_str(st->action->type);

    if (st->mode == ACTION_COMPLETION_MODE_GROUPED && !st->ops->supports_grouped &&
        st->action->type != TRANSACTION_ACTION_KIND_ABORT) {
        error_setg(errp, "Action '%s' does not support Transaction property "
                   "completion-mode = %s", kind,
                   ActionCompletionMode_str(st->mode));
        return false;
    }
    if (!st->ops->prepare(st, errp)) {
        if (st->action->type != TRANSACTION_ACTION_KIND_ABORT) {
            error_prepend(errp, "Action %u (%s) failed: ", index, kind);
        }
        return false;
    }
    st->prepared = true;
    return true;
}

bool qmp_transaction(TransactionActionList *actions,
                     TransactionProperties *properties, Error **errp)
{
    ActionCompletionMode mode = properties && properties->has_completion_mode ?
                                properties->completion_mode :
                                ACTION_COMPLETION_MODE_INDIVIDUAL;
    g_autoptr(GArray) states = g_array_new(false, true, sizeof(TransactionState));
    JobTxn *txn = mode == ACTION_COMPLETION_MODE_GROUPED ? job_txn_new() : NULL;
    TransactionActionList *l;
    bool ok = true;
    guint i;

    for (l = actions; l; l = l->next) {
        TransactionState st = {
            .ops = &action_ops[l->value->type], .action = l->value, .mode = mode,
            .txn = txn,
        };

        g_array_append_val(states, st);
    }
    /* No I/O between the actions: they happen at one point in time. */
    bdrv_drain_all_begin();
    for (i = 0; ok && i < states->len; i++) {
        ok = prepare_action(&g_array_index(states, TransactionState, i), i + 1, errp);
    }
    for (i = states->len; i-- > 0;) {
        TransactionState *st = &g_array_index(states, TransactionState, i);

        if (st->prepared && !ok && st->ops->abort) {
            st->ops->abort(st);
        }
    }
    for (i = 0; i < states->len; i++) {
        TransactionState *st = &g_array_index(states, TransactionState, i);

        if (st->prepared && ok && st->ops->commit) {
            st->ops->commit(st);
        }
        if (st->ops->clean) {
            st->ops->clean(st);
        }
    }
    bdrv_drain_all_end();
    if (txn) {
        job_txn_unref(txn);     /* each job holds the group now */
    }
    return ok;
}
