"""``snnir export FILE.py:FUNCTION --input-shape B,... -o OUT.nir``.

Runs ``FUNCTION()`` from the user's own Python file (the file is executed, as
``python FILE.py`` would), traces the returned model on a zero input of the
given shape with :func:`snnir.trace`, and writes the graph as a NIR file. Whatever the
user's code does (raise, ``sys.exit``, return something else than a module) ends in one
line naming what was running; ``os._exit`` in it ends the process, as in ``python FILE.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from typing import Any, Callable

import numpy as np

from snnir.cli.files import NIR_FILE, output_file
from snnir.errors import SnnirError, escape
from snnir.ir.memory import check_limit
from snnir.limits import current


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


def run_user_code(what: str, call: Callable[[], Any]) -> Any:
    """``call()``, turning anything the user's code raises, ``sys.exit()`` included, into a
    one-line SnnirError that says ``what`` was running (Ctrl-C still interrupts)."""
    try:
        return call()
    except SnnirError:
        raise
    except SystemExit as exc:
        raise SnnirError(f"{what} called sys.exit({exc.code!r}) instead of returning") from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - the user's code failed; report it in one line
        raise SnnirError(f"{what} failed: {type(exc).__name__}: {exc}") from None


def load_builder(spec: str) -> Any:
    """The function named by ``FILE.py:FUNCTION``, from executing FILE.py."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise SnnirError(f"expected FILE.py:FUNCTION, got {spec!r}")
    if not os.path.isfile(path):
        raise SnnirError(f"no such file: {path}")
    module_spec = importlib.util.spec_from_file_location("snnir_user_model", path)
    if module_spec is None or module_spec.loader is None:
        raise SnnirError(f"{path} is not a Python file (give FILE.py:FUNCTION)")
    module = importlib.util.module_from_spec(module_spec)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    try:
        run_user_code(f"running {path}", lambda: module_spec.loader.exec_module(module))
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
    output_file(args.output, inputs=[args.builder.rpartition(":")[0]], writes=NIR_FILE, command="export")
    builder = load_builder(args.builder)
    model = run_user_code(f"{args.builder}()", builder)
    if not isinstance(model, torch.nn.Module):
        raise SnnirError(f"{args.builder}() returned {type(model).__name__}, not a torch.nn.Module")
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    size = int(np.prod(shape, dtype=object)) * dtype.itemsize
    check_limit(size, current(), "data_bytes", f"the sample input of shape {list(shape)}")
    sample = torch.zeros(shape, dtype=dtype)
    graph = run_user_code(f"tracing the model of {args.builder}", lambda: snnir.trace(model, sample))
    snnir.write(graph, args.output, dialect=args.dialect)
    print(f"wrote {escape(args.output)}: {len(graph.nodes)} nodes, {len(graph.edges)} edges")
    return 0
