#!/usr/bin/python3
"""blockdev-create with driver qcow2, blkd against qemu-storage-daemon.

The same sequence runs on both daemons for each argument set: a file
made by blockdev-create driver=file, a file node over it (blockdev-add),
then blockdev-create driver=qcow2 on that node. The job events,
query-jobs and the errors must match; the images must match byte for
byte where QEMU's allocator places everything as blkd does (else their
`qemu-img info` must), and each image blkd made must open in blkd, take
writes from qemu-io over NBD and pass `qemu-img check`.

Paths differ between the daemons (each has its own directory): replies
are compared with the directory replaced by $DIR, and backing file names
are relative.
"""
import json
import os
import unittest

import iotests
from test_jobs import events_of, norm, statuses, subst, wait_concluded

SIZE = 64 << 20

# Argument sets that create an image: (name, options besides driver and
# file, byte for byte as QEMU).
VALID = [
    ('default', {'size': SIZE}, True),
    ('empty', {'size': 0}, True),
    ('v2', {'size': SIZE, 'version': 'v2'}, True),
    ('backing', {'size': SIZE, 'backing-file': 'base.raw',
                 'backing-fmt': 'raw'}, True),
    ('backing-v2-no-fmt', {'size': SIZE, 'version': 'v2',
                           'backing-file': 'base.raw'}, True),
    ('cluster-512', {'size': SIZE, 'cluster-size': 512}, True),
    ('cluster-2M', {'size': SIZE, 'cluster-size': 2 << 20}, True),
    ('refcount-1', {'size': SIZE, 'refcount-bits': 1}, True),
    ('refcount-64', {'size': SIZE, 'refcount-bits': 64}, True),
    ('lazy', {'size': SIZE, 'lazy-refcounts': True}, True),
    ('all-defaults-given', {'size': SIZE, 'version': 'v3',
                            'cluster-size': 65536, 'refcount-bits': 16,
                            'lazy-refcounts': False, 'preallocation': 'off',
                            'extended-l2': False, 'data-file-raw': False,
                            'compression-type': 'zlib'}, True),
    ('metadata', {'size': SIZE + 1536, 'preallocation': 'metadata'}, True),
    # QEMU allocates the data before moving the refcount table.
    ('falloc', {'size': 16 << 20, 'preallocation': 'falloc'}, False),
    ('full', {'size': 16 << 20, 'cluster-size': 2 << 20,
              'preallocation': 'full'}, False),
]

# Argument sets whose job fails, with the same error on both daemons.
FAILING = [
    {'file': 'nope', 'size': SIZE},
    {'size': 1000},
    {'size': -1},
    {'size': -512},
    {'size': 1 << 62},
    {'size': SIZE, 'version': 'v2', 'lazy-refcounts': True},
    {'size': SIZE, 'version': 'v2', 'refcount-bits': 8},
    {'size': SIZE, 'refcount-bits': 3},
    {'size': SIZE, 'refcount-bits': 128},
    {'size': SIZE, 'refcount-bits': 0},
    {'size': SIZE, 'cluster-size': 1000},
    {'size': SIZE, 'cluster-size': 256},
    {'size': SIZE, 'cluster-size': 4 << 20},
    {'size': SIZE, 'backing-fmt': 'raw'},
    {'size': SIZE, 'backing-file': 'b', 'preallocation': 'metadata'},
    {'size': SIZE, 'backing-file': 'b' * 1024},
    {'size': SIZE, 'cluster-size': 512, 'backing-file': 'b' * 400,
     'backing-fmt': 'raw'},
    {'size': SIZE, 'extended-l2': True, 'version': 'v2'},
    {'size': SIZE, 'extended-l2': True, 'cluster-size': 4096},
    {'size': SIZE, 'data-file-raw': True},
    {'size': SIZE, 'data-file': 'nope', 'version': 'v2'},
    {'size': SIZE, 'data-file': 'nope'},
    {'size': SIZE, 'data-file': 'f', 'data-file-raw': True,
     'backing-file': 'b'},
    {'size': SIZE, 'compression-type': 'zstd', 'version': 'v2'},
    {'file': 'ro', 'size': SIZE},
    {'file': 'qf', 'size': SIZE},
    {'file': {'driver': 'file', 'filename': '$DIR/nonexistent'},
     'size': SIZE},
    {'file': {'driver': 'file', 'filename': '$DIR/a.img', 'node-name': 'f'},
     'size': SIZE},
]

# What QEMU would create but blkd's qcow2 driver could not open.
BLKD_REFUSES = [
    ({'size': SIZE, 'extended-l2': True},
     'qcow2 images with extended L2 entries are not supported'),
    ({'size': SIZE, 'data-file': 'f'},
     'qcow2 images with an external data file are not supported'),
    ({'size': SIZE, 'compression-type': 'zstd'},
     'qcow2 compression type zstd is not supported, only zlib'),
    ({'size': SIZE, 'encrypt': {'format': 'luks', 'key-secret': 's0'}},
     'Encrypted qcow2 images are not supported'),
]

# Refused by the command itself, before any job exists.
REFUSED = [
    {'driver': 'qcow2', 'size': SIZE},
    {'driver': 'qcow2', 'file': 'f'},
    {'driver': 'qcow2', 'file': 'f', 'size': 'big'},
    {'driver': 'qcow2', 'file': 'f', 'size': SIZE, 'bogus': 1},
    {'driver': 'qcow2', 'file': 'f', 'size': SIZE, 'version': 'v4'},
    {'driver': 'qcow2', 'file': 'f', 'size': SIZE, 'cluster-size': 'x'},
    {'driver': 'qcow2', 'file': 'f', 'size': SIZE, 'refcount-bits': 1.5},
    {'driver': 'qcow2', 'file': 'f', 'size': SIZE, 'preallocation': 'some'},
    {'driver': 'qcow2', 'file': 'f', 'size': SIZE, 'backing-fmt': 'raww'},
    {'driver': 'qcow2', 'file': 'f', 'size': SIZE, 'compression-type': 'lz4'},
    {'driver': 'qcow2', 'file': 'f', 'size': SIZE, 'encrypt': {}},
    {'driver': 'qcow2', 'file': 'f', 'size': SIZE,
     'encrypt': {'format': 'luks', 'cipher-alg': 'rot13'}},
    {'driver': 'qcow2', 'file': 'f', 'size': SIZE, 'lazy-refcounts': 'yes'},
    {'driver': 'qcow2', 'file': 42, 'size': SIZE},
]


def create_job(c, d, job_id, options):
    """blockdev-create to the end: (reply, events, query-jobs entry)."""
    reply = c.cmd('blockdev-create', subst({'job-id': job_id,
                                            'options': options}, d))
    if 'error' in reply:
        return reply, None, None
    info = wait_concluded(c, job_id, timeout=120)
    c.command('job-dismiss', id=job_id)
    return reply, events_of(c, job_id), info


def new_file_node(c, d, name, node):
    """An empty file made by blockdev-create, and a file node over it."""
    reply, _, info = create_job(c, d, 'mk', {'driver': 'file', 'size': 0,
                                             'filename': '$DIR/' + name})
    assert reply == {'return': {}} and 'error' not in info, (reply, info)
    c.command('blockdev-add', driver='file', node_name=node,
              filename=d.path(name))


def image_info(path):
    """qemu-img info, less what differs between two files."""
    res = iotests.run('qemu-img', 'info', '--output=json', path, check=True)
    info = json.loads(res.stdout)
    for key in ('filename', 'actual-size', 'dirty-flag',
                'full-backing-filename'):
        info.pop(key, None)
    return info


class CreateQcow2Test(iotests.DaemonTestCase):

    def setUp(self):
        iotests.skip_if_missing('qemu-img')
        iotests.skip_if_missing('qemu-io')
        self.require_qsd()
        self.daemons = []
        for binary in (self.blkd, self.qsd):
            d, c = self.connect(binary)
            iotests.run('qemu-img', 'create', '-q', '-f', 'raw',
                        d.path('base.raw'), str(SIZE), check=True)
            self.daemons.append((d, c))

    def both(self, fn):
        """fn(daemon, client) on blkd, then on the reference; normalised."""
        return [norm(fn(d, c), d) for d, c in self.daemons]

    def test_images_match_qemu(self):
        def run(d, c):
            out = []
            for name, options, _ in VALID:
                new_file_node(c, d, name + '.qcow2', 'f')
                out.append(create_job(c, d, 'c0', dict(options, driver='qcow2',
                                                       file='f')))
                c.command('blockdev-del', node_name='f')
            return out

        blkd, qsd = self.both(run)
        self.assertEqual(blkd, qsd)
        (bd, _), (qd, _) = self.daemons
        for (name, options, same), (reply, evs, info) in zip(VALID, blkd):
            with self.subTest(image=name):
                self.assertEqual(reply, {'return': {}})
                self.assertNotIn('error', info)
                self.assertEqual(statuses(evs), [
                    'created', 'running', 'waiting', 'pending', 'concluded',
                    'null'])
                ours, theirs = (os.path.join(x.dir, name + '.qcow2')
                                for x in (bd, qd))
                if same:
                    with open(ours, 'rb') as a, open(theirs, 'rb') as b:
                        self.assertTrue(a.read() == b.read(),
                                        'the images differ')
                self.assertEqual(norm(image_info(ours), bd),
                                 norm(image_info(theirs), qd))
                iotests.run('qemu-img', 'check', ours, check=True)

    def test_blkd_images_take_writes(self):
        """Each image blkd made opens in blkd and takes qemu-io's writes."""
        d, c = self.daemons[0]
        sock = d.path('nbd.sock')
        c.command('nbd-server-start',
                  addr={'type': 'unix', 'data': {'path': sock}})
        for name, options, _ in VALID:
            if not options['size']:
                continue
            with self.subTest(image=name):
                path = d.path(name + '.qcow2')
                new_file_node(c, d, name + '.qcow2', 'f')
                create_job(c, d, 'c0', dict(options, driver='qcow2', file='f'))
                add = {'driver': 'qcow2', 'node-name': 'q', 'file': 'f'}
                if 'backing-file' in options and \
                        'backing-fmt' not in options:
                    add['backing'] = None   # blkd does not probe formats
                c.command('blockdev-add', add)
                c.command('block-export-add', type='nbd', id='e0',
                          node_name='q', name='q', writable=True)
                end = options['size'] - 4096
                iotests.run('qemu-io', '-f', 'raw',
                            '-c', 'write -P 0x5a 0 4k',
                            '-c', 'write -P 0x5b %d 4k' % end,
                            'nbd+unix:///q?socket=' + sock, check=True)
                c.command('block-export-del', id='e0', mode='hard')
                c.wait_event('BLOCK_EXPORT_DELETED')
                c.command('blockdev-del', node_name='q')
                c.command('blockdev-del', node_name='f')
                iotests.run('qemu-img', 'check', path, check=True)
                res = iotests.run('qemu-io', '-c', 'read -P 0x5a 0 4k',
                                  '-c', 'read -P 0x5b %d 4k' % end,
                                  '-c', 'read -P 0 4k 4k', path, check=True)
                self.assertNotIn('Pattern verification failed', res.stdout)

    def test_failures_match(self):
        def run(d, c):
            new_file_node(c, d, 'a.img', 'f')
            c.command('blockdev-add', driver='file', node_name='ro',
                      filename=d.path('a.img'), read_only=True)
            new_file_node(c, d, 'q.qcow2', 'qf')
            create_job(c, d, 'c0', {'driver': 'qcow2', 'file': 'qf',
                                    'size': SIZE})
            c.command('blockdev-add', driver='qcow2', node_name='q', file='qf')
            return [create_job(c, d, 'c0', dict({'file': 'f'}, **options,
                                                driver='qcow2'))
                    for options in FAILING]

        blkd, qsd = self.both(run)
        for options, ours, theirs in zip(FAILING, blkd, qsd):
            with self.subTest(options=options):
                self.assertEqual(ours, theirs)
                reply, evs, info = ours
                self.assertEqual(reply, {'return': {}})
                self.assertIn('error', info)
                self.assertEqual(statuses(evs), [
                    'created', 'running', 'aborting', 'concluded', 'null'])

    def test_refused_arguments_match(self):
        def run(d, c):
            new_file_node(c, d, 'a.img', 'f')
            return [(c.cmd('blockdev-create', {'job-id': 'c0',
                                               'options': options}),
                     c.command('query-jobs')) for options in REFUSED]

        blkd, qsd = self.both(run)
        for options, ours, theirs in zip(REFUSED, blkd, qsd):
            with self.subTest(options=options):
                self.assertEqual(ours, theirs)
                self.assertIn('error', ours[0])
                self.assertEqual(ours[1], [])

    def test_blkd_refuses_what_it_cannot_open(self):
        d, c = self.daemons[0]
        self.skip_if_not_blkd()
        new_file_node(c, d, 'a.img', 'f')
        for options, error in BLKD_REFUSES:
            with self.subTest(options=options):
                _, evs, info = create_job(c, d, 'c0', dict(
                    {'file': 'f'}, **options, driver='qcow2'))
                self.assertEqual(info.get('error'), error)
                self.assertEqual(statuses(evs), [
                    'created', 'running', 'aborting', 'concluded', 'null'])
        self.assertEqual(os.path.getsize(d.path('a.img')), 0)


if __name__ == '__main__':
    unittest.main()
