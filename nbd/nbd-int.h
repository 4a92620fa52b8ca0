/*
 * What the NBD server's two halves share:
 *   export.c  the export registry, the listening socket, client lifetimes
 *             and the QMP handlers (main thread);
 *   server.c  one client's protocol: handshake, options, transmission
 *             (the client's own threads).
 * Nothing outside nbd/ includes this; the daemon sees include/nbd/nbd.h.
 *
 * Locking: nbd_exports_lock guards the table of export names, each
 * export's client list and reference count. It is never held across
 * socket I/O or block I/O. An export's other fields are fixed once it is
 * in the table, so a client holding a reference reads them freely.
 */
#ifndef NBD_NBD_INT_H
#define NBD_NBD_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <glib.h>

#include "block/block-backend.h"

typedef struct NbdClient NbdClient;

/*
 * Meta contexts an export offers, in QEMU's numbering and order:
 * base:allocation is 0, qemu:allocation-depth 1 (with allocation-depth),
 * qemu:dirty-bitmap:<name> 2 + i for the i-th bitmap of block-export-add.
 * Each kind has an extent function in server.c.
 */
typedef enum NbdMetaKind {
    NBD_META_BASE_ALLOCATION,
    NBD_META_ALLOCATION_DEPTH,
    NBD_META_DIRTY_BITMAP,
} NbdMetaKind;

enum {
    NBD_META_ID_BASE_ALLOCATION = 0,
    NBD_META_ID_ALLOCATION_DEPTH = 1,
    NBD_META_ID_DIRTY_BITMAP = 2,
};

typedef struct NbdMetaContext {
    char *name;             /* "base:allocation" */
    uint32_t id;            /* the context id sent with block status */
    NbdMetaKind kind;
    void *opaque;           /* NBD_META_DIRTY_BITMAP: the bitmap (busy, and
                               its node referenced, by the export) */
} NbdMetaContext;

typedef struct NbdExport {
    /* Fixed at creation. */
    char *id;
    char *name;             /* the name clients ask for */
    char *description;      /* NULL: none */
    uint64_t serial;        /* unique for the process's lifetime */
    BlockBackend *blk;
    uint64_t size;
    uint16_t flags;         /* NBD_FLAG_*, without the per-client SEND_DF */
    bool writethrough;      /* every write and discard is made stable */
    NbdMetaContext *contexts;
    size_t nr_contexts;

    /* Under nbd_exports_lock. */
    GList *clients;         /* NbdClient *, attached by GO/EXPORT_NAME */
} NbdExport;

extern GMutex nbd_exports_lock;

/* ---- export.c, for client threads --------------------------------------- */

/* Under nbd_exports_lock: the export clients know as name, or NULL. */
NbdExport *nbd_export_find_locked(const char *name);
/* The exports in the order they were added (for NBD_OPT_LIST). */
GList *nbd_export_table_locked(void);
/*
 * Under nbd_exports_lock, in the same section as the lookup that found
 * exp: attaches client to exp, which then lives until the main thread has
 * reaped the client.
 */
void nbd_export_attach_locked(NbdExport *exp, NbdClient *client);
/* Called by a client's thread as its very last act: asks to be reaped. */
void nbd_client_finished(NbdClient *client);

/* ---- server.c, for export.c (main thread) ------------------------------- */

/* Starts serving the connected socket fd on a new thread; owns fd. */
NbdClient *nbd_client_start(int fd, uint64_t id);
uint64_t nbd_client_id(const NbdClient *client);
/* The export it is attached to, or NULL (under nbd_exports_lock). */
NbdExport *nbd_client_export_locked(const NbdClient *client);
/*
 * Breaks the connection: the client's threads notice, finish the
 * requests they are doing (their replies are lost) and end. Any thread,
 * until nbd_client_free().
 */
void nbd_client_close(NbdClient *client);
/*
 * Whether the connection is over though the client's threads may not
 * have noticed yet: the peer hung up, or it was broken here. Any thread,
 * until nbd_client_free().
 */
bool nbd_client_hung_up(const NbdClient *client);
/* Waits for the client's threads to end (after close or on their own). */
void nbd_client_join(NbdClient *client);
/* Frees a joined client (not its export). */
void nbd_client_free(NbdClient *client);

#endif
