#!/usr/bin/python3
"""The harness itself: iotests.QMPClient against a scripted peer, for what
a daemon does only by chance (no daemon runs here)."""
import json
import os
import socket
import tempfile
import threading
import unittest

import iotests


class QMPClientTest(unittest.TestCase):

    def peer(self, answer):
        """A QMP peer on a UNIX socket: the greeting, then @answer (bytes)
        in one write for the first command; returns the socket's path."""
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        path = os.path.join(tmp.name, 'qmp.sock')
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(server.close)
        server.bind(path)
        server.listen(1)

        def serve():
            conn, _ = server.accept()
            with conn:
                conn.sendall(b'{"QMP": {"version": {}, "capabilities": []}}\r\n')
                conn.recv(4096)
                conn.sendall(answer)
                conn.recv(4096)     # until the client closes

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        self.addCleanup(thread.join, 10)
        return path

    def test_events_read_with_a_reply_are_returned(self):
        """A reply and the events after it in one read: get_events()
        returns those events though nothing more arrives."""
        event = {'event': 'JOB_STATUS_CHANGE', 'data': {'id': 'j',
                                                        'status': 'null'}}
        path = self.peer(b'{"return": {}}\r\n' +
                         json.dumps(event).encode() + b'\r\n')
        with iotests.QMPClient(path) as qmp:
            self.assertEqual(qmp.cmd('job-cancel', id='j'), {'return': {}})
            self.assertEqual(qmp.get_events(), [event])


if __name__ == '__main__':
    unittest.main()
