/* The block drivers blkd has: one explicit list, no registration magic. */
#include <string.h>

#include "block/core.h"

extern const BlockDriver bdrv_blkdebug;
extern const BlockDriver bdrv_copy_before_write;
extern const BlockDriver bdrv_file;
extern const BlockDriver bdrv_nbd;
extern const BlockDriver bdrv_null_co;
extern const BlockDriver bdrv_qcow2;
extern const BlockDriver bdrv_raw;

static const BlockDriver *const block_drivers[] = {
    &bdrv_blkdebug,
    &bdrv_copy_before_write,
    &bdrv_file,
    &bdrv_nbd,
    &bdrv_null_co,
    &bdrv_qcow2,
    &bdrv_raw,
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
