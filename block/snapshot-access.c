/*
 * The "snapshot-access" driver, QEMU's: the point-in-time view that a
 * copy-before-write node (its file) keeps, for fleecing. Reads, block
 * status and discards go to the filter's snapshot API
 * (include/block/copy-before-write.h); writes are refused with -ENOTSUP.
 *
 * As in QEMU, opening checks nothing of the file: over a node that is not
 * a copy-before-write filter every request fails with -ENOTSUP. The node
 * is not read-only either (a writable export of it is allowed, its writes
 * fail), and it needs nothing of its file: the filter's snapshot API does
 * not go through the filter's users' permissions.
 */
#include <errno.h>

#include "block/block_int.h"
#include "block/copy-before-write.h"

static int snapshot_access_open(BlockDriverState *bs,
                                const BlockdevOptions *opts, Error **errp)
{
    const BlockdevOptionsGenericFormat *o = &opts->u.snapshot_access;

    return bdrv_open_child(bs, o->file, "file", BDRV_CHILD_FILE, errp)
           ? 0 : -EINVAL;
}

static int64_t snapshot_access_getlength(BlockDriverState *bs)
{
    return bdrv_child_getlength(bs->file);
}

static int snapshot_access_preadv(BlockDriverState *bs, int64_t offset,
                                  int64_t bytes, void *buf,
                                  BdrvRequestFlags flags)
{
    return bdrv_cbw_preadv_snapshot(bs->file->bs, offset, bytes, buf);
}

static int snapshot_access_pwritev(BlockDriverState *bs, int64_t offset,
                                   int64_t bytes, const void *buf,
                                   BdrvRequestFlags flags)
{
    return -ENOTSUP;
}

static int snapshot_access_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                                         int64_t bytes, BdrvRequestFlags flags)
{
    return -ENOTSUP;
}

static int snapshot_access_pdiscard(BlockDriverState *bs, int64_t offset,
                                    int64_t bytes)
{
    return bdrv_cbw_pdiscard_snapshot(bs->file->bs, offset, bytes);
}

static int snapshot_access_block_status(BlockDriverState *bs, bool want_zero,
                                        int64_t offset, int64_t bytes,
                                        int64_t *pnum, int64_t *map,
                                        BlockDriverState **file)
{
    return bdrv_cbw_snapshot_block_status(bs->file->bs, want_zero, offset,
                                          bytes, pnum, map, file);
}

const BlockDriver bdrv_snapshot_access = {
    .format_name = "snapshot-access",
    .open = snapshot_access_open,
    .child_perm = bdrv_child_perm_none,
    .getlength = snapshot_access_getlength,
    .preadv = snapshot_access_preadv,
    .pwritev = snapshot_access_pwritev,
    .pwrite_zeroes = snapshot_access_pwrite_zeroes,
    .pdiscard = snapshot_access_pdiscard,
    .block_status = snapshot_access_block_status,
};
