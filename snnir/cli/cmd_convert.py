"""``snnir convert IN.nir OUT.nir --from LIB --to LIB [--dt DT] [--reset MODE] [--repair]``.

Reads ``IN`` as library ``--from`` means it (its dialect) and writes ``OUT`` the way
library ``--to`` reads best, printing what was assumed on reading and what was
lossy on writing. ``nir`` (the default for both) is plain NIR.
"""

from __future__ import annotations

import argparse
import warnings

from snnir.cli.files import NIR_FILE, output_file
from snnir.errors import escape, one_line
from snnir.ir.semantics import RESETS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="convert a NIR file from one library's dialect to another's")
    parser.add_argument("input", help="NIR file to read")
    parser.add_argument("output", help="NIR file to write")
    parser.add_argument("--from", dest="source", default="nir", help="library that wrote IN (default: nir)")
    parser.add_argument("--to", dest="target", default="nir", help="library that will read OUT (default: nir)")
    parser.add_argument("--dt", type=float, help="time step for nodes whose file states none")
    parser.add_argument("--reset", choices=RESETS, help="reset mode for nodes whose file states none")
    parser.add_argument("--repair", action="store_true", help="fix known defects of published files")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from snnir.frontends.dialects import get_dialect
    from snnir.ir.nir_io import load, write

    get_dialect(args.target)  # an unknown --to fails before anything is read
    output_file(args.output, inputs=[args.input], writes=NIR_FILE, command="convert")
    graph, report = load(args.input, dt=args.dt, reset=args.reset, dialect=args.source, repair=args.repair)
    for item in report.defaults_applied:
        print(f"read: default applied: {one_line(item)}")
    for item in report.repairs + report.warnings:
        print(f"read: {one_line(item)}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write(graph, args.output, dialect=args.target)
    for warning in caught:
        print(f"write: {one_line(warning.message)}")
    print(f"wrote {escape(args.output)} ({args.source} -> {args.target})")
    return 0
