/*
 * qcow2: the guest-to-host mapping. The L1 table lives in memory (host
 * order), with the range of its changed entries; L2 tables are cached
 * (host order, converted when loaded and when written back). An entry is
 * only set to clusters whose refcount is raised (in the cache) and, for
 * L2, whose data is written. The write-back writes the refcounts,
 * flushes, writes the L2 tables, flushes, and writes the L1 entries, so
 * on disk no entry points at a cluster whose refcount or content is not
 * stable. An entry is cleared before the refcount of what it pointed at
 * drops (after a flush). Everything here runs under s->lock, except
 * qcow2_read_compressed() and qcow2_deflate_cluster().
 */
#include <errno.h>
#include <inttypes.h>
#include <zlib.h>

#include "block/qcow2.h"

Qcow2ClusterType qcow2_cluster_type(BDRVQcow2State *s, uint64_t l2_entry)
{
    if (l2_entry & QCOW_OFLAG_COMPRESSED) {
        return QCOW2_CLUSTER_COMPRESSED;
    }
    if (l2_entry & QCOW_OFLAG_ZERO) {
        return (l2_entry & L2E_OFFSET_MASK) ? QCOW2_CLUSTER_ZERO_ALLOC
                                             : QCOW2_CLUSTER_ZERO_PLAIN;
    }
    return (l2_entry & L2E_OFFSET_MASK) ? QCOW2_CLUSTER_NORMAL
                                        : QCOW2_CLUSTER_UNALLOCATED;
}

/* ---- L1 ---------------------------------------------------------------- */

int qcow2_load_l1(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t i;
    int ret;

    s->l1_table = g_new0(uint64_t, MAX(s->l1_size, 1));
    if (!s->l1_size) {
        return 0;
    }
    ret = bdrv_pread(bs->file, s->l1_table_offset, s->l1_size * 8ull,
                     s->l1_table, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read L1 table");
        return ret;
    }
    for (i = 0; i < s->l1_size; i++) {
        s->l1_table[i] = GUINT64_FROM_BE(s->l1_table[i]);
    }
    return 0;
}

/*
 * Sets an L1 entry in memory; the write-back writes the range of changed
 * entries whole, since those between are as on disk.
 */
static void set_l1_entry(BlockDriverState *bs, uint64_t l1_index,
                         uint64_t entry)
{
    BDRVQcow2State *s = bs->opaque;

    s->l1_table[l1_index] = entry;
    if (s->l1_dirty_lo < s->l1_dirty_hi) {
        s->l1_dirty_lo = MIN(s->l1_dirty_lo, l1_index);
        s->l1_dirty_hi = MAX(s->l1_dirty_hi, l1_index + 1);
    } else {
        s->l1_dirty_lo = l1_index;
        s->l1_dirty_hi = l1_index + 1;
    }
}

int qcow2_grow_l1(BlockDriverState *bs, uint32_t new_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t bytes = (uint64_t)new_size * 8;
    uint64_t clusters = qcow2_size_to_clusters(s, bytes);
    g_autofree uint64_t *table = NULL;
    uint8_t hdr[12];
    int64_t offset;
    uint32_t i;
    int ret;

    if (new_size <= s->l1_size) {
        return 0;
    }
    if (bytes > QCOW2_MAX_L1_BYTES) {
        return -EFBIG;
    }
    /* The copy must not point at what is not on disk yet. */
    ret = qcow2_write_back(bs);
    if (ret < 0) {
        return ret;
    }
    offset = qcow2_alloc_clusters(bs, clusters);
    if (offset < 0) {
        return offset;
    }
    table = g_new0(uint64_t, clusters * s->cluster_size / 8);
    for (i = 0; i < s->l1_size; i++) {
        table[i] = GUINT64_TO_BE(s->l1_table[i]);
    }
    ret = bdrv_pwrite(bs->file, offset, clusters * s->cluster_size, table, 0);
    /* The table's own refcounts were just raised: this flushes it too. */
    if (ret == 0) {
        ret = qcow2_write_refcounts(bs, true);
    }
    if (ret == 0) {
        /* l1_size and l1_table_offset are adjacent: one write moves both. */
        qcow2_st32(hdr, new_size);
        qcow2_st64(hdr + 4, offset);
        ret = bdrv_pwrite(bs->file, offsetof(Qcow2Header, l1_size),
                          sizeof(hdr), hdr, 0);
    }
    if (ret < 0) {
        qcow2_free_unused_clusters(bs, offset, clusters);
        return ret;
    }
    if (s->l1_size) {
        qcow2_free_clusters_later(bs, s->l1_table_offset,
                                  qcow2_size_to_clusters(s, s->l1_size * 8ull),
                                  QCOW2_FREE_OTHER);
    }
    s->l1_table = g_renew(uint64_t, s->l1_table, new_size);
    memset(s->l1_table + s->l1_size, 0,
           (new_size - s->l1_size) * sizeof(uint64_t));
    s->l1_size = new_size;
    s->l1_table_offset = offset;
    return 0;
}

void qcow2_shrink_l1(BlockDriverState *bs, uint64_t new_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t per_l2 = s->cluster_size << s->l2_bits;
    uint64_t i;

    for (i = (new_size + per_l2 - 1) / per_l2; i < s->l1_size; i++) {
        uint64_t l2_offset = s->l1_table[i] & L1E_OFFSET_MASK;

        if (!l2_offset) {
            continue;
        }
        set_l1_entry(bs, i, 0);
        qcow2_cache_drop(s->l2_cache, l2_offset);
        qcow2_free_clusters_later(bs, l2_offset, 1, QCOW2_FREE_OTHER);
    }
}

/* ---- L2 ---------------------------------------------------------------- */

static int load_l2(BlockDriverState *bs, uint64_t offset, uint64_t **l2)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t i;
    int ret;

    *l2 = qcow2_cache_get(s->l2_cache, offset);
    if (*l2) {
        return 0;
    }
    if (qcow2_cache_crowded(s->l2_cache)) {
        ret = qcow2_write_back(bs);
        if (ret < 0) {
            return ret;
        }
    }
    *l2 = qcow2_cache_add(s->l2_cache, offset);
    ret = bdrv_pread(bs->file, offset, s->cluster_size, *l2, 0);
    if (ret < 0) {
        qcow2_cache_put(s->l2_cache, *l2);
        qcow2_cache_drop(s->l2_cache, offset);
        *l2 = NULL;
        return ret;
    }
    for (i = 0; i < s->l2_size; i++) {
        (*l2)[i] = GUINT64_FROM_BE((*l2)[i]);
    }
    return 0;
}

int qcow2_get_l2(BlockDriverState *bs, uint64_t l1_index, uint64_t **l2)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t offset;

    *l2 = NULL;
    if (l1_index >= s->l1_size) {
        return 0;
    }
    offset = s->l1_table[l1_index] & L1E_OFFSET_MASK;
    if (!offset) {
        return 0;
    }
    if (qcow2_offset_into_cluster(s, offset)) {
        return qcow2_signal_corruption(bs, "L2 table offset %#" PRIx64
                                       " unaligned (L1 index: %#" PRIx64 ")",
                                       offset, l1_index);
    }
    return load_l2(bs, offset, l2);
}

/*
 * Writable means referenced once (COPIED in L1). Otherwise a new table
 * (empty, or a copy of the shared one as the cache has it) goes into the
 * cache, all dirty, and into L1; the write-back writes it before the L1
 * entry. A shared table loses the active L1's reference (later).
 */
int qcow2_get_l2_for_write(BlockDriverState *bs, uint64_t l1_index,
                           uint64_t **l2)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old_entry = s->l1_table[l1_index];
    uint64_t old_offset = old_entry & L1E_OFFSET_MASK;
    uint64_t *old = NULL;
    int64_t offset;
    int ret;

    g_assert(l1_index < s->l1_size);
    if ((old_entry & QCOW_OFLAG_COPIED) && old_offset) {
        return qcow2_get_l2(bs, l1_index, l2);
    }
    if (old_offset) {
        ret = qcow2_get_l2(bs, l1_index, &old);
        if (ret < 0) {
            return ret;
        }
    }
    offset = qcow2_alloc_clusters(bs, 1);
    if (offset < 0) {
        if (old) {
            qcow2_cache_put(s->l2_cache, old);
        }
        return offset;
    }
    qcow2_cache_drop(s->l2_cache, offset);
    *l2 = qcow2_cache_add(s->l2_cache, offset);
    if (old) {
        memcpy(*l2, old, s->cluster_size);
        qcow2_cache_put(s->l2_cache, old);
        qcow2_cache_drop(s->l2_cache, old_offset);
        qcow2_free_clusters_later(bs, old_offset, 1, QCOW2_FREE_OTHER);
    } else {
        memset(*l2, 0, s->cluster_size);
    }
    qcow2_cache_mark_dirty(s->l2_cache, *l2, 0, s->cluster_size);
    set_l1_entry(bs, l1_index, offset | QCOW_OFLAG_COPIED);
    return 0;
}

void qcow2_set_l2_entries(BlockDriverState *bs, uint64_t *l2, uint64_t first,
                          uint64_t nb, const uint64_t *entries)
{
    BDRVQcow2State *s = bs->opaque;

    memcpy(l2 + first, entries, nb * 8);
    qcow2_cache_mark_dirty(s->l2_cache, l2, first * 8, (first + nb) * 8);
}

/*
 * Writes bytes [lo, hi) of a host-order table of entries (an L2 table,
 * the L1 table) at offset, big-endian.
 */
static int write_entries(BlockDriverState *bs, uint64_t offset,
                         const void *data, size_t lo, size_t hi)
{
    const uint64_t *table = data;
    g_autofree uint64_t *disk = g_new(uint64_t, (hi - lo) / 8);
    size_t i;

    for (i = 0; i < (hi - lo) / 8; i++) {
        disk[i] = GUINT64_TO_BE(table[lo / 8 + i]);
    }
    return bdrv_pwrite(bs->file, offset + lo, hi - lo, disk, 0);
}

int qcow2_write_back(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    bool l2_dirty = qcow2_cache_is_dirty(s->l2_cache);
    bool l1_dirty = s->l1_dirty_lo < s->l1_dirty_hi;
    int ret = qcow2_write_refcounts(bs, l2_dirty || l1_dirty);

    if (ret == 0 && l2_dirty) {
        ret = qcow2_cache_write_back(s->l2_cache, bs, write_entries);
    }
    /* New tables before the L1 entries that link them. */
    if (ret >= 0 && l1_dirty) {
        ret = l2_dirty ? bdrv_flush(bs->file->bs) : 0;
        ret = ret < 0 ? ret : write_entries(bs, s->l1_table_offset,
                                            s->l1_table, s->l1_dirty_lo * 8,
                                            s->l1_dirty_hi * 8);
        if (ret == 0) {
            s->l1_dirty_lo = s->l1_dirty_hi = 0;
        }
    }
    return MIN(ret, 0);
}

void qcow2_compressed_range(BDRVQcow2State *s, uint64_t l2_entry,
                            uint64_t *start, uint64_t *len)
{
    uint64_t sectors = ((l2_entry >> s->csize_shift) & s->csize_mask) + 1;

    *start = (l2_entry & s->coffset_mask) & ~511ull;
    *len = sectors * 512;
}

uint64_t qcow2_compressed_entry(BDRVQcow2State *s, uint64_t host, uint64_t len)
{
    /* The sectors after the one holding the first byte, as the spec counts. */
    uint64_t extra = (host + len - 1) / 512 - host / 512;

    return QCOW_OFLAG_COMPRESSED | (extra << s->csize_shift) | host;
}

void qcow2_free_entry(BlockDriverState *bs, uint64_t l2_entry,
                      Qcow2FreeKind kind)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t start, len;

    switch (qcow2_cluster_type(s, l2_entry)) {
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        qcow2_free_clusters_later(bs, l2_entry & L2E_OFFSET_MASK, 1, kind);
        break;
    case QCOW2_CLUSTER_COMPRESSED:
        /* Every host cluster the data touches holds one reference. */
        qcow2_compressed_range(s, l2_entry, &start, &len);
        qcow2_free_clusters_later(bs, start & ~(s->cluster_size - 1),
                                  ((start + len - 1) >> s->cluster_bits) -
                                  (start >> s->cluster_bits) + 1, kind);
        break;
    default:
        break;
    }
}

static bool is_allocated(Qcow2ClusterType t)
{
    return t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC ||
           t == QCOW2_CLUSTER_COMPRESSED;
}

/* The new entry of a cluster for zero (op 0), discard (1), full discard (2). */
static uint64_t new_entry(BlockDriverState *bs, uint64_t old, int op,
                          bool unmap)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2ClusterType t = qcow2_cluster_type(s, old);

    switch (op) {
    case 0:
        /* As QEMU: compressed data is always dropped, other only on unmap. */
        if (t == QCOW2_CLUSTER_COMPRESSED || (unmap && is_allocated(t))) {
            return QCOW_OFLAG_ZERO;
        }
        return old | QCOW_OFLAG_ZERO;
    case 1:
        if (bs->backing || is_allocated(t)) {
            return s->version >= 3 ? QCOW_OFLAG_ZERO : 0;
        }
        return old;
    default:
        return 0;
    }
}

/*
 * Applies op to guest clusters [first, first + nb), one L2 table at a
 * time: entries set in the cached table, what they referenced freed
 * (deferred).
 */
static int change_clusters(BlockDriverState *bs, uint64_t first, uint64_t nb,
                           int op, bool unmap, Qcow2FreeKind kind)
{
    BDRVQcow2State *s = bs->opaque;

    while (nb > 0) {
        uint64_t l1_index = first >> s->l2_bits;
        uint64_t idx = first & (s->l2_size - 1);
        uint64_t n = MIN(nb, s->l2_size - idx), i, lo = n, hi = 0;
        uint64_t *l2;
        int ret;

        /* Look first: nothing to change means no table to allocate. */
        ret = qcow2_get_l2(bs, l1_index, &l2);
        if (ret < 0) {
            return ret;
        }
        for (i = 0; i < n; i++) {
            uint64_t e = l2 ? l2[idx + i] : 0;

            if (new_entry(bs, e, op, unmap) != e) {
                lo = MIN(lo, i);
                hi = i + 1;
            }
        }
        if (l2) {
            qcow2_cache_put(s->l2_cache, l2);
        }
        if (lo < hi) {
            ret = qcow2_get_l2_for_write(bs, l1_index, &l2);
            if (ret < 0) {
                return ret;
            }
            for (i = idx + lo; i < idx + hi; i++) {
                uint64_t old = l2[i];

                l2[i] = new_entry(bs, old, op, unmap);
                if ((l2[i] & L2E_OFFSET_MASK) != (old & L2E_OFFSET_MASK) ||
                    qcow2_cluster_type(s, old) == QCOW2_CLUSTER_COMPRESSED) {
                    qcow2_free_entry(bs, old, kind);
                }
            }
            qcow2_cache_mark_dirty(s->l2_cache, l2, (idx + lo) * 8,
                                   (idx + hi) * 8);
            qcow2_cache_put(s->l2_cache, l2);
        }
        first += n;
        nb -= n;
    }
    return 0;
}

int qcow2_zero_clusters(BlockDriverState *bs, uint64_t first, uint64_t nb,
                        bool unmap)
{
    return change_clusters(bs, first, nb, 0, unmap, QCOW2_FREE_REQUEST);
}

int qcow2_discard_clusters(BlockDriverState *bs, uint64_t first, uint64_t nb,
                           bool full, Qcow2FreeKind kind)
{
    return change_clusters(bs, first, nb, full ? 2 : 1, false, kind);
}

/* ---- compressed clusters ----------------------------------------------- */

int qcow2_read_compressed(BlockDriverState *bs, uint64_t l2_entry, void *buf)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t coffset = l2_entry & s->coffset_mask;
    uint64_t start, len, end, file_len = bdrv_child_getlength(bs->file);
    g_autofree uint8_t *cbuf = NULL;
    z_stream z = { 0 };
    int ret;

    qcow2_compressed_range(s, l2_entry, &start, &len);
    /* The last sector may reach past the end of the file. */
    end = MIN(start + len, file_len);
    if (coffset >= end) {
        return -EIO;
    }
    cbuf = g_malloc(end - coffset);
    ret = bdrv_pread(bs->file, coffset, end - coffset, cbuf, 0);
    if (ret < 0) {
        return ret;
    }
    /* A raw deflate stream, as QEMU writes it. */
    if (inflateInit2(&z, -15) != Z_OK) {
        return -ENOMEM;
    }
    z.next_in = cbuf;
    z.avail_in = end - coffset;
    z.next_out = buf;
    z.avail_out = s->cluster_size;
    ret = inflate(&z, Z_FINISH);
    /* Decompression stops once it has a cluster; trailing bytes are slack. */
    ret = (ret == Z_STREAM_END || ret == Z_BUF_ERROR) && z.avail_out == 0 ?
          0 : -EIO;
    inflateEnd(&z);
    return ret;
}

void qcow2_deflater_free(gpointer z)
{
    deflateEnd(z);
    g_free(z);
}

int64_t qcow2_deflate_cluster(BDRVQcow2State *s, const void *src, void *dst)
{
    /*
     * Setting a stream up (270 KiB of tables) costs a third of deflating
     * a cluster: the image keeps those it made until it closes.
     */
    z_stream *z = g_async_queue_try_pop(s->deflaters);
    int ret;

    if (z) {
        deflateReset(z);
    } else {
        z = g_new0(z_stream, 1);
        /* QEMU's stream: raw deflate, 4 KiB window, default level, memLevel 9. */
        if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                         Z_DEFAULT_STRATEGY) != Z_OK) {
            g_free(z);
            return -EIO;
        }
    }
    z->next_in = (Bytef *)src;
    z->avail_in = s->cluster_size;
    z->next_out = dst;
    /* Worth it only if it saves at least a byte, as QEMU decides. */
    z->avail_out = s->cluster_size - 1;
    ret = deflate(z, Z_FINISH);
    ret = ret == Z_STREAM_END ? (int)(s->cluster_size - 1 - z->avail_out) :
          ret == Z_OK ? -ENOSPC : -EIO;
    g_async_queue_push(s->deflaters, z);
    return ret;
}
