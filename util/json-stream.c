/*
 * Incremental JSON reader for QMP; see include/util/json-stream.h.
 *
 * Three stages, as in QEMU so that clients see the same behaviour:
 * - a lexer, a byte-at-a-time state machine, so input may be split
 *   anywhere, turns bytes into tokens; on a byte that cannot start or
 *   continue a token it emits an error and skips input up to a point where
 *   resynchronising is promising (a bracket, a control character such as
 *   newline, or the bytes 0xFE/0xFF that no UTF-8 text contains);
 * - a splitter collects tokens and counts open brackets; when the count
 *   returns to zero (or a token arrives at depth zero) the message is
 *   complete;
 * - a recursive-descent parser builds the jansson value, with QEMU's error
 *   texts ("JSON parse error, expecting value", ...).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/json-stream.h"

#define MAX_TOKEN_SIZE (64u << 20)
#define MAX_TOKEN_COUNT (2u << 20)
#define MAX_NESTING 1024

typedef enum TokenType {
    TOK_LCURLY, TOK_RCURLY, TOK_LSQUARE, TOK_RSQUARE, TOK_COLON, TOK_COMMA,
    TOK_INTEGER, TOK_FLOAT, TOK_KEYWORD, TOK_STRING, TOK_ERROR,
} TokenType;

typedef struct Token {
    TokenType type;
    char *text;     /* as written, quotes and escapes included */
} Token;

typedef enum LexState {
    LEX_START,
    LEX_STRING,        /* inside quotes; quote says which */
    LEX_STRING_ESCAPE,
    LEX_NUMBER,
    LEX_KEYWORD,
    LEX_RECOVERY,
} LexState;

struct JsonStream {
    JsonStreamEmit *emit;
    void *opaque;
    LexState state;
    char quote;
    GString *tok;
    GPtrArray *tokens;  /* of Token *, the message being collected */
    int depth;          /* open brackets of either kind */
    size_t size;        /* bytes in tokens */
};

static void token_free(gpointer p)
{
    Token *t = p;

    g_free(t->text);
    g_free(t);
}

/* ---- parser ------------------------------------------------------------ */

typedef struct Parser {
    GPtrArray *tokens;
    guint pos;
    Error *err;
} Parser;

static Token *peek(Parser *p)
{
    return p->pos < p->tokens->len ? g_ptr_array_index(p->tokens, p->pos) : NULL;
}

static Token *next(Parser *p)
{
    Token *t = peek(p);

    if (t) {
        p->pos++;
    }
    return t;
}

static void parse_error(Parser *p, const char *msg)
{
    if (!p->err) {
        error_setg(&p->err, "JSON parse error, %s", msg);
    }
}

static void append_utf8(GString *s, gunichar c)
{
    char buf[8];

    g_string_append_len(s, buf, g_unichar_to_utf8(c, buf));
}

static int hex4(const char *s)
{
    int v = 0, i;

    for (i = 0; i < 4; i++) {
        if (!g_ascii_isxdigit(s[i])) {
            return -1;
        }
        v = v * 16 + g_ascii_xdigit_value(s[i]);
    }
    return v;
}

/* Valid UTF-8 but for "\xC0\x80", the NUL of modified UTF-8. */
static bool mod_utf8_valid(const char *str, size_t len)
{
    g_autofree char *plain = g_strndup(str, len);
    char *p;

    while ((p = strstr(plain, "\xC0\x80"))) {
        p[0] = 'x';
        p[1] = 'x';
    }
    return g_utf8_validate(plain, len, NULL);
}

/* Decodes a string token's escapes; NULL (with p->err) if one is invalid. */
static json_t *parse_string(Parser *p, Token *t)
{
    g_autoptr(GString) s = g_string_new(NULL);
    const char *c = t->text + 1;
    const char *end = t->text + strlen(t->text) - 1;

    while (c < end) {
        if (*c != '\\') {
            g_string_append_c(s, *c++);
            continue;
        }
        c++;
        switch (*c) {
        case '"': case '\'': case '\\': case '/':
            g_string_append_c(s, *c);
            break;
        case 'b': g_string_append_c(s, '\b'); break;
        case 'f': g_string_append_c(s, '\f'); break;
        case 'n': g_string_append_c(s, '\n'); break;
        case 'r': g_string_append_c(s, '\r'); break;
        case 't': g_string_append_c(s, '\t'); break;
        case 'u': {
            int u = hex4(c + 1), lo;

            if (u < 0) {
                parse_error(p, "invalid hex escape sequence in string");
                return NULL;
            }
            c += 4;
            if (u >= 0xd800 && u < 0xdc00) {
                lo = c[1] == '\\' && c[2] == 'u' ? hex4(c + 3) : -1;
                if (lo < 0xdc00 || lo >= 0xe000) {
                    parse_error(p, "missing second half of surrogate pair");
                    return NULL;
                }
                u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
                c += 6;
            } else if (u >= 0xdc00 && u < 0xe000) {
                parse_error(p, "stray second half of surrogate pair");
                return NULL;
            }
            if (u == 0) {
                /* Modified UTF-8, as QEMU keeps NUL inside C strings. */
                g_string_append(s, "\xC0\x80");
            } else {
                append_utf8(s, u);
            }
            break;
        }
        default:
            parse_error(p, "invalid escape sequence in string");
            return NULL;
        }
        c++;
    }
    if (!g_utf8_validate(s->str, s->len, NULL) && !mod_utf8_valid(s->str, s->len)) {
        parse_error(p, "invalid UTF-8 sequence in string");
        return NULL;
    }
    return json_stringn_nocheck(s->str, s->len);   /* validated above */
}

static json_t *parse_number(Parser *p, Token *t)
{
    char *end;

    if (t->type == TOK_INTEGER) {
        long long v;
        unsigned long long u;

        errno = 0;
        v = strtoll(t->text, &end, 10);
        if (!errno && !*end) {
            return json_integer(v);
        }
        errno = 0;
        u = strtoull(t->text, &end, 10);
        if (!errno && !*end && t->text[0] != '-') {
            return json_uint64_new(u);
        }
        /* Beyond uint64: QEMU falls back to a double as well. */
    }
    return json_real(g_ascii_strtod(t->text, &end));
}

static json_t *parse_value(Parser *p);

static json_t *parse_object(Parser *p)
{
    json_t *obj = json_object();
    Token *t = peek(p);

    if (t && t->type == TOK_RCURLY) {
        next(p);
        return obj;
    }
    for (;;) {
        json_t *key, *val;

        key = parse_value(p);
        if (!key) {
            goto fail;
        }
        if (!json_is_string(key)) {
            json_decref(key);
            parse_error(p, "key is not a string in object");
            goto fail;
        }
        t = next(p);
        if (!t || t->type != TOK_COLON) {
            json_decref(key);
            parse_error(p, "missing : in object pair");
            goto fail;
        }
        val = parse_value(p);
        if (!val) {
            json_decref(key);
            goto fail;
        }
        json_object_set_new(obj, json_string_value(key), val);
        json_decref(key);
        t = next(p);
        if (t && t->type == TOK_RCURLY) {
            return obj;
        }
        if (!t || t->type != TOK_COMMA) {
            parse_error(p, "expected separator in dict");
            goto fail;
        }
    }
fail:
    json_decref(obj);
    return NULL;
}

static json_t *parse_array(Parser *p)
{
    json_t *arr = json_array();
    Token *t = peek(p);

    if (t && t->type == TOK_RSQUARE) {
        next(p);
        return arr;
    }
    for (;;) {
        json_t *val = parse_value(p);

        if (!val) {
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, val);
        t = next(p);
        if (t && t->type == TOK_RSQUARE) {
            return arr;
        }
        if (!t || t->type != TOK_COMMA) {
            parse_error(p, "expected separator in list");
            json_decref(arr);
            return NULL;
        }
    }
}

static json_t *parse_value(Parser *p)
{
    Token *t = next(p);

    if (!t) {
        parse_error(p, "premature EOI");
        return NULL;
    }
    switch (t->type) {
    case TOK_LCURLY:
        return parse_object(p);
    case TOK_LSQUARE:
        return parse_array(p);
    case TOK_STRING:
        return parse_string(p, t);
    case TOK_INTEGER:
    case TOK_FLOAT:
        return parse_number(p, t);
    case TOK_KEYWORD:
        if (!strcmp(t->text, "true")) {
            return json_true();
        } else if (!strcmp(t->text, "false")) {
            return json_false();
        } else if (!strcmp(t->text, "null")) {
            return json_null();
        } else {
            g_autofree char *msg = g_strdup_printf("invalid keyword '%s'", t->text);

            parse_error(p, msg);
            return NULL;
        }
    default:
        parse_error(p, "expecting value");
        return NULL;
    }
}

static json_t *parse_tokens(GPtrArray *tokens, Error **errp)
{
    Parser p = { .tokens = tokens };
    json_t *v = parse_value(&p);

    if (v && p.pos < tokens->len) {
        json_decref(v);
        v = NULL;
        parse_error(&p, "expecting value");
    }
    if (!v) {
        error_propagate(errp, p.err);
    }
    return v;
}

/* ---- splitter ---------------------------------------------------------- */

static void emit_message(JsonStream *js, Error *err)
{
    json_t *value = NULL;

    if (!err) {
        value = parse_tokens(js->tokens, &err);
    }
    g_ptr_array_set_size(js->tokens, 0);
    js->depth = 0;
    js->size = 0;
    js->emit(js->opaque, value, err);
}

static void add_token(JsonStream *js, TokenType type)
{
    Token *t;
    Error *err = NULL;

    if (type == TOK_ERROR) {
        error_setg(&err, "JSON parse error, stray '%s'", js->tok->str);
        g_string_truncate(js->tok, 0);
        emit_message(js, err);
        return;
    }
    t = g_new(Token, 1);
    t->type = type;
    js->size += js->tok->len;
    t->text = g_strndup(js->tok->str, js->tok->len);
    g_string_truncate(js->tok, 0);
    g_ptr_array_add(js->tokens, t);

    if (type == TOK_LCURLY || type == TOK_LSQUARE) {
        js->depth++;
    } else if (type == TOK_RCURLY || type == TOK_RSQUARE) {
        js->depth--;
    }
    if (js->depth <= 0) {
        emit_message(js, NULL);
    } else if (js->size > MAX_TOKEN_SIZE) {
        error_setg(&err, "JSON token size limit exceeded");
        emit_message(js, err);
    } else if (js->tokens->len > MAX_TOKEN_COUNT) {
        error_setg(&err, "JSON token count limit exceeded");
        emit_message(js, err);
    } else if (js->depth > MAX_NESTING) {
        error_setg(&err, "JSON nesting depth limit exceeded");
        emit_message(js, err);
    }
}

/* ---- lexer ------------------------------------------------------------- */

static bool is_number_char(char c)
{
    return g_ascii_isdigit(c) || c == '.' || c == 'e' || c == 'E' ||
           c == '+' || c == '-';
}

static bool valid_number(const char *s, bool *is_float)
{
    /* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
    const char *c = s;

    *is_float = false;
    if (*c == '-') {
        c++;
    }
    if (*c == '0') {
        c++;
    } else if (g_ascii_isdigit(*c)) {
        while (g_ascii_isdigit(*c)) {
            c++;
        }
    } else {
        return false;
    }
    if (*c == '.') {
        *is_float = true;
        c++;
        if (!g_ascii_isdigit(*c)) {
            return false;
        }
        while (g_ascii_isdigit(*c)) {
            c++;
        }
    }
    if (*c == 'e' || *c == 'E') {
        *is_float = true;
        c++;
        if (*c == '+' || *c == '-') {
            c++;
        }
        if (!g_ascii_isdigit(*c)) {
            return false;
        }
        while (g_ascii_isdigit(*c)) {
            c++;
        }
    }
    return !*c;
}

static bool is_resync_point(unsigned char c)
{
    return c < 0x20 || c >= 0xfe || c == '[' || c == ']' || c == '{' || c == '}';
}

/* Returns true when c was consumed, false to look at it again in LEX_START. */
static bool lex_char(JsonStream *js, unsigned char c)
{
    switch (js->state) {
    case LEX_RECOVERY:
        if (c != '\t' && is_resync_point(c)) {
            js->state = LEX_START;
            return false;
        }
        return true;

    case LEX_STRING:
        g_string_append_c(js->tok, c);
        if (c == '\\') {
            js->state = LEX_STRING_ESCAPE;
        } else if (c == js->quote) {
            js->state = LEX_START;
            add_token(js, TOK_STRING);
        } else if (c < 0x20) {
            js->state = LEX_RECOVERY;
            add_token(js, TOK_ERROR);
        }
        return true;

    case LEX_STRING_ESCAPE:
        g_string_append_c(js->tok, c);
        js->state = LEX_STRING;
        return true;

    case LEX_NUMBER:
        if (is_number_char(c)) {
            g_string_append_c(js->tok, c);
            return true;
        } else {
            bool is_float;

            js->state = LEX_START;
            if (valid_number(js->tok->str, &is_float)) {
                add_token(js, is_float ? TOK_FLOAT : TOK_INTEGER);
            } else {
                js->state = LEX_RECOVERY;
                add_token(js, TOK_ERROR);
            }
            return false;
        }

    case LEX_KEYWORD:
        if (c >= 'a' && c <= 'z') {
            g_string_append_c(js->tok, c);
            return true;
        }
        js->state = LEX_START;
        add_token(js, TOK_KEYWORD);
        return false;

    case LEX_START:
        switch (c) {
        case ' ': case '\t': case '\r': case '\n':
            return true;
        case '{': case '}': case '[': case ']': case ':': case ',':
            g_string_append_c(js->tok, c);
            add_token(js, c == '{' ? TOK_LCURLY : c == '}' ? TOK_RCURLY :
                          c == '[' ? TOK_LSQUARE : c == ']' ? TOK_RSQUARE :
                          c == ':' ? TOK_COLON : TOK_COMMA);
            return true;
        case '"': case '\'':
            js->quote = c;
            g_string_append_c(js->tok, c);
            js->state = LEX_STRING;
            return true;
        default:
            g_string_append_c(js->tok, c);
            if (c == '-' || g_ascii_isdigit(c)) {
                js->state = LEX_NUMBER;
            } else if (c >= 'a' && c <= 'z') {
                js->state = LEX_KEYWORD;
            } else {
                js->state = LEX_RECOVERY;
                add_token(js, TOK_ERROR);
            }
            return true;
        }

    default:
        g_assert_not_reached();
    }
}

JsonStream *json_stream_new(JsonStreamEmit *emit, void *opaque)
{
    JsonStream *js = g_new0(JsonStream, 1);

    js->emit = emit;
    js->opaque = opaque;
    js->tok = g_string_new(NULL);
    js->tokens = g_ptr_array_new_with_free_func(token_free);
    return js;
}

void json_stream_feed(JsonStream *js, const char *buf, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        while (!lex_char(js, (unsigned char)buf[i])) {
            /* reconsidered in the new state */
        }
        if (js->tok->len > MAX_TOKEN_SIZE) {
            Error *err = NULL;

            error_setg(&err, "JSON token size limit exceeded");
            g_string_truncate(js->tok, 0);
            js->state = LEX_RECOVERY;
            emit_message(js, err);
        }
    }
}

void json_stream_flush(JsonStream *js)
{
    /* A number or keyword ends at end of input; other partial tokens don't. */
    if (js->state == LEX_NUMBER || js->state == LEX_KEYWORD) {
        lex_char(js, ' ');
    }
    if (js->tokens->len) {
        Error *err = NULL;

        error_setg(&err, "JSON parse error, premature EOI");
        emit_message(js, err);
    }
    g_string_truncate(js->tok, 0);
    js->state = LEX_START;
}

void json_stream_free(JsonStream *js)
{
    if (js) {
        g_string_free(js->tok, true);
        g_ptr_array_unref(js->tokens);
        g_free(js);
    }
}

typedef struct ParseOne {
    json_t *value;
    Error *err;
    int count;
} ParseOne;

static void parse_one_emit(void *opaque, json_t *value, Error *err)
{
    ParseOne *po = opaque;

    if (po->count++ == 0) {
        po->value = value;
        po->err = err;
    } else {
        json_decref(value);
        error_free(err);
        if (!po->err) {
            json_decref(po->value);
            po->value = NULL;
            error_setg(&po->err, "JSON parse error, expecting end of input");
        }
    }
}

json_t *json_parse_text(const char *text, Error **errp)
{
    ParseOne po = { 0 };
    JsonStream *js = json_stream_new(parse_one_emit, &po);

    json_stream_feed(js, text, strlen(text));
    json_stream_flush(js);
    json_stream_free(js);
    if (!po.err && !po.value) {
        error_setg(&po.err, "JSON parse error, expecting value");
    }
    error_propagate(errp, po.err);
    return po.err ? NULL : po.value;
}

/* The marker byte: 0xFF never occurs in UTF-8, nor in modified UTF-8. */
#define UINT64_MARK '\xFF'

json_t *json_uint64_new(uint64_t value)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%c%" G_GUINT64_FORMAT, UINT64_MARK, value);

    return json_stringn_nocheck(buf, n);
}

bool json_uint64_get(const json_t *v, uint64_t *value)
{
    const char *s = json_string_value(v);

    if (!s || s[0] != UINT64_MARK) {
        return false;
    }
    *value = g_ascii_strtoull(s + 1, NULL, 10);
    return true;
}

bool json_is_text(const json_t *v)
{
    uint64_t dummy;

    return json_is_string(v) && !json_uint64_get(v, &dummy);
}
