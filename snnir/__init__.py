"""snnir: a model-interchange and compiler toolchain for spiking neural networks, centred on NIR.

The public API: ``read``/``write`` NIR files, ``run`` the reference
interpreter, ``trace`` torch-style networks, ``optimize`` graphs and
``compile`` them to targets. Heavy dependencies load only when used.
"""

from __future__ import annotations

from typing import Any

from snnir.errors import SnnirError
from snnir.ir import Graph, Semantics, verify
from snnir.targets.reference import run
import snnir.frontends.dialects  # noqa: E402,F401 - registers the libraries' dialects with NIR I/O

__version__ = "0.1.0"


def read(path: Any, dt: float | None = None, reset: str | None = None, **options: Any) -> Graph:
    """Read a NIR file; see :func:`snnir.ir.nir_io.read`."""
    from snnir.ir.nir_io import read as _read

    return _read(path, dt=dt, reset=reset, **options)


def write(graph: Graph, path: Any, **options: Any) -> None:
    """Write a NIR file; see :func:`snnir.ir.nir_io.write`."""
    from snnir.ir.nir_io import write as _write

    _write(graph, path, **options)


def trace(model: Any, sample_input: Any) -> Graph:
    """Trace a torch-style spiking network; see :func:`snnir.frontends.tracer.trace`."""
    from snnir.frontends import trace as _trace

    return _trace(model, sample_input)


def optimize(graph: Graph, level: int | None = None, passes: Any = None, **options: Any) -> Graph:
    """Optimise a graph; see :func:`snnir.passes.optimize`."""
    from snnir.passes import optimize as _optimize

    return _optimize(graph, level=level, passes=passes, **options)


def imported_by(graph: Graph, library: str, **options: Any) -> tuple[Graph, list[str]]:
    """What ``library``'s own importer simulates from this graph's file, and what changed; see
    :func:`snnir.frontends.dialects.imported.imported_by`."""
    from snnir.frontends.dialects.imported import imported_by as _imported_by

    return _imported_by(graph, library, **options)


def compile(graph: Graph, target: str = "torch", **options: Any) -> Any:  # noqa: A001 - the API's name
    """Compile a graph for a target; see :func:`snnir.targets.compile`."""
    from snnir.targets import compile as _compile

    return _compile(graph, target=target, **options)


__all__ = ["SnnirError", "Graph", "Semantics", "verify", "run", "read", "write", "trace", "optimize", "compile",
           "imported_by"]
