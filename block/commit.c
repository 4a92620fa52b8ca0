/*
 * The commit job of an intermediate layer (QEMU 7.2's block/commit.c;
 * include/block/chain-jobs.h), and blkd's bitmaps across commits, which
 * the active commit (mirror.c) shares.
 *
 * Set-up (main thread): the base is made writable if it is not, and a
 * commit_top filter goes in front of top: the node above top now reads
 * through it, and it asks nothing of the chain below, so the job can
 * keep everyone else from reading the layers it is committing (their
 * data is not consistent meanwhile) and from writing them.
 *
 * run() (the job's thread) copies, chunk by chunk, what the layers from
 * top down to the node above the base allocate, from top into the base,
 * growing the base first if it is shorter.
 *
 * Completion (main thread): drained, the node above top takes the base as
 * its backing node and its header names it (bdrv_drop_intermediate()),
 * the committed layers' bitmaps are merged into the base's, and the base
 * goes back to read-only if it was. A failed or cancelled job takes the
 * filter away and leaves the chain as it was.
 */
#include <errno.h>
#include <inttypes.h>

#include "block/block_int.h"
#include "block/chain-jobs.h"
#include "block/dirty-bitmap.h"

/* What one copy takes (QEMU's COMMIT_BUFFER_SIZE). */
#define COMMIT_BUFFER_SIZE (512 * 1024)

typedef struct CommitJob {
    BlockJob common;            /* first; its BlockBackend is on the device */
    BlockDriverState *commit_top;   /* the filter, until completion */
    BlockDriverState *top_bs;
    BlockDriverState *base_bs;
    BlockDriverState *filtered_base;    /* what the copy stops above */
    BlockBackend *top;          /* read from */
    BlockBackend *base;         /* written to */
    BlockdevOnError on_error;
    char *backing_file;
    bool base_read_only;
} CommitJob;

/* ---- bitmaps across commits (blkd's) ------------------------------------ */

/* The committed layers: top down to the node above base, filters aside. */
static GPtrArray *committed_layers(BlockDriverState *top,
                                   BlockDriverState *base)
{
    GPtrArray *layers = g_ptr_array_new();

    for (; top && top != base; top = bdrv_filter_or_cow_bs(top)) {
        if (!top->drv->is_filter) {
            g_ptr_array_add(layers, top);
        }
    }
    return layers;
}

bool commit_bitmaps_check(BlockDriverState *top, BlockDriverState *base,
                          Error **errp)
{
    g_autoptr(GPtrArray) layers = committed_layers(top, base);
    int64_t len = MAX(bdrv_getlength(base), bdrv_getlength(top));
    guint i;

    for (i = 0; i < layers->len; i++) {
        BlockDriverState *layer = g_ptr_array_index(layers, i);
        BdrvDirtyBitmap *bm = NULL;

        while ((bm = bdrv_dirty_bitmap_next(layer, bm))) {
            const char *name = bdrv_dirty_bitmap_name(bm);
            BdrvDirtyBitmap *into;

            if (!name) {
                continue;       /* a job's own */
            }
            into = bdrv_find_dirty_bitmap(base, name);
            if (!bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_INCONSISTENT, errp) ||
                (into && !bdrv_dirty_bitmap_check(into, BDRV_BITMAP_DEFAULT,
                                                  errp))) {
                return false;
            }
            if (bdrv_dirty_bitmap_size(bm) != len) {
                error_setg(errp, "Bitmap '%s' of '%s' cannot be merged into "
                           "'%s': its size is %" PRId64 ", the base's will be "
                           "%" PRId64, name, bdrv_get_node_name(layer),
                           bdrv_get_node_name(base),
                           bdrv_dirty_bitmap_size(bm), len);
                return false;
            }
        }
    }
    return true;
}

void commit_bitmaps_merge(BlockDriverState *top, BlockDriverState *base)
{
    g_autoptr(GPtrArray) layers = committed_layers(top, base);
    guint l;

    for (l = 0; l < layers->len; l++) {
        BlockDriverState *layer = g_ptr_array_index(layers, l);
        g_autoptr(GPtrArray) oldest_first = g_ptr_array_new();
        BdrvDirtyBitmap *bm = NULL;
        guint i;

        while ((bm = bdrv_dirty_bitmap_next(layer, bm))) {
            if (bdrv_dirty_bitmap_name(bm)) {
                g_ptr_array_insert(oldest_first, 0, bm);
            }
        }
        /* Created oldest first, they list in the base as on their layer. */
        for (i = 0; i < oldest_first->len; i++) {
            BdrvDirtyBitmap *from = g_ptr_array_index(oldest_first, i);
            const char *name = bdrv_dirty_bitmap_name(from);
            BdrvDirtyBitmap *into = bdrv_find_dirty_bitmap(base, name);

            if (!into) {
                uint32_t granularity = bdrv_dirty_bitmap_granularity(from);
                /* Persistent like its source if the base can store it. */
                bool persistent = bdrv_dirty_bitmap_persistent(from) &&
                    bdrv_can_store_new_dirty_bitmap(base, name, granularity,
                                                    NULL);

                into = bdrv_create_dirty_bitmap(base, granularity, name,
                                                &error_abort);
                bdrv_dirty_bitmap_set_persistent(into, persistent);
                if (!bdrv_dirty_bitmap_enabled(from)) {
                    bdrv_disable_dirty_bitmap(into);
                }
            }
            bdrv_merge_dirty_bitmap(into, from, NULL, &error_abort);
        }
    }
}

/* ---- the commit_top filter ---------------------------------------------- */

static int64_t commit_top_getlength(BlockDriverState *bs)
{
    return bdrv_child_getlength(bs->file);
}

static int commit_top_preadv(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, void *buf, BdrvRequestFlags flags)
{
    return bdrv_pread(bs->file, offset, bytes, buf, flags);
}

/*
 * QEMU's: consistent reads for its users without asking them of the chain
 * below, where the job writes.
 */
/* Read-only: the core refuses writes before they reach it. */
static const BlockDriver bdrv_commit_top = {
    .format_name = "commit_top",
    .is_filter = true,
    .child_perm = bdrv_child_perm_none,
    .getlength = commit_top_getlength,
    .preadv = commit_top_preadv,
};

/* ---- run(): the job's thread -------------------------------------------- */

typedef struct GrowBase {
    BlockBackend *base;
    int64_t len;
    Error *err;
} GrowBase;

static void grow_base(void *opaque)
{
    GrowBase *g = opaque;

    blk_truncate(g->base, g->len, &g->err);
}

int commit_grow_base(BlockBackend *base, int64_t len, Error **errp)
{
    int64_t base_len = blk_getlength(base);
    GrowBase g = { .base = base, .len = len };

    if (base_len < 0) {
        return base_len;
    }
    if (base_len >= len) {
        return 0;
    }
    job_call_main(grow_base, &g);
    if (g.err) {
        error_propagate(errp, g.err);
        return -EIO;
    }
    return 0;
}

static int commit_run(Job *job, Error **errp)
{
    CommitJob *s = (CommitJob *)job;
    g_autofree void *buf = NULL;
    int64_t len = blk_getlength(s->top), offset, n = 0;
    int ret;

    if (len < 0) {
        return len;
    }
    job_progress_set_remaining(job, len);
    ret = commit_grow_base(s->base, len, errp);
    if (ret < 0) {
        return ret;
    }
    buf = g_malloc(COMMIT_BUFFER_SIZE);
    for (offset = 0; offset < len; offset += n) {
        bool copy, error_in_source = true;
        int depth = 0;

        block_job_ratelimit_sleep(&s->common);
        if (job_is_cancelled(job)) {
            break;
        }
        /* As a request: a drained section waits for it. */
        blk_io_begin(s->top);
        ret = bdrv_block_status_above(s->top_bs, s->filtered_base, false,
                                      offset,
                                      MIN(len - offset, COMMIT_BUFFER_SIZE),
                                      &n, &depth);
        blk_io_end(s->top);
        copy = ret >= 0 && depth > 0;
        if (copy) {
            ret = blk_pread(s->top, offset, n, buf, 0);
            if (ret == 0) {
                ret = blk_pwrite(s->base, offset, n, buf, 0);
                error_in_source = ret >= 0;
            }
        }
        if (ret < 0) {
            if (block_job_error_action(&s->common, s->on_error, error_in_source,
                                       -ret) == BLOCK_ERROR_ACTION_REPORT) {
                return ret;
            }
            n = 0;
            continue;
        }
        job_progress_update(job, n);
        if (copy) {
            block_job_ratelimit_processed_bytes(&s->common, n);
        }
    }
    return 0;
}

/* ---- completion: the main thread ---------------------------------------- */

static int commit_prepare(Job *job)
{
    CommitJob *s = (CommitJob *)job;
    Error *err = NULL;
    bool ok;

    /* The bitmaps may have changed since the start. */
    ok = commit_bitmaps_check(s->top_bs, s->base_bs, &err) &&
         bdrv_drop_intermediate(s->commit_top, s->base_bs, s->backing_file,
                                &err);
    if (!ok) {
        /* The job fails with EPERM, as QEMU's. */
        error_free(err);
        return -EPERM;
    }
    commit_bitmaps_merge(s->top_bs, s->base_bs);
    bdrv_unref(g_steal_pointer(&s->commit_top));
    return 0;
}

static void commit_abort(Job *job)
{
    CommitJob *s = (CommitJob *)job;

    /* What the job forbade on the chain goes first: it is readable again. */
    block_job_remove_all_bdrv(&s->common);
    bdrv_drop_filter(g_steal_pointer(&s->commit_top));
}

static void commit_clean(Job *job)
{
    CommitJob *s = (CommitJob *)job;

    /* The job's write on the base goes before the base is read-only. */
    block_job_remove_all_bdrv(&s->common);
    if (s->base_read_only) {
        bdrv_set_read_only(s->base_bs, NULL);
    }
}

static void commit_free(Job *job)
{
    g_free(((CommitJob *)job)->backing_file);
}

static const BlockJobDriver commit_driver = {
    .job_driver = {
        .instance_size = sizeof(CommitJob),
        .job_type = JOB_TYPE_COMMIT,
        .run = commit_run,
        .prepare = commit_prepare,
        .abort = commit_abort,
        .clean = commit_clean,
        .free = commit_free,
    },
};

/* ---- creation: the main thread ------------------------------------------- */

BlockDriverState *commit_filtered_base(BlockDriverState *from,
                                      BlockDriverState *base)
{
    BlockDriverState *iter, *filtered_base = from;

    for (iter = from; iter != base; iter = bdrv_filter_or_cow_bs(iter)) {
        if (!iter->drv->is_filter) {
            filtered_base = bdrv_filter_or_cow_bs(iter);
        }
    }
    return filtered_base;
}

bool commit_block_intermediates(BlockJob *job, BlockDriverState *from,
                                BlockDriverState *base,
                                BlockDriverState *filtered_base,
                                uint64_t shared, BlockBackend **from_blk,
                                Error **errp)
{
    BlockDriverState *iter;

    for (iter = from; iter != base; iter = bdrv_filter_or_cow_bs(iter)) {
        BlockBackend *blk;

        /* They show base's data as it is, as QEMU's share consistent reads. */
        if (iter == filtered_base) {
            shared |= BLK_PERM_CONSISTENT_READ;
        }
        blk = block_job_add_bdrv(job, "intermediate node", iter, 0, shared,
                                 errp);
        if (!blk) {
            return false;
        }
        if (iter == from && from_blk) {
            *from_blk = blk;
        }
    }
    return true;
}

BlockJob *commit_start(const char *job_id, BlockDriverState *bs,
                       BlockDriverState *base, BlockDriverState *top,
                       int flags, int64_t speed, BlockdevOnError on_error,
                       const char *backing_file, const char *filter_node_name,
                       Error **errp)
{
    int64_t base_size, top_size;
    uint64_t base_perm = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE;
    uint64_t shared = BLK_PERM_WRITE_UNCHANGED | BLK_PERM_WRITE;
    CommitJob *s;

    g_assert(top != bs);
    base_size = bdrv_getlength(base);
    if (base_size < 0) {
        error_setg_errno(errp, -base_size, "Could not inquire base image size");
        return NULL;
    }
    top_size = bdrv_getlength(top);
    if (top_size < 0) {
        error_setg_errno(errp, -top_size, "Could not inquire top image size");
        return NULL;
    }
    if (base_size < top_size) {
        base_perm |= BLK_PERM_RESIZE;
    }
    if (!commit_bitmaps_check(top, base, errp)) {
        return NULL;
    }
    s = block_job_create(job_id, &commit_driver, NULL, bs, 0, BLK_PERM_ALL,
                         speed, flags, errp);
    if (!s) {
        return NULL;
    }
    s->base_read_only = bdrv_is_read_only(base);
    if (s->base_read_only && !bdrv_set_writable(base, errp)) {
        s->base_read_only = false;
        goto fail;
    }
    s->commit_top = bdrv_new_filter(&bdrv_commit_top, filter_node_name, true,
                                    top, errp);
    if (!s->commit_top) {
        goto fail;
    }
    if (!bdrv_replace_node(top, s->commit_top, errp)) {
        bdrv_unref(g_steal_pointer(&s->commit_top));
        goto fail;
    }
    s->filtered_base = commit_filtered_base(top, base);
    if (!commit_block_intermediates(&s->common, top, base, s->filtered_base,
                                    shared, &s->top, errp)) {
        goto fail;
    }
    s->base = block_job_add_bdrv(&s->common, "base", base, base_perm,
                                 BLK_PERM_CONSISTENT_READ |
                                 BLK_PERM_WRITE_UNCHANGED, errp);
    if (!s->base) {
        goto fail;
    }
    s->top_bs = top;
    s->base_bs = base;
    s->on_error = on_error;
    s->backing_file = g_strdup(backing_file);
    return &s->common;

fail:
    {
        BlockDriverState *commit_top = g_steal_pointer(&s->commit_top);
        bool base_read_only = s->base_read_only;

        /* The job's hold on the chain goes first, then the filter. */
        job_early_fail(&s->common.job);
        if (commit_top) {
            bdrv_drop_filter(commit_top);
        }
        if (base_read_only) {
            bdrv_set_read_only(base, NULL);
        }
    }
    return NULL;
}
