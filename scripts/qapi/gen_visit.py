"""Emits qapi-visit.h/.c: decoding from JSON (or keyval strings) with QEMU's
error texts, and encoding to JSON."""
from .common import (HEADER, Alternate, Array, Builtin, Enum, Struct, Union,
                     branch_c, c_decl, member_c)
from .gen_types import alt_qtype

_INT_RANGE = {
    8: ('INT8_MIN', 'INT8_MAX', 'UINT8_MAX'),
    16: ('INT16_MIN', 'INT16_MAX', 'UINT16_MAX'),
    32: ('INT32_MIN', 'INT32_MAX', 'UINT32_MAX'),
    64: ('INT64_MIN', 'INT64_MAX', 'UINT64_MAX'),
}


def decode_call(typ, name_expr, val, out):
    """A C expression (bool) decoding val into *out (an lvalue address)."""
    if isinstance(typ, Builtin):
        k = typ.kind
        if k == 'str':
            return f"qapi_decode_str(d, {name_expr}, {val}, {out}, errp)"
        if k == 'int':
            lo, hi, _ = _INT_RANGE[typ.bits]
            tname = 'int64' if typ.bits == 64 else f'int{typ.bits}_t'
            if typ.bits == 64:
                return f"qapi_decode_int(d, {name_expr}, {val}, {lo}, {hi}, \"{tname}\", {out}, errp)"
            return (f"qapi_decode_int_into(d, {name_expr}, {val}, {lo}, {hi}, \"{tname}\", "
                    f"{out}, sizeof(*{out}), errp)")
        if k in ('uint', 'size'):
            _, _, hi = _INT_RANGE[typ.bits]
            tname = {64: 'uint64'}.get(typ.bits, f'uint{typ.bits}_t')
            if k == 'size':
                tname = 'size'
            if typ.bits == 64:
                return (f"qapi_decode_uint(d, {name_expr}, {val}, {hi}, \"{tname}\", "
                        f"{'true' if k == 'size' else 'false'}, {out}, errp)")
            return (f"qapi_decode_uint_into(d, {name_expr}, {val}, {hi}, \"{tname}\", "
                    f"{out}, sizeof(*{out}), errp)")
        if k == 'bool':
            return f"qapi_decode_bool(d, {name_expr}, {val}, {out}, errp)"
        if k == 'number':
            return f"qapi_decode_number(d, {name_expr}, {val}, {out}, errp)"
        if k == 'any':
            return f"qapi_decode_any(d, {name_expr}, {val}, {out}, errp)"
        if k == 'null':
            return f"qapi_decode_null(d, {name_expr}, {val}, {out}, errp)"
    if isinstance(typ, Enum):
        return (f"qapi_decode_enum(d, {name_expr}, {val}, &{typ.c}_lookup, "
                f"(int *){out}, errp)")
    return f"qapi_decode_{typ.c}(d, {name_expr}, {val}, {out}, errp)"


def encode_expr(typ, expr):
    if isinstance(typ, Builtin):
        return {
            'str': f"qapi_encode_str({expr})",
            'int': f"json_integer({expr})",
            'uint': f"qapi_encode_uint({expr})",
            'size': f"qapi_encode_uint({expr})",
            'bool': f"json_boolean({expr})",
            'number': f"json_real({expr})",
            'any': f"json_incref({expr})",
            'null': "json_null()",
        }[typ.kind]
    if isinstance(typ, Enum):
        return f"json_string({typ.c}_str({expr}))"
    return f"qapi_encode_{typ.c}({expr})"


def _decode_members(t):
    lines = [f"bool qapi_decode_members_{t.c}(QapiDecoder *d, {t.c} *obj, Error **errp)",
             "{"]
    if t.members:
        lines += ["    json_t *v;", ""]
    for m in t.members:
        f = member_c(m.name)
        lines.append(f'    v = qapi_take_member(d, "{m.name}");')
        if m.optional:
            lines.append("    if (v) {")
            if m.needs_has:
                lines.append(f"        obj->has_{f} = true;")
            lines.append(f'        if (!{decode_call(m.type, chr(34) + m.name + chr(34), "v", "&obj->" + f)}) {{')
            lines += ["            return false;", "        }", "    }"]
        else:
            lines.append(f'    if (!v) {{\n        qapi_error_missing(d, "{m.name}", errp);'
                         "\n        return false;\n    }")
            lines.append(f'    if (!{decode_call(m.type, chr(34) + m.name + chr(34), "v", "&obj->" + f)}) {{')
            lines += ["        return false;", "    }"]
    if isinstance(t, Union):
        disc = next(m for m in t.members if m.name == t.discriminator)
        lines.append(f"    switch (obj->{member_c(disc.name)}) {{")
        for value, var in t.variants:
            lines.append(f"    case {disc.type.const(value)}:")
            lines.append(f"        return qapi_decode_members_{var.c}(d, "
                         f"&obj->u.{branch_c(value)}, errp);")
        lines += ["    default:", "        break;", "    }"]
    lines += ["    return true;", "}\n"]
    return "\n".join(lines)


def _decode_struct(t):
    return "\n".join([
        f"bool qapi_decode_{t.c}(QapiDecoder *d, const char *name, json_t *val, "
        f"{t.c} **out, Error **errp)", "{",
        f"    {t.c} *obj;", "    bool ok;", "",
        "    if (!qapi_decode_begin_object(d, name, val, errp)) {",
        "        return false;", "    }",
        f"    obj = g_new0({t.c}, 1);",
        f"    ok = qapi_decode_members_{t.c}(d, obj, errp);",
        "    ok = qapi_decode_end_object(d, ok, errp);",
        "    if (!ok) {", f"        qapi_free_{t.c}(obj);", "        return false;", "    }",
        "    *out = obj;", "    return true;", "}\n"])


def _decode_list(t):
    return "\n".join([
        f"bool qapi_decode_{t.c}(QapiDecoder *d, const char *name, json_t *val, "
        f"{t.c} **out, Error **errp)", "{",
        f"    {t.c} *head = NULL, **tail = &head;", "    size_t i;", "    json_t *elem;", "",
        "    if (!qapi_decode_check_array(d, name, val, errp)) {", "        return false;", "    }",
        "    qapi_decoder_push(d, name);",
        "    json_array_foreach(val, i, elem) {",
        f"        {t.c} *node = g_new0({t.c}, 1);",
        "        g_autofree char *idx = qapi_decoder_index_name(d, i);", "",
        "        *tail = node;", "        tail = &node->next;",
        f"        if (!{decode_call(t.element, 'idx', 'elem', '&node->value')}) {{",
        "            qapi_decoder_pop(d);",
        f"            qapi_free_{t.c}(head);", "            return false;", "        }",
        "    }", "    qapi_decoder_pop(d);",
        "    *out = head;", "    return true;", "}\n"])


def _decode_alternate(t):
    lines = [f"bool qapi_decode_{t.c}(QapiDecoder *d, const char *name, json_t *val, "
             f"{t.c} **out, Error **errp)", "{",
             f"    {t.c} *obj = g_new0({t.c}, 1);", "    bool ok = false;", "",
             "    obj->type = qapi_decode_alternate_qtype(d, val);",
             "    switch (obj->type) {"]
    seen = set()
    for n, var in t.variants:
        qt = alt_qtype(var)
        if qt in seen:
            continue
        seen.add(qt)
        lines += [f"    case {qt}:",
                  f"        ok = {decode_call(var, 'name', 'val', '&obj->u.' + member_c(n))};",
                  "        break;"]
    lines += ["    default:",
              f'        qapi_error_alternate(d, name, "{t.name}", errp);',
              "        break;", "    }",
              "    if (!ok) {", "        g_free(obj);", "        return false;", "    }",
              "    *out = obj;", "    return true;", "}\n"]
    return "\n".join(lines)


def _encode_members(t):
    lines = [f"void qapi_encode_members_{t.c}(json_t *o, const {t.c} *obj)", "{"]
    for m in t.members:
        f = member_c(m.name)
        expr = encode_expr(m.type, f"obj->{f}")
        if m.optional:
            cond = f"obj->has_{f}" if m.needs_has else f"obj->{f}"
            lines.append(f"    if ({cond}) {{")
            lines.append(f'        json_object_set_new(o, "{m.name}", {expr});')
            lines.append("    }")
        else:
            lines.append(f'    json_object_set_new(o, "{m.name}", {expr});')
    if isinstance(t, Union):
        disc = next(m for m in t.members if m.name == t.discriminator)
        lines.append(f"    switch (obj->{member_c(disc.name)}) {{")
        for value, var in t.variants:
            lines += [f"    case {disc.type.const(value)}:",
                      f"        qapi_encode_members_{var.c}(o, &obj->u.{branch_c(value)});",
                      "        break;"]
        lines += ["    default:", "        break;", "    }"]
    lines.append("}\n")
    lines += [f"json_t *qapi_encode_{t.c}(const {t.c} *obj)", "{",
              "    json_t *o = json_object();", "",
              f"    qapi_encode_members_{t.c}(o, obj);", "    return o;", "}\n"]
    return "\n".join(lines)


def _encode_list(t):
    return "\n".join([
        f"json_t *qapi_encode_{t.c}(const {t.c} *list)", "{",
        "    json_t *a = json_array();", "",
        "    for (; list; list = list->next) {",
        f"        json_array_append_new(a, {encode_expr(t.element, 'list->value')});",
        "    }", "    return a;", "}\n"])


def _encode_alternate(t):
    lines = [f"json_t *qapi_encode_{t.c}(const {t.c} *obj)", "{", "    switch (obj->type) {"]
    seen = set()
    for n, var in t.variants:
        qt = alt_qtype(var)
        if qt in seen:
            continue
        seen.add(qt)
        lines += [f"    case {qt}:",
                  f"        return {encode_expr(var, 'obj->u.' + member_c(n))};"]
    lines += ["    default:", "        g_assert_not_reached();", "    }", "}\n"]
    return "\n".join(lines)


def generate(schema, prefix):
    types = schema.user_types()
    h = [HEADER, "#ifndef QAPI_VISIT_H", "#define QAPI_VISIT_H", "",
         '#include "qapi-types.h"', '#include "qapi/decode.h"', ""]
    c = [HEADER, '#include "qapi-visit.h"', ""]
    for t in types:
        if isinstance(t, Enum):
            continue
        const = "const " if isinstance(t, (Struct, Alternate, Array)) else ""
        h.append(f"bool qapi_decode_{t.c}(QapiDecoder *d, const char *name, "
                 f"json_t *val, {t.c} **out, Error **errp);")
        h.append(f"json_t *qapi_encode_{t.c}({const}{t.c} *obj);")
        if isinstance(t, Struct):
            h.append(f"bool qapi_decode_members_{t.c}(QapiDecoder *d, {t.c} *obj, "
                     "Error **errp);")
            h.append(f"void qapi_encode_members_{t.c}(json_t *o, const {t.c} *obj);")
            c.append(_decode_members(t))
            c.append(_decode_struct(t))
            c.append(_encode_members(t))
        elif isinstance(t, Array):
            c.append(_decode_list(t))
            c.append(_encode_list(t))
        elif isinstance(t, Alternate):
            c.append(_decode_alternate(t))
            c.append(_encode_alternate(t))
    h += ["", "#endif", ""]
    return "\n".join(h), "\n".join(c)
