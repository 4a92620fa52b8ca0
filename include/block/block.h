/*
 * The block layer, as its users see it (QMP handlers, exports, jobs).
 *
 * A node (BlockDriverState) is one driver instance: a file, a format over
 * a file, a filter. Nodes form a graph through children ("file",
 * "backing", "image"). Users reach nodes through a BlockBackend
 * (block-backend.h), which states what it needs and tolerates
 * (permissions) and is where drained sections hold new requests.
 *
 * Threads: the graph (opening, closing, naming, children, permissions,
 * resizing) belongs to the main thread. I/O functions may be called from
 * any thread, many at once; they block the calling thread until done and
 * return 0 or a negative errno.
 */
#ifndef BLOCK_BLOCK_H
#define BLOCK_BLOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "qapi/error.h"

/* Node lengths are whole sectors of this size. */
#define BDRV_SECTOR_SIZE 512

typedef struct BlockDriverState BlockDriverState;
typedef struct BdrvChild BdrvChild;
typedef struct BlockdevOptions BlockdevOptions;
typedef struct BlockdevRef BlockdevRef;

typedef enum BdrvRequestFlags {
    BDRV_REQ_FUA = 1 << 0,          /* on stable storage before completion */
    BDRV_REQ_MAY_UNMAP = 1 << 1,    /* write-zeroes may deallocate */
    /* write-zeroes: fail with -ENOTSUP rather than write zero buffers */
    BDRV_REQ_NO_FALLBACK = 1 << 2,
    /*
     * write: store the data compressed (bdrv_supports_compressed_writes);
     * qcow2 takes whole clusters only, the image's last one may be partial
     */
    BDRV_REQ_WRITE_COMPRESSED = 1 << 3,
    /*
     * The data written is what reads return already (copy-on-read): the
     * content does not change, so dirty bitmaps are not marked, as in
     * QEMU, whose copy-on-read writes bypass them.
     */
    BDRV_REQ_WRITE_UNCHANGED = 1 << 4,
} BdrvRequestFlags;

/* Block status: what reads of a range return, and where it comes from. */
enum {
    BDRV_BLOCK_DATA = 0x01,         /* data (not known to be zero) */
    BDRV_BLOCK_ZERO = 0x02,         /* reads return zeroes */
    BDRV_BLOCK_OFFSET_VALID = 0x04, /* *map is the offset in *file */
    BDRV_BLOCK_ALLOCATED = 0x10,    /* this layer decides the content */
    BDRV_BLOCK_EOF = 0x20,          /* the range reaches the end */
};

/* What a user of a node needs, and what it lets others do (as in QEMU). */
typedef enum BlockPermissionFlags {
    BLK_PERM_CONSISTENT_READ = 1 << 0,
    BLK_PERM_WRITE = 1 << 1,
    BLK_PERM_WRITE_UNCHANGED = 1 << 2,
    BLK_PERM_RESIZE = 1 << 3,
    BLK_PERM_ALL = (1 << 4) - 1,
} BlockPermissionFlags;

/* ---- graph: main thread ---------------------------------------------- */

/* blockdev-add: opens the node and the children defined inline. */
BlockDriverState *bdrv_open_options(const BlockdevOptions *options, Error **errp);
/* A node the caller owns (a job's filter): bdrv_unref frees it. */
BlockDriverState *bdrv_open_internal(const BlockdevOptions *options, Error **errp);
/*
 * A node for a user that is not its parent (blockdev-create's target): the
 * node ref names, with a new reference, or one opened from its definition
 * (read-write unless it says otherwise). Either way bdrv_unref() drops it.
 */
BlockDriverState *bdrv_open_blockdev_ref(const BlockdevRef *ref, Error **errp);
/* blockdev-del: closes a node opened by bdrv_open_options, if unused. */
bool bdrv_del_node(const char *node_name, Error **errp);
/* Frees every node (shutdown), flushing them first. */
void bdrv_close_all(void);

BlockDriverState *bdrv_find_node(const char *node_name);
/* QEMU's lookup: "Cannot find device='X' nor node-name='X'" */
BlockDriverState *bdrv_lookup_bs(const char *device, const char *node_name,
                                 Error **errp);
/* Iterates every node, newest first: start with NULL, ends with NULL. */
BlockDriverState *bdrv_next_node(BlockDriverState *bs);

void bdrv_ref(BlockDriverState *bs);
void bdrv_unref(BlockDriverState *bs);

const char *bdrv_get_node_name(const BlockDriverState *bs);
const char *bdrv_get_format_name(const BlockDriverState *bs);
bool bdrv_is_read_only(const BlockDriverState *bs);
BlockDriverState *bdrv_backing_bs(const BlockDriverState *bs);
BlockDriverState *bdrv_file_bs(const BlockDriverState *bs);
/*
 * Length in bytes, or a negative errno: a multiple of BDRV_SECTOR_SIZE,
 * the driver's length rounded up, as QEMU's.
 */
int64_t bdrv_getlength(BlockDriverState *bs);
/* Cluster size of a format node, 0 if it has none. */
int64_t bdrv_get_cluster_size(BlockDriverState *bs);
/* Whether writes with BDRV_REQ_WRITE_COMPRESSED can reach bs's driver. */
bool bdrv_supports_compressed_writes(BlockDriverState *bs);
/*
 * Every user of `from` (BlockBackends and parent nodes, but for `to` and
 * the nodes below it, which would make a loop) uses `to` instead: how a
 * filter is put in front of a node
 * and taken away again. Runs drained; undone if permissions conflict.
 */
bool bdrv_replace_node(BlockDriverState *from, BlockDriverState *to,
                       Error **errp);
/* block_resize: checks that no user forbids it (the error names who). */
/*
 * External snapshots: bs becomes the backing node of overlay (which has
 * none, and whose driver takes one) and every user of bs uses overlay
 * instead. bdrv_remove_overlay() undoes it.
 */
bool bdrv_append_overlay(BlockDriverState *overlay, BlockDriverState *bs,
                         Error **errp);
void bdrv_remove_overlay(BlockDriverState *overlay);
/* Flushes bs and makes it read-only, as QEMU reopens a snapshotted node. */
bool bdrv_set_read_only(BlockDriverState *bs, Error **errp);
/*
 * Makes a read-only node writable, as QEMU reopens it read-write for a
 * job that writes to it (a commit's base, a header to rewrite): a file
 * opened with it first, then the driver's checks of a read-write open.
 * Runs drained. bdrv_set_read_only() undoes it.
 */
bool bdrv_set_writable(BlockDriverState *bs, Error **errp);
/* A reference to bs by its name, for the options of a node opened over it. */
BlockdevRef *bdrv_node_reference(const BlockDriverState *bs);
/*
 * A filter opened from opts (owned by the caller, as bdrv_open_internal)
 * goes in front of bs: every user of bs uses it instead.
 */
BlockDriverState *bdrv_insert_node(BlockDriverState *bs,
                                   const BlockdevOptions *opts, Error **errp);
/* A filter in front of a node goes away: its users use the node again. */
void bdrv_drop_filter(BlockDriverState *filter);
bool bdrv_truncate(BlockDriverState *bs, int64_t size, Error **errp);

/* ---- backing chains: main thread (block/chain.c) --------------------- */

/*
 * A chain runs from a node down its backing nodes; a filter in it (a
 * job's) stands for the node it filters.
 */
/*
 * The next node down: the backing node, or the node a filter filters.
 * Also for the I/O path, from any thread: graph changes run drained.
 */
BlockDriverState *bdrv_filter_or_cow_bs(const BlockDriverState *bs);
/* Whether node is top itself or lies down top's chain. */
bool bdrv_chain_contains(BlockDriverState *top, BlockDriverState *node);
/*
 * The node right above bs in active's chain, NULL if there is none; with
 * bs NULL, the bottom of the chain.
 */
BlockDriverState *bdrv_find_overlay(BlockDriverState *active,
                                    BlockDriverState *bs);
/* The bottom of bs's chain: bs itself if it has no backing node. */
BlockDriverState *bdrv_find_base(BlockDriverState *bs);
/*
 * The node down bs's chain whose image filename names (relative to the
 * image above it, as a header names it), as QEMU's
 * bdrv_find_backing_image() matches them; NULL if none.
 */
BlockDriverState *bdrv_find_backing_image(BlockDriverState *bs,
                                          const char *filename);
/*
 * bs (a format that takes backing files) gets backing as its backing node
 * (NULL: none); its old backing node loses that user, and goes away with
 * the last one. Runs drained. The image header is not touched.
 */
bool bdrv_set_backing_hd(BlockDriverState *bs, BlockDriverState *backing,
                         Error **errp);
/*
 * Writes file (NULL: none) and its format fmt as the backing file into
 * bs's image header, as QEMU's bdrv_change_backing_file(). 0 or -errno
 * (-ENOTSUP: the driver cannot).
 */
int bdrv_change_backing_file(BlockDriverState *bs, const char *file,
                             const char *fmt);
/*
 * The end of a commit: every user of top uses base instead, and each node
 * whose backing node top was names base in its image header
 * (backing_file, else base's file name), made writable meanwhile if it is
 * read-only, as QEMU's bdrv_drop_intermediate(). The nodes between lose
 * those users. Runs drained.
 */
bool bdrv_drop_intermediate(BlockDriverState *top, BlockDriverState *base,
                            const char *backing_file, Error **errp);

/* ---- drained sections: main thread ----------------------------------- */

/*
 * Quiesces I/O: new requests from every BlockBackend wait at the entry,
 * and this returns once no request is in flight anywhere. Sections nest.
 * A QMP transaction runs all its actions inside one, so no write lands
 * between two of them.
 */
void bdrv_drain_all_begin(void);
void bdrv_drain_all_end(void);

/* ---- I/O on a node: any thread --------------------------------------- */

/*
 * The request path every read and write takes: bounds checked, aligned
 * for the driver (read-modify-write when needed), split by the driver's
 * transfer limit. Returns 0 or -errno. A BDRV_REQ_WRITE_COMPRESSED write
 * goes to the driver whole (-ENOTSUP if it cannot compress, -EINVAL if
 * the driver's alignment is not met), unless detect-zeroes makes it a
 * write-zeroes.
 */
int bdrv_pread(BdrvChild *child, int64_t offset, int64_t bytes, void *buf,
               BdrvRequestFlags flags);
int bdrv_pwrite(BdrvChild *child, int64_t offset, int64_t bytes,
                const void *buf, BdrvRequestFlags flags);
int bdrv_pwrite_zeroes(BdrvChild *child, int64_t offset, int64_t bytes,
                       BdrvRequestFlags flags);
int bdrv_pdiscard(BdrvChild *child, int64_t offset, int64_t bytes);
int bdrv_flush(BlockDriverState *bs);
/*
 * Copy offload: [src_offset, src_offset+bytes) of src to dst at
 * dst_offset, done below the drivers (copy_file_range() between two
 * files) without passing through a buffer. A read of src and a write of
 * dst to the request path: dst's checks, tracking and dirty bitmaps are a
 * write's. -ENOTSUP when some node on the way cannot (another driver, a
 * request not aligned for a node, different file systems): the caller
 * copies by read and write instead.
 */
int bdrv_copy_range(BdrvChild *src, int64_t src_offset, BdrvChild *dst,
                    int64_t dst_offset, int64_t bytes);

/*
 * Status of [offset, offset+bytes) in bs alone: returns BDRV_BLOCK_* flags
 * for the first *pnum bytes (at least 1 unless at the end), or -errno.
 * When want_zero is false the driver may answer cheaply (DATA only).
 */
int bdrv_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                      int64_t bytes, int64_t *pnum, int64_t *map,
                      BlockDriverState **file);
/*
 * The same through filters and backing files (bdrv_filter_or_cow_bs())
 * down to (not including) base: ZERO and DATA describe what a read
 * returns (neither: unknown, such as a range of null-co without
 * read-zeroes that no layer above allocates); ALLOCATED says some layer
 * above base decides the content (the zeroes past the end of a shorter
 * backing file are that file's). *depth (if not NULL) is 1 for bs, 2 for
 * the node below it, ... and 0 if no layer above base allocates the
 * range, as QEMU counts.
 */
int bdrv_block_status_above(BlockDriverState *bs, BlockDriverState *base,
                            bool want_zero, int64_t offset, int64_t bytes,
                            int64_t *pnum, int *depth);

#endif
