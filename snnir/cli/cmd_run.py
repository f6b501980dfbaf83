"""``snnir run FILE.nir --input X.npy -o OUT.npz [--dt DT] [--reset MODE] [--record]``.

Simulates the file with the reference interpreter. ``X`` is ``[T, B, *shape]``
(``.npy``) or one array per Input node (``.npz``), read without unpickling.
``OUT.npz`` holds the same keys as :func:`snnir.run`.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from snnir.cli.cmd_inspect import add_read_options, load_graph
from snnir.errors import SnnirError


def load_input(path: str) -> Any:
    """An array (``.npy``) or a dict of arrays (``.npz``); never unpickles."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SnnirError(f"no such input file: {path}") from None
    except (ValueError, OSError) as exc:
        reason = "pickled objects are refused" if "pickle" in str(exc) else " ".join(str(exc).split())[:200]
        raise SnnirError(f"cannot read input {path} as a plain .npy/.npz array: {reason}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    return loaded


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="simulate a NIR file with the reference interpreter")
    add_read_options(parser)
    parser.add_argument("--input", required=True, help="[T, B, *shape] .npy, or .npz keyed by Input name")
    parser.add_argument("-o", "--output", required=True, help=".npz file for the results")
    parser.add_argument("--record", action="store_true", help="also save every state as '<node>.<state>'")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import snnir

    graph, _ = load_graph(args)
    results = snnir.run(graph, load_input(args.input), record=args.record)
    np.savez(args.output, **results)
    for key in graph.outputs:
        value = results[key]
        print(f"{key}: shape {list(value.shape)}, sum {value.sum():g}")
    print(f"wrote {len(results)} arrays to {args.output}")
    return 0
