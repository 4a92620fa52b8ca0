/*
 * Keyval and QemuOpts option-string parsing, and the keyval scalar
 * conversions.  Expected messages and results were observed on QEMU 7.2's
 * qemu-storage-daemon (see include/util/keyval.h).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "util/keyval.h"
#include "util/qdict-order.h"

/* ---- Helpers ----------------------------------------------------------- */

/* Warnings captured instead of printed, one "MSG\nHINT" per warning. */
static GString *warnings;

static void capture_warning(void *opaque, const char *msg, const char *hint)
{
    g_string_append_printf(warnings, "%s\n%s", msg, hint ? hint : "");
}

static void warnings_start(void)
{
    if (!warnings) {
        warnings = g_string_new(NULL);
    }
    g_string_truncate(warnings, 0);
    keyval_set_warn_func(capture_warning, NULL);
}

static void warnings_stop(void)
{
    keyval_set_warn_func(NULL, NULL);
}

static void assert_json(json_t *value, const char *expected)
{
    char *got = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);

    g_assert_nonnull(got);
    g_assert_cmpstr(got, ==, expected);
    free(got);
}

/* keyval_parse() must succeed and give @expected (compact JSON). */
static void kv_ok(const char *params, const char *implied,
                  const char *expected)
{
    Error *err = NULL;
    json_t *obj = keyval_parse(params, implied, NULL, &err);

    if (err) {
        g_test_message("'%s': %s", params, error_get_pretty(err));
    }
    g_assert_null(err);
    g_assert_nonnull(obj);
    assert_json(obj, expected);
    json_decref(obj);
}

/* keyval_parse() must fail with exactly @msg. */
static void kv_err(const char *params, const char *implied, const char *msg)
{
    g_autoptr(Error) err = NULL;
    json_t *obj = keyval_parse(params, implied, NULL, &err);

    g_assert_null(obj);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, msg);
}

/* Chardev-style QemuOpts parse (validated, warnings, help pointer). */
static json_t *qo_parse(const char *params, bool *help, const char **hint,
                        Error **errp)
{
    return qemu_opts_parse_flat_full(params, "backend",
                                     qemu_chardev_opts_desc, true, help,
                                     hint, errp);
}

static void qo_ok(const char *params, const char *expected)
{
    Error *err = NULL;
    bool help = true;
    json_t *obj = qo_parse(params, &help, NULL, &err);

    if (err) {
        g_test_message("'%s': %s", params, error_get_pretty(err));
    }
    g_assert_null(err);
    g_assert_false(help);
    g_assert_nonnull(obj);
    assert_json(obj, expected);
    json_decref(obj);
}

static void qo_err(const char *params, const char *msg, const char *hint)
{
    g_autoptr(Error) err = NULL;
    const char *got_hint = "unset";
    bool help = true;
    json_t *obj = qo_parse(params, &help, &got_hint, &err);

    g_assert_null(obj);
    g_assert_false(help);
    g_assert_nonnull(err);
    g_assert_cmpstr(error_get_pretty(err), ==, msg);
    g_assert_cmpstr(got_hint, ==, hint);
}

static char *repeat(char c, size_t n)
{
    char *s = g_malloc(n + 1);

    memset(s, c, n);
    s[n] = '\0';
    return s;
}

/* ---- Keyval: syntax ---------------------------------------------------- */

static void test_syntax_empty(void)
{
    kv_ok("", NULL, "{}");
    kv_ok("", "driver", "{}");
}

static void test_syntax_single(void)
{
    kv_ok("a=1", NULL, "{\"a\":\"1\"}");
}

static void test_syntax_multiple(void)
{
    kv_ok("node-name=n0,read-only=on,x_y=z", NULL,
          "{\"node-name\":\"n0\",\"read-only\":\"on\",\"x_y\":\"z\"}");
}

static void test_syntax_trailing_comma(void)
{
    /* One trailing ',' ends the last value; QEMU accepts it. */
    kv_ok("a=1,", NULL, "{\"a\":\"1\"}");
}

static void test_syntax_empty_value(void)
{
    kv_ok("a=,b=", NULL, "{\"a\":\"\",\"b\":\"\"}");
}

static void test_syntax_value_with_equals(void)
{
    kv_ok("a=b=c", NULL, "{\"a\":\"b=c\"}");
}

static void test_syntax_empty_element(void)
{
    /* An empty element is an empty key. */
    kv_err(",a=1", NULL, "Invalid parameter ''");
    kv_err("a=1,,,=2", NULL, "Invalid parameter ''");
    kv_err("=x", NULL, "Invalid parameter ''");
}

static void test_syntax_missing_equals(void)
{
    kv_err("a=1,b", NULL, "Expected '=' after parameter 'b'");
    kv_err("a.b", NULL, "Expected '=' after parameter 'a.b'");
    kv_err("a", NULL, "Expected '=' after parameter 'a'");
}

static void test_syntax_errp_null(void)
{
    g_assert_null(keyval_parse("a..b=1", NULL, NULL, NULL));
    g_assert_null(keyval_parse("b.1=1", NULL, NULL, NULL));
}

static void test_syntax_first_error_wins(void)
{
    kv_err("a..b=1,c", NULL, "Invalid parameter 'a..b'");
    kv_err("c,a..b=1", NULL, "Expected '=' after parameter 'c'");
}

/* ---- Keyval: escaping -------------------------------------------------- */

static void test_escape_double_comma(void)
{
    kv_ok("a=x,,y,b=2", NULL, "{\"a\":\"x,y\",\"b\":\"2\"}");
}

static void test_escape_trailing(void)
{
    kv_ok("a=1,,", NULL, "{\"a\":\"1,\"}");
}

static void test_escape_odd_commas(void)
{
    /* ",,," is an escaped ',' and then a separator. */
    kv_ok("a=1,,,b=2", NULL, "{\"a\":\"1,\",\"b\":\"2\"}");
    kv_ok("a=,,,,", NULL, "{\"a\":\",,\"}");
}

static void test_escape_in_key_is_error(void)
{
    kv_err("a,,b=1", NULL, "Expected '=' after parameter 'a'");
}

/* ---- Keyval: keys ------------------------------------------------------ */

static void test_key_valid_names(void)
{
    kv_ok("a-b_c=1,A9=2,z=3", NULL,
          "{\"a-b_c\":\"1\",\"A9\":\"2\",\"z\":\"3\"}");
}

static void test_key_downstream_prefix(void)
{
    kv_ok("__com.redhat_x=1", NULL, "{\"__com.redhat_x\":\"1\"}");
    kv_ok("___x=1", NULL, "{\"___x\":\"1\"}");
    kv_ok("__com.redhat_x.y=1", NULL, "{\"__com.redhat_x\":{\"y\":\"1\"}}");
    kv_ok("a.__b-c.d_e=1", NULL, "{\"a\":{\"__b-c.d_e\":\"1\"}}");
}

static void test_key_invalid(void)
{
    static const char *const bad[] = {
        "a..b", "a.b.", ".a", "a.", "1a", "_a", "-a", "__com.x", "__a_",
        "__a_1", "__a__b", "a.0b", "a.1-", "a.-1", "a. b", "a b", "a.b c",
        "a*b", "\xc3\xbc", "a.\xc3\xbc",
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *params = g_strdup_printf("%s=1", bad[i]);
        g_autofree char *msg = g_strdup_printf("Invalid parameter '%s'",
                                               bad[i]);

        kv_err(params, NULL, msg);
    }
}

static void test_key_index_not_first(void)
{
    kv_err("0=1", NULL, "Invalid parameter '0'");
}

static void test_key_too_long(void)
{
    g_autofree char *k127 = repeat('a', 127);
    g_autofree char *k128 = repeat('a', 128);
    g_autofree char *ok = g_strdup_printf("%s=1", k127);
    g_autofree char *okjson = g_strdup_printf("{\"%s\":\"1\"}", k127);
    g_autofree char *bad = g_strdup_printf("%s=1", k128);
    g_autofree char *msg = g_strdup_printf("Parameter '%s' is too long",
                                           k128);

    kv_ok(ok, NULL, okjson);
    kv_err(bad, NULL, msg);
}

static void test_key_fragment_too_long(void)
{
    g_autofree char *k128 = repeat('a', 128);
    g_autofree char *msg = g_strdup_printf(
        "Parameter fragment '%s' is too long", k128);
    g_autofree char *last = g_strdup_printf("x.%s=1", k128);
    g_autofree char *first = g_strdup_printf("%s.x=1", k128);
    g_autofree char *digits = repeat('1', 128);
    g_autofree char *index = g_strdup_printf("x.%s=1", digits);
    g_autofree char *imsg = g_strdup_printf(
        "Parameter fragment '%s' is too long", digits);

    kv_err(last, NULL, msg);
    kv_err(first, NULL, msg);
    kv_err(index, NULL, imsg);
}

static void test_key_long_dotted(void)
{
    g_autofree char *k127 = repeat('k', 127);
    g_autofree char *params = g_strdup_printf("a.%s.b=1", k127);
    g_autofree char *json = g_strdup_printf("{\"a\":{\"%s\":{\"b\":\"1\"}}}",
                                            k127);

    kv_ok(params, NULL, json);
}

static void test_value_long(void)
{
    g_autofree char *v = repeat('v', 100000);
    g_autofree char *params = g_strdup_printf("a=%s,b=1", v);
    Error *err = NULL;
    json_t *obj = keyval_parse(params, NULL, NULL, &err);

    g_assert_null(err);
    g_assert_cmpstr(json_string_value(json_object_get(obj, "a")), ==, v);
    g_assert_cmpstr(json_string_value(json_object_get(obj, "b")), ==, "1");
    json_decref(obj);
}

static void test_value_not_utf8(void)
{
    /* File names need not be UTF-8; the bytes are kept. */
    Error *err = NULL;
    json_t *obj = keyval_parse("filename=/tmp/\xff\xfe", NULL, NULL, &err);

    g_assert_null(err);
    g_assert_cmpstr(json_string_value(json_object_get(obj, "filename")), ==,
                    "/tmp/\xff\xfe");
    json_decref(obj);
}

/* ---- Keyval: nesting and duplicates ------------------------------------ */

static void test_nesting_objects(void)
{
    kv_ok("a.b=1,a.c=2", NULL, "{\"a\":{\"b\":\"1\",\"c\":\"2\"}}");
}

static void test_nesting_deep(void)
{
    kv_ok("a.b.c.d.e=1,a.b.x=2", NULL,
          "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":\"1\"}},\"x\":\"2\"}}}");
}

static void test_nesting_interleaved(void)
{
    kv_ok("addr.type=inet,max-connections=2,addr.host=h", NULL,
          "{\"addr\":{\"type\":\"inet\",\"host\":\"h\"},"
          "\"max-connections\":\"2\"}");
}

static void test_duplicate_later_wins(void)
{
    /* The member keeps its first position; only its value changes. */
    kv_ok("a=1,b=2,a=3", NULL, "{\"a\":\"3\",\"b\":\"2\"}");
    kv_ok("a.b=1,a.b=2", NULL, "{\"a\":{\"b\":\"2\"}}");
}

static void test_inconsistent_scalar_then_object(void)
{
    kv_err("a=2,a.b=1", NULL, "Parameters 'a.*' used inconsistently");
}

static void test_inconsistent_object_then_scalar(void)
{
    kv_err("a.b=1,a=2", NULL, "Parameters 'a.*' used inconsistently");
}

static void test_inconsistent_nested(void)
{
    kv_err("a.b.c=1,a.b=2", NULL, "Parameters 'a.b.*' used inconsistently");
    kv_err("a.b=2,a.b.c.d=1", NULL, "Parameters 'a.b.*' used inconsistently");
}

static void test_inconsistent_before_later_fragments(void)
{
    /* QEMU checks fragment by fragment, left to right. */
    kv_err("a=1,a.b..c=2", NULL, "Parameters 'a.*' used inconsistently");
}

/* ---- Keyval: lists ----------------------------------------------------- */

static void test_list_simple(void)
{
    kv_ok("bitmaps.0=a,bitmaps.1=b", NULL, "{\"bitmaps\":[\"a\",\"b\"]}");
}

static void test_list_out_of_order(void)
{
    kv_ok("b.2=z,b.0=x,b.1=y", NULL, "{\"b\":[\"x\",\"y\",\"z\"]}");
}

static void test_list_gap_is_error(void)
{
    kv_err("bitmaps.1=x", NULL, "Parameter 'bitmaps.0' missing");
}

static void test_list_gap_in_middle(void)
{
    kv_err("b.0=x,b.2=y", NULL, "Parameter 'b.1' missing");
    kv_err("b.3=x,b.0=y,b.1=z", NULL, "Parameter 'b.2' missing");
}

static void test_list_huge_index(void)
{
    kv_err("a.99999999999999999999=1", NULL, "Parameter 'a.0' missing");
    kv_err("a.2147483647=1", NULL, "Parameter 'a.0' missing");
    kv_err("a.0=1,a.4294967296=1", NULL, "Parameter 'a.1' missing");
}

static void test_list_mixed_is_error(void)
{
    kv_err("a.0=1,a.x=2", NULL, "Parameters 'a.*' used inconsistently");
    kv_err("a.x=1,a.0=2", NULL, "Parameters 'a.*' used inconsistently");
}

static void test_list_nested_mixed(void)
{
    kv_err("a.b.0=1,a.b.x=2", NULL, "Parameters 'a.b.*' used inconsistently");
}

static void test_list_of_objects(void)
{
    kv_ok("bitmaps.0.node=n,bitmaps.0.name=b,"
          "bitmaps.1.node=m,bitmaps.1.name=c", NULL,
          "{\"bitmaps\":[{\"node\":\"n\",\"name\":\"b\"},"
          "{\"node\":\"m\",\"name\":\"c\"}]}");
}

static void test_list_of_lists(void)
{
    kv_ok("a.0.0=x,a.1.0=z,a.0.1=y", NULL,
          "{\"a\":[[\"x\",\"y\"],[\"z\"]]}");
    kv_err("a.0.1=1", NULL, "Parameter 'a.0.0' missing");
}

static void test_list_leading_zeros(void)
{
    /* Indexes are decimal numbers: 00 is element 0, 01 element 1. */
    kv_ok("b.00=x", NULL, "{\"b\":[\"x\"]}");
    kv_err("b.01=x", NULL, "Parameter 'b.0' missing");
}

static void test_list_two_spellings(void)
{
    /*
     * 0 and 00 are the same element; QEMU keeps the one its QDict yields
     * last, whatever the string order (observed: "b" then "a").
     */
    kv_ok("b.0=a,b.00=b", NULL, "{\"b\":[\"b\"]}");
    kv_ok("b.00=a,b.0=b", NULL, "{\"b\":[\"a\"]}");
}

static void test_list_error_in_qdict_order(void)
{
    /* Of two gaps QEMU reports the one its QDict visits first. */
    kv_err("x.1=1,y.1=1", NULL, "Parameter 'x.0' missing");
    kv_err("y.1=1,x.1=1", NULL, "Parameter 'x.0' missing");
    kv_err("a.b.0=1,a.c.1=1", NULL, "Parameter 'a.c.0' missing");
}

static void test_list_nested_error_before_parent(void)
{
    /* Members are listified before their parent is judged. */
    kv_err("a.0.1=1,a.x=2", NULL, "Parameter 'a.0.0' missing");
}

/* ---- Keyval: implied key ----------------------------------------------- */

static void test_implied_used(void)
{
    kv_ok("nbd,id=e", "type", "{\"type\":\"nbd\",\"id\":\"e\"}");
    kv_ok("nbd", "type", "{\"type\":\"nbd\"}");
    kv_ok("nbd,", "type", "{\"type\":\"nbd\"}");
}

static void test_implied_explicit(void)
{
    kv_ok("type=nbd,id=e", "type", "{\"type\":\"nbd\",\"id\":\"e\"}");
}

static void test_implied_only_first(void)
{
    kv_err("id=e,nbd", "type", "Expected '=' after parameter 'nbd'");
}

static void test_implied_no_escape(void)
{
    /* The implied value ends at the first ','; ",x" is then a bad key. */
    kv_err("nbd,,x", "type", "Invalid parameter ''");
}

static void test_implied_later_overrides(void)
{
    kv_ok("nbd,type=fuse", "type", "{\"type\":\"fuse\"}");
}

static void test_implied_value_with_dot(void)
{
    kv_ok("a.b,x=1", "driver", "{\"driver\":\"a.b\",\"x\":\"1\"}");
}

static void test_implied_conflict(void)
{
    kv_err("file,driver.x=1", "driver",
           "Parameters 'driver.*' used inconsistently");
}

static void test_implied_none(void)
{
    kv_err("nbd", NULL, "Expected '=' after parameter 'nbd'");
}

static void test_implied_empty_first(void)
{
    kv_err(",a=1", "driver", "Invalid parameter ''");
}

static void test_implied_dotted_key(void)
{
    kv_ok("inet,addr.host=h", "addr.type",
          "{\"addr\":{\"type\":\"inet\",\"host\":\"h\"}}");
}

/* ---- Keyval: help ------------------------------------------------------ */

static void help_ok(const char *params, const char *implied, bool want_help,
                    const char *expected)
{
    Error *err = NULL;
    bool help = !want_help;
    json_t *obj = keyval_parse(params, implied, &help, &err);

    g_assert_null(err);
    g_assert_cmpint(help, ==, want_help);
    assert_json(obj, expected);
    json_decref(obj);
}

static void test_help_word(void)
{
    help_ok("help", "qom-type", true, "{}");
}

static void test_help_question_mark(void)
{
    help_ok("?", "qom-type", true, "{}");
}

static void test_help_with_keys(void)
{
    help_ok("iothread,id=i,help", "qom-type", true,
            "{\"qom-type\":\"iothread\",\"id\":\"i\"}");
    help_ok("a=1,?,b=2", NULL, true, "{\"a\":\"1\",\"b\":\"2\"}");
}

static void test_help_absent_sets_false(void)
{
    help_ok("a=1", NULL, false, "{\"a\":\"1\"}");
}

static void test_help_not_available(void)
{
    kv_err("help", "driver", "Help is not available for this option");
    kv_err("nbd,?", "type", "Help is not available for this option");
}

static void test_help_then_implied(void)
{
    /* Help takes the first element's place; the implied key is gone. */
    kv_err("help,nbd", "type", "Expected '=' after parameter 'nbd'");
}

static void test_help_syntax_error_first(void)
{
    Error *err = NULL;
    bool help = false;

    g_assert_null(keyval_parse("help,a..b=1", NULL, &help, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Invalid parameter 'a..b'");
    error_free(err);
}

static void test_help_before_list_errors(void)
{
    Error *err = NULL;
    bool help = false;

    /* Without a help pointer, help is refused before lists are built. */
    kv_err("a.1=x,help", NULL, "Help is not available for this option");
    /* With one, list errors are still reported. */
    g_assert_null(keyval_parse("a.1=x,help", NULL, &help, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Parameter 'a.0' missing");
    g_assert_true(help);
    error_free(err);
}

static void test_help_lookalikes(void)
{
    kv_ok("help=1", NULL, "{\"help\":\"1\"}");
    kv_err("helpx", NULL, "Expected '=' after parameter 'helpx'");
    kv_err("?=1", NULL, "Invalid parameter '?'");
    kv_err("a=1,?x", NULL, "Invalid parameter '?x'");
    kv_ok("helpx", "driver", "{\"driver\":\"helpx\"}");
}

/* ---- Keyval: QDict order and unexpected members ------------------------ */

static void test_qdict_order(void)
{
    Error *err = NULL;
    json_t *obj = keyval_parse("b.0=a,b.00=b,x=1", NULL, NULL, &err);
    json_t *inner = json_object();
    g_autoptr(GPtrArray) keys = NULL;

    g_assert_null(err);
    keys = qdict_order(obj);
    g_assert_cmpuint(keys->len, ==, 2);
    json_decref(obj);

    /* 0 and 00: QEMU's QDict yields "0" before "00". */
    json_object_set_new(inner, "00", json_string("x"));
    json_object_set_new(inner, "0", json_string("y"));
    g_ptr_array_unref(keys);
    keys = qdict_order(inner);
    g_assert_cmpstr(keys->pdata[0], ==, "0");
    g_assert_cmpstr(keys->pdata[1], ==, "00");
    json_decref(inner);
}

static void test_qdict_order_empty(void)
{
    json_t *obj = json_object();
    g_autoptr(GPtrArray) keys = qdict_order(obj);

    g_assert_cmpuint(keys->len, ==, 0);
    json_decref(obj);
}

static void test_unexpected_matches_qemu(void)
{
    /* Each case was checked against qsd's "Parameter 'X' is unexpected". */
    static const struct {
        const char *params, *unexpected;
    } cases[] = {
        { "driver=file,filename=/tmp/x,foo=1,bar=2,baz=3", "baz" },
        { "driver=file,filename=/tmp/x,alpha=1,beta=2,gamma=3,delta=4,"
          "epsilon=5,zeta=6,eta=7,theta=8,iota=9,kappa=10,lambda=11,mu=12",
          "epsilon" },
    };
    static const char *const visited[] = { "driver", "filename", NULL };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        Error *err = NULL;
        json_t *obj = keyval_parse(cases[i].params, NULL, NULL, &err);

        g_assert_null(err);
        g_assert_cmpstr(qdict_first_unvisited(obj, visited), ==,
                        cases[i].unexpected);
        json_decref(obj);
    }
}

static void test_unexpected_none(void)
{
    static const char *const visited[] = { "a", "b", "absent", NULL };
    Error *err = NULL;
    json_t *obj = keyval_parse("a=1,b.c=2", NULL, NULL, &err);

    g_assert_null(qdict_first_unvisited(obj, visited));
    g_assert_cmpstr(qdict_first_unvisited(obj, NULL), !=, NULL);
    json_decref(obj);
}

/* ---- Keyval scalar conversions ----------------------------------------- */

static void test_bool_accepted(void)
{
    static const char *const yes[] = { "on", "yes", "true", "y" };
    static const char *const no[] = { "off", "no", "false", "n" };
    size_t i;
    bool b;

    for (i = 0; i < G_N_ELEMENTS(yes); i++) {
        b = false;
        g_assert_true(keyval_parse_bool("x", yes[i], &b, &error_abort));
        g_assert_true(b);
        b = true;
        g_assert_true(keyval_parse_bool("x", no[i], &b, &error_abort));
        g_assert_false(b);
    }
}

static void test_bool_rejected(void)
{
    static const char *const bad[] = {
        "ON", "On", "Yes", "TRUE", "1", "0", "", "maybe", " on", "on ",
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autoptr(Error) err = NULL;
        bool b = true;

        g_assert_false(keyval_parse_bool("read-only", bad[i], &b, &err));
        g_assert_cmpstr(error_get_pretty(err), ==,
                        "Parameter 'read-only' expects 'on' or 'off'");
        g_assert_true(b);
    }
}

static void int64_ok(const char *str, int64_t want)
{
    int64_t v = 0;

    g_assert_true(keyval_parse_int64("x", str, &v, &error_abort));
    g_assert_cmpint(v, ==, want);
}

static void int64_bad(const char *str)
{
    g_autoptr(Error) err = NULL;
    int64_t v = 42;

    g_assert_false(keyval_parse_int64("size", str, &v, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Parameter 'size' expects integer");
    g_assert_cmpint(v, ==, 42);
}

static void test_int64_forms(void)
{
    int64_ok("0", 0);
    int64_ok("42", 42);
    int64_ok("-42", -42);
    int64_ok("+5", 5);
    int64_ok(" 5", 5);          /* strtoll skips leading white space */
    int64_ok("0x10", 16);
    int64_ok("0X1f", 31);
    int64_ok("-0x10", -16);
    int64_ok("010", 8);         /* base 0: a leading 0 means octal */
}

static void test_int64_limits(void)
{
    int64_ok("9223372036854775807", INT64_MAX);
    int64_ok("-9223372036854775808", INT64_MIN);
    int64_ok("0x7fffffffffffffff", INT64_MAX);
    int64_bad("9223372036854775808");
    int64_bad("-9223372036854775809");
    int64_bad("99999999999999999999999");
}

static void test_int64_garbage(void)
{
    static const char *const bad[] = {
        "", " ", "abc", "1k", "5 ", "08", "0x", "1.5", "1e3", "--1", "0x-1",
    };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        int64_bad(bad[i]);
    }
}

static void uint64_ok(const char *str, uint64_t want)
{
    uint64_t v = 0;

    g_assert_true(keyval_parse_uint64("x", str, &v, &error_abort));
    g_assert_cmpuint(v, ==, want);
}

static void uint64_bad(const char *str)
{
    g_autoptr(Error) err = NULL;
    uint64_t v = 42;

    g_assert_false(keyval_parse_uint64("max-connections", str, &v, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Parameter 'max-connections' expects integer");
    g_assert_cmpuint(v, ==, 42);
}

static void test_uint64_limits(void)
{
    uint64_ok("0", 0);
    uint64_ok("18446744073709551615", UINT64_MAX);
    uint64_ok("0xffffffffffffffff", UINT64_MAX);
    uint64_ok("4294967296", UINT64_C(4294967296));
    uint64_bad("18446744073709551616");
    uint64_bad("0x10000000000000000");
}

static void test_uint64_negative_wraps(void)
{
    /* strtoull semantics, which QEMU keeps: "-1" is UINT64_MAX. */
    uint64_ok("-1", UINT64_MAX);
    uint64_ok("-18446744073709551615", 1);
    uint64_bad("-18446744073709551616");
}

static void test_uint64_garbage(void)
{
    static const char *const bad[] = { "", "x", "1k", "5 ", "08", "0x" };
    size_t i;

    uint64_ok("010", 8);
    uint64_ok(" +7", 7);
    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        uint64_bad(bad[i]);
    }
}

static void size_ok(const char *str, uint64_t want)
{
    uint64_t v = 0;

    g_assert_true(keyval_parse_size("x", str, &v, &error_abort));
    g_assert_cmpuint(v, ==, want);
}

static void size_bad(const char *str)
{
    g_autoptr(Error) err = NULL;
    uint64_t v = 42;

    g_assert_false(keyval_parse_size("logical-block-size", str, &v, &err));
    g_assert_cmpstr(error_get_pretty(err), ==,
                    "Parameter 'logical-block-size' expects size");
    g_assert_cmpuint(v, ==, 42);
}

static void test_size_suffixes(void)
{
    size_ok("512", 512);
    size_ok("512B", 512);
    size_ok("512b", 512);
    size_ok("1k", 1024);
    size_ok("1K", 1024);
    size_ok("64M", UINT64_C(64) << 20);
    size_ok("64m", UINT64_C(64) << 20);
    size_ok("2G", UINT64_C(2) << 30);
    size_ok("3T", UINT64_C(3) << 40);
    size_ok("5P", UINT64_C(5) << 50);
    size_ok("15E", UINT64_C(15) << 60);
    size_ok("2048K", 2097152);
}

static void test_size_fraction(void)
{
    /* Values observed through qsd's logical-block-size messages. */
    size_ok("1.5k", 1536);
    size_ok("0.5k", 512);
    size_ok("0.1k", 102);
    size_ok("0.3k", 307);
    size_ok("0.75M", 786432);
    size_ok("1.25G", 1342177280);
    size_ok("1.5E", UINT64_C(1729382256910270464));
    size_ok("4.999999999999999999k", 4096);
    size_ok("17179869183.99999G", UINT64_C(18446744073709540879));
    size_ok("15.999999999E", UINT64_C(18446744072556630144));
}

static void test_size_fraction_edge_cases(void)
{
    size_ok("1.", 1);
    size_ok("1.k", 1024);
    size_ok("512.0", 512);
    size_ok("1.0k", 1024);
    size_ok("1.e", UINT64_C(1) << 60);     /* "e" is the exa suffix */
    /* A fraction that rounds to 1.0 counts as none, as in QEMU. */
    size_ok("1.99999999999999999999", 1);
    size_bad("1.5");            /* a fraction needs a scale */
    size_bad("1.5b");
    size_bad("0.5B");
    size_bad("1e3");
    size_bad("1.5e3k");
    size_bad(".5k");
}

static void test_size_hex(void)
{
    size_ok("0x200", 512);
    size_ok("0X200", 512);
    size_ok("0x200B", 0x200B);  /* B is a hex digit here */
    size_bad("0x");
    size_bad("0x.5k");
    size_bad("0x10.5");
    size_bad("0xfffffffffffffffff");
}

static void test_size_hex_suffix_warns(void)
{
    warnings_start();
    size_ok("0x10k", 16384);
    warnings_stop();
    g_assert_cmpstr(warnings->str, ==,
                    "Using a multiplier suffix on hex numbers is "
                    "deprecated: 0x10k\n");
}

static void test_size_limits(void)
{
    size_ok("0", 0);
    size_ok("18446744073709551615", UINT64_MAX);
    size_ok("18446744073709551615B", UINT64_MAX);
    size_ok("7.99999999999999E", UINT64_C(9223372036854764288));
    size_ok("8E", UINT64_C(1) << 63);
    size_bad("16E");
    size_bad("18446744073709551616");
    size_bad("99999999999999999999k");
    size_bad("18446744073709551615.5k");
}

static void test_size_rejects(void)
{
    static const char *const bad[] = {
        "", "abc", "-1", "-0", " -1", "1 k", "1kB", "1kk", "k", "1x",
    };
    size_t i;

    size_ok(" 512", 512);
    size_ok("+512", 512);
    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        size_bad(bad[i]);
    }
}

static void test_number(void)
{
    static const char *const bad[] = {
        "", "x", "1.5x", "inf", "-inf", "nan", "1e400", "1e-400", "1,5",
    };
    g_autoptr(Error) err = NULL;
    double d = 0;
    size_t i;

    g_assert_true(keyval_parse_number("x", "1.5", &d, &error_abort));
    g_assert_cmpfloat(d, ==, 1.5);
    g_assert_true(keyval_parse_number("x", " -2e3", &d, &error_abort));
    g_assert_cmpfloat(d, ==, -2000);
    g_assert_true(keyval_parse_number("x", "0x10", &d, &error_abort));
    g_assert_cmpfloat(d, ==, 16);
    for (i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_assert_false(keyval_parse_number("ratio", bad[i], &d, &err));
        g_assert_cmpstr(error_get_pretty(err), ==,
                        "Parameter 'ratio' expects number");
        g_clear_pointer(&err, error_free);
    }
}

/* ---- QemuOpts ---------------------------------------------------------- */

static void test_opts_basic(void)
{
    qo_ok("socket,id=c,path=/tmp/s",
          "{\"id\":\"c\",\"backend\":\"socket\",\"path\":\"/tmp/s\"}");
}

static void test_opts_empty(void)
{
    qo_ok("", "{}");
}

static void test_opts_trailing_comma(void)
{
    qo_ok("null,id=c,", "{\"id\":\"c\",\"backend\":\"null\"}");
}

static void test_opts_escape(void)
{
    qo_ok("file,id=c,path=/tmp/a,,b",
          "{\"id\":\"c\",\"backend\":\"file\",\"path\":\"/tmp/a,b\"}");
    qo_ok("file,id=c,path=,,,,",
          "{\"id\":\"c\",\"backend\":\"file\",\"path\":\",,\"}");
}

static void test_opts_implied_escape(void)
{
    /* Unlike keyval, the implied value takes ",," too. */
    qo_ok("socket,,x,id=c", "{\"id\":\"c\",\"backend\":\"socket,x\"}");
}

static void test_opts_implied_empty(void)
{
    qo_ok(",id=c", "{\"id\":\"c\",\"backend\":\"\"}");
}

static void test_opts_no_implied_value(void)
{
    qo_ok("id=c", "{\"id\":\"c\"}");
}

static void test_opts_flag_on(void)
{
    warnings_start();
    qo_ok("socket,id=c,server",
          "{\"id\":\"c\",\"backend\":\"socket\",\"server\":\"on\"}");
    warnings_stop();
    g_assert_cmpstr(warnings->str, ==,
                    "short-form boolean option 'server' deprecated\n"
                    "Please use server=on instead\n");
}

static void test_opts_flag_no(void)
{
    warnings_start();
    qo_ok("socket,id=c,nowait",
          "{\"id\":\"c\",\"backend\":\"socket\",\"wait\":\"off\"}");
    warnings_stop();
    g_assert_cmpstr(warnings->str, ==,
                    "short-form boolean option 'nowait' deprecated\n"
                    "Please use wait=off instead\n");
}

static void test_opts_flag_delay_hints(void)
{
    warnings_start();
    qo_ok("socket,id=c,nodelay,delay",
          "{\"id\":\"c\",\"backend\":\"socket\",\"delay\":\"on\"}");
    warnings_stop();
    g_assert_cmpstr(warnings->str, ==,
                    "short-form boolean option 'nodelay' deprecated\n"
                    "Please use nodelay=on instead\n"
                    "short-form boolean option 'delay' deprecated\n"
                    "Please use nodelay=off instead\n");
}

static void test_opts_flag_quiet(void)
{
    Error *err = NULL;
    json_t *obj;

    warnings_start();
    obj = qemu_opts_parse_flat_full("socket,server", "backend",
                                    qemu_chardev_opts_desc, false, NULL,
                                    NULL, &err);
    warnings_stop();
    g_assert_null(err);
    assert_json(obj, "{\"backend\":\"socket\",\"server\":\"on\"}");
    g_assert_cmpstr(warnings->str, ==, "");
    json_decref(obj);
}

static void test_opts_flag_unknown(void)
{
    /* The warning comes first, then validation rejects the name. */
    warnings_start();
    qo_err("null,id=c,nofoo", "Invalid parameter 'foo'", NULL);
    warnings_stop();
    g_assert_cmpstr(warnings->str, ==,
                    "short-form boolean option 'nofoo' deprecated\n"
                    "Please use foo=off instead\n");
}

static void test_opts_duplicate_later_wins(void)
{
    qo_ok("file,id=c,path=a,path=b",
          "{\"id\":\"c\",\"backend\":\"file\",\"path\":\"b\"}");
}

static void test_opts_duplicate_each_validated(void)
{
    qo_err("null,id=c,server=maybe,server=on",
           "Parameter 'server' expects 'on' or 'off'", NULL);
}

static void test_opts_id_first_wins(void)
{
    qo_ok("null,id=c,id=d", "{\"id\":\"c\",\"backend\":\"null\"}");
    qo_ok("null,id=c,id=1x", "{\"id\":\"c\",\"backend\":\"null\"}");
}

static void test_opts_id_invalid(void)
{
    qo_err("null,id=1c", "Parameter 'id' expects an identifier",
           KEYVAL_HINT_ID);
    qo_err("null,id=", "Parameter 'id' expects an identifier",
           KEYVAL_HINT_ID);
    qo_err("null,id=c,,", "Parameter 'id' expects an identifier",
           KEYVAL_HINT_ID);
}

static void test_opts_id_checked_first(void)
{
    qo_err("null,foo=1,id=1c", "Parameter 'id' expects an identifier",
           KEYVAL_HINT_ID);
}

static void test_opts_id_flag(void)
{
    /* A flag named id sets the id, and still warns. */
    warnings_start();
    qo_ok("null,noid", "{\"id\":\"off\",\"backend\":\"null\"}");
    qo_ok("null,id", "{\"id\":\"on\",\"backend\":\"null\"}");
    warnings_stop();
    g_assert_cmpstr(warnings->str, ==,
                    "short-form boolean option 'noid' deprecated\n"
                    "Please use id=off instead\n"
                    "short-form boolean option 'id' deprecated\n"
                    "Please use id=on instead\n");
}

static void test_opts_id_prescan(void)
{
    /* The id scan reads the implied value as a flag and splits at ",,". */
    qo_ok("socket,,id=x", "{\"id\":\"x\",\"backend\":\"socket,id=x\"}");
    qo_err("null,,id=1c", "Parameter 'id' expects an identifier",
           KEYVAL_HINT_ID);
}

static void test_opts_invalid_name(void)
{
    qo_err("null,id=c,foo=1", "Invalid parameter 'foo'", NULL);
    qo_err("null,id=c,=x", "Invalid parameter ''", NULL);
}

static void test_opts_validation_order(void)
{
    qo_err("null,id=c,foo=1,server=maybe", "Invalid parameter 'foo'", NULL);
    qo_err("null,id=c,server=maybe,foo=1",
           "Parameter 'server' expects 'on' or 'off'", NULL);
}

static void test_opts_bool(void)
{
    qo_ok("socket,server=yes,wait=n,telnet=true,tn3270=false",
          "{\"backend\":\"socket\",\"server\":\"yes\",\"wait\":\"n\","
          "\"telnet\":\"true\",\"tn3270\":\"false\"}");
    qo_err("socket,server=ON", "Parameter 'server' expects 'on' or 'off'",
           NULL);
}

static void test_opts_number(void)
{
    qo_ok("socket,reconnect=-1,cols=0x10",
          "{\"backend\":\"socket\",\"reconnect\":\"-1\",\"cols\":\"0x10\"}");
    qo_err("socket,reconnect=abc", "Parameter 'reconnect' expects a number",
           NULL);
    qo_err("socket,reconnect=", "Parameter 'reconnect' expects a number",
           NULL);
    qo_err("socket,cols=1.5", "Parameter 'cols' expects a number", NULL);
    qo_err("socket,reconnect=99999999999999999999",
           "Value '99999999999999999999' is too large for parameter "
           "'reconnect'", NULL);
    qo_err("socket,reconnect=-99999999999999999999",
           "Value '-99999999999999999999' is too large for parameter "
           "'reconnect'", NULL);
    qo_err("socket,reconnect=99999999999999999999x",
           "Parameter 'reconnect' expects a number", NULL);
}

static void test_opts_size(void)
{
    qo_ok("ringbuf,size=64k", "{\"backend\":\"ringbuf\",\"size\":\"64k\"}");
    qo_err("ringbuf,size=abc", "Parameter 'size' expects a non-negative "
           "number below 2^64", KEYVAL_HINT_SIZE);
    qo_err("ringbuf,size=-1", "Parameter 'size' expects a non-negative "
           "number below 2^64", KEYVAL_HINT_SIZE);
    qo_err("ringbuf,size=16E",
           "Value '16E' is out of range for parameter 'size'", NULL);
    qo_err("ringbuf,size=99999999999999999999",
           "Value '99999999999999999999' is out of range for parameter "
           "'size'", NULL);
    qo_err("ringbuf,size=99999999999999999999k", "Parameter 'size' expects "
           "a non-negative number below 2^64", KEYVAL_HINT_SIZE);
}

static void test_opts_help(void)
{
    Error *err = NULL;
    bool help = false;

    g_assert_null(qo_parse("socket,help", &help, NULL, &err));
    g_assert_null(err);
    g_assert_true(help);
    help = false;
    g_assert_null(qo_parse("socket,id=c,server=on,?,foo=1", &help, NULL,
                           &err));
    g_assert_null(err);
    g_assert_true(help);
}

static void test_opts_help_first_is_value(void)
{
    /* "--chardev help" lists backends: that is the caller's business. */
    qo_ok("help", "{\"backend\":\"help\"}");
}

static void test_opts_help_after_error(void)
{
    qo_err("null,foo=1,help", "Invalid parameter 'foo'", NULL);
}

static void test_opts_help_without_pointer(void)
{
    g_autoptr(Error) err = NULL;

    g_assert_null(qemu_opts_parse_flat_full("null,help", "backend",
                                            qemu_chardev_opts_desc, true,
                                            NULL, NULL, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Invalid parameter 'help'");
}

static void test_opts_nohelp(void)
{
    warnings_start();
    qo_err("null,nohelp", "Invalid parameter 'help'", NULL);
    warnings_stop();
    g_assert_cmpstr(warnings->str, ==,
                    "short-form boolean option 'nohelp' deprecated\n"
                    "Please use help=off instead\n");
}

static void test_opts_simple_accepts_any(void)
{
    Error *err = NULL;
    json_t *obj;

    warnings_start();
    obj = qemu_opts_parse_flat("a=1,b,noc,a=2,help", NULL, &err);
    warnings_stop();
    g_assert_null(err);
    assert_json(obj, "{\"a\":\"2\",\"b\":\"on\",\"c\":\"off\","
                "\"help\":\"on\"}");
    g_assert_cmpstr(warnings->str, ==,
                    "short-form boolean option 'b' deprecated\n"
                    "Please use b=on instead\n"
                    "short-form boolean option 'noc' deprecated\n"
                    "Please use c=off instead\n");
    json_decref(obj);
}

static void test_opts_simple_implied(void)
{
    Error *err = NULL;
    json_t *obj = qemu_opts_parse_flat("socket,id=c", "backend", &err);

    g_assert_null(err);
    assert_json(obj, "{\"id\":\"c\",\"backend\":\"socket\"}");
    json_decref(obj);
}

static void test_opts_long_value(void)
{
    g_autofree char *v = repeat('p', 50000);
    g_autofree char *params = g_strdup_printf("file,id=c,path=%s", v);
    Error *err = NULL;
    json_t *obj = qo_parse(params, NULL, NULL, &err);

    g_assert_null(err);
    g_assert_cmpstr(json_string_value(json_object_get(obj, "path")), ==, v);
    json_decref(obj);
}

static void test_opts_value_parsers(void)
{
    g_autoptr(Error) err = NULL;
    const char *hint = "unset";
    uint64_t u = 0;
    bool b = false;

    g_assert_true(qemu_opts_flat_parse_bool("x", "y", &b, &error_abort));
    g_assert_true(b);
    g_assert_true(qemu_opts_flat_parse_number("x", "-1", &u, &error_abort));
    g_assert_cmpuint(u, ==, UINT64_MAX);
    g_assert_true(qemu_opts_flat_parse_size("x", "1.5k", &u, &hint,
                                            &error_abort));
    g_assert_cmpuint(u, ==, 1536);
    g_assert_null(hint);
    g_assert_false(qemu_opts_flat_parse_size("x", "", &u, &hint, &err));
    g_assert_cmpstr(hint, ==, KEYVAL_HINT_SIZE);
}

static void test_opts_help_text(void)
{
    /* Byte for byte what "qemu-storage-daemon --chardev socket,help" says. */
    static const char expected[] =
        "chardev options:\n"
        "  abstract=<bool (on/off)>\n"
        "  append=<bool (on/off)>\n"
        "  backend=<str>\n"
        "  chardev=<str>\n"
        "  clipboard=<bool (on/off)>\n"
        "  cols=<num>\n"
        "  debug=<num>\n"
        "  delay=<bool (on/off)>\n"
        "  fd=<str>\n"
        "  height=<num>\n"
        "  host=<str>\n"
        "  ipv4=<bool (on/off)>\n"
        "  ipv6=<bool (on/off)>\n"
        "  localaddr=<str>\n"
        "  localport=<str>\n"
        "  logappend=<bool (on/off)>\n"
        "  logfile=<str>\n"
        "  mouse=<bool (on/off)>\n"
        "  mux=<bool (on/off)>\n"
        "  name=<str>\n"
        "  nodelay=<bool (on/off)>\n"
        "  path=<str>\n"
        "  port=<str>\n"
        "  reconnect=<num>\n"
        "  rows=<num>\n"
        "  server=<bool (on/off)>\n"
        "  signal=<bool (on/off)>\n"
        "  size=<size>\n"
        "  telnet=<bool (on/off)>\n"
        "  tight=<bool (on/off)>\n"
        "  tls-authz=<str>\n"
        "  tls-creds=<str>\n"
        "  tn3270=<bool (on/off)>\n"
        "  to=<num>\n"
        "  wait=<bool (on/off)>\n"
        "  websocket=<bool (on/off)>\n"
        "  width=<num>\n";
    static const QemuOptsFlatDesc none[] = { { NULL } };
    g_autofree char *text = qemu_opts_flat_help_text("chardev",
                                                     qemu_chardev_opts_desc);
    g_autofree char *empty = qemu_opts_flat_help_text("x", none);

    g_assert_cmpstr(text, ==, expected);
    g_assert_cmpstr(empty, ==, "There are no options for x.\n");
}

static void test_opts_errp_null(void)
{
    g_assert_null(qo_parse("null,foo=1", NULL, NULL, NULL));
    g_assert_null(qo_parse("null,id=1", NULL, NULL, NULL));
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);

    g_test_add_func("/keyval/syntax/empty", test_syntax_empty);
    g_test_add_func("/keyval/syntax/single", test_syntax_single);
    g_test_add_func("/keyval/syntax/multiple", test_syntax_multiple);
    g_test_add_func("/keyval/syntax/trailing-comma",
                    test_syntax_trailing_comma);
    g_test_add_func("/keyval/syntax/empty-value", test_syntax_empty_value);
    g_test_add_func("/keyval/syntax/value-with-equals",
                    test_syntax_value_with_equals);
    g_test_add_func("/keyval/syntax/empty-element-is-error",
                    test_syntax_empty_element);
    g_test_add_func("/keyval/syntax/missing-equals-is-error",
                    test_syntax_missing_equals);
    g_test_add_func("/keyval/syntax/errp-null", test_syntax_errp_null);
    g_test_add_func("/keyval/syntax/first-error-wins",
                    test_syntax_first_error_wins);

    g_test_add_func("/keyval/escape/double-comma", test_escape_double_comma);
    g_test_add_func("/keyval/escape/trailing", test_escape_trailing);
    g_test_add_func("/keyval/escape/odd-commas", test_escape_odd_commas);
    g_test_add_func("/keyval/escape/in-key-is-error",
                    test_escape_in_key_is_error);

    g_test_add_func("/keyval/key/valid-names", test_key_valid_names);
    g_test_add_func("/keyval/key/downstream-prefix",
                    test_key_downstream_prefix);
    g_test_add_func("/keyval/key/invalid-is-error", test_key_invalid);
    g_test_add_func("/keyval/key/index-first-is-error",
                    test_key_index_not_first);
    g_test_add_func("/keyval/key/too-long-is-error", test_key_too_long);
    g_test_add_func("/keyval/key/fragment-too-long-is-error",
                    test_key_fragment_too_long);
    g_test_add_func("/keyval/key/long-dotted", test_key_long_dotted);
    g_test_add_func("/keyval/value/long", test_value_long);
    g_test_add_func("/keyval/value/not-utf8", test_value_not_utf8);

    g_test_add_func("/keyval/nesting/objects", test_nesting_objects);
    g_test_add_func("/keyval/nesting/deep", test_nesting_deep);
    g_test_add_func("/keyval/nesting/interleaved", test_nesting_interleaved);
    g_test_add_func("/keyval/duplicate/later-wins",
                    test_duplicate_later_wins);
    g_test_add_func("/keyval/inconsistent/scalar-then-object",
                    test_inconsistent_scalar_then_object);
    g_test_add_func("/keyval/inconsistent/object-then-scalar",
                    test_inconsistent_object_then_scalar);
    g_test_add_func("/keyval/inconsistent/nested", test_inconsistent_nested);
    g_test_add_func("/keyval/inconsistent/before-later-fragments",
                    test_inconsistent_before_later_fragments);

    g_test_add_func("/keyval/list/simple", test_list_simple);
    g_test_add_func("/keyval/list/out-of-order", test_list_out_of_order);
    g_test_add_func("/keyval/list/gap-is-error", test_list_gap_is_error);
    g_test_add_func("/keyval/list/gap-in-middle-is-error",
                    test_list_gap_in_middle);
    g_test_add_func("/keyval/list/huge-index-is-error",
                    test_list_huge_index);
    g_test_add_func("/keyval/list/mixed-is-error", test_list_mixed_is_error);
    g_test_add_func("/keyval/list/nested-mixed-is-error",
                    test_list_nested_mixed);
    g_test_add_func("/keyval/list/of-objects", test_list_of_objects);
    g_test_add_func("/keyval/list/of-lists", test_list_of_lists);
    g_test_add_func("/keyval/list/leading-zeros", test_list_leading_zeros);
    g_test_add_func("/keyval/list/two-spellings", test_list_two_spellings);
    g_test_add_func("/keyval/list/error-in-qdict-order",
                    test_list_error_in_qdict_order);
    g_test_add_func("/keyval/list/nested-error-before-parent",
                    test_list_nested_error_before_parent);

    g_test_add_func("/keyval/implied/used", test_implied_used);
    g_test_add_func("/keyval/implied/explicit", test_implied_explicit);
    g_test_add_func("/keyval/implied/only-first", test_implied_only_first);
    g_test_add_func("/keyval/implied/no-escape", test_implied_no_escape);
    g_test_add_func("/keyval/implied/later-overrides",
                    test_implied_later_overrides);
    g_test_add_func("/keyval/implied/value-with-dot",
                    test_implied_value_with_dot);
    g_test_add_func("/keyval/implied/conflict-is-error",
                    test_implied_conflict);
    g_test_add_func("/keyval/implied/none", test_implied_none);
    g_test_add_func("/keyval/implied/empty-first-is-error",
                    test_implied_empty_first);
    g_test_add_func("/keyval/implied/dotted-key", test_implied_dotted_key);

    g_test_add_func("/keyval/help/word", test_help_word);
    g_test_add_func("/keyval/help/question-mark", test_help_question_mark);
    g_test_add_func("/keyval/help/with-keys", test_help_with_keys);
    g_test_add_func("/keyval/help/absent-sets-false",
                    test_help_absent_sets_false);
    g_test_add_func("/keyval/help/not-available-is-error",
                    test_help_not_available);
    g_test_add_func("/keyval/help/then-implied", test_help_then_implied);
    g_test_add_func("/keyval/help/syntax-error-first",
                    test_help_syntax_error_first);
    g_test_add_func("/keyval/help/before-list-errors",
                    test_help_before_list_errors);
    g_test_add_func("/keyval/help/lookalikes", test_help_lookalikes);

    g_test_add_func("/keyval/qdict-order/buckets", test_qdict_order);
    g_test_add_func("/keyval/qdict-order/empty", test_qdict_order_empty);
    g_test_add_func("/keyval/unexpected/matches-qemu",
                    test_unexpected_matches_qemu);
    g_test_add_func("/keyval/unexpected/none", test_unexpected_none);

    g_test_add_func("/keyval/bool/accepted", test_bool_accepted);
    g_test_add_func("/keyval/bool/rejected", test_bool_rejected);
    g_test_add_func("/keyval/int64/forms", test_int64_forms);
    g_test_add_func("/keyval/int64/limits", test_int64_limits);
    g_test_add_func("/keyval/int64/garbage-is-error", test_int64_garbage);
    g_test_add_func("/keyval/uint64/limits", test_uint64_limits);
    g_test_add_func("/keyval/uint64/negative-wraps",
                    test_uint64_negative_wraps);
    g_test_add_func("/keyval/uint64/garbage-is-error", test_uint64_garbage);
    g_test_add_func("/keyval/size/suffixes", test_size_suffixes);
    g_test_add_func("/keyval/size/fraction", test_size_fraction);
    g_test_add_func("/keyval/size/fraction-edge-cases",
                    test_size_fraction_edge_cases);
    g_test_add_func("/keyval/size/hex", test_size_hex);
    g_test_add_func("/keyval/size/hex-suffix-warns",
                    test_size_hex_suffix_warns);
    g_test_add_func("/keyval/size/limits", test_size_limits);
    g_test_add_func("/keyval/size/rejects", test_size_rejects);
    g_test_add_func("/keyval/number/forms", test_number);

    g_test_add_func("/qemu-opts/basic", test_opts_basic);
    g_test_add_func("/qemu-opts/empty", test_opts_empty);
    g_test_add_func("/qemu-opts/trailing-comma", test_opts_trailing_comma);
    g_test_add_func("/qemu-opts/escape", test_opts_escape);
    g_test_add_func("/qemu-opts/implied/escape", test_opts_implied_escape);
    g_test_add_func("/qemu-opts/implied/empty", test_opts_implied_empty);
    g_test_add_func("/qemu-opts/implied/absent", test_opts_no_implied_value);
    g_test_add_func("/qemu-opts/flag/on", test_opts_flag_on);
    g_test_add_func("/qemu-opts/flag/no", test_opts_flag_no);
    g_test_add_func("/qemu-opts/flag/delay-hints",
                    test_opts_flag_delay_hints);
    g_test_add_func("/qemu-opts/flag/quiet", test_opts_flag_quiet);
    g_test_add_func("/qemu-opts/flag/unknown-is-error",
                    test_opts_flag_unknown);
    g_test_add_func("/qemu-opts/duplicate/later-wins",
                    test_opts_duplicate_later_wins);
    g_test_add_func("/qemu-opts/duplicate/each-validated",
                    test_opts_duplicate_each_validated);
    g_test_add_func("/qemu-opts/id/first-wins", test_opts_id_first_wins);
    g_test_add_func("/qemu-opts/id/invalid-is-error", test_opts_id_invalid);
    g_test_add_func("/qemu-opts/id/checked-first",
                    test_opts_id_checked_first);
    g_test_add_func("/qemu-opts/id/flag", test_opts_id_flag);
    g_test_add_func("/qemu-opts/id/prescan", test_opts_id_prescan);
    g_test_add_func("/qemu-opts/invalid-name-is-error",
                    test_opts_invalid_name);
    g_test_add_func("/qemu-opts/validation-order",
                    test_opts_validation_order);
    g_test_add_func("/qemu-opts/types/bool", test_opts_bool);
    g_test_add_func("/qemu-opts/types/number", test_opts_number);
    g_test_add_func("/qemu-opts/types/size", test_opts_size);
    g_test_add_func("/qemu-opts/help/request", test_opts_help);
    g_test_add_func("/qemu-opts/help/first-is-value",
                    test_opts_help_first_is_value);
    g_test_add_func("/qemu-opts/help/after-error",
                    test_opts_help_after_error);
    g_test_add_func("/qemu-opts/help/without-pointer",
                    test_opts_help_without_pointer);
    g_test_add_func("/qemu-opts/help/nohelp", test_opts_nohelp);
    g_test_add_func("/qemu-opts/help/text", test_opts_help_text);
    g_test_add_func("/qemu-opts/simple/accepts-any",
                    test_opts_simple_accepts_any);
    g_test_add_func("/qemu-opts/simple/implied", test_opts_simple_implied);
    g_test_add_func("/qemu-opts/long-value", test_opts_long_value);
    g_test_add_func("/qemu-opts/value-parsers", test_opts_value_parsers);
    g_test_add_func("/qemu-opts/errp-null", test_opts_errp_null);

    ret = g_test_run();
    if (warnings) {
        g_string_free(warnings, TRUE);
    }
    return ret;
}
