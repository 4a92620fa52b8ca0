#!/usr/bin/python3
"""Backup cancel outcomes: job-cancel of blockdev-backup per sync and bitmap mode.

Built on test_backup's BackupTestCase: the source is written through qemu-io
over its NBD export while throttled jobs run, bitmap counts are checked
against a model (the set of 64 KiB clusters written), and the same steps on
qemu-storage-daemon must give the same job event sequence and counts.
"""
import time
import unittest

from test_backup import BackupTestCase, CLUSTER, SIZE, clusters, count, qemu_io

SPEED = 1 << 20

# Dirtied before the job (16 MiB: the first chunk, 1 MiB, goes at once,
# then one a second; the cancel comes long before the end), and written
# during it (disjoint from the dirty area, so no copy-before-write is
# involved).
BEFORE = ['write -P 0x31 0 16M']
DURING = ['write -P 0x61 40M 64k', 'write -P 0x62 50M 4k',
          'write -P 0x63 %d 100' % ((52 << 20) - 50)]
assert not clusters(BEFORE) & clusters(DURING)


def undrained(log):
    """The log without QEMU's drain pauses: qemu-storage-daemon pauses a
    running job while it drains the job's nodes (graph changes, NBD clients
    coming or going), a transient 'paused', 'running' pair; blkd has no such
    drain.  Everything else must match."""
    out = []
    for s in log:
        if s == 'running' and out and out[-1] == 'paused':
            out.pop()
            continue
        out.append(s)
    return out


CANCELLED_RUNNING = ['created', 'running', 'aborting', 'BLOCK_JOB_CANCELLED',
                     'concluded', 'null']


class CancelTestCase(BackupTestCase):

    def setUp(self):
        super().setUp()
        self.log = []

    def collect(self, qmp, job_id, until, timeout=30):
        """Appends the job's events to self.log (status changes as
        'status', others by name) until @until is logged; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            for ev in qmp.get_events():
                data = ev.get('data', {})
                if ev['event'] == 'JOB_STATUS_CHANGE':
                    if data['id'] == job_id:
                        self.log.append(data['status'])
                elif ev['event'].startswith('BLOCK_JOB_'):
                    # BLOCK_JOB_PENDING names the job by 'id'.
                    if data.get('device', data.get('id')) == job_id:
                        self.log.append(ev['event'])
                        self.last_event = ev
            if until in self.log:
                return self.log
            self.assertLess(time.monotonic(), deadline,
                            'waiting for %s: %r' % (until, self.log))
            time.sleep(0.01)


class CancelRunningTest(CancelTestCase):

    def cancel_running(self, binary, sync, mode):
        """A throttled backup cancelled mid-way, with writes while it runs:
        (job events, offset, len, bitmap count before, count after)."""
        self.log = []
        d, qmp = self.start(binary)
        qmp.command('block-dirty-bitmap-add', node='src', name='b0')
        qemu_io(d.nbd, *BEFORE)
        before = count(self.bitmaps(qmp, 'src'))
        self.assertEqual(before, len(clusters(BEFORE)) * CLUSTER)
        qmp.command('blockdev-backup', job_id='j', device='src', target='tgt0',
                    sync=sync, bitmap='b0', bitmap_mode=mode, speed=SPEED)
        self.wait_progress(qmp, 'j')
        qemu_io(d.nbd, *DURING)
        j = self.job(qmp, 'j')
        self.assertEqual(j['status'], 'running')
        self.assertLess(j['current-progress'], j['total-progress'])
        qmp.command('job-cancel', id='j')
        self.collect(qmp, 'j', 'null')
        ev = self.last_event
        self.assertEqual(ev['event'], 'BLOCK_JOB_CANCELLED')
        self.assertLess(ev['data']['offset'], ev['data']['len'])
        self.assertEqual(ev['data']['len'], before)
        (bm,) = self.bitmaps(qmp, 'src')
        self.assertFalse(bm['busy'])
        self.assertTrue(bm['recording'])
        self.assertEqual(self.job(qmp, 'j'), None)
        return self.log, ev['data']['offset'], before, bm['count']

    def check_mode(self, sync, mode):
        log, offset, before, after = self.cancel_running(self.blkd, sync, mode)
        self.assertEqual(log, CANCELLED_RUNNING)
        written = len(clusters(DURING)) * CLUSTER
        if mode == 'always':
            # Like a failure: what was copied is cleared, the rest and the
            # writes during the job are dirty.
            self.assertEqual(after, before - offset + written)
        else:
            # Nothing lost: the bits from before plus the writes.
            self.assertEqual(after, before + written)
        if self.have_qsd():
            ref = self.cancel_running(self.qsd, sync, mode)
            self.assertEqual(log, undrained(ref[0]))
            self.assertEqual(before, ref[2])
            if mode == 'always':
                # How far the copy got is timing; the rule is the same.
                self.assertEqual(ref[3], ref[2] - ref[1] + written)
            else:
                self.assertEqual(after, ref[3])

    def test_cancel_running_incremental_on_success(self):
        self.check_mode('incremental', 'on-success')

    def test_cancel_running_bitmap_never(self):
        self.check_mode('bitmap', 'never')

    def test_cancel_running_bitmap_always(self):
        self.check_mode('bitmap', 'always')


class CancelPendingTest(CancelTestCase):

    def cancel_pending(self, binary):
        """An incremental backup held in 'pending' (auto-finalize off),
        written to while pending, then cancelled: (events, before, after)."""
        self.log = []
        d, qmp = self.start(binary)
        qmp.command('block-dirty-bitmap-add', node='src', name='b0')
        qemu_io(d.nbd, *BEFORE)
        before = count(self.bitmaps(qmp, 'src'))
        qmp.command('blockdev-backup', job_id='j', device='src', target='tgt0',
                    sync='incremental', bitmap='b0', bitmap_mode='on-success',
                    auto_finalize=False)
        self.collect(qmp, 'j', 'pending')
        self.assertEqual(self.job(qmp, 'j')['status'], 'pending')
        qemu_io(d.nbd, *DURING)
        qmp.command('job-cancel', id='j')
        self.collect(qmp, 'j', 'null')
        ev = self.last_event
        self.assertEqual(ev['event'], 'BLOCK_JOB_CANCELLED')
        # Everything was copied before the cancel.
        self.assertEqual(ev['data']['offset'], ev['data']['len'])
        self.assertEqual(ev['data']['len'], before)
        self.assertIsNone(self.job(qmp, 'j'))
        (bm,) = self.bitmaps(qmp, 'src')
        self.assertFalse(bm['busy'])
        return self.log, before, bm['count']

    def test_cancel_pending_keeps_bitmap(self):
        log, before, after = self.cancel_pending(self.blkd)
        self.assertEqual(log, ['created', 'running', 'waiting', 'pending',
                               'BLOCK_JOB_PENDING', 'aborting',
                               'BLOCK_JOB_CANCELLED', 'concluded', 'null'])
        # Nothing lost: the bits from before plus the writes while pending.
        self.assertEqual(after, len(clusters(BEFORE) | clusters(DURING)) * CLUSTER)
        if self.have_qsd():
            ref = self.cancel_pending(self.qsd)
            self.assertEqual(log, undrained(ref[0]))
            self.assertEqual((before, after), ref[1:])


class WritesDuringFullTest(CancelTestCase):
    """A throttled full backup anchored with its bitmap by a transaction;
    writes land behind the copy point (copied already) and ahead of it
    (copied first by copy-before-write). The backup is the disk at the
    start, the bitmap holds exactly the writes, and the progress counts
    the copies made ahead of the writes, as QEMU's does."""

    AHEAD = ['write -P 0x73 60M 128k', 'write -P 0x74 %d 4096' % (SIZE - 4096),
             'write -z 48M 64k']
    BEHIND = ['write -P 0x71 64k 64k', 'write -P 0x72 300k 4k']

    def run_full(self, binary):
        d, qmp = self.start(binary)
        at_start = self.snapshot(d, 'at_start.img')
        qmp.command('transaction', actions=[
            {'type': 'block-dirty-bitmap-add',
             'data': {'node': 'src', 'name': 'b0'}},
            {'type': 'blockdev-backup',
             'data': {'job-id': 'j', 'device': 'src', 'target': 'tgt0',
                      'sync': 'full', 'speed': SPEED}}])
        self.wait_progress(qmp, 'j', at_least=1 << 20)
        qemu_io(d.nbd, *self.BEHIND)
        qemu_io(d.nbd, *self.AHEAD)
        j = self.job(qmp, 'j')
        self.assertLess(j['current-progress'], j['total-progress'])
        qmp.command('block-job-set-speed', device='j', speed=0)
        self.collect(qmp, 'j', 'null')
        ev = self.last_event
        self.assertEqual(ev['event'], 'BLOCK_JOB_COMPLETED')
        self.assertNotIn('error', ev['data'])
        self.assertEqual(ev['data']['len'], SIZE)
        self.assertEqual(ev['data']['offset'], SIZE)
        self.assertSameImage(at_start, d.path('tgt0.img'))
        written = clusters(self.AHEAD) | clusters(self.BEHIND)
        self.assertEqual(count(self.bitmaps(qmp, 'src')), len(written) * CLUSTER)
        return ev['data'], count(self.bitmaps(qmp, 'src'))

    def test_writes_ahead_and_behind_the_copy_point(self):
        got = self.run_full(self.blkd)
        if self.have_qsd():
            self.assertEqual(got, self.run_full(self.qsd))


if __name__ == '__main__':
    unittest.main()
