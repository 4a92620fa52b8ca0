#!/usr/bin/env python3
"""Generates blkd's QMP C code from the QAPI schema.

Usage: qapi-gen.py -o OUTDIR qapi/qapi-schema.json
Writes qapi-{types,visit,commands,events,introspect}.{h,c} into OUTDIR.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from qapi import gen_commands, gen_events, gen_introspect, gen_types, gen_visit  # noqa: E402
from qapi.common import write  # noqa: E402
from qapi.parser import QAPIError  # noqa: E402
from qapi.schema import Schema  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('-o', '--output-dir', default='.')
    ap.add_argument('schema')
    opts = ap.parse_args()
    try:
        schema = Schema(opts.schema)
    except (QAPIError, KeyError) as exc:
        print(f"qapi-gen: {opts.schema}: {exc}", file=sys.stderr)
        return 1
    for mod, name in ((gen_types, 'types'), (gen_visit, 'visit'),
                      (gen_commands, 'commands'), (gen_events, 'events'),
                      (gen_introspect, 'introspect')):
        h, c = mod.generate(schema, 'qapi')
        write(os.path.join(opts.output_dir, f'qapi-{name}.h'), h)
        write(os.path.join(opts.output_dir, f'qapi-{name}.c'), c)
    return 0


if __name__ == '__main__':
    sys.exit(main())
