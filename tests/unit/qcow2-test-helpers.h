/*
 * What the qcow2 tests share: a scratch directory, QEMU's tools run in it
 * (qemu-img, qemu-io), image nodes, and checks against the tools.
 */
#ifndef QCOW2_TEST_HELPERS_H
#define QCOW2_TEST_HELPERS_H

#include "block-test-helpers.h"

#define KiB ((int64_t)1024)
#define MiB ((int64_t)1024 * 1024)

/* The scratch directory: commands run and images live there. */
extern char *tmpdir;

/* QEMU's tools, run in tmpdir (block_test_sh()). */
#define sh(out, ...) block_test_sh(tmpdir, out, __VA_ARGS__)
#define SH_OK(...) BLOCK_TEST_SH_OK(tmpdir, __VA_ARGS__)

/* tmpdir/name; g_free it. */
char *path_of(const char *name);
uint8_t *read_file(const char *name, gsize *len);

/* Opens image name as node "q"; extra is more members of the qcow2 object. */
BlockDriverState *open_qcow2(const char *name, bool read_only,
                             const char *extra, Error **errp);
/* Opening image name fails with an error containing text. */
void assert_open_fails(const char *name, bool read_only, const char *extra,
                       const char *text);
BlockBackend *attach(BlockDriverState *bs, bool write);
/* Drops blk and closes node "q". */
void close_node(BlockBackend *blk);

/* Reads the whole image through blkd and compares with qemu-img's raw. */
void assert_reads_like_qemu(const char *name, const char *extra);
/* No errors and no leaks, as `qemu-img check` sees it. */
void assert_check_clean(const char *name);
void assert_same_as_raw(const char *name, const char *raw);

/* g_test_run(), then tmpdir goes (unless QCOW2_TEST_KEEP is set). */
int qcow2_test_run(void);

#endif
