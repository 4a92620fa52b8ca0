#!/usr/bin/python3
"""drive-backup: the target image made by the daemon itself, on blkd and
qemu-storage-daemon side by side.

For each sync mode the created image (format, size, backing file and its
format, cluster size as `qemu-img info` shows them) and what the job put
in it must be the same on both daemons, and the backup read through its
backing chain must equal the disk when the job started; the refused
requests must give the same error and leave the same files behind; the
transaction action, QEMU's iotest 124 chain of incrementals into images
made beforehand (mode existing, format probed) and image fleecing with
sync none are run the same way.
"""
import hashlib
import json
import os
import unittest

import iotests
from test_backup import BackupTestCase, CLUSTER, SIZE, clusters, count, qemu_io

# What the qcow2 overlay source holds above its base.
BASE_WRITES = ['write -P 0x11 0 4M', 'write -P 0x12 40M 1M']
TOP_WRITES = ['write -P 0x21 2M 1M', 'write -P 0x22 50M 128k']


def image_info(path):
    """The parts of `qemu-img info` that the creating daemon decides."""
    res = iotests.run('qemu-img', 'info', '-U', '--output=json', path, check=True)
    info = json.loads(res.stdout)
    spec = info.get('format-specific', {}).get('data', {})
    return {
        'format': info['format'],
        'virtual-size': info['virtual-size'],
        'cluster-size': info.get('cluster-size'),
        'backing': os.path.basename(info.get('full-backing-filename', '')),
        'backing-format': info.get('backing-filename-format'),
        'compat': spec.get('compat'),
        'refcount-bits': spec.get('refcount-bits'),
    }


def to_raw(path, out):
    """The image as a guest sees it, through its backing chain."""
    iotests.run('qemu-img', 'convert', '-U', '-O', 'raw', path, out, check=True)
    return out


class DriveBackupTestCase(BackupTestCase):

    def start_overlay(self, binary):
        """'src' is a qcow2 overlay over a qcow2 base, exported over NBD."""
        iotests.skip_if_missing('qemu-img')
        iotests.skip_if_missing('qemu-io')
        d = iotests.Daemon(self, name=os.path.basename(binary))
        base, top = d.path('base.qcow2'), d.path('top.qcow2')
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', base, str(SIZE),
                    check=True)
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base,
                    '-F', 'qcow2', top, check=True)
        for path, cmds in ((base, BASE_WRITES), (top, TOP_WRITES)):
            iotests.run('qemu-io', *sum((['-c', c] for c in cmds), []), path,
                        check=True)
        sock = d.path('nbd.sock')
        d.start(binary,
                '--blockdev', 'driver=file,node-name=srcf,filename=' + top,
                '--blockdev', 'driver=qcow2,node-name=src,file=srcf',
                '--nbd-server', 'addr.type=unix,addr.path=' + sock,
                '--export', 'nbd,id=e0,node-name=src,name=src,writable=on')
        d.nbd, d.srcs = sock, [top]
        return d, d.qmp(negotiate=True)

    def snapshot_raw(self, d, name):
        """The source as a guest sees it now (no writer running)."""
        return to_raw(d.srcs[0], d.path(name))

    def end_event(self, qmp, job_id):
        ev = self.wait_job(qmp, job_id)
        return (ev['event'], ev['data'].get('error'), ev['data']['offset'],
                ev['data']['len'])


class SyncModesTest(DriveBackupTestCase):

    # (sync, extra arguments); the bitmap 'b' holds the writes made after
    # the daemon started until the incremental clears it.
    CASES = [
        ('full', {}),
        ('full', {'format': 'raw'}),
        ('top', {}),
        ('bitmap', {'bitmap': 'b', 'bitmap-mode': 'never'}),
        ('incremental', {'bitmap': 'b'}),
        ('none', {}),
    ]

    def run_modes(self, binary):
        d, qmp = self.start_overlay(binary)
        qmp.command('block-dirty-bitmap-add', node='src', name='b')
        qemu_io(d.nbd, 'write -P 0x33 1M 64k', 'write -P 0x34 60M 4k')
        at_start = self.snapshot_raw(d, 'at-start.raw')
        got = []
        for i, (sync, extra) in enumerate(self.CASES):
            tgt = d.path('t%d.img' % i)
            qmp.command('drive-backup', {'job-id': 'j%d' % i, 'device': 'src',
                                         'target': tgt, 'sync': sync, **extra})
            if sync == 'none':
                # Fleecing: overwritten clusters keep their old data in
                # the target; the rest reads through to the source.
                qemu_io(d.nbd, 'write -P 0x55 2M 64k', 'write -P 0x56 30M 4k')
                qmp.command('job-cancel', id='j%d' % i)
            end = self.end_event(qmp, 'j%d' % i)
            info = image_info(tgt)
            raw = to_raw(tgt, d.path('t%d.raw' % i))
            if sync in ('full', 'top', 'none'):
                # Through its backing file, the backup is the disk at start.
                self.assertSameImage(raw, at_start)
            else:
                # Only the bitmap's clusters are in it; nothing below.
                written = clusters(['write 0 1M 64k', 'write 0 60M 4k'])
                self.assertEqual(self.data_clusters(tgt), written)
            with open(raw, 'rb') as f:
                got.append((sync, extra, end, info,
                            hashlib.sha256(f.read()).hexdigest()))
            if sync == 'none':
                at_start = self.snapshot_raw(d, 'after-none.raw')
        d.stop()
        for path in (d.srcs[0], d.path('t0.img')):
            self.assertEqual(iotests.run('qemu-img', 'check', path).returncode, 0)
        return got

    def data_clusters(self, path):
        res = iotests.run('qemu-img', 'map', '-U', '--output=json', path, check=True)
        out = set()
        for ext in json.loads(res.stdout):
            if ext['data']:
                first = ext['start'] // CLUSTER
                out.update(range(first, first + ext['length'] // CLUSTER))
        return out

    def test_targets_match_qsd(self):
        got = self.run_modes(self.blkd)
        by_sync = {(g[0], json.dumps(g[1])): g for g in got}
        full = by_sync[('full', '{}')]
        self.assertEqual(full[3]['format'], 'qcow2')    # the source's format
        self.assertEqual(full[3]['backing'], '')
        self.assertEqual(by_sync[('full', '{"format": "raw"}')][3]['format'], 'raw')
        top = by_sync[('top', '{}')]
        self.assertEqual((top[3]['backing'], top[3]['backing-format']),
                         ('base.qcow2', 'qcow2'))
        none = by_sync[('none', '{}')]
        self.assertEqual((none[3]['backing'], none[3]['backing-format']),
                         ('top.qcow2', 'qcow2'))
        self.assertEqual(none[2][0], 'BLOCK_JOB_CANCELLED')
        if self.have_qsd():
            self.assertEqual(got, self.run_modes(self.qsd))


class RawSourceTest(DriveBackupTestCase):

    def run_raw(self, binary):
        """sync top of a node with no backing file is a full backup."""
        d, qmp = self.start(binary, targets=0)
        at_start = self.snapshot(d, 'at-start.img')
        tgt = d.path('top.img')
        qmp.command('drive-backup', job_id='j', device='src', target=tgt,
                    sync='top')
        end = self.end_event(qmp, 'j')
        self.assertSameImage(at_start, tgt)
        # Into that image again, its format probed (raw: no qcow2 magic).
        qemu_io(d.nbd, 'write -P 0x74 7M 64k')
        again = self.snapshot(d, 'again.img')
        qmp.command('drive-backup', job_id='j', device='src', target=tgt,
                    sync='full', mode='existing')
        self.assertEqual(self.end_event(qmp, 'j'), end)
        self.assertSameImage(again, tgt)
        return end, image_info(tgt)

    def test_top_without_backing_is_full(self):
        got = self.run_raw(self.blkd)
        self.assertEqual(got[0], ('BLOCK_JOB_COMPLETED', None, SIZE, SIZE))
        self.assertEqual(got[1]['format'], 'raw')
        if self.have_qsd():
            self.assertEqual(got, self.run_raw(self.qsd))

    def run_racing(self, binary):
        """A throttled full backup into a new qcow2 image while a client
        writes before and behind the copy point."""
        d, qmp = self.start(binary, targets=0)
        at_start = self.snapshot(d, 'at-start.img')
        tgt = d.path('full.qcow2')
        qmp.command('drive-backup', job_id='j', device='src', target=tgt,
                    sync='full', format='qcow2', speed=4 << 20)
        qemu_io(d.nbd, 'write -P 0x71 0 128k', 'write -P 0x72 20M 1M',
                'write -P 0x73 63M 64k')
        qmp.command('block-job-set-speed', device='j', speed=0)
        end = self.end_event(qmp, 'j')
        self.assertEqual(iotests.run('qemu-img', 'check', tgt).returncode, 0)
        self.assertSameImage(at_start, to_raw(tgt, d.path('full.raw')))
        return end, image_info(tgt)

    def test_writes_during_backup_into_new_qcow2(self):
        got = self.run_racing(self.blkd)
        if self.have_qsd():
            self.assertEqual(got, self.run_racing(self.qsd))


class ErrorsTest(DriveBackupTestCase):

    # $DIR: the daemon's directory. Each: the arguments besides job-id and
    # device, unless given.
    CASES = [
        {'sync': 'incremental', 'target': '$DIR/e.img'},
        {'sync': 'full', 'target': '$DIR/e.img', 'job-id': '0bad'},
        {'sync': 'full', 'target': '$DIR/e.img', 'speed': -1},
        {'sync': 'full', 'target': '$DIR/e.img', 'bitmap': 'nob'},
        {'sync': 'full', 'target': '$DIR/e.img', 'device': 'nodev'},
        {'sync': 'full', 'target': '$DIR/e.img', 'format': 'nope'},
        {'sync': 'full', 'target': '$DIR/e.img', 'format': 'null-co'},
        {'sync': 'full', 'target': '$DIR/no/such/dir.img'},
        {'sync': 'full', 'target': '$DIR/e.img', 'format': 'raw', 'compress': True},
        {'sync': 'full', 'target': '$DIR/e.img', 'filter-node-name': 'src'},
        {'sync': 'full', 'target': '$DIR/missing.img', 'mode': 'existing'},
        {'sync': 'full', 'target': '$DIR/small.qcow2', 'mode': 'existing'},
        {'sync': 'full', 'target': '$DIR/small.raw', 'mode': 'existing',
         'format': 'raw'},
        {'sync': 'none', 'target': '$DIR/e.img', 'format': 'raw'},
        {'sync': 'none', 'target': '$DIR/exist.raw', 'mode': 'existing',
         'format': 'raw'},
        {'sync': 'full', 'target': '$DIR/e.img', 'mode': 'relative'},
    ]

    def run_errors(self, binary):
        d, qmp = self.start_overlay(binary)
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2',
                    d.path('small.qcow2'), '4M', check=True)
        iotests.run('qemu-img', 'create', '-q', '-f', 'raw',
                    d.path('small.raw'), '4M', check=True)
        iotests.run('qemu-img', 'create', '-q', '-f', 'raw',
                    d.path('exist.raw'), str(SIZE), check=True)
        qmp.command('block-dirty-bitmap-add', node='src', name='b')
        got = []
        for case in self.CASES:
            args = {'job-id': 'j', 'device': 'src'}
            args.update({k: v.replace('$DIR', d.path('')) if isinstance(v, str)
                         else v for k, v in case.items()})
            reply = qmp.cmd('drive-backup', args)
            created = os.path.exists(args['target'])
            if created and args['target'].endswith('/e.img'):
                os.unlink(args['target'])
            if 'return' in reply:
                qmp.cmd('job-cancel', id='j')
                self.wait_job(qmp, 'j')
            if 'error' in reply:
                desc = reply['error']['desc'].replace(d.path(''), '$DIR/')
                # The unnamed node's name is random ("#block123").
                desc = ' '.join('#block' if w.startswith("'#block") else w
                                for w in desc.split())
                reply = (reply['error']['class'], desc)
            got.append((case, reply, created))
        self.assertEqual([b['name'] for b in self.bitmaps(qmp, 'src')], ['b'])
        return got

    def test_errors_match_qsd(self):
        got = self.run_errors(self.blkd)
        for case, reply, _ in got:
            with self.subTest(case=case):
                self.assertNotEqual(reply, {'return': {}}, 'all are refused')
        if self.have_qsd():
            for mine, ref in zip(got, self.run_errors(self.qsd)):
                with self.subTest(case=mine[0]):
                    self.assertEqual(mine, ref)


class TransactionTest(DriveBackupTestCase):

    def run_txn(self, binary):
        d, qmp = self.start(binary, targets=0)
        t = d.path
        out = []
        # An anchor: the bitmap and the full backup at the same instant.
        qemu_io(d.nbd, 'write -P 0x61 5M 64k')
        at_full = self.snapshot(d, 'at-full.img')
        out.append(qmp.cmd('transaction', actions=[
            {'type': 'block-dirty-bitmap-add', 'data': {'node': 'src', 'name': 'b'}},
            {'type': 'drive-backup', 'data': {'job-id': 'f', 'device': 'src',
                                              'target': t('full.qcow2'),
                                              'sync': 'full', 'format': 'qcow2'}}]))
        out.append(self.end_event(qmp, 'f'))
        self.assertSameImage(at_full, to_raw(t('full.qcow2'), t('full.raw')))
        # An aborted transaction creates the image (as QEMU) and nothing else.
        qemu_io(d.nbd, 'write -P 0x62 9M 64k', 'write -P 0x63 33M 4k')
        out.append(qmp.cmd('transaction', actions=[
            {'type': 'block-dirty-bitmap-clear', 'data': {'node': 'src', 'name': 'b'}},
            {'type': 'drive-backup', 'data': {'job-id': 'i', 'device': 'src',
                                              'target': t('aborted.qcow2'),
                                              'sync': 'incremental', 'bitmap': 'b',
                                              'format': 'qcow2'}},
            {'type': 'abort', 'data': {}}]))
        out.append(os.path.exists(t('aborted.qcow2')))
        out.append(qmp.command('query-jobs'))
        out.append(count(self.bitmaps(qmp, 'src'), 'b'))
        # Grouped: an incremental into an image made beforehand (mode
        # existing, format probed) with the full backup as its backing.
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', t('full.qcow2'),
                    '-F', 'qcow2', t('inc1.qcow2'), check=True)
        at_inc = self.snapshot(d, 'at-inc.img')
        out.append(qmp.cmd('transaction', actions=[
            {'type': 'drive-backup', 'data': {'job-id': 'i1', 'device': 'src',
                                              'target': t('inc1.qcow2'),
                                              'mode': 'existing',
                                              'sync': 'incremental', 'bitmap': 'b'}}],
            properties={'completion-mode': 'grouped'}))
        out.append(self.end_event(qmp, 'i1'))
        self.assertSameImage(at_inc, to_raw(t('inc1.qcow2'), t('inc1.raw')))
        out.append(count(self.bitmaps(qmp, 'src'), 'b'))
        for name in ('full.qcow2', 'inc1.qcow2'):
            self.assertEqual(iotests.run('qemu-img', 'check', t(name)).returncode, 0)
        return out

    def test_actions_match_qsd(self):
        got = self.run_txn(self.blkd)
        self.assertEqual(got[0], {'return': {}})
        self.assertEqual(got[2]['error']['desc'], 'Transaction aborted using Abort action')
        self.assertEqual(got[4:6], [[], 2 * CLUSTER])     # no job; the bitmap as it was
        self.assertEqual(got[8], 0)
        if self.have_qsd():
            self.assertEqual(got, self.run_txn(self.qsd))


if __name__ == '__main__':
    unittest.main()
