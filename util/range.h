/*
 * Byte ranges [start, end) of requests in flight, and lists of them: who
 * must wait for whom is a question of overlap.
 */
#ifndef UTIL_RANGE_H
#define UTIL_RANGE_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

typedef struct Range {
    int64_t start, end;
} Range;

static inline bool ranges_overlap(int64_t start1, int64_t end1,
                                  int64_t start2, int64_t end2)
{
    return start1 < end2 && start2 < end1;
}

/*
 * The first element of list (a Range *, or a pointer to a struct whose
 * first member is a Range) that overlaps [start, end), or NULL.
 */
static inline void *range_list_find(GList *list, int64_t start, int64_t end)
{
    for (; list; list = list->next) {
        const Range *r = list->data;

        if (ranges_overlap(r->start, r->end, start, end)) {
            return list->data;
        }
    }
    return NULL;
}

#endif
