/* Stream sockets: UNIX and TCP, listening and connecting. */
#ifndef UTIL_SOCKETS_H
#define UTIL_SOCKETS_H

#include <stdbool.h>

#include "qapi/error.h"

/*
 * Listens on a UNIX socket at path, replacing a stale socket file. The file
 * is created with mode 0600: only the daemon's user may connect.
 * Returns the listening fd (non-blocking, close-on-exec) or -1.
 */
int socket_listen_unix(const char *path, Error **errp);
/* host NULL or "" means the loopback address. */
int socket_listen_inet(const char *host, const char *port, Error **errp);
/* Blocking connects; the returned fd is non-blocking and close-on-exec. */
int socket_connect_unix(const char *path, Error **errp);
int socket_connect_inet(const char *host, const char *port, Error **errp);
/* Accepts a pending connection: fd, or -1 with errno (EAGAIN: none). */
int socket_accept(int listen_fd);

#endif
