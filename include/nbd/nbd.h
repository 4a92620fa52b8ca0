/*
 * The NBD server, as the daemon sees it. The QMP commands (nbd-server-*,
 * block-export-*, query-block-exports) are the generated prototypes in
 * qapi-commands.h; --export calls qmp_block_export_add() itself.
 *
 * Threads: main thread only.
 */
#ifndef NBD_NBD_H
#define NBD_NBD_H

#include <stdbool.h>
#include <stdint.h>

#include "qapi-types.h"

/*
 * --nbd-server and nbd-server-start: listens on addr for NBD clients, at
 * most max_connections at once (0: no limit).
 */
bool nbd_server_start(const SocketAddress *addr, uint32_t max_connections,
                      Error **errp);
/*
 * nbd-server-stop without the error, for shutdown: deletes every export
 * (BLOCK_EXPORT_DELETED for each), disconnects every client and waits for
 * their threads, closes the listening socket. Does nothing when the
 * server is not running.
 */
void nbd_server_shutdown(void);

#endif
