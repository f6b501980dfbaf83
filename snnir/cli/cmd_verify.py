"""``snnir verify FILE.nir [--dt DT] [--reset MODE] [--dialect NAME] [--repair]``.

Reads and verifies the file: prints ``ok`` with the graph's size and any
warnings (exit 0), or the first error in one line (exit 1).
"""

from __future__ import annotations

import argparse

from snnir.cli.cmd_inspect import add_read_options, load_graph, report_lines
from snnir.errors import escape


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="check that a NIR file is a valid graph")
    add_read_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    graph, report = load_graph(args)  # reading verifies; its warnings are in the report
    print(f"ok: {escape(args.file)}: {sum(1 for _ in graph.walk())} nodes, {len(graph.edges)} edges")
    for line in report_lines(report):
        print(f"  {line}")
    return 0
