#!/usr/bin/python3
"""Backup cancel outcomes: job-cancel of blockdev-backup per sync and bitmap mode.

Built on test_backup's BackupTestCase: the source is written through qemu-io
over its NBD export while throttled jobs run, bitmap counts are checked
against a model (the set of 64 KiB clusters written), and the same steps on
qemu-storage-daemon must give the same job event sequence and counts.
Neither daemon emits BLOCK_JOB_PENDING for backup jobs; 'pending' is seen
as a JOB_STATUS_CHANGE.
"""
import time
import unittest

from test_backup import BackupTestCase, qemu_io, SIZE

CLUSTER = 64 * 1024
UNITS = {'': 1, 'k': 1 << 10, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}
SPEED = 1 << 20


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


# Dirtied before the job (16 MiB: blkd's first burst of copies is 8 MiB,
# QEMU's 1 MiB; the cancel comes long before the end), and written during it
# (disjoint from the dirty area, so no copy-before-write is involved).
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
                    if data.get('device') == job_id:
                        self.log.append(ev['event'])
                        self.last_event = ev
            if until in self.log:
                return self.log
            self.assertLess(time.monotonic(), deadline,
                            'waiting for %s: %r' % (until, self.log))
            time.sleep(0.01)

    def job(self, qmp, job_id):
        for j in qmp.command('query-jobs'):
            if j['id'] == job_id:
                return j
        return None

    def wait_progress(self, qmp, job_id, at_least=1, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            j = self.job(qmp, job_id)
            self.assertIsNotNone(j, job_id)
            self.assertEqual(j['status'], 'running')
            if j['current-progress'] >= at_least:
                return j
            self.assertLess(time.monotonic(), deadline, repr(j))
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
                               'aborting',
                               'BLOCK_JOB_CANCELLED', 'concluded', 'null'])
        # Nothing lost: the bits from before plus the writes while pending.
        self.assertEqual(after, len(clusters(BEFORE) | clusters(DURING)) * CLUSTER)
        if self.have_qsd():
            ref = self.cancel_pending(self.qsd)
            self.assertEqual(log, undrained(ref[0]))
            self.assertEqual((before, after), ref[1:])

if __name__ == '__main__':
    unittest.main()
