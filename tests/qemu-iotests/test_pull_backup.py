#!/usr/bin/python3
"""Pull-mode backups: a backup program reads the changed extents itself.

The program's side is a python3-libnbd client, as a pull-mode backup
program (libvirt's, for one) is: at a checkpoint the daemon freezes a
point-in-time view of the disk (image fleecing: a sync=none backup into a
qcow2 overlay whose backing node is the disk) in one transaction with the
bitmap changes, exports the view read-only over NBD with the previous
checkpoint's bitmap, and the client walks qemu:dirty-bitmap:NAME and
copies only the dirty extents into an overlay of the last backup (its own
image, served by qemu-nbd). Meanwhile a second client keeps writing
random data to the disk through the daemon's writable export.

The same transaction starts a sync=full backup of the disk into a
reference image: both freeze the disk at the same moment, so the
restored chain (full, then each increment) must equal the reference,
byte for byte (qemu-img compare), and every image passes qemu-img check.
The first increment's writes are all made before its checkpoint, so its
bitmap is known and nbdinfo --map must show exactly those granules; the
second checkpoint is taken while the writer is running. The same
scenario runs on qemu-storage-daemon and must give the same maps.
"""
import os
import random
import threading
import time

import iotests
import nbdhelpers
import pullclient
from nbdhelpers import qemu_img, qemu_io

from pullclient import nbd

MiB = 1 << 20
SIZE = 64 * MiB
GRANULE = 64 * 1024
# Written before the first checkpoint: (offset, length).
ROUND1 = [(0, 1), (3 * MiB + 100, 200 * 1024), (17 * MiB, 4096),
          (40 * MiB - 512, 1024), (SIZE - 4096, 4096)]


def dirty_map(writes):
    """Merged dirty (offset, length) extents of writes, in whole granules."""
    granules = sorted({g for off, length in writes
                       for g in range(off // GRANULE,
                                      (off + length - 1) // GRANULE + 1)})
    out = []
    for g in granules:
        if out and out[-1][0] + out[-1][1] == g * GRANULE:
            out[-1] = (out[-1][0], out[-1][1] + GRANULE)
        else:
            out.append((g * GRANULE, GRANULE))
    return out


class Writer(threading.Thread):
    """A client writing random data at random places: exactly @count
    writes (stop() waits for them), or until stop() without a count."""

    def __init__(self, uri, seed, count=None):
        super().__init__(daemon=True)
        self.uri = uri
        self.rng = random.Random(seed)
        self.count = count
        self.stop_event = threading.Event()
        self.done = []
        self.error = None

    def run(self):
        try:
            h = nbd.NBD()
            h.connect_uri(self.uri)
            while (len(self.done) < self.count if self.count is not None
                   else not self.stop_event.is_set()):
                length = self.rng.choice((512, 4096, 65536, 200 * 1024))
                off = self.rng.randrange(0, SIZE - length) // 512 * 512
                h.pwrite(self.rng.randbytes(length), off)
                self.done.append((off, length))
            h.flush()
            h.shutdown()
        except Exception as e:  # reported by stop()
            self.error = e

    def stop(self):
        """The writes made, once the writer is done."""
        self.stop_event.set()
        self.join(60)
        if self.error:
            raise self.error
        return self.done


class PullBackupTest(iotests.DaemonTestCase):

    def setUp(self):
        nbdhelpers.require_qemu_tools()
        if nbd is None:
            self.skipTest('python3-libnbd missing (run with /usr/bin/python3)')
        for tool in ('nbdinfo', 'qemu-nbd'):
            iotests.skip_if_missing(tool)
        self.dir = nbdhelpers.tmpdir(self, 'iotests-pull-')

    # ---- the daemon's side --------------------------------------------------

    def start(self, binary, tag):
        self.tag = tag
        disk = self.path('disk.qcow2')
        nbdhelpers.make_image(disk, SIZE, 'qcow2',
                              [(0x11, 0, 8 * MiB), (0x22, 30 * MiB, 5 * MiB),
                               (0x33, SIZE - MiB, MiB)])
        sock = self.path('nbd.sock')
        d = self.start_daemon(binary, *nbdhelpers.blockdev_args(disk, 'qcow2'),
                              '--nbd-server', 'addr.type=unix,addr.path=' + sock,
                              '--export', 'type=nbd,id=vm,node-name=disk,'
                              'name=vm,writable=on')
        d.sock = sock
        return d, d.qmp(negotiate=True)

    def path(self, name):
        return os.path.join(self.dir, '%s-%s' % (self.tag, name))

    def add_image(self, qmp, node, image, backing=None):
        """blockdev-add of a qcow2 image (made beforehand), backed by a node."""
        opts = {'driver': 'qcow2', 'node-name': node,
                'file': {'driver': 'file', 'filename': image}}
        if backing:
            opts['backing'] = backing
        qmp.command('blockdev-add', **opts)

    def checkpoint(self, qmp, n, old_bitmap):
        """One transaction: freeze the disk into fleece<n> (exported with
        old_bitmap) and into the reference ref<n>, and start bitmap b<n>."""
        qemu_img('create', '-q', '-f', 'qcow2', self.path('fleece%d.qcow2' % n),
                 str(SIZE))
        qemu_img('create', '-q', '-f', 'qcow2', self.path('ref%d.qcow2' % n),
                 str(SIZE))
        self.add_image(qmp, 'fleece%d' % n, self.path('fleece%d.qcow2' % n),
                       backing='disk')
        self.add_image(qmp, 'ref%d' % n, self.path('ref%d.qcow2' % n))
        actions = []
        if old_bitmap:
            actions.append({'type': 'block-dirty-bitmap-disable',
                            'data': {'node': 'disk', 'name': old_bitmap}})
        actions += [
            {'type': 'block-dirty-bitmap-add',
             'data': {'node': 'disk', 'name': 'b%d' % n, 'persistent': True,
                      'granularity': GRANULE}},
            {'type': 'blockdev-backup',
             'data': {'job-id': 'fleece%d' % n, 'device': 'disk',
                      'target': 'fleece%d' % n, 'sync': 'none'}},
            {'type': 'blockdev-backup',
             'data': {'job-id': 'ref%d' % n, 'device': 'disk',
                      'target': 'ref%d' % n, 'sync': 'full'}}]
        qmp.command('transaction', actions=actions)
        export = {'type': 'nbd', 'id': 'pull%d' % n, 'name': 'pull%d' % n,
                  'node-name': 'fleece%d' % n}
        if old_bitmap:
            export['bitmaps'] = [old_bitmap]
        qmp.command('block-export-add', **export)
        return nbdhelpers.uri(self.d.sock, 'pull%d' % n)

    def wait_job(self, qmp, job, event):
        """The job's end event (other jobs' stay queued)."""
        ev = qmp.wait_event(event, match={'device': job})
        self.assertNotIn('error', ev['data'], ev)
        return ev

    def release(self, qmp, n):
        """The backup program is done: the export, the jobs and the nodes go."""
        qmp.command('block-export-del', id='pull%d' % n)
        qmp.wait_event('BLOCK_EXPORT_DELETED')
        qmp.command('job-cancel', id='fleece%d' % n)
        self.wait_job(qmp, 'fleece%d' % n, 'BLOCK_JOB_CANCELLED')
        self.wait_job(qmp, 'ref%d' % n, 'BLOCK_JOB_COMPLETED')
        for node in ('fleece%d' % n, 'ref%d' % n):
            qmp.command('blockdev-del', node_name=node)

    # ---- the backup program's side -------------------------------------------

    def pull(self, uri, extents, image):
        return pullclient.copy_extents(uri, extents, image,
                                       os.path.join(self.dir, 'target.sock'))

    # ---- the scenario ----------------------------------------------------------

    def run_scenario(self, binary, tag):
        self.d, qmp = d, qmp = self.start(binary, tag)
        vm = nbdhelpers.uri(d.sock, 'vm')

        # Checkpoint 0: a full backup pulled whole from the fleecing export,
        # while 100 writes go to the disk.
        uri = self.checkpoint(qmp, 0, None)
        writer = Writer(vm, seed=1, count=100)
        writer.start()
        full = self.path('full.qcow2')
        qemu_img('convert', '-f', 'raw', '-O', 'qcow2', uri, full)
        since0 = writer.stop()
        self.release(qmp, 0)
        self.assertEqual(qemu_img('compare', '-f', 'qcow2', '-F', 'qcow2',
                                  full, self.path('ref0.qcow2')).strip(),
                         'Images are identical.')

        # Checkpoint 1 after known writes, the writer running during the pull.
        cmds = []
        for off, length in ROUND1:
            cmds += ['-c', 'write -P 0x44 %d %d' % (off, length)]
        rc, out = qemu_io('-f', 'raw', *cmds, vm)
        self.assertEqual(rc, 0, out)
        since0 += ROUND1
        uri = self.checkpoint(qmp, 1, 'b0')
        writer = Writer(vm, seed=2)
        writer.start()
        extents = pullclient.dirty_extents(uri, 'b0')
        self.assertEqual(extents, dirty_map(since0))
        self.assertEqual(nbdhelpers.nbdinfo_dirty(uri, 'b0'), extents)
        inc1 = self.path('inc1.qcow2')
        qemu_img('create', '-q', '-f', 'qcow2', '-b', full, '-F', 'qcow2', inc1)
        copied1 = self.pull(uri, extents, inc1)
        self.assertGreater(len(writer.stop()), 0)
        self.release(qmp, 1)

        # Checkpoint 2 taken while the writer runs.
        writer = Writer(vm, seed=3)
        writer.start()
        time.sleep(0.2)
        uri = self.checkpoint(qmp, 2, 'b1')
        extents2 = pullclient.dirty_extents(uri, 'b1')
        inc2 = self.path('inc2.qcow2')
        qemu_img('create', '-q', '-f', 'qcow2', '-b', inc1, '-F', 'qcow2', inc2)
        copied2 = self.pull(uri, extents2, inc2)
        writer.stop()
        count = {b.get('name'): b['count'] for b in self.bitmaps(qmp)}
        self.release(qmp, 2)

        for inc, ref in ((inc1, 'ref1.qcow2'), (inc2, 'ref2.qcow2')):
            self.assertEqual(qemu_img('compare', '-f', 'qcow2', '-F', 'qcow2',
                                      inc, self.path(ref)).strip(),
                             'Images are identical.', inc)
        # Only the bitmap's extents were read and copied.
        self.assertEqual(copied1, count['b0'])
        self.assertEqual(copied2, count['b1'])
        self.assertLess(copied2, SIZE)
        d.stop()
        for image in ('disk.qcow2', 'full.qcow2', 'inc1.qcow2', 'inc2.qcow2',
                      'ref2.qcow2'):
            r = iotests.run(nbdhelpers.QEMU_IMG, 'check', self.path(image))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        info = qemu_img('info', '--output=json', self.path('disk.qcow2'))
        for name in ('b0', 'b1', 'b2'):
            self.assertIn('"%s"' % name, info)
        return extents

    def bitmaps(self, qmp):
        for node in qmp.command('query-named-block-nodes', flat=True):
            if node['node-name'] == 'disk':
                return node.get('dirty-bitmaps', [])
        self.fail('no disk node')

    def test_pull_chain(self):
        self.require_qsd()
        self.assertEqual(self.run_scenario(self.qsd, 'qsd'),
                         self.run_scenario(self.blkd, 'blkd'))


if __name__ == '__main__':
    import unittest
    unittest.main()
