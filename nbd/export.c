/*
 * The NBD server's management side: the listening socket, the clients'
 * lifetimes, the export registry and the QMP commands nbd-server-start,
 * nbd-server-stop, block-export-add, block-export-del and
 * query-block-exports, with QEMU 7.2's checks, order and texts.
 *
 * Ownership (see docs/devel/nbd.md):
 * - Everything here runs on the main thread, except the functions named
 *   _locked and nbd_client_finished(), which client threads call.
 * - An export lives from block-export-add to block-export-del (or
 *   nbd-server-stop), which takes it out of the name table (no new
 *   clients), breaks and reaps its clients and deletes it: its
 *   BlockBackend is detached, its bitmaps are free and
 *   BLOCK_EXPORT_DELETED is sent before the command returns.
 * - A client is created by the accept watch and freed here only, on the
 *   main thread: when its threads end they ask for it (an idle source
 *   carrying the client's id, so a request that arrives after the client
 *   was reaped some other way finds nothing and does nothing), or
 *   nbd-server-stop and shutdown close and reap every client at once.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-unix.h>

#include "block/bitmap-cmds.h"
#include "block/block-backend.h"
#include "block/dirty-bitmap.h"
#include "nbd/nbd-int.h"
#include "nbd/nbd-protocol.h"
#include "nbd/nbd.h"
#include "qapi-commands.h"
#include "qapi-events.h"
#include "util/main-loop.h"
#include "util/sockets.h"
#include "util/id.h"

GMutex nbd_exports_lock;

typedef struct NbdServer {
    int listen_fd;
    guint accept_watch;         /* 0 while max-connections is reached */
    char *unix_path;            /* removed at stop */
    uint32_t max_connections;   /* 0: no limit */
    GHashTable *clients;        /* id -> NbdClient *, not yet reaped */
} NbdServer;

static NbdServer *server;
/* Every export, newest first (query-block-exports order); main thread. */
static GList *exports;
/* Exports clients can find by name, oldest first; under nbd_exports_lock. */
static GList *export_table;
static uint64_t last_client_id;
static uint64_t last_export_serial;

/* ---- for client threads ------------------------------------------------- */

NbdExport *nbd_export_find_locked(const char *name)
{
    GList *l;

    for (l = export_table; l; l = l->next) {
        NbdExport *exp = l->data;

        if (!strcmp(exp->name, name)) {
            return exp;
        }
    }
    return NULL;
}

GList *nbd_export_table_locked(void)
{
    return export_table;
}

void nbd_export_attach_locked(NbdExport *exp, NbdClient *client)
{
    exp->clients = g_list_append(exp->clients, client);
}

static gboolean client_finished_cb(gpointer data);

void nbd_client_finished(NbdClient *client)
{
    /* Not main_loop_invoke(): that may run the callback right here. */
    g_idle_add(client_finished_cb, GSIZE_TO_POINTER(nbd_client_id(client)));
}

/* ---- exports ------------------------------------------------------------ */

/*
 * Whether clients are still connected to exp. One that has hung up is
 * not, though its threads may not have ended yet: a program that
 * disconnects and then deletes the export must not race the server.
 */
static bool export_has_connections(NbdExport *exp)
{
    bool connected = false;
    GList *l;

    g_mutex_lock(&nbd_exports_lock);
    for (l = exp->clients; l && !connected; l = l->next) {
        connected = !nbd_client_hung_up(l->data);
    }
    g_mutex_unlock(&nbd_exports_lock);
    return connected;
}

static NbdExport *export_find_id(const char *id)
{
    GList *l;

    for (l = exports; l; l = l->next) {
        NbdExport *exp = l->data;

        if (!strcmp(exp->id, id)) {
            return exp;
        }
    }
    return NULL;
}

/*
 * Out of the table and without clients: detach from the node, free the
 * bitmaps and tell the user.
 */
static void export_delete(NbdExport *exp)
{
    size_t i;

    g_assert(!exp->clients);
    exports = g_list_remove(exports, exp);
    blk_unref(exp->blk);
    for (i = 0; i < exp->nr_contexts; i++) {
        BdrvDirtyBitmap *bm = exp->contexts[i].opaque;

        if (exp->contexts[i].kind == NBD_META_DIRTY_BITMAP) {
            bdrv_dirty_bitmap_set_busy(bm, false);
            bdrv_unref(bdrv_dirty_bitmap_bs(bm));
        }
    }
    qapi_event_send_block_export_deleted(exp->id);
    for (i = 0; i < exp->nr_contexts; i++) {
        g_free(exp->contexts[i].name);
    }
    g_free(exp->contexts);
    g_free(exp->id);
    g_free(exp->name);
    g_free(exp->description);
    g_free(exp);
}

static void client_reap(NbdClient *client);
static void update_accept_watch(void);

/*
 * block-export-del and nbd-server-stop: hides the export from new
 * clients, breaks the connections of those attached, waits for them and
 * deletes it, so the export (and with it the bitmaps it keeps busy) is
 * gone when the command returns. Client threads never wait
 * for the main thread, so waiting for them here cannot deadlock.
 */
static void export_request_shutdown(NbdExport *exp)
{
    GList *clients, *l;

    g_mutex_lock(&nbd_exports_lock);
    export_table = g_list_remove(export_table, exp);
    clients = g_list_copy(exp->clients);
    for (l = clients; l; l = l->next) {
        nbd_client_close(l->data);
    }
    g_mutex_unlock(&nbd_exports_lock);
    for (l = clients; l; l = l->next) {
        client_reap(l->data);
    }
    if (clients) {
        update_accept_watch();
    }
    g_list_free(clients);
    export_delete(exp);
}

/*
 * The bitmaps block-export-add names, in its order, checked as QEMU's
 * nbd_export_create() checks them; NULL on error. A name may come twice
 * (two contexts), as in QEMU.
 */
static GPtrArray *export_find_bitmaps(BlockDriverState *bs, bool readonly,
                                      BlockDirtyBitmapOrStrList *list,
                                      Error **errp)
{
    g_autoptr(GPtrArray) found = g_ptr_array_new();
    BlockDirtyBitmapOrStrList *l;

    for (l = list; l; l = l->next) {
        BdrvDirtyBitmap *bm = NULL;

        if (l->value->type == QTYPE_QSTRING) {
            const char *name = l->value->u.local;
            BlockDriverState *p;

            for (p = bs; p && !bm; p = bdrv_filter_or_cow_bs(p)) {
                bm = bdrv_find_dirty_bitmap(p, name);
            }
            if (!bm) {
                error_setg(errp, "Bitmap '%s' is not found", name);
                return NULL;
            }
            /*
             * What a read-only export serves does not change; a bitmap
             * still recording writes to its node would. QEMU checks only
             * this form.
             */
            if (readonly && !bdrv_is_read_only(bdrv_dirty_bitmap_bs(bm)) &&
                bdrv_dirty_bitmap_enabled(bm)) {
                error_setg(errp, "Enabled bitmap '%s' incompatible with "
                           "readonly export", name);
                return NULL;
            }
        } else {
            bm = block_dirty_bitmap_lookup(l->value->u.external->node,
                                           l->value->u.external->name, NULL,
                                           errp);
            if (!bm) {
                return NULL;
            }
        }
        if (!bdrv_dirty_bitmap_check(bm, BDRV_BITMAP_ALLOW_RO, errp)) {
            return NULL;
        }
        g_ptr_array_add(found, bm);
    }
    return g_steal_pointer(&found);
}

bool qmp_block_export_add(BlockExportOptions *arg, Error **errp)
{
    const BlockExportOptionsNbd *nbd = &arg->u.nbd;
    bool writable = arg->has_writable && arg->writable;
    const char *name = nbd->name ? nbd->name : arg->node_name;
    bool allocation_depth = nbd->has_allocation_depth && nbd->allocation_depth;
    g_autofree char *owner = NULL;
    g_autoptr(GPtrArray) bitmaps = NULL;
    BlockDriverState *bs;
    BlockBackend *blk;
    NbdExport *exp;
    int64_t size;
    bool name_taken;
    guint i;

    /* The checks of QEMU's blk_exp_add(), then nbd_export_create(). */
    if (!id_wellformed(arg->id)) {
        error_setg(errp, "Invalid block export id");
        return false;
    }
    if (export_find_id(arg->id)) {
        error_setg(errp, "Block export id '%s' is already in use", arg->id);
        return false;
    }
    bs = bdrv_lookup_bs(NULL, arg->node_name, errp);
    if (!bs) {
        return false;
    }
    if (writable && bdrv_is_read_only(bs)) {
        error_setg(errp, "Cannot export read-only node as writable");
        return false;
    }
    g_assert(arg->type == BLOCK_EXPORT_TYPE_NBD);
    if (!server) {
        error_setg(errp, "NBD server not running");
        return false;
    }
    if (strlen(name) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "export name '%s' too long", name);
        return false;
    }
    if (nbd->description && strlen(nbd->description) > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "description '%s' too long", nbd->description);
        return false;
    }
    g_mutex_lock(&nbd_exports_lock);
    name_taken = nbd_export_find_locked(name) != NULL;
    g_mutex_unlock(&nbd_exports_lock);
    if (name_taken) {
        error_setg(errp, "NBD server already has export named '%s'", name);
        return false;
    }

    /* The node may not be resized under the clients' feet. */
    owner = g_strdup_printf("block export '%s'", arg->id);
    blk = blk_new(owner, BLK_PERM_CONSISTENT_READ |
                         (writable ? BLK_PERM_WRITE : 0),
                  BLK_PERM_ALL & ~BLK_PERM_RESIZE);
    if (!blk_insert_bs(blk, bs, errp)) {
        blk_unref(blk);
        return false;
    }
    size = blk_getlength(blk);
    if (size < 0) {
        error_setg_errno(errp, -size,
                         "Failed to determine the NBD export's length");
        blk_unref(blk);
        return false;
    }
    bitmaps = export_find_bitmaps(bs, !writable, nbd->bitmaps, errp);
    if (!bitmaps) {
        blk_unref(blk);
        return false;
    }

    exp = g_new0(NbdExport, 1);
    exp->id = g_strdup(arg->id);
    exp->name = g_strdup(name);
    exp->description = g_strdup(nbd->description);
    exp->serial = ++last_export_serial;
    exp->blk = blk;
    exp->size = size;
    exp->writethrough = arg->has_writethrough && arg->writethrough;
    exp->flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
                 NBD_FLAG_SEND_CACHE;
    /* QEMU promises consistency across connections unless limited to one. */
    if (server->max_connections != 1) {
        exp->flags |= NBD_FLAG_CAN_MULTI_CONN;
    }
    if (writable) {
        exp->flags |= NBD_FLAG_SEND_TRIM | NBD_FLAG_SEND_WRITE_ZEROES |
                      NBD_FLAG_SEND_FAST_ZERO;
    } else {
        exp->flags |= NBD_FLAG_READ_ONLY;
    }
    exp->contexts = g_new0(NbdMetaContext, 2 + bitmaps->len);
    exp->contexts[exp->nr_contexts++] = (NbdMetaContext) {
        .name = g_strdup("base:allocation"),
        .id = NBD_META_ID_BASE_ALLOCATION,
        .kind = NBD_META_BASE_ALLOCATION,
    };
    if (allocation_depth) {
        exp->contexts[exp->nr_contexts++] = (NbdMetaContext) {
            .name = g_strdup("qemu:allocation-depth"),
            .id = NBD_META_ID_ALLOCATION_DEPTH,
            .kind = NBD_META_ALLOCATION_DEPTH,
        };
    }
    /*
     * Each bitmap is busy until the export is deleted, and its node stays
     * (a {node, name} bitmap may live on a node nothing else holds).
     */
    for (i = 0; i < bitmaps->len; i++) {
        BdrvDirtyBitmap *bm = bitmaps->pdata[i];

        exp->contexts[exp->nr_contexts++] = (NbdMetaContext) {
            .name = g_strdup_printf("qemu:dirty-bitmap:%s",
                                    bdrv_dirty_bitmap_name(bm)),
            .id = NBD_META_ID_DIRTY_BITMAP + i,
            .kind = NBD_META_DIRTY_BITMAP,
            .opaque = bm,
        };
        bdrv_dirty_bitmap_set_busy(bm, true);
        bdrv_ref(bdrv_dirty_bitmap_bs(bm));
    }
    exports = g_list_prepend(exports, exp);
    g_mutex_lock(&nbd_exports_lock);
    export_table = g_list_append(export_table, exp);
    g_mutex_unlock(&nbd_exports_lock);
    return true;
}

bool qmp_block_export_del(const char *id, bool has_mode,
                          BlockExportRemoveMode mode, Error **errp)
{
    NbdExport *exp = export_find_id(id);

    if (!exp) {
        error_setg(errp, "Export '%s' is not found", id);
        return false;
    }
    if (!has_mode) {
        mode = BLOCK_EXPORT_REMOVE_MODE_SAFE;
    }
    if (mode == BLOCK_EXPORT_REMOVE_MODE_SAFE && export_has_connections(exp)) {
        /* QEMU's hint, not sent over QMP: Use mode='hard' to force... */
        error_setg(errp, "export '%s' still in use", exp->id);
        return false;
    }
    export_request_shutdown(exp);
    return true;
}

BlockExportInfoList *qmp_query_block_exports(Error **errp)
{
    BlockExportInfoList *head = NULL, **tail = &head;
    GList *l;

    for (l = exports; l; l = l->next) {
        NbdExport *exp = l->data;
        BlockExportInfoList *elem = g_new0(BlockExportInfoList, 1);

        elem->value = g_new0(BlockExportInfo, 1);
        elem->value->id = g_strdup(exp->id);
        elem->value->type = BLOCK_EXPORT_TYPE_NBD;
        elem->value->node_name = g_strdup(bdrv_get_node_name(blk_bs(exp->blk)));
        /* block-export-del returns once the export is gone. */
        elem->value->shutting_down = false;
        *tail = elem;
        tail = &elem->next;
    }
    return head;
}

/* ---- clients ------------------------------------------------------------ */

static gboolean accept_cb(gint fd, GIOCondition cond, gpointer opaque);

/* Listens while there is room for another client. */
static void update_accept_watch(void)
{
    bool room = !server->max_connections ||
                g_hash_table_size(server->clients) < server->max_connections;

    if (room && !server->accept_watch) {
        server->accept_watch = g_unix_fd_add(server->listen_fd, G_IO_IN,
                                             accept_cb, NULL);
    } else if (!room && server->accept_watch) {
        g_source_remove(server->accept_watch);
        server->accept_watch = 0;
    }
}

static gboolean accept_cb(gint fd, GIOCondition cond, gpointer opaque)
{
    NbdClient *client;
    int one = 1;
    int conn;

    conn = socket_accept(server->listen_fd);
    if (conn < 0) {
        return G_SOURCE_CONTINUE;
    }
    /* Replies are whole messages: send them at once (fails on UNIX). */
    setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    client = nbd_client_start(conn, ++last_client_id);
    g_hash_table_insert(server->clients, GSIZE_TO_POINTER(last_client_id),
                        client);
    if (server->max_connections &&
        g_hash_table_size(server->clients) >= server->max_connections) {
        server->accept_watch = 0;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

/* Waits for the client's threads, detaches it and frees it. */
static void client_reap(NbdClient *client)
{
    NbdExport *exp;

    nbd_client_join(client);
    g_hash_table_remove(server->clients,
                        GSIZE_TO_POINTER(nbd_client_id(client)));
    g_mutex_lock(&nbd_exports_lock);
    exp = nbd_client_export_locked(client);
    if (exp) {
        exp->clients = g_list_remove(exp->clients, client);
    }
    g_mutex_unlock(&nbd_exports_lock);
    nbd_client_free(client);
}

static gboolean client_finished_cb(gpointer data)
{
    NbdClient *client = server ? g_hash_table_lookup(server->clients, data)
                               : NULL;

    if (client) {
        client_reap(client);
        update_accept_watch();
    }
    return G_SOURCE_REMOVE;
}

/* ---- the server --------------------------------------------------------- */

bool nbd_server_start(const SocketAddress *addr, uint32_t max_connections,
                      Error **errp)
{
    int fd;

    if (server) {
        error_setg(errp, "NBD server already running");
        return false;
    }
    switch (addr->type) {
    case SOCKET_ADDRESS_TYPE_UNIX:
        fd = socket_listen_unix(addr->u.q_unix.path, errp);
        break;
    case SOCKET_ADDRESS_TYPE_INET:
        fd = socket_listen_inet(addr->u.inet.host, addr->u.inet.port, errp);
        break;
    default:
        g_assert_not_reached();
    }
    if (fd < 0) {
        return false;
    }
    server = g_new0(NbdServer, 1);
    server->listen_fd = fd;
    server->max_connections = max_connections;
    if (addr->type == SOCKET_ADDRESS_TYPE_UNIX) {
        server->unix_path = g_strdup(addr->u.q_unix.path);
    }
    server->clients = g_hash_table_new(NULL, NULL);
    update_accept_watch();
    return true;
}

bool qmp_nbd_server_start(SocketAddressLegacy *addr, bool has_max_connections,
                          uint32_t max_connections, Error **errp)
{
    SocketAddress flat = { .type = addr->type };

    switch (addr->type) {
    case SOCKET_ADDRESS_TYPE_UNIX:
        flat.u.q_unix = *addr->u.q_unix.data;
        break;
    case SOCKET_ADDRESS_TYPE_INET:
        flat.u.inet = *addr->u.inet.data;
        break;
    default:
        g_assert_not_reached();
    }
    return nbd_server_start(&flat, has_max_connections ? max_connections : 0,
                            errp);
}

void nbd_server_shutdown(void)
{
    GHashTableIter iter;
    gpointer client;
    GList *l, *next;

    if (!server) {
        return;
    }
    /* Every export goes; then every client, attached or not, is reaped. */
    for (l = exports; l; l = next) {
        NbdExport *exp = l->data;

        next = l->next;
        export_request_shutdown(exp);
    }
    g_hash_table_iter_init(&iter, server->clients);
    while (g_hash_table_iter_next(&iter, NULL, &client)) {
        nbd_client_close(client);
    }
    while (g_hash_table_size(server->clients)) {
        g_hash_table_iter_init(&iter, server->clients);
        g_hash_table_iter_next(&iter, NULL, &client);
        client_reap(client);
    }
    g_assert(!exports);

    if (server->accept_watch) {
        g_source_remove(server->accept_watch);
    }
    close(server->listen_fd);
    if (server->unix_path) {
        unlink(server->unix_path);
    }
    g_hash_table_destroy(server->clients);
    g_free(server->unix_path);
    g_clear_pointer(&server, g_free);
}

bool qmp_nbd_server_stop(Error **errp)
{
    if (!server) {
        error_setg(errp, "NBD server not running");
        return false;
    }
    nbd_server_shutdown();
    return true;
}
