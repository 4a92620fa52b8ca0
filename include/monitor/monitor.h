/*
 * QMP monitors: each serves the QMP protocol on one chardev (greeting,
 * capabilities negotiation, commands, events). Main thread only, except
 * qapi_event_emit(), which may be called from any thread.
 */
#ifndef MONITOR_MONITOR_H
#define MONITOR_MONITOR_H

#include <stdbool.h>
#include <jansson.h>

#include "monitor/chardev.h"
#include "qapi/error.h"

typedef struct MonitorQMP MonitorQMP;

/* --monitor: options are a flat object of strings ("chardev" implied). */
bool monitor_new_from_opts(json_t *opts, Error **errp);
/* Sends queued output and frees every monitor (at shutdown). */
void monitor_cleanup_all(void);

/* The monitor whose command is running now (NULL outside a command). */
MonitorQMP *monitor_cur(void);
bool monitor_commands_enabled(MonitorQMP *mon);
/* Leaves negotiation mode, with out-of-band execution if oob. */
void monitor_enable_commands(MonitorQMP *mon, bool oob);

/*
 * Runs one QMP request and returns the reply object (NULL for none).
 * negotiating: only qmp_capabilities may run; oob: exec-oob is allowed.
 */
json_t *qmp_dispatch(json_t *req, bool negotiating, bool oob);

#endif
