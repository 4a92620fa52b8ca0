#!/usr/bin/python3
"""Backup chains: long incremental chains, differentials, retries, qcow2
overlays, compressed backups into qcow2 while guest writes race the job.

Built on test_backup's BackupTestCase: writes reach the source through
qemu-io over the NBD export, every restored image is compared with a copy
of the source taken right before its job started, and dirty-bitmap counts
are checked against a Python model (the set of 64 KiB clusters written).
Where the mode exists in QEMU the same steps run on qemu-storage-daemon
and the counts and event lengths must match.
"""
import json
import os
import random
import shutil
import unittest

import iotests
from test_backup import (BackupTestCase, CLUSTER, SIZE, WRITE_ERRORS, clusters, count,
                         qemu_io)


class ChainTestCase(BackupTestCase):

    def backup(self, qmp, job_id, target, **args):
        """Runs one blockdev-backup of 'src' to the end; its end event."""
        qmp.command('blockdev-backup', job_id=job_id, device='src',
                    target=target, **args)
        ev = self.wait_job(qmp, job_id)
        self.assertIsNotNone(ev, job_id)
        self.assertEqual(ev['event'], 'BLOCK_JOB_COMPLETED')
        return ev

    def assertGoodEnd(self, ev):
        self.assertNotIn('error', ev['data'])
        self.assertEqual(ev['data']['offset'], ev['data']['len'])

    def add_qcow2_target(self, d, qmp, name, backing=None, cluster_size=65536):
        path = d.path(name + '.qcow2')
        args = ['qemu-img', 'create', '-f', 'qcow2', '-o',
                'cluster_size=%d' % cluster_size]
        if backing:
            args += ['-b', backing, '-F', 'qcow2']
        iotests.run(*args, path, str(SIZE), check=True)
        qmp.command('blockdev-add', {
            'driver': 'qcow2', 'node-name': name,
            'file': {'driver': 'file', 'filename': path}})
        return path

    def assertCleanImage(self, path):
        res = iotests.run('qemu-img', 'check', '-f', 'qcow2', path)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertIn('No errors were found', res.stdout)


# Five rounds of writes: data, zeroes, unaligned and cluster-crossing.
CHAIN_WRITES = [
    ['write -P 0x33 1M 64k', 'write -P 0x44 30M 4k'],
    ['write -P 0x55 1M 128k', 'write -z 20M 512k', 'write -P 0x66 63M 1M'],
    ['write -P 0x77 100k 10k', 'write -z 4M 192k'],
    ['write -P 0x88 65532 8', 'write -P 0x99 40M 2M', 'write -z 30M 4k'],
    ['write -z 10M 3M', 'write -P 0xaa %d 4096' % (SIZE - 4096),
     'write -P 0xbb 8M 64k'],
]


class IncrementalChainTest(ChainTestCase):

    def run_chain(self, binary):
        """A full backup and five incrementals; (counts, event lengths)."""
        n = len(CHAIN_WRITES) + 1
        d, qmp = self.start(binary, targets=n)
        qmp.command('block-dirty-bitmap-add', node='src', name='b0')
        counts, lengths = [], []
        for i in range(n):
            if i:
                qemu_io(d.nbd, *CHAIN_WRITES[i - 1])
                c = count(self.bitmaps(qmp, 'src'))
                with self.subTest(step=i, what='bitmap count'):
                    self.assertEqual(c, len(clusters(CHAIN_WRITES[i - 1])) * CLUSTER)
                counts.append(c)
                # Restore: the previous restored image plus this incremental.
                shutil.copyfile(d.path('tgt%d.img' % (i - 1)),
                                d.path('tgt%d.img' % i))
            at_start = self.snapshot(d, 'at%d.img' % i)
            ev = self.backup(qmp, 'j%d' % i, 'tgt%d' % i,
                             sync='full' if i == 0 else 'incremental',
                             bitmap='b0', bitmap_mode='on-success')
            self.assertGoodEnd(ev)
            lengths.append(ev['data']['len'])
            if i:
                self.assertEqual(ev['data']['len'], counts[-1])
            else:
                self.assertEqual(ev['data']['len'], SIZE)
            self.assertSameImage(at_start, d.path('tgt%d.img' % i))
            self.assertEqual(count(self.bitmaps(qmp, 'src')), 0)
        return counts, lengths

    def test_full_then_five_incrementals(self):
        got = self.run_chain(self.blkd)
        if self.have_qsd():
            self.assertEqual(got, self.run_chain(self.qsd))


DIFF_WRITES = [
    ['write -P 0x31 2M 64k', 'write -z 21M 256k'],
    ['write -P 0x32 2M 4k', 'write -P 0x33 50M 1M', 'write -P 0x34 65000 1000'],
    ['write -z 0 128k', 'write -P 0x35 33M 100k', 'write -P 0x36 50M 64k'],
]


class DifferentialTest(ChainTestCase):

    def run_differentials(self, binary, diff_args):
        """A full backup and three differentials; the counts before each."""
        n = len(DIFF_WRITES) + 1
        d, qmp = self.start(binary, targets=n)
        qmp.command('block-dirty-bitmap-add', node='src', name='b0')
        ev = self.backup(qmp, 'full', 'tgt0', sync='full', bitmap='b0',
                         bitmap_mode='on-success')
        self.assertGoodEnd(ev)
        full_at = self.snapshot(d, 'at0.img')
        self.assertSameImage(full_at, d.path('tgt0.img'))
        since_full = set()
        counts = []
        for i in range(1, n):
            qemu_io(d.nbd, *DIFF_WRITES[i - 1])
            since_full |= clusters(DIFF_WRITES[i - 1])
            c = count(self.bitmaps(qmp, 'src'))
            with self.subTest(step=i, what='bitmap count'):
                self.assertEqual(c, len(since_full) * CLUSTER)
                if counts:
                    self.assertGreaterEqual(c, counts[-1])
            counts.append(c)
            # Each differential applies onto the full backup, not the last one.
            shutil.copyfile(d.path('tgt0.img'), d.path('tgt%d.img' % i))
            at_start = self.snapshot(d, 'at%d.img' % i)
            ev = self.backup(qmp, 'd%d' % i, 'tgt%d' % i, bitmap='b0', **diff_args)
            self.assertGoodEnd(ev)
            self.assertEqual(ev['data']['len'], c)
            self.assertSameImage(at_start, d.path('tgt%d.img' % i))
            # Never cleared.
            self.assertEqual(count(self.bitmaps(qmp, 'src')), c)
        return counts

    def test_three_differentials_from_one_full(self):
        got = self.run_differentials(self.blkd, {'sync': 'differential'})
        if self.have_qsd():
            ref = self.run_differentials(self.qsd, {'sync': 'bitmap',
                                                    'bitmap_mode': 'never'})
            self.assertEqual(got, ref)


class RetryAfterFailureTest(ChainTestCase):

    def run_retry(self, binary):
        """Failed full, good full, failed incremental, retried incremental."""
        d, qmp = self.start(binary, targets=2)
        self.add_target(d, qmp, 'bad', WRITE_ERRORS)
        qmp.command('block-dirty-bitmap-add', node='src', name='b0')
        log = []
        w0 = ['write -P 0x41 3M 64k', 'write -P 0x42 12M 4k']
        qemu_io(d.nbd, *w0)
        model = clusters(w0)
        self.assertEqual(count(self.bitmaps(qmp, 'src')), len(model) * CLUSTER)

        # 1. A full backup to the failing target: the bitmap keeps everything.
        ev = self.backup(qmp, 'f_bad', 'bad', sync='full', bitmap='b0',
                         bitmap_mode='on-success')
        self.assertIn('error', ev['data'])
        c = count(self.bitmaps(qmp, 'src'))
        self.assertEqual(c, len(model) * CLUSTER)
        log.append(('full-failed', ev['data']['len'], c))

        # 2. The full backup to a good target clears it.
        at0 = self.snapshot(d, 'at0.img')
        ev = self.backup(qmp, 'f_good', 'tgt0', sync='full', bitmap='b0',
                         bitmap_mode='on-success')
        self.assertGoodEnd(ev)
        self.assertSameImage(at0, d.path('tgt0.img'))
        c = count(self.bitmaps(qmp, 'src'))
        self.assertEqual(c, 0)
        log.append(('full', ev['data']['len'], c))

        # 3. Writes, then an incremental to the failing target: nothing lost.
        w1 = ['write -P 0x43 5M 128k', 'write -z 22M 64k', 'write -P 0x44 65500 100']
        qemu_io(d.nbd, *w1)
        model = clusters(w1)
        before = count(self.bitmaps(qmp, 'src'))
        self.assertEqual(before, len(model) * CLUSTER)
        ev = self.backup(qmp, 'i_bad', 'bad', sync='incremental', bitmap='b0',
                         bitmap_mode='on-success')
        self.assertIn('error', ev['data'])
        c = count(self.bitmaps(qmp, 'src'))
        self.assertEqual(c, before)
        log.append(('incremental-failed', ev['data']['len'], c))

        # 4. Writes after the failure are added to what was kept.
        w2 = ['write -P 0x45 5M 4k', 'write -P 0x46 44M 1M']
        qemu_io(d.nbd, *w2)
        model |= clusters(w2)
        c = count(self.bitmaps(qmp, 'src'))
        self.assertEqual(c, len(model) * CLUSTER)
        log.append(('after-writes', c))

        # 5. The retry to a good target restores identically.
        shutil.copyfile(d.path('tgt0.img'), d.path('tgt1.img'))
        at1 = self.snapshot(d, 'at1.img')
        ev = self.backup(qmp, 'i_good', 'tgt1', sync='incremental', bitmap='b0',
                         bitmap_mode='on-success')
        self.assertGoodEnd(ev)
        self.assertEqual(ev['data']['len'], len(model) * CLUSTER)
        self.assertSameImage(at1, d.path('tgt1.img'))
        c = count(self.bitmaps(qmp, 'src'))
        self.assertEqual(c, 0)
        log.append(('incremental', ev['data']['len'], c))
        (bm,) = self.bitmaps(qmp, 'src')
        self.assertFalse(bm['busy'])
        return log

    def test_incremental_retry_after_failed_target(self):
        got = self.run_retry(self.blkd)
        if self.have_qsd():
            self.assertEqual(got, self.run_retry(self.qsd))


class Qcow2ChainTest(ChainTestCase):
    """The restore layout QEMU documents: a full backup into a qcow2 image,
    each incremental into a qcow2 overlay backed by the previous one."""

    def run_qcow2_chain(self, binary):
        d, qmp = self.start(binary, targets=0)
        qmp.command('block-dirty-bitmap-add', node='src', name='b0')
        lengths, allocated = [], []
        previous = None
        for i in range(3):
            if i:
                qemu_io(d.nbd, *CHAIN_WRITES[i - 1])
            at_start = self.snapshot(d, 'at%d.img' % i)
            path = self.add_qcow2_target(d, qmp, 'q%d' % i, backing=previous)
            ev = self.backup(qmp, 'j%d' % i, 'q%d' % i,
                             sync='full' if i == 0 else 'incremental',
                             bitmap='b0', bitmap_mode='on-success')
            self.assertGoodEnd(ev)
            lengths.append(ev['data']['len'])
            qmp.command('blockdev-del', node_name='q%d' % i)
            self.assertCleanImage(path)
            # The whole chain up to this image is the disk at the job's start.
            res = iotests.run('qemu-img', 'compare', '-F', 'raw', path, at_start)
            self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
            if i:
                # An overlay holds only the incremental's clusters.
                mapped = iotests.run('qemu-img', 'map', '--output=json', path,
                                     check=True).stdout
                allocated.append(sum(
                    e['length'] for e in json.loads(mapped)
                    if e['depth'] == 0 and (e['data'] or e['zero'])))
            previous = path
        return lengths, allocated

    def test_full_and_incrementals_into_qcow2_overlays(self):
        lengths, allocated = self.run_qcow2_chain(self.blkd)
        self.assertEqual(allocated, lengths[1:])
        if self.have_qsd():
            self.assertEqual((lengths, allocated), self.run_qcow2_chain(self.qsd))


# Guest writes racing a compressed backup: data over the disk (one 4 KiB
# inside the random MiB at 40M), zeroes inside the first pattern.
RACE_WRITES = ['write -P 0x%02x %dM 64k' % (0x60 + i, i * 5 + 1) for i in range(12)] + \
    ['write -z 2M 1M', 'write -P 0x5e 40M 4k', 'write -P 0x5f 63M 1M']


def compressed_extents(path):
    """(bytes mapped compressed, bytes mapped plainly) of a qcow2 image:
    qemu-img map gives no file offset for compressed data."""
    mapped = json.loads(iotests.run('qemu-img', 'map', '--output=json', path,
                                    check=True).stdout)
    data = [e for e in mapped if e['data'] and e['depth'] == 0]
    return (sum(e['length'] for e in data if 'offset' not in e),
            sum(e['length'] for e in data if 'offset' in e))


class CompressedBackupTest(ChainTestCase):
    """compress=true into qcow2 targets, guest writes racing the job."""

    def run_compressed(self, binary):
        """A full compressed backup while RACE_WRITES go on, then one into
        a target of 4 KiB clusters; both targets checked and compared."""
        d, qmp = self.start(binary, targets=0)
        # A MiB deflate cannot shrink, the same on both daemons.
        rand = d.path('random.bin')
        with open(rand, 'wb') as f:
            f.write(random.Random(7).randbytes(1 << 20))
        qemu_io(d.nbd, 'write -s %s 40M 1M' % rand)
        path = self.add_qcow2_target(d, qmp, 'q0')
        at_start = self.snapshot(d, 'at0.img')
        # Slow, so that the writes meet clusters not copied yet while the
        # background copy goes on; then full speed.
        qmp.command('blockdev-backup', job_id='j', device='src', target='q0',
                    sync='full', compress=True, speed=4 << 20)
        qemu_io(d.nbd, *RACE_WRITES)
        (job,) = qmp.command('query-block-jobs')
        self.assertLess(job['offset'], job['len'])
        qmp.command('block-job-set-speed', device='j', speed=0)
        ev = self.wait_job(qmp, 'j')
        self.assertGoodEnd(ev)
        self.assertEqual(ev['data']['len'], SIZE)

        # 4 KiB clusters: a copy cluster is 16 compressed writes.
        at_small = self.snapshot(d, 'at1.img')
        small = self.add_qcow2_target(d, qmp, 'q1', cluster_size=4096)
        self.assertGoodEnd(self.backup(qmp, 'j1', 'q1', sync='full', compress=True))
        for node, image, before in (('q0', path, at_start), ('q1', small, at_small)):
            qmp.command('blockdev-del', node_name=node)
            self.assertCleanImage(image)
            res = iotests.run('qemu-img', 'compare', '-F', 'raw', image, before)
            self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        return path, small, os.stat(path).st_blocks * 512

    def test_compressed_full_backup_with_racing_writes(self):
        path, small, used = self.run_compressed(self.blkd)
        # The patterns (9 MiB) compressed, the random MiB written plainly.
        self.assertEqual(compressed_extents(path), (9 << 20, 1 << 20))
        self.assertLess(used, 3 << 20)
        # Later the racing writes too, and one 4 KiB cluster of the random MiB.
        compressed, plain = compressed_extents(small)
        self.assertGreater(compressed, 9 << 20)
        self.assertEqual(plain, (1 << 20) - 4096)
        if self.have_qsd():
            ref, ref_small, ref_used = self.run_compressed(self.qsd)
            for mine, theirs in ((path, ref), (small, ref_small)):
                self.assertEqual(compressed_extents(mine), compressed_extents(theirs))
                res = iotests.run('qemu-img', 'compare', mine, theirs)
                self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
            self.assertLess(ref_used, 3 << 20)


if __name__ == '__main__':
    unittest.main()
