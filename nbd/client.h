/*
 * One NBD client's state, shared by the files that serve it:
 *   wire.c       blocking socket I/O
 *   negotiate.c  the handshake and options (the reader thread)
 *   server.c     transmission: the reader, the workers, the replies; and
 *                the client's life cycle
 * Nothing outside these files includes this.
 */
#ifndef NBD_CLIENT_H
#define NBD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <glib.h>

#include "nbd/nbd-int.h"
#include "qapi/error.h"

typedef struct NbdBuffer {
    void *data;
    size_t size;
} NbdBuffer;

struct NbdClient {
    uint64_t id;
    int fd;                     /* closed by nbd_client_free() only */
    GThread *thread;            /* the reader */

    /* Input buffered by nbd_read_full(): the reader thread only. */
    uint8_t *inbuf;             /* NBD_INBUF_SIZE bytes */
    size_t in_start, in_end;    /* the unread part */

    /* Negotiation: the reader thread only. */
    bool structured;            /* NBD_OPT_STRUCTURED_REPLY acknowledged */
    bool no_zeroes;             /* NBD_FLAG_C_NO_ZEROES */
    uint32_t opt;               /* the option being handled */
    uint32_t optlen;            /* its data not yet read */
    uint64_t meta_serial;       /* export SET_META_CONTEXT chose on, 0: none */
    bool *meta_selected;        /* indexed like that export's contexts */
    size_t meta_count;          /* contexts selected */

    /* Set before transmission starts; read-only afterwards. */
    NbdExport *exp;             /* attached: holds a reference */
    uint16_t tx_flags;          /* the export's flags as this client saw them */

    /* Replies: one writer at a time. */
    GMutex send_lock;

    /* Requests, from the reader to the workers. */
    GMutex lock;
    GCond work_cond;            /* a worker: the queue has work, or quitting */
    GCond room_cond;            /* the reader: in_flight dropped */
    GQueue queue;               /* NbdRequest * not yet taken */
    unsigned in_flight;         /* queued or being handled */
    unsigned idle;              /* workers waiting for work */
    bool reader_waiting;        /* the reader waits for room */
    bool quitting;
    GArray *pool;               /* NbdBuffer: request buffers to reuse */
    GPtrArray *workers;         /* GThread *, joined by the reader */
};

/* ---- wire.c: blocking I/O on the client's socket ---------------------- */

#define NBD_INBUF_SIZE (128 * 1024)

/* 1: read; 0: the peer closed before the first byte; -1: failed (errno). */
int nbd_read_full(NbdClient *c, void *buf, size_t len);
bool nbd_read_exact(NbdClient *c, void *buf, size_t len, Error **errp);
/* Reads and throws away len bytes. */
bool nbd_drop_bytes(NbdClient *c, uint64_t len, Error **errp);
/* Writes the whole iovec (modified as it goes); false on failure (errno). */
bool nbd_send_iov(NbdClient *c, struct iovec *iov, int niov);
/*
 * Places payload[] after a header slot: iov[0] is left for the caller,
 * whose header carries the returned payload length. iov has room for
 * NBD_MAX_PAYLOAD_IOV + 1 entries.
 */
#define NBD_MAX_PAYLOAD_IOV 3
uint32_t nbd_iov_after_header(struct iovec *iov, const struct iovec *payload,
                              int npayload);
bool nbd_send_buf(NbdClient *c, const void *buf, size_t len, Error **errp);

/* ---- negotiate.c --------------------------------------------------------- */

/*
 * The handshake, up to the export the client chose (c->exp, attached).
 * Returns 0 to go on to transmission, -1 to drop the client (errp set
 * unless it simply left or sent NBD_OPT_ABORT).
 */
int nbd_negotiate(NbdClient *c, Error **errp);

#endif
