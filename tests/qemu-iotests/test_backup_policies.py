#!/usr/bin/python3
"""Backup error policies: blockdev-backup's on-source-error/on-target-error.

Each case runs the same QMP steps on blkd and on qemu-storage-daemon: a
blkdebug node injects a read error on the source or a write error on the
target, and the events (kinds, actions, operations), the job statuses seen
in query-jobs, the bitmap counts and the restored image must match; the
image must also equal a copy of the source taken when the job started.

The newer cases run on small disks (start_small()): 4 MiB, of which the
first three chunks of 1 MiB hold data, the error injected in the third.
"""
import shutil
import time
import unittest

from test_backup import BackupTestCase, CLUSTER, EIO, SIZE, clusters, qemu_io

ENOSPC = 28

MiB = 1 << 20
SMALL = 4 * MiB
# Written over NBD once the bitmap exists: three chunks; the rest is a hole.
BEFORE = ['write -P 0x31 0 3M']
# Where blkdebug fails: data, past the first chunk, in the last one copied.
ERROR_AT = 2 * MiB + 512 * 1024
# A throttled job copies its first chunk at once, the next one 4 s later.
SPEED = 256 << 10


def error_at(event, errno=EIO, once=False, offset=ERROR_AT):
    """blkdebug rules failing @event at @offset."""
    return [{'event': event, 'errno': errno, 'sector': offset // 512,
             'once': once}]


def summarize(ev):
    """The comparable part of one job event."""
    name, data = ev['event'], ev.get('data', {})
    if name == 'JOB_STATUS_CHANGE':
        return (name, data['status'])
    if name == 'BLOCK_JOB_ERROR':
        return (name, data['action'], data['operation'])
    if name in ('BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED'):
        return (name, data['type'], data.get('error'))
    return (name,)


RUNNING = ('JOB_STATUS_CHANGE', 'running')
PAUSED = ('JOB_STATUS_CHANGE', 'paused')


def EVENTS_STOP_RESUME(operation):
    return [('JOB_STATUS_CHANGE', 'created'), ('JOB_STATUS_CHANGE', 'running'),
            ('BLOCK_JOB_ERROR', 'stop', operation),
            ('JOB_STATUS_CHANGE', 'paused'), ('JOB_STATUS_CHANGE', 'running'),
            ('JOB_STATUS_CHANGE', 'waiting'), ('JOB_STATUS_CHANGE', 'pending'),
            ('BLOCK_JOB_COMPLETED', 'backup', None),
            ('JOB_STATUS_CHANGE', 'concluded'), ('JOB_STATUS_CHANGE', 'null')]


class PolicyTestCase(BackupTestCase):

    def start_policy(self, binary, src_inject=None, **start_args):
        """A daemon whose 'src' is raw over (blkdebug over) the source file.

        'src' is added over QMP once the daemon runs, so no read of the
        daemon's own (probing, export setup) meets the injected error; the
        NBD export of 'src' is added after it. @start_args go to start()."""
        d, qmp = self.start(binary, src_node=False, **start_args)
        d.tgt = d.path('tgt0.img')
        if src_inject is None:
            qmp.command('blockdev-add', driver='raw', node_name='src', file='srcf')
        else:
            qmp.command('blockdev-add', {
                'driver': 'raw', 'node-name': 'src',
                'file': {'driver': 'blkdebug', 'node-name': 'srcdbg',
                         'inject-error': src_inject, 'image': 'srcf'}})
        qmp.command('block-export-add', type='nbd', id='e0', node_name='src',
                    name='src', writable=True)
        self.log_events(d)
        return d, qmp

    def log_events(self, d):
        """Starts the log of d's events that next_event() keeps."""
        d.log = []
        d.pending = []

    def start_small(self, binary, src_inject=None, tgt_inject=None, previous=False):
        """start_policy() on a SMALL disk (a hole until BEFORE is written),
        with a target node 'tgt' over d.tgt: an empty image or, with
        @previous, a copy of the source as it is now (what an earlier
        backup holds, for a bitmap's backup to go onto). Its content before
        the job is kept as d.initial."""
        d, qmp = self.start_policy(binary, src_inject, targets=0, size=SMALL,
                                   data=())
        if previous:
            shutil.copyfile(d.srcs[0], d.tgt)
        else:
            with open(d.tgt, 'wb') as f:
                f.truncate(SMALL)
        d.initial = d.path('initial.img')
        shutil.copyfile(d.tgt, d.initial)
        self.add_target(d, qmp, 'tgt', tgt_inject, path=d.tgt)
        return d, qmp

    def next_event(self, d, qmp, pred, timeout=30):
        """Waits for the first event matching @pred; all are logged."""
        deadline = time.monotonic() + timeout
        while True:
            while d.pending:
                ev = d.pending.pop(0)
                d.log.append(ev)
                if pred(ev):
                    return ev
            d.pending.extend(qmp.get_events())
            if time.monotonic() > deadline:
                self.fail('no matching event within %ss' % timeout)
            if not d.pending:
                msg = qmp.recv_msg(max(0.1, deadline - time.monotonic()))
                self.assertIn('event', msg)
                d.pending.append(msg)

    def until_status(self, d, qmp, status, job_id='j'):
        return self.next_event(d, qmp, lambda ev: (
            ev['event'] == 'JOB_STATUS_CHANGE' and
            ev['data']['id'] == job_id and ev['data']['status'] == status))

    def log_sent(self, d, qmp):
        """Logs every event the daemon sent before the reply to a sync."""
        qmp.sync()
        d.log += d.pending + qmp.get_events()
        d.pending = []

    def until_gone(self, d, qmp, *job_ids, since=0):
        """Waits for each job's 'null', unless logged since d.log[since]."""
        for job_id in job_ids:
            if ('JOB_STATUS_CHANGE', 'null') not in self.job_events(d, job_id, since):
                self.until_status(d, qmp, 'null', job_id)

    def job_events(self, d, job_id='j', since=0):
        """The job's events logged since d.log[since], summarised."""
        out = []
        for ev in d.log[since:]:
            data = ev.get('data', {})
            if data.get('id', data.get('device')) == job_id:
                out.append(summarize(ev))
        return out

    def policy_events(self, d, job_id='j', since=0):
        """job_events() without the drain pauses QEMU shows.

        qemu-storage-daemon 7.2 pauses a running job while it drains the
        job's nodes: right after the job starts, and whenever an NBD client
        comes or goes. Each shows as 'paused' directly followed by
        'running'; blkd has no such pauses. The pause of an error policy's
        stop comes right after its BLOCK_JOB_ERROR and is kept."""
        out = []
        for ev in self.job_events(d, job_id, since):
            if ev == RUNNING and out and out[-1] == PAUSED and \
                    (len(out) < 2 or out[-2][:2] != ('BLOCK_JOB_ERROR', 'stop')):
                out.pop()
                continue
            out.append(ev)
        return out

    def end_event(self, d, job_id='j'):
        """The data of the job's BLOCK_JOB_COMPLETED or _CANCELLED."""
        (end,) = [e['data'] for e in d.log
                  if e['event'] in ('BLOCK_JOB_COMPLETED', 'BLOCK_JOB_CANCELLED')
                  and e['data']['device'] == job_id]
        return end

    def job_status(self, qmp, job_id='j'):
        job = self.job(qmp, job_id)
        return job and job['status']

    def bitmap_count(self, qmp, name='b', busy=False):
        (bm,) = [b for b in self.bitmaps(qmp, 'src') if b.get('name') == name]
        self.assertEqual(bm['busy'], busy)
        return bm['count']


class TargetErrorStopTest(PolicyTestCase):

    def run_stop(self, binary, policy='stop', errno=EIO):
        """One write error (once) on the target that @policy stops at."""
        d, qmp = self.start_policy(binary)
        qmp.command('block-dirty-bitmap-add', node='src', name='b')
        qemu_io(d.nbd, 'write -P 0x33 1M 64k', 'write -P 0x44 30M 4k')
        self.add_target(d, qmp, 'bad', [{'event': 'write_aio', 'errno': errno,
                                         'once': True}], path=d.tgt)
        at_start = self.snapshot(d, 'at.img')
        qmp.command('blockdev-backup', job_id='j', device='src', target='bad',
                    sync='full', bitmap='b', bitmap_mode='on-success',
                    on_target_error=policy)
        self.next_event(d, qmp, lambda ev: ev['event'] == 'BLOCK_JOB_ERROR')
        self.until_status(d, qmp, 'paused')
        err = [e for e in d.log if e['event'] == 'BLOCK_JOB_ERROR']
        paused = self.job_status(qmp)
        (info,) = qmp.command('query-block-jobs')
        io_status = info['io-status']
        count_paused = self.bitmap_count(qmp, busy=True)
        qmp.command('job-resume', id='j')
        self.until_gone(d, qmp, 'j')
        end = [e for e in d.log if e['event'] == 'BLOCK_JOB_COMPLETED']
        self.assertEqual(len(end), 1)
        self.assertNotIn('error', end[0]['data'])
        self.assertEqual(end[0]['data']['offset'], SIZE)
        self.assertEqual(paused, 'paused')
        self.assertEqual([(e['data']['action'], e['data']['operation'])
                          for e in err], [('stop', 'write')])
        self.assertSameImage(at_start, d.tgt)
        count_end = self.bitmap_count(qmp)
        self.assertEqual(count_end, 0)
        return self.policy_events(d), paused, io_status, count_paused, count_end

    def test_target_error_stop_then_resume(self):
        got = self.run_stop(self.blkd)
        self.assertEqual(got[0], EVENTS_STOP_RESUME('write'))
        self.assertEqual(got[2:4], ('failed', 2 * CLUSTER))
        if self.have_qsd():
            self.assertEqual(got, self.run_stop(self.qsd))

    def test_target_enospc_stops_on_no_space_then_resume(self):
        got = self.run_stop(self.blkd, 'enospc', ENOSPC)
        self.assertEqual(got[0], EVENTS_STOP_RESUME('write'))
        self.assertEqual(got[2:4], ('nospace', 2 * CLUSTER))
        if self.have_qsd():
            self.assertEqual(got, self.run_stop(self.qsd, 'enospc', ENOSPC))


class EnospcReportTest(PolicyTestCase):

    def run_enospc_eio(self, binary):
        """on-target-error=enospc and an error other than ENOSPC."""
        d, qmp = self.start_small(binary, tgt_inject=error_at('write_aio'))
        qmp.command('block-dirty-bitmap-add', node='src', name='b')
        qemu_io(d.nbd, *BEFORE)
        qmp.command('blockdev-backup', job_id='j', device='src', target='tgt',
                    sync='incremental', bitmap='b', on_target_error='enospc')
        self.until_gone(d, qmp, 'j')
        end = self.end_event(d)
        self.assertEqual(end['error'], 'Input/output error')
        self.assertLess(end['offset'], end['len'])
        # A failed incremental gives nothing up.
        count = self.bitmap_count(qmp)
        self.assertEqual(count, len(clusters(BEFORE)) * CLUSTER)
        return self.policy_events(d), count

    def test_target_enospc_reports_other_errors(self):
        got = self.run_enospc_eio(self.blkd)
        self.assertEqual(got[0], [
            ('JOB_STATUS_CHANGE', 'created'), ('JOB_STATUS_CHANGE', 'running'),
            ('BLOCK_JOB_ERROR', 'report', 'write'),
            ('JOB_STATUS_CHANGE', 'aborting'),
            ('BLOCK_JOB_COMPLETED', 'backup', 'Input/output error'),
            ('JOB_STATUS_CHANGE', 'concluded'), ('JOB_STATUS_CHANGE', 'null')])
        if self.have_qsd():
            self.assertEqual(got, self.run_enospc_eio(self.qsd))


class SourceErrorTest(PolicyTestCase):

    def run_source(self, binary, policy):
        """One read error (once) on the source: stop+resume, or report."""
        d, qmp = self.start_policy(binary, src_inject=[
            {'event': 'read_aio', 'errno': EIO, 'once': True}])
        qmp.command('block-dirty-bitmap-add', node='src', name='b')
        qemu_io(d.nbd, 'write -P 0x33 1M 64k')
        at_start = self.snapshot(d, 'at.img')
        args = {'job-id': 'j', 'device': 'src', 'target': 'tgt0',
                'sync': 'full', 'bitmap': 'b', 'bitmap-mode': 'on-success'}
        if policy:
            args['on-source-error'] = policy
        qmp.command('blockdev-backup', args)
        err = self.next_event(d, qmp, lambda ev: ev['event'] == 'BLOCK_JOB_ERROR')
        self.assertEqual(err['data']['operation'], 'read')
        paused = None
        if policy == 'stop':
            self.until_status(d, qmp, 'paused')
            paused = self.job_status(qmp)
            self.assertEqual(paused, 'paused')
            self.assertEqual(self.bitmap_count(qmp, busy=True), CLUSTER)
            qmp.command('job-resume', id='j')
        self.until_gone(d, qmp, 'j')
        (end,) = [e for e in d.log if e['event'] == 'BLOCK_JOB_COMPLETED']
        if policy == 'stop':
            self.assertNotIn('error', end['data'])
            self.assertEqual(end['data']['offset'], SIZE)
            self.assertSameImage(at_start, d.tgt)
        else:
            self.assertEqual(end['data']['error'], 'Input/output error')
        self.assertIsNone(self.job_status(qmp))
        count = self.bitmap_count(qmp)
        return self.policy_events(d), paused, count

    def test_source_error_stop_then_resume(self):
        got = self.run_source(self.blkd, 'stop')
        self.assertEqual(got[0], EVENTS_STOP_RESUME('read'))
        self.assertEqual(got[2], 0)
        if self.have_qsd():
            self.assertEqual(got, self.run_source(self.qsd, 'stop'))

    def test_source_error_report_keeps_bitmap(self):
        got = self.run_source(self.blkd, None)
        self.assertEqual(got[0], [
            ('JOB_STATUS_CHANGE', 'created'), ('JOB_STATUS_CHANGE', 'running'),
            ('BLOCK_JOB_ERROR', 'report', 'read'),
            ('JOB_STATUS_CHANGE', 'aborting'),
            ('BLOCK_JOB_COMPLETED', 'backup', 'Input/output error'),
            ('JOB_STATUS_CHANGE', 'concluded'), ('JOB_STATUS_CHANGE', 'null')])
        # on-success: a failed job gives nothing up.
        self.assertEqual(got[2], CLUSTER)
        if self.have_qsd():
            self.assertEqual(got, self.run_source(self.qsd, None))


def collapsed(events):
    """Each run of one event as one: how often an ignored error repeats
    before the cancel is timing."""
    return [e for i, e in enumerate(events) if not i or events[i - 1] != e]


class IgnoreTest(PolicyTestCase):
    """on-*-error=ignore: each failed copy is reported (action ignore) and
    tried again at once, without a pause; the job runs on."""

    RETRIES = 5

    def run_ignore(self, binary, side, once):
        """A full backup with bitmap 'b' and an error at ERROR_AT on the
        source (bitmap-mode always) or the target (on-success). A
        persistent error is retried until the job is cancelled after
        RETRIES reports; a one-time error is retried past."""
        inject = error_at('read_aio' if side == 'source' else 'write_aio', once=once)
        d, qmp = self.start_small(binary, inject if side == 'source' else None,
                                  inject if side == 'target' else None)
        qmp.command('block-dirty-bitmap-add', node='src', name='b')
        qemu_io(d.nbd, *BEFORE)
        at_start = self.snapshot(d, 'at.img')
        mode = 'always' if side == 'source' else 'on-success'
        qmp.command('blockdev-backup', {
            'job-id': 'j', 'device': 'src', 'target': 'tgt', 'sync': 'full',
            'bitmap': 'b', 'bitmap-mode': mode, 'on-%s-error' % side: 'ignore'})
        state = None
        if not once:
            for _ in range(self.RETRIES):
                self.next_event(d, qmp, lambda ev: ev['event'] == 'BLOCK_JOB_ERROR')
            # No pause, no error status: the job just goes on.
            (info,) = qmp.command('query-block-jobs')
            state = (info['status'], info['io-status'])
            self.assertEqual(state, ('running', 'ok'))
            qmp.command('job-cancel', id='j')
        self.until_gone(d, qmp, 'j')
        operation = 'read' if side == 'source' else 'write'
        errors = [e['data'] for e in d.log if e['event'] == 'BLOCK_JOB_ERROR']
        self.assertEqual(errors[0], {'device': 'j', 'operation': operation,
                                     'action': 'ignore'})
        self.assertTrue(all(e == errors[0] for e in errors), errors)
        self.assertEqual(len(errors) == 1, once)
        end = self.end_event(d)
        count = self.bitmap_count(qmp)
        if once:
            self.assertEqual(end['offset'], SMALL)
            self.assertSameImage(at_start, d.tgt)
            self.assertEqual(count, 0)
        else:
            # All but the failing chunk, which stays dirty whatever the mode.
            self.assertEqual(end['offset'], SMALL - MiB)
            expected = MiB if mode == 'always' else len(clusters(BEFORE)) * CLUSTER
            self.assertEqual(count, expected)
        return collapsed(self.policy_events(d)), errors[0], state, end, count

    def check_ignore(self, side, once):
        got = self.run_ignore(self.blkd, side, once)
        operation = 'read' if side == 'source' else 'write'
        start = [('JOB_STATUS_CHANGE', 'created'), ('JOB_STATUS_CHANGE', 'running'),
                 ('BLOCK_JOB_ERROR', 'ignore', operation)]
        if once:
            self.assertEqual(got[0], start + [
                ('JOB_STATUS_CHANGE', 'waiting'), ('JOB_STATUS_CHANGE', 'pending'),
                ('BLOCK_JOB_COMPLETED', 'backup', None),
                ('JOB_STATUS_CHANGE', 'concluded'), ('JOB_STATUS_CHANGE', 'null')])
        else:
            self.assertEqual(got[0], start + [
                ('JOB_STATUS_CHANGE', 'aborting'),
                ('BLOCK_JOB_CANCELLED', 'backup', None),
                ('JOB_STATUS_CHANGE', 'concluded'), ('JOB_STATUS_CHANGE', 'null')])
        if self.have_qsd():
            self.assertEqual(got, self.run_ignore(self.qsd, side, once))

    def test_source_error_ignored_retries_until_cancelled(self):
        self.check_ignore('source', once=False)

    def test_target_error_ignored_retries_until_cancelled(self):
        self.check_ignore('target', once=False)

    def test_source_error_once_ignored_retried_to_the_end(self):
        self.check_ignore('source', once=True)

    def test_target_error_once_ignored_retried_to_the_end(self):
        self.check_ignore('target', once=True)


class WritesDuringRetryTest(PolicyTestCase):

    def run_writes_while_stopped(self, binary):
        """A full backup stopped by a target error (once) in its last
        chunk; while it is paused, writes to clusters copied already and to
        clusters of the failed chunk; then job-resume."""
        d, qmp = self.start_small(binary, tgt_inject=error_at('write_aio', once=True))
        qmp.command('block-dirty-bitmap-add', node='src', name='b')
        qemu_io(d.nbd, *BEFORE)
        at_start = self.snapshot(d, 'at.img')
        qmp.command('blockdev-backup', job_id='j', device='src', target='tgt',
                    sync='full', bitmap='b', bitmap_mode='on-success',
                    on_target_error='stop')
        self.until_status(d, qmp, 'paused')
        written = ['write -P 0x41 64k 64k', 'write -P 0x42 %d 4k' % ERROR_AT,
                   'write -z 2M 64k', 'write -P 0x43 %d 64k' % (SMALL - CLUSTER)]
        qemu_io(d.nbd, *written)
        # Frozen: the writes go to its successor.
        frozen = self.bitmap_count(qmp, busy=True)
        self.assertEqual(frozen, len(clusters(BEFORE)) * CLUSTER)
        qmp.command('job-resume', id='j')
        self.until_gone(d, qmp, 'j')
        end = self.end_event(d)
        self.assertNotIn('error', end)
        self.assertEqual(end['offset'], SMALL)
        self.assertSameImage(at_start, d.tgt)
        count = self.bitmap_count(qmp)
        self.assertEqual(count, len(clusters(written)) * CLUSTER)
        return self.policy_events(d), frozen, end, count

    def test_writes_while_stopped_on_error(self):
        got = self.run_writes_while_stopped(self.blkd)
        self.assertEqual(got[0], EVENTS_STOP_RESUME('write'))
        if self.have_qsd():
            self.assertEqual(got, self.run_writes_while_stopped(self.qsd))

    def run_retry_while_writing(self, binary):
        """An incremental that fails (report) on a target error, and its
        retry to a good target, with writes during both and between."""
        d, qmp = self.start_small(binary, previous=True)
        bad = d.path('bad.img')
        shutil.copyfile(d.initial, bad)
        self.add_target(d, qmp, 'bad', error_at('write_aio'), path=bad)
        qmp.command('block-dirty-bitmap-add', node='src', name='b')
        qemu_io(d.nbd, *BEFORE)
        writes = [['write -P 0x51 64k 64k', 'write -P 0x52 3M 4k'],
                  ['write -P 0x53 64k 4k', 'write -z 1M 64k'],
                  ['write -P 0x54 128k 64k', 'write -P 0x55 1536k 128k',
                   'write -P 0x56 %d 4k' % (SMALL - 4096)]]
        out = []
        for i, (target, job_id) in enumerate([('bad', 'j1'), ('tgt', 'j2')]):
            at_start = self.snapshot(d, 'at%d.img' % i)
            qmp.command('blockdev-backup', job_id=job_id, device='src',
                        target=target, sync='incremental', bitmap='b', speed=SPEED)
            self.wait_progress(qmp, job_id)
            qemu_io(d.nbd, *writes[i * 2])
            qmp.command('block-job-set-speed', device=job_id, speed=0)
            self.until_gone(d, qmp, job_id)
            out += [self.policy_events(d, job_id), self.end_event(d, job_id)['len'],
                    self.bitmap_count(qmp)]
            if not i:
                qemu_io(d.nbd, *writes[1])
        # The first failed: nothing lost, its writes and those after added.
        self.assertEqual(out[1:3], [len(clusters(BEFORE)) * CLUSTER, len(
            clusters(BEFORE) | clusters(writes[0])) * CLUSTER])
        # The retry copied all that and the writes after the failure, and
        # restores the disk as it was when the retry started.
        self.assertEqual(out[4], len(
            clusters(BEFORE) | clusters(writes[0]) | clusters(writes[1])) * CLUSTER)
        self.assertSameImage(at_start, d.path('tgt0.img'))
        self.assertEqual(out[5], len(clusters(writes[2])) * CLUSTER)
        return out

    def test_retry_after_failure_while_writing(self):
        got = self.run_retry_while_writing(self.blkd)
        self.assertEqual(got[0][-4:-2], [('JOB_STATUS_CHANGE', 'aborting'),
                                         ('BLOCK_JOB_COMPLETED', 'backup',
                                          'Input/output error')])
        self.assertEqual(got[3][-4:-2], [('JOB_STATUS_CHANGE', 'pending'),
                                         ('BLOCK_JOB_COMPLETED', 'backup', None)])
        if self.have_qsd():
            self.assertEqual(got, self.run_retry_while_writing(self.qsd))


if __name__ == '__main__':
    unittest.main()
