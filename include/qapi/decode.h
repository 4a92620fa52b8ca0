/*
 * Decoding JSON into generated QAPI types, used by the generated
 * qapi_decode_*() functions.
 *
 * Two modes: JSON (QMP, --blockdev '{...}') wants each member in its JSON
 * type; keyval (--blockdev driver=file,...) has only strings and converts
 * them by the schema's type. Errors name the member by its full path
 * ("addr.path", "bitmaps[1]"; keyval: "bitmaps.1") with QEMU's texts:
 *   Parameter 'X' is missing / Parameter 'X' is unexpected /
 *   Invalid parameter type for 'X', expected: <json type> /
 *   Parameter 'X' does not accept value 'V' / Parameter 'X' expects <type>
 */
#ifndef QAPI_DECODE_H
#define QAPI_DECODE_H

#include <stdint.h>
#include <glib.h>
#include <jansson.h>

#include "qapi/error.h"
#include "qapi/util.h"

typedef struct QapiDecoder {
    bool keyval;        /* scalars arrive as strings, to convert */
    GPtrArray *frames;  /* QapiFrame *: the members being decoded, outermost first */
} QapiDecoder;

void qapi_decoder_init(QapiDecoder *d, bool keyval);
void qapi_decoder_cleanup(QapiDecoder *d);
/* Enters member name (NULL: the top level) that is not an object. */
void qapi_decoder_push(QapiDecoder *d, const char *name);
void qapi_decoder_pop(QapiDecoder *d);
/* The path component of list element i: "[i]" for JSON, "i" for keyval. */
char *qapi_decoder_index_name(QapiDecoder *d, size_t i);

/*
 * Objects: begin checks val is an object and enters it; take_member looks
 * a member up in the innermost object and records it as visited; end
 * reports the member left unvisited that QEMU would name (when ok) and
 * leaves the object. Both return success.
 */
bool qapi_decode_begin_object(QapiDecoder *d, const char *name, json_t *val,
                              Error **errp);
json_t *qapi_take_member(QapiDecoder *d, const char *name);
bool qapi_decode_end_object(QapiDecoder *d, bool ok, Error **errp);
/* A command without arguments accepts an empty "arguments". */
bool qapi_decode_no_args(QapiDecoder *d, json_t *args, Error **errp);
bool qapi_decode_check_array(QapiDecoder *d, const char *name, json_t *val,
                             Error **errp);
void qapi_error_missing(QapiDecoder *d, const char *name, Error **errp);
void qapi_error_alternate(QapiDecoder *d, const char *name, const char *type,
                          Error **errp);
QType qapi_decode_alternate_qtype(QapiDecoder *d, json_t *val);

bool qapi_decode_str(QapiDecoder *d, const char *name, json_t *val, char **out,
                     Error **errp);
/* tname is QEMU's name for the range in errors ("int64", "int8_t", ...). */
bool qapi_decode_int(QapiDecoder *d, const char *name, json_t *val,
                     int64_t min, int64_t max, const char *tname,
                     int64_t *out, Error **errp);
bool qapi_decode_int_into(QapiDecoder *d, const char *name, json_t *val,
                          int64_t min, int64_t max, const char *tname,
                          void *out, size_t size, Error **errp);
/* is_size: keyval strings may carry k/M/G/T/P/E suffixes. */
bool qapi_decode_uint(QapiDecoder *d, const char *name, json_t *val,
                      uint64_t max, const char *tname, bool is_size,
                      uint64_t *out, Error **errp);
bool qapi_decode_uint_into(QapiDecoder *d, const char *name, json_t *val,
                           uint64_t max, const char *tname,
                           void *out, size_t size, Error **errp);
bool qapi_decode_bool(QapiDecoder *d, const char *name, json_t *val, bool *out,
                      Error **errp);
bool qapi_decode_number(QapiDecoder *d, const char *name, json_t *val,
                        double *out, Error **errp);
bool qapi_decode_any(QapiDecoder *d, const char *name, json_t *val,
                     json_t **out, Error **errp);
bool qapi_decode_null(QapiDecoder *d, const char *name, json_t *val, bool *out,
                      Error **errp);
bool qapi_decode_enum(QapiDecoder *d, const char *name, json_t *val,
                      const QEnumLookup *lookup, int *out, Error **errp);

/* Encoding helpers: strings as they are (see util/json-writer.h), uint64. */
json_t *qapi_encode_str(const char *str);
json_t *qapi_encode_uint(uint64_t val);

#endif
