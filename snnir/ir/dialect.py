"""The dialect registry NIR I/O reads and writes by: how a library means the NIR files it writes and reads.

A dialect adjusts a graph after reading (``on_read``: e.g. Norse's tau = dt/tau_inv, Sinabs'
timestep units) and before writing (``on_write``: the form that library's ``from_nir`` reads
best). ``"nir"`` is plain NIR and changes nothing. The libraries' dialects live above the core
(:mod:`snnir.frontends.dialects`) and register themselves here, with a loader that
:func:`get_dialect` calls for a name it does not know yet; this module imports nothing of theirs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from snnir.errors import SnnirError
from snnir.ir.graph import Graph

if TYPE_CHECKING:
    from snnir.ir.ops import Neuron


def _unchanged(graph: Graph, warnings: list[str]) -> Graph:
    return graph


@dataclass(frozen=True)
class Dialect:
    """``on_read(graph, warnings)`` and ``on_write(graph, warnings)`` return new graphs,
    appending a line to ``warnings`` for anything lossy or assumed. ``read_notes`` maps a field of
    ``read_defaults`` to the line the reader adds where some neuron took that field from the
    dialect (not where the file or the caller stated it: a file snnir wrote gets none). ``dt_from_file(op)``, where
    the library's files determine their step, gives a neuron's ``dt`` from its parameters
    (``None``: not determined); the reader uses it before ``on_read`` unless the caller gave ``dt``.
    ``imported_by(graph, warnings, options)`` is the graph the library simulates after its own
    importer (named ``importer``) reads ``graph``'s file with ``options``: the importer's own
    keywords, ``import_options`` holding them all with their defaults
    (see :mod:`snnir.frontends.dialects.imported`); ``None``: not described."""

    name: str
    description: str
    on_read: Callable[[Graph, list[str]], Graph] = _unchanged
    on_write: Callable[[Graph, list[str]], Graph] = _unchanged
    read_defaults: dict = field(default_factory=dict)  # Semantics fields applied where a file says nothing
    read_notes: dict = field(default_factory=dict)  # Semantics field -> warning where the default was used
    dt_from_file: Callable[["Neuron"], float | None] | None = None
    imported_by: Callable[[Graph, list[str], dict], Graph] | None = None
    importer: str = ""
    import_options: dict = field(default_factory=dict)


DIALECTS: dict[str, Dialect] = {"nir": Dialect("nir", "plain NIR: the file means what the NIR spec says")}
_LOADERS: list[Callable[[], None]] = []


def register_dialect(dialect: Dialect) -> Dialect:
    DIALECTS[dialect.name] = dialect
    return dialect


def register_loader(load: Callable[[], None]) -> None:
    """``load()`` registers more dialects; :func:`get_dialect` calls it before naming a dialect unknown."""
    if load not in _LOADERS:
        _LOADERS.append(load)


#: ``predict(graph, library, warnings)``: what ``library``'s importer runs from the file ``graph``
#: as written (``imported_by``'s full check: fields the installed nir cannot store, the dialect's
#: prediction, the semantics it changes, appended to ``warnings``); set by the frontends' loader.
FILE_PREDICTORS: list[Callable[[Graph, str, list[str]], Graph]] = []


def all_dialects() -> dict[str, Dialect]:
    """Every dialect, the registered loaders' included."""
    for load in _LOADERS:
        load()
    return DIALECTS


def get_dialect(name: str | None) -> Dialect:
    if name is None:
        return DIALECTS["nir"]
    if name not in DIALECTS:
        all_dialects()
    try:
        return DIALECTS[name]
    except KeyError:
        raise SnnirError(f"unknown dialect '{name}' (known: {', '.join(sorted(DIALECTS))})") from None


def map_neurons(graph: Graph, fn: Callable[[str, "Neuron"], "Neuron"], prefix: str = "") -> Graph:
    """A copy of ``graph`` with ``fn(path, op)`` applied to every neuron, nested graphs included."""
    from snnir.ir.ops import Neuron, Subgraph

    nodes = {}
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph):
            op = op.replace(graph=map_neurons(op.graph, fn, f"{prefix}{name}."))
        elif isinstance(op, Neuron):
            op = fn(prefix + name, op)
        nodes[name] = op
    return graph.replace(nodes=nodes)
