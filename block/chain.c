/*
 * Backing chains: walking them (through the filters jobs put in them),
 * finding nodes in them, and the graph changes that streaming and
 * committing end with, with the backing file names in image headers.
 * Main thread only.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "block/core.h"
#include "util/main-loop.h"

BlockDriverState *bdrv_filter_or_cow_bs(const BlockDriverState *bs)
{
    if (bs->backing) {
        return bs->backing->bs;
    }
    return bs->drv->is_filter ? bdrv_file_bs(bs) : NULL;
}

bool bdrv_chain_contains(BlockDriverState *top, BlockDriverState *node)
{
    for (; top; top = bdrv_filter_or_cow_bs(top)) {
        if (top == node) {
            return true;
        }
    }
    return false;
}

BlockDriverState *bdrv_find_overlay(BlockDriverState *active,
                                    BlockDriverState *bs)
{
    for (; active; active = bdrv_filter_or_cow_bs(active)) {
        if (bdrv_filter_or_cow_bs(active) == bs) {
            return active;
        }
    }
    return NULL;
}

BlockDriverState *bdrv_find_base(BlockDriverState *bs)
{
    return bdrv_find_overlay(bs, NULL);
}

/* path made absolute against the directory of image, then canonical. */
static char *canonical_path(const BlockDriverState *image, const char *path)
{
    g_autofree char *dir = NULL;
    g_autofree char *abs = NULL;
    char real[PATH_MAX];

    if (!g_path_is_absolute(path) && image->filename) {
        dir = g_path_get_dirname(image->filename);
        abs = g_build_filename(dir, path, NULL);
        path = abs;
    }
    return realpath(path, real) ? g_strdup(real) : NULL;
}

BlockDriverState *bdrv_find_backing_image(BlockDriverState *bs,
                                          const char *filename)
{
    BlockDriverState *p;

    /* Names are compared as files: both resolved from the image above. */
    for (p = bs; p; p = bdrv_filter_or_cow_bs(p)) {
        BlockDriverState *below = bdrv_backing_bs(p);
        g_autofree char *wanted = NULL;
        g_autofree char *named = NULL;

        if (!below || !p->backing_file) {
            continue;
        }
        wanted = canonical_path(p, filename);
        named = canonical_path(p, p->backing_file);
        if (wanted && named && !strcmp(wanted, named)) {
            return below;
        }
    }
    return NULL;
}

int bdrv_change_backing_file(BlockDriverState *bs, const char *file,
                             const char *fmt)
{
    int ret;

    g_assert(main_loop_is_main_thread());
    if (!bs->drv->change_backing_file) {
        return -ENOTSUP;
    }
    ret = bs->drv->change_backing_file(bs, file, fmt);
    if (ret == 0) {
        g_free(bs->backing_file);
        g_free(bs->backing_format);
        bs->backing_file = g_strdup(file);
        bs->backing_format = g_strdup(fmt);
    }
    return ret;
}

/* QEMU's update of an overlay's header, made writable for it if need be. */
static bool update_backing_file(BlockDriverState *overlay,
                                BlockDriverState *base, const char *file,
                                Error **errp)
{
    bool read_only = overlay->read_only;
    int ret;

    if (read_only && !bdrv_set_writable(overlay, errp)) {
        return false;
    }
    ret = bdrv_change_backing_file(overlay, file, bdrv_get_format_name(base));
    if (ret < 0) {
        error_setg_errno(errp, -ret, "Could not update backing file link");
    }
    if (read_only) {
        bdrv_set_read_only(overlay, NULL);
    }
    return ret == 0;
}

bool bdrv_drop_intermediate(BlockDriverState *top, BlockDriverState *base,
                            const char *backing_file, Error **errp)
{
    g_autoptr(GPtrArray) overlays = g_ptr_array_new_with_free_func(
        (GDestroyNotify)bdrv_unref);
    bool ok = true;
    guint i;

    g_assert(main_loop_is_main_thread() && bdrv_chain_contains(top, base));
    for (i = 0; i < top->core->parents->len; i++) {
        BdrvChild *c = g_ptr_array_index(top->core->parents, i);

        if (c->parent_is_node && c->role == BDRV_CHILD_BACKING) {
            bdrv_ref(c->parent);
            g_ptr_array_add(overlays, c->parent);
        }
    }
    if (!backing_file) {
        backing_file = base->filename;
    }
    bdrv_drain_all_begin();
    if (!bdrv_replace_node(top, base, errp)) {
        bdrv_drain_all_end();
        return false;
    }
    for (i = 0; ok && i < overlays->len; i++) {
        ok = update_backing_file(g_ptr_array_index(overlays, i), base,
                                 backing_file, errp);
    }
    bdrv_drain_all_end();
    return ok;
}
