/* The daemon's command-line options that set something up, in order. */
#ifndef DAEMON_OPTIONS_H
#define DAEMON_OPTIONS_H

#include "qapi/error.h"

/* Values above any character, so getopt_long can return them. */
typedef enum BlkdOption {
    BLKD_OPT_BLOCKDEV = 256,
    BLKD_OPT_CHARDEV,
    BLKD_OPT_DAEMONIZE,
    BLKD_OPT_EXPORT,
    BLKD_OPT_MONITOR,
    BLKD_OPT_NBD_SERVER,
    BLKD_OPT_OBJECT,
    BLKD_OPT_PIDFILE,
} BlkdOption;

/* The option's name as the user wrote it ("--chardev"). */
const char *blkd_option_name(BlkdOption opt);
/* Sets up what one --chardev/--monitor/--blockdev/... asks for. */
bool blkd_handle_option(BlkdOption opt, const char *arg, Error **errp);

#endif
