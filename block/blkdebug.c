/*
 * The "blkdebug" filter: passes requests to its image child, and fails
 * them on purpose by rules, so tests can make I/O fail where they want.
 *
 * Each request raises its event first (read_aio for reads, write_aio for
 * writes, write-zeroes and discards, flush_to_disk for flushes). Then
 * set-state rules for that event and the current state change the state,
 * and the first inject-error rule for that event that matches the state,
 * the request type and the sector fails the request with its errno;
 * with once=on the rule is spent. A rule without iotype applies to reads
 * and data writes only, QEMU's default.
 */
#include <errno.h>

#include "block/block_int.h"

typedef struct BlkdebugRule {
    BlkdebugEvent event;
    int64_t state;          /* 0: any */
    bool has_iotype;
    BlkdebugIOType iotype;
    int error;
    int64_t sector;         /* -1: any */
    bool once;
    int64_t new_state;      /* set-state rules */
} BlkdebugRule;

typedef struct BDRVBlkdebugState {
    GMutex lock;            /* rules and state, from any request thread */
    GPtrArray *errors;      /* BlkdebugRule * */
    GPtrArray *set_states;  /* BlkdebugRule * */
    int64_t state;
} BDRVBlkdebugState;

static int blkdebug_open(BlockDriverState *bs, const BlockdevOptions *opts,
                         Error **errp)
{
    const BlockdevOptionsBlkdebug *o = &opts->u.blkdebug;
    BDRVBlkdebugState *s = bs->opaque;
    BlkdebugInjectErrorOptionsList *e;
    BlkdebugSetStateOptionsList *st;
    BlockDriverState *image;

    g_mutex_init(&s->lock);
    s->errors = g_ptr_array_new_with_free_func(g_free);
    s->set_states = g_ptr_array_new_with_free_func(g_free);
    s->state = 1;
    for (e = o->inject_error; e; e = e->next) {
        BlkdebugRule *r = g_new0(BlkdebugRule, 1);

        r->event = e->value->event;
        r->state = e->value->has_state ? e->value->state : 0;
        r->has_iotype = e->value->has_iotype;
        r->iotype = e->value->iotype;
        r->error = e->value->has_q_errno ? e->value->q_errno : EIO;
        r->sector = e->value->has_sector ? e->value->sector : -1;
        r->once = e->value->has_once && e->value->once;
        g_ptr_array_add(s->errors, r);
    }
    for (st = o->set_state; st; st = st->next) {
        BlkdebugRule *r = g_new0(BlkdebugRule, 1);

        r->event = st->value->event;
        r->state = st->value->has_state ? st->value->state : 0;
        r->new_state = st->value->new_state;
        g_ptr_array_add(s->set_states, r);
    }
    if (!bdrv_open_child(bs, o->image, "image", BDRV_CHILD_FILTERED, errp)) {
        return -EINVAL;
    }
    image = bs->file->bs;
    bs->bl = image->bl;
    if (o->has_align) {
        if (o->align <= 0 || (o->align & (o->align - 1))) {
            error_setg(errp, "Cannot meet constraints with align %" G_GINT64_FORMAT,
                       o->align);
            return -EINVAL;
        }
        bs->bl.request_alignment = MAX(bs->bl.request_alignment, o->align);
    }
    if (o->has_max_transfer) {
        if (o->max_transfer <= 0 || o->max_transfer % bs->bl.request_alignment) {
            error_setg(errp, "Cannot meet constraints with max-transfer %"
                       G_GINT64_FORMAT, o->max_transfer);
            return -EINVAL;
        }
        bs->bl.max_transfer = o->max_transfer;
    }
    return 0;
}

static void blkdebug_close(BlockDriverState *bs)
{
    BDRVBlkdebugState *s = bs->opaque;

    g_ptr_array_unref(s->errors);
    g_ptr_array_unref(s->set_states);
    g_mutex_clear(&s->lock);
}

/* Raises event for a request; returns the errno to fail it with, or 0. */
static int blkdebug_event(BlockDriverState *bs, BlkdebugEvent event,
                          BlkdebugIOType iotype, int64_t offset, int64_t bytes)
{
    BDRVBlkdebugState *s = bs->opaque;
    int64_t state;
    guint i;
    int err = 0;

    g_mutex_lock(&s->lock);
    state = s->state;
    for (i = 0; i < s->set_states->len; i++) {
        BlkdebugRule *r = g_ptr_array_index(s->set_states, i);

        if (r->event == event && (!r->state || r->state == state)) {
            s->state = r->new_state;
        }
    }
    for (i = 0; i < s->errors->len; i++) {
        BlkdebugRule *r = g_ptr_array_index(s->errors, i);

        if (r->event != event || (r->state && r->state != state)) {
            continue;
        }
        if (r->has_iotype ? r->iotype != iotype
                          : iotype != BLKDEBUG_IO_TYPE_READ &&
                            iotype != BLKDEBUG_IO_TYPE_WRITE) {
            continue;
        }
        if (r->sector >= 0 && (r->sector * 512 < offset ||
                               r->sector * 512 >= offset + bytes)) {
            continue;
        }
        err = r->error;
        if (r->once) {
            g_ptr_array_remove_index(s->errors, i);
        }
        break;
    }
    g_mutex_unlock(&s->lock);
    return -err;
}

static int64_t blkdebug_getlength(BlockDriverState *bs)
{
    return bdrv_child_getlength(bs->file);
}

static int blkdebug_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                           void *buf, BdrvRequestFlags flags)
{
    int err = blkdebug_event(bs, BLKDBG_READ_AIO, BLKDEBUG_IO_TYPE_READ,
                             offset, bytes);

    return err ? err : bdrv_pread(bs->file, offset, bytes, buf, flags);
}

static int blkdebug_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                            const void *buf, BdrvRequestFlags flags)
{
    int err = blkdebug_event(bs, BLKDBG_WRITE_AIO, BLKDEBUG_IO_TYPE_WRITE,
                             offset, bytes);

    return err ? err : bdrv_pwrite(bs->file, offset, bytes, buf, flags);
}

static int blkdebug_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, BdrvRequestFlags flags)
{
    int err = blkdebug_event(bs, BLKDBG_WRITE_AIO, BLKDEBUG_IO_TYPE_WRITE_ZEROES,
                             offset, bytes);

    return err ? err : bdrv_pwrite_zeroes(bs->file, offset, bytes, flags);
}

static int blkdebug_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    int err = blkdebug_event(bs, BLKDBG_WRITE_AIO, BLKDEBUG_IO_TYPE_DISCARD,
                             offset, bytes);

    return err ? err : bdrv_pdiscard(bs->file, offset, bytes);
}

static int blkdebug_flush(BlockDriverState *bs)
{
    /* The core flushes the image child after this. */
    return blkdebug_event(bs, BLKDBG_FLUSH_TO_DISK, BLKDEBUG_IO_TYPE_FLUSH, 0, 0);
}

static int blkdebug_truncate(BlockDriverState *bs, int64_t offset, Error **errp)
{
    return bdrv_child_truncate(bs->file, offset, errp);
}

const BlockDriver bdrv_blkdebug = {
    .format_name = "blkdebug",
    .instance_size = sizeof(BDRVBlkdebugState),
    .is_filter = true,
    .open = blkdebug_open,
    .close = blkdebug_close,
    .truncate = blkdebug_truncate,
    .getlength = blkdebug_getlength,
    .preadv = blkdebug_preadv,
    .pwritev = blkdebug_pwritev,
    .pwrite_zeroes = blkdebug_pwrite_zeroes,
    .pdiscard = blkdebug_pdiscard,
    .flush = blkdebug_flush,
    .supports_fua = true,
};
