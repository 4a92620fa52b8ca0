/*
 * QEMU's key orders: QDict's iteration order (its tdb hash buckets, newest
 * first within a bucket) and the GLib hash table its input visitor uses
 * to find members left unvisited. Any JSON object whose insertion order is
 * the order QEMU would insert in (command-line order, schema order) gives
 * QEMU's order.
 */
#ifndef UTIL_QDICT_ORDER_H
#define UTIL_QDICT_ORDER_H

#include <glib.h>
#include <jansson.h>

/* The keys of object in QEMU's QDict iteration order (borrowed). */
GPtrArray *qdict_order(const json_t *object);

/*
 * The member QEMU's input visitor reports in "Parameter 'X' is
 * unexpected": of the keys of object, the first the visitor's table
 * yields once the visited ones (NULL-terminated, in visit order) are
 * removed. NULL when every key was visited.
 */
const char *qdict_first_unvisited(const json_t *object,
                                  const char *const *visited);

#endif
