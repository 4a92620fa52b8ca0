"""The backup program's side of a pull-mode backup, with python3-libnbd.

dirty_extents() walks a qemu:dirty-bitmap:NAME meta context of an NBD
export; copy_extents() reads those extents from the export and writes
them into an image of the program's own, served by qemu-nbd for the
length of the copy (serve()). Used by test_pull_backup.py and by
scripts/demo.
"""
import shutil
import subprocess

import nbdhelpers
from nbdhelpers import nbd

QEMU_NBD = shutil.which('qemu-nbd')
COPY_CHUNK = 4 << 20


def dirty_extents(uri, bitmap):
    """The dirty (offset, length) extents of qemu:dirty-bitmap:BITMAP,
    adjacent ones merged."""
    context = 'qemu:dirty-bitmap:' + bitmap
    h = nbd.NBD()
    h.add_meta_context(context)
    h.connect_uri(uri)
    if not h.can_meta_context(context):
        raise RuntimeError('%s: no meta context %s' % (uri, context))
    size = h.get_size()
    out = []
    pos = [0]

    def extent(ctx, offset, entries, err):
        for length, flags in zip(entries[0::2], entries[1::2]):
            if flags & 1:
                if out and out[-1][0] + out[-1][1] == pos[0]:
                    out[-1] = (out[-1][0], out[-1][1] + length)
                else:
                    out.append((pos[0], length))
            pos[0] += length
        return 0

    while pos[0] < size:
        h.block_status(min(size - pos[0], (1 << 32) - 512), pos[0], extent)
    h.shutdown()
    return out


class serve:
    """qemu-nbd serving a qcow2 image on a unix socket, connected:
    `with serve(image, sock) as h:` gives a libnbd handle; leaving the
    block flushes, disconnects and waits for qemu-nbd to exit."""

    def __init__(self, image, sock, timeout=30):
        self.image, self.sock, self.timeout = image, sock, timeout

    def __enter__(self):
        self.proc = subprocess.Popen([QEMU_NBD, '-f', 'qcow2', '-k', self.sock,
                                      self.image], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        try:
            self.h = nbdhelpers.connect_when_up(self.sock, self.proc,
                                                self.timeout)
        except RuntimeError:
            self.proc.kill()
            raise RuntimeError('qemu-nbd did not serve %s: %s' % (
                self.image, self.proc.communicate()[1].decode()))
        return self.h

    def __exit__(self, exc_type, *exc):
        rc = None
        try:
            if exc_type is None:
                self.h.flush()
                self.h.shutdown()
                rc = self.proc.wait(self.timeout)
        finally:
            if rc is None:
                self.proc.kill()
                self.proc.wait()
            err = self.proc.stderr.read().decode()
            self.proc.stderr.close()
        if exc_type is None and rc != 0:
            raise RuntimeError('qemu-nbd exited with %d: %s' % (rc, err))


def copy_extents(uri, extents, image, sock):
    """Copies extents from the export at uri into image; the bytes copied."""
    src = nbd.NBD()
    src.connect_uri(uri)
    copied = 0
    with serve(image, sock) as dst:
        for off, length in extents:
            for at in range(off, off + length, COPY_CHUNK):
                n = min(COPY_CHUNK, off + length - at)
                dst.pwrite(src.pread(n, at), at)
                copied += n
    src.shutdown()
    return copied
