#!/usr/bin/python3
"""Reading a dirty bitmap over NBD: qemu:dirty-bitmap:NAME of a 1 TiB disk.

A sparse 1 TiB qcow2 image (qemu-img create) is opened read-only in each
daemon with a disabled 64 KiB-granularity bitmap `b` holding 1% of its
granules, picked at random (fixed seed: 167772 granules), and exported
with it. Filling `b` by writes would allocate the image, so the writes
(one byte a granule, over NBD) go to a 1 TiB null-co node's bitmap, which
block-dirty-bitmap-merge then copies into `b`; both daemons take the same
steps and the fill is not timed. Timed, for blkd and qemu-storage-daemon
in the same run, alternating: `nbdinfo --map=qemu:dirty-bitmap:b URI`
(output to a pipe, read and dropped), and a libnbd client walking the
same map with block status requests of 4 GiB - 512 bytes (no printing, so
the server's share shows). Each row gives the median wall time of --runs
and the daemon's own CPU time (user + system from /proc, counted in
10 ms ticks, so averaged over the runs), which a loaded machine disturbs
less. The outputs of the two daemons must be equal.

    make bench                   # all benchmarks
    bench/nbd_bitmap.py [--runs N] [--percent P] [build/blkd]
"""
import argparse
import hashlib
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.realpath(__file__))
# bench/nbd.py would shadow python3-libnbd's module of the same name.
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != HERE]
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'qemu-iotests'))

import iotests  # noqa: E402

try:
    import nbd
except ImportError:
    nbd = None

SIZE = 1 << 40
GRANULARITY = 65536
STEP = (1 << 32) - 512


def fill(uri, offsets):
    """One byte written at each offset, 64 requests in flight."""
    h = nbd.NBD()
    h.connect_uri(uri)
    buf = nbd.Buffer.from_bytearray(bytearray(b'\x5a'))

    def retire(err):
        return 1

    for off in offsets:
        h.aio_pwrite(buf, off, completion=retire)
        while h.aio_in_flight() >= 64:
            h.poll(-1)
    while h.aio_in_flight():
        h.poll(-1)
    h.shutdown()


def cpu_seconds(pid):
    """User + system time of a process so far."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def children_cpu():
    """User + system time of the waited-for children so far."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def nbdinfo_map(uri):
    """Seconds, nbdinfo's own CPU seconds and a digest of its output."""
    cpu = children_cpu()
    start = time.monotonic()
    out = subprocess.run(['nbdinfo', '--map=qemu:dirty-bitmap:b', uri],
                         check=True, stdout=subprocess.PIPE).stdout
    return (time.monotonic() - start, children_cpu() - cpu,
            hashlib.sha256(out).hexdigest())


def libnbd_walk(uri):
    """Seconds, this client's CPU seconds and the dirty bytes of a walk."""
    h = nbd.NBD()
    h.add_meta_context('qemu:dirty-bitmap:b')
    h.connect_uri(uri)
    dirty = [0]
    progress = [0]

    def extent(metacontext, offset, entries, err):
        for length, flags in zip(entries[0::2], entries[1::2]):
            progress[0] += length
            dirty[0] += length if flags else 0
        return 0

    cpu = time.process_time()
    start = time.monotonic()
    off = 0
    while off < SIZE:
        progress[0] = 0
        h.block_status(min(STEP, SIZE - off), off, extent)
        off += progress[0]
    elapsed = time.monotonic() - start
    cpu = time.process_time() - cpu
    h.shutdown()
    return elapsed, cpu, dirty[0]


class Daemon:
    """A daemon with the bitmap filled and exported."""

    def __init__(self, binary, image, offsets):
        self.daemon = iotests.Daemon(name='bench-nbdbm')
        sock = self.daemon.path('nbd.sock')
        self.daemon.start(
            binary, '--blockdev', 'driver=null-co,node-name=fill,size=%d' % SIZE,
            '--blockdev', 'driver=qcow2,node-name=disk,read-only=on,'
            'file.driver=file,file.filename=%s,file.read-only=on' % image,
            '--nbd-server', 'addr.type=unix,addr.path=' + sock,
            '--export', 'type=nbd,id=w,node-name=fill,name=w,writable=on')
        qmp = self.daemon.qmp(negotiate=True)
        qmp.command('block-dirty-bitmap-add', node='fill', name='fill',
                    granularity=GRANULARITY)
        start = time.monotonic()
        fill('nbd+unix:///w?socket=' + sock, offsets)
        self.fill_time = time.monotonic() - start
        qmp.command('block-dirty-bitmap-add', node='disk', name='b',
                    granularity=GRANULARITY, disabled=True)
        qmp.command('block-dirty-bitmap-merge', node='disk', target='b',
                    bitmaps=[{'node': 'fill', 'name': 'fill'}])
        qmp.command('block-export-add', type='nbd', id='e0', name='disk',
                    **{'node-name': 'disk', 'bitmaps': ['b']})
        for n in qmp.command('query-named-block-nodes', flat=True):
            if n['node-name'] == 'disk':
                self.count = n['dirty-bitmaps'][0]['count'] // GRANULARITY
        self.uri = 'nbd+unix:///disk?socket=' + sock

    def close(self):
        self.daemon.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('blkd', nargs='?', default=iotests.BLKD)
    ap.add_argument('--qsd', default=iotests.QSD)
    ap.add_argument('--runs', type=int, default=5)
    ap.add_argument('--percent', type=float, default=1.0)
    opts = ap.parse_args()
    for tool in ('qemu-img', 'nbdinfo'):
        if not shutil.which(tool):
            sys.exit('bench: %s is missing (scripts/install-deps)' % tool)
    if nbd is None:
        sys.exit('bench: python3-libnbd is missing (run with /usr/bin/python3)')

    granules = SIZE // GRANULARITY
    rng = random.Random(1)
    offsets = [g * GRANULARITY for g in
               sorted(rng.sample(range(granules),
                                 int(granules * opts.percent / 100)))]
    tmp = tempfile.mkdtemp(prefix='bench-nbdbm-')
    image = os.path.join(tmp, 'disk.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, '1T'],
                   check=True)
    names = ('blkd', 'qsd')
    daemons = {}
    try:
        for name, binary in zip(names, (os.path.abspath(opts.blkd), opts.qsd)):
            daemons[name] = Daemon(binary, image, offsets)
        print('qemu:dirty-bitmap:b of a 1 TiB qcow2 disk, %d KiB granules, '
              '%d of %d dirty (%g%%); fill by NBD writes (untimed): %s'
              % (GRANULARITY // 1024, daemons['blkd'].count, granules,
                 opts.percent, ', '.join('%s %.1f s' % (n, daemons[n].fill_time)
                                         for n in names)))
        clients = (('nbdinfo', nbdinfo_map), ('libnbd', libnbd_walk))
        wall = {(n, c): [] for n in names for c, _ in clients}
        cpu = {(n, c): [] for n in names for c, _ in clients}
        client_cpu = {(n, c): [] for n in names for c, _ in clients}
        results = {(n, c): set() for n in names for c, _ in clients}
        for _ in range(opts.runs):
            for client, fn in clients:
                for name in names:
                    pid = daemons[name].daemon.pid
                    before = cpu_seconds(pid)
                    t, own, result = fn(daemons[name].uri)
                    cpu[(name, client)].append(cpu_seconds(pid) - before)
                    client_cpu[(name, client)].append(own)
                    wall[(name, client)].append(t)
                    results[(name, client)].add(result)
        print('%-29s %8s %8s %8s %8s %8s %8s %8s %8s %10s' % (
            'client', 'blkd med', 'qsd med', 'qsd/blkd', 'blkd min', 'qsd min',
            'blkd cpu', 'qsd cpu', 'qsd/blkd', 'client cpu'))
        for client, label in (('nbdinfo', 'nbdinfo --map (output piped)'),
                              ('libnbd', 'libnbd walk, 4 GiB asks')):
            bw, qw = wall[('blkd', client)], wall[('qsd', client)]
            bc = statistics.mean(cpu[('blkd', client)])
            qc = statistics.mean(cpu[('qsd', client)])
            own = statistics.median(client_cpu[('blkd', client)] +
                                    client_cpu[('qsd', client)])
            print('%-29s %7.3fs %7.3fs %7.2fx %7.3fs %7.3fs %7.3fs %7.3fs %7.2fx %9.3fs'
                  % (label, statistics.median(bw), statistics.median(qw),
                     statistics.median(qw) / statistics.median(bw), min(bw),
                     min(qw), bc, qc, qc / bc if bc else float('inf'), own))
            if results[('blkd', client)] != results[('qsd', client)] or \
                    len(results[('blkd', client)]) != 1:
                print('  MISMATCH: the daemons answered differently: %r'
                      % results)
        print('(%d runs: wall time medians and minimums, the daemon\'s cpu '
              'time means, the client\'s own cpu time median over both '
              'daemons; qsd/blkd above 1: blkd is faster)' % opts.runs)
        print('command: bench/nbd_bitmap.py --runs %d --percent %g %s'
              % (opts.runs, opts.percent, opts.blkd))
    finally:
        for d in daemons.values():
            d.close()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
