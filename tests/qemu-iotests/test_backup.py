#!/usr/bin/python3
"""Backups: blockdev-backup on blkd and qemu-storage-daemon side by side.

Writes reach the source through a real NBD client (qemu-io over an export
of the source node), targets are checked with qemu-img compare against a
copy of the disk taken when the job started, and the same steps on the
reference must give the same errors, counts and events.
"""
import itertools
import os
import shutil
import time
import unittest

import iotests

SIZE = 64 << 20
EIO = 5
# blkdebug rules failing every write with EIO, for add_target().
WRITE_ERRORS = [{'event': 'write_aio', 'errno': EIO}]


CLUSTER = 64 * 1024
UNITS = {'': 1, 'k': 1 << 10, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}


def _num(s):
    if s[-1] in UNITS:
        return int(s[:-1]) * UNITS[s[-1]]
    return int(s)


def clusters(cmds):
    """The 64 KiB cluster indexes a list of qemu-io write commands touch."""
    touched = set()
    for cmd in cmds:
        words = cmd.split()
        assert words[0] == 'write', cmd
        off, length = _num(words[-2]), _num(words[-1])
        touched.update(range(off // CLUSTER, (off + length - 1) // CLUSTER + 1))
    return touched


def count(qmp_bitmaps, name='b0'):
    (bm,) = [b for b in qmp_bitmaps if b.get('name') == name]
    return bm['count']


def disk(i):
    """The node (and export) name of source disk i."""
    return 'src%s' % (i or '')


def source_data(i):
    """What start() writes into source disk i by default before the daemon
    opens it: the same places on each disk, in patterns of its own."""
    return ('write -P %d 0 8M' % (0x11 + i), 'write -P %d 20M 1M' % (0x22 + i))


def qemu_io(sock, *cmds, export='src'):
    args = ['qemu-io', '-f', 'raw']
    for c in cmds:
        args += ['-c', c]
    args.append('nbd+unix:///%s?socket=%s' % (export, sock))
    res = iotests.run(*args, check=True)
    return res.stdout


class BackupTestCase(iotests.DaemonTestCase):
    """Source raw images with data, exported over NBD, and raw targets."""

    def start(self, binary, targets=1, extra=(), src_node=True, size=SIZE,
              data=None, sources=1):
        """Source disk i is 'src' (i = 0) or 'src<i>', raw over the file
        node '<name>f' of the image '<name>.img' (its path in d.srcs),
        exported over NBD under its name; each holds the qemu-io writes
        @data, by default source_data(i).  Targets 'tgt<i>' are raw over
        empty images 'tgt<i>.img'; every image has @size bytes.  With
        src_node False only the file nodes are opened: the caller adds the
        sources and their exports once the daemon runs."""
        iotests.skip_if_missing('qemu-img')
        iotests.skip_if_missing('qemu-io')
        d = iotests.Daemon(self, name=os.path.basename(binary))
        args = []
        d.srcs = []
        for i in range(sources):
            name = disk(i)
            src = d.path(name + '.img')
            iotests.run('qemu-img', 'create', '-f', 'raw', src, str(size),
                        check=True)
            writes = source_data(i) if data is None else data
            if writes:
                iotests.run('qemu-io', '-f', 'raw',
                            *[arg for cmd in writes for arg in ('-c', cmd)], src,
                            check=True)
            args += ['--blockdev', 'driver=file,node-name=%sf,filename=%s' % (name, src)]
            if src_node:
                args += ['--blockdev', 'driver=raw,node-name=%s,file=%sf' % (name, name)]
            d.srcs.append(src)
        for i in range(targets):
            tgt = d.path('tgt%d.img' % i)
            iotests.run('qemu-img', 'create', '-f', 'raw', tgt, str(size), check=True)
            args += ['--blockdev', 'driver=file,node-name=tgt%df,filename=%s' % (i, tgt),
                     '--blockdev', 'driver=raw,node-name=tgt%d,file=tgt%df' % (i, i)]
        sock = d.path('nbd.sock')
        args += ['--nbd-server', 'addr.type=unix,addr.path=' + sock]
        if src_node:
            for i in range(sources):
                name = disk(i)
                args += ['--export', 'nbd,id=e%d,node-name=%s,name=%s,writable=on'
                         % (i, name, name)]
        d.start(binary, *args, *extra)
        d.nbd = sock
        d.size = size
        return d, d.qmp(negotiate=True)

    def wait_job(self, qmp, job_id, timeout=60):
        """Waits until the job is gone; returns its BLOCK_JOB_* end event."""
        deadline = time.monotonic() + timeout
        end = None
        while True:
            ev = qmp.wait_event('JOB_STATUS_CHANGE',
                                timeout=max(0.1, deadline - time.monotonic()))
            for name in ('BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'):
                for other in qmp.get_events(name):
                    if other['data']['device'] == job_id:
                        end = other
            if ev['data']['id'] == job_id and ev['data']['status'] == 'null':
                return end

    def job(self, qmp, job_id):
        """The job's query-jobs entry, None once it is gone."""
        for j in qmp.command('query-jobs'):
            if j['id'] == job_id:
                return j
        return None

    def wait_progress(self, qmp, job_id, at_least=1, timeout=20):
        """Waits until the running job has copied @at_least bytes."""
        deadline = time.monotonic() + timeout
        while True:
            j = self.job(qmp, job_id)
            self.assertIsNotNone(j, job_id)
            self.assertEqual(j['status'], 'running')
            if j['current-progress'] >= at_least:
                return j
            self.assertLess(time.monotonic(), deadline, repr(j))
            time.sleep(0.01)

    def add_target(self, d, qmp, name, inject=None, path=None, image=None):
        """A raw target node @name over @image, a blockdev definition, or
        else the raw image file @path (by default a new one, '<name>.img',
        of the disks' size); through blkdebug when there are errors to
        @inject (QEMU raises write_aio from the format above blkdebug, so
        raw is on top)."""
        if image is None:
            if path is None:
                path = d.path(name + '.img')
                iotests.run('qemu-img', 'create', '-f', 'raw', path, str(d.size),
                            check=True)
            image = {'driver': 'file', 'filename': path}
        if inject is not None:
            image = {'driver': 'blkdebug', 'inject-error': inject, 'image': image}
        qmp.command('blockdev-add', driver='raw', node_name=name, file=image)

    def bitmaps(self, qmp, node):
        for info in qmp.command('query-named-block-nodes', flat=True):
            if info['node-name'] == node:
                return info.get('dirty-bitmaps', [])
        return []

    def snapshot(self, d, name, disk=0):
        """A copy of a source image as it is now (no writer running)."""
        path = d.path(name)
        shutil.copyfile(d.srcs[disk], path)
        return path

    def assertSameImage(self, a, b):
        res = iotests.run('qemu-img', 'compare', '-f', 'raw', '-F', 'raw', a, b)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)


API_SYNCS = ['full', 'top', 'none', 'incremental', 'bitmap']
API_BITMAPS = [None, 'bitmap0', 'bitmap404']
API_MODES = [None, 'on-success', 'never', 'always']


class BackupApiTest(BackupTestCase):

    def test_argument_errors_match_qsd(self):
        """QEMU's iotest 257 API matrix: every combination on both daemons."""
        self.require_qsd()
        clients = []
        for binary in (self.blkd, self.qsd):
            _, qmp = self.start(binary)
            qmp.command('block-dirty-bitmap-add', node='src', name='bitmap0')
            clients.append(qmp)
        for sync, bitmap, mode in itertools.product(API_SYNCS, API_BITMAPS, API_MODES):
            args = {'job-id': 'api_job', 'device': 'src', 'target': 'tgt0', 'sync': sync}
            if bitmap:
                args['bitmap'] = bitmap
            if mode:
                args['bitmap-mode'] = mode
            with self.subTest(sync=sync, bitmap=bitmap, mode=mode):
                replies = [qmp.cmd('blockdev-backup', args) for qmp in clients]
                self.assertEqual(replies[0], replies[1])
                if 'return' in replies[0]:
                    for qmp in clients:
                        qmp.cmd('job-cancel', id='api_job')   # it may be done
                        self.wait_job(qmp, 'api_job')
        for args, in [
                ({'job-id': 'j', 'device': 'src', 'target': 'src', 'sync': 'full'},),
                ({'device': 'src', 'target': 'tgt0', 'sync': 'full'},),
                ({'job-id': 'j', 'device': 'nope', 'target': 'tgt0', 'sync': 'full'},),
                ({'job-id': 'j', 'device': 'src', 'target': 'nope', 'sync': 'full'},),
                ({'job-id': '1j', 'device': 'src', 'target': 'tgt0', 'sync': 'full'},),
                ({'job-id': 'j', 'device': 'src', 'target': 'tgt0', 'sync': 'full',
                  'speed': -1},),
                ({'job-id': 'j', 'device': 'src', 'target': 'tgt0', 'sync': 'full',
                  'compress': True},),
                ({'job-id': 'j', 'device': 'src', 'target': 'tgt0', 'sync': 'weird'},)]:
            with self.subTest(args=args):
                self.assertEqual(clients[0].cmd('blockdev-backup', args),
                                 clients[1].cmd('blockdev-backup', args))


class BusyBitmapTest(BackupTestCase):

    def busy_state(self, binary):
        """During a throttled backup: the bitmap refuses changes, and the
        nodes list the job's unnamed bitmaps as QEMU lists them."""
        d, qmp = self.start(binary, targets=2)
        qmp.command('block-dirty-bitmap-add', node='src', name='b')
        qmp.command('block-dirty-bitmap-add', node='src', name='other')
        qmp.command('blockdev-backup', job_id='j', device='src', target='tgt0',
                    sync='full', bitmap='b', bitmap_mode='on-success',
                    speed=1 << 20, filter_node_name='cbw0')
        replies = [qmp.cmd(name, args) for name, args in [
            ('block-dirty-bitmap-remove', {'node': 'src', 'name': 'b'}),
            ('block-dirty-bitmap-clear', {'node': 'src', 'name': 'b'}),
            ('block-dirty-bitmap-enable', {'node': 'src', 'name': 'b'}),
            ('block-dirty-bitmap-disable', {'node': 'src', 'name': 'b'}),
            ('block-dirty-bitmap-merge', {'node': 'src', 'target': 'b',
                                          'bitmaps': ['other']}),
            ('block-dirty-bitmap-merge', {'node': 'src', 'target': 'other',
                                          'bitmaps': ['b']}),
            ('blockdev-backup', {'job-id': 'j2', 'device': 'src', 'target': 'tgt1',
                                 'sync': 'incremental', 'bitmap': 'b'}),
            ('block_resize', {'node-name': 'src', 'size': SIZE * 2}),
            ('blockdev-del', {'node-name': 'tgt0'}),
        ]]
        listed = {}
        for info in qmp.command('query-named-block-nodes', flat=True):
            if info['node-name'] in ('src', 'cbw0'):
                listed[info['node-name']] = [
                    (b.get('name'), b['granularity'], b['recording'], b['busy'])
                    for b in info.get('dirty-bitmaps', [])]
        qmp.command('job-cancel', id='j')
        self.wait_job(qmp, 'j')
        after = [(b['name'], b['busy']) for b in self.bitmaps(qmp, 'src')]
        return replies, listed, after

    def test_busy_bitmap_and_internal_bitmaps_match_qsd(self):
        replies, listed, after = self.busy_state(self.blkd)
        self.assertIn('in use by another operation', replies[0]['error']['desc'])
        # Newest first: the copy bitmap, the successor, then the named ones.
        self.assertEqual([b[0] for b in listed['src']], [None, None, 'other', 'b'])
        self.assertEqual(after, [('other', False), ('b', False)])
        if self.have_qsd():
            ref = self.busy_state(self.qsd)
            for mine, theirs in zip(replies, ref[0]):
                self.assertEqual(mine['error']['class'], theirs['error']['class'])
            # Texts: bitmap errors are QEMU's; permission errors name users
            # in blkd's words (the backup job, the export) and blockdev-del
            # says who holds the node.
            self.assertEqual(replies[:7], ref[0][:7])
            self.assertEqual(listed, ref[1])
            self.assertEqual(after, ref[2])


class BackupChainTest(BackupTestCase):

    def run_chain(self, binary):
        """A full backup, then incrementals after writes: states and counts."""
        d, qmp = self.start(binary, targets=3)
        qmp.command('block-dirty-bitmap-add', node='src', name='b0')
        results = []
        writes = [['write -P 0x33 1M 64k', 'write -P 0x44 30M 4k'],
                  ['write -P 0x55 1M 128k', 'write -z 20M 512k', 'write -P 0x66 63M 1M']]
        for i in range(3):
            if i:
                qemu_io(d.nbd, *writes[i - 1])
                results.append(self.bitmaps(qmp, 'src')[0]['count'])
                # Restore by applying the incremental onto the previous state.
                shutil.copyfile(d.path('tgt%d.img' % (i - 1)), d.path('tgt%d.img' % i))
            at_start = self.snapshot(d, 'at%d.img' % i)
            qmp.command('blockdev-backup', job_id='j%d' % i, device='src',
                        target='tgt%d' % i, sync='full' if i == 0 else 'incremental',
                        bitmap='b0', bitmap_mode='on-success')
            ev = self.wait_job(qmp, 'j%d' % i)
            self.assertEqual(ev['event'], 'BLOCK_JOB_COMPLETED')
            self.assertNotIn('error', ev['data'])
            self.assertEqual(ev['data']['offset'], ev['data']['len'])
            results.append(ev['data']['len'])
            self.assertSameImage(at_start, d.path('tgt%d.img' % i))
        results.append(self.bitmaps(qmp, 'src'))
        return results

    def test_full_then_incrementals_restore_identically(self):
        results = self.run_chain(self.blkd)
        # The incremental lengths are the dirtied 64 KiB clusters.
        self.assertEqual(results[1], 2 * 65536)
        if self.have_qsd():
            self.assertEqual(results, self.run_chain(self.qsd))


class SpeedTest(BackupTestCase):

    def first_chunks(self, binary):
        """Progress of a backup at 256 KiB/s, half a second after its
        first copy, and at its cancel."""
        d, qmp = self.start(binary)
        qmp.command('blockdev-backup', job_id='j', device='src', target='tgt0',
                    sync='full', speed=256 << 10)
        self.wait_progress(qmp, 'j')
        time.sleep(0.5)
        progress = self.job(qmp, 'j')['current-progress']
        qmp.command('job-cancel', id='j')
        return progress, self.wait_job(qmp, 'j')['data']['offset']

    def test_speed_limits_from_the_first_chunk(self):
        # One chunk of 1 MiB goes at once; the next waits 4 s for its turn.
        got = self.first_chunks(self.blkd)
        self.assertEqual(got, (1 << 20, 1 << 20))
        if self.have_qsd():
            self.assertEqual(got, self.first_chunks(self.qsd))


class BitmapModeTest(BackupTestCase):

    def outcome(self, binary, mode, fail):
        """Count of the bitmap after a full backup that succeeds or fails."""
        d, qmp = self.start(binary)
        qmp.command('block-dirty-bitmap-add', node='src', name='b')
        qemu_io(d.nbd, 'write -P 0x77 5M 64k')
        target = 'tgt0'
        if fail:
            self.add_target(d, qmp, 'bad', WRITE_ERRORS, path=d.path('tgt0.img'))
            target = 'bad'
        sync = 'bitmap' if mode == 'never' else 'full'
        qmp.command('blockdev-backup', job_id='j', device='src', target=target,
                    sync=sync, bitmap='b', bitmap_mode=mode)
        ev = self.wait_job(qmp, 'j')
        self.assertEqual('error' in ev['data'], fail)
        (bm,) = self.bitmaps(qmp, 'src')
        self.assertFalse(bm['busy'])
        return bm['count'], ev['data']['offset']

    def test_outcome_per_mode_matches_qsd(self):
        for mode, fail in itertools.product(['on-success', 'never', 'always'],
                                            [False, True]):
            with self.subTest(mode=mode, fail=fail):
                got = self.outcome(self.blkd, mode, fail)
                if mode == 'on-success':
                    # Kept on failure, given up on success.
                    self.assertEqual(got[0], 65536 if fail else 0)
                if mode == 'never':
                    self.assertEqual(got[0], 65536)
                if mode == 'always' and fail:
                    # Everything not copied is dirty now.
                    self.assertEqual(got[0], SIZE - got[1])
                if self.have_qsd():
                    ref = self.outcome(self.qsd, mode, fail)
                    if fail:
                        # How much is copied before the failure stops the
                        # job depends on the copies in flight (QEMU: 64
                        # tasks, blkd: 8 threads); the rule is the same.
                        if mode == 'always':
                            self.assertEqual(ref[0], SIZE - ref[1])
                        else:
                            self.assertEqual(got[0], ref[0])
                    else:
                        self.assertEqual(got, ref)


if __name__ == '__main__':
    unittest.main()
