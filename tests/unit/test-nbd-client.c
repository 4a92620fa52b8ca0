/*
 * The nbd driver against a real NBD server (qemu-nbd): reads and writes,
 * zeroes, trims, the server's refusals, and a server that goes away.
 */
#include <errno.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "block-test-helpers.h"

typedef struct Server {
    GPid pid;
    char *image;
    char *sock;
} Server;

/*
 * Whether a unix socket accepts connections: qemu-nbd binds its socket
 * before it listens, so the file alone does not say it is up.
 */
static bool socket_listens(const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    bool ok;

    g_assert_cmpint(fd, >=, 0);
    g_strlcpy(addr.sun_path, path, sizeof(addr.sun_path));
    ok = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    return ok;
}

/* Starts qemu-nbd serving a fresh 4 MiB raw image; false if it is missing. */
static bool server_start(Server *srv, const char *name, bool read_only)
{
    g_autofree char *qemu_nbd = g_find_program_in_path("qemu-nbd");
    g_autofree char *img_name = g_strdup_printf("%s.img", name);
    g_autofree char *sock_name = g_strdup_printf("%s.sock", name);
    const char *argv[13];
    int i = 0, tries;

    if (!qemu_nbd) {
        return false;
    }
    srv->image = block_test_file(img_name, 4 << 20);
    srv->sock = block_test_file(sock_name, 0);
    unlink(srv->sock);
    argv[i++] = qemu_nbd;
    argv[i++] = "-f";
    argv[i++] = "raw";
    argv[i++] = "-x";
    argv[i++] = "exp";
    argv[i++] = "-k";
    argv[i++] = srv->sock;
    argv[i++] = "--persistent";
    /* The probe below is a client too, maybe not yet gone when ours comes. */
    argv[i++] = "--shared=2";
    if (read_only) {
        argv[i++] = "--read-only";
    }
    argv[i++] = srv->image;
    argv[i] = NULL;
    g_assert_true(g_spawn_async(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT,
                                NULL, NULL, &srv->pid, NULL));
    for (tries = 0; tries < 500 && !socket_listens(srv->sock); tries++) {
        g_usleep(10000);
    }
    g_assert_true(socket_listens(srv->sock));
    return true;
}

static void server_stop(Server *srv)
{
    if (srv->pid) {
        kill(srv->pid, SIGTERM);
        waitpid(srv->pid, NULL, 0);
        g_spawn_close_pid(srv->pid);
        srv->pid = 0;
    }
    g_free(srv->image);
    g_free(srv->sock);
}

static BlockDriverState *open_client(Server *srv, const char *export,
                                     bool read_only, Error **errp)
{
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"nbd\", \"node-name\": \"c\", \"read-only\": %s,"
        " \"server\": {\"type\": \"unix\", \"path\": \"%s\"},"
        " \"export\": \"%s\"}", read_only ? "true" : "false", srv->sock, export);

    return block_test_open(json, errp);
}

static void test_read_write_zeroes_trim(void)
{
    Server srv = { 0 };
    BlockDriverState *bs;
    BlockBackend *blk;
    char out[70000], in[70000];
    size_t i;

    if (!server_start(&srv, "rw", false)) {
        g_test_skip("qemu-nbd is missing");
        return;
    }
    bs = open_client(&srv, "exp", false, &error_abort);
    blk = block_test_backend(bs, "test", BLOCK_TEST_RW, BLK_PERM_ALL);
    g_assert_cmpint(blk_getlength(blk), ==, 4 << 20);
    for (i = 0; i < sizeof(out); i++) {
        out[i] = i % 199;
    }
    g_assert_cmpint(blk_pwrite(blk, 1000, sizeof(out), out, BDRV_REQ_FUA), ==, 0);
    g_assert_cmpint(blk_pread(blk, 1000, sizeof(in), in, 0), ==, 0);
    g_assert_cmpmem(in, sizeof(in), out, sizeof(out));
    g_assert_cmpint(blk_pwrite_zeroes(blk, 4096, 8192, 0), ==, 0);
    g_assert_cmpint(blk_pread(blk, 4096, 8192, in, 0), ==, 0);
    for (i = 0; i < 8192; i++) {
        g_assert_cmpint(in[i], ==, 0);
    }
    g_assert_cmpint(blk_pdiscard(blk, 0, 65536), ==, 0);
    g_assert_cmpint(blk_flush(blk), ==, 0);
    blk_unref(blk);
    bdrv_del_node("c", &error_abort);
    server_stop(&srv);
}

typedef struct Reader {
    BlockBackend *blk;
    int errors;
} Reader;

static gpointer read_loop(gpointer opaque)
{
    Reader *r = opaque;
    char buf[4096];
    int i;

    for (i = 0; i < 2000; i++) {
        if (blk_pread(r->blk, (i % 1000) * 4096, sizeof(buf), buf, 0) < 0) {
            r->errors++;
        }
    }
    return NULL;
}

static void test_concurrent_requests(void)
{
    Server srv = { 0 };
    Reader r[4];
    GThread *t[4];
    BlockBackend *blk;
    int i;

    if (!server_start(&srv, "par", false)) {
        g_test_skip("qemu-nbd is missing");
        return;
    }
    blk = block_test_backend(open_client(&srv, "exp", false, &error_abort), "test",
                             BLOCK_TEST_RW, BLK_PERM_ALL);
    for (i = 0; i < 4; i++) {
        r[i] = (Reader) { blk, 0 };
        t[i] = g_thread_new("reader", read_loop, &r[i]);
    }
    for (i = 0; i < 4; i++) {
        g_thread_join(t[i]);
        g_assert_cmpint(r[i].errors, ==, 0);
    }
    blk_unref(blk);
    bdrv_del_node("c", &error_abort);
    server_stop(&srv);
}

static void test_server_going_away_fails_requests(void)
{
    Server srv = { 0 };
    BlockBackend *blk;
    char buf[512];

    if (!server_start(&srv, "gone", false)) {
        g_test_skip("qemu-nbd is missing");
        return;
    }
    blk = block_test_backend(open_client(&srv, "exp", false, &error_abort), "test",
                             BLOCK_TEST_RW, BLK_PERM_ALL);
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, 0);
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
    g_spawn_close_pid(srv.pid);
    srv.pid = 0;
    /* The request fails; it does not wait forever. */
    g_assert_cmpint(blk_pread(blk, 0, sizeof(buf), buf, 0), ==, -EIO);
    g_assert_cmpint(blk_pwrite(blk, 0, sizeof(buf), buf, 0), ==, -EIO);
    blk_unref(blk);
    bdrv_del_node("c", &error_abort);
    server_stop(&srv);
}

static void test_refusals(void)
{
    Server srv = { 0 };
    g_autoptr(Error) err = NULL;

    if (!server_start(&srv, "ro", true)) {
        g_test_skip("qemu-nbd is missing");
        return;
    }
    g_assert_null(open_client(&srv, "nope", true, &err));
    g_assert_cmpstr(error_get_pretty(err), ==, "Requested export not available");
    g_clear_pointer(&err, error_free);
    g_assert_null(open_client(&srv, "exp", false, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "read-only"));
    g_assert_nonnull(open_client(&srv, "exp", true, &error_abort));
    bdrv_del_node("c", &error_abort);
    server_stop(&srv);
}

static void test_no_server(void)
{
    g_autofree char *json = g_strdup_printf(
        "{\"driver\": \"nbd\", \"server\": {\"type\": \"unix\", \"path\": \"%s\"}}",
        "/nonexistent/nbd.sock");
    g_autoptr(Error) err = NULL;

    g_assert_null(block_test_open(json, &err));
    g_assert_nonnull(strstr(error_get_pretty(err), "Failed to connect to"));
}

int main(int argc, char **argv)
{
    block_test_init(&argc, &argv);
    g_test_add_func("/nbd-client/read-write-zeroes-trim", test_read_write_zeroes_trim);
    g_test_add_func("/nbd-client/concurrent-requests", test_concurrent_requests);
    g_test_add_func("/nbd-client/server-going-away-fails-requests",
                    test_server_going_away_fails_requests);
    g_test_add_func("/nbd-client/refusals", test_refusals);
    g_test_add_func("/nbd-client/no-server", test_no_server);
    return block_test_run();
}
