/*
 * qcow2: a cache of metadata clusters (L2 tables, refcount blocks).
 *
 * A hash table from file offset to entry, and a queue from most to least
 * recently used. The cache is write-through, so eviction never writes;
 * pinned entries (between get/add and put) are not evicted, and the cache
 * may exceed its size while many are pinned. Callers hold s->lock.
 */
#include "block/qcow2.h"

typedef struct Qcow2CacheEntry {
    uint64_t offset;
    unsigned pins;
    GList link;             /* in Qcow2Cache.lru, data = the entry */
    /* 8-byte aligned, as L2 tables are read as uint64_t[] */
    uint64_t data[];
} Qcow2CacheEntry;

struct Qcow2Cache {
    size_t entry_size;
    unsigned max_entries;
    GHashTable *map;        /* &offset -> Qcow2CacheEntry */
    GQueue lru;             /* head: most recently used */
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

static void evict(Qcow2Cache *c)
{
    GList *l = c->lru.tail;

    while (g_hash_table_size(c->map) >= c->max_entries && l) {
        Qcow2CacheEntry *e = l->data;
        GList *prev = l->prev;

        if (!e->pins) {
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
    e->link.data = e;
    e->link.prev = e->link.next = NULL;
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

void qcow2_cache_drop(Qcow2Cache *c, uint64_t offset)
{
    Qcow2CacheEntry *e = g_hash_table_lookup(c->map, &offset);

    if (e) {
        g_assert(!e->pins);
        g_queue_unlink(&c->lru, &e->link);
        g_hash_table_remove(c->map, &offset);
    }
}
