#!/usr/bin/python3
"""Fleecing through blockdev-add, as QEMU's iotest image-fleecing does it:
a copy-before-write node 'cbw' in front of the disk, its target 'tmp' a
qcow2 image (backed by the disk, or not), a snapshot-access node 'acc'
over it. The guest writes through an NBD export of 'cbw'; the snapshot
is read through an export of 'acc'.

Each case runs the same steps on blkd and on qemu-storage-daemon and
compares what the clients saw (qemu-io's output without its timings,
qemu-img map of the snapshot, QMP replies); the snapshot read through NBD
must be the disk as it was when 'cbw' went in, and the guest must see its
writes. Covered: both kinds of target, the bitmap option, discards of the
snapshot, a snapshot broken by a failed or timed-out copy (blkdebug and a
slow null-co target), snapshot-access over a node that is not a filter,
errors, and a push backup (blockdev-backup from 'acc') while the guest
writes.

QEMU 7.2 has two bugs blkd does not copy. The block status of a range
that starts with clusters the guest wrote over comes from the disk, not
from the target, when clusters not written over follow in the range
(fixed in 8.0 by a4d5224c2c): its answers differ from blkd's where the
target says something else of those clusters than the disk now does (a
hole written over), so the compared guest writes go over data and
blkd's answer for a hole written over is checked alone. A discard of the
snapshot that is not whole clusters fails an assertion (hbitmap_reset)
in qemu-storage-daemon 7.2; blkd takes out the whole clusters in it, as
later QEMU does, checked alone too.
"""
import json
import os
import shutil
import time
import unittest

import iotests
import nbdhelpers
from test_backup import BackupTestCase
from test_drive_backup import to_raw

MiB = 1 << 20
SIZE = 4 * MiB
# The disk before the daemon starts: data and holes.
DATA = ['write -P 0x5d 0 1M', 'write -P 0xd5 2M 1M', 'write -P 0xcd 4032k 64k']
# Guest writes, all over data: a whole cluster, within one, across two,
# and the last cluster.
OVERWRITE = ['write -P 0xab 0 64k', 'write -P 0xad 512k 100k',
             'write -P 0x1d 2080k 64k', 'write -P 0xea 4032k 4k']
# What the snapshot reads back: the old data and the holes.
CHECK = ['read -P 0x5d 0 1M', 'read -P 0 1M 1M', 'read -P 0xd5 2M 1M',
         'read -P 0 3M 960k', 'read -P 0xcd 4032k 64k']
# Written once a bitmap exists on the disk image: the bitmap's clusters.
BITMAP_WRITES = ['write -P 0x77 64k 64k', 'write -P 0x78 1M 128k']
# A slow target: each request takes 3 s.
SLOW = {'driver': 'null-co', 'size': SIZE, 'latency-ns': 3000000000}
SPEED = 256 << 10


def qio(uri, *cmds, read_only=False):
    """qemu-io over NBD: its exit status and output, without timings."""
    args = ['-f', 'raw'] + (['-r'] if read_only else [])
    for c in cmds:
        args += ['-c', c]
    rc, out = nbdhelpers.qemu_io(*args, uri)
    return rc, [line for line in out.splitlines() if ' ops; ' not in line]


def nbd_map(uri):
    """qemu-img map of an NBD export: [start, length, data, zero] runs."""
    res = iotests.run('qemu-img', 'map', '--output=json', '-f', 'raw', uri)
    if res.returncode:
        return res.stderr.strip().splitlines()[-1:]
    return [[e['start'], e['length'], e['data'], e['zero']]
            for e in json.loads(res.stdout)]


def apply_writes(image, out, cmds):
    """A copy of raw @image with the qemu-io writes @cmds made to it."""
    shutil.copyfile(image, out)
    iotests.run('qemu-io', '-f', 'raw', *[a for c in cmds for a in ('-c', c)],
                out, check=True)
    return out


class FleecingTestCase(BackupTestCase):

    def start_fleecing(self, binary, target='backed', cbw=None, acc=None,
                       fleece_writable=False, bitmap=False):
        """The daemon with the qcow2 'disk' holding DATA, the target 'tmp'
        ('backed': a qcow2 image backed by 'disk'; 'plain': one with no
        backing file; else the blockdev definition of its file under a raw
        node), 'cbw' (options @cbw added), 'acc' (options @acc added), and
        the exports 'guest' of 'cbw' (writable) and 'fleece' of 'acc'.
        A callable @target makes that definition from the daemon.
        With @bitmap, the image's bitmap 'b0' holds BITMAP_WRITES. The disk
        at start, as raw, is d.at_start."""
        iotests.skip_if_missing('qemu-img')
        iotests.skip_if_missing('qemu-io')
        d = iotests.Daemon(self, name=os.path.basename(binary))
        disk = d.path('disk.qcow2')
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', disk, str(SIZE),
                    check=True)
        writes = list(DATA)
        if bitmap:
            iotests.run('qemu-io', *[a for c in DATA for a in ('-c', c)], disk,
                        check=True)
            iotests.run('qemu-img', 'bitmap', '--add', disk, 'b0', check=True)
            writes = BITMAP_WRITES
        iotests.run('qemu-io', *[a for c in writes for a in ('-c', c)], disk,
                    check=True)
        d.at_start = to_raw(disk, d.path('at-start.raw'))
        d.nbd = d.path('nbd.sock')
        d.size = SIZE
        d.start(binary,
                '--blockdev', 'driver=file,node-name=disk-file,filename=' + disk,
                '--blockdev', 'driver=qcow2,node-name=disk,file=disk-file',
                '--nbd-server', 'addr.type=unix,addr.path=' + d.nbd)
        qmp = d.qmp(negotiate=True)
        tmp = d.path('tmp.qcow2')
        if target == 'backed':
            iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', disk,
                        '-F', 'qcow2', tmp, check=True)
            qmp.command('blockdev-add', driver='qcow2', node_name='tmp',
                        file={'driver': 'file', 'filename': tmp}, backing='disk')
        elif target == 'plain':
            iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', tmp, str(SIZE),
                        check=True)
            qmp.command('blockdev-add', driver='qcow2', node_name='tmp',
                        file={'driver': 'file', 'filename': tmp})
        else:
            qmp.command('blockdev-add', driver='raw', node_name='tmp',
                        file=target(d) if callable(target) else target)
        qmp.command('blockdev-add', {'driver': 'copy-before-write',
                                     'node-name': 'cbw', 'file': 'disk',
                                     'target': 'tmp', **(cbw or {})})
        qmp.command('blockdev-add', {'driver': 'snapshot-access',
                                     'node-name': 'acc', 'file': 'cbw',
                                     **(acc or {})})
        qmp.command('block-export-add', type='nbd', id='guest', node_name='cbw',
                    name='guest', writable=True)
        qmp.command('block-export-add', type='nbd', id='fleece', node_name='acc',
                    name='fleece', writable=fleece_writable)
        d.guest = nbdhelpers.uri(d.nbd, 'guest')
        d.fleece = nbdhelpers.uri(d.nbd, 'fleece')
        return d, qmp

    def snapshot_raw(self, d, name):
        """The snapshot as the fleecing export reads it."""
        out = d.path(name)
        iotests.run('qemu-img', 'convert', '-f', 'raw', '-O', 'raw', d.fleece,
                    out, check=True)
        return out

    def guest_raw(self, d, name):
        out = d.path(name)
        iotests.run('qemu-img', 'convert', '-f', 'raw', '-O', 'raw', d.guest,
                    out, check=True)
        return out

    def on_both(self, run, *args):
        """run(binary, *args) on blkd, and on qsd if there is one: equal."""
        got = run(self.blkd, *args)
        if self.have_qsd():
            self.assertEqual(got, run(self.qsd, *args))
        return got


class SnapshotTest(FleecingTestCase):

    def run_overwrite(self, binary, target):
        d, qmp = self.start_fleecing(binary, target)
        out = [qio(d.fleece, *CHECK, read_only=True)]
        out.append(qio(d.guest, *OVERWRITE))
        out.append(qio(d.fleece, *CHECK, read_only=True))
        self.assertSameImage(self.snapshot_raw(d, 'snapshot.raw'), d.at_start)
        expected = apply_writes(d.at_start, d.path('expected.raw'), OVERWRITE)
        self.assertSameImage(self.guest_raw(d, 'guest.raw'), expected)
        out.append(nbd_map(d.fleece))
        for name in ('fleece', 'guest'):
            qmp.command('block-export-del', id=name)
        for node in ('acc', 'cbw', 'tmp'):
            qmp.command('blockdev-del', node_name=node)
        d.stop()
        # What the guest wrote reached the disk.
        self.assertSameImage(to_raw(d.path('disk.qcow2'), d.path('after.raw')),
                             expected)
        return out

    def test_backed_target_keeps_old_data(self):
        out = self.on_both(self.run_overwrite, 'backed')
        self.assertEqual(out[0], out[2])
        self.assertEqual(out[0][0], 0)

    def test_plain_target_keeps_old_data(self):
        out = self.on_both(self.run_overwrite, 'plain')
        self.assertEqual(out[0], out[2])
        self.assertEqual(out[0][0], 0)

    def test_block_status_where_a_hole_was_written_over(self):
        """The old hole, from the target: blkd's answer (QEMU 7.2's says
        data, from the disk; see the docstring of this file)."""
        d, _ = self.start_fleecing(self.blkd, 'backed')
        qio(d.guest, 'write -P 0x33 960k 128k', 'write -P 0x34 3M 64k')
        self.assertEqual(nbd_map(d.fleece), [
            [0, MiB, True, False], [MiB, MiB, False, True],
            [2 * MiB, MiB, True, False], [3 * MiB, 960 * 1024, False, True],
            [4032 * 1024, 64 * 1024, True, False]])
        self.assertSameImage(self.snapshot_raw(d, 'snapshot.raw'), d.at_start)


class BitmapTest(FleecingTestCase):

    def run_bitmap(self, binary):
        d, qmp = self.start_fleecing(binary, 'plain',
                                     cbw={'bitmap': {'node': 'disk', 'name': 'b0'}},
                                     bitmap=True)
        out = [qio(d.guest, 'write -P 0x41 0 4M')]
        # In the bitmap: the old data; outside: refused, as EACCES is.
        out.append(qio(d.fleece, 'read -P 0x77 64k 64k', 'read -P 0x78 1M 128k',
                       read_only=True))
        for cmd in ('read 0 4k', 'read 128k 64k', 'read 1M 192k', 'read 3M 4k'):
            out.append(qio(d.fleece, cmd, read_only=True))
        out.append(nbd_map(d.fleece))
        # Only the bitmap's clusters were copied into the target.
        out.append([b['count'] for b in self.bitmaps(qmp, 'cbw')])
        return out

    def test_only_dirty_clusters_in_snapshot(self):
        out = self.on_both(self.run_bitmap)
        self.assertEqual(out[1][0], 0)
        for rc, lines in out[2:6]:
            self.assertEqual(lines, ['read failed: Invalid argument'])


class DiscardTest(FleecingTestCase):

    def run_discard(self, binary, writable):
        d, qmp = self.start_fleecing(binary, 'plain', acc={'discard': 'unmap'},
                                     fleece_writable=writable)
        # Whole clusters: QEMU 7.2 aborts on others (blkd's own test below).
        out = [qio(d.fleece, 'discard 64k 128k', 'discard 2M 64k',
                   read_only=not writable)]
        out.append(qio(d.guest, *OVERWRITE))
        for cmd in ('read -P 0x5d 0 64k', 'read 64k 4k', 'read 191k 1k',
                    'read -P 0x5d 192k 64k', 'read 2M 64k',
                    'read -P 0xd5 2112k 64k'):
            out.append(qio(d.fleece, cmd, read_only=True))
        out.append([b['count'] for b in self.bitmaps(qmp, 'cbw')])
        out.append([b['count'] for b in self.bitmaps(qmp, 'disk')])
        return out

    def test_discard_takes_whole_clusters_out(self):
        out = self.on_both(self.run_discard, True)
        self.assertEqual(out[0][0], 0)
        self.assertEqual(out[3][1], ['read failed: Invalid argument'])
        self.assertEqual(out[6][1], ['read failed: Invalid argument'])
        self.assertEqual(out[7][0], 0)

    def test_read_only_export_refuses_discard(self):
        out = self.on_both(self.run_discard, False)
        self.assertNotEqual(out[0][0], 0)
        self.assertEqual(out[3][0], 0)

    def test_partial_clusters_stay(self):
        """blkd only: qemu-storage-daemon 7.2 fails an assertion (hbitmap_reset)
        for a discard of the snapshot that is not whole clusters; blkd takes
        the whole clusters in it out, as later QEMU does."""
        d, _ = self.start_fleecing(self.blkd, 'plain', acc={'discard': 'unmap'},
                                   fleece_writable=True)
        # [60k, 200k): the clusters [64k, 192k) go.
        self.assertEqual(qio(d.fleece, 'discard 60k 140k')[0], 0)
        self.assertEqual(qio(d.fleece, 'read -P 0x5d 0 64k',
                             'read -P 0x5d 192k 64k')[0], 0)
        for cmd in ('read 64k 1', 'read 191k 1k'):
            self.assertEqual(qio(d.fleece, cmd)[1], ['read failed: Invalid argument'])


class BrokenSnapshotTest(FleecingTestCase):
    """A copy that fails: the guest write fails (break-guest-write), or it
    goes ahead and the snapshot is gone (break-snapshot): every read and
    block status of it fails, with EACCES in QEMU 7.2, whatever the error."""

    def run_broken(self, binary, target, cbw, min_time=0.0, max_time=1.0):
        """A guest write over data, taking that long; what the clients see."""
        d, qmp = self.start_fleecing(binary, target, cbw=cbw)
        start = time.monotonic()
        out = [qio(d.guest, 'write -P 0x66 0 64k')]
        elapsed = time.monotonic() - start
        self.assertGreater(elapsed, min_time)
        self.assertLess(elapsed, max_time)
        out.append(qio(d.guest, 'read -P 0x66 0 64k'))
        out.append(qio(d.fleece, 'read -P 0xd5 2M 64k', read_only=True))
        out.append(nbd_map(d.fleece))
        return out

    @staticmethod
    def failing_target(d):
        """blkdebug failing data writes (QEMU raises write_aio from the raw
        node above it; write-zeroes pass)."""
        path = d.path('tmp.raw')
        iotests.run('qemu-img', 'create', '-q', '-f', 'raw', path, str(SIZE),
                    check=True)
        return {'driver': 'blkdebug', 'image': {'driver': 'file', 'filename': path},
                'inject-error': [{'event': 'write_aio', 'errno': 5}]}

    def test_failed_copy_breaks_snapshot(self):
        out = self.on_both(self.run_broken, self.failing_target,
                           {'on-cbw-error': 'break-snapshot'})
        self.assertEqual(out[0][0], 0)
        self.assertEqual(out[1][0], 0)
        self.assertEqual(out[2][1], ['read failed: Invalid argument'])

    def test_failed_copy_breaks_guest_write(self):
        out = self.on_both(self.run_broken, self.failing_target, {})
        self.assertEqual(out[0][1], ['write failed: Input/output error'])
        self.assertNotEqual(out[1][0], 0)
        self.assertEqual(out[2][0], 0)

    def run_timeout(self, binary, on_error):
        # Given up after 1 s, not after the target's 3 s.
        return self.run_broken(binary, SLOW, {'cbw-timeout': 1,
                                              'on-cbw-error': on_error},
                               min_time=0.9, max_time=2.5)

    def test_timeout_breaks_snapshot(self):
        out = self.on_both(self.run_timeout, 'break-snapshot')
        self.assertEqual(out[0][0], 0)
        self.assertEqual(out[2][1], ['read failed: Invalid argument'])

    def test_timeout_breaks_guest_write(self):
        # ETIMEDOUT travels over NBD as EINVAL.
        out = self.on_both(self.run_timeout, 'break-guest-write')
        self.assertEqual(out[0][1], ['write failed: Invalid argument'])
        self.assertEqual(out[2][0], 0)


class ErrorsTest(FleecingTestCase):

    def run_errors(self, binary):
        d, qmp = self.start_fleecing(binary, 'plain')
        replies = []
        for args in ({'node-name': 'a1'},
                     {'node-name': 'a1', 'file': 'nosuch'},
                     {'node-name': 'a1', 'file': 'cbw', 'size': 1}):
            replies.append(iotests.qmp_error(qmp.cmd(
                'blockdev-add', {'driver': 'snapshot-access', **args})))
        for timeout in (-1, 1 << 32, 'x'):
            replies.append(iotests.qmp_error(qmp.cmd(
                'blockdev-add', {'driver': 'copy-before-write', 'node-name': 'c2',
                                 'file': 'disk', 'target': 'tmp',
                                 'cbw-timeout': timeout})))
        # cbw and tmp are in use (blkd names the user: only the class).
        for node in ('cbw', 'tmp'):
            replies.append(iotests.qmp_error(qmp.cmd('blockdev-del',
                                                     node_name=node))[0])
        # Not over a copy-before-write node: QEMU checks nothing at open,
        # every request fails.
        replies.append(qmp.cmd('blockdev-add', driver='snapshot-access',
                               node_name='a2', file='disk'))
        qmp.command('block-export-add', type='nbd', id='e2', node_name='a2',
                    name='a2', writable=True)
        uri = nbdhelpers.uri(d.nbd, 'a2')
        replies.append(qio(uri, 'read 0 4k', 'write 0 4k'))
        replies.append(nbd_map(uri))
        # Writes to the snapshot are refused.
        qmp.command('block-export-del', id='fleece')
        qmp.command('block-export-add', type='nbd', id='fleece', node_name='acc',
                    name='fleece', writable=True)
        replies.append(qio(d.fleece, 'write 0 4k', 'write -z 0 64k'))
        nodes = {n['node-name']: n for n in
                 qmp.command('query-named-block-nodes', flat=True)}
        for name in ('acc', 'a2'):
            n = nodes[name]
            replies.append((n['drv'], n['ro'], os.path.basename(n['file']),
                            n['image']['virtual-size'], n['image']['format']))
        return replies

    def test_errors_match_qsd(self):
        replies = self.on_both(self.run_errors)
        self.assertEqual(replies[0],
                         ('GenericError', "Parameter 'file' is missing"))


class PushBackupTest(FleecingTestCase):
    """A backup job copies the snapshot (blockdev-backup from 'acc', sync
    full) while the guest writes: the backup is the disk at the start."""

    def run_push(self, binary):
        d, qmp = self.start_fleecing(binary, 'plain')
        self.add_target(d, qmp, 'bk')
        qmp.command('blockdev-backup', job_id='push', device='acc', target='bk',
                    sync='full', speed=SPEED)
        self.wait_progress(qmp, 'push')
        written = qio(d.guest, *OVERWRITE, 'write -P 0x99 1M 64k')
        job = self.job(qmp, 'push')
        self.assertEqual(job['status'], 'running')
        self.assertLess(job['current-progress'], job['total-progress'])
        qmp.command('block-job-set-speed', device='push', speed=0)
        end = self.wait_job(qmp, 'push')
        self.assertSameImage(d.path('bk.img'), d.at_start)
        data = end['data']
        return written, end['event'], data.get('error'), data['offset'], data['len']

    def test_push_backup_of_snapshot_while_guest_writes(self):
        out = self.on_both(self.run_push)
        self.assertEqual(out[1:], ('BLOCK_JOB_COMPLETED', None, SIZE, SIZE))


if __name__ == '__main__':
    unittest.main()
