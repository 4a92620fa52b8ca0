/*
 * Error objects: a class and a one-phrase message, carried up to the caller
 * that reports them.
 *
 * Rules (QEMU's, see docs/devel/architecture.md):
 * - A function that can fail takes "Error **errp" as its last parameter and
 *   also returns whether it failed (bool false, NULL, or a negative value).
 * - It sets *errp exactly when it fails; errp may be NULL (caller does not
 *   care) or &error_abort (failure is a bug).
 * - *errp must be NULL on entry: an error is never overwritten.
 * - Messages are a single phrase without trailing punctuation; callers add
 *   context in front with error_prepend().
 */
#ifndef QAPI_ERROR_H
#define QAPI_ERROR_H

#include <stdbool.h>
#include <glib.h>

/* The classes QMP reports in "error": {"class": ...}. */
typedef enum ErrorClass {
    ERROR_CLASS_GENERIC_ERROR,
    ERROR_CLASS_COMMAND_NOT_FOUND,
    ERROR_CLASS_DEVICE_NOT_ACTIVE,
    ERROR_CLASS_DEVICE_NOT_FOUND,
    ERROR_CLASS_KVM_MISSING_CAP,
} ErrorClass;

typedef struct Error Error;

/* Pass as errp when a failure would be a programming error. */
extern Error *error_abort;

void error_set(Error **errp, ErrorClass cls, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
void error_setg(Error **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Appends ": <strerror(os_errno)>" to the message. */
void error_setg_errno(Error **errp, int os_errno, const char *fmt, ...)
    G_GNUC_PRINTF(3, 4);
/* Adds context in front of an existing message. */
void error_prepend(Error **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* Moves local_err into *dst_errp (or frees it when dst_errp is NULL). */
void error_propagate(Error **dst_errp, Error *local_err);

const char *error_get_pretty(const Error *err);
ErrorClass error_get_class(const Error *err);
const char *error_class_name(ErrorClass cls);
Error *error_copy(const Error *err);
void error_free(Error *err);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Error, error_free)

#endif
