"""Reads QAPI schema files.

The syntax is QEMU's: JSON objects with single-quoted strings, '#' comments
(documentation lives there), and {'include': 'file.json'} directives. Each
top-level object is one definition; this module only turns text into Python
values with their source location, and leaves meaning to schema.py.
"""
import os
import re


class QAPIError(Exception):
    def __init__(self, where, msg):
        super().__init__(f"{where}: {msg}")


_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+) | (?P<nl>\n) | (?P<comment>\#[^\n]*)
  | (?P<punct>[{}\[\]:,])
  | '(?P<str>(?:[^'\\\n]|\\.)*)'
  | (?P<word>true|false)
""", re.VERBOSE)


def _tokens(text, fname):
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise QAPIError(f"{fname}:{line}", f"stray text {text[pos:pos + 10]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == 'nl':
            line += 1
        elif kind in ('ws', 'comment'):
            continue
        elif kind == 'str':
            yield ('value', m.group('str').encode().decode('unicode_escape'), line)
        elif kind == 'word':
            yield ('value', m.group('word') == 'true', line)
        else:
            yield (m.group('punct'), None, line)


class _Reader:
    def __init__(self, text, fname):
        self.toks = list(_tokens(text, fname))
        self.i = 0
        self.fname = fname

    def where(self):
        line = self.toks[min(self.i, len(self.toks) - 1)][2] if self.toks else 1
        return f"{self.fname}:{line}"

    def next(self):
        if self.i >= len(self.toks):
            raise QAPIError(self.where(), "unexpected end of file")
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, kind):
        tok = self.next()
        if tok[0] != kind:
            raise QAPIError(self.where(), f"expected '{kind}'")
        return tok

    def value(self):
        kind, val, _ = self.next()
        if kind == 'value':
            return val
        if kind == '{':
            obj = {}
            if self.toks[self.i][0] == '}':
                self.i += 1
                return obj
            while True:
                key = self.expect('value')[1]
                if not isinstance(key, str):
                    raise QAPIError(self.where(), "object keys must be strings")
                if key in obj:
                    raise QAPIError(self.where(), f"duplicate key '{key}'")
                self.expect(':')
                obj[key] = self.value()
                sep = self.next()[0]
                if sep == '}':
                    return obj
                if sep != ',':
                    raise QAPIError(self.where(), "expected ',' or '}'")
        if kind == '[':
            arr = []
            if self.toks[self.i][0] == ']':
                self.i += 1
                return arr
            while True:
                arr.append(self.value())
                sep = self.next()[0]
                if sep == ']':
                    return arr
                if sep != ',':
                    raise QAPIError(self.where(), "expected ',' or ']'")
        raise QAPIError(self.where(), f"unexpected '{kind}'")


def parse_file(path, seen=None):
    """Returns [(definition dict, 'file:line')], following includes once."""
    seen = set() if seen is None else seen
    path = os.path.normpath(path)
    if path in seen:
        return []
    seen.add(path)
    with open(path, encoding='utf-8') as f:
        reader = _Reader(f.read(), os.path.basename(path))
    exprs = []
    while reader.i < len(reader.toks):
        where = reader.where()
        expr = reader.value()
        if not isinstance(expr, dict):
            raise QAPIError(where, "a definition must be an object")
        if 'include' in expr:
            exprs += parse_file(os.path.join(os.path.dirname(path),
                                             expr['include']), seen)
        else:
            exprs.append((expr, where))
    return exprs
