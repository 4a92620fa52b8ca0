/*
 * blkd: the daemon. Parses qemu-storage-daemon's command line, in order,
 * sets up what each option asks for, runs the main loop until quit or a
 * signal, and shuts down cleanly.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <glib-unix.h>

#include "config-host.h"
#include "block/block.h"
#include "block/job.h"
#include "daemon/options.h"
#include "monitor/monitor.h"
#include "nbd/nbd.h"
#include "util/main-loop.h"

static void usage(const char *name)
{
    printf(
"Usage: %s [options]\n"
"blkd " BLKD_VERSION ": block storage daemon with dirty bitmaps and backups,\n"
"driven over QMP like QEMU's qemu-storage-daemon\n"
"\n"
"  -h, --help                display this help and exit\n"
"  -V, --version             output version information and exit\n"
"\n"
"  --blockdev [driver=]<driver>[,node-name=<N>][,discard=ignore|unmap]\n"
"             [,cache.direct=on|off][,cache.no-flush=on|off]\n"
"             [,read-only=on|off][,auto-read-only=on|off]\n"
"             [,force-share=on|off][,detect-zeroes=on|off|unmap]\n"
"             [,driver specific parameters...]\n"
"                         configure a block backend\n"
"\n"
"  --chardev <options>    configure a character device backend:\n"
"             socket,id=<id>,path=<path>[,server=on|off][,wait=on|off]\n"
"             socket,id=<id>,host=<host>,port=<port>[,server=on|off][,wait=on|off]\n"
"             stdio,id=<id>\n"
"\n"
"  --daemonize            daemonize the process, and have the parent exit\n"
"                         once startup is complete\n"
"\n"
"  --export [type=]nbd,id=<id>,node-name=<node-name>[,name=<export-name>]\n"
"           [,writable=on|off][,bitmaps.0=<name>[,bitmaps.1=<name>...]]\n"
"                         export the specified block node over NBD\n"
"\n"
"  --monitor [chardev=]name[,mode=control][,pretty[=on|off]]\n"
"                         configure a QMP monitor\n"
"\n"
"  --nbd-server addr.type=inet,addr.host=<host>,addr.port=<port>\n"
"               [,max-connections=<n>]\n"
"  --nbd-server addr.type=unix,addr.path=<path>[,max-connections=<n>]\n"
"                         start an NBD server for exporting block nodes\n"
"\n"
"  --object help          list object types that can be added\n"
"  --object <type>,help   list properties for the given object type\n"
"  --object <type>[,<property>=<value>...]\n"
"                         create a new object of type <type>, setting\n"
"                         properties in the order they are specified\n"
"\n"
"  --pidfile <path>       write process ID to a file after startup\n"
"\n"
"Option values are keyval (key=value, dotted keys for nesting, ',,' for a\n"
"comma) or, when they start with '{', JSON.\n", name);
}

static void version(void)
{
    printf("blkd version " BLKD_VERSION " (QMP interface of QEMU 7.2)\n"
           "Copyright (c) 2026 the blkd developers\n");
}

static gboolean on_signal(gpointer data)
{
    main_loop_quit(0);
    return G_SOURCE_CONTINUE;
}

/* Creates the pidfile and holds a lock on it while the daemon runs. */
static int write_pidfile(const char *path, Error **errp)
{
    g_autofree char *pid = g_strdup_printf("%d\n", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

    if (fd < 0) {
        error_setg_errno(errp, errno, "cannot create PID file: Could not create '%s'",
                         path);
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        error_setg(errp, "cannot create PID file: Cannot lock pid file '%s': %s",
                   path, g_strerror(errno));
        close(fd);
        return -1;
    }
    if (ftruncate(fd, 0) < 0 || write(fd, pid, strlen(pid)) != (ssize_t)strlen(pid)) {
        error_setg_errno(errp, errno, "cannot create PID file: Failed to write pid file");
        close(fd);
        return -1;
    }
    return fd;
}

/*
 * --daemonize: the parent waits until the child has finished starting
 * up (or failed), so that its exit status tells the caller which.
 */
static int daemonize_start(int *ready_fd)
{
    int pipefd[2];
    pid_t pid;
    char status = 1;

    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        perror("blkd: pipe");
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        perror("blkd: fork");
        return -1;
    }
    if (pid > 0) {
        close(pipefd[1]);
        if (read(pipefd[0], &status, 1) != 1) {
            status = 1;
        }
        _exit(status);
    }
    close(pipefd[0]);
    setsid();
    *ready_fd = pipefd[1];
    return 0;
}

static void daemonize_finish(int ready_fd)
{
    char ok = 0;
    int null = open("/dev/null", O_RDWR);

    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        dup2(null, STDERR_FILENO);
        close(null);
    }
    if (write(ready_fd, &ok, 1) != 1) {
        /* The parent is gone; nothing to tell. */
    }
    close(ready_fd);
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        { "blockdev", required_argument, NULL, BLKD_OPT_BLOCKDEV },
        { "chardev", required_argument, NULL, BLKD_OPT_CHARDEV },
        { "daemonize", no_argument, NULL, BLKD_OPT_DAEMONIZE },
        { "export", required_argument, NULL, BLKD_OPT_EXPORT },
        { "help", no_argument, NULL, 'h' },
        { "monitor", required_argument, NULL, BLKD_OPT_MONITOR },
        { "nbd-server", required_argument, NULL, BLKD_OPT_NBD_SERVER },
        { "object", required_argument, NULL, BLKD_OPT_OBJECT },
        { "pidfile", required_argument, NULL, BLKD_OPT_PIDFILE },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *pidfile = NULL;
    bool daemonize = false;
    int c, status, pid_fd = -1, ready_fd = -1;

    /* First pass: the options that change how startup itself goes. */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+:hV", long_options, NULL)) != -1) {
        switch (c) {
        case 'h':
            usage(argv[0]);
            return 0;
        case 'V':
            version();
            return 0;
        case BLKD_OPT_DAEMONIZE:
            daemonize = true;
            break;
        case BLKD_OPT_PIDFILE:
            pidfile = optarg;
            break;
        case ':':
            fprintf(stderr, "blkd: option '%s' requires an argument\n",
                    argv[optind - 1]);
            return 1;
        case '?':
            if (optopt) {
                fprintf(stderr, "blkd: invalid option -- '%c'\n", optopt);
            } else {
                fprintf(stderr, "blkd: unrecognized option '%s'\n",
                        argv[optind - 1]);
            }
            return 1;
        default:
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "blkd: %s: Unexpected argument\n", argv[optind]);
        return 1;
    }
    if (daemonize && daemonize_start(&ready_fd) < 0) {
        return 1;
    }

    main_loop_init();
    g_unix_signal_add(SIGTERM, on_signal, NULL);
    g_unix_signal_add(SIGINT, on_signal, NULL);
    g_unix_signal_add(SIGHUP, on_signal, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* Second pass: each option in order, as qemu-storage-daemon does. */
    optind = 1;
    while ((c = getopt_long(argc, argv, "+:hV", long_options, NULL)) != -1) {
        Error *err = NULL;

        if (c == BLKD_OPT_DAEMONIZE || c == BLKD_OPT_PIDFILE) {
            continue;
        }
        if (!blkd_handle_option(c, optarg, &err)) {
            fprintf(stderr, "blkd: %s %s: %s\n", blkd_option_name(c), optarg,
                    error_get_pretty(err));
            error_free(err);
            status = 1;
            goto out;
        }
    }

    if (pidfile) {
        Error *err = NULL;

        pid_fd = write_pidfile(pidfile, &err);
        if (pid_fd < 0) {
            fprintf(stderr, "blkd: %s\n", error_get_pretty(err));
            error_free(err);
            status = 1;
            goto out;
        }
    }
    if (daemonize) {
        daemonize_finish(ready_fd);
        ready_fd = -1;
    }
    status = main_loop_run();

out:
    nbd_server_shutdown();
    /*
     * Jobs hold nodes: cancel them and wait, as qemu-storage-daemon does,
     * but bounded; a job thread stuck in I/O keeps its nodes open.
     */
    if (job_cancel_sync_all(5000)) {
        bdrv_close_all();
    } else {
        fprintf(stderr, "blkd: a job did not stop within 5 s; "
                "its nodes are left as they are\n");
    }
    monitor_cleanup_all();
    chardev_close_all();
    if (pid_fd >= 0) {
        unlink(pidfile);
        close(pid_fd);
    }
    if (ready_fd >= 0) {
        close(ready_fd);   /* the parent reads EOF: startup failed */
    }
    return status;
}
