/*
 * Command-line options that create things. Each parses into the same
 * representation its QMP counterpart decodes: keyval text (or JSON text
 * when it starts with '{') becomes a JSON tree for the generated decoders.
 */
#include <stdio.h>
#include <string.h>

#include "daemon/options.h"
#include "monitor/chardev.h"
#include "monitor/monitor.h"
#include "nbd/nbd.h"
#include "qapi-commands.h"
#include "qapi-visit.h"
#include "util/json-stream.h"
#include "util/keyval.h"

const char *blkd_option_name(BlkdOption opt)
{
    switch (opt) {
    case BLKD_OPT_BLOCKDEV: return "--blockdev";
    case BLKD_OPT_CHARDEV: return "--chardev";
    case BLKD_OPT_DAEMONIZE: return "--daemonize";
    case BLKD_OPT_EXPORT: return "--export";
    case BLKD_OPT_MONITOR: return "--monitor";
    case BLKD_OPT_NBD_SERVER: return "--nbd-server";
    case BLKD_OPT_OBJECT: return "--object";
    case BLKD_OPT_PIDFILE: return "--pidfile";
    }
    g_assert_not_reached();
}

/* qemu-storage-daemon accepts JSON for these when the text starts with '{'. */
static json_t *parse_keyval_or_json(const char *arg, const char *implied_key,
                                    Error **errp)
{
    json_t *tree;

    if (arg[0] == '{') {
        tree = json_parse_text(arg, errp);
        if (tree && !json_is_object(tree)) {
            error_setg(errp, "Invalid parameter type, expected: object");
            json_decref(tree);
            return NULL;
        }
        return tree;
    }
    return keyval_parse(arg, implied_key, NULL, errp);
}

typedef struct OptionLocation {
    BlkdOption opt;
    const char *arg;
} OptionLocation;

/* Deprecation warnings name the option they come from, as QEMU's do. */
static void option_warn(void *opaque, const char *msg, const char *hint)
{
    const OptionLocation *loc = opaque;

    fprintf(stderr, "blkd: %s %s: warning: %s\n", blkd_option_name(loc->opt),
            loc->arg, msg);
    if (hint) {
        fputs(hint, stderr);
    }
}

typedef bool DecodeFn(QapiDecoder *d, const char *name, json_t *val,
                     void **out, Error **errp);

/* Decodes an option's tree into the type its QMP command takes. */
static bool decode_option(json_t *tree, bool keyval, void *decode, void **out,
                          Error **errp)
{
    QapiDecoder d;
    bool ok;

    qapi_decoder_init(&d, keyval);
    ok = ((DecodeFn *)decode)(&d, NULL, tree, out, errp);
    qapi_decoder_cleanup(&d);
    return ok;
}

bool blkd_handle_option(BlkdOption opt, const char *arg, Error **errp)
{
    OptionLocation loc = { opt, arg };
    json_t *tree = NULL;
    bool ok = false;

    keyval_set_warn_func(option_warn, &loc);

    switch (opt) {
    case BLKD_OPT_CHARDEV:
        tree = qemu_opts_parse_flat_full(arg, "backend", qemu_chardev_opts_desc,
                                         true, NULL, NULL, errp);
        ok = tree && chardev_new(tree, errp);
        break;
    case BLKD_OPT_MONITOR:
        tree = keyval_parse(arg, "chardev", NULL, errp);
        ok = tree && monitor_new_from_opts(tree, errp);
        break;
    case BLKD_OPT_OBJECT:
        tree = keyval_parse(arg, "qom-type", NULL, errp);
        if (tree) {
            json_t *type = json_object_get(tree, "qom-type");

            error_setg(errp, "Object type '%s' is not supported by blkd",
                       json_is_string(type) ? json_string_value(type) : "");
        }
        break;
    case BLKD_OPT_BLOCKDEV: {
        g_autoptr(BlockdevOptions) options = NULL;
        bool keyval = arg[0] != '{';

        tree = parse_keyval_or_json(arg, "driver", errp);
        ok = tree && decode_option(tree, keyval, qapi_decode_BlockdevOptions,
                                   (void **)&options, errp) &&
             qmp_blockdev_add(options, errp);
        break;
    }
    case BLKD_OPT_NBD_SERVER: {
        g_autoptr(NbdServerOptions) options = NULL;
        bool keyval = arg[0] != '{';

        tree = parse_keyval_or_json(arg, NULL, errp);
        ok = tree && decode_option(tree, keyval, qapi_decode_NbdServerOptions,
                                   (void **)&options, errp) &&
             nbd_server_start(options->addr,
                              options->has_max_connections ?
                              options->max_connections : 0, errp);
        break;
    }
    case BLKD_OPT_EXPORT: {
        g_autoptr(BlockExportOptions) options = NULL;
        bool keyval = arg[0] != '{';

        tree = parse_keyval_or_json(arg, "type", errp);
        ok = tree && decode_option(tree, keyval, qapi_decode_BlockExportOptions,
                                   (void **)&options, errp) &&
             qmp_block_export_add(options, errp);
        break;
    }
    default:
        g_assert_not_reached();
    }
    keyval_set_warn_func(NULL, NULL);
    json_decref(tree);
    return ok;
}
