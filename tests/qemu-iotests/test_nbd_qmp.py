# SPDX-License-Identifier: GPL-2.0-or-later
"""NBD server and block export management over QMP and the command line:
nbd-server-start/stop, block-export-add/del, query-block-exports,
BLOCK_EXPORT_DELETED, --nbd-server and --export.

The texts below were recorded from qemu-storage-daemon 7.2 (Debian
1:7.2+dfsg-7+deb12u18). Differential tests run the same steps on the
daemon under test (BLKD) and on QSD and compare replies; the tables are
asserted on both, so BLKD=qemu-storage-daemon validates them.
"""

import json
import os
import socket
import subprocess
import time
import unittest

import iotests
import nbdhelpers
from nbdhelpers import ExportedImage, make_image, tmpdir, uri

GE = 'GenericError'
OK = 'ok'


def summarize(reply):
    """A reply as ('ok', return) or (class, desc)."""
    err = iotests.qmp_error(reply)
    return err if err else (OK, reply['return'])


class NbdQmpTest(iotests.DaemonTestCase):

    def setUp(self):
        nbdhelpers.require_qemu_tools()
        self.tmp = tmpdir(self)
        self.img = make_image(os.path.join(self.tmp, 'disk.raw'), 64 << 20)
        self.ro_img = make_image(os.path.join(self.tmp, 'ro.raw'), 1 << 20)

    def start(self, binary, *extra):
        """A daemon with nodes 'disk' (writable) and 'ro' (read-only)."""
        args = nbdhelpers.blockdev_args(self.img)
        args += nbdhelpers.blockdev_args(self.ro_img, node='ro',
                                         read_only=True)
        d, c = self.connect(binary, *args, *extra)
        return d, c

    def sock(self, name):
        return os.path.join(self.tmp, name)

    def server_start(self, c, path, **kwargs):
        return c.cmd('nbd-server-start',
                     addr={'type': 'unix', 'data': {'path': path}}, **kwargs)

    def binaries(self):
        """The daemon under test, then QSD when it is installed and is not
        the daemon under test already."""
        out = [self.blkd]
        if self.have_qsd() and os.path.realpath(self.qsd) != \
                os.path.realpath(self.blkd):
            out.append(self.qsd)
        return out

    def run_steps(self, binary, steps, server=True):
        """Runs (command, args) steps; returns their summarized replies."""
        d, c = self.start(binary)
        if server:
            self.assertQmpSuccess(self.server_start(
                c, self.sock('nbd-%s.sock' % os.path.basename(binary))))
        out = []
        for cmd, args in steps:
            out.append(summarize(c.cmd(cmd, args)))
        d.stop()
        return out

    def assertSameOnAll(self, steps, expected, server=True):
        for binary in self.binaries():
            got = self.run_steps(binary, steps, server)
            self.assertEqual(got, expected, binary)

    # -- errors ---------------------------------------------------------------

    def test_commands_without_server(self):
        self.assertSameOnAll([
            ('nbd-server-stop', {}),
            ('block-export-add', {'type': 'nbd', 'id': 'e0',
                                  'node-name': 'disk'}),
            ('block-export-del', {'id': 'e0'}),
            ('query-block-exports', {}),
        ], [
            (GE, 'NBD server not running'),
            (GE, 'NBD server not running'),
            (GE, "Export 'e0' is not found"),
            (OK, []),
        ], server=False)

    def test_block_export_add_errors(self):
        """Each check, in QEMU's order: the first failing one answers."""
        long = 'x' * 4097
        self.assertSameOnAll([
            ('block-export-add', {'type': 'nbd', 'id': '0e',
                                  'node-name': 'nope'}),
            ('block-export-add', {'type': 'nbd', 'id': 'e#',
                                  'node-name': 'disk'}),
            ('block-export-add', {'type': 'nbd', 'id': 'e0',
                                  'node-name': 'nope', 'writable': True}),
            ('block-export-add', {'type': 'nbd', 'id': 'e0',
                                  'node-name': 'ro', 'writable': True,
                                  'name': long}),
            ('block-export-add', {'type': 'nbd', 'id': 'e0',
                                  'node-name': 'disk', 'name': long}),
            ('block-export-add', {'type': 'nbd', 'id': 'e0',
                                  'node-name': 'disk',
                                  'description': long}),
            ('block-export-add', {'type': 'nbd', 'id': 'e0',
                                  'node-name': 'disk', 'name': 'x' * 4096,
                                  'description': 'y' * 4096}),
            ('block-export-add', {'type': 'nbd', 'id': 'e0',
                                  'node-name': 'ro'}),
            ('block-export-add', {'type': 'nbd', 'id': 'e1',
                                  'node-name': 'disk',
                                  'name': 'x' * 4096}),
            ('block-export-add', {'type': 'nbd', 'id': 'e1',
                                  'node-name': 'disk', 'name': 'ro'}),
            ('block-export-add', {'type': 'nbd', 'id': 'e2',
                                  'node-name': 'ro'}),
            ('block-export-add', {'type': 'nbd', 'id': 'e1',
                                  'node-name': 'disk'}),
            ('block-export-add', {'type': 'nbd', 'id': 'e2',
                                  'node-name': 'disk', 'name': 'other',
                                  'writable': True, 'writethrough': True}),
            ('block-export-add', {'type': 'nbd', 'id': 'e3',
                                  'node-name': 'disk', 'name': ''}),
            ('block-export-add', {'type': 'vhost', 'id': 'e4',
                                  'node-name': 'disk'}),
            ('block-export-add', {'type': 'nbd', 'id': 'e4'}),
        ], [
            (GE, 'Invalid block export id'),
            (GE, 'Invalid block export id'),
            (GE, "Cannot find device='' nor node-name='nope'"),
            (GE, 'Cannot export read-only node as writable'),
            (GE, "export name '%s' too long" % long),
            (GE, "description '%s' too long" % long),
            (OK, {}),
            (GE, "Block export id 'e0' is already in use"),
            (GE, "NBD server already has export named '%s'" % ('x' * 4096)),
            (OK, {}),
            (GE, "NBD server already has export named 'ro'"),
            (GE, "Block export id 'e1' is already in use"),
            (OK, {}),
            (OK, {}),
            (GE, "Parameter 'type' does not accept value 'vhost'"),
            (GE, "Parameter 'node-name' is missing"),
        ])

    def test_query_block_exports_newest_first(self):
        self.assertSameOnAll([
            ('block-export-add', {'type': 'nbd', 'id': 'a', 'node-name': 'disk'}),
            ('block-export-add', {'type': 'nbd', 'id': 'b', 'node-name': 'ro'}),
            ('block-export-add', {'type': 'nbd', 'id': 'c', 'node-name': 'disk',
                                  'name': 'c'}),
            ('query-block-exports', {}),
            ('block-export-del', {'id': 'b'}),
            ('block-export-del', {'id': 'b'}),
            ('query-block-exports', {}),
        ], [
            (OK, {}), (OK, {}), (OK, {}),
            (OK, [{'id': 'c', 'type': 'nbd', 'node-name': 'disk',
                   'shutting-down': False},
                  {'id': 'b', 'type': 'nbd', 'node-name': 'ro',
                   'shutting-down': False},
                  {'id': 'a', 'type': 'nbd', 'node-name': 'disk',
                   'shutting-down': False}]),
            (OK, {}),
            (GE, "Export 'b' is not found"),
            (OK, [{'id': 'c', 'type': 'nbd', 'node-name': 'disk',
                   'shutting-down': False},
                  {'id': 'a', 'type': 'nbd', 'node-name': 'disk',
                   'shutting-down': False}]),
        ])

    def test_server_start_errors(self):
        for binary in self.binaries():
            d, c = self.start(binary)
            bad = self.sock('missing-dir/nbd.sock')
            r = self.server_start(c, bad)
            self.assertQmpError(r, GE, 'Failed to bind socket to %s: No such '
                                'file or directory' % bad)
            self.assertQmpSuccess(self.server_start(c, self.sock('a.sock')))
            self.assertQmpError(self.server_start(c, self.sock('b.sock')), GE,
                                'NBD server already running')
            self.assertQmpError(c.cmd('nbd-server-start', addr={
                'type': 'unix', 'data': {}}), GE,
                "Parameter 'addr.data.path' is missing")
            self.assertQmpSuccess(c.cmd('nbd-server-stop'))
            self.assertFalse(os.path.exists(self.sock('a.sock')), binary)
            self.assertQmpError(c.cmd('nbd-server-stop'), GE,
                                'NBD server not running')
            d.stop()

    # -- life cycle -----------------------------------------------------------

    def test_export_deleted_event_and_id_reuse(self):
        for binary in self.binaries():
            d, c = self.start(binary)
            self.assertQmpSuccess(self.server_start(c, self.sock('s.sock')))
            c.command('block-export-add', type='nbd', id='e0',
                      node_name='disk')
            c.command('block-export-del', id='e0')
            ev = c.wait_event('BLOCK_EXPORT_DELETED')
            self.assertEqual(ev['data'], {'id': 'e0'})
            self.assertEqual(c.command('query-block-exports'), [])
            c.command('block-export-add', type='nbd', id='e0',
                      node_name='disk')
            self.assertEqual(len(c.command('query-block-exports')), 1)
            d.stop()

    def test_export_del_safe_refused_while_client_connected(self):
        nbdhelpers.require_libnbd()
        for binary in self.binaries():
            e = ExportedImage(self, binary, self.img)
            h = e.connect()
            self.assertQmpError(e.qmp.cmd('block-export-del', id='e0'), GE,
                                "export 'e0' still in use")
            self.assertQmpError(e.qmp.cmd('block-export-del', id='e0',
                                          mode='safe'), GE,
                                "export 'e0' still in use")
            self.assertEqual(h.pread(512, 0), b'\0' * 512)
            h.shutdown()
            # The export is free again once the server noticed the client
            # left (both daemons do so asynchronously).
            deadline = time.monotonic() + 10
            while True:
                r = e.qmp.cmd('block-export-del', id='e0')
                if 'error' not in r or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            self.assertQmpSuccess(r)
            e.qmp.wait_event('BLOCK_EXPORT_DELETED')
            e.daemon.stop()

    def test_export_del_right_after_client_left(self):
        """blkd: a client that has hung up is no connection any more, even
        before the server's threads noticed, so block-export-del that
        comes right after it succeeds (qsd races: see above); and the
        command returns once the export is gone, so the bitmap it kept
        busy can be removed at once, as a pull-mode backup program does."""
        nbdhelpers.require_libnbd()
        e = ExportedImage(self, self.blkd, self.img)
        for i in range(20):
            e.qmp.command('block-dirty-bitmap-add', node='disk', name='b0')
            e.qmp.command('block-dirty-bitmap-disable', node='disk',
                          name='b0')
            e.qmp.command('block-export-add', type='nbd', id='bm',
                          node_name='disk', name='bm', bitmaps=['b0'])
            if i:
                e.qmp.command('block-export-add', type='nbd', id='e0',
                              node_name='disk', name='disk', writable=True)
            h = e.connect(contexts=('qemu:dirty-bitmap:b0',))
            self.assertEqual(h.pread(512, 0), b'\0' * 512)
            h2 = nbdhelpers.nbd.NBD()
            h2.connect_uri(nbdhelpers.uri(e.sock, 'bm'))
            self.assertQmpError(e.qmp.cmd('block-export-del', id='e0'), GE,
                                "export 'e0' still in use")
            h.shutdown()
            del h
            self.assertQmpSuccess(e.qmp.cmd('block-export-del', id='e0'))
            self.assertQmpSuccess(e.qmp.cmd('block-export-del', id='bm',
                                            mode='hard'))
            self.assertEqual(e.qmp.command('query-block-exports'), [])
            self.assertQmpSuccess(e.qmp.cmd('block-dirty-bitmap-remove',
                                            node='disk', name='b0'))
            self.assertEqual(
                sorted(e.qmp.wait_event('BLOCK_EXPORT_DELETED')['data']['id']
                       for _ in range(2)), ['bm', 'e0'])
            with self.assertRaises(nbdhelpers.nbd.Error):
                h2.pread(512, 0)
        e.daemon.stop()

    def test_export_del_hard_disconnects_client(self):
        nbdhelpers.require_libnbd()
        for binary in self.binaries():
            e = ExportedImage(self, binary, self.img)
            h = e.connect()
            self.assertQmpSuccess(e.qmp.cmd('block-export-del', id='e0',
                                            mode='hard'))
            ev = e.qmp.wait_event('BLOCK_EXPORT_DELETED')
            self.assertEqual(ev['data'], {'id': 'e0'})
            self.assertEqual(e.qmp.command('query-block-exports'), [])
            with self.assertRaises(nbdhelpers.nbd.Error):
                h.pread(512, 0)
            self.assertQmpError(e.qmp.cmd('block-export-del', id='e0'), GE,
                                "Export 'e0' is not found")
            e.daemon.stop()

    def test_server_stop_deletes_exports_and_disconnects(self):
        nbdhelpers.require_libnbd()
        for binary in self.binaries():
            e = ExportedImage(self, binary, self.img)
            e.qmp.command('block-export-add', type='nbd', id='e1',
                          node_name='disk', name='second')
            h = e.connect()
            self.assertQmpSuccess(e.qmp.cmd('nbd-server-stop'))
            ids = sorted(ev['data']['id'] for ev in
                         [e.qmp.wait_event('BLOCK_EXPORT_DELETED'),
                          e.qmp.wait_event('BLOCK_EXPORT_DELETED')])
            self.assertEqual(ids, ['e0', 'e1'])
            self.assertEqual(e.qmp.command('query-block-exports'), [])
            self.assertFalse(os.path.exists(e.sock))
            with self.assertRaises(nbdhelpers.nbd.Error):
                h.pread(512, 0)
            # and it can start again
            self.assertQmpSuccess(self.server_start(e.qmp, e.sock))
            e.daemon.stop()

    def test_resize_of_exported_node_refused(self):
        for binary in self.binaries():
            e = ExportedImage(self, binary, self.img, writable=False)
            r = e.qmp.cmd('block_resize', node_name='disk', size=128 << 20)
            err = iotests.qmp_error(r)
            self.assertEqual(err[0], GE)
            self.assertIn("Permission conflict on node 'disk': permissions "
                          "'resize' are both required by", err[1])
            if iotests.binary_is_blkd(binary):
                self.assertIn("block export 'e0'", err[1])
            e.qmp.command('block-export-del', id='e0')
            e.qmp.wait_event('BLOCK_EXPORT_DELETED')
            self.assertQmpSuccess(e.qmp.cmd('block_resize', node_name='disk',
                                            size=128 << 20))
            e.daemon.stop()

    def test_blockdev_del_of_exported_node_refused(self):
        for binary in self.binaries():
            e = ExportedImage(self, binary, self.img)
            r = e.qmp.cmd('blockdev-del', node_name='disk')
            err = iotests.qmp_error(r)
            # QSD: "Node disk is in use"; blkd names the user.
            self.assertEqual(err[0], GE)
            self.assertRegex(err[1], r"^Node '?disk'? is in use")
            e.daemon.stop()

    def test_max_connections(self):
        """With max-connections=1 a second client waits in the backlog and
        is served once the first leaves; CAN_MULTI_CONN is then off."""
        nbdhelpers.require_libnbd()
        for binary in self.binaries():
            e = ExportedImage(self, binary, self.img, max_connections=1)
            h = e.connect()
            self.assertFalse(h.can_multi_conn())
            waiting = nbdhelpers.RawNbd(e.sock)
            waiting.s.settimeout(0.5)
            with self.assertRaises(socket.timeout):
                waiting.recv_exact(1)
            h.shutdown()
            waiting.s.settimeout(10)
            self.assertEqual(waiting.greeting() & 1, 1)
            waiting.option(nbdhelpers.OPT_ABORT)
            waiting.close()
            e.daemon.stop()

    def test_multi_conn_without_limit(self):
        nbdhelpers.require_libnbd()
        for binary in self.binaries():
            for writable in (False, True):
                e = ExportedImage(self, binary, self.img, writable=writable)
                h = e.connect()
                self.assertTrue(h.can_multi_conn())
                h.shutdown()
                e.daemon.stop()

    def test_unaligned_image_in_whole_sectors(self):
        """A file of 1000000 bytes is a node of 1000448, whole 512-byte
        sectors as QEMU counts them: the export's size and the nodes'
        virtual-size; the tail past the file reads zeroes, and a write
        there grows the file. A raw window must be whole sectors."""
        nbdhelpers.require_libnbd()
        seen = []
        for binary in self.binaries():
            img = os.path.join(self.tmp, 'odd-%s.raw' % os.path.basename(binary))
            with open(img, 'wb') as f:
                f.truncate(1000000)
            e = ExportedImage(self, binary, img)
            h = e.connect()
            got = [h.get_size(), h.pread(512, 999936) == bytes(512)]
            h.pwrite(b'\x5a' * 512, 999936)
            got.append(h.pread(512, 999936) == b'\x5a' * 512)
            h.shutdown()
            got.append(sorted((n['node-name'], n['image']['virtual-size'])
                              for n in e.qmp.command('query-named-block-nodes')))
            got.append(summarize(e.qmp.cmd('blockdev-add', driver='raw',
                                           node_name='w', file='disk-file',
                                           size=1000)))
            e.daemon.stop()
            got.append(os.path.getsize(img))
            seen.append(got)
        for got in seen:
            self.assertEqual(got, [1000448, True, True,
                                   [('disk', 1000448), ('disk-file', 1000448)],
                                   (GE, 'Specified size is not multiple of 512'),
                                   1000448])

    def test_nbd_client_of_an_unaligned_server(self):
        """The nbd driver over a server whose export is 1000000 bytes
        (nbdkit's memory plugin): the node has whole sectors, 1000448
        bytes; a read across the server's end gets the server's bytes,
        then zeroes; a write there is the server's to refuse."""
        nbdhelpers.require_libnbd()
        nbdkit = iotests.skip_if_missing('nbdkit')
        import nbd
        seen = []
        for binary in self.binaries():
            ksock = os.path.join(self.tmp, 'kit-%s.sock' % os.path.basename(binary))
            kit = subprocess.Popen([nbdkit, '-f', '-U', ksock, 'memory',
                                    'size=1000000'], stderr=subprocess.DEVNULL)
            self.addCleanup(kit.wait)
            self.addCleanup(kit.kill)
            h = nbdhelpers.connect_when_up(ksock, kit)
            h.pwrite(b'\x5a' * 64, 999936)
            h.shutdown()
            sock = os.path.join(self.tmp, 'odd-%s.sock' % os.path.basename(binary))
            d = self.start_daemon(
                binary, '--blockdev', 'driver=nbd,node-name=n,server.type=unix,'
                'server.path=%s' % ksock,
                '--nbd-server', 'addr.type=unix,addr.path=' + sock,
                '--export', 'type=nbd,id=e,node-name=n,name=n,writable=on')
            qmp = d.qmp(negotiate=True)
            c = nbd.NBD()
            c.connect_uri(uri(sock, 'n'))
            got = [c.get_size(), c.pread(512, 999936) == b'\x5a' * 64 + bytes(448),
                   [x['image']['virtual-size']
                    for x in qmp.command('query-named-block-nodes')]]
            try:
                c.pwrite(b'\x11' * 512, 999936)
                got.append('written')
            except nbd.Error as e:
                got.append(e.errno)
            c.shutdown()
            d.stop()
            seen.append(got)
        self.assertEqual(seen[0][:3], [1000448, True, [1000448]])
        for got in seen[1:]:
            self.assertEqual(got, seen[0])

    def test_tcp_server(self):
        nbdhelpers.require_libnbd()
        for binary in self.binaries():
            d, c = self.start(binary)
            port = iotests.free_tcp_port()
            self.assertQmpSuccess(c.cmd('nbd-server-start', addr={
                'type': 'inet', 'data': {'host': '127.0.0.1',
                                         'port': str(port)}}))
            c.command('block-export-add', type='nbd', id='e0',
                      node_name='disk', writable=True)
            h = nbdhelpers.nbd.NBD()
            h.connect_uri('nbd://127.0.0.1:%d/disk' % port)
            h.pwrite(b'\x5a' * 4096, 8192)
            self.assertEqual(h.pread(4096, 8192), b'\x5a' * 4096)
            h.shutdown()
            c.command('nbd-server-stop')
            d.stop()

    # -- command line ---------------------------------------------------------

    def test_command_line_keyval_and_json(self):
        nbdhelpers.require_libnbd()
        for binary in self.binaries():
            for server, export in [
                ('addr.type=unix,addr.path=%s' % self.sock('k.sock'),
                 'nbd,id=e0,node-name=disk,name=n,description=d'),
                (json.dumps({'addr': {'type': 'unix',
                                      'path': self.sock('k.sock')},
                             'max-connections': 4}),
                 json.dumps({'type': 'nbd', 'id': 'e0', 'node-name': 'disk',
                             'name': 'n', 'description': 'd',
                             'writable': True})),
            ]:
                d = self.start_daemon(binary,
                                      *nbdhelpers.blockdev_args(self.img),
                                      '--nbd-server', server,
                                      '--export', export)
                d.wait_socket(self.sock('k.sock'))
                c = d.qmp()
                c.negotiate()
                self.assertEqual(c.command('query-block-exports'), [
                    {'id': 'e0', 'type': 'nbd', 'node-name': 'disk',
                     'shutting-down': False}])
                h = nbdhelpers.nbd.NBD()
                h.connect_uri(uri(self.sock('k.sock'), 'n'))
                self.assertEqual(h.get_export_description(), 'd')
                h.shutdown()
                d.stop()
                # QSD leaves the socket file behind at exit; blkd stops the
                # server and removes it.
                if iotests.binary_is_blkd(binary):
                    self.assertFalse(os.path.exists(self.sock('k.sock')))
                elif os.path.exists(self.sock('k.sock')):
                    os.unlink(self.sock('k.sock'))

    def test_command_line_errors(self):
        cases = [
            (['--export', 'nbd,id=e0,node-name=disk'],
             'NBD server not running'),
            (['--nbd-server', 'addr.type=unix'],
             "Parameter 'addr.path' is missing"),
            (['--nbd-server', 'addr.type=unix,addr.path=%s,max-connections=x'
              % self.sock('c.sock')],
             "Parameter 'max-connections' expects integer"),
            (['--nbd-server', 'addr.type=unix,addr.path=%s,max-connections=-1'
              % self.sock('c.sock')],
             "Parameter 'max-connections' expects uint32_t"),
            (['--nbd-server', 'addr.type=unix,addr.path=%s' % self.sock('c.sock'),
              '--export', 'nbd,id=e0,node-name=nope'],
             "Cannot find device='' nor node-name='nope'"),
            (['--nbd-server', 'addr.type=unix,addr.path=%s' % self.sock('c.sock'),
              '--export', 'nbd,id=e0,node-name=disk',
              '--export', 'nbd,id=e0,node-name=disk'],
             "Block export id 'e0' is already in use"),
        ]
        for binary in self.binaries():
            for args, msg in cases:
                r = iotests.run_daemon(binary,
                                       *nbdhelpers.blockdev_args(self.img),
                                       *args)
                self.assertEqual(r.returncode, 1, (binary, args, r.stderr))
                last = r.stderr.strip().splitlines()[-1]
                self.assertTrue(last.endswith(': ' + msg),
                                (binary, args, last))
                # blkd undoes --nbd-server when a later option fails.
                if iotests.binary_is_blkd(binary):
                    self.assertFalse(os.path.exists(self.sock('c.sock')))
                elif os.path.exists(self.sock('c.sock')):
                    os.unlink(self.sock('c.sock'))

    def test_shutdown_with_busy_clients(self):
        """SIGTERM while clients are connected and writing: the daemon
        exits 0, with every thread and socket cleaned up (ASan checks)."""
        nbdhelpers.require_libnbd()
        e = ExportedImage(self, self.blkd, self.img)
        handles = [e.connect() for _ in range(3)]
        buf = nbdhelpers.nbd.Buffer(1 << 20)
        for h in handles:
            for i in range(8):
                h.aio_pwrite(buf, i << 20)
        e.daemon.stop()
        if iotests.binary_is_blkd(self.blkd):
            self.assertFalse(os.path.exists(e.sock))


if __name__ == '__main__':
    unittest.main()
