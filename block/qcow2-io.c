/*
 * qcow2: the request paths. They run in any thread, many at once; each
 * takes s->lock to look at or change metadata and drops it for guest data
 * I/O. Two lists, under the lock, make that safe:
 *
 * - in-flight allocations (guest clusters): a writer that gives clusters
 *   new host clusters registers them until their L2 entries are set;
 *   any other change to those entries (another allocating write,
 *   write-zeroes, discard) waits on alloc_cond. So two writers never both
 *   allocate a cluster, and the L2 entries a writer replaces are the ones
 *   it saw.
 * - host I/O (host bytes): a request reading or writing host clusters
 *   outside the lock registers them; their refcount does not drop to zero
 *   (so they are not reused) until it is done.
 *
 * Readers never wait: until a write's L2 entries are set they see the old
 * mapping, whose clusters stay valid.
 */
#include <errno.h>
#include <inttypes.h>

#include "block/qcow2.h"

/* ---- tracking ---------------------------------------------------------- */

static void host_io_begin(BDRVQcow2State *s, Qcow2HostIO *io, uint64_t start,
                          uint64_t end)
{
    io->start = start;
    io->end = end;
    io->link = (GList) { .data = io };
    g_queue_push_tail_link(&s->host_io, &io->link);
}

static void host_io_end(BDRVQcow2State *s, Qcow2HostIO *io)
{
    g_queue_unlink(&s->host_io, &io->link);
}

bool qcow2_host_io_overlaps(BDRVQcow2State *s, uint64_t start, uint64_t end)
{
    GList *l;

    for (l = s->host_io.head; l; l = l->next) {
        Qcow2HostIO *io = l->data;

        if (io->start < end && start < io->end) {
            return true;
        }
    }
    return false;
}

static bool allocs_overlap(BDRVQcow2State *s, uint64_t first, uint64_t nb)
{
    GList *l;

    for (l = s->inflight_allocs.head; l; l = l->next) {
        Qcow2InflightAlloc *a = l->data;

        if (a->first < first + nb && first < a->first + a->nb) {
            return true;
        }
    }
    return false;
}

/* Waits (lock held) until no in-flight allocation overlaps the clusters. */
static void wait_for_allocs(BDRVQcow2State *s, uint64_t first, uint64_t nb)
{
    while (allocs_overlap(s, first, nb)) {
        g_cond_wait(&s->alloc_cond, &s->lock);
    }
}

static void maybe_process_frees(BlockDriverState *bs)
{
    BDRVQcow2State *s = bs->opaque;
    bool many;

    g_mutex_lock(&s->lock);
    many = qcow2_frees_pending_too_long(s);
    g_mutex_unlock(&s->lock);
    if (many) {
        /* A failure leaves them queued for the next flush. */
        qcow2_process_frees(bs);
    }
}

/* ---- lookup ------------------------------------------------------------ */

/*
 * The L2 entry of the cluster holding offset, and how many bytes from
 * offset (at most bytes) map alike: same type and, with a host cluster,
 * contiguous ones; never past the L2 table, one cluster if compressed.
 */
static int lookup(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                  uint64_t *entry, uint64_t *pnum)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cluster = offset >> s->cluster_bits;
    uint64_t idx = cluster & (s->l2_size - 1);
    uint64_t in_cluster = qcow2_offset_into_cluster(s, offset);
    uint64_t avail = MIN(bytes, ((s->l2_size - idx) << s->cluster_bits) -
                                in_cluster);
    uint64_t *l2, e0, n = 1;
    Qcow2ClusterType t;
    int ret = qcow2_get_l2(bs, cluster >> s->l2_bits, &l2);

    if (ret < 0) {
        return ret;
    }
    if (!l2) {
        *entry = 0;
        *pnum = avail;
        return 0;
    }
    e0 = l2[idx];
    t = qcow2_cluster_type(s, e0);
    if ((t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC) &&
        qcow2_offset_into_cluster(s, e0 & L2E_OFFSET_MASK)) {
        qcow2_cache_put(s->l2_cache, l2);
        return qcow2_signal_corruption(bs, "Cluster allocation offset %#"
                                       PRIx64 " unaligned (L2 index: %#"
                                       PRIx64 ")", e0 & L2E_OFFSET_MASK, idx);
    }
    while (t != QCOW2_CLUSTER_COMPRESSED &&
           (n << s->cluster_bits) < in_cluster + avail) {
        uint64_t e = l2[idx + n];

        if (qcow2_cluster_type(s, e) != t ||
            ((e0 & L2E_OFFSET_MASK) &&
             (e & L2E_OFFSET_MASK) !=
             (e0 & L2E_OFFSET_MASK) + (n << s->cluster_bits))) {
            break;
        }
        n++;
    }
    qcow2_cache_put(s->l2_cache, l2);
    *entry = e0;
    *pnum = MIN(avail, (n << s->cluster_bits) - in_cluster);
    return 0;
}

int qcow2_type_at(BlockDriverState *bs, uint64_t offset, Qcow2ClusterType *t)
{
    uint64_t entry = 0, n;
    int ret = lookup(bs, offset, 1, &entry, &n);

    *t = qcow2_cluster_type(bs->opaque, entry);
    return ret;
}

/* What an unallocated cluster reads: the backing file, zeroes past its end. */
static int read_backing(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                        uint8_t *buf)
{
    uint64_t len = bs->backing ? bdrv_child_getlength(bs->backing) : 0;
    uint64_t n = offset < len ? MIN(bytes, len - offset) : 0;
    int ret = 0;

    if (n) {
        ret = bdrv_pread(bs->backing, offset, n, buf, 0);
    }
    memset(buf + n, 0, bytes - n);
    return ret;
}

/* ---- read -------------------------------------------------------------- */

/*
 * Where a read at offset starts: *t, *entry and *n as lookup() says; for a
 * data or compressed cluster also *host, whose bytes stay registered in io
 * (not reused) until read_end().
 */
static int read_begin(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                      Qcow2HostIO *io, Qcow2ClusterType *t, uint64_t *entry,
                      uint64_t *n, uint64_t *host)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t len;
    int ret;

    *t = QCOW2_CLUSTER_UNALLOCATED;
    g_mutex_lock(&s->lock);
    ret = s->broken ? -EIO : lookup(bs, offset, bytes, entry, n);
    if (ret == 0) {
        *t = qcow2_cluster_type(s, *entry);
    }
    if (*t == QCOW2_CLUSTER_NORMAL) {
        *host = (*entry & L2E_OFFSET_MASK) + qcow2_offset_into_cluster(s, offset);
        host_io_begin(s, io, *host, *host + *n);
    } else if (*t == QCOW2_CLUSTER_COMPRESSED) {
        qcow2_compressed_range(s, *entry, host, &len);
        host_io_begin(s, io, *host, *host + len);
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

static void read_end(BlockDriverState *bs, Qcow2ClusterType t, Qcow2HostIO *io)
{
    BDRVQcow2State *s = bs->opaque;

    if (t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_COMPRESSED) {
        g_mutex_lock(&s->lock);
        host_io_end(s, io);
        g_mutex_unlock(&s->lock);
    }
}

int qcow2_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                 void *buf, BdrvRequestFlags flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint8_t *p = buf;

    while (bytes > 0) {
        uint64_t entry = 0, n = 0, host = 0;
        Qcow2ClusterType t;
        Qcow2HostIO io;
        int ret = read_begin(bs, offset, bytes, &io, &t, &entry, &n, &host);

        if (ret < 0) {
            return ret;
        }
        switch (t) {
        case QCOW2_CLUSTER_UNALLOCATED:
            ret = read_backing(bs, offset, n, p);
            break;
        case QCOW2_CLUSTER_ZERO_PLAIN:
        case QCOW2_CLUSTER_ZERO_ALLOC:
            memset(p, 0, n);
            break;
        case QCOW2_CLUSTER_NORMAL:
            ret = bdrv_pread(bs->file, host, n, p, 0);
            break;
        case QCOW2_CLUSTER_COMPRESSED: {
            g_autofree uint8_t *cluster = g_malloc(s->cluster_size);

            ret = qcow2_read_compressed(bs, entry, cluster);
            if (ret == 0) {
                memcpy(p, cluster + qcow2_offset_into_cluster(s, offset), n);
            }
            break;
        }
        }
        read_end(bs, t, &io);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
        p += n;
    }
    return 0;
}

/* Whether the backing file has all of [offset, offset+bytes). */
static bool backing_holds(BlockDriverState *bs, uint64_t offset, uint64_t bytes)
{
    int64_t len = bs->backing ? bdrv_child_getlength(bs->backing) : 0;

    return len > 0 && offset + bytes <= (uint64_t)len;
}

/*
 * Copy offload's source side, as QEMU's: data clusters from where they lie
 * in the file, unallocated ones from the backing file. Zeroes and
 * compressed clusters have no bytes to copy as they are: -ENOTSUP.
 */
int qcow2_copy_range_from(BlockDriverState *bs, int64_t offset, BdrvChild *dst,
                          int64_t dst_offset, int64_t bytes)
{
    while (bytes > 0) {
        uint64_t entry = 0, n = 0, host = 0;
        Qcow2ClusterType t;
        Qcow2HostIO io;
        int ret = read_begin(bs, offset, bytes, &io, &t, &entry, &n, &host);

        if (ret < 0) {
            return ret;
        }
        if (t == QCOW2_CLUSTER_NORMAL) {
            ret = bdrv_copy_range(bs->file, host, dst, dst_offset, n);
        } else if (t == QCOW2_CLUSTER_UNALLOCATED && backing_holds(bs, offset, n)) {
            ret = bdrv_copy_range(bs->backing, offset, dst, dst_offset, n);
        } else {
            ret = -ENOTSUP;
        }
        read_end(bs, t, &io);
        if (ret < 0) {
            return ret;
        }
        offset += n;
        dst_offset += n;
        bytes -= n;
    }
    return 0;
}

/* ---- write ------------------------------------------------------------- */

/* One allocating step of a write: guest bytes and the clusters they take. */
typedef struct WriteStep {
    uint64_t offset, bytes;
    uint64_t first, nb;         /* guest clusters */
    uint64_t host;              /* host offset of the first new cluster */
    uint64_t head_entry;        /* old L2 entries of the first and last */
    uint64_t tail_entry;
    bool reuse;                 /* preallocated zero cluster, in place */
} WriteStep;

/* Part [start, start+len) of a cluster's old content, for copy-on-write. */
static int cow_read(BlockDriverState *bs, uint64_t entry, uint64_t cluster_off,
                    uint64_t start, uint64_t len, uint8_t *dst,
                    uint8_t **inflated)
{
    BDRVQcow2State *s = bs->opaque;
    int ret;

    switch (qcow2_cluster_type(s, entry)) {
    case QCOW2_CLUSTER_UNALLOCATED:
        return read_backing(bs, cluster_off + start, len, dst);
    case QCOW2_CLUSTER_NORMAL:
        return bdrv_pread(bs->file, (entry & L2E_OFFSET_MASK) + start, len,
                          dst, 0);
    case QCOW2_CLUSTER_COMPRESSED:
        if (!*inflated) {
            *inflated = g_malloc(s->cluster_size);
            ret = qcow2_read_compressed(bs, entry, *inflated);
            if (ret < 0) {
                return ret;
            }
        }
        memcpy(dst, *inflated + start, len);
        return 0;
    default:
        memset(dst, 0, len);
        return 0;
    }
}

/*
 * Writes the step's clusters: whole clusters straight from buf, partial
 * ones (the first and the last) completed with their old content.
 */
static int write_data(BlockDriverState *bs, const WriteStep *w,
                      const uint8_t *buf)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size;
    uint64_t first_off = w->first << s->cluster_bits;
    uint64_t last_off = (w->first + w->nb - 1) << s->cluster_bits;
    uint64_t head = w->offset - first_off;
    uint64_t tail = ((w->first + w->nb) << s->cluster_bits) -
                    (w->offset + w->bytes);
    g_autofree uint8_t *bounce = NULL;
    g_autofree uint8_t *inflated_head = NULL, *inflated_tail = NULL;
    uint64_t done = 0, host = w->host, mid;
    int ret = 0;

    if (!head && !tail) {
        return bdrv_pwrite(bs->file, host, w->bytes, buf, 0);
    }
    bounce = g_malloc(cs);
    if (w->nb == 1) {
        if (head) {
            ret = cow_read(bs, w->head_entry, first_off, 0, head, bounce,
                           &inflated_head);
        }
        if (ret == 0 && tail) {
            ret = cow_read(bs, w->head_entry, first_off, cs - tail, tail,
                           bounce + cs - tail, &inflated_head);
        }
        if (ret < 0) {
            return ret;
        }
        memcpy(bounce + head, buf, w->bytes);
        return bdrv_pwrite(bs->file, host, cs, bounce, 0);
    }
    if (head) {
        ret = cow_read(bs, w->head_entry, first_off, 0, head, bounce,
                       &inflated_head);
        if (ret < 0) {
            return ret;
        }
        memcpy(bounce + head, buf, cs - head);
        ret = bdrv_pwrite(bs->file, host, cs, bounce, 0);
        if (ret < 0) {
            return ret;
        }
        done = cs - head;
        host += cs;
    }
    mid = w->bytes - done - (tail ? cs - tail : 0);
    if (mid) {
        ret = bdrv_pwrite(bs->file, host, mid, buf + done, 0);
        if (ret < 0) {
            return ret;
        }
        done += mid;
        host += mid;
    }
    if (tail) {
        memcpy(bounce, buf + done, cs - tail);
        ret = cow_read(bs, w->tail_entry, last_off, cs - tail, tail,
                       bounce + cs - tail, &inflated_tail);
        if (ret == 0) {
            ret = bdrv_pwrite(bs->file, host, cs, bounce, 0);
        }
    }
    return ret;
}

/*
 * Points the step's L2 entries at the new clusters (in the cached table,
 * written back later) and frees the old ones (deferred).
 */
static int link_l2(BlockDriverState *bs, const WriteStep *w)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t l1_index = w->first >> s->l2_bits;
    uint64_t idx = w->first & (s->l2_size - 1);
    uint64_t *l2, i;
    int ret = qcow2_get_l2_for_write(bs, l1_index, &l2);

    if (ret < 0) {
        return ret;
    }
    for (i = 0; i < w->nb; i++) {
        uint64_t old = l2[idx + i];

        l2[idx + i] = (w->host + (i << s->cluster_bits)) | QCOW_OFLAG_COPIED;
        if (!w->reuse) {
            qcow2_free_entry(bs, old, QCOW2_FREE_OTHER);
        }
    }
    qcow2_cache_mark_dirty(s->l2_cache, l2, idx * 8, (idx + w->nb) * 8);
    qcow2_cache_put(s->l2_cache, l2);
    return 0;
}

/* Whether a write to the cluster of this entry needs a new host cluster. */
static bool needs_new_cluster(BDRVQcow2State *s, uint64_t e)
{
    Qcow2ClusterType t = qcow2_cluster_type(s, e);

    return !((t == QCOW2_CLUSTER_NORMAL || t == QCOW2_CLUSTER_ZERO_ALLOC) &&
             (e & QCOW_OFLAG_COPIED));
}

/* Registers the host bytes a copy-on-write source is read from. */
static int cow_source_begin(BDRVQcow2State *s, uint64_t e, Qcow2HostIO *io)
{
    uint64_t start, len;

    switch (qcow2_cluster_type(s, e)) {
    case QCOW2_CLUSTER_NORMAL:
        host_io_begin(s, io, e & L2E_OFFSET_MASK,
                      (e & L2E_OFFSET_MASK) + s->cluster_size);
        return 1;
    case QCOW2_CLUSTER_COMPRESSED:
        qcow2_compressed_range(s, e, &start, &len);
        host_io_begin(s, io, start, start + len);
        return 1;
    default:
        return 0;
    }
}

/*
 * Writes a first part of [offset, offset+bytes): in place into clusters
 * that are ours alone, or into new clusters (copy-on-write). *done says
 * how much.
 */
static int write_step(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                      const uint8_t *buf, uint64_t *done)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cluster = offset >> s->cluster_bits;
    uint64_t idx = cluster & (s->l2_size - 1);
    uint64_t in_cluster = qcow2_offset_into_cluster(s, offset);
    uint64_t avail = MIN(bytes, ((s->l2_size - idx) << s->cluster_bits) -
                                in_cluster);
    Qcow2InflightAlloc alloc;
    Qcow2HostIO io[2];
    WriteStep w = { .offset = offset, .first = cluster, .nb = 1 };
    uint64_t *l2, e0;
    int nio = 0, ret;

    g_mutex_lock(&s->lock);
    wait_for_allocs(s, cluster, 1);
    ret = s->broken ? -EIO :
          qcow2_get_l2_for_write(bs, cluster >> s->l2_bits, &l2);
    if (ret < 0) {
        g_mutex_unlock(&s->lock);
        return ret;
    }
    e0 = l2[idx];
    if (!needs_new_cluster(s, e0) &&
        qcow2_cluster_type(s, e0) == QCOW2_CLUSTER_NORMAL) {
        /* In place: as many contiguous clusters of ours as follow. */
        uint64_t host = e0 & L2E_OFFSET_MASK, n = 1, len;

        while ((n << s->cluster_bits) < in_cluster + avail &&
               l2[idx + n] ==
               ((host + (n << s->cluster_bits)) | QCOW_OFLAG_COPIED) &&
               !allocs_overlap(s, cluster + n, 1)) {
            n++;
        }
        qcow2_cache_put(s->l2_cache, l2);
        if (qcow2_offset_into_cluster(s, host)) {
            ret = qcow2_signal_corruption(bs, "Cluster allocation offset %#"
                                          PRIx64 " unaligned", host);
            g_mutex_unlock(&s->lock);
            return ret;
        }
        len = MIN(avail, (n << s->cluster_bits) - in_cluster);
        host_io_begin(s, &io[0], host + in_cluster, host + in_cluster + len);
        g_mutex_unlock(&s->lock);
        ret = bdrv_pwrite(bs->file, host + in_cluster, len, buf, 0);
        g_mutex_lock(&s->lock);
        host_io_end(s, &io[0]);
        g_mutex_unlock(&s->lock);
        *done = len;
        return ret;
    }

    /* Allocating: as many clusters needing a new one as follow. */
    w.reuse = !needs_new_cluster(s, e0);
    while (!w.reuse && (w.nb << s->cluster_bits) < in_cluster + avail &&
           needs_new_cluster(s, l2[idx + w.nb]) &&
           !allocs_overlap(s, cluster + w.nb, 1)) {
        w.nb++;
    }
    w.bytes = MIN(avail, (w.nb << s->cluster_bits) - in_cluster);
    w.head_entry = e0;
    w.tail_entry = l2[idx + w.nb - 1];
    qcow2_cache_put(s->l2_cache, l2);
    if (w.reuse) {
        w.host = e0 & L2E_OFFSET_MASK;
    } else {
        int64_t host = qcow2_alloc_clusters(bs, w.nb);

        if (host < 0) {
            g_mutex_unlock(&s->lock);
            return host;
        }
        w.host = host;
    }
    alloc = (Qcow2InflightAlloc) { .first = cluster, .nb = w.nb };
    alloc.link.data = &alloc;
    g_queue_push_tail_link(&s->inflight_allocs, &alloc.link);
    nio += cow_source_begin(s, w.head_entry, &io[nio]);
    if (w.nb > 1) {
        nio += cow_source_begin(s, w.tail_entry, &io[nio]);
    }
    g_mutex_unlock(&s->lock);

    ret = write_data(bs, &w, buf);

    g_mutex_lock(&s->lock);
    while (nio > 0) {
        host_io_end(s, &io[--nio]);
    }
    if (ret == 0) {
        ret = link_l2(bs, &w);
    }
    if (ret < 0 && !w.reuse) {
        qcow2_free_unused_clusters(bs, w.host, w.nb);
    }
    g_queue_unlink(&s->inflight_allocs, &alloc.link);
    g_cond_broadcast(&s->alloc_cond);
    g_mutex_unlock(&s->lock);
    *done = w.bytes;
    return ret;
}

int qcow2_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                  const void *buf, BdrvRequestFlags flags)
{
    const uint8_t *p = buf;

    while (bytes > 0) {
        uint64_t n = 0;
        int ret = write_step(bs, offset, bytes, p, &n);

        if (ret < 0) {
            return ret;
        }
        offset += n;
        bytes -= n;
        p += n;
    }
    maybe_process_frees(bs);
    return 0;
}

/* ---- compressed write -------------------------------------------------- */

/*
 * One cluster, zero-padded if it is the image's partial last one: deflated
 * and packed after the last compressed data, or written as it is when
 * deflating does not make it smaller. As in QEMU, compressed data never
 * replaces a host cluster (-EIO). Order: references, data, then the L2
 * entry (all but the data in the caches, whose write-back puts the
 * references first); the cluster is an in-flight allocation meanwhile.
 */
static int write_compressed_cluster(BlockDriverState *bs, uint64_t offset,
                                    uint64_t bytes, const uint8_t *buf)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cluster = offset >> s->cluster_bits;
    g_autofree uint8_t *padded = NULL;
    g_autofree uint8_t *out = g_malloc(s->cluster_size);
    Qcow2InflightAlloc alloc = { .first = cluster, .nb = 1 };
    uint64_t entry = 0, n, *l2;
    int64_t len, host;
    int ret;

    if (bytes < s->cluster_size) {
        padded = g_malloc0(s->cluster_size);
        memcpy(padded, buf, bytes);
        buf = padded;
    }
    len = qcow2_deflate_cluster(s, buf, out);
    if (len == -ENOSPC) {
        return qcow2_pwritev(bs, offset, bytes, buf, 0);
    }
    if (len < 0) {
        return len;
    }

    g_mutex_lock(&s->lock);
    wait_for_allocs(s, cluster, 1);
    ret = s->broken ? -EIO : lookup(bs, offset, 1, &entry, &n);
    if (ret == 0 && (entry & L2E_OFFSET_MASK)) {
        ret = -EIO;
    }
    host = ret < 0 ? ret : qcow2_alloc_bytes(bs, len);
    if (host < 0) {
        g_mutex_unlock(&s->lock);
        return host;
    }
    entry = qcow2_compressed_entry(s, host, len);
    alloc.link.data = &alloc;
    g_queue_push_tail_link(&s->inflight_allocs, &alloc.link);
    g_mutex_unlock(&s->lock);

    ret = bdrv_pwrite(bs->file, host, len, out, 0);

    g_mutex_lock(&s->lock);
    if (ret == 0) {
        ret = qcow2_get_l2_for_write(bs, cluster >> s->l2_bits, &l2);
    }
    if (ret == 0) {
        /* What it replaces (unallocated, plain zero) holds no host bytes. */
        qcow2_set_l2_entries(bs, l2, cluster & (s->l2_size - 1), 1, &entry);
        qcow2_cache_put(s->l2_cache, l2);
    }
    if (ret < 0) {
        qcow2_free_entry(bs, entry, QCOW2_FREE_OTHER);
    }
    g_queue_unlink(&s->inflight_allocs, &alloc.link);
    g_cond_broadcast(&s->alloc_cond);
    g_mutex_unlock(&s->lock);
    return ret;
}

int qcow2_pwritev_compressed(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, const void *buf)
{
    BDRVQcow2State *s = bs->opaque;
    const uint8_t *p = buf;
    uint64_t size;
    int ret = 0;

    g_mutex_lock(&s->lock);
    size = s->size;
    g_mutex_unlock(&s->lock);
    /* QEMU's rule: whole clusters, but for the image's last one. */
    if (qcow2_offset_into_cluster(s, offset) ||
        (qcow2_offset_into_cluster(s, bytes) && (uint64_t)(offset + bytes) != size)) {
        return -EINVAL;
    }
    while (bytes > 0 && ret == 0) {
        uint64_t n = MIN((uint64_t)bytes, s->cluster_size);

        ret = write_compressed_cluster(bs, offset, n, p);
        offset += n;
        bytes -= n;
        p += n;
    }
    maybe_process_frees(bs);
    return ret;
}

/* ---- write-zeroes and discard ------------------------------------------ */

/* Applies a zero or discard change to clusters, waiting for writers first. */
static int change_range(BlockDriverState *bs, uint64_t first, uint64_t nb,
                        bool discard, bool unmap)
{
    BDRVQcow2State *s = bs->opaque;
    int ret = 0;

    g_mutex_lock(&s->lock);
    while (ret == 0 && nb > 0) {
        uint64_t n = MIN(nb, s->l2_size - (first & (s->l2_size - 1)));

        wait_for_allocs(s, first, n);
        if (s->broken) {
            ret = -EIO;
        } else if (discard) {
            ret = qcow2_discard_clusters(bs, first, n, false, QCOW2_FREE_REQUEST);
        } else {
            ret = qcow2_zero_clusters(bs, first, n, unmap);
        }
        first += n;
        nb -= n;
    }
    g_mutex_unlock(&s->lock);
    maybe_process_frees(bs);
    return ret;
}

/*
 * A cluster that write-zeroes covers in part (lock held, writers waited
 * for): whether it reads as zeroes already.
 */
static bool reads_zero_locked(BlockDriverState *bs, uint64_t cluster, int *err)
{
    BDRVQcow2State *s = bs->opaque;
    Qcow2ClusterType t;

    *err = s->broken ? -EIO : qcow2_type_at(bs, cluster << s->cluster_bits, &t);
    return *err == 0 &&
           (t == QCOW2_CLUSTER_ZERO_PLAIN || t == QCOW2_CLUSTER_ZERO_ALLOC ||
            (t == QCOW2_CLUSTER_UNALLOCATED &&
             (!bs->backing || (cluster << s->cluster_bits) >=
                              (uint64_t)bdrv_child_getlength(bs->backing))));
}

/* 1 if the cluster reads as zeroes, 0 if not, or -errno. */
static int partial_reads_zero(BlockDriverState *bs, uint64_t cluster)
{
    BDRVQcow2State *s = bs->opaque;
    bool zero;
    int err;

    g_mutex_lock(&s->lock);
    wait_for_allocs(s, cluster, 1);
    zero = reads_zero_locked(bs, cluster, &err);
    g_mutex_unlock(&s->lock);
    return err < 0 ? err : zero;
}

/*
 * Zeroes part of a cluster. If the cluster reads as zeroes already, it
 * gets the zero flag, as QEMU does (checked and changed in one hold of the
 * lock, so that a concurrent write to the rest of it is not lost);
 * otherwise the part is written as data.
 */
static int zero_partial(BlockDriverState *bs, uint64_t offset, uint64_t bytes,
                        BdrvRequestFlags flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cluster = offset >> s->cluster_bits;
    g_autofree uint8_t *zeroes = NULL;
    int ret;

    g_mutex_lock(&s->lock);
    wait_for_allocs(s, cluster, 1);
    if (reads_zero_locked(bs, cluster, &ret)) {
        ret = qcow2_zero_clusters(bs, cluster, 1, false);
        g_mutex_unlock(&s->lock);
        return ret;
    }
    g_mutex_unlock(&s->lock);
    if (ret < 0) {
        return ret;
    }
    if (flags & BDRV_REQ_NO_FALLBACK) {
        return -ENOTSUP;
    }
    zeroes = g_malloc0(bytes);
    return qcow2_pwritev(bs, offset, bytes, zeroes, 0);
}

int qcow2_pwrite_zeroes(BlockDriverState *bs, int64_t offset, int64_t bytes,
                        BdrvRequestFlags flags)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size, end = offset + bytes, size;
    uint64_t lo = (offset + cs - 1) & ~(cs - 1), hi;
    int ret = 0;

    if (s->version < 3) {
        return -ENOTSUP;            /* no zero flag: zeroes are data */
    }
    g_mutex_lock(&s->lock);
    size = s->size;
    g_mutex_unlock(&s->lock);
    /* The end of the image counts as a cluster boundary. */
    hi = end == size ? (end + cs - 1) & ~(cs - 1) : end & ~(cs - 1);

    if (flags & BDRV_REQ_NO_FALLBACK) {
        /* Fail before changing anything if a part would be data. */
        if (offset & (cs - 1)) {
            ret = partial_reads_zero(bs, offset / cs);
            if (ret <= 0) {
                return ret < 0 ? ret : -ENOTSUP;
            }
        }
        if (hi < end && hi >= lo) {
            ret = partial_reads_zero(bs, hi / cs);
            if (ret <= 0) {
                return ret < 0 ? ret : -ENOTSUP;
            }
        }
        ret = 0;
    }
    if (lo > hi) {
        /* Inside one cluster, touching neither boundary. */
        return zero_partial(bs, offset, bytes, flags);
    }
    if (lo > (uint64_t)offset) {
        ret = zero_partial(bs, offset, MIN(lo, end) - offset, flags);
    }
    if (ret == 0 && hi > lo) {
        ret = change_range(bs, lo / cs, (hi - lo) / cs, false,
                           flags & BDRV_REQ_MAY_UNMAP);
    }
    if (ret == 0 && hi < end) {
        ret = zero_partial(bs, hi, end - hi, flags);
    }
    return ret;
}

int qcow2_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t cs = s->cluster_size, end = offset + bytes, size;
    uint64_t lo = (offset + cs - 1) & ~(cs - 1), hi;

    /* As QEMU: v2 cannot say "zeroes", and the backing must not show. */
    if (s->version < 3 && bs->backing) {
        return 0;
    }
    g_mutex_lock(&s->lock);
    size = s->size;
    g_mutex_unlock(&s->lock);
    hi = end == size ? (end + cs - 1) & ~(cs - 1) : end & ~(cs - 1);
    if (lo >= hi) {
        return 0;                   /* partial clusters are left alone */
    }
    return change_range(bs, lo / cs, (hi - lo) / cs, true, false);
}

/* ---- block status ------------------------------------------------------ */

int qcow2_block_status(BlockDriverState *bs, bool want_zero, int64_t offset,
                       int64_t bytes, int64_t *pnum, int64_t *map,
                       BlockDriverState **file)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t entry, n;
    int ret;

    g_mutex_lock(&s->lock);
    ret = s->broken ? -EIO : lookup(bs, offset, bytes, &entry, &n);
    g_mutex_unlock(&s->lock);
    if (ret < 0) {
        return ret;
    }
    *pnum = n;
    switch (qcow2_cluster_type(s, entry)) {
    case QCOW2_CLUSTER_UNALLOCATED:
        return 0;
    case QCOW2_CLUSTER_ZERO_PLAIN:
        return BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED;
    case QCOW2_CLUSTER_COMPRESSED:
        return BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED;
    case QCOW2_CLUSTER_ZERO_ALLOC:
        ret = BDRV_BLOCK_ZERO;
        break;
    default:
        ret = BDRV_BLOCK_DATA;
        break;
    }
    *map = (entry & L2E_OFFSET_MASK) + qcow2_offset_into_cluster(s, offset);
    *file = bs->file->bs;
    return ret | BDRV_BLOCK_OFFSET_VALID | BDRV_BLOCK_ALLOCATED;
}
