#!/usr/bin/python3
"""Dirty bitmaps under real NBD writes, blkd against qemu-storage-daemon.

A libnbd client writes, zeroes and trims random extents through an export;
every bitmap's count must equal a model of the extents rounded out to its
granules (disabled bitmaps stay empty), and the reference must count the
same. Transactions run while a writer hammers the export: since no write
may land between two actions, the bitmaps a transaction swaps between
cover every write exactly.
"""
import random
import threading
import time
import unittest

import iotests

try:
    import nbd
except ImportError:
    nbd = None

SIZE = 64 << 20
GRANS = [512, 4096, 65536, 1 << 20]


class Model:
    """Which 512-byte sectors were written."""

    def __init__(self):
        self.sectors = set()

    def add(self, offset, length):
        self.sectors.update(range(offset // 512, (offset + length - 1) // 512 + 1))

    def count(self, granularity):
        per = granularity // 512
        return len({s // per for s in self.sectors}) * granularity


@unittest.skipIf(nbd is None, 'python3-libnbd is missing')
class BitmapNbdTest(iotests.DaemonTestCase):

    def start(self, binary):
        d = iotests.Daemon(self, name='bm')
        sock = d.path('nbd.sock')
        d.start(binary, '--blockdev',
                'driver=null-co,node-name=disk,size=%d,read-zeroes=on' % SIZE,
                '--nbd-server', 'addr.type=unix,addr.path=' + sock,
                '--export', 'nbd,id=e0,node-name=disk,name=disk,writable=on')
        qmp = d.qmp(negotiate=True)
        client = nbd.NBD()
        client.set_export_name('disk')
        client.connect_unix(sock)
        self.addCleanup(client.shutdown)
        return qmp, client

    def counts(self, qmp):
        for info in qmp.command('query-named-block-nodes', flat=True):
            if info['node-name'] == 'disk':
                return {b['name']: b['count'] for b in info.get('dirty-bitmaps', [])}
        return {}

    def random_io(self, client, model, n, seed):
        rng = random.Random(seed)
        for i in range(n):
            off = rng.randrange(0, SIZE - 1)
            length = min(rng.randrange(1, 300000), SIZE - off)
            kind = i % 4
            if kind < 2:
                client.pwrite(b'\x5a' * length, off)
                model.add(off, length)
            elif kind == 2:
                client.zero(length, off)
                model.add(off, length)
            else:
                # null-co has no discard: QEMU marks nothing for it.
                client.trim(length, off)

    def run_counts(self, binary):
        qmp, client = self.start(binary)
        for g in GRANS:
            qmp.command('block-dirty-bitmap-add', node='disk', name='g%d' % g,
                        granularity=g)
        qmp.command('block-dirty-bitmap-add', node='disk', name='off',
                    disabled=True)
        model = Model()
        self.random_io(client, model, 2000, seed=42)
        return self.counts(qmp), model

    def test_counts_match_model_and_qsd(self):
        counts, model = self.run_counts(self.blkd)
        for g in GRANS:
            self.assertEqual(counts['g%d' % g], model.count(g), 'granularity %d' % g)
        self.assertEqual(counts['off'], 0)
        if self.have_qsd():
            self.assertEqual(counts, self.run_counts(self.qsd)[0])

    def run_transactions(self, binary):
        qmp, client = self.start(binary)
        qmp.command('block-dirty-bitmap-add', node='disk', name='t0', granularity=512)
        model = Model()
        stop = threading.Event()
        lock = threading.Lock()
        writes = [0]

        def writer():
            rng = random.Random(7)
            while not stop.is_set():
                off = rng.randrange(0, SIZE - 4096)
                length = rng.randrange(1, 4096)
                client.pwrite(b'\x33' * length, off)
                with lock:
                    model.add(off, length)
                    writes[0] += 1

        t = threading.Thread(target=writer)
        t.start()
        try:
            for i in range(1, 30):
                time.sleep(0.01)    # let writes come between transactions
                qmp.command('transaction', actions=[
                    {'type': 'block-dirty-bitmap-disable',
                     'data': {'node': 'disk', 'name': 't%d' % (i - 1)}},
                    {'type': 'block-dirty-bitmap-add',
                     'data': {'node': 'disk', 'name': 't%d' % i, 'granularity': 512}}])
        finally:
            stop.set()
            t.join()
        # The writer ran throughout: hundreds of writes raced the switches.
        self.assertGreater(writes[0], 200)
        qmp.command('block-dirty-bitmap-add', node='disk', name='all',
                    granularity=512, disabled=True)
        qmp.command('block-dirty-bitmap-merge', node='disk', target='all',
                    bitmaps=['t%d' % i for i in range(30)])
        return self.counts(qmp)['all'], model.count(512)

    def test_no_write_lands_between_transaction_actions(self):
        got, want = self.run_transactions(self.blkd)
        # Every write is in the bitmap before the switch or the one after.
        self.assertEqual(got, want)
        if self.have_qsd():
            got, want = self.run_transactions(self.qsd)
            self.assertEqual(got, want)

    def test_write_of_one_byte_marks_one_granule(self):
        qmp, client = self.start(self.blkd)
        qmp.command('block-dirty-bitmap-add', node='disk', name='b', granularity=65536)
        client.pwrite(b'x', 65536 * 3 - 1)
        client.pwrite(b'yy', 65536 * 5 - 1)
        self.assertEqual(self.counts(qmp)['b'], 3 * 65536)
        sha = qmp.command('x-debug-block-dirty-bitmap-sha256', node='disk', name='b')
        if self.have_qsd():
            qmp2, client2 = self.start(self.qsd)
            qmp2.command('block-dirty-bitmap-add', node='disk', name='b',
                         granularity=65536)
            client2.pwrite(b'x', 65536 * 3 - 1)
            client2.pwrite(b'yy', 65536 * 5 - 1)
            self.assertEqual(sha, qmp2.command('x-debug-block-dirty-bitmap-sha256',
                                               node='disk', name='b'))


if __name__ == '__main__':
    unittest.main()
