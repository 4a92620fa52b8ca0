/*
 * Character devices that carry a monitor: a UNIX or TCP socket (server or
 * client) or stdio, as --chardev defines them. A chardev holds one
 * connection at a time, like QEMU's: a server accepts the next client only
 * when the current one has gone. Main thread only.
 */
#ifndef MONITOR_CHARDEV_H
#define MONITOR_CHARDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

#include "qapi/error.h"

typedef struct Chardev Chardev;

typedef struct ChardevHandlers {
    void (*connected)(void *opaque);
    void (*read)(void *opaque, const char *buf, size_t len);
    void (*disconnected)(void *opaque);
} ChardevHandlers;

/*
 * Creates and registers a chardev from --chardev options: the flat object
 * of strings that qemu_opts_parse_flat_full() makes with QEMU's chardev
 * option table and the implied key "backend". A listening socket starts
 * listening now; with wait=on it also waits for the first client.
 */
Chardev *chardev_new(json_t *opts, Error **errp);
Chardev *chardev_find(const char *id);
/* Claims chr for one user; fails if another already has it. */
bool chardev_attach(Chardev *chr, const ChardevHandlers *handlers,
                    void *opaque, Error **errp);
/* Queues output; it is sent as the peer reads. Dropped if nobody's there. */
void chardev_write(Chardev *chr, const char *buf, size_t len);
/* Sends what is queued, waiting a bounded time: used at shutdown. */
void chardev_flush(Chardev *chr);
void chardev_close_all(void);

#endif
