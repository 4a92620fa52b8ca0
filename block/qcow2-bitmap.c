/*
 * qcow2: persistent dirty bitmaps, kept in the image's bitmaps extension
 * as QEMU keeps them (docs/devel/qcow2.md has the layout and the rules).
 *
 * The block layer holds the bitmaps in memory (block/dirty-bitmap.c);
 * this file loads them at open and stores them at close. While the image
 * is open read-write every stored bitmap is marked in use in the image,
 * so that after a crash the next open finds it inconsistent.
 *
 * Marking them in use only changes flags: the directory is rewritten in
 * place, as QEMU does, with the autoclear bit cleared meanwhile (a crash
 * then leaves bitmaps the next open ignores, never a torn directory it
 * trusts). Every other change writes data, tables and directory to new
 * clusters, flushes them with their refcounts, switches the header
 * extension to them in one write, and only then frees the old clusters
 * (after a flush). A crash at any point leaves the old bitmaps or the new
 * ones, and at worst leaked clusters.
 *
 * Main thread only. Allocating and freeing clusters and writing the header
 * take s->lock, which the request paths share.
 */
#include <errno.h>
#include <inttypes.h>

#include "block/dirty-bitmap.h"
#include "block/qcow2.h"

/*
 * The extension's data (24 bytes, big-endian):
 *    0 u32 nb_bitmaps (1..65535)   4 u32 reserved (0)
 *    8 u64 directory size         16 u64 directory offset (cluster-aligned)
 * A directory entry, 8-byte aligned:
 *    0 u64 table offset           8 u32 table size (entries)
 *   12 u32 flags: bit 0 in use, bit 1 auto (enabled); others reserved
 *   16 u8 type (1: dirty tracking)  17 u8 granularity bits
 *   18 u16 name size              20 u32 extra data size (QEMU: 0)
 *   24 extra data, the name (no NUL), zeroes to the next multiple of 8
 * Table entry: bits 9-55 a data cluster; 0: all zeroes (bit 0 set: all
 * ones). Data: bit n (bit n % 8 of byte n / 8) is the granule at n.
 */
#define BITMAPS_EXT_SIZE        24
#define DIR_ENTRY_HEADER        24
#define QCOW2_MAX_BITMAPS       65535
#define MAX_DIRECTORY_SIZE      (1024 * QCOW2_MAX_BITMAPS)
#define MAX_TABLE_SIZE          0x8000000u
#define MAX_DATA_SIZE           0x20000000u     /* 512 MiB */
#define MIN_GRANULARITY_BITS    9
#define MAX_GRANULARITY_BITS    31
#define MAX_NAME_SIZE           1023
#define FLAG_IN_USE             (1u << 0)
#define FLAG_AUTO               (1u << 1)
#define FLAGS_RESERVED          (~(FLAG_IN_USE | FLAG_AUTO))
#define TYPE_DIRTY_TRACKING     1
#define TABLE_OFFSET_MASK       UINT64_C(0x00fffffffffffe00)
#define TABLE_RESERVED_MASK     UINT64_C(0xff000000000001fe)
#define TABLE_ALL_ONES          UINT64_C(1)

G_STATIC_ASSERT(MAX_NAME_SIZE == BDRV_BITMAP_MAX_NAME_SIZE);

/* A directory entry in host order. */
typedef struct BitmapEntry {
    uint64_t table_offset;      /* 0: not written yet (a new bitmap) */
    uint32_t table_size;
    uint32_t flags;
    uint8_t granularity_bits;
    char *name;
    BdrvDirtyBitmap *bitmap;    /* store: what goes into this entry */
} BitmapEntry;

static void entry_free(gpointer p)
{
    BitmapEntry *e = p;

    g_free(e->name);
    g_free(e);
}

static uint64_t entry_size(size_t name_len)
{
    return (DIR_ENTRY_HEADER + name_len + 7) & ~UINT64_C(7);
}

static uint64_t div_round_up(uint64_t n, uint64_t d)
{
    return n / d + !!(n % d);
}

static uint64_t table_clusters(BDRVQcow2State *s, uint32_t table_size)
{
    return qcow2_size_to_clusters(s, table_size * UINT64_C(8));
}

/* Bytes of bitmap data for size bytes of node at granularity. */
static uint64_t data_bytes(uint64_t size, uint32_t granularity)
{
    return div_round_up(div_round_up(size, granularity), 8);
}

/* ---- the extension and the header -------------------------------------- */

int qcow2_read_bitmaps_ext(BlockDriverState *bs, const uint8_t *data,
                           uint32_t len, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint32_t nb;
    uint64_t size, offset;

    if (len != BITMAPS_EXT_SIZE) {
        error_setg(errp, "bitmaps_ext: Invalid extension length");
        return -EINVAL;
    }
    if (!(s->autoclear_features & QCOW2_AUTOCLEAR_BITMAPS)) {
        /* QEMU's warning: the image is fine, its bitmaps are stale. */
        fprintf(stderr, "qcow2: warning: %s\nSome clusters may be leaked, run "
                "'qemu-img check -r' on the image file to fix.\n",
                s->version < 3 ?
                "This qcow2 v2 image contains bitmaps, but they may have been "
                "modified by a program without persistent bitmap support; so "
                "now they must all be considered inconsistent" :
                "a program lacking bitmap support modified this file, so all "
                "bitmaps are now considered inconsistent");
        return 0;
    }
    nb = qcow2_ld32(data);
    size = qcow2_ld64(data + 8);
    offset = qcow2_ld64(data + 16);
    if (qcow2_ld32(data + 4)) {
        error_setg(errp, "bitmaps_ext: Reserved field is not zero");
        return -EINVAL;
    }
    if (nb > QCOW2_MAX_BITMAPS) {
        error_setg(errp, "bitmaps_ext: Image has %" PRIu32 " bitmaps, "
                   "exceeding the QEMU supported maximum of %d", nb,
                   QCOW2_MAX_BITMAPS);
        return -EINVAL;
    }
    if (nb == 0) {
        error_setg(errp, "found bitmaps extension with zero bitmaps");
        return -EINVAL;
    }
    if (qcow2_offset_into_cluster(s, offset)) {
        error_setg(errp, "bitmaps_ext: invalid bitmap directory offset");
        return -EINVAL;
    }
    if (size > MAX_DIRECTORY_SIZE) {
        error_setg(errp, "bitmaps_ext: bitmap directory size (%" PRIu64 ") "
                   "exceeds the maximum supported size (%d)", size,
                   MAX_DIRECTORY_SIZE);
        return -EINVAL;
    }
    s->nb_bitmaps = nb;
    s->bitmap_directory_size = size;
    s->bitmap_directory_offset = offset;
    return 0;
}

/*
 * Points the header at a directory (nb 0: none), in one write of the
 * header's first bytes: the bitmaps extension replaced, added or dropped
 * (the others kept as they are), the backing file name moved behind the
 * extensions if they grew over it, and the autoclear bitmaps bit set
 * while there are bitmaps. Under s->lock, as every header write.
 */
static int write_bitmaps_ext(BlockDriverState *bs, uint32_t nb,
                             uint64_t dir_size, uint64_t dir_offset)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint8_t *old = NULL, *new = NULL;
    uint64_t autoclear = s->autoclear_features & ~QCOW2_AUTOCLEAR_BITMAPS;
    size_t len, in, out, ext = 0, old_end, new_end;
    Qcow2Header h;
    int ret;

    g_assert(s->version >= 3);
    old = qcow2_read_first_cluster(bs, &h, &len, NULL);
    if (!old) {
        return -EIO;
    }
    new = g_malloc0(len);
    memcpy(new, old, h.header_length);
    /* Copy the others; the bitmaps extension keeps its place (same size). */
    in = out = h.header_length;
    while (in + 8 <= len && qcow2_ld32(old + in) != QCOW2_EXT_END) {
        uint64_t step = 8 + ((qcow2_ld32(old + in + 4) + UINT64_C(7)) & ~7);

        if (step > len - in) {
            return -EIO;    /* checked at open: the file changed under us */
        }
        if (qcow2_ld32(old + in) != QCOW2_EXT_BITMAPS) {
            memcpy(new + out, old + in, step);
            out += step;
        } else if (nb && !ext) {
            ext = out;
            out += 8 + BITMAPS_EXT_SIZE;
        }
        in += step;
    }
    if (nb && !ext) {
        ext = out;
        out += 8 + BITMAPS_EXT_SIZE;
    }
    old_end = MIN(in + 8, len);
    new_end = out + 8;      /* the end marker: zeroes */
    if (new_end > len) {
        return -ENOSPC;
    }
    if (ext) {
        qcow2_st32(new + ext, QCOW2_EXT_BITMAPS);
        qcow2_st32(new + ext + 4, BITMAPS_EXT_SIZE);
        qcow2_st32(new + ext + 8, nb);
        qcow2_st64(new + ext + 16, dir_size);
        qcow2_st64(new + ext + 24, dir_offset);
        autoclear |= QCOW2_AUTOCLEAR_BITMAPS;
    }
    if (h.backing_file_offset) {
        size_t name_at = MAX(h.backing_file_offset, new_end);

        /* QEMU puts the name after the extensions; elsewhere is unknown. */
        if (h.backing_file_offset < old_end) {
            return -ENOTSUP;
        }
        old_end = h.backing_file_offset + h.backing_file_size;
        new_end = name_at + h.backing_file_size;
        if (new_end > len) {
            return -ENOSPC;
        }
        memcpy(new + name_at, old + h.backing_file_offset,
               h.backing_file_size);
        qcow2_st64(new + offsetof(Qcow2Header, backing_file_offset), name_at);
    }
    qcow2_st64(new + offsetof(Qcow2Header, autoclear_features), autoclear);
    ret = bdrv_pwrite(bs->file, 0, MAX(old_end, new_end), new, 0);
    if (ret < 0) {
        return ret;
    }
    s->autoclear_features = autoclear;
    s->nb_bitmaps = nb;
    s->bitmap_directory_size = dir_size;
    s->bitmap_directory_offset = dir_offset;
    return 0;
}

/* ---- the directory ----------------------------------------------------- */

/* QEMU's checks of an entry. */
static bool entry_ok(BlockDriverState *bs, const BitmapEntry *e,
                     uint16_t name_size)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t data = (uint64_t)e->table_size << s->cluster_bits;

    if (!e->table_size || !e->table_offset ||
        qcow2_offset_into_cluster(s, e->table_offset) ||
        e->table_size > MAX_TABLE_SIZE ||
        e->granularity_bits < MIN_GRANULARITY_BITS ||
        e->granularity_bits > MAX_GRANULARITY_BITS ||
        (e->flags & FLAGS_RESERVED) || name_size > MAX_NAME_SIZE ||
        data > MAX_DATA_SIZE) {
        return false;
    }
    /* A bitmap in use may be stale (not stored after a resize). */
    return (e->flags & FLAG_IN_USE) ||
           (uint64_t)bdrv_getlength(bs) <= (data * 8) << e->granularity_bits;
}

/* The image's directory, in its order, with QEMU's checks and texts. */
static GPtrArray *read_directory(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func(entry_free);
    g_autofree uint8_t *dir = NULL;
    uint64_t size = s->bitmap_directory_size, off = 0;
    int ret;

    if (!s->nb_bitmaps) {
        return g_steal_pointer(&list);
    }
    if (!size) {
        error_setg(errp, "Requested bitmap directory size is zero");
        return NULL;
    }
    dir = g_malloc(size);
    ret = bdrv_pread(bs->file, s->bitmap_directory_offset, size, dir, 0);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to read bitmap directory");
        return NULL;
    }
    while (off < size) {
        const uint8_t *p = dir + off;
        BitmapEntry *e;
        uint16_t name_size;
        uint32_t extra;

        if (size - off < DIR_ENTRY_HEADER) {
            goto broken;
        }
        if (list->len == s->nb_bitmaps) {
            error_setg(errp, "More bitmaps found than specified in header "
                       "extension");
            return NULL;
        }
        name_size = qcow2_ld16(p + 18);
        extra = qcow2_ld32(p + 20);
        if (entry_size((uint64_t)name_size + extra) > size - off) {
            goto broken;
        }
        if (extra) {
            error_setg(errp, "Bitmap extra data is not supported");
            return NULL;
        }
        e = g_new0(BitmapEntry, 1);
        e->table_offset = qcow2_ld64(p);
        e->table_size = qcow2_ld32(p + 8);
        e->flags = qcow2_ld32(p + 12);
        e->granularity_bits = p[17];
        e->name = g_strndup((const char *)p + DIR_ENTRY_HEADER, name_size);
        g_ptr_array_add(list, e);
        if (p[16] != TYPE_DIRTY_TRACKING || !entry_ok(bs, e, name_size)) {
            error_setg(errp, "Bitmap '%.*s' doesn't satisfy the constraints",
                       (int)name_size, p + DIR_ENTRY_HEADER);
            return NULL;
        }
        off += entry_size(name_size);
    }
    if (list->len != s->nb_bitmaps) {
        error_setg(errp, "Less bitmaps found than specified in header "
                   "extension");
        return NULL;
    }
    return g_steal_pointer(&list);

broken:
    error_setg(errp, "Broken bitmap directory");
    return NULL;
}

static BitmapEntry *find_entry(GPtrArray *list, const char *name)
{
    guint i;

    for (i = 0; i < list->len; i++) {
        BitmapEntry *e = g_ptr_array_index(list, i);

        if (!strcmp(e->name, name)) {
            return e;
        }
    }
    return NULL;
}

/* ---- tables and data --------------------------------------------------- */

/* A bitmap's table in host order, each entry checked; -errno if bad. */
static int read_table(BlockDriverState *bs, uint64_t offset, uint32_t size,
                      uint64_t **table)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint64_t *t = g_new(uint64_t, size);
    uint32_t i;
    int ret = bdrv_pread(bs->file, offset, size * UINT64_C(8), t, 0);

    if (ret < 0) {
        return ret;
    }
    for (i = 0; i < size; i++) {
        uint64_t data = (t[i] = GUINT64_FROM_BE(t[i])) & TABLE_OFFSET_MASK;

        if ((t[i] & TABLE_RESERVED_MASK) ||
            (data && ((t[i] & TABLE_ALL_ONES) ||
                      qcow2_offset_into_cluster(s, data)))) {
            return -EINVAL;
        }
    }
    *table = g_steal_pointer(&t);
    return 0;
}

/*
 * Gives clusters back: once the flush after their last reference went
 * (referenced), or at once if nothing ever linked them. Under s->lock.
 */
static void release_clusters(BlockDriverState *bs, uint64_t offset,
                             uint64_t nb, bool referenced)
{
    if (referenced) {
        qcow2_free_clusters_later(bs, offset, nb, QCOW2_FREE_OTHER);
    } else {
        qcow2_free_unused_clusters(bs, offset, nb);
    }
}

/* Frees a table and its data clusters; one that does not read is leaked. */
static void free_table(BlockDriverState *bs, uint64_t offset, uint32_t size,
                       bool referenced)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint64_t *table = NULL;
    uint32_t i;

    if (read_table(bs, offset, size, &table) < 0) {
        return;
    }
    g_mutex_lock(&s->lock);
    for (i = 0; i < size; i++) {
        if (table[i] & TABLE_OFFSET_MASK) {
            release_clusters(bs, table[i] & TABLE_OFFSET_MASK, 1, referenced);
        }
    }
    release_clusters(bs, offset, table_clusters(s, size), referenced);
    g_mutex_unlock(&s->lock);
}

/* Fills bm (just created, clean) from its table. */
static int load_data(BlockDriverState *bs, const uint64_t *table,
                     uint32_t table_size, BdrvDirtyBitmap *bm)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t size = bdrv_dirty_bitmap_size(bm);
    uint64_t per_cluster = bdrv_dirty_bitmap_serialization_coverage(
        s->cluster_size, bm);
    g_autofree uint8_t *buf = NULL;
    uint32_t i;
    int ret;

    /* The table covers the node exactly, as QEMU requires. */
    if (qcow2_size_to_clusters(s, bdrv_dirty_bitmap_serialization_size(
            bm, 0, size)) != table_size) {
        return -EINVAL;
    }
    buf = g_malloc(s->cluster_size);
    for (i = 0; i < table_size; i++) {
        uint64_t start = i * per_cluster;
        uint64_t count = MIN(size - start, per_cluster);
        uint64_t data = table[i] & TABLE_OFFSET_MASK;

        if (data) {
            ret = bdrv_pread(bs->file, data, s->cluster_size, buf, 0);
            if (ret < 0) {
                return ret;
            }
            bdrv_dirty_bitmap_deserialize_part(bm, buf, start, count);
        } else if (table[i] & TABLE_ALL_ONES) {
            bdrv_dirty_bitmap_deserialize_ones(bm, start, count);
        }
    }
    bdrv_dirty_bitmap_deserialize_finish(bm);
    return 0;
}

/* Creates the bitmap of e on bs; its bits unless it was left in use. */
static BdrvDirtyBitmap *load_bitmap(BlockDriverState *bs, const BitmapEntry *e,
                                    Error **errp)
{
    g_autofree uint64_t *table = NULL;
    BdrvDirtyBitmap *bm;
    int ret;

    bm = bdrv_create_dirty_bitmap(bs, 1u << e->granularity_bits, e->name,
                                  errp);
    if (!bm || (e->flags & FLAG_IN_USE)) {
        return bm;
    }
    ret = read_table(bs, e->table_offset, e->table_size, &table);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not read bitmap_table table from "
                         "image for bitmap '%s'", e->name);
    } else {
        ret = load_data(bs, table, e->table_size, bm);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Could not read bitmap '%s' from "
                             "image", e->name);
        }
    }
    if (ret < 0) {
        bdrv_release_dirty_bitmap(bm);
        return NULL;
    }
    return bm;
}

/* Writes a table (host order) to new clusters at *offset. */
static int write_table(BlockDriverState *bs, const uint64_t *table,
                       uint32_t size, int64_t *offset)
{
    BDRVQcow2State *s = bs->opaque;
    g_autofree uint64_t *be = g_new(uint64_t, size);
    uint32_t i;
    int ret;

    for (i = 0; i < size; i++) {
        be[i] = GUINT64_TO_BE(table[i]);
    }
    g_mutex_lock(&s->lock);
    *offset = qcow2_alloc_clusters(bs, table_clusters(s, size));
    g_mutex_unlock(&s->lock);
    if (*offset < 0) {
        return *offset;
    }
    ret = bdrv_pwrite(bs->file, *offset, size * UINT64_C(8), be, 0);
    if (ret < 0) {
        g_mutex_lock(&s->lock);
        qcow2_free_unused_clusters(bs, *offset, table_clusters(s, size));
        g_mutex_unlock(&s->lock);
    }
    return ret;
}

/*
 * Writes e->bitmap to new clusters: a data cluster for each stretch with
 * a dirty bit (clean stretches get 0 entries, as QEMU writes them), then
 * the table. Sets e's table; on failure frees what it took.
 */
static int write_bitmap(BlockDriverState *bs, BitmapEntry *e, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    BdrvDirtyBitmap *bm = e->bitmap;
    uint64_t size = bdrv_dirty_bitmap_size(bm);
    uint64_t per_cluster = bdrv_dirty_bitmap_serialization_coverage(
        s->cluster_size, bm);
    uint32_t table_size = qcow2_size_to_clusters(
        s, bdrv_dirty_bitmap_serialization_size(bm, 0, size));
    g_autofree uint64_t *table = g_new0(uint64_t, table_size);
    g_autofree uint8_t *buf = g_malloc(s->cluster_size);
    int64_t next = 0, at;
    uint32_t i;
    int ret = 0;

    while ((uint64_t)next < size &&
           (next = bdrv_dirty_bitmap_next_dirty(bm, next, size - next)) >= 0) {
        uint64_t start = next - next % per_cluster;
        uint64_t count = MIN(size - start, per_cluster);
        uint64_t used = bdrv_dirty_bitmap_serialization_size(bm, start, count);

        g_mutex_lock(&s->lock);
        at = qcow2_alloc_clusters(bs, 1);
        g_mutex_unlock(&s->lock);
        if (at < 0) {
            ret = at;
            break;
        }
        table[start / per_cluster] = at;
        bdrv_dirty_bitmap_serialize_part(bm, buf, start, count);
        memset(buf + used, 0, s->cluster_size - used);
        ret = bdrv_pwrite(bs->file, at, s->cluster_size, buf, 0);
        if (ret < 0) {
            break;
        }
        next = start + count;
    }
    ret = ret < 0 ? ret : write_table(bs, table, table_size, &at);
    if (ret == 0) {
        e->table_offset = at;
        e->table_size = table_size;
        return 0;
    }
    g_mutex_lock(&s->lock);
    for (i = 0; i < table_size; i++) {
        if (table[i]) {
            qcow2_free_unused_clusters(bs, table[i], 1);
        }
    }
    g_mutex_unlock(&s->lock);
    error_setg_errno(errp, -ret, "Failed to write bitmap '%s' to file",
                     e->name);
    return ret;
}

/* The directory of list, on-disk form: *size bytes, g_free() it. */
static uint8_t *build_directory(GPtrArray *list, uint64_t *size)
{
    uint8_t *dir;
    uint64_t off = 0;
    guint i;

    *size = 0;
    for (i = 0; i < list->len; i++) {
        *size += entry_size(strlen(((BitmapEntry *)list->pdata[i])->name));
    }
    dir = g_malloc0(*size);
    for (i = 0; i < list->len; i++) {
        const BitmapEntry *e = g_ptr_array_index(list, i);
        size_t name_size = strlen(e->name);

        qcow2_st64(dir + off, e->table_offset);
        qcow2_st32(dir + off + 8, e->table_size);
        qcow2_st32(dir + off + 12, e->flags);
        dir[off + 16] = TYPE_DIRTY_TRACKING;
        dir[off + 17] = e->granularity_bits;
        qcow2_st16(dir + off + 18, name_size);
        memcpy(dir + off + DIR_ENTRY_HEADER, e->name, name_size);
        off += entry_size(name_size);
    }
    return dir;
}

/*
 * Makes list the image's directory: written to new clusters, flushed with
 * everything written before it and the refcounts of it all, then the
 * header switched to it; the old directory goes to the frees queue. On
 * failure before the switch the image is as it was.
 */
static int switch_directory(BlockDriverState *bs, GPtrArray *list)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t old_offset = s->bitmap_directory_offset;
    uint64_t old_size = s->bitmap_directory_size;
    uint32_t old_nb = s->nb_bitmaps;
    uint64_t size;
    g_autofree uint8_t *dir = build_directory(list, &size);
    int64_t at = 0;
    int ret = 0;

    if (list->len > QCOW2_MAX_BITMAPS || size > MAX_DIRECTORY_SIZE) {
        return -EINVAL;
    }
    if (list->len) {
        g_mutex_lock(&s->lock);
        at = qcow2_alloc_clusters(bs, qcow2_size_to_clusters(s, size));
        g_mutex_unlock(&s->lock);
        if (at < 0) {
            return at;
        }
        ret = bdrv_pwrite(bs->file, at, size, dir, 0);
    }
    if (ret == 0) {
        g_mutex_lock(&s->lock);
        ret = qcow2_write_refcounts(bs, false);
        g_mutex_unlock(&s->lock);
    }
    ret = ret < 0 ? ret : bdrv_flush(bs->file->bs);
    if (ret == 0) {
        g_mutex_lock(&s->lock);
        ret = write_bitmaps_ext(bs, list->len, size, at);
        if (ret == 0 && old_nb) {
            qcow2_free_clusters_later(bs, old_offset,
                                      qcow2_size_to_clusters(s, old_size),
                                      QCOW2_FREE_OTHER);
        }
        g_mutex_unlock(&s->lock);
        /* A failed header write may have landed in part: leak, not free. */
        return ret;
    }
    if (at) {
        g_mutex_lock(&s->lock);
        qcow2_free_unused_clusters(bs, at, qcow2_size_to_clusters(s, size));
        g_mutex_unlock(&s->lock);
    }
    return ret;
}

/*
 * Rewrites the directory where it is with the flags of list (the same
 * entries otherwise), as QEMU marks bitmaps in use: the autoclear bit is
 * cleared around the write, so that a crash meanwhile leaves the bitmaps
 * stale (ignored at the next open), not a directory half written. Should
 * it fail with the bit cleared, the image's bitmaps are stale from then
 * on, as if another program had written the image.
 */
static int rewrite_directory_in_place(BlockDriverState *bs, GPtrArray *list)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t size;
    g_autofree uint8_t *dir = build_directory(list, &size);
    int ret;

    g_assert(size == s->bitmap_directory_size);
    g_mutex_lock(&s->lock);
    s->autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
    ret = qcow2_store_autoclear(bs);
    if (ret == 0) {
        ret = bdrv_pwrite(bs->file, s->bitmap_directory_offset, size, dir, 0);
    }
    if (ret == 0) {
        ret = bdrv_flush(bs->file->bs);
    }
    if (ret == 0) {
        s->autoclear_features |= QCOW2_AUTOCLEAR_BITMAPS;
        ret = qcow2_store_autoclear(bs);
    }
    if (ret < 0) {
        s->autoclear_features &= ~QCOW2_AUTOCLEAR_BITMAPS;
        s->nb_bitmaps = 0;
    }
    g_mutex_unlock(&s->lock);
    return ret;
}

/* ---- what the driver calls --------------------------------------------- */

/* QEMU's limits for a bitmap of name and granularity on bs. */
static bool check_constraints(BlockDriverState *bs, const char *name,
                              uint32_t granularity, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    uint64_t bytes = data_bytes(bdrv_getlength(bs), granularity);

    /* QMP allows powers of two from 512 to 2^31: the format's range. */
    g_assert(granularity >= 1u << MIN_GRANULARITY_BITS);
    if (bytes > MAX_DATA_SIZE ||
        bytes > (uint64_t)MAX_TABLE_SIZE * s->cluster_size) {
        error_setg(errp, "Too much space will be occupied by the bitmap. "
                   "Use larger granularity");
        return false;
    }
    if (strlen(name) > MAX_NAME_SIZE) {
        error_setg(errp, "Name length exceeds maximum (%d characters)",
                   MAX_NAME_SIZE);
        return false;
    }
    return true;
}

int qcow2_load_bitmaps(BlockDriverState *bs, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autoptr(GPtrArray) list = NULL;
    g_autoptr(GPtrArray) made = NULL;
    bool mark = false;
    guint i;
    int ret;

    if (!s->nb_bitmaps) {
        return 0;
    }
    list = read_directory(bs, errp);
    if (!list) {
        return -EINVAL;
    }
    made = g_ptr_array_new();
    for (i = 0; i < list->len; i++) {
        BitmapEntry *e = g_ptr_array_index(list, i);
        BdrvDirtyBitmap *bm = load_bitmap(bs, e, errp);

        if (!bm) {
            ret = -EINVAL;
            goto fail;
        }
        g_ptr_array_add(made, bm);
        bdrv_dirty_bitmap_set_persistent(bm, true);
        if (e->flags & FLAG_IN_USE) {
            /* Its writer stopped without storing it: the bits are lost. */
            bdrv_dirty_bitmap_set_inconsistent(bm);
        } else {
            e->flags |= FLAG_IN_USE;
            mark = true;
        }
        if (!(e->flags & FLAG_AUTO)) {
            bdrv_disable_dirty_bitmap(bm);
        }
        bdrv_dirty_bitmap_set_readonly(bm, bs->read_only);
    }
    if (mark && !bs->read_only) {
        ret = rewrite_directory_in_place(bs, list);
        if (ret < 0) {
            error_setg_errno(errp, -ret, "Can't update bitmap directory");
            goto fail;
        }
    }
    return 0;

fail:
    for (i = 0; i < made->len; i++) {
        bdrv_release_dirty_bitmap(g_ptr_array_index(made, i));
    }
    return ret;
}

/* Whether bm is written to the image at close. */
static bool is_stored(const BdrvDirtyBitmap *bm)
{
    return bdrv_dirty_bitmap_persistent(bm) &&
           !bdrv_dirty_bitmap_inconsistent(bm) &&
           !bdrv_dirty_bitmap_readonly(bm);
}

int qcow2_store_bitmaps(BlockDriverState *bs, Error **errp)
{
    g_autoptr(GPtrArray) bitmaps = bdrv_dirty_bitmap_list(bs);
    g_autoptr(GPtrArray) list = NULL;
    g_autoptr(GArray) old = g_array_new(false, false, sizeof(BitmapEntry));
    guint i, written = 0;
    bool any = false;
    int ret = 0;

    for (i = 0; i < bitmaps->len; i++) {
        any |= is_stored(g_ptr_array_index(bitmaps, i));
    }
    if (!any) {
        return 0;
    }
    if (bs->read_only) {
        error_setg(errp, "No write access");
        return -EACCES;
    }
    list = read_directory(bs, errp);
    if (!list) {
        return -EINVAL;
    }
    /* Entries keep their order; new bitmaps follow, newest first (QEMU). */
    for (i = 0; i < bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(bitmaps, i);
        const char *name = bdrv_dirty_bitmap_name(bm);
        uint32_t granularity = bdrv_dirty_bitmap_granularity(bm);
        BitmapEntry *e;

        if (!is_stored(bm)) {
            continue;
        }
        if (!check_constraints(bs, name, granularity, errp)) {
            error_prepend(errp, "Bitmap '%s' doesn't satisfy the constraints: ",
                          name);
            return -EINVAL;
        }
        e = find_entry(list, name);
        if (!e) {
            e = g_new0(BitmapEntry, 1);
            e->name = g_strdup(name);
            g_ptr_array_add(list, e);
        } else if (!(e->flags & FLAG_IN_USE)) {
            /* Not ours: someone stored it while we had the image open. */
            error_setg(errp, "Bitmap '%s' already exists in the image", name);
            return -EEXIST;
        } else {
            g_array_append_val(old, *e);
        }
        e->flags = bdrv_dirty_bitmap_enabled(bm) ? FLAG_AUTO : 0;
        e->granularity_bits = __builtin_ctz(granularity);
        e->bitmap = bm;
    }
    for (i = 0; i < list->len; i++) {
        BitmapEntry *e = g_ptr_array_index(list, i);

        if (e->bitmap) {
            ret = write_bitmap(bs, e, errp);
            if (ret < 0) {
                break;
            }
            written = i + 1;
        }
    }
    if (ret < 0) {
        /* Nothing links the new tables yet. */
        for (i = 0; i < written; i++) {
            BitmapEntry *e = g_ptr_array_index(list, i);

            if (e->bitmap) {
                free_table(bs, e->table_offset, e->table_size, false);
            }
        }
        return ret;
    }
    ret = switch_directory(bs, list);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update bitmap extension");
        return ret;
    }
    for (i = 0; i < old->len; i++) {
        BitmapEntry *e = &g_array_index(old, BitmapEntry, i);

        free_table(bs, e->table_offset, e->table_size, true);
    }
    return 0;
}

bool qcow2_can_store_new_bitmap(BlockDriverState *bs, const char *name,
                                uint32_t granularity, Error **errp)
{
    BDRVQcow2State *s = bs->opaque;
    g_autoptr(GPtrArray) bitmaps = NULL;
    uint64_t nb = 1, dir_size = entry_size(strlen(name));
    guint i;

    if (s->version < 3) {
        /* v2 has no autoclear bits to tell stale bitmaps. */
        error_setg(errp, "Cannot store dirty bitmaps in qcow2 v2 files");
        return false;
    }
    if (!check_constraints(bs, name, granularity, errp)) {
        return false;
    }
    /* QEMU counts what the node holds: everything stored is loaded. */
    bitmaps = bdrv_dirty_bitmap_list(bs);
    for (i = 0; i < bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(bitmaps, i);

        if (bdrv_dirty_bitmap_persistent(bm)) {
            nb++;
            dir_size += entry_size(strlen(bdrv_dirty_bitmap_name(bm)));
        }
    }
    if (nb > QCOW2_MAX_BITMAPS) {
        error_setg(errp, "Maximum number of persistent bitmaps is already "
                   "reached");
        return false;
    }
    if (dir_size > MAX_DIRECTORY_SIZE) {
        error_setg(errp, "Not enough space in the bitmap directory");
        return false;
    }
    return true;
}

bool qcow2_remove_persistent_bitmap(BlockDriverState *bs, const char *name,
                                    Error **errp)
{
    g_autoptr(GPtrArray) list = read_directory(bs, errp);
    BitmapEntry *e = list ? find_entry(list, name) : NULL;
    uint64_t table_offset;
    uint32_t table_size;
    int ret;

    if (!e) {
        return list != NULL;
    }
    table_offset = e->table_offset;
    table_size = e->table_size;
    g_ptr_array_remove(list, e);
    ret = switch_directory(bs, list);
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Failed to update bitmap extension");
        return false;
    }
    free_table(bs, table_offset, table_size, true);
    /* Freed now, as QEMU frees them, so that a crash does not leak them. */
    qcow2_process_frees(bs);
    return true;
}

int qcow2_truncate_bitmaps_check(BlockDriverState *bs, Error **errp)
{
    g_autoptr(GPtrArray) list = read_directory(bs, errp);
    guint i;

    if (!list) {
        return -EINVAL;
    }
    for (i = 0; i < list->len; i++) {
        BitmapEntry *e = g_ptr_array_index(list, i);
        BdrvDirtyBitmap *bm = bdrv_find_dirty_bitmap(bs, e->name);

        /* Stored bitmaps are resized in memory and written back at close. */
        if (!bm) {
            error_setg(errp, "Cannot resize qcow2 with persistent bitmaps that "
                       "were not loaded into memory");
            return -ENOTSUP;
        }
        if (!bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_DEFAULT, errp)) {
            return -ENOTSUP;
        }
    }
    return 0;
}

Qcow2BitmapInfoList *qcow2_get_bitmap_info(BlockDriverState *bs)
{
    g_autoptr(GPtrArray) list = read_directory(bs, NULL);
    Qcow2BitmapInfoList *head = NULL, **tail = &head;
    guint i;

    for (i = 0; list && i < list->len; i++) {
        const BitmapEntry *e = g_ptr_array_index(list, i);
        Qcow2BitmapInfoList *node = g_new0(Qcow2BitmapInfoList, 1);
        Qcow2BitmapInfoFlagsList **flags;

        node->value = g_new0(Qcow2BitmapInfo, 1);
        node->value->name = g_strdup(e->name);
        node->value->granularity = 1u << e->granularity_bits;
        flags = &node->value->flags;
        if (e->flags & FLAG_IN_USE) {
            *flags = g_new0(Qcow2BitmapInfoFlagsList, 1);
            (*flags)->value = QCOW2_BITMAP_INFO_FLAGS_IN_USE;
            flags = &(*flags)->next;
        }
        if (e->flags & FLAG_AUTO) {
            *flags = g_new0(Qcow2BitmapInfoFlagsList, 1);
            (*flags)->value = QCOW2_BITMAP_INFO_FLAGS_AUTO;
        }
        *tail = node;
        tail = &node->next;
    }
    return head;
}

void qcow2_bitmaps_set_readonly(BlockDriverState *bs)
{
    g_autoptr(GPtrArray) bitmaps = bdrv_dirty_bitmap_list(bs);
    guint i;

    for (i = 0; i < bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(bitmaps, i);

        if (bdrv_dirty_bitmap_persistent(bm) &&
            !bdrv_dirty_bitmap_inconsistent(bm)) {
            bdrv_dirty_bitmap_set_readonly(bm, true);
        }
    }
}

int qcow2_bitmaps_set_writable(BlockDriverState *bs, Error **errp)
{
    g_autoptr(GPtrArray) bitmaps = bdrv_dirty_bitmap_list(bs);
    g_autoptr(GPtrArray) list = NULL;
    g_autoptr(GPtrArray) marked = g_ptr_array_new();
    bool mark = false;
    guint i;
    int ret;

    for (i = 0; i < bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = g_ptr_array_index(bitmaps, i);

        if (bdrv_dirty_bitmap_persistent(bm) && bdrv_dirty_bitmap_readonly(bm) &&
            !bdrv_dirty_bitmap_inconsistent(bm)) {
            g_ptr_array_add(marked, bm);
        }
    }
    if (!marked->len) {
        return 0;
    }
    list = read_directory(bs, errp);
    if (!list) {
        return -EINVAL;
    }
    for (i = 0; i < marked->len; i++) {
        BitmapEntry *e = find_entry(list, bdrv_dirty_bitmap_name(marked->pdata[i]));

        if (e && !(e->flags & FLAG_IN_USE)) {
            e->flags |= FLAG_IN_USE;
            mark = true;
        }
    }
    ret = mark ? rewrite_directory_in_place(bs, list) : 0;
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Can't update bitmap directory");
        return ret;
    }
    for (i = 0; i < marked->len; i++) {
        bdrv_dirty_bitmap_set_readonly(marked->pdata[i], false);
    }
    return 0;
}
