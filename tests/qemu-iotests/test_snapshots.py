#!/usr/bin/python3
"""External snapshots: blockdev-snapshot and blockdev-snapshot-sync, as
commands and transaction actions, on blkd and qemu-storage-daemon side by
side; and libvirt's checkpoints across a chain of snapshots (bitmaps stay
with the layer they tracked; a backup since an older checkpoint merges
bitmaps of several layers).

Writes reach the disk through a real NBD client (qemu-io over an export of
the top node, which follows the snapshots); every image is checked with
`qemu-img check` once the daemon is gone, and every restored backup is
compared with the disk as it was when the backup started.
"""
import json
import os
import unittest

import iotests
from test_backup import BackupTestCase, CLUSTER, clusters, count, qemu_io
from test_drive_backup import to_raw

SIZE = 16 << 20


class SnapshotTestCase(BackupTestCase):

    def start_qcow2(self, binary):
        """'disk' is a qcow2 image with data, exported as 'disk' over NBD."""
        iotests.skip_if_missing('qemu-img')
        iotests.skip_if_missing('qemu-io')
        d = iotests.Daemon(self, name=os.path.basename(binary))
        d.base = d.path('base.qcow2')
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', d.base, str(SIZE),
                    check=True)
        iotests.run('qemu-io', '-c', 'write -P 0x11 0 2M', d.base, check=True)
        d.nbd = d.path('nbd.sock')
        d.start(binary,
                '--blockdev', 'driver=file,node-name=basef,filename=' + d.base,
                '--blockdev', 'driver=qcow2,node-name=disk,file=basef',
                '--nbd-server', 'addr.type=unix,addr.path=' + d.nbd,
                '--export', 'nbd,id=e0,node-name=disk,name=disk,writable=on')
        return d, d.qmp(negotiate=True)

    def write(self, d, *cmds):
        args = ['qemu-io', '-f', 'raw']
        for c in cmds:
            args += ['-c', c]
        iotests.run(*args, 'nbd+unix:///disk?socket=' + d.nbd, check=True)

    def disk_now(self, d, name):
        """The disk as the export shows it now (no writer running)."""
        out = d.path(name)
        iotests.run('qemu-img', 'convert', '-f', 'raw', '-O', 'raw',
                    'nbd+unix:///disk?socket=' + d.nbd, out, check=True)
        return out

    def nodes(self, qmp):
        """(node, driver, read-only, backing node's file) per named node."""
        out = []
        for n in qmp.command('query-named-block-nodes', flat=True):
            if not n['node-name'].startswith('#'):
                out.append((n['node-name'], n['drv'], n['ro'],
                            os.path.basename(n['image'].get('backing-filename', ''))))
        return sorted(out)

    def check_images(self, d, *names):
        d.stop()
        for name in names:
            res = iotests.run('qemu-img', 'check', d.path(name))
            self.assertEqual(res.returncode, 0, name + ': ' + res.stdout)


class ErrorsTest(SnapshotTestCase):

    # $DIR: the daemon's directory.
    CASES = [
        ('blockdev-snapshot', {'node': 'nope', 'overlay': 'ov'}),
        ('blockdev-snapshot', {'node': 'disk', 'overlay': 'nope'}),
        ('blockdev-snapshot', {'node': 'disk', 'overlay': 'rawn'}),
        ('blockdev-snapshot', {'node': 'disk', 'overlay': 'disk'}),
        ('blockdev-snapshot', {'node': 'disk', 'overlay': 'basef'}),
        ('blockdev-snapshot', {'node': 'disk', 'overlay': 'withbacking'}),
        ('blockdev-snapshot-sync', {'node-name': 'disk',
                                    'snapshot-file': '$DIR/s.qcow2'}),
        ('blockdev-snapshot-sync', {'snapshot-file': '$DIR/s.qcow2',
                                    'snapshot-node-name': 's'}),
        ('blockdev-snapshot-sync', {'node-name': 'disk', 'format': 'raw',
                                    'snapshot-file': '$DIR/s.qcow2',
                                    'snapshot-node-name': 's'}),
        ('blockdev-snapshot-sync', {'node-name': 'disk',
                                    'snapshot-file': '$DIR/no/such/s.qcow2',
                                    'snapshot-node-name': 's'}),
        ('blockdev-snapshot-sync', {'node-name': 'disk', 'mode': 'existing',
                                    'snapshot-file': '$DIR/missing.qcow2',
                                    'snapshot-node-name': 's'}),
        ('blockdev-snapshot-sync', {'node-name': 'disk',
                                    'snapshot-file': '$DIR/s.qcow2',
                                    'snapshot-node-name': 'rawn'}),
        ('blockdev-snapshot-sync', {'node-name': 'disk', 'mode': 'existing',
                                    'format': 'raw', 'snapshot-file': '$DIR/r.img',
                                    'snapshot-node-name': 's'}),
        ('blockdev-snapshot-sync', {'node-name': 'tgt',
                                    'snapshot-file': '$DIR/s.qcow2',
                                    'snapshot-node-name': 's'}),
        ('blockdev-snapshot-sync', {'node-name': 'cbw',
                                    'snapshot-file': '$DIR/s.qcow2',
                                    'snapshot-node-name': 's'}),
    ]

    def run_errors(self, binary):
        d, qmp = self.start_qcow2(binary)
        p = d.path
        iotests.run('qemu-img', 'create', '-q', '-f', 'raw', p('r.img'),
                    str(SIZE), check=True)
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', p('ov.qcow2'),
                    str(SIZE), check=True)
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', p('wb.qcow2'),
                    str(SIZE), check=True)
        iotests.run('qemu-img', 'create', '-q', '-f', 'raw', p('t.img'),
                    str(SIZE), check=True)
        qmp.command('blockdev-add', driver='raw', node_name='rawn',
                    file={'driver': 'file', 'filename': p('r.img')})
        qmp.command('blockdev-add', driver='qcow2', node_name='withbacking',
                    backing='rawn', file={'driver': 'file', 'filename': p('wb.qcow2')})
        qmp.command('blockdev-add', driver='raw', node_name='tgt',
                    file={'driver': 'file', 'filename': p('t.img')})
        # A backup job keeps its filter and target from being snapshotted.
        qmp.command('blockdev-backup', job_id='j', device='disk', target='tgt',
                    sync='full', speed=1, filter_node_name='cbw')
        got = []
        for cmd, args in self.CASES:
            args = {k: v.replace('$DIR', p('')) for k, v in args.items()}
            reply = qmp.cmd(cmd, args)
            desc = reply['error']['desc'].replace(p(''), '$DIR/')
            got.append((cmd, args.get('snapshot-file', '').replace(p(''), ''),
                        reply['error']['class'], desc))
        qmp.command('job-cancel', id='j')
        self.wait_job(qmp, 'j')
        # Nothing changed: the export still writes to the base image.
        got.append(self.nodes(qmp))
        return got

    def test_errors_match_qsd(self):
        got = self.run_errors(self.blkd)
        self.assertIn(('blockdev-snapshot', '', 'GenericError',
                       'The overlay is already in use'), got)
        if self.have_qsd():
            for mine, ref in zip(got, self.run_errors(self.qsd)):
                self.assertEqual(mine, ref)


class SnapshotSyncTest(SnapshotTestCase):

    def run_sync(self, binary, in_transaction):
        d, qmp = self.start_qcow2(binary)
        qmp.command('block-dirty-bitmap-add', node='disk', name='b0')
        qmp.command('block-dirty-bitmap-add', node='disk', name='p0',
                    persistent=True)
        self.write(d, 'write -P 0x21 1M 64k')
        before = self.disk_now(d, 'before.raw')
        args = {'node-name': 'disk', 'snapshot-file': d.path('s1.qcow2'),
                'snapshot-node-name': 's1'}
        if in_transaction:
            qmp.command('transaction', actions=[
                {'type': 'blockdev-snapshot-sync', 'data': args}])
        else:
            qmp.command('blockdev-snapshot-sync', args)
        nodes = self.nodes(qmp)
        self.write(d, 'write -P 0x22 1M 4k', 'write -P 0x23 8M 128k')
        after = self.disk_now(d, 'after.raw')
        # The old image keeps the disk as it was; the overlay the rest.
        self.assertSameImage(before, to_raw(d.base, d.path('base.raw')))
        self.assertSameImage(after, to_raw(d.path('s1.qcow2'), d.path('s1.raw')))
        # Its bitmap stays with the old layer and records nothing more.
        bitmaps = [(b['name'], b['count']) for b in self.bitmaps(qmp, 'disk')]
        self.assertEqual(self.bitmaps(qmp, 's1'), [])
        exports = qmp.command('query-block-exports')
        self.check_images(d, 'base.qcow2', 's1.qcow2')
        info = json.loads(iotests.run('qemu-img', 'info', '--output=json',
                                      d.path('s1.qcow2'), check=True).stdout)
        # The persistent bitmap was stored when the node went read-only.
        base = json.loads(iotests.run('qemu-img', 'info', '--output=json',
                                      d.base, check=True).stdout)
        return (nodes, bitmaps, [e['node-name'] for e in exports],
                os.path.basename(info['backing-filename']),
                info['backing-filename-format'], info['virtual-size'],
                base['format-specific']['data'].get('bitmaps'))

    def test_command(self):
        got = self.run_sync(self.blkd, False)
        # The old node is read-only now; its file, a node of its own, not.
        self.assertEqual(got[0][:2], [('basef', 'file', False, ''),
                                      ('disk', 'qcow2', True, '')])
        self.assertEqual(got[1], [('p0', CLUSTER), ('b0', CLUSTER)])
        self.assertEqual(got[2:6], (['s1'], 'base.qcow2', 'qcow2', SIZE))
        self.assertEqual(got[6], [{'name': 'p0', 'flags': ['auto'],
                                   'granularity': CLUSTER}])
        if self.have_qsd():
            self.assertEqual(got, self.run_sync(self.qsd, False))

    def test_transaction_action(self):
        got = self.run_sync(self.blkd, True)
        if self.have_qsd():
            self.assertEqual(got, self.run_sync(self.qsd, True))

    def run_aborted(self, binary):
        d, qmp = self.start_qcow2(binary)
        reply = qmp.cmd('transaction', actions=[
            {'type': 'block-dirty-bitmap-add', 'data': {'node': 'disk', 'name': 'b0'}},
            {'type': 'blockdev-snapshot-sync',
             'data': {'node-name': 'disk', 'snapshot-file': d.path('s1.qcow2'),
                      'snapshot-node-name': 's1'}},
            {'type': 'abort', 'data': {}}])
        nodes = self.nodes(qmp)
        self.write(d, 'write -P 0x24 3M 64k')
        now = self.disk_now(d, 'now.raw')
        self.assertSameImage(now, to_raw(d.base, d.path('base.raw')))
        self.check_images(d, 'base.qcow2')
        return reply, nodes, os.path.exists(d.path('s1.qcow2'))

    def test_aborted_transaction_leaves_the_disk_alone(self):
        got = self.run_aborted(self.blkd)
        self.assertEqual(got[1], [('basef', 'file', False, ''),
                                  ('disk', 'qcow2', False, '')])
        if self.have_qsd():
            self.assertEqual(got, self.run_aborted(self.qsd))


class BlockdevSnapshotTest(SnapshotTestCase):

    def run_snapshot(self, binary):
        """The overlay made beforehand and added with "backing": null."""
        d, qmp = self.start_qcow2(binary)
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', d.base,
                    '-F', 'qcow2', d.path('ov.qcow2'), check=True)
        qmp.command('blockdev-add', driver='qcow2', node_name='ov', backing=None,
                    file={'driver': 'file', 'filename': d.path('ov.qcow2')})
        before = self.disk_now(d, 'before.raw')
        qmp.command('blockdev-snapshot', node='disk', overlay='ov')
        self.write(d, 'write -P 0x31 0 64k', 'write -P 0x32 15M 1M')
        after = self.disk_now(d, 'after.raw')
        again = qmp.cmd('blockdev-snapshot', node='disk', overlay='ov')
        nodes = self.nodes(qmp)
        self.assertSameImage(before, to_raw(d.base, d.path('base.raw')))
        self.check_images(d, 'base.qcow2', 'ov.qcow2')
        self.assertSameImage(after, to_raw(d.path('ov.qcow2'), d.path('ov.raw')))
        return nodes, again

    def test_overlay_added_beforehand(self):
        got = self.run_snapshot(self.blkd)
        self.assertEqual(got[1]['error']['desc'],
                         "Node 'disk' is busy: node is used as backing hd of 'ov'")
        if self.have_qsd():
            self.assertEqual(got, self.run_snapshot(self.qsd))


class Checkpoints(SnapshotTestCase):
    """libvirt's checkpoints over a chain of external snapshots.

    T1: bitmap B1 and a full backup, in one transaction.
    T2: checkpoint: B1 disabled, B2 added.
    T3: snapshot S1 (B2 disabled, S1 on top, B3 added on S1, one
        transaction); a backup since T1 merges B1 and B2 (on the base)
        into a temporary bitmap on S1.
    T4: snapshot S2 the same way (B3 disabled, B4 added on S2).
    T5: a backup since T3 merges B3 (on S1) and B4 (on S2); a backup since
        T1 merges all four.
    Each backup goes into a qcow2 image whose backing file is the backup
    it builds on, and restored with qemu-img it equals the disk at its
    time; each bitmap holds exactly the clusters written in its period.
    """

    W = {   # the writes of each period, after T1..T4
        1: ['write -P 0x41 0 64k', 'write -P 0x42 4M 128k'],
        2: ['write -P 0x43 64k 64k', 'write -P 0x44 6M 4k'],
        3: ['write -P 0x45 0 4k', 'write -P 0x46 10M 64k'],
        4: ['write -P 0x47 12M 256k', 'write -P 0x48 4M 64k'],
    }

    def backup_since(self, d, qmp, node, sources, name, backing):
        """A backup of the clusters of @sources into @name over @backing."""
        img = d.path(name)
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', d.path(backing),
                    '-F', 'qcow2', img, check=True)
        qmp.command('transaction', actions=[
            {'type': 'block-dirty-bitmap-add',
             'data': {'node': node, 'name': 'tmp', 'disabled': True}},
            {'type': 'block-dirty-bitmap-merge',
             'data': {'node': node, 'target': 'tmp', 'bitmaps': [
                 {'node': n, 'name': b} for n, b in sources]}}])
        merged = count(self.bitmaps(qmp, node), 'tmp')
        at = self.disk_now(d, name + '.at.raw')
        qmp.command('drive-backup', job_id='j', device=node, target=img,
                    mode='existing', format='qcow2', sync='bitmap', bitmap='tmp',
                    bitmap_mode='never')
        ev = self.wait_job(qmp, 'j')
        self.assertEqual(ev['event'], 'BLOCK_JOB_COMPLETED')
        qmp.command('block-dirty-bitmap-remove', node=node, name='tmp')
        self.assertSameImage(at, to_raw(img, d.path(name + '.raw')))
        return merged

    def checkpoints(self, d, qmp):
        """T1 to T5 on a daemon of start_qcow2(): the counts of the merged
        bitmaps of the backups since T3 and T1."""
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', d.path('full.qcow2'),
                    str(SIZE), check=True)
        out = {}
        # T1
        at1 = self.disk_now(d, 't1.raw')
        qmp.command('transaction', actions=[
            {'type': 'block-dirty-bitmap-add', 'data': {'node': 'disk', 'name': 'B1'}},
            {'type': 'drive-backup', 'data': {
                'job-id': 'j', 'device': 'disk', 'target': d.path('full.qcow2'),
                'mode': 'existing', 'format': 'qcow2', 'sync': 'full'}}])
        self.wait_job(qmp, 'j')
        self.assertSameImage(at1, to_raw(d.path('full.qcow2'), d.path('full.raw')))
        self.write(d, *self.W[1])
        # T2
        qmp.command('transaction', actions=[
            {'type': 'block-dirty-bitmap-disable', 'data': {'node': 'disk', 'name': 'B1'}},
            {'type': 'block-dirty-bitmap-add', 'data': {'node': 'disk', 'name': 'B2'}}])
        self.write(d, *self.W[2])
        # T3
        qmp.command('transaction', actions=[
            {'type': 'block-dirty-bitmap-disable', 'data': {'node': 'disk', 'name': 'B2'}},
            {'type': 'blockdev-snapshot-sync', 'data': {
                'node-name': 'disk', 'snapshot-file': d.path('s1.qcow2'),
                'snapshot-node-name': 's1'}},
            {'type': 'block-dirty-bitmap-add', 'data': {'node': 's1', 'name': 'B3'}}])
        out['t3'] = self.backup_since(d, qmp, 's1', [('disk', 'B1'), ('disk', 'B2')],
                                      'inc3.qcow2', 'full.qcow2')
        self.write(d, *self.W[3])
        # T4
        qmp.command('transaction', actions=[
            {'type': 'block-dirty-bitmap-disable', 'data': {'node': 's1', 'name': 'B3'}},
            {'type': 'blockdev-snapshot-sync', 'data': {
                'node-name': 's1', 'snapshot-file': d.path('s2.qcow2'),
                'snapshot-node-name': 's2'}},
            {'type': 'block-dirty-bitmap-add', 'data': {'node': 's2', 'name': 'B4'}}])
        self.write(d, *self.W[4])
        # T5
        out['t5-since-t3'] = self.backup_since(
            d, qmp, 's2', [('s1', 'B3'), ('s2', 'B4')], 'inc5.qcow2', 'inc3.qcow2')
        out['t5-since-t1'] = self.backup_since(
            d, qmp, 's2', [('disk', 'B1'), ('disk', 'B2'), ('s1', 'B3'), ('s2', 'B4')],
            'diff5.qcow2', 'full.qcow2')
        return out


class CheckpointsAcrossSnapshotsTest(Checkpoints):

    def run_scenario(self, binary):
        d, qmp = self.start_qcow2(binary)
        out = self.checkpoints(d, qmp)
        for node, name in (('disk', 'B1'), ('disk', 'B2'), ('s1', 'B3'), ('s2', 'B4')):
            out[name] = count(self.bitmaps(qmp, node), name)
        out['nodes'] = self.nodes(qmp)
        self.check_images(d, 'base.qcow2', 's1.qcow2', 's2.qcow2', 'full.qcow2',
                          'inc3.qcow2', 'inc5.qcow2', 'diff5.qcow2')
        return out

    def test_t1_to_t5(self):
        got = self.run_scenario(self.blkd)
        model = {i: len(clusters(w)) * CLUSTER for i, w in self.W.items()}
        self.assertEqual([got[b] for b in ('B1', 'B2', 'B3', 'B4')],
                         [model[1], model[2], model[3], model[4]])
        self.assertEqual(got['t3'], len(clusters(self.W[1] + self.W[2])) * CLUSTER)
        self.assertEqual(got['t5-since-t3'],
                         len(clusters(self.W[3] + self.W[4])) * CLUSTER)
        self.assertEqual(got['t5-since-t1'],
                         len(clusters(sum(self.W.values(), []))) * CLUSTER)
        if self.have_qsd():
            self.assertEqual(got, self.run_scenario(self.qsd))


if __name__ == '__main__':
    unittest.main()
