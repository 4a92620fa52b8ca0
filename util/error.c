/* Error objects; the rules are in include/qapi/error.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qapi/error.h"

struct Error {
    ErrorClass cls;
    char *msg;
};

/* A distinct address: &error_abort is recognised, never dereferenced. */
Error *error_abort;

static void error_install(Error **errp, ErrorClass cls, char *msg)
{
    Error *err;

    if (errp == &error_abort) {
        fprintf(stderr, "Unexpected error: %s\n", msg);
        abort();
    }
    if (!errp) {
        g_free(msg);
        return;
    }
    g_assert(*errp == NULL);
    err = g_new(Error, 1);
    err->cls = cls;
    err->msg = msg;
    *errp = err;
}

void error_set(Error **errp, ErrorClass cls, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_install(errp, cls, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

void error_setg(Error **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_install(errp, ERROR_CLASS_GENERIC_ERROR, g_strdup_vprintf(fmt, ap));
    va_end(ap);
}

void error_setg_errno(Error **errp, int os_errno, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *head = NULL;

    va_start(ap, fmt);
    head = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    error_install(errp, ERROR_CLASS_GENERIC_ERROR,
                  g_strdup_printf("%s: %s", head, g_strerror(os_errno)));
}

void error_prepend(Error **errp, const char *fmt, ...)
{
    va_list ap;
    g_autofree char *head = NULL;
    char *msg;

    if (!errp || errp == &error_abort || !*errp) {
        return;
    }
    va_start(ap, fmt);
    head = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    msg = g_strconcat(head, (*errp)->msg, NULL);
    g_free((*errp)->msg);
    (*errp)->msg = msg;
}

void error_propagate(Error **dst_errp, Error *local_err)
{
    if (!local_err) {
        return;
    }
    if (dst_errp == &error_abort) {
        fprintf(stderr, "Unexpected error: %s\n", local_err->msg);
        abort();
    }
    if (!dst_errp || *dst_errp) {
        error_free(local_err);
        return;
    }
    *dst_errp = local_err;
}

const char *error_get_pretty(const Error *err)
{
    return err->msg;
}

ErrorClass error_get_class(const Error *err)
{
    return err->cls;
}

const char *error_class_name(ErrorClass cls)
{
    static const char *const names[] = {
        [ERROR_CLASS_GENERIC_ERROR] = "GenericError",
        [ERROR_CLASS_COMMAND_NOT_FOUND] = "CommandNotFound",
        [ERROR_CLASS_DEVICE_NOT_ACTIVE] = "DeviceNotActive",
        [ERROR_CLASS_DEVICE_NOT_FOUND] = "DeviceNotFound",
        [ERROR_CLASS_KVM_MISSING_CAP] = "KVMMissingCap",
    };

    g_assert((size_t)cls < G_N_ELEMENTS(names));
    return names[cls];
}

Error *error_copy(const Error *err)
{
    Error *copy = g_new(Error, 1);

    copy->cls = err->cls;
    copy->msg = g_strdup(err->msg);
    return copy;
}

void error_free(Error *err)
{
    if (err) {
        g_free(err->msg);
        g_free(err);
    }
}
