#!/usr/bin/python3
"""Jobs over QMP, blkd against qemu-storage-daemon: blockdev-create jobs
(the job type both daemons have), their event sequences, query-jobs and
query-block-jobs, and the texts and classes of every job verb on unknown,
running and concluded jobs.

Paths differ between the two daemons (each has its own directory), so
replies are compared with the directory replaced by $DIR. The only
long-running job both daemons have is a file created with
preallocation=full; the paths of jobs that pause, sleep or fail in the
middle of their work (and transactions) are tested in
tests/unit/test-job.c and test-blockjob.c.
"""
import json
import os
import time
import unittest

import iotests
from test_qmp_protocol import SchemaComparer

JOB_COMMANDS = ('query-jobs', 'job-pause', 'job-resume', 'job-cancel',
                'job-complete', 'job-finalize', 'job-dismiss',
                'query-block-jobs', 'block-job-cancel', 'block-job-pause',
                'block-job-resume', 'block-job-complete',
                'block-job-set-speed', 'block-job-finalize',
                'block-job-dismiss')
JOB_EVENTS = ('JOB_STATUS_CHANGE', 'BLOCK_JOB_COMPLETED',
              'BLOCK_JOB_CANCELLED', 'BLOCK_JOB_ERROR', 'BLOCK_JOB_READY',
              'BLOCK_JOB_PENDING')

# Every verb on a job called ID, as each command spells its argument.
VERBS = [
    ('job-pause', {'id': 'ID'}),
    ('job-resume', {'id': 'ID'}),
    ('job-cancel', {'id': 'ID'}),
    ('job-complete', {'id': 'ID'}),
    ('job-finalize', {'id': 'ID'}),
    ('block-job-pause', {'device': 'ID'}),
    ('block-job-resume', {'device': 'ID'}),
    ('block-job-cancel', {'device': 'ID'}),
    ('block-job-cancel', {'device': 'ID', 'force': True}),
    ('block-job-complete', {'device': 'ID'}),
    ('block-job-set-speed', {'device': 'ID', 'speed': 1}),
    ('block-job-set-speed', {'device': 'ID', 'speed': -1}),
    ('block-job-finalize', {'id': 'ID'}),
    ('block-job-dismiss', {'id': 'ID'}),
    ('job-dismiss', {'id': 'ID'}),
]

# blockdev-create arguments refused before any job exists ($DIR: the
# daemon's directory).
REFUSED = [
    {'job-id': 'j0', 'options': {'driver': 'raw'}},
    {'job-id': 'j0', 'options': {'driver': 'null-co'}},
    {'job-id': 'j0', 'options': {'driver': 'raw', 'filename': '$DIR/x'}},
    {'job-id': '', 'options': {'driver': 'file', 'filename': '$DIR/x', 'size': 0}},
    {'job-id': '0j', 'options': {'driver': 'file', 'filename': '$DIR/x', 'size': 0}},
    {'job-id': 'a b', 'options': {'driver': 'file', 'filename': '$DIR/x', 'size': 0}},
    {'options': {'driver': 'file', 'filename': '$DIR/x', 'size': 0}},
    {'job-id': 'j0', 'options': {'driver': 'file', 'size': 0}},
    {'job-id': 'j0', 'options': {'driver': 'file', 'filename': '$DIR/x'}},
    {'job-id': 'j0', 'options': {'driver': 'file', 'filename': '$DIR/x',
                                 'size': 0, 'preallocation': 'bogus'}},
    {'job-id': 'j0', 'options': {'driver': 'file', 'filename': '$DIR/x',
                                 'size': 'big'}},
    {'job-id': 'j0', 'options': {'driver': 'file', 'filename': '$DIR/x',
                                 'size': 0, 'bogus': 1}},
    {'job-id': 'j0', 'options': {'driver': 'nope'}},
]

# Options of jobs that start and then fail (file driver).
FAILING = [
    {'filename': '$DIR'},                                   # a directory
    {'filename': '$DIR/no/such/dir/x'},
    {'filename': '$DIR/x', 'preallocation': 'metadata'},
    {'filename': '$DIR/x', 'size': -1},
    {'filename': '$DIR/x', 'size': -1, 'preallocation': 'falloc'},
    {'filename': '$DIR/x', 'size': -1, 'preallocation': 'full'},
    {'filename': '$DIR/x', 'extent-size-hint': 1 << 32},
]


def subst(obj, d):
    """obj with '$DIR' replaced by d's directory."""
    return json.loads(json.dumps(obj).replace('$DIR', d.dir))


def norm(obj, d):
    """obj with d's directory replaced by '$DIR'."""
    return json.loads(json.dumps(obj).replace(d.dir, '$DIR'))


def events_of(qmp, job_id):
    """The job events about job_id so far: [(name, data)], timestamps off."""
    qmp.sync()
    out = []
    for ev in qmp.get_events():
        data = ev.get('data', {})
        if ev['event'] in JOB_EVENTS and \
                job_id in (data.get('id'), data.get('device')):
            out.append((ev['event'], data))
    return out


def statuses(events):
    return [data['status'] for name, data in events
            if name == 'JOB_STATUS_CHANGE']


def job_info(qmp, job_id):
    for info in qmp.command('query-jobs'):
        if info['id'] == job_id:
            return info
    return None


def wait_concluded(qmp, job_id, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        info = job_info(qmp, job_id)
        if info and info['status'] == 'concluded':
            return info
        if time.monotonic() > deadline:
            raise AssertionError('job %s not concluded: %r' % (job_id, info))
        time.sleep(0.005)


def create(qmp, d, job_id, **options):
    options.setdefault('size', 1 << 20)
    args = {'job-id': job_id, 'options': dict(driver='file', **options)}
    return qmp.cmd('blockdev-create', subst(args, d))


class JobDifferentialTest(iotests.DaemonTestCase):

    def daemons(self):
        """[(daemon, negotiated client)] for blkd, then the reference."""
        self.require_qsd()
        return [self.connect(binary) for binary in (self.blkd, self.qsd)]

    def both(self, fn):
        """fn(daemon, client) on both daemons; the two results, normalised."""
        return [norm(fn(d, c), d) for d, c in self.daemons_]

    def setUp(self):
        self.daemons_ = self.daemons()

    def test_create_success_sequence_and_queries(self):
        def run(d, c):
            self.assertEqual(create(c, d, 'j0', filename='$DIR/a.img'),
                             {'return': {}})
            info = wait_concluded(c, 'j0')
            evs = events_of(c, 'j0')
            queries = (info, c.command('query-block-jobs'))
            c.command('job-dismiss', id='j0')
            evs += events_of(c, 'j0')
            self.assertEqual(os.path.getsize(d.path('a.img')), 1 << 20)
            return evs, queries, c.command('query-jobs')

        blkd, qsd = self.both(run)
        self.assertEqual(blkd, qsd)
        evs, (info, block_jobs), after = blkd
        # A create job is not a block job: no BLOCK_JOB_* event.
        self.assertEqual(statuses(evs), ['created', 'running', 'waiting',
                                         'pending', 'concluded', 'null'])
        self.assertEqual(len(evs), 6)
        self.assertEqual(info, {'id': 'j0', 'type': 'create',
                                'status': 'concluded', 'current-progress': 1,
                                'total-progress': 1})
        self.assertEqual((block_jobs, after), ([], []))

    def test_create_job_stays_concluded_until_dismissed(self):
        def run(d, c):
            create(c, d, 'j0', filename='$DIR/a.img')
            wait_concluded(c, 'j0')
            time.sleep(0.1)
            listed = c.command('query-jobs')
            return listed, c.cmd('job-dismiss', id='j0'), \
                c.cmd('job-dismiss', id='j0'), c.command('query-jobs')

        blkd, qsd = self.both(run)
        self.assertEqual(blkd, qsd)
        self.assertEqual(blkd[0][0]['status'], 'concluded')
        self.assertEqual(blkd[2]['error'], {'class': 'GenericError',
                                            'desc': 'Job not found'})

    def test_create_failures_match(self):
        for options in FAILING:
            with self.subTest(options=options):
                def run(d, c):
                    reply = create(c, d, 'jf', **options)
                    info = wait_concluded(c, 'jf')
                    evs = events_of(c, 'jf')
                    c.command('job-dismiss', id='jf')
                    events_of(c, 'jf')      # the "null" of the dismiss
                    return reply, info, evs

                blkd, qsd = self.both(run)
                self.assertEqual(blkd, qsd)
                reply, info, evs = blkd
                self.assertEqual(reply, {'return': {}})
                self.assertIn('error', info)
                self.assertEqual(statuses(evs), ['created', 'running',
                                                 'aborting', 'concluded'])

    def test_refused_create_arguments_match(self):
        for args in REFUSED:
            with self.subTest(args=args):
                blkd, qsd = self.both(
                    lambda d, c: (c.cmd('blockdev-create', subst(args, d)),
                                  c.command('query-jobs')))
                self.assertEqual(blkd, qsd)
                self.assertIn('error', blkd[0])
                self.assertEqual(blkd[1], [])

    def test_duplicate_job_id_refused(self):
        def run(d, c):
            create(c, d, 'j0', filename='$DIR/a.img')
            return c.cmd('blockdev-create', subst(
                {'job-id': 'j0', 'options': {'driver': 'file', 'size': 0,
                                             'filename': '$DIR/b.img'}}, d))

        blkd, qsd = self.both(run)
        self.assertEqual(blkd, qsd)
        self.assertEqual(blkd['error']['desc'], "Job ID 'j0' already in use")

    def test_verbs_on_unknown_jobs_match(self):
        for name, args in VERBS:
            with self.subTest(command=name, args=args):
                blkd, qsd = self.both(lambda d, c: c.cmd(name, args))
                self.assertEqual(blkd, qsd)
                err = blkd['error']
                if name.startswith('block-job'):
                    self.assertEqual(err, {'class': 'DeviceNotActive',
                                           'desc': "Block job 'ID' not found"})
                else:
                    self.assertEqual(err, {'class': 'GenericError',
                                           'desc': 'Job not found'})

    def test_verbs_on_a_concluded_job_match(self):
        def run(d, c):
            create(c, d, 'ID', filename='$DIR/a.img')
            wait_concluded(c, 'ID')
            return [c.cmd(name, args) for name, args in VERBS]

        blkd, qsd = self.both(run)
        self.assertEqual(blkd, qsd)
        replies = dict(zip(['%s %s' % (n, a) for n, a in VERBS], blkd))
        self.assertEqual(
            replies["job-finalize {'id': 'ID'}"]['error']['desc'],
            "Job 'ID' in state 'concluded' cannot accept command verb 'finalize'")
        self.assertEqual(
            replies["job-resume {'id': 'ID'}"]['error']['desc'],
            "Can't resume a job that was not paused")
        self.assertEqual(replies["job-dismiss {'id': 'ID'}"], {'return': {}})

    def long_create(self, d, c, job_id):
        """Starts a create job that runs for a while (writing zeroes)."""
        self.assertEqual(create(c, d, job_id, filename='$DIR/big.img',
                                size=512 << 20, preallocation='full'),
                         {'return': {}})

    def still_running(self, c, job_id):
        info = job_info(c, job_id)
        if info['status'] != 'running':
            self.skipTest('the create job finished too fast to act on it')

    def test_verbs_on_a_running_job_match(self):
        def run(d, c):
            self.long_create(d, c, 'ID')
            replies = [c.cmd('job-pause', id='ID'),
                       c.cmd('job-pause', id='ID'),
                       c.cmd('job-resume', id='ID'),
                       c.cmd('job-resume', id='ID'),
                       c.cmd('job-complete', id='ID'),
                       c.cmd('job-finalize', id='ID'),
                       c.cmd('job-dismiss', id='ID'),
                       c.cmd('block-job-pause', device='ID')]
            status = job_info(c, 'ID')['status']
            self.still_running(c, 'ID')
            replies.append(c.cmd('job-cancel', id='ID'))
            info = wait_concluded(c, 'ID')
            return replies, status, info, events_of(c, 'ID')

        blkd, qsd = self.both(run)
        self.assertEqual(blkd, qsd)
        replies, status, info, evs = blkd
        self.assertEqual(replies[1]['error']['desc'], 'Job is already paused')
        self.assertEqual(replies[3]['error']['desc'],
                         "Can't resume a job that was not paused")
        self.assertEqual(replies[6]['error']['desc'],
                         "Job 'ID' in state 'running' cannot accept command "
                         "verb 'dismiss'")
        # Creating has no pause point: the pause never shows.
        self.assertEqual(status, 'running')
        self.assertEqual(info['error'], 'Operation canceled')
        self.assertEqual(statuses(evs), ['created', 'running', 'aborting',
                                         'concluded'])

    def test_a_paused_create_job_still_concludes(self):
        def run(d, c):
            self.long_create(d, c, 'ID')
            reply = c.cmd('job-pause', id='ID')
            self.still_running(c, 'ID')
            info = wait_concluded(c, 'ID')
            # The pause is still asked for: resume meets the verb table.
            return reply, info, c.cmd('job-resume', id='ID'), \
                statuses(events_of(c, 'ID'))

        blkd, qsd = self.both(run)
        self.assertEqual(blkd, qsd)
        self.assertEqual(blkd[2]['error']['desc'],
                         "Job 'ID' in state 'concluded' cannot accept command "
                         "verb 'resume'")
        self.assertEqual(blkd[3], ['created', 'running', 'waiting', 'pending',
                                   'concluded'])

    def test_shutdown_with_jobs(self):
        """quit with a concluded job left, SIGTERM with a job running."""
        for d, c in self.daemons_:
            create(c, d, 'j0', filename='$DIR/a.img')
            wait_concluded(c, 'j0')
            self.assertEqual(d.stop(method='quit'), 0)
        for d, c in self.daemons():
            self.long_create(d, c, 'j1')
            self.assertEqual(d.stop(), 0)

    def test_schema_of_jobs_identical(self):
        schemas = [c.command('query-qmp-schema') for _, c in self.daemons_]
        cmp = SchemaComparer(*schemas)
        for name in JOB_COMMANDS + JOB_EVENTS:
            cmp.compare(name, name, name, exact=True)
        # blockdev-create: blkd has fewer drivers and members.
        cmp.compare('blockdev-create', 'blockdev-create', 'blockdev-create',
                    exact=False)
        if cmp.errors:
            self.fail('schema differences:\n  ' + '\n  '.join(cmp.errors))


if __name__ == '__main__':
    unittest.main()
