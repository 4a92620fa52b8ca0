#!/usr/bin/python3
"""block-commit on blkd and qemu-storage-daemon side by side, over the
chain base <- mid <- top of test_stream.py (top exported over NBD):
committing the intermediate layer mid, and the active commit of top
(a mirror: ready, guest writes mirrored, then job-complete or a cancel).
Events, query-block-jobs, the node graph during and after the job, the
exports, the bitmaps QEMU has too (the base's recording bitmap counts
the clusters committed into it), the headers, and the data: the base
holds what was committed, the disk what guests wrote, every image passes
qemu-img check once the daemon is gone.

blkd goes further (docs/interop/bitmaps.rst): the committed layers'
bitmaps are merged into the base's. Those bitmaps are checked here on
blkd and left out of the comparison; test_commit_bitmaps.py has the
checkpoints that need them.
"""
import json
import os
import time
import unittest

import iotests
from test_jobs import subst
from test_snapshots import to_raw
from test_stream import GUEST_WRITES, ChainTestCase


def base_node(qmp):
    """The name of the node of base.qcow2 (opened from a header)."""
    (name,) = [n['node-name'] for n in qmp.command('query-named-block-nodes')
               if n['drv'] == 'qcow2' and n['file'].endswith('/base.qcow2')]
    return name


class CommitTestCase(ChainTestCase):

    def start_with_bitmaps(self, binary, nodes=True):
        """The chain, with a recording bitmap on each layer."""
        d, qmp = self.start_chain(binary, nodes)
        layers = (('top', 'bt'), ('mid', 'bm'), ('base', 'bb')) if nodes else \
            (('top', 'bt'), (base_node(qmp), 'bb'))
        for node, name in layers:
            qmp.command('block-dirty-bitmap-add', node=node, name=name)
        return d, qmp

    def all_bitmaps(self, qmp, d):
        """{node: [(name, count, recording)]}, generated names as '#'."""
        out = {}
        for n in qmp.command('query-named-block-nodes', flat=True):
            name = '#' if n['node-name'].startswith('#') else n['node-name']
            for b in n.get('dirty-bitmaps', []):
                out.setdefault(name, []).append(
                    (b.get('name'), b['count'], b['recording']))
        return out

    def small_chain(self, binary, layers):
        """A daemon not started yet, and in its directory the chain of
        layers, (name, size, qemu-io command) from the base up, each the
        backing file of the next."""
        d = iotests.Daemon(self, name=os.path.basename(binary))
        backing = None
        for layer, size, cmd in layers:
            path = d.path(layer + '.qcow2')
            args = ['qemu-img', 'create', '-q', '-f', 'qcow2', path, size]
            if backing:
                args[5:5] = ['-b', backing, '-F', 'qcow2']
            iotests.run(*args, check=True)
            iotests.run('qemu-io', '-c', cmd, path, check=True)
            backing = path
        return d

    def without(self, got, node, names):
        """got with blkd's merged bitmaps left out (QEMU has none)."""
        got = dict(got)
        got['bitmaps'] = dict(got['bitmaps'])
        got['bitmaps'][node] = [b for b in got['bitmaps'][node]
                                if b[0] not in names]
        if not got['bitmaps'][node]:
            del got['bitmaps'][node]
        return got


class IntermediateCommitTest(CommitTestCase):

    def run_commit(self, binary, nodes=True, **args):
        d, qmp = self.start_with_bitmaps(binary, nodes)
        before = self.disk_now(d, 'before.raw')
        committed = to_raw(d.path('mid.qcow2'), d.path('mid-before.raw'))
        qmp.command('block-commit', job_id='c0', device='top', speed=1,
                    **subst(args, d))
        during = (self.graph(qmp, d), self.block_jobs(qmp))
        self.write(d, *GUEST_WRITES)
        qmp.command('block-job-set-speed', device='c0', speed=0)
        events = self.job_events(qmp, 'c0')
        after = self.graph(qmp, d)
        bitmaps = self.all_bitmaps(qmp, d)
        now = self.disk_now(d, 'now.raw')
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        # The base holds what mid showed; guests' writes are in top.
        self.assertSameImage(committed, to_raw(d.path('base.qcow2'),
                                               d.path('base.raw')))
        self.assertSameImage(self.expected(d, 'want.raw', before, GUEST_WRITES),
                             now)
        self.assertSameImage(now, to_raw(d.path('top.qcow2'), d.path('top.raw')))
        return {'during': during, 'events': events, 'after': after,
                'bitmaps': bitmaps, 'header': self.image_info(d, 'top.qcow2')}

    def test_commit_mid_into_base(self):
        args = {'top-node': 'mid', 'base-node': 'base'}
        got = self.run_commit(self.blkd, **args)
        self.assertIn(('#', 'commit_top', True, '', ''), got['during'][0])
        # The base is writable meanwhile, read-only again after.
        self.assertIn(('base', 'qcow2', False, '', ''), got['during'][0])
        self.assertIn(('base', 'qcow2', True, '', ''), got['after'])
        self.assertIn(('top', 'qcow2', False, '$DIR/base.qcow2', ''), got['after'])
        self.assertEqual(got['header'], ('$DIR/base.qcow2', 'qcow2'))
        # mid's 4 MiB and zero cluster were committed: the base recorded them.
        self.assertEqual(got['bitmaps']['base'],
                         [('bm', 0, True), ('bb', (4 << 20) + (64 << 10), True)])
        if self.have_qsd():
            self.assertEqual(self.without(got, 'base', ['bm']),
                             self.run_commit(self.qsd, **args))

    def test_commit_chain_opened_from_headers(self):
        """Layers by file name; the base's file is read-only, opened with it."""
        args = {'top': '$DIR/mid.qcow2', 'base': '$DIR/base.qcow2',
                'backing-file': 'base.qcow2', 'filter-node-name': 'ct'}
        got = self.run_commit(self.blkd, nodes=False, **args)
        self.assertIn(('ct', 'commit_top', True, '', ''), got['during'][0])
        self.assertEqual(got['header'], ('base.qcow2', 'qcow2'))
        # mid was only the chain's: it is gone.
        self.assertEqual([n[1] for n in got['after']],
                         ['file', 'file', 'qcow2', 'qcow2'])
        if self.have_qsd():
            self.assertEqual(got, self.run_commit(self.qsd, nodes=False, **args))

    def run_cancel(self, binary):
        d, qmp = self.start_chain(binary)
        before = self.graph(qmp, d)
        qmp.command('block-commit', job_id='c0', device='top', top_node='mid',
                    base_node='base', speed=1)
        # 2 MiB not allocated above the base, then a chunk copied.
        self.wait_offset(qmp, 'c0', (2 << 20) + (512 << 10))
        refused = qmp.cmd('block-job-complete', device='c0')
        qmp.command('job-cancel', id='c0')
        events = self.job_events(qmp, 'c0')
        after = self.graph(qmp, d)
        self.assertEqual(before, after)
        now = self.disk_now(d, 'now.raw')
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        self.assertSameImage(now, to_raw(d.path('top.qcow2'), d.path('top.raw')))
        return events, after, self.image_info(d, 'top.qcow2'), refused

    def test_cancel_leaves_the_chain(self):
        got = self.run_cancel(self.blkd)
        self.assertEqual(got[3]['error']['desc'], "Job 'c0' in state 'running' "
                         "cannot accept command verb 'complete'")
        self.assertIn('BLOCK_JOB_CANCELLED', [e for e, _ in got[0]])
        if self.have_qsd():
            self.assertEqual(got, self.run_cancel(self.qsd))


class CommitErrorPolicyTest(CommitTestCase):
    """Writes into the base fail (blkdebug): on-error as QEMU applies it."""

    def run_policy(self, binary, policy):
        d, qmp = self.start_chain(binary, base_errors=[
            {'event': 'write_aio', 'errno': 5, 'iotype': 'write'}])
        before = self.graph(qmp, d)
        qmp.command('block-commit', job_id='c0', device='top', top_node='mid',
                    base_node='base', on_error=policy)
        events, jobs = [], None
        if policy == 'stop':
            events = self.job_events(qmp, 'c0', until='paused')
            jobs = self.block_jobs(qmp)
            qmp.command('job-cancel', id='c0')
        events += self.job_events(qmp, 'c0')
        after = self.graph(qmp, d)
        self.assertEqual(before, after)
        now = self.disk_now(d, 'now.raw')
        self.check_images(d, 'mid.qcow2', 'top.qcow2')
        self.assertSameImage(now, to_raw(d.path('top.qcow2'), d.path('top.raw')))
        return events, jobs, after

    def test_report_fails_the_job(self):
        got = self.run_policy(self.blkd, 'report')
        self.assertEqual(got[0][-3][1].get('error'), 'Input/output error')
        if self.have_qsd():
            self.assertEqual(got, self.run_policy(self.qsd, 'report'))

    def test_stop_pauses_the_job(self):
        got = self.run_policy(self.blkd, 'stop')
        self.assertEqual(got[1][0]['io-status'], 'failed')
        if self.have_qsd():
            self.assertEqual(got, self.run_policy(self.qsd, 'stop'))


class ActiveCommitTest(CommitTestCase):

    def wait_mirrored(self, qmp, node, count, timeout=10):
        """Waits until the base's bitmap bb counts the writes mirrored."""
        deadline = time.monotonic() + timeout
        while True:
            got = [b['count'] for b in self.bitmaps(qmp, node)
                   if b.get('name') == 'bb']
            if got == [count]:
                return
            self.assertLess(time.monotonic(), deadline, got)
            time.sleep(0.01)

    def run_active(self, binary, verb, nodes=True):
        d, qmp = self.start_with_bitmaps(binary, nodes)
        base = 'base' if nodes else '$DIR/base.qcow2'
        args = {'base-node': base} if nodes else {'base': base}
        before = self.disk_now(d, 'before.raw')
        qmp.command('block-commit', job_id='c0', device='top',
                    **subst(args, d))
        events = self.job_events(qmp, 'c0', until='ready')
        ready = (self.graph(qmp, d), self.block_jobs(qmp, keep=(
            'type', 'device', 'len', 'offset', 'status', 'ready')))
        # Guest writes while ready reach the base too: what was committed,
        # and 1 MiB at 1M and a cluster at 13M+64k more.
        self.write(d, *GUEST_WRITES)
        self.wait_mirrored(qmp, 'base' if nodes else base_node(qmp),
                           (5 << 20) + (128 << 10))
        qmp.command(verb, {'id': 'c0'} if verb.startswith('job') else
                    {'device': 'c0'})
        events += self.job_events(qmp, 'c0')
        after = self.graph(qmp, d)
        exports = [e['node-name'] for e in qmp.command('query-block-exports')]
        bitmaps = self.all_bitmaps(qmp, d)
        now = self.disk_now(d, 'now.raw')
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        self.assertSameImage(self.expected(d, 'want.raw', before, GUEST_WRITES),
                             now)
        # Completed, or cancelled softly (the rest copied), the base holds
        # the disk. A forced cancel may leave the last writes behind: the
        # zeroes at 2560k, over data mirrored before, add nothing to bb's
        # count, so the job may not have copied them yet.
        if verb != 'job-cancel':
            self.assertSameImage(now, to_raw(d.path('base.qcow2'),
                                             d.path('base.raw')))
        self.assertSameImage(now, to_raw(d.path('top.qcow2'), d.path('top.raw')))
        return {'events': events, 'ready': ready, 'after': after, 'exports': exports, 'bitmaps': bitmaps,
                'header': self.image_info(d, 'top.qcow2')}

    def test_complete_switches_to_the_base(self):
        got = self.run_active(self.blkd, 'job-complete')
        self.assertIn(('#', 'mirror_top', False, '', ''), got['ready'][0])
        self.assertEqual(got['ready'][1], [{
            'type': 'commit', 'device': 'c0', 'len': (4 << 20) + (64 << 10),
            'offset': (4 << 20) + (64 << 10), 'status': 'ready',
            'ready': True}])
        self.assertEqual(got['exports'], ['base'])
        # top and mid stay as they were, out of the chain.
        self.assertIn(('top', 'qcow2', False, '$DIR/mid.qcow2', ''), got['after'])
        self.assertIn(('base', 'qcow2', False, '', ''), got['after'])
        self.assertEqual(got['header'], ('$DIR/mid.qcow2', 'qcow2'))
        # blkd's: top's and mid's bitmaps are merged into the base's.
        self.assertEqual([b[0] for b in got['bitmaps']['base']],
                         ['bm', 'bt', 'bb'])
        if self.have_qsd():
            self.assertEqual(self.without(got, 'base', ['bm', 'bt']),
                             self.run_active(self.qsd, 'job-complete'))

    def test_block_job_cancel_when_ready_keeps_the_chain(self):
        got = self.run_active(self.blkd, 'block-job-cancel')
        self.assertEqual(got['exports'], ['top'])
        self.assertEqual([e for e, _ in got['events']][-4:-2],
                         ['JOB_STATUS_CHANGE', 'BLOCK_JOB_COMPLETED'])
        self.assertEqual([b[0] for b in got['bitmaps']['base']], ['bb'])
        if self.have_qsd():
            self.assertEqual(got, self.run_active(self.qsd, 'block-job-cancel'))

    def test_job_cancel_when_ready_keeps_the_chain(self):
        got = self.run_active(self.blkd, 'job-cancel')
        self.assertEqual(got['exports'], ['top'])
        self.assertIn('BLOCK_JOB_CANCELLED', [e for e, _ in got['events']])
        if self.have_qsd():
            self.assertEqual(got, self.run_active(self.qsd, 'job-cancel'))

    def run_paused(self, binary):
        """job-complete on a paused ready job: it completes once resumed."""
        d, qmp = self.start_chain(binary)
        qmp.command('block-commit', job_id='c0', device='top', base_node='base')
        events = self.job_events(qmp, 'c0', until='ready')
        qmp.command('job-pause', id='c0')
        events += self.job_events(qmp, 'c0', until='standby')
        replies = [qmp.cmd('job-complete', id='c0'),
                   qmp.cmd('block-job-cancel', device='c0')]
        qmp.sync()
        jobs = self.block_jobs(qmp, keep=('status', 'paused', 'ready'))
        qmp.command('job-resume', id='c0')
        events += self.job_events(qmp, 'c0')
        exports = [e['node-name'] for e in qmp.command('query-block-exports')]
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        return events, replies, jobs, exports

    def test_complete_while_paused(self):
        got = self.run_paused(self.blkd)
        self.assertEqual(got[2], [{'status': 'standby', 'paused': True,
                                   'ready': True}])
        self.assertEqual(got[3], ['base'])
        if self.have_qsd():
            self.assertEqual(got, self.run_paused(self.qsd))

    def test_complete_into_base_opened_from_header(self):
        got = self.run_active(self.blkd, 'job-complete', nodes=False)
        # The base, a node opened read-only from mid's header, is the disk now.
        self.assertEqual(len(got['exports']), 1)
        self.assertTrue(got['exports'][0].startswith('#'))
        if self.have_qsd():
            got['exports'] = ['#']
            ref = self.run_active(self.qsd, 'job-complete', nodes=False)
            ref['exports'] = ['#']
            self.assertEqual(self.without(got, '#', ['bt']), ref)



class GrowBaseTest(CommitTestCase):
    """A base shorter than the layers above it is grown to their length
    before the copy, by either kind of commit, as in QEMU: base (1 MiB)
    <- mid (3 MiB) <- top (3 MiB), the layers above the base opened from
    the headers."""

    def run_grow(self, binary, active):
        d = self.small_chain(binary, (('base', '1M', 'write -P 0x11 0 1M'),
                                      ('mid', '3M', 'write -P 0x22 512k 2M'),
                                      ('top', '3M', 'write -P 0x33 2M 64k')))
        committed = to_raw(d.path('top.qcow2' if active else 'mid.qcow2'),
                           d.path('want.raw'))
        d.start(binary, '--blockdev', 'driver=qcow2,node-name=top,'
                'file.driver=file,file.filename=' + d.path('top.qcow2'))
        qmp = d.qmp(negotiate=True)
        args = {'job-id': 'c0', 'device': 'top', 'base': d.path('base.qcow2')}
        if not active:
            args['top'] = d.path('mid.qcow2')
        qmp.command('block-commit', args)
        if active:
            events = self.job_events(qmp, 'c0', until='ready')
            qmp.command('job-complete', id='c0')
            events += self.job_events(qmp, 'c0')
        else:
            events = self.job_events(qmp, 'c0')
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        info = json.loads(iotests.run('qemu-img', 'info', '--output=json',
                                      d.path('base.qcow2'), check=True).stdout)
        self.assertEqual(info['virtual-size'], 3 << 20)
        self.assertSameImage(committed, to_raw(d.path('base.qcow2'),
                                               d.path('base.raw')))
        return events

    def test_commit_grows_the_base(self):
        got = self.run_grow(self.blkd, False)
        if self.have_qsd():
            self.assertEqual(got, self.run_grow(self.qsd, False))

    def test_active_commit_grows_the_base(self):
        got = self.run_grow(self.blkd, True)
        if self.have_qsd():
            self.assertEqual(got, self.run_grow(self.qsd, True))


class FilterOnBaseTest(CommitTestCase):
    """A filter right on the base (base <- blkdebug bf <- mid <- top, all
    nodes): QEMU's commits share consistent reads of such filters, so
    the commit runs (it reads the base through bf) and bf can be exported
    meanwhile, while mid cannot; after the commit top's backing node is
    the base, as in QEMU."""

    def run_filter(self, binary, active):
        d = self.small_chain(binary, (('base', '4M', 'write -P 0x11 0 1M'),
                                      ('mid', '4M', 'write -P 0x22 512k 1M'),
                                      ('top', '4M', 'write -P 0x33 1M 64k')))
        committed = to_raw(d.path('top.qcow2' if active else 'mid.qcow2'),
                           d.path('want.raw'))
        args = []
        for layer, below in (('base', None), ('mid', 'bf'), ('top', 'mid')):
            args += ['--blockdev', 'driver=file,node-name=%sf,filename=%s'
                     % (layer, d.path(layer + '.qcow2')),
                     '--blockdev', 'driver=qcow2,node-name=%s,file=%sf%s%s'
                     % (layer, layer, ',backing=' + below if below else '',
                        ',read-only=on' if layer != 'top' else '')]
            if layer == 'base':
                args += ['--blockdev', 'driver=blkdebug,node-name=bf,image=base']
        d.start(binary, *args, '--nbd-server',
                'addr.type=unix,addr.path=' + d.path('nbd.sock'))
        qmp = d.qmp(negotiate=True)
        job = {'job-id': 'c0', 'device': 'top', 'base-node': 'base'}
        if not active:
            job.update({'top-node': 'mid', 'auto-finalize': False})
        qmp.command('block-commit', job)
        # The job holds its nodes while ready, and until finalized.
        events = self.job_events(qmp, 'c0', until='ready' if active
                                 else 'pending')
        replies = [iotests.qmp_error(qmp.cmd('block-export-add', {
            'type': 'nbd', 'id': node, 'node-name': node}))
            for node in ('bf', 'mid')]
        for node in ('bf', 'mid'):
            qmp.cmd('block-export-del', id=node)
        qmp.command('job-complete' if active else 'job-finalize', id='c0')
        events += self.job_events(qmp, 'c0')
        after = self.graph(qmp, d)
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        self.assertSameImage(committed, to_raw(d.path('base.qcow2'),
                                               d.path('base.raw')))
        return replies, events, after

    def test_commit_through_a_filter_on_the_base(self):
        got = self.run_filter(self.blkd, False)
        self.assertIsNone(got[0][0])
        self.assertIn("permissions 'consistent read' are both required by",
                      got[0][1][1])
        self.assertIn(('top', 'qcow2', False, '$DIR/base.qcow2', ''), got[2])
        if self.have_qsd():
            self.assertEqual(self.comparable(got), self.comparable(
                self.run_filter(self.qsd, False)))

    def test_active_commit_through_a_filter_on_the_base(self):
        got = self.run_filter(self.blkd, True)
        self.assertIsNone(got[0][0])
        if self.have_qsd():
            self.assertEqual(self.comparable(got), self.comparable(
                self.run_filter(self.qsd, True)))

    def comparable(self, got):
        """got without what differs by design: the users in permission
        errors (blkd names them, "block export 'mid'", where QEMU says "an
        unnamed block device"), and the standby and ready flips of a
        ready job that QEMU drains around block-export-add
        (docs/devel/jobs.md)."""
        replies = [r and (r[0], r[1].split(' are both')[0]) for r in got[0]]
        events, ready = [], False
        for ev, data in got[1]:
            if ev == 'JOB_STATUS_CHANGE' and (
                    data['status'] == 'standby' or
                    (ready and data['status'] == 'ready')):
                continue
            ready = ready or ev == 'BLOCK_JOB_READY'
            events.append((ev, data))
        return replies, events, got[2]

# Refused block-commit arguments ($DIR: the daemon's directory).
COMMIT_ERRORS = [
    ('block-commit', {'job-id': 'c1', 'device': 'nope'}),
    ('block-commit', {'job-id': 'c1', 'device': 'mid'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'top-node': 'mid',
                      'top': 'x'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'top-node': 'nope'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'top-node': 'other'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'top': 'nope.qcow2'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'base-node': 'base',
                      'base': 'x'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'base-node': 'nope'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'top-node': 'mid',
                      'base-node': 'top'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'base': 'nope.qcow2'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'top-node': 'mid',
                      'base-node': 'mid'}),
    ('block-commit', {'job-id': 'c1', 'device': 'otherb'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top',
                      'backing-file': 'x.qcow2'}),
    ('block-commit', {'device': 'top', 'top-node': 'mid'}),
    ('block-commit', {'device': 'top'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'top-node': 'mid',
                      'speed': -1}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'speed': -1}),
    ('block-commit', {'job-id': 'c1', 'device': 'top', 'top-node': 'mid',
                      'filter-node-name': 'base'}),
    ('block-commit', {'job-id': 'c1', 'device': 'top',
                      'filter-node-name': 'base'}),
    # With c0 committing other into otherb, ready.
    ('block-commit', {'job-id': 'c1', 'device': 'other'}),
    ('block-commit', {'job-id': 'c0', 'device': 'top'}),
    ('block-stream', {'job-id': 's1', 'device': 'other'}),
    ('blockdev-snapshot-sync', {'node-name': 'other',
                                'snapshot-file': '$DIR/s.qcow2',
                                'snapshot-node-name': 's'}),
]


class CommitErrorsTest(CommitTestCase):

    def run_errors(self, binary):
        d, qmp = self.start_chain(binary)
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', d.path('otherb'),
                    str(16 << 20), check=True)
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                    d.path('otherb'), '-F', 'qcow2', d.path('other'), check=True)
        iotests.run('qemu-io', '-c', 'write 0 4M', d.path('other'), check=True)
        qmp.command('blockdev-add', driver='qcow2', node_name='otherb',
                    file={'driver': 'file', 'filename': d.path('otherb')})
        qmp.command('blockdev-add', driver='qcow2', node_name='other',
                    backing='otherb',
                    file={'driver': 'file', 'filename': d.path('other')})
        got = self.errors(qmp, d, COMMIT_ERRORS[:-4])
        qmp.command('block-commit', job_id='c0', device='other')
        self.job_events(qmp, 'c0', until='ready')
        qmp.wait_event('BLOCK_JOB_READY')
        got += self.errors(qmp, d, COMMIT_ERRORS[-4:])
        got.append(self.graph(qmp, d))
        got.append(self.block_jobs(qmp))
        qmp.command('job-cancel', id='c0')
        self.job_events(qmp, 'c0')
        return got

    def run_locked(self, binary):
        """Another read-only view of base.qcow2 keeps it from being written."""
        d, qmp = self.start_chain(binary)
        qmp.command('blockdev-add', driver='qcow2', node_name='view',
                    read_only=True, file={'driver': 'file', 'read-only': True,
                                          'filename': d.path('base.qcow2')})
        got = self.errors(qmp, d, [
            ('block-commit', {'job-id': 'c1', 'device': 'top',
                              'top-node': 'mid', 'base-node': 'base'}),
            ('block-commit', {'job-id': 'c1', 'device': 'top',
                              'base-node': 'base'})])
        got.append(self.graph(qmp, d))
        return got

    def test_base_that_cannot_be_written_is_refused(self):
        got = self.run_locked(self.blkd)
        self.assertEqual(got[0][2], ('GenericError', 'Failed to get "write" lock'))
        if self.have_qsd():
            self.assertEqual(got, self.run_locked(self.qsd))

    def test_errors_match_qsd(self):
        got = self.run_errors(self.blkd)
        self.assertEqual(got[0][2], ('DeviceNotFound', "Device 'nope' not found"))
        self.assertEqual(got[1][2], ('GenericError', 'Need a root block node'))
        if self.have_qsd():
            for mine, ref in zip(got, self.run_errors(self.qsd)):
                self.assertEqual(mine, ref)


if __name__ == '__main__':
    unittest.main()
