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
    g_main_context_invoke(NULL, fn, data);
}
