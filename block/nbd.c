/*
 * The "nbd" protocol driver: a disk behind an NBD server (another blkd,
 * qemu-nbd, nbdkit), so a backup can be pushed to another host.
 *
 * One connection per node. Requests come from many threads: each takes a
 * slot (at most NBD_MAX_REQUESTS in flight), sends its request under the
 * send lock, and waits for its reply. A reader thread reads the replies
 * and hands each to the request with that handle. If the server goes
 * away, the reader marks the connection dead and fails every request
 * waiting and every later one with -EIO: nothing waits forever on a
 * server that is gone. Simple replies only: the driver reads what it asks
 * for and reports every range as data.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "block/block_int.h"
#include "nbd/nbd-protocol.h"
#include "util/sockets.h"

#define HANDSHAKE_TIMEOUT_S 30

typedef struct NbdRequest {
    bool busy;          /* slot taken by a request */
    bool done;
    int ret;
    void *buf;          /* where a READ's data goes */
    uint32_t len;
} NbdRequest;

typedef struct BDRVNBDState {
    int fd;
    char *export;
    uint64_t size;
    uint16_t flags;             /* transmission flags */
    GThread *reader;
    GMutex send_lock;           /* one request on the wire at a time */
    GMutex lock;                /* slots, dead */
    GCond cond;
    NbdRequest slots[NBD_MAX_REQUESTS];
    bool dead;
} BDRVNBDState;

/* ---- socket helpers ------------------------------------------------------ */

static int read_full(int fd, void *buf, size_t len)
{
    char *p = buf;

    while (len) {
        ssize_t n = read(fd, p, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n == 0 ? -ECONNRESET : -errno;
        }
        p += n;
        len -= n;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        p += n;
        len -= n;
    }
    return 0;
}

static int errno_from_wire(uint32_t err)
{
    switch (err) {
    case NBD_EPERM: return EPERM;
    case NBD_EIO: return EIO;
    case NBD_ENOMEM: return ENOMEM;
    case NBD_ENOSPC: return ENOSPC;
    case NBD_EOVERFLOW: return EOVERFLOW;
    case NBD_ENOTSUP: return ENOTSUP;
    case NBD_ESHUTDOWN: return ESHUTDOWN;
    default: return EINVAL;
    }
}

/* ---- handshake ----------------------------------------------------------- */

static int send_option(int fd, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t hdr[NBD_OPTION_HEADER_SIZE];
    int ret;

    nbd_st64(hdr, NBD_OPTS_MAGIC);
    nbd_st32(hdr + 8, opt);
    nbd_st32(hdr + 12, len);
    ret = write_full(fd, hdr, sizeof(hdr));
    return ret < 0 || !len ? ret : write_full(fd, data, len);
}

/* NBD_OPT_GO: export size and flags, and the block size constraints. */
static bool negotiate_go(BDRVNBDState *s, BlockDriverState *bs, Error **errp)
{
    size_t namelen = strlen(s->export);
    g_autofree uint8_t *req = g_malloc(4 + namelen + 2 + 2);
    uint32_t min_block = 1, max_block = NBD_MAX_BUFFER_SIZE;
    bool have_export = false;

    nbd_st32(req, namelen);
    memcpy(req + 4, s->export, namelen);
    nbd_st16(req + 4 + namelen, 1);
    nbd_st16(req + 4 + namelen + 2, NBD_INFO_BLOCK_SIZE);
    if (send_option(s->fd, NBD_OPT_GO, req, 4 + namelen + 4) < 0) {
        error_setg(errp, "Failed to send NBD_OPT_GO");
        return false;
    }
    for (;;) {
        uint8_t hdr[NBD_OPTION_REPLY_SIZE];
        g_autofree uint8_t *data = NULL;
        uint32_t type, len;

        if (read_full(s->fd, hdr, sizeof(hdr)) < 0 ||
            nbd_ld64(hdr) != NBD_REP_MAGIC || nbd_ld32(hdr + 8) != NBD_OPT_GO) {
            error_setg(errp, "Unexpected reply to NBD_OPT_GO");
            return false;
        }
        type = nbd_ld32(hdr + 12);
        len = nbd_ld32(hdr + 16);
        if (len > NBD_MAX_BUFFER_SIZE) {
            error_setg(errp, "NBD option reply too long");
            return false;
        }
        data = g_malloc(len + 1);
        if (len && read_full(s->fd, data, len) < 0) {
            error_setg(errp, "Failed to read NBD option reply");
            return false;
        }
        data[len] = 0;
        if (type == NBD_REP_ACK) {
            break;
        }
        if (type & NBD_REP_ERR(0)) {
            if (type == NBD_REP_ERR_UNKNOWN) {
                error_setg(errp, "Requested export not available");
            } else {
                error_setg(errp, "Server refused export '%s' (error 0x%x)%s%s",
                           s->export, type, len ? ": " : "", len ? (char *)data : "");
            }
            return false;
        }
        if (type != NBD_REP_INFO || len < 2) {
            continue;
        }
        if (nbd_ld16(data) == NBD_INFO_EXPORT && len >= 12) {
            s->size = nbd_ld64(data + 2);
            s->flags = nbd_ld16(data + 10);
            have_export = true;
        } else if (nbd_ld16(data) == NBD_INFO_BLOCK_SIZE && len >= 14) {
            min_block = nbd_ld32(data + 2);
            max_block = nbd_ld32(data + 10);
        }
    }
    if (!have_export) {
        error_setg(errp, "Server did not report the export's size");
        return false;
    }
    if (!min_block || (min_block & (min_block - 1)) || min_block > 65536) {
        error_setg(errp, "Server's minimum block size %u is not usable", min_block);
        return false;
    }
    bs->bl.request_alignment = min_block;
    bs->bl.max_transfer = MIN(max_block, NBD_MAX_BUFFER_SIZE) & ~(uint64_t)(min_block - 1);
    return true;
}

static bool handshake(BDRVNBDState *s, BlockDriverState *bs, Error **errp)
{
    uint8_t greeting[NBD_GREETING_SIZE], cflags[4];
    uint16_t hflags;

    if (read_full(s->fd, greeting, sizeof(greeting)) < 0) {
        error_setg(errp, "Failed to read the NBD server's greeting");
        return false;
    }
    hflags = nbd_ld16(greeting + 16);
    if (nbd_ld64(greeting) != NBD_INIT_MAGIC || nbd_ld64(greeting + 8) != NBD_OPTS_MAGIC ||
        !(hflags & NBD_FLAG_FIXED_NEWSTYLE)) {
        error_setg(errp, "Server does not speak the fixed newstyle NBD protocol");
        return false;
    }
    nbd_st32(cflags, NBD_FLAG_C_FIXED_NEWSTYLE |
                     (hflags & NBD_FLAG_NO_ZEROES ? NBD_FLAG_C_NO_ZEROES : 0));
    if (write_full(s->fd, cflags, sizeof(cflags)) < 0) {
        error_setg(errp, "Failed to send NBD client flags");
        return false;
    }
    return negotiate_go(s, bs, errp);
}

/* ---- transmission -------------------------------------------------------- */

static void fail_all_locked(BDRVNBDState *s)
{
    s->dead = true;
    g_cond_broadcast(&s->cond);
}

static gpointer reader_thread(gpointer opaque)
{
    BDRVNBDState *s = opaque;

    for (;;) {
        uint8_t reply[NBD_SIMPLE_REPLY_SIZE];
        NbdRequest *r;
        uint64_t handle;
        int ret = read_full(s->fd, reply, sizeof(reply));

        if (ret == 0 && nbd_ld32(reply) != NBD_SIMPLE_REPLY_MAGIC) {
            ret = -EPROTO;
        }
        handle = ret == 0 ? nbd_ld64(reply + 8) : 0;
        if (ret == 0 && (handle >= NBD_MAX_REQUESTS || !s->slots[handle].busy)) {
            ret = -EPROTO;
        }
        if (ret < 0) {
            g_mutex_lock(&s->lock);
            fail_all_locked(s);
            g_mutex_unlock(&s->lock);
            return NULL;
        }
        r = &s->slots[handle];
        r->ret = -errno_from_wire(nbd_ld32(reply + 4));
        if (nbd_ld32(reply + 4) == 0) {
            r->ret = 0;
            if (r->buf && read_full(s->fd, r->buf, r->len) < 0) {
                g_mutex_lock(&s->lock);
                fail_all_locked(s);
                g_mutex_unlock(&s->lock);
                return NULL;
            }
        }
        g_mutex_lock(&s->lock);
        r->done = true;
        g_cond_broadcast(&s->cond);
        g_mutex_unlock(&s->lock);
    }
}

/* Sends one request and waits for its reply: 0 or -errno. */
static int nbd_request(BDRVNBDState *s, uint16_t type, uint16_t flags,
                       uint64_t offset, uint32_t len, void *buf,
                       const void *payload)
{
    uint8_t req[NBD_REQUEST_SIZE];
    NbdRequest *r = NULL;
    int i, ret;

    g_mutex_lock(&s->lock);
    while (!s->dead) {
        for (i = 0; i < NBD_MAX_REQUESTS && s->slots[i].busy; i++) {
        }
        if (i < NBD_MAX_REQUESTS) {
            r = &s->slots[i];
            break;
        }
        g_cond_wait(&s->cond, &s->lock);
    }
    if (s->dead) {
        g_mutex_unlock(&s->lock);
        return -EIO;
    }
    *r = (NbdRequest) { .busy = true, .buf = buf, .len = len };
    g_mutex_unlock(&s->lock);

    nbd_st32(req, NBD_REQUEST_MAGIC);
    nbd_st16(req + 4, flags);
    nbd_st16(req + 6, type);
    nbd_st64(req + 8, i);
    nbd_st64(req + 16, offset);
    nbd_st32(req + 24, len);
    g_mutex_lock(&s->send_lock);
    ret = write_full(s->fd, req, sizeof(req));
    if (ret == 0 && payload) {
        ret = write_full(s->fd, payload, len);
    }
    g_mutex_unlock(&s->send_lock);

    g_mutex_lock(&s->lock);
    if (ret < 0) {
        fail_all_locked(s);
    }
    while (!r->done && !s->dead) {
        g_cond_wait(&s->cond, &s->lock);
    }
    ret = r->done ? r->ret : -EIO;
    r->busy = false;
    g_cond_broadcast(&s->cond);
    g_mutex_unlock(&s->lock);
    return ret;
}

/* NBD_CMD_DISC: the end of transmission, best effort. */
static void send_disconnect(BDRVNBDState *s)
{
    uint8_t req[NBD_REQUEST_SIZE] = { 0 };

    nbd_st32(req, NBD_REQUEST_MAGIC);
    nbd_st16(req + 6, NBD_CMD_DISC);
    write_full(s->fd, req, sizeof(req));
}

/* ---- driver -------------------------------------------------------------- */

static char *describe(const SocketAddress *addr, const char *export)
{
    if (addr->type == SOCKET_ADDRESS_TYPE_UNIX) {
        return g_strdup_printf("nbd+unix:///%s?socket=%s", export,
                               addr->u.q_unix.path);
    }
    return g_strdup_printf("nbd://%s:%s/%s", addr->u.inet.host,
                           addr->u.inet.port, export);
}

static int nbd_open(BlockDriverState *bs, const BlockdevOptions *opts,
                    Error **errp)
{
    const BlockdevOptionsNbd *o = &opts->u.nbd;
    BDRVNBDState *s = bs->opaque;
    struct timeval tv = { .tv_sec = HANDSHAKE_TIMEOUT_S };

    s->export = g_strdup(o->export ? o->export : "");
    s->fd = o->server->type == SOCKET_ADDRESS_TYPE_UNIX ?
            socket_connect_unix(o->server->u.q_unix.path, errp) :
            socket_connect_inet(o->server->u.inet.host, o->server->u.inet.port, errp);
    if (s->fd < 0) {
        g_free(s->export);
        return -EIO;
    }
    /* Blocking I/O from here on; a silent server does not hang the open. */
    fcntl(s->fd, F_SETFL, fcntl(s->fd, F_GETFL) & ~O_NONBLOCK);
    setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (!handshake(s, bs, errp)) {
        /* Say goodbye, so the server does not log a broken negotiation. */
        send_option(s->fd, NBD_OPT_ABORT, NULL, 0);
        close(s->fd);
        g_free(s->export);
        return -EIO;
    }
    tv.tv_sec = 0;
    setsockopt(s->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if ((s->flags & NBD_FLAG_READ_ONLY) && !bs->read_only) {
        error_setg(errp, "An export read-only on the server cannot be opened "
                   "read-write: give read-only=on");
        send_disconnect(s);
        close(s->fd);
        g_free(s->export);
        return -EACCES;
    }
    bs->filename = describe(o->server, s->export);
    g_mutex_init(&s->send_lock);
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
    s->reader = g_thread_new("blkd-nbd-client", reader_thread, s);
    return 0;
}

static void nbd_close(BlockDriverState *bs)
{
    BDRVNBDState *s = bs->opaque;

    g_mutex_lock(&s->send_lock);
    send_disconnect(s);
    g_mutex_unlock(&s->send_lock);
    shutdown(s->fd, SHUT_RDWR);
    g_thread_join(s->reader);
    close(s->fd);
    g_mutex_clear(&s->send_lock);
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->cond);
    g_free(s->export);
}

static int64_t nbd_getlength(BlockDriverState *bs)
{
    return ((BDRVNBDState *)bs->opaque)->size;
}

static int nbd_preadv(BlockDriverState *bs, int64_t offset, int64_t bytes,
                      void *buf, BdrvRequestFlags flags)
{
    BDRVNBDState *s = bs->opaque;
    /* The node ends on a whole sector: past the export's end reads zeroes. */
    int64_t n = MIN(bytes, MAX((int64_t)s->size - offset, 0));

    memset((uint8_t *)buf + n, 0, bytes - n);
    return n ? nbd_request(s, NBD_CMD_READ, 0, offset, n, buf, NULL) : 0;
}

static int nbd_pwritev(BlockDriverState *bs, int64_t offset, int64_t bytes,
                       const void *buf, BdrvRequestFlags flags)
{
    BDRVNBDState *s = bs->opaque;
    uint16_t f = (flags & BDRV_REQ_FUA) && (s->flags & NBD_FLAG_SEND_FUA) ?
                 NBD_CMD_FLAG_FUA : 0;
    int ret = nbd_request(s, NBD_CMD_WRITE, f, offset, bytes, NULL, buf);

    if (ret == 0 && (flags & BDRV_REQ_FUA) && !f && (s->flags & NBD_FLAG_SEND_FLUSH)) {
        ret = nbd_request(s, NBD_CMD_FLUSH, 0, 0, 0, NULL, NULL);
    }
    return ret;
}

static int nbd_pwrite_zeroes(BlockDriverState *bs, int64_t offset,
                             int64_t bytes, BdrvRequestFlags flags)
{
    BDRVNBDState *s = bs->opaque;
    uint16_t f = 0;

    if (!(s->flags & NBD_FLAG_SEND_WRITE_ZEROES)) {
        return -ENOTSUP;
    }
    if (!(flags & BDRV_REQ_MAY_UNMAP)) {
        f |= NBD_CMD_FLAG_NO_HOLE;
    }
    if (flags & BDRV_REQ_NO_FALLBACK) {
        if (!(s->flags & NBD_FLAG_SEND_FAST_ZERO)) {
            return -ENOTSUP;
        }
        f |= NBD_CMD_FLAG_FAST_ZERO;
    }
    if ((flags & BDRV_REQ_FUA) && (s->flags & NBD_FLAG_SEND_FUA)) {
        f |= NBD_CMD_FLAG_FUA;
    }
    return nbd_request(s, NBD_CMD_WRITE_ZEROES, f, offset, bytes, NULL, NULL);
}

static int nbd_pdiscard(BlockDriverState *bs, int64_t offset, int64_t bytes)
{
    BDRVNBDState *s = bs->opaque;

    if (!(s->flags & NBD_FLAG_SEND_TRIM)) {
        return -ENOTSUP;
    }
    return nbd_request(s, NBD_CMD_TRIM, 0, offset, bytes, NULL, NULL);
}

static int nbd_flush(BlockDriverState *bs)
{
    BDRVNBDState *s = bs->opaque;

    if (!(s->flags & NBD_FLAG_SEND_FLUSH)) {
        return 0;
    }
    return nbd_request(s, NBD_CMD_FLUSH, 0, 0, 0, NULL, NULL);
}

const BlockDriver bdrv_nbd = {
    .format_name = "nbd",
    .instance_size = sizeof(BDRVNBDState),
    .open = nbd_open,
    .close = nbd_close,
    .getlength = nbd_getlength,
    .preadv = nbd_preadv,
    .pwritev = nbd_pwritev,
    .pwrite_zeroes = nbd_pwrite_zeroes,
    .pdiscard = nbd_pdiscard,
    .flush = nbd_flush,
    .supports_fua = true,
};
