/*
 * The block layer, as a driver author sees it. A driver includes this
 * header (and the generated QAPI types for its options) and nothing else
 * of the block layer.
 *
 * A driver is a static const BlockDriver table listed in
 * block/drivers.c. The core guarantees, before calling an I/O function:
 * - the node is open and not being closed;
 * - offset and bytes are multiples of bs->bl.request_alignment, bytes > 0,
 *   bytes <= bs->bl.max_transfer (if set), and [offset, offset+bytes) lies
 *   within the node's length rounded up to the alignment (a driver whose
 *   length is not aligned reads zeroes past its end);
 * - read-modify-write for unaligned requests was done by the core, and
 *   overlapping requests are serialised around it.
 * Drivers assert what they rely on rather than checking it again.
 *
 * I/O functions run in any thread, many at once on the same node; a driver
 * protects its own metadata (qcow2: a mutex around L2 and refcount
 * updates, never held across data I/O). They return 0 or -errno and
 * allocate only what the request needs.
 */
#ifndef BLOCK_BLOCK_INT_H
#define BLOCK_BLOCK_INT_H

#include <glib.h>

#include "block/block.h"
#include "qapi-types.h"

typedef struct BlockDriver BlockDriver;

typedef struct BlockLimits {
    /* Requests reach the driver aligned to this (a power of two, >= 1). */
    uint32_t request_alignment;
    /* Largest request the driver takes, a multiple of the alignment; 0 = any. */
    uint64_t max_transfer;
    /* Alignment at which write-zeroes/discard are worthwhile; 0 = request_alignment. */
    uint32_t pwrite_zeroes_alignment;
    uint32_t pdiscard_alignment;
    /* Buffer alignment the driver needs (O_DIRECT: 4096); 1 = any. */
    size_t min_mem_alignment;
} BlockLimits;

typedef enum BdrvChildRole {
    BDRV_CHILD_FILE,        /* the file a format driver reads ("file") */
    BDRV_CHILD_BACKING,     /* the backing image ("backing") */
    BDRV_CHILD_FILTERED,    /* what a filter passes requests to ("image") */
    BDRV_CHILD_DATA,        /* another node the driver writes to ("target") */
} BdrvChildRole;

struct BdrvChild {
    BlockDriverState *bs;       /* the child node */
    char *name;                 /* "file", "backing", "image", "root" */
    BdrvChildRole role;
    void *parent;               /* BlockDriverState * or BlockBackend * */
    bool parent_is_node;
    uint64_t perm, shared_perm; /* BLK_PERM_* this edge takes and shares */
};

typedef struct BlockDriverInfo {
    int64_t cluster_size;       /* 0 if the format has none */
    bool is_dirty;              /* the image was not closed cleanly */
} BlockDriverInfo;

struct BlockDriverState {
    /* Set by the core before open; read-only for the driver. */
    const BlockDriver *drv;
    void *opaque;               /* drv->instance_size zeroed bytes */
    char *node_name;
    bool read_only;
    bool cache_direct;          /* cache.direct=on: O_DIRECT */
    bool cache_no_flush;        /* cache.no-flush=on: flush_to_os only */
    bool discard_unmap;         /* discard=unmap: pass discards on */
    bool force_share;
    BlockdevDetectZeroesOptions detect_zeroes;

    /* Set by the driver in open (or refresh_limits); the core honours them. */
    BlockLimits bl;
    /* The file this node shows as "file"/"filename" in queries. */
    char *filename;
    /* Backing file named by the image header, for queries and opening. */
    char *backing_file;
    char *backing_format;

    /* Children the driver opened with bdrv_open_child(); core-owned. */
    BdrvChild *file;
    BdrvChild *backing;

    /* Core-private from here on: drivers do not touch. */
    struct BdrvNodeCore *core;
};

struct BlockDriver {
    const char *format_name;
    size_t instance_size;
    /* A filter passes every request to bs->file (blkdebug, raw without offset). */
    bool is_filter;
    /* Reports DATA|ALLOCATED only through a file child (format drivers). */
    bool is_format;
    /* May have a backing child (qcow2). */
    bool supports_backing;

    /* --- main thread ------------------------------------------------- */

    /*
     * Opens bs from its options (the driver's branch of the union). Opens
     * children with bdrv_open_child(). On failure returns -errno with errp
     * set, having freed what it allocated; the core closes children.
     */
    int (*open)(BlockDriverState *bs, const BlockdevOptions *opts, Error **errp);
    /*
     * Whether the first bytes of a file (len of them, fewer if the file is
     * shorter) are an image of this format. Only for drive-backup's
     * mode=existing without a format, which QEMU probes; NULL: never.
     */
    bool (*probe)(const uint8_t *buf, size_t len);
    /* Flushed and quiescent by then; frees the driver's state. */
    void (*close)(BlockDriverState *bs);
    /*
     * A writable node is about to be read-only (the node under an external
     * snapshot), flushed and without writers: the writes its close would
     * make, made now. NULL: nothing to do.
     */
    void (*set_read_only)(BlockDriverState *bs);
    /*
     * A read-only node is about to be writable (a commit writes to it),
     * drained, its children writable already: the checks and the writes
     * of a read-write open. 0 or -errno with errp set. NULL: nothing to
     * do.
     */
    int (*set_writable)(BlockDriverState *bs, Error **errp);
    /*
     * Writes file (NULL: none) and its format fmt (NULL: none) as the
     * image's backing file, on the main thread; the core then updates
     * bs->backing_file and bs->backing_format. 0 or -errno. NULL: the
     * format has no backing files.
     */
    int (*change_backing_file)(BlockDriverState *bs, const char *file,
                               const char *fmt);
    /* Sets the length to offset (grow: zero-filled). */
    int (*truncate)(BlockDriverState *bs, int64_t offset, Error **errp);
    int (*get_info)(BlockDriverState *bs, BlockDriverInfo *bdi);
    /* "format-specific" of ImageInfo; NULL if none. */
    ImageInfoSpecific *(*get_specific_info)(BlockDriverState *bs);
    /*
     * Bytes the image takes on its storage ("actual-size"), or -errno.
     * NULL: what the file child takes.
     */
    int64_t (*get_allocated_file_size)(BlockDriverState *bs);
    /*
     * The node's users now need perm and share shared (BLK_PERM_*): a
     * protocol driver checks that other processes allow it (file: QEMU's
     * lock bytes) and takes its locks. check_perm must not change
     * anything; set_perm follows a successful check of every node.
     */
    int (*check_perm)(BlockDriverState *bs, uint64_t perm, uint64_t shared,
                      Error **errp);
    void (*set_perm)(BlockDriverState *bs, uint64_t perm, uint64_t shared);
    /*
     * What bs needs of child c and shares on it, given what bs's users need
     * (perm) and share (shared). NULL: the core's defaults by role (see
     * docs/devel/block.md).
     */
    void (*child_perm)(BlockDriverState *bs, BdrvChild *c, uint64_t perm,
                       uint64_t shared, uint64_t *child_perm,
                       uint64_t *child_shared);
    /*
     * Persistent dirty bitmaps (block/dirty-bitmap.h), for a driver that
     * stores them in its image: it loads them in open and stores them in
     * close. can_store: whether a new bitmap (name, not on the node yet)
     * fits the image, with the reason otherwise (the core prefixes which
     * bitmap and node). remove: deletes a stored bitmap from the image at
     * once; a name the image does not hold is no error. NULL: the driver
     * stores no bitmaps.
     */
    bool (*can_store_new_dirty_bitmap)(BlockDriverState *bs, const char *name,
                                       uint32_t granularity, Error **errp);
    bool (*remove_persistent_dirty_bitmap)(BlockDriverState *bs,
                                           const char *name, Error **errp);

    /* --- any thread -------------------------------------------------- */

    int64_t (*getlength)(BlockDriverState *bs);
    int (*preadv)(BlockDriverState *bs, int64_t offset, int64_t bytes,
                  void *buf, BdrvRequestFlags flags);
    /* flags: only BDRV_REQ_FUA; without native FUA support the core flushes. */
    int (*pwritev)(BlockDriverState *bs, int64_t offset, int64_t bytes,
                   const void *buf, BdrvRequestFlags flags);
    /*
     * A BDRV_REQ_WRITE_COMPRESSED write: the core checks only the bounds
     * and the alignment, and neither splits nor bounces it; the driver
     * refuses what it cannot take (-EINVAL). NULL: no compressed writes
     * (the core returns -ENOTSUP; a backup refuses compress).
     */
    int (*pwritev_compressed)(BlockDriverState *bs, int64_t offset,
                              int64_t bytes, const void *buf);
    /* -ENOTSUP: the core writes a zero buffer unless BDRV_REQ_NO_FALLBACK. */
    int (*pwrite_zeroes)(BlockDriverState *bs, int64_t offset, int64_t bytes,
                         BdrvRequestFlags flags);
    int (*pdiscard)(BlockDriverState *bs, int64_t offset, int64_t bytes);
    /*
     * What the driver keeps in memory, to its children (QEMU's
     * flush_to_os); runs even with cache.no-flush, then flush.
     */
    int (*flush_to_os)(BlockDriverState *bs);
    /* To stable storage; the core then flushes the children. */
    int (*flush)(BlockDriverState *bs);
    /*
     * Status of the range in this node alone: BDRV_BLOCK_* and *pnum.
     * With OFFSET_VALID, map and file say where the data lies. NULL: the
     * core reports DATA|ALLOCATED for non-format nodes, and asks the file
     * child for filters.
     */
    int (*block_status)(BlockDriverState *bs, bool want_zero, int64_t offset,
                        int64_t bytes, int64_t *pnum, int64_t *map,
                        BlockDriverState **file);
    /* Whether native FUA writes exist (else the core adds a flush). */
    bool supports_fua;
    /*
     * Copy offload (block-copy's copies): bytes of bs at offset to dst at
     * dst_offset, without passing through a buffer. The source side: a
     * driver whose offsets map onto a child passes the request on with
     * bdrv_copy_range() on that child; a protocol driver hands it to the
     * target side with bdrv_copy_range_to(). The target side likewise
     * passes down with bdrv_copy_range_to() until a protocol driver copies
     * from src, the protocol node the source side ended at. The core's
     * guarantees hold on both sides, each for its own node (offset
     * aligned, within bounds, bytes within max_transfer); the target side
     * is tracked and marks the dirty bitmaps as a write. NULL or -ENOTSUP:
     * not here, the caller copies by read and write.
     */
    int (*copy_range_from)(BlockDriverState *bs, int64_t offset,
                           BdrvChild *dst, int64_t dst_offset, int64_t bytes);
    int (*copy_range_to)(BlockDriverState *bs, int64_t offset,
                         BlockDriverState *src, int64_t src_offset,
                         int64_t bytes);

    /* --- a create job's thread ---------------------------------------- */

    /*
     * blockdev-create: creates the image opts describes (opts->driver is
     * this driver; the core checked nothing else). Runs in the create
     * job's thread and may block, or on the main thread for
     * bdrv_img_create() (block/create.h); graph changes (opening the node
     * to create on) belong to the main thread: do them through
     * job_call_main() (block/job.h), which runs them at once there.
     * Returns 0, or -errno with errp set: the job's error in query-jobs.
     * NULL: the driver cannot create images ("Driver does not support
     * blockdev-create").
     */
    int (*create)(BlockdevCreateOptions *opts, Error **errp);
};

/*
 * Opens (inline definition) or finds (reference) a child of parent and
 * attaches it under child_name. Only in the driver's open.
 */
BdrvChild *bdrv_open_child(BlockDriverState *parent, const BlockdevRef *ref,
                           const char *child_name, BdrvChildRole role,
                           Error **errp);
/*
 * A filter of a driver blockdev-add does not know (a job's commit_top or
 * mirror_top, as QEMU's bdrv_new_open_driver()), named node_name or
 * generated, over child (its "backing" child, which bs->file points to):
 * nobody uses it yet; bdrv_unref() frees it. Main thread.
 */
BlockDriverState *bdrv_new_filter(const BlockDriver *drv,
                                  const char *node_name, bool read_only,
                                  BlockDriverState *child, Error **errp);
/*
 * The backing child of a COW format: ref as given by the user (NULL when
 * absent: the header's backing file and format, bs->backing_file and
 * bs->backing_format, are opened read-only; null: none).
 */
bool bdrv_open_backing(BlockDriverState *bs, const BlockdevRefOrNull *ref,
                       Error **errp);

/*
 * Resizes a child: from the parent's truncate, or from an I/O thread when
 * a format grows its file (the parent holds RESIZE, and serialises its own
 * calls).
 */
int bdrv_child_truncate(BdrvChild *child, int64_t size, Error **errp);
/* The child's length in bytes, or -errno. */
int64_t bdrv_child_getlength(BdrvChild *child);
/* Bytes a node takes on its storage ("actual-size"), or -errno. */
int64_t bdrv_get_allocated_file_size(BlockDriverState *bs);

/*
 * The target side of a copy offload, for drivers' copy_range_from and
 * copy_range_to (bdrv_copy_range() in block.h is the source side): bytes
 * of protocol node src at src_offset to dst at dst_offset, through dst's
 * request path as a write. -ENOTSUP if dst cannot.
 */
int bdrv_copy_range_to(BlockDriverState *src, int64_t src_offset,
                       BdrvChild *dst, int64_t dst_offset, int64_t bytes);
/*
 * Work a request hands to another thread and that may outlive it (a copy
 * ahead of a guest write that timed out goes on): counted in flight as a
 * request is, without waiting at the gate the request already passed, so
 * drained sections wait for it. inc from within the request; dec from
 * the thread when the work is done.
 */
void bdrv_inc_in_flight(void);
void bdrv_dec_in_flight(void);
/*
 * A child_perm for a node that needs nothing of its children and lets
 * others do anything there (commit_top, snapshot-access, as in QEMU).
 */
void bdrv_child_perm_none(BlockDriverState *bs, BdrvChild *c, uint64_t perm,
                          uint64_t shared, uint64_t *child_perm,
                          uint64_t *child_shared);
/*
 * The names of the permissions in perm, comma-separated, in buf (128
 * bytes hold them all): "consistent read", "write", ... as QEMU's errors
 * show them. Returns buf.
 */
const char *bdrv_perm_names(uint64_t perm, char *buf, size_t size);
/*
 * While held, every write to bs (data, zeroes, discard, the target side
 * of a copy offload) waits for the requests in flight on bs that it
 * overlaps, reads included, and holds back those that come after it
 * (QEMU's BDRV_REQ_SERIALISING). Block-copy holds it on a target whose
 * chain holds its source, image fleecing: a read of the target that finds
 * a cluster unallocated goes on to read the source, and the copy of that
 * cluster's old data, followed by the guest's write to the source, must
 * not slip in between. Reads already in flight when it is taken are not
 * waited for: take it before the source can change under the target
 * (block-copy does when it is created, before its filter is in the graph).
 * Main thread.
 */
void bdrv_serialise_writes_ref(BlockDriverState *bs);
void bdrv_serialise_writes_unref(BlockDriverState *bs);
/* Whether the bytes of buf are all zero (detect-zeroes, copy-on-read). */
bool buffer_is_zero(const void *buf, int64_t bytes);

/* Allocates a buffer fit for I/O on bs (bs->bl.min_mem_alignment). */
void *bdrv_blockalign(BlockDriverState *bs, size_t size);

#endif
