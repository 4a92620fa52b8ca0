/* QMP output in QEMU's exact form; see include/util/json-writer.h. */
#include <string.h>

#include "util/json-stream.h"
#include "util/json-writer.h"
#include "util/qdict-order.h"

static void append_escaped(GString *out, const char *s, size_t len)
{
    const char *end = s + len;

    g_string_append_c(out, '"');
    while (s < end) {
        unsigned char c = *s;
        gunichar cp;

        if (c == 0xC0 && s + 1 < end && (unsigned char)s[1] == 0x80) {
            g_string_append(out, "\\u0000");
            s += 2;
            continue;
        }
        if (c < 0x80) {
            switch (c) {
            case '"': g_string_append(out, "\\\""); break;
            case '\\': g_string_append(out, "\\\\"); break;
            case '\b': g_string_append(out, "\\b"); break;
            case '\f': g_string_append(out, "\\f"); break;
            case '\n': g_string_append(out, "\\n"); break;
            case '\r': g_string_append(out, "\\r"); break;
            case '\t': g_string_append(out, "\\t"); break;
            default:
                if (c < 0x20 || c == 0x7f) {
                    g_string_append_printf(out, "\\u%04X", c);
                } else {
                    g_string_append_c(out, c);
                }
            }
            s++;
            continue;
        }
        cp = g_utf8_get_char_validated(s, end - s);
        if (cp == (gunichar)-1 || cp == (gunichar)-2) {
            g_string_append(out, "\\uFFFD");
            s++;
            continue;
        }
        if (cp > 0xFFFF) {
            cp -= 0x10000;
            g_string_append_printf(out, "\\u%04X\\u%04X", 0xD800 + (cp >> 10),
                                   0xDC00 + (cp & 0x3FF));
        } else {
            g_string_append_printf(out, "\\u%04X", cp);
        }
        s = g_utf8_next_char(s);
    }
    g_string_append_c(out, '"');
}

static void newline(GString *out, bool pretty, int depth)
{
    if (pretty) {
        g_string_append_c(out, '\n');
        g_string_append_printf(out, "%*s", depth * 4, "");
    }
}

static void append_value(GString *out, const json_t *v, bool pretty, int depth)
{
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    uint64_t big;
    size_t i;

    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        g_autoptr(GPtrArray) keys = qdict_order(v);

        g_string_append_c(out, '{');
        for (i = 0; i < keys->len; i++) {
            const char *key = keys->pdata[i];

            if (i) {
                g_string_append_c(out, ',');
                if (!pretty) {
                    g_string_append_c(out, ' ');
                }
            }
            newline(out, pretty, depth + 1);
            append_escaped(out, key, strlen(key));
            g_string_append(out, ": ");
            append_value(out, json_object_get(v, key), pretty, depth + 1);
        }
        newline(out, pretty, depth);
        g_string_append_c(out, '}');
        break;
    }
    case JSON_ARRAY:
        g_string_append_c(out, '[');
        for (i = 0; i < json_array_size(v); i++) {
            if (i) {
                g_string_append_c(out, ',');
                if (!pretty) {
                    g_string_append_c(out, ' ');
                }
            }
            newline(out, pretty, depth + 1);
            append_value(out, json_array_get(v, i), pretty, depth + 1);
        }
        newline(out, pretty, depth);
        g_string_append_c(out, ']');
        break;
    case JSON_STRING:
        if (json_uint64_get(v, &big)) {
            g_string_append_printf(out, "%" G_GUINT64_FORMAT, big);
        } else {
            append_escaped(out, json_string_value(v), json_string_length(v));
        }
        break;
    case JSON_INTEGER:
        g_string_append_printf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        g_string_append(out, g_ascii_formatd(buf, sizeof(buf), "%.17g",
                                             json_real_value(v)));
        break;
    case JSON_TRUE:
        g_string_append(out, "true");
        break;
    case JSON_FALSE:
        g_string_append(out, "false");
        break;
    case JSON_NULL:
        g_string_append(out, "null");
        break;
    }
}

void json_writer_append(GString *out, const json_t *v, bool pretty)
{
    append_value(out, v, pretty, 0);
}
