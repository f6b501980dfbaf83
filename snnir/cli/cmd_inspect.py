"""``snnir inspect FILE.nir [--dt DT] [--reset MODE] [--dialect NAME] [--repair]``.

Prints the node table (op, input and output shapes, stateful or not,
semantics, parameters), the edges, the semantics defaults the reader applied,
repairs and warnings. Also home of the read options the other file commands share.
"""

from __future__ import annotations

import argparse

from snnir.errors import SnnirError, one_line, shown
from snnir.ir.semantics import RESETS


def add_read_options(parser: argparse.ArgumentParser) -> None:
    """``FILE`` plus the semantics a file may leave unstated."""
    parser.add_argument("file", help="NIR file to read")
    parser.add_argument("--dt", type=float, help="time step for nodes whose file states none")
    parser.add_argument("--reset", choices=RESETS, help="reset mode for nodes whose file states none")
    parser.add_argument("--dialect", help="the simulator that wrote the file (its semantics defaults)")
    parser.add_argument("--repair", action="store_true", help="fix known defects of published files")


def load_graph(args: argparse.Namespace):
    """``(graph, report)`` from the file and read options in ``args``."""
    from snnir.ir.nir_io import load

    try:
        return load(args.file, dt=args.dt, reset=args.reset, dialect=args.dialect, repair=args.repair)
    except SnnirError as exc:
        raise exc.for_cli() from None


def report_lines(report) -> list[str]:
    """What the reader assumed, fixed or noticed, one item a line (unprintable characters escaped)."""
    lines = [f"default applied: {item}" for item in report.defaults_applied]
    lines += [f"repaired: {item}" for item in report.repairs]
    lines += [f"warning: {item}" for item in report.warnings]
    return [one_line(line) for line in lines]


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("inspect", help="show a NIR file's nodes, shapes, semantics and warnings")
    add_read_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from snnir.frontends.dialects.guess import describe_writer
    from snnir.ir.printer import format_table

    graph, report = load_graph(args)  # reading verifies; its warnings are in the report
    inputs, outputs = (", ".join(map(shown, names)) for names in (graph.inputs, graph.outputs))
    print(f"{args.file}: {sum(1 for _ in graph.walk())} nodes, inputs [{inputs}], outputs [{outputs}]")
    print(describe_writer(args.file, repair=args.repair))
    print(format_table(graph), end="")
    lines = report_lines(report)
    print("semantics and warnings:" if lines else "semantics: all stated in the file; no warnings")
    for line in lines:
        print(f"  {line}")
    return 0
