/*
 * The "raw" format driver: the file's bytes as they are, optionally a
 * window of them (offset, size). Requests, copy offload's both sides
 * included, pass to the file child shifted by the offset; permissions
 * pass through unchanged.
 */
#include <errno.h>
#include <inttypes.h>

#include "block/block_int.h"

typedef struct BDRVRawState {
    int64_t offset;
    int64_t size;       /* -1: to the end of the file */
} BDRVRawState;

static int raw_open(BlockDriverState *bs, const BlockdevOptions *opts,
                    Error **errp)
{
    const BlockdevOptionsRaw *o = &opts->u.raw;
    BDRVRawState *s = bs->opaque;
    int64_t file_len;

    if (!bdrv_open_child(bs, o->file, "file", BDRV_CHILD_FILTERED, errp)) {
        return -EINVAL;
    }
    s->offset = o->has_offset ? o->offset : 0;
    s->size = o->has_size ? o->size : -1;
    if (s->offset < 0) {
        error_setg(errp, "offset cannot be negative");
        return -EINVAL;
    }
    if (o->has_size && s->size < 0) {
        error_setg(errp, "size cannot be negative");
        return -EINVAL;
    }
    file_len = bdrv_child_getlength(bs->file);
    if (s->offset > file_len || (s->size >= 0 && s->size > file_len - s->offset)) {
        error_setg(errp, "The sum of offset (%" PRId64 ") and size (%" PRId64
                   ") has to be smaller or equal to the  actual size of the "
                   "containing file (%" PRId64 ")", s->offset,
                   s->size >= 0 ? s->size : 0, file_len);
        return -EINVAL;
    }
    /* The node's length is whole sectors: it must not reach past the window. */
    if (o->has_size && s->size % BDRV_SECTOR_SIZE) {
        error_setg(errp, "Specified size is not multiple of %d",
                   BDRV_SECTOR_SIZE);
        return -EINVAL;
    }
    return 0;
}

static int64_t raw_getlength(BlockDriverState *bs)
{
    BDRVRawState *s = bs->opaque;
    int64_t len = bdrv_child_getlength(bs->file);

    if (len < 0) {
        return len;
    }
    return s->size >= 0 ? s->size : len - s->offset;
}

static int raw_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      void *buf, BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_pread(bs->file, s->offset + offset, bytes, buf, flags);
}

static int raw_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       const void *buf, BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_pwrite(bs->file, s->offset + offset, bytes, buf, flags);
}

static int raw_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, BdrvRequestFlags flags)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_pwrite_zeroes(bs->file, s->offset + offset, bytes, flags);
}

static int raw_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_pdiscard(bs->file, s->offset + offset, bytes);
}

static int raw_copy_range_from(BlockDriverState *bs, int64_t offset,
                               BdrvChild *dst, int64_t dst_offset, int64_t bytes)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_copy_range(bs->file, s->offset + offset, dst, dst_offset, bytes);
}

static int raw_copy_range_to(BlockDriverState *bs, int64_t offset,
                             BlockDriverState *src, int64_t src_offset,
                             int64_t bytes)
{
    BDRVRawState *s = bs->opaque;

    return bdrv_copy_range_to(src, src_offset, bs->file, s->offset + offset, bytes);
}

static int raw_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                            int64_t bytes, int64_t *pnum, int64_t *map,
                            BlockDriverState **file)
{
    BDRVRawState *s = bs->opaque;
    int ret = bdrv_block_status(bs->file->bs, want_zero, s->offset + offset,
                                bytes, pnum, map, file);

    if (ret >= 0 && *pnum == 0) {
        /* Within our length but past the file's: reads return zeroes. */
        *pnum = bytes;
        return BDRV_BLOCK_ZERO;
    }
    return ret < 0 ? ret : ret & ~(BDRV_BLOCK_ALLOCATED | BDRV_BLOCK_EOF);
}

static int raw_truncate(BlockDriverState *bs, int64_t offset, Error **errp)
{
    BDRVRawState *s = bs->opaque;

    if (s->size >= 0) {
        error_setg(errp, "Cannot resize fixed-size raw disks");
        return -ENOTSUP;
    }
    return bdrv_child_truncate(bs->file, s->offset + offset, errp);
}

static int raw_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    bdi->cluster_size = 0;
    return 0;
}

const BlockDriver bdrv_raw = {
    .format_name = "raw",
    .instance_size = sizeof(BDRVRawState),
    .is_format = true,
    .open = raw_open,
    .truncate = raw_truncate,
    .get_info = raw_get_info,
    .getlength = raw_getlength,
    .preadv = raw_preadv,
    .pwritev = raw_pwritev,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .pdiscard = raw_pdiscard,
    .block_status = raw_block_status,
    .copy_range_from = raw_copy_range_from,
    .copy_range_to = raw_copy_range_to,
    /* FUA travels to the file with the write. */
    .supports_fua = true,
};
