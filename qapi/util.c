/* Enum name tables of the generated QAPI types. */
#include <string.h>

#include "qapi/util.h"

const char *qapi_enum_lookup(const QEnumLookup *lookup, int val)
{
    g_assert(val >= 0 && val < lookup->size);
    return lookup->array[val];
}

int qapi_enum_find(const QEnumLookup *lookup, const char *buf)
{
    int i;

    for (i = 0; i < lookup->size; i++) {
        if (!strcmp(lookup->array[i], buf)) {
            return i;
        }
    }
    return -1;
}
