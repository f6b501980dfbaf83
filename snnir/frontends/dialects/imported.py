"""``imported_by(graph, library, **options)``: the graph a library simulates after its own
importer has read ``graph``'s file, and what changed on the way.

The file is what ``snnir.write(graph)`` writes (``as_written``: fused and other extension ops
in their standard NIR form): every node's NIR fields as they are in ``graph``. A library's
importer reads those fields, ignores our semantics record and runs its own: each dialect's ``imported_by`` hook restates the graph in those terms (its ``dt``,
discretisation, reset, spike rule, delays, dropped fields) so that ``snnir.run`` on the result
predicts that library's spikes. An importer that cannot read the graph raises
:class:`SnnirError` naming the node and the library; so does a behaviour snnir cannot state
exactly (never a silent difference).

Invariant: every returned graph verifies, and the warnings name every semantics field that
changed on a neuron (:func:`semantic_changes`) plus each library's own notes.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.ops import Neuron, Subgraph
from snnir.ir.ops.base import Op

#: Each Semantics field as warnings name it.
_FIELD_WORDS = {
    "dt": "dt", "discretisation": "discretisation", "reset": "reset", "reset_timing": "reset timing",
    "threshold_compare": "spike detection", "spike_mode": "spikes per step", "current_order": "current order",
}
_COMPARES = {"gt": "v > thr", "ge": "v >= thr"}


def import_options(library: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options ``library``'s importer runs with: its defaults updated with ``options``;
    an unknown library, or an option its importer does not take, is refused."""
    from snnir.ir.dialect import all_dialects, get_dialect

    dialect = get_dialect(library)
    if dialect.imported_by is None:
        known = ", ".join(sorted(n for n, d in all_dialects().items() if d.imported_by is not None))
        raise SnnirError(f"no importer is described for '{library}' (known: {known})")
    unknown = sorted(set(options) - set(dialect.import_options))
    if unknown:
        takes = ", ".join(sorted(dialect.import_options)) or "none"
        raise SnnirError(f"{dialect.importer} takes no option {unknown[0]!r} (it takes: {takes})")
    return {**dialect.import_options, **options}


#: What nirtorch's old ``load`` (Norse's and Sinabs' importers) does with a node it gets no module for.
DROPS_SILENTLY = "nirtorch's load drops the node and its edges without a word"


def refuse_unreadable(graph: Graph, readable: Iterable[type[Op]], library: str, prefix: str = "",
                      fate: str = "it cannot import this graph") -> None:
    """Raise naming the first node (nested graphs included) whose op ``library`` has no module
    for; ``fate`` says what the library does then."""
    readable = tuple(readable)
    for name, op in graph.nodes.items():
        if not isinstance(op, readable):
            raise SnnirError(f"{library} has no module for {op.op_type}: {fate}", prefix + name)
        if isinstance(op, Subgraph):
            refuse_unreadable(op.graph, readable, library, f"{prefix}{name}.", fate)


def refuse_several_ends(graph: Graph, library: str) -> None:
    """nirtorch's loaders run one Input and return one Output: refuse other graphs."""
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise SnnirError(f"{library} reads one Input and one Output; this graph has {len(graph.inputs)} and "
                         f"{len(graph.outputs)}: not predicted")


_NIRTORCH_LOOPS = "runs loops in nirtorch's own order, which snnir does not describe"


def refuse_loops(graph: Graph, library: str, prefix: str = "", runs: str = _NIRTORCH_LOOPS) -> None:
    """Refuse a loop (nested graphs included), saying how ``library`` ``runs`` it: by default, how
    nirtorch's old ``load`` (Norse, Sinabs, Rockpool) times one differs from snnir's last-step rule
    and is not described (the braille files differ)."""
    import networkx as nx

    from snnir.ir.schedule import node_digraph

    for component in nx.strongly_connected_components(node_digraph(graph)):
        if len(component) > 1 or any((n, n) in graph.edges for n in component):
            raise SnnirError(f"{library} {runs}: not predicted", prefix + sorted(component)[0])
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph):
            refuse_loops(op.graph, library, f"{prefix}{name}.", runs)


def refuse_unknown_fields(graph: Graph, library: str) -> None:
    """Every library here reads files through the installed ``nir.read``, which builds each node
    from all of its stored fields: a written ``v_reset`` (snnir writes only a non-zero one) on a
    node whose installed NIR class lacks that field (``LIF``, ``IF``, ``CubaLIF`` before nir 1.0.5)
    fails the read (``TypeError: unexpected keyword argument 'v_reset'``)."""
    try:
        import nir
    except ImportError:  # no nir here: the libraries cannot run either; their own rules decide
        return
    for path, op in graph.walk():
        cls = getattr(nir, op.op_type, None)
        fields = getattr(cls, "__dataclass_fields__", None)
        if isinstance(op, Neuron) and "v_reset" in op.param_names() and fields is not None \
                and "v_reset" not in fields and np.any(np.asarray(op.v_reset) != 0.0):
            raise SnnirError(f"{library} reads files with nir.read, and nir {getattr(nir, '__version__', '?')} has no {op.op_type}.v_reset "
                             "(the file stores a non-zero one): it cannot import this graph", path)


def clamped_decays(tau: Any, dt: float, path: str, library: str, warnings: list[str]) -> np.ndarray:
    """``tau`` where the library's Euler decay ``1 - dt/tau`` is clamped to [0, 1] (snnTorch, Spyx):
    a ``tau`` shorter than ``dt`` acts as ``tau = dt`` (no memory)."""
    tau = np.asarray(tau, float)
    if np.any(tau < dt):
        warnings.append(f"node '{path}': {library} clamps the decay 1 - dt/tau at 0 where tau < dt={dt:g}")
        return np.maximum(tau, dt)
    return tau


def _matters(op: Neuron) -> set[str]:
    fields = set(_FIELD_WORDS)
    if not op.spiking:
        fields -= {"reset", "reset_timing", "threshold_compare", "spike_mode"}
    if not op.has_current:
        fields.discard("current_order")
    if "tau" not in op.param_names() and "tau_mem" not in op.param_names():
        fields.discard("discretisation")
    return fields


def _said(name: str, value: Any) -> str:
    if name == "dt":
        return f"{value:.8g}"
    return _COMPARES.get(value, repr(value)) if name == "threshold_compare" else f"{value!r}"


def semantic_changes(before: Graph, after: Graph, library: str) -> list[str]:
    """One line per neuron and Semantics field that ``library`` simulates differently from
    ``before``'s statement (fields that mean nothing to the neuron are skipped)."""
    stated = {path: op for path, op in before.walk() if isinstance(op, Neuron)}
    lines = []
    for path, op in after.walk():
        old = stated.get(path)
        if not isinstance(op, Neuron) or old is None:
            continue
        for name in sorted(_matters(old), key=list(_FIELD_WORDS).index):
            have, run = getattr(old.sem, name), getattr(op.sem, name)
            if have != run:
                lines.append(f"node '{path}': {library} simulates {_FIELD_WORDS[name]} {_said(name, run)}, "
                             f"the graph states {_said(name, have)}")
    return lines


def imported_by(graph: Graph, library: str, **options: Any) -> tuple[Graph, list[str]]:
    """The graph ``library`` (a dialect name, e.g. ``"norse-1.0"``) simulates after its
    importer reads ``graph``'s file, and the warnings naming what changed and why.

    ``options`` are the importer's own (e.g. ``dt`` for Norse and Spyx; ``batch_size`` for
    Sinabs). Raises :class:`SnnirError` naming the node and library where the importer cannot
    read the graph or snnir cannot state exactly what it would run."""
    from snnir.ir.nir_io import as_written

    options = import_options(library, options)
    warnings: list[str] = []
    graph = as_written(graph, notes=warnings)  # the file: extension ops in their standard NIR form
    return predicted_from_file(graph, library, warnings, options), warnings


def predicted_from_file(graph: Graph, library: str, warnings: list[str], options: Mapping[str, Any] | None = None) -> Graph:
    """:func:`imported_by` of ``graph`` as it is in the file (already written), its warnings added
    to ``warnings``; ``options`` default to the importer's own, one without a default (Sinabs'
    ``batch_size``) taken as 1 (the file does not depend on it)."""
    from snnir.frontends.dialects import get_dialect
    from snnir.ir.verify import verify

    dialect = get_dialect(library)
    if options is None:
        options = {name: 1 if value is None else value for name, value in dialect.import_options.items()}
    refuse_unknown_fields(graph, dialect.importer)
    found: list[str] = []
    predicted = dialect.imported_by(graph, found, dict(options))
    warnings.extend(found)
    warnings[:0] = semantic_changes(graph, predicted, dialect.importer)
    verify(predicted)
    return predicted
