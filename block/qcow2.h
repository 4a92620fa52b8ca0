/*
 * qcow2: what the driver's files share. Private to block/qcow2*.c.
 *
 * The design (layout, locking, write ordering, caches) is in
 * docs/devel/qcow2.md. In one paragraph: one mutex (s->lock) guards every
 * piece of metadata and is never held across guest data I/O; refcounts,
 * L2 and L1 entries change in memory and are written back at a flush in
 * that order, with flushes between, so that nothing on disk points at
 * what is not stable; new L2 tables go into the cache dirty, to be
 * written back before their L1 entries; new L1 tables, refcount tables
 * and blocks, and header fields are written through after what they
 * point at; clusters are allocated exactly, and freed only after the
 * references to them were flushed away. A crash leaves the image as of
 * the last flush plus, at worst, leaked clusters: those of changes in
 * flight, and those allocated since the last write-back when refcount
 * blocks were written without one (the doc lists when).
 *
 * All on-disk numbers are big-endian. They are converted when a structure
 * is loaded (the header, the L1, L2 and refcount tables) and when a field
 * is stored; everything in memory is in host order, except the
 * refcount blocks, which stay in their on-disk form and are read and
 * written through rb_get()/rb_set() (their entries may be 1 to 64 bits).
 */
#ifndef BLOCK_QCOW2_H
#define BLOCK_QCOW2_H

#include <stddef.h>
#include <string.h>

#include "block/block_int.h"

/* ---- on-disk format ---------------------------------------------------- */

#define QCOW2_MAGIC             0x514649fbu     /* "QFI\xfb" */
#define QCOW2_MIN_CLUSTER_BITS  9
#define QCOW2_MAX_CLUSTER_BITS  21
#define QCOW2_V2_HEADER_LENGTH  72
#define QCOW2_V3_HEADER_LENGTH  104
#define QCOW2_MAX_BACKING_NAME  1023
#define QCOW2_MAX_L1_BYTES      (32 * 1024 * 1024)     /* QEMU's limits */
#define QCOW2_MAX_REFTABLE_BYTES (8 * 1024 * 1024)

/*
 * The header, at offset 0 of the file. With natural alignment the struct
 * has exactly the on-disk offsets (checked in qcow2.c), so it is read with
 * one memcpy and converted field by field in qcow2_header_load(); fields
 * are stored one at a time (qcow2_header_store*), so that header
 * extensions and fields blkd does not know stay as they are.
 */
typedef struct Qcow2Header {
    uint32_t magic;                     /*   0 */
    uint32_t version;                   /*   4: 2 or 3 */
    uint64_t backing_file_offset;       /*   8: name, not NUL-terminated */
    uint32_t backing_file_size;         /*  16 */
    uint32_t cluster_bits;              /*  20 */
    uint64_t size;                      /*  24: virtual size in bytes */
    uint32_t crypt_method;              /*  32: 0 none, 1 AES, 2 LUKS */
    uint32_t l1_size;                   /*  36: entries */
    uint64_t l1_table_offset;           /*  40 */
    uint64_t refcount_table_offset;     /*  48 */
    uint32_t refcount_table_clusters;   /*  56 */
    uint32_t nb_snapshots;              /*  60 */
    uint64_t snapshots_offset;          /*  64 */
    /* version 3 and later; version 2 ends here (72 bytes) */
    uint64_t incompatible_features;     /*  72 */
    uint64_t compatible_features;       /*  80 */
    uint64_t autoclear_features;        /*  88 */
    uint32_t refcount_order;            /*  96: refcount bits = 1 << order */
    uint32_t header_length;             /* 100: >= 104, multiple of 8 */
    uint8_t compression_type;           /* 104: if header_length > 104 */
    uint8_t padding[7];                 /* 105 */
} Qcow2Header;

/* incompatible_features */
#define QCOW2_INCOMPAT_DIRTY        (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT      (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE    (1ull << 2)
#define QCOW2_INCOMPAT_COMPRESSION  (1ull << 3)
#define QCOW2_INCOMPAT_EXTL2        (1ull << 4)
/* compatible_features */
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
/*
 * autoclear_features: the bits blkd keeps when it opens an image
 * read-write, those whose data it maintains; others are cleared, as the
 * specification asks. Bit 0: the bitmaps extension is consistent.
 */
#define QCOW2_AUTOCLEAR_BITMAPS     (1ull << 0)
#define QCOW2_AUTOCLEAR_KEEP        QCOW2_AUTOCLEAR_BITMAPS

/* Header extensions: u32 type, u32 length, data padded to 8 bytes. */
#define QCOW2_EXT_END               0x00000000u
#define QCOW2_EXT_BACKING_FORMAT    0xe2792acau
#define QCOW2_EXT_FEATURE_TABLE     0x6803f857u
#define QCOW2_EXT_BITMAPS           0x23852875u
#define QCOW2_EXT_CRYPTO            0x0537be77u
#define QCOW2_EXT_DATA_FILE         0x44415441u

/* Feature name table entry: u8 type, u8 bit, char name[46]. */
#define QCOW2_FEATURE_ENTRY_SIZE    48

/*
 * L1 entry:  bit 63 COPIED (L2 table has refcount 1), bits 9-55 L2 offset.
 * L2 entry:  bit 63 COPIED (cluster has refcount 1), bit 62 COMPRESSED;
 *   standard: bit 0 ZERO (v3: reads as zeroes), bits 9-55 host offset;
 *   compressed (x = 62 - (cluster_bits - 8)): bits 0..x-1 byte offset of
 *   the data, bits x..61 number of 512-byte sectors it takes beyond the
 *   first. The data is a raw deflate stream (no zlib header).
 * Refcount table entry: bits 9-63 offset of a refcount block (0: none).
 */
#define QCOW_OFLAG_COPIED           (UINT64_C(1) << 63)
#define QCOW_OFLAG_COMPRESSED       (UINT64_C(1) << 62)
#define QCOW_OFLAG_ZERO             UINT64_C(1)
#define L1E_OFFSET_MASK             UINT64_C(0x00fffffffffffe00)
#define L2E_OFFSET_MASK             UINT64_C(0x00fffffffffffe00)
#define REFT_OFFSET_MASK            UINT64_C(0xfffffffffffffe00)

typedef enum Qcow2ClusterType {
    QCOW2_CLUSTER_UNALLOCATED,  /* backing file, or zeroes */
    QCOW2_CLUSTER_ZERO_PLAIN,   /* zeroes, no host cluster */
    QCOW2_CLUSTER_ZERO_ALLOC,   /* zeroes, host cluster preallocated */
    QCOW2_CLUSTER_NORMAL,
    QCOW2_CLUSTER_COMPRESSED,
} Qcow2ClusterType;

/* Why clusters are freed: only guest requests pass discards to the file. */
typedef enum Qcow2FreeKind {
    QCOW2_FREE_OTHER,
    QCOW2_FREE_REQUEST,
} Qcow2FreeKind;

/* ---- big-endian load and store ----------------------------------------- */

static inline uint16_t qcow2_ld16(const void *p)
{
    uint16_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT16_FROM_BE(v);
}

static inline uint32_t qcow2_ld32(const void *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_BE(v);
}

static inline uint64_t qcow2_ld64(const void *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return GUINT64_FROM_BE(v);
}

static inline void qcow2_st16(void *p, uint16_t v)
{
    v = GUINT16_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}

static inline void qcow2_st32(void *p, uint32_t v)
{
    v = GUINT32_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}

static inline void qcow2_st64(void *p, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}

/* ---- the metadata cache (qcow2-cache.c) -------------------------------- */

/*
 * Clusters of metadata (L2 tables, refcount blocks) by file offset, least
 * recently used evicted first. Entries are only touched under s->lock;
 * qcow2_cache_get() pins an entry until qcow2_cache_put(), so that loading
 * another one cannot evict it. Write-back: a change marks its bytes dirty,
 * and only qcow2_cache_write_back() writes them; dirty entries are not
 * evicted.
 */
typedef struct Qcow2Cache Qcow2Cache;

/* Writes bytes [lo, hi) of the entry at offset to the file. */
typedef int Qcow2CacheWriter(BlockDriverState *bs, uint64_t offset,
                             const void *data, size_t lo, size_t hi);

Qcow2Cache *qcow2_cache_new(size_t entry_size, unsigned max_entries);
void qcow2_cache_free(Qcow2Cache *c);
/* The pinned data of offset, or NULL if not cached. */
void *qcow2_cache_get(Qcow2Cache *c, uint64_t offset);
/* Pins a new entry for offset (not cached yet); the caller fills it. */
void *qcow2_cache_add(Qcow2Cache *c, uint64_t offset);
void qcow2_cache_put(Qcow2Cache *c, void *data);
/* Bytes [lo, hi) of a pinned entry changed: written at the next write-back. */
void qcow2_cache_mark_dirty(Qcow2Cache *c, void *data, size_t lo, size_t hi);
bool qcow2_cache_is_dirty(Qcow2Cache *c);
/* So many entries are dirty that the cache should be written back. */
bool qcow2_cache_crowded(Qcow2Cache *c);
/*
 * Writes every dirty entry with write(), oldest dirtied first: how many,
 * or the first error (the entries not written stay dirty).
 */
int qcow2_cache_write_back(Qcow2Cache *c, BlockDriverState *bs,
                           Qcow2CacheWriter *write);
/* Forgets offset, dirty or not (a table that was unlinked, or failed to load). */
void qcow2_cache_drop(Qcow2Cache *c, uint64_t offset);

/* ---- driver state ------------------------------------------------------ */

/* A request's I/O on host bytes [start, end) while s->lock is not held. */
typedef struct Qcow2HostIO {
    uint64_t start, end;
    GList link;
} Qcow2HostIO;

/* Guest clusters [first, first + nb) whose L2 entries a writer is changing. */
typedef struct Qcow2InflightAlloc {
    uint64_t first, nb;
    GList link;
} Qcow2InflightAlloc;

/* Host clusters whose refcount drops once the file was flushed. */
typedef struct Qcow2PendingFree {
    uint64_t cluster, nb;
    Qcow2FreeKind kind;
} Qcow2PendingFree;

typedef struct BDRVQcow2State {
    /* Set at open, constant afterwards. */
    int version;
    int cluster_bits;
    uint64_t cluster_size;
    int l2_bits;                /* log2 of entries per L2 table */
    uint64_t l2_size;           /* entries per L2 table */
    int refcount_order;
    uint64_t refcount_max;
    int rb_bits;                /* log2 of entries per refcount block */
    int csize_shift;            /* compressed descriptor fields */
    uint64_t csize_mask;
    uint64_t coffset_mask;
    uint32_t header_length;
    uint32_t nb_snapshots;
    uint64_t compatible_features;
    uint64_t autoclear_features;        /* bitmaps bit: see below */
    bool pass_discard;          /* guest discards reach the file */
    GAsyncQueue *deflaters;     /* idle deflate streams; locks itself */

    /*
     * The bitmaps extension (qcow2-bitmap.c), main thread only: changed
     * with the header under lock, together with the autoclear bitmaps
     * bit. nb_bitmaps 0: the image holds none (or they are stale).
     */
    uint32_t nb_bitmaps;
    uint64_t bitmap_directory_offset;
    uint64_t bitmap_directory_size;

    /*
     * Everything below is guarded by lock. Metadata I/O happens with the
     * lock held; guest data I/O never does.
     */
    GMutex lock;
    GCond alloc_cond;           /* an in-flight allocation finished */
    uint64_t size;              /* virtual size */
    uint64_t incompatible_features;
    bool broken;                /* corruption found: all I/O fails */

    uint64_t *l1_table;         /* host order */
    uint32_t l1_dirty_lo, l1_dirty_hi;  /* entries [lo, hi) not yet written */
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t *refcount_table;   /* host order */
    uint64_t refcount_table_size;       /* entries */
    uint64_t refcount_table_offset;
    Qcow2Cache *l2_cache;       /* L2 tables, host order */
    Qcow2Cache *rb_cache;       /* refcount blocks, on-disk form */

    uint64_t free_cluster_index;        /* no free cluster below this */
    /*
     * Clusters from here on were never written since they were last free
     * (or ever): after a power failure they read as zeroes or as what we
     * wrote, so metadata placed there needs no flush before it is linked.
     */
    uint64_t fresh_from;
    bool grew_file;                     /* the file is longer than at open */
    bool refcounts_unflushed;   /* refcount blocks written since a flush */
    /*
     * Compressed data is packed byte after byte (qcow2-refcount.c): the
     * next piece goes at cbytes_next, in the cluster the last one ended
     * in (0: a new cluster).
     */
    uint64_t cbytes_next;
    GArray *pending_frees;              /* Qcow2PendingFree */
    GQueue inflight_allocs;             /* Qcow2InflightAlloc */
    GQueue host_io;                     /* Qcow2HostIO */
} BDRVQcow2State;

static inline uint64_t qcow2_offset_into_cluster(BDRVQcow2State *s,
                                                 uint64_t offset)
{
    return offset & (s->cluster_size - 1);
}

static inline uint64_t qcow2_size_to_clusters(BDRVQcow2State *s, uint64_t size)
{
    return (size + s->cluster_size - 1) >> s->cluster_bits;
}

Qcow2ClusterType qcow2_cluster_type(BDRVQcow2State *s, uint64_t l2_entry);

/* ---- qcow2.c ----------------------------------------------------------- */

/*
 * Reads the first cluster (header, extensions, backing name; *len bytes,
 * fewer if the file is shorter) into a g_malloc()ed buffer, the header
 * converted into *h; checks what the layout rests on.
 */
uint8_t *qcow2_read_first_cluster(BlockDriverState *bs, Qcow2Header *h,
                                  size_t *len, Error **errp);
/* Stores a big-endian field of len bytes at header offset off. */
int qcow2_header_store(BlockDriverState *bs, size_t off, uint64_t value,
                       size_t len);
/* Stores the autoclear bits as s has them, flushed. */
int qcow2_store_autoclear(BlockDriverState *bs);
/*
 * Reports corruption: prints it, sets the corrupt bit (read-write v3
 * images) and makes every later request fail. Returns -EIO. Under lock.
 */
int qcow2_signal_corruption(BlockDriverState *bs, const char *fmt, ...)
    G_GNUC_PRINTF(2, 3);

/* ---- qcow2-create.c: blockdev-create (docs/devel/qcow2.md) ------------- */

int qcow2_create(BlockdevCreateOptions *opts, Error **errp);

/* ---- qcow2-io.c: the request paths (any thread, lock not held) --------- */

int qcow2_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                 void *buf, BdrvRequestFlags flags);
int qcow2_copy_range_from(BlockDriverState *bs, int64_t offset, BdrvChild *dst,
                          int64_t dst_offset, int64_t bytes);
int qcow2_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                  const void *buf, BdrvRequestFlags flags);
int qcow2_pwritev_compressed(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, const void *buf);
int qcow2_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        BdrvRequestFlags flags);
int qcow2_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes);
int qcow2_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                       int64_t bytes, int64_t *pnum, int64_t *map,
                       BlockDriverState **file);
/* The type of the cluster holding offset (lock held). */
int qcow2_type_at(BlockDriverState *bs, uint64_t offset, Qcow2ClusterType *t);
bool qcow2_host_io_overlaps(BDRVQcow2State *s, uint64_t start, uint64_t end);

/* ---- qcow2-cluster.c: L1/L2 tables (under lock) ------------------------ */

int qcow2_load_l1(BlockDriverState *bs, Error **errp);
/*
 * The L2 table for L1 index l1_index, pinned in the cache (put it back
 * with qcow2_cache_put), or *l2 = NULL when the L1 entry is empty.
 */
int qcow2_get_l2(BlockDriverState *bs, uint64_t l1_index, uint64_t **l2);
/* The same, made writable: allocated if missing, copied if shared. */
int qcow2_get_l2_for_write(BlockDriverState *bs, uint64_t l1_index,
                           uint64_t **l2);
/*
 * Stores entries[0 .. nb) at index first of l2 (pinned, writable): in the
 * cache, written back at the next flush.
 */
void qcow2_set_l2_entries(BlockDriverState *bs, uint64_t *l2, uint64_t first,
                          uint64_t nb, const uint64_t *entries);
/*
 * Writes the metadata kept in memory back, in its order: the refcount
 * blocks, a flush if tables follow, the L2 tables (which may point at
 * clusters whose refcounts were just raised), a flush if L1 entries
 * follow, the L1 entries (which may point at new L2 tables). Nothing is
 * flushed after.
 */
int qcow2_write_back(BlockDriverState *bs);
int qcow2_grow_l1(BlockDriverState *bs, uint32_t new_size);
/* Frees the L2 tables wholly past virtual size new_size (shrink). */
void qcow2_shrink_l1(BlockDriverState *bs, uint64_t new_size);
/*
 * Changes the entries of guest clusters [first, first + nb) for
 * write-zeroes (zero flag; unmap frees) or discard (zero flag on v3 with
 * a backing file or an allocated cluster, else unallocated; full: always
 * unallocated). The caller waited for in-flight allocations.
 */
int qcow2_zero_clusters(BlockDriverState *bs, uint64_t first, uint64_t nb,
                        bool unmap);
int qcow2_discard_clusters(BlockDriverState *bs, uint64_t first, uint64_t nb,
                           bool full, Qcow2FreeKind kind);
/* Frees what an old L2 entry referenced (deferred until a flush). */
void qcow2_free_entry(BlockDriverState *bs, uint64_t l2_entry,
                      Qcow2FreeKind kind);
/* The host byte range of a compressed cluster. */
void qcow2_compressed_range(BDRVQcow2State *s, uint64_t l2_entry,
                            uint64_t *start, uint64_t *len);
/* Reads and inflates a compressed cluster into buf (a cluster). No lock. */
int qcow2_read_compressed(BlockDriverState *bs, uint64_t l2_entry, void *buf);
/*
 * Deflates the cluster src into dst (a cluster) as QEMU does: the size of
 * the stream, -ENOSPC if it is not smaller than a cluster, or -EIO. No lock.
 */
int64_t qcow2_deflate_cluster(BDRVQcow2State *s, const void *src, void *dst);
/* Frees an idle deflate stream (s->deflaters' destroy function). */
void qcow2_deflater_free(gpointer z);
/* The L2 entry of a compressed cluster of len bytes at host byte offset. */
uint64_t qcow2_compressed_entry(BDRVQcow2State *s, uint64_t host, uint64_t len);

/* ---- qcow2-refcount.c: host cluster allocation (under lock) ------------ */

/* Sets entry i of refcount block rb (on-disk form) to v. */
void qcow2_rb_set(int refcount_order, uint8_t *rb, uint64_t i, uint64_t v);

int qcow2_load_refcount_table(BlockDriverState *bs, Error **errp);
/*
 * Allocates nb contiguous host clusters with refcount 1 and returns the
 * offset of the first, or -errno. The refcounts change in the cache:
 * before anything on disk points at the clusters, they must be written
 * and flushed (qcow2_write_refcounts(); qcow2_write_back() does it).
 */
int64_t qcow2_alloc_clusters(BlockDriverState *bs, uint64_t nb);
/*
 * Space for len bytes (less than a cluster) of compressed data, packed
 * after the last: the host byte offset, or -errno. Each host cluster the
 * bytes touch holds one more reference (in the cache, as above).
 */
int64_t qcow2_alloc_bytes(BlockDriverState *bs, uint64_t len);
/*
 * Writes the refcount blocks changed since their last write; flush: then
 * flushes the file if a block was written since the last such flush, so
 * that what is written next may point at any cluster they count.
 */
int qcow2_write_refcounts(BlockDriverState *bs, bool flush);
/* Frees clusters that nothing references yet (a failed allocation). */
int qcow2_free_unused_clusters(BlockDriverState *bs, uint64_t offset,
                               uint64_t nb);
/*
 * Drops one reference to host clusters [offset, offset + nb clusters)
 * once the file has been flushed: the metadata that referenced them is
 * already written, but maybe not yet stable.
 */
void qcow2_free_clusters_later(BlockDriverState *bs, uint64_t offset,
                               uint64_t nb, Qcow2FreeKind kind);
/*
 * The driver's flush (lock NOT held): writes the caches back, flushes the
 * file, then applies the frees queued before and writes the lowered
 * refcounts (not flushed: losing them only leaks). Clusters that requests
 * are still reading or writing wait for the next time.
 */
int qcow2_process_frees(BlockDriverState *bs);
/* Whether enough frees wait that a request should process them. */
bool qcow2_frees_pending_too_long(BDRVQcow2State *s);
/* The end of the last cluster in use, for trimming the file. */
int64_t qcow2_used_end(BlockDriverState *bs);

/* ---- qcow2-bitmap.c: persistent dirty bitmaps (main thread) ------------ */

/* Takes the bitmaps extension's data (len bytes) at open. */
int qcow2_read_bitmaps_ext(BlockDriverState *bs, const uint8_t *data,
                           uint32_t len, Error **errp);
/*
 * Creates the node's dirty bitmaps from the image (open): read-only
 * bitmaps on a read-only node; otherwise each is marked in use in the
 * image. Nothing is written unless every bitmap loaded.
 */
int qcow2_load_bitmaps(BlockDriverState *bs, Error **errp);
/* Writes the node's persistent bitmaps back, no longer in use (close). */
int qcow2_store_bitmaps(BlockDriverState *bs, Error **errp);
/*
 * After a store for a node going read-only: its persistent bitmaps are
 * read-only too, so nothing changes them and the close stores no more.
 */
void qcow2_bitmaps_set_readonly(BlockDriverState *bs);
/* The node goes read-write again: they are in use and writable again. */
int qcow2_bitmaps_set_writable(BlockDriverState *bs, Error **errp);
/* The BlockDriver hooks: QEMU's limits; deleting from the image. */
bool qcow2_can_store_new_bitmap(BlockDriverState *bs, const char *name,
                                uint32_t granularity, Error **errp);
bool qcow2_remove_persistent_bitmap(BlockDriverState *bs, const char *name,
                                    Error **errp);
/* Whether a resize may go on: every stored bitmap loaded and usable. */
int qcow2_truncate_bitmaps_check(BlockDriverState *bs, Error **errp);
/* The bitmaps the image holds, for queries; NULL if none (or unreadable). */
Qcow2BitmapInfoList *qcow2_get_bitmap_info(BlockDriverState *bs);

#endif
