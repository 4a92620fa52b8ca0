/*
 * QMP request dispatch: checks the request's shape with QEMU's texts, finds
 * the command in the generated table, runs its marshaller and builds the
 * reply, echoing "id".
 */
#include <string.h>

#include "monitor/monitor.h"
#include "qapi-commands.h"
#include "qapi/decode.h"
#include "util/json-stream.h"

static const QmpCommand *find_command(const char *name)
{
    static GHashTable *table;
    size_t i;

    if (!table) {
        table = g_hash_table_new(g_str_hash, g_str_equal);
        for (i = 0; i < qmp_commands_count; i++) {
            g_hash_table_insert(table, (gpointer)qmp_commands[i].name,
                                (gpointer)&qmp_commands[i]);
        }
    }
    return g_hash_table_lookup(table, name);
}

/* Checks the request's members; returns the command name or NULL. */
static const char *check_request(json_t *req, bool oob, bool *is_oob, Error **errp)
{
    const char *key, *exec = NULL;
    json_t *v;

    json_object_foreach(req, key, v) {
        if (!strcmp(key, "execute") || (oob && !strcmp(key, "exec-oob"))) {
            if (!json_is_text(v)) {
                error_setg(errp, "QMP input member '%s' must be a string", key);
                return NULL;
            }
            if (exec) {
                error_setg(errp, "QMP input member 'execute' clashes with 'exec-oob'");
                return NULL;
            }
            exec = json_string_value(v);
            *is_oob = !strcmp(key, "exec-oob");
        } else if (!strcmp(key, "arguments")) {
            if (!json_is_object(v)) {
                error_setg(errp, "QMP input member 'arguments' must be an object");
                return NULL;
            }
        } else if (strcmp(key, "id")) {
            error_setg(errp, "QMP input member '%s' is unexpected", key);
            return NULL;
        }
    }
    if (!exec) {
        error_setg(errp, "QMP input lacks member 'execute'");
    }
    return exec;
}

static json_t *error_reply(Error *err)
{
    json_t *desc = json_object();

    json_object_set_new(desc, "class",
                        json_string(error_class_name(error_get_class(err))));
    json_object_set_new(desc, "desc", qapi_encode_str(error_get_pretty(err)));
    error_free(err);
    return json_pack("{s:o}", "error", desc);
}

json_t *qmp_dispatch(json_t *req, bool negotiating, bool oob)
{
    Error *err = NULL;
    const QmpCommand *cmd;
    const char *name;
    json_t *reply, *ret = NULL, *id, *args;
    bool is_oob = false, ok;

    if (!json_is_object(req)) {
        error_setg(&err, "QMP input must be a JSON object");
        return error_reply(err);
    }
    name = check_request(req, oob, &is_oob, &err);
    if (!name) {
        reply = error_reply(err);
        goto out;
    }
    if (negotiating && strcmp(name, "qmp_capabilities")) {
        error_set(&err, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "Expecting capabilities negotiation with 'qmp_capabilities'");
        reply = error_reply(err);
        goto out;
    }
    cmd = find_command(name);
    if (!cmd) {
        error_set(&err, ERROR_CLASS_COMMAND_NOT_FOUND,
                  "The command %s has not been found", name);
        reply = error_reply(err);
        goto out;
    }
    if (is_oob) {
        /* No blkd command may run out of band, as in qemu-storage-daemon. */
        error_setg(&err, "The command %s does not support OOB", name);
        reply = error_reply(err);
        goto out;
    }
    args = json_object_get(req, "arguments");
    /* Marshallers always get an object: no "arguments" means none given. */
    args = args ? json_incref(args) : json_object();
    ok = cmd->fn(args, &ret, &err);
    json_decref(args);
    if (!ok) {
        reply = error_reply(err);
        goto out;
    }
    reply = json_pack("{s:o}", "return", ret);
out:
    id = json_object_get(req, "id");
    if (id) {
        json_object_set(reply, "id", id);
    }
    return reply;
}
