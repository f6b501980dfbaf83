"""Library dialects: how each SNN library means the NIR files it writes and reads.

A dialect adjusts a graph after reading (``on_read``: e.g. Norse's tau = dt/tau_inv,
Sinabs' timestep units) and before writing (``on_write``: the form that
library's ``from_nir`` reads best). ``"nir"`` is plain NIR and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from snnir.errors import SnnirError
from snnir.ir.graph import Graph


def _unchanged(graph: Graph, warnings: list[str]) -> Graph:
    return graph


@dataclass(frozen=True)
class Dialect:
    """``on_read(graph, warnings)`` and ``on_write(graph, warnings)`` return new graphs,
    appending a line to ``warnings`` for anything lossy or assumed."""

    name: str
    description: str
    on_read: Callable[[Graph, list[str]], Graph] = _unchanged
    on_write: Callable[[Graph, list[str]], Graph] = _unchanged
    read_defaults: dict = field(default_factory=dict)  # Semantics fields applied where a file says nothing


DIALECTS: dict[str, Dialect] = {"nir": Dialect("nir", "plain NIR: the file means what the NIR spec says")}


def register_dialect(dialect: Dialect) -> Dialect:
    DIALECTS[dialect.name] = dialect
    return dialect


def get_dialect(name: str | None) -> Dialect:
    if name is None:
        return DIALECTS["nir"]
    _load_builtin()
    try:
        return DIALECTS[name]
    except KeyError:
        raise SnnirError(f"unknown dialect '{name}' (known: {', '.join(sorted(DIALECTS))})") from None


def _load_builtin() -> None:
    """Import the library dialect modules, which register themselves."""
    import importlib

    for module in ("snntorch", "norse", "sinabs", "rockpool", "spyx"):
        try:
            importlib.import_module(f"snnir.frontends.dialects.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"snnir.frontends.dialects.{module}":
                raise
