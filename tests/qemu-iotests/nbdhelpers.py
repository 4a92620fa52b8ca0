# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers for the NBD tests: daemons with an export, images, and a small
raw NBD client for what libnbd will not send (garbage, bad lengths).

Everything here works against blkd and qemu-storage-daemon alike, so that
the same steps can run on both and be compared.
"""

import os
import shutil
import socket
import struct
import tempfile
import time
import unittest

import iotests

try:
    import nbd                          # python3-libnbd
except ImportError:                     # pragma: no cover
    nbd = None

QEMU_IMG = shutil.which('qemu-img')
QEMU_IO = shutil.which('qemu-io')

# ---- protocol constants (see nbd/nbd-protocol.h) ----------------------------

NBD_INIT_MAGIC = 0x4e42444d41474943
NBD_OPTS_MAGIC = 0x49484156454F5054
NBD_REP_MAGIC = 0x0003e889045565a9
NBD_REQUEST_MAGIC = 0x25609513
NBD_SIMPLE_REPLY_MAGIC = 0x67446698
NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef

FLAG_C_FIXED_NEWSTYLE = 1
FLAG_C_NO_ZEROES = 2

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR_UNSUP = 0x80000001
REP_ERR_POLICY = 0x80000002
REP_ERR_INVALID = 0x80000003
REP_ERR_UNKNOWN = 0x80000006

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

CMD_FLAG_FUA = 1
CMD_FLAG_NO_HOLE = 2
CMD_FLAG_DF = 4
CMD_FLAG_REQ_ONE = 8
CMD_FLAG_FAST_ZERO = 16

REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = 0x8001

MAX_BUFFER = 32 * 1024 * 1024


def require_libnbd():
    if nbd is None:
        raise unittest.SkipTest('python3-libnbd not importable by %s'
                                % os.sys.executable)


def connect_when_up(sock, proc, timeout=30):
    """A libnbd handle connected to the server proc starts on the unix
    socket sock, once it accepts (the first connection that works is the
    one returned: qemu-nbd serves one client). RuntimeError if proc exits
    or does not accept within timeout."""
    deadline = time.monotonic() + timeout
    while True:
        h = nbd.NBD()
        try:
            h.connect_unix(sock)
            return h
        except nbd.Error:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError('%s did not serve on %s' % (proc.args[0], sock))
            time.sleep(0.05)


def require_qemu_tools():
    if not QEMU_IMG or not QEMU_IO:
        raise unittest.SkipTest('qemu-img/qemu-io not installed')


def tmpdir(testcase, prefix='iotests-nbd-'):
    """A temporary directory removed when the test ends."""
    d = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get('IOTESTS_KEEP_TMP'):
        testcase.addCleanup(shutil.rmtree, d, True)
    return d


def uri(sock, name=''):
    return 'nbd+unix:///%s?socket=%s' % (name, sock)


def qemu_img(*args, timeout=120):
    return iotests.run(QEMU_IMG, *args, timeout=timeout, check=True).stdout


def qemu_io(*args, timeout=120):
    """qemu-io; its exit status says nothing about failed commands, so the
    output is returned for the caller to check."""
    r = iotests.run(QEMU_IO, *args, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def nbdinfo_dirty(uri, bitmap):
    """The dirty (offset, length) extents of qemu:dirty-bitmap:BITMAP as
    nbdinfo --map prints them, adjacent ones merged."""
    out = iotests.run('nbdinfo', '--map=qemu:dirty-bitmap:' + bitmap, uri,
                      check=True).stdout
    extents = []
    for line in out.splitlines():
        off, length, flags = [int(x) for x in line.split()[:3]]
        if not flags & 1:
            continue
        if extents and sum(extents[-1]) == off:
            extents[-1] = (extents[-1][0], extents[-1][1] + length)
        else:
            extents.append((off, length))
    return extents


def make_image(path, size, fmt='raw', pattern_writes=()):
    """Creates an image and writes (pattern, offset, length) into it."""
    qemu_img('create', '-q', '-f', fmt, path, str(size))
    cmds = []
    for pattern, offset, length in pattern_writes:
        cmds += ['-c', 'write -P 0x%x %d %d' % (pattern, offset, length)]
    if cmds:
        rc, out = qemu_io('-f', fmt, *cmds, path)
        assert rc == 0 and 'error' not in out.lower(), out
    return path


def blockdev_args(image, fmt='raw', node='disk', read_only=False):
    ro = ',read-only=on' if read_only else ''
    return ['--blockdev', 'driver=file,node-name=%s-file,filename=%s%s'
            % (node, image, ro),
            '--blockdev', 'driver=%s,node-name=%s,file=%s-file%s'
            % (fmt, node, node, ro)]


class ExportedImage:
    """A daemon that serves one image over NBD on a UNIX socket.

        e = ExportedImage(self, binary, image, writable=True)
        e.uri  -> nbd+unix:///disk?socket=...
        e.qmp  -> negotiated QMP client
    """

    def __init__(self, testcase, binary, image, fmt='raw', writable=True,
                 name='disk', export_id='e0', description=None,
                 max_connections=None, read_only_node=False, extra=()):
        self.dir = tmpdir(testcase, 'iotests-nbdsock-')
        self.sock = os.path.join(self.dir, 'nbd.sock')
        self.name = name
        server = 'addr.type=unix,addr.path=%s' % self.sock
        if max_connections is not None:
            server += ',max-connections=%d' % max_connections
        export = 'type=nbd,id=%s,node-name=disk,name=%s,writable=%s' % (
            export_id, name, 'on' if writable else 'off')
        if description is not None:
            export += ',description=%s' % description.replace(',', ',,')
        args = blockdev_args(image, fmt, read_only=read_only_node)
        args += ['--nbd-server', server, '--export', export] + list(extra)
        self.daemon = testcase.start_daemon(binary, *args)
        self.daemon.wait_socket(self.sock)
        self.qmp = self.daemon.qmp()
        self.qmp.negotiate()
        self.uri = uri(self.sock, name)

    def connect(self, structured=True, contexts=('base:allocation',),
                strict=True):
        """A libnbd handle connected to the export."""
        require_libnbd()
        h = nbd.NBD()
        h.set_request_structured_replies(structured)
        for c in contexts:
            h.add_meta_context(c)
        if not strict:
            h.set_strict_mode(0)
        h.connect_uri(self.uri)
        return h


# ---- a raw client ----------------------------------------------------------

class ProtocolError(Exception):
    pass


class RawNbd:
    """Speaks the NBD protocol byte by byte, for malformed input and for
    checking exactly what the server sends."""

    def __init__(self, sock_path, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(sock_path)
        self._pushback = b''

    def close(self):
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        self.s.sendall(data)

    def recv_exact(self, n):
        buf, self._pushback = self._pushback[:n], self._pushback[n:]
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise EOFError('server closed after %d of %d bytes'
                               % (len(buf), n))
            buf += chunk
        return buf

    def is_closed(self, timeout=5):
        """True once the server has closed the connection."""
        self.s.settimeout(timeout)
        try:
            while True:
                data = self.s.recv(65536)
                if not data:
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True

    # handshake
    def greeting(self, client_flags=FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES):
        magic, opts_magic, flags = struct.unpack('>QQH', self.recv_exact(18))
        if magic != NBD_INIT_MAGIC or opts_magic != NBD_OPTS_MAGIC:
            raise ProtocolError('bad greeting')
        self.send(struct.pack('>I', client_flags))
        return flags

    def option(self, opt, data=b'', length=None, magic=NBD_OPTS_MAGIC):
        self.send(struct.pack('>QII', magic, opt,
                              len(data) if length is None else length) + data)

    def reply(self):
        """(option, reply type, data) of one option reply."""
        magic, opt, rtype, length = struct.unpack('>QIII',
                                                  self.recv_exact(20))
        if magic != NBD_REP_MAGIC:
            raise ProtocolError('bad option reply magic 0x%x' % magic)
        return opt, rtype, self.recv_exact(length)

    def replies(self):
        """Option replies up to and including the final one."""
        out = []
        while True:
            opt, rtype, data = self.reply()
            out.append((opt, rtype, data))
            if rtype not in (REP_SERVER, REP_INFO, REP_META_CONTEXT):
                return out

    def structured(self):
        self.option(OPT_STRUCTURED_REPLY)
        return self.reply()[1] == REP_ACK

    def go(self, name, requests=(), opt=OPT_GO):
        name = name.encode() if isinstance(name, str) else name
        data = struct.pack('>I', len(name)) + name
        data += struct.pack('>H', len(requests))
        data += b''.join(struct.pack('>H', r) for r in requests)
        self.option(opt, data)
        return self.replies()

    def meta(self, opt, name, queries):
        name = name.encode()
        data = struct.pack('>I', len(name)) + name
        data += struct.pack('>I', len(queries))
        for q in queries:
            q = q.encode() if isinstance(q, str) else q
            data += struct.pack('>I', len(q)) + q
        self.option(opt, data)
        return self.replies()

    # transmission
    def request(self, cmd, offset=0, length=0, handle=1, flags=0, data=b'',
                magic=NBD_REQUEST_MAGIC):
        self.send(struct.pack('>IHHQQI', magic, flags, cmd, handle, offset,
                              length) + data)

    def simple_reply(self, data_len=0):
        magic, error, handle = struct.unpack('>IIQ', self.recv_exact(16))
        if magic != NBD_SIMPLE_REPLY_MAGIC:
            raise ProtocolError('bad simple reply magic 0x%x' % magic)
        data = self.recv_exact(data_len) if error == 0 and data_len else b''
        return error, handle, data

    def chunk(self):
        """(flags, type, handle, payload) of one structured chunk."""
        magic, flags, rtype, handle, length = struct.unpack(
            '>IHHQI', self.recv_exact(20))
        if magic != NBD_STRUCTURED_REPLY_MAGIC:
            raise ProtocolError('bad chunk magic 0x%x' % magic)
        return flags, rtype, handle, self.recv_exact(length)

    def chunks(self):
        out = []
        while True:
            c = self.chunk()
            out.append(c)
            if c[0] & 1:
                return out

    def any_reply(self, data_len=0):
        """A simple reply as [('simple', error, handle, data)], or the
        chunks of a structured one: servers may answer requests without
        data either way."""
        magic = self.recv_exact(4)
        self._pushback = magic
        if struct.unpack('>I', magic)[0] == NBD_SIMPLE_REPLY_MAGIC:
            return [('simple',) + self.simple_reply(data_len)]
        return self.chunks()


def chunk_summary(chunks):
    """Chunks as comparable tuples: data by offset and length (not bytes),
    holes, block status, errors by NBD errno."""
    out = []
    for flags, rtype, handle, payload in chunks:
        if flags == 'simple':
            out.append(('simple', rtype))       # error
            continue
        if rtype == REPLY_TYPE_OFFSET_DATA:
            out.append(('data', struct.unpack('>Q', payload[:8])[0],
                        len(payload) - 8, flags))
        elif rtype == REPLY_TYPE_OFFSET_HOLE:
            out.append(('hole',) + struct.unpack('>QI', payload) + (flags,))
        elif rtype == REPLY_TYPE_BLOCK_STATUS:
            ext = struct.unpack('>I%dI' % ((len(payload) - 4) // 4), payload)
            out.append(('status', ext[0], list(ext[1:]), flags))
        elif rtype == REPLY_TYPE_ERROR:
            err, = struct.unpack('>I', payload[:4])
            out.append(('error', err, flags))
        else:
            out.append(('type', rtype, len(payload), flags))
    return out
