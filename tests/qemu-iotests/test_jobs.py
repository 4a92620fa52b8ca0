#!/usr/bin/python3
"""Jobs over QMP, blkd against qemu-storage-daemon: the texts and classes
of every job verb, events, query-jobs and query-block-jobs.

blockdev-create jobs: their event sequences and queries, and the verbs on
unknown, running and concluded jobs.  Paths differ between the two daemons
(each has its own directory), so replies are compared with the directory
replaced by $DIR.

Backup jobs (on null-co nodes) held in each state a job can rest in:
running (throttled), paused by job-pause, by block-job-pause and by an
error policy, waiting (its group's other job still runs), pending,
concluded (after success and after failure), and a sync=none job; every
verb in each, with the reply, the events and the queries that follow
compared.
"""
import json
import os
import time
import unittest

import iotests
from test_backup import EIO
from test_backup_policies import PolicyTestCase
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


BACKUP_SIZE = 64 << 20

# What each verb a backup job's state accepts leads to: the status the job
# then rests in, None when it is gone.  A verb not listed for a state must
# be refused there, leaving the job as it was.
BACKUP_STATES = {
    'running': {'pause': 'paused', 'cancel': None, 'set-speed': 'running'},
    'paused': {'resume': 'running', 'cancel': None, 'set-speed': 'paused'},
    'block-job-paused': {'resume': 'running', 'cancel': None,
                         'set-speed': 'paused'},
    # Stopped by its error policy; the failing write does not come back.
    'error-paused': {'resume': None, 'cancel': None, 'set-speed': 'paused'},
    'waiting': {'cancel': None},
    'pending': {'cancel': None, 'finalize': None},
    'concluded': {'dismiss': None},
    'concluded-failed': {'dismiss': None},
    'sync-none': {'pause': 'paused', 'cancel': None, 'set-speed': 'running'},
}

# Volatile members of query-jobs and query-block-jobs: how far the copy got.
PROGRESS = ('current-progress', 'total-progress', 'offset')


def verb_kind(command):
    """'pause' for job-pause and block-job-pause, and so on."""
    return command[len('block-job-'):] if command.startswith('block-job-') \
        else command[len('job-'):]


def backup_args(job_id='ID', target='tgt', **args):
    """blockdev-backup's arguments: a full backup of 'src' by default."""
    data = {'job-id': job_id, 'device': 'src', 'target': target,
            'sync': 'full'}
    data.update(args)
    return data


class BackupVerbTest(PolicyTestCase):
    """A backup job 'ID' from null-co 'src' to null-co 'tgt' held in each
    state; a speed of 1 byte/s holds a job running (asleep after its first
    copies).  Each verb is applied to a job in the state; one it accepts
    ends that job (the next verb gets a fresh one), one it refuses must
    leave it as it was."""

    def start_null(self, binary):
        nodes = []
        for name in ('src', 'tgt', 'tgt2'):
            nodes += ['--blockdev', 'driver=null-co,node-name=%s,size=%d'
                      % (name, BACKUP_SIZE)]
        d, qmp = self.connect(binary, *nodes)
        self.add_failing_target(d, qmp, 'bad', once=False)
        self.log_events(d)
        d.targets = 0
        return d, qmp

    def add_failing_target(self, d, qmp, name, once):
        """A null-co target whose writes fail (once: only the first)."""
        self.add_target(d, qmp, name, [{'event': 'write_aio', 'errno': EIO,
                                        'once': once}],
                        image={'driver': 'null-co', 'size': BACKUP_SIZE})

    def until_quiet(self, qmp, timeout=10):
        """Waits until no job is busy (a throttled job asleep)."""
        deadline = time.monotonic() + timeout
        while any(j['busy'] for j in qmp.command('query-block-jobs')):
            self.assertLess(time.monotonic(), deadline, 'a job stays busy')
            time.sleep(0.005)

    # Each set-up starts 'ID' and returns once it rests in its state.

    def setup_running(self, d, qmp, **args):
        qmp.command('blockdev-backup', backup_args(speed=1, **args))
        self.until_quiet(qmp)

    def setup_paused(self, d, qmp):
        self.setup_running(d, qmp)
        qmp.command('job-pause', id='ID')
        self.until_status(d, qmp, 'paused', 'ID')

    def setup_block_job_paused(self, d, qmp):
        self.setup_running(d, qmp)
        qmp.command('block-job-pause', device='ID')
        self.until_status(d, qmp, 'paused', 'ID')

    def setup_error_paused(self, d, qmp):
        # A target of its own: the error of each is spent once met.
        d.targets += 1
        target = 'once%d' % d.targets
        self.add_failing_target(d, qmp, target, once=True)
        qmp.command('blockdev-backup', backup_args(
            target=target, **{'on-target-error': 'stop'}))
        self.until_status(d, qmp, 'paused', 'ID')

    def setup_waiting(self, d, qmp):
        qmp.command('transaction', actions=[
            {'type': 'blockdev-backup', 'data': backup_args()},
            {'type': 'blockdev-backup',
             'data': backup_args('P', 'tgt2', speed=1)}],
            properties={'completion-mode': 'grouped'})
        self.until_status(d, qmp, 'waiting', 'ID')
        self.until_quiet(qmp)

    def setup_pending(self, d, qmp):
        qmp.command('blockdev-backup', backup_args(**{'auto-finalize': False}))
        self.until_status(d, qmp, 'pending', 'ID')

    def setup_concluded(self, d, qmp, target='tgt'):
        qmp.command('blockdev-backup', backup_args(
            target=target, **{'auto-dismiss': False}))
        self.until_status(d, qmp, 'concluded', 'ID')

    def setup_concluded_failed(self, d, qmp):
        self.setup_concluded(d, qmp, target='bad')

    def setup_sync_none(self, d, qmp):
        self.setup_running(d, qmp, sync='none')

    def end_jobs(self, d, qmp, since):
        """Cancels every job left, or dismisses it once concluded."""
        jobs = qmp.command('query-jobs')
        for job in jobs:
            verb = 'job-dismiss' if job['status'] == 'concluded' else 'job-cancel'
            # A group's other job may be gone with the first.
            qmp.cmd(verb, id=job['id'])
        self.until_gone(d, qmp, *[job['id'] for job in jobs], since=since)

    def step(self, d, qmp, since):
        """What a step leaves to compare: the events of each job since
        d.log[since] (without QEMU's drain pauses) and the queries,
        without how far the copies got."""
        self.log_sent(d, qmp)
        events = {job_id: self.policy_events(d, job_id, since)
                  for job_id in ('ID', 'P')}
        queries = [[{k: v for k, v in info.items() if k not in PROGRESS}
                    for info in qmp.command(cmd)]
                   for cmd in ('query-jobs', 'query-block-jobs')]
        return events, queries

    def run_verbs(self, binary, state):
        """Every verb on a job held in @state: [(step, reply, events,
        queries)], the set-ups and the ends of jobs as steps too."""
        d, qmp = self.start_null(binary)
        setup = getattr(self, 'setup_' + state.replace('-', '_'))
        accepted = BACKUP_STATES[state]
        out = []
        job = None
        for command, args in VERBS:
            if job is None:
                since = len(d.log)
                setup(d, qmp)
                job = self.step(d, qmp, since)
                out.append(('set-up', None) + job)
                (status,) = [j['status'] for j in job[1][0] if j['id'] == 'ID']
            since = len(d.log)
            reply = qmp.cmd(command, args)
            if 'error' not in reply:
                kind = verb_kind(command)
                self.assertIn(kind, accepted,
                              '%s accepted in %s' % (command, state))
                rest = accepted[kind]
                if rest != status:
                    self.until_status(d, qmp, rest or 'null', 'ID')
                self.until_quiet(qmp)
            after = self.step(d, qmp, since)
            out.append(((command, args), reply) + after)
            if 'error' in reply:
                self.assertEqual(after, (dict.fromkeys(job[0], []), job[1]),
                                 '%s %s refused in %s' % (command, args, state))
            else:
                since = len(d.log)
                self.end_jobs(d, qmp, since)
                out.append(('end', None) + self.step(d, qmp, since))
                job = None
        return out

    def check_state(self, state):
        self.require_qsd()
        got = self.run_verbs(self.blkd, state)
        ref = self.run_verbs(self.qsd, state)
        for mine, theirs in zip(got, ref):
            self.assertEqual(mine, theirs)
        self.assertEqual(len(got), len(ref))

    def busy_while_copying(self, binary):
        """query-block-jobs' busy, sampled while an unthrottled backup to
        a file written with O_DIRECT is part-way through its copy."""
        size = 16 << 20
        d, qmp = self.connect(binary, '--blockdev',
                              'driver=null-co,node-name=src,size=%d' % size)
        path = d.path('tgt.img')
        with open(path, 'wb') as f:
            f.truncate(size)
        qmp.command('blockdev-add', {
            'driver': 'raw', 'node-name': 'disk',
            'file': {'driver': 'file', 'filename': path,
                     'cache': {'direct': True}}})
        qmp.command('blockdev-backup', backup_args(target='disk'))
        busy = []
        while True:
            (info,) = qmp.command('query-block-jobs') or [None]
            if info is None or info['status'] != 'running':
                return busy
            if 0 < info['offset'] < info['len']:
                busy.append(info['busy'])

    def test_a_backup_is_not_busy_while_its_copies_run(self):
        """QEMU's backup coroutine yields while its copy tasks run."""
        self.require_qsd()
        for binary in (self.blkd, self.qsd):
            busy = self.busy_while_copying(binary)
            self.assertTrue(busy, binary)
            self.assertFalse(any(busy), binary)

    def test_verbs_on_a_running_backup(self):
        self.check_state('running')

    def test_verbs_on_a_paused_backup(self):
        self.check_state('paused')

    def test_verbs_on_a_backup_paused_by_block_job_pause(self):
        self.check_state('block-job-paused')

    def test_verbs_on_a_backup_stopped_by_a_target_error(self):
        self.check_state('error-paused')

    def test_verbs_on_a_waiting_backup(self):
        self.check_state('waiting')

    def test_verbs_on_a_pending_backup(self):
        self.check_state('pending')

    def test_verbs_on_a_concluded_backup(self):
        self.check_state('concluded')

    def test_verbs_on_a_failed_concluded_backup(self):
        self.check_state('concluded-failed')

    def test_verbs_on_a_sync_none_backup(self):
        self.check_state('sync-none')


if __name__ == '__main__':
    unittest.main()
