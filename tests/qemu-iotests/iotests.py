# SPDX-License-Identifier: GPL-2.0-or-later
"""Integration test harness for blkd (a drop-in qemu-storage-daemon).

Standard library only.  Tests start the real daemon and drive it over QMP.

Environment:
  BLKD   daemon under test (default: <repo>/build/blkd)
  QSD    reference qemu-storage-daemon (default: qemu-storage-daemon on PATH)
  IOTESTS_TIMEOUT      default per-read / per-wait timeout in seconds (10)
  IOTESTS_KEEP_TMP     if set, per-test temporary directories are not removed

The whole suite must also pass with BLKD pointing at qemu-storage-daemon.
"""

import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

__all__ = [
    'BLKD', 'QSD', 'REPO_ROOT', 'DEFAULT_TIMEOUT',
    'QMPError', 'QMPTimeout', 'QMPConnectionClosed', 'QMPProtocolError',
    'QMPCommandError', 'QMPClient', 'Daemon', 'DaemonTestCase',
    'skip_if_missing', 'requires_tool', 'run', 'run_daemon', 'shape',
    'shape_diff', 'binary_package', 'binary_is_blkd', 'free_tcp_port',
    'sanitizer_report', 'qmp_error', 'strip_prog_prefix', 'require_binary',
]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))

DEFAULT_TIMEOUT = float(os.environ.get('IOTESTS_TIMEOUT', '10'))
STARTUP_TIMEOUT = float(os.environ.get('IOTESTS_STARTUP_TIMEOUT', '15'))


def _default_blkd():
    return os.path.join(REPO_ROOT, 'build', 'blkd')


BLKD = os.environ.get('BLKD') or _default_blkd()
QSD = os.environ.get('QSD') or shutil.which('qemu-storage-daemon')

SANITIZER_PATTERNS = (
    'ERROR: AddressSanitizer',
    'ERROR: LeakSanitizer',
    'runtime error:',                 # UBSan
    'WARNING: ThreadSanitizer',
    'ERROR: MemorySanitizer',
)


# ---------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------

def skip_if_missing(tool):
    """Return the full path of @tool, or raise unittest.SkipTest.

    @tool is a program name looked up on PATH, or a path.  Call it from
    inside a test (or setUp/setUpClass)."""
    if os.sep in tool:
        if os.access(tool, os.X_OK) and os.path.isfile(tool):
            return tool
        raise unittest.SkipTest('%s not found or not executable' % tool)
    path = shutil.which(tool)
    if path is None:
        raise unittest.SkipTest('%s not installed' % tool)
    return path


def requires_tool(*tools):
    """Decorator form of skip_if_missing for test methods/classes."""
    missing = [t for t in tools
               if (shutil.which(t) is None if os.sep not in t
                   else not os.access(t, os.X_OK))]
    if missing:
        return unittest.skip('missing tool(s): %s' % ', '.join(missing))
    return lambda obj: obj


def require_binary(binary, what='daemon'):
    """Raise SkipTest unless @binary is an executable file.

    The daemon under test is not optional when IOTESTS_REQUIRE_BLKD is set
    (make check sets it): then its absence fails the test instead."""
    present = binary and os.path.isfile(binary) and os.access(binary, os.X_OK)
    if not present and binary == BLKD and os.environ.get('IOTESTS_REQUIRE_BLKD'):
        raise AssertionError('daemon under test %s not found' % binary)
    if not binary:
        raise unittest.SkipTest('%s not configured' % what)
    if not present:
        raise unittest.SkipTest('%s %s not found' % (what, binary))
    return binary


def run(*cmd, timeout=60, check=False, input=None, env=None, cwd=None,
        text=True):
    """subprocess.run wrapper with a timeout and captured output.

    Accepts run('a', 'b') or run(['a', 'b']).  On timeout the process is
    killed and subprocess.TimeoutExpired is raised."""
    if len(cmd) == 1 and isinstance(cmd[0], (list, tuple)):
        cmd = cmd[0]
    cmd = [str(c) for c in cmd]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=(subprocess.PIPE if input is not None
                                 else subprocess.DEVNULL),
                          input=input, timeout=timeout, check=check,
                          env=env, cwd=cwd, text=text)


def free_tcp_port(host='127.0.0.1'):
    """Return a TCP port that was free a moment ago on @host."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def sanitizer_report(text, context=40):
    """Return the sanitizer excerpt found in @text, or None."""
    if not text:
        return None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if any(p in line for p in SANITIZER_PATTERNS):
            return '\n'.join(lines[max(0, i - 2):i + context])
    return None


def strip_prog_prefix(line):
    """Split 'prog: message' into (prog, message); (None, line) if no prefix.

    The program part may be a bare name or a path (glibc getopt uses argv[0]
    as given, QEMU's error_report uses the basename)."""
    m = re.match(r'^([^:\s][^:]*?): (.*)$', line)
    if not m:
        return None, line
    return m.group(1), m.group(2)


def qmp_error(reply):
    """Return (class, desc) of an error reply, or None for a non-error."""
    err = reply.get('error') if isinstance(reply, dict) else None
    if err is None:
        return None
    return (err.get('class'), err.get('desc'))


def _json_type(v):
    if v is None:
        return 'null'
    if isinstance(v, bool):
        return 'bool'
    if isinstance(v, int):
        return 'int'
    if isinstance(v, float):
        return 'number'
    if isinstance(v, str):
        return 'str'
    raise TypeError('not a JSON value: %r' % (v,))


def shape(obj):
    """Normalize a JSON value to its *shape*, for differential comparison.

    dict  -> {key: shape(value)} (keys kept, values replaced by shapes)
    list  -> sorted list of the distinct shapes of its elements
    other -> the JSON type name: 'str', 'int', 'number', 'bool', 'null'

    Two replies have equal shapes if they have the same keys (recursively)
    and the same JSON types, whatever the values and list lengths."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        shapes = {}
        for el in obj:
            s = shape(el)
            shapes[json.dumps(s, sort_keys=True)] = s
        return [shapes[k] for k in sorted(shapes)]
    return _json_type(obj)


def shape_diff(a, b, path='$'):
    """Return a list of human-readable differences between shape(a), shape(b)."""
    sa, sb = shape(a), shape(b)
    out = []

    def walk(x, y, p):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                if k not in x:
                    out.append('%s.%s: only in second' % (p, k))
                elif k not in y:
                    out.append('%s.%s: only in first' % (p, k))
                else:
                    walk(x[k], y[k], '%s.%s' % (p, k))
        elif isinstance(x, list) and isinstance(y, list):
            kx = {json.dumps(e, sort_keys=True) for e in x}
            ky = {json.dumps(e, sort_keys=True) for e in y}
            if kx != ky:
                out.append('%s[]: element shapes %s vs %s'
                           % (p, sorted(kx), sorted(ky)))
        elif x != y:
            out.append('%s: %s vs %s' % (p, json.dumps(x), json.dumps(y)))

    walk(sa, sb, path)
    return out


def _child_env(extra=None):
    env = dict(os.environ)
    env.setdefault('ASAN_OPTIONS', 'detect_leaks=1')
    env.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1:halt_on_error=1')
    env.setdefault('LSAN_OPTIONS', 'report_objects=1')
    if extra:
        env.update(extra)
    return env


def _preexec_pdeathsig():
    # Make sure a daemon dies when the test process dies (Linux only).
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:                                # pragma: no cover
        pass


def run_daemon(binary, *args, timeout=10, env=None):
    """Run @binary with exactly @args (no monitor added), expecting it to exit.

    Returns a subprocess.CompletedProcess; .returncode is None if the daemon
    was still running after @timeout seconds (it is then killed).  Fails
    (AssertionError) if a sanitizer report is found on stderr."""
    with tempfile.TemporaryFile('w+') as out, \
            tempfile.TemporaryFile('w+') as err:
        p = subprocess.Popen([binary] + [str(a) for a in args],
                             stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                             env=_child_env(env), preexec_fn=_preexec_pdeathsig)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = None
        out.seek(0)
        err.seek(0)
        res = subprocess.CompletedProcess(p.args, rc, out.read(), err.read())
    rep = sanitizer_report(res.stderr)
    if rep:
        raise AssertionError('sanitizer report from %s:\n%s' % (binary, rep))
    return res


# ---------------------------------------------------------------------------
# QMP client
# ---------------------------------------------------------------------------

class QMPError(Exception):
    pass


class QMPTimeout(QMPError):
    pass


class QMPConnectionClosed(QMPError, EOFError):
    pass


class QMPProtocolError(QMPError):
    pass


class QMPCommandError(QMPError):
    def __init__(self, reply):
        self.reply = reply
        cls, desc = qmp_error(reply) or (None, None)
        self.error_class = cls
        self.desc = desc
        super().__init__('%s: %s' % (cls, desc))


def _conv_keys(d):
    return {k.replace('_', '-'): v for k, v in d.items()}


class QMPClient:
    """A minimal, strict QMP client with timeouts everywhere.

    address: a UNIX socket path (str) or a (host, port) tuple.
    The greeting is read on connect (unless read_greeting=False) and kept in
    .greeting.  Nothing is negotiated implicitly: call negotiate().
    Every blocking operation times out after @timeout seconds (default
    IOTESTS_TIMEOUT, 10 s) raising QMPTimeout."""

    def __init__(self, address, timeout=None, connect_timeout=None,
                 read_greeting=True):
        self.address = address
        self.timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self._buf = b''
        self._events = []
        self._eof = False
        self.greeting = None
        self.sock = self._connect(address, connect_timeout
                                  if connect_timeout is not None
                                  else self.timeout)
        if read_greeting:
            self.greeting = self.recv_msg()
            if 'QMP' not in self.greeting:
                raise QMPProtocolError('bad greeting: %r' % (self.greeting,))

    @staticmethod
    def _connect(address, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if isinstance(address, (tuple, list)):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                addr = tuple(address)
            else:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                addr = address
            try:
                s.settimeout(max(0.1, deadline - time.monotonic()))
                s.connect(addr)
                s.settimeout(None)
                return s
            except (FileNotFoundError, ConnectionRefusedError,
                    BlockingIOError) as e:
                # BlockingIOError (EAGAIN): a UNIX listen backlog is full
                # (QEMU listens with a backlog of 1); retry.
                s.close()
                if time.monotonic() >= deadline:
                    raise QMPTimeout('cannot connect to %r: %s'
                                     % (address, e)) from e
                time.sleep(0.02)
            except Exception:
                s.close()
                raise

    # -- raw I/O ----------------------------------------------------------

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_bytes(self, data):
        """Send raw bytes (str is UTF-8 encoded)."""
        if isinstance(data, str):
            data = data.encode('utf-8')
        self.sock.settimeout(self.timeout)
        try:
            self.sock.sendall(data)
        except socket.timeout as e:
            raise QMPTimeout('send timed out') from e
        finally:
            if self.sock is not None:
                self.sock.settimeout(None)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise QMPTimeout('timed out waiting for data from daemon '
                             '(buffered: %r)' % self._buf[:200])
        r, _, _ = select.select([self.sock], [], [], remaining)
        if not r:
            raise QMPTimeout('timed out waiting for data from daemon '
                             '(buffered: %r)' % self._buf[:200])
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b''
        if not chunk:
            self._eof = True
            raise QMPConnectionClosed('connection closed by daemon '
                                      '(buffered: %r)' % self._buf[:200])
        self._buf += chunk

    def _try_parse(self):
        """Parse one JSON message off the buffer, or return None."""
        text = self._buf.lstrip(b' \t\r\n')
        if not text:
            self._buf = b''
            return None
        # Messages are newline terminated; with pretty=on they span lines,
        # so try raw_decode on the decoded buffer.
        try:
            s = text.decode('utf-8')
        except UnicodeDecodeError as e:
            # Possibly an incomplete multibyte sequence at the end.
            s = text[:e.start].decode('utf-8')
        try:
            obj, end = json.JSONDecoder().raw_decode(s)
        except json.JSONDecodeError:
            # Incomplete (or garbage: then the caller's timeout reports the
            # buffered bytes).
            return None
        consumed = len(s[:end].encode('utf-8'))
        self._buf = text[consumed:]
        return obj

    def recv_msg(self, timeout=None):
        """Return the next message (reply or event) from the daemon."""
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            obj = self._try_parse()
            if obj is not None:
                return obj
            self._fill(deadline)

    def recv_raw_line(self, timeout=None):
        """Return the next raw line (bytes, including the terminator)."""
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while b'\n' not in self._buf:
            self._fill(deadline)
        line, self._buf = self._buf.split(b'\n', 1)
        return line + b'\n'

    def recv_reply(self, timeout=None):
        """Return the next non-event message; events are queued."""
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            msg = self.recv_msg(max(0.0, deadline - time.monotonic()))
            if isinstance(msg, dict) and 'event' in msg and \
                    'return' not in msg and 'error' not in msg:
                self._events.append(msg)
                continue
            return msg

    def expect_eof(self, timeout=None):
        """Wait until the daemon closes the connection; queue any events.

        Returns the list of non-event messages received meanwhile."""
        got = []
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            try:
                got.append(self.recv_reply(max(0.0, deadline -
                                               time.monotonic())))
            except QMPConnectionClosed:
                return got

    # -- commands ---------------------------------------------------------

    def cmd_raw(self, msg, timeout=None):
        """Send the dict @msg as JSON and return the full reply dict.

        If @msg has an 'id', the reply must carry the same id."""
        self.send_bytes(json.dumps(msg))
        reply = self.recv_reply(timeout)
        if isinstance(msg, dict) and 'id' in msg:
            if not isinstance(reply, dict) or reply.get('id') != msg['id'] \
                    or 'id' not in reply:
                raise QMPProtocolError('reply id mismatch: sent %r, got %r'
                                       % (msg['id'], reply))
        return reply

    def cmd(self, command, args=None, /, *, cmd_id=None, conv_keys=True,
            _timeout=None, **kwargs):
        """Execute QMP @command and return the full reply dict.

        Arguments come from the dict @args (used verbatim) and/or keyword
        arguments, whose names map underscore -> hyphen when conv_keys is
        true (as in QEMU's iotests: node_name='x' -> "node-name": "x").
        @command and @args are positional-only, so QMP arguments called
        'name' or 'args' can be passed as keywords.  cmd_id sets the
        request id; _timeout overrides the read timeout."""
        msg = {'execute': command}
        arguments = {}
        if args is not None:
            arguments.update(args)
        if kwargs:
            arguments.update(_conv_keys(kwargs) if conv_keys else kwargs)
        if args is not None or kwargs:
            msg['arguments'] = arguments
        if cmd_id is not None:
            msg['id'] = cmd_id
        return self.cmd_raw(msg, timeout=_timeout)

    def command(self, command, args=None, /, **kwargs):
        """Like cmd() but return the 'return' value; raise QMPCommandError."""
        reply = self.cmd(command, args, **kwargs)
        if 'error' in reply:
            raise QMPCommandError(reply)
        if 'return' not in reply:
            raise QMPProtocolError('reply without return: %r' % (reply,))
        return reply['return']

    def negotiate(self, enable=None):
        """Run qmp_capabilities; raise QMPCommandError on failure."""
        if enable is None:
            return self.command('qmp_capabilities')
        return self.command('qmp_capabilities', enable=list(enable))

    def sync(self, marker='iotests-sync', timeout=None):
        """Send a query-version with id @marker and collect the replies.

        Returns the list of non-event messages received before the reply
        carrying @marker (useful after sending malformed input).  The marker
        reply itself is stored in .last_sync."""
        self.send_bytes(json.dumps({'execute': 'query-version',
                                    'id': marker}))
        out = []
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            msg = self.recv_reply(max(0.0, deadline - time.monotonic()))
            if isinstance(msg, dict) and msg.get('id') == marker:
                self.last_sync = msg
                return out
            out.append(msg)

    # -- events -----------------------------------------------------------

    def get_events(self, name=None, clear=True):
        """Return queued events (optionally only those named @name)."""
        # Parse what is buffered (events read along with an earlier reply
        # are there, not on the socket), then drain whatever else is
        # readable without blocking.
        while True:
            while True:
                obj = self._try_parse()
                if obj is None:
                    break
                if 'event' in obj:
                    self._events.append(obj)
                else:
                    raise QMPProtocolError('unexpected reply while '
                                           'draining events: %r' % (obj,))
            try:
                r, _, _ = select.select([self.sock], [], [], 0)
            except (ValueError, OSError):
                break
            if not r or self._eof:
                break
            try:
                self._fill(time.monotonic() + 0.5)
            except QMPConnectionClosed:
                break
        sel = [e for e in self._events if name is None or e['event'] == name]
        if clear:
            self._events = [e for e in self._events if e not in sel]
        return sel

    def next_event(self, timeout=None):
        """Wait for (and dequeue) the next event, whatever its name."""
        if not self._events:
            msg = self.recv_msg(timeout)
            if not isinstance(msg, dict) or 'event' not in msg:
                raise QMPProtocolError('unexpected reply while waiting for '
                                       'an event: %r' % (msg,))
            self._events.append(msg)
        return self._events.pop(0)

    def wait_event(self, name, timeout=None, match=None):
        """Wait for (and dequeue) the next event named @name whose data has
        the members of @match, if given; other events stay queued."""
        deadline = time.monotonic() + (self.timeout if timeout is None
                                       else timeout)
        while True:
            for i, ev in enumerate(self._events):
                data = ev.get('data', {})
                if ev.get('event') == name and all(
                        data.get(k) == v for k, v in (match or {}).items()):
                    return self._events.pop(i)
            msg = self.recv_msg(max(0.0, deadline - time.monotonic()))
            if isinstance(msg, dict) and 'event' in msg:
                self._events.append(msg)
            else:
                raise QMPProtocolError('unexpected reply while waiting for '
                                       'event %s: %r' % (name, msg))


# ---------------------------------------------------------------------------
# Daemon
# ---------------------------------------------------------------------------

class Daemon:
    """One daemon process with its own temporary directory.

        d = Daemon(self)                      # registers cleanup on the test
        d.start(BLKD, '--blockdev', '...')    # adds QMP monitor + pidfile
        qmp = d.qmp()                         # connected, greeting read
        qmp.negotiate()
        ...
        d.stop()                              # SIGTERM (or method='quit')

    start() adds:
      --chardev socket,id=qmp0,path=<dir>/qmp.sock,server=on,wait=off
      --monitor chardev=qmp0 --pidfile <dir>/daemon.pid
    unless monitor=False / pidfile=False.  stderr goes to <dir>/stderr.log;
    cwd= runs the daemon in another directory (relative image names).
    Cleanup (also on failure) stops the daemon (SIGTERM, then SIGKILL after a
    timeout), checks stderr for sanitizer reports and removes the directory.
    """

    def __init__(self, testcase=None, name='daemon'):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix='iotests-%s-' % name)
        self.sock_path = os.path.join(self.dir, 'qmp.sock')
        self.pidfile = os.path.join(self.dir, 'daemon.pid')
        self.stderr_path = os.path.join(self.dir, 'stderr.log')
        self.stdout_path = os.path.join(self.dir, 'stdout.log')
        self.proc = None
        self.binary = None
        self.args = None
        self.returncode = None
        self._clients = []
        self._checked = False
        self._reaped = False
        if testcase is not None:
            testcase.addCleanup(self.cleanup)

    def path(self, *parts):
        """A path inside this daemon's temporary directory."""
        return os.path.join(self.dir, *parts)

    def start(self, binary, *args, monitor=True, pidfile=True, env=None,
              wait=True, timeout=None, cwd=None):
        if self.proc is not None:
            raise RuntimeError('daemon already started')
        self.binary = binary
        argv = [binary]
        if monitor:
            argv += ['--chardev',
                     'socket,id=qmp0,path=%s,server=on,wait=off'
                     % self.sock_path,
                     '--monitor', 'chardev=qmp0']
        if pidfile:
            argv += ['--pidfile', self.pidfile]
        argv += [str(a) for a in args]
        self.args = argv
        self._stderr = open(self.stderr_path, 'w')
        self._stdout = open(self.stdout_path, 'w')
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=self._stdout,
                                     stderr=self._stderr,
                                     env=_child_env(env), cwd=cwd,
                                     preexec_fn=_preexec_pdeathsig)
        if wait:
            paths = []
            if monitor:
                paths.append(self.sock_path)
            if pidfile:
                paths.append(self.pidfile)
            self.wait_for_paths(paths, timeout)
        return self

    def wait_for_paths(self, paths, timeout=None):
        """Wait until every path exists; fail early if the daemon exits."""
        deadline = time.monotonic() + (STARTUP_TIMEOUT if timeout is None
                                       else timeout)
        while True:
            missing = [p for p in paths if not os.path.exists(p)]
            if not missing:
                if self.pidfile in paths:
                    # the pidfile may exist but still be empty
                    try:
                        with open(self.pidfile) as f:
                            if not f.read().strip():
                                missing = [self.pidfile]
                    except OSError:
                        missing = [self.pidfile]
                if not missing:
                    return
            if self.proc.poll() is not None:
                raise AssertionError(
                    '%s exited with status %s during startup; stderr:\n%s'
                    % (self.binary, self.proc.returncode, self.stderr()))
            if time.monotonic() >= deadline:
                raise AssertionError('%s did not create %s within timeout; '
                                     'stderr:\n%s' % (self.binary, missing,
                                                      self.stderr()))
            time.sleep(0.01)

    def wait_socket(self, path, timeout=None):
        self.wait_for_paths([path], timeout)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def stderr(self):
        try:
            with open(self.stderr_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def stdout(self):
        try:
            with open(self.stdout_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def qmp(self, address=None, negotiate=False, timeout=None):
        """Connect a new QMPClient (greeting read) to @address.

        Default address is the built-in monitor socket.  NB: a socket
        chardev serves one client at a time (as in QEMU), so a second
        client on the same socket only gets its greeting after the first
        disconnects."""
        client = QMPClient(self.sock_path if address is None else address,
                           timeout=timeout)
        self._clients.append(client)
        if negotiate:
            client.negotiate()
        return client

    def close_clients(self):
        for c in self._clients:
            c.close()
        self._clients = []

    def wait(self, timeout=None):
        """Wait for the daemon to exit; return its exit status."""
        try:
            self.returncode = self.proc.wait(DEFAULT_TIMEOUT if timeout is None
                                             else timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError('%s did not exit within timeout'
                                 % self.binary)
        self._reaped = True
        self._close_logs()
        self.check_sanitizers()
        return self.returncode

    def stop(self, method='sigterm', timeout=None, expect_rc=0):
        """Stop the daemon and check its exit status.

        method: 'sigterm' (default), 'sigint', 'quit' (QMP quit on a new
        or the last open client).  Returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            rc = self.proc.returncode if self.proc else None
            self._reaped = True
            self._close_logs()
            self.check_sanitizers()
            if self.proc is not None and expect_rc is not None and \
                    rc != expect_rc:
                raise AssertionError('%s had already exited with status %s; '
                                     'stderr:\n%s' % (self.binary, rc,
                                                       self.stderr()))
            return rc
        if method == 'quit':
            client = next((c for c in reversed(self._clients)
                           if c.sock is not None), None)
            if client is None:
                client = self.qmp()
                client.negotiate()
            reply = client.cmd('quit')
            if reply != {'return': {}}:
                raise AssertionError('quit failed: %r' % (reply,))
        elif method == 'sigint':
            self.proc.send_signal(signal.SIGINT)
        elif method == 'sigterm':
            self.proc.send_signal(signal.SIGTERM)
        else:
            raise ValueError(method)
        rc = self.wait(timeout)
        self.close_clients()
        if expect_rc is not None and rc != expect_rc:
            raise AssertionError('%s exited with status %s (expected %s); '
                                 'stderr:\n%s' % (self.binary, rc, expect_rc,
                                                  self.stderr()))
        return rc

    def kill(self):
        """SIGKILL the daemon (its exit status is then not checked)."""
        self._reaped = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(DEFAULT_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass

    def _close_logs(self):
        for f in (getattr(self, '_stderr', None),
                  getattr(self, '_stdout', None)):
            if f is not None and not f.closed:
                f.close()

    def check_sanitizers(self):
        if self._checked:
            return
        rep = sanitizer_report(self.stderr())
        if rep:
            self._checked = True
            raise AssertionError('sanitizer report from %s:\n%s'
                                 % (self.binary, rep))

    def cleanup(self):
        self.close_clients()
        error = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(DEFAULT_TIMEOUT)
                if rc != 0:
                    error = AssertionError(
                        '%s exited with status %s on SIGTERM; stderr:\n%s'
                        % (self.binary, rc, self.stderr()))
            except subprocess.TimeoutExpired:
                self.kill()
                error = AssertionError('%s ignored SIGTERM; killed'
                                       % self.binary)
        elif self.proc is not None and not self._reaped and \
                self.proc.returncode != 0:
            error = AssertionError('%s exited unexpectedly with status %s; '
                                   'stderr:\n%s' % (self.binary,
                                                     self.proc.returncode,
                                                     self.stderr()))
        self._close_logs()
        try:
            if self.proc is not None:
                self.check_sanitizers()
        finally:
            if not os.environ.get('IOTESTS_KEEP_TMP'):
                shutil.rmtree(self.dir, ignore_errors=True)
        if error:
            raise error


_package_cache = {}


def binary_package(binary):
    """Return query-version's 'package' string of @binary (cached)."""
    if binary in _package_cache:
        return _package_cache[binary]
    d = Daemon(None, name='probe')
    try:
        d.start(binary)
        c = d.qmp()
        pkg = c.greeting['QMP']['version'].get('package', '')
        c.negotiate()
        ver = c.command('query-version')
        pkg = ver.get('package', pkg)
    finally:
        d.cleanup()
    _package_cache[binary] = pkg
    return pkg


def binary_is_blkd(binary):
    """True if @binary reports a query-version package starting 'blkd'."""
    return binary_package(binary).startswith('blkd')


# ---------------------------------------------------------------------------
# TestCase base
# ---------------------------------------------------------------------------

class DaemonTestCase(unittest.TestCase):
    """Base class with daemon helpers.

    self.blkd / self.qsd are the binaries; start_daemon() returns a started
    Daemon with cleanup registered; both skip the test if the binary is
    missing."""

    blkd = BLKD
    qsd = QSD

    def start_daemon(self, binary=None, *args, name=None, **kwargs):
        binary = binary or self.blkd
        require_binary(binary, 'BLKD' if binary == self.blkd else 'binary')
        d = Daemon(self, name=name or os.path.basename(binary))
        d.start(binary, *args, **kwargs)
        return d

    def start_qsd(self, *args, **kwargs):
        require_binary(self.qsd, 'QSD (qemu-storage-daemon)')
        return self.start_daemon(self.qsd, *args, name='qsd', **kwargs)

    def connect(self, binary=None, *args, negotiate=True, **kwargs):
        """Start a daemon and return (daemon, negotiated client)."""
        d = self.start_daemon(binary, *args, **kwargs)
        c = d.qmp()
        if negotiate:
            c.negotiate()
        return d, c

    def have_qsd(self):
        return bool(self.qsd) and os.access(self.qsd, os.X_OK)

    def require_qsd(self):
        require_binary(self.qsd, 'QSD (qemu-storage-daemon)')

    def skip_if_not_blkd(self, binary=None, reason='blkd-only behaviour'):
        binary = binary or self.blkd
        require_binary(binary, 'BLKD')
        if not binary_is_blkd(binary):
            self.skipTest('%s (daemon under test is %r)'
                          % (reason, binary_package(binary)))

    def assertQmpError(self, reply, cls, desc=None, msg=None):
        err = qmp_error(reply)
        self.assertIsNotNone(err, msg or 'expected an error reply, got %r'
                             % (reply,))
        self.assertEqual(err[0], cls, msg or 'error class in %r' % (reply,))
        if desc is not None:
            self.assertEqual(err[1], desc, msg or 'error desc in %r'
                             % (reply,))

    def assertQmpSuccess(self, reply, ret=None, msg=None):
        self.assertIsInstance(reply, dict)
        self.assertNotIn('error', reply, msg or 'unexpected error: %r'
                         % (reply,))
        self.assertIn('return', reply, msg)
        if ret is not None:
            self.assertEqual(reply['return'], ret, msg)

    def assertSameShape(self, a, b, msg=None):
        diff = shape_diff(a, b)
        if diff:
            self.fail((msg + ': ' if msg else '') + 'shape differs:\n  ' +
                      '\n  '.join(diff))
