/* Error objects: setting, classes, errno text, prepending, propagating. */
#include <errno.h>
#include <string.h>

#include "qapi/error.h"

static void test_setg_is_generic_error(void)
{
    g_autoptr(Error) err = NULL;

    error_setg(&err, "Node '%s' not found", "n0");
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, "Node 'n0' not found");
    g_assert_cmpint(error_get_class(err), ==, ERROR_CLASS_GENERIC_ERROR);
    g_assert_cmpstr(error_class_name(error_get_class(err)), ==, "GenericError");
}

static void test_set_keeps_class(void)
{
    g_autoptr(Error) err = NULL;

    error_set(&err, ERROR_CLASS_COMMAND_NOT_FOUND,
              "The command %s has not been found", "x");
    g_assert_cmpstr(error_class_name(error_get_class(err)), ==,
                    "CommandNotFound");
}

static void test_setg_errno_appends_strerror(void)
{
    g_autoptr(Error) err = NULL;
    g_autofree char *want = g_strdup_printf("open 'f': %s", g_strerror(ENOENT));

    error_setg_errno(&err, ENOENT, "open '%s'", "f");
    g_assert_cmpstr(error_get_pretty(err), ==, want);
}

static void test_prepend_adds_context(void)
{
    g_autoptr(Error) err = NULL;

    error_setg(&err, "Operation not supported");
    error_prepend(&err, "Can't store persistent bitmaps to %s: ", "n0");
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Can't store persistent bitmaps to n0: Operation not supported");
}

static void test_null_errp_discards(void)
{
    error_setg(NULL, "ignored");
    error_prepend(NULL, "ignored: ");
    error_propagate(NULL, NULL);
}

static void test_propagate_keeps_first_error(void)
{
    g_autoptr(Error) dst = NULL;
    Error *first = NULL, *second = NULL;

    error_setg(&first, "first");
    error_setg(&second, "second");
    error_propagate(&dst, first);
    error_propagate(&dst, second); /* freed: dst already holds an error */
    g_assert_cmpstr(error_get_pretty(dst), ==, "first");
}

static void test_copy_is_independent(void)
{
    g_autoptr(Error) err = NULL;
    g_autoptr(Error) copy = NULL;

    error_set(&err, ERROR_CLASS_DEVICE_NOT_ACTIVE, "Block job 'j' not found");
    copy = error_copy(err);
    g_assert_true(copy != err);
    g_assert_cmpstr(error_get_pretty(copy), ==, error_get_pretty(err));
    g_assert_cmpint(error_get_class(copy), ==, ERROR_CLASS_DEVICE_NOT_ACTIVE);
}

static void test_error_abort_aborts(void)
{
    if (g_test_subprocess()) {
        error_setg(&error_abort, "boom");
        return;
    }
    g_test_trap_subprocess(NULL, 0, 0);
    g_test_trap_assert_failed();
    g_test_trap_assert_stderr("*Unexpected error: boom*");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/error/setg-is-generic-error", test_setg_is_generic_error);
    g_test_add_func("/error/set-keeps-class", test_set_keeps_class);
    g_test_add_func("/error/setg-errno-appends-strerror",
                    test_setg_errno_appends_strerror);
    g_test_add_func("/error/prepend-adds-context", test_prepend_adds_context);
    g_test_add_func("/error/null-errp-discards", test_null_errp_discards);
    g_test_add_func("/error/propagate-keeps-first-error",
                    test_propagate_keeps_first_error);
    g_test_add_func("/error/copy-is-independent", test_copy_is_independent);
    g_test_add_func("/error/error-abort-aborts", test_error_abort_aborts);
    return g_test_run();
}
