/*
 * The fixed newstyle handshake and option haggling of one NBD client, as
 * QEMU 7.2's nbd/server.c answers them: NBD_OPT_EXPORT_NAME, GO, INFO,
 * LIST, ABORT, STARTTLS (refused), STRUCTURED_REPLY, LIST_META_CONTEXT and
 * SET_META_CONTEXT, with QEMU's replies and texts. Runs on the client's
 * reader thread; the export table is read under nbd_exports_lock, never
 * across socket I/O.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "nbd/client.h"
#include "nbd/nbd-protocol.h"

/* ---- names, for messages ------------------------------------------------ */

static const char *nbd_opt_name(uint32_t opt)
{
    switch (opt) {
    case NBD_OPT_EXPORT_NAME: return "export name";
    case NBD_OPT_ABORT: return "abort";
    case NBD_OPT_LIST: return "list";
    case NBD_OPT_PEEK_EXPORT: return "peek export";
    case NBD_OPT_STARTTLS: return "starttls";
    case NBD_OPT_INFO: return "info";
    case NBD_OPT_GO: return "go";
    case NBD_OPT_STRUCTURED_REPLY: return "structured reply";
    case NBD_OPT_LIST_META_CONTEXT: return "list meta context";
    case NBD_OPT_SET_META_CONTEXT: return "set meta context";
    default: return "<unknown>";
    }
}

/* ---- option replies ----------------------------------------------------- */

static bool send_rep_iov(NbdClient *c, uint32_t type, struct iovec *payload,
                         int npayload, Error **errp)
{
    uint8_t hdr[NBD_OPTION_REPLY_SIZE];
    struct iovec iov[NBD_MAX_PAYLOAD_IOV + 1];
    uint32_t len = nbd_iov_after_header(iov, payload, npayload);

    nbd_st64(hdr, NBD_REP_MAGIC);
    nbd_st32(hdr + 8, c->opt);
    nbd_st32(hdr + 12, type);
    nbd_st32(hdr + 16, len);
    iov[0] = (struct iovec) { hdr, sizeof(hdr) };
    if (!nbd_send_iov(c, iov, npayload + 1)) {
        error_setg(errp, "Failed to write to the client: %s",
                   g_strerror(errno));
        return false;
    }
    return true;
}

static bool send_rep(NbdClient *c, uint32_t type, const void *data,
                     uint32_t len, Error **errp)
{
    struct iovec iov = { (void *)data, len };

    return send_rep_iov(c, type, &iov, len ? 1 : 0, errp);
}

/*
 * Throws away what is left of the option's data and answers with error
 * reply type and a message. Returns 0 (option done) or -1 (I/O failed).
 */
static int G_GNUC_PRINTF(4, 5)
opt_drop(NbdClient *c, uint32_t type, Error **errp, const char *fmt, ...)
{
    g_autofree char *msg = NULL;
    va_list ap;

    if (!nbd_drop_bytes(c, c->optlen, errp)) {
        return -1;
    }
    c->optlen = 0;
    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return send_rep(c, type, msg, strlen(msg), errp) ? 0 : -1;
}

#define opt_invalid(c, errp, ...) \
    opt_drop(c, NBD_REP_ERR_INVALID, errp, __VA_ARGS__)

static int opt_reject_length(NbdClient *c, Error **errp)
{
    return opt_invalid(c, errp, "option '%s' has unexpected length",
                       nbd_opt_name(c->opt));
}

/*
 * Reads size bytes of the option's data. Returns 1 when read, 0 when the
 * option was answered as invalid (it is shorter than that, or has a NUL
 * where check_nul forbids one), -1 on I/O failure.
 */
static int opt_read(NbdClient *c, void *buf, uint32_t size, bool check_nul,
                    Error **errp)
{
    if (size > c->optlen) {
        return opt_invalid(c, errp, "Inconsistent lengths in option %s",
                           nbd_opt_name(c->opt));
    }
    c->optlen -= size;
    if (!nbd_read_exact(c, buf, size, errp)) {
        return -1;
    }
    if (check_nul && strnlen(buf, size) != size) {
        return opt_invalid(c, errp, "Unexpected embedded NUL in option %s",
                           nbd_opt_name(c->opt));
    }
    return 1;
}

static int opt_skip(NbdClient *c, uint32_t size, Error **errp)
{
    if (size > c->optlen) {
        return opt_invalid(c, errp, "Inconsistent lengths in option %s",
                           nbd_opt_name(c->opt));
    }
    c->optlen -= size;
    return nbd_drop_bytes(c, size, errp) ? 1 : -1;
}

/* A u32 length and that many bytes: an export name. */
static int opt_read_name(NbdClient *c, char **name, Error **errp)
{
    uint8_t lenbuf[4];
    uint32_t len;
    char *s;
    int ret;

    *name = NULL;
    ret = opt_read(c, lenbuf, sizeof(lenbuf), false, errp);
    if (ret <= 0) {
        return ret;
    }
    len = nbd_ld32(lenbuf);
    if (len > NBD_MAX_STRING_SIZE) {
        return opt_invalid(c, errp, "Invalid name length: %" PRIu32, len);
    }
    s = g_malloc(len + 1);
    ret = opt_read(c, s, len, true, errp);
    if (ret <= 0) {
        g_free(s);
        return ret;
    }
    s[len] = '\0';
    *name = s;
    return 1;
}

/* A name fit to print back: at most 80 bytes of it. */
static char *sanitize_name(const char *name)
{
    if (strnlen(name, 80) < 80) {
        return g_strdup(name);
    }
    return g_strdup_printf("%.80s...", name);
}

/* ---- options ------------------------------------------------------------ */

static bool send_info(NbdClient *c, uint16_t info, const void *data,
                      uint32_t len, Error **errp)
{
    uint8_t type[2];
    struct iovec iov[2] = { { type, 2 }, { (void *)data, len } };

    nbd_st16(type, info);
    return send_rep_iov(c, NBD_REP_INFO, iov, len ? 2 : 1, errp);
}

/* After GO/EXPORT_NAME: meta contexts chosen on another export lapse. */
static void attach_meta_check(NbdClient *c)
{
    if (!c->exp || c->meta_serial != c->exp->serial) {
        c->meta_count = 0;
    }
}

/* NBD_OPT_EXPORT_NAME: 1 to enter transmission, -1 to drop the client. */
static int opt_export_name(NbdClient *c, Error **errp)
{
    uint8_t buf[NBD_EXPORT_NAME_REPLY_SIZE + NBD_EXPORT_NAME_PAD] = { 0 };
    g_autofree char *name = NULL;
    NbdExport *exp;

    if (c->optlen > NBD_MAX_STRING_SIZE) {
        error_setg(errp, "Bad length received");
        return -1;
    }
    name = g_malloc(c->optlen + 1);
    if (!nbd_read_exact(c, name, c->optlen, errp)) {
        return -1;
    }
    name[c->optlen] = '\0';
    c->optlen = 0;

    g_mutex_lock(&nbd_exports_lock);
    exp = nbd_export_find_locked(name);
    if (exp) {
        nbd_export_attach_locked(exp, c);
        c->exp = exp;
    }
    g_mutex_unlock(&nbd_exports_lock);
    if (!exp) {
        error_setg(errp, "export not found");
        return -1;
    }
    c->tx_flags = exp->flags | (c->structured ? NBD_FLAG_SEND_DF : 0);
    nbd_st64(buf, exp->size);
    nbd_st16(buf + 8, c->tx_flags);
    if (!nbd_send_buf(c, buf, c->no_zeroes ? NBD_EXPORT_NAME_REPLY_SIZE
                                       : sizeof(buf), errp)) {
        return -1;
    }
    attach_meta_check(c);
    return 1;
}

/*
 * NBD_OPT_INFO and NBD_OPT_GO: 1 when GO succeeded (transmission
 * follows), 0 when the option was answered, -1 to drop the client.
 */
static int opt_info(NbdClient *c, Error **errp)
{
    g_autofree char *name = NULL;
    g_autofree char *description = NULL;
    uint8_t buf[12];
    uint32_t sizes[3];
    uint8_t sizebuf[12];
    bool sendname = false;
    uint64_t size = 0;
    uint16_t flags = 0;
    uint16_t nreq;
    NbdExport *exp;
    int ret, i;

    ret = opt_read_name(c, &name, errp);
    if (ret <= 0) {
        return ret;
    }
    ret = opt_read(c, buf, 2, false, errp);
    if (ret <= 0) {
        return ret;
    }
    nreq = nbd_ld16(buf);
    while (nreq--) {
        ret = opt_read(c, buf, 2, false, errp);
        if (ret <= 0) {
            return ret;
        }
        /* Only NAME is optional; the rest is sent whether asked or not. */
        if (nbd_ld16(buf) == NBD_INFO_NAME) {
            sendname = true;
        }
    }
    if (c->optlen) {
        return opt_reject_length(c, errp);
    }

    g_mutex_lock(&nbd_exports_lock);
    exp = nbd_export_find_locked(name);
    if (exp) {
        size = exp->size;
        flags = exp->flags;
        description = g_strdup(exp->description);
        if (c->opt == NBD_OPT_GO) {
            nbd_export_attach_locked(exp, c);
            c->exp = exp;
        }
    }
    g_mutex_unlock(&nbd_exports_lock);
    if (!exp) {
        g_autofree char *sane = sanitize_name(name);

        return opt_drop(c, NBD_REP_ERR_UNKNOWN, errp,
                        "export '%s' not present", sane);
    }

    if (sendname && !send_info(c, NBD_INFO_NAME, name, strlen(name), errp)) {
        return -1;
    }
    if (description && !send_info(c, NBD_INFO_DESCRIPTION, description,
                                  strlen(description), errp)) {
        return -1;
    }
    /*
     * Block sizes as QEMU gives them for a node without alignment needs:
     * any request size works (the block layer aligns), 4 KiB is good,
     * 32 MiB is the most a request may carry.
     */
    sizes[0] = 1;
    sizes[1] = 4096;
    sizes[2] = NBD_MAX_BUFFER_SIZE;
    for (i = 0; i < 3; i++) {
        nbd_st32(sizebuf + 4 * i, sizes[i]);
    }
    if (!send_info(c, NBD_INFO_BLOCK_SIZE, sizebuf, sizeof(sizebuf), errp)) {
        return -1;
    }
    flags |= c->structured ? NBD_FLAG_SEND_DF : 0;
    nbd_st64(buf, size);
    nbd_st16(buf + 8, flags);
    if (!send_info(c, NBD_INFO_EXPORT, buf, 10, errp) ||
        !send_rep(c, NBD_REP_ACK, NULL, 0, errp)) {
        return -1;
    }
    if (c->opt == NBD_OPT_GO) {
        c->tx_flags = flags;
        attach_meta_check(c);
        return 1;
    }
    return 0;
}

typedef struct ListEntry {
    char *name;
    char *description;
} ListEntry;

static void list_entry_free(gpointer p)
{
    ListEntry *e = p;

    g_free(e->name);
    g_free(e->description);
    g_free(e);
}

/* NBD_OPT_LIST: every export by name, in the order they were added. */
static int opt_list(NbdClient *c, Error **errp)
{
    g_autoptr(GPtrArray) entries =
        g_ptr_array_new_with_free_func(list_entry_free);
    GList *l;
    guint i;

    if (c->optlen) {
        return opt_reject_length(c, errp);
    }
    g_mutex_lock(&nbd_exports_lock);
    for (l = nbd_export_table_locked(); l; l = l->next) {
        NbdExport *exp = l->data;
        ListEntry *e = g_new0(ListEntry, 1);

        e->name = g_strdup(exp->name);
        e->description = g_strdup(exp->description ? exp->description : "");
        g_ptr_array_add(entries, e);
    }
    g_mutex_unlock(&nbd_exports_lock);

    for (i = 0; i < entries->len; i++) {
        ListEntry *e = entries->pdata[i];
        uint8_t len[4];
        struct iovec iov[3] = {
            { len, 4 },
            { e->name, strlen(e->name) },
            { e->description, strlen(e->description) },
        };

        nbd_st32(len, iov[1].iov_len);
        if (!send_rep_iov(c, NBD_REP_SERVER, iov, 3, errp)) {
            return -1;
        }
    }
    return send_rep(c, NBD_REP_ACK, NULL, 0, errp) ? 0 : -1;
}

/*
 * Marks in selected[] the contexts (names[]) a meta-context query
 * selects. An exact name selects its context (the first, should a bitmap
 * be exported twice, as in QEMU); in LIST, a bare namespace ("base:",
 * "qemu:") or the bitmap prefix ("qemu:dirty-bitmap:") selects every
 * context under it. SET ignores the bare forms, and unknown names select
 * nothing (not an error), as in QEMU.
 */
static void meta_query_select(const char *query, GPtrArray *names,
                              bool *selected, bool list)
{
    static const char *const groups[] = {
        "base:", "qemu:", "qemu:dirty-bitmap:",
    };
    size_t g;
    guint i;

    for (i = 0; i < names->len; i++) {
        if (!strcmp(query, names->pdata[i])) {
            selected[i] = true;
            return;
        }
    }
    for (g = 0; list && g < G_N_ELEMENTS(groups); g++) {
        if (strcmp(query, groups[g])) {
            continue;
        }
        for (i = 0; i < names->len; i++) {
            selected[i] |= g_str_has_prefix(names->pdata[i], groups[g]);
        }
    }
}

/* NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT. */
static int opt_meta_context(NbdClient *c, Error **errp)
{
    bool list = c->opt == NBD_OPT_LIST_META_CONTEXT;
    g_autofree char *name = NULL;
    g_autofree bool *selected = NULL;
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(uint32_t));
    uint64_t serial = 0;
    uint8_t buf[4];
    uint32_t nb_queries, i;
    size_t count = 0;
    NbdExport *exp;
    int ret;

    if (!list && !c->structured) {
        return opt_invalid(c, errp, "request option '%s' when structured "
                           "reply is not negotiated", nbd_opt_name(c->opt));
    }
    if (!list) {
        /* A SET replaces the selection, even when it fails. */
        c->meta_serial = 0;
        c->meta_count = 0;
        g_clear_pointer(&c->meta_selected, g_free);
    }
    ret = opt_read_name(c, &name, errp);
    if (ret <= 0) {
        return ret;
    }
    g_mutex_lock(&nbd_exports_lock);
    exp = nbd_export_find_locked(name);
    if (exp) {
        serial = exp->serial;
        for (i = 0; i < exp->nr_contexts; i++) {
            g_ptr_array_add(names, g_strdup(exp->contexts[i].name));
            g_array_append_val(ids, exp->contexts[i].id);
        }
    }
    g_mutex_unlock(&nbd_exports_lock);
    if (!exp) {
        g_autofree char *sane = sanitize_name(name);

        return opt_drop(c, NBD_REP_ERR_UNKNOWN, errp,
                        "export '%s' not present", sane);
    }
    selected = g_new0(bool, names->len + 1);

    ret = opt_read(c, buf, 4, false, errp);
    if (ret <= 0) {
        return ret;
    }
    nb_queries = nbd_ld32(buf);
    if (list && nb_queries == 0) {
        for (i = 0; i < names->len; i++) {
            selected[i] = true;
        }
    }
    while (nb_queries-- > 0) {
        g_autofree char *query = NULL;
        uint32_t len;

        ret = opt_read(c, buf, 4, false, errp);
        if (ret <= 0) {
            return ret;
        }
        len = nbd_ld32(buf);
        if (len > NBD_MAX_STRING_SIZE) {
            ret = opt_skip(c, len, errp);
            if (ret <= 0) {
                return ret;
            }
            continue;
        }
        query = g_malloc(len + 1);
        ret = opt_read(c, query, len, true, errp);
        if (ret <= 0) {
            return ret;
        }
        query[len] = '\0';
        meta_query_select(query, names, selected, list);
    }
    if (c->optlen) {
        return opt_reject_length(c, errp);
    }

    for (i = 0; i < names->len; i++) {
        const char *ctx = names->pdata[i];
        uint8_t id[4];
        struct iovec iov[2] = { { id, 4 }, { (void *)ctx, strlen(ctx) } };

        if (!selected[i]) {
            continue;
        }
        /* LIST answers with id 0: ids mean something only after SET. */
        nbd_st32(id, list ? 0 : g_array_index(ids, uint32_t, i));
        if (!send_rep_iov(c, NBD_REP_META_CONTEXT, iov, 2, errp)) {
            return -1;
        }
        count++;
    }
    if (!send_rep(c, NBD_REP_ACK, NULL, 0, errp)) {
        return -1;
    }
    if (!list) {
        c->meta_serial = serial;
        c->meta_selected = g_steal_pointer(&selected);
        c->meta_count = count;
    }
    return 0;
}

/*
 * The handshake, up to the export the client chose. Returns 0 to go on
 * to transmission, -1 to drop the client (errp set unless it simply
 * left or sent NBD_OPT_ABORT).
 */
int nbd_negotiate(NbdClient *c, Error **errp)
{
    uint8_t greeting[NBD_GREETING_SIZE];
    uint8_t hdr[NBD_OPTION_HEADER_SIZE];
    bool fixed = false;
    uint32_t flags;

    nbd_st64(greeting, NBD_INIT_MAGIC);
    nbd_st64(greeting + 8, NBD_OPTS_MAGIC);
    nbd_st16(greeting + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    if (!nbd_send_buf(c, greeting, sizeof(greeting), errp) ||
        !nbd_read_exact(c, hdr, 4, errp)) {
        return -1;
    }
    flags = nbd_ld32(hdr);
    if (flags & NBD_FLAG_C_FIXED_NEWSTYLE) {
        fixed = true;
        flags &= ~NBD_FLAG_C_FIXED_NEWSTYLE;
    }
    if (flags & NBD_FLAG_C_NO_ZEROES) {
        c->no_zeroes = true;
        flags &= ~NBD_FLAG_C_NO_ZEROES;
    }
    if (flags) {
        error_setg(errp, "Unknown client flags 0x%" PRIx32 " received", flags);
        return -1;
    }

    for (;;) {
        int ret;

        if (!nbd_read_exact(c, hdr, sizeof(hdr), errp)) {
            return -1;
        }
        if (nbd_ld64(hdr) != NBD_OPTS_MAGIC) {
            error_setg(errp, "Bad magic received");
            return -1;
        }
        c->opt = nbd_ld32(hdr + 8);
        c->optlen = nbd_ld32(hdr + 12);
        if (c->optlen > NBD_MAX_BUFFER_SIZE) {
            error_setg(errp, "len (%" PRIu32 ") is larger than max len (%u)",
                       c->optlen, NBD_MAX_BUFFER_SIZE);
            return -1;
        }

        if (!fixed) {
            /* Old newstyle clients know only EXPORT_NAME. */
            if (c->opt == NBD_OPT_EXPORT_NAME) {
                return opt_export_name(c, errp) > 0 ? 0 : -1;
            }
            error_setg(errp, "Unsupported option %" PRIu32 " (%s)", c->opt,
                       nbd_opt_name(c->opt));
            return -1;
        }

        switch (c->opt) {
        case NBD_OPT_EXPORT_NAME:
            return opt_export_name(c, errp) > 0 ? 0 : -1;
        case NBD_OPT_ABORT:
            /* Reply, but the client need not wait for it. */
            send_rep(c, NBD_REP_ACK, NULL, 0, NULL);
            return -1;
        case NBD_OPT_LIST:
            ret = opt_list(c, errp);
            break;
        case NBD_OPT_INFO:
        case NBD_OPT_GO:
            ret = opt_info(c, errp);
            if (ret > 0) {
                return 0;
            }
            break;
        case NBD_OPT_STARTTLS:
            ret = c->optlen ? opt_reject_length(c, errp)
                : opt_drop(c, NBD_REP_ERR_POLICY, errp, "TLS not configured");
            break;
        case NBD_OPT_STRUCTURED_REPLY:
            if (c->optlen) {
                ret = opt_reject_length(c, errp);
            } else if (c->structured) {
                ret = opt_invalid(c, errp,
                                  "structured reply already negotiated");
            } else {
                ret = send_rep(c, NBD_REP_ACK, NULL, 0, errp) ? 0 : -1;
                c->structured = true;
            }
            break;
        case NBD_OPT_LIST_META_CONTEXT:
        case NBD_OPT_SET_META_CONTEXT:
            ret = opt_meta_context(c, errp);
            break;
        default:
            ret = opt_drop(c, NBD_REP_ERR_UNSUP, errp,
                           "Unsupported option %" PRIu32 " (%s)", c->opt,
                           nbd_opt_name(c->opt));
            break;
        }
        if (ret < 0) {
            return -1;
        }
        g_assert(c->optlen == 0);
    }
}

