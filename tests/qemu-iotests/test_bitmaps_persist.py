#!/usr/bin/python3
"""Persistent dirty bitmaps in qcow2 images, blkd against qemu-storage-daemon.

Bitmaps added with persistent: true get writes through an NBD export
(qemu-io), the daemon stops (quit, SIGTERM, SIGINT, blockdev-del), and
the image must hold them: qemu-img check clean, qemu-img info listing
them, a restarted daemon loading them with the same counts, and the
reference exporting exactly the written granules as dirty (nbdinfo --map
of qemu:dirty-bitmap:NAME). kill -9 leaves them in use: both daemons then
load them as inconsistent. kill -9 after writes through NBD (with bitmaps
added and removed before) leaves no leaked cluster, as with the reference
(qemu-img check exits 0). Images either daemon wrote load in the other
one, and the errors have the reference's class and text.
"""
import hashlib
import json
import os
import shutil
import struct

import iotests
import nbdhelpers
from nbdhelpers import qemu_img, qemu_io

NBDINFO = shutil.which('nbdinfo')
SIZE = 64 << 20

# Writes through NBD: (offset, length).
WRITES = [(0, 1), (1 << 20, 300 << 10), (10 << 20, 1), (20 << 20, 65536 + 512),
          (SIZE - 512, 512)]
MORE_WRITES = [(30 << 20, 4096), (40 << 20 | 512, 100)]


def granules(writes, granularity):
    """The granules that writes dirty in a bitmap of granularity."""
    return {g for off, length in writes
            for g in range(off // granularity,
                           (off + length - 1) // granularity + 1)}


def dirty_extents(writes, granularity):
    """The same as extents (offset, length), adjacent ones merged."""
    out = []
    for g in sorted(granules(writes, granularity)):
        start, end = g * granularity, min((g + 1) * granularity, SIZE)
        if out and out[-1][1] == start:
            out[-1][1] = end
        else:
            out.append([start, end])
    return [(s, e - s) for s, e in out]


def count(writes, granularity):
    """The count a query reports: dirty granules times the granularity."""
    return len(granules(writes, granularity)) * granularity


class PersistTest(iotests.DaemonTestCase):

    def setUp(self):
        nbdhelpers.require_qemu_tools()
        if not NBDINFO:
            self.skipTest('nbdinfo missing')
        self.dir = nbdhelpers.tmpdir(self, 'iotests-persist-')

    def image(self, name='disk.qcow2', opts=None, size=SIZE):
        path = os.path.join(self.dir, name)
        qemu_img('create', '-q', '-f', 'qcow2', *(['-o', opts] if opts else []),
                 path, str(size))
        return path

    def start(self, binary, image, read_only=False, export=True, node='q'):
        """A daemon with image as node q, exported (writable) over NBD."""
        ro = ',read-only=on' if read_only else ''
        sock = os.path.join(self.dir, 'nbd-%s.sock' % os.path.basename(binary))
        args = ['--blockdev', 'driver=file,node-name=f,filename=%s%s'
                % (image, ro),
                '--blockdev', 'driver=qcow2,node-name=%s,file=f%s' % (node, ro)]
        if export:
            args += ['--nbd-server', 'addr.type=unix,addr.path=' + sock,
                     '--export', 'nbd,id=e,node-name=%s,name=q,writable=%s'
                     % (node, 'off' if read_only else 'on')]
        d = self.start_daemon(binary, *args)
        d.nbd = nbdhelpers.uri(sock, 'q')
        return d, d.qmp(negotiate=True)

    def write(self, daemon, writes):
        cmds = []
        for off, length in writes:
            cmds += ['-c', 'write -P 0x5a %d %d' % (off, length)]
        rc, out = qemu_io('-f', 'raw', *cmds, daemon.nbd)
        self.assertEqual(rc, 0, out)
        self.assertNotIn('error', out.lower(), out)

    def bitmaps(self, qmp, node='q'):
        for info in qmp.command('query-named-block-nodes', flat=True):
            if info['node-name'] == node:
                return info.get('dirty-bitmaps', [])
        self.fail('no node %s' % node)

    def stored(self, qmp, node='q'):
        """What the image holds, as the daemon reports it (format-specific)."""
        for info in qmp.command('query-named-block-nodes', flat=True):
            if info['node-name'] == node:
                return info['image']['format-specific']['data'].get('bitmaps')
        self.fail('no node %s' % node)

    def info(self, image):
        out = qemu_img('info', '-U', '--output=json', image)
        return json.loads(out)['format-specific']['data'].get('bitmaps')

    def check(self, image):
        r = iotests.run(nbdhelpers.QEMU_IMG, 'check', image)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def qemu_maps(self, image, *names):
        """{name: dirty extents} of the bitmaps, as the reference exports
        them (nbdinfo --map of qemu:dirty-bitmap:NAME)."""
        sock = os.path.join(self.dir, 'map.sock')
        exports = ','.join('bitmaps.%d=%s' % (i, n) for i, n in enumerate(names))
        d = self.start_qsd('--blockdev', 'driver=file,node-name=f,filename=%s,'
                           'read-only=on' % image,
                           '--blockdev', 'driver=qcow2,node-name=q,file=f,'
                           'read-only=on',
                           '--nbd-server', 'addr.type=unix,addr.path=' + sock,
                           '--export', 'nbd,id=e,node-name=q,name=q,' + exports)
        maps = {name: nbdhelpers.nbdinfo_dirty(nbdhelpers.uri(sock, 'q'), name)
                for name in names}
        d.stop()
        return maps

    # ---- stored at shutdown, loaded at start --------------------------------

    def add_and_write(self, binary, image):
        d, qmp = self.start(binary, image)
        qmp.command('block-dirty-bitmap-add', node='q', name='fine',
                    granularity=512, persistent=True)
        qmp.command('block-dirty-bitmap-add', node='q', name='coarse',
                    persistent=True)
        qmp.command('block-dirty-bitmap-add', node='q', name='off',
                    persistent=True, disabled=True)
        qmp.command('block-dirty-bitmap-add', node='q', name='memory')
        self.write(d, WRITES)
        return d, qmp

    def assert_stored(self, image):
        self.check(image)
        self.assertEqual(self.info(image), [
            {'name': 'fine', 'granularity': 512, 'flags': ['auto']},
            {'name': 'coarse', 'granularity': 65536, 'flags': ['auto']},
            {'name': 'off', 'granularity': 65536, 'flags': []}][::-1])
        self.assertEqual(self.qemu_maps(image, 'fine', 'coarse', 'off'),
                         {'fine': dirty_extents(WRITES, 512),
                          'coarse': dirty_extents(WRITES, 65536), 'off': []})

    def test_stored_on_quit_sigterm_sigint(self):
        for method in ('quit', 'sigterm', 'sigint'):
            with self.subTest(method=method):
                image = self.image()
                d, qmp = self.add_and_write(self.blkd, image)
                before = self.bitmaps(qmp)
                d.stop(method)
                self.assert_stored(image)

                d, qmp = self.start(self.blkd, image)
                loaded = self.bitmaps(qmp)
                self.assertEqual(loaded, [b for b in before
                                          if b['name'] != 'memory'][::-1])
                self.assertEqual(self.stored(qmp), [
                    {'name': n, 'granularity': g, 'flags': f} for n, g, f in
                    (('off', 65536, ['in-use']),
                     ('coarse', 65536, ['in-use', 'auto']),
                     ('fine', 512, ['in-use', 'auto']))])
                self.assertEqual({b['name']: b['count'] for b in loaded},
                                 {'fine': count(WRITES, 512),
                                  'coarse': count(WRITES, 65536), 'off': 0})
                d.stop()

    def test_stored_on_blockdev_del(self):
        image = self.image()
        d, qmp = self.start(self.blkd, image, export=False)
        qmp.command('block-dirty-bitmap-add', node='q', name='b',
                    persistent=True)
        self.assertIsNone(self.info(image))
        qmp.command('blockdev-del', node_name='q')
        self.assertEqual(self.info(image), [{'name': 'b', 'granularity': 65536,
                                             'flags': ['auto']}])
        d.stop()
        self.check(image)

    def test_writes_after_restart_add_up(self):
        image = self.image()
        d, _ = self.add_and_write(self.blkd, image)
        d.stop('quit')
        d, qmp = self.start(self.blkd, image)
        self.write(d, MORE_WRITES)
        counts = {b['name']: b['count'] for b in self.bitmaps(qmp)}
        d.stop('quit')
        self.assertEqual(counts['fine'], count(WRITES + MORE_WRITES, 512))
        self.check(image)
        self.assertEqual(self.qemu_maps(image, 'fine'),
                         {'fine': dirty_extents(WRITES + MORE_WRITES, 512)})

    def disk_sha256(self, daemon):
        """SHA-256 of the disk as an NBD client reads it."""
        raw = os.path.join(self.dir, 'read.raw')
        qemu_img('convert', '-f', 'raw', '-O', 'raw', daemon.nbd, raw)
        with open(raw, 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        os.unlink(raw)
        return digest

    def test_restart_keeps_counts_and_data_as_qsd(self):
        self.require_qsd()
        seen = {}
        for binary in (self.blkd, self.qsd):
            image = self.image('restart-%s.qcow2' % os.path.basename(binary))
            d, qmp = self.add_and_write(binary, image)
            self.write(d, [(off + 4096, 512) for off, _ in MORE_WRITES])
            before = ({b['name']: b['count'] for b in self.bitmaps(qmp)
                       if b['persistent']}, self.disk_sha256(d))
            d.stop('quit')
            d, qmp = self.start(binary, image)
            after = ({b['name']: b['count'] for b in self.bitmaps(qmp)},
                     self.disk_sha256(d))
            d.stop('quit')
            self.assertEqual(after, before, binary)
            self.check(image)
            seen[binary] = after
        self.assertEqual(seen[self.blkd], seen[self.qsd])

    # ---- crashes ------------------------------------------------------------

    def test_kill_leaves_bitmaps_inconsistent(self):
        self.require_qsd()
        image = self.image()
        d, _ = self.add_and_write(self.blkd, image)
        d.stop('quit')
        d, _ = self.start(self.blkd, image)
        self.write(d, MORE_WRITES)
        d.kill()
        self.check(image)
        self.assertEqual(self.info(image), [
            {'name': 'off', 'granularity': 65536, 'flags': ['in-use']},
            {'name': 'coarse', 'granularity': 65536,
             'flags': ['in-use', 'auto']},
            {'name': 'fine', 'granularity': 512, 'flags': ['in-use', 'auto']}])
        seen = []
        for binary in (self.blkd, self.qsd):
            d, qmp = self.start(binary, image, export=False)
            seen.append(self.bitmaps(qmp))
            replies = [qmp.cmd('block-dirty-bitmap-clear', node='q',
                               name='fine'),
                       qmp.cmd('block-dirty-bitmap-enable', node='q',
                               name='off'),
                       qmp.cmd('block-dirty-bitmap-merge', node='q',
                               target='coarse', bitmaps=['fine']),
                       qmp.cmd('block_resize', node_name='q', size=SIZE * 2)]
            seen.append(replies)
            d.stop()
        self.assertEqual(seen[0], seen[2])
        self.assertEqual(seen[1], seen[3])
        for b in seen[0]:
            self.assertEqual((b['count'], b['recording'], b['busy'],
                              b['persistent'], b['inconsistent']),
                             (0, False, False, True, True))
        for r in seen[1]:
            self.assertTrue(r['error']['desc'].endswith(
                "' is inconsistent and cannot be used"), r)
        # They can only be removed; then the image is clean of them.
        d, qmp = self.start(self.blkd, image, export=False)
        for name in ('fine', 'coarse', 'off'):
            qmp.command('block-dirty-bitmap-remove', node='q', name=name)
        self.assertIsNone(self.stored(qmp))
        d.stop()
        self.check(image)
        self.assertIsNone(self.info(image))

    def killed_after_writes(self, binary, stored, commands):
        """A daemon on a new image (with the bitmaps of add_and_write()
        stored if stored) runs commands, gets writes through NBD (qemu-io
        flushes at its end) and is killed: qemu-img check's exit status and
        report, and the bitmaps qemu-img info lists."""
        image = self.image('kill-%s.qcow2' % os.path.basename(binary))
        if stored:
            d, _ = self.add_and_write(binary, image)
            d.stop('quit')
        d, qmp = self.start(binary, image)
        for command, args in commands:
            qmp.command(command, node='q', **args)
        self.write(d, MORE_WRITES)
        d.kill()
        r = iotests.run(nbdhelpers.QEMU_IMG, 'check', image)
        return r.returncode, r.stdout + r.stderr, self.info(image)

    def test_kill_after_writes_leaks_nothing_as_qsd(self):
        self.require_qsd()
        add = ('block-dirty-bitmap-add', {'name': 'new', 'persistent': True})
        remove = ('block-dirty-bitmap-remove', {'name': 'coarse'})
        for case, stored, commands in (
                ('new image, bitmap added', False, [add]),
                ('bitmaps in use', True, []),
                ('one added, one removed', True, [add, remove])):
            with self.subTest(case=case):
                mine, theirs = (self.killed_after_writes(b, stored, commands)
                                for b in (self.blkd, self.qsd))
                self.assertEqual(mine[0], 0, mine[1])
                self.assertEqual(theirs[0], 0, theirs[1])
                self.assertEqual(mine[2], theirs[2])

    def test_kill_right_after_remove_leaks_nothing(self):
        """blkd frees a removed bitmap's clusters at once, flushed; QEMU
        7.2 frees them in its refcount cache, so that a kill before its
        next flush leaks them (qemu-img check exits 3)."""
        image = self.image()
        d, _ = self.add_and_write(self.blkd, image)
        d.stop('quit')
        d, qmp = self.start(self.blkd, image)
        qmp.command('block-dirty-bitmap-remove', node='q', name='fine')
        d.kill()
        self.check(image)
        self.assertEqual([b['name'] for b in self.info(image)],
                         ['off', 'coarse'])

    # ---- images the other daemon made ---------------------------------------

    def test_each_daemon_loads_what_the_other_stored(self):
        self.require_qsd()
        for writer, reader in ((self.qsd, self.blkd), (self.blkd, self.qsd)):
            with self.subTest(writer=os.path.basename(writer)):
                image = self.image()
                d, qmp = self.add_and_write(writer, image)
                qmp.command('block-dirty-bitmap-disable', node='q',
                            name='coarse')
                before = [b for b in self.bitmaps(qmp) if b['name'] != 'memory']
                d.stop('quit')
                self.check(image)
                d, qmp = self.start(reader, image)
                self.assertEqual(self.bitmaps(qmp), before[::-1])
                stored = self.stored(qmp)
                d.stop('quit')
                self.check(image)
                # The image as the writer would show it, loaded.
                d, qmp = self.start(writer, image)
                self.assertEqual(self.stored(qmp), stored)
                d.stop('quit')
                self.assertEqual(self.qemu_maps(image, 'fine'),
                                 {'fine': dirty_extents(WRITES, 512)})

    def test_qemu_img_bitmap_and_blkd(self):
        """qemu-img bitmap changes what blkd stored, and the reverse."""
        image = self.image()
        d, _ = self.add_and_write(self.blkd, image)
        d.stop('quit')
        qemu_img('bitmap', '--remove', image, 'off')
        qemu_img('bitmap', '--add', '-g', '4096', image, 'merged')
        qemu_img('bitmap', '--merge', 'fine', image, 'merged')
        qemu_img('bitmap', '--disable', image, 'fine')
        qemu_img('bitmap', '--clear', image, 'coarse')
        d, qmp = self.start(self.blkd, image)
        got = {b['name']: (b['count'], b['recording'], b['granularity'])
               for b in self.bitmaps(qmp)}
        self.assertEqual(got, {'fine': (count(WRITES, 512), False, 512),
                               'coarse': (0, True, 65536),
                               'merged': (count(WRITES, 4096), True, 4096)})
        qmp.command('block-dirty-bitmap-enable', node='q', name='fine')
        self.write(d, MORE_WRITES)
        d.stop('quit')
        self.check(image)
        qemu_img('bitmap', '--remove', image, 'merged')
        self.assertEqual(self.info(image), [
            {'name': 'fine', 'granularity': 512, 'flags': ['auto']},
            {'name': 'coarse', 'granularity': 65536, 'flags': ['auto']}][::-1])
        self.assertEqual(self.qemu_maps(image, 'fine'),
                         {'fine': dirty_extents(WRITES + MORE_WRITES, 512)})
        self.check(image)

    # ---- removal ------------------------------------------------------------

    def test_remove_deletes_from_image_at_once(self):
        """Also in a transaction that aborts, as in QEMU: the bitmap
        stays in memory and is stored again at shutdown."""
        self.require_qsd()
        seen = []
        for binary in (self.blkd, self.qsd):
            image = self.image('rm-%s.qcow2' % os.path.basename(binary))
            d, _ = self.add_and_write(binary, image)
            d.stop('quit')
            d, qmp = self.start(binary, image, export=False)
            qmp.command('block-dirty-bitmap-remove', node='q', name='coarse')
            seen.append(self.info(image))
            r = qmp.cmd('transaction', actions=[
                {'type': 'block-dirty-bitmap-remove',
                 'data': {'node': 'q', 'name': 'fine'}},
                {'type': 'abort', 'data': {}}])
            self.assertIn('error', r)
            seen.append(self.info(image))
            seen.append([b['name'] for b in self.bitmaps(qmp)])
            d.stop('quit')
            seen.append(self.info(image))
            self.check(image)
        self.assertEqual(seen[:4], seen[4:])
        self.assertEqual([b['name'] for b in seen[0]], ['off', 'fine'])
        self.assertEqual([b['name'] for b in seen[1]], ['off'])
        self.assertEqual([b['name'] for b in seen[3]], ['off', 'fine'])

    # ---- errors -------------------------------------------------------------

    def error_replies(self, binary):
        """Every refusal around persistence, on one daemon."""
        big = self.image('big-%s.qcow2' % os.path.basename(binary),
                         size=4 << 40)
        v2 = self.image('v2-%s.qcow2' % os.path.basename(binary),
                        opts='compat=0.10')
        stored = self.image('ro-%s.qcow2' % os.path.basename(binary))
        qemu_img('bitmap', '--add', stored, 'kept')
        d, qmp = self.start(binary, stored, read_only=True, export=False)
        for node, img, ro in (('big', big, False), ('v2', v2, False)):
            qmp.command('blockdev-add', driver='qcow2', node_name=node,
                        read_only=ro, file={'driver': 'file', 'filename': img})
        qmp.command('blockdev-add', driver='null-co', node_name='null')
        add = 'block-dirty-bitmap-add'
        replies = [
            qmp.cmd(add, node='null', name='p', persistent=True),
            qmp.cmd(add, node='f', name='p', persistent=True),
            qmp.cmd(add, node='v2', name='p', persistent=True),
            qmp.cmd(add, node='v2', name='x' * 1024, persistent=True),
            qmp.cmd(add, node='big', name='x' * 1024, persistent=True),
            qmp.cmd(add, node='big', name='p', persistent=True,
                    granularity=512),
            qmp.cmd(add, node='big', name='p', persistent=True),
            qmp.cmd(add, node='big', name='p', persistent=True),
            qmp.cmd(add, node='big', name='p'),
            qmp.cmd(add, node='q', name='kept', persistent=True),
            # Read-only: QEMU takes it (and loses it at close).
            qmp.cmd(add, node='q', name='new', persistent=True),
            qmp.cmd('block-dirty-bitmap-clear', node='q', name='kept'),
            qmp.cmd('block-dirty-bitmap-remove', node='q', name='kept'),
            qmp.cmd('block-dirty-bitmap-disable', node='q', name='kept'),
            qmp.cmd('block-dirty-bitmap-merge', node='q', target='new',
                    bitmaps=['kept']),
            qmp.cmd('block-dirty-bitmap-merge', node='q', target='kept',
                    bitmaps=['new']),
        ]
        replies.append(self.bitmaps(qmp))
        qmp.command('blockdev-del', node_name='big')
        d.stop()
        replies.append(self.info(big))
        return replies

    def test_errors_as_qsd(self):
        self.require_qsd()
        mine, theirs = (self.error_replies(b) for b in (self.blkd, self.qsd))
        for a, b in zip(mine, theirs):
            self.assertEqual(a, b)
        self.assertEqual(mine[2]['error']['desc'],
                         "Can't make bitmap 'p' persistent in 'v2': Cannot "
                         "store dirty bitmaps in qcow2 v2 files")

    def damaged(self, name, at, value):
        """An image with bitmaps x and y, value (bytes) written at an
        offset: 'ext+N' into the extension, 'dir+N' into the directory."""
        template = os.path.join(self.dir, 'template.qcow2')
        if not os.path.exists(template):
            self.image('template.qcow2')
            qemu_img('bitmap', '--add', template, 'x')
            qemu_img('bitmap', '--add', template, 'y')
        image = os.path.join(self.dir, name)
        shutil.copyfile(template, image)
        with open(image, 'r+b') as f:
            head = f.read(65536)
            off = struct.unpack('>I', head[100:104])[0]
            while struct.unpack('>I', head[off:off + 4])[0] != 0x23852875:
                off += 8 + (struct.unpack('>I', head[off + 4:off + 8])[0] + 7
                            & ~7)
            base = {'ext': off,
                    'dir': struct.unpack('>Q', head[off + 24:off + 32])[0]}
            where, delta = at.split('+')
            f.seek(base[where] + int(delta))
            f.write(value)
        return image

    def test_damaged_images_refused_as_qsd(self):
        self.require_qsd()
        damages = [('dir+12', struct.pack('>I', 6)),
                   ('dir+16', struct.pack('>I', 0x02100001)),
                   ('dir+8', struct.pack('>I', 2)),
                   ('dir+20', struct.pack('>I', 8)),
                   ('ext+8', struct.pack('>I', 1)),
                   ('ext+8', struct.pack('>I', 3)),
                   ('ext+12', struct.pack('>I', 1)),
                   ('ext+16', struct.pack('>Q', 16)),
                   ('ext+24', struct.pack('>Q', 0x30008))]
        for i, (at, value) in enumerate(damages):
            image = self.damaged('damaged%d.qcow2' % i, at, value)
            replies = []
            for binary in (self.blkd, self.qsd):
                d, qmp = self.connect(binary)
                replies.append(qmp.cmd('blockdev-add', driver='qcow2',
                                       node_name='q', file={
                                           'driver': 'file',
                                           'filename': image}))
                d.stop()
            with self.subTest(at=at):
                self.assertIn('error', replies[0])
                self.assertEqual(replies[0], replies[1])


if __name__ == '__main__':
    import unittest
    unittest.main()
