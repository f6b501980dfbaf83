"""``snnir optimize IN.nir -o OUT.nir [-O0|-O1|-O2 | --passes a,b] [--dump-after NAME] [--keep-extensions]``.

Prints a before/after report: node count, MACs per step and state memory, the "after" of the
graph as written to the file (fused nodes split back into their named layers).
"""

from __future__ import annotations

import argparse

from snnir.cli.files import NIR_FILE, output_file
from snnir.errors import SnnirError, escape


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("optimize", help="optimise a NIR graph and report what changed")
    parser.add_argument("input", help="NIR file to read")
    parser.add_argument("-o", "--output", required=True, help="NIR file to write")
    parser.add_argument("--dialect", help="the library that wrote the input file (its semantics defaults)")
    parser.add_argument("--to-dialect", help="write the form this library reads best")
    level = parser.add_mutually_exclusive_group()
    for n in (0, 1, 2):
        level.add_argument(f"-O{n}", dest="level", action="store_const", const=n, help=f"optimisation level {n}")
    level.add_argument("--passes", help="comma-separated pass names, run in order (see docs/passes.md)")
    parser.add_argument("--dump-after", action="append", default=[], metavar="NAME",
                        help="print the graph after this pass (repeatable)")
    parser.add_argument("--keep-extensions", action="store_true",
                        help="write snnir extension ops as they are instead of lowering them to standard NIR")
    parser.add_argument("--dt", type=float, help="new time step for the change_dt pass")
    parser.add_argument("--static", action="append", default=[], metavar="INPUT",
                        help="declare an Input constant over time (for hoist_time_invariant; repeatable)")
    parser.set_defaults(func=run, level=2)


def parse_passes(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise SnnirError("--passes needs at least one pass name")
    return names


def run(args: argparse.Namespace) -> int:
    import snnir
    from snnir.ir.nir_io import as_written
    from snnir.passes import estimate_cost

    output_file(args.output, inputs=[args.input], writes=NIR_FILE, command="optimize")
    graph = snnir.read(args.input, dialect=args.dialect)
    options = {}
    if args.dt is not None:
        options["dt"] = args.dt
    if args.static:
        options["static_inputs"] = args.static
    passes = parse_passes(args.passes) if args.passes else None
    optimised = snnir.optimize(graph, level=None if passes else args.level, passes=passes, dump_after=args.dump_after, **options)
    written = as_written(optimised, dialect=args.to_dialect, keep_extensions=args.keep_extensions)
    print(f"before: {estimate_cost(graph).report()}")
    print(f"after:  {estimate_cost(written).report()} (as written)")
    snnir.write(optimised, args.output, keep_extensions=args.keep_extensions, dialect=args.to_dialect)
    print(f"wrote {escape(args.output)}")
    return 0
