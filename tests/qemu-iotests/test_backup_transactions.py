#!/usr/bin/python3
"""Backups of two disks started by one transaction, one of them failing.

Two source disks ('src' and 'src1', each with a bitmap) are anchored by
full backups started in the same transaction as the bitmaps' add (or
clear).  Then incremental backups of both start in one transaction whose
second target fails (blkdebug write errors), with completion-mode grouped
and individual.  Writes reach the disks through qemu-io over their NBD
exports while the jobs run; bitmap counts are checked against a model (the
64 KiB clusters written), each restored image against a copy of its disk
taken when its job started (or the disk itself when nothing wrote to it
meanwhile), and the same steps on qemu-storage-daemon must give the same
job events (per job, in order, without QEMU's drain pauses) and counts.
"""
import shutil
import unittest

from test_backup import CLUSTER, EIO, WRITE_ERRORS, clusters, disk, qemu_io
from test_backup_policies import PolicyTestCase

# Slow enough that a throttled job, after its first copy (one chunk of
# 1 MiB on either daemon), sleeps for longer than the test needs.
SPEED = 64 << 10


def before(r):
    """Writes of round r before the incrementals, per disk: 10 MiB, more
    than the first burst of copies of a throttled job."""
    return [['write -P %d 0 10M' % (0x31 + r)],
            ['write -P %d 0 10M' % (0x41 + r), 'write -P %d 30M 64k' % (0x51 + r)]]


def during(r):
    """Writes of round r while its incrementals run, per disk.  On disk 0
    one lands in the dirty area, not copied yet: copy-before-write saves
    the old data first.  Disk 1's keep apart from its dirty area, where
    copy-before-write would meet the failing target (and fail the write,
    as QEMU does)."""
    return [['write -P %d 40M 64k' % (0x61 + r), 'write -P 0x62 %d 100' % ((52 << 20) - 50),
             'write -P %d 9M 4k' % (0x71 + r)],
            ['write -P %d 50M 4k' % (0x81 + r), 'write -z 60M 128k']]


assert not clusters(during(0)[1]) & clusters(before(0)[1])

# A target write error at 9.5 MiB: past the first burst of copies, so it
# comes once the job runs at full speed.
LATE = [{'event': 'write_aio', 'errno': EIO, 'sector': (19 << 20) // 1024}]

ERROR_END = [('JOB_STATUS_CHANGE', 'created'), ('JOB_STATUS_CHANGE', 'running'),
             ('BLOCK_JOB_ERROR', 'report', 'write'),
             ('JOB_STATUS_CHANGE', 'aborting'),
             ('BLOCK_JOB_COMPLETED', 'backup', 'Input/output error'),
             ('JOB_STATUS_CHANGE', 'concluded'), ('JOB_STATUS_CHANGE', 'null')]


SUCCESS = [('JOB_STATUS_CHANGE', 'created'), ('JOB_STATUS_CHANGE', 'running'),
           ('JOB_STATUS_CHANGE', 'waiting'), ('JOB_STATUS_CHANGE', 'pending'),
           ('BLOCK_JOB_COMPLETED', 'backup', None),
           ('JOB_STATUS_CHANGE', 'concluded'), ('JOB_STATUS_CHANGE', 'null')]


def cancelled(*since_running):
    """The events of a job cancelled by its group in its state @since_running."""
    return [('JOB_STATUS_CHANGE', s) for s in ('created', 'running') + since_running] + \
        [('JOB_STATUS_CHANGE', 'aborting'),
         ('BLOCK_JOB_CANCELLED', 'backup', None),
         ('JOB_STATUS_CHANGE', 'concluded'), ('JOB_STATUS_CHANGE', 'null')]


def backup(job_id, i, target, **args):
    """A blockdev-backup transaction action on disk i."""
    data = {'job-id': job_id, 'device': disk(i), 'target': target,
            'sync': 'incremental', 'bitmap': 'b%d' % i}
    data.update(args)
    return {'type': 'blockdev-backup', 'data': data}


class TwoDiskTestCase(PolicyTestCase):

    def start_two(self, binary, targets):
        """Two disks, each with its bitmap: b0 on 'src', b1 on 'src1'."""
        d, qmp = self.start(binary, targets=targets, sources=2)
        self.log_events(d)
        return d, qmp

    def full_pair(self, d, qmp, bitmap_action):
        """Anchors both bitmaps (add or clear) and starts full backups of
        both disks to tgt0 and tgt1 in the same transaction."""
        actions = [{'type': bitmap_action,
                    'data': {'node': disk(i), 'name': 'b%d' % i}}
                   for i in range(2)]
        actions += [{'type': 'blockdev-backup',
                     'data': {'job-id': 'f%d' % i, 'device': disk(i),
                              'target': 'tgt%d' % i, 'sync': 'full'}}
                    for i in range(2)]
        qmp.command('transaction', actions=actions)
        self.until_gone(d, qmp, 'f0', 'f1')
        for i in range(2):
            self.assertEqual(self.policy_events(d, 'f%d' % i), SUCCESS)
        self.assertSameDisks(d, 0, 1)
        self.assertEqual(self.counts(qmp), [0, 0])

    def assertSameDisks(self, d, *targets):
        """Nothing wrote while the jobs ran: the disks are still what they
        were at the jobs' start, and the restored targets must equal them."""
        for i in range(2):
            self.assertSameImage(d.srcs[i], d.path('tgt%d.img' % targets[i]))

    def counts(self, qmp):
        """Both bitmaps' counts; neither may be busy any more."""
        out = []
        for i in range(2):
            (bm,) = [b for b in self.bitmaps(qmp, disk(i))
                     if b.get('name') == 'b%d' % i]
            self.assertFalse(bm['busy'])
            self.assertTrue(bm['recording'])
            out.append(bm['count'])
        return out

    def restore_base(self, d, base, target):
        """The incremental into @target applies onto the restored @base."""
        shutil.copyfile(d.path('tgt%d.img' % base), d.path('tgt%d.img' % target))

    def write(self, d, cmds):
        for i in range(2):
            qemu_io(d.nbd, *cmds[i], export=disk(i))

    def model(self, *rounds):
        """Bitmap counts after the given rounds of writes on each disk."""
        return [len(set().union(*(clusters(r[i]) for r in rounds))) * CLUSTER
                for i in range(2)]


class GroupedFailureTest(TwoDiskTestCase):

    def run_grouped(self, binary):
        """Two rounds of incrementals of both disks in a grouped
        transaction whose disk 1 target fails, each retried: the first
        fails at once (disk 0's job still running), the second late (disk
        0's job done and waiting).  (events, counts)"""
        d, qmp = self.start_two(binary, targets=6)
        self.full_pair(d, qmp, 'block-dirty-bitmap-add')
        self.add_target(d, qmp, 'bad', WRITE_ERRORS)
        self.add_target(d, qmp, 'late', LATE)
        events, got = [], []
        base = [0, 1]
        for r, late in enumerate([False, True]):
            name = 'late' if late else 'once'
            tgt = [2 + 2 * r, 3 + 2 * r]
            self.write(d, before(r))
            self.assertEqual(self.counts(qmp), self.model(before(r)))
            # Throttled, so that it still runs when the other ends: disk
            # 0's job when disk 1's fails at once; disk 1's when it is to
            # fail late (its limit lifted once disk 0's job waits).
            slow = {'speed': SPEED}
            qmp.command('transaction', actions=[
                backup(name + '0', 0, 'tgt%d' % tgt[0], **({} if late else slow)),
                backup(name + '1', 1, name if late else 'bad', **(slow if late else {}))],
                properties={'completion-mode': 'grouped'})
            if late:
                self.until_status(d, qmp, 'waiting', name + '0')
                self.write(d, during(r))
                qmp.command('block-job-set-speed', device=name + '1', speed=0)
                self.until_gone(d, qmp, name + '0', name + '1')
            else:
                self.until_gone(d, qmp, name + '0', name + '1')
                self.write(d, during(r))
            events += [self.policy_events(d, name + '0'),
                       self.policy_events(d, name + '1')]
            self.assertEqual(events[-2:], [cancelled('waiting') if late
                                           else cancelled(), ERROR_END])
            # Nothing lost on either disk: the bits from before and the writes.
            got.append(self.counts(qmp))
            self.assertEqual(got[-1], self.model(before(r), during(r)))

            # The retry of the whole transaction restores both disks (disk
            # 0's target holds what the cancelled job copied: its base again).
            for i in range(2):
                self.restore_base(d, base[i], tgt[i])
            qmp.command('transaction', actions=[
                backup('retry_%s%d' % (name, i), i, 'tgt%d' % tgt[i])
                for i in range(2)], properties={'completion-mode': 'grouped'})
            self.until_gone(d, qmp, 'retry_%s0' % name, 'retry_%s1' % name)
            for i in range(2):
                events.append(self.policy_events(d, 'retry_%s%d' % (name, i)))
                self.assertEqual(events[-1], SUCCESS)
            self.assertSameDisks(d, *tgt)
            got.append(self.counts(qmp))
            self.assertEqual(got[-1], [0, 0])
            base = tgt
        return events, got

    def test_grouped_failures_at_once_and_late_keep_both_bitmaps(self):
        got = self.run_grouped(self.blkd)
        if self.have_qsd():
            self.assertEqual(got, self.run_grouped(self.qsd))


class IndividualFailureTest(TwoDiskTestCase):

    def run_individual(self, binary):
        """Incrementals of both disks in one transaction without grouping,
        disk 1's target failing: disk 0's job completes, keeps only the
        writes made meanwhile and restores its disk; disk 1's bitmap keeps
        its bits for a retry that restores it.  The bitmaps are anchored
        by a clear in the transaction of the full backups.
        (events, counts)"""
        d, qmp = self.start_two(binary, targets=4)
        for i in range(2):
            qmp.command('block-dirty-bitmap-add', node=disk(i), name='b%d' % i)
        self.write(d, during(0))
        self.assertEqual(self.counts(qmp), self.model(during(0)))
        self.full_pair(d, qmp, 'block-dirty-bitmap-clear')
        self.add_target(d, qmp, 'bad', WRITE_ERRORS)
        self.write(d, before(1))
        self.restore_base(d, 0, 2)
        at0 = self.snapshot(d, 'inc0.img', disk=0)
        qmp.command('transaction', actions=[
            backup('a0', 0, 'tgt2', speed=SPEED), backup('a1', 1, 'bad')])
        self.until_gone(d, qmp, 'a1')
        self.write(d, during(1))
        qmp.command('block-job-set-speed', device='a0', speed=0)
        self.until_gone(d, qmp, 'a0')
        events = [self.policy_events(d, 'a0'), self.policy_events(d, 'a1')]
        self.assertEqual(events, [SUCCESS, ERROR_END])
        self.assertSameImage(at0, d.path('tgt2.img'))
        got = [self.counts(qmp)]
        self.assertEqual(got[-1], [self.model(during(1))[0],
                                   self.model(before(1), during(1))[1]])

        self.restore_base(d, 1, 3)
        qmp.command('blockdev-backup', backup('r1', 1, 'tgt3')['data'])
        self.until_gone(d, qmp, 'r1')
        events.append(self.policy_events(d, 'r1'))
        self.assertEqual(events[-1], SUCCESS)
        self.assertSameImage(d.srcs[1], d.path('tgt3.img'))
        got.append(self.counts(qmp))
        self.assertEqual(got[-1], [self.model(during(1))[0], 0])
        return events, got

    def test_individual_failure_completes_the_partner(self):
        got = self.run_individual(self.blkd)
        if self.have_qsd():
            self.assertEqual(got, self.run_individual(self.qsd))


if __name__ == '__main__':
    unittest.main()
