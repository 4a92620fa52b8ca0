"""Emits qapi-types.h/.c: C types for the schema, enum tables, free functions."""
from .common import (HEADER, Alternate, Array, Builtin, Enum, Struct, Union,
                     branch_c, c_decl, free_stmt, member_c)


def _fields(struct, indent='    '):
    out = []
    for m in struct.members:
        if m.needs_has:
            out.append(f"{indent}bool has_{member_c(m.name)};")
        out.append(f"{indent}{c_decl(m.type, member_c(m.name))};")
    return out


def _struct_body(t):
    lines = [f"struct {t.c} {{"]
    lines += _fields(t)
    if isinstance(t, Union):
        lines.append("    union {")
        for value, var in t.variants:
            lines.append(f"        {var.c} {branch_c(value)};")
        lines.append("    } u;")
    if len(lines) == 1:
        lines.append("    char qapi_dummy_for_empty_struct;")
    lines.append("};")
    return "\n".join(lines) + "\n"


def _free_members(t):
    lines = [f"void qapi_free_members_{t.c}({t.c} *obj)", "{"]
    for m in t.members:
        stmt = free_stmt(m.type, f"obj->{member_c(m.name)}")
        if stmt:
            lines.append(f"    {stmt}")
    if isinstance(t, Union):
        lines.append(f"    switch (obj->{member_c(t.discriminator)}) {{")
        for value, var in t.variants:
            disc = next(m for m in t.members if m.name == t.discriminator).type
            lines.append(f"    case {disc.const(value)}:")
            lines.append(f"        qapi_free_members_{var.c}(&obj->u.{branch_c(value)});")
            lines.append("        break;")
        lines.append("    default:\n        break;\n    }")
    lines.append("}\n")
    lines += [f"void qapi_free_{t.c}({t.c} *obj)", "{",
              "    if (obj) {",
              f"        qapi_free_members_{t.c}(obj);",
              "        g_free(obj);", "    }", "}\n"]
    return "\n".join(lines)


def _free_alternate(t):
    lines = [f"void qapi_free_{t.c}({t.c} *obj)", "{", "    if (!obj) {",
             "        return;", "    }", "    switch (obj->type) {"]
    for name, var in t.variants:
        stmt = free_stmt(var, f"obj->u.{member_c(name)}")
        if stmt:
            lines += [f"    case {alt_qtype(var)}:", f"        {stmt}", "        break;"]
    lines += ["    default:", "        break;", "    }", "    g_free(obj);", "}\n"]
    return "\n".join(lines)


def alt_qtype(var):
    """The JSON type a branch of an alternate is chosen by."""
    if isinstance(var, Builtin):
        return {'str': 'QTYPE_QSTRING', 'bool': 'QTYPE_QBOOL', 'null': 'QTYPE_QNULL',
                'number': 'QTYPE_QNUM'}.get(var.kind, 'QTYPE_QNUM')
    if isinstance(var, Enum):
        return 'QTYPE_QSTRING'
    if isinstance(var, Array):
        return 'QTYPE_QLIST'
    return 'QTYPE_QDICT'


def _free_list(t):
    stmt = free_stmt(t.element, "node->value")
    return "\n".join([
        f"void qapi_free_{t.c}({t.c} *list)", "{",
        "    while (list) {",
        f"        {t.c} *node = list;", "",
        "        list = list->next;",
        f"        {stmt}" if stmt else "",
        "        g_free(node);", "    }", "}\n"])


def generate(schema, prefix):
    types = schema.user_types()
    h = [HEADER, "#ifndef QAPI_TYPES_H", "#define QAPI_TYPES_H", "",
         "#include <stdbool.h>", "#include <stdint.h>", "#include <glib.h>",
         "#include <jansson.h>", "", '#include "qapi/util.h"', ""]
    c = [HEADER, '#include "qapi-types.h"', ""]

    for t in types:
        if isinstance(t, (Struct, Alternate, Array)):
            h.append(f"typedef struct {t.c} {t.c};")
    h.append("")
    for t in types:
        if isinstance(t, Enum):
            h.append(f"typedef enum {t.c} {{")
            for v in t.values:
                h.append(f"    {t.const(v)},")
            h.append(f"    {t.prefix}__MAX,")
            h.append(f"}} {t.c};\n")
            h.append(f"extern const QEnumLookup {t.c}_lookup;")
            h.append(f"static inline const char *{t.c}_str({t.c} val)")
            h.append(f"{{\n    return qapi_enum_lookup(&{t.c}_lookup, val);\n}}\n")
            c.append(f"const QEnumLookup {t.c}_lookup = {{")
            c.append("    .array = (const char *const[]) {")
            for v in t.values:
                c.append(f'        [{t.const(v)}] = "{v}",')
            c.append("    },")
            c.append(f"    .size = {t.prefix}__MAX,")
            c.append("};\n")
    for t in types:
        if isinstance(t, Array):
            h += [f"struct {t.c} {{", f"    {t.c} *next;",
                  f"    {c_decl(t.element, 'value')};", "};\n"]
        elif isinstance(t, Alternate):
            h += [f"struct {t.c} {{", "    QType type;", "    union {"]
            h += [f"        {c_decl(var, member_c(n))};" for n, var in t.variants]
            h += ["    } u;", "};\n"]
    # Plain structs hold only pointers and scalars; unions embed their branch
    # structs by value, so all plain structs come first.
    for t in types:
        if isinstance(t, Struct) and not isinstance(t, Union):
            h.append(_struct_body(t))
    for t in types:
        if isinstance(t, Union):
            h.append(_struct_body(t))
    for t in types:
        if isinstance(t, Struct) and not isinstance(t, Union) and t.base \
                and not t.base.implicit:
            # Base members come first, in order: the layouts agree.
            h += [f"static inline {t.base.c} *qapi_{t.c}_base(const {t.c} *obj)",
                  f"{{\n    return ({t.base.c} *)obj;\n}}\n"]
    for t in types:
        if isinstance(t, (Struct, Alternate, Array)):
            h.append(f"void qapi_free_{t.c}({t.c} *obj);")
            if isinstance(t, Struct):
                h.append(f"void qapi_free_members_{t.c}({t.c} *obj);")
            h.append(f"G_DEFINE_AUTOPTR_CLEANUP_FUNC({t.c}, qapi_free_{t.c})")
            if isinstance(t, Struct):
                c.append(_free_members(t))
            elif isinstance(t, Alternate):
                c.append(_free_alternate(t))
            else:
                c.append(_free_list(t))
    h += ["", "#endif", ""]
    return "\n".join(h), "\n".join(c)
