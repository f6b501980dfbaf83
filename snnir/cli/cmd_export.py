"""``snnir export FILE.py:FUNCTION --input-shape B,... -o OUT.nir``.

Runs ``FUNCTION()`` from the user's own Python file (the file is executed, as
``python FILE.py`` would), traces the returned model on a zero input of the
given shape with :func:`snnir.trace`, and writes the graph as a NIR file.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Any

from snnir.errors import SnnirError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="trace a torch/snnTorch model built by your Python file and write it as NIR"
    )
    parser.add_argument("builder", help="FILE.py:FUNCTION; FUNCTION() returns the model (the file is executed)")
    parser.add_argument("--input-shape", required=True,
                        help="sample input shape with the batch first, e.g. 1,784 (one step; [T,B,...] for "
                             "models that loop over time themselves)")
    parser.add_argument("-o", "--output", required=True, help="NIR file to write")
    parser.add_argument("--dialect", help="write the form this library reads best (snntorch, norse, ...)")
    parser.set_defaults(func=run)


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SnnirError(f"--input-shape must be comma-separated integers, got {text!r}") from None
    if len(dims) < 2 or any(d <= 0 for d in dims):
        raise SnnirError(f"--input-shape needs a batch and at least one positive dimension, got {text!r}")
    return dims


def load_builder(spec: str) -> Any:
    """The function named by ``FILE.py:FUNCTION``, from executing FILE.py."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise SnnirError(f"expected FILE.py:FUNCTION, got {spec!r}")
    if not os.path.isfile(path):
        raise SnnirError(f"no such file: {path}")
    module_spec = importlib.util.spec_from_file_location("snnir_user_model", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - the user's file failed; report it in one line
        raise SnnirError(f"running {path} failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path.pop(0)
    builder = getattr(module, name, None)
    if not callable(builder):
        raise SnnirError(f"{path} defines no function {name!r}")
    return builder


def run(args: argparse.Namespace) -> int:
    import torch

    import snnir

    shape = parse_shape(args.input_shape)
    builder = load_builder(args.builder)
    try:
        model = builder()
    except Exception as exc:  # noqa: BLE001 - the user's builder failed; report it in one line
        raise SnnirError(f"{args.builder}() failed: {type(exc).__name__}: {exc}") from None
    dtype = next((p.dtype for p in model.parameters()), torch.float32) if isinstance(model, torch.nn.Module) else None
    graph = snnir.trace(model, torch.zeros(shape, dtype=dtype))
    snnir.write(graph, args.output, dialect=args.dialect)
    print(f"wrote {args.output}: {len(graph.nodes)} nodes, {len(graph.edges)} edges")
    return 0
