/* The table of QMP commands, generated from the schema. */
#ifndef QAPI_DISPATCH_H
#define QAPI_DISPATCH_H

#include <jansson.h>

#include "qapi/error.h"

/*
 * Decodes args (an object, or NULL for none), runs the handler and on
 * success stores the encoded result in *ret. Returns false with errp set on
 * failure.
 */
typedef bool QmpMarshalFn(json_t *args, json_t **ret, Error **errp);

enum {
    QMP_CMD_DEPRECATED = 1 << 0,
    QMP_CMD_UNSTABLE = 1 << 1,
};

typedef struct QmpCommand {
    const char *name;
    QmpMarshalFn *fn;
    unsigned flags;
} QmpCommand;

#endif
