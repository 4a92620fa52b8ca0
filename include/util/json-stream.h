/*
 * Incremental JSON reader for byte streams (QMP).
 *
 * Bytes arrive in arbitrary pieces; each complete top-level JSON value is
 * handed to the emit callback, as is each syntax error, after which reading
 * resumes with the next value, so one bad request does not poison the
 * stream. As in QEMU, a message is complete when the brackets opened since
 * the last message are closed (or a scalar stands alone at the top level),
 * strings may use single quotes, and nesting, token size and count are
 * limited so that a client cannot make the daemon allocate without bound.
 */
#ifndef UTIL_JSON_STREAM_H
#define UTIL_JSON_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "qapi/error.h"

/* Exactly one of value and err is set; the callee owns it. */
typedef void JsonStreamEmit(void *opaque, json_t *value, Error *err);

typedef struct JsonStream JsonStream;

JsonStream *json_stream_new(JsonStreamEmit *emit, void *opaque);
void json_stream_feed(JsonStream *js, const char *buf, size_t len);
/* End of input: a pending incomplete value is reported as an error. */
void json_stream_flush(JsonStream *js);
void json_stream_free(JsonStream *js);

/* Parses one complete JSON text with the same rules, for tests and callers. */
json_t *json_parse_text(const char *text, Error **errp);

/*
 * Integers above INT64_MAX: jansson integers are signed, so the reader
 * keeps such a number (up to UINT64_MAX, which QEMU accepts) as a string
 * marked with a byte no parsed string can hold; the QAPI decoders and the
 * writer (json-writer.h) know it as a number.
 */
json_t *json_uint64_new(uint64_t value);
bool json_uint64_get(const json_t *v, uint64_t *value);

/*
 * A string member that QEMU's reader would take as a string: a JSON string
 * and not a marked number. Strings keep U+0000 as "\xC0\x80", as QEMU
 * does, so that C strings can hold it; the writer turns it back.
 */
bool json_is_text(const json_t *v);

#endif
