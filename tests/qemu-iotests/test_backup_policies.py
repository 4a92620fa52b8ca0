#!/usr/bin/python3
"""Backup error policies: blockdev-backup's on-source-error/on-target-error.

Each case runs the same QMP steps on blkd and on qemu-storage-daemon: a
blkdebug node injects a read error on the source or a write error on the
target, and the events (kinds, actions, operations), the job statuses seen
in query-jobs, the bitmap counts and the restored image must match; the
image must also equal a copy of the source taken when the job started.
"""
import time
import unittest

from test_backup import BackupTestCase, CLUSTER, SIZE, qemu_io

EIO = 5


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
        d.log = []
        d.pending = []
        return d, qmp

    def add_target(self, d, qmp, name, inject=None):
        """A raw node @name over the file d.tgt, through blkdebug when
        there are errors to @inject (QEMU raises write_aio from the format
        above blkdebug, so raw is on top)."""
        image = {'driver': 'file', 'filename': d.tgt}
        if inject is not None:
            image = {'driver': 'blkdebug', 'inject-error': inject, 'image': image}
        qmp.command('blockdev-add', driver='raw', node_name=name, file=image)

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

    def job_events(self, d, job_id='j'):
        out = []
        for ev in d.log:
            data = ev.get('data', {})
            if data.get('id', data.get('device')) == job_id:
                out.append(summarize(ev))
        return out

    def policy_events(self, d, job_id='j'):
        """job_events() without the drain pauses QEMU shows.

        qemu-storage-daemon 7.2 pauses a running job while it drains the
        job's nodes: right after the job starts, and whenever an NBD client
        comes or goes. Each shows as 'paused' directly followed by
        'running'; blkd has no such pauses. The pause of an error policy's
        stop comes right after its BLOCK_JOB_ERROR and is kept."""
        out = []
        for ev in self.job_events(d, job_id):
            if ev == RUNNING and out and out[-1] == PAUSED and \
                    (len(out) < 2 or out[-2][:2] != ('BLOCK_JOB_ERROR', 'stop')):
                out.pop()
                continue
            out.append(ev)
        return out

    def job_status(self, qmp, job_id='j'):
        job = self.job(qmp, job_id)
        return job and job['status']

    def bitmap_count(self, qmp, name='b', busy=False):
        (bm,) = [b for b in self.bitmaps(qmp, 'src') if b.get('name') == name]
        self.assertEqual(bm['busy'], busy)
        return bm['count']


class TargetErrorStopTest(PolicyTestCase):

    def run_stop(self, binary):
        d, qmp = self.start_policy(binary)
        qmp.command('block-dirty-bitmap-add', node='src', name='b')
        qemu_io(d.nbd, 'write -P 0x33 1M 64k', 'write -P 0x44 30M 4k')
        self.add_target(d, qmp, 'bad', [{'event': 'write_aio', 'errno': EIO,
                                         'once': True}])
        at_start = self.snapshot(d, 'at.img')
        qmp.command('blockdev-backup', job_id='j', device='src', target='bad',
                    sync='full', bitmap='b', bitmap_mode='on-success',
                    on_target_error='stop')
        self.next_event(d, qmp, lambda ev: ev['event'] == 'BLOCK_JOB_ERROR')
        self.until_status(d, qmp, 'paused')
        err = [e for e in d.log if e['event'] == 'BLOCK_JOB_ERROR']
        paused = self.job_status(qmp)
        count_paused = self.bitmap_count(qmp, busy=True)
        qmp.command('job-resume', id='j')
        self.until_status(d, qmp, 'null')
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
        return self.policy_events(d), paused, count_paused, count_end

    def test_target_error_stop_then_resume(self):
        got = self.run_stop(self.blkd)
        self.assertEqual(got[0], EVENTS_STOP_RESUME('write'))
        self.assertEqual(got[2], 2 * CLUSTER)
        if self.have_qsd():
            self.assertEqual(got, self.run_stop(self.qsd))


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
        self.until_status(d, qmp, 'null')
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


if __name__ == '__main__':
    unittest.main()
