/*
 * The NBD wire protocol, as the server speaks it (fixed newstyle
 * handshake, structured replies, meta contexts). Every multi-byte field
 * is big-endian on the wire; the structs below show the layout with byte
 * offsets, and are only ever filled and read through nbd_ld*()/nbd_st*(),
 * at the moment bytes come off or go onto the socket.
 *
 * Reference: the NBD protocol document (doc/proto.md of the NBD project)
 * and QEMU 7.2's include/block/nbd.h, whose limits blkd keeps.
 */
#ifndef NBD_NBD_PROTOCOL_H
#define NBD_NBD_PROTOCOL_H

#include <stdint.h>
#include <string.h>

/* ---- limits ------------------------------------------------------------- */

/* Largest READ/WRITE/CACHE payload, and largest option payload. */
#define NBD_MAX_BUFFER_SIZE     (32 * 1024 * 1024)
/* Longest export name, description or meta-context query. */
#define NBD_MAX_STRING_SIZE     4096
/* Requests one client may have in flight (QEMU's MAX_NBD_REQUESTS). */
#define NBD_MAX_REQUESTS        16
/* Most extents in one block-status chunk: 1 MiB of (length, flags). */
#define NBD_MAX_BLOCK_STATUS_EXTENTS (1024 * 1024 / 8)

/* ---- handshake ---------------------------------------------------------- */

/*
 * Server greeting (18 bytes):
 *   [0..7]   "NBDMAGIC"        NBD_INIT_MAGIC
 *   [8..15]  "IHAVEOPT"        NBD_OPTS_MAGIC
 *   [16..17] handshake flags   NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES
 * Client answer: 32-bit client flags (NBD_FLAG_C_*).
 */
#define NBD_INIT_MAGIC          0x4e42444d41474943ULL   /* "NBDMAGIC" */
#define NBD_OPTS_MAGIC          0x49484156454F5054ULL   /* "IHAVEOPT" */
#define NBD_REP_MAGIC           0x0003e889045565a9ULL   /* option replies */
#define NBD_GREETING_SIZE       18

#define NBD_FLAG_FIXED_NEWSTYLE (1 << 0)
#define NBD_FLAG_NO_ZEROES      (1 << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE NBD_FLAG_FIXED_NEWSTYLE
#define NBD_FLAG_C_NO_ZEROES    NBD_FLAG_NO_ZEROES

/*
 * Option request header (16 bytes), followed by length bytes of data:
 *   [0..7] NBD_OPTS_MAGIC  [8..11] option  [12..15] length
 */
#define NBD_OPTION_HEADER_SIZE  16

enum {
    NBD_OPT_EXPORT_NAME = 1,
    NBD_OPT_ABORT = 2,
    NBD_OPT_LIST = 3,
    NBD_OPT_PEEK_EXPORT = 4,
    NBD_OPT_STARTTLS = 5,
    NBD_OPT_INFO = 6,
    NBD_OPT_GO = 7,
    NBD_OPT_STRUCTURED_REPLY = 8,
    NBD_OPT_LIST_META_CONTEXT = 9,
    NBD_OPT_SET_META_CONTEXT = 10,
};

/*
 * Option reply header (20 bytes), followed by length bytes of data:
 *   [0..7] NBD_REP_MAGIC  [8..11] option  [12..15] reply type
 *   [16..19] length
 */
#define NBD_OPTION_REPLY_SIZE   20

#define NBD_REP_ERR(v)          ((UINT32_C(1) << 31) | (v))
enum {
    NBD_REP_ACK = 1,
    NBD_REP_SERVER = 2,         /* LIST: u32 name length, name, description */
    NBD_REP_INFO = 3,           /* INFO/GO: u16 type, then the item */
    NBD_REP_META_CONTEXT = 4,   /* u32 context id, then the name */
};
#define NBD_REP_ERR_UNSUP       NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY      NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID     NBD_REP_ERR(3)
#define NBD_REP_ERR_PLATFORM    NBD_REP_ERR(4)
#define NBD_REP_ERR_TLS_REQD    NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN     NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN    NBD_REP_ERR(7)
#define NBD_REP_ERR_BLOCK_SIZE_REQD NBD_REP_ERR(8)
#define NBD_REP_ERR_TOO_BIG     NBD_REP_ERR(9)

/* NBD_REP_INFO items. */
enum {
    NBD_INFO_EXPORT = 0,        /* u64 size, u16 transmission flags */
    NBD_INFO_NAME = 1,          /* the name */
    NBD_INFO_DESCRIPTION = 2,   /* the description */
    NBD_INFO_BLOCK_SIZE = 3,    /* u32 minimum, preferred, maximum */
};

/* Transmission flags (16 bits, per export; SEND_DF per client). */
#define NBD_FLAG_HAS_FLAGS          (1 << 0)
#define NBD_FLAG_READ_ONLY          (1 << 1)
#define NBD_FLAG_SEND_FLUSH         (1 << 2)
#define NBD_FLAG_SEND_FUA           (1 << 3)
#define NBD_FLAG_ROTATIONAL         (1 << 4)
#define NBD_FLAG_SEND_TRIM          (1 << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1 << 6)
#define NBD_FLAG_SEND_DF            (1 << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1 << 8)
#define NBD_FLAG_SEND_RESIZE        (1 << 9)
#define NBD_FLAG_SEND_CACHE         (1 << 10)
#define NBD_FLAG_SEND_FAST_ZERO     (1 << 11)

/*
 * NBD_OPT_EXPORT_NAME reply: [0..7] size [8..9] transmission flags, then
 * 124 zero bytes unless the client set NBD_FLAG_C_NO_ZEROES.
 */
#define NBD_EXPORT_NAME_REPLY_SIZE  10
#define NBD_EXPORT_NAME_PAD         124

/* ---- transmission ------------------------------------------------------- */

/*
 * Request (28 bytes), followed by length bytes of data for WRITE:
 *   [0..3] NBD_REQUEST_MAGIC  [4..5] command flags  [6..7] type
 *   [8..15] handle  [16..23] offset  [24..27] length
 */
#define NBD_REQUEST_MAGIC       0x25609513
#define NBD_REQUEST_SIZE        28

enum {
    NBD_CMD_READ = 0,
    NBD_CMD_WRITE = 1,
    NBD_CMD_DISC = 2,
    NBD_CMD_FLUSH = 3,
    NBD_CMD_TRIM = 4,
    NBD_CMD_CACHE = 5,
    NBD_CMD_WRITE_ZEROES = 6,
    NBD_CMD_BLOCK_STATUS = 7,
};

#define NBD_CMD_FLAG_FUA        (1 << 0)
#define NBD_CMD_FLAG_NO_HOLE    (1 << 1)
#define NBD_CMD_FLAG_DF         (1 << 2)
#define NBD_CMD_FLAG_REQ_ONE    (1 << 3)
#define NBD_CMD_FLAG_FAST_ZERO  (1 << 4)

/*
 * Simple reply (16 bytes), followed by the data of a successful READ:
 *   [0..3] NBD_SIMPLE_REPLY_MAGIC  [4..7] error  [8..15] handle
 */
#define NBD_SIMPLE_REPLY_MAGIC  0x67446698
#define NBD_SIMPLE_REPLY_SIZE   16

/*
 * Structured reply chunk header (20 bytes), followed by length bytes:
 *   [0..3] NBD_STRUCTURED_REPLY_MAGIC  [4..5] flags  [6..7] type
 *   [8..15] handle  [16..19] length
 */
#define NBD_STRUCTURED_REPLY_MAGIC 0x668e33ef
#define NBD_CHUNK_HEADER_SIZE   20

#define NBD_REPLY_FLAG_DONE     (1 << 0)

#define NBD_REPLY_ERR(v)        ((1 << 15) | (v))
enum {
    NBD_REPLY_TYPE_NONE = 0,
    NBD_REPLY_TYPE_OFFSET_DATA = 1,   /* u64 offset, data */
    NBD_REPLY_TYPE_OFFSET_HOLE = 2,   /* u64 offset, u32 length */
    NBD_REPLY_TYPE_BLOCK_STATUS = 5,  /* u32 context id, (u32 len, flags)* */
    NBD_REPLY_TYPE_ERROR = NBD_REPLY_ERR(1),  /* u32 error, u16 len, message */
    NBD_REPLY_TYPE_ERROR_OFFSET = NBD_REPLY_ERR(2),
};

/* Extent flags: base:allocation's, then qemu:dirty-bitmap:NAME's. */
#define NBD_STATE_HOLE          (1 << 0)
#define NBD_STATE_ZERO          (1 << 1)
#define NBD_STATE_DIRTY         (1 << 0)

/* Error values on the wire (not the host's errno numbers). */
enum {
    NBD_SUCCESS = 0,
    NBD_EPERM = 1,
    NBD_EIO = 5,
    NBD_ENOMEM = 12,
    NBD_EINVAL = 22,
    NBD_ENOSPC = 28,
    NBD_EOVERFLOW = 75,
    NBD_ENOTSUP = 95,
    NBD_ESHUTDOWN = 108,
};

/* ---- big-endian access -------------------------------------------------- */

static inline uint16_t nbd_ld16(const void *p)
{
    const uint8_t *b = p;

    return (uint16_t)(b[0] << 8 | b[1]);
}

static inline uint32_t nbd_ld32(const void *p)
{
    const uint8_t *b = p;

    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
           (uint32_t)b[2] << 8 | b[3];
}

static inline uint64_t nbd_ld64(const void *p)
{
    const uint8_t *b = p;

    return (uint64_t)nbd_ld32(b) << 32 | nbd_ld32(b + 4);
}

static inline void nbd_st16(void *p, uint16_t v)
{
    uint8_t *b = p;

    b[0] = v >> 8;
    b[1] = v;
}

static inline void nbd_st32(void *p, uint32_t v)
{
    uint8_t *b = p;

    b[0] = v >> 24;
    b[1] = v >> 16;
    b[2] = v >> 8;
    b[3] = v;
}

static inline void nbd_st64(void *p, uint64_t v)
{
    nbd_st32(p, v >> 32);
    nbd_st32((uint8_t *)p + 4, (uint32_t)v);
}

#endif
