#!/usr/bin/python3
"""Block nodes: blockdev-add errors and node queries against the reference.

The same blockdev-add calls on blkd and qemu-storage-daemon must fail
with the same class (and, where the situation is QEMU's own, the same
text), and query-named-block-nodes must report the same fields, with
the same values where they are not about the process (actual size).
"""
import os
import unittest

import iotests


class BlockdevTest(iotests.DaemonTestCase):

    def images(self, d):
        """A raw image, a qcow2 base and a qcow2 overlay over it."""
        iotests.skip_if_missing('qemu-img')
        raw, base, top = (d.path(n) for n in ('raw.img', 'base.qcow2', 'top.qcow2'))
        iotests.run('qemu-img', 'create', '-f', 'raw', raw, '1M', check=True)
        iotests.run('qemu-img', 'create', '-f', 'qcow2', base, '1M', check=True)
        iotests.run('qemu-img', 'create', '-f', 'qcow2', '-b', base, '-F', 'qcow2',
                    top, check=True)
        return raw, base, top

    def daemons(self):
        self.require_qsd()
        out = []
        for binary in (self.blkd, self.qsd):
            d, qmp = self.connect(binary)
            out.append((d, qmp, self.images(d)))
        return out

    def test_blockdev_add_errors_match(self):
        (bd, bq, bimg), (qd, qq, qimg) = self.daemons()
        cases = [
            lambda img: {'driver': 'file', 'node-name': 'f0', 'filename': img[0]},
            lambda img: {'driver': 'file', 'node-name': 'f0', 'filename': img[0]},
            lambda img: {'driver': 'raw', 'node-name': 'r1', 'file': 'nonexist'},
            lambda img: {'driver': 'file', 'node-name': 'f1',
                         'filename': '/nonexistent/x.img'},
            lambda img: {'driver': 'file', 'node-name': 'f2', 'filename': img[0],
                         'aio': 'native'},
            lambda img: {'driver': 'qcow2', 'node-name': 'q0', 'file': 'f0'},
            lambda img: {'driver': 'bogus', 'node-name': 'x'},
            lambda img: {'node-name': 'x'},
            lambda img: {'driver': 'raw', 'node-name': 'r2',
                         'file': {'driver': 'file', 'filename': img[0]}, 'offset': -1},
            lambda img: {'driver': 'file', 'node-name': 'f3', 'filename': img[0],
                         'force-share': True},
        ]
        for i, case in enumerate(cases):
            with self.subTest(case=i, args=case(bimg)):
                a, b = bq.cmd('blockdev-add', case(bimg)), qq.cmd('blockdev-add', case(qimg))
                self.assertEqual('error' in a, 'error' in b, (a, b))
                if 'error' in a:
                    self.assertEqual(a['error']['class'], b['error']['class'])

    def test_same_error_texts_for_qemus_own_checks(self):
        (bd, bq, bimg), (qd, qq, qimg) = self.daemons()
        for qmp, img in ((bq, bimg), (qq, qimg)):
            qmp.command('blockdev-add', driver='file', node_name='f0', filename=img[0])
        for args in ({'driver': 'raw', 'node-name': 'f0', 'file': 'f0'},
                     {'driver': 'raw', 'node-name': 'r1', 'file': 'nonexist'},
                     {'driver': 'bogus'},
                     {'node-name': 'x'}):
            with self.subTest(args=args):
                self.assertEqual(bq.cmd('blockdev-add', args), qq.cmd('blockdev-add', args))
        self.assertEqual(bq.cmd('blockdev-del', node_name='nope'),
                         qq.cmd('blockdev-del', node_name='nope'))

    def node_infos(self, qmp, img, flat):
        qmp.command('blockdev-add', driver='raw', node_name='raw0',
                    file={'driver': 'file', 'filename': img[0]})
        qmp.command('blockdev-add', driver='qcow2', node_name='top',
                    file={'driver': 'file', 'filename': img[2]})
        return {i['node-name']: i for i in qmp.command('query-named-block-nodes',
                                                       flat=flat)
                if not i['node-name'].startswith('#')}

    def comparable(self, obj, tmpdir):
        """What must agree: all but sizes on disk, with the daemon's
        directory in paths left out."""
        if isinstance(obj, dict):
            return {k: self.comparable(v, tmpdir) for k, v in obj.items()
                    if k != 'actual-size'}
        if isinstance(obj, list):
            return [self.comparable(v, tmpdir) for v in obj]
        if isinstance(obj, str):
            return obj.replace(tmpdir, 'DIR')
        return obj

    def test_query_named_block_nodes_fields_match(self):
        (bd, bq, bimg), (qd, qq, qimg) = self.daemons()
        self.maxDiff = None
        for flat in (True, False):
            b = self.node_infos(bq, bimg, flat)
            q = self.node_infos(qq, qimg, flat)
            for name in ('raw0', 'top'):
                with self.subTest(node=name, flat=flat):
                    self.assertSameShape(b[name], q[name])
                    self.assertEqual(self.comparable(b[name], bd.dir),
                                     self.comparable(q[name], qd.dir))
            for qmp in (bq, qq):
                qmp.command('blockdev-del', node_name='top')
                qmp.command('blockdev-del', node_name='raw0')

    def test_bitmaps_follow_resize_as_in_qemu(self):
        (bd, bq, bimg), (qd, qq, qimg) = self.daemons()
        for qmp, img in ((bq, bimg), (qq, qimg)):
            qmp.command('blockdev-add', driver='file', node_name='f0', filename=img[0])
            qmp.command('block-dirty-bitmap-add', node='f0', name='b', granularity=65536)
            qmp.command('block-dirty-bitmap-add', node='f0', name='fine', granularity=512)
        for size in (4 << 20, (1 << 20) + 4096, 512 * 1024, 8 << 20):
            with self.subTest(size=size):
                self.assertEqual(bq.cmd('block_resize', node_name='f0', size=size),
                                 qq.cmd('block_resize', node_name='f0', size=size))
                states = [[i.get('dirty-bitmaps') for i in qmp.command(
                    'query-named-block-nodes', flat=True) if i['node-name'] == 'f0']
                    for qmp in (bq, qq)]
                self.assertEqual(states[0], states[1])
                for name in ('b', 'fine'):
                    self.assertEqual(
                        bq.command('x-debug-block-dirty-bitmap-sha256', node='f0',
                                   name=name),
                        qq.command('x-debug-block-dirty-bitmap-sha256', node='f0',
                                   name=name))


if __name__ == '__main__':
    unittest.main()
