/*
 * qcow2: host cluster allocation. The refcount table (in memory, host
 * order, written through) points at refcount blocks, cached in their
 * on-disk form and written back. Callers hold s->lock unless a function
 * says otherwise.
 *
 * Ordering (docs/devel/qcow2.md):
 * - allocation is exact: a run of free clusters gets refcount 1 in the
 *   cache; the blocks are written, and the file flushed, before anything
 *   that points at the clusters (the write-back of L2 and L1 entries, a
 *   header field);
 * - freeing: the reference is removed and flushed first; the refcount
 *   drops only then, and not while a request still does I/O on the
 *   cluster;
 * - a new refcount block or table is written (and flushed, unless it sits
 *   in clusters never written before) before anything points at it.
 * So a crash never corrupts: it leaks at most the clusters of changes in
 * flight and, where refcount blocks are written outside a full
 * write-back (a crowded cache, a block counted by an existing one,
 * qcow2_process_frees(), a bitmap directory switch), those allocated
 * since the last write-back.
 *
 * Placement: new refcount blocks go right after the run they are created
 * for, so that runs of data stay contiguous; a bigger refcount table goes,
 * with the blocks that count it, at the start of the first range the old
 * table could not cover.
 */
#include <errno.h>
#include <inttypes.h>

#include "block/qcow2.h"

#define PENDING_FREES_MAX       4096
#define GROW_STEP_MAX           (64 << 20)      /* bytes the file grows ahead */

/* ---- refcount block entries -------------------------------------------- */

static uint64_t rb_get(BDRVQcow2State *s, const uint8_t *rb, uint64_t i)
{
    unsigned bits;
    uint64_t bit;

    switch (s->refcount_order) {
    case 3:
        return rb[i];
    case 4:
        return qcow2_ld16(rb + 2 * i);
    case 5:
        return qcow2_ld32(rb + 4 * i);
    case 6:
        return qcow2_ld64(rb + 8 * i);
    default:
        /* 1, 2 or 4 bits, least significant first within a byte */
        bits = 1u << s->refcount_order;
        bit = i * bits;
        return (rb[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
    }
}

void qcow2_rb_set(int refcount_order, uint8_t *rb, uint64_t i, uint64_t v)
{
    unsigned bits, mask;
    uint64_t bit;

    switch (refcount_order) {
    case 3:
        rb[i] = v;
        break;
    case 4:
        qcow2_st16(rb + 2 * i, v);
        break;
    case 5:
        qcow2_st32(rb + 4 * i, v);
        break;
    case 6:
        qcow2_st64(rb + 8 * i, v);
        break;
    default:
        bits = 1u << refcount_order;
        mask = (1u << bits) - 1;
        bit = i * bits;
        rb[bit / 8] = (rb[bit / 8] & ~(mask << (bit % 8))) | (v << (bit % 8));
        break;
    }
}

/* The bytes of a block that hold entries [first, first + nb). */
static void rb_bytes(BDRVQcow2State *s, uint64_t first, uint64_t nb,
                     uint64_t *off, uint64_t *len)
{
    uint64_t bits = 1u << s->refcount_order;

    *off = first * bits / 8;
    *len = ((first + nb) * bits + 7) / 8 - *off;
}

/* ---- tables ------------------------------------------------------------ */

int qcow2_load_refcount_table(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t bytes = s->refcount_table_size * sizeof(uint64_t);
    uint64_t i;
    int ret;

    s->refcount_table = g_new(uint64_t, s->refcount_table_size);
    ret = bdrv_pread(bs->file, s->refcount_table_offset, bytes,
                     s->refcount_table, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read the refcount table");
        return ret;
    }
    for (i = 0; i < s->refcount_table_size; i++) {
        s->refcount_table[i] = GUINT64_FROM_BE(s->refcount_table[i]);
    }
    return 0;
}

/*
 * Makes the file at least end bytes long. It grows a step ahead (an
 * eighth of its length, up to 64 MiB), so that allocating cluster after
 * cluster does not truncate each time; close trims what is left unused.
 */
static int ensure_file_length(BlockDriverState *bs, uint64_t end)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t len = bdrv_child_getlength(bs->file);
    Error *local_err = NULL;
    int ret;

    if (len >= end) {
        return 0;
    }
    end = MAX(end, len + MIN(len / 8, GROW_STEP_MAX));
    end = (end + s->cluster_size - 1) & ~(s->cluster_size - 1);
    ret = bdrv_child_truncate(bs->file, end, &local_err);
    error_free(local_err);
    s->grew_file |= ret == 0;
    return ret;
}

static bool is_fresh(BDRVQcow2State *s, uint64_t cluster)
{
    return cluster >= s->fresh_from;
}

static int write_rb(BlockDriverState *bs, uint64_t offset, const void *data,
                    size_t lo, size_t hi)
{
    return bdrv_pwrite(bs->file, offset + lo, hi - lo,
                       (const uint8_t *)data + lo, 0);
}

int qcow2_write_refcounts(BlockDriverState *bs, bool flush)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = qcow2_cache_write_back(s->rb_cache, bs, write_rb);

    if (ret > 0) {
        s->refcounts_unflushed = true;
    }
    if (ret >= 0 && flush && s->refcounts_unflushed) {
        ret = bdrv_flush(bs->file->bs);
        if (ret == 0) {
            s->refcounts_unflushed = false;
        }
    }
    return MIN(ret, 0);
}

/* Block idx of the table, pinned; *rb = NULL when it has none. */
static int get_rb(BlockDriverState *bs, uint64_t idx, uint8_t **rb)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t off;
    int ret;

    *rb = NULL;
    if (idx >= s->refcount_table_size) {
        return 0;
    }
    off = s->refcount_table[idx] & REFT_OFFSET_MASK;
    if (!off) {
        return 0;
    }
    if (qcow2_offset_into_cluster(s, off)) {
        return qcow2_signal_corruption(bs, "Refblock offset %#" PRIx64
                                       " unaligned (reftable index: %#"
                                       PRIx64 ")", off, idx);
    }
    *rb = qcow2_cache_get(s->rb_cache, off);
    if (*rb) {
        return 0;
    }
    /* Refcount blocks may be written any time: nothing depends on them. */
    if (qcow2_cache_crowded(s->rb_cache)) {
        ret = qcow2_write_refcounts(bs, false);
        if (ret < 0) {
            return ret;
        }
    }
    *rb = qcow2_cache_add(s->rb_cache, off);
    ret = bdrv_pread(bs->file, off, s->cluster_size, *rb, 0);
    if (ret < 0) {
        qcow2_cache_put(s->rb_cache, *rb);
        qcow2_cache_drop(s->rb_cache, off);
        *rb = NULL;
    }
    return ret;
}

static uint64_t get_refcount(BlockDriverState *bs, uint64_t cluster, int *err)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t *rb;
    uint64_t v;

    *err = get_rb(bs, cluster >> s->rb_bits, &rb);
    if (*err < 0 || !rb) {
        return 0;
    }
    v = rb_get(s, rb, cluster & ((1ull << s->rb_bits) - 1));
    qcow2_cache_put(s->rb_cache, rb);
    return v;
}

/*
 * Adds addend to the refcounts of clusters [first, first + nb) in the
 * cache. Raising needs the blocks to exist.
 */
static int update_refcounts(BlockDriverState *bs, uint64_t first, uint64_t nb,
                            int64_t addend)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t per_block = 1ull << s->rb_bits;

    while (nb > 0) {
        uint64_t idx = first >> s->rb_bits;
        uint64_t i0 = first & (per_block - 1);
        uint64_t n = MIN(nb, per_block - i0);
        uint64_t i, off, len;
        uint8_t *rb;
        int ret = get_rb(bs, idx, &rb);

        if (ret < 0) {
            return ret;
        }
        if (!rb) {
            return qcow2_signal_corruption(bs, "Refcount of cluster %#"
                                           PRIx64 " changed without a "
                                           "refcount block", first);
        }
        for (i = i0; i < i0 + n; i++) {
            uint64_t v = rb_get(s, rb, i);
            uint64_t c = (idx << s->rb_bits) + i;

            if ((addend < 0 && v < (uint64_t)-addend) ||
                (addend > 0 && (uint64_t)addend > s->refcount_max - v)) {
                qcow2_cache_put(s->rb_cache, rb);
                return qcow2_signal_corruption(bs, "Refcount of cluster %#"
                                               PRIx64 " out of range", c);
            }
            qcow2_rb_set(s->refcount_order, rb, i, v + addend);
            if (v + addend == 0) {
                s->free_cluster_index = MIN(s->free_cluster_index, c);
                /* It may hold data now: no longer fresh once free. */
                if (c >= s->fresh_from) {
                    s->fresh_from = c + 1;
                }
                /* Compressed data must not go on into a free cluster. */
                if (s->cbytes_next >> s->cluster_bits == c) {
                    s->cbytes_next = 0;
                }
            }
        }
        rb_bytes(s, i0, n, &off, &len);
        qcow2_cache_mark_dirty(s->rb_cache, rb, off, off + len);
        qcow2_cache_put(s->rb_cache, rb);
        first += n;
        nb -= n;
    }
    return 0;
}

/* ---- growth ------------------------------------------------------------ */

/*
 * A bigger refcount table with room for index min_idx. It goes, with the
 * new blocks that count it, at the start of the first range the old table
 * cannot cover (all free): k blocks, then the table.
 */
static int grow_table(BlockDriverState *bs, uint64_t min_idx)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t per_block = 1ull << s->rb_bits;
    uint64_t per_cluster = s->cluster_size / 8;
    uint64_t j0 = s->refcount_table_size;
    uint64_t area = j0 << s->rb_bits;       /* first cluster */
    uint64_t want = MAX(min_idx + 1, s->refcount_table_size * 2);
    uint64_t k = 1, t, b, i, new_size;
    uint64_t old_offset = s->refcount_table_offset;
    uint64_t old_clusters = qcow2_size_to_clusters(s, s->refcount_table_size * 8);
    g_autofree uint8_t *buf = NULL;
    g_autofree uint64_t *table = NULL;
    uint8_t hdr[12];
    int ret;

    for (;;) {
        uint64_t k2;

        t = (MAX(want, j0 + k) + per_cluster - 1) / per_cluster;
        k2 = (k + t + per_block - 1) / per_block;
        if (k2 <= k) {
            break;
        }
        k = k2;
    }
    new_size = t * per_cluster;
    if (t * s->cluster_size > QCOW2_MAX_REFTABLE_BYTES) {
        return -EFBIG;
    }
    ret = ensure_file_length(bs, (area + k + t) << s->cluster_bits);
    if (ret < 0) {
        return ret;
    }

    /* The blocks: block b covers range j0 + b and counts the area in it. */
    buf = g_malloc(s->cluster_size);
    for (b = 0; b < k; b++) {
        uint64_t lo = (j0 + b) << s->rb_bits, hi = lo + per_block;

        memset(buf, 0, s->cluster_size);
        for (i = MAX(lo, area); i < MIN(hi, area + k + t); i++) {
            qcow2_rb_set(s->refcount_order, buf, i - lo, 1);
        }
        ret = bdrv_pwrite(bs->file, (area + b) << s->cluster_bits,
                          s->cluster_size, buf, 0);
        if (ret < 0) {
            return ret;
        }
    }
    /* The table, on disk big-endian. */
    table = g_new0(uint64_t, new_size);
    for (i = 0; i < s->refcount_table_size; i++) {
        table[i] = GUINT64_TO_BE(s->refcount_table[i]);
    }
    for (b = 0; b < k; b++) {
        table[j0 + b] = GUINT64_TO_BE((area + b) << s->cluster_bits);
    }
    ret = bdrv_pwrite(bs->file, (area + k) << s->cluster_bits,
                      t * s->cluster_size, table, 0);
    if (ret == 0 && !is_fresh(s, area)) {
        ret = bdrv_flush(bs->file->bs);
    }
    if (ret < 0) {
        return ret;
    }
    qcow2_st64(hdr, (area + k) << s->cluster_bits);
    qcow2_st32(hdr + 8, t);
    ret = bdrv_pwrite(bs->file, offsetof(Qcow2Header, refcount_table_offset),
                      sizeof(hdr), hdr, 0);
    if (ret < 0) {
        return ret;
    }

    for (i = 0; i < new_size; i++) {
        table[i] = GUINT64_FROM_BE(table[i]);
    }
    g_free(s->refcount_table);
    s->refcount_table = g_steal_pointer(&table);
    s->refcount_table_size = new_size;
    s->refcount_table_offset = (area + k) << s->cluster_bits;
    qcow2_free_clusters_later(bs, old_offset, old_clusters, QCOW2_FREE_OTHER);
    return 0;
}

/*
 * The ranges touched by clusters [first, first + nb) that have no block:
 * how many, and the highest index (or -1).
 */
static uint64_t missing_blocks(BDRVQcow2State *s, uint64_t first, uint64_t nb,
                               int64_t *max_idx)
{
    uint64_t idx, last = (first + nb - 1) >> s->rb_bits, n = 0;

    *max_idx = -1;
    for (idx = first >> s->rb_bits; idx <= last; idx++) {
        if (idx >= s->refcount_table_size ||
            !(s->refcount_table[idx] & REFT_OFFSET_MASK)) {
            n++;
            *max_idx = idx;
        }
    }
    return n;
}

/*
 * Blocks for the ranges of free area [first, first + nb) that have none,
 * placed from cluster at on, inside the area (the table has room for
 * them). A block's own cluster is counted by the new block of its range,
 * or, in a range that has a block already, by that one: in the cache,
 * written and flushed before the table points at the new blocks.
 */
static int create_blocks(BlockDriverState *bs, uint64_t first, uint64_t nb,
                         uint64_t at)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t lo = first >> s->rb_bits, hi = (first + nb - 1) >> s->rb_bits;
    g_autofree uint8_t *buf = g_malloc(s->cluster_size);
    int64_t max_idx;
    uint64_t n = missing_blocks(s, first, nb, &max_idx);
    uint64_t idx, loc, c;
    bool counted_before = false;
    int ret = ensure_file_length(bs, (at + n) << s->cluster_bits);

    for (idx = lo, loc = at; ret == 0 && idx <= hi; idx++) {
        if (s->refcount_table[idx] & REFT_OFFSET_MASK) {
            continue;
        }
        memset(buf, 0, s->cluster_size);
        for (c = at; c < at + n; c++) {
            if (c >> s->rb_bits == idx) {
                qcow2_rb_set(s->refcount_order, buf,
                             c & ((1ull << s->rb_bits) - 1), 1);
            }
        }
        ret = bdrv_pwrite(bs->file, loc++ << s->cluster_bits, s->cluster_size,
                          buf, 0);
    }
    for (c = at; ret == 0 && c < at + n; c++) {
        if (s->refcount_table[c >> s->rb_bits] & REFT_OFFSET_MASK) {
            ret = update_refcounts(bs, c, 1, 1);
            counted_before = true;
        }
    }
    /* The blocks (and their refcounts) before the table entries. */
    if (ret == 0 && counted_before) {
        ret = qcow2_write_refcounts(bs, true);
    } else if (ret == 0 && !is_fresh(s, at)) {
        ret = bdrv_flush(bs->file->bs);
    }
    for (idx = lo, loc = at; ret == 0 && idx <= hi; idx++) {
        uint64_t be;

        if (s->refcount_table[idx] & REFT_OFFSET_MASK) {
            continue;
        }
        be = GUINT64_TO_BE(loc << s->cluster_bits);
        ret = bdrv_pwrite(bs->file, s->refcount_table_offset + idx * 8, 8,
                          &be, 0);
        if (ret == 0) {
            qcow2_cache_drop(s->rb_cache, loc << s->cluster_bits);
            s->refcount_table[idx] = loc++ << s->cluster_bits;
        }
    }
    return ret;
}

/* ---- allocation -------------------------------------------------------- */

/*
 * The first run of nb free clusters at or after s->free_cluster_index,
 * which moves past the used clusters in front of the first free one. A
 * range without a block is all free.
 */
static int64_t find_free_run(BlockDriverState *bs, uint64_t nb)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t per_block = 1ull << s->rb_bits;
    uint64_t c = s->free_cluster_index, start = c, run = 0;
    bool leading = true;

    while (run < nb) {
        uint64_t i = c & (per_block - 1);
        uint8_t *rb;
        int ret = get_rb(bs, c >> s->rb_bits, &rb);

        if (ret < 0) {
            return ret;
        }
        if (!rb) {
            if (!run) {
                start = c;
            }
            run += per_block - i;
            c += per_block - i;
            continue;
        }
        for (; i < per_block && run < nb; i++, c++) {
            if (rb_get(s, rb, i)) {
                leading = leading && !run;
                run = 0;
                if (leading) {
                    s->free_cluster_index = c + 1;
                }
            } else if (!run++) {
                start = c;
            }
        }
        qcow2_cache_put(s->rb_cache, rb);
    }
    return start;
}

int64_t qcow2_alloc_clusters(BlockDriverState *bs, uint64_t nb)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t k = 0, missing;
    int64_t start, max_idx;
    int ret;

    g_assert(nb > 0);
    if (s->broken) {
        return -EIO;
    }
    /* A free run for the clusters, and after them the blocks it lacks. */
    for (;;) {
        start = find_free_run(bs, nb + k);
        if (start < 0) {
            return start;
        }
        missing = missing_blocks(s, start, nb + k, &max_idx);
        if (max_idx >= (int64_t)s->refcount_table_size) {
            /* The new table takes clusters: look again. */
            ret = grow_table(bs, max_idx);
            if (ret < 0) {
                return ret;
            }
            continue;
        }
        if (missing <= k) {
            break;
        }
        k = missing;
    }
    ret = missing ? create_blocks(bs, start, nb + k, start + nb) : 0;
    if (ret == 0) {
        ret = ensure_file_length(bs, (start + nb) << s->cluster_bits);
    }
    if (ret == 0) {
        ret = update_refcounts(bs, start, nb, 1);
    }
    if (ret < 0) {
        return ret;
    }
    if (s->free_cluster_index == (uint64_t)start) {
        s->free_cluster_index = start + nb + missing;
    }
    return start << s->cluster_bits;
}

int qcow2_free_unused_clusters(BlockDriverState *bs, uint64_t offset,
                               uint64_t nb)
{
    BDRVQcow2State *s = bs->opaque;

    return update_refcounts(bs, offset >> s->cluster_bits, nb, -1);
}

/*
 * Compressed clusters are packed byte after byte, as QEMU packs them: a
 * host cluster holds one reference per compressed cluster whose data
 * touches it. A piece goes on where the last one ended while that
 * cluster can take one more reference; one that does not fit goes on
 * into a new cluster if that one follows, else starts it.
 */
int64_t qcow2_alloc_bytes(BlockDriverState *bs, uint64_t len)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t off = s->cbytes_next, room = 0;
    int64_t fresh = -1;
    int err = 0;
    int ret = 0;

    g_assert(len > 0 && len < s->cluster_size);
    if (off && get_refcount(bs, off >> s->cluster_bits, &err) ==
               s->refcount_max) {
        off = 0;
    }
    if (err < 0) {
        return err;
    }
    if (off) {
        room = s->cluster_size - qcow2_offset_into_cluster(s, off);
    }
    if (room < len) {
        fresh = qcow2_alloc_clusters(bs, 1);    /* its reference: refcount 1 */
        if (fresh < 0) {
            return fresh;
        }
        if (!off || (uint64_t)fresh != off + room) {
            off = fresh;
        }
    }
    if (off > s->coffset_mask) {
        ret = -EFBIG;           /* an L2 entry could not say where */
    } else if (off != (uint64_t)fresh) {
        /* The piece starts in the cluster the last one ended in. */
        ret = update_refcounts(bs, off >> s->cluster_bits, 1, 1);
    }
    if (ret < 0) {
        if (fresh >= 0) {
            qcow2_free_unused_clusters(bs, fresh, 1);
        }
        return ret;
    }
    s->cbytes_next = qcow2_offset_into_cluster(s, off + len) ? off + len : 0;
    return off;
}

/* ---- freeing ----------------------------------------------------------- */

void qcow2_free_clusters_later(BlockDriverState *bs, uint64_t offset,
                               uint64_t nb, Qcow2FreeKind kind)
{
    BDRVQcow2State *s = bs->opaque;
    GArray *a = s->pending_frees;
    Qcow2PendingFree f = { offset >> s->cluster_bits, nb, kind };

    if (a->len) {
        Qcow2PendingFree *last = &g_array_index(a, Qcow2PendingFree, a->len - 1);

        if (last->kind == kind && last->cluster + last->nb == f.cluster) {
            last->nb += nb;
            return;
        }
    }
    g_array_append_val(a, f);
}

bool qcow2_frees_pending_too_long(BDRVQcow2State *s)
{
    return s->pending_frees->len >= PENDING_FREES_MAX;
}

/* Passes a guest discard on for the clusters of f that are about to be free. */
static void discard_in_file(BlockDriverState *bs, const Qcow2PendingFree *f)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t c = f->cluster, end = f->cluster + f->nb;

    while (c < end) {
        uint64_t run = 0;
        int err;

        while (c + run < end && get_refcount(bs, c + run, &err) == 1 &&
               err == 0) {
            run++;
        }
        if (run) {
            bdrv_pdiscard(bs->file, c << s->cluster_bits, run << s->cluster_bits);
        }
        c += run + 1;
    }
}

static int apply_free(BlockDriverState *bs, const Qcow2PendingFree *f)
{
    BDRVQcow2State *s = bs->opaque;

    if (qcow2_host_io_overlaps(s, f->cluster << s->cluster_bits,
                               (f->cluster + f->nb) << s->cluster_bits)) {
        g_array_append_val(s->pending_frees, *f);
        return 0;
    }
    if (f->kind == QCOW2_FREE_REQUEST && s->pass_discard) {
        discard_in_file(bs, f);
    }
    return update_refcounts(bs, f->cluster, f->nb, -1);
}

int qcow2_process_frees(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    GArray *batch = NULL;
    guint i;
    int ret;

    g_mutex_lock(&s->lock);
    ret = s->broken ? -EIO : qcow2_write_back(bs);
    if (ret == 0 && s->pending_frees->len) {
        batch = s->pending_frees;
        s->pending_frees = g_array_new(false, false, sizeof(Qcow2PendingFree));
    }
    g_mutex_unlock(&s->lock);
    if (!batch) {
        return ret;
    }

    /* What removed the references is written: make it stable first. */
    ret = bdrv_flush(bs->file->bs);

    g_mutex_lock(&s->lock);
    for (i = 0; i < batch->len; i++) {
        Qcow2PendingFree *f = &g_array_index(batch, Qcow2PendingFree, i);

        if (ret < 0) {
            g_array_append_val(s->pending_frees, *f);
        } else {
            int r = apply_free(bs, f);

            ret = ret < 0 ? ret : r;
        }
    }
    /* Written, so that a crash from now on does not leak them. */
    if (ret == 0) {
        ret = qcow2_write_refcounts(bs, false);
    }
    g_mutex_unlock(&s->lock);
    g_array_free(batch, true);
    return ret;
}

int64_t qcow2_used_end(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t c = qcow2_size_to_clusters(s, bdrv_child_getlength(bs->file));

    while (c > 0) {
        int err;
        uint64_t v = get_refcount(bs, c - 1, &err);

        if (err < 0) {
            return err;
        }
        if (v) {
            break;
        }
        c--;
    }
    return c << s->cluster_bits;
}
