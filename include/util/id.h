/*
 * The one rule QEMU applies to every user-chosen name (node names, job,
 * export, chardev and object ids): its id_wellformed().
 */
#ifndef UTIL_ID_H
#define UTIL_ID_H

#include <stdbool.h>

/* A letter, then letters, digits, '-', '.' and '_'. */
bool id_wellformed(const char *id);

#endif
