#!/usr/bin/python3
"""What dirty-bitmap tracking costs on the write path.

Writes through an NBD export of a null-co node (so storage costs nothing
and the daemon's own work shows) with 0, 1 and 8 recording bitmaps, for
blkd and qemu-storage-daemon in the same run, and reports each daemon's
write rate and blkd/qsd ratios. The client is `qemu-img bench -w` over
nbd+unix, 4 KiB writes at queue depth 16 (small writes make per-request
costs like marking visible), repeated and the best run taken.

    make bench                   # all benchmarks
    bench/bitmaps.py [--count N] [--runs N] [build/blkd]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'qemu-iotests'))

import iotests  # noqa: E402

SIZE = 1 << 30


def bench_writes(sock, count, size, depth):
    """Seconds qemu-img bench takes for count writes of size bytes."""
    uri = 'nbd+unix:///disk?socket=' + sock
    start = time.monotonic()
    subprocess.run(['qemu-img', 'bench', '-w', '-f', 'raw', '-t', 'none',
                    '-n', '-c', str(count), '-s', str(size), '-d', str(depth),
                    '-S', str(size * 7), uri],
                   check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def run_daemon(binary, bitmaps, count, runs):
    daemon = iotests.Daemon(name='bench')
    sock = daemon.path('nbd.sock')
    daemon.start(binary,
                 '--blockdev', 'driver=null-co,node-name=disk,size=%d' % SIZE,
                 '--nbd-server', 'addr.type=unix,addr.path=' + sock,
                 '--export', 'nbd,id=e0,node-name=disk,name=disk,writable=on')
    qmp = daemon.qmp(negotiate=True)
    for i in range(bitmaps):
        qmp.command('block-dirty-bitmap-add', node='disk', name='b%d' % i,
                    granularity=65536 >> (i % 4))
    best = min(bench_writes(sock, count, 4096, 16) for _ in range(runs))
    daemon.cleanup()
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('blkd', nargs='?', default=iotests.BLKD)
    ap.add_argument('--qsd', default=iotests.QSD)
    ap.add_argument('--count', type=int, default=100000)
    ap.add_argument('--runs', type=int, default=3)
    opts = ap.parse_args()
    if not shutil.which('qemu-img'):
        sys.exit('bench: qemu-img is missing (scripts/install-deps)')
    daemons = [('blkd', os.path.abspath(opts.blkd)), ('qsd', opts.qsd)]
    print('Dirty-bitmap marking on the write path: %d x 4 KiB writes, depth 16,'
          ' NBD export of null-co, best of %d' % (opts.count, opts.runs))
    print('%-9s %14s %14s %10s' % ('bitmaps', 'blkd writes/s', 'qsd writes/s',
                                   'blkd/qsd'))
    for n in (0, 1, 8):
        rates = {}
        for name, binary in daemons:
            rates[name] = opts.count / run_daemon(binary, n, opts.count, opts.runs)
        print('%-9d %14.0f %14.0f %9.2fx' % (n, rates['blkd'], rates['qsd'],
                                             rates['blkd'] / rates['qsd']))
    print('(the cost of n bitmaps is the drop from the 0-bitmap row of the '
          'same daemon)')
    print('command: bench/bitmaps.py --count %d --runs %d %s'
          % (opts.count, opts.runs, opts.blkd))


if __name__ == '__main__':
    main()
