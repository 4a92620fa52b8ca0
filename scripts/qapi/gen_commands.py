"""Emits qapi-commands.h/.c: handler prototypes, marshallers, the command table."""
from .common import HEADER, c_decl, member_c


def _params(cmd):
    if cmd.arg_type is None:
        return []
    if cmd.boxed:
        return [f"{cmd.arg_type.c} *arg"]
    out = []
    for m in cmd.arg_type.members:
        if m.needs_has:
            out.append(f"bool has_{member_c(m.name)}")
        out.append(c_decl(m.type, member_c(m.name), const=True))
    return out


def _args(cmd):
    if cmd.arg_type is None:
        return []
    if cmd.boxed:
        return ["arg"]
    out = []
    for m in cmd.arg_type.members:
        if m.needs_has:
            out.append(f"arg->has_{member_c(m.name)}")
        out.append(f"arg->{member_c(m.name)}")
    return out


def prototype(cmd):
    ret = c_decl(cmd.ret_type, '') if cmd.ret_type else 'bool '
    params = ", ".join(_params(cmd) + ["Error **errp"])
    return f"{ret}qmp_{cmd.c}({params})"


def _marshal(cmd):
    a = cmd.arg_type
    lines = [f"static bool qmp_marshal_{cmd.c}(json_t *args, json_t **ret, Error **errp)",
             "{", "    QapiDecoder d;", "    Error *err = NULL;", "    bool ok;"]
    if a:
        lines.append(f"    {a.c} *arg = NULL;")
    if cmd.ret_type:
        lines.append(f"    {c_decl(cmd.ret_type, 'retval')};")
    lines += ["", "    qapi_decoder_init(&d, false);"]
    if a:
        lines.append(f"    ok = qapi_decode_{a.c}(&d, NULL, args, &arg, errp);")
    else:
        lines.append("    ok = qapi_decode_no_args(&d, args, errp);")
    lines += ["    qapi_decoder_cleanup(&d);", "    if (!ok) {", "        return false;", "    }"]
    call = f"qmp_{cmd.c}({', '.join(_args(cmd) + ['&err'])})"
    if cmd.ret_type:
        lines += [f"    retval = {call};",
                  "    ok = !err;",
                  "    if (ok) {",
                  f"        *ret = qapi_encode_{cmd.ret_type.c}(retval);",
                  f"        qapi_free_{cmd.ret_type.c}(retval);",
                  "    }"]
    else:
        lines += [f"    ok = {call};",
                  "    g_assert(ok == !err);",
                  "    if (ok) {", "        *ret = json_object();", "    }"]
    lines.append("    error_propagate(errp, err);")
    if a:
        lines.append(f"    qapi_free_{a.c}(arg);")
    lines += ["    return ok;", "}\n"]
    return "\n".join(lines)


def generate(schema, prefix):
    h = [HEADER, "#ifndef QAPI_COMMANDS_H", "#define QAPI_COMMANDS_H", "",
         '#include "qapi-types.h"', '#include "qapi/error.h"',
         '#include "qapi/dispatch.h"', "",
         "/* Handlers, written by hand; each sets errp exactly when it fails. */"]
    c = [HEADER, '#include "qapi-commands.h"', '#include "qapi-visit.h"', ""]
    for cmd in schema.commands:
        if cmd.gen:
            h.append(prototype(cmd) + ";")
            c.append(_marshal(cmd))
        else:
            h.append(f"bool qmp_marshal_{cmd.c}(json_t *args, json_t **ret, Error **errp);")
    h += ["", "extern const QmpCommand qmp_commands[];", "extern const size_t qmp_commands_count;",
          "", "#endif", ""]
    c.append("const QmpCommand qmp_commands[] = {")
    for cmd in schema.commands:
        flags = ["QMP_CMD_" + f.upper().replace('-', '_') for f in cmd.features
                 if f in ('deprecated', 'unstable')] or ["0"]
        c.append(f'    {{ "{cmd.name}", qmp_marshal_{cmd.c}, {" | ".join(flags)} }},')
    c += ["};", "const size_t qmp_commands_count = G_N_ELEMENTS(qmp_commands);", ""]
    return "\n".join(h), "\n".join(c)
