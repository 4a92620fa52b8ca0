/*
 * One NBD client's transmission phase, as QEMU 7.2's nbd/server.c answers
 * it, and the client's life cycle. The handshake before it is in
 * negotiate.c.
 *
 * Threads. Each client has a reader thread, which runs the handshake
 * (blocking socket I/O) and then reads requests, and up to
 * NBD_MAX_REQUESTS worker threads, started as requests pile up, which do
 * the block I/O and send the replies. Replies go out whole, one writer at
 * a time (send_lock), so chunks of different requests never interleave
 * within a chunk. The reader stops reading while NBD_MAX_REQUESTS
 * requests are in flight. Nothing here waits for the main thread, so a
 * drained section (which holds new block requests at the BlockBackend)
 * can wait for the requests in flight.
 *
 * The end. When the socket fails or closes (the client left, sent
 * NBD_CMD_DISC or garbage, or the main thread called nbd_client_close()),
 * the reader stops, lets the workers finish what they have (a reply that
 * cannot be sent is dropped), joins them, and tells export.c through
 * nbd_client_finished(); the main thread then joins the reader and frees
 * the client (nbd_client_free()).
 *
 * Layers: wire I/O (wire.c) -> options (negotiate.c) and request dispatch
 * (here) -> the block layer through the export's BlockBackend, which
 * checks and aligns requests itself; here only the protocol's own limits
 * are checked (size, bounds, flags, read-only), once, in the reader.
 */
#include <errno.h>
#include <poll.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "block/dirty-bitmap.h"
#include "nbd/client.h"
#include "nbd/nbd-protocol.h"

typedef struct NbdRequest {
    uint64_t handle;
    uint64_t from;
    uint32_t len;
    uint16_t flags;
    uint16_t type;
    void *data;                 /* READ and WRITE: len bytes */
    size_t data_size;           /* its allocated size */
} NbdRequest;

/* ---- names and numbers -------------------------------------------------- */

static const char *nbd_cmd_name(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ: return "read";
    case NBD_CMD_WRITE: return "write";
    case NBD_CMD_DISC: return "disconnect";
    case NBD_CMD_FLUSH: return "flush";
    case NBD_CMD_TRIM: return "trim";
    case NBD_CMD_CACHE: return "cache";
    case NBD_CMD_WRITE_ZEROES: return "write zeroes";
    case NBD_CMD_BLOCK_STATUS: return "block status";
    default: return "<unknown>";
    }
}

/* The host's errno as NBD sends it (QEMU's nbd_errno_of()). */
static uint32_t nbd_errno(int err)
{
    switch (err) {
    case 0: return NBD_SUCCESS;
    case EPERM:
    case EROFS: return NBD_EPERM;
    case EIO: return NBD_EIO;
    case ENOMEM: return NBD_ENOMEM;
    case EDQUOT:
    case EFBIG:
    case ENOSPC: return NBD_ENOSPC;
    case EOVERFLOW: return NBD_EOVERFLOW;
    case ENOTSUP: return NBD_ENOTSUP;
    case ESHUTDOWN: return NBD_ESHUTDOWN;
    default: return NBD_EINVAL;
    }
}

/* ---- replies ------------------------------------------------------------ */

/* Sends a whole reply (header iov[0] filled here) under send_lock. */
static bool send_reply_iov(NbdClient *c, struct iovec *iov, int niov)
{
    bool ok;

    g_mutex_lock(&c->send_lock);
    ok = nbd_send_iov(c, iov, niov);
    g_mutex_unlock(&c->send_lock);
    return ok;
}

static bool send_simple(NbdClient *c, uint64_t handle, int err,
                        const void *data, uint32_t len)
{
    uint8_t hdr[NBD_SIMPLE_REPLY_SIZE];
    struct iovec iov[2] = { { hdr, sizeof(hdr) }, { (void *)data, len } };

    nbd_st32(hdr, NBD_SIMPLE_REPLY_MAGIC);
    nbd_st32(hdr + 4, nbd_errno(err));
    nbd_st64(hdr + 8, handle);
    return send_reply_iov(c, iov, len ? 2 : 1);
}

/* One structured chunk; payload[] are its data after the header. */
static bool send_chunk(NbdClient *c, uint64_t handle, uint16_t flags,
                       uint16_t type, struct iovec *payload, int npayload)
{
    uint8_t hdr[NBD_CHUNK_HEADER_SIZE];
    struct iovec iov[NBD_MAX_PAYLOAD_IOV + 1];
    uint32_t len = nbd_iov_after_header(iov, payload, npayload);

    nbd_st32(hdr, NBD_STRUCTURED_REPLY_MAGIC);
    nbd_st16(hdr + 4, flags);
    nbd_st16(hdr + 6, type);
    nbd_st64(hdr + 8, handle);
    nbd_st32(hdr + 16, len);
    iov[0] = (struct iovec) { hdr, sizeof(hdr) };
    return send_reply_iov(c, iov, npayload + 1);
}

static bool send_structured_error(NbdClient *c, uint64_t handle, int err,
                                  const char *msg)
{
    uint8_t buf[6];
    struct iovec iov[2] = { { buf, 6 }, { (void *)msg, strlen(msg) } };

    nbd_st32(buf, nbd_errno(err));
    nbd_st16(buf + 4, iov[1].iov_len);
    return send_chunk(c, handle, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                      iov, 2);
}

/*
 * The reply to a request without data: ret is 0 or -errno. Success is a
 * simple reply even with structured replies (the protocol allows it for
 * requests without data, and QEMU does so); errors come with a message.
 */
static bool send_generic(NbdClient *c, uint64_t handle, int ret,
                         const char *errmsg)
{
    if (c->structured && ret < 0) {
        return send_structured_error(c, handle, -ret, errmsg);
    }
    return send_simple(c, handle, ret < 0 ? -ret : 0, NULL, 0);
}

static bool send_data_chunk(NbdClient *c, uint64_t handle, uint64_t offset,
                            void *data, uint32_t len, bool final)
{
    uint8_t off[8];
    struct iovec iov[2] = { { off, 8 }, { data, len } };

    nbd_st64(off, offset);
    return send_chunk(c, handle, final ? NBD_REPLY_FLAG_DONE : 0,
                      NBD_REPLY_TYPE_OFFSET_DATA, iov, 2);
}

static bool send_hole_chunk(NbdClient *c, uint64_t handle, uint64_t offset,
                            uint32_t len, bool final)
{
    uint8_t buf[12];
    struct iovec iov = { buf, 12 };

    nbd_st64(buf, offset);
    nbd_st32(buf + 8, len);
    return send_chunk(c, handle, final ? NBD_REPLY_FLAG_DONE : 0,
                      NBD_REPLY_TYPE_OFFSET_HOLE, &iov, 1);
}

/* ---- requests ----------------------------------------------------------- */

/*
 * A structured READ: ranges that block status says read as zeroes go as
 * hole chunks (one per extent, as QEMU sends them), the rest as data
 * chunks (adjacent data extents merged into one read), the last chunk
 * flagged DONE.
 */
static bool do_sparse_read(NbdClient *c, NbdRequest *req)
{
    BlockBackend *blk = c->exp->blk;
    uint64_t progress = 0, start;
    bool have_status = false;
    int64_t pnum = 0;
    int ret = 0, err;

    while (progress < req->len) {
        if (!have_status) {
            ret = blk_block_status(blk, true, req->from + progress,
                                   req->len - progress, &pnum, NULL);
            pnum = CLAMP(pnum, 1, (int64_t)(req->len - progress));
        }
        have_status = false;
        if (ret < 0) {
            g_autofree char *msg = g_strdup_printf(
                "unable to check for holes: %s", g_strerror(-ret));

            return send_structured_error(c, req->handle, -ret, msg);
        }
        if (ret & BDRV_BLOCK_ZERO) {
            progress += pnum;
            if (!send_hole_chunk(c, req->handle, req->from + progress - pnum,
                                 pnum, progress == req->len)) {
                return false;
            }
            continue;
        }
        start = progress;
        progress += pnum;
        while (progress < req->len) {
            ret = blk_block_status(blk, true, req->from + progress,
                                   req->len - progress, &pnum, NULL);
            pnum = CLAMP(pnum, 1, (int64_t)(req->len - progress));
            if (ret < 0 || (ret & BDRV_BLOCK_ZERO)) {
                have_status = true;     /* handled on the next round */
                break;
            }
            progress += pnum;
        }
        err = blk_pread(blk, req->from + start, progress - start,
                        (uint8_t *)req->data + start, 0);
        if (err < 0) {
            return send_structured_error(c, req->handle, -err,
                                         "reading from file failed");
        }
        if (!send_data_chunk(c, req->handle, req->from + start,
                             (uint8_t *)req->data + start, progress - start,
                             progress == req->len)) {
            return false;
        }
    }
    return true;
}

static bool do_read(NbdClient *c, NbdRequest *req)
{
    BlockBackend *blk = c->exp->blk;
    int ret;

    /* The protocol has FUA only for writes; QEMU flushes first. */
    if (req->flags & NBD_CMD_FLAG_FUA) {
        ret = blk_flush(blk);
        if (ret < 0) {
            return send_generic(c, req->handle, ret, "flush failed");
        }
    }
    if (c->structured && !(req->flags & NBD_CMD_FLAG_DF) && req->len) {
        return do_sparse_read(c, req);
    }
    ret = req->len ? blk_pread(blk, req->from, req->len, req->data, 0) : 0;
    if (ret < 0) {
        return send_generic(c, req->handle, ret, "reading from file failed");
    }
    if (!c->structured) {
        return send_simple(c, req->handle, 0, req->data, req->len);
    }
    if (!req->len) {
        return send_chunk(c, req->handle, NBD_REPLY_FLAG_DONE,
                          NBD_REPLY_TYPE_NONE, NULL, 0);
    }
    return send_data_chunk(c, req->handle, req->from, req->data, req->len,
                           true);
}

typedef struct NbdExtents {
    GArray *extents;        /* uint32_t pairs, big-endian: length, flags */
    uint32_t last_len, last_flags;
    size_t count, max;
} NbdExtents;

/* Appends the last extent, which extents_add() keeps open for merging. */
static void extents_finish(NbdExtents *ea)
{
    if (ea->count) {
        uint32_t be[2];

        nbd_st32(&be[0], ea->last_len);
        nbd_st32(&be[1], ea->last_flags);
        g_array_append_vals(ea->extents, be, 2);
    }
}

/* Adds an extent, merging with the last one; false when full. */
static bool extents_add(NbdExtents *ea, uint64_t len, uint32_t flags)
{
    if (!len) {
        return true;
    }
    if (ea->count && flags == ea->last_flags &&
        ea->last_len + len <= UINT32_MAX) {
        ea->last_len += len;
        return true;
    }
    if (ea->count == ea->max) {
        return false;
    }
    extents_finish(ea);
    ea->count++;
    ea->last_len = len;
    ea->last_flags = flags;
    return true;
}

/*
 * The contexts block status of the chain answers. base:allocation: HOLE
 * where reads are not backed by data, ZERO where they return zeroes.
 * qemu:allocation-depth: which layer decides the content, 1 for the
 * export's node, 2 for the one below, 0 for none (QEMU's
 * bdrv_is_allocated_above(), which asks without want_zero).
 */
static int block_status_extents(NbdClient *c, NbdMetaKind kind,
                                uint64_t offset, uint64_t bytes,
                                NbdExtents *ea)
{
    bool base = kind == NBD_META_BASE_ALLOCATION;

    while (bytes) {
        int64_t pnum;
        uint32_t flags;
        int depth;
        int ret = blk_block_status(c->exp->blk, base, offset, bytes, &pnum,
                                   &depth);

        if (ret < 0) {
            return ret;
        }
        pnum = CLAMP(pnum, 1, (int64_t)bytes);
        if (base) {
            flags = (ret & BDRV_BLOCK_DATA ? 0 : NBD_STATE_HOLE) |
                    (ret & BDRV_BLOCK_ZERO ? NBD_STATE_ZERO : 0);
        } else {
            flags = depth;
        }
        if (!extents_add(ea, pnum, flags)) {
            break;
        }
        offset += pnum;
        bytes -= pnum;
    }
    return 0;
}

/*
 * qemu:dirty-bitmap:NAME: DIRTY over the dirty runs, found with the
 * bitmap's skipping search, so the cost follows the runs, not the range.
 * Past the bitmap's end (a {node, name} bitmap of a smaller node) is
 * clean, as in QEMU.
 */
static void dirty_bitmap_extents(BdrvDirtyBitmap *bm, uint64_t offset,
                                 uint64_t bytes, NbdExtents *ea)
{
    uint64_t start = offset, end = offset + bytes;
    uint64_t dirty_start, dirty_count;
    bool full = false;

    bdrv_dirty_bitmap_lock(bm);
    while (start < end &&
           bdrv_dirty_bitmap_next_dirty_area_locked(bm, start, end,
                                                    end - start, &dirty_start,
                                                    &dirty_count)) {
        if (!extents_add(ea, dirty_start - start, 0) ||
            !extents_add(ea, dirty_count, NBD_STATE_DIRTY)) {
            full = true;
            break;
        }
        start = dirty_start + dirty_count;
    }
    if (!full) {
        extents_add(ea, end - start, 0);
    }
    bdrv_dirty_bitmap_unlock(bm);
}

static bool send_block_status(NbdClient *c, NbdRequest *req,
                              const NbdMetaContext *ctx, bool last)
{
    NbdExtents ea = {
        .extents = g_array_new(FALSE, FALSE, sizeof(uint32_t)),
        .max = req->flags & NBD_CMD_FLAG_REQ_ONE ? 1
                                                 : NBD_MAX_BLOCK_STATUS_EXTENTS,
    };
    uint8_t id[4];
    struct iovec iov[2];
    bool ok;
    int ret;

    switch (ctx->kind) {
    case NBD_META_BASE_ALLOCATION:
    case NBD_META_ALLOCATION_DEPTH:
        ret = block_status_extents(c, ctx->kind, req->from, req->len, &ea);
        break;
    case NBD_META_DIRTY_BITMAP:
        dirty_bitmap_extents(ctx->opaque, req->from, req->len, &ea);
        ret = 0;
        break;
    default:
        g_assert_not_reached();
    }
    if (ret < 0) {
        g_array_free(ea.extents, TRUE);
        return send_structured_error(c, req->handle, -ret,
                                     "can't get block status");
    }
    extents_finish(&ea);
    nbd_st32(id, ctx->id);
    iov[0] = (struct iovec) { id, 4 };
    iov[1] = (struct iovec) { ea.extents->data,
                              ea.extents->len * sizeof(uint32_t) };
    ok = send_chunk(c, req->handle, last ? NBD_REPLY_FLAG_DONE : 0,
                    NBD_REPLY_TYPE_BLOCK_STATUS, iov, 2);
    g_array_free(ea.extents, TRUE);
    return ok;
}

static bool do_block_status(NbdClient *c, NbdRequest *req)
{
    size_t i, left = c->meta_count;

    if (!req->len) {
        return send_generic(c, req->handle, -EINVAL, "need non-zero length");
    }
    if (!c->meta_count) {
        return send_generic(c, req->handle, -EINVAL,
                            "CMD_BLOCK_STATUS not negotiated");
    }
    for (i = 0; i < c->exp->nr_contexts && left; i++) {
        if (c->meta_selected[i] &&
            !send_block_status(c, req, &c->exp->contexts[i], --left == 0)) {
            return false;
        }
    }
    return true;
}

/* Runs a checked request and sends its reply; false if sending failed. */
static bool handle_request(NbdClient *c, NbdRequest *req)
{
    BlockBackend *blk = c->exp->blk;
    int flags = 0;
    int ret;

    if (req->flags & NBD_CMD_FLAG_FUA || c->exp->writethrough) {
        flags |= BDRV_REQ_FUA;
    }
    switch (req->type) {
    case NBD_CMD_READ:
        return do_read(c, req);
    case NBD_CMD_WRITE:
        ret = blk_pwrite(blk, req->from, req->len, req->data, flags);
        return send_generic(c, req->handle, ret, "writing to file failed");
    case NBD_CMD_WRITE_ZEROES:
        if (!(req->flags & NBD_CMD_FLAG_NO_HOLE)) {
            flags |= BDRV_REQ_MAY_UNMAP;
        }
        if (req->flags & NBD_CMD_FLAG_FAST_ZERO) {
            flags |= BDRV_REQ_NO_FALLBACK;
        }
        ret = req->len ? blk_pwrite_zeroes(blk, req->from, req->len, flags) : 0;
        return send_generic(c, req->handle, ret, "writing to file failed");
    case NBD_CMD_FLUSH:
        ret = blk_flush(blk);
        return send_generic(c, req->handle, ret, "flush failed");
    case NBD_CMD_TRIM:
        ret = req->len ? blk_pdiscard(blk, req->from, req->len) : 0;
        if (ret >= 0 && req->flags & NBD_CMD_FLAG_FUA) {
            ret = blk_flush(blk);
        }
        return send_generic(c, req->handle, ret, "discard failed");
    case NBD_CMD_CACHE:
        /* Advisory; nothing to prefetch into without copy-on-read. */
        return send_generic(c, req->handle, 0, NULL);
    case NBD_CMD_BLOCK_STATUS:
        return do_block_status(c, req);
    default: {
        g_autofree char *msg = g_strdup_printf(
            "invalid request type (%u) received", req->type);

        return send_generic(c, req->handle, -EINVAL, msg);
    }
    }
}

/*
 * Request buffers are recycled through the client's pool: fresh large
 * allocations are fresh mappings, and faulting their pages in on every
 * request costs more than the copy itself. Sizes are powers of two from
 * 64 KiB, so a few buffers serve any mix of requests.
 */
#define NBD_BUF_MIN (64 * 1024)
#define NBD_POOL_MAX (NBD_MAX_REQUESTS + 2)

static void *buf_get(NbdClient *c, uint32_t len, size_t *size)
{
    size_t want = MAX(NBD_BUF_MIN, len ? 1u << g_bit_storage(len - 1) : 1);
    void *buf = NULL;
    guint i;

    g_mutex_lock(&c->lock);
    for (i = 0; i < c->pool->len; i++) {
        NbdBuffer *b = &g_array_index(c->pool, NbdBuffer, i);

        if (b->size >= want) {
            buf = b->data;
            *size = b->size;
            g_array_remove_index_fast(c->pool, i);
            break;
        }
    }
    g_mutex_unlock(&c->lock);
    if (!buf) {
        if (posix_memalign(&buf, 4096, want)) {
            return NULL;
        }
        *size = want;
    }
    return buf;
}

static void buf_put(NbdClient *c, void *data, size_t size)
{
    NbdBuffer b = { data, size };

    if (!data) {
        return;
    }
    g_mutex_lock(&c->lock);
    if (c->pool->len < NBD_POOL_MAX) {
        g_array_append_val(c->pool, b);
        data = NULL;
    }
    g_mutex_unlock(&c->lock);
    free(data);
}

static void request_free(NbdClient *c, NbdRequest *req)
{
    buf_put(c, req->data, req->data_size);
    g_free(req);
}

static gpointer worker_thread(gpointer opaque)
{
    NbdClient *c = opaque;

    g_mutex_lock(&c->lock);
    for (;;) {
        NbdRequest *req;

        while (!(req = g_queue_pop_head(&c->queue)) && !c->quitting) {
            c->idle++;
            g_cond_wait(&c->work_cond, &c->lock);
            c->idle--;
        }
        if (!req) {
            break;
        }
        g_mutex_unlock(&c->lock);

        if (!handle_request(c, req)) {
            /* The socket is gone: make the reader stop too. */
            shutdown(c->fd, SHUT_RDWR);
        }
        request_free(c, req);

        g_mutex_lock(&c->lock);
        c->in_flight--;
        if (c->reader_waiting) {
            g_cond_signal(&c->room_cond);
        }
    }
    g_mutex_unlock(&c->lock);
    return NULL;
}

static void queue_request(NbdClient *c, NbdRequest *req)
{
    g_mutex_lock(&c->lock);
    c->in_flight++;
    g_queue_push_tail(&c->queue, req);
    if (c->idle) {
        /* (a futex call each: only when someone sleeps) */
        g_cond_signal(&c->work_cond);
    }
    if (c->queue.length > c->idle && c->workers->len < NBD_MAX_REQUESTS) {
        g_ptr_array_add(c->workers,
                        g_thread_new("nbd-worker", worker_thread, c));
    }
    g_mutex_unlock(&c->lock);
}

/*
 * Whether the reader answers req itself rather than a worker: block
 * status of bitmaps only (or refused) reads no block data, and a hand-off
 * would cost a thread wake-up per request, which is the latency a client
 * walking a map waits on, request after request.
 */
static bool answered_by_reader(const NbdClient *c, const NbdRequest *req)
{
    size_t i;

    if (req->type != NBD_CMD_BLOCK_STATUS) {
        return false;
    }
    for (i = 0; c->meta_count && i < c->exp->nr_contexts; i++) {
        if (c->meta_selected[i] &&
            c->exp->contexts[i].kind != NBD_META_DIRTY_BITMAP) {
            return false;
        }
    }
    return true;
}

/*
 * Reads one request and either queues it, answers it (see
 * answered_by_reader()) or answers its error. Returns false when the
 * client is to be dropped (errp says why, unless it left or disconnected
 * politely).
 */
static bool receive_request(NbdClient *c, Error **errp)
{
    uint8_t buf[NBD_REQUEST_SIZE];
    g_autofree char *err = NULL;
    NbdRequest *req;
    uint32_t magic;
    uint16_t valid;
    int r;

    r = nbd_read_full(c, buf, sizeof(buf));
    if (r <= 0) {
        if (r < 0) {
            error_setg(errp, "Failed to read request: %s",
                       errno ? g_strerror(errno) : "connection closed");
        }
        return false;
    }
    magic = nbd_ld32(buf);
    if (magic != NBD_REQUEST_MAGIC) {
        error_setg(errp, "invalid magic (got 0x%" PRIx32 ")", magic);
        return false;
    }
    req = g_new0(NbdRequest, 1);
    req->flags = nbd_ld16(buf + 4);
    req->type = nbd_ld16(buf + 6);
    req->handle = nbd_ld64(buf + 8);
    req->from = nbd_ld64(buf + 16);
    req->len = nbd_ld32(buf + 24);

    if (req->type == NBD_CMD_DISC) {
        request_free(c, req);
        return false;
    }
    /* Checks in QEMU's order; every failure is answered with EINVAL. */
    if ((req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE ||
         req->type == NBD_CMD_CACHE) && req->len > NBD_MAX_BUFFER_SIZE) {
        err = g_strdup_printf("len (%" PRIu32 ") is larger than max len (%u)",
                              req->len, NBD_MAX_BUFFER_SIZE);
    } else if ((req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE) &&
               !(req->data = buf_get(c, req->len, &req->data_size))) {
        err = g_strdup("No memory");
    }
    if (err && req->type == NBD_CMD_WRITE) {
        /* The payload was not read: the stream cannot be followed. */
        send_generic(c, req->handle, -EINVAL, err);
        error_setg(errp, "%s", err);
        request_free(c, req);
        return false;
    }
    if (req->type == NBD_CMD_WRITE &&
        nbd_read_full(c, req->data, req->len) <= 0) {
        error_setg(errp, "Failed to read write payload: %s",
                   errno ? g_strerror(errno) : "connection closed");
        request_free(c, req);
        return false;
    }
    if (err) {
        /* already set */
    } else if ((c->exp->flags & NBD_FLAG_READ_ONLY) &&
               (req->type == NBD_CMD_WRITE ||
                req->type == NBD_CMD_WRITE_ZEROES ||
                req->type == NBD_CMD_TRIM)) {
        err = g_strdup("Export is read-only");
    } else if (req->from > c->exp->size ||
               req->len > c->exp->size - req->from) {
        err = g_strdup_printf("operation past EOF; From: %" PRIu64 ", Len: %"
                              PRIu32 ", Size: %" PRIu64, req->from, req->len,
                              c->exp->size);
    } else {
        valid = NBD_CMD_FLAG_FUA;
        if (req->type == NBD_CMD_READ && c->structured) {
            valid |= NBD_CMD_FLAG_DF;
        } else if (req->type == NBD_CMD_WRITE_ZEROES) {
            valid |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
        } else if (req->type == NBD_CMD_BLOCK_STATUS) {
            valid |= NBD_CMD_FLAG_REQ_ONE;
        }
        if (req->flags & ~valid) {
            err = g_strdup_printf("unsupported flags for command %s (got 0x%x)",
                                  nbd_cmd_name(req->type), req->flags);
        }
    }
    if (err || answered_by_reader(c, req)) {
        bool ok = err ? send_generic(c, req->handle, -EINVAL, err)
                      : handle_request(c, req);

        request_free(c, req);
        if (!ok) {
            error_setg(errp, "Failed to send reply: %s", g_strerror(errno));
        }
        return ok;
    }

    queue_request(c, req);
    return true;
}

/* The transmission phase, until the client goes away. */
static void transmission(NbdClient *c, Error **errp)
{
    guint i;

    c->workers = g_ptr_array_new();
    for (;;) {
        g_mutex_lock(&c->lock);
        while (c->in_flight >= NBD_MAX_REQUESTS) {
            c->reader_waiting = true;
            g_cond_wait(&c->room_cond, &c->lock);
            c->reader_waiting = false;
        }
        g_mutex_unlock(&c->lock);
        if (!receive_request(c, errp)) {
            break;
        }
    }
    /* Let the workers finish what they took; they then see quitting. */
    g_mutex_lock(&c->lock);
    c->quitting = true;
    g_cond_broadcast(&c->work_cond);
    g_mutex_unlock(&c->lock);
    for (i = 0; i < c->workers->len; i++) {
        g_thread_join(c->workers->pdata[i]);
    }
    g_ptr_array_free(c->workers, TRUE);
    c->workers = NULL;
    g_assert(g_queue_is_empty(&c->queue));
}

static gpointer client_thread(gpointer opaque)
{
    NbdClient *c = opaque;
    Error *err = NULL;

    if (nbd_negotiate(c, &err) == 0) {
        transmission(c, &err);
    }
    if (err) {
        fprintf(stderr, "blkd: Disconnect client, due to: %s\n",
                error_get_pretty(err));
        error_free(err);
    }
    /* The peer sees the end now, not when the main thread reaps us. */
    shutdown(c->fd, SHUT_RDWR);
    nbd_client_finished(c);
    return NULL;
}

/* ---- life cycle (main thread) ------------------------------------------- */

NbdClient *nbd_client_start(int fd, uint64_t id)
{
    NbdClient *c = g_new0(NbdClient, 1);

    c->id = id;
    c->fd = fd;
    c->inbuf = g_malloc(NBD_INBUF_SIZE);
    c->pool = g_array_new(FALSE, FALSE, sizeof(NbdBuffer));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    g_mutex_init(&c->send_lock);
    g_mutex_init(&c->lock);
    g_cond_init(&c->work_cond);
    g_cond_init(&c->room_cond);
    g_queue_init(&c->queue);
    c->thread = g_thread_new("nbd-client", client_thread, c);
    return c;
}

uint64_t nbd_client_id(const NbdClient *client)
{
    return client->id;
}

NbdExport *nbd_client_export_locked(const NbdClient *client)
{
    return client->exp;
}

void nbd_client_close(NbdClient *client)
{
    shutdown(client->fd, SHUT_RDWR);
}

bool nbd_client_hung_up(const NbdClient *c)
{
    struct pollfd pfd = { .fd = c->fd, .events = POLLRDHUP };

    return poll(&pfd, 1, 0) == 1 &&
           (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

void nbd_client_join(NbdClient *c)
{
    if (c->thread) {
        g_thread_join(c->thread);
        c->thread = NULL;
    }
}

void nbd_client_free(NbdClient *c)
{
    g_assert(!c->thread);
    close(c->fd);
    g_free(c->inbuf);
    while (c->pool->len) {
        free(g_array_index(c->pool, NbdBuffer, c->pool->len - 1).data);
        g_array_set_size(c->pool, c->pool->len - 1);
    }
    g_array_free(c->pool, TRUE);
    g_free(c->meta_selected);
    g_mutex_clear(&c->send_lock);
    g_mutex_clear(&c->lock);
    g_cond_clear(&c->work_cond);
    g_cond_clear(&c->room_cond);
    g_free(c);
}
