"""Emits qapi-introspect.c: the query-qmp-schema answer, in QEMU's format.

As in QEMU, type names other than builtins are opaque: each type gets a
number in the order it is first referenced, "0" being the empty object that
commands without arguments or results use.
"""
import json

from .common import HEADER, Alternate, Array, Builtin, Enum, Struct, Union

_BUILTIN_NAME = {'str': 'str', 'int': 'int', 'uint': 'int', 'size': 'int',
                 'bool': 'bool', 'number': 'number', 'any': 'any', 'null': 'null'}
_BUILTIN_JSON = {'str': 'string', 'int': 'int', 'bool': 'boolean', 'number': 'number',
                 'any': 'value', 'null': 'null'}


class _Namer:
    def __init__(self):
        self.names = {}
        self.queue = []
        self.builtins = []
        self.names['q_empty'] = '0'
        self.queue.append(('0', None))

    def name(self, typ):
        if typ is None:
            return '0'
        if isinstance(typ, Builtin):
            n = _BUILTIN_NAME[typ.kind]
            if n not in self.builtins:
                self.builtins.append(n)
            return n
        if isinstance(typ, Struct) and not typ.members and not isinstance(typ, Union):
            return '0'
        if isinstance(typ, Array):
            n = '[' + self.name(typ.element) + ']'
            if n not in self.names:
                self.names[n] = n
                self.queue.append((n, typ))
            return n
        if typ.name not in self.names:
            self.names[typ.name] = str(len([k for k in self.names if not k.startswith('[')]))
            self.queue.append((self.names[typ.name], typ))
        return self.names[typ.name]


def _feat(entry, features):
    if features:
        entry['features'] = list(features)
    return entry


def _members(namer, members):
    out = []
    for m in members:
        e = {'name': m.name, 'type': namer.name(m.type)}
        if m.optional:
            e['default'] = None
        out.append(_feat(e, m.features))
    return out


def _type_entry(namer, name, typ):
    if typ is None:
        return {'name': name, 'meta-type': 'object', 'members': []}
    if isinstance(typ, Array):
        return {'name': name, 'meta-type': 'array', 'element-type': namer.name(typ.element)}
    if isinstance(typ, Enum):
        return _feat({'name': name, 'meta-type': 'enum',
                      'members': [{'name': v} for v in typ.values],
                      'values': list(typ.values)}, typ.features)
    if isinstance(typ, Alternate):
        return _feat({'name': name, 'meta-type': 'alternate',
                      'members': [{'type': namer.name(v)} for _, v in typ.variants]},
                     typ.features)
    entry = {'name': name, 'meta-type': 'object', 'members': _members(namer, typ.members)}
    if isinstance(typ, Union):
        entry['tag'] = typ.discriminator
        entry['variants'] = [{'case': v, 'type': namer.name(t)} for v, t in typ.variants]
    return _feat(entry, typ.features)


def schema_info(schema):
    namer = _Namer()
    out = []
    for cmd in schema.commands:
        out.append(_feat({'name': cmd.name, 'meta-type': 'command',
                          'arg-type': namer.name(cmd.arg_type),
                          'ret-type': namer.name(cmd.ret_type)}, cmd.features))
    for ev in schema.events:
        out.append(_feat({'name': ev.name, 'meta-type': 'event',
                          'arg-type': namer.name(ev.arg_type)}, ev.features))
    i = 0
    while i < len(namer.queue):
        name, typ = namer.queue[i]
        out.append(_type_entry(namer, name, typ))
        i += 1
    for b in namer.builtins:
        out.append({'name': b, 'meta-type': 'builtin', 'json-type': _BUILTIN_JSON[b]})
    return out


def generate(schema, prefix):
    text = json.dumps(schema_info(schema), separators=(',', ':'))
    chunks = [text[i:i + 100] for i in range(0, len(text), 100)]
    body = "\n".join('    "' + ch.replace('\\', '\\\\').replace('"', '\\"') + '"'
                     for ch in chunks)
    h = "\n".join([HEADER, "#ifndef QAPI_INTROSPECT_H", "#define QAPI_INTROSPECT_H", "",
                   "/* The query-qmp-schema reply, as JSON text. */",
                   "extern const char qapi_introspect_json[];", "", "#endif", ""])
    c = "\n".join([HEADER, '#include "qapi-introspect.h"', "",
                   "const char qapi_introspect_json[] =", body + ";", ""])
    return h, c
