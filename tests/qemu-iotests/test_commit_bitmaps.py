#!/usr/bin/python3
"""Checkpoints across commits: blkd merges the bitmaps of committed layers
into the base (docs/interop/bitmaps.rst), which QEMU leaves to the user;
so this runs on blkd alone. test_commit.py compares with QEMU what both
do (the base's recording bitmaps count the committed clusters).

After T1..T5 of test_snapshots.py (disk holds B1 and B2, s1 B3, s2 B4,
s2 active):
T6: S1 is committed into disk (an intermediate commit): disk gets B3.
    A backup since T3 merges (disk, B3) and (s2, B4).
T7: s2 is committed into disk (the active commit, completed): disk gets
    B4, recording, and is the disk now.
    Backups since T1 (B1..B4) and since T3 (B3, B4), all on disk.
Each backup, restored with qemu-img over the backup it builds on, equals
the disk when it started; each bitmap holds exactly the clusters of its
period; every image passes qemu-img check.

A bitmap the commit creates on the base is persistent when the committed
layer's was and the base can store it (qcow2 v3), so the base's image
holds it once the daemon quits; on a v2 base it lives in memory only.
"""
import json
import unittest

import iotests
from test_backup import CLUSTER, clusters, count
from test_snapshots import Checkpoints
from test_stream import ChainTestCase


class CheckpointsAcrossCommitsTest(Checkpoints):

    W_MORE = {
        5: ['write -P 0x49 8M 64k', 'write -P 0x4a 10M 4k'],
        6: ['write -P 0x4b 0 128k', 'write -P 0x4c 14M 64k'],
        7: ['write -P 0x4d 6M 64k', 'write -P 0x4e 12M 4k'],
    }

    def size(self, *periods):
        """Bytes of the clusters the writes of those periods touch."""
        writes = sum(({**self.W, **self.W_MORE}[p] for p in periods), [])
        return len(clusters(writes)) * CLUSTER

    def commit(self, qmp, job_id, complete=False, **args):
        qmp.command('block-commit', job_id=job_id, **args)
        if complete:
            qmp.wait_event('BLOCK_JOB_READY')
            qmp.command('job-complete', id=job_id)
        ev = self.wait_job(qmp, job_id)
        self.assertEqual(ev['event'], 'BLOCK_JOB_COMPLETED')
        self.assertNotIn('error', ev['data'])

    def states(self, qmp, node):
        return [(b['name'], b['count'], b['recording'])
                for b in self.bitmaps(qmp, node)]

    def test_checkpoints_survive_commits(self):
        self.skip_if_not_blkd()
        d, qmp = self.start_qcow2(self.blkd)
        self.checkpoints(d, qmp)
        self.write(d, *self.W_MORE[5])
        # T6: s1 leaves the chain; its B3 joins B1 and B2 on disk.
        self.commit(qmp, 'c6', device='s2', top_node='s1', base_node='disk')
        self.assertEqual(self.states(qmp, 'disk'), [
            ('B3', self.size(3), False), ('B2', self.size(2), False),
            ('B1', self.size(1), False)])
        since_t3 = self.backup_since(d, qmp, 's2', [('disk', 'B3'), ('s2', 'B4')],
                                     'inc6.qcow2', 'inc3.qcow2')
        self.assertEqual(since_t3, self.size(3, 4, 5))
        self.write(d, *self.W_MORE[6])
        # T7: disk takes s2's place; B4 goes on recording there.
        self.commit(qmp, 'c7', complete=True, device='s2', base_node='disk')
        self.assertEqual([e['node-name'] for e in qmp.command('query-block-exports')],
                         ['disk'])
        self.write(d, *self.W_MORE[7])
        self.assertEqual(self.states(qmp, 'disk'), [
            ('B4', self.size(4, 5, 6, 7), True), ('B3', self.size(3), False),
            ('B2', self.size(2), False), ('B1', self.size(1), False)])
        since_t1 = self.backup_since(
            d, qmp, 'disk', [('disk', 'B1'), ('disk', 'B2'), ('disk', 'B3'),
                             ('disk', 'B4')], 'diff7.qcow2', 'full.qcow2')
        self.assertEqual(since_t1, self.size(1, 2, 3, 4, 5, 6, 7))
        since_t3 = self.backup_since(d, qmp, 'disk', [('disk', 'B3'), ('disk', 'B4')],
                                     'inc7.qcow2', 'inc3.qcow2')
        self.assertEqual(since_t3, self.size(3, 4, 5, 6, 7))
        self.assertEqual(count(self.bitmaps(qmp, 'disk'), 'B4'),
                         self.size(4, 5, 6, 7))
        self.check_images(d, 'base.qcow2', 's1.qcow2', 's2.qcow2', 'full.qcow2',
                          'inc3.qcow2', 'inc5.qcow2', 'diff5.qcow2',
                          'inc6.qcow2', 'diff7.qcow2', 'inc7.qcow2')


class PersistenceAcrossCommitsTest(ChainTestCase):
    """base <- mid <- top of test_stream.py; 'p' persistent, 'm' not."""

    # What base.qcow2 holds once the daemon quit, made from a v3 layer.
    STORED = [{'name': 'off', 'granularity': CLUSTER, 'flags': []},
              {'name': 'p', 'granularity': CLUSTER, 'flags': ['auto']}]

    def persistence(self, qmp, node):
        (info,) = [n for n in qmp.command('query-named-block-nodes', flat=True)
                   if n['node-name'] == node]
        return [(b['name'], b['persistent']) for b in info['dirty-bitmaps']]

    def commit_and_quit(self, layer, base_opts=None, **args):
        """Bitmaps on layer, a commit into base (an active one completed
        without top_node): the base's bitmaps (name, persistent), then
        what base.qcow2 stores once the daemon quit."""
        self.skip_if_not_blkd()
        d, qmp = self.start_chain(self.blkd, base_opts=base_opts)
        for name, opts in (('p', {'persistent': True}), ('m', {}),
                           ('off', {'persistent': True, 'disabled': True})):
            qmp.command('block-dirty-bitmap-add', node=layer, name=name,
                        **opts)
        qmp.command('block-commit', job_id='c0', device='top',
                    base_node='base', **args)
        if 'top_node' not in args:
            qmp.wait_event('BLOCK_JOB_READY')
            qmp.command('job-complete', id='c0')
        ev = qmp.wait_event('BLOCK_JOB_COMPLETED')
        self.assertNotIn('error', ev['data'])
        held = self.persistence(qmp, 'base')
        d.stop('quit')
        out = iotests.run('qemu-img', 'info', '--output=json',
                          d.path('base.qcow2'), check=True).stdout
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        return held, json.loads(out)['format-specific']['data'].get('bitmaps')

    def test_intermediate_commit_stores_them_in_the_base(self):
        self.assertEqual(self.commit_and_quit('mid', top_node='mid'),
                         ([('off', True), ('m', False), ('p', True)],
                          self.STORED))

    def test_active_commit_stores_them_in_the_base(self):
        self.assertEqual(self.commit_and_quit('top'),
                         ([('off', True), ('m', False), ('p', True)],
                          self.STORED))

    def test_v2_base_keeps_them_in_memory(self):
        self.assertEqual(self.commit_and_quit('top', base_opts='compat=0.10'),
                         ([('off', False), ('m', False), ('p', False)], None))


if __name__ == '__main__':
    unittest.main()
