/*
 * The "null-co" driver: a device of a given size that stores nothing.
 * Reads return zeroes only with read-zeroes=on (otherwise the buffer is
 * left as it is, as in QEMU); writes succeed; it cannot be resized, as in
 * QEMU. For tests and benchmarks.
 */
#include <string.h>

#include "block/block_int.h"

typedef struct BDRVNullState {
    int64_t length;
    uint64_t latency_ns;
    bool read_zeroes;
} BDRVNullState;

static int null_open(BlockDriverState *bs, const BlockdevOptions *opts,
                     Error **errp)
{
    const BlockdevOptionsNull *o = &opts->u.null_co;
    BDRVNullState *s = bs->opaque;

    s->length = o->has_size ? o->size : 1 << 30;
    s->latency_ns = o->has_latency_ns ? o->latency_ns : 0;
    s->read_zeroes = o->has_read_zeroes && o->read_zeroes;
    if (s->length < 0) {
        error_setg(errp, "size must be non-negative");
        return -1;
    }
    bs->filename = g_strdup("null-co://");
    return 0;
}

static int64_t null_getlength(BlockDriverState *bs)
{
    return ((BDRVNullState *)bs->opaque)->length;
}

static void null_delay(BDRVNullState *s)
{
    if (s->latency_ns) {
        g_usleep(s->latency_ns / 1000);
    }
}

static int null_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       void *buf, BdrvRequestFlags flags)
{
    BDRVNullState *s = bs->opaque;

    null_delay(s);
    if (s->read_zeroes) {
        memset(buf, 0, bytes);
    }
    return 0;
}

static int null_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        const void *buf, BdrvRequestFlags flags)
{
    null_delay(bs->opaque);
    return 0;
}

static int null_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, BdrvRequestFlags flags)
{
    null_delay(bs->opaque);
    return 0;
}

static int null_block_status(BlockDriverState *bs, bool want_zero,
                             int64_t offset, int64_t bytes, int64_t *pnum,
                             int64_t *map, BlockDriverState **file)
{
    BDRVNullState *s = bs->opaque;

    *pnum = bytes;
    *map = offset;
    *file = bs;
    return BDRV_BLOCK_OFFSET_VALID | (s->read_zeroes ? BDRV_BLOCK_ZERO : 0);
}

const BlockDriver bdrv_null_co = {
    .format_name = "null-co",
    .instance_size = sizeof(BDRVNullState),
    .open = null_open,
    .getlength = null_getlength,
    .preadv = null_preadv,
    .pwritev = null_pwritev,
    .pwrite_zeroes = null_pwrite_zeroes,
    .block_status = null_block_status,
    .supports_fua = true,
};
