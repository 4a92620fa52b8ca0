/*
 * BlockBackend: users' handles on nodes, and the drain gate.
 *
 * Every request from a BlockBackend passes the gate: it waits while a
 * drained section is open, then counts itself in flight until it is done.
 * bdrv_drain_all_begin() (main thread) closes the gate and waits for the
 * count to reach zero. Requests that drivers make to their children go
 * through no gate: they belong to a request already counted, so a drained
 * section never waits for a request it is itself holding back. Nor does
 * the main thread wait at the gate: it owns every drained section, and
 * what it does inside one (a transaction creating drive-backup's target)
 * is part of the section's work.
 */
#include <errno.h>

#include "block/core.h"
#include "util/main-loop.h"

struct BlockBackend {
    char *owner;
    uint64_t perm, shared;
    BdrvChild *root;
};

static GList *all_backends;     /* BlockBackend *, main thread */

static GMutex gate_lock;
static GCond gate_cond;
static int drain_depth;         /* open drained sections */
static int64_t in_flight;       /* requests past the gate */

static void gate_enter(void)
{
    bool main_thread = main_loop_is_main_thread();

    g_mutex_lock(&gate_lock);
    while (drain_depth > 0 && !main_thread) {
        g_cond_wait(&gate_cond, &gate_lock);
    }
    in_flight++;
    g_mutex_unlock(&gate_lock);
}

static void gate_leave(void)
{
    g_mutex_lock(&gate_lock);
    if (--in_flight == 0) {
        g_cond_broadcast(&gate_cond);
    }
    g_mutex_unlock(&gate_lock);
}

void bdrv_inc_in_flight(void)
{
    g_mutex_lock(&gate_lock);
    in_flight++;
    g_mutex_unlock(&gate_lock);
}

void bdrv_dec_in_flight(void)
{
    gate_leave();
}

void bdrv_drain_all_begin(void)
{
    g_assert(main_loop_is_main_thread());
    g_mutex_lock(&gate_lock);
    drain_depth++;
    while (in_flight > 0) {
        g_cond_wait(&gate_cond, &gate_lock);
    }
    g_mutex_unlock(&gate_lock);
}

void bdrv_drain_all_end(void)
{
    g_mutex_lock(&gate_lock);
    g_assert(drain_depth > 0);
    if (--drain_depth == 0) {
        g_cond_broadcast(&gate_cond);
    }
    g_mutex_unlock(&gate_lock);
}

BlockBackend *blk_new(const char *owner, uint64_t perm, uint64_t shared)
{
    BlockBackend *blk = g_new0(BlockBackend, 1);

    blk->owner = g_strdup(owner);
    blk->perm = perm;
    blk->shared = shared;
    all_backends = g_list_append(all_backends, blk);
    return blk;
}

BlockBackend *blk_next(BlockBackend *blk)
{
    GList *l;

    if (!blk) {
        return all_backends ? all_backends->data : NULL;
    }
    l = g_list_find(all_backends, blk);
    return l && l->next ? l->next->data : NULL;
}

bool blk_insert_bs(BlockBackend *blk, BlockDriverState *bs, Error **errp)
{
    return blk_insert_bs_named(blk, bs, "root", errp);
}

bool blk_insert_bs_named(BlockBackend *blk, BlockDriverState *bs,
                         const char *child_name, Error **errp)
{
    g_assert(!blk->root);
    blk->root = bdrv_attach_child_edge(bs, blk, false, child_name,
                                       BDRV_CHILD_FILTERED, blk->perm,
                                       blk->shared, errp);
    return blk->root != NULL;
}

void blk_remove_bs(BlockBackend *blk)
{
    if (blk->root) {
        bdrv_detach_child_edge(blk->root);
        blk->root = NULL;
    }
}

void blk_unref(BlockBackend *blk)
{
    if (blk) {
        blk_remove_bs(blk);
        all_backends = g_list_remove(all_backends, blk);
        g_free(blk->owner);
        g_free(blk);
    }
}

BlockDriverState *blk_bs(BlockBackend *blk)
{
    return blk->root ? blk->root->bs : NULL;
}

const char *blk_owner(const BlockBackend *blk)
{
    return blk->owner;
}

int64_t blk_getlength(BlockBackend *blk)
{
    return blk->root ? bdrv_getlength(blk->root->bs) : -ENOMEDIUM;
}

bool blk_truncate(BlockBackend *blk, int64_t size, Error **errp)
{
    g_assert(main_loop_is_main_thread() && (blk->perm & BLK_PERM_RESIZE));
    return bdrv_truncate_for(blk->root->bs, size, blk->root, errp);
}

void blk_io_begin(BlockBackend *blk)
{
    gate_enter();
}

void blk_io_end(BlockBackend *blk)
{
    gate_leave();
}

int blk_pread(BlockBackend *blk, int64_t offset, int64_t bytes, void *buf,
              BdrvRequestFlags flags)
{
    int ret;

    gate_enter();
    ret = blk->root ? bdrv_pread(blk->root, offset, bytes, buf, flags) : -ENOMEDIUM;
    gate_leave();
    return ret;
}

int blk_pwrite(BlockBackend *blk, int64_t offset, int64_t bytes,
               const void *buf, BdrvRequestFlags flags)
{
    int ret;

    gate_enter();
    ret = blk->root ? bdrv_pwrite(blk->root, offset, bytes, buf, flags) : -ENOMEDIUM;
    gate_leave();
    return ret;
}

int blk_pwrite_zeroes(BlockBackend *blk, int64_t offset, int64_t bytes,
                      BdrvRequestFlags flags)
{
    int ret;

    gate_enter();
    ret = blk->root ? bdrv_pwrite_zeroes(blk->root, offset, bytes, flags)
                    : -ENOMEDIUM;
    gate_leave();
    return ret;
}

int blk_pdiscard(BlockBackend *blk, int64_t offset, int64_t bytes)
{
    int ret;

    gate_enter();
    ret = blk->root ? bdrv_pdiscard(blk->root, offset, bytes) : -ENOMEDIUM;
    gate_leave();
    return ret;
}

int blk_flush(BlockBackend *blk)
{
    int ret;

    gate_enter();
    ret = blk->root ? bdrv_flush(blk->root->bs) : -ENOMEDIUM;
    gate_leave();
    return ret;
}

int blk_block_status(BlockBackend *blk, bool want_zero, int64_t offset,
                     int64_t bytes, int64_t *pnum, int *depth)
{
    int ret;

    gate_enter();
    ret = blk->root ? bdrv_block_status_above(blk->root->bs, NULL, want_zero,
                                              offset, bytes, pnum, depth)
                    : -ENOMEDIUM;
    gate_leave();
    return ret;
}
