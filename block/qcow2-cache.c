/*
 * qcow2: a cache of metadata clusters (L2 tables, refcount blocks).
 *
 * A hash table from file offset to entry, and a queue from most to least
 * recently used. The cache is write-back: a change marks the bytes it
 * touched dirty, and they reach the file when the driver writes the
 * cache back (qcow2_cache_write_back(), in the order the driver's
 * dependencies ask: docs/devel/qcow2.md). Only clean, unpinned entries
 * are evicted, so the cache may exceed its size while many are pinned or
 * dirty; qcow2_cache_crowded() tells the driver to write back before it
 * comes to that. Callers hold s->lock.
 */
#include "block/qcow2.h"

typedef struct Qcow2CacheEntry {
    uint64_t offset;
    unsigned pins;
    size_t dirty_lo, dirty_hi;  /* bytes not yet written: [lo, hi) */
    GList link;             /* in Qcow2Cache.lru, data = the entry */
    GList dirty_link;       /* in Qcow2Cache.dirty while lo < hi */
    /* 8-byte aligned, as L2 tables are read as uint64_t[] */
    uint64_t data[];
} Qcow2CacheEntry;

struct Qcow2Cache {
    size_t entry_size;
    unsigned max_entries;
    GHashTable *map;        /* &offset -> Qcow2CacheEntry */
    GQueue lru;             /* head: most recently used */
    GQueue dirty;           /* first dirtied first */
};

static Qcow2CacheEntry *entry_of(void *data)
{
    return (Qcow2CacheEntry *)((char *)data - offsetof(Qcow2CacheEntry, data));
}

static void entry_free(gpointer p)
{
    g_free(p);
}

Qcow2Cache *qcow2_cache_new(size_t entry_size, unsigned max_entries)
{
    Qcow2Cache *c = g_new0(Qcow2Cache, 1);

    c->entry_size = entry_size;
    c->max_entries = MAX(max_entries, 4);
    c->map = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL,
                                   entry_free);
    g_queue_init(&c->lru);
    g_queue_init(&c->dirty);
    return c;
}

void qcow2_cache_free(Qcow2Cache *c)
{
    if (!c) {
        return;
    }
    /* The links live in the entries: the table frees both. */
    g_hash_table_destroy(c->map);
    g_free(c);
}

void *qcow2_cache_get(Qcow2Cache *c, uint64_t offset)
{
    Qcow2CacheEntry *e = g_hash_table_lookup(c->map, &offset);

    if (!e) {
        return NULL;
    }
    e->pins++;
    g_queue_unlink(&c->lru, &e->link);
    g_queue_push_head_link(&c->lru, &e->link);
    return e->data;
}

static bool is_dirty(const Qcow2CacheEntry *e)
{
    return e->dirty_lo < e->dirty_hi;
}

static void evict(Qcow2Cache *c)
{
    GList *l = c->lru.tail;

    while (g_hash_table_size(c->map) >= c->max_entries && l) {
        Qcow2CacheEntry *e = l->data;
        GList *prev = l->prev;

        if (!e->pins && !is_dirty(e)) {
            g_queue_unlink(&c->lru, &e->link);
            g_hash_table_remove(c->map, &e->offset);
        }
        l = prev;
    }
}

void *qcow2_cache_add(Qcow2Cache *c, uint64_t offset)
{
    Qcow2CacheEntry *e;

    g_assert(!g_hash_table_lookup(c->map, &offset));
    evict(c);
    e = g_malloc(sizeof(*e) + c->entry_size);
    e->offset = offset;
    e->pins = 1;
    e->dirty_lo = e->dirty_hi = 0;
    e->link = (GList) { .data = e };
    e->dirty_link = (GList) { .data = e };
    g_queue_push_head_link(&c->lru, &e->link);
    g_hash_table_insert(c->map, &e->offset, e);
    return e->data;
}

void qcow2_cache_put(Qcow2Cache *c, void *data)
{
    Qcow2CacheEntry *e = entry_of(data);

    g_assert(e->pins > 0);
    e->pins--;
}

void qcow2_cache_mark_dirty(Qcow2Cache *c, void *data, size_t lo, size_t hi)
{
    Qcow2CacheEntry *e = entry_of(data);

    g_assert(e->pins > 0 && lo < hi && hi <= c->entry_size);
    if (!is_dirty(e)) {
        e->dirty_lo = lo;
        e->dirty_hi = hi;
        g_queue_push_tail_link(&c->dirty, &e->dirty_link);
    } else {
        e->dirty_lo = MIN(e->dirty_lo, lo);
        e->dirty_hi = MAX(e->dirty_hi, hi);
    }
}

bool qcow2_cache_is_dirty(Qcow2Cache *c)
{
    return c->dirty.length > 0;
}

bool qcow2_cache_crowded(Qcow2Cache *c)
{
    return c->dirty.length >= c->max_entries / 2;
}

int qcow2_cache_write_back(Qcow2Cache *c, BlockDriverState *bs,
                           Qcow2CacheWriter *write)
{
    int n = 0;

    while (c->dirty.head) {
        Qcow2CacheEntry *e = c->dirty.head->data;
        int ret = write(bs, e->offset, e->data, e->dirty_lo, e->dirty_hi);

        if (ret < 0) {
            return ret;     /* it stays dirty, for the next try */
        }
        g_queue_unlink(&c->dirty, &e->dirty_link);
        e->dirty_lo = e->dirty_hi = 0;
        n++;
    }
    return n;
}

void qcow2_cache_drop(Qcow2Cache *c, uint64_t offset)
{
    Qcow2CacheEntry *e = g_hash_table_lookup(c->map, &offset);

    if (e) {
        g_assert(!e->pins);
        /* What was not written back goes too: nothing points here now. */
        if (is_dirty(e)) {
            g_queue_unlink(&c->dirty, &e->dirty_link);
        }
        g_queue_unlink(&c->lru, &e->link);
        g_hash_table_remove(c->map, &offset);
    }
}
