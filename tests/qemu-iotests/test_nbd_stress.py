# SPDX-License-Identifier: GPL-2.0-or-later
"""Several NBD clients at once, randomized, against a reference; and the
server's clean-up when clients, exports and the server go away under load
(threads and descriptors counted in /proc, ASan reports checked by the
harness).
"""

import os
import random
import threading
import time
import unittest

import iotests
import nbdhelpers as nh
from nbdhelpers import ExportedImage, RawNbd, make_image, qemu_img

MiB = 1 << 20
SIZE = 32 * MiB
BLOCK = 64 * 1024           # unit a client owns; ops stay inside one unit


def proc_counts(pid):
    """(threads, open descriptors) of a process."""
    return (len(os.listdir('/proc/%d/task' % pid)),
            len(os.listdir('/proc/%d/fd' % pid)))


def wait_counts(testcase, pid, expected, timeout=10):
    """Waits for the daemon to be back to the (threads, fds) it had. QEMU
    keeps a pool of worker threads that grows and shrinks on its own, so
    only descriptors are compared when the daemon is not blkd."""
    if not iotests.binary_is_blkd(testcase.blkd):
        expected = expected[1:]
    deadline = time.monotonic() + timeout
    while True:
        got = proc_counts(pid)[-len(expected):]
        if got == expected or time.monotonic() > deadline:
            testcase.assertEqual(got, expected, 'threads, fds of %d' % pid)
            return
        time.sleep(0.05)


class NbdStressTest(iotests.DaemonTestCase):

    def setUp(self):
        nh.require_qemu_tools()
        nh.require_libnbd()
        self.tmp = nh.tmpdir(self)

    def test_random_io_several_clients(self):
        """Four clients (one of them pipelining 16 requests) write, zero,
        trim and read random ranges of the blocks each owns; every read is
        checked against a reference, then qemu-img compare says the image
        and the reference are identical. Meanwhile a fifth client keeps
        sending garbage and is dropped each time."""
        seed = int(os.environ.get('NBD_STRESS_SEED', time.time()))
        img = make_image(os.path.join(self.tmp, 'img.raw'), SIZE)
        ref = bytearray(SIZE)
        # discard=unmap: trimmed ranges read back as zeroes
        d = self.start_daemon(
            self.blkd,
            '--blockdev', 'driver=file,node-name=f,filename=%s,discard=unmap'
            % img,
            '--blockdev', 'driver=raw,node-name=disk,file=f,discard=unmap',
            '--nbd-server', 'addr.type=unix,addr.path=%s'
            % os.path.join(self.tmp, 's.sock'),
            '--export', 'nbd,id=e0,node-name=disk,writable=on')
        sock = os.path.join(self.tmp, 's.sock')
        d.wait_socket(sock)
        nblocks = SIZE // BLOCK
        rnd = random.Random(seed)
        owner = [rnd.randrange(4) for _ in range(nblocks)]
        errors = []
        stop_garbage = threading.Event()

        def client(idx, pipelined):
            rnd = random.Random(seed * 10 + idx)
            mine = [b for b in range(nblocks) if owner[b] == idx]
            h = nh.nbd.NBD()
            h.add_meta_context('base:allocation')
            h.connect_uri(nh.uri(sock, 'disk'))
            try:
                for _ in range(300 if not pipelined else 60):
                    if pipelined:
                        self.pipelined_round(h, rnd, mine, ref)
                    else:
                        self.one_op(h, rnd, mine, ref)
                h.flush()
            except Exception as ex:              # reported by the main thread
                errors.append('client %d (seed %d): %r' % (idx, seed, ex))
            finally:
                h.shutdown()

        def garbage():
            rnd = random.Random(seed)
            while not stop_garbage.is_set():
                try:
                    with RawNbd(sock, timeout=2) as r:
                        r.greeting()
                        r.send(rnd.randbytes(rnd.randrange(1, 300)))
                        r.is_closed(2)
                except OSError:
                    pass

        threads = [threading.Thread(target=client, args=(i, i == 3))
                   for i in range(4)]
        g = threading.Thread(target=garbage)
        g.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stop_garbage.set()
        g.join(30)
        self.assertEqual(errors, [])

        # the whole image over NBD, then the file itself
        h = nh.nbd.NBD()
        h.connect_uri(nh.uri(sock, 'disk'))
        for off in range(0, SIZE, 4 * MiB):
            self.assertEqual(h.pread(4 * MiB, off), ref[off:off + 4 * MiB],
                             'seed %d, offset %d' % (seed, off))
        h.shutdown()
        d.stop()
        refpath = os.path.join(self.tmp, 'ref.raw')
        with open(refpath, 'wb') as f:
            f.write(ref)
        self.assertIn('Images are identical',
                      qemu_img('compare', '-f', 'raw', '-F', 'raw', img,
                               refpath))

    @staticmethod
    def rand_range(rnd, mine):
        block = rnd.choice(mine)
        off = rnd.randrange(BLOCK)
        length = rnd.randrange(1, BLOCK - off + 1)
        return block * BLOCK + off, length

    def one_op(self, h, rnd, mine, ref):
        off, length = self.rand_range(rnd, mine)
        op = rnd.randrange(10)
        if op < 4:
            data = rnd.randbytes(length)
            h.pwrite(data, off, flags=nh.nbd.CMD_FLAG_FUA if op == 0 else 0)
            ref[off:off + length] = data
        elif op < 6:
            flags = [0, nh.nbd.CMD_FLAG_NO_HOLE][op - 4]
            h.zero(length, off, flags=flags)
            ref[off:off + length] = bytes(length)
        elif op == 6:
            # whole blocks: what a punched hole reads back is exact then
            block = off // BLOCK
            h.trim(BLOCK, block * BLOCK)
            ref[block * BLOCK:(block + 1) * BLOCK] = bytes(BLOCK)
        else:
            got = h.pread(length, off)
            if got != ref[off:off + length]:
                raise AssertionError('read %d+%d differs' % (off, length))

    def pipelined_round(self, h, rnd, mine, ref):
        """16 writes to distinct blocks in flight, then 16 reads."""
        blocks = rnd.sample(mine, min(16, len(mine)))
        bufs = []
        for b in blocks:
            off = b * BLOCK + rnd.randrange(BLOCK // 2)
            data = rnd.randbytes(rnd.randrange(1, BLOCK // 2))
            buf = nh.nbd.Buffer.from_bytearray(bytearray(data))
            h.aio_pwrite(buf, off)
            ref[off:off + len(data)] = data
            bufs.append(buf)
        while h.aio_in_flight() > 0:
            h.poll(-1)
        reads = []
        for b in blocks:
            buf = nh.nbd.Buffer(BLOCK)
            h.aio_pread(buf, b * BLOCK)
            reads.append((b, buf))
        while h.aio_in_flight() > 0:
            h.poll(-1)
        for b, buf in reads:
            if buf.to_bytearray() != ref[b * BLOCK:(b + 1) * BLOCK]:
                raise AssertionError('pipelined read of block %d differs' % b)

    def test_connections_leave_no_threads_or_fds(self):
        """Clients that come and go, politely or not, leave the daemon with
        the threads and descriptors it had before."""
        img = make_image(os.path.join(self.tmp, 'img.raw'), SIZE)
        e = ExportedImage(self, self.blkd, img)
        pid = e.daemon.pid
        before = proc_counts(pid)
        for i in range(20):
            h = e.connect()
            h.pwrite(b'x' * 4096, i * 4096)
            if i % 2:
                h.shutdown()
            del h                       # closes; without DISC if still up
            with RawNbd(e.sock) as r:
                r.greeting()
                if i % 3 == 0:
                    r.send(b'\xff' * 64)
        handles = [e.connect() for _ in range(8)]
        for h in handles:
            h.aio_pread(nh.nbd.Buffer(MiB), 0)
        del h, handles
        wait_counts(self, pid, before)
        e.daemon.stop()

    def busy_clients(self, e, n=4):
        """n clients each writing in a loop until their connection breaks;
        returns (threads, list of exceptions)."""
        errors = []
        started = threading.Barrier(n + 1)

        def run(i):
            h = e.connect()
            started.wait()
            buf = bytes([i]) * 65536
            try:
                for j in range(100000):
                    h.pwrite(buf, ((i * 97 + j) % 500) * 65536)
            except nh.nbd.Error as ex:
                errors.append(ex)
            finally:
                del h
        threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        started.wait(10)
        time.sleep(0.2)
        return threads, errors

    def test_export_del_hard_under_load(self):
        img = make_image(os.path.join(self.tmp, 'img.raw'), SIZE)
        e = ExportedImage(self, self.blkd, img)
        before = proc_counts(e.daemon.pid)
        threads, errors = self.busy_clients(e)
        e.qmp.command('block-export-del', id='e0', mode='hard')
        e.qmp.wait_event('BLOCK_EXPORT_DELETED')
        for t in threads:
            t.join(30)
        self.assertEqual(len(errors), 4)
        self.assertEqual(e.qmp.command('query-block-exports'), [])
        wait_counts(self, e.daemon.pid, before)
        # the node is free again: another export of it works
        e.qmp.command('block-export-add', type='nbd', id='e0',
                      node_name='disk', name='disk')
        h = e.connect()
        self.assertEqual(len(h.pread(4096, 0)), 4096)
        h.shutdown()
        e.daemon.stop()

    def test_server_stop_under_load(self):
        img = make_image(os.path.join(self.tmp, 'img.raw'), SIZE)
        e = ExportedImage(self, self.blkd, img)
        threads, errors = self.busy_clients(e)
        e.qmp.command('nbd-server-stop')
        self.assertEqual(e.qmp.wait_event('BLOCK_EXPORT_DELETED')['data'],
                         {'id': 'e0'})
        for t in threads:
            t.join(30)
        self.assertEqual(len(errors), 4)
        self.assertFalse(os.path.exists(e.sock))
        e.daemon.stop()

    def test_drained_section_while_clients_write(self):
        """A transaction drains I/O; NBD clients in flight finish and wait,
        and go on afterwards."""
        img = make_image(os.path.join(self.tmp, 'img.raw'), SIZE)
        e = ExportedImage(self, self.blkd, img)
        threads, errors = self.busy_clients(e, n=3)
        for i in range(20):
            e.qmp.command('transaction', actions=[
                {'type': 'block-dirty-bitmap-add',
                 'data': {'node': 'disk', 'name': 'b%d' % i}}])
        e.qmp.command('block-export-del', id='e0', mode='hard')
        for t in threads:
            t.join(30)
        self.assertEqual(len(errors), 3)
        e.daemon.stop()


if __name__ == '__main__':
    unittest.main()
