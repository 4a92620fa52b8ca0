/* The block drivers blkd has: one explicit list, no registration magic. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "block/core.h"

extern const BlockDriver bdrv_blkdebug;
extern const BlockDriver bdrv_copy_before_write;
extern const BlockDriver bdrv_copy_on_read;
extern const BlockDriver bdrv_file;
extern const BlockDriver bdrv_nbd;
extern const BlockDriver bdrv_null_co;
extern const BlockDriver bdrv_qcow2;
extern const BlockDriver bdrv_raw;
extern const BlockDriver bdrv_snapshot_access;

static const BlockDriver *const block_drivers[] = {
    &bdrv_blkdebug,
    &bdrv_copy_before_write,
    &bdrv_copy_on_read,
    &bdrv_file,
    &bdrv_nbd,
    &bdrv_null_co,
    &bdrv_qcow2,
    &bdrv_raw,
    &bdrv_snapshot_access,
};

const BlockDriver *bdrv_find_driver(const char *name)
{
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(block_drivers); i++) {
        if (!strcmp(block_drivers[i]->format_name, name)) {
            return block_drivers[i];
        }
    }
    return NULL;
}

const BlockDriver *bdrv_probe_format(const char *filename, Error **errp)
{
    uint8_t buf[512];
    ssize_t len;
    size_t i;
    int fd = open(filename, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        error_setg_errno(errp, errno, "Could not open '%s'", filename);
        return NULL;
    }
    do {
        len = pread(fd, buf, sizeof(buf), 0);
    } while (len < 0 && errno == EINTR);
    if (len < 0) {
        error_setg_errno(errp, errno, "Could not read image for determining "
                         "its format");
        close(fd);
        return NULL;
    }
    close(fd);
    for (i = 0; i < G_N_ELEMENTS(block_drivers); i++) {
        if (block_drivers[i]->probe && block_drivers[i]->probe(buf, len)) {
            return block_drivers[i];
        }
    }
    return &bdrv_raw;
}
