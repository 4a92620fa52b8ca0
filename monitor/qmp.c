/*
 * QMP sessions on chardevs: the greeting on connect, the JSON stream in,
 * replies and events out. A session starts in capabilities negotiation
 * mode; events go only to sessions that have left it, as in QEMU.
 */
#include <string.h>

#include "monitor/monitor.h"
#include "qapi-commands.h"
#include "qapi-visit.h"
#include "qapi/decode.h"
#include "qapi/event.h"
#include "util/json-stream.h"
#include "util/json-writer.h"
#include "util/keyval.h"
#include "util/main-loop.h"

struct MonitorQMP {
    Chardev *chr;
    JsonStream *stream;
    bool pretty;
    bool commands_enabled;
    bool oob;
};

static GPtrArray *monitors;     /* of MonitorQMP *, owned */
static MonitorQMP *cur_mon;

MonitorQMP *monitor_cur(void)
{
    return cur_mon;
}

bool monitor_commands_enabled(MonitorQMP *mon)
{
    return mon->commands_enabled;
}

void monitor_enable_commands(MonitorQMP *mon, bool oob)
{
    mon->commands_enabled = true;
    mon->oob = oob;
}

static void monitor_send(MonitorQMP *mon, json_t *msg)
{
    g_autoptr(GString) text = g_string_new(NULL);

    json_writer_append(text, msg, mon->pretty);
    g_string_append(text, "\r\n");
    chardev_write(mon->chr, text->str, text->len);
}

static void monitor_handle_message(void *opaque, json_t *req, Error *err)
{
    MonitorQMP *mon = opaque;
    json_t *reply;

    if (err) {
        reply = json_pack("{s:{s:s,s:o}}", "error",
                          "class", error_class_name(error_get_class(err)),
                          "desc", qapi_encode_str(error_get_pretty(err)));
        error_free(err);
    } else {
        cur_mon = mon;
        reply = qmp_dispatch(req, !mon->commands_enabled, mon->oob);
        cur_mon = NULL;
        json_decref(req);
    }
    monitor_send(mon, reply);
    json_decref(reply);
}

static void monitor_connected(void *opaque)
{
    MonitorQMP *mon = opaque;
    VersionInfo *version;
    json_t *greeting;

    mon->commands_enabled = false;
    mon->oob = false;
    mon->stream = json_stream_new(monitor_handle_message, mon);
    /* The version as query-version reports it, so the two agree. */
    version = qmp_query_version(&error_abort);
    greeting = json_pack("{s:{s:o,s:[s]}}", "QMP",
                         "version", qapi_encode_VersionInfo(version),
                         "capabilities", "oob");
    qapi_free_VersionInfo(version);
    monitor_send(mon, greeting);
    json_decref(greeting);
}

static void monitor_read(void *opaque, const char *buf, size_t len)
{
    MonitorQMP *mon = opaque;

    json_stream_feed(mon->stream, buf, len);
}

static void monitor_disconnected(void *opaque)
{
    MonitorQMP *mon = opaque;

    /* What the client left half-sent goes with it. */
    g_clear_pointer(&mon->stream, json_stream_free);
    mon->commands_enabled = false;
}

static const ChardevHandlers monitor_handlers = {
    .connected = monitor_connected,
    .read = monitor_read,
    .disconnected = monitor_disconnected,
};

static void monitor_free(gpointer p)
{
    MonitorQMP *mon = p;

    chardev_flush(mon->chr);
    json_stream_free(mon->stream);
    g_free(mon);
}

bool monitor_new_from_opts(json_t *opts, Error **errp)
{
    const char *key, *chardev_id = NULL;
    json_t *v;
    bool pretty = false;
    Chardev *chr;
    MonitorQMP *mon;

    json_object_foreach(opts, key, v) {
        const char *val = json_string_value(v);

        if (!strcmp(key, "chardev")) {
            chardev_id = val;
        } else if (!strcmp(key, "mode")) {
            if (strcmp(val, "control")) {
                error_setg(errp, "Only QMP is supported");
                return false;
            }
        } else if (!strcmp(key, "pretty")) {
            if (!keyval_parse_bool(key, val, &pretty, errp)) {
                return false;
            }
        } else if (strcmp(key, "id")) {
            error_setg(errp, "Parameter '%s' is unexpected", key);
            return false;
        }
    }
    if (!chardev_id) {
        error_setg(errp, "Parameter 'chardev' is missing");
        return false;
    }
    chr = chardev_find(chardev_id);
    if (!chr) {
        error_setg(errp, "chardev \"%s\" not found", chardev_id);
        return false;
    }
    mon = g_new0(MonitorQMP, 1);
    mon->chr = chr;
    mon->pretty = pretty;
    if (!chardev_attach(chr, &monitor_handlers, mon, errp)) {
        g_free(mon);
        return false;
    }
    if (!monitors) {
        monitors = g_ptr_array_new_with_free_func(monitor_free);
    }
    g_ptr_array_add(monitors, mon);
    return true;
}

void monitor_cleanup_all(void)
{
    g_clear_pointer(&monitors, g_ptr_array_unref);
}

typedef struct PendingEvent {
    char *name;
    json_t *data;
    gint64 when;
} PendingEvent;

static gboolean event_deliver(gpointer opaque)
{
    PendingEvent *ev = opaque;
    json_t *msg = json_pack("{s:{s:I,s:I},s:s}", "timestamp",
                            "seconds", (json_int_t)(ev->when / G_USEC_PER_SEC),
                            "microseconds", (json_int_t)(ev->when % G_USEC_PER_SEC),
                            "event", ev->name);
    guint i;

    if (ev->data) {
        json_object_set_new(msg, "data", ev->data);
    }
    for (i = 0; monitors && i < monitors->len; i++) {
        MonitorQMP *mon = g_ptr_array_index(monitors, i);

        if (mon->stream && mon->commands_enabled) {
            monitor_send(mon, msg);
        }
    }
    json_decref(msg);
    g_free(ev->name);
    g_free(ev);
    return G_SOURCE_REMOVE;
}

void qapi_event_emit(const char *name, json_t *data)
{
    PendingEvent *ev = g_new(PendingEvent, 1);

    /* Stamped now, sent from the main thread (now, if this is it). */
    ev->name = g_strdup(name);
    ev->data = data;
    ev->when = g_get_real_time();
    main_loop_invoke(event_deliver, ev);
}
