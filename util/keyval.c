/*
 * Option-string parsers: keyval and QemuOpts syntax, and keyval scalar
 * conversions.  The rules and messages are in include/util/keyval.h; this
 * file follows QEMU 7.2's behaviour step by step where the order of checks
 * decides which error a user sees.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/keyval.h"
#include "util/qdict-order.h"
#include "util/id.h"

/* QEMU keeps each key fragment in a char[128]. */
#define KEYVAL_FRAGMENT_MAX 128

/* ---- Warnings ---------------------------------------------------------- */

static void warn_default(void *opaque, const char *msg, const char *hint)
{
    g_printerr("warning: %s\n%s", msg, hint ? hint : "");
}

static KeyvalWarnFunc *warn_func = warn_default;
static void *warn_opaque;

void keyval_set_warn_func(KeyvalWarnFunc *fn, void *opaque)
{
    warn_func = fn ? fn : warn_default;
    warn_opaque = fn ? opaque : NULL;
}

static void G_GNUC_PRINTF(2, 3) keyval_warn(const char *hint,
                                            const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    warn_func(warn_opaque, msg, hint);
}

/* ---- Keyval parsing ---------------------------------------------------- */

/*
 * Length of the QAPI name at @s, or 0 if there is none.  Stops at the
 * first character a name cannot contain, which includes '.', '=' and ','
 * (except for '.' inside a downstream "__RFQDN_" prefix).
 */
static size_t qapi_name_len(const char *s)
{
    const char *p = s;

    if (*p == '_') {
        p++;
        if (*p != '_') {
            return 0;
        }
        do {
            p++;
        } while (g_ascii_isalnum(*p) || *p == '-' || *p == '.');
        if (*p != '_') {
            return 0;
        }
        p++;
    }
    if (!g_ascii_isalpha(*p)) {
        return 0;
    }
    while (g_ascii_isalnum(*p) || *p == '-' || *p == '_') {
        p++;
    }
    return p - s;
}

/* A list index key (all digits), saturated at INT_MAX like QEMU's. */
static int64_t key_to_index(const char *key)
{
    int64_t index = 0;

    for (; g_ascii_isdigit(*key); key++) {
        index = index * 10 + (*key - '0');
        if (index > INT_MAX) {
            index = INT_MAX;
        }
    }
    return index;
}

/*
 * Make @cur map @name to an object (@value NULL) or to the string @value
 * (stolen).  An existing object is kept, an existing string replaced.
 * Mapping a string where an object is, or the other way round, fails with
 * the first @key_len characters of @key as the parameter.
 * Returns the mapped value (borrowed) or NULL.
 */
static json_t *keyval_put(json_t *cur, const char *name, json_t *value,
                          const char *key, size_t key_len, Error **errp)
{
    json_t *old = json_object_get(cur, name);
    json_t *new;

    if (old) {
        if (value ? !json_is_string(old) : !json_is_object(old)) {
            error_setg(errp, "Parameters '%.*s.*' used inconsistently",
                       (int)key_len, key);
            json_decref(value);
            return NULL;
        }
        if (!value) {
            return old;
        }
    }
    new = value ? value : json_object();
    json_object_set_new_nocheck(cur, name, new);
    return new;
}

/*
 * Parse one element of @params into @root.  Returns a pointer to the next
 * element (or the terminating NUL), NULL on error.
 */
static const char *keyval_parse_one(json_t *root, const char *params,
                                    const char *implied_key, bool *help,
                                    Error **errp)
{
    const char *key = params, *key_end, *val_end = NULL, *s;
    char key_in_cur[KEYVAL_FRAGMENT_MAX];
    json_t *cur = root;
    GString *val;
    size_t len;

    len = strcspn(params, "=,");
    if (len && key[len] != '=') {
        if ((len == 1 && key[0] == '?') ||
            (len == 4 && !strncmp(key, "help", 4))) {
            *help = true;
            s = key + len;
            return *s == ',' ? s + 1 : s;
        }
        if (implied_key) {
            /* "value,..." stands for "IMPLIED=value,..." */
            key = implied_key;
            val_end = params + len;
            len = strlen(implied_key);
        }
    }
    key_end = key + len;

    /*
     * Walk the key's fragments: @s is the current one, @key_in_cur the
     * previous one, which names a member of @cur that must be an object.
     * Each fragment is checked before the previous one is put, so the
     * first problem from the left is the one reported, as in QEMU.
     */
    s = key;
    for (;;) {
        if (s != key && g_ascii_isdigit(*s)) {
            len = strspn(s, "0123456789");
        } else {
            len = qapi_name_len(s);
        }
        g_assert(s + len <= key_end);
        if (!len || (s + len < key_end && s[len] != '.')) {
            g_assert(key != implied_key);
            error_setg(errp, "Invalid parameter '%.*s'",
                       (int)(key_end - key), key);
            return NULL;
        }
        if (len >= KEYVAL_FRAGMENT_MAX) {
            g_assert(key != implied_key);
            error_setg(errp, "Parameter%s '%.*s' is too long",
                       s != key || s + len != key_end ? " fragment" : "",
                       (int)len, s);
            return NULL;
        }
        if (s != key) {
            cur = keyval_put(cur, key_in_cur, NULL, key, s - 1 - key, errp);
            if (!cur) {
                return NULL;
            }
        }
        memcpy(key_in_cur, s, len);
        key_in_cur[len] = '\0';
        s += len;
        if (*s != '.') {
            break;
        }
        s++;
    }

    if (key == implied_key) {
        /* The implied value has no ",," escape: it ends at ',' or '='. */
        val = g_string_new_len(params, val_end - params);
        s = *val_end == ',' ? val_end + 1 : val_end;
    } else {
        if (*s != '=') {
            error_setg(errp, "Expected '=' after parameter '%.*s'",
                       (int)(s - key), key);
            return NULL;
        }
        s++;
        val = g_string_new(NULL);
        for (;;) {
            if (!*s) {
                break;
            }
            if (*s == ',') {
                s++;
                if (*s != ',') {
                    break;
                }
            }
            g_string_append_c(val, *s++);
        }
    }

    if (!keyval_put(cur, key_in_cur,
                    json_stringn_nocheck(val->str, val->len),
                    key, key_end - key, errp)) {
        g_string_free(val, TRUE);
        return NULL;
    }
    g_string_free(val, TRUE);
    return s;
}

/*
 * Turn objects whose keys are all indexes into arrays, bottom up.  @path
 * is the dotted path to @obj with a trailing '.', for messages.  Members
 * are visited in QDict order so that, of several errors, the one QEMU
 * meets first is reported, and of two spellings of one index (0 and 00)
 * the one QEMU keeps is kept.  On success *list is NULL (@obj stays an
 * object) or a new array to replace @obj with.
 */
static bool keyval_listify(json_t *obj, GString *path, json_t **list,
                           Error **errp)
{
    g_autoptr(GPtrArray) keys = qdict_order(obj);
    size_t path_len = path->len, n = keys->len;
    bool has_index = false, has_member = false;
    g_autofree json_t **elt = NULL;
    int64_t max_index = -1, limit, i;
    json_t *array;
    guint k;

    *list = NULL;
    for (k = 0; k < n; k++) {
        const char *key = keys->pdata[k];
        json_t *child = json_object_get(obj, key), *child_list;
        bool ok;

        if (g_ascii_isdigit(key[0])) {
            has_index = true;
        } else {
            has_member = true;
        }
        if (!json_is_object(child)) {
            continue;
        }
        g_string_append(path, key);
        g_string_append_c(path, '.');
        ok = keyval_listify(child, path, &child_list, errp);
        g_string_truncate(path, path_len);
        if (!ok) {
            return false;
        }
        if (child_list) {
            /* Replacing keeps the key's slot, as in QEMU's QDict. */
            json_object_set_new_nocheck(obj, key, child_list);
        }
    }

    if (has_index && has_member) {
        error_setg(errp, "Parameters '%s*' used inconsistently", path->str);
        return false;
    }
    if (!has_index) {
        return true;
    }

    /*
     * With n members, a complete list has indexes 0..n-1.  An index >= n
     * implies a gap below it, so only the lowest missing index matters.
     */
    elt = g_new0(json_t *, n + 1);
    for (k = 0; k < n; k++) {
        const char *key = keys->pdata[k];
        int64_t index = key_to_index(key);

        max_index = MAX(max_index, index);
        if (index < (int64_t)n) {
            elt[index] = json_object_get(obj, key);
        }
    }
    limit = MIN((int64_t)n + 1, max_index + 1);
    for (i = 0; i < limit; i++) {
        if (!elt[i]) {
            error_setg(errp, "Parameter '%s%" G_GINT64_FORMAT "' missing",
                       path->str, i);
            return false;
        }
    }
    array = json_array();
    for (i = 0; i < limit; i++) {
        json_array_append(array, elt[i]);
    }
    *list = array;
    return true;
}

json_t *keyval_parse(const char *params, const char *implied_key,
                     bool *help, Error **errp)
{
    json_t *root = json_object();
    g_autoptr(GString) path = g_string_new(NULL);
    bool help_wanted = false;
    json_t *list;
    const char *s = params;

    while (*s) {
        s = keyval_parse_one(root, s, implied_key, &help_wanted, errp);
        if (!s) {
            json_decref(root);
            return NULL;
        }
        implied_key = NULL;
    }

    if (help) {
        *help = help_wanted;
    } else if (help_wanted) {
        error_setg(errp, "Help is not available for this option");
        json_decref(root);
        return NULL;
    }

    if (!keyval_listify(root, path, &list, errp)) {
        json_decref(root);
        return NULL;
    }
    /* Top-level keys are names, never indexes. */
    g_assert(!list);
    return root;
}

/* ---- Number parsing (QEMU's qemu_strto*() on glibc) -------------------- */

/*
 * QEMU's check after strtoX(): no digits is -EINVAL; with @endptr NULL,
 * trailing characters are -EINVAL; then the libc errno.
 */
static int strtox_result(const char *nptr, const char *ep,
                         const char **endptr, int libc_errno)
{
    if (endptr) {
        *endptr = ep;
    }
    if (libc_errno == 0 && ep == nptr) {
        return -EINVAL;
    }
    if (!endptr && *ep) {
        return -EINVAL;
    }
    return -libc_errno;
}

static int strtoi64_checked(const char *nptr, const char **endptr,
                            int base, int64_t *result)
{
    char *ep;
    int err;

    errno = 0;
    *result = strtoll(nptr, &ep, base);
    err = errno;
    return strtox_result(nptr, ep, endptr, err);
}

/* Like strtoull(), "-N" is accepted and negated modulo 2^64. */
static int strtou64_checked(const char *nptr, const char **endptr,
                            int base, uint64_t *result)
{
    char *ep;
    int err;

    errno = 0;
    *result = strtoull(nptr, &ep, base);
    err = errno;
    if (err == ERANGE) {
        *result = UINT64_MAX;
    }
    return strtox_result(nptr, ep, endptr, err);
}

/* QEMU's qemu_strtod_finite(): inf and nan are -EINVAL. */
static int strtod_finite_checked(const char *nptr, const char **endptr,
                                 double *result)
{
    char *ep;
    double tmp;
    int err, ret;

    /* g_ascii_strtod is strtod in the C locale, which is where QEMU runs. */
    errno = 0;
    tmp = g_ascii_strtod(nptr, &ep);
    err = errno;
    ret = strtox_result(nptr, ep, endptr, err);
    if (!ret && !isfinite(tmp)) {
        if (endptr) {
            *endptr = nptr;
        }
        ret = -EINVAL;
    }
    if (ret != -EINVAL) {
        *result = tmp;
    }
    return ret;
}

/* 64 x 64 -> 128 bit unsigned product. */
static void mul64(uint64_t a, uint64_t b, uint64_t *lo, uint64_t *hi)
{
    uint64_t a0 = (uint32_t)a, a1 = a >> 32;
    uint64_t b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10;

    *lo = (mid << 32) | (uint32_t)p00;
    *hi = p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

static int64_t size_suffix_mul(char c)
{
    switch (g_ascii_toupper(c)) {
    case 'B':
        return 1;
    case 'K':
        return INT64_C(1) << 10;
    case 'M':
        return INT64_C(1) << 20;
    case 'G':
        return INT64_C(1) << 30;
    case 'T':
        return INT64_C(1) << 40;
    case 'P':
        return INT64_C(1) << 50;
    case 'E':
        return INT64_C(1) << 60;
    }
    return -1;
}

/*
 * QEMU 7.2's qemu_strtosz() on a whole string: 0, -EINVAL, or -ERANGE on
 * overflow.  Decimal integer part (no '-'), then either hex ("0x...", no
 * fraction) or an optional ".fraction" (no exponent), then an optional
 * suffix.  The fraction is kept as 64-bit fixed point and the product
 * rounded half up, exactly as QEMU computes it.
 */
static int strtosz_checked(const char *nptr, uint64_t *result)
{
    const char *endptr, *f;
    bool hex = false;
    uint64_t val, valf = 0, valh, tmp;
    int64_t mul;
    int ret;

    ret = strtou64_checked(nptr, &endptr, 10, &val);
    if (ret) {
        goto out;
    }
    if (memchr(nptr, '-', endptr - nptr)) {
        endptr = nptr;
        ret = -EINVAL;
        goto out;
    }
    if (val == 0 && (*endptr == 'x' || *endptr == 'X')) {
        ret = strtou64_checked(nptr, &endptr, 16, &val);
        if (ret) {
            goto out;
        }
        if (*endptr == '.') {
            endptr = nptr;
            ret = -EINVAL;
            goto out;
        }
        hex = true;
    } else if (*endptr == '.') {
        double fraction = 0;

        f = endptr;
        ret = strtod_finite_checked(f, &endptr, &fraction);
        if (ret) {
            /* No digits after '.': "1." and "1.k" are fine. */
            endptr++;
        } else if (memchr(f, 'e', endptr - f) || memchr(f, 'E', endptr - f)) {
            endptr = nptr;
            ret = -EINVAL;
            goto out;
        } else {
            double fixed = fraction * 0x1p64;

            /*
             * A fraction that rounds to 1.0 (".99999999999999999999")
             * overflows QEMU's cast, which gives 0 on x86-64: so does
             * this, rather than invoking undefined behaviour.
             */
            valf = fixed < 0x1p64 ? (uint64_t)fixed : 0;
        }
    }

    mul = size_suffix_mul(*endptr);
    if (mul > 0) {
        if (hex) {
            keyval_warn(NULL, "Using a multiplier suffix on hex numbers "
                        "is deprecated: %s", nptr);
        }
        endptr++;
    } else {
        mul = 1;
    }
    if (mul == 1) {
        /* A fraction needs a scale. */
        if (valf) {
            endptr = nptr;
            ret = -EINVAL;
            goto out;
        }
    } else {
        /* 64.64 fixed point times 64.0: a 128.64 result. */
        mul64(val, mul, &val, &valh);
        mul64(valf, mul, &valf, &tmp);
        val += tmp;
        valh += val < tmp;
        tmp = valf >> 63;       /* round half up */
        val += tmp;
        valh += val < tmp;
        if (valh) {
            ret = -ERANGE;
            goto out;
        }
    }
    ret = 0;

out:
    if (*endptr) {
        ret = -EINVAL;
    }
    if (!ret) {
        *result = val;
    }
    return ret;
}

/* ---- Keyval scalar conversions ----------------------------------------- */

/* QEMU's qapi_bool_parse() without its error. */
static bool bool_parse(const char *str, bool *out)
{
    if (!strcmp(str, "on") || !strcmp(str, "yes") ||
        !strcmp(str, "true") || !strcmp(str, "y")) {
        *out = true;
        return true;
    }
    if (!strcmp(str, "off") || !strcmp(str, "no") ||
        !strcmp(str, "false") || !strcmp(str, "n")) {
        *out = false;
        return true;
    }
    return false;
}

bool keyval_parse_bool(const char *name, const char *str, bool *out,
                       Error **errp)
{
    if (!bool_parse(str, out)) {
        error_setg(errp, "Parameter '%s' expects 'on' or 'off'", name);
        return false;
    }
    return true;
}

bool keyval_parse_int64(const char *name, const char *str, int64_t *out,
                        Error **errp)
{
    int64_t v;

    if (strtoi64_checked(str, NULL, 0, &v) < 0) {
        error_setg(errp, "Parameter '%s' expects integer", name);
        return false;
    }
    *out = v;
    return true;
}

bool keyval_parse_uint64(const char *name, const char *str, uint64_t *out,
                         Error **errp)
{
    uint64_t v;

    if (strtou64_checked(str, NULL, 0, &v) < 0) {
        error_setg(errp, "Parameter '%s' expects integer", name);
        return false;
    }
    *out = v;
    return true;
}

bool keyval_parse_size(const char *name, const char *str, uint64_t *out,
                       Error **errp)
{
    uint64_t v;

    if (strtosz_checked(str, &v) < 0) {
        error_setg(errp, "Parameter '%s' expects size", name);
        return false;
    }
    *out = v;
    return true;
}

bool keyval_parse_number(const char *name, const char *str, double *out,
                         Error **errp)
{
    double v;

    if (strtod_finite_checked(str, NULL, &v)) {
        error_setg(errp, "Parameter '%s' expects number", name);
        return false;
    }
    *out = v;
    return true;
}

/* ---- QemuOpts ---------------------------------------------------------- */

const QemuOptsFlatDesc qemu_chardev_opts_desc[] = {
    { "abstract", QEMU_OPTS_FLAT_BOOL },
    { "append", QEMU_OPTS_FLAT_BOOL },
    { "backend", QEMU_OPTS_FLAT_STRING },
    { "chardev", QEMU_OPTS_FLAT_STRING },
    { "clipboard", QEMU_OPTS_FLAT_BOOL },
    { "cols", QEMU_OPTS_FLAT_NUMBER },
    { "debug", QEMU_OPTS_FLAT_NUMBER },
    { "delay", QEMU_OPTS_FLAT_BOOL },
    { "fd", QEMU_OPTS_FLAT_STRING },
    { "height", QEMU_OPTS_FLAT_NUMBER },
    { "host", QEMU_OPTS_FLAT_STRING },
    { "ipv4", QEMU_OPTS_FLAT_BOOL },
    { "ipv6", QEMU_OPTS_FLAT_BOOL },
    { "localaddr", QEMU_OPTS_FLAT_STRING },
    { "localport", QEMU_OPTS_FLAT_STRING },
    { "logappend", QEMU_OPTS_FLAT_BOOL },
    { "logfile", QEMU_OPTS_FLAT_STRING },
    { "mouse", QEMU_OPTS_FLAT_BOOL },
    { "mux", QEMU_OPTS_FLAT_BOOL },
    { "name", QEMU_OPTS_FLAT_STRING },
    { "nodelay", QEMU_OPTS_FLAT_BOOL },
    { "path", QEMU_OPTS_FLAT_STRING },
    { "port", QEMU_OPTS_FLAT_STRING },
    { "reconnect", QEMU_OPTS_FLAT_NUMBER },
    { "rows", QEMU_OPTS_FLAT_NUMBER },
    { "server", QEMU_OPTS_FLAT_BOOL },
    { "signal", QEMU_OPTS_FLAT_BOOL },
    { "size", QEMU_OPTS_FLAT_SIZE },
    { "telnet", QEMU_OPTS_FLAT_BOOL },
    { "tight", QEMU_OPTS_FLAT_BOOL },
    { "tls-authz", QEMU_OPTS_FLAT_STRING },
    { "tls-creds", QEMU_OPTS_FLAT_STRING },
    { "tn3270", QEMU_OPTS_FLAT_BOOL },
    { "to", QEMU_OPTS_FLAT_NUMBER },
    { "wait", QEMU_OPTS_FLAT_BOOL },
    { "websocket", QEMU_OPTS_FLAT_BOOL },
    { "width", QEMU_OPTS_FLAT_NUMBER },
    { NULL },
};

bool qemu_opts_flat_parse_bool(const char *name, const char *value,
                               bool *out, Error **errp)
{
    return keyval_parse_bool(name, value, out, errp);
}

bool qemu_opts_flat_parse_number(const char *name, const char *value,
                                 uint64_t *out, Error **errp)
{
    uint64_t v;
    int err = strtou64_checked(value, NULL, 0, &v);

    if (err == -ERANGE) {
        error_setg(errp, "Value '%s' is too large for parameter '%s'",
                   value, name);
        return false;
    }
    if (err) {
        error_setg(errp, "Parameter '%s' expects a number", name);
        return false;
    }
    *out = v;
    return true;
}

bool qemu_opts_flat_parse_size(const char *name, const char *value,
                               uint64_t *out, const char **hint,
                               Error **errp)
{
    uint64_t v;
    int err = strtosz_checked(value, &v);

    if (hint) {
        *hint = NULL;
    }
    if (err == -ERANGE) {
        error_setg(errp, "Value '%s' is out of range for parameter '%s'",
                   value, name);
        return false;
    }
    if (err) {
        error_setg(errp, "Parameter '%s' expects a non-negative number "
                   "below 2^64", name);
        if (hint) {
            *hint = KEYVAL_HINT_SIZE;
        }
        return false;
    }
    *out = v;
    return true;
}

/*
 * A QemuOpts value at @p: up to the next single ',', with ",," standing
 * for ','.  Returns the new string; *end is set to the ',' or NUL.
 */
static char *opts_get_value(const char *p, const char **end)
{
    GString *value = g_string_new(NULL);
    const char *comma;

    for (;;) {
        comma = strchrnul(p, ',');
        if (*comma && comma[1] == ',') {
            g_string_append_len(value, p, comma - p + 1);
            p = comma + 2;
            continue;
        }
        g_string_append_len(value, p, comma - p);
        break;
    }
    *end = comma;
    return g_string_free(value, FALSE);
}

/*
 * One QemuOpts element at @params: "name=value", the implied value (when
 * @firstname), or a flag "name" / "noname".  Returns the next element.
 */
static const char *opts_get_element(const char *params,
                                    const char *firstname,
                                    bool warn_on_flag, bool *is_help,
                                    char **name, char **value)
{
    size_t len = strcspn(params, "=,");
    const char *p;

    *is_help = false;
    if (params[len] != '=') {
        if (firstname) {
            *name = g_strdup(firstname);
            *value = opts_get_value(params, &p);
        } else {
            const char *prefix = "";
            char *flag = g_strndup(params, len);

            p = params + len;
            if (g_str_has_prefix(flag, "no")) {
                *name = g_strdup(flag + 2);
                *value = g_strdup("off");
                prefix = "no";
            } else {
                *name = g_strdup(flag);
                *value = g_strdup("on");
                *is_help = !strcmp(flag, "help") || !strcmp(flag, "?");
            }
            if (!*is_help && warn_on_flag) {
                g_autofree char *hint = NULL;

                /* "nodelay" is spelt as the positive option's name. */
                if (!strcmp(*name, "delay")) {
                    hint = g_strdup_printf("Please use nodelay=%s instead\n",
                                           prefix[0] ? "on" : "off");
                } else {
                    hint = g_strdup_printf("Please use %s=%s instead\n",
                                           *name, *value);
                }
                keyval_warn(hint, "short-form boolean option '%s%s' "
                            "deprecated", prefix, *name);
            }
            g_free(flag);
        }
    } else {
        *name = g_strndup(params, len);
        *value = opts_get_value(params + len + 1, &p);
    }
    return *p == ',' ? p + 1 : p;
}

static const QemuOptsFlatDesc *find_desc(const QemuOptsFlatDesc *desc,
                                         const char *name)
{
    for (; desc && desc->name; desc++) {
        if (!strcmp(desc->name, name)) {
            return desc;
        }
    }
    return NULL;
}

static bool opt_validate(const QemuOptsFlatDesc *descs, const char *name,
                         const char *value, const char **hint, Error **errp)
{
    const QemuOptsFlatDesc *desc;
    uint64_t u;
    bool b;

    /* An empty table accepts anything, as QemuOpts' opts_accepts_any(). */
    if (!descs || !descs->name) {
        return true;
    }
    desc = find_desc(descs, name);
    if (!desc) {
        error_setg(errp, "Invalid parameter '%s'", name);
        return false;
    }
    switch (desc->type) {
    case QEMU_OPTS_FLAT_STRING:
        return true;
    case QEMU_OPTS_FLAT_BOOL:
        return qemu_opts_flat_parse_bool(name, value, &b, errp);
    case QEMU_OPTS_FLAT_NUMBER:
        return qemu_opts_flat_parse_number(name, value, &u, errp);
    case QEMU_OPTS_FLAT_SIZE:
        return qemu_opts_flat_parse_size(name, value, &u, hint, errp);
    }
    g_assert_not_reached();
}

/* The first "id" QEMU's opts_parse_id() finds: every flag counts. */
static char *opts_find_id(const char *params)
{
    const char *p = params;
    bool is_help;

    while (*p) {
        g_autofree char *name = NULL;
        char *value = NULL;

        p = opts_get_element(p, NULL, false, &is_help, &name, &value);
        if (!strcmp(name, "id")) {
            return value;
        }
        g_free(value);
    }
    return NULL;
}

json_t *qemu_opts_parse_flat_full(const char *params,
                                  const char *implied_key,
                                  const QemuOptsFlatDesc *desc,
                                  bool warn_on_flag, bool *help,
                                  const char **hint, Error **errp)
{
    g_autofree char *id = opts_find_id(params);
    const char *firstname = implied_key, *p = params;
    const char *dummy_hint;
    json_t *obj;

    if (!hint) {
        hint = &dummy_hint;
    }
    *hint = NULL;
    if (help) {
        *help = false;
    }

    /* QEMU checks the id when it creates the options, before parsing. */
    if (id && !id_wellformed(id)) {
        error_setg(errp, "Parameter 'id' expects an identifier");
        *hint = KEYVAL_HINT_ID;
        return NULL;
    }

    obj = json_object();
    if (id) {
        json_object_set_new_nocheck(obj, "id", json_string_nocheck(id));
    }
    while (*p) {
        g_autofree char *name = NULL;
        g_autofree char *value = NULL;
        bool is_help;

        p = opts_get_element(p, firstname, warn_on_flag, &is_help,
                             &name, &value);
        if (help && is_help) {
            *help = true;
            json_decref(obj);
            return NULL;
        }
        firstname = NULL;
        /* The pre-scan took care of "id"; QemuOpts ignores the others. */
        if (!strcmp(name, "id")) {
            continue;
        }
        if (!opt_validate(desc, name, value, hint, errp)) {
            json_decref(obj);
            return NULL;
        }
        json_object_set_new_nocheck(obj, name, json_string_nocheck(value));
    }
    return obj;
}

json_t *qemu_opts_parse_flat(const char *params, const char *implied_key,
                             Error **errp)
{
    return qemu_opts_parse_flat_full(params, implied_key, NULL, true, NULL,
                                     NULL, errp);
}

static const char *opt_type_name(QemuOptsFlatType type)
{
    switch (type) {
    case QEMU_OPTS_FLAT_STRING:
        return "str";
    case QEMU_OPTS_FLAT_BOOL:
        return "bool (on/off)";
    case QEMU_OPTS_FLAT_NUMBER:
        return "num";
    case QEMU_OPTS_FLAT_SIZE:
        return "size";
    }
    g_assert_not_reached();
}

static gint str_ptr_cmp(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *qemu_opts_flat_help_text(const char *list_name,
                               const QemuOptsFlatDesc *desc)
{
    g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
    GString *out = g_string_new(NULL);
    guint i;

    for (; desc && desc->name; desc++) {
        g_ptr_array_add(lines, g_strdup_printf("  %s=<%s>", desc->name,
                                               opt_type_name(desc->type)));
    }
    /* QEMU sorts the formatted lines, not the names. */
    g_ptr_array_sort(lines, str_ptr_cmp);
    if (lines->len) {
        g_string_append_printf(out, "%s options:\n", list_name);
    } else {
        g_string_append_printf(out, "There are no options for %s.\n",
                               list_name);
    }
    for (i = 0; i < lines->len; i++) {
        g_string_append_printf(out, "%s\n", (char *)lines->pdata[i]);
    }
    return g_string_free(out, FALSE);
}
