# SPDX-License-Identifier: GPL-2.0-or-later
"""The NBD protocol as blkd's server speaks it, compared with
qemu-storage-daemon 7.2: handshake and options, structured and simple
replies, block status, flags, limits and misbehaving clients.

Each differential test runs the same client steps against an export of
identical images on the daemon under test (BLKD) and on QSD and compares
what came back, down to the bytes of option replies where QEMU's answer
is deterministic. Behaviour where blkd deliberately differs is asserted
on blkd alone.
"""

import errno
import json
import os
import socket
import struct
import unittest

import iotests
import nbdhelpers as nh
from nbdhelpers import ExportedImage, RawNbd

MiB = 1 << 20
SIZE = 64 * MiB
# data at 1 MiB (1 MiB of 0x11) and 8 MiB + 4 KiB (64 KiB of 0x22)
PATTERN = [(0x11, 1 * MiB, 1 * MiB), (0x22, 8 * MiB + 4096, 64 * 1024)]


class NbdProtocolTest(iotests.DaemonTestCase):

    def setUp(self):
        nh.require_qemu_tools()
        nh.require_libnbd()
        self.tmp = nh.tmpdir(self)

    def binaries(self):
        out = [self.blkd]
        if self.have_qsd() and os.path.realpath(self.qsd) != \
                os.path.realpath(self.blkd):
            out.append(self.qsd)
        return out

    def export(self, binary, writable=True, **kwargs):
        """An export 'disk' of a fresh copy of the image, plus 'ro', a
        read-only export of the same node with a description."""
        img = nh.make_image(os.path.join(self.tmp, 'img-%d.raw'
                                         % len(os.listdir(self.tmp))),
                            SIZE, pattern_writes=PATTERN)
        e = ExportedImage(self, binary, img, writable=writable, **kwargs)
        e.qmp.command('block-export-add', type='nbd', id='e1',
                      node_name='disk', name='ro', description='read only')
        e.img = img
        return e

    def on_all(self, fn, **kwargs):
        """fn(export) on every daemon; asserts the results are equal and
        returns the first."""
        results = []
        for binary in self.binaries():
            e = self.export(binary, **kwargs)
            results.append((binary, fn(e)))
            e.daemon.stop()
        for binary, r in results[1:]:
            self.assertEqual(results[0][1], r, '%s vs %s'
                             % (results[0][0], binary))
        return results[0][1]

    # -- handshake and options (libnbd) ---------------------------------------

    def test_export_info(self):
        def info(e):
            out = {}
            for name in ('disk', 'ro'):
                h = nh.nbd.NBD()
                h.set_opt_mode(True)
                h.connect_uri(nh.uri(e.sock, name))
                h.opt_info()
                out[name] = dict(
                    size=h.get_size(), ro=h.is_read_only(),
                    flush=h.can_flush(), fua=h.can_fua(), trim=h.can_trim(),
                    zero=h.can_zero(), fast_zero=h.can_fast_zero(),
                    df=h.can_df(), multi=h.can_multi_conn(),
                    cache=h.can_cache(), rotational=h.is_rotational(),
                    min=h.get_block_size(nh.nbd.SIZE_MINIMUM),
                    pref=h.get_block_size(nh.nbd.SIZE_PREFERRED),
                    max=h.get_block_size(nh.nbd.SIZE_MAXIMUM),
                    desc=h.get_export_description() if name == 'ro' else None)
                h.opt_abort()
            return out
        r = self.on_all(info)
        self.assertEqual(r['disk'], dict(
            size=SIZE, ro=False, flush=True, fua=True, trim=True, zero=True,
            fast_zero=True, df=True, multi=True, cache=True, rotational=False,
            min=1, pref=4096, max=32 * MiB, desc=None))
        self.assertEqual(r['ro'], dict(
            size=SIZE, ro=True, flush=True, fua=True, trim=False, zero=False,
            fast_zero=False, df=True, multi=True, cache=True,
            rotational=False, min=1, pref=4096, max=32 * MiB,
            desc='read only'))

    def test_opt_list_in_order_added(self):
        def lst(e):
            e.qmp.command('block-export-add', type='nbd', id='e2',
                          node_name='disk', name='third')
            h = nh.nbd.NBD()
            h.set_opt_mode(True)
            h.connect_uri(nh.uri(e.sock))
            out = []
            h.opt_list(lambda n, d: out.append((n, d)))
            h.opt_abort()
            return out
        self.assertEqual(self.on_all(lst), [('disk', ''), ('ro', 'read only'),
                                            ('third', '')])

    def test_opt_info_unknown_export(self):
        def go(e):
            h = nh.nbd.NBD()
            h.set_opt_mode(True)
            h.connect_uri(nh.uri(e.sock, 'disk'))
            h.set_export_name('nope')
            with self.assertRaises(nh.nbd.Error) as cm:
                h.opt_info()
            h.set_export_name('disk')
            h.opt_go()
            return cm.exception.errnum, h.get_size()
        self.assertEqual(self.on_all(go), (errno.ENOENT, SIZE))

    def test_list_meta_context_queries(self):
        queries = [[], ['base:'], ['qemu:'], ['base:allocation'], ['x'],
                   ['base:allocationx'], ['qemu:dirty-bitmap:'],
                   ['qemu:allocation-depth'], ['base:allocation', 'base:']]

        def lst(e):
            h = nh.nbd.NBD()
            h.set_opt_mode(True)
            h.connect_uri(nh.uri(e.sock, 'disk'))
            out = []
            for q in queries:
                h.clear_meta_contexts()
                for x in q:
                    h.add_meta_context(x)
                got = []
                n = h.opt_list_meta_context(lambda name: got.append(name))
                out.append((n, got))
            h.opt_abort()
            return out
        r = self.on_all(lst)
        self.assertEqual([n for n, _ in r], [1, 1, 0, 1, 0, 0, 0, 0, 1])

    # -- transmission (libnbd) ---------------------------------------------------

    def test_structured_read_sends_holes(self):
        def rd(e):
            h = e.connect()
            out = []
            for flags in (0, nh.nbd.CMD_FLAG_DF):
                chunks = []
                buf = h.pread_structured(
                    10 * MiB, 0,
                    lambda b, off, st, err: chunks.append((off, len(b), st)),
                    flags=flags)
                out.append((chunks, buf[1 * MiB] if buf else None))
            return out
        r = self.on_all(rd)
        D, H = nh.nbd.READ_DATA, nh.nbd.READ_HOLE
        self.assertEqual(r[0][0][:4], [(0, 4096, D), (4096, 1 * MiB - 4096, H),
                                      (1 * MiB, 1 * MiB, D),
                                      (2 * MiB, 6 * MiB + 4096, H)])
        self.assertEqual(r[1][0], [(0, 10 * MiB, D)])

    def test_block_status_base_allocation(self):
        def bs(e):
            h = e.connect()
            out = []
            for flags, off, length in [(0, 0, SIZE), (0, 512, 3 * MiB),
                                       (nh.nbd.CMD_FLAG_REQ_ONE, 0, SIZE),
                                       (nh.nbd.CMD_FLAG_REQ_ONE, 1 * MiB,
                                        4 * MiB),
                                       (0, SIZE - 1, 1)]:
                got = []
                h.block_status(length, off,
                               lambda m, o, ext, err: got.append((m, o, ext)),
                               flags=flags)
                out.append(got)
            return out
        r = self.on_all(bs)
        # qemu-img create allocates the first 4 KiB of a raw image
        self.assertEqual(r[0][0][2][:8], [4096, 0, 1 * MiB - 4096, 3,
                                          1 * MiB, 0, 6 * MiB + 4096, 3])
        self.assertEqual(r[2], [('base:allocation', 0, [4096, 0])])
        self.assertEqual(r[3], [('base:allocation', 1 * MiB, [1 * MiB, 0])])

    def test_block_status_errors(self):
        def bs(e):
            out = []
            h = e.connect(strict=False)
            for off, length in [(0, 0), (SIZE - 512, 1024), (0, 0xffffffff)]:
                try:
                    h.block_status(length, off, lambda *a: 0)
                    out.append('ok')
                except nh.nbd.Error as err:
                    out.append(err.errnum)
            h2 = e.connect(contexts=(), strict=False)
            try:
                h2.block_status(512, 0, lambda *a: 0)
                out.append('ok')
            except nh.nbd.Error as err:
                out.append(err.errnum)
            return out
        self.assertEqual(self.on_all(bs), [errno.EINVAL] * 4)

    def test_read_only_export_refuses_writes(self):
        def ro(e):
            h = nh.nbd.NBD()
            h.connect_uri(nh.uri(e.sock, 'ro'))
            out = []
            try:
                h.pwrite(b'x' * 512, 0)
            except nh.nbd.Error as err:
                out.append(err.errnum)      # refused by libnbd itself
            h.set_strict_mode(0)
            for op in (lambda: h.pwrite(b'x' * 512, 0),
                       lambda: h.trim(512, 0), lambda: h.zero(512, 0)):
                try:
                    op()
                    out.append('ok')
                except nh.nbd.Error as err:
                    out.append(err.errnum)
            out.append(h.pread(512, 1 * MiB) == b'\x11' * 512)
            return out
        # QEMU 7.2 answers writes to a read-only export with EINVAL.
        self.assertEqual(self.on_all(ro), [errno.EPERM, errno.EINVAL,
                                           errno.EINVAL, errno.EINVAL, True])

    def test_request_limits(self):
        def lim(e):
            out = []
            for structured in (True, False):
                h = e.connect(structured=structured, strict=False)
                for op in (lambda: len(h.pread(MiB * 32 + 1, 0)),
                           lambda: len(h.pread(MiB * 32, 0)),
                           lambda: len(h.pread(0, 0)),
                           lambda: h.pread(512, SIZE),
                           lambda: h.pread(1024, SIZE - 512),
                           lambda: h.pwrite(b'y' * 1024, SIZE - 512),
                           lambda: h.zero(1024, SIZE - 512),
                           lambda: h.trim(1024, SIZE - 512),
                           lambda: h.cache(1 << 20, 0),
                           lambda: h.cache(MiB * 32 + 1, 0),
                           lambda: h.flush()):
                    try:
                        out.append(op())
                    except nh.nbd.Error as err:
                        out.append(err.errnum)
                h.shutdown()
            return out
        r = self.on_all(lim)
        E = errno.EINVAL
        self.assertEqual(r, [E, 32 * MiB, 0, E, E, E, E, E, None, E, None] * 2)

    def test_write_flags(self):
        def wr(e):
            h = e.connect(strict=False)
            out = []
            h.pwrite(b'\x33' * 8192, 0, flags=nh.nbd.CMD_FLAG_FUA)
            out.append(h.pread(8192, 0) == b'\x33' * 8192)
            h.zero(4096, 0, flags=nh.nbd.CMD_FLAG_NO_HOLE)
            h.zero(4096 * 16, 1 * MiB, flags=nh.nbd.CMD_FLAG_FAST_ZERO)
            h.zero(4096, 4096, flags=nh.nbd.CMD_FLAG_FUA |
                   nh.nbd.CMD_FLAG_FAST_ZERO | nh.nbd.CMD_FLAG_NO_HOLE)
            out.append(h.pread(8192, 0) == b'\0' * 8192)
            out.append(h.pread(65536, 1 * MiB) == b'\0' * 65536)
            h.trim(65536, 8 * MiB, flags=nh.nbd.CMD_FLAG_FUA)
            h.flush()
            for flags in (nh.nbd.CMD_FLAG_NO_HOLE, nh.nbd.CMD_FLAG_REQ_ONE):
                try:
                    h.pwrite(b'z', 0, flags=flags)
                    out.append('ok')
                except nh.nbd.Error as err:
                    out.append(err.errnum)
            try:
                h.pread(512, 0, flags=nh.nbd.CMD_FLAG_REQ_ONE)
                out.append('ok')
            except nh.nbd.Error as err:
                out.append(err.errnum)
            out.append(len(h.pread(512, 0, flags=nh.nbd.CMD_FLAG_FUA)))
            return out
        self.assertEqual(self.on_all(wr), [True, True, True, errno.EINVAL,
                                           errno.EINVAL, errno.EINVAL, 512])

    def test_many_requests_in_flight(self):
        """64 requests queued at once (more than the server takes in at a
        time), out-of-order replies matched by handle."""
        e = self.export(self.blkd)
        h = e.connect()
        bufs = []
        for i in range(64):
            b = nh.nbd.Buffer.from_bytearray(bytearray([i]) * 65536)
            h.aio_pwrite(b, i * 65536)
            bufs.append(b)
        while h.aio_in_flight() > 0:
            h.poll(-1)
        reads = [(i, nh.nbd.Buffer(65536)) for i in range(64)]
        cookies = [h.aio_pread(b, i * 65536) for i, b in reads]
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for c in cookies:
            self.assertTrue(h.aio_command_completed(c))
        for i, b in reads:
            self.assertEqual(b.to_bytearray(), bytearray([i]) * 65536)

    # -- I/O errors -----------------------------------------------------------------

    def blkdebug_export(self, binary):
        """'disk' is blkdebug over the image: reads of sector 2048 fail
        with EIO, writes of sector 4096 with ENOSPC, write-zeroes of
        sector 6144 with ENOTSUP (the driver cannot), the first flush with
        EIO."""
        img = nh.make_image(os.path.join(self.tmp, 'dbg-%d.raw'
                                         % len(os.listdir(self.tmp))),
                            SIZE, pattern_writes=PATTERN)
        sock = os.path.join(nh.tmpdir(self), 'nbd.sock')
        node = {'driver': 'blkdebug', 'node-name': 'disk',
                'image': {'driver': 'file', 'filename': img},
                'inject-error': [
                    {'event': 'read_aio', 'iotype': 'read', 'errno': 5,
                     'sector': 2048},
                    {'event': 'write_aio', 'iotype': 'write', 'errno': 28,
                     'sector': 4096},
                    {'event': 'write_aio', 'iotype': 'write-zeroes',
                     'errno': 95, 'sector': 6144},
                    {'event': 'flush_to_disk', 'iotype': 'flush', 'errno': 5,
                     'once': True}]}
        d = self.start_daemon(binary, '--blockdev', json.dumps(node),
                              '--nbd-server',
                              'addr.type=unix,addr.path=%s' % sock,
                              '--export', 'nbd,id=e0,node-name=disk,'
                              'writable=on')
        d.wait_socket(sock)
        return d, sock

    def test_io_errors_reach_the_client(self):
        """Block-layer errors come back with their NBD errno, in simple and
        structured replies; FAST_ZERO turns the driver's ENOTSUP into the
        client's, while a plain write-zeroes falls back to writing zeroes.
        (blkd-only: QEMU's blkdebug fires read/write rules only on events
        that a format driver above it raises.)"""
        self.skip_if_not_blkd()
        d, sock = self.blkdebug_export(self.blkd)
        out = []
        for structured in (False, True):
            h = nh.nbd.NBD()
            h.set_request_structured_replies(structured)
            h.connect_uri(nh.uri(sock, 'disk'))
            if structured:
                first = lambda: h.pread_structured(
                    4096, 1 * MiB, lambda *a: 0, flags=nh.nbd.CMD_FLAG_DF)
            else:
                first = lambda: h.pread(4096, 1 * MiB)
            res = []
            for op in (
                    first,
                    lambda: h.pread(4096, 0),
                    lambda: h.pwrite(b'w' * 4096, 2 * MiB),
                    lambda: h.pwrite(b'w' * 4096, 4 * MiB),
                    lambda: h.zero(4096, 3 * MiB,
                                   flags=nh.nbd.CMD_FLAG_FAST_ZERO),
                    lambda: h.zero(4096, 3 * MiB),
                    lambda: h.pread(4096, 3 * MiB),
                    lambda: h.zero(4096, 5 * MiB,
                                   flags=nh.nbd.CMD_FLAG_FAST_ZERO),
                    lambda: h.flush(),
                    lambda: h.flush()):
                try:
                    r = op()
                    res.append(r if r is None else bytes(r[:1]))
                except nh.nbd.Error as err:
                    res.append(err.errnum)
            out.append(res)
            h.shutdown()
        d.stop()
        common = [errno.EIO, b'\0', errno.ENOSPC, None, errno.ENOTSUP, None,
                  b'\0', None]
        # the flush rule fires once
        self.assertEqual(out, [common + [errno.EIO, None],
                               common + [None, None]])

    def test_sparse_read_error_keeps_connection(self):
        """A failing read inside a structured (sparse) READ is answered
        with an error chunk; QEMU 7.2 drops the connection instead."""
        self.skip_if_not_blkd()
        d, sock = self.blkdebug_export(self.blkd)
        h = nh.nbd.NBD()
        h.connect_uri(nh.uri(sock, 'disk'))
        with self.assertRaises(nh.nbd.Error) as cm:
            h.pread(2 * MiB, 0)
        self.assertEqual(cm.exception.errnum, errno.EIO)
        self.assertEqual(h.pread(4, 2 * MiB), b'\0' * 4)
        h.shutdown()
        d.stop()

    # -- the raw protocol ---------------------------------------------------------

    def raw_on_all(self, fn, **kwargs):
        def wrapped(e):
            with RawNbd(e.sock) as r:
                return fn(r, e)
        return self.on_all(wrapped, **kwargs)

    def test_greeting_and_export_name(self):
        def en(r, e):
            flags = r.greeting(nh.FLAG_C_FIXED_NEWSTYLE)
            r.option(nh.OPT_EXPORT_NAME, b'disk')
            size, tflags = struct.unpack('>QH', r.recv_exact(10))
            pad = r.recv_exact(124)
            r.request(nh.CMD_READ, 1 * MiB, 4, handle=7)
            return flags, size, tflags, pad, r.simple_reply(4)
        flags, size, tflags, pad, reply = self.raw_on_all(en)
        self.assertEqual((flags, size, tflags, pad), (3, SIZE, 0xd6d,
                                                      b'\0' * 124))
        self.assertEqual(reply, (0, 7, b'\x11' * 4))

    def test_option_replies(self):
        """Replies to a series of options, byte for byte."""
        def opts(r, e):
            r.greeting()
            out = []
            r.option(99)
            out.append(r.replies())
            r.option(nh.OPT_STARTTLS)
            out.append(r.replies())
            r.option(nh.OPT_LIST, b'x')
            out.append(r.replies())
            out.append(r.meta(nh.OPT_SET_META_CONTEXT, 'disk',
                              ['base:allocation']))
            r.option(nh.OPT_STRUCTURED_REPLY, b'xy')
            out.append(r.replies())
            out.append(r.structured())
            r.option(nh.OPT_STRUCTURED_REPLY)
            out.append(r.replies())
            out.append(r.meta(nh.OPT_SET_META_CONTEXT, 'nope',
                              ['base:allocation']))
            out.append(r.meta(nh.OPT_LIST_META_CONTEXT, 'disk', []))
            out.append(r.meta(nh.OPT_SET_META_CONTEXT, 'disk',
                              ['base:', 'x' * 5000, 'base:allocation',
                               'qemu:allocation-depth']))
            out.append(r.go('ro', [nh.INFO_NAME, nh.INFO_BLOCK_SIZE],
                            opt=nh.OPT_INFO))
            out.append(r.go('x' * 4097))
            out.append(r.go(b'a\0b'))
            # a name length past the option's end
            r.option(nh.OPT_GO, struct.pack('>I', 100) + b'abc')
            out.append(r.replies())
            out.append(r.go('nope'))
            out.append(r.go('disk', [nh.INFO_DESCRIPTION, 42]))
            r.request(nh.CMD_BLOCK_STATUS, 0, 4 * MiB, handle=3)
            out.append(nh.chunk_summary(r.chunks()))
            return out
        out = self.raw_on_all(opts)
        self.assertEqual(out[0][0][:2], (99, nh.REP_ERR_UNSUP))
        self.assertEqual(out[1][0][:2], (nh.OPT_STARTTLS, nh.REP_ERR_POLICY))
        self.assertEqual(out[2][0][:2], (nh.OPT_LIST, nh.REP_ERR_INVALID))
        self.assertEqual(out[5], True)
        self.assertEqual(out[-1], [('status', 0, [4096, 0, 1 * MiB - 4096, 3,
                                                  1 * MiB, 0, 2 * MiB, 3],
                                    1)])

    def test_transmission_errors(self):
        def tx(r, e):
            r.greeting()
            r.structured()
            r.meta(nh.OPT_SET_META_CONTEXT, 'disk', ['base:allocation'])
            r.go('disk')
            out = []
            for cmd, flags, off, length in [
                    (42, 0, 0, 0),                              # unknown
                    (nh.CMD_FLUSH, nh.CMD_FLAG_DF, 0, 0),       # bad flag
                    (nh.CMD_READ, nh.CMD_FLAG_DF | nh.CMD_FLAG_FUA, 0, 16),
                    (nh.CMD_READ, 0, SIZE - 8, 16),             # past EOF
                    (nh.CMD_BLOCK_STATUS, nh.CMD_FLAG_REQ_ONE, 0, 0),
                    (nh.CMD_CACHE, 0, 0, nh.MAX_BUFFER + 1),
                    (nh.CMD_WRITE_ZEROES, 0, SIZE - 512, 1024),
                    (nh.CMD_TRIM, nh.CMD_FLAG_FUA, 0, 4096)]:
                r.request(cmd, off, length, handle=0x1234, flags=flags)
                out.append(nh.chunk_summary(r.any_reply()))
            return out
        out = self.raw_on_all(tx)
        E = [('error', 22, 1)]      # NBD_EINVAL, DONE
        # success without data: a simple reply, as QEMU sends it
        self.assertEqual(out, [E, E, [('data', 0, 16, 1)], E, E, E, E,
                               [('simple', 0)]])

    def test_meta_context_lapses_on_another_export(self):
        """Contexts chosen with SET on one export do not carry over to
        another chosen with GO; a new SET replaces the old selection."""
        def tx(r, e):
            r.greeting()
            r.structured()
            out = [r.meta(nh.OPT_SET_META_CONTEXT, 'ro', ['base:allocation'])]
            out.append(r.meta(nh.OPT_SET_META_CONTEXT, 'disk', ['base:']))
            r.go('ro')
            r.request(nh.CMD_BLOCK_STATUS, 0, 4096, handle=1)
            out.append(nh.chunk_summary(r.any_reply()))
            return out
        out = self.raw_on_all(tx)
        self.assertEqual([rt for _, rt, _ in out[0]], [nh.REP_META_CONTEXT,
                                                      nh.REP_ACK])
        self.assertEqual(out[1], [(nh.OPT_SET_META_CONTEXT, nh.REP_ACK, b'')])
        self.assertEqual(out[2], [('error', 22, 1)])

    def test_simple_reply_errors_keep_connection(self):
        def tx(r, e):
            r.greeting()
            r.go('disk')
            out = []
            r.request(nh.CMD_READ, 0, nh.MAX_BUFFER + 1, handle=1)
            out.append(r.simple_reply())
            r.request(nh.CMD_READ, SIZE, 1, handle=2)
            out.append(r.simple_reply())
            r.request(nh.CMD_READ, 1 * MiB, 2, handle=3, flags=nh.CMD_FLAG_DF)
            out.append(r.simple_reply())
            r.request(nh.CMD_WRITE, 4096, 3, handle=4, data=b'abc')
            out.append(r.simple_reply())
            r.request(nh.CMD_READ, 4096, 3, handle=5)
            out.append(r.simple_reply(3))
            return out
        self.assertEqual(self.raw_on_all(tx), [
            (22, 1, b''), (22, 2, b''), (22, 3, b''), (0, 4, b''),
            (0, 5, b'abc')])

    def test_misbehaving_clients_dropped(self):
        """Each of these gets its connection closed; the daemon lives on
        and a well-behaved client that was connected all along is fine."""
        def bad(e):
            good = e.connect()
            out = []
            cases = [
                lambda r: r.greeting(0x80),                 # unknown flags
                lambda r: (r.greeting(), r.option(nh.OPT_LIST,
                                                  magic=0x1234)),
                lambda r: (r.greeting(), r.option(nh.OPT_GO,
                                                  length=nh.MAX_BUFFER + 1)),
                lambda r: (r.greeting(0), r.option(nh.OPT_LIST)),
                lambda r: (r.greeting(), r.option(nh.OPT_EXPORT_NAME,
                                                  b'nope')),
                lambda r: (r.greeting(), r.go('disk'),
                           r.request(nh.CMD_READ, magic=0xdeadbeef)),
                lambda r: (r.greeting(), r.send(os.urandom(4096))),
                lambda r: (r.greeting(), r.go('disk'),
                           r.request(nh.CMD_DISC)),
                lambda r: (r.greeting(), r.option(nh.OPT_ABORT)),
            ]
            for case in cases:
                with RawNbd(e.sock) as r:
                    case(r)
                    out.append(r.is_closed())
            # a client that vanishes mid-request
            r = RawNbd(e.sock)
            r.greeting()
            r.go('disk')
            r.request(nh.CMD_WRITE, 0, 65536, data=b'x' * 1000)
            r.close()
            out.append(good.pread(4, 1 * MiB) == b'\x11' * 4)
            good.shutdown()
            return out
        self.assertEqual(self.on_all(bad), [True] * 9 + [True])

    def test_oversize_write_answered_then_dropped(self):
        """blkd answers EINVAL with the right handle and then closes (the
        payload it did not read makes the stream unusable); QEMU 7.2 closes
        after a reply that libnbd cannot match."""
        self.skip_if_not_blkd()
        e = self.export(self.blkd)
        with RawNbd(e.sock) as r:
            r.greeting()
            r.go('disk')
            r.request(nh.CMD_WRITE, 0, nh.MAX_BUFFER + 1, handle=9)
            self.assertEqual(r.simple_reply(), (22, 9, b''))
            self.assertTrue(r.is_closed())

    def test_disc_waits_for_requests_in_flight(self):
        """blkd sends the replies of requests already received before
        closing on NBD_CMD_DISC."""
        self.skip_if_not_blkd()
        e = self.export(self.blkd)
        with RawNbd(e.sock) as r:
            r.greeting()
            r.go('disk')
            for i in range(8):
                r.request(nh.CMD_READ, i * MiB, MiB, handle=i)
            r.request(nh.CMD_DISC)
            handles = sorted(r.simple_reply(MiB)[1] for _ in range(8))
            self.assertEqual(handles, list(range(8)))
            self.assertTrue(r.is_closed())


if __name__ == '__main__':
    unittest.main()
