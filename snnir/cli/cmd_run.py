"""``snnir run FILE.nir --input X.npy -o OUT.npz [--dt DT] [--reset MODE] [--record]``.

Simulates the file with the reference interpreter. ``X`` is ``[T, B, *shape]``
(``.npy``) or one array per Input node (``.npz``), read by :func:`snnir.cli.files.load_arrays`.
``OUT.npz`` holds the same keys as :func:`snnir.run`; a name with another suffix (``out.txt``) is
refused, one without a suffix (a FIFO, ``/dev/stdout``) written as it is.
"""

from __future__ import annotations

import argparse

from snnir.cli.cmd_inspect import add_read_options, load_graph
from snnir.cli.files import NPZ_FILE, load_arrays, output_file, save_arrays
from snnir.errors import escape, shown


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="simulate a NIR file with the reference interpreter")
    add_read_options(parser)
    parser.add_argument("--input", required=True, help="[T, B, *shape] .npy, or .npz keyed by Input name")
    parser.add_argument("-o", "--output", required=True, help=".npz file for the results")
    parser.add_argument("--record", action="store_true", help="also save every state as '<node>.<state>'")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import snnir

    output_file(args.output, inputs=[args.file, args.input], writes=NPZ_FILE, command="run")
    graph, _ = load_graph(args)
    results = snnir.run(graph, load_arrays(args.input), record=args.record)
    save_arrays(args.output, results)
    for key in graph.outputs:
        value = results[key]
        print(f"{shown(key)}: shape {list(value.shape)}, sum {value.sum():g}")
    print(f"wrote {len(results)} arrays to {escape(args.output)}")
    return 0
