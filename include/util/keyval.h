/*
 * Option-string parsers for the command line: QEMU's KEY=VALUE,... syntax
 * ("keyval", used by --blockdev, --export, --nbd-server, --object,
 * --monitor) and the older QemuOpts syntax (used by --chardev), plus the
 * string-to-scalar conversions the generated decoder applies to keyval
 * leaves.
 *
 * Every rule and message below was checked against qemu-storage-daemon of
 * QEMU 7.2, which prints "qemu-storage-daemon: --OPTION ARG: MESSAGE" on
 * stderr and exits 1.
 *
 * Output trees are jansson values owned by the caller.  Scalar leaves are
 * always JSON strings; they hold the bytes given on the command line and
 * may therefore be invalid UTF-8 (they are built with the _nocheck
 * constructors), so read them with json_string_value(), do not dump them.
 *
 * Keyval syntax (keyval_parse)
 * ----------------------------
 *   key-vals  = [ key-val { ',' key-val } [ ',' ] ]     trailing ',' is OK
 *   key-val   = key '=' value | 'help' | '?'
 *   key       = fragment { '.' fragment }
 *   fragment  = qapi-name | index             (an index never comes first)
 *   qapi-name = [ '__' RFQDN '_' ] [A-Za-z] [A-Za-z0-9_-]*
 *               where RFQDN is [A-Za-z0-9.-]* (downstream extension names
 *               such as __com.redhat_foo)
 *   index     = [0-9]+
 *   value     = anything up to the next single ','; ',,' is a literal ','
 * - Dotted keys build nested objects: a.b=1,a.c=2 -> {"a":{"b":"1","c":"2"}}.
 * - An object whose keys are all indexes becomes an array in index order:
 *   b.1=y,b.0=x -> {"b":["x","y"]}.  Indexes are decimal, so 00 and 0 are
 *   the same element (QEMU then keeps one of them; see keyval.c).
 * - A key given twice: the later value wins.
 * - Implied key: if the FIRST element has no '=' (and is not help), it is
 *   the value of @implied_key: "nbd,id=e" == "type=nbd,id=e".  That value
 *   ends at the first ',' or '=' and has no ',,' escape.  Later elements
 *   never use the implied key.
 * - "help" or "?" as a whole element asks for help; it is not stored.
 * - An empty string gives an empty object.
 * - qsd's implied keys: --blockdev "driver", --export "type", --monitor
 *   "chardev", --object "qom-type", --nbd-server none.  Only --object
 *   passes a help pointer; the others report help as an error.
 *
 * Keyval errors (exact QEMU texts; X is the key as written):
 *   "Invalid parameter 'X'"              bad fragment, e.g. a..b, 1a, _a,
 *                                        a.0b, an empty key (",x=1", "=x")
 *   "Expected '=' after parameter 'X'"   element without '=' (not first,
 *                                        or no implied key)
 *   "Parameter 'X' is too long"          a one-fragment key of >= 128 chars
 *   "Parameter fragment 'F' is too long" one fragment of a dotted key
 *   "Parameters 'P.*' used inconsistently"  P used both as a scalar and as
 *                                        an object (either order), or P's
 *                                        members mix indexes and names
 *   "Parameter 'P.N' missing"            list P has no element N but a
 *                                        higher one (the lowest gap)
 *   "Help is not available for this option"  help requested, @help NULL
 * Syntax errors are reported in string order, the first one wins; help is
 * checked after the whole string parsed; list errors come last.
 *
 * QemuOpts syntax (qemu_opts_parse_flat, --chardev)
 * -------------------------------------------------
 * Flat KEY=VALUE list, no nesting or lists, ',,' escapes ',' in values
 * (and in the implied value, unlike keyval).  The first element without
 * '=' is the implied key's value ("socket,..." -> backend=socket).  Any
 * other element without '=' is a flag: "server" -> server=on, "nowait" ->
 * wait=off; QEMU 7.2's --chardev warns about each (see KeyvalWarnFunc):
 *   warning "short-form boolean option 'server' deprecated"
 *   hint    "Please use server=on instead\n"
 *   (for [no]delay the hint is "Please use nodelay=off|on instead\n")
 * A repeated key: the later value wins, but every occurrence is validated.
 * "id" is taken from its FIRST occurrence, found by a pre-scan that treats
 * every element without '=' as a flag, and must be an identifier:
 *   "Parameter 'id' expects an identifier"  hint KEYVAL_HINT_ID
 * With a description table, each option is validated in string order:
 *   "Invalid parameter 'X'"                         unknown name
 *   "Parameter 'X' expects 'on' or 'off'"           bool
 *   "Parameter 'X' expects a number"                number
 *   "Value 'V' is too large for parameter 'X'"      number overflow
 *   "Parameter 'X' expects a non-negative number below 2^64"  size, hint
 *                                                   KEYVAL_HINT_SIZE
 *   "Value 'V' is out of range for parameter 'X'"   size overflow
 * "help"/"?" as a flag element (not the first) is a help request, which
 * stops parsing; as the first element it is the implied value (--chardev
 * help lists backends: the caller's business).
 *
 * Scalar conversions (keyval_parse_*, what QEMU's keyval input visitor
 * accepts; the name in messages is the caller's full dotted name)
 * -------------------------------------------------------------------
 *   bool:   on yes true y / off no false n (case-sensitive)
 *           else "Parameter 'X' expects 'on' or 'off'"
 *   int64:  strtoll base 0: optional leading white space and sign, 0x hex,
 *           leading 0 octal; whole string, in range
 *           else "Parameter 'X' expects integer"
 *   uint64: strtoull base 0, so "-1" is UINT64_MAX (QEMU's range check
 *           then fails it for narrower types); else "... expects integer"
 *   size:   decimal with optional fraction and suffix B K M G T P E (any
 *           case, powers of 1024), or hex (a suffix on hex warns
 *           "Using a multiplier suffix on hex numbers is deprecated: V");
 *           no sign, no exponent, a fraction needs a suffix above B
 *           else "Parameter 'X' expects size"
 *   number: finite strtod; else "Parameter 'X' expects number"
 * Range checks for narrower integer types belong to the decoder (QEMU:
 * "Parameter 'X' expects uint32_t" etc., with the member's bare name).
 */
#ifndef UTIL_KEYVAL_H
#define UTIL_KEYVAL_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>
#include <jansson.h>

#include "qapi/error.h"

/* Hints QEMU prints on a line of their own after some errors. */
#define KEYVAL_HINT_ID \
    "Identifiers consist of letters, digits, '-', '.', '_', " \
    "starting with a letter.\n"
#define KEYVAL_HINT_SIZE \
    "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, " \
    "tera-, peta-\nand exabytes, respectively.\n"

/*
 * Deprecation warnings.  QEMU prints "<prog>: <location>: warning: MSG"
 * and then, for some, HINT as is (HINT ends in a newline).  The default
 * handler prints "warning: MSG\n" and HINT with g_printerr(); the daemon
 * installs one that adds its program name and option.  @fn NULL restores
 * the default.
 */
typedef void KeyvalWarnFunc(void *opaque, const char *msg, const char *hint);
void keyval_set_warn_func(KeyvalWarnFunc *fn, void *opaque);

/*
 * Parse @params in keyval syntax into a new object.
 * @implied_key may be NULL; otherwise it must be a valid key (a bad one
 * is a programming error and aborts).  If @help is not NULL, *help tells
 * whether "help" or "?" appeared; if it is NULL, such a request is an
 * error.
 * Returns NULL with @errp set on failure.
 */
json_t *keyval_parse(const char *params, const char *implied_key,
                     bool *help, Error **errp);

/* String to scalar, as QEMU's keyval input visitor; rules above. */
bool keyval_parse_bool(const char *name, const char *str, bool *out,
                       Error **errp);
bool keyval_parse_int64(const char *name, const char *str, int64_t *out,
                        Error **errp);
bool keyval_parse_uint64(const char *name, const char *str, uint64_t *out,
                         Error **errp);
bool keyval_parse_size(const char *name, const char *str, uint64_t *out,
                       Error **errp);
bool keyval_parse_number(const char *name, const char *str, double *out,
                         Error **errp);

/* QemuOpts option types, as "--chardev socket,help" names them. */
typedef enum QemuOptsFlatType {
    QEMU_OPTS_FLAT_STRING,      /* "str" */
    QEMU_OPTS_FLAT_BOOL,        /* "bool (on/off)" */
    QEMU_OPTS_FLAT_NUMBER,      /* "num" */
    QEMU_OPTS_FLAT_SIZE,        /* "size" */
} QemuOptsFlatType;

typedef struct QemuOptsFlatDesc {
    const char *name;
    QemuOptsFlatType type;
} QemuOptsFlatDesc;

/*
 * QEMU 7.2's chardev options (qemu_chardev_opts), sorted by name,
 * terminated by { NULL }.
 */
extern const QemuOptsFlatDesc qemu_chardev_opts_desc[];

/*
 * Parse @params in QemuOpts syntax into a new flat object of strings,
 * "id" first if given, then the other keys in order of first appearance
 * with their last values.  No validation, flags warn as --chardev does,
 * "help" is stored as help=on.
 */
json_t *qemu_opts_parse_flat(const char *params, const char *implied_key,
                             Error **errp);

/*
 * The same with QemuOpts' knobs:
 * @desc: validate names and values against this table ({ NULL }
 *        terminated); NULL accepts any name as a string.
 * @warn_on_flag: warn about short-form flags (QEMU's "noisily" parse).
 * @help: if not NULL, a help element stops parsing, sets *help and the
 *        function returns NULL without an error; if NULL, "help" is an
 *        ordinary flag.
 * @hint: if not NULL, set to the hint QEMU prints after the error (one of
 *        the KEYVAL_HINT_* strings) or NULL.
 */
json_t *qemu_opts_parse_flat_full(const char *params,
                                  const char *implied_key,
                                  const QemuOptsFlatDesc *desc,
                                  bool warn_on_flag, bool *help,
                                  const char **hint, Error **errp);

/*
 * QemuOpts' value checks (the validation above), for callers reading the
 * parsed strings.  Bool accepts what keyval_parse_bool() accepts.
 */
bool qemu_opts_flat_parse_bool(const char *name, const char *value,
                               bool *out, Error **errp);
bool qemu_opts_flat_parse_number(const char *name, const char *value,
                                 uint64_t *out, Error **errp);
bool qemu_opts_flat_parse_size(const char *name, const char *value,
                               uint64_t *out, const char **hint,
                               Error **errp);

/*
 * The text QEMU prints on stdout for a QemuOpts help request, e.g. for
 * "--chardev socket,help" (list name "chardev"): a caption line and one
 * "  name=<type>" line per option, sorted.  g_free() the result.
 */
char *qemu_opts_flat_help_text(const char *list_name,
                               const QemuOptsFlatDesc *desc);

#endif
