/*
 * Writes JSON the way QEMU's QMP server does, so replies and events are
 * byte for byte what qemu-storage-daemon would send: object keys in
 * QEMU's QDict order, ", " and ": " separators, every character outside
 * printable ASCII escaped as \uXXXX (upper-case hex), U+0000 written for
 * the "\xC0\x80" strings keep it as, invalid UTF-8 as \uFFFD, numbers
 * above INT64_MAX exact, doubles as "%.17g".
 */
#ifndef UTIL_JSON_WRITER_H
#define UTIL_JSON_WRITER_H

#include <stdbool.h>
#include <glib.h>
#include <jansson.h>

/* Appends v to out; pretty: QEMU's pretty form (4-space indent). */
void json_writer_append(GString *out, const json_t *v, bool pretty);

#endif
