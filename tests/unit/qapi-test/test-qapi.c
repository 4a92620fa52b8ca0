/*
 * The QAPI generator's output, on tests/unit/qapi-schema-test.json:
 * decoding (JSON and keyval) with QEMU's error texts, encoding, freeing,
 * the command table and marshalling, events and introspection.
 */
#include <string.h>

#include "qapi-commands.h"
#include "qapi-events.h"
#include "qapi-introspect.h"
#include "qapi-visit.h"

/* ---- helpers -------------------------------------------------------------- */

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);

    g_assert_nonnull(v);
    return v;
}

/* Decodes text as TestScalars-like type T and returns the error text. */
#define DECODE_ERROR(T, keyval, text, want) do {                            \
        QapiDecoder d_;                                                     \
        json_t *in_ = parse(text);                                          \
        T *out_ = NULL;                                                     \
        Error *err_ = NULL;                                                 \
                                                                            \
        qapi_decoder_init(&d_, keyval);                                     \
        g_assert_false(qapi_decode_##T(&d_, NULL, in_, &out_, &err_));      \
        qapi_decoder_cleanup(&d_);                                          \
        g_assert_null(out_);                                                \
        g_assert_nonnull(err_);                                             \
        g_assert_cmpstr(error_get_pretty(err_), ==, want);                  \
        error_free(err_);                                                   \
        json_decref(in_);                                                   \
    } while (0)

static const char *scalars_json =
    "{\"s\": \"hello\", \"i\": -5, \"i8\": 127, \"u32\": 4294967295,"
    " \"u64\": 42, \"sz\": 65536, \"b\": true, \"n\": 1.5,"
    " \"color\": \"light-blue\", \"opt-int\": 7, \"default\": 3,"
    " \"anything\": {\"x\": [1, 2]}}";

/* ---- decoding ------------------------------------------------------------- */

static void test_decode_scalars(void)
{
    QapiDecoder d;
    json_t *in = parse(scalars_json);
    g_autoptr(TestScalars) out = NULL;

    qapi_decoder_init(&d, false);
    g_assert_true(qapi_decode_TestScalars(&d, NULL, in, &out, &error_abort));
    qapi_decoder_cleanup(&d);
    g_assert_cmpstr(out->s, ==, "hello");
    g_assert_cmpint(out->i, ==, -5);
    g_assert_cmpint(out->i8, ==, 127);
    g_assert_cmpuint(out->u32, ==, 4294967295u);
    g_assert_cmpuint(out->u64, ==, 42);
    g_assert_cmpuint(out->sz, ==, 65536);
    g_assert_true(out->b);
    g_assert_cmpfloat(out->n, ==, 1.5);
    g_assert_cmpint(out->color, ==, TEST_COLOR_LIGHT_BLUE);
    g_assert_true(out->has_opt_int);
    g_assert_cmpint(out->opt_int, ==, 7);
    g_assert_null(out->opt_str);
    g_assert_false(out->has_opt_bool);
    g_assert_true(out->has_q_default);
    g_assert_cmpint(out->q_default, ==, 3);
    g_assert_true(json_is_object(out->anything));
    json_decref(in);
}

static void test_encode_round_trip(void)
{
    QapiDecoder d;
    json_t *in = parse(scalars_json), *back;
    g_autoptr(TestScalars) out = NULL;

    qapi_decoder_init(&d, false);
    g_assert_true(qapi_decode_TestScalars(&d, NULL, in, &out, &error_abort));
    qapi_decoder_cleanup(&d);
    back = qapi_encode_TestScalars(out);
    g_assert_true(json_equal(in, back));
    json_decref(back);
    json_decref(in);
}

static void test_decode_missing_member(void)
{
    DECODE_ERROR(TestInner, false, "{\"label\": \"l\"}", "Parameter 'x' is missing");
}

static void test_decode_unexpected_member(void)
{
    DECODE_ERROR(TestInner, false, "{\"x\": 1, \"bogus\": 2}",
                 "Parameter 'bogus' is unexpected");
}

static void test_decode_unexpected_named_as_qemu_does(void)
{
    /* qemu-storage-daemon names 'bbb' for both orders: its hash order. */
    const char *inputs[] = { "{\"aaa\": 1, \"bbb\": 2, \"ccc\": 3}",
                             "{\"ccc\": 1, \"bbb\": 2, \"aaa\": 3}" };
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(inputs); i++) {
        QapiDecoder d;
        json_t *in = parse(inputs[i]);
        Error *err = NULL;

        qapi_decoder_init(&d, false);
        g_assert_false(qapi_decode_no_args(&d, in, &err));
        qapi_decoder_cleanup(&d);
        g_assert_cmpstr(error_get_pretty(err), ==, "Parameter 'bbb' is unexpected");
        error_free(err);
        json_decref(in);
    }
}

static void test_decode_keyval_unexpected_object(void)
{
    DECODE_ERROR(TestInner, true, "{\"x\": \"1\", \"sub\": {\"a\": \"1\"}}",
                 "Parameters 'sub.*' are unexpected");
}

static void test_decode_narrow_range_names_bare_member(void)
{
    DECODE_ERROR(TestNested, false,
                 "{\"inner\": {\"x\": 1}, \"small\": {\"v\": 300}}",
                 "Parameter 'v' expects uint8_t");
    DECODE_ERROR(TestNested, false,
                 "{\"inner\": {\"x\": 1}, \"small\": {\"v\": \"1\"}}",
                 "Parameter 'small.v' expects uint64");
}

static void test_decode_wrong_json_types(void)
{
    DECODE_ERROR(TestInner, false, "{\"x\": \"1\"}",
                 "Invalid parameter type for 'x', expected: integer");
    DECODE_ERROR(TestInner, false, "{\"x\": 1.5}",
                 "Invalid parameter type for 'x', expected: integer");
    DECODE_ERROR(TestInner, false, "{\"x\": 1, \"label\": 5}",
                 "Invalid parameter type for 'label', expected: string");
    DECODE_ERROR(TestInner, false, "[1]",
                 "Invalid parameter type for 'null', expected: object");
    DECODE_ERROR(TestNested, false, "{\"inner\": {\"x\": 1}, \"list\": {}}",
                 "Invalid parameter type for 'list', expected: array");
}

static void test_decode_scalar_ranges(void)
{
    DECODE_ERROR(TestScalars, false,
                 "{\"s\": \"\", \"i\": 0, \"i8\": 128, \"u32\": 0, \"u64\": 0,"
                 " \"sz\": 0, \"b\": true, \"n\": 1, \"color\": \"red\"}",
                 "Parameter 'i8' expects int8_t");
    /* QEMU reads unsigned members as uint64 first, then narrows. */
    DECODE_ERROR(TestScalars, false,
                 "{\"s\": \"\", \"i\": 0, \"i8\": 0, \"u32\": -1, \"u64\": 0,"
                 " \"sz\": 0, \"b\": true, \"n\": 1, \"color\": \"red\"}",
                 "Parameter 'u32' expects uint32_t");
    DECODE_ERROR(TestScalars, false,
                 "{\"s\": \"\", \"i\": 0, \"i8\": 0, \"u32\": \"x\", \"u64\": 0,"
                 " \"sz\": 0, \"b\": true, \"n\": 1, \"color\": \"red\"}",
                 "Parameter 'u32' expects uint64");
    DECODE_ERROR(TestScalars, false,
                 "{\"s\": \"\", \"i\": 0, \"i8\": 0, \"u32\": 0, \"u64\": 0,"
                 " \"sz\": 0, \"b\": 1, \"n\": 1, \"color\": \"red\"}",
                 "Invalid parameter type for 'b', expected: boolean");
    DECODE_ERROR(TestScalars, false,
                 "{\"s\": \"\", \"i\": 0, \"i8\": 0, \"u32\": 0, \"u64\": 0,"
                 " \"sz\": 0, \"b\": true, \"n\": \"1\", \"color\": \"red\"}",
                 "Invalid parameter type for 'n', expected: number");
}

static void test_decode_negative_uint64_wraps(void)
{
    QapiDecoder d;
    json_t *in = parse("{\"s\": \"\", \"i\": 0, \"i8\": 0, \"u32\": 0, \"u64\": -1,"
                       " \"sz\": 0, \"b\": true, \"n\": 1, \"color\": \"red\"}");
    g_autoptr(TestScalars) out = NULL;

    qapi_decoder_init(&d, false);
    g_assert_true(qapi_decode_TestScalars(&d, NULL, in, &out, &error_abort));
    qapi_decoder_cleanup(&d);
    g_assert_cmpuint(out->u64, ==, UINT64_MAX);
    json_decref(in);
}

static void test_decode_enum_value(void)
{
    DECODE_ERROR(TestScalars, false,
                 "{\"s\": \"\", \"i\": 0, \"i8\": 0, \"u32\": 0, \"u64\": 0,"
                 " \"sz\": 0, \"b\": true, \"n\": 1, \"color\": \"purple\"}",
                 "Parameter 'color' does not accept value 'purple'");
    DECODE_ERROR(TestScalars, false,
                 "{\"s\": \"\", \"i\": 0, \"i8\": 0, \"u32\": 0, \"u64\": 0,"
                 " \"sz\": 0, \"b\": true, \"n\": 1, \"color\": 1}",
                 "Invalid parameter type for 'color', expected: string");
}

static void test_decode_nested_paths(void)
{
    DECODE_ERROR(TestNested, false, "{\"inner\": {}}",
                 "Parameter 'inner.x' is missing");
    DECODE_ERROR(TestNested, false, "{\"inner\": {\"x\": 1, \"y\": 2}}",
                 "Parameter 'inner.y' is unexpected");
    DECODE_ERROR(TestNested, false,
                 "{\"inner\": {\"x\": 1}, \"list\": [{\"x\": 1}, {\"x\": true}]}",
                 "Invalid parameter type for 'list[1].x', expected: integer");
    DECODE_ERROR(TestNested, false,
                 "{\"inner\": {\"x\": 1}, \"colors\": [\"red\", \"blue\"]}",
                 "Parameter 'null' does not accept value 'blue'");
}

static void test_decode_lists(void)
{
    QapiDecoder d;
    json_t *in = parse("{\"inner\": {\"x\": 1}, \"list\": [{\"x\": 2}, {\"x\": 3}],"
                       " \"names\": [\"a\", \"b\"], \"colors\": []}");
    g_autoptr(TestNested) out = NULL;
    json_t *back;

    qapi_decoder_init(&d, false);
    g_assert_true(qapi_decode_TestNested(&d, NULL, in, &out, &error_abort));
    qapi_decoder_cleanup(&d);
    g_assert_cmpint(out->list->value->x, ==, 2);
    g_assert_cmpint(out->list->next->value->x, ==, 3);
    g_assert_null(out->list->next->next);
    g_assert_cmpstr(out->names->next->value, ==, "b");
    g_assert_null(out->colors);
    /* An empty list decodes to NULL, which encodes as absent. */
    back = qapi_encode_TestNested(out);
    json_object_set_new(back, "colors", json_array());
    g_assert_true(json_equal(in, back));
    json_decref(back);
    json_decref(in);
}

static void test_decode_alternates(void)
{
    QapiDecoder d;
    json_t *in = parse("{\"one\": \"bitmap0\", \"many\": [\"a\", {\"node\": \"n\", \"name\": \"b\"}]}");
    g_autoptr(TestAlternates) out = NULL;
    json_t *back;

    qapi_decoder_init(&d, false);
    g_assert_true(qapi_decode_TestAlternates(&d, NULL, in, &out, &error_abort));
    qapi_decoder_cleanup(&d);
    g_assert_cmpint(out->one->type, ==, QTYPE_QSTRING);
    g_assert_cmpstr(out->one->u.local, ==, "bitmap0");
    g_assert_cmpint(out->many->next->value->type, ==, QTYPE_QDICT);
    g_assert_cmpstr(out->many->next->value->u.external->name, ==, "b");
    back = qapi_encode_TestAlternates(out);
    g_assert_true(json_equal(in, back));
    json_decref(back);
    json_decref(in);
}

static void test_decode_alternate_errors(void)
{
    /* QEMU names a list element "null" here, and the branch path fully. */
    DECODE_ERROR(TestAlternates, false, "{\"one\": \"a\", \"many\": [1]}",
                 "Invalid parameter type for 'null', expected: TestRefOrStr");
    DECODE_ERROR(TestAlternates, false, "{\"one\": true}",
                 "Invalid parameter type for 'one', expected: TestRefOrStr");
    DECODE_ERROR(TestAlternates, false,
                 "{\"one\": \"a\", \"many\": [\"a\", {\"node\": \"n\"}]}",
                 "Parameter 'many[1].name' is missing");
}

static void test_decode_union(void)
{
    QapiDecoder d;
    json_t *in = parse("{\"driver\": \"file\", \"node-name\": \"n0\","
                       " \"filename\": \"/tmp/x\", \"direct\": true}");
    g_autoptr(TestDeviceOptions) out = NULL;
    json_t *back;

    qapi_decoder_init(&d, false);
    g_assert_true(qapi_decode_TestDeviceOptions(&d, NULL, in, &out, &error_abort));
    qapi_decoder_cleanup(&d);
    g_assert_cmpint(out->driver, ==, TEST_DRIVER_FILE);
    g_assert_cmpstr(out->node_name, ==, "n0");
    g_assert_cmpstr(out->u.file.filename, ==, "/tmp/x");
    g_assert_true(out->u.file.has_direct && out->u.file.direct);
    back = qapi_encode_TestDeviceOptions(out);
    g_assert_true(json_equal(in, back));
    json_decref(back);
    json_decref(in);
}

static void test_decode_union_errors(void)
{
    DECODE_ERROR(TestDeviceOptions, false, "{\"node-name\": \"n\"}",
                 "Parameter 'driver' is missing");
    DECODE_ERROR(TestDeviceOptions, false, "{\"driver\": \"bogus\"}",
                 "Parameter 'driver' does not accept value 'bogus'");
    DECODE_ERROR(TestDeviceOptions, false, "{\"driver\": \"file\"}",
                 "Parameter 'filename' is missing");
    DECODE_ERROR(TestDeviceOptions, false,
                 "{\"driver\": \"null-co\", \"filename\": \"x\"}",
                 "Parameter 'filename' is unexpected");
}

static void test_decode_keyval_converts_strings(void)
{
    QapiDecoder d;
    json_t *in = parse("{\"s\": \"hello\", \"i\": \"-5\", \"i8\": \"12\","
                       " \"u32\": \"7\", \"u64\": \"42\", \"sz\": \"64k\","
                       " \"b\": \"on\", \"n\": \"2.5\", \"color\": \"green\"}");
    g_autoptr(TestScalars) out = NULL;

    qapi_decoder_init(&d, true);
    g_assert_true(qapi_decode_TestScalars(&d, NULL, in, &out, &error_abort));
    qapi_decoder_cleanup(&d);
    g_assert_cmpint(out->i, ==, -5);
    g_assert_cmpint(out->i8, ==, 12);
    g_assert_cmpuint(out->sz, ==, 65536);
    g_assert_true(out->b);
    g_assert_cmpfloat(out->n, ==, 2.5);
    g_assert_cmpint(out->color, ==, TEST_COLOR_GREEN);
    json_decref(in);
}

static void test_decode_keyval_errors(void)
{
    DECODE_ERROR(TestInner, true, "{\"x\": \"abc\"}",
                 "Parameter 'x' expects integer");
    DECODE_ERROR(TestFileOptions, true, "{\"filename\": \"f\", \"direct\": \"maybe\"}",
                 "Parameter 'direct' expects 'on' or 'off'");
    DECODE_ERROR(TestNested, true, "{\"inner\": {\"x\": \"1\"}, \"list\": [{\"x\": \"q\"}]}",
                 "Parameter 'list.0.x' expects integer");
}

/* ---- commands ------------------------------------------------------------- */

TestInner *qmp_test_add(int64_t a, bool has_b, int64_t b, Error **errp)
{
    TestInner *r = g_new0(TestInner, 1);

    r->x = a + (has_b ? b : 0);
    r->label = g_strdup("sum");
    return r;
}

TestInnerList *qmp_test_list(bool has_count, uint32_t count, Error **errp)
{
    TestInnerList *head = NULL;
    uint32_t i;

    for (i = 0; i < (has_count ? count : 0); i++) {
        TestInnerList *node = g_new0(TestInnerList, 1);

        node->value = g_new0(TestInner, 1);
        node->value->x = count - i;
        node->next = head;
        head = node;
    }
    return head;
}

bool qmp_test_fail(const char *node, Error **errp)
{
    error_setg(errp, "Node '%s' not found", node);
    return false;
}

static int boxed_calls;

bool qmp_test_boxed(TestDeviceOptions *arg, Error **errp)
{
    boxed_calls++;
    g_assert_cmpint(arg->driver, ==, TEST_DRIVER_NULL_CO);
    return true;
}

bool qmp_test_deprecated(Error **errp)
{
    return true;
}

static const QmpCommand *lookup(const char *name)
{
    size_t i;

    for (i = 0; i < qmp_commands_count; i++) {
        if (!strcmp(qmp_commands[i].name, name)) {
            return &qmp_commands[i];
        }
    }
    return NULL;
}

static json_t *call(const char *name, const char *args, Error **errp)
{
    json_t *in = parse(args), *ret = NULL;
    bool ok = lookup(name)->fn(in, &ret, errp);

    json_decref(in);
    g_assert_true(ok == (ret != NULL));
    return ret;
}

static void test_command_table(void)
{
    g_assert_cmpuint(qmp_commands_count, ==, 5);
    g_assert_nonnull(lookup("test-add"));
    g_assert_null(lookup("test_add"));
    g_assert_cmpuint(lookup("test-deprecated")->flags, ==, QMP_CMD_DEPRECATED);
}

static void test_command_marshals_result(void)
{
    json_t *ret = call("test-add", "{\"a\": 2, \"b\": 3}", &error_abort);
    json_t *want = parse("{\"x\": 5, \"label\": \"sum\"}");

    g_assert_true(json_equal(ret, want));
    json_decref(ret);
    json_decref(want);
}

static void test_command_empty_list_result(void)
{
    json_t *ret = call("test-list", "{}", &error_abort);

    g_assert_true(json_is_array(ret) && json_array_size(ret) == 0);
    json_decref(ret);
    ret = call("test-list", "{\"count\": 2}", &error_abort);
    g_assert_cmpuint(json_array_size(ret), ==, 2);
    json_decref(ret);
}

static void test_command_argument_errors(void)
{
    Error *err = NULL;

    g_assert_null(call("test-add", "{}", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Parameter 'a' is missing");
    error_free(err);
    err = NULL;
    g_assert_null(call("test-deprecated", "{\"x\": 1}", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Parameter 'x' is unexpected");
    error_free(err);
}

static void test_command_handler_error(void)
{
    Error *err = NULL;

    g_assert_null(call("test-fail", "{\"node\": \"n9\"}", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Node 'n9' not found");
    error_free(err);
}

static void test_command_boxed(void)
{
    json_t *ret = call("test-boxed", "{\"driver\": \"null-co\", \"size\": 5}",
                       &error_abort);

    g_assert_cmpint(boxed_calls, ==, 1);
    g_assert_true(json_is_object(ret) && json_object_size(ret) == 0);
    json_decref(ret);
}

/* ---- events --------------------------------------------------------------- */

static GPtrArray *events;

void qapi_event_emit(const char *name, json_t *data)
{
    json_t *ev = json_pack("{s:s}", "event", name);

    if (data) {
        json_object_set_new(ev, "data", data);
    }
    g_ptr_array_add(events, ev);
}

static void test_event_data(void)
{
    json_t *want = parse("[{\"event\": \"TEST_EVENT\", \"data\": {\"id\": \"j\", \"color\": \"red\"}},"
                         " {\"event\": \"TEST_EVENT\", \"data\": {\"id\": \"k\", \"count\": 3, \"color\": \"green\"}},"
                         " {\"event\": \"TEST_NO_DATA\"}]");
    guint i;

    events = g_ptr_array_new_with_free_func((GDestroyNotify)json_decref);
    qapi_event_send_test_event("j", false, 0, TEST_COLOR_RED);
    qapi_event_send_test_event("k", true, 3, TEST_COLOR_GREEN);
    qapi_event_send_test_no_data();
    g_assert_cmpuint(events->len, ==, 3);
    for (i = 0; i < events->len; i++) {
        g_assert_true(json_equal(g_ptr_array_index(events, i),
                                 json_array_get(want, i)));
    }
    g_ptr_array_unref(events);
    json_decref(want);
}

/* ---- introspection -------------------------------------------------------- */

static void test_introspection_is_closed(void)
{
    json_t *schema = parse(qapi_introspect_json), *e;
    GHashTable *names = g_hash_table_new(g_str_hash, g_str_equal);
    size_t i;

    json_array_foreach(schema, i, e) {
        g_hash_table_add(names, (gpointer)json_string_value(json_object_get(e, "name")));
    }
    /* Every type an entry references is itself an entry. */
    json_array_foreach(schema, i, e) {
        const char *keys[] = { "arg-type", "ret-type", "element-type" };
        json_t *members = json_object_get(e, "members"), *m, *variants;
        size_t j, k;

        for (k = 0; k < G_N_ELEMENTS(keys); k++) {
            json_t *t = json_object_get(e, keys[k]);

            if (t) {
                g_assert_true(g_hash_table_contains(names, json_string_value(t)));
            }
        }
        json_array_foreach(members, j, m) {
            json_t *t = json_object_get(m, "type");

            if (t) {
                g_assert_true(g_hash_table_contains(names, json_string_value(t)));
            }
        }
        variants = json_object_get(e, "variants");
        json_array_foreach(variants, j, m) {
            g_assert_true(g_hash_table_contains(
                names, json_string_value(json_object_get(m, "type"))));
        }
    }
    g_assert_true(g_hash_table_contains(names, "test-add"));
    g_assert_true(g_hash_table_contains(names, "TEST_EVENT"));
    /* Type names are opaque, as in QEMU. */
    g_assert_false(g_hash_table_contains(names, "TestInner"));
    g_hash_table_destroy(names);
    json_decref(schema);
}

static void test_introspection_command_entry(void)
{
    json_t *schema = parse(qapi_introspect_json), *e, *cmd = NULL, *arg = NULL, *want;
    size_t i;

    json_array_foreach(schema, i, e) {
        if (!strcmp(json_string_value(json_object_get(e, "name")), "test-add")) {
            cmd = e;
        }
    }
    g_assert_nonnull(cmd);
    g_assert_cmpstr(json_string_value(json_object_get(cmd, "meta-type")), ==, "command");
    json_array_foreach(schema, i, e) {
        if (json_equal(json_object_get(e, "name"), json_object_get(cmd, "arg-type"))) {
            arg = e;
        }
    }
    g_assert_nonnull(arg);
    /* Optional members carry "default": null; integers are all "int". */
    want = parse("[{\"name\": \"a\", \"type\": \"int\"},"
                 " {\"name\": \"b\", \"type\": \"int\", \"default\": null}]");
    g_assert_true(json_equal(json_object_get(arg, "members"), want));
    json_decref(want);
    json_decref(schema);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qapi/decode/scalars", test_decode_scalars);
    g_test_add_func("/qapi/decode/encode-round-trip", test_encode_round_trip);
    g_test_add_func("/qapi/decode/missing-member", test_decode_missing_member);
    g_test_add_func("/qapi/decode/unexpected-member", test_decode_unexpected_member);
    g_test_add_func("/qapi/decode/unexpected-named-as-qemu-does",
                    test_decode_unexpected_named_as_qemu_does);
    g_test_add_func("/qapi/decode/keyval-unexpected-object",
                    test_decode_keyval_unexpected_object);
    g_test_add_func("/qapi/decode/narrow-range-names-bare-member",
                    test_decode_narrow_range_names_bare_member);
    g_test_add_func("/qapi/decode/wrong-json-types", test_decode_wrong_json_types);
    g_test_add_func("/qapi/decode/scalar-ranges", test_decode_scalar_ranges);
    g_test_add_func("/qapi/decode/negative-uint64-wraps", test_decode_negative_uint64_wraps);
    g_test_add_func("/qapi/decode/enum-value", test_decode_enum_value);
    g_test_add_func("/qapi/decode/nested-paths", test_decode_nested_paths);
    g_test_add_func("/qapi/decode/lists", test_decode_lists);
    g_test_add_func("/qapi/decode/alternates", test_decode_alternates);
    g_test_add_func("/qapi/decode/alternate-errors", test_decode_alternate_errors);
    g_test_add_func("/qapi/decode/union", test_decode_union);
    g_test_add_func("/qapi/decode/union-errors", test_decode_union_errors);
    g_test_add_func("/qapi/decode/keyval-converts-strings", test_decode_keyval_converts_strings);
    g_test_add_func("/qapi/decode/keyval-errors", test_decode_keyval_errors);
    g_test_add_func("/qapi/command/table", test_command_table);
    g_test_add_func("/qapi/command/marshals-result", test_command_marshals_result);
    g_test_add_func("/qapi/command/empty-list-result", test_command_empty_list_result);
    g_test_add_func("/qapi/command/argument-errors", test_command_argument_errors);
    g_test_add_func("/qapi/command/handler-error", test_command_handler_error);
    g_test_add_func("/qapi/command/boxed", test_command_boxed);
    g_test_add_func("/qapi/event/data", test_event_data);
    g_test_add_func("/qapi/introspect/closed", test_introspection_is_closed);
    g_test_add_func("/qapi/introspect/command-entry", test_introspection_command_entry);
    return g_test_run();
}
