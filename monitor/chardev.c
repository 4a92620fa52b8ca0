/* Character devices for monitors; see include/monitor/chardev.h. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <glib-unix.h>

#include "monitor/chardev.h"
#include "util/keyval.h"
#include "util/sockets.h"
#include "util/id.h"

typedef enum ChardevKind {
    CHARDEV_SOCKET_SERVER,
    CHARDEV_SOCKET_CLIENT,
    CHARDEV_STDIO,
} ChardevKind;

struct Chardev {
    char *id;
    ChardevKind kind;
    char *unix_path;        /* removed at close if we created it */
    int listen_fd;
    int in_fd, out_fd;      /* the connection; -1 when none */
    guint listen_watch, in_watch, out_watch;
    GByteArray *outbuf;
    const ChardevHandlers *handlers;
    void *opaque;
};

static GHashTable *chardevs;   /* id -> Chardev, owned */

static void chardev_disconnect(Chardev *chr);

static gboolean chardev_can_write(gint fd, GIOCondition cond, gpointer opaque);

static void chardev_try_write(Chardev *chr)
{
    while (chr->outbuf->len) {
        ssize_t n = write(chr->out_fd, chr->outbuf->data, chr->outbuf->len);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN) {
                break;
            }
            /* The peer went away; the read side notices and cleans up. */
            g_byte_array_set_size(chr->outbuf, 0);
            return;
        }
        g_byte_array_remove_range(chr->outbuf, 0, n);
    }
    if (chr->outbuf->len && !chr->out_watch) {
        chr->out_watch = g_unix_fd_add(chr->out_fd, G_IO_OUT, chardev_can_write, chr);
    }
}

static gboolean chardev_can_write(gint fd, GIOCondition cond, gpointer opaque)
{
    Chardev *chr = opaque;

    chr->out_watch = 0;
    chardev_try_write(chr);
    return G_SOURCE_REMOVE;
}

static gboolean chardev_readable(gint fd, GIOCondition cond, gpointer opaque)
{
    Chardev *chr = opaque;
    char buf[65536];
    ssize_t n;

    n = read(chr->in_fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
        return G_SOURCE_CONTINUE;
    }
    if (n <= 0) {
        chr->in_watch = 0;
        chardev_disconnect(chr);
        return G_SOURCE_REMOVE;
    }
    if (chr->handlers) {
        chr->handlers->read(chr->opaque, buf, n);
    }
    return G_SOURCE_CONTINUE;
}

static void chardev_start_reading(Chardev *chr)
{
    chr->in_watch = g_unix_fd_add(chr->in_fd, G_IO_IN | G_IO_HUP | G_IO_ERR,
                                  chardev_readable, chr);
    if (chr->handlers) {
        chr->handlers->connected(chr->opaque);
    }
}

static gboolean chardev_accept(gint fd, GIOCondition cond, gpointer opaque);

static void chardev_listen_again(Chardev *chr)
{
    chr->listen_watch = g_unix_fd_add(chr->listen_fd, G_IO_IN, chardev_accept, chr);
}

static void chardev_connected_fd(Chardev *chr, int fd)
{
    chr->in_fd = chr->out_fd = fd;
    chardev_start_reading(chr);
}

static gboolean chardev_accept(gint fd, GIOCondition cond, gpointer opaque)
{
    Chardev *chr = opaque;
    int conn = socket_accept(chr->listen_fd);

    if (conn < 0) {
        return G_SOURCE_CONTINUE;
    }
    /* One connection at a time: stop listening until this one ends. */
    chr->listen_watch = 0;
    chardev_connected_fd(chr, conn);
    return G_SOURCE_REMOVE;
}

static void chardev_disconnect(Chardev *chr)
{
    if (chr->in_watch) {
        g_source_remove(chr->in_watch);
        chr->in_watch = 0;
    }
    if (chr->out_watch) {
        g_source_remove(chr->out_watch);
        chr->out_watch = 0;
    }
    g_byte_array_set_size(chr->outbuf, 0);
    if (chr->in_fd >= 0 && chr->kind != CHARDEV_STDIO) {
        close(chr->in_fd);
    }
    chr->in_fd = chr->out_fd = -1;
    if (chr->handlers) {
        chr->handlers->disconnected(chr->opaque);
    }
    if (chr->kind == CHARDEV_SOCKET_SERVER && !chr->listen_watch) {
        chardev_listen_again(chr);
    }
}

static void chardev_free(gpointer p)
{
    Chardev *chr = p;

    if (chr->listen_watch) {
        g_source_remove(chr->listen_watch);
    }
    if (chr->in_watch) {
        g_source_remove(chr->in_watch);
    }
    if (chr->out_watch) {
        g_source_remove(chr->out_watch);
    }
    if (chr->in_fd >= 0 && chr->kind != CHARDEV_STDIO) {
        close(chr->in_fd);
    }
    if (chr->listen_fd >= 0) {
        close(chr->listen_fd);
        if (chr->unix_path) {
            unlink(chr->unix_path);
        }
    }
    g_byte_array_unref(chr->outbuf);
    g_free(chr->unix_path);
    g_free(chr->id);
    g_free(chr);
}

/* Takes a string option out of opts; NULL if absent. */
static const char *take_opt(json_t *opts, const char *key)
{
    json_t *v = json_object_get(opts, key);

    return v ? json_string_value(v) : NULL;
}

static bool opt_bool(json_t *opts, const char *key, bool def, bool *out,
                     Error **errp)
{
    const char *s = take_opt(opts, key);

    *out = def;
    return !s || qemu_opts_flat_parse_bool(key, s, out, errp);
}

/* Options QEMU knows (the parser checked that) but blkd does not implement. */
static bool check_supported(json_t *opts, const char *const *supported,
                            Error **errp)
{
    const char *key;
    json_t *v;

    json_object_foreach(opts, key, v) {
        if (!g_strv_contains(supported, key)) {
            error_setg(errp, "Parameter '%s' is not supported by blkd", key);
            return false;
        }
    }
    return true;
}

static bool chardev_open_socket(Chardev *chr, json_t *opts, Error **errp)
{
    const char *path = take_opt(opts, "path");
    const char *host = take_opt(opts, "host");
    const char *port = take_opt(opts, "port");
    bool server, wait;
    int fd;

    if (!opt_bool(opts, "server", false, &server, errp) ||
        !opt_bool(opts, "wait", true, &wait, errp)) {
        return false;
    }
    if (!path) {
        if (!host && !port) {
            /* QEMU falls back to an fd= socket and says so. */
            error_setg(errp, "Unable to parse FD number ");
            return false;
        }
        if (!port) {
            error_setg(errp, "chardev: socket: no port given");
            return false;
        }
    }
    if (!server) {
        chr->kind = CHARDEV_SOCKET_CLIENT;
        fd = path ? socket_connect_unix(path, errp)
                  : socket_connect_inet(host, port, errp);
        if (fd < 0) {
            return false;
        }
        chr->in_fd = chr->out_fd = fd;
        return true;
    }
    chr->kind = CHARDEV_SOCKET_SERVER;
    fd = path ? socket_listen_unix(path, errp) : socket_listen_inet(host, port, errp);
    if (fd < 0) {
        return false;
    }
    chr->listen_fd = fd;
    chr->unix_path = g_strdup(path);
    if (wait) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int conn = -1;

        g_printerr("blkd: waiting for connection on: %s\n", path ? path : port);
        while (conn < 0) {
            if (poll(&pfd, 1, -1) < 0 && errno != EINTR) {
                error_setg_errno(errp, errno, "Failed to wait for a connection");
                return false;
            }
            conn = socket_accept(fd);
        }
        chr->in_fd = chr->out_fd = conn;
    }
    return true;
}

Chardev *chardev_new(json_t *opts, Error **errp)
{
    static const char *const socket_keys[] = {
        "backend", "id", "path", "host", "port", "server", "wait", NULL
    };
    static const char *const stdio_keys[] = { "backend", "id", "signal", NULL };
    /* QEMU 7.2's backends, so that an unsupported one is told apart. */
    static const char *const qemu_backends[] = {
        "pty", "udp", "memory", "file", "socket", "stdio", "ringbuf", "null",
        "parallel", "pipe", "mux", "serial", NULL
    };
    const char *backend = take_opt(opts, "backend");
    const char *id = take_opt(opts, "id");
    Chardev *chr;

    if (!backend) {
        error_setg(errp, "chardev: \"%s\" missing backend", id ? id : "");
        return NULL;
    }
    if (strcmp(backend, "socket") && strcmp(backend, "stdio")) {
        if (g_strv_contains(qemu_backends, backend)) {
            error_setg(errp, "Chardev backend '%s' is not supported by blkd",
                       backend);
        } else {
            error_setg(errp, "'%s' is not a valid char driver name", backend);
        }
        return NULL;
    }
    if (!check_supported(opts, strcmp(backend, "socket") ? stdio_keys : socket_keys,
                         errp)) {
        return NULL;
    }
    if (!id) {
        error_setg(errp, "chardev: no id specified");
        return NULL;
    }
    if (!id_wellformed(id)) {
        error_setg(errp, "Parameter 'id' expects an identifier");
        return NULL;
    }
    if (chardevs && g_hash_table_contains(chardevs, id)) {
        /* QEMU's text: chardevs are children of a QOM container there. */
        error_setg(errp, "attempt to add duplicate property '%s' to object "
                   "(type 'container')", id);
        return NULL;
    }

    chr = g_new0(Chardev, 1);
    chr->id = g_strdup(id);
    chr->listen_fd = chr->in_fd = chr->out_fd = -1;
    chr->outbuf = g_byte_array_new();
    if (!strcmp(backend, "stdio")) {
        chr->kind = CHARDEV_STDIO;
        chr->in_fd = STDIN_FILENO;
        chr->out_fd = STDOUT_FILENO;
    } else if (!chardev_open_socket(chr, opts, errp)) {
        chardev_free(chr);
        return NULL;
    }
    if (!chardevs) {
        chardevs = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, chardev_free);
    }
    g_hash_table_insert(chardevs, chr->id, chr);
    return chr;
}

Chardev *chardev_find(const char *id)
{
    return chardevs ? g_hash_table_lookup(chardevs, id) : NULL;
}

bool chardev_attach(Chardev *chr, const ChardevHandlers *handlers,
                    void *opaque, Error **errp)
{
    if (chr->handlers) {
        error_setg(errp, "Device '%s' is in use", chr->id);
        return false;
    }
    chr->handlers = handlers;
    chr->opaque = opaque;
    if (chr->in_fd >= 0) {
        chardev_start_reading(chr);
    } else if (chr->kind == CHARDEV_SOCKET_SERVER) {
        chardev_listen_again(chr);
    }
    return true;
}

void chardev_write(Chardev *chr, const char *buf, size_t len)
{
    if (chr->out_fd < 0) {
        return;
    }
    g_byte_array_append(chr->outbuf, (const guint8 *)buf, len);
    if (!chr->out_watch) {
        chardev_try_write(chr);
    }
}

void chardev_flush(Chardev *chr)
{
    gint64 deadline = g_get_monotonic_time() + 5 * G_USEC_PER_SEC;

    while (chr->outbuf->len && chr->out_fd >= 0 &&
           g_get_monotonic_time() < deadline) {
        struct pollfd pfd = { .fd = chr->out_fd, .events = POLLOUT };

        if (poll(&pfd, 1, 100) > 0) {
            size_t before = chr->outbuf->len;

            chardev_try_write(chr);
            if (chr->outbuf->len == before) {
                break;
            }
        }
    }
}

void chardev_close_all(void)
{
    if (chardevs) {
        GHashTableIter it;
        gpointer value;

        g_hash_table_iter_init(&it, chardevs);
        while (g_hash_table_iter_next(&it, NULL, &value)) {
            chardev_flush(value);
        }
        g_clear_pointer(&chardevs, g_hash_table_destroy);
    }
}
