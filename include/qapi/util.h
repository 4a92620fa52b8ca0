/* Small pieces the generated QAPI types rely on. */
#ifndef QAPI_UTIL_H
#define QAPI_UTIL_H

#include <stdbool.h>

#include "qapi/error.h"

/* The JSON type an alternate's value arrived as, which selects its branch. */
typedef enum QType {
    QTYPE_NONE,
    QTYPE_QNULL,
    QTYPE_QNUM,
    QTYPE_QSTRING,
    QTYPE_QDICT,
    QTYPE_QLIST,
    QTYPE_QBOOL,
} QType;

/* An enum's value names, indexed by value. */
typedef struct QEnumLookup {
    const char *const *array;
    int size;
} QEnumLookup;

const char *qapi_enum_lookup(const QEnumLookup *lookup, int val);
/* Returns the value named buf, or -1 if there is none. */
int qapi_enum_find(const QEnumLookup *lookup, const char *buf);

#endif
