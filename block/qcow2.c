/*
 * qcow2: the header, opening and closing, queries, resizing, and the
 * driver table. The request paths are in qcow2-io.c, the mapping in
 * qcow2-cluster.c, allocation in qcow2-refcount.c; docs/devel/qcow2.md
 * has the design.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "block/qcow2.h"

/* The struct is the on-disk layout (natural alignment, no padding). */
G_STATIC_ASSERT(offsetof(Qcow2Header, backing_file_offset) == 8);
G_STATIC_ASSERT(offsetof(Qcow2Header, size) == 24);
G_STATIC_ASSERT(offsetof(Qcow2Header, l1_size) == 36);
G_STATIC_ASSERT(offsetof(Qcow2Header, l1_table_offset) == 40);
G_STATIC_ASSERT(offsetof(Qcow2Header, refcount_table_offset) == 48);
G_STATIC_ASSERT(offsetof(Qcow2Header, snapshots_offset) == 64);
G_STATIC_ASSERT(offsetof(Qcow2Header, incompatible_features) == 72);
G_STATIC_ASSERT(offsetof(Qcow2Header, autoclear_features) == 88);
G_STATIC_ASSERT(offsetof(Qcow2Header, header_length) == 100);
G_STATIC_ASSERT(offsetof(Qcow2Header, compression_type) == 104);
G_STATIC_ASSERT(sizeof(Qcow2Header) == 112);

#define KNOWN_INCOMPAT (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | \
                        QCOW2_INCOMPAT_DATA_FILE | QCOW2_INCOMPAT_COMPRESSION | \
                        QCOW2_INCOMPAT_EXTL2)

/* ---- header ------------------------------------------------------------ */

/* Converts the header at the start of buf (len bytes) to host order. */
static void header_load(Qcow2Header *h, const uint8_t *buf, size_t len)
{
    size_t n = QCOW2_V2_HEADER_LENGTH;

    memset(h, 0, sizeof(*h));
    if (len >= QCOW2_V3_HEADER_LENGTH && qcow2_ld32(buf + 4) >= 3) {
        n = MIN(MIN(len, sizeof(*h)), MAX(qcow2_ld32(buf + 100),
                                         QCOW2_V3_HEADER_LENGTH));
    }
    memcpy(h, buf, MIN(n, len));
    h->magic = GUINT32_FROM_BE(h->magic);
    h->version = GUINT32_FROM_BE(h->version);
    h->backing_file_offset = GUINT64_FROM_BE(h->backing_file_offset);
    h->backing_file_size = GUINT32_FROM_BE(h->backing_file_size);
    h->cluster_bits = GUINT32_FROM_BE(h->cluster_bits);
    h->size = GUINT64_FROM_BE(h->size);
    h->crypt_method = GUINT32_FROM_BE(h->crypt_method);
    h->l1_size = GUINT32_FROM_BE(h->l1_size);
    h->l1_table_offset = GUINT64_FROM_BE(h->l1_table_offset);
    h->refcount_table_offset = GUINT64_FROM_BE(h->refcount_table_offset);
    h->refcount_table_clusters = GUINT32_FROM_BE(h->refcount_table_clusters);
    h->nb_snapshots = GUINT32_FROM_BE(h->nb_snapshots);
    h->snapshots_offset = GUINT64_FROM_BE(h->snapshots_offset);
    if (h->version < 3) {
        h->refcount_order = 4;
        h->header_length = QCOW2_V2_HEADER_LENGTH;
        return;
    }
    h->incompatible_features = GUINT64_FROM_BE(h->incompatible_features);
    h->compatible_features = GUINT64_FROM_BE(h->compatible_features);
    h->autoclear_features = GUINT64_FROM_BE(h->autoclear_features);
    h->refcount_order = GUINT32_FROM_BE(h->refcount_order);
    h->header_length = GUINT32_FROM_BE(h->header_length);
    if (h->header_length <= offsetof(Qcow2Header, compression_type)) {
        h->compression_type = 0;
    }
}

int qcow2_header_store(BlockDriverState *bs, size_t off, uint64_t value,
                       size_t len)
{
    uint8_t buf[8];

    switch (len) {
    case 4:
        qcow2_st32(buf, value);
        break;
    case 8:
        qcow2_st64(buf, value);
        break;
    default:
        g_assert_not_reached();
    }
    return bdrv_pwrite(bs->file, off, len, buf, 0);
}

int qcow2_store_autoclear(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_header_store(bs, offsetof(Qcow2Header, autoclear_features),
                                 s->autoclear_features, 8);

    return ret < 0 ? ret : bdrv_flush(bs->file->bs);
}

int qcow2_signal_corruption(BlockDriverState *bs, const char *fmt, ...)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree char *msg = NULL;
    va_list ap;

    if (s->broken) {
        return -EIO;
    }
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    s->broken = true;
    if (bs->read_only || s->version < 3) {
        fprintf(stderr, "qcow2: Image is corrupt: %s; further non-fatal "
                "corruption events will be suppressed\n", msg);
        return -EIO;
    }
    fprintf(stderr, "qcow2: Marking image as corrupt: %s; further corruption "
            "events will be suppressed\n", msg);
    s->incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
    if (qcow2_header_store(bs, offsetof(Qcow2Header, incompatible_features),
                           s->incompatible_features, 8) == 0) {
        bdrv_flush(bs->file->bs);
    }
    return -EIO;
}

/* ---- header extensions ------------------------------------------------- */

/* The name of an incompatible feature from the image's table, or a number. */
static char *feature_name(const uint8_t *table, size_t len, int bit)
{
    size_t i;

    for (i = 0; table && i + QCOW2_FEATURE_ENTRY_SIZE <= len;
         i += QCOW2_FEATURE_ENTRY_SIZE) {
        if (table[i] == 0 && table[i + 1] == bit) {
            return g_strndup((const char *)table + i + 2,
                             QCOW2_FEATURE_ENTRY_SIZE - 2);
        }
    }
    return g_strdup_printf("Unknown incompatible feature: %d", bit);
}

/*
 * Reads the extensions after the header: the backing format, the feature
 * names (for errors), the bitmaps. Others are left alone, on disk and here.
 */
static int read_extensions(BlockDriverState *bs, const uint8_t *buf,
                           size_t len, const uint8_t **features,
                           size_t *features_len, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    size_t off = s->header_length;

    while (off + 8 <= len) {
        uint32_t type = qcow2_ld32(buf + off);
        uint32_t ext_len = qcow2_ld32(buf + off + 4);

        off += 8;
        if (type == QCOW2_EXT_END) {
            break;
        }
        if (ext_len > len - off) {
            error_setg(errp, "Header extension too large");
            return -EINVAL;
        }
        if (type == QCOW2_EXT_BACKING_FORMAT) {
            if (ext_len >= 16) {
                error_setg(errp, "ERROR: ext_backing_format: len=%" PRIu32
                           " too large (>=16)", ext_len);
                return -EINVAL;
            }
            bs->backing_format = g_strndup((const char *)buf + off, ext_len);
        } else if (type == QCOW2_EXT_FEATURE_TABLE) {
            *features = buf + off;
            *features_len = ext_len;
        } else if (type == QCOW2_EXT_BITMAPS) {
            int ret = qcow2_read_bitmaps_ext(bs, buf + off, ext_len, errp);

            if (ret < 0) {
                return ret;
            }
        }
        off += (ext_len + 7) & ~7u;
    }
    return 0;
}

/* ---- checks at open ---------------------------------------------------- */

/* What a read-write open (or going read-write) refuses. */
static int check_writable(uint64_t incompatible_features, Error **errp)
{
    if (incompatible_features & QCOW2_INCOMPAT_CORRUPT) {
        error_setg(errp, "qcow2: Image is corrupt; cannot be opened read/write");
        return -EACCES;
    }
    if (incompatible_features & QCOW2_INCOMPAT_DIRTY) {
        error_setg(errp, "qcow2: Image is dirty (its refcounts may be stale); "
                   "repair it with 'qemu-img check -r all' before opening it "
                   "read/write");
        return -EACCES;
    }
    return 0;
}

static int check_features(BlockDriverState *bs, const Qcow2Header *h,
                          const uint8_t *features, size_t features_len,
                          Error **errp)
{
    uint64_t unknown = h->incompatible_features & ~KNOWN_INCOMPAT;

    if (unknown) {
        GString *names = g_string_new(NULL);
        int bit;

        for (bit = 0; bit < 64; bit++) {
            if (unknown & (1ull << bit)) {
                g_autofree char *name = feature_name(features, features_len, bit);

                g_string_append_printf(names, "%s%s", names->len ? ", " : "",
                                       name);
            }
        }
        error_setg(errp, "Unsupported qcow2 feature(s): %s", names->str);
        g_string_free(names, true);
        return -ENOTSUP;
    }
    if (h->crypt_method) {
        error_setg(errp, "Encrypted qcow2 images are not supported (encryption "
                   "method %" PRIu32 ")", h->crypt_method);
        return -ENOTSUP;
    }
    if (h->incompatible_features & QCOW2_INCOMPAT_DATA_FILE) {
        error_setg(errp, "qcow2 images with an external data file are not "
                   "supported");
        return -ENOTSUP;
    }
    if (h->incompatible_features & QCOW2_INCOMPAT_EXTL2) {
        error_setg(errp, "qcow2 images with extended L2 entries are not "
                   "supported");
        return -ENOTSUP;
    }
    if ((h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION) ||
        h->compression_type) {
        error_setg(errp, "qcow2 compression type %s is not supported, only "
                   "zlib", h->compression_type == 1 ? "zstd" : "(unknown)");
        return -ENOTSUP;
    }
    if (h->refcount_order > 6) {
        error_setg(errp, "Reference count entry width too large; may not "
                   "exceed 64 bits");
        return -EINVAL;
    }
    return bs->read_only ? 0 : check_writable(h->incompatible_features, errp);
}

static bool table_ok(BDRVQcow2State *s, uint64_t offset, uint64_t bytes)
{
    return !qcow2_offset_into_cluster(s, offset) &&
           offset <= INT64_MAX - bytes;
}

/* Sizes and offsets of the tables, then the derived constants. */
static int check_layout(BlockDriverState *bs, const Qcow2Header *h,
                        Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t per_l1;

    s->refcount_order = h->refcount_order;
    s->refcount_max = s->refcount_order == 6 ? UINT64_MAX :
                      (1ull << (1u << s->refcount_order)) - 1;
    s->rb_bits = s->cluster_bits + 3 - s->refcount_order;
    s->csize_shift = 62 - (s->cluster_bits - 8);
    s->csize_mask = (1ull << (s->cluster_bits - 8)) - 1;
    s->coffset_mask = (1ull << s->csize_shift) - 1;

    if (h->l1_size > QCOW2_MAX_L1_BYTES / 8) {
        error_setg(errp, "Active L1 table too large");
        return -EFBIG;
    }
    if (!table_ok(s, h->l1_table_offset, h->l1_size * 8ull)) {
        error_setg(errp, "Invalid L1 table offset");
        return -EINVAL;
    }
    /* Entries needed for the virtual size, without overflowing. */
    per_l1 = s->cluster_size << s->l2_bits;
    if (h->size / per_l1 + !!(h->size % per_l1) > h->l1_size) {
        error_setg(errp, "L1 table is too small");
        return -EINVAL;
    }
    if (h->refcount_table_clusters == 0 ||
        (uint64_t)h->refcount_table_clusters << s->cluster_bits >
        QCOW2_MAX_REFTABLE_BYTES) {
        error_setg(errp, "Reference count table too large");
        return -EINVAL;
    }
    if (!table_ok(s, h->refcount_table_offset,
                  (uint64_t)h->refcount_table_clusters << s->cluster_bits)) {
        error_setg(errp, "Invalid reference count table offset");
        return -EINVAL;
    }
    s->l1_size = h->l1_size;
    s->l1_table_offset = h->l1_table_offset;
    s->refcount_table_offset = h->refcount_table_offset;
    s->refcount_table_size = ((uint64_t)h->refcount_table_clusters <<
                              s->cluster_bits) / 8;
    return 0;
}

/* ---- open and close ---------------------------------------------------- */

static void qcow2_free_state(BDRVQcow2State *s)
{
    qcow2_cache_free(s->l2_cache);
    qcow2_cache_free(s->rb_cache);
    g_free(s->l1_table);
    g_free(s->refcount_table);
    if (s->pending_frees) {
        g_array_free(s->pending_frees, true);
    }
    if (s->deflaters) {
        g_async_queue_unref(s->deflaters);
    }
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->alloc_cond);
}

uint8_t *qcow2_read_first_cluster(BlockDriverState *bs, Qcow2Header *h,
                                  size_t *len, Error **errp)
{
    int64_t file_len = bdrv_child_getlength(bs->file);
    uint8_t *buf;
    int ret;

    /* A short file reads as zeroes past its end (and is no qcow2 image). */
    *len = MIN(file_len, 4096);
    buf = g_malloc0(4096);
    ret = *len ? bdrv_pread(bs->file, 0, *len, buf, 0) : 0;
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read qcow2 header");
        g_free(buf);
        return NULL;
    }
    header_load(h, buf, 4096);
    if (h->magic != QCOW2_MAGIC) {
        error_setg(errp, "Image is not in qcow2 format");
    } else if (h->version < 2 || h->version > 3) {
        error_setg(errp, "Unsupported qcow2 version %" PRIu32, h->version);
    } else if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS ||
               h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        error_setg(errp, "Unsupported cluster size: 2^%" PRIu32, h->cluster_bits);
    } else if (h->header_length < QCOW2_V3_HEADER_LENGTH && h->version >= 3) {
        error_setg(errp, "qcow2 header too short");
    } else if (h->header_length > (1u << h->cluster_bits)) {
        error_setg(errp, "qcow2 header exceeds cluster size");
    } else {
        /* The whole first cluster, or what the file has of it. */
        *len = MIN(file_len, 1 << h->cluster_bits);
        buf = g_realloc(buf, MAX(*len, 4096));
        ret = bdrv_pread(bs->file, 0, *len, buf, 0);
        if (ret == 0) {
            return buf;
        }
        error_setg_errno(errp, -ret, "Could not read qcow2 header");
    }
    g_free(buf);
    return NULL;
}

/* Before the first write: clear the autoclear bits whose data we would not keep. */
static int clear_autoclear(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    if (!(s->autoclear_features & ~QCOW2_AUTOCLEAR_KEEP)) {
        return 0;
    }
    s->autoclear_features &= QCOW2_AUTOCLEAR_KEEP;
    ret = qcow2_store_autoclear(bs);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not update qcow2 header");
    }
    return ret;
}

static bool qcow2_probe(const uint8_t *buf, size_t len)
{
    uint32_t magic;

    if (len < sizeof(magic)) {
        return false;
    }
    memcpy(&magic, buf, sizeof(magic));
    return GUINT32_FROM_BE(magic) == QCOW2_MAGIC;
}

static int qcow2_open(BlockDriverState *bs, const BlockdevOptions *opts,
                      Error **errp)
{
    const BlockdevOptionsQcow2 *o = &opts->u.qcow2;
    BDRVQcow2State *s = bs->opaque;
    const uint8_t *features = NULL;
    size_t features_len = 0, len;
    g_autofree uint8_t *buf = NULL;
    Qcow2Header h;
    int ret = -EINVAL;

    g_mutex_init(&s->lock);
    g_cond_init(&s->alloc_cond);
    g_queue_init(&s->inflight_allocs);
    g_queue_init(&s->host_io);
    s->pending_frees = g_array_new(false, false, sizeof(Qcow2PendingFree));
    s->deflaters = g_async_queue_new_full(qcow2_deflater_free);

    if (!bdrv_open_child(bs, o->file, "file", BDRV_CHILD_FILE, errp)) {
        goto fail;
    }
    buf = qcow2_read_first_cluster(bs, &h, &len, errp);
    if (!buf) {
        goto fail;
    }
    s->version = h.version;
    s->cluster_bits = h.cluster_bits;
    s->cluster_size = 1ull << h.cluster_bits;
    s->l2_bits = h.cluster_bits - 3;
    s->l2_size = 1ull << s->l2_bits;
    s->header_length = h.header_length;
    s->size = h.size;
    s->nb_snapshots = h.nb_snapshots;
    s->incompatible_features = h.incompatible_features;
    s->compatible_features = h.compatible_features;
    s->autoclear_features = h.autoclear_features;

    ret = read_extensions(bs, buf, len, &features, &features_len, errp);
    if (ret == 0) {
        ret = check_features(bs, &h, features, features_len, errp);
    }
    if (ret == 0) {
        ret = check_layout(bs, &h, errp);
    }
    if (ret < 0) {
        goto fail;
    }
    if (h.backing_file_offset) {
        if (h.backing_file_size > QCOW2_MAX_BACKING_NAME ||
            h.backing_file_offset > len ||
            h.backing_file_size > len - h.backing_file_offset) {
            error_setg(errp, "Backing file name too long");
            ret = -EINVAL;
            goto fail;
        }
        bs->backing_file = g_strndup((const char *)buf + h.backing_file_offset,
                                     h.backing_file_size);
    }

    ret = qcow2_load_l1(bs, errp);
    if (ret == 0) {
        ret = qcow2_load_refcount_table(bs, errp);
    }
    if (ret < 0) {
        goto fail;
    }
    s->l2_cache = qcow2_cache_new(s->cluster_size,
                                  MAX(16, (32u << 20) >> s->cluster_bits));
    s->rb_cache = qcow2_cache_new(s->cluster_size,
                                  MAX(8, (4u << 20) >> s->cluster_bits));
    s->fresh_from = qcow2_size_to_clusters(s, bdrv_child_getlength(bs->file));
    s->pass_discard = o->has_pass_discard_request ? o->pass_discard_request :
                      bs->discard_unmap;
    bs->bl.request_alignment = 1;
    bs->bl.pwrite_zeroes_alignment = s->cluster_size;
    bs->bl.pdiscard_alignment = s->cluster_size;

    /* The backing path is relative to the image's file. */
    if (!bs->filename) {
        bs->filename = g_strdup(bs->file->bs->filename);
    }
    if (!bdrv_open_backing(bs, o->backing, errp)) {
        ret = -EINVAL;
        goto fail;
    }

    /* First: an image whose bitmaps do not load is left as it was. */
    ret = qcow2_load_bitmaps(bs, errp);
    if (ret < 0) {
        goto fail;
    }

    if (!bs->read_only) {
        ret = clear_autoclear(bs, errp);
        if (ret < 0) {
            goto fail;
        }
    }
    return 0;

fail:
    qcow2_free_state(s);
    return ret;
}

/* Cuts the clusters nobody uses (the growth step ahead) off the file. */
static void trim_file(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t end;

    g_mutex_lock(&s->lock);
    end = qcow2_used_end(bs);
    g_mutex_unlock(&s->lock);
    if (end > 0 && end < bdrv_child_getlength(bs->file)) {
        bdrv_child_truncate(bs->file, end, NULL);
    }
}

/*
 * The last writes of an image, at close or when it goes read-only: the
 * persistent bitmaps are stored, the caches written back, the frees
 * applied and the file trimmed.
 */
static void settle(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    Error *err = NULL;

    if (!s->broken && qcow2_store_bitmaps(bs, &err) < 0) {
        /* QEMU's report; the bitmaps stay in use in the image. */
        fprintf(stderr, "qcow2: Lost persistent bitmaps during inactivation "
                "of node '%s': %s\n", bdrv_get_node_name(bs),
                error_get_pretty(err));
        error_free(err);
    }
    if (bs->read_only || s->broken) {
        return;
    }
    qcow2_process_frees(bs);
    if (s->grew_file) {
        trim_file(bs);
    }
    bdrv_flush(bs->file->bs);
}

/*
 * The node under an external snapshot goes read-only: its bitmaps are
 * stored now, as QEMU stores them when it reopens a node read-only.
 */
static void qcow2_set_read_only(BlockDriverState *bs)
{
    settle(bs);
    qcow2_bitmaps_set_readonly(bs);
}

static void qcow2_close(BlockDriverState *bs)
{
    settle(bs);
    qcow2_free_state(bs->opaque);
}

/* A read-only image becomes writable: what a read-write open checks and writes. */
static int qcow2_set_writable(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = check_writable(s->incompatible_features, errp);

    if (ret == 0) {
        ret = clear_autoclear(bs, errp);
    }
    /* Its bitmaps record again, in use in the image (QEMU's reopen). */
    return ret < 0 ? ret : qcow2_bitmaps_set_writable(bs, errp);
}

/* Appends a header extension to buf at *off (padded to 8), if it fits in end. */
static bool put_extension(uint8_t *buf, size_t *off, size_t end, uint32_t type,
                          const void *data, uint32_t len)
{
    size_t padded = (len + 7) & ~(size_t)7;

    if (*off + 8 + padded > end) {
        return false;
    }
    qcow2_st32(buf + *off, type);
    qcow2_st32(buf + *off + 4, len);
    memcpy(buf + *off + 8, data, len);
    *off += 8 + padded;
    return true;
}

/*
 * The first cluster is rewritten in place, as QEMU's qcow2_update_header
 * does: the header as it is but for the backing file fields, the backing
 * format extension first, every other extension in its order byte for
 * byte, the end marker, then the name. Under s->lock, since I/O threads
 * store header fields too.
 */
static int qcow2_change_backing_file(BlockDriverState *bs, const char *file,
                                     const char *fmt)
{
    BDRVQcow2State *s = bs->opaque;
    size_t name_len = file ? strlen(file) : 0;
    size_t len = MIN((uint64_t)bdrv_child_getlength(bs->file), s->cluster_size);
    g_autofree uint8_t *old = g_malloc0(s->cluster_size);
    g_autofree uint8_t *buf = g_malloc0(s->cluster_size);
    size_t in = s->header_length, out = s->header_length;
    bool fits = true;
    int ret;

    /* What the file has of the first cluster is what is rewritten. */
    if (name_len > QCOW2_MAX_BACKING_NAME) {
        return -EINVAL;
    }
    g_mutex_lock(&s->lock);
    ret = bdrv_pread(bs->file, 0, len, old, 0);
    if (ret < 0) {
        goto out;
    }
    memcpy(buf, old, s->header_length);
    if (fmt) {
        fits = put_extension(buf, &out, len, QCOW2_EXT_BACKING_FORMAT, fmt,
                             strlen(fmt));
    }
    while (fits && in + 8 <= len) {
        uint32_t type = qcow2_ld32(old + in);
        uint32_t ext_len = qcow2_ld32(old + in + 4);

        if (type == QCOW2_EXT_END) {
            break;
        }
        if (ext_len > len - in - 8) {
            ret = -EINVAL;      /* as open would refuse it */
            goto out;
        }
        if (type != QCOW2_EXT_BACKING_FORMAT) {
            fits = put_extension(buf, &out, len, type, old + in + 8,
                                 ext_len);
        }
        in += 8 + ((ext_len + 7) & ~7u);
    }
    /* The end marker (zeroes), then the name. */
    if (!fits || out + 8 + name_len > len) {
        ret = -ENOSPC;
        goto out;
    }
    out += 8;
    if (file) {
        memcpy(buf + out, file, name_len);
    }
    qcow2_st64(buf + offsetof(Qcow2Header, backing_file_offset), file ? out : 0);
    qcow2_st32(buf + offsetof(Qcow2Header, backing_file_size), name_len);
    ret = bdrv_pwrite(bs->file, 0, len, buf, 0);
    if (ret == 0) {
        ret = bdrv_flush(bs->file->bs);
    }
out:
    g_mutex_unlock(&s->lock);
    return ret;
}


/* ---- queries ----------------------------------------------------------- */

static int64_t qcow2_getlength(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    int64_t size;

    g_mutex_lock(&s->lock);
    size = s->size;
    g_mutex_unlock(&s->lock);
    return size;
}

static int qcow2_get_info(BlockDriverState *bs, BlockDriverInfo *bdi)
{
    BDRVQcow2State *s = bs->opaque;

    bdi->cluster_size = s->cluster_size;
    bdi->is_dirty = s->incompatible_features & QCOW2_INCOMPAT_DIRTY;
    return 0;
}

static ImageInfoSpecific *qcow2_get_specific_info(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    ImageInfoSpecific *info = g_new0(ImageInfoSpecific, 1);
    ImageInfoSpecificQCow2 *q = g_new0(ImageInfoSpecificQCow2, 1);

    info->type = IMAGE_INFO_SPECIFIC_KIND_QCOW2;
    info->u.qcow2.data = q;
    q->refcount_bits = 1 << s->refcount_order;
    q->compression_type = QCOW2_COMPRESSION_TYPE_ZLIB;
    if (s->version == 2) {
        q->compat = g_strdup("0.10");
        return info;
    }
    q->compat = g_strdup("1.1");
    q->has_lazy_refcounts = true;
    q->lazy_refcounts = s->compatible_features & QCOW2_COMPAT_LAZY_REFCOUNTS;
    q->has_corrupt = true;
    q->corrupt = s->incompatible_features & QCOW2_INCOMPAT_CORRUPT;
    q->has_extended_l2 = true;
    q->extended_l2 = false;
    q->bitmaps = qcow2_get_bitmap_info(bs);
    return info;
}

/* ---- resize ------------------------------------------------------------ */

/*
 * Grow: the L1 table first, then the new area made to read as zeroes where
 * something else would show (the tail of the old last cluster, a longer
 * backing file), then the size.
 */
static int grow(BlockDriverState *bs, uint64_t old, uint64_t new, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t per_l1 = s->cluster_size << s->l2_bits;
    uint64_t aligned = (old + s->cluster_size - 1) & ~(s->cluster_size - 1);
    bool backing_shows = bs->backing &&
                         (uint64_t)bdrv_child_getlength(bs->backing) > old;
    int ret;

    if (backing_shows && s->version < 3) {
        error_setg_errno(errp, ENOTSUP, "Failed to zero out new clusters");
        return -ENOTSUP;
    }
    ret = qcow2_grow_l1(bs, (new + per_l1 - 1) / per_l1);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to grow the L1 table");
        return ret;
    }
    if (aligned > old) {
        Qcow2ClusterType t;

        ret = qcow2_type_at(bs, old, &t);
        if (ret == 0 && (t == QCOW2_CLUSTER_NORMAL ||
                         t == QCOW2_CLUSTER_COMPRESSED ||
                         (t == QCOW2_CLUSTER_UNALLOCATED && backing_shows))) {
            g_autofree uint8_t *zeroes = g_malloc0(aligned - old);

            g_mutex_unlock(&s->lock);
            ret = qcow2_pwritev(bs, old, MIN(aligned, new) - old, zeroes, 0);
            g_mutex_lock(&s->lock);
        }
        if (ret < 0) {
            error_setg_errno(errp, -ret,
                             "Failed to zero out the old last cluster");
            return ret;
        }
    }
    if (backing_shows && new > aligned) {
        ret = qcow2_zero_clusters(bs, aligned >> s->cluster_bits,
                                  qcow2_size_to_clusters(s, new - aligned),
                                  false);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to zero out new clusters");
            return ret;
        }
    }
    return 0;
}

/* Shrink: drop the clusters past the end, then the L2 tables. */
static int shrink(BlockDriverState *bs, uint64_t old, uint64_t new,
                  Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t first = qcow2_size_to_clusters(s, new);
    uint64_t last = qcow2_size_to_clusters(s, old);
    int ret = 0;

    if (last > first) {
        ret = qcow2_discard_clusters(bs, first, last - first, true,
                                     QCOW2_FREE_OTHER);
    }
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to discard cropped clusters");
        return ret;
    }
    qcow2_shrink_l1(bs, new);
    return 0;
}

static int qcow2_truncate(BlockDriverState *bs, int64_t offset, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old;
    int ret = 0;

    if (offset & 511) {
        error_setg(errp, "The new size must be a multiple of 512");
        return -EINVAL;
    }
    if (s->nb_snapshots && s->version < 3) {
        error_setg(errp, "Can't resize a v2 image which has snapshots");
        return -ENOTSUP;
    }
    ret = qcow2_truncate_bitmaps_check(bs, errp);
    if (ret < 0) {
        return ret;
    }
    g_mutex_lock(&s->lock);
    old = s->size;
    if (s->broken) {
        error_setg(errp, "Image is corrupt");
        ret = -EIO;
    } else if ((uint64_t)offset > old) {
        ret = grow(bs, old, offset, errp);
    } else if ((uint64_t)offset < old) {
        ret = shrink(bs, old, offset, errp);
    }
    if (ret == 0 && (uint64_t)offset != old) {
        ret = qcow2_header_store(bs, offsetof(Qcow2Header, size), offset, 8);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Failed to update the image size");
        } else {
            s->size = offset;
        }
    }
    g_mutex_unlock(&s->lock);
    if (ret == 0 && (uint64_t)offset < old) {
        /* Free what the shrink dropped and give the file back its tail. */
        qcow2_process_frees(bs);
        trim_file(bs);
    }
    return ret;
}

const BlockDriver bdrv_qcow2 = {
    .format_name = "qcow2",
    .instance_size = sizeof(BDRVQcow2State),
    .is_format = true,
    .supports_backing = true,

    .open = qcow2_open,
    .probe = qcow2_probe,
    .close = qcow2_close,
    .set_read_only = qcow2_set_read_only,
    .set_writable = qcow2_set_writable,
    .change_backing_file = qcow2_change_backing_file,
    .create = qcow2_create,
    .truncate = qcow2_truncate,
    .get_info = qcow2_get_info,
    .get_specific_info = qcow2_get_specific_info,
    .can_store_new_dirty_bitmap = qcow2_can_store_new_bitmap,
    .remove_persistent_dirty_bitmap = qcow2_remove_persistent_bitmap,

    .getlength = qcow2_getlength,
    .preadv = qcow2_preadv,
    .copy_range_from = qcow2_copy_range_from,
    .pwritev = qcow2_pwritev,
    .pwritev_compressed = qcow2_pwritev_compressed,
    .pwrite_zeroes = qcow2_pwrite_zeroes,
    .pdiscard = qcow2_pdiscard,
    .flush_to_os = qcow2_process_frees,
    .block_status = qcow2_block_status,
};
