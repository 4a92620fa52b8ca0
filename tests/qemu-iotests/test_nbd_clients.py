# SPDX-License-Identifier: GPL-2.0-or-later
"""Real NBD clients against blkd's exports: qemu-io, qemu-img convert,
compare and map, nbdinfo --map and nbdcopy, over raw and qcow2 nodes.
Where the output depends on the server (maps), it is compared with
qemu-storage-daemon serving an identical image.
"""

import json
import os
import shutil
import unittest

import iotests
import nbdhelpers as nh
from nbdhelpers import ExportedImage, make_image, qemu_img, qemu_io

MiB = 1 << 20
SIZE = 64 * MiB
PATTERN = [(0x11, 0, 64 * 1024), (0x22, 1 * MiB, 3 * MiB),
           (0x33, 10 * MiB + 512, 4096), (0x44, SIZE - MiB, MiB)]


class NbdClientsTest(iotests.DaemonTestCase):

    def setUp(self):
        nh.require_qemu_tools()
        self.tmp = nh.tmpdir(self)

    def image(self, name, fmt='raw', pattern=PATTERN, size=SIZE,
              backing=None):
        path = os.path.join(self.tmp, name)
        if backing:
            qemu_img('create', '-q', '-f', fmt, '-b', backing, '-F', 'raw',
                     path, str(size))
            if pattern:
                cmds = []
                for p, off, length in pattern:
                    cmds += ['-c', 'write -P 0x%x %d %d' % (p, off, length)]
                rc, out = qemu_io('-f', fmt, *cmds, path)
                self.assertEqual(rc, 0, out)
            return path
        return make_image(path, size, fmt, pattern)

    def check_qemu_io(self, uri, *cmds, read_only=False):
        args = ['-r'] if read_only else []
        for c in cmds:
            args += ['-c', c]
        rc, out = qemu_io('-f', 'raw', *args, uri)
        self.assertEqual(rc, 0, out)
        for bad in ('error', 'failed', 'Pattern verification'):
            self.assertNotIn(bad, out)
        return out

    def io_round_trip(self, fmt):
        img = self.image('rt.' + fmt, fmt)
        e = ExportedImage(self, self.blkd, img, fmt=fmt)
        self.check_qemu_io(
            e.uri,
            'read -P 0x11 0 64k', 'read -P 0x22 1M 3M',
            'read -P 0x33 %d 4096' % (10 * MiB + 512), 'read -P 0 64k 960k',
            'write -P 0x55 5M 1M', 'write -P 0x66 %d 777' % (7 * MiB + 3),
            'write -z 1536k 512k', 'aio_write -P 0x77 20M 256k',
            'aio_write -P 0x78 21M 256k', 'aio_flush',
            'write -f -P 0x79 30M 64k', 'discard 40M 1M', 'flush',
            'read -P 0x55 5M 1M', 'read -P 0x66 %d 777' % (7 * MiB + 3),
            'read -P 0 1536k 512k', 'read -P 0x22 1M 512k',
            'read -P 0x77 20M 256k', 'read -P 0x78 21M 256k',
            'read -P 0x79 30M 64k')
        e.daemon.stop()
        # what the clients wrote is in the image
        rc, out = qemu_io('-f', fmt, '-c', 'read -P 0x55 5M 1M',
                          '-c', 'read -P 0x79 30M 64k', img)
        self.assertNotIn('verification', out)

    def test_qemu_io_raw(self):
        self.io_round_trip('raw')

    def test_qemu_io_qcow2(self):
        self.io_round_trip('qcow2')

    def test_qemu_img_convert_in_and_out(self):
        for fmt in ('raw', 'qcow2'):
            src = self.image('src-%s.raw' % fmt)
            dst = self.image('dst.' + fmt, fmt, pattern=())
            e = ExportedImage(self, self.blkd, dst, fmt=fmt)
            qemu_img('convert', '-n', '-f', 'raw', '-O', 'raw', src, e.uri)
            out = qemu_img('compare', '-f', 'raw', '-F', 'raw', src, e.uri)
            self.assertIn('Images are identical', out)
            back = os.path.join(self.tmp, 'back-%s.raw' % fmt)
            qemu_img('convert', '-f', 'raw', '-O', 'raw', e.uri, back)
            out = qemu_img('compare', '-f', 'raw', '-F', 'raw', src, back)
            self.assertIn('Images are identical', out)
            e.daemon.stop()
            out = qemu_img('compare', '-f', 'raw', '-F', fmt, src, dst)
            self.assertIn('Images are identical', out)

    def binaries(self):
        """The daemon under test, then QSD when installed and not the
        daemon under test already."""
        out = [self.blkd]
        if self.have_qsd() and os.path.realpath(self.qsd) != \
                os.path.realpath(self.blkd):
            out.append(self.qsd)
        return out

    def maps(self, fmt, backing=False):
        """qemu-img map and nbdinfo --map of the same image on each
        daemon."""
        out = []
        for i, binary in enumerate(self.binaries()):
            base = None
            if backing:
                base = self.image('base%d.raw' % i, pattern=[
                    (0x01, 0, 2 * MiB), (0x02, 6 * MiB, 1 * MiB)])
            img = self.image('map%d.%s' % (i, fmt), fmt, backing=base)
            if fmt == 'qcow2':
                rc, o = qemu_io('-f', fmt, '-c', 'write -z 12M 1M',
                                '-c', 'write -z -u 16M 64k', img)
                self.assertEqual(rc, 0, o)
            e = ExportedImage(self, binary, img, fmt=fmt)
            qmap = json.loads(qemu_img('map', '-f', 'raw', '--output=json',
                                       e.uri))
            nmap = iotests.run('nbdinfo', '--map', '--json', e.uri,
                               check=True).stdout
            out.append((qmap, json.loads(nmap)))
            e.daemon.stop()
        for o in out[1:]:
            self.assertEqual(out[0], o)
        return out[0]

    def test_map_raw(self):
        iotests.skip_if_missing('nbdinfo')
        qmap, nmap = self.maps('raw')
        data = [(m['start'], m['length']) for m in qmap if m['data']]
        self.assertIn((1 * MiB, 3 * MiB), data)
        self.assertEqual(nmap[0]['type'], 0)

    def test_map_qcow2_with_backing(self):
        iotests.skip_if_missing('nbdinfo')
        qmap, nmap = self.maps('qcow2', backing=True)
        self.assertTrue(any(m['zero'] and not m['data'] for m in qmap))

    def test_filter_over_an_overlay_reads_its_backing_file(self):
        """Reads and block status pass filters down the backing chain:
        through blkdebug over a qcow2 overlay, the backing file's data
        reads back (not zeroes) and maps as QEMU maps it."""
        iotests.skip_if_missing('nbdinfo')
        maps = []
        for i, binary in enumerate(self.binaries()):
            base = self.image('fbase%d.raw' % i)
            top = self.image('ftop%d.qcow2' % i, 'qcow2',
                             pattern=[(0x55, 5 * MiB, MiB)], backing=base)
            d = iotests.Daemon(self, name='filter%d' % i)
            sock = d.path('nbd.sock')
            d.start(binary, '--blockdev',
                    'driver=qcow2,node-name=top,file.driver=file,'
                    'file.filename=' + top,
                    '--blockdev', 'driver=blkdebug,node-name=dbg,image=top',
                    '--nbd-server', 'addr.type=unix,addr.path=' + sock,
                    '--export', 'type=nbd,id=e0,node-name=dbg,name=dbg')
            d.wait_socket(sock)
            u = nh.uri(sock, 'dbg')
            self.check_qemu_io(u, 'read -P 0x11 0 64k', 'read -P 0x22 1M 3M',
                               'read -P 0x55 5M 1M', read_only=True)
            maps.append(json.loads(iotests.run('nbdinfo', '--map', '--json',
                                               u, check=True).stdout))
            d.stop()
        for m in maps[1:]:
            self.assertEqual(maps[0], m)

    def null_co_maps(self, binary):
        """nbdinfo --map of null-co exports: without read-zeroes, with it,
        and raw over one without."""
        sock = os.path.join(self.tmp, 'null.sock')
        args = ['--blockdev', 'driver=null-co,node-name=n,size=%d' % MiB,
                '--blockdev', 'driver=null-co,node-name=z,size=%d,'
                              'read-zeroes=on' % MiB,
                '--blockdev', 'driver=raw,node-name=r,file=n',
                '--nbd-server', 'addr.type=unix,addr.path=' + sock]
        for node in 'nzr':
            args += ['--export', 'nbd,id=%s,node-name=%s,name=%s'
                     % (node, node, node)]
        d = self.start_daemon(binary, *args)
        d.wait_socket(sock)
        maps = [json.loads(iotests.run('nbdinfo', '--map', '--json',
                                       nh.uri(sock, node), check=True).stdout)
                for node in 'nzr']
        d.stop()
        return maps

    def test_map_null_co_without_read_zeroes_is_no_zero(self):
        """What a read of null-co returns is known only with read-zeroes:
        without, the range is a hole not known to read as zeroes (so a
        backup copies it as data), as QEMU maps it."""
        iotests.skip_if_missing('nbdinfo')
        maps = self.null_co_maps(self.blkd)
        self.assertEqual([[(m['offset'], m['length'], m['type']) for m in e]
                          for e in maps],
                         [[(0, MiB, 1)], [(0, MiB, 3)], [(0, MiB, 1)]])
        if self.have_qsd():
            self.assertEqual(maps, self.null_co_maps(self.qsd))

    def test_nbdcopy_in_and_out(self):
        nbdcopy = iotests.skip_if_missing('nbdcopy')
        src = self.image('src.raw')
        dst = self.image('dst.raw', pattern=())
        e = ExportedImage(self, self.blkd, dst)
        iotests.run(nbdcopy, '--flush', src, e.uri, check=True, timeout=120)
        back = os.path.join(self.tmp, 'back.raw')
        iotests.run(nbdcopy, e.uri, back, check=True, timeout=120)
        self.assertIn('Images are identical',
                      qemu_img('compare', '-f', 'raw', '-F', 'raw', src, back))
        # nbdcopy copies sparsely: the copy back has the source's holes
        self.assertLess(os.stat(back).st_blocks * 512, SIZE // 2)
        e.daemon.stop()
        self.assertIn('Images are identical',
                      qemu_img('compare', '-f', 'raw', '-F', 'raw', src, dst))

    def test_read_only_export_with_tools(self):
        img = self.image('ro.raw')
        e = ExportedImage(self, self.blkd, img, writable=False)
        rc, out = qemu_io('-f', 'raw', '-c', 'write 0 512', e.uri)
        self.assertIn('Could not open image: Permission denied', out)
        self.check_qemu_io(e.uri, 'read -P 0x22 1M 3M', read_only=True)
        r = iotests.run('nbdinfo', '--json', e.uri, check=True)
        info = json.loads(r.stdout)['exports'][0]
        self.assertTrue(info['is_read_only'])
        self.assertFalse(info['can_trim'])


if __name__ == '__main__':
    unittest.main()
