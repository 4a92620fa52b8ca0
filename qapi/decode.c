/* Decoding JSON into generated QAPI types; see include/qapi/decode.h. */
#include <string.h>

#include "qapi/decode.h"
#include "util/json-stream.h"
#include "util/keyval.h"
#include "util/qdict-order.h"

/* One level of the value being decoded. */
typedef struct QapiFrame {
    char *name;         /* path component; NULL at the top level */
    json_t *obj;        /* the object entered, borrowed; NULL for others */
    GPtrArray *visited; /* member names taken from obj, in visit order */
} QapiFrame;

static void frame_free(gpointer p)
{
    QapiFrame *f = p;

    g_free(f->name);
    if (f->visited) {
        g_ptr_array_unref(f->visited);
    }
    g_free(f);
}

void qapi_decoder_init(QapiDecoder *d, bool keyval)
{
    d->keyval = keyval;
    d->frames = g_ptr_array_new_with_free_func(frame_free);
}

void qapi_decoder_cleanup(QapiDecoder *d)
{
    g_ptr_array_unref(d->frames);
    d->frames = NULL;
}

static QapiFrame *push_frame(QapiDecoder *d, const char *name)
{
    QapiFrame *f = g_new0(QapiFrame, 1);

    f->name = g_strdup(name);
    g_ptr_array_add(d->frames, f);
    return f;
}

void qapi_decoder_push(QapiDecoder *d, const char *name)
{
    push_frame(d, name);
}

void qapi_decoder_pop(QapiDecoder *d)
{
    g_assert(d->frames->len > 0);
    g_ptr_array_remove_index(d->frames, d->frames->len - 1);
}

char *qapi_decoder_index_name(QapiDecoder *d, size_t i)
{
    return d->keyval ? g_strdup_printf("%zu", i) : g_strdup_printf("[%zu]", i);
}

/* "a.b[2].c" (keyval: "a.b.2.c"): JSON list indexes attach to the member. */
static char *full_name(QapiDecoder *d, const char *name)
{
    GString *s = g_string_new(NULL);
    guint i;

    for (i = 0; i <= d->frames->len; i++) {
        const char *part = name;

        if (i < d->frames->len) {
            part = ((QapiFrame *)g_ptr_array_index(d->frames, i))->name;
        }
        if (!part) {
            continue;
        }
        if (s->len && part[0] != '[') {
            g_string_append_c(s, '.');
        }
        g_string_append(s, part);
    }
    return g_string_free(s, s->len == 0);
}

/* QEMU names only the member itself in some errors, a list element "null". */
static const char *bare_name(const char *name)
{
    return name && name[0] != '[' && !g_ascii_isdigit(name[0]) ? name : "null";
}

static void error_type(QapiDecoder *d, const char *name, const char *expected,
                       Error **errp)
{
    g_autofree char *full = full_name(d, name);

    error_setg(errp, "Invalid parameter type for '%s', expected: %s",
               full ? full : "null", expected);
}

static void error_value(QapiDecoder *d, const char *name, const char *what,
                        Error **errp)
{
    g_autofree char *full = full_name(d, name);

    error_setg(errp, "Parameter '%s' expects %s", full ? full : "null", what);
}

void qapi_error_missing(QapiDecoder *d, const char *name, Error **errp)
{
    g_autofree char *full = full_name(d, name);

    error_setg(errp, "Parameter '%s' is missing", full);
}

void qapi_error_alternate(QapiDecoder *d, const char *name, const char *type,
                          Error **errp)
{
    error_setg(errp, "Invalid parameter type for '%s', expected: %s",
               bare_name(name), type);
}

bool qapi_decode_begin_object(QapiDecoder *d, const char *name, json_t *val,
                              Error **errp)
{
    QapiFrame *f;

    if (!json_is_object(val)) {
        error_type(d, name, "object", errp);
        return false;
    }
    f = push_frame(d, name);
    f->obj = val;
    f->visited = g_ptr_array_new();
    return true;
}

json_t *qapi_take_member(QapiDecoder *d, const char *name)
{
    QapiFrame *f = g_ptr_array_index(d->frames, d->frames->len - 1);
    json_t *v = json_object_get(f->obj, name);

    if (v) {
        g_ptr_array_add(f->visited, (gpointer)name);
    }
    return v;
}

bool qapi_decode_end_object(QapiDecoder *d, bool ok, Error **errp)
{
    QapiFrame *f = g_ptr_array_index(d->frames, d->frames->len - 1);

    if (ok && json_object_size(f->obj) > f->visited->len) {
        const char *key;
        g_autofree char *full = NULL;

        /* With several left over, QEMU names the one its hash table yields first. */
        g_ptr_array_add(f->visited, NULL);
        key = qdict_first_unvisited(f->obj, (const char *const *)f->visited->pdata);
        full = full_name(d, key);
        if (d->keyval && (json_is_object(json_object_get(f->obj, key)) ||
                          json_is_array(json_object_get(f->obj, key)))) {
            error_setg(errp, "Parameters '%s.*' are unexpected", full);
        } else {
            error_setg(errp, "Parameter '%s' is unexpected", full);
        }
        ok = false;
    }
    qapi_decoder_pop(d);
    return ok;
}

bool qapi_decode_no_args(QapiDecoder *d, json_t *args, Error **errp)
{
    return qapi_decode_begin_object(d, NULL, args, errp) &&
           qapi_decode_end_object(d, true, errp);
}

bool qapi_decode_check_array(QapiDecoder *d, const char *name, json_t *val,
                             Error **errp)
{
    if (!json_is_array(val)) {
        error_type(d, name, "array", errp);
        return false;
    }
    return true;
}

QType qapi_decode_alternate_qtype(QapiDecoder *d, json_t *val)
{
    switch (json_typeof(val)) {
    case JSON_OBJECT:
        return QTYPE_QDICT;
    case JSON_ARRAY:
        return QTYPE_QLIST;
    case JSON_STRING:
        return json_is_text(val) ? QTYPE_QSTRING : QTYPE_QNUM;
    case JSON_INTEGER:
    case JSON_REAL:
        return QTYPE_QNUM;
    case JSON_TRUE:
    case JSON_FALSE:
        return QTYPE_QBOOL;
    case JSON_NULL:
        return QTYPE_QNULL;
    }
    return QTYPE_NONE;
}

bool qapi_decode_str(QapiDecoder *d, const char *name, json_t *val, char **out,
                     Error **errp)
{
    if (!json_is_text(val)) {
        error_type(d, name, "string", errp);
        return false;
    }
    *out = g_strndup(json_string_value(val), json_string_length(val));
    return true;
}

/* In keyval mode a scalar is a string; anything else is a type error. */
static const char *keyval_scalar(QapiDecoder *d, const char *name, json_t *val,
                                 Error **errp)
{
    if (!json_is_string(val)) {
        error_type(d, name, "string", errp);
        return NULL;
    }
    return json_string_value(val);
}

bool qapi_decode_int(QapiDecoder *d, const char *name, json_t *val,
                     int64_t min, int64_t max, const char *tname,
                     int64_t *out, Error **errp)
{
    int64_t v;

    if (d->keyval) {
        g_autofree char *full = full_name(d, name);
        const char *s = keyval_scalar(d, name, val, errp);

        if (!s || !keyval_parse_int64(full, s, &v, errp)) {
            return false;
        }
    } else if (json_is_integer(val)) {
        v = json_integer_value(val);
    } else {
        error_type(d, name, "integer", errp);
        return false;
    }
    if (v < min || v > max) {
        /* The narrowing check names the bare member, as QEMU's does. */
        error_setg(errp, "Parameter '%s' expects %s", bare_name(name), tname);
        return false;
    }
    *out = v;
    return true;
}

bool qapi_decode_int_into(QapiDecoder *d, const char *name, json_t *val,
                          int64_t min, int64_t max, const char *tname,
                          void *out, size_t size, Error **errp)
{
    int64_t v;

    if (!qapi_decode_int(d, name, val, min, max, tname, &v, errp)) {
        return false;
    }
    switch (size) {
    case 1: *(int8_t *)out = v; break;
    case 2: *(int16_t *)out = v; break;
    case 4: *(int32_t *)out = v; break;
    default: g_assert_not_reached();
    }
    return true;
}

bool qapi_decode_uint(QapiDecoder *d, const char *name, json_t *val,
                      uint64_t max, const char *tname, bool is_size,
                      uint64_t *out, Error **errp)
{
    uint64_t v;

    if (d->keyval) {
        g_autofree char *full = full_name(d, name);
        const char *s = keyval_scalar(d, name, val, errp);

        if (!s) {
            return false;
        }
        if (is_size ? !keyval_parse_size(full, s, &v, errp)
                    : !keyval_parse_uint64(full, s, &v, errp)) {
            return false;
        }
    } else if (json_is_integer(val)) {
        /* QEMU takes a negative number as its two's complement here. */
        v = (uint64_t)json_integer_value(val);
    } else if (json_uint64_get(val, &v)) {
        /* above INT64_MAX */
    } else {
        /* QEMU decodes every unsigned type as uint64 first. */
        error_value(d, name, "uint64", errp);
        return false;
    }
    if (v > max) {
        error_setg(errp, "Parameter '%s' expects %s", bare_name(name), tname);
        return false;
    }
    *out = v;
    return true;
}

bool qapi_decode_uint_into(QapiDecoder *d, const char *name, json_t *val,
                           uint64_t max, const char *tname,
                           void *out, size_t size, Error **errp)
{
    uint64_t v;

    if (!qapi_decode_uint(d, name, val, max, tname, false, &v, errp)) {
        return false;
    }
    switch (size) {
    case 1: *(uint8_t *)out = v; break;
    case 2: *(uint16_t *)out = v; break;
    case 4: *(uint32_t *)out = v; break;
    default: g_assert_not_reached();
    }
    return true;
}

bool qapi_decode_bool(QapiDecoder *d, const char *name, json_t *val, bool *out,
                      Error **errp)
{
    if (d->keyval) {
        g_autofree char *full = full_name(d, name);
        const char *s = keyval_scalar(d, name, val, errp);

        return s && keyval_parse_bool(full, s, out, errp);
    }
    if (!json_is_boolean(val)) {
        error_type(d, name, "boolean", errp);
        return false;
    }
    *out = json_is_true(val);
    return true;
}

bool qapi_decode_number(QapiDecoder *d, const char *name, json_t *val,
                        double *out, Error **errp)
{
    if (d->keyval) {
        g_autofree char *full = full_name(d, name);
        const char *s = keyval_scalar(d, name, val, errp);

        return s && keyval_parse_number(full, s, out, errp);
    }
    uint64_t big;

    if (json_uint64_get(val, &big)) {
        *out = big;
        return true;
    }
    if (!json_is_number(val)) {
        error_type(d, name, "number", errp);
        return false;
    }
    *out = json_number_value(val);
    return true;
}

bool qapi_decode_any(QapiDecoder *d, const char *name, json_t *val,
                     json_t **out, Error **errp)
{
    *out = json_incref(val);
    return true;
}

bool qapi_decode_null(QapiDecoder *d, const char *name, json_t *val, bool *out,
                      Error **errp)
{
    if (!json_is_null(val) &&
        !(d->keyval && json_is_string(val) && !*json_string_value(val))) {
        error_type(d, name, "null", errp);
        return false;
    }
    *out = true;
    return true;
}

bool qapi_decode_enum(QapiDecoder *d, const char *name, json_t *val,
                      const QEnumLookup *lookup, int *out, Error **errp)
{
    int v;

    if (!json_is_text(val)) {
        error_type(d, name, "string", errp);
        return false;
    }
    v = qapi_enum_find(lookup, json_string_value(val));
    if (v < 0) {
        /* QEMU names the bare member here ('null' for a list element). */
        error_setg(errp, "Parameter '%s' does not accept value '%s'",
                   bare_name(name), json_string_value(val));
        return false;
    }
    *out = v;
    return true;
}

json_t *qapi_encode_str(const char *str)
{
    /*
     * Kept as they are: the QMP writer escapes what is not UTF-8 (a file
     * name, say) and writes U+0000 for the "\xC0\x80" QEMU keeps NUL as.
     */
    return json_stringn_nocheck(str, strlen(str));
}

json_t *qapi_encode_uint(uint64_t val)
{
    /*
     * jansson integers are signed; past INT64_MAX the stream's exact
     * uint64 value carries it (written as an integer, decoded back).
     */
    return val > INT64_MAX ? json_uint64_new(val) : json_integer((json_int_t)val);
}
