#!/usr/bin/python3
"""Dirty bitmap commands and transactions, blkd against qemu-storage-daemon.

The same QMP steps run on both daemons (null-co nodes, so no data is
needed); replies must have the same class and text, and the bitmaps the
same states, counts and hashes. blkd's documented differences (empty
merge, copy, the action prefix on transaction errors) are tested on blkd
alone.
"""
import itertools
import unittest

import iotests

NODES = ['--blockdev', 'driver=null-co,node-name=n0,size=67108864',
         '--blockdev', 'driver=null-co,node-name=n1,size=67108864',
         '--blockdev', 'driver=null-co,node-name=small,size=1048576']

# Each: a command and arguments that must fail, on a daemon where n0 has
# bitmap "a" (64 KiB), "b" (512 B, disabled) and small has "s".
INVALID = [
    ('block-dirty-bitmap-add', {'node': 'nx', 'name': 'c'}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'a'}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': ''}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'c', 'granularity': 1000}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'c', 'granularity': 256}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'c', 'granularity': 0}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'c', 'granularity': -1}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'c', 'granularity': 4294967296}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'c', 'granularity': '4096'}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'c', 'persistent': True}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'c', 'disabled': 'yes'}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'x' * 1024}),
    ('block-dirty-bitmap-add', {'node': 'n0'}),
    ('block-dirty-bitmap-add', {'name': 'c'}),
    ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'c', 'bogus': 1}),
    ('block-dirty-bitmap-add', {'node': 5, 'name': 'c'}),
    ('block-dirty-bitmap-remove', {'node': 'nx', 'name': 'a'}),
    ('block-dirty-bitmap-remove', {'node': 'n0', 'name': 'zz'}),
    ('block-dirty-bitmap-remove', {'node': 'n0'}),
    ('block-dirty-bitmap-clear', {'node': 'nx', 'name': 'a'}),
    ('block-dirty-bitmap-clear', {'node': 'n0', 'name': 'zz'}),
    ('block-dirty-bitmap-enable', {'node': 'n0', 'name': 'zz'}),
    ('block-dirty-bitmap-disable', {'node': 'nx', 'name': 'a'}),
    ('block-dirty-bitmap-merge', {'node': 'n0', 'target': 'zz', 'bitmaps': ['a']}),
    ('block-dirty-bitmap-merge', {'node': 'n0', 'target': 'a', 'bitmaps': ['zz']}),
    ('block-dirty-bitmap-merge', {'node': 'n0', 'target': 'a',
                                  'bitmaps': ['b', {'node': 'nx', 'name': 'a'}]}),
    ('block-dirty-bitmap-merge', {'node': 'n0', 'target': 'a',
                                  'bitmaps': [{'node': 'small', 'name': 's'}]}),
    ('block-dirty-bitmap-merge', {'node': 'n0', 'target': 'a', 'bitmaps': [5]}),
    ('block-dirty-bitmap-merge', {'node': 'n0', 'target': 'a',
                                  'bitmaps': [{'node': 'n0'}]}),
    ('block-dirty-bitmap-merge', {'node': 'n0', 'target': 'a', 'bitmaps': 'b'}),
    ('x-debug-block-dirty-bitmap-sha256', {'node': 'n0', 'name': 'zz'}),
    ('x-debug-block-dirty-bitmap-sha256', {'node': 'nx', 'name': 'a'}),
]


def bitmap_states(qmp):
    """{node: [bitmap entries]} from query-named-block-nodes."""
    out = {}
    for info in qmp.command('query-named-block-nodes', flat=True):
        out[info['node-name']] = info.get('dirty-bitmaps', [])
    return out


class BitmapDifferentialTest(iotests.DaemonTestCase):

    def daemons(self):
        """A negotiated client per daemon: blkd, then the reference."""
        self.require_qsd()
        clients = []
        for binary in (self.blkd, self.qsd):
            _, qmp = self.connect(binary, *NODES)
            clients.append(qmp)
        return clients

    def setup_bitmaps(self, qmp):
        qmp.command('block-dirty-bitmap-add', node='n0', name='a')
        qmp.command('block-dirty-bitmap-add', node='n0', name='b',
                    granularity=512, disabled=True)
        qmp.command('block-dirty-bitmap-add', node='small', name='s')

    def test_invalid_input_same_class_and_text_and_no_change(self):
        blkd, qsd = self.daemons()
        for qmp in (blkd, qsd):
            self.setup_bitmaps(qmp)
        before = bitmap_states(blkd)
        self.assertEqual(before, bitmap_states(qsd))
        for name, args in INVALID:
            with self.subTest(command=name, args=args):
                a, b = blkd.cmd(name, args), qsd.cmd(name, args)
                self.assertIn('error', a, a)
                self.assertEqual(a['error'], b['error'])
        self.assertEqual(bitmap_states(blkd), before)
        self.assertEqual(bitmap_states(qsd), before)

    def test_states_after_a_sequence_match(self):
        steps = [
            ('block-dirty-bitmap-add', {'node': 'n0', 'name': 'x', 'granularity': 4096}),
            ('block-dirty-bitmap-add', {'node': 'n1', 'name': 'x'}),
            ('block-dirty-bitmap-disable', {'node': 'n0', 'name': 'x'}),
            ('block-dirty-bitmap-merge', {'node': 'n0', 'target': 'x',
                                          'bitmaps': ['a', {'node': 'n1', 'name': 'x'}]}),
            ('block-dirty-bitmap-enable', {'node': 'n0', 'name': 'b'}),
            ('block-dirty-bitmap-clear', {'node': 'n0', 'name': 'a'}),
            ('block-dirty-bitmap-remove', {'node': 'n1', 'name': 'x'}),
            ('block-dirty-bitmap-add', {'node': 'n1', 'name': 'x', 'disabled': True}),
        ]
        blkd, qsd = self.daemons()
        for qmp in (blkd, qsd):
            self.setup_bitmaps(qmp)
        for name, args in steps:
            with self.subTest(command=name, args=args):
                self.assertEqual(blkd.cmd(name, args), qsd.cmd(name, args))
                self.assertEqual(bitmap_states(blkd), bitmap_states(qsd))
        for node, name in (('n0', 'x'), ('n0', 'b'), ('small', 's')):
            self.assertEqual(
                blkd.command('x-debug-block-dirty-bitmap-sha256', node=node, name=name),
                qsd.command('x-debug-block-dirty-bitmap-sha256', node=node, name=name))

    def test_transaction_failure_in_every_position_rolls_back(self):
        good = [
            {'type': 'block-dirty-bitmap-add', 'data': {'node': 'n0', 'name': 'new'}},
            {'type': 'block-dirty-bitmap-clear', 'data': {'node': 'n0', 'name': 'a'}},
            {'type': 'block-dirty-bitmap-disable', 'data': {'node': 'n0', 'name': 'a'}},
            {'type': 'block-dirty-bitmap-enable', 'data': {'node': 'n0', 'name': 'b'}},
            {'type': 'block-dirty-bitmap-merge',
             'data': {'node': 'n0', 'target': 'b', 'bitmaps': ['a']}},
            {'type': 'block-dirty-bitmap-remove', 'data': {'node': 'small', 'name': 's'}},
        ]
        failing = [
            {'type': 'abort', 'data': {}},
            {'type': 'block-dirty-bitmap-clear', 'data': {'node': 'n0', 'name': 'zz'}},
            {'type': 'block-dirty-bitmap-add', 'data': {'node': 'n0', 'name': 'a'}},
        ]
        blkd, qsd = self.daemons()
        for qmp in (blkd, qsd):
            self.setup_bitmaps(qmp)
        before = bitmap_states(blkd)
        self.assertEqual(before, bitmap_states(qsd))
        for bad, pos in itertools.product(failing, range(len(good) + 1)):
            actions = good[:pos] + [bad] + good[pos:]
            with self.subTest(failing=bad['type'], position=pos):
                a = blkd.cmd('transaction', actions=actions)
                b = qsd.cmd('transaction', actions=actions)
                self.assertEqual(a['error']['class'], b['error']['class'])
                # blkd names the action; the message after it is QEMU's.
                self.assertTrue(a['error']['desc'].endswith(b['error']['desc']),
                                (a, b))
                self.assertEqual(bitmap_states(blkd), before)
                self.assertEqual(bitmap_states(qsd), before)
        # And all together they succeed on both.
        self.assertEqual(blkd.cmd('transaction', actions=good),
                         qsd.cmd('transaction', actions=good))
        self.assertEqual(bitmap_states(blkd), bitmap_states(qsd))

    def test_grouped_completion_mode_refused_for_bitmap_actions(self):
        blkd, qsd = self.daemons()
        args = {'actions': [{'type': 'block-dirty-bitmap-add',
                             'data': {'node': 'n0', 'name': 'g'}}],
                'properties': {'completion-mode': 'grouped'}}
        self.assertEqual(blkd.cmd('transaction', args), qsd.cmd('transaction', args))
        self.assertEqual(bitmap_states(blkd), bitmap_states(qsd))

    def test_default_granularity_follows_qemu(self):
        blkd, qsd = self.daemons()
        for qmp in (blkd, qsd):
            qmp.command('block-dirty-bitmap-add', node='n0', name='d')
        self.assertEqual(bitmap_states(blkd), bitmap_states(qsd))


class BitmapBlkdOnlyTest(iotests.DaemonTestCase):

    def setUp(self):
        self.skip_if_not_blkd()
        _, self.qmp = self.connect(self.blkd, *NODES)

    def test_empty_merge_is_a_no_op(self):
        self.qmp.command('block-dirty-bitmap-add', node='n0', name='a')
        self.assertQmpSuccess(self.qmp.cmd('block-dirty-bitmap-merge', node='n0',
                                           target='a', bitmaps=[]))

    def test_copy_to_another_node_with_its_own_settings(self):
        self.qmp.command('block-dirty-bitmap-add', node='n0', name='a')
        self.qmp.command('block-dirty-bitmap-copy', node='n0', name='a',
                         target='c', target_node='n1', granularity=4096,
                         disabled=True)
        (copy,) = bitmap_states(self.qmp)['n1']
        self.assertEqual((copy['name'], copy['granularity'], copy['recording']),
                         ('c', 4096, False))
        self.assertQmpError(self.qmp.cmd('block-dirty-bitmap-copy', node='n0',
                                         name='a', target='c', target_node='n1'),
                            'GenericError', 'Bitmap already exists: c')
        self.assertQmpError(self.qmp.cmd('block-dirty-bitmap-copy', node='n0',
                                         name='a', target='c', target_node='small'),
                            'GenericError',
                            'Bitmaps are of different sizes (destination size is '
                            '1048576, source size is 67108864) and can\'t be merged')

    def test_copy_in_a_transaction_is_undone(self):
        self.qmp.command('block-dirty-bitmap-add', node='n0', name='a')
        reply = self.qmp.cmd('transaction', actions=[
            {'type': 'block-dirty-bitmap-copy',
             'data': {'node': 'n0', 'name': 'a', 'target': 'c'}},
            {'type': 'abort', 'data': {}}])
        self.assertQmpError(reply, 'GenericError',
                            'Transaction aborted using Abort action')
        self.assertEqual([b['name'] for b in bitmap_states(self.qmp)['n0']], ['a'])

    def test_transaction_error_names_the_action(self):
        reply = self.qmp.cmd('transaction', actions=[
            {'type': 'block-dirty-bitmap-add', 'data': {'node': 'n0', 'name': 'a'}},
            {'type': 'block-dirty-bitmap-merge',
             'data': {'node': 'n0', 'target': 'a', 'bitmaps': ['zz']}}])
        self.assertQmpError(reply, 'GenericError',
                            "Action 2 (block-dirty-bitmap-merge) failed: "
                            "Dirty bitmap 'zz' not found")


if __name__ == '__main__':
    unittest.main()
