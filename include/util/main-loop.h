/*
 * The daemon's main loop: one GLib main loop on the main thread owns the
 * monitors, the command handlers and (later) the block graph. Other threads
 * hand work to it with main_loop_invoke().
 */
#ifndef UTIL_MAIN_LOOP_H
#define UTIL_MAIN_LOOP_H

#include <stdbool.h>
#include <glib.h>

/* Must be called on the main thread before anything else here. */
void main_loop_init(void);
/* Runs until main_loop_quit(); returns the exit status asked for. */
int main_loop_run(void);
/* Asks the loop to stop once the current callback returns. */
void main_loop_quit(int status);
bool main_loop_quitting(void);
bool main_loop_is_main_thread(void);
/* Runs fn(data) on the main thread: now if called there, else soon. */
void main_loop_invoke(GSourceFunc fn, gpointer data);

#endif
