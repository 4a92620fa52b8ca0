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
are listed in COVERED. sync=none (FleecingTest) has its own outcomes: it
copies only ahead of writes and ends only when cancelled. sync=top
(TopOverlayTest) runs from a qcow2 overlay, where it differs from full.
"""
import contextlib
import json
import os
import shutil
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


def expected_count(mode, outcome, length, offset, before, during):
    """The model: the bitmap's count once the job has ended, from the
    clusters written @before and @during it."""
    if outcome == 'success' and mode != 'never':
        return len(during) * CLUSTER
    if mode == 'always':
        # What was not copied (no write during the job is: those clusters
        # were copied before the write), and the writes.
        return length - offset + len(during) * CLUSTER
    return len(before | during) * CLUSTER


def complete(outcome):
    """Whether the job copied everything before it ended."""
    return outcome in ('success', 'cancel_pending')


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

    def drive(self, d, qmp, args, outcome, during, length):
        """Starts the throttled job 'j' with @args from 'src' to 'tgt',
        writes @during once it has copied its first chunk, and brings
        about @outcome. Returns its events and its end event's data."""
        job = dict(args, **{'job-id': 'j', 'device': 'src', 'target': 'tgt',
                            'speed': SPEED})
        if outcome == 'cancel_pending':
            job['auto-finalize'] = False
        qmp.command('blockdev-backup', job)
        self.wait_progress(qmp, 'j')
        qemu_io(d.nbd, *during)
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
        self.until_gone(d, qmp, 'j')
        events = self.policy_events(d)
        self.assertEqual(events, OUTCOMES[outcome])
        end = self.end_event(d)
        self.assertEqual(end['len'], length)
        if complete(outcome):
            self.assertEqual(end['offset'], length)
        else:
            self.assertLess(end['offset'], length)
        return events, end

    def check_bitmap(self, qmp, mode, outcome, end, before, during):
        """The count of 'b0' against the model; None where it depends on
        how far the copy got."""
        count = self.bitmap_count(qmp, 'b0')
        self.assertEqual(count, expected_count(mode, outcome, end['len'],
                                               end['offset'], before, during))
        if mode == 'always' and not complete(outcome):
            return None
        return count


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
        length = SIZE if args['sync'] == 'full' else len(clusters(BEFORE)) * CLUSTER
        events, end = self.drive(d, qmp, args, outcome, DURING, length)
        if complete(outcome):
            self.assertSameImage(at_start, d.tgt)
        else:
            self.assertClustersFrom(d.tgt, at_start, d.initial)
        count = None
        if mode:
            count = self.check_bitmap(qmp, mode, outcome, end, clusters(BEFORE),
                                      clusters(DURING))
        return events, length, end['offset'] if complete(outcome) else None, count

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
        self.until_gone(d, qmp, 'j')
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
            self.assertTrue(read_cluster(d.srcs[0], ERROR_AT // CLUSTER) ==
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


# sync=top: the source 'src' is a qcow2 overlay over a raw base, both open
# in the daemon; the target a qcow2 image backed by the same base (node).
# The top layer, written before the daemon starts: data, zeroes over the
# base's data, data; the rest shows the base (0x11).
TOP_LAYER = ['write -P 0x21 0 1M', 'write -z 1M 128k', 'write -P 0x22 1536k 1M']
# Written once the bitmap exists, before the job: allocated too.
TOP_BEFORE = ['write -P 0x31 3M 256k']
TOP_ALLOCATED = clusters(TOP_LAYER + ['write 1M 128k']) | clusters(TOP_BEFORE)
# Allocated data past the first chunk.
TOP_ERROR_AT = 2 * MiB
# Ahead in the top layer (copied first) and in unallocated clusters (not
# copied: the target shows the base there, as the source did).
TOP_DURING = ['write -P 0x61 64k 64k', 'write -P 0x62 1600k 4k', 'write -z 2304k 64k',
              'write -P 0x63 2752k 64k', 'write -P 0x64 %d 4k' % (SIZE - 4096)]
assert TOP_ERROR_AT // CLUSTER in TOP_ALLOCATED - clusters(TOP_DURING)
TOP_ROWS = {
    'top': ({'sync': 'top'}, None),
    'top_on_success': ({'sync': 'top', 'bitmap': 'b0',
                        'bitmap-mode': 'on-success'}, 'on-success'),
    'top_always': ({'sync': 'top', 'bitmap': 'b0', 'bitmap-mode': 'always'}, 'always'),
}


def depth0_clusters(map_json):
    """The clusters `qemu-img map` says the image's own layer allocates."""
    out = set()
    for e in json.loads(map_json):
        if e['depth'] == 0 and (e['data'] or e['zero']):
            out |= set(range(e['start'] // CLUSTER,
                             (e['start'] + e['length'] - 1) // CLUSTER + 1))
    return out


class TopOverlayTest(MatrixTestCase):
    """sync=top copies only what the source's top layer allocates; the
    target, read through its backing (the source's base), is the source
    at the job's start. Each bitmap mode top takes, and each outcome; for
    a target error the target is raw over blkdebug (where a qcow2 target
    puts its clusters is its choice, so blkdebug could not aim past the
    first chunk there), and holds, cluster by cluster, the source at the
    start or nothing."""

    def start_overlay(self, binary, src_error, tgt_error=False):
        d = iotests.Daemon(self, name=os.path.basename(binary))
        base, top, tgt = d.path('base.img'), d.path('top.qcow2'), d.path('tgt.qcow2')
        iotests.run('qemu-img', 'create', '-f', 'raw', base, str(SIZE), check=True)
        iotests.run('qemu-io', '-f', 'raw', '-c', 'write -P 0x11 0 %d' % SIZE, base,
                    check=True)
        for path in (top, tgt):
            iotests.run('qemu-img', 'create', '-f', 'qcow2', '-o', 'cluster_size=64k',
                        '-b', base, '-F', 'raw', path, str(SIZE), check=True)
        if tgt_error:
            tgt = d.path('tgt.img')
            iotests.run('qemu-img', 'create', '-f', 'raw', tgt, str(SIZE), check=True)
        iotests.run('qemu-io', '-f', 'qcow2',
                    *[a for c in TOP_LAYER for a in ('-c', c)], top, check=True)
        files = {'src': {'driver': 'file', 'filename': top},
                 'tgt': {'driver': 'file', 'filename': tgt}}
        if src_error:
            # blkdebug under qcow2 sees host offsets: where the data is.
            (e,) = [e for e in json.loads(iotests.run(
                'qemu-img', 'map', '--output=json', top, check=True).stdout)
                if e['start'] <= TOP_ERROR_AT < e['start'] + e['length']]
            files['src'] = {'driver': 'blkdebug', 'image': files['src'],
                            'inject-error': error_at(
                                'read_aio', offset=e['offset'] + TOP_ERROR_AT - e['start'])}
        d.nbd = d.path('nbd.sock')
        d.start(binary, '--blockdev',
                'driver=file,node-name=basef,filename=%s,read-only=on' % base,
                '--blockdev', 'driver=raw,node-name=base,file=basef,read-only=on',
                '--nbd-server', 'addr.type=unix,addr.path=' + d.nbd)
        qmp = d.qmp(negotiate=True)
        qmp.command('blockdev-add', driver='qcow2', node_name='src',
                    file=files['src'], backing='base')
        if tgt_error:
            qmp.command('blockdev-add', driver='raw', node_name='tgt', file={
                'driver': 'blkdebug', 'image': files['tgt'],
                'inject-error': error_at('write_aio', offset=TOP_ERROR_AT)})
        else:
            qmp.command('blockdev-add', driver='qcow2', node_name='tgt',
                        file=files['tgt'], backing='base')
        qmp.command('block-export-add', type='nbd', id='e0', node_name='src',
                    name='src', writable=True)
        d.base, d.tgt = base, tgt
        self.log_events(d)
        return d, qmp

    def run_top(self, binary, args, mode, outcome):
        """(events, len, offset of a complete job, bitmap count where it
        does not depend on timing, what the target's layer allocates)."""
        d, qmp = self.start_overlay(binary, outcome == 'source_error',
                                    outcome == 'target_error')
        if mode:
            qmp.command('block-dirty-bitmap-add', node='src', name='b0')
        qemu_io(d.nbd, *TOP_BEFORE)
        # The source as its guest sees it, built apart: reading it through
        # the export would meet the injected error.
        at_start = d.path('at_start.img')
        shutil.copyfile(d.base, at_start)
        iotests.run('qemu-io', '-f', 'raw', *[a for c in TOP_LAYER + TOP_BEFORE
                                             for a in ('-c', c)], at_start, check=True)
        length = len(TOP_ALLOCATED) * CLUSTER
        events, end = self.drive(d, qmp, args, outcome, TOP_DURING, length)
        count = None
        if mode:
            count = self.check_bitmap(qmp, mode, outcome, end, clusters(TOP_BEFORE),
                                      clusters(TOP_DURING))
        qmp.command('blockdev-del', node_name='tgt')
        if outcome == 'target_error':
            # Raw: what was copied is the source at the start, the rest
            # never written (zeroes).
            zeroes = d.path('zeroes.img')
            iotests.run('qemu-img', 'create', '-f', 'raw', zeroes, str(SIZE), check=True)
            self.assertClustersFrom(d.tgt, at_start, zeroes)
            return events, length, None, count, None
        res = iotests.run('qemu-img', 'check', '-f', 'qcow2', d.tgt)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        allocated = depth0_clusters(iotests.run(
            'qemu-img', 'map', '--output=json', d.tgt, check=True).stdout)
        if complete(outcome):
            self.assertEqual(allocated, TOP_ALLOCATED)
            res = iotests.run('qemu-img', 'compare', '-f', 'qcow2', '-F', 'raw',
                              d.tgt, at_start)
            self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        else:
            self.assertLessEqual(allocated, TOP_ALLOCATED)
            restored = d.path('restored.img')
            iotests.run('qemu-img', 'convert', '-f', 'qcow2', '-O', 'raw', d.tgt,
                        restored, check=True)
            self.assertClustersFrom(restored, at_start, d.base)
        return (events, length, end['offset'] if complete(outcome) else None, count,
                sorted(allocated) if complete(outcome) else None)

    def check_top(self, row, outcome):
        got = self.run_top(self.blkd, *TOP_ROWS[row], outcome)
        if self.have_qsd():
            self.assertEqual(got, self.run_top(self.qsd, *TOP_ROWS[row], outcome))

    def test_top_success(self):
        self.check_top('top', 'success')

    def test_top_always_success(self):
        self.check_top('top_always', 'success')

    def test_top_always_source_error(self):
        self.check_top('top_always', 'source_error')

    def test_top_on_success_source_error(self):
        self.check_top('top_on_success', 'source_error')

    def test_top_on_success_target_error(self):
        self.check_top('top_on_success', 'target_error')

    def test_top_always_target_error(self):
        self.check_top('top_always', 'target_error')

    def test_top_cancel_running(self):
        self.check_top('top', 'cancel_running')

    def test_top_on_success_cancel_pending(self):
        self.check_top('top_on_success', 'cancel_pending')


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
