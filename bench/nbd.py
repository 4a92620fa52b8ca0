#!/usr/bin/python3
"""Throughput of the NBD export: blkd against qemu-storage-daemon.

Both daemons export the same 1 GiB raw image (file + raw nodes, default
cache: the page cache, so the daemons' own costs show rather than the
disk's) over a UNIX socket, one daemon at a time, alternating, and the
best of --runs runs is kept. Cases:

  seq-read    nbdcopy export -> null:         1 GiB, nbdcopy's defaults
                                              (4 connections, 64 requests)
  seq-write   nbdcopy image file -> export    1 GiB of non-zero data
  read-1M     qemu-img bench, 1 MiB reads, depth 8, sequential
  write-1M    qemu-img bench -w, 1 MiB writes, depth 8, sequential
  read-4k     qemu-img bench, 4 KiB reads, depth 16, scattered
  write-4k    qemu-img bench -w, 4 KiB writes, depth 16, scattered
  read-4k-qd1 qemu-img bench, 4 KiB reads, depth 1 (latency)

"Scattered" is qemu-img bench's step (-S) of 1 MiB + 4 KiB: successive
requests land in different MiB of the image, wrapping around.

    bench/nbd.py [--runs N] [--quick] [build/blkd]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'qemu-iotests'))

import iotests  # noqa: E402

GiB = 1 << 30
MiB = 1 << 20


def cases(quick):
    n4k = 50000 if quick else 200000
    n1m = 1024 if quick else 4096
    uri = '{uri}'
    bench = ['qemu-img', 'bench', '-f', 'raw', '-t', 'none', '-n']
    return [
        ('seq-read', GiB, ['nbdcopy', uri, 'null:']),
        ('seq-write', GiB, ['nbdcopy', '{src}', uri]),
        ('read-1M', n1m * MiB, bench + ['-c', str(n1m), '-s', '1M', '-d', '8',
                                        uri]),
        ('write-1M', n1m * MiB, bench + ['-w', '-c', str(n1m), '-s', '1M',
                                         '-d', '8', uri]),
        ('read-4k', n4k * 4096, bench + ['-c', str(n4k), '-s', '4k', '-d',
                                         '16', '-S', str(MiB + 4096), uri]),
        ('write-4k', n4k * 4096, bench + ['-w', '-c', str(n4k), '-s', '4k',
                                          '-d', '16', '-S', str(MiB + 4096),
                                          uri]),
        ('read-4k-qd1', n4k // 4 * 4096,
         bench + ['-c', str(n4k // 4), '-s', '4k', '-d', '1', '-S',
                  str(MiB + 4096), uri]),
    ]


class Exported:
    def __init__(self, binary, image):
        self.daemon = iotests.Daemon(name='bench-nbd')
        self.sock = self.daemon.path('nbd.sock')
        self.daemon.start(
            binary, '--blockdev',
            'driver=file,node-name=file0,filename=%s' % image,
            '--blockdev', 'driver=raw,node-name=disk,file=file0',
            '--nbd-server', 'addr.type=unix,addr.path=' + self.sock,
            '--export', 'nbd,id=e0,node-name=disk,name=disk,writable=on')
        self.daemon.wait_socket(self.sock)
        self.uri = 'nbd+unix:///disk?socket=' + self.sock

    def close(self):
        self.daemon.cleanup()


def timed(cmd):
    start = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - start


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('blkd', nargs='?', default=iotests.BLKD)
    ap.add_argument('--qsd', default=iotests.QSD)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--quick', action='store_true',
                    help='fewer 4k/1M requests (the 1 GiB copies stay)')
    ap.add_argument('--only', action='append', help='run only this case')
    opts = ap.parse_args()
    for tool in ('qemu-img', 'nbdcopy'):
        if not shutil.which(tool):
            sys.exit('bench: %s is missing (scripts/install-deps)' % tool)
    daemons = [('blkd', os.path.abspath(opts.blkd)), ('qsd', opts.qsd)]

    tmp = tempfile.mkdtemp(prefix='bench-nbd-')
    try:
        image = os.path.join(tmp, 'disk.raw')
        src = os.path.join(tmp, 'src.raw')
        with open(src, 'wb') as f:
            block = os.urandom(MiB)
            for _ in range(GiB // MiB):
                f.write(block)
        shutil.copyfile(src, image)

        print('NBD export of a 1 GiB raw image (page cache), best of %d, '
              'daemons alternating' % opts.runs)
        print('%-12s %12s %12s %9s' % ('case', 'blkd MB/s', 'qsd MB/s',
                                       'blkd/qsd'))
        commands = []
        for name, nbytes, cmd in cases(opts.quick):
            if opts.only and name not in opts.only:
                continue
            best = {}
            for _ in range(opts.runs):
                for dname, binary in daemons:
                    e = Exported(binary, image)
                    try:
                        argv = [a.format(uri=e.uri, src=src) for a in cmd]
                        t = timed(argv)
                    finally:
                        e.close()
                    best[dname] = min(best.get(dname, t), t)
            rate = {d: nbytes / best[d] / 1e6 for d in best}
            print('%-12s %12.1f %12.1f %8.2fx' % (name, rate['blkd'],
                                                  rate['qsd'],
                                                  rate['blkd'] / rate['qsd']))
            sys.stdout.flush()
            commands.append((name, ' '.join(cmd).format(
                uri="'nbd+unix:///disk?socket=SOCK'", src='SRC.raw')))
        print('\ncommands (SOCK: the daemon\'s NBD socket, SRC.raw: 1 GiB '
              'of random data):')
        for name, cmd in commands:
            print('  %-12s %s' % (name, cmd))
        print('daemons: --blockdev driver=file,node-name=file0,filename=IMG '
              '--blockdev driver=raw,node-name=disk,file=file0 '
              '--nbd-server addr.type=unix,addr.path=SOCK '
              '--export nbd,id=e0,node-name=disk,name=disk,writable=on')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
