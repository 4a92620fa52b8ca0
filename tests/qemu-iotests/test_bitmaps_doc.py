#!/usr/bin/python3
"""Runs every example of docs/interop/bitmaps.rst against blkd.

The guide's examples are code blocks of '->' requests and '<-' replies,
and of '$ ' commands (run without a shell) followed by their exact
output, up to a blank line or the next step; an 'Options:' paragraph
before them says how to start the daemon, and the blocks after it share
that daemon. An 'Image:' paragraph before the
options names qemu-img commands that make the images it uses; they run in
a directory kept for the whole guide, where the daemons and the commands
run too, so a later daemon finds what an earlier one stored and relative
socket paths work. A reply matches when every
member it shows is in the real reply with that value (lists: same length,
element by element), so a guide can leave out members that do not matter.
"""
import json
import os
import re
import shlex
import shutil
import tempfile
import unittest

import iotests

GUIDE = os.path.join(iotests.REPO_ROOT, 'docs', 'interop', 'bitmaps.rst')


def paragraph(lines, i):
    """The paragraph starting at line i as one line, and the line after."""
    text = lines[i]
    i += 1
    while i < len(lines) and lines[i].strip():
        text += ' ' + lines[i].strip()
        i += 1
    return text, i


def parse_guide(path):
    """[(options, image commands, steps), ...] in guide order; a step is
    ('qmp', request, expected reply) or ('run', argv, expected output
    lines)."""
    with open(path, encoding='utf-8') as f:
        lines = f.read().splitlines()
    sections = []
    images = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith('Image:'):
            text, i = paragraph(lines, i)
            images += [shlex.split(c) for c in re.findall(r'``([^`]+)``', text)]
            continue
        if line.startswith('Options:'):
            text, i = paragraph(lines, i)
            options = re.findall(r'``([^`]+)``', text)
            sections.append(([a for o in options for a in o.split(' ', 1)],
                             images, []))
            images = []
            continue
        if line.strip().startswith('-> '):
            request = json.loads(line.strip()[3:])
            reply = lines[i + 1].strip()
            assert reply.startswith('<- '), 'request without reply: %s' % line
            sections[-1][2].append(('qmp', request, json.loads(reply[3:])))
            i += 2
            continue
        if line.strip().startswith('$ '):
            argv = shlex.split(line.strip()[2:])
            i += 1
            output = []
            while i < len(lines) and lines[i].strip() and \
                    not lines[i].strip().startswith(('-> ', '$ ')):
                output.append(lines[i].strip())
                i += 1
            sections[-1][2].append(('run', argv, output))
            continue
        i += 1
    return sections


def matches(expected, actual):
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual) and
                all(matches(e, a) for e, a in zip(expected, actual)))
    return expected == actual


class TestBitmapsGuide(unittest.TestCase):
    def test_guide_has_examples(self):
        sections = parse_guide(GUIDE)
        self.assertGreaterEqual(len(sections), 8)
        steps = [step[0] for s in sections for step in s[2]]
        self.assertGreaterEqual(steps.count('qmp'), 28)
        self.assertGreaterEqual(steps.count('run'), 2)
        for _, images, _ in sections:
            for command in images:
                self.assertEqual(command[0], 'qemu-img', command)

    def test_every_example_replies_as_documented(self):
        iotests.require_binary(iotests.BLKD)
        # The guide documents blkd, extensions included (QEMU 7.2 crashes on
        # one of its examples, the empty merge).
        if not iotests.binary_is_blkd(iotests.BLKD):
            self.skipTest('the guide is blkd\'s')
        workdir = tempfile.mkdtemp(prefix='iotests-guide-')
        self.addCleanup(shutil.rmtree, workdir, True)
        for n, (options, images, steps) in enumerate(parse_guide(GUIDE)):
            with self.subTest(section=n, options=options):
                for command in images:
                    iotests.run(iotests.skip_if_missing(command[0]),
                                *command[1:], cwd=workdir, check=True)
                daemon = iotests.Daemon(self, name='guide%d' % n)
                daemon.start(iotests.BLKD, *options, cwd=workdir)
                qmp = daemon.qmp(negotiate=True)
                for kind, what, expected in steps:
                    if kind == 'run':
                        r = iotests.run(iotests.skip_if_missing(what[0]),
                                        *what[1:], cwd=workdir)
                        got = [x.strip() for x in r.stdout.splitlines()]
                        self.assertEqual((r.returncode, got), (0, expected),
                                         '%s\n%s' % (what, r.stderr))
                        continue
                    reply = qmp.cmd_raw(what)
                    self.assertTrue(matches(expected, reply),
                                    'request %s\nexpected %s\ngot      %s'
                                    % (json.dumps(what), json.dumps(expected),
                                       json.dumps(reply)))
                daemon.stop()


if __name__ == '__main__':
    unittest.main()
