#!/usr/bin/python3
"""block-stream on blkd and qemu-storage-daemon side by side, over a
chain base <- mid <- top of qcow2 images (top exported over NBD as
'disk'): the events and query-block-jobs, the node graph during the job
(the copy-on-read filter) and after it (auto-generated '#blockNNN' names
normalised), the header of the top image, its allocation, and the data:
guest writes made through the export meanwhile must survive the stream,
and every image passes qemu-img check once the daemon is gone.

ChainTestCase is shared with test_commit.py.
"""
import json
import os
import time
import unittest

import iotests
from test_jobs import norm, subst
from test_snapshots import SnapshotTestCase, to_raw

SIZE = 16 << 20
MiB = 1 << 20
# What each layer holds before the job (qemu-io commands).
LAYERS = {
    'base': ['write -P 0x11 0 4M', 'write -P 0x12 12M 1M'],
    'mid': ['write -P 0x22 2M 4M', 'write -z 13M 64k'],
    'top': ['write -P 0x33 5M 64k'],
}


class ChainTestCase(SnapshotTestCase):

    def start_chain(self, binary, nodes=True, extra=(), base_errors=None,
                    base_opts=None):
        """base <- mid <- top, top exported as 'disk'. nodes: each layer
        is a node of blockdev-add (base and mid read-only); otherwise only
        top is, and the others are opened from the headers. base_errors:
        blkdebug's inject-error rules between base and its file. base_opts:
        qemu-img create's -o for the base."""
        iotests.skip_if_missing('qemu-img')
        iotests.skip_if_missing('qemu-io')
        d = iotests.Daemon(self, name=os.path.basename(binary))
        backing = None
        for layer in ('base', 'mid', 'top'):
            path = d.path(layer + '.qcow2')
            args = ['qemu-img', 'create', '-q', '-f', 'qcow2', path, str(SIZE)]
            if backing:
                args[5:5] = ['-b', backing, '-F', 'qcow2']
            elif base_opts:
                args[5:5] = ['-o', base_opts]
            iotests.run(*args, check=True)
            for cmd in LAYERS[layer]:
                iotests.run('qemu-io', '-c', cmd, path, check=True)
            backing = path
        args = []
        if nodes:
            for layer, below in (('base', None), ('mid', 'base'), ('top', 'mid')):
                args += ['--blockdev', 'driver=file,node-name=%sf,filename=%s'
                         % (layer, d.path(layer + '.qcow2'))]
                if layer == 'base' and base_errors:
                    args += ['--blockdev', json.dumps({
                        'driver': 'blkdebug', 'node-name': 'basedbg',
                        'image': 'basef', 'inject-error': base_errors})]
                args += ['--blockdev', 'driver=qcow2,node-name=%s,file=%s%s%s'
                         % (layer, 'basedbg' if layer == 'base' and base_errors
                            else layer + 'f',
                            ',backing=' + below if below else '',
                            ',read-only=on' if layer != 'top' else '')]
        else:
            args += ['--blockdev', 'driver=qcow2,node-name=top,'
                     'file.driver=file,file.filename=' + d.path('top.qcow2')]
        d.nbd = d.path('nbd.sock')
        d.start(binary, *args, *extra,
                '--nbd-server', 'addr.type=unix,addr.path=' + d.nbd,
                '--export', 'nbd,id=e0,node-name=top,name=disk,writable=on')
        return d, d.qmp(negotiate=True)

    def graph(self, qmp, d):
        """Every node: (name, driver, read-only, backing file, file), names
        of generated nodes as '#', paths relative to the daemon's dir. Only
        file nodes show their file: QEMU describes other nodes by options
        ("json:{...}") where blkd names the file (docs/devel/block.md)."""
        out = []
        for n in qmp.command('query-named-block-nodes', flat=True):
            name = '#' if n['node-name'].startswith('#') else n['node-name']
            out.append((name, n['drv'], n['ro'],
                        n['image'].get('backing-filename', ''),
                        n['file'] if n['drv'] == 'file' else ''))
        return sorted(tuple(n) for n in norm(out, d))

    def block_jobs(self, qmp, keep=('type', 'device', 'len', 'status', 'ready',
                                    'paused', 'io-status', 'speed')):
        """query-block-jobs, with the members that do not depend on timing."""
        out = []
        for info in qmp.command('query-block-jobs'):
            self.assertEqual(sorted(info), sorted(
                ['auto-finalize', 'io-status', 'device', 'auto-dismiss', 'busy',
                 'len', 'offset', 'status', 'paused', 'speed', 'ready', 'type']))
            out.append({k: info[k] for k in keep})
        return out

    def job_events(self, qmp, job_id, until='null', timeout=60):
        """The job's events until its status is until: (event, data)."""
        out = []
        while True:
            ev = qmp.next_event(timeout=timeout)
            data = ev.get('data', {})
            if job_id in (data.get('id'), data.get('device')):
                out.append((ev['event'], data))
                if ev['event'] == 'JOB_STATUS_CHANGE' and \
                        data['status'] == until:
                    return out

    def wait_offset(self, qmp, job_id, offset, timeout=10):
        """Waits until the job's progress is offset (it then sleeps at speed 1)."""
        deadline = time.monotonic() + timeout
        while True:
            (info,) = [j for j in qmp.command('query-block-jobs')
                       if j['device'] == job_id]
            if info['offset'] == offset:
                return
            self.assertLess(time.monotonic(), deadline, info)
            time.sleep(0.01)

    def errors(self, qmp, d, cases):
        """Each QMP command's (class, desc), paths as $DIR, and its events
        but the pause and resume of jobs QEMU drains around a transaction
        (blkd holds their requests instead: docs/devel/jobs.md)."""
        flips = ('paused', 'running', 'standby', 'ready')
        out = []
        for cmd, args in cases:
            reply = qmp.cmd(cmd, subst(args, d))
            qmp.sync()
            events = [(e['event'], e['data']) for e in qmp.get_events()
                      if e['event'] != 'JOB_STATUS_CHANGE' or
                      e['data']['status'] not in flips]
            err = reply.get('error', {})
            out.append((cmd, args, tuple(norm((err.get('class'),
                                               err.get('desc')), d)),
                        events))
        return out

    def image_info(self, d, name):
        info = json.loads(iotests.run('qemu-img', 'info', '-U', '--output=json',
                                      d.path(name), check=True).stdout)
        return tuple(norm((info.get('backing-filename', ''),
                           info.get('backing-filename-format', '')), d))

    def allocation(self, d, name):
        """qemu-img map of image name alone: (start, length, zero, data)."""
        out = json.loads(iotests.run('qemu-img', 'map', '-U', '--output=json',
                                     d.path(name), check=True).stdout)
        return [(m['start'], m['length'], m['zero'], m['data'])
                for m in out if m['depth'] == 0 and m['present']]

    def expected(self, d, name, before, cmds):
        """The disk as it was, with the guest writes cmds applied."""
        path = d.path(name)
        iotests.run('cp', before, path, check=True)
        args = ['qemu-io', '-f', 'raw']
        for c in cmds:
            args += ['-c', c]
        iotests.run(*args, path, check=True)
        return path


# Guest writes during a job: over backing data not yet streamed, over
# data of the top, and across both.
GUEST_WRITES = ['write -P 0x41 3M 64k', 'write -P 0x42 5M 4k',
                'write -P 0x43 1M 1M', 'write -P 0x44 13M 128k',
                'write -z 2560k 64k']


class StreamTest(ChainTestCase):

    def run_stream(self, binary, nodes=True, **args):
        d, qmp = self.start_chain(binary, nodes)
        before = self.disk_now(d, 'before.raw')
        qmp.command('block-dirty-bitmap-add', node='top', name='b0')
        args = subst(args, d)
        # At speed 1 the job copies its first chunk, then waits.
        qmp.command('block-stream', job_id='s0', device='top', speed=1, **args)
        during = (self.graph(qmp, d), self.block_jobs(qmp))
        self.write(d, *GUEST_WRITES)
        qmp.command('block-job-set-speed', device='s0', speed=0)
        events = self.job_events(qmp, 's0')
        after = self.graph(qmp, d)
        bitmaps = [(b['name'], b['count']) for b in self.bitmaps(qmp, 'top')]
        now = self.disk_now(d, 'now.raw')
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        # The guests' writes won over the data streamed.
        self.assertSameImage(self.expected(d, 'want.raw', before, GUEST_WRITES),
                             now)
        self.assertSameImage(now, to_raw(d.path('top.qcow2'), d.path('top.raw')))
        return {'during': during, 'events': events, 'after': after,
                'bitmaps': bitmaps, 'header': self.image_info(d, 'top.qcow2')}

    def test_stream_to_base_node(self):
        got = self.run_stream(self.blkd, base_node='base')
        self.assertIn(('#', 'copy-on-read', False, '', ''),
                      got['during'][0])
        self.assertEqual(got['during'][1][0]['type'], 'stream')
        self.assertEqual(got['header'], ('$DIR/base.qcow2', 'qcow2'))
        self.assertIn(('top', 'qcow2', False, '$DIR/base.qcow2', ''),
                      got['after'])
        if self.have_qsd():
            self.assertEqual(got, self.run_stream(self.qsd, base_node='base'))

    def test_stream_whole_chain_opened_from_headers(self):
        """The nodes opened from the headers go with the chain."""
        got = self.run_stream(self.blkd, nodes=False,
                              filter_node_name='cor0')
        self.assertIn(('cor0', 'copy-on-read', False, '', ''),
                      got['during'][0])
        self.assertEqual(got['after'], [('#', 'file', False, '', '$DIR/top.qcow2'),
                                        ('top', 'qcow2', False, '', '')])
        self.assertEqual(got['header'], ('', ''))
        if self.have_qsd():
            self.assertEqual(got, self.run_stream(self.qsd, nodes=False,
                                                  filter_node_name='cor0'))

    def test_stream_base_by_file_name_with_backing_file(self):
        args = {'base': '$DIR/base.qcow2', 'backing-file': 'base.qcow2'}
        got = self.run_stream(self.blkd, nodes=False, **args)
        self.assertEqual(got['header'], ('base.qcow2', 'qcow2'))
        if self.have_qsd():
            self.assertEqual(got, self.run_stream(self.qsd, nodes=False, **args))

    def run_allocation(self, binary, args):
        """No guest writes: what the top image allocates afterwards."""
        d, qmp = self.start_chain(binary)
        qmp.command('block-stream', job_id='s0', device='top', **args)
        events = self.job_events(qmp, 's0')
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        return events, self.allocation(d, 'top.qcow2'), self.image_info(d, 'top.qcow2')

    def test_stream_copies_only_above_base(self):
        above_base = [(2 << 20, 3 << 20, False, True),
                      (5 << 20, 64 << 10, False, True),
                      (5 << 20 | 64 << 10, 960 << 10, False, True),
                      (13 << 20, 64 << 10, True, False)]
        whole = [(0, 5 << 20, False, True)] + above_base[1:3] + \
            [(12 << 20, 1 << 20, False, True), above_base[3]]
        for args, want in (({'base-node': 'base'}, above_base),
                           ({'bottom': 'mid'}, above_base), ({}, whole)):
            with self.subTest(args=args):
                got = self.run_allocation(self.blkd, args)
                self.assertEqual(got[1], want)
                if self.have_qsd():
                    self.assertEqual(got, self.run_allocation(self.qsd, args))

    def run_into_intermediate(self, binary):
        """Streaming base into mid, a read-only node under top."""
        d, qmp = self.start_chain(binary)
        qmp.command('block-stream', job_id='s0', device='mid')
        events = self.job_events(qmp, 's0')
        graph = self.graph(qmp, d)
        now = self.disk_now(d, 'now.raw')
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        self.assertSameImage(now, to_raw(d.path('top.qcow2'), d.path('top.raw')))
        return events, graph, self.image_info(d, 'mid.qcow2')

    def test_stream_into_read_only_intermediate(self):
        got = self.run_into_intermediate(self.blkd)
        self.assertIn(('mid', 'qcow2', True, '', ''), got[1])
        if self.have_qsd():
            self.assertEqual(got, self.run_into_intermediate(self.qsd))

    def run_cancel(self, binary):
        d, qmp = self.start_chain(binary)
        before = self.graph(qmp, d)
        qmp.command('block-stream', job_id='s0', device='top',
                    base_node='base', speed=1)
        # 2 MiB not to copy, then a chunk copied: the limit holds the job.
        self.wait_offset(qmp, 's0', (2 << 20) + (512 << 10))
        qmp.command('job-cancel', id='s0')
        events = self.job_events(qmp, 's0')
        after = self.graph(qmp, d)
        self.assertEqual(before, after)
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        return events, after, self.image_info(d, 'top.qcow2')

    def test_cancel_leaves_the_chain(self):
        got = self.run_cancel(self.blkd)
        self.assertEqual([e for e, _ in got[0]][-3:],
                         ['BLOCK_JOB_CANCELLED', 'JOB_STATUS_CHANGE',
                          'JOB_STATUS_CHANGE'])
        if self.have_qsd():
            self.assertEqual(got, self.run_cancel(self.qsd))


class CopyOnReadFilterTest(ChainTestCase):

    def run_filter(self, binary):
        """blockdev-add copy-on-read over top: reads copy, down to bottom."""
        d, qmp = self.start_chain(binary)
        qmp.command('block-export-del', id='e0')
        qmp.wait_event('BLOCK_EXPORT_DELETED')
        qmp.command('blockdev-add', driver='copy-on-read', node_name='cor',
                    file='top', bottom='mid')
        qmp.command('block-export-add', type='nbd', id='e1', node_name='cor',
                    name='disk', writable=True)
        self.write(d, 'read 0 4M', 'read 12M 2M', 'write -P 0x51 2M 4k')
        graph = self.graph(qmp, d)
        now = self.disk_now(d, 'now.raw')
        self.check_images(d, 'base.qcow2', 'mid.qcow2', 'top.qcow2')
        self.assertSameImage(now, to_raw(d.path('top.qcow2'), d.path('top.raw')))
        return graph, self.allocation(d, 'top.qcow2')

    def test_reads_copy_the_layers_down_to_bottom(self):
        got = self.run_filter(self.blkd)
        if self.have_qsd():
            self.assertEqual(got, self.run_filter(self.qsd))


# Refused block-stream arguments, and commands on a running stream.
STREAM_ERRORS = [
    ('block-stream', {'job-id': 's1', 'device': 'nope'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'base': 'x',
                      'base-node': 'base'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'base': 'x',
                      'bottom': 'mid'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'bottom': 'mid',
                      'base-node': 'base'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'base-node': 'nope'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'base-node': 'top'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'base-node': 'other'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'base': 'nope.qcow2'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'bottom': 'nope'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'bottom': 'other'}),
    ('block-stream', {'job-id': 's1', 'device': 'top',
                      'backing-file': 'x.qcow2'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'bottom': 'mid',
                      'backing-file': 'x.qcow2'}),
    ('block-stream', {'device': 'top'}),
    ('block-stream', {'job-id': '0s', 'device': 'top'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'speed': -1}),
    ('block-stream', {'job-id': 's1', 'device': 'top',
                      'filter-node-name': 'mid'}),
    ('block-stream', {'job-id': 's1', 'device': 'top', 'on-error': 'bogus'}),
    # With s0 running on other.
    ('block-stream', {'job-id': 's0', 'device': 'top'}),
    ('block-stream', {'job-id': 's1', 'device': 'other'}),
    ('block-commit', {'job-id': 'c1', 'device': 'other'}),
    ('blockdev-del', {'node-name': 'otherb'}),
]


class StreamErrorsTest(ChainTestCase):

    def run_errors(self, binary):
        d, qmp = self.start_chain(binary)
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', d.path('otherb'),
                    str(SIZE), check=True)
        # Data to copy: at speed 1 the job copies a chunk, then waits.
        iotests.run('qemu-io', '-c', 'write 0 4M', d.path('otherb'), check=True)
        iotests.run('qemu-img', 'create', '-q', '-f', 'qcow2', '-b',
                    d.path('otherb'), '-F', 'qcow2', d.path('other'), check=True)
        qmp.command('blockdev-add', driver='qcow2', node_name='otherb',
                    file={'driver': 'file', 'filename': d.path('otherb')})
        qmp.command('blockdev-add', driver='qcow2', node_name='other',
                    backing='otherb',
                    file={'driver': 'file', 'filename': d.path('other')})
        got = self.errors(qmp, d, STREAM_ERRORS[:-4])
        qmp.command('block-stream', job_id='s0', device='other', speed=1)
        self.job_events(qmp, 's0', until='running')
        got += self.errors(qmp, d, STREAM_ERRORS[-4:])
        got.append(self.graph(qmp, d))
        got.append(self.block_jobs(qmp))
        qmp.command('job-cancel', id='s0')
        self.job_events(qmp, 's0')
        return got

    def test_errors_match_qsd(self):
        got = self.run_errors(self.blkd)
        self.assertIn(('block-stream', STREAM_ERRORS[5][1], (
            'GenericError', "Node 'top' is not a backing image of 'top'"), []),
            got)
        if self.have_qsd():
            for mine, ref in zip(got, self.run_errors(self.qsd)):
                self.assertEqual(mine, ref)


class SchemaTest(ChainTestCase):

    def test_schema_matches_qsd(self):
        from test_qmp_protocol import SchemaComparer
        self.require_qsd()
        schemas = []
        for binary in (self.blkd, self.qsd):
            d, c = self.connect(binary)
            schemas.append(c.command('query-qmp-schema'))
        cmp = SchemaComparer(*schemas)
        for name in ('block-stream', 'block-commit'):
            cmp.compare(name, name, name, exact=True)
        if cmp.errors:
            self.fail('schema differences:\n  ' + '\n  '.join(cmp.errors))


if __name__ == '__main__':
    unittest.main()
