/*
 * Permissions: each edge to a node (from a parent node or a BlockBackend)
 * says what it needs (perm) and what it lets others do (shared), with
 * QEMU's flags and semantics. A node's needs are the union of its
 * parents', passed on to its children: through filters unchanged, to the
 * file of a format node as that format needs. Changing the graph checks
 * the whole affected subtree first, then applies (file locks), so a
 * refused change leaves everything as it was. Main thread only.
 */
#include <string.h>

#include "block/core.h"

/* QEMU's names, as its permission and lock errors show them. */
static const char *const perm_names[] = {
    "consistent read", "write", "write unchanged", "resize",
};

const char *bdrv_perm_names(uint64_t perm, char *buf, size_t size)
{
    size_t i;

    buf[0] = 0;
    for (i = 0; i < G_N_ELEMENTS(perm_names); i++) {
        if (perm & (1ull << i)) {
            if (buf[0]) {
                g_strlcat(buf, ", ", size);
            }
            g_strlcat(buf, perm_names[i], size);
        }
    }
    return buf;
}

char *bdrv_child_user_desc(const BdrvChild *c)
{
    if (c->parent_is_node) {
        return g_strdup_printf("node '%s'",
                               ((const BlockDriverState *)c->parent)->node_name);
    }
    return g_strdup(blk_owner(c->parent));
}

void bdrv_child_perm(BlockDriverState *parent, BdrvChild *c, uint64_t *perm,
                     uint64_t *shared)
{
    if (parent->drv->child_perm) {
        parent->drv->child_perm(parent, c, parent->core->perm,
                                parent->core->shared, perm, shared);
    } else {
        bdrv_default_child_perm(parent, c->role, perm, shared);
    }
}

void bdrv_default_child_perm(BlockDriverState *parent, BdrvChildRole role,
                             uint64_t *perm, uint64_t *shared)
{
    switch (role) {
    case BDRV_CHILD_FILTERED:
        /* A filter needs of its child what its users need of it. */
        *perm = parent->core->perm;
        *shared = parent->core->shared;
        break;
    case BDRV_CHILD_FILE:
        /* Metadata: read always, write and grow when the image is writable. */
        *perm = BLK_PERM_CONSISTENT_READ;
        if (!parent->read_only) {
            *perm |= BLK_PERM_WRITE | BLK_PERM_RESIZE;
        }
        *shared = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE_UNCHANGED;
        if (parent->force_share) {
            *shared |= BLK_PERM_WRITE;
        }
        break;
    case BDRV_CHILD_BACKING:
        *perm = 0;
        *shared = BLK_PERM_ALL;
        break;
    case BDRV_CHILD_DATA:
        *perm = BLK_PERM_CONSISTENT_READ | BLK_PERM_WRITE;
        *shared = BLK_PERM_ALL;
        break;
    }
}

void bdrv_child_perm_none(BlockDriverState *bs, BdrvChild *c, uint64_t perm,
                          uint64_t shared, uint64_t *child_perm,
                          uint64_t *child_shared)
{
    *child_perm = 0;
    *child_shared = BLK_PERM_ALL;
}

typedef struct SavedEdge {
    BdrvChild *edge;
    uint64_t perm, shared;
} SavedEdge;

static bool check_conflicts(BlockDriverState *bs, Error **errp)
{
    GPtrArray *parents = bs->core->parents;
    guint i, j;

    for (i = 0; i < parents->len; i++) {
        BdrvChild *a = g_ptr_array_index(parents, i);

        for (j = 0; j < parents->len; j++) {
            BdrvChild *b = g_ptr_array_index(parents, j);
            uint64_t clash = a->perm & ~b->shared_perm;
            char names[128];
            g_autofree char *user_a = NULL, *user_b = NULL;

            if (i == j || !clash) {
                continue;
            }
            user_a = bdrv_child_user_desc(a);
            user_b = bdrv_child_user_desc(b);
            error_setg(errp, "Permission conflict on node '%s': permissions '%s' "
                       "are both required by %s (uses node '%s' as '%s' child) "
                       "and unshared by %s (uses node '%s' as '%s' child).",
                       bs->node_name, bdrv_perm_names(clash, names, sizeof(names)),
                       user_a, bs->node_name, a->name,
                       user_b, bs->node_name, b->name);
            return false;
        }
    }
    return true;
}

/*
 * Checks bs and, through filter edges, what is below it, with the parent
 * edges as they stand now; updates the filter edges' permissions on the
 * way (saving the old values) and collects the nodes visited.
 */
static bool check_node(BlockDriverState *bs, GArray *saved, GPtrArray *visited,
                       Error **errp)
{
    uint64_t perm = 0, shared = BLK_PERM_ALL;
    guint i;

    if (!check_conflicts(bs, errp)) {
        return false;
    }
    for (i = 0; i < bs->core->parents->len; i++) {
        BdrvChild *p = g_ptr_array_index(bs->core->parents, i);

        perm |= p->perm;
        shared &= p->shared_perm;
    }
    if (bs->read_only && (perm & (BLK_PERM_WRITE | BLK_PERM_RESIZE))) {
        error_setg(errp, "Block node is read-only");
        return false;
    }
    if (bs->drv->check_perm && bs->drv->check_perm(bs, perm, shared, errp) < 0) {
        return false;
    }
    bs->core->perm = perm;
    bs->core->shared = shared;
    g_ptr_array_add(visited, bs);

    for (i = 0; i < bs->core->children->len; i++) {
        BdrvChild *c = g_ptr_array_index(bs->core->children, i);
        SavedEdge old = { c, c->perm, c->shared_perm };

        bdrv_child_perm(bs, c, &c->perm, &c->shared_perm);
        if (c->perm == old.perm && c->shared_perm == old.shared) {
            continue;
        }
        g_array_append_val(saved, old);
        if (!check_node(c->bs, saved, visited, errp)) {
            return false;
        }
    }
    return true;
}

bool bdrv_refresh_perms(BlockDriverState *bs, Error **errp)
{
    g_autoptr(GArray) saved = g_array_new(false, false, sizeof(SavedEdge));
    g_autoptr(GPtrArray) visited = g_ptr_array_new();
    guint i;

    if (!check_node(bs, saved, visited, errp)) {
        /* Undo the edges in reverse, then recompute what the nodes had. */
        for (i = saved->len; i-- > 0;) {
            SavedEdge *s = &g_array_index(saved, SavedEdge, i);

            s->edge->perm = s->perm;
            s->edge->shared_perm = s->shared;
        }
        for (i = 0; i < visited->len; i++) {
            BlockDriverState *v = g_ptr_array_index(visited, i);
            guint j;

            v->core->perm = 0;
            v->core->shared = BLK_PERM_ALL;
            for (j = 0; j < v->core->parents->len; j++) {
                BdrvChild *p = g_ptr_array_index(v->core->parents, j);

                v->core->perm |= p->perm;
                v->core->shared &= p->shared_perm;
            }
        }
        return false;
    }
    for (i = 0; i < visited->len; i++) {
        BlockDriverState *v = g_ptr_array_index(visited, i);

        if (v->drv->set_perm) {
            v->drv->set_perm(v, v->core->perm, v->core->shared);
        }
    }
    return true;
}
