/* Where the generated qapi_event_send_*() functions deliver events. */
#ifndef QAPI_EVENT_H
#define QAPI_EVENT_H

#include <jansson.h>

/*
 * Sends event "name" with data (owned by the callee; NULL for none) to every
 * QMP monitor, stamped with the current time. Implemented by the monitor.
 */
void qapi_event_emit(const char *name, json_t *data);

#endif
