/*
 * The incremental JSON reader: messages split anywhere, pipelined, and
 * every kind of bad input followed by a good message, with QEMU's texts.
 */
#include <string.h>

#include "util/json-stream.h"

typedef struct Collected {
    GPtrArray *items;   /* "ok:<compact json>" or "err:<message>" */
} Collected;

static void collect(void *opaque, json_t *value, Error *err)
{
    Collected *c = opaque;

    if (err) {
        g_ptr_array_add(c->items, g_strdup_printf("err:%s", error_get_pretty(err)));
        error_free(err);
    } else {
        char *text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);

        g_ptr_array_add(c->items, g_strdup_printf("ok:%s", text));
        free(text);
        json_decref(value);
    }
}

/* Feeds input in pieces of chunk bytes (0: all at once) and joins results. */
static char *run(const char *input, size_t chunk, bool flush)
{
    Collected c = { g_ptr_array_new_with_free_func(g_free) };
    JsonStream *js = json_stream_new(collect, &c);
    size_t len = strlen(input), pos;
    char *joined;

    for (pos = 0; pos < len; pos += chunk ? chunk : len) {
        json_stream_feed(js, input + pos, MIN(chunk ? chunk : len, len - pos));
    }
    if (flush) {
        json_stream_flush(js);
    }
    json_stream_free(js);
    g_ptr_array_add(c.items, NULL);
    joined = g_strjoinv(" | ", (char **)c.items->pdata);
    g_ptr_array_unref(c.items);
    return joined;
}

#define CHECK(input, want) do {                        \
        g_autofree char *got_ = run(input, 0, false);  \
        g_assert_cmpstr(got_, ==, want);               \
    } while (0)

static void test_one_object(void)
{
    CHECK("{\"execute\": \"query-version\"}", "ok:{\"execute\":\"query-version\"}");
}

static void test_split_every_byte(void)
{
    const char *in = "{\"execute\": \"x\", \"arguments\": {\"a\": [1, 2.5, true, null]}}";
    size_t chunk;

    for (chunk = 1; chunk <= 7; chunk++) {
        g_autofree char *got = run(in, chunk, false);

        g_assert_cmpstr(got, ==,
            "ok:{\"execute\":\"x\",\"arguments\":{\"a\":[1,2.5,true,null]}}");
    }
}

static void test_pipelined(void)
{
    CHECK("{\"a\":1}{\"b\":2}\r\n{\"c\":3}", "ok:{\"a\":1} | ok:{\"b\":2} | ok:{\"c\":3}");
}

static void test_single_quotes(void)
{
    CHECK("{'execute': 'it''s'}", "err:JSON parse error, expected separator in dict");
    CHECK("{'execute': 'q\\'v'}", "ok:{\"execute\":\"q'v\"}");
}

static void test_escapes_and_unicode(void)
{
    CHECK("[\"a\\n\\t\\\"\\\\\\/\\u00e9\\ud83d\\ude00\"]",
          "ok:[\"a\\n\\t\\\"\\\\/\\u00E9\\uD83D\\uDE00\"]");
    CHECK("[\"\\ud83d\"]", "err:JSON parse error, missing second half of surrogate pair");
    CHECK("[\"\\q\"]", "err:JSON parse error, invalid escape sequence in string");
}

static void test_parse_errors_then_recovery(void)
{
    CHECK("{\"execute\": } {\"a\":1}",
          "err:JSON parse error, expecting value | ok:{\"a\":1}");
    CHECK("} {\"a\":1}", "err:JSON parse error, expecting value | ok:{\"a\":1}");
    CHECK("{\"a\" 1} {\"a\":1}",
          "err:JSON parse error, missing : in object pair | ok:{\"a\":1}");
    CHECK("{\"a\":1,}", "err:JSON parse error, expecting value");
    CHECK("[1 2]", "err:JSON parse error, expected separator in list");
    CHECK("{1:2}", "err:JSON parse error, key is not a string in object");
    CHECK("tru {\"a\":1}", "err:JSON parse error, invalid keyword 'tru' | ok:{\"a\":1}");
}

static void test_stray_byte_recovers_at_bracket(void)
{
    /* One error for the run of bad bytes; a space does not resynchronise. */
    CHECK("@@@ x {\"a\":1}", "err:JSON parse error, stray '@' | ok:{\"a\":1}");
    CHECK("\xff{\"a\":1}", "err:JSON parse error, stray '\xff' | ok:{\"a\":1}");
    CHECK("{\"a\": @} {\"b\":2}", "err:JSON parse error, stray '@' | err:JSON parse error, expecting value | ok:{\"b\":2}");
}

static void test_scalar_waits_for_delimiter(void)
{
    /* A number is complete only when something follows it. */
    CHECK("42", "");
    CHECK("42 ", "ok:42");
    CHECK("\"str\"", "ok:\"str\"");
    g_autofree char *got = run("42", 0, true);
    g_assert_cmpstr(got, ==, "ok:42");
}

static void test_incomplete_at_flush(void)
{
    g_autofree char *got = run("{\"execute\": \"x\"", 0, true);

    g_assert_cmpstr(got, ==, "err:JSON parse error, premature EOI");
}

static void test_large_integers(void)
{
    CHECK("[9223372036854775807, -9223372036854775808, 18446744073709551616]",
          "ok:[9223372036854775807,-9223372036854775808,1.8446744073709552e19]");
}

static void test_nesting_limit(void)
{
    GString *s = g_string_new(NULL);
    g_autofree char *got = NULL;
    int i;

    for (i = 0; i < 1025; i++) {
        g_string_append_c(s, '[');
    }
    g_string_append(s, " {\"a\":1}");
    got = run(s->str, 0, false);
    g_assert_cmpstr(got, ==, "err:JSON nesting depth limit exceeded | ok:{\"a\":1}");
    g_string_free(s, true);
}

static void test_parse_text(void)
{
    g_autoptr(Error) err = NULL;
    json_t *v = json_parse_text(" {\"a\": [1]} ", &error_abort);

    g_assert_true(json_is_object(v));
    json_decref(v);
    g_assert_null(json_parse_text("{\"a\": 1} 2", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "JSON parse error, expecting end of input");
    g_clear_pointer(&err, error_free);
    g_assert_null(json_parse_text("", &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "JSON parse error, expecting value");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/json-stream/one-object", test_one_object);
    g_test_add_func("/json-stream/split-every-byte", test_split_every_byte);
    g_test_add_func("/json-stream/pipelined", test_pipelined);
    g_test_add_func("/json-stream/single-quotes", test_single_quotes);
    g_test_add_func("/json-stream/escapes-and-unicode", test_escapes_and_unicode);
    g_test_add_func("/json-stream/parse-errors-then-recovery", test_parse_errors_then_recovery);
    g_test_add_func("/json-stream/stray-byte-recovers-at-bracket", test_stray_byte_recovers_at_bracket);
    g_test_add_func("/json-stream/scalar-waits-for-delimiter", test_scalar_waits_for_delimiter);
    g_test_add_func("/json-stream/incomplete-at-flush", test_incomplete_at_flush);
    g_test_add_func("/json-stream/large-integers", test_large_integers);
    g_test_add_func("/json-stream/nesting-limit", test_nesting_limit);
    g_test_add_func("/json-stream/parse-text", test_parse_text);
    return g_test_run();
}
