/*
 * Block-copy; see include/block/block-copy.h.
 *
 * State: the copy bitmap (bits guarded by the source node's bitmap lock)
 * and the list of copies in flight (guarded by s->lock). Claiming a range
 * takes s->lock, checks no copy in flight overlaps it, clears the bits and
 * registers the range; the copy itself runs without any lock.
 *
 * A block_copy() with a timeout runs in a thread of s->pool while its
 * caller waits on s->cond until it finishes or the time is up. A caller
 * that gives up marks the call abandoned (under s->lock): the call
 * finishes the chunk in hand, claims nothing more and frees itself.
 */
#include <errno.h>
#include <string.h>

#include "block/block-copy.h"
#include "block/block_int.h"
#include "util/range.h"

struct BlockCopyTask {
    Range range;            /* first: the tasks list is a range list */
};

struct BlockCopyState {
    BdrvChild *source, *target;
    int64_t cluster_size;
    int64_t len;
    BdrvDirtyBitmap *copy_bitmap;
    bool skip_unallocated;
    BdrvRequestFlags write_flags;   /* BDRV_REQ_WRITE_COMPRESSED or 0 */
    bool fleecing;          /* the target's chain holds the source */
    gint use_copy_range;    /* atomic: offload until it first fails */
    GMutex lock;
    GCond cond;             /* a copy in flight, or a timed call, ended */
    GList *tasks;           /* BlockCopyTask *, in flight */
    int64_t next;           /* where the next background claim looks first */
    GThreadPool *pool;      /* timed block_copy() calls; made at the first */
    void (*progress)(void *opaque, int64_t bytes);
    void *progress_opaque;
};

/* Offload copies whole clusters: the node's alignment must divide them and the end. */
static bool copy_range_suits(BdrvChild *c, int64_t cluster_size, int64_t len)
{
    return !((cluster_size | len) & (c->bs->bl.request_alignment - 1));
}

BlockCopyState *block_copy_state_new(BdrvChild *source, BdrvChild *target,
                                     Error **errp)
{
    BlockCopyState *s;
    int64_t target_cluster = bdrv_get_cluster_size(target->bs);
    int64_t len = bdrv_getlength(source->bs);

    if (len != bdrv_getlength(target->bs)) {
        error_setg(errp, "Source and target image have different sizes");
        return NULL;
    }
    s = g_new0(BlockCopyState, 1);
    s->source = source;
    s->target = target;
    s->len = len;
    /* A cluster of the target is never copied in part. */
    s->cluster_size = MAX(65536, target_cluster);
    s->use_copy_range = copy_range_suits(source, s->cluster_size, len) &&
                        copy_range_suits(target, s->cluster_size, len);
    /*
     * Image fleecing: the target is read as the source at the snapshot,
     * falling through to the source where nothing was copied yet.
     */
    s->fleecing = bdrv_chain_contains(target->bs, source->bs);
    if (s->fleecing) {
        bdrv_serialise_writes_ref(target->bs);
    }
    s->copy_bitmap = bdrv_create_dirty_bitmap(source->bs, s->cluster_size, NULL,
                                              &error_abort);
    bdrv_disable_dirty_bitmap(s->copy_bitmap);
    bdrv_set_dirty_bitmap(s->copy_bitmap, 0, len);
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
    return s;
}

void block_copy_state_free(BlockCopyState *s)
{
    if (s) {
        /* Calls whose callers timed out may still be copying: wait. */
        if (s->pool) {
            g_thread_pool_free(s->pool, FALSE, TRUE);
        }
        g_assert(!s->tasks);
        if (s->fleecing) {
            bdrv_serialise_writes_unref(s->target->bs);
        }
        bdrv_release_dirty_bitmap(s->copy_bitmap);
        g_mutex_clear(&s->lock);
        g_cond_clear(&s->cond);
        g_free(s);
    }
}

int64_t block_copy_cluster_size(BlockCopyState *s)
{
    return s->cluster_size;
}

BdrvDirtyBitmap *block_copy_dirty_bitmap(BlockCopyState *s)
{
    return s->copy_bitmap;
}

void block_copy_set_progress(BlockCopyState *s,
                             void (*progress)(void *opaque, int64_t bytes),
                             void *opaque)
{
    s->progress = progress;
    s->progress_opaque = opaque;
}

void block_copy_set_skip_unallocated(BlockCopyState *s, bool skip)
{
    /* Read by every copy, in any thread. */
    __atomic_store_n(&s->skip_unallocated, skip, __ATOMIC_RELEASE);
}

void block_copy_set_compress(BlockCopyState *s, bool compress)
{
    s->write_flags = compress ? BDRV_REQ_WRITE_COMPRESSED : 0;
    /* Offload copies bytes as they are: never compressed. */
    if (compress) {
        g_atomic_int_set(&s->use_copy_range, 0);
    }
}

/*
 * Under s->lock: claims the first run of dirty clusters in [start, end),
 * at most max_len bytes. Returns false if none is dirty.
 */
static bool claim(BlockCopyState *s, int64_t start, int64_t end, int64_t max_len,
                  BlockCopyTask *task)
{
    int64_t first = bdrv_dirty_bitmap_next_dirty(s->copy_bitmap, start, end - start);
    int64_t last;

    if (first < 0) {
        return false;
    }
    last = first + s->cluster_size;
    while (last < end && last - first < max_len &&
           bdrv_dirty_bitmap_get(s->copy_bitmap, last)) {
        last += s->cluster_size;
    }
    task->range.start = first;
    task->range.end = MIN(last, s->len);
    bdrv_reset_dirty_bitmap(s->copy_bitmap, first,
                            MIN(last, s->len) - first);
    s->tasks = g_list_prepend(s->tasks, task);
    return true;
}

static void release(BlockCopyState *s, BlockCopyTask *task, bool failed)
{
    g_mutex_lock(&s->lock);
    s->tasks = g_list_remove(s->tasks, task);
    if (failed) {
        bdrv_set_dirty_bitmap(s->copy_bitmap, task->range.start,
                              task->range.end - task->range.start);
    }
    g_cond_broadcast(&s->cond);
    g_mutex_unlock(&s->lock);
    if (!failed && s->progress) {
        s->progress(s->progress_opaque, task->range.end - task->range.start);
    }
}

/*
 * Data by copy offload while the nodes allow it. After any failure, never
 * again (QEMU's choice): the read and write that follow then report a
 * real error, on the side it is on.
 */
static bool try_copy_range(BlockCopyState *s, int64_t offset, int64_t bytes)
{
    if (!g_atomic_int_get(&s->use_copy_range)) {
        return false;
    }
    if (bdrv_copy_range(s->source, offset, s->target, offset, bytes) == 0) {
        return true;
    }
    g_atomic_int_set(&s->use_copy_range, 0);
    return false;
}

/*
 * Copies [start, end) of the source to the target: zeroes as zeroes.
 * Compressed writes take whole target clusters, so then every run is
 * whole copy clusters, as in QEMU: a shorter one is a cluster of data.
 */
static int copy_clusters(BlockCopyState *s, int64_t start, int64_t end,
                         bool *error_is_read)
{
    int64_t unit = s->write_flags & BDRV_REQ_WRITE_COMPRESSED ? s->cluster_size : 1;
    void *buf = NULL;
    int ret = 0;

    while (start < end && ret == 0) {
        int64_t pnum;
        bool skip = false;
        int status = bdrv_block_status_above(s->source->bs, NULL, true, start,
                                             end - start, &pnum, NULL);

        if (status < 0) {
            /* Unknown status: copy as data. */
            pnum = end - start;
            status = BDRV_BLOCK_DATA;
        }
        if (__atomic_load_n(&s->skip_unallocated, __ATOMIC_ACQUIRE)) {
            int64_t top_pnum;
            int top = bdrv_block_status(s->source->bs, false, start, pnum,
                                        &top_pnum, NULL, NULL);

            if (top >= 0) {
                pnum = top_pnum;
                skip = !(top & BDRV_BLOCK_ALLOCATED);
            }
        }
        if (start + pnum < end) {
            if (pnum < unit) {
                pnum = MIN(unit, end - start);
                status = BDRV_BLOCK_DATA;
                skip = false;
            } else {
                pnum -= pnum % unit;
            }
        }
        if (skip) {
            start += pnum;
            continue;
        }
        if (status & BDRV_BLOCK_ZERO) {
            /* A target opened with discard=unmap stays sparse there. */
            ret = bdrv_pwrite_zeroes(s->target, start, pnum, BDRV_REQ_MAY_UNMAP);
            *error_is_read = false;
        } else if (!try_copy_range(s, start, pnum)) {
            if (!buf) {
                buf = bdrv_blockalign(s->target->bs,
                                      MIN(end - start, (int64_t)BLOCK_COPY_MAX_CHUNK * 16));
            }
            pnum = MIN(pnum, (int64_t)BLOCK_COPY_MAX_CHUNK * 16);
            ret = bdrv_pread(s->source, start, pnum, buf, 0);
            *error_is_read = true;
            if (ret == 0) {
                ret = bdrv_pwrite(s->target, start, pnum, buf, s->write_flags);
                *error_is_read = false;
            }
        }
        start += pnum;
    }
    free(buf);
    return ret;
}

/* One block_copy() call, run by its caller or, with a timeout, by s->pool. */
typedef struct BlockCopyCall {
    BlockCopyState *s;
    int64_t start, end;
    int ret;
    bool error_is_read;
    bool finished;          /* under s->lock */
    bool abandoned;         /* under s->lock: the caller gave up waiting */
} BlockCopyCall;

static void copy_call(BlockCopyCall *call)
{
    BlockCopyState *s = call->s;
    int ret = 0;

    while (ret == 0) {
        BlockCopyTask task;

        g_mutex_lock(&s->lock);
        /* A copy of these clusters under way: wait, it may be all we need. */
        while (!call->abandoned &&
               range_list_find(s->tasks, call->start, call->end)) {
            g_cond_wait(&s->cond, &s->lock);
        }
        if (call->abandoned ||
            !claim(s, call->start, call->end, call->end - call->start, &task)) {
            g_mutex_unlock(&s->lock);
            break;
        }
        g_mutex_unlock(&s->lock);
        ret = copy_clusters(s, task.range.start, task.range.end,
                            &call->error_is_read);
        release(s, &task, ret < 0);
    }
    call->ret = ret;
}

/* s->pool's function: a timed call, counted in flight by its caller. */
static void copy_call_thread(gpointer data, gpointer unused)
{
    BlockCopyCall *call = data;
    BlockCopyState *s = call->s;
    bool abandoned;

    copy_call(call);
    g_mutex_lock(&s->lock);
    call->finished = true;
    abandoned = call->abandoned;
    g_cond_broadcast(&s->cond);
    g_mutex_unlock(&s->lock);
    if (abandoned) {
        g_free(call);
    }
    bdrv_dec_in_flight();
}

/*
 * Runs call in s->pool, waiting for it at most timeout_ns. False if it
 * gave up: the call then goes on, abandoned, and frees itself.
 */
static bool copy_call_timed(BlockCopyState *s, BlockCopyCall *call,
                            uint64_t timeout_ns)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ns / 1000;
    bool finished;

    /* The copy may outlive the request: drained sections wait for it. */
    bdrv_inc_in_flight();
    g_mutex_lock(&s->lock);
    if (!s->pool) {
        s->pool = g_thread_pool_new(copy_call_thread, NULL, -1, FALSE, NULL);
    }
    g_thread_pool_push(s->pool, call, NULL);
    while (!call->finished && g_cond_wait_until(&s->cond, &s->lock, deadline)) {
        /* woken by another copy, or spuriously */
    }
    finished = call->finished;
    if (!finished) {
        call->abandoned = true;
        g_cond_broadcast(&s->cond);
    }
    g_mutex_unlock(&s->lock);
    return finished;
}

int block_copy(BlockCopyState *s, int64_t offset, int64_t bytes,
               uint64_t timeout_ns, bool *error_is_read)
{
    BlockCopyCall local = { .s = s }, *call = &local;
    int ret;

    call->start = offset / s->cluster_size * s->cluster_size;
    call->end = MIN(s->len, (offset + bytes + s->cluster_size - 1) /
                            s->cluster_size * s->cluster_size);
    if (!timeout_ns) {
        copy_call(call);
    } else {
        bool copied;

        /* Mostly there is nothing to copy: no thread to hand it to then. */
        g_mutex_lock(&s->lock);
        copied = bdrv_dirty_bitmap_next_dirty(s->copy_bitmap, call->start,
                                              call->end - call->start) < 0 &&
                 !range_list_find(s->tasks, call->start, call->end);
        g_mutex_unlock(&s->lock);
        if (copied) {
            return 0;
        }
        /* The pool's thread may outlive this frame. */
        call = g_memdup2(&local, sizeof(local));
        if (!copy_call_timed(s, call, timeout_ns)) {
            return -ETIMEDOUT;
        }
    }
    ret = call->ret;
    *error_is_read = call->error_is_read;
    if (call != &local) {
        g_free(call);
    }
    return ret;
}

void block_copy_reset(BlockCopyState *s, int64_t offset, int64_t bytes)
{
    /* Under s->lock, as claims: no claim sees half of it. */
    g_mutex_lock(&s->lock);
    bdrv_reset_dirty_bitmap(s->copy_bitmap, offset, bytes);
    g_mutex_unlock(&s->lock);
}

BlockCopyTask *block_copy_claim(BlockCopyState *s, int64_t max_chunk)
{
    BlockCopyTask *task = g_new(BlockCopyTask, 1);
    bool claimed;

    /* Compressing: a cluster a chunk, as QEMU's chunks are then. */
    if (s->write_flags & BDRV_REQ_WRITE_COMPRESSED) {
        max_chunk = s->cluster_size;
    }
    /*
     * Clusters in flight are clean already, so a claimed run never overlaps
     * one. On from the last claim, then from the start: a chunk that failed
     * is tried again after the others, as QEMU's next pass over the bitmap
     * does, rather than ahead of them each time.
     */
    g_mutex_lock(&s->lock);
    max_chunk = MAX(max_chunk, s->cluster_size);
    claimed = claim(s, s->next, s->len, max_chunk, task) ||
              claim(s, 0, s->next, max_chunk, task);
    if (claimed) {
        s->next = task->range.end;
    }
    g_mutex_unlock(&s->lock);
    if (!claimed) {
        g_free(task);
        return NULL;
    }
    return task;
}

int64_t block_copy_task_bytes(const BlockCopyTask *task)
{
    return task->range.end - task->range.start;
}

int block_copy_run(BlockCopyState *s, BlockCopyTask *task, bool *error_is_read)
{
    int ret = copy_clusters(s, task->range.start, task->range.end,
                            error_is_read);

    release(s, task, ret < 0);
    g_free(task);
    return ret;
}
