/*
 * The order in which QEMU's QDict and its input visitor's GLib hash table
 * yield keys, so that blkd names the same member in errors ("Parameter
 * 'X' is unexpected") and writes QMP replies with keys in the same order
 * as qemu-storage-daemon does.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/qdict-order.h"

/* QEMU's QDict has this many hash buckets. */
#define QDICT_BUCKETS 512

/*
 * QEMU's QDict hash (tdb_hash).  The arithmetic is on 32-bit unsigned, as
 * there; only the bucket matters.
 */
static unsigned int qdict_bucket(const char *key)
{
    uint32_t value = 0x238F13AFu * (uint32_t)strlen(key);
    unsigned int i;

    for (i = 0; key[i]; i++) {
        value += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
    }
    return (1103515243u * value + 12345u) % QDICT_BUCKETS;
}

typedef struct QDictSlot {
    const char *key;
    unsigned int bucket;
    size_t seq;                 /* insertion order */
} QDictSlot;

static gint qdict_slot_cmp(gconstpointer a, gconstpointer b)
{
    const QDictSlot *x = a, *y = b;

    if (x->bucket != y->bucket) {
        return x->bucket < y->bucket ? -1 : 1;
    }
    /* QDict inserts at the head of a bucket's list: newest first. */
    return x->seq > y->seq ? -1 : x->seq < y->seq;
}

GPtrArray *qdict_order(const json_t *object)
{
    size_t n = json_object_size(object);
    g_autofree QDictSlot *slots = g_new0(QDictSlot, n ? n : 1);
    GPtrArray *keys = g_ptr_array_sized_new(n);
    const char *key;
    json_t *value;
    size_t i = 0;

    /* jansson iterates in insertion order, and replacing keeps a slot. */
    json_object_foreach((json_t *)object, key, value) {
        slots[i].key = key;
        slots[i].bucket = qdict_bucket(key);
        slots[i].seq = i;
        i++;
    }
    qsort(slots, n, sizeof(*slots), qdict_slot_cmp);
    for (i = 0; i < n; i++) {
        g_ptr_array_add(keys, (gpointer)slots[i].key);
    }
    return keys;
}

const char *qdict_first_unvisited(const json_t *object,
                                  const char *const *visited)
{
    g_autoptr(GPtrArray) keys = qdict_order(object);
    g_autoptr(GHashTable) h = g_hash_table_new(g_str_hash, g_str_equal);
    GHashTableIter iter;
    gpointer key = NULL;
    guint i;

    /*
     * Replay what QEMU's input visitor does with the same GLib table, so
     * the table's layout and thus its iteration order come out the same.
     */
    for (i = 0; i < keys->len; i++) {
        g_hash_table_insert(h, keys->pdata[i], NULL);
    }
    for (i = 0; visited && visited[i]; i++) {
        g_hash_table_remove(h, visited[i]);
    }
    g_hash_table_iter_init(&iter, h);
    if (!g_hash_table_iter_next(&iter, &key, NULL)) {
        return NULL;
    }
    return key;
}
