/* The QMP output writer: QEMU's key order, escapes, numbers, pretty form. */
#include "util/json-stream.h"
#include "util/json-writer.h"

static char *write_text(const char *json, bool pretty)
{
    json_t *v = json_parse_text(json, &error_abort);
    GString *out = g_string_new(NULL);

    json_writer_append(out, v, pretty);
    json_decref(v);
    return g_string_free(out, false);
}

#define CHECK(in, want) do {                           \
        g_autofree char *got_ = write_text(in, false); \
        g_assert_cmpstr(got_, ==, want);               \
    } while (0)

static void test_key_order_is_qemus(void)
{
    /* qemu-storage-daemon's greeting and query-version order these so. */
    CHECK("{\"major\": 7, \"minor\": 2, \"micro\": 0}",
          "{\"micro\": 0, \"minor\": 2, \"major\": 7}");
    CHECK("{\"qemu\": {}, \"package\": \"p\"}", "{\"qemu\": {}, \"package\": \"p\"}");
}

static void test_escapes(void)
{
    CHECK("[\"a\\\"b\\\\c\\n\\t\\u0001\\u007f\"]", "[\"a\\\"b\\\\c\\n\\t\\u0001\\u007F\"]");
    CHECK("[\"\\u00e9\\ud83d\\ude00\"]", "[\"\\u00E9\\uD83D\\uDE00\"]");
}

static void test_nul_round_trips(void)
{
    json_t *v = json_parse_text("\"q\\u0000x\"", &error_abort);

    /* Kept as modified UTF-8 inside, so C strings hold it. */
    g_assert_cmpuint(json_string_length(v), ==, 4);
    g_assert_cmpstr(json_string_value(v), ==, "q\xC0\x80x");
    json_decref(v);
    CHECK("[\"q\\u0000x\"]", "[\"q\\u0000x\"]");
}

static void test_invalid_utf8_becomes_replacement(void)
{
    json_t *v = json_stringn_nocheck("a\xff" "b", 3);
    GString *out = g_string_new(NULL);

    json_writer_append(out, v, false);
    g_assert_cmpstr(out->str, ==, "\"a\\uFFFDb\"");
    g_string_free(out, true);
    json_decref(v);
}

static void test_numbers(void)
{
    uint64_t big;
    json_t *v = json_parse_text("18446744073709551615", &error_abort);

    g_assert_true(json_uint64_get(v, &big));
    g_assert_cmpuint(big, ==, UINT64_MAX);
    g_assert_false(json_is_text(v));
    json_decref(v);
    CHECK("[12345678901234567890, -5, 1.5, 2.0, 1e300]",
          "[12345678901234567890, -5, 1.5, 2, 1.0000000000000001e+300]");
}

static void test_pretty(void)
{
    g_autofree char *got = write_text("{\"return\": {\"a\": [1, 2]}}", true);

    g_assert_cmpstr(got, ==, "{\n    \"return\": {\n        \"a\": [\n"
                    "            1,\n            2\n        ]\n    }\n}");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/json-writer/key-order-is-qemus", test_key_order_is_qemus);
    g_test_add_func("/json-writer/escapes", test_escapes);
    g_test_add_func("/json-writer/nul-round-trips", test_nul_round_trips);
    g_test_add_func("/json-writer/invalid-utf8-becomes-replacement",
                    test_invalid_utf8_becomes_replacement);
    g_test_add_func("/json-writer/numbers", test_numbers);
    g_test_add_func("/json-writer/pretty", test_pretty);
    return g_test_run();
}
