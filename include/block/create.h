/*
 * Creating an image outside blockdev-create (block/create.c), for the
 * commands that make their target themselves.
 */
#ifndef BLOCK_CREATE_H
#define BLOCK_CREATE_H

#include <stdbool.h>
#include <stdint.h>

#include "qapi/error.h"

/*
 * Creates an image as drive-backup's mode=absolute-paths does (QEMU's
 * bdrv_img_create): fmt "raw" or "qcow2" (others: error); size in bytes;
 * backing_file/backing_fmt only for qcow2 (NULL: none). An existing file
 * is overwritten. Main thread; blocks until the image is written.
 */
bool bdrv_img_create(const char *filename, const char *fmt,
                     const char *backing_file, const char *backing_fmt,
                     int64_t size, Error **errp);

#endif
