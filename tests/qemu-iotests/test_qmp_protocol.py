# SPDX-License-Identifier: GPL-2.0-or-later
"""QMP protocol behaviour of the daemon under test (BLKD), compared with
qemu-storage-daemon 7.2 (QSD).

Exact texts below were recorded from Debian's qemu-storage-daemon 7.2
(1:7.2+dfsg-7+deb12u18).  Tests that say "differential" also run QSD (when
available) and compare; the exact expectations are asserted for both, so
running the suite with BLKD=qemu-storage-daemon validates the tables.
"""

import json
import os
import signal
import socket
import stat
import time
import unittest

import iotests
from iotests import (Daemon, DaemonTestCase, QMPClient, QMPTimeout,
                     free_tcp_port, qmp_error, run_daemon, shape,
                     strip_prog_prefix)

NEGOTIATION_DESC = "Expecting capabilities negotiation with 'qmp_capabilities'"
ALREADY_NEGOTIATED_DESC = \
    "Capabilities negotiation is already complete, command ignored"
CORE_COMMANDS = ('qmp_capabilities', 'query-version', 'query-commands',
                 'query-qmp-schema', 'quit')
BUILTIN_JSON_TYPES = {'str': 'string', 'any': 'value', 'bool': 'boolean',
                      'int': 'int', 'null': 'null', 'number': 'number'}

GE = 'GenericError'
CNF = 'CommandNotFound'
OK = 'ok'       # marker for a success reply in expectation lists


def E(desc, cls=GE):
    return (cls, desc)


def reply_summary(reply):
    """OK for a success reply, (class, desc) for an error, else the reply."""
    if isinstance(reply, dict) and 'return' in reply and 'error' not in reply:
        return OK
    err = qmp_error(reply)
    return err if err is not None else reply


# ---------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------

class QMPTestCase(DaemonTestCase):
    """Helpers shared by all QMP protocol tests."""

    maxDiff = None

    def daemon_binaries(self, need_qsd=False):
        """[(label, binary)]: BLKD and, if available, QSD."""
        iotests.require_binary(self.blkd, 'BLKD')
        out = [('blkd', self.blkd)]
        if self.have_qsd():
            out.append(('qsd', self.qsd))
        elif need_qsd:
            self.skipTest('differential test needs QSD')
        return out

    def client(self, binary=None, *args, negotiate=True):
        """Start a daemon, return a connected (optionally negotiated) client."""
        d, c = self.connect(binary or self.blkd, *args, negotiate=negotiate)
        return c

    def commands_of(self, client):
        return sorted(c['name'] for c in client.command('query-commands'))

    def require_commands(self, client, *names):
        have = set(self.commands_of(client))
        missing = [n for n in names if n not in have]
        self.assertEqual(missing, [], 'the daemon does not list them')

    def assertExactError(self, reply, cls, desc, id_=None, has_id=False):
        expected = {'error': {'class': cls, 'desc': desc}}
        if has_id:
            expected['id'] = id_
        self.assertEqual(reply, expected)

    def send_and_sync(self, client, chunks, pause=0.05):
        """Send @chunks (bytes or list of bytes), then a marker command;
        return the replies that came before the marker reply."""
        if isinstance(chunks, (bytes, str)):
            chunks = [chunks]
        for i, ch in enumerate(chunks):
            if i:
                time.sleep(pause)
            client.send_bytes(ch)
        return client.sync()


# ---------------------------------------------------------------------------
# Greeting and wire format
# ---------------------------------------------------------------------------

class GreetingTest(QMPTestCase):

    def test_greeting_shape_matches_qsd(self):
        """differential: greeting has the same keys/types as qsd's."""
        greetings = {}
        for label, binary in self.daemon_binaries(need_qsd=True):
            d = self.start_daemon(binary)
            greetings[label] = d.qmp().greeting
        g = greetings['blkd']
        self.assertEqual(set(g), {'QMP'})
        self.assertEqual(set(g['QMP']), {'version', 'capabilities'})
        self.assertEqual(set(g['QMP']['version']), {'qemu', 'package'})
        self.assertEqual(set(g['QMP']['version']['qemu']),
                         {'micro', 'minor', 'major'})
        self.assertSameShape(greetings['blkd'], greetings['qsd'])

    def test_greeting_offers_oob_capability(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                self.assertEqual(d.qmp().greeting['QMP']['capabilities'],
                                 ['oob'])

    def test_greeting_version_equals_query_version(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                c = d.qmp()
                c.negotiate()
                self.assertEqual(c.command('query-version'),
                                 c.greeting['QMP']['version'])

    def test_query_version_shape_matches_qsd(self):
        """differential"""
        replies = {}
        for label, binary in self.daemon_binaries(need_qsd=True):
            replies[label] = self.client(binary).cmd('query-version')
        self.assertSameShape(replies['blkd'], replies['qsd'])
        v = replies['blkd']['return']['qemu']
        for k in ('major', 'minor', 'micro'):
            self.assertIsInstance(v[k], int)
            self.assertNotIsInstance(v[k], bool)

    def test_messages_are_crlf_terminated_single_lines(self):
        """QEMU writes each (non-pretty) message as one line ending \\r\\n."""
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                c = QMPClient(d.sock_path, read_greeting=False)
                self.addCleanup(c.close)
                line = c.recv_raw_line()
                self.assertTrue(line.endswith(b'}\r\n'), line)
                self.assertIn(b'"QMP"', line)
                json.loads(line)
                c.send_bytes(b'{"execute":"qmp_capabilities"}')
                self.assertEqual(c.recv_raw_line(), b'{"return": {}}\r\n')
                c.send_bytes(b'{"execute":"no-such-cmd","id":1}')
                line = c.recv_raw_line()
                self.assertTrue(line.endswith(b'}\r\n'), line)
                self.assertEqual(line.count(b'\n'), 1)

    def test_key_order_matches_qsd(self):
        """differential: members are emitted in the same order as qsd."""
        orders = {}

        def keys(obj):
            if isinstance(obj, dict):
                return [(k, keys(v)) for k, v in obj.items()]
            if isinstance(obj, list):
                return [keys(v) for v in obj[:1]]
            return None

        for label, binary in self.daemon_binaries(need_qsd=True):
            d = self.start_daemon(binary)
            c = d.qmp()
            got = [keys(c.greeting)]
            got.append(keys(c.cmd('qmp_capabilities', cmd_id='a')))
            got.append(keys(c.cmd('query-version', cmd_id=1)))
            got.append(keys(c.cmd('no-such-cmd', cmd_id=2)))
            got.append(keys(c.cmd('query-version')))
            orders[label] = got
        self.assertEqual(orders['blkd'], orders['qsd'])

    def test_package_string_starts_with_blkd(self):
        """blkd-only: query-version's package identifies blkd."""
        self.skip_if_not_blkd()
        c = self.client()
        ver = c.command('query-version')
        self.assertTrue(ver['package'].startswith('blkd'), ver)


# ---------------------------------------------------------------------------
# Capabilities negotiation
# ---------------------------------------------------------------------------

class NegotiationTest(QMPTestCase):

    def test_command_before_negotiation_rejected(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertExactError(c.cmd('query-version'), CNF,
                                      NEGOTIATION_DESC)

    def test_command_before_negotiation_rejected_with_id(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertExactError(c.cmd('query-version', cmd_id='x'),
                                      CNF, NEGOTIATION_DESC, 'x', True)

    def test_unknown_command_before_negotiation_rejected(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertExactError(c.cmd('no-such-cmd'), CNF,
                                      NEGOTIATION_DESC)

    def test_arguments_ignored_before_negotiation(self):
        """A non-negotiation command is refused before its arguments are
        looked at."""
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertExactError(c.cmd('query-version', {'x': 1}), CNF,
                                      NEGOTIATION_DESC)

    def test_qmp_capabilities_succeeds(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertEqual(c.cmd('qmp_capabilities'), {'return': {}})
                self.assertQmpSuccess(c.cmd('query-version'))

    def test_qmp_capabilities_twice_rejected(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                self.assertExactError(c.cmd('qmp_capabilities'), CNF,
                                      ALREADY_NEGOTIATED_DESC)

    def test_qmp_capabilities_twice_argument_errors_come_first(self):
        """After negotiation, argument decoding still precedes the
        'already complete' check."""
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                self.assertExactError(
                    c.cmd('qmp_capabilities', enable=5), GE,
                    "Invalid parameter type for 'enable', expected: array")
                self.assertExactError(
                    c.cmd('qmp_capabilities', enable=['oob']), CNF,
                    ALREADY_NEGOTIATED_DESC)

    def test_qmp_capabilities_enable_oob(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertEqual(c.cmd('qmp_capabilities', enable=['oob']),
                                 {'return': {}})
                self.assertQmpSuccess(c.cmd('query-version'))

    def test_qmp_capabilities_empty_enable_list(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertEqual(c.cmd('qmp_capabilities', enable=[]),
                                 {'return': {}})

    def test_qmp_capabilities_empty_arguments(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertEqual(c.cmd('qmp_capabilities', {}),
                                 {'return': {}})

    def test_qmp_capabilities_duplicate_capability_accepted(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertEqual(c.cmd('qmp_capabilities',
                                       enable=['oob', 'oob']),
                                 {'return': {}})

    def test_qmp_capabilities_unknown_capability_rejected(self):
        # (sic: QEMU 7.2 names the list element 'null')
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertExactError(
                    c.cmd('qmp_capabilities', enable=['foo']), GE,
                    "Parameter 'null' does not accept value 'foo'")

    def test_failed_negotiation_keeps_negotiation_mode(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertIn('error', c.cmd('qmp_capabilities',
                                             enable=['oob', 'foo']))
                self.assertExactError(c.cmd('query-version'), CNF,
                                      NEGOTIATION_DESC)
                self.assertEqual(c.cmd('qmp_capabilities'), {'return': {}})

    def test_qmp_capabilities_enable_not_a_list(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                for bad in (5, 'oob', None, {}):
                    self.assertExactError(
                        c.cmd('qmp_capabilities', enable=bad), GE,
                        "Invalid parameter type for 'enable', "
                        "expected: array")

    def test_qmp_capabilities_enable_element_not_a_string(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertExactError(
                    c.cmd('qmp_capabilities', enable=[5]), GE,
                    "Invalid parameter type for 'enable[0]', "
                    "expected: string")

    def test_qmp_capabilities_unexpected_argument(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertExactError(c.cmd('qmp_capabilities', bogus=1),
                                      GE, "Parameter 'bogus' is unexpected")

    def test_negotiation_is_per_connection(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                c = d.qmp()
                c.negotiate()
                c.close()
                c2 = d.qmp()
                self.assertExactError(c2.cmd('query-version'), CNF,
                                      NEGOTIATION_DESC)
                c2.negotiate()
                self.assertQmpSuccess(c2.cmd('query-version'))

    def test_envelope_errors_before_negotiation(self):
        """Request-envelope checks happen before the negotiation check."""
        cases = [
            (b'{"execute":5}',
             E("QMP input member 'execute' must be a string")),
            (b'{"execute":"query-version","foo":1}',
             E("QMP input member 'foo' is unexpected")),
            (b'[1]', E('QMP input must be a JSON object')),
            (b'{"exec-oob":"query-version"}',
             E("QMP input member 'exec-oob' is unexpected")),
            (b'{"execute":"qmp_capabilities","arguments":[]}',
             E("QMP input member 'arguments' must be an object")),
        ]
        for label, binary in self.daemon_binaries():
            c = self.client(binary, negotiate=False)
            for data, exp in cases:
                with self.subTest(daemon=label, input=data):
                    c.send_bytes(data)
                    self.assertEqual(reply_summary(c.recv_reply()), exp)


# ---------------------------------------------------------------------------
# Out-of-band execution
# ---------------------------------------------------------------------------

class OOBTest(QMPTestCase):

    def oob_client(self, binary):
        c = self.client(binary, negotiate=False)
        c.negotiate(enable=['oob'])
        return c

    def test_exec_oob_without_oob_capability_rejected(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                self.assertExactError(
                    c.cmd_raw({'exec-oob': 'query-version'}), GE,
                    "QMP input member 'exec-oob' is unexpected")

    def test_exec_oob_of_non_oob_command_rejected(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.oob_client(binary)
                self.assertExactError(
                    c.cmd_raw({'exec-oob': 'query-version', 'id': 1}), GE,
                    'The command query-version does not support OOB', 1,
                    True)

    def test_exec_oob_unknown_command_not_found(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.oob_client(binary)
                self.assertExactError(
                    c.cmd_raw({'exec-oob': 'no-such-cmd'}), CNF,
                    'The command no-such-cmd has not been found')

    def test_execute_and_exec_oob_clash(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.oob_client(binary)
                self.assertExactError(
                    c.cmd_raw({'execute': 'query-version',
                               'exec-oob': 'query-version'}), GE,
                    "QMP input member 'execute' clashes with 'exec-oob'")

    def test_in_band_commands_work_with_oob_enabled(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.oob_client(binary)
                self.assertQmpSuccess(c.cmd('query-version', cmd_id='v'))
                self.assertQmpSuccess(c.cmd('query-commands'))


# ---------------------------------------------------------------------------
# Request ids
# ---------------------------------------------------------------------------

ID_VALUES = ['str', 42, -3, 0, 1.5, True, None, {'a': [1, {'b': None}]},
             [1, 'x'], '\u00e9\U0001f600', 12345678901234567890]


class IdTest(QMPTestCase):

    def test_id_echoed_on_success(self):
        for label, binary in self.daemon_binaries():
            c = self.client(binary)
            for id_ in ID_VALUES:
                with self.subTest(daemon=label, id=id_):
                    r = c.cmd_raw({'execute': 'query-version', 'id': id_})
                    self.assertIn('return', r)
                    self.assertEqual(set(r), {'return', 'id'})
                    self.assertEqual(json.dumps(r['id']), json.dumps(id_))

    def test_id_echoed_on_command_not_found(self):
        for label, binary in self.daemon_binaries():
            c = self.client(binary)
            for id_ in ID_VALUES:
                with self.subTest(daemon=label, id=id_):
                    r = c.cmd_raw({'execute': 'no-such-cmd', 'id': id_})
                    self.assertEqual(set(r), {'error', 'id'})
                    self.assertEqual(json.dumps(r['id']), json.dumps(id_))

    def test_id_echoed_on_envelope_error(self):
        cases = [
            ({'execute': 5, 'id': 7},
             E("QMP input member 'execute' must be a string")),
            ({'id': 7}, E("QMP input lacks member 'execute'")),
            ({'execute': 'query-version', 'foo': 1, 'id': 7},
             E("QMP input member 'foo' is unexpected")),
            ({'execute': 'query-version', 'arguments': [], 'id': 7},
             E("QMP input member 'arguments' must be an object")),
        ]
        for label, binary in self.daemon_binaries():
            c = self.client(binary)
            for msg, exp in cases:
                with self.subTest(daemon=label, msg=msg):
                    r = c.cmd_raw(msg)
                    self.assertEqual(r, {'id': 7, 'error': {
                        'class': exp[0], 'desc': exp[1]}})

    def test_id_echoed_on_argument_error(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                r = c.cmd('query-version', {'x-bogus': 1}, cmd_id=[9])
                self.assertExactError(r, GE,
                                      "Parameter 'x-bogus' is unexpected",
                                      [9], True)

    def test_id_echoed_before_negotiation(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                self.assertExactError(c.cmd('query-version',
                                            cmd_id={'k': 'v'}),
                                      CNF, NEGOTIATION_DESC, {'k': 'v'}, True)
                self.assertEqual(c.cmd('qmp_capabilities', cmd_id=5),
                                 {'return': {}, 'id': 5})

    def test_no_id_in_reply_when_none_sent(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                self.assertNotIn('id', c.cmd('query-version'))
                self.assertNotIn('id', c.cmd('no-such-cmd'))


# ---------------------------------------------------------------------------
# Framing: pipelining, splitting, parser recovery
# ---------------------------------------------------------------------------

class FramingTest(QMPTestCase):

    def test_pipelined_commands_in_one_send(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary, negotiate=False)
                c.send_bytes(b'{"execute":"qmp_capabilities","id":0}'
                             b'{"execute":"query-version","id":1}'
                             b'{"execute":"no-such-cmd","id":2}'
                             b'{"execute":"query-commands","id":3}')
                replies = [c.recv_reply() for _ in range(4)]
                self.assertEqual([r.get('id') for r in replies],
                                 [0, 1, 2, 3])
                self.assertEqual([reply_summary(r) for r in replies],
                                 [OK, OK, E('The command no-such-cmd has '
                                            'not been found', CNF), OK])

    def test_command_split_byte_by_byte(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                data = b'{"execute": "query-version", "id": "split"}'
                for i in range(len(data)):
                    c.send_bytes(data[i:i + 1])
                    time.sleep(0.002)
                r = c.recv_reply()
                self.assertEqual(r.get('id'), 'split')
                self.assertIn('return', r)

    def test_command_split_in_chunks(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                data = (b'{"execute":"query-version","id":1}\n'
                        b'{"execute":"query-commands","id":2}\n') * 3
                for i in range(0, len(data), 7):
                    c.send_bytes(data[i:i + 7])
                    time.sleep(0.005)
                ids = [c.recv_reply()['id'] for _ in range(6)]
                self.assertEqual(ids, [1, 2] * 3)

    def test_command_with_partial_next_in_one_send(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                c.send_bytes(b'{"execute":"query-version","id":1}'
                             b'{"execute":"query-ver')
                self.assertEqual(c.recv_reply()['id'], 1)
                with self.assertRaises(QMPTimeout):
                    c.recv_reply(timeout=0.3)
                c.send_bytes(b'sion","id":2}')
                r = c.recv_reply()
                self.assertEqual(r['id'], 2)
                self.assertIn('return', r)

    def test_whitespace_between_commands_ignored(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                replies = self.send_and_sync(
                    c, b' \n\r\n\t {"execute":"query-version","id":1} \r\n')
                self.assertEqual([r.get('id') for r in replies], [1])

    def test_single_quoted_strings_accepted(self):
        """QEMU's JSON parser accepts 'single-quoted' strings."""
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                replies = self.send_and_sync(
                    c, b"{'execute':'query-version','id':'sq'}")
                self.assertEqual(len(replies), 1)
                self.assertEqual(replies[0]['id'], 'sq')
                self.assertIn('return', replies[0])

    def test_nul_escape_in_command_name(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                replies = self.send_and_sync(c, b'{"execute":"q\\u0000x"}')
                self.assertEqual([reply_summary(r) for r in replies],
                                 [E('The command q\x00x has not been found',
                                    CNF)])

    def test_nesting_at_limit_accepted_by_parser(self):
        """1024 levels parse (then fail as a non-object)."""
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                replies = self.send_and_sync(c, b'[' * 1024 + b']' * 1024)
                self.assertEqual([reply_summary(r) for r in replies],
                                 [E('QMP input must be a JSON object')])

    def test_nesting_depth_limit_exceeded(self):
        """1025 levels: one nesting error, then each leftover ']' is an
        'expecting value' error; the monitor keeps working."""
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                c.timeout = 30
                replies = self.send_and_sync(c, b'[' * 1025 + b']' * 1025)
                summ = [reply_summary(r) for r in replies]
                self.assertEqual(summ[0],
                                 E('JSON nesting depth limit exceeded'))
                self.assertEqual(summ[1:],
                                 [E('JSON parse error, expecting value')] *
                                 1025)
                self.assertIn('return', c.last_sync)

    def test_parser_state_reset_on_reconnect(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                c = d.qmp()
                c.negotiate()
                c.send_bytes(b'{"execute":"query-ver')
                time.sleep(0.1)
                c.close()
                c2 = d.qmp()
                self.assertEqual(c2.cmd('qmp_capabilities', cmd_id='n'),
                                 {'return': {}, 'id': 'n'})


# Malformed input: (name, chunks, expected replies before the sync reply).
# Each test sends the input, then a good command, which must still work.
MALFORMED = [
    ('missing_value', b'{"execute": }',
     [E('JSON parse error, expecting value')]),
    ('stray_closing_brace', b'}',
     [E('JSON parse error, expecting value')]),
    ('truncated_command_then_garbage',
     [b'{"execute":"query-version"', b' garbage}'],
     [E('JSON parse error, expected separator in dict')]),
    ('truncated_command_then_invalid_byte',
     [b'{"execute":"query-version"', b'\xff'],
     [E("JSON parse error, stray '\ufffd'")]),
    ('invalid_utf8_byte', b'\xff',
     [E("JSON parse error, stray '\ufffd'")]),
    ('array_input', b'[1,2]', [E('QMP input must be a JSON object')]),
    ('string_input', b'"str"', [E('QMP input must be a JSON object')]),
    ('number_input', b'5\n', [E('QMP input must be a JSON object')]),
    ('null_input', b'null\n', [E('QMP input must be a JSON object')]),
    ('empty_object', b'{}', [E("QMP input lacks member 'execute'")]),
    ('missing_execute', b'{"arguments":{}}',
     [E("QMP input lacks member 'execute'")]),
    ('execute_not_a_string', b'{"execute":5}',
     [E("QMP input member 'execute' must be a string")]),
    ('unknown_top_level_key', b'{"execute":"query-version","foo":1}',
     [E("QMP input member 'foo' is unexpected")]),
    ('control_key_rejected', b'{"execute":"query-version","control":{}}',
     [E("QMP input member 'control' is unexpected")]),
    ('arguments_is_array', b'{"execute":"query-version","arguments":[]}',
     [E("QMP input member 'arguments' must be an object")]),
    ('arguments_is_number', b'{"execute":"query-version","arguments":5}',
     [E("QMP input member 'arguments' must be an object")]),
    ('missing_colon', b'{"execute" "query-version"}',
     [E('JSON parse error, missing : in object pair')]),
    ('trailing_comma', b'{"execute":"query-version",}',
     [E('JSON parse error, expecting value')]),
    ('missing_comma', b'{"execute":"query-version" "x":1}',
     [E('JSON parse error, expected separator in dict')]),
    ('key_not_a_string', b'{1:2}',
     [E('JSON parse error, key is not a string in object')]),
    ('invalid_escape', b'{"a\\q":1}',
     [E('JSON parse error, invalid escape sequence in string')]),
    ('stray_character', b'@', [E("JSON parse error, stray '@'")]),
    ('invalid_keyword', b'abc\n',
     [E("JSON parse error, invalid keyword 'abc'")]),
    ('mismatched_bracket', b'{"execute":"query-version"]',
     [E('JSON parse error, expected separator in dict')]),
    ('control_character_in_string', b'{"execute":"quer\x01y"}',
     [E('JSON parse error, stray \'"quer\x01\''),
      E('JSON parse error, expecting value')]),
    ('extra_closing_brace_after_command', b'{"execute":"query-version"}}',
     [OK, E('JSON parse error, expecting value')]),
    ('garbage_after_command', b'{"execute":"query-version"}xyz\n',
     [OK, E("JSON parse error, invalid keyword 'xyz'")]),
    ('whitespace_only', b'  \r\n\t\n', []),
]


class MalformedInputTest(QMPTestCase):
    """Exact error replies (class and desc) for malformed input; every case
    is followed by a good command that must still work."""

    def check_malformed(self, chunks, expected):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                replies = self.send_and_sync(c, chunks)
                for r in replies:
                    self.assertIsInstance(r, dict)
                    if 'error' in r:
                        self.assertEqual(set(r), {'error'}, r)
                        self.assertEqual(set(r['error']), {'class', 'desc'})
                self.assertEqual([reply_summary(r) for r in replies],
                                 expected)
                self.assertIn('return', c.last_sync)


def _make_malformed_test(chunks, expected):
    def test(self):
        self.check_malformed(chunks, expected)
    return test


for _name, _chunks, _expected in MALFORMED:
    _t = _make_malformed_test(_chunks, _expected)
    _t.__name__ = 'test_malformed_' + _name
    _t.__doc__ = 'malformed input %r' % (_chunks,)
    setattr(MalformedInputTest, _t.__name__, _t)


# ---------------------------------------------------------------------------
# Commands and argument decoding
# ---------------------------------------------------------------------------

def first_required_member(schema_by_name, command):
    """Name of the first member without a default in @command's arg-type."""
    entry = schema_by_name[command]
    args = schema_by_name[entry['arg-type']]
    for m in args.get('members', []):
        if 'default' not in m:
            return m['name']
    return None


class CommandTest(QMPTestCase):

    def test_unknown_command(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                self.assertExactError(
                    c.cmd('no-such-cmd'), CNF,
                    'The command no-such-cmd has not been found')

    def test_query_commands_shape(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                r = c.cmd('query-commands')
                self.assertEqual(shape(r), {'return': [{'name': 'str'}]})
                names = [x['name'] for x in r['return']]
                self.assertEqual(len(names), len(set(names)))
                for core in CORE_COMMANDS:
                    self.assertIn(core, names)

    def test_empty_arguments_accepted(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                self.assertQmpSuccess(c.cmd('query-version', {}))

    def test_unexpected_argument_rejected(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                self.assertExactError(c.cmd('query-version', {'x-bogus': 1}),
                                      GE, "Parameter 'x-bogus' is unexpected")

    def test_mistyped_boolean_argument_rejected(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                self.require_commands(c, 'query-named-block-nodes')
                for bad in ('yes', 1, None):
                    self.assertExactError(
                        c.cmd('query-named-block-nodes', flat=bad), GE,
                        "Invalid parameter type for 'flat', "
                        "expected: boolean")
                self.assertQmpSuccess(c.cmd('query-named-block-nodes',
                                            flat=True))

    def test_unexpected_argument_next_to_valid_one_rejected(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                self.require_commands(c, 'query-named-block-nodes')
                self.assertExactError(
                    c.cmd('query-named-block-nodes', flat=True, bogus=1), GE,
                    "Parameter 'bogus' is unexpected")

    def test_missing_argument_rejected(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                self.require_commands(c, 'block-dirty-bitmap-add')
                self.assertExactError(c.cmd('block-dirty-bitmap-add'), GE,
                                      "Parameter 'node' is missing")
                self.assertExactError(
                    c.cmd('block-dirty-bitmap-add', node='x'), GE,
                    "Parameter 'name' is missing")

    def test_every_command_rejects_unexpected_argument(self):
        """Each listed command called with {"x-bogus": 1} reports the first
        missing required parameter, or else the unexpected one; replies
        equal qsd's for commands both have (differential)."""
        iotests.require_binary(self.blkd, 'BLKD')
        c = self.client(self.blkd)
        schema = {e['name']: e for e in c.command('query-qmp-schema')}
        names = self.commands_of(c)
        names.sort(key=lambda n: n == 'quit')      # quit last
        ref = None
        if self.have_qsd():
            ref = self.client(self.qsd)
            ref_names = set(self.commands_of(ref))
        for name in names:
            with self.subTest(command=name):
                r = c.cmd(name, {'x-bogus': 1})
                req = first_required_member(schema, name)
                if req is None:
                    want = "Parameter 'x-bogus' is unexpected"
                else:
                    want = "Parameter '%s' is missing" % req
                self.assertExactError(r, GE, want)
                if ref is not None and name in ref_names:
                    self.assertEqual(r, ref.cmd(name, {'x-bogus': 1}))
        self.assertTrue(c.cmd('query-version'), 'daemon still answers')


# ---------------------------------------------------------------------------
# query-qmp-schema
# ---------------------------------------------------------------------------

ENTRY_KEYS = {
    # meta-type: (required keys, optional keys)
    'builtin': ({'name', 'meta-type', 'json-type'}, set()),
    'enum': ({'name', 'meta-type', 'members', 'values'}, {'features'}),
    'array': ({'name', 'meta-type', 'element-type'}, set()),
    'object': ({'name', 'meta-type', 'members'},
               {'tag', 'variants', 'features'}),
    'alternate': ({'name', 'meta-type', 'members'}, {'features'}),
    'command': ({'name', 'meta-type', 'arg-type', 'ret-type'},
                {'allow-oob', 'features'}),
    'event': ({'name', 'meta-type', 'arg-type'}, {'features'}),
}


def schema_refs(entry):
    """Type names referenced by a schema entry."""
    mt = entry['meta-type']
    refs = []
    if mt in ('command', 'event'):
        refs.append(entry['arg-type'])
        if mt == 'command':
            refs.append(entry['ret-type'])
    elif mt == 'array':
        refs.append(entry['element-type'])
    elif mt in ('object', 'alternate'):
        refs += [m['type'] for m in entry['members']]
        refs += [v['type'] for v in entry.get('variants', [])]
    return refs


# What blkd adds to QEMU's interface on purpose, documented in
# docs/interop/bitmaps.rst: enum values and union branches qsd lacks.
BLKD_EXTENSIONS = {
    'block-dirty-bitmap-copy',      # bitmap copy command and transaction action
    'differential',                 # backup sync mode
}


class SchemaComparer:
    """Structural comparison of a type in schema B (blkd) against A (qsd),
    ignoring the opaque type names and blkd's documented extensions."""

    def __init__(self, b, q):
        self.b = {e['name']: e for e in b}
        self.q = {e['name']: e for e in q}
        self.errors = []
        self.seen = set()

    def err(self, path, msg):
        self.errors.append('%s: %s' % (path, msg))

    def compare(self, bn, qn, path, exact):
        key = (bn, qn, exact)
        if key in self.seen:
            return
        self.seen.add(key)
        be, qe = self.b.get(bn), self.q.get(qn)
        if be is None or qe is None:
            self.err(path, 'missing type %r/%r' % (bn, qn))
            return
        mt = be['meta-type']
        if mt != qe['meta-type']:
            self.err(path, 'meta-type %s vs %s' % (mt, qe['meta-type']))
            return
        if exact and be.get('features', []) != qe.get('features', []):
            self.err(path, 'features %r vs %r' % (be.get('features'),
                                                   qe.get('features')))
        if mt == 'builtin':
            if bn != qn or be['json-type'] != qe['json-type']:
                self.err(path, 'builtin %s vs %s' % (bn, qn))
        elif mt == 'enum':
            if exact:
                if be['members'] != qe['members'] or \
                        be['values'] != qe['values']:
                    self.err(path, 'enum %r vs %r' % (be['values'],
                                                      qe['values']))
            elif not set(be['values']) - BLKD_EXTENSIONS <= set(qe['values']):
                self.err(path, 'enum values not in qsd: %r'
                         % sorted(set(be['values']) - set(qe['values'])
                                  - BLKD_EXTENSIONS))
        elif mt == 'array':
            self.compare(be['element-type'], qe['element-type'],
                         path + '[]', exact)
        elif mt == 'alternate':
            if len(be['members']) != len(qe['members']):
                self.err(path, 'alternate arity differs')
                return
            for i, (bm, qm) in enumerate(zip(be['members'], qe['members'])):
                self.compare(bm['type'], qm['type'], '%s|%d' % (path, i),
                             exact)
        elif mt == 'object':
            self.compare_object(be, qe, path, exact)
        elif mt in ('command', 'event'):
            self.compare(be['arg-type'], qe['arg-type'], path + '(args)',
                         exact)
            if mt == 'command':
                self.compare(be['ret-type'], qe['ret-type'],
                             path + '(return)', exact)
                if be.get('allow-oob', False) != qe.get('allow-oob', False):
                    self.err(path, 'allow-oob differs')

    def compare_object(self, be, qe, path, exact):
        bm = {m['name']: m for m in be['members']}
        qm = {m['name']: m for m in qe['members']}
        if exact:
            if [m['name'] for m in be['members']] != \
                    [m['name'] for m in qe['members']]:
                self.err(path, 'members %r vs %r' % (list(bm), list(qm)))
        else:
            extra = set(bm) - set(qm)
            if extra:
                self.err(path, 'members not in qsd: %r' % sorted(extra))
            missing = [n for n, m in qm.items()
                       if 'default' not in m and n not in bm]
            if missing:
                self.err(path, 'required members missing: %r' % missing)
        for n in bm:
            if n not in qm:
                continue
            if ('default' in bm[n]) != ('default' in qm[n]):
                self.err('%s.%s' % (path, n), 'optionality differs')
            if 'default' in bm[n] and 'default' in qm[n] and \
                    bm[n]['default'] != qm[n]['default']:
                self.err('%s.%s' % (path, n), 'default differs')
            if exact and bm[n].get('features', []) != \
                    qm[n].get('features', []):
                self.err('%s.%s' % (path, n), 'features differ')
            self.compare(bm[n]['type'], qm[n]['type'], '%s.%s' % (path, n),
                         exact)
        if be.get('tag') != qe.get('tag'):
            self.err(path, 'tag %r vs %r' % (be.get('tag'), qe.get('tag')))
        bv = {v['case']: v['type'] for v in be.get('variants', [])}
        qv = {v['case']: v['type'] for v in qe.get('variants', [])}
        if exact and list(bv) != list(qv):
            self.err(path, 'variants %r vs %r' % (list(bv), list(qv)))
        elif not set(bv) - BLKD_EXTENSIONS <= set(qv):
            self.err(path, 'variants not in qsd: %r'
                     % sorted(set(bv) - set(qv) - BLKD_EXTENSIONS))
        for case in bv:
            if case in qv:
                self.compare(bv[case], qv[case], '%s{%s}' % (path, case),
                             exact)


class SchemaTest(QMPTestCase):

    def schema(self, binary):
        return self.client(binary).command('query-qmp-schema')

    def test_schema_commands_match_query_commands(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                c = self.client(binary)
                listed = set(self.commands_of(c))
                schema = c.command('query-qmp-schema')
                in_schema = {e['name'] for e in schema
                             if e['meta-type'] == 'command'}
                self.assertEqual(sorted(listed - in_schema), [],
                                 'listed but not in schema')
                self.assertEqual(sorted(in_schema - listed), [],
                                 'in schema but not listed')

    def test_schema_entries_have_valid_members(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                for e in self.schema(binary):
                    mt = e.get('meta-type')
                    self.assertIn(mt, ENTRY_KEYS, e)
                    req, opt = ENTRY_KEYS[mt]
                    self.assertLessEqual(req, set(e), e)
                    self.assertLessEqual(set(e), req | opt, e)
                    for m in e.get('members', []) if mt == 'object' else []:
                        self.assertLessEqual({'name', 'type'}, set(m), e)
                        self.assertLessEqual(
                            set(m), {'name', 'type', 'default', 'features'})
                        if 'default' in m:
                            self.assertIsNone(m['default'], e)
                    if mt == 'enum':
                        self.assertEqual([m['name'] for m in e['members']],
                                         e['values'], e)
                        for m in e['members']:
                            self.assertLessEqual(set(m),
                                                 {'name', 'features'})
                    if mt == 'alternate':
                        for m in e['members']:
                            self.assertEqual(set(m), {'type'}, e)
                    for v in e.get('variants', []):
                        self.assertEqual(set(v), {'case', 'type'}, e)
                    if 'variants' in e or 'tag' in e:
                        self.assertIn('tag', e)
                        self.assertIn('variants', e)
                        self.assertIn(e['tag'],
                                      [m['name'] for m in e['members']])

    def test_schema_type_names_are_opaque(self):
        """Non-builtin type names are decimal numbers, arrays '[elem]'."""
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                names = set()
                for e in self.schema(binary):
                    n, mt = e['name'], e['meta-type']
                    self.assertNotIn(n, names, 'duplicate name')
                    names.add(n)
                    if mt in ('command', 'event'):
                        continue
                    if mt == 'builtin':
                        self.assertEqual(BUILTIN_JSON_TYPES.get(n),
                                         e['json-type'], e)
                    elif mt == 'array':
                        self.assertEqual(n, '[%s]' % e['element-type'], e)
                    else:
                        self.assertRegex(n, r'^(0|[1-9][0-9]*)$', e)

    def test_schema_argumentless_commands_use_empty_object(self):
        """quit/query-version take no arguments: their arg-type is an object
        without members (qsd names it "0"), quit's ret-type too."""
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                by = {e['name']: e for e in self.schema(binary)}
                for cmd in ('quit', 'query-version', 'query-commands',
                            'query-qmp-schema'):
                    arg = by[by[cmd]['arg-type']]
                    self.assertEqual(arg['meta-type'], 'object')
                    self.assertEqual(arg['members'], [], cmd)
                    self.assertNotIn('variants', arg)
                self.assertEqual(by['quit']['ret-type'],
                                 by['quit']['arg-type'])

    def test_schema_references_resolve(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                schema = self.schema(binary)
                names = {e['name'] for e in schema}
                for e in schema:
                    for ref in schema_refs(e):
                        self.assertIn(ref, names, e)

    def test_schema_builtins_match_qsd(self):
        """differential"""
        got = {}
        for label, binary in self.daemon_binaries(need_qsd=True):
            got[label] = {e['name']: e for e in self.schema(binary)
                          if e['meta-type'] == 'builtin'}
        for n, e in got['blkd'].items():
            self.assertEqual(e, got['qsd'].get(n))

    def test_schema_core_commands_identical_to_qsd(self):
        """differential: the core commands' argument and return types are
        structurally identical to qsd's (names aside)."""
        schemas = {}
        for label, binary in self.daemon_binaries(need_qsd=True):
            schemas[label] = self.schema(binary)
        cmp = SchemaComparer(schemas['blkd'], schemas['qsd'])
        for name in CORE_COMMANDS:
            cmp.compare(name, name, name, exact=True)
        if cmp.errors:
            self.fail('schema differences:\n  ' + '\n  '.join(cmp.errors))

    def test_schema_common_commands_compatible_with_qsd(self):
        """differential: for every command both have, blkd's argument and
        return types are a compatible subset of qsd's (no invented members,
        all of qsd's required members present, same optionality)."""
        schemas = {}
        for label, binary in self.daemon_binaries(need_qsd=True):
            schemas[label] = self.schema(binary)
        cmp = SchemaComparer(schemas['blkd'], schemas['qsd'])
        qcmds = {e['name'] for e in schemas['qsd']
                 if e['meta-type'] == 'command'}
        for e in schemas['blkd']:
            if e['meta-type'] == 'command' and e['name'] in qcmds:
                cmp.compare(e['name'], e['name'], e['name'], exact=False)
        if cmp.errors:
            self.fail('schema differences:\n  ' + '\n  '.join(cmp.errors))

    def test_schema_common_events_compatible_with_qsd(self):
        """differential"""
        schemas = {}
        for label, binary in self.daemon_binaries(need_qsd=True):
            schemas[label] = self.schema(binary)
        cmp = SchemaComparer(schemas['blkd'], schemas['qsd'])
        qev = {e['name'] for e in schemas['qsd']
               if e['meta-type'] == 'event'}
        for e in schemas['blkd']:
            if e['meta-type'] == 'event':
                if e['name'] in qev:
                    cmp.compare(e['name'], e['name'], e['name'], exact=False)
        if cmp.errors:
            self.fail('schema differences:\n  ' + '\n  '.join(cmp.errors))


# ---------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------

EXPORT_COMMANDS = ('blockdev-add', 'nbd-server-start', 'block-export-add',
                   'block-export-del')


class EventTest(QMPTestCase):

    def start_with_export(self, binary, extra_monitor=False):
        """Start a daemon with a file node exported over NBD; returns
        (daemon, client[, second client])."""
        d = Daemon(self, name=os.path.basename(binary))
        args = []
        if extra_monitor:
            args = ['--chardev', 'socket,id=qmp1,path=%s,server=on,wait=off'
                    % d.path('qmp1.sock'), '--monitor', 'chardev=qmp1']
        iotests.require_binary(binary)
        d.start(binary, *args)
        c = d.qmp()
        c.negotiate()
        self.require_commands(c, *EXPORT_COMMANDS)
        img = d.path('img.raw')
        with open(img, 'wb') as f:
            f.truncate(1 << 20)
        c.command('blockdev-add', driver='file', node_name='f0',
                  filename=img)
        c.command('nbd-server-start',
                  addr={'type': 'unix', 'data': {'path': d.path('nbd.sock')}})
        c.command('block-export-add', type='nbd', id='e0', node_name='f0')
        others = []
        if extra_monitor:
            c2 = d.qmp(d.path('qmp1.sock'))
            c2.negotiate()
            others.append(c2)
        return (d, c, *others)

    def assertEventFormat(self, ev, name, data):
        self.assertEqual(set(ev), {'event', 'data', 'timestamp'}, ev)
        self.assertEqual(ev['event'], name)
        self.assertEqual(ev['data'], data)
        ts = ev['timestamp']
        self.assertEqual(set(ts), {'seconds', 'microseconds'})
        self.assertIsInstance(ts['seconds'], int)
        self.assertIsInstance(ts['microseconds'], int)
        self.assertTrue(0 <= ts['microseconds'] < 1000000, ts)
        self.assertLess(abs(ts['seconds'] - time.time()), 60, ts)

    def test_event_format(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d, c = self.start_with_export(binary)
                self.assertEqual(c.cmd('block-export-del', id='e0'),
                                 {'return': {}})
                ev = c.wait_event('BLOCK_EXPORT_DELETED')
                self.assertEventFormat(ev, 'BLOCK_EXPORT_DELETED',
                                       {'id': 'e0'})

    def test_event_shape_matches_qsd(self):
        """differential"""
        evs = {}
        for label, binary in self.daemon_binaries(need_qsd=True):
            d, c = self.start_with_export(binary)
            c.command('block-export-del', id='e0')
            evs[label] = c.wait_event('BLOCK_EXPORT_DELETED')
        self.assertSameShape(evs['blkd'], evs['qsd'])
        self.assertEqual(list(evs['blkd']), list(evs['qsd']), 'key order')

    def test_event_sent_to_every_monitor(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d, c, c2 = self.start_with_export(binary, extra_monitor=True)
                c.command('block-export-del', id='e0')
                e1 = c.wait_event('BLOCK_EXPORT_DELETED')
                e2 = c2.wait_event('BLOCK_EXPORT_DELETED')
                self.assertEqual(e1, e2)


# ---------------------------------------------------------------------------
# Monitors and connections
# ---------------------------------------------------------------------------

class MonitorTest(QMPTestCase):

    def start_two_monitors(self, binary):
        d = Daemon(self, name=os.path.basename(binary))
        d.start(binary, '--chardev',
                'socket,id=qmp1,path=%s,server=on,wait=off'
                % d.path('qmp1.sock'), '--monitor', 'chardev=qmp1')
        d.wait_socket(d.path('qmp1.sock'))
        return d

    def test_two_monitors_usable_at_once(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                iotests.require_binary(binary)
                d = self.start_two_monitors(binary)
                a = d.qmp()
                b = d.qmp(d.path('qmp1.sock'))
                a.negotiate()
                self.assertExactError(b.cmd('query-version'), CNF,
                                      NEGOTIATION_DESC)
                b.negotiate()
                for i in range(3):
                    self.assertEqual(a.cmd('query-version', cmd_id=i)['id'],
                                     i)
                    self.assertEqual(b.cmd('query-version', cmd_id=i)['id'],
                                     i)
                # interleaved pipelining on both
                a.send_bytes(b'{"execute":"query-version","id":"a"}')
                b.send_bytes(b'{"execute":"query-version","id":"b"}')
                self.assertEqual(b.recv_reply()['id'], 'b')
                self.assertEqual(a.recv_reply()['id'], 'a')

    def test_second_client_waits_for_first_to_disconnect(self):
        """A socket chardev serves one client at a time (QEMU semantics):
        a second client gets its greeting only after the first leaves."""
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                a = d.qmp()
                a.negotiate()
                b = QMPClient(d.sock_path, read_greeting=False)
                self.addCleanup(b.close)
                with self.assertRaises(QMPTimeout):
                    b.recv_msg(timeout=0.5)
                self.assertQmpSuccess(a.cmd('query-version'))
                a.close()
                g = b.recv_msg()
                self.assertIn('QMP', g)
                self.assertExactError(b.cmd('query-version'), CNF,
                                      NEGOTIATION_DESC)

    def test_disconnect_mid_command_leaves_daemon_working(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                c = d.qmp()
                c.negotiate()
                c.send_bytes(b'{"execute":"query-qmp-sch')
                c.close()
                c = d.qmp()
                c.negotiate()
                self.assertQmpSuccess(c.cmd('query-version'))
                self.assertTrue(d.is_running())

    def test_disconnect_before_reading_reply_leaves_daemon_working(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                for _ in range(3):
                    c = d.qmp()
                    c.negotiate()
                    c.send_bytes(b'{"execute":"query-qmp-schema"}' * 5)
                    c.close()
                c = d.qmp()
                c.negotiate()
                self.assertQmpSuccess(c.cmd('query-version'))
                self.assertTrue(d.is_running())

    def test_disconnect_before_greeting_leaves_daemon_working(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                for _ in range(3):
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(d.sock_path)
                    s.close()
                c = d.qmp()
                c.negotiate()
                self.assertQmpSuccess(c.cmd('query-version'))

    def test_tcp_monitor(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                iotests.require_binary(binary)
                port = free_tcp_port()
                d = Daemon(self, name=os.path.basename(binary))
                d.start(binary, '--chardev',
                        'socket,id=t,host=127.0.0.1,port=%d,server=on,'
                        'wait=off' % port, '--monitor', 'chardev=t',
                        monitor=False)
                c = d.qmp(('127.0.0.1', port))
                self.assertIn('QMP', c.greeting)
                c.negotiate()
                self.assertQmpSuccess(c.cmd('query-version'))
                d.stop(method='quit')

    def test_unix_socket_mode_0600(self):
        """blkd-only: the QMP socket is created owner-only."""
        self.skip_if_not_blkd(reason='blkd creates QMP sockets 0600 (qsd '
                              'follows the umask)')
        d = self.start_daemon(self.blkd)
        mode = os.stat(d.sock_path).st_mode
        self.assertTrue(stat.S_ISSOCK(mode))
        self.assertEqual(stat.S_IMODE(mode), 0o600)

    def test_stale_socket_file_is_replaced(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                iotests.require_binary(binary)
                d = Daemon(self, name=os.path.basename(binary))
                stale = socket.socket(socket.AF_UNIX)
                stale.bind(d.sock_path)
                stale.close()
                d.start(binary)
                c = d.qmp()
                c.negotiate()
                self.assertQmpSuccess(c.cmd('query-version'))


# ---------------------------------------------------------------------------
# Lifecycle: quit, signals, pidfile
# ---------------------------------------------------------------------------

class LifecycleTest(QMPTestCase):

    def test_quit_replies_then_exits_zero(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                c = d.qmp()
                c.negotiate()
                self.assertEqual(c.cmd('quit'), {'return': {}})
                self.assertEqual(c.expect_eof(), [])
                self.assertEqual(d.wait(), 0)
                self.assertEqual(d.stderr(), '')

    def test_quit_echoes_id(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                c = d.qmp()
                c.negotiate()
                self.assertEqual(c.cmd('quit', cmd_id='bye'),
                                 {'return': {}, 'id': 'bye'})
                self.assertEqual(d.wait(), 0)

    def test_quit_sends_no_event(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                c = d.qmp()
                c.negotiate()
                c.cmd('quit')
                c.expect_eof()
                self.assertEqual(c.get_events(), [])
                d.wait()

    def test_quit_removes_socket_and_pidfile(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                self.assertTrue(os.path.exists(d.pidfile))
                d.stop(method='quit')
                self.assertFalse(os.path.exists(d.sock_path))
                self.assertFalse(os.path.exists(d.pidfile))

    def test_quit_before_negotiation_rejected(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                c = d.qmp()
                self.assertExactError(c.cmd('quit'), CNF, NEGOTIATION_DESC)
                self.assertTrue(d.is_running())

    def check_signal(self, sig):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                c = d.qmp()
                c.negotiate()
                os.kill(d.pid, sig)
                self.assertEqual(c.expect_eof(), [])
                self.assertEqual(c.get_events(), [])
                self.assertEqual(d.wait(), 0)
                self.assertEqual(d.stderr(), '')
                self.assertFalse(os.path.exists(d.sock_path))
                self.assertFalse(os.path.exists(d.pidfile))

    def test_sigterm_exits_zero_and_cleans_up(self):
        self.check_signal(signal.SIGTERM)

    def test_sigint_exits_zero_and_cleans_up(self):
        self.check_signal(signal.SIGINT)

    def test_sighup_exits_zero_and_cleans_up(self):
        self.check_signal(signal.SIGHUP)

    def test_pidfile_contains_pid(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                with open(d.pidfile) as f:
                    self.assertEqual(f.read(), '%d\n' % d.pid)

    def test_pidfile_mode_0600(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = self.start_daemon(binary)
                self.assertEqual(stat.S_IMODE(os.stat(d.pidfile).st_mode),
                                 0o600)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

# (name, argv (with {tmp}), message after the "prog: " prefix (with {tmp}))
CMDLINE_ERRORS = [
    ('unknown_long_option', ['--bogus'], "unrecognized option '--bogus'"),
    ('unknown_short_option', ['-x'], "invalid option -- 'x'"),
    ('missing_option_argument', ['--pidfile'],
     "option '--pidfile' requires an argument"),
    ('missing_blockdev_argument', ['--blockdev'],
     "option '--blockdev' requires an argument"),
    ('unexpected_positional_argument', ['extra-arg'],
     'extra-arg: Unexpected argument'),
    ('monitor_unknown_chardev', ['--monitor', 'chardev=nosuch'],
     '--monitor chardev=nosuch: chardev "nosuch" not found'),
    ('monitor_before_its_chardev',
     ['--monitor', 'chardev=c0',
      '--chardev', 'socket,id=c0,path={tmp}/s,server=on,wait=off'],
     '--monitor chardev=c0: chardev "c0" not found'),
    ('monitor_readline_mode',
     ['--chardev', 'socket,id=c0,path={tmp}/s,server=on,wait=off',
      '--monitor', 'chardev=c0,mode=readline'],
     '--monitor chardev=c0,mode=readline: Only QMP is supported'),
    ('monitor_unexpected_parameter',
     ['--chardev', 'socket,id=c0,path={tmp}/s,server=on,wait=off',
      '--monitor', 'chardev=c0,bogus=1'],
     "--monitor chardev=c0,bogus=1: Parameter 'bogus' is unexpected"),
    ('monitor_chardev_in_use',
     ['--chardev', 'socket,id=c0,path={tmp}/s,server=on,wait=off',
      '--monitor', 'chardev=c0', '--monitor', 'chardev=c0'],
     "--monitor chardev=c0: Device 'c0' is in use"),
    ('chardev_without_id',
     ['--chardev', 'socket,path={tmp}/s,server=on,wait=off'],
     '--chardev socket,path={tmp}/s,server=on,wait=off: '
     'chardev: no id specified'),
    ('chardev_unknown_backend', ['--chardev', 'nosuchbackend,id=c0'],
     "--chardev nosuchbackend,id=c0: 'nosuchbackend' is not a valid char "
     "driver name"),
    ('chardev_unexpected_parameter',
     ['--chardev', 'socket,id=c0,path={tmp}/s,server=on,wait=off,bogus=1'],
     "--chardev socket,id=c0,path={tmp}/s,server=on,wait=off,bogus=1: "
     "Invalid parameter 'bogus'"),
    ('chardev_path_in_missing_directory',
     ['--chardev', 'socket,id=c0,path={tmp}/nodir/s,server=on,wait=off'],
     '--chardev socket,id=c0,path={tmp}/nodir/s,server=on,wait=off: '
     'Failed to bind socket to {tmp}/nodir/s: No such file or directory'),
    ('chardev_tcp_without_port',
     ['--chardev', 'socket,id=c0,host=127.0.0.1,server=on,wait=off'],
     '--chardev socket,id=c0,host=127.0.0.1,server=on,wait=off: '
     'chardev: socket: no port given'),
    ('blockdev_missing_driver', ['--blockdev', 'node-name=x'],
     "--blockdev node-name=x: Parameter 'driver' is missing"),
    ('blockdev_unknown_driver',
     ['--blockdev', 'driver=nosuchdrv,node-name=x'],
     "--blockdev driver=nosuchdrv,node-name=x: Parameter 'driver' does not "
     "accept value 'nosuchdrv'"),
    ('blockdev_bad_json', ['--blockdev', '{"driver":'],
     '--blockdev {"driver":: JSON parse error, premature EOI'),
    ('blockdev_mistyped_json_member',
     ['--blockdev', '{"driver":"file","filename":5}'],
     '--blockdev {"driver":"file","filename":5}: Invalid parameter type '
     "for 'filename', expected: string"),
    ('blockdev_unexpected_parameter',
     ['--blockdev', 'file,node-name=n0,filename={tmp}/img,bogus=1'],
     "--blockdev file,node-name=n0,filename={tmp}/img,bogus=1: Parameter "
     "'bogus' is unexpected"),
    ('blockdev_missing_file',
     ['--blockdev', 'file,node-name=n0,filename={tmp}/noimg'],
     "--blockdev file,node-name=n0,filename={tmp}/noimg: Could not open "
     "'{tmp}/noimg': No such file or directory"),
    ('pidfile_in_missing_directory', ['--pidfile', '{tmp}/nodir/pid'],
     "cannot create PID file: Could not create '{tmp}/nodir/pid': "
     "No such file or directory"),
]

PROGRAM_NAMES = ('blkd', 'qemu-storage-daemon')


class CommandLineTest(QMPTestCase):

    def check_cmdline_error(self, argv, message):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                d = Daemon(self, name='cmdline')      # for its temp dir
                args = [a.replace('{tmp}', d.dir) for a in argv]
                res = run_daemon(binary, *args, timeout=10)
                self.assertIsNotNone(res.returncode,
                                     'daemon did not exit: %r' % args)
                self.assertEqual(res.returncode, 1, res.stderr)
                lines = res.stderr.splitlines()
                self.assertEqual(len(lines), 1, res.stderr)
                prog, msg = strip_prog_prefix(lines[0])
                self.assertIsNotNone(prog, lines[0])
                self.assertIn(os.path.basename(prog), PROGRAM_NAMES,
                              lines[0])
                self.assertEqual(msg, message.replace('{tmp}', d.dir))
                self.assertEqual(res.stdout, '')

    def test_help_exits_zero(self):
        for label, binary in self.daemon_binaries():
            for opt in ('-h', '--help'):
                with self.subTest(daemon=label, option=opt):
                    res = run_daemon(binary, opt)
                    self.assertEqual(res.returncode, 0, res.stderr)
                    self.assertEqual(res.stderr, '')
                    first = res.stdout.splitlines()[0]
                    self.assertRegex(first, r'^Usage: \S+ \[options\]$')

    def test_help_lists_qsd_options(self):
        options = ('--help', '--version', '--blockdev', '--chardev',
                   '--daemonize', '--export', '--monitor', '--nbd-server',
                   '--object', '--pidfile')
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                out = run_daemon(binary, '--help').stdout
                for o in options:
                    self.assertIn(o, out)

    def test_help_stops_option_processing(self):
        for label, binary in self.daemon_binaries():
            with self.subTest(daemon=label):
                res = run_daemon(binary, '-h', '--bogus')
                self.assertEqual(res.returncode, 0)
                self.assertTrue(res.stdout.startswith('Usage: '))

    def test_version_exits_zero(self):
        for label, binary in self.daemon_binaries():
            for opt in ('-V', '--version'):
                with self.subTest(daemon=label, option=opt):
                    res = run_daemon(binary, opt)
                    self.assertEqual(res.returncode, 0, res.stderr)
                    self.assertEqual(res.stderr, '')
                    first = res.stdout.splitlines()[0]
                    self.assertRegex(first, r'^\S+ version \S+')

    def test_version_names_blkd(self):
        """blkd-only"""
        self.skip_if_not_blkd()
        res = run_daemon(self.blkd, '--version')
        self.assertTrue(res.stdout.startswith('blkd version '), res.stdout)


def _make_cmdline_test(argv, message):
    def test(self):
        self.check_cmdline_error(argv, message)
    return test


for _name, _argv, _msg in CMDLINE_ERRORS:
    _t = _make_cmdline_test(_argv, _msg)
    _t.__name__ = 'test_cmdline_' + _name
    _t.__doc__ = 'command line %r fails with %r' % (_argv, _msg)
    setattr(CommandLineTest, _t.__name__, _t)


if __name__ == '__main__':
    unittest.main()
