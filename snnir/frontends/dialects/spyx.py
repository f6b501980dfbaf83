"""Spyx 1.0 (JAX): what its ``to_nir`` writes and what its ``from_nir`` reads.

Spyx counts time in steps (``dt = 1`` by default) and writes ``tau = dt / (1 - beta)``
with ``r = beta`` (not a gain: Spyx adds its input unscaled, ``V' = beta V + x``).
Its ``LIF``/``IF`` emit the spike of the membrane *before* the update,
``s_t = H(V_{t-1} - thr)``, and subtract it in the same update: in our terms a
forward-Euler neuron with ``reset_timing="next"``, subtract reset, ``v > thr``,
whose spikes leave one step late. ``on_read`` sets the unit gains (``r = tau/dt``,
``IF`` ``r = 1/dt``) and inserts a one-step ``Delay`` after every top-level spiking
neuron; ``on_write`` removes such delays (Spyx adds them back by itself) and folds
the input gain into the threshold, as Spyx's ``from_nir`` ignores ``r``.
``CuBaLIF`` subtracts the reset before the decay (``beta (V - s thr)``), which our
semantics cannot say: it is read with a warning.

A recurrent layer (``RIF``/``RLIF``/``RCuBaLIF``) is written as a subgraph whose input
edge goes into the recurrent weights (``input -> w_rec``, ``w_rec <-> neuron``), which
NIR reads as ``W_rec`` applied to the input too; Spyx's ``from_nir`` ignores those edges
and adds the input straight to the neuron. ``on_read`` restates the edge as
``input -> neuron`` and delays the neuron's spikes one step on their way out, as at the
top level (the loop itself already feeds back one step late).

Spyx runs channels-last (``[H, W, C]``) and flattens in that order, while its ``to_nir``
writes NIR's channel-first shapes and OIHW conv weights but leaves the Linear after a
Flatten in its own order. ``on_read`` restates such a Linear's (or Affine's) weight
columns in NIR's channel-first order, ``on_write`` back in Spyx's.
"""

from __future__ import annotations

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.dialects import Dialect, as_euler, map_neurons, note_semantics, register_dialect
from snnir.frontends.dialects.imported import clamped_decays, refuse_unreadable
from snnir.ir.graph import Graph
from snnir.ir.ops import (
    IF, LI, LIF, Affine, Conv2d, CubaLIF, Delay, Flatten, Input, Linear, Neuron, Output, Subgraph, SumPool2d,
)
from snnir.ir.semantics import Semantics
from snnir.ir.shapes import infer_shapes

SPYX_DT = 1.0
SEMANTICS = {"discretisation": "euler", "reset": "subtract", "reset_timing": "next", "threshold_compare": "gt",
             "spike_mode": "single", "current_order": "current_first"}
DELAY_SUFFIX = "_spyx_delay"


def _unit_gains(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    """Spyx adds every input unscaled (``V' = beta V + x``; PSU_LIF is written as an LI)."""
    dt = op.sem.dt
    if op.spiking and np.any(np.asarray(op.v_threshold) < 0):
        warnings.append(f"node '{path}': a threshold below 0: Spyx spikes at its first step from the zero "
                        "membrane, where the read graph's first spikes (one step late) are 0")
    if isinstance(op, LI):
        return op.replace(r=np.asarray(op.tau, float) / dt)
    if isinstance(op, IF):
        return op.replace(r=np.full(np.shape(op.r), 1.0 / dt))
    if isinstance(op, LIF):
        return op.replace(r=np.asarray(op.tau, float) / dt)
    if isinstance(op, CubaLIF):
        warnings.append(f"node '{path}': Spyx's CuBaLIF decays its reset (beta (V - s thr)); read as "
                        "reset after the decay, which differs after each spike")
        return op.replace(r=np.asarray(op.tau_mem, float) / dt, w_in=np.asarray(op.tau_syn, float) / dt)
    return op


def _flatten_order(graph: Graph, warnings: list[str], to_nir: bool) -> Graph:
    """Linear/Affine weights after a Flatten of ``[C, *positions]``: Spyx's channels-last
    column order restated channel-first (``to_nir``), or back."""
    fed: dict[str, list[str]] = {}
    for src, dst in graph.edges:
        fed.setdefault(dst, []).append(src)
    flattens = [n for n, op in graph.nodes.items() if isinstance(op, Flatten)]
    if not flattens:
        return graph
    try:
        shapes = infer_shapes(graph)
    except SnnirError as exc:
        warnings.append(f"spyx: shapes unknown ({exc}); Linear weights after a Flatten kept as written")
        return graph
    nodes = dict(graph.nodes)
    for name, op in graph.nodes.items():
        sources = fed.get(name, [])
        if not isinstance(op, (Affine, Linear)) or len(sources) != 1 or sources[0] not in flattens:
            continue
        shape = tuple(shapes.inputs[sources[0]])
        if len(shape) < 2 or len(shapes.outputs[sources[0]]) != 1:
            continue
        weight = np.asarray(op.weight)
        rows, channels, positions = weight.shape[0], shape[0], shape[1:]
        if to_nir:  # columns ordered (*positions, C) -> (C, *positions)
            weight = np.moveaxis(weight.reshape((rows,) + positions + (channels,)), -1, 1)
        else:
            weight = np.moveaxis(weight.reshape((rows, channels) + positions), 1, -1)
        nodes[name] = op.replace(weight=np.ascontiguousarray(weight).reshape(rows, -1))
        warnings.append(f"node '{name}': Spyx flattens channels-last; its weights restated "
                        f"{'channel-first, as NIR orders them' if to_nir else 'channels-last, as Spyx orders them'}")
    return graph.replace(nodes=nodes)


def _recurrent_layer(name: str, op: Subgraph, warnings: list[str]) -> Subgraph:
    """Spyx's recurrent subgraph (``input -> w_rec <-> neuron -> output``) as Spyx runs it:
    ``input -> neuron <-> w_rec``, the neuron's spikes one step late to ``output``; any other
    subgraph unchanged."""
    inner = op.graph
    kinds = {type(o): n for n, o in inner.nodes.items()}
    neuron = next((n for n, o in inner.nodes.items() if isinstance(o, Neuron) and o.spiking), None)
    weights = next((n for n, o in inner.nodes.items() if isinstance(o, (Linear, Affine))), None)
    source, sink = kinds.get(Input), kinds.get(Output)
    spyx_edges = {(source, weights), (weights, neuron), (neuron, weights), (neuron, sink)}
    if len(inner.nodes) != 4 or None in (neuron, weights, source, sink) or set(inner.edges) != spyx_edges:
        return op
    late = neuron + DELAY_SUFFIX
    dt = inner.nodes[neuron].sem.dt
    edges = ((source, neuron), (weights, neuron), (neuron, weights), (neuron, late), (late, sink))
    warnings.append(f"node '{name}': Spyx's recurrent layer adds its input straight to the neuron (its file "
                    "routes it through w_rec); restated, and its spikes delayed one step")
    nodes = {**inner.nodes, late: Delay(delay=np.asarray(dt), sem=Semantics(dt=dt))}
    return op.replace(graph=inner.replace(nodes=nodes, edges=edges))


def _on_read(graph: Graph, warnings: list[str]) -> Graph:
    graph = _flatten_order(graph, warnings, to_nir=True)
    graph = map_neurons(graph, lambda path, op: _unit_gains(path, op, warnings))
    graph = graph.replace(nodes={n: _recurrent_layer(n, op, warnings) if isinstance(op, Subgraph) else op
                                 for n, op in graph.nodes.items()})
    nodes, edges = dict(graph.nodes), list(graph.edges)
    for name, op in graph.nodes.items():
        if isinstance(op, Neuron) and op.spiking:
            late = name + DELAY_SUFFIX
            nodes[late] = Delay(delay=np.asarray(op.sem.dt), sem=Semantics(dt=op.sem.dt))
            edges = [(late if src == name else src, dst) for src, dst in edges] + [(name, late)]
    warnings.append("spyx: each spiking layer's output delayed one step, as Spyx emits it")
    return graph.replace(nodes=nodes, edges=tuple(edges))


def _without_late_spikes(graph: Graph, warnings: list[str]) -> Graph:
    """``graph`` without the one-step delays ``on_read`` put after spiking neurons (Spyx adds
    them back itself), in recurrent subgraphs too."""
    nodes, edges = dict(graph.nodes), list(graph.edges)
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph):
            nodes[name] = op.replace(graph=_without_late_spikes(op.graph, warnings))
        if isinstance(op, Neuron) and op.spiking:
            late = name + DELAY_SUFFIX
            if isinstance(nodes.get(late), Delay):
                del nodes[late]
                edges = [(name if src == late else src, dst) for src, dst in edges if (src, dst) != (name, late)]
            else:
                warnings.append(f"node '{name}': Spyx emits its spikes one step late")
    return graph.replace(nodes=nodes, edges=tuple(edges))


def _on_write(graph: Graph, warnings: list[str]) -> Graph:
    graph = _flatten_order(_without_late_spikes(graph, warnings), warnings, to_nir=False)
    return map_neurons(graph, lambda path, op: _for_spyx(path, op, warnings))


def _for_spyx(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    """Spyx adds its input unscaled (``V' = beta V + x``, ``beta = 1 - dt/tau``): fold our
    input gain into the threshold (exact for subtract reset and ``v_leak = 0``)."""
    if not isinstance(op, (IF, LIF)):
        raise SnnirError(f"Spyx's from_nir is not written for {op.op_type} here (only LIF and IF)", path)
    note_semantics(op, path, "Spyx", SEMANTICS, warnings)
    if isinstance(op, IF):
        gain = op.sem.dt * np.asarray(op.r, float)
        unit = {"r": np.full(np.shape(gain), 1.0 / op.sem.dt)}
    else:
        if np.any(op.v_leak != 0.0):
            raise SnnirError("Spyx's LIF has no v_leak; only v_leak = 0 is written", path)
        op = as_euler(op, op.sem.dt, path)
        gain = op.sem.dt / op.tau * op.r
        unit = {"r": op.tau / op.sem.dt}
    if not np.allclose(gain, 1.0):
        warnings.append(f"node '{path}': input gain folded into v_threshold (Spyx adds its input unscaled)")
    return op.replace(v_threshold=op.v_threshold / gain, sem=op.sem.with_(**SEMANTICS), **unit)


# --- what from_nir builds from a file (imported_by) ----------------------------------
_IMPORTER = "Spyx's from_nir"
READABLE = (Input, Output, Affine, Linear, Conv2d, SumPool2d, Flatten, IF, LIF, CubaLIF, Subgraph)


def _chain(graph: Graph) -> None:
    """Refuse a graph Spyx's ``from_nir`` would not run whole: it follows the first edge out of
    ``"input"``, then of each next node, to ``"output"``, and builds a Sequential of that chain."""
    if "input" not in graph.nodes or "output" not in graph.nodes:
        raise SnnirError(f"{_IMPORTER} follows edges from a node named 'input' to one named 'output', which this "
                         "graph lacks: it cannot import this graph")
    chain, node = ["input"], "input"
    while node != "output":
        node = next((dst for src, dst in graph.edges if src == node), None)
        if node is None or node in chain:
            raise SnnirError(f"{_IMPORTER}'s chain of first edges from 'input' never reaches 'output': it cannot "
                             "import this graph", chain[-1])
        chain.append(node)
    steps = set(zip(chain, chain[1:]))
    for src, dst in graph.edges:
        if (src, dst) not in steps:
            raise SnnirError(f"{_IMPORTER} runs only the chain of first edges from 'input' to 'output' and drops "
                             f"the edge to '{dst}': not predicted", src)


def _as_built(path: str, op: Neuron, warnings: list[str], dt: float) -> Neuron:
    """Spyx's ``LIF``/``IF`` at its ``dt``: ``beta = clip(1 - dt/tau, 0, 1)``, input unscaled,
    v_leak and v_reset ignored (``_unit_gains`` and the delays follow in ``_on_read``)."""
    if isinstance(op, CubaLIF):
        raise SnnirError(f"{_IMPORTER} builds CuBaLIF, which decays its reset (beta (V - s thr)); snnir cannot "
                         "state that: not predicted", path)
    if np.any(op.v_reset != 0.0):
        warnings.append(f"node '{path}': {_IMPORTER} ignores v_reset (subtracts the threshold)")
    if isinstance(op, LIF):
        if np.any(op.v_leak != 0.0):
            warnings.append(f"node '{path}': {_IMPORTER} ignores v_leak")
        op = op.replace(tau=clamped_decays(op.tau, dt, path, _IMPORTER, warnings), v_leak=np.zeros(np.shape(op.v_leak)))
    if not np.allclose(op.r, 1.0 / dt if isinstance(op, IF) else np.asarray(op.tau, float) / op.sem.dt):
        warnings.append(f"node '{path}': {_IMPORTER} adds the input unscaled (ignores r)")
    return op.replace(v_reset=np.zeros(np.shape(op.v_reset)), sem=op.sem.with_(dt=dt, **SEMANTICS))


def _imported(graph: Graph, warnings: list[str], options: dict) -> Graph:
    dt = options["dt"]
    refuse_unreadable(graph, READABLE, _IMPORTER)
    _chain(graph)
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph) and _recurrent_layer(name, op, []) is op:
            raise SnnirError(f"{_IMPORTER} reads a nested graph only as a recurrent layer in Spyx's own form "
                             "(input -> w_rec <-> neuron -> output): not predicted", name)
    return _on_read(map_neurons(graph, lambda path, op: _as_built(path, op, warnings, dt)), warnings)


DIALECT = register_dialect(Dialect(
    name="spyx",
    description="Spyx 1.0: dt=1 Euler, spikes of the previous membrane (one step late), subtract reset",
    on_read=_on_read,
    on_write=_on_write,
    imported_by=_imported,
    importer=_IMPORTER,
    import_options={"dt": SPYX_DT},
    read_defaults={"dt": SPYX_DT, **SEMANTICS},
))
