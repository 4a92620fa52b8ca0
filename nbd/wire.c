/*
 * Blocking I/O on an NBD client's socket, for its reader and workers.
 * A closed or shut-down socket makes every call fail, which is how the
 * main thread stops a client (nbd_client_close()).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nbd/client.h"

/*
 * Reads go through a buffer: one read() takes whatever the client has
 * sent, often several pipelined requests, up to NBD_INBUF_SIZE. Larger
 * payloads are read straight into their destination once the buffer is
 * drained.
 */
int nbd_read_full(NbdClient *c, void *buf, size_t len)
{
    uint8_t *p = buf;
    size_t done = 0;

    while (done < len) {
        size_t avail = c->in_end - c->in_start;
        ssize_t n;

        if (avail) {
            n = MIN(avail, len - done);
            memcpy(p + done, c->inbuf + c->in_start, n);
            c->in_start += n;
            done += n;
            continue;
        }
        c->in_start = c->in_end = 0;
        if (len - done >= NBD_INBUF_SIZE) {
            n = read(c->fd, p + done, len - done);
        } else {
            n = read(c->fd, c->inbuf, NBD_INBUF_SIZE);
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0) {
            errno = 0;      /* end of file, not an error */
        }
        if (n <= 0) {
            return n == 0 && done == 0 ? 0 : -1;
        }
        if (len - done >= NBD_INBUF_SIZE) {
            done += n;
        } else {
            c->in_end = n;
        }
    }
    return 1;
}

bool nbd_read_exact(NbdClient *c, void *buf, size_t len, Error **errp)
{
    if (nbd_read_full(c, buf, len) <= 0) {
        error_setg(errp, "Failed to read from the client: %s",
                   errno ? g_strerror(errno)
                         : "Unexpected end-of-file before all data were read");
        return false;
    }
    return true;
}

/* Reads and throws away len bytes. */
bool nbd_drop_bytes(NbdClient *c, uint64_t len, Error **errp)
{
    char buf[4096];

    while (len) {
        size_t n = MIN(len, sizeof(buf));

        if (!nbd_read_exact(c, buf, n, errp)) {
            return false;
        }
        len -= n;
    }
    return true;
}

uint32_t nbd_iov_after_header(struct iovec *iov, const struct iovec *payload,
                              int npayload)
{
    uint32_t len = 0;
    int i;

    g_assert(npayload <= NBD_MAX_PAYLOAD_IOV);
    for (i = 0; i < npayload; i++) {
        len += payload[i].iov_len;
        iov[i + 1] = payload[i];
    }
    return len;
}

/* Writes the whole iovec (modified as it goes); false on failure. */
bool nbd_send_iov(NbdClient *c, struct iovec *iov, int niov)
{
    while (niov > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = niov };
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        while (niov > 0 && (size_t)n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            niov--;
        }
        if (niov > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    return true;
}

bool nbd_send_buf(NbdClient *c, const void *buf, size_t len, Error **errp)
{
    struct iovec iov = { (void *)buf, len };

    if (!nbd_send_iov(c, &iov, 1)) {
        error_setg(errp, "Failed to write to the client: %s",
                   g_strerror(errno));
        return false;
    }
    return true;
}

