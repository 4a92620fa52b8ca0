/*
 * qcow2: creating an image, for blockdev-create and for bdrv_img_create()
 * (drive-backup). The options are checked as QEMU 7.2's qcow2_co_create
 * checks them, in its order and with its texts; blkd refuses what its
 * driver could not open (external data files, extended L2 entries,
 * encryption, zstd).
 *
 * QEMU writes a minimal image, opens it and lets its allocator place the
 * L1 table and what preallocation asks for. blkd computes that layout up
 * front and writes it in one pass through a BlockBackend on the target
 * node (docs/devel/qcow2.md, "Creating images"):
 *
 *   cluster 0       header, extensions, backing file name
 *   1 .. R          refcount table (R > 1 only for huge preallocations)
 *   R + 1           the first refcount block
 *   R + 2 ..        L1 table (none for size 0)
 *   then            the other refcount blocks, when one does not count
 *                   every cluster
 *   then            (preallocation) each L2 table, followed by the data
 *                   clusters it maps
 *
 * Every cluster up to the end has refcount 1, none after it. While the
 * refcount table takes one cluster and, with preallocation, one refcount
 * block counts everything, this is byte for byte what QEMU writes.
 */
#include <errno.h>

#include "block/block-backend.h"        /* the create is the node's user */
#include "block/job.h"
#include "block/qcow2.h"

/* Feature names QEMU writes into images with clusters over 4 KiB. */
static const struct {
    uint8_t type;                       /* incompatible, compatible, autoclear */
    uint8_t bit;
    const char *name;
} feature_names[] = {
    { 0, 0, "dirty bit" },
    { 0, 1, "corrupt bit" },
    { 0, 2, "external data file" },
    { 0, 3, "compression type" },
    { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" },
    { 2, 0, "bitmaps" },
    { 2, 1, "raw external data" },
};

/* Longest backing format name (a BlockdevDriver) that build_header takes. */
#define BACKING_FMT_MAX 64

/* The longest header with its extensions and backing name, in bytes. */
#define HEADER_MAX  (sizeof(Qcow2Header) + 8 + BACKING_FMT_MAX + 8 + \
                     G_N_ELEMENTS(feature_names) * QCOW2_FEATURE_ENTRY_SIZE + \
                     8 + QCOW2_MAX_BACKING_NAME)

/* The new image: what the options ask for, then where everything goes. */
typedef struct Qcow2Layout {
    uint32_t version;
    int cluster_bits;
    int refcount_order;
    uint64_t compatible_features;
    uint64_t size;
    PreallocMode prealloc;
    const char *backing_file;           /* the options' strings, or NULL */
    const char *backing_fmt;

    /* Where everything goes: counts of clusters, but l1_entries. */
    uint64_t reftable_clusters;
    uint64_t refblocks;
    uint64_t l1_entries;
    uint64_t l1_clusters;
    uint64_t l2_tables;                 /* preallocation only */
    uint64_t data_clusters;             /* preallocation only */
    uint64_t end;                       /* the first cluster not in use */
    uint64_t file_length;               /* bytes */
} Qcow2Layout;

static uint64_t div_round_up(uint64_t n, uint64_t d)
{
    return n / d + !!(n % d);
}

static bool is_power_of_2(uint64_t n)
{
    return n && !(n & (n - 1));
}

/* ---- checking the options ---------------------------------------------- */

/*
 * QEMU's checks in QEMU's order, with blkd's refusals where QEMU goes on.
 * Main thread: a data file is opened, as QEMU does, before it is refused.
 */
static int check_options(const BlockdevCreateOptionsQcow2 *o, Qcow2Layout *l,
                         Error **errp)
{
    uint64_t cluster_size = o->has_cluster_size ? o->cluster_size : 65536;
    int64_t refcount_bits = o->has_refcount_bits ? o->refcount_bits : 16;
    bool extended_l2 = o->has_extended_l2 && o->extended_l2;
    bool data_file_raw = o->has_data_file_raw && o->data_file_raw;

    if (o->size % 512) {
        error_setg(errp, "Image size must be a multiple of 512 bytes");
        return -EINVAL;
    }
    l->version = o->has_version && o->version == BLOCKDEV_QCOW2_VERSION_V2 ?
                 2 : 3;
    if (extended_l2 && l->version < 3) {
        error_setg(errp, "Extended L2 entries are only supported with "
                   "compatibility level 1.1 and above (use version=v3 or "
                   "greater)");
        return -EINVAL;
    }
    if (!is_power_of_2(cluster_size) ||
        cluster_size < (1u << QCOW2_MIN_CLUSTER_BITS) ||
        cluster_size > (1u << QCOW2_MAX_CLUSTER_BITS)) {
        error_setg(errp, "Cluster size must be a power of two between %d and "
                   "%dk", 1 << QCOW2_MIN_CLUSTER_BITS,
                   1 << (QCOW2_MAX_CLUSTER_BITS - 10));
        return -EINVAL;
    }
    if (extended_l2 && cluster_size < 16384) {
        error_setg(errp, "Extended L2 entries are only supported with cluster "
                   "sizes of at least 16384 bytes");
        return -EINVAL;
    }
    if (extended_l2) {
        error_setg(errp, "qcow2 images with extended L2 entries are not "
                   "supported");
        return -ENOTSUP;
    }
    l->cluster_bits = __builtin_ctzll(cluster_size);

    l->prealloc = o->has_preallocation ? o->preallocation : PREALLOC_MODE_OFF;
    if (o->backing_file && l->prealloc != PREALLOC_MODE_OFF) {
        error_setg(errp, "Backing file and preallocation can only be used at "
                   "the same time if extended_l2 is on");
        return -EINVAL;
    }
    if (o->has_backing_fmt && !o->backing_file) {
        error_setg(errp, "Backing format cannot be used without backing file");
        return -EINVAL;
    }
    l->backing_file = o->backing_file;
    l->backing_fmt = o->has_backing_fmt ? BlockdevDriver_str(o->backing_fmt)
                                        : NULL;

    if (o->has_lazy_refcounts && o->lazy_refcounts) {
        if (l->version < 3) {
            error_setg(errp, "Lazy refcounts only supported with compatibility "
                       "level 1.1 and above (use version=v3 or greater)");
            return -EINVAL;
        }
        l->compatible_features |= QCOW2_COMPAT_LAZY_REFCOUNTS;
    }
    if (refcount_bits > 64 || !is_power_of_2(refcount_bits)) {
        error_setg(errp, "Refcount width must be a power of two and may not "
                   "exceed 64 bits");
        return -EINVAL;
    }
    if (l->version < 3 && refcount_bits != 16) {
        error_setg(errp, "Different refcount widths than 16 bits require "
                   "compatibility level 1.1 or above (use version=v3 or "
                   "greater)");
        return -EINVAL;
    }
    l->refcount_order = __builtin_ctzll(refcount_bits);

    if (data_file_raw && !o->data_file) {
        error_setg(errp, "data-file-raw requires data-file");
        return -EINVAL;
    }
    if (data_file_raw && o->backing_file) {
        error_setg(errp, "Backing file and data-file-raw cannot be used at "
                   "the same time");
        return -EINVAL;
    }
    if (o->data_file && l->version < 3) {
        error_setg(errp, "External data files are only supported with "
                   "compatibility level 1.1 and above (use version=v3 or "
                   "greater)");
        return -EINVAL;
    }
    if (o->data_file) {
        /* QEMU opens it here: a bad reference fails as in QEMU. */
        BlockDriverState *data_bs = bdrv_open_blockdev_ref(o->data_file, errp);

        if (!data_bs) {
            return -EIO;
        }
        bdrv_unref(data_bs);
        error_setg(errp, "qcow2 images with an external data file are not "
                   "supported");
        return -ENOTSUP;
    }
    if (o->has_compression_type &&
        o->compression_type != QCOW2_COMPRESSION_TYPE_ZLIB) {
        if (l->version < 3) {
            error_setg(errp, "Non-zlib compression type is only supported "
                       "with compatibility level 1.1 and above (use "
                       "version=v3 or greater)");
            return -EINVAL;
        }
        error_setg(errp, "qcow2 compression type %s is not supported, only "
                   "zlib", Qcow2CompressionType_str(o->compression_type));
        return -ENOTSUP;
    }
    if (o->encrypt) {
        error_setg(errp, "Encrypted qcow2 images are not supported");
        return -ENOTSUP;
    }
    l->size = o->size;
    return 0;
}

/* ---- the layout -------------------------------------------------------- */

static uint64_t l1_start(const Qcow2Layout *l)
{
    return l->reftable_clusters + 2;
}

static uint64_t refblock_cluster(const Qcow2Layout *l, uint64_t k)
{
    return k ? l1_start(l) + l->l1_clusters + k - 1 : l->reftable_clusters + 1;
}

static uint64_t l2_cluster(const Qcow2Layout *l, uint64_t t)
{
    uint64_t l2_size = 1ull << (l->cluster_bits - 3);

    return refblock_cluster(l, l->refblocks) + t * (l2_size + 1);
}

/*
 * Writes the first cluster's content into buf (HEADER_MAX zeroed bytes) as
 * QEMU's qcow2_update_header does; returns its length.
 */
static size_t build_header(const Qcow2Layout *l, uint8_t *buf)
{
    size_t off, i;

    qcow2_st32(buf + offsetof(Qcow2Header, magic), QCOW2_MAGIC);
    qcow2_st32(buf + offsetof(Qcow2Header, version), l->version);
    qcow2_st32(buf + offsetof(Qcow2Header, cluster_bits), l->cluster_bits);
    qcow2_st64(buf + offsetof(Qcow2Header, size), l->size);
    qcow2_st32(buf + offsetof(Qcow2Header, l1_size), l->l1_entries);
    qcow2_st64(buf + offsetof(Qcow2Header, l1_table_offset),
               l->l1_entries ? l1_start(l) << l->cluster_bits : 0);
    qcow2_st64(buf + offsetof(Qcow2Header, refcount_table_offset),
               1ull << l->cluster_bits);
    qcow2_st32(buf + offsetof(Qcow2Header, refcount_table_clusters),
               l->reftable_clusters);
    off = QCOW2_V2_HEADER_LENGTH;
    if (l->version >= 3) {
        qcow2_st64(buf + offsetof(Qcow2Header, compatible_features),
                   l->compatible_features);
        qcow2_st32(buf + offsetof(Qcow2Header, refcount_order),
                   l->refcount_order);
        qcow2_st32(buf + offsetof(Qcow2Header, header_length),
                   sizeof(Qcow2Header));
        off = sizeof(Qcow2Header);
    }

    /* Extensions: u32 type, u32 length, the data padded to 8 bytes. */
    if (l->backing_fmt) {
        g_assert(strlen(l->backing_fmt) <= BACKING_FMT_MAX);
        qcow2_st32(buf + off, QCOW2_EXT_BACKING_FORMAT);
        qcow2_st32(buf + off + 4, strlen(l->backing_fmt));
        memcpy(buf + off + 8, l->backing_fmt, strlen(l->backing_fmt));
        off += 8 + ((strlen(l->backing_fmt) + 7) & ~7ul);
    }
    /* QEMU leaves the table out where it would crowd out the backing name. */
    if (l->version >= 3 && l->cluster_bits > 12) {
        qcow2_st32(buf + off, QCOW2_EXT_FEATURE_TABLE);
        qcow2_st32(buf + off + 4,
                   G_N_ELEMENTS(feature_names) * QCOW2_FEATURE_ENTRY_SIZE);
        off += 8;
        for (i = 0; i < G_N_ELEMENTS(feature_names); i++) {
            buf[off] = feature_names[i].type;
            buf[off + 1] = feature_names[i].bit;
            memcpy(buf + off + 2, feature_names[i].name,
                   strlen(feature_names[i].name));
            off += QCOW2_FEATURE_ENTRY_SIZE;
        }
    }
    off += 8;                           /* the end of the extensions */

    if (l->backing_file) {
        size_t len = strlen(l->backing_file);

        g_assert(len <= QCOW2_MAX_BACKING_NAME);
        qcow2_st64(buf + offsetof(Qcow2Header, backing_file_offset), off);
        qcow2_st32(buf + offsetof(Qcow2Header, backing_file_size), len);
        memcpy(buf + off, l->backing_file, len);
        off += len;
    }
    return off;
}

/*
 * Where everything goes, with the errors QEMU reports while it resizes the
 * new image and then sets its backing file.
 */
static int plan_layout(Qcow2Layout *l, Error **errp)
{
    uint64_t cluster_size = 1ull << l->cluster_bits;
    uint64_t l2_size = cluster_size / 8;
    uint64_t per_refblock = (cluster_size * 8) >> l->refcount_order;
    uint64_t need = 1;
    g_autofree uint8_t *header = NULL;

    if ((int64_t)l->size < 0) {
        error_setg(errp, "Could not resize image: Image size cannot be "
                   "negative");
        return -EINVAL;
    }
    l->l1_entries = div_round_up(l->size, cluster_size * l2_size);
    if (l->l1_entries > QCOW2_MAX_L1_BYTES / 8) {
        error_setg_errno(errp, EFBIG, "Could not resize image: Failed to "
                         "grow the L1 table");
        return -EFBIG;
    }
    l->l1_clusters = div_round_up(l->l1_entries * 8, cluster_size);
    if (l->prealloc != PREALLOC_MODE_OFF) {
        l->data_clusters = div_round_up(l->size, cluster_size);
        l->l2_tables = l->l1_entries;
    }

    /* Enough refcount blocks to count everything, themselves included. */
    do {
        l->refblocks = need;
        l->reftable_clusters = div_round_up(l->refblocks * 8, cluster_size);
        l->end = l2_cluster(l, 0) + l->l2_tables + l->data_clusters;
        need = div_round_up(l->end, per_refblock);
    } while (need > l->refblocks);
    if (l->reftable_clusters << l->cluster_bits > QCOW2_MAX_REFTABLE_BYTES) {
        error_setg_errno(errp, EFBIG, "Could not resize image: Failed to "
                         "preallocate the refcount table");
        return -EFBIG;
    }
    /* QEMU's file ends where its last write ended: maybe inside the L1. */
    l->file_length = l->end << l->cluster_bits;
    if (l->refblocks == 1 && !l->l2_tables && l->l1_entries) {
        l->file_length = (l1_start(l) << l->cluster_bits) + l->l1_entries * 8;
    }

    if (l->backing_file && strlen(l->backing_file) > QCOW2_MAX_BACKING_NAME) {
        error_setg_errno(errp, EINVAL, "Could not assign backing file '%s' "
                         "with format '%s'", l->backing_file,
                         l->backing_fmt ? l->backing_fmt : "(null)");
        return -EINVAL;
    }
    header = g_malloc0(HEADER_MAX);
    if (build_header(l, header) > cluster_size) {
        error_setg_errno(errp, ENOSPC, "Could not assign backing file '%s' "
                         "with format '%s'", l->backing_file,
                         l->backing_fmt ? l->backing_fmt : "(null)");
        return -ENOSPC;
    }
    return 0;
}

/* ---- writing ----------------------------------------------------------- */

/* Preallocation: the data clusters (and the L2 tables between them). */
static int write_data_area(BlockBackend *blk, const Qcow2Layout *l)
{
    int64_t start = l2_cluster(l, 0) << l->cluster_bits;
    int64_t len = (l->end << l->cluster_bits) - start;
    g_autofree uint8_t *zeroes = NULL;
    int64_t done, n;
    int ret = 0;

    switch (l->prealloc) {
    case PREALLOC_MODE_FALLOC:
        /* The file driver allocates without writing (or writes zeroes). */
        return blk_pwrite_zeroes(blk, start, len, 0);
    case PREALLOC_MODE_FULL:
        zeroes = g_malloc0(1 << 20);
        for (done = 0; ret == 0 && done < len; done += n) {
            n = MIN(len - done, 1 << 20);
            ret = blk_pwrite(blk, start + done, n, zeroes, 0);
        }
        return ret;
    default:
        /* metadata: the file was grown, so the data reads as zeroes. */
        return 0;
    }
}

/* Refcount 1 for every cluster up to the end. */
static int write_refcounts(BlockBackend *blk, const Qcow2Layout *l)
{
    uint64_t cluster_size = 1ull << l->cluster_bits;
    uint64_t per_refblock = (cluster_size * 8) >> l->refcount_order;
    g_autofree uint64_t *table = g_malloc0(l->reftable_clusters << l->cluster_bits);
    g_autofree uint8_t *block = g_malloc0(cluster_size);
    uint64_t k, i, filled = 0;
    int ret;

    for (k = 0; k < l->refblocks; k++) {
        table[k] = GUINT64_TO_BE(refblock_cluster(l, k) << l->cluster_bits);
    }
    ret = blk_pwrite(blk, cluster_size, l->reftable_clusters * cluster_size,
                     table, 0);
    for (k = 0; ret == 0 && k < l->refblocks; k++) {
        uint64_t n = MIN(per_refblock, l->end - k * per_refblock);

        /* Blocks before the last are full: fill the buffer once. */
        if (n != filled) {
            memset(block, 0, cluster_size);
            for (i = 0; i < n; i++) {
                qcow2_rb_set(l->refcount_order, block, i, 1);
            }
            filled = n;
        }
        ret = blk_pwrite(blk, refblock_cluster(l, k) << l->cluster_bits,
                         cluster_size, block, 0);
    }
    return ret;
}

/* The L1 table and, with preallocation, the L2 tables. */
static int write_tables(BlockBackend *blk, const Qcow2Layout *l)
{
    uint64_t cluster_size = 1ull << l->cluster_bits;
    uint64_t l2_size = cluster_size / 8;
    uint64_t chunk = MIN(l->l1_entries, l2_size * 128);
    g_autofree uint64_t *buf = g_malloc0(MAX(chunk, l2_size) * 8);
    uint64_t t, i, n;
    int ret = 0;

    for (t = 0; ret == 0 && t < l->l1_entries; t += n) {
        n = MIN(chunk, l->l1_entries - t);
        for (i = 0; i < n; i++) {
            buf[i] = l->l2_tables ? GUINT64_TO_BE(QCOW_OFLAG_COPIED |
                         (l2_cluster(l, t + i) << l->cluster_bits)) : 0;
        }
        ret = blk_pwrite(blk, (l1_start(l) << l->cluster_bits) + t * 8, n * 8,
                         buf, 0);
    }
    for (t = 0; ret == 0 && t < l->l2_tables; t++) {
        uint64_t data = l2_cluster(l, t) + 1;

        n = MIN(l2_size, l->data_clusters - t * l2_size);
        memset(buf, 0, cluster_size);
        for (i = 0; i < n; i++) {
            buf[i] = GUINT64_TO_BE(QCOW_OFLAG_COPIED |
                                   ((data + i) << l->cluster_bits));
        }
        ret = blk_pwrite(blk, l2_cluster(l, t) << l->cluster_bits,
                         cluster_size, buf, 0);
    }
    return ret;
}

/*
 * Everything but the header first, and the header last, so that an image
 * that was not finished is no qcow2 image (unless the file was one).
 */
static int write_image(BlockBackend *blk, const Qcow2Layout *l, Error **errp)
{
    g_autofree uint8_t *header = NULL;
    int ret;

    ret = write_data_area(blk, l);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not resize image: Could not "
                         "preallocate data");
        return ret;
    }
    ret = write_refcounts(blk, l);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write refcount table");
        return ret;
    }
    ret = write_tables(blk, l);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not resize image: Failed to grow "
                         "the L1 table");
        return ret;
    }
    header = g_malloc0(MAX(HEADER_MAX, 1ul << l->cluster_bits));
    build_header(l, header);
    ret = blk_pwrite(blk, 0, 1ll << l->cluster_bits, header, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not write qcow2 header");
        return ret;
    }
    ret = blk_flush(blk);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not flush the new image");
    }
    return ret;
}

/* ---- the driver's create ----------------------------------------------- */

typedef struct Qcow2Create {
    const BlockdevCreateOptionsQcow2 *opts;
    Qcow2Layout layout;
    BlockDriverState *bs;               /* the target node, referenced */
    BlockBackend *blk;                  /* this create, as its user */
    int ret;
    Error *err;
} Qcow2Create;

/*
 * Main thread: the target node, the checks, the user that writes and the
 * file grown to its new length (blkd's core refuses writes past the end).
 */
static void create_prepare(void *opaque)
{
    Qcow2Create *c = opaque;
    const Qcow2Layout *l = &c->layout;

    c->bs = bdrv_open_blockdev_ref(c->opts->file, &c->err);
    if (!c->bs) {
        c->ret = -EIO;
        return;
    }
    c->ret = check_options(c->opts, &c->layout, &c->err);
    if (c->ret < 0) {
        return;
    }
    /* QEMU's BlockBackend for this has no name. */
    c->blk = blk_new("an unnamed block device",
                     BLK_PERM_WRITE | BLK_PERM_RESIZE, BLK_PERM_ALL);
    if (!blk_insert_bs(c->blk, c->bs, &c->err)) {
        c->ret = -EPERM;
        return;
    }
    c->ret = plan_layout(&c->layout, &c->err);
    if (c->ret == 0 && bdrv_getlength(c->bs) < (int64_t)l->file_length &&
        !bdrv_truncate(c->bs, l->file_length, &c->err)) {
        c->ret = -EIO;
    }
}

static void create_release(void *opaque)
{
    Qcow2Create *c = opaque;

    blk_unref(c->blk);
    bdrv_unref(c->bs);
}

int qcow2_create(BlockdevCreateOptions *opts, Error **errp)
{
    Qcow2Create c = { .opts = &opts->u.qcow2 };

    g_assert(opts->driver == BLOCKDEV_DRIVER_QCOW2);
    job_call_main(create_prepare, &c);
    if (c.ret == 0) {
        c.ret = write_image(c.blk, &c.layout, &c.err);
    }
    job_call_main(create_release, &c);
    error_propagate(errp, c.err);
    return c.ret;
}
