#!/usr/bin/python3
"""What the backup job costs: blkd against qemu-storage-daemon and cp.

One raw source image of random data (--size, default 2 GiB, fully
allocated, kept in the page cache: nothing is dropped, and every case
starts with one warm-up round that is not counted so that caches are alike
for everybody). Each run starts a fresh daemon, adds the nodes with
blockdev-add (file + raw, or file + qcow2 for a qcow2 target) and times a
blockdev-backup; the best of --runs runs is kept, the tools alternating.

  full->raw    sync=full into a raw target (qemu-img create -f raw), timed
  full->qcow2  from blockdev-backup to BLOCK_JOB_COMPLETED, then the flush:
               blockdev-del of the target nodes and fsync() of the target
               file. Against `cp --sparse=never SRC DST` + fsync(DST).
  incr-1%      a bitmap (64 KiB granularity) on the source, then 1% or 10%
  incr-10%     of the image written in distinct random 64 KiB chunks
               through an NBD export of the source (qemu-io, untimed),
               then sync=incremental into a raw target, timed like the
               full backups (job + flush; the split is printed too).
  nbd-write    qemu-img bench -w, 64 KiB writes at depth 8 through the NBD
  nbd-write+bk export of the source, with nothing else running and while
               a full backup throttled to --speed runs (every write then
               first copies the old data to the target).

Rates are MB/s (10^6) of the bytes copied or written; ratios are of rates,
so above 1 means blkd is faster.

    bench/backup.py [--size BYTES] [--runs N] [build/blkd]
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'qemu-iotests'))

import iotests  # noqa: E402

MiB = 1 << 20
CHUNK = 64 << 10
SLOW_RATE = 50e6        # bytes/s below which a step counts as hung


def parse_size(text):
    mult = {'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30}
    t = text.strip().lower().rstrip('ib').rstrip('b')
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


def run(cmd, timeout):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=timeout)


def fsync_path(path):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Session:
    """A fresh daemon with the source (and optionally target) nodes."""

    def __init__(self, binary, src, size, export=False):
        self.size = size
        self.timeout = 30 + size / SLOW_RATE
        self.daemon = iotests.Daemon(name='bench-backup')
        try:
            self.daemon.start(binary)
            self.qmp = self.daemon.qmp(negotiate=True, timeout=self.timeout)
            self.add('src', 'raw', src)
            self.uri = None
            if export:
                sock = self.daemon.path('nbd.sock')
                self.qmp.command('nbd-server-start',
                                 addr={'type': 'unix',
                                       'data': {'path': sock}})
                self.qmp.command('block-export-add', type='nbd', id='e0',
                                 node_name='src', name='disk', writable=True)
                self.uri = 'nbd+unix:///disk?socket=' + sock
        except BaseException:
            self.daemon.cleanup()
            raise

    def add(self, node, fmt, filename):
        self.qmp.command('blockdev-add', driver='file',
                         node_name=node + '-file', filename=filename)
        self.qmp.command('blockdev-add', driver=fmt, node_name=node,
                         file=node + '-file')

    def start_backup(self, sync, **kwargs):
        self.qmp.command('blockdev-backup', job_id='bk', device='src',
                         target='tgt', sync=sync, **kwargs)

    def wait_completed(self):
        ev = self.qmp.wait_event('BLOCK_JOB_COMPLETED', timeout=self.timeout)
        data = ev['data']
        if 'error' in data or data['offset'] != data['len']:
            raise RuntimeError('backup failed: %r' % (data,))

    def backup(self, sync, **kwargs):
        """Seconds from blockdev-backup to BLOCK_JOB_COMPLETED."""
        start = time.monotonic()
        self.start_backup(sync, **kwargs)
        self.wait_completed()
        return time.monotonic() - start

    def flush_target(self, filename):
        """Seconds for blockdev-del of the target nodes and fsync(target)."""
        start = time.monotonic()
        for node in ('tgt', 'tgt-file'):
            deadline = time.monotonic() + 10
            while True:     # the finished job may let go of it a bit later
                reply = self.qmp.cmd('blockdev-del', node_name=node)
                if 'error' not in reply:
                    break
                if time.monotonic() > deadline:
                    raise iotests.QMPCommandError(reply)
                time.sleep(0.001)
        fsync_path(filename)
        return time.monotonic() - start

    def dirty_count(self):
        for info in self.qmp.command('query-named-block-nodes', flat=True):
            if info['node-name'] == 'src':
                return sum(b['count'] for b in info.get('dirty-bitmaps', []))
        return None

    def close(self):
        self.daemon.cleanup()


def create_target(path, fmt, size):
    if os.path.exists(path):
        os.unlink(path)
    cmd = ['qemu-img', 'create', '-q', '-f', fmt, path, str(size)]
    if fmt == 'qcow2':
        cmd[5:5] = ['-o', 'cluster_size=65536']
    run(cmd, 30)


def same_image(src, src_fmt, tgt, tgt_fmt, size):
    res = subprocess.run(['qemu-img', 'compare', '-q', '-f', src_fmt, '-F',
                          tgt_fmt, src, tgt], timeout=30 + size / SLOW_RATE)
    if res.returncode != 0:
        raise RuntimeError('target %s differs from the source' % tgt)


def same_chunks(a, b, offsets):
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        for off in offsets:
            fa.seek(off)
            fb.seek(off)
            if fa.read(CHUNK) != fb.read(CHUNK):
                raise RuntimeError('target differs at %d' % off)


# -- the cases ---------------------------------------------------------------

def full_backup(binary, src, tgt, fmt, size, verify):
    """(seconds of job + flush, job, flush) of a full backup of src."""
    create_target(tgt, fmt, size)
    s = Session(binary, src, size)
    try:
        s.add('tgt', fmt, tgt)
        job = s.backup('full')
        flush = s.flush_target(tgt)
    finally:
        s.close()
    if verify:
        same_image(src, 'raw', tgt, fmt, size)
    os.unlink(tgt)
    return job + flush, job, flush


def cp_copy(src, tgt, size, verify):
    if os.path.exists(tgt):
        os.unlink(tgt)
    start = time.monotonic()
    run(['cp', '--sparse=never', src, tgt], 30 + size / SLOW_RATE)
    copied = time.monotonic()
    fsync_path(tgt)
    end = time.monotonic()
    if verify:
        same_image(src, 'raw', tgt, 'raw', size)
    os.unlink(tgt)
    return end - start, copied - start, end - copied


def dirty_through_nbd(uri, offsets, seed):
    cmd = ['qemu-io', '-f', 'raw']
    for i, off in enumerate(offsets):
        cmd += ['-c', 'write -q -P 0x%02x %d %d' % ((seed + i) % 255 + 1,
                                                   off, CHUNK)]
    cmd.append(uri)
    run(cmd, 30 + len(offsets) * CHUNK / 10e6)


def incremental(binary, src, tgt, size, offsets, seed, verify):
    create_target(tgt, 'raw', size)
    s = Session(binary, src, size, export=True)
    try:
        s.qmp.command('block-dirty-bitmap-add', node='src', name='b0',
                      granularity=CHUNK)
        dirty_through_nbd(s.uri, offsets, seed)
        count = s.dirty_count()
        if count != len(offsets) * CHUNK:
            raise RuntimeError('bitmap counts %r bytes, %d written'
                               % (count, len(offsets) * CHUNK))
        s.add('tgt', 'raw', tgt)
        job = s.backup('incremental', bitmap='b0')
        flush = s.flush_target(tgt)
    finally:
        s.close()
    if verify:
        same_chunks(src, tgt, offsets)
    os.unlink(tgt)
    return job + flush, job, flush


def bench_cmd(uri, count, offset):
    return ['qemu-img', 'bench', '-w', '-f', 'raw', '-t', 'none', '-n',
            '-c', str(count), '-s', str(CHUNK), '-d', '8', '-o', str(offset),
            uri]


def nbd_writes(binary, src, tgt, size, count, speed):
    """Seconds of the qemu-img bench writes; speed None: no backup.

    Returns (seconds, backup still running when the writes ended)."""
    create_target(tgt, 'raw', size)
    s = Session(binary, src, size, export=True)
    try:
        s.add('tgt', 'raw', tgt)
        if speed is not None:
            s.start_backup('full', speed=speed)
        start = time.monotonic()
        run(bench_cmd(s.uri, count, size // 2), 30 + count * CHUNK / 10e6)
        t = time.monotonic() - start
        running = True
        if speed is not None:
            running = not s.qmp.get_events('BLOCK_JOB_COMPLETED', clear=False)
            if running:
                s.qmp.command('block-job-cancel', device='bk')
                s.qmp.wait_event('BLOCK_JOB_CANCELLED', timeout=s.timeout)
    finally:
        s.close()
    os.unlink(tgt)
    return t, running


# -- main ----------------------------------------------------------------------

def fmt_rate(nbytes, t):
    return '%9.1f' % (nbytes / t / 1e6) if t else '%9s' % '-'


def fmt_time(t):
    return '%8.3f' % t if t else '%8s' % '-'


def fmt_ratio(a, b):
    return '%8.2fx' % (b / a) if a and b else '%9s' % '-'


def make_source(path, size):
    with open(path, 'wb') as f:
        left = size
        while left:
            n = min(left, 4 * MiB)
            f.write(os.urandom(n))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def main():
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('blkd', nargs='?', default=iotests.BLKD)
    ap.add_argument('--qsd', default=iotests.QSD)
    ap.add_argument('--size', default='2G',
                    help='image size (default 2G; a multiple of 64 KiB)')
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--speed', default='100M',
                    help='throttle of the backup under the nbd-write+bk '
                         'case, per second (default 100M)')
    ap.add_argument('--no-verify', action='store_true',
                    help='skip checking the warm-up rounds\' targets')
    ap.add_argument('--only', action='append',
                    choices=['full', 'incr', 'nbd'],
                    help='run only these groups of cases')
    opts = ap.parse_args()
    size = parse_size(opts.size)
    speed = parse_size(opts.speed)
    if size % CHUNK or size < 64 * CHUNK:
        sys.exit('bench: --size must be a multiple of 64 KiB, at least 4 MiB')
    for tool in ('qemu-img', 'qemu-io', 'cp'):
        if not shutil.which(tool):
            sys.exit('bench: %s is missing (scripts/install-deps)' % tool)
    if not opts.qsd:
        sys.exit('bench: qemu-storage-daemon is missing')
    blkd = os.path.abspath(opts.blkd)
    daemons = [('blkd', blkd), ('qsd', opts.qsd)]
    groups = opts.only or ['full', 'incr', 'nbd']
    rounds = 1 + opts.runs          # the first one is the warm-up

    tmp = tempfile.mkdtemp(prefix='bench-backup-')
    began = time.monotonic()
    try:
        src = os.path.join(tmp, 'src.raw')
        tgt = os.path.join(tmp, 'tgt')
        make_source(src, size)

        print('Backup of a %d MiB raw image of random data (page cache), '
              'best of %d after 1 warm-up, tools alternating'
              % (size // MiB, opts.runs))
        print('%-13s %8s %8s %8s %9s %9s %9s %9s %9s'
              % ('case', 'blkd s', 'qsd s', 'cp s', 'blkd MB/s', 'qsd MB/s',
                 'cp MB/s', 'blkd/qsd', 'blkd/cp'))

        def row(name, nbytes, best, note=''):
            b, q, c = best.get('blkd'), best.get('qsd'), best.get('cp')
            print('%-13s %s %s %s %s %s %s %s %s%s'
                  % (name, fmt_time(b), fmt_time(q), fmt_time(c),
                     fmt_rate(nbytes, b), fmt_rate(nbytes, q),
                     fmt_rate(nbytes, c), fmt_ratio(b, q), fmt_ratio(b, c),
                     note))
            sys.stdout.flush()

        split = {}
        if 'full' in groups:
            for fmt in ('raw', 'qcow2'):
                best = {}
                tools = daemons + ([('cp', None)] if fmt == 'raw' else [])
                for r in range(rounds):
                    for name, binary in tools:
                        verify = r == 0 and not opts.no_verify
                        if binary is None:
                            res = cp_copy(src, tgt, size, verify)
                        else:
                            res = full_backup(binary, src, tgt, fmt, size,
                                              verify)
                        if r and res[0] < best.get(name, (1e9,))[0]:
                            best[name] = res
                split['full->' + fmt] = best
                row('full->' + fmt, size, {k: v[0] for k, v in best.items()})

        if 'incr' in groups:
            rng = random.Random(1)
            nchunks = size // CHUNK
            for pct in (1, 10):
                n = max(1, nchunks * pct // 100)
                best = {}
                for r in range(rounds):
                    for name, binary in daemons:
                        offsets = sorted(c * CHUNK for c in
                                         rng.sample(range(nchunks), n))
                        res = incremental(binary, src, tgt, size, offsets,
                                          r, r == 0 and not opts.no_verify)
                        if r and res[0] < best.get(name, (1e9,))[0]:
                            best[name] = res
                split['incr-%d%%' % pct] = best
                row('incr-%d%%' % pct, n * CHUNK,
                    {k: v[0] for k, v in best.items()})

        kept = {}
        if 'nbd' in groups:
            count = max(64, size // 4 // CHUNK)
            for label, spd in (('nbd-write', None), ('nbd-write+bk', speed)):
                best = {}
                overrun = False
                for r in range(rounds):
                    for name, binary in daemons:
                        t, running = nbd_writes(binary, src, tgt, size,
                                                count, spd)
                        overrun |= not running
                        if r:
                            best[name] = min(best.get(name, t), t)
                row(label, count * CHUNK, best,
                    '  (backup ended before the writes!)' if overrun else '')
                for k, v in best.items():
                    kept[k] = v / kept[k] if k in kept else v
            print('NBD writes during the backup run at %s of the rate '
                  'without it' % ', '.join('%.0f%% (%s)' % (100 / v, k)
                                          for k, v in kept.items()))

        if split:
            print('\nbackups, best run split into job (blockdev-backup '
                  'to BLOCK_JOB_COMPLETED; for cp: cp) + flush '
                  '(blockdev-del + fsync; for cp: fsync), seconds:')
            for case, best in split.items():
                print('  %-12s %s' % (case, '  '.join(
                    '%s %.3f + %.3f' % (k, v[1], v[2])
                    for k, v in best.items())))
        print('\ntotal %.0f s' % (time.monotonic() - began))
        shown = os.path.relpath(blkd, iotests.REPO_ROOT)
        if shown.startswith('..'):
            shown = blkd
        print('command: bench/backup.py --size %s --runs %d --speed %s%s %s'
              % (opts.size, opts.runs, opts.speed,
                 ''.join(' --only ' + g for g in opts.only or []), shown))
        print('cp:       cp --sparse=never SRC DST + fsync(DST)')
        print('targets:  qemu-img create -f raw TGT %d; qemu-img create '
              '-f qcow2 -o cluster_size=65536 TGT %d' % (size, size))
        print('nbd:      ' + ' '.join(bench_cmd(
            "'nbd+unix:///disk?socket=SOCK'", max(64, size // 4 // CHUNK),
            size // 2)) + '  (with and without blockdev-backup sync=full '
            'speed=%d)' % speed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
