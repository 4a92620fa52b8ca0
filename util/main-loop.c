/* The daemon's main loop; see include/util/main-loop.h. */
#include "util/main-loop.h"

static GMainLoop *loop;
static GThread *main_thread;
static int exit_status;
static bool quitting;

void main_loop_init(void)
{
    g_assert(!loop);
    loop = g_main_loop_new(NULL, FALSE);
    main_thread = g_thread_self();
}

int main_loop_run(void)
{
    if (!quitting) {
        g_main_loop_run(loop);
    }
    g_main_loop_unref(loop);
    loop = NULL;
    return exit_status;
}

void main_loop_quit(int status)
{
    g_assert(main_loop_is_main_thread());
    if (!quitting) {
        quitting = true;
        exit_status = status;
        g_main_loop_quit(loop);
    }
}

bool main_loop_quitting(void)
{
    return quitting;
}

bool main_loop_is_main_thread(void)
{
    return g_thread_self() == main_thread;
}

void main_loop_invoke(GSourceFunc fn, gpointer data)
{
    GSource *source;

    if (main_loop_is_main_thread()) {
        while (fn(data)) {
            /* as g_main_context_invoke(): again until it is done */
        }
        return;
    }
    /*
     * g_main_context_invoke() would run fn in this thread whenever the
     * main context is not acquired (before the loop runs, at shutdown,
     * in unit tests): always queue it for the main thread instead.
     */
    source = g_idle_source_new();
    g_source_set_priority(source, G_PRIORITY_DEFAULT);
    g_source_set_callback(source, fn, data, NULL);
    g_source_attach(source, NULL);
    g_source_unref(source);
}
