#!/usr/bin/python3
"""The backup job's sync mode x bitmap mode x outcome matrix, vs qsd.

Each cell runs the same steps on blkd and on qemu-storage-daemon: a
throttled blockdev-backup of a 4 MiB source, writes through qemu-io over
the source's NBD export while it runs, then the outcome: the job runs to
its end, fails on a read error of the source or a write error of the
target (blkdebug, at one sector past the first chunk copied), is
cancelled while running, or is cancelled while pending (auto-finalize
off). Then:

- the job's events, without QEMU's drain pauses, are the outcome's and qsd's;
- the bitmap count is the model's (the 64 KiB clusters written before and
  during the job, kept or given up by bitmap-mode and outcome) and qsd's;
- a complete target restores the disk as it was when the job started; an
  incomplete one holds in each cluster what it held before or what the
  disk held at the start, never newer data.

blkd's sync=differential has no counterpart in QEMU: it must do what
blkd's sync=bitmap with bitmap-mode=never does. Cells other files cover
are listed in COVERED.
"""
import contextlib
import os
import unittest

import iotests
import nbdhelpers
from test_backup import CLUSTER, clusters, qemu_io
from test_backup_policies import (BEFORE, ERROR_AT, MiB, SMALL as SIZE, SPEED,
                                  PolicyTestCase, error_at)

DURING = ['write -P 0x61 64k 64k',                  # copied already
          'write -P 0x62 1536k 4k',                 # ahead: copied first
          'write -P 0x63 %d 8k' % (2 * MiB - 4096),  # two clusters ahead
          'write -z 3328k 64k',                     # outside the bitmap
          'write -P 0x64 %d 4k' % (SIZE - 4096)]
assert ERROR_AT // CLUSTER in clusters(BEFORE) - clusters(DURING)

# Row: the blockdev-backup arguments, and what becomes of the bitmap.
ROWS = {
    'full': ({'sync': 'full'}, None),
    'full_on_success': ({'sync': 'full', 'bitmap': 'b0',
                         'bitmap-mode': 'on-success'}, 'on-success'),
    'full_always': ({'sync': 'full', 'bitmap': 'b0',
                     'bitmap-mode': 'always'}, 'always'),
    'incremental': ({'sync': 'incremental', 'bitmap': 'b0'}, 'on-success'),
    'bitmap_on_success': ({'sync': 'bitmap', 'bitmap': 'b0',
                           'bitmap-mode': 'on-success'}, 'on-success'),
    'bitmap_never': ({'sync': 'bitmap', 'bitmap': 'b0',
                      'bitmap-mode': 'never'}, 'never'),
    'bitmap_always': ({'sync': 'bitmap', 'bitmap': 'b0',
                       'bitmap-mode': 'always'}, 'always'),
    'differential': ({'sync': 'differential', 'bitmap': 'b0'}, 'never'),
}

J = 'JOB_STATUS_CHANGE'
START = [(J, 'created'), (J, 'running')]
END = [(J, 'concluded'), (J, 'null')]
IO_ERROR = 'Input/output error'
# Outcome: the job's events (test_backup_policies.summarize).
OUTCOMES = {
    'success': START + [(J, 'waiting'), (J, 'pending'),
                        ('BLOCK_JOB_COMPLETED', 'backup', None)] + END,
    'source_error': START + [('BLOCK_JOB_ERROR', 'report', 'read'), (J, 'aborting'),
                             ('BLOCK_JOB_COMPLETED', 'backup', IO_ERROR)] + END,
    'target_error': START + [('BLOCK_JOB_ERROR', 'report', 'write'), (J, 'aborting'),
                             ('BLOCK_JOB_COMPLETED', 'backup', IO_ERROR)] + END,
    'cancel_running': START + [(J, 'aborting'),
                               ('BLOCK_JOB_CANCELLED', 'backup', None)] + END,
    'cancel_pending': START + [(J, 'waiting'), (J, 'pending'),
                               ('BLOCK_JOB_PENDING',), (J, 'aborting'),
                               ('BLOCK_JOB_CANCELLED', 'backup', None)] + END,
}

# Cells other tests cover (with writes during the job where they say so).
COVERED = {
    ('full', 'success'): 'test_backup_cancel.WritesDuringFullTest',
    ('full_on_success', 'success'): 'test_backup.BitmapModeTest',
    ('full_on_success', 'source_error'):
        'test_backup_policies.SourceErrorTest.test_source_error_report_keeps_bitmap',
    ('full_on_success', 'target_error'): 'test_backup.BitmapModeTest',
    ('full_always', 'success'): 'test_backup.BitmapModeTest',
    ('full_always', 'target_error'): 'test_backup.BitmapModeTest',
    ('incremental', 'success'): 'test_backup_chains.IncrementalChainTest',
    ('incremental', 'target_error'): 'test_backup_chains.RetryAfterFailureTest',
    ('incremental', 'cancel_running'): 'test_backup_cancel.CancelRunningTest',
    ('incremental', 'cancel_pending'): 'test_backup_cancel.CancelPendingTest',
    ('bitmap_never', 'success'): 'test_backup.BitmapModeTest',
    ('bitmap_never', 'target_error'): 'test_backup.BitmapModeTest',
    ('bitmap_never', 'cancel_running'): 'test_backup_cancel.CancelRunningTest',
    ('bitmap_always', 'cancel_running'): 'test_backup_cancel.CancelRunningTest',
    ('differential', 'success'): 'test_backup_chains.DifferentialTest',
}


def expected_count(mode, outcome, length, offset):
    """The model: the bitmap's count once the job has ended."""
    before, during = clusters(BEFORE), clusters(DURING)
    if outcome == 'success' and mode != 'never':
        return len(during) * CLUSTER
    if mode == 'always':
        # What was not copied (no write during the job is: those clusters
        # were copied before the write), and the writes.
        return length - offset + len(during) * CLUSTER
    return len(before | during) * CLUSTER


def read_cluster(path, i):
    with open(path, 'rb') as f:
        f.seek(i * CLUSTER)
        return f.read(CLUSTER)


class MatrixTestCase(PolicyTestCase):

    def assertClustersFrom(self, image, *sources):
        """Each cluster of @image is the same cluster of one of @sources."""
        with contextlib.ExitStack() as stack:
            files = [stack.enter_context(open(p, 'rb')) for p in (image,) + sources]
            for i in range(os.path.getsize(image) // CLUSTER):
                got, *choices = [f.read(CLUSTER) for f in files]
                self.assertTrue(got in choices, 'cluster %d of %s' % (i, image))


class BackupMatrixTest(MatrixTestCase):
    """test_<row>_<outcome> for every cell of ROWS x OUTCOMES not in COVERED."""

    def run_cell(self, binary, args, mode, outcome):
        """One cell on @binary: (events, len, offset of a complete job,
        bitmap count where it does not depend on timing)."""
        d, qmp = self.start_small(
            binary,
            src_inject=error_at('read_aio') if outcome == 'source_error' else None,
            tgt_inject=error_at('write_aio') if outcome == 'target_error' else None,
            previous=args['sync'] != 'full')
        if mode:
            qmp.command('block-dirty-bitmap-add', node='src', name='b0')
        qemu_io(d.nbd, *BEFORE)
        at_start = self.snapshot(d, 'at_start.img')
        job = dict(args, **{'job-id': 'j', 'device': 'src', 'target': 'tgt',
                            'speed': SPEED})
        if outcome == 'cancel_pending':
            job['auto-finalize'] = False
        qmp.command('blockdev-backup', job)
        self.wait_progress(qmp, 'j')
        qemu_io(d.nbd, *DURING)
        j = self.job(qmp, 'j')
        self.assertEqual(j['status'], 'running')
        self.assertLess(j['current-progress'], j['total-progress'])
        if outcome == 'cancel_running':
            qmp.command('job-cancel', id='j')
        else:
            qmp.command('block-job-set-speed', device='j', speed=0)
        if outcome == 'cancel_pending':
            self.until_status(d, qmp, 'pending')
            qmp.command('job-cancel', id='j')
        self.until_status(d, qmp, 'null')

        events = self.policy_events(d)
        self.assertEqual(events, OUTCOMES[outcome])
        end = self.end_event(d)
        length = SIZE if args['sync'] == 'full' else len(clusters(BEFORE)) * CLUSTER
        self.assertEqual(end['len'], length)
        complete = outcome in ('success', 'cancel_pending')
        if complete:
            self.assertEqual(end['offset'], length)
            self.assertSameImage(at_start, d.tgt)
        else:
            self.assertLess(end['offset'], length)
            self.assertClustersFrom(d.tgt, at_start, d.initial)
        count = None
        if mode:
            count = self.bitmap_count(qmp, 'b0')
            self.assertEqual(count, expected_count(mode, outcome, length, end['offset']))
            if mode == 'always' and not complete:
                count = None        # how far the copy got is timing
        return events, length, end['offset'] if complete else None, count

    def check_cell(self, row, outcome):
        args, mode = ROWS[row]
        got = self.run_cell(self.blkd, args, mode, outcome)
        if row == 'differential':
            self.assertEqual(got, self.run_cell(self.blkd, *ROWS['bitmap_never'], outcome))
        elif self.have_qsd():
            self.assertEqual(got, self.run_cell(self.qsd, args, mode, outcome))


# Written during a sync=none job; in the error cases one more write goes
# to ERROR_AT, where the copy of the old data fails.
NONE_WRITES = ['write -P 0x71 64k 4k', 'write -P 0x72 1M 128k', 'write -z 2M 64k',
               'write -P 0x73 %d 4k' % (SIZE - 4096)]
assert ERROR_AT // CLUSTER not in clusters(NONE_WRITES)


class FleecingTest(MatrixTestCase):
    """sync=none copies nothing itself: only the old data of what is
    written during the job, before the write; it ends when cancelled
    (with auto-finalize off, never reaching pending). A copy that fails
    fails the write (copy-before-write's default, break-guest-write), not
    the job."""

    def run_none(self, binary, outcome):
        """(events, end event, progress after the writes, target map)."""
        d, qmp = self.start_small(
            binary,
            src_inject=error_at('read_aio') if outcome == 'source_error' else None,
            tgt_inject=error_at('write_aio') if outcome == 'target_error' else None)
        qemu_io(d.nbd, *BEFORE)
        at_start = self.snapshot(d, 'at_start.img')
        qmp.command('blockdev-backup', job_id='j', device='src', target='tgt',
                    sync='none', auto_finalize=False)
        qemu_io(d.nbd, *NONE_WRITES)
        if outcome != 'cancel':
            _, out = nbdhelpers.qemu_io(
                '-f', 'raw', '-c', 'write -P 0x74 %d 64k' % ERROR_AT,
                nbdhelpers.uri(d.nbd, 'src'))
            self.assertIn('write failed: Input/output error', out)
        copied = len(clusters(NONE_WRITES)) * CLUSTER
        j = self.job(qmp, 'j')
        progress = (j['status'], j['current-progress'], j['total-progress'])
        self.assertEqual(progress, ('running', copied, SIZE))
        qmp.command('job-cancel', id='j')
        self.until_status(d, qmp, 'null')
        events = self.policy_events(d)
        self.assertEqual(events, OUTCOMES['cancel_running'])
        end = self.end_event(d)
        self.assertEqual((end['offset'], end['len']), (copied, SIZE))
        # The target holds the old data of exactly the clusters written.
        expected = d.path('expected.img')
        with open(at_start, 'rb') as old, open(expected, 'wb') as new:
            new.truncate(SIZE)
            for i in clusters(NONE_WRITES):
                old.seek(i * CLUSTER)
                new.seek(i * CLUSTER)
                new.write(old.read(CLUSTER))
        self.assertSameImage(expected, d.tgt)
        if outcome != 'cancel':
            # The failed write changed nothing.
            self.assertTrue(read_cluster(d.src, ERROR_AT // CLUSTER) ==
                            read_cluster(at_start, ERROR_AT // CLUSTER))
        mapped = iotests.run('qemu-img', 'map', '--output=json', '-f', 'raw',
                             d.tgt, check=True).stdout
        return events, end, progress, mapped

    def check_none(self, outcome):
        got = self.run_none(self.blkd, outcome)
        if self.have_qsd():
            self.assertEqual(got, self.run_none(self.qsd, outcome))

    def test_none_copies_old_data_of_written_clusters_until_cancelled(self):
        self.check_none('cancel')

    def test_none_source_read_error_fails_the_write(self):
        self.check_none('source_error')

    def test_none_target_write_error_fails_the_write(self):
        self.check_none('target_error')


def _cell_test(row, outcome):
    def test(self):
        self.check_cell(row, outcome)
    return test


for _row in ROWS:
    for _outcome in OUTCOMES:
        if (_row, _outcome) not in COVERED:
            setattr(BackupMatrixTest, 'test_%s_%s' % (_row, _outcome),
                    _cell_test(_row, _outcome))


if __name__ == '__main__':
    unittest.main()
