"""Emits qapi-events.h/.c: one typed function per event."""
from .common import HEADER, c_decl, member_c


def _params(ev):
    out = []
    for m in (ev.arg_type.members if ev.arg_type else []):
        if m.needs_has:
            out.append(f"bool has_{member_c(m.name)}")
        out.append(c_decl(m.type, member_c(m.name), const=True))
    return ", ".join(out) or "void"


def generate(schema, prefix):
    h = [HEADER, "#ifndef QAPI_EVENTS_H", "#define QAPI_EVENTS_H", "",
         '#include "qapi-types.h"', '#include "qapi/event.h"', ""]
    c = [HEADER, '#include "qapi-events.h"', '#include "qapi-visit.h"', ""]
    for ev in schema.events:
        proto = f"void qapi_event_send_{ev.c}({_params(ev)})"
        h.append(proto + ";")
        body = [proto, "{"]
        if ev.arg_type:
            a = ev.arg_type
            inits = []
            for m in a.members:
                f = member_c(m.name)
                if m.needs_has:
                    inits.append(f"        .has_{f} = has_{f},")
                cast = "(char *)" if c_decl(m.type, '', const=True).startswith('const char') else ""
                inits.append(f"        .{f} = {cast}{f},")
            body += [f"    {a.c} param = {{"] + inits + ["    };", "",
                     f'    qapi_event_emit("{ev.name}", qapi_encode_{a.c}(&param));']
        else:
            body.append(f'    qapi_event_emit("{ev.name}", NULL);')
        body.append("}\n")
        c += body
    h += ["", "#endif", ""]
    return "\n".join(h), "\n".join(c)
