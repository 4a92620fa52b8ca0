"""The QAPI schema model: definitions resolved into typed entities."""
import re

from .parser import QAPIError, parse_file


def c_name(name):
    """'query-version' -> 'query_version': a name usable as a C identifier."""
    return re.sub(r'[^A-Za-z0-9_]', '_', name)


def camel_to_upper(name):
    """'BlockdevOnError' -> 'BLOCKDEV_ON_ERROR', 'QMPCapability' -> 'QMP_CAPABILITY'."""
    out = re.sub(r'(?<=[a-z0-9])([A-Z])', r'_\1', name)
    out = re.sub(r'(?<=[A-Z])([A-Z][a-z])', r'_\1', out)
    return c_name(out).upper()


class Member:
    def __init__(self, name, typ, optional, features):
        self.name = name
        self.type = typ
        self.optional = optional
        self.features = features

    @property
    def c(self):
        return c_name(self.name)

    @property
    def needs_has(self):
        """Optional members without a NULL state carry a has_ flag."""
        return self.optional and not self.type.is_pointer


class Type:
    is_pointer = False
    meta = None

    def __init__(self, name, features=()):
        self.name = name
        self.features = list(features)

    @property
    def c(self):
        return c_name(self.name)

    @property
    def c_type(self):
        return self.c + ' *' if self.is_pointer else self.c


class Builtin(Type):
    """kind: how it decodes ('str', 'int', 'uint', 'size', 'bool', 'number', 'any', 'null')."""
    meta = 'builtin'

    def __init__(self, name, c_type, kind, json_type, bits=64):
        super().__init__(name)
        self._c_type = c_type
        self.kind = kind
        self.json_type = json_type
        self.bits = bits
        self.is_pointer = kind in ('str', 'any')

    @property
    def c_type(self):
        return self._c_type


class Enum(Type):
    meta = 'enum'

    def __init__(self, name, values, prefix, features):
        super().__init__(name, features)
        self.values = values
        self.prefix = prefix or camel_to_upper(name)

    def const(self, value):
        return f"{self.prefix}_{c_name(value).upper()}"


class Struct(Type):
    meta = 'object'
    is_pointer = True

    def __init__(self, name, base, members, features, implicit=False):
        super().__init__(name, features)
        self.base = base
        self.own_members = members
        self.implicit = implicit

    @property
    def members(self):
        return (self.base.members if self.base else []) + self.own_members


class Union(Struct):
    """A flat union: base members, one of them the enum discriminator."""

    def __init__(self, name, base, discriminator, variants, features):
        super().__init__(name, base, [], features)
        self.discriminator = discriminator
        self.variants = variants  # [(enum value, Struct)]


class Alternate(Type):
    meta = 'alternate'
    is_pointer = True

    def __init__(self, name, variants, features):
        super().__init__(name, features)
        self.variants = variants  # [(name, Type)]


class Array(Type):
    meta = 'array'
    is_pointer = True

    def __init__(self, element):
        super().__init__('[' + element.name + ']')
        self.element = element

    @property
    def c(self):
        return c_name(self.element.name if isinstance(self.element, Builtin)
                      else self.element.c) + 'List'


class Command:
    def __init__(self, name, arg_type, ret_type, boxed, gen, features):
        self.name = name
        self.arg_type = arg_type
        self.ret_type = ret_type
        self.boxed = boxed
        self.gen = gen
        self.features = features

    @property
    def c(self):
        return c_name(self.name)


class Event:
    def __init__(self, name, arg_type, features):
        self.name = name
        self.arg_type = arg_type
        self.features = features

    @property
    def c(self):
        return c_name(self.name).lower()


BUILTINS = [
    Builtin('str', 'char *', 'str', 'string'),
    Builtin('int', 'int64_t', 'int', 'int'),
    Builtin('int8', 'int8_t', 'int', 'int', 8),
    Builtin('int16', 'int16_t', 'int', 'int', 16),
    Builtin('int32', 'int32_t', 'int', 'int', 32),
    Builtin('int64', 'int64_t', 'int', 'int', 64),
    Builtin('uint8', 'uint8_t', 'uint', 'int', 8),
    Builtin('uint16', 'uint16_t', 'uint', 'int', 16),
    Builtin('uint32', 'uint32_t', 'uint', 'int', 32),
    Builtin('uint64', 'uint64_t', 'uint', 'int', 64),
    Builtin('size', 'uint64_t', 'size', 'int', 64),
    Builtin('bool', 'bool', 'bool', 'boolean'),
    Builtin('number', 'double', 'number', 'number'),
    Builtin('any', 'json_t *', 'any', 'value'),
    Builtin('null', 'bool', 'null', 'null'),
]


def _features(expr, where):
    feats = expr.get('features', [])
    out = []
    for f in feats:
        out.append(f['name'] if isinstance(f, dict) else f)
    return out


class Schema:
    def __init__(self, path):
        self.types = {b.name: b for b in BUILTINS}
        self.commands = []
        self.events = []
        self.entities = []      # definitions in schema order (types, commands, events)
        self._pending = []
        for expr, where in parse_file(path):
            self._define(expr, where)
        for fn in self._pending:
            fn()
        self._check()

    # ---- definition -------------------------------------------------------
    def _add_type(self, typ, where):
        if typ.name in self.types:
            raise QAPIError(where, f"'{typ.name}' is already defined")
        self.types[typ.name] = typ
        self.entities.append(typ)

    def _define(self, expr, where):
        features = _features(expr, where)
        if 'enum' in expr:
            values = [v['name'] if isinstance(v, dict) else v for v in expr['data']]
            self._add_type(Enum(expr['enum'], values, expr.get('prefix'), features), where)
        elif 'struct' in expr:
            st = Struct(expr['struct'], None, [], features)
            self._add_type(st, where)
            self._pending.append(lambda: self._fill_struct(st, expr, where))
        elif 'union' in expr:
            un = Union(expr['union'], None, expr['discriminator'], [], features)
            self._add_type(un, where)
            self._pending.append(lambda: self._fill_union(un, expr, where))
        elif 'alternate' in expr:
            alt = Alternate(expr['alternate'], [], features)
            self._add_type(alt, where)
            self._pending.append(lambda: self._fill_alternate(alt, expr, where))
        elif 'command' in expr:
            cmd = Command(expr['command'], None, None, expr.get('boxed', False),
                          expr.get('gen', True), features)
            self.commands.append(cmd)
            self.entities.append(cmd)
            self._pending.append(lambda: self._fill_command(cmd, expr, where))
        elif 'event' in expr:
            ev = Event(expr['event'], None, features)
            self.events.append(ev)
            self.entities.append(ev)
            self._pending.append(lambda: self._fill_event(ev, expr, where))
        else:
            raise QAPIError(where, "unknown kind of definition")

    def lookup(self, ref, where):
        if isinstance(ref, list):
            if len(ref) != 1:
                raise QAPIError(where, "an array type names exactly one element type")
            elem = self.lookup(ref[0], where)
            return self.types.setdefault('[' + elem.name + ']', Array(elem))
        if ref not in self.types:
            raise QAPIError(where, f"type '{ref}' is not defined")
        return self.types[ref]

    def _members(self, data, where):
        members = []
        for key, val in data.items():
            optional = key.startswith('*')
            name = key[1:] if optional else key
            feats = []
            if isinstance(val, dict):
                feats = _features(val, where)
                val = val['type']
            members.append(Member(name, self.lookup(val, where), optional, feats))
        return members

    def _implicit(self, name, data, where):
        if data is None:
            return None
        if isinstance(data, str):
            return self.lookup(data, where)
        st = Struct(name, None, self._members(data, where), [], implicit=True)
        self.types[name] = st
        return st

    def _fill_struct(self, st, expr, where):
        if 'base' in expr:
            st.base = self.lookup(expr['base'], where)
        st.own_members = self._members(expr.get('data', {}), where)

    def _fill_union(self, un, expr, where):
        base = expr['base']
        un.base = (self.lookup(base, where) if isinstance(base, str)
                   else self._implicit(f"q_obj_{un.name}-base", base, where))
        disc = next((m for m in un.base.members if m.name == un.discriminator), None)
        if disc is None or not isinstance(disc.type, Enum) or disc.optional:
            raise QAPIError(where, "discriminator must be a required enum member of the base")
        for value, ref in expr['data'].items():
            if value not in disc.type.values:
                raise QAPIError(where, f"'{value}' is not a value of {disc.type.name}")
            if isinstance(ref, dict):
                ref = ref['type']
            un.variants.append((value, self.lookup(ref, where)))

    def _fill_alternate(self, alt, expr, where):
        for name, ref in expr['data'].items():
            alt.variants.append((name, self.lookup(ref, where)))

    def _fill_command(self, cmd, expr, where):
        cmd.arg_type = self._implicit(f"q_obj_{cmd.name}-arg", expr.get('data'), where)
        if 'returns' in expr:
            cmd.ret_type = self.lookup(expr['returns'], where)
            if not cmd.ret_type.is_pointer:
                raise QAPIError(where, "a command returns an object or an array")

    def _fill_event(self, ev, expr, where):
        ev.arg_type = self._implicit(f"q_obj_{ev.name}-arg", expr.get('data'), where)

    def _check(self):
        for typ in list(self.types.values()):
            if isinstance(typ, Union):
                for _, var in typ.variants:
                    if not isinstance(var, Struct) or isinstance(var, Union):
                        raise QAPIError(typ.name, "union branches must be structs")

    # ---- queries ------------------------------------------------------------
    def user_types(self):
        """Every non-builtin type, definitions first, then implicit and array types."""
        seen = [t for t in self.entities if isinstance(t, Type)]
        rest = [t for t in self.types.values()
                if not isinstance(t, Builtin) and t not in seen]
        return seen + rest
