#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Dirty bitmaps and allocation depth over NBD: block-export-add's
bitmaps and allocation-depth (QMP and --export), the meta contexts
qemu:dirty-bitmap:NAME and qemu:allocation-depth beside base:allocation,
and the bitmaps' busy state while exported.

What clients read (nbdinfo --map, libnbd block status, qemu-img map with
x-dirty-bitmap) is checked against a model of the writes, and the same
steps run on qemu-storage-daemon must give the same bytes; error texts
are QEMU 7.2's, recorded from qemu-storage-daemon and asserted on both.
"""

import json
import os
import random
import unittest

import iotests
import nbdhelpers as nh
from nbdhelpers import qemu_img, qemu_io

MiB = 1 << 20
SIZE = 64 * MiB
GE = 'GenericError'
BUSY = "Bitmap '%s' is currently in use by another operation and cannot be used"


def random_writes(seed, n, size, max_len=300 * 1024):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        off = rng.randrange(0, size - 1)
        out.append((off, min(rng.randrange(1, max_len), size - off)))
    return out


def merge(extents):
    """Adjacent (offset, length, flags) with the same flags as one."""
    out = []
    for off, length, flags in extents:
        if out and out[-1][2] == flags and out[-1][0] + out[-1][1] == off:
            out[-1] = (out[-1][0], out[-1][1] + length, flags)
        else:
            out.append((off, length, flags))
    return out


def model_bitmap(writes, granularity, size, bitmap_size=None):
    """The extents of a bitmap marked by writes: whole granules, clean
    past the bitmap's own size."""
    bitmap_size = size if bitmap_size is None else bitmap_size
    dirty = set()
    for off, length in writes:
        dirty.update(range(off // granularity,
                           (off + length - 1) // granularity + 1))
    out = []
    for g in sorted(dirty):
        start = g * granularity
        if start < bitmap_size:
            out.append((start, min(granularity, size - start), 1))
    full = []
    pos = 0
    for start, length, flags in out:
        if start > pos:
            full.append((pos, start - pos, 0))
        full.append((start, length, flags))
        pos = start + length
    if pos < size:
        full.append((pos, size - pos, 0))
    return merge(full)


def parse_map(text):
    """nbdinfo --map lines as merged (offset, length, flags)."""
    out = []
    for line in text.splitlines():
        off, length, flags = line.split()[:3]
        out.append((int(off), int(length), int(flags)))
    return merge(out)


def nbdinfo_map(u, context):
    return iotests.run('nbdinfo', '--map=' + context, u, check=True).stdout


def libnbd_walk(u, context, size, step, flags=0):
    """Block status over the whole export, step bytes asked at a time:
    the list of extents of each reply, as sent."""
    nh.require_libnbd()
    h = nh.nbd.NBD()
    h.add_meta_context(context)
    h.connect_uri(u)
    replies = []
    off = 0
    while off < size:
        got = []

        def cb(metacontext, offset, entries, err):
            if metacontext == context:
                got.append(list(entries))
            return 0

        h.block_status(min(step, size - off), off, cb, flags)
        assert len(got) == 1, got
        replies.append((off, got[0]))
        off += sum(got[0][0::2])
    h.shutdown()
    return replies


def walk_extents(replies):
    out = []
    for off, entries in replies:
        for length, flags in zip(entries[0::2], entries[1::2]):
            out.append((off, length, flags))
            off += length
    return merge(out)


def summarize(reply):
    err = iotests.qmp_error(reply)
    return err if err else ('ok', reply['return'])


def bitmap_states(c, node):
    for n in c.command('query-named-block-nodes', flat=True):
        if n['node-name'] == node:
            return {b['name']: b['busy'] for b in n.get('dirty-bitmaps', [])}
    return None


class NbdBitmapsTest(iotests.DaemonTestCase):

    def setUp(self):
        nh.require_qemu_tools()
        iotests.skip_if_missing('nbdinfo')
        self.tmp = nh.tmpdir(self)

    def binaries(self):
        out = [self.blkd]
        if self.have_qsd() and os.path.realpath(self.qsd) != \
                os.path.realpath(self.blkd):
            out.append(self.qsd)
        return out

    def start(self, binary, *args, export=()):
        """A daemon with the blockdevs args and an NBD server; export: the
        --export options. Returns (daemon, qmp, socket path)."""
        d = iotests.Daemon(self, name=os.path.basename(binary))
        sock = d.path('nbd.sock')
        extra = []
        for e in export:
            extra += ['--export', e]
        d.start(binary, *args, '--nbd-server',
                'addr.type=unix,addr.path=' + sock, *extra)
        d.wait_socket(sock)
        return d, d.qmp(negotiate=True), sock

    def null_disks(self, *specs):
        args = []
        for name, size in specs:
            args += ['--blockdev', 'driver=null-co,node-name=%s,size=%d,'
                     'read-zeroes=on' % (name, size)]
        return args

    def assertSameOnAll(self, run):
        """run(binary) on the daemon under test and on qsd: equal results.
        Returns the daemon under test's."""
        results = [run(b) for b in self.binaries()]
        for r, b in zip(results[1:], self.binaries()[1:]):
            self.assertEqual(results[0], r, 'differs from %s' % b)
        return results[0]

    # ---- qemu:dirty-bitmap:NAME -------------------------------------------

    def run_written_bitmaps(self, binary):
        """Random writes through a writable export mark b4k and b64k; the
        disabled bitmaps are then exported read-only."""
        img = nh.make_image(os.path.join(self.tmp, 'bm-%s.raw'
                                         % os.path.basename(binary)), SIZE)
        d, c, sock = self.start(binary, *nh.blockdev_args(img), export=[
            'type=nbd,id=w,node-name=disk,name=w,writable=on'])
        for name, g in (('b4k', 4096), ('b64k', 65536)):
            c.command('block-dirty-bitmap-add', node='disk', name=name,
                      granularity=g)
        cmds = []
        for off, length in self.writes:
            cmds += ['-c', 'write -P 0x5a %d %d' % (off, length)]
        rc, out = qemu_io('-f', 'raw', *cmds, nh.uri(sock, 'w'))
        self.assertEqual(rc, 0, out)
        self.assertNotIn('error', out.lower())
        for name in ('b4k', 'b64k'):
            c.command('block-dirty-bitmap-disable', node='disk', name=name)
        c.command('block-export-add', type='nbd', id='ro', name='ro',
                  **{'node-name': 'disk', 'bitmaps': ['b4k', 'b64k']})
        u = nh.uri(sock, 'ro')
        opts = ('driver=nbd,server.type=unix,server.path=%s,export=ro,'
                'x-dirty-bitmap=qemu:dirty-bitmap:b64k' % sock)
        out = {
            'map4k': nbdinfo_map(u, 'qemu:dirty-bitmap:b4k'),
            'map64k': nbdinfo_map(u, 'qemu:dirty-bitmap:b64k'),
            'walk4k': libnbd_walk(u, 'qemu:dirty-bitmap:b4k', SIZE,
                                  3 * MiB + 12345),
            'one64k': libnbd_walk(u, 'qemu:dirty-bitmap:b64k', SIZE,
                                  SIZE, nh.nbd.CMD_FLAG_REQ_ONE),
            'qemu-img': json.loads(qemu_img('map', '--output=json',
                                            '--image-opts', opts)),
        }
        d.stop()
        return out

    def test_written_bitmap_reads_back_as_model_and_as_qsd(self):
        self.writes = random_writes(1, 150, SIZE)
        out = self.assertSameOnAll(self.run_written_bitmaps)
        want4k = model_bitmap(self.writes, 4096, SIZE)
        want64k = model_bitmap(self.writes, 65536, SIZE)
        self.assertGreater(len(want4k), 200)
        self.assertEqual(parse_map(out['map4k']), want4k)
        self.assertEqual(parse_map(out['map64k']), want64k)
        self.assertEqual(walk_extents(out['walk4k']), want4k)
        # REQ_ONE: one extent a reply, each a whole merged run.
        self.assertEqual(walk_extents(out['one64k']), want64k)
        self.assertEqual(len(out['one64k']), len(want64k))
        # QEMU's client reads the dirty bit as its HOLE bit.
        self.assertEqual(merge((m['start'], m['length'],
                                0 if m['data'] else 1)
                               for m in out['qemu-img']), want64k)

    # ---- qemu:allocation-depth -------------------------------------------

    def chain(self, tag):
        """base (4 MiB, shorter) <- mid <- top (8 MiB), qcow2, written
        with qemu-io: base 0-2M, mid 1M-3M, top 2.5M-4M and zeroes at 6M."""
        base, mid, top = (os.path.join(self.tmp, '%s-%s.qcow2' % (n, tag))
                          for n in ('base', 'mid', 'top'))
        qemu_img('create', '-q', '-f', 'qcow2', base, '4M')
        qemu_img('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2',
                 mid, '8M')
        qemu_img('create', '-q', '-f', 'qcow2', '-b', mid, '-F', 'qcow2',
                 top, '8M')
        for img, cmds in ((base, ['write -P 1 0 2M']),
                          (mid, ['write -P 2 1M 2M']),
                          (top, ['write -P 3 2560k 1536k',
                                 'write -z 6M 64k'])):
            args = []
            for cmd in cmds:
                args += ['-c', cmd]
            rc, out = qemu_io('-f', 'qcow2', *args, img)
            self.assertEqual(rc, 0, out)
        return top

    def run_allocation_depth(self, binary):
        top = self.chain(os.path.basename(binary))
        d, c, sock = self.start(
            binary, '--blockdev', 'driver=qcow2,node-name=top,'
            'file.driver=file,file.filename=' + top,
            '--blockdev', 'driver=blkdebug,node-name=dbg,image=top',
            export=['type=nbd,id=e0,node-name=top,allocation-depth=on',
                    'type=nbd,id=e1,node-name=dbg,allocation-depth=on'])
        out = {}
        for name in ('top', 'dbg'):
            u = nh.uri(sock, name)
            out[name] = (nbdinfo_map(u, 'qemu:allocation-depth'),
                         nbdinfo_map(u, 'base:allocation'),
                         libnbd_walk(u, 'qemu:allocation-depth', 8 * MiB,
                                     8 * MiB, nh.nbd.CMD_FLAG_REQ_ONE))
        d.stop()
        return out

    def test_allocation_depth_of_a_chain_as_model_and_as_qsd(self):
        out = self.assertSameOnAll(self.run_allocation_depth)
        k = 1024
        want = [(0, MiB, 3), (MiB, 1536 * k, 2), (2560 * k, 1536 * k, 1),
                # past the shorter base's end: the base's zeroes
                (4 * MiB, 2 * MiB, 3), (6 * MiB, 64 * k, 1),
                (6 * MiB + 64 * k, 2 * MiB - 64 * k, 3)]
        self.assertEqual(parse_map(out['top'][0]), want)
        self.assertEqual(walk_extents(out['top'][2]), want)
        # Through a filter, as QEMU counts: what its child allocates is
        # the filter's (depth 1), and the chain below is one layer deeper.
        self.assertEqual(parse_map(out['dbg'][0]),
                         [(o, n, 1 if d == 1 else d + 1) for o, n, d in want])
        self.assertEqual(out['top'][1], out['dbg'][1])

    # ---- meta context negotiation -----------------------------------------

    QUERIES = [[], ['qemu:'], ['qemu:dirty-bitmap:'], ['base:'],
               ['qemu:allocation-depth'], ['qemu:dirty-bitmap:c'],
               ['qemu:dirty-bitmap:b', 'base:allocation'],
               ['qemu:nope', 'nope:x', 'qemu:dirty-bitmap:zz', 'qemu'],
               ['qemu:dirty-bitmap:c', 'qemu:dirty-bitmap:c']]

    def run_negotiation(self, binary):
        d, c, sock = self.start(binary, *self.null_disks(('disk', SIZE)))
        c.command('block-dirty-bitmap-add', node='disk', name='b',
                  disabled=True)
        c.command('block-dirty-bitmap-add', node='disk', name='c',
                  disabled=True)
        c.command('block-export-add', type='nbd', id='e0', name='plain',
                  **{'node-name': 'disk'})
        c.command('block-export-add', type='nbd', id='e1', name='all',
                  **{'node-name': 'disk', 'allocation-depth': True,
                     'bitmaps': ['b', 'c', 'c']})
        out = []
        with nh.RawNbd(sock) as r:
            r.greeting()
            self.assertTrue(r.structured())
            for export in ('plain', 'all'):
                for q in self.QUERIES:
                    for opt in (nh.OPT_LIST_META_CONTEXT,
                                nh.OPT_SET_META_CONTEXT):
                        out.append((export, q, opt,
                                    [(t, p) for _, t, p in
                                     r.meta(opt, export, q)]))
        info = json.loads(iotests.run('nbdinfo', '--json',
                                      nh.uri(sock, 'all'),
                                      check=True).stdout)
        out.append(info['exports'][0]['contexts'])
        d.stop()
        return out

    def test_meta_context_queries_as_qsd(self):
        out = self.assertSameOnAll(self.run_negotiation)
        self.assertEqual(out[-1], ['base:allocation', 'qemu:allocation-depth',
                                   'qemu:dirty-bitmap:b',
                                   'qemu:dirty-bitmap:c',
                                   'qemu:dirty-bitmap:c'])
        replies = {(e, tuple(q), o): r for e, q, o, r in out[:-1]}
        ctx = (lambda i, name: (nh.REP_META_CONTEXT,
                                i.to_bytes(4, 'big') + name.encode()))
        ack = (nh.REP_ACK, b'')
        set_ = nh.OPT_SET_META_CONTEXT
        list_ = nh.OPT_LIST_META_CONTEXT
        self.assertEqual(replies[('all', ('qemu:dirty-bitmap:',), list_)],
                         [ctx(0, 'qemu:dirty-bitmap:b'),
                          ctx(0, 'qemu:dirty-bitmap:c'),
                          ctx(0, 'qemu:dirty-bitmap:c'), ack])
        self.assertEqual(replies[('all', ('qemu:',), set_)], [ack])
        # An exact name selects the first of two exports of a bitmap.
        self.assertEqual(replies[('all', ('qemu:dirty-bitmap:c',), set_)],
                         [ctx(3, 'qemu:dirty-bitmap:c'), ack])
        self.assertEqual(replies[('plain', ('qemu:',), list_)], [ack])

    def run_block_status_of_all_contexts(self, binary):
        """One request, every context: one chunk each, in id order, DONE
        on the last; REQ_ONE limits each."""
        d, c, sock = self.start(binary, *self.null_disks(('disk', SIZE)),
                                export=['type=nbd,id=w,node-name=disk,'
                                        'name=w,writable=on'])
        c.command('block-dirty-bitmap-add', node='disk', name='b')
        rc, out = qemu_io('-f', 'raw', '-c', 'write 1M 64k', '-c',
                          'write 5M 1', nh.uri(sock, 'w'))
        self.assertEqual(rc, 0, out)
        c.command('block-dirty-bitmap-disable', node='disk', name='b')
        c.command('block-export-add', type='nbd', id='ro', name='ro',
                  **{'node-name': 'disk', 'allocation-depth': True,
                     'bitmaps': ['b']})
        out = []
        with nh.RawNbd(sock) as r:
            r.greeting()
            r.structured()
            r.meta(nh.OPT_SET_META_CONTEXT, 'ro',
                   ['qemu:dirty-bitmap:b', 'qemu:allocation-depth',
                    'base:allocation'])
            r.go('ro')
            for off, length, flags in ((0, SIZE, 0), (MiB + 100, 4 * MiB, 0),
                                       (MiB + 100, 4 * MiB,
                                        nh.CMD_FLAG_REQ_ONE),
                                       (5 * MiB, 1, 0), (0, 0, 0)):
                r.request(nh.CMD_BLOCK_STATUS, off, length, flags=flags)
                out.append(nh.chunk_summary(r.any_reply()))
        d.stop()
        return out

    def test_block_status_of_all_contexts_as_qsd(self):
        out = self.assertSameOnAll(self.run_block_status_of_all_contexts)
        self.assertEqual(out[0], [
            ('status', 0, [SIZE, 3], 0),
            ('status', 1, [SIZE, 1], 0),
            ('status', 2, [MiB, 0, 64 * 1024, 1, 4 * MiB - 64 * 1024, 0,
                           64 * 1024, 1, SIZE - 5 * MiB - 64 * 1024, 0], 1)])
        self.assertEqual(out[2][2], ('status', 2, [64 * 1024 - 100, 1], 1))
        self.assertEqual(out[3][2], ('status', 2, [1, 1], 1))
        self.assertEqual(out[4], [('error', 22, 1)])

    # ---- block-export-add and busy bitmaps --------------------------------

    STEPS = [
        ('block-export-add', {'id': 'e0', 'bitmaps': ['nope']}),
        ('block-export-add', {'id': 'e0', 'bitmaps': ['']}),
        ('block-export-add', {'id': 'e0', 'bitmaps': ['on']}),
        ('block-export-add', {'id': 'e0', 'bitmaps': [
            {'node': 'nonode', 'name': 'x'}]}),
        ('block-export-add', {'id': 'e0', 'bitmaps': [
            {'node': 'other', 'name': 'x'}]}),
        ('block-export-add', {'id': 'e0', 'bitmaps': ['off', 'nope']}),
        # enabled, but writable; a {node, name} bitmap is not checked
        ('block-export-add', {'id': 'e0', 'writable': True,
                              'bitmaps': ['on']}),
        ('block-export-add', {'id': 'e1', 'name': 'e1', 'bitmaps': [
            {'node': 'other', 'name': 'o'}, 'off', 'off']}),
        ('query-block-exports', {}),
        ('block-export-add', {'id': 'e2', 'name': 'e2', 'writable': True,
                              'bitmaps': ['on']}),
        ('block-export-add', {'id': 'e2', 'name': 'e2', 'bitmaps': [
            {'node': 'disk', 'name': 'off'}]}),
        ('block-dirty-bitmap-remove', {'node': 'disk', 'name': 'on'}),
        ('block-dirty-bitmap-clear', {'node': 'disk', 'name': 'off'}),
        ('block-dirty-bitmap-enable', {'node': 'disk', 'name': 'off'}),
        ('block-dirty-bitmap-disable', {'node': 'other', 'name': 'o'}),
        ('block-dirty-bitmap-merge', {'node': 'disk', 'target': 'on',
                                      'bitmaps': ['free']}),
        ('block-dirty-bitmap-merge', {'node': 'disk', 'target': 'free',
                                      'bitmaps': ['off']}),
        ('block-export-del', {'id': 'e0'}),
        ('block-export-del', {'id': 'e1'}),
        ('block-dirty-bitmap-merge', {'node': 'disk', 'target': 'on',
                                      'bitmaps': ['off']}),
        ('block-dirty-bitmap-remove', {'node': 'other', 'name': 'o'}),
        ('block-dirty-bitmap-enable', {'node': 'disk', 'name': 'off'}),
    ]
    EXPECTED = [
        (GE, "Bitmap 'nope' is not found"),
        (GE, "Bitmap '' is not found"),
        (GE, "Enabled bitmap 'on' incompatible with readonly export"),
        (GE, "Node 'nonode' not found"),
        (GE, "Dirty bitmap 'x' not found"),
        (GE, "Bitmap 'nope' is not found"),
        ('ok', {}),
        ('ok', {}),
        ('ok', [{'id': 'e1', 'type': 'nbd', 'node-name': 'disk',
                 'shutting-down': False},
                {'id': 'e0', 'type': 'nbd', 'node-name': 'disk',
                 'shutting-down': False}]),
        (GE, BUSY % 'on'),
        (GE, BUSY % 'off'),
        (GE, BUSY % 'on'),
        (GE, BUSY % 'off'),
        (GE, BUSY % 'off'),
        (GE, BUSY % 'o'),
        (GE, BUSY % 'on'),
        (GE, BUSY % 'off'),
        ('ok', {}),
        ('ok', {}),
        ('ok', {}),
        ('ok', {}),
        ('ok', {}),
    ]

    def run_steps(self, binary):
        d, c, sock = self.start(binary, *self.null_disks(('disk', SIZE),
                                                         ('other', SIZE)))
        for node, name, disabled in (('disk', 'on', False),
                                     ('disk', 'off', True),
                                     ('disk', 'free', True),
                                     ('other', 'o', False)):
            c.command('block-dirty-bitmap-add', node=node, name=name,
                      disabled=disabled)
        out = []
        for cmd, args in self.STEPS:
            if cmd == 'block-export-add':
                args = dict(type='nbd', **{'node-name': 'disk'}, **args)
            out.append(summarize(c.cmd(cmd, args)))
            if len(out) == 8:
                busy = (bitmap_states(c, 'disk'), bitmap_states(c, 'other'))
        free = (bitmap_states(c, 'disk'), bitmap_states(c, 'other'))
        d.stop()
        return out, busy, free

    def test_export_errors_and_busy_bitmaps_as_qsd(self):
        out, busy, free = self.assertSameOnAll(self.run_steps)
        self.assertEqual(out, self.EXPECTED)
        self.assertEqual(busy, ({'on': True, 'off': True, 'free': False},
                                {'o': True}))
        self.assertEqual(free, ({'on': False, 'off': False, 'free': False},
                                {}))

    def run_other_nodes(self, binary):
        """Bitmaps of other nodes, named {node, name}: one of a node
        written through its own export, one of a smaller node."""
        d, c, sock = self.start(
            binary, *self.null_disks(('disk', SIZE), ('other', SIZE),
                                     ('small', MiB)),
            export=['type=nbd,id=w,node-name=other,name=w,writable=on',
                    'type=nbd,id=ws,node-name=small,name=ws,writable=on'])
        c.command('block-dirty-bitmap-add', node='other', name='o',
                  granularity=4096)
        c.command('block-dirty-bitmap-add', node='small', name='s',
                  granularity=4096)
        c.command('block-export-add', type='nbd', id='ro', name='ro',
                  **{'node-name': 'disk', 'bitmaps': [
                      {'node': 'other', 'name': 'o'},
                      {'node': 'small', 'name': 's'}]})
        for name, writes in (('w', self.writes), ('ws', self.small_writes)):
            cmds = []
            for off, length in writes:
                cmds += ['-c', 'write %d %d' % (off, length)]
            rc, out = qemu_io('-f', 'raw', *cmds, nh.uri(sock, name))
            self.assertEqual(rc, 0, out)
        u = nh.uri(sock, 'ro')
        out = (nbdinfo_map(u, 'qemu:dirty-bitmap:o'),
               nbdinfo_map(u, 'qemu:dirty-bitmap:s'))
        c.command('block-export-del', id='ro')
        d.stop()
        return out

    def test_bitmaps_of_other_nodes_as_model_and_as_qsd(self):
        self.writes = random_writes(2, 40, SIZE)
        self.small_writes = random_writes(3, 10, MiB, 64 * 1024)
        out = self.assertSameOnAll(self.run_other_nodes)
        # Recording bitmaps: what the writes mark shows at once.
        self.assertEqual(parse_map(out[0]), model_bitmap(self.writes, 4096,
                                                         SIZE))
        self.assertEqual(parse_map(out[1]),
                         model_bitmap(self.small_writes, 4096, SIZE, MiB))

    def test_node_of_an_exported_bitmap_stays(self):
        """blkd refuses to delete a node whose bitmap is exported from
        another node (QEMU 7.2 aborts), and deletes it once the export
        is gone."""
        self.skip_if_not_blkd(reason='QEMU 7.2 aborts here')
        d, c, sock = self.start(self.blkd, *self.null_disks(('disk', SIZE),
                                                            ('other', SIZE)))
        c.command('block-dirty-bitmap-add', node='other', name='o')
        c.command('block-export-add', type='nbd', id='e0',
                  **{'node-name': 'disk',
                     'bitmaps': [{'node': 'other', 'name': 'o'}]})
        self.assertQmpError(c.cmd('blockdev-del', node_name='other'), GE,
                            'Block device other is in use')
        c.command('block-export-del', id='e0')
        self.assertQmpSuccess(c.cmd('blockdev-del', node_name='other'))
        d.stop()

    # ---- the command line ------------------------------------------------

    def test_export_options_on_the_command_line_as_qsd(self):
        cases = ['bitmaps.0=nope,allocation-depth=on',
                 'bitmaps.0.node=disk,bitmaps.0.name=nope',
                 'bitmaps.0.node=disk',
                 'bitmaps=nope',
                 'bitmaps.1=nope',
                 'allocation-depth=maybe']
        results = []
        for binary in self.binaries():
            got = []
            for i, case in enumerate(cases):
                sock = os.path.join(self.tmp, 'cl%d-%s.sock'
                                    % (i, os.path.basename(binary)))
                arg = 'type=nbd,id=e0,node-name=disk,' + case
                r = iotests.run(binary, *self.null_disks(('disk', SIZE)),
                                '--nbd-server', 'addr.type=unix,addr.path='
                                + sock, '--export', arg, timeout=20)
                lines = r.stderr.strip().splitlines()
                got.append((r.returncode,
                            iotests.strip_prog_prefix(lines[-1])[1]))
            results.append(got)
        for r in results[1:]:
            self.assertEqual(results[0], r)
        self.assertEqual(results[0][0], (1, '--export type=nbd,id=e0,'
                                         'node-name=disk,bitmaps.0=nope,'
                                         "allocation-depth=on: Bitmap 'nope' "
                                         'is not found'))

    def run_image_bitmap(self, binary):
        img = os.path.join(self.tmp, 'p-%s.qcow2' % os.path.basename(binary))
        qemu_img('create', '-q', '-f', 'qcow2', img, '8M')
        qemu_img('bitmap', '--add', '--disable', '-g', '65536', img, 'p')
        rc, out = qemu_io('-f', 'qcow2', '-c', 'write 1M 64k', img)
        self.assertEqual(rc, 0, out)
        qemu_img('bitmap', '--enable', img, 'p')
        rc, out = qemu_io('-f', 'qcow2', '-c', 'write 3M 1', img)
        self.assertEqual(rc, 0, out)
        qemu_img('bitmap', '--disable', img, 'p')
        d, c, sock = self.start(
            binary, '--blockdev', 'driver=qcow2,node-name=disk,'
            'file.driver=file,file.filename=' + img,
            export=['type=nbd,id=e0,node-name=disk,bitmaps.0=p,'
                    'allocation-depth=on'])
        out = (nbdinfo_map(nh.uri(sock, 'disk'), 'qemu:dirty-bitmap:p'),
               nbdinfo_map(nh.uri(sock, 'disk'), 'qemu:allocation-depth'))
        d.stop()
        return out

    def test_bitmap_of_an_image_exported_on_the_command_line(self):
        out = self.assertSameOnAll(self.run_image_bitmap)
        self.assertEqual(parse_map(out[0]), [(0, 3 * MiB, 0),
                                             (3 * MiB, 64 * 1024, 1),
                                             (3 * MiB + 64 * 1024,
                                              5 * MiB - 64 * 1024, 0)])


if __name__ == '__main__':
    unittest.main()
