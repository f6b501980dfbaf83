"""Rockpool 3.1 (torch backend): what its ``to_nir`` writes and what its ``from_nir`` reads.

Rockpool steps exactly (``alpha = exp(-dt / tau)``) and counts spikes:
``LIFTorch`` (written as ``CubaLIF``): ``i' = beta (i + x)``, ``v' = alpha v + i'``;
``LIFNeuronTorch`` (written as ``LIF``): ``v' = alpha v + x``; then
``floor(v / thr)`` spikes when ``v >= thr`` and reset by subtraction, same step.
``to_nir`` writes ``r = tau exp(-dt / tau) / dt`` and no ``dt`` (default 1e-3), which is
not the gain it uses; ``on_read`` sets the exact NIR gains at the read ``dt``
(``r = 1 / (1 - alpha)``, ``w_in = beta / (1 - beta)``). Rockpool's files carry
shapes that nir's type check refuses (read them with snnir, which does not need it).

Since ``r`` carries ``dt``, reading needs no ``dt`` (``dt_from_file``, unless the caller gives one):
it solves ``r = tau exp(-dt / tau) / dt`` exactly, so the file runs as the network that wrote it.
Rockpool's own ``from_nir`` (``nn/modules/torch/nir.py``) takes the first-order
``min(tau_mem / (1 + r))`` per node instead — 9.992e-5 for the 1e-4 of the paper's
``lif_rockpool.nir`` — which moves spikes in longer runs (a prediction of Rockpool's re-import
must use that; reading the writer's meaning must not). ``from_nir`` reads ``LIF.tau_mem``
(NIR's ``LIF`` has ``tau``: it fails). ``on_write`` therefore refuses ``LIF`` and
writes ``CubaLIF`` with ``r = tau_mem / dt - 1`` and the gains folded into the threshold.
"""

from __future__ import annotations

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.dialects import (
    Dialect, decay_gain, drop_sample_batch, each_neuron, map_neurons, note_semantics, register_dialect,
)
from snnir.frontends.dialects.imported import refuse_several_ends, refuse_unreadable
from snnir.ir.graph import Graph
from snnir.ir.ops import LIF, Affine, CubaLIF, Input, Linear, Neuron, Output

ROCKPOOL_DT = 1e-3
SEMANTICS = {"discretisation": "exp", "reset": "subtract", "reset_timing": "same", "threshold_compare": "ge",
             "spike_mode": "multi", "current_order": "current_first"}


def _decay(tau, dt: float) -> np.ndarray:
    return np.exp(-dt / np.asarray(tau, float))


def _time_constant(op: Neuron) -> np.ndarray | None:
    if isinstance(op, LIF):
        return np.asarray(op.tau, float)
    if isinstance(op, CubaLIF):
        return np.asarray(op.tau_mem, float)
    return None


def written_dt(op: Neuron) -> float | None:
    """The ``dt`` for which ``to_nir``'s ``r = tau exp(-dt / tau) / dt`` gives the node's ``r``
    (one for all its neurons), or ``None`` when there is no such single ``dt`` (or no neuron).

    ``log r = log(tau / dt) - dt / tau`` falls strictly with ``dt``: Newton's method from
    Rockpool's own first-order guess ``tau / (1 + r)`` converges in a few steps.
    """
    tau = _time_constant(op)
    r = np.asarray(op.r, float)
    if tau is None or tau.size == 0 or r.size == 0 or np.any(tau <= 0) or np.any(r <= 0) or not np.all(np.isfinite(tau)) or not np.all(np.isfinite(r)):
        return None
    dt = tau / (1.0 + r)
    for _ in range(50):
        step = (np.log(tau / dt) - dt / tau - np.log(r)) / (1.0 / dt + 1.0 / tau)
        dt = dt + step
        if np.all(np.abs(step) <= 1e-15 * dt):
            break
    if not (np.all(dt > 0) and np.allclose(dt, dt.flat[0], rtol=1e-6)):
        return None
    return float(dt.flat[0])


def _with_exact_gains(op: Neuron) -> Neuron:
    """``op`` with the NIR gains of Rockpool's step at ``op.sem.dt`` (``v' = alpha v + x``,
    ``i' = beta (i + x)``)."""
    dt = op.sem.dt
    if isinstance(op, LIF):
        return op.replace(r=1.0 / (1.0 - _decay(op.tau, dt)))
    if isinstance(op, CubaLIF):
        beta = _decay(op.tau_syn, dt)
        return op.replace(r=1.0 / (1.0 - _decay(op.tau_mem, dt)), w_in=beta / (1.0 - beta))
    return op


def _exact_gains(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    tau = _time_constant(op)
    if tau is None:
        return op
    dt = op.sem.dt
    if not np.allclose(op.r, tau * _decay(tau, dt) / dt, rtol=1e-4):
        warnings.append(f"node '{path}': r is not Rockpool's tau*exp(-dt/tau)/dt at dt={dt}: was dt different?")
    return _with_exact_gains(op)


def _on_read(graph: Graph, warnings: list[str]) -> Graph:
    graph = drop_sample_batch(graph, warnings)
    return map_neurons(graph, lambda path, op: _exact_gains(path, op, warnings))


def _for_import(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    if not isinstance(op, CubaLIF):
        raise SnnirError(f"Rockpool 3.1's from_nir cannot read {op.op_type} (its LIF import reads a "
                         "'tau_mem' that NIR's LIF does not have); only CubaLIF is written", path)
    if np.any(op.v_leak != 0.0):
        raise SnnirError("Rockpool reads v_leak as a bias current; only v_leak = 0 is written", path)
    note_semantics(op, path, "Rockpool", SEMANTICS, warnings)
    dt = op.sem.dt
    alpha, g_mem = decay_gain(op.tau_mem, op.sem)
    beta, g_syn = decay_gain(op.tau_syn, op.sem)
    tau_mem, tau_syn = -dt / np.log(alpha), -dt / np.log(beta)
    # Rockpool: i' = beta (i + x), v' = alpha v + i'. Ours: i' = beta i + g_syn w_in x,
    # v' = alpha v + g_mem r i'. So v_ours = v_rockpool * scale.
    scale = g_mem * np.asarray(op.r, float) * g_syn * np.asarray(op.w_in, float) / beta
    if not np.allclose(scale, 1.0):
        warnings.append(f"node '{path}': input gains folded into v_threshold for Rockpool")
    return op.replace(tau_mem=tau_mem, tau_syn=tau_syn, r=tau_mem / dt - 1.0, w_in=np.ones_like(tau_mem),
                      v_threshold=op.v_threshold / scale, sem=op.sem.with_(**SEMANTICS))


# --- what from_nir builds from a file (imported_by) ----------------------------------
_IMPORTER = "Rockpool 3.1's from_nir"


def _as_built(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    """``LIFTorch`` at ``dt = min(tau_mem / (1 + r))`` over the node (Rockpool's guess),
    exact exponential step, multi-spike ``v >= thr``, subtract; v_reset ignored."""
    if isinstance(op, LIF):
        raise SnnirError(f"{_IMPORTER} reads LIF.tau_mem, which NIR's LIF lacks (AttributeError): it cannot "
                         "import this graph", path)
    if np.any(op.v_leak != 0.0):
        raise SnnirError(f"{_IMPORTER} reads v_leak as a bias current, which snnir cannot state: not predicted",
                         path)
    dt = float(np.min(np.asarray(op.tau_mem, float) / (1.0 + np.asarray(op.r, float))))
    if not dt > 0.0:
        raise SnnirError(f"{_IMPORTER} takes dt = min(tau_mem / (1 + r)) = {dt:g}, not a step", path)
    if np.any(op.v_reset != 0.0):
        warnings.append(f"node '{path}': {_IMPORTER} ignores v_reset (subtracts the threshold)")
    warnings.append(f"node '{path}': {_IMPORTER} takes dt = min(tau_mem / (1 + r)) = {dt:.6g} and ignores r "
                    "and w_in otherwise")
    return _with_exact_gains(op.replace(sem=op.sem.with_(dt=dt, **SEMANTICS)))


def _in_one_call(graph: Graph, warnings: list[str]) -> Graph:
    """The edges that run: Rockpool calls nirtorch's GraphExecutor once on the whole sequence, and
    it runs each node once, in depth-first preorder from the root along each node's out-edges in
    the file's order (nirtorch/graph_utils.py:71); an edge from a node that runs later (a loop's
    way back) finds no output and is dropped (graph_executor.py:113-121). It returns the output of
    the node it runs last."""
    roots = [name for name in graph.nodes if not graph.in_edges(name)]
    if len(roots) != 1:
        raise SnnirError(f"{_IMPORTER} starts nirtorch's run at one of the nodes without inputs "
                         f"({', '.join(sorted(roots)) or 'none'}), chosen by hash order: not predicted")
    order: dict[str, int] = {}
    pending = [roots[0]]
    while pending:  # depth first, out-edges in file order
        name = pending.pop()
        if name not in order:
            order[name] = len(order)
            pending.extend(dst for _, dst in reversed(graph.out_edges(name)) if dst not in order)
    unreached = sorted(set(graph.nodes) - set(order))
    if unreached:
        raise SnnirError(f"{_IMPORTER}'s nirtorch run never reaches this node from '{roots[0]}': not predicted",
                         unreached[0])
    last = max(order, key=order.get)
    if last not in graph.outputs:
        raise SnnirError(f"{_IMPORTER}'s nirtorch run returns the output of the node it runs last, this one, not the "
                         "graph's Output: not predicted", last)
    dropped = [(src, dst) for src, dst in graph.edges if order[src] >= order[dst]]
    for src, dst in dropped:
        warnings.append(f"edge '{src}' -> '{dst}': {_IMPORTER} runs the whole sequence in one call of nirtorch's "
                        f"GraphExecutor, which runs '{dst}' first and drops this edge (graph_executor.py:113-121)")
    return graph.replace(edges=tuple(e for e in graph.edges if e not in dropped)) if dropped else graph


def _imported(graph: Graph, warnings: list[str], options: dict) -> Graph:
    refuse_unreadable(graph, (Input, Output, Linear, Affine, LIF, CubaLIF), _IMPORTER)
    refuse_several_ends(graph, _IMPORTER)
    graph = _in_one_call(graph, warnings)
    return map_neurons(graph, lambda path, op: _as_built(path, op, warnings))


_FOR_IMPORT = each_neuron(_for_import, note="rockpool: the file is for Rockpool's from_nir "
                          "(r = tau_mem/dt - 1 carries dt), not plain NIR")


def _on_write(graph: Graph, warnings: list[str]) -> Graph:
    """The file for Rockpool's importer; refused where its one-call run would drop an edge (a loop's)."""
    graph = _FOR_IMPORT(graph, warnings)
    why: list[str] = []
    runs = _in_one_call(graph, why)
    dropped = [edge for edge in graph.edges if edge not in runs.edges]
    if dropped:
        raise SnnirError(f"not written for rockpool: {why[0]}, so it would not run this network", dropped[0][1])
    return graph


DIALECT = register_dialect(Dialect(
    name="rockpool",
    description="Rockpool 3.1: exact exp step at dt=1e-3, multi-spike, subtract; r in files is not the gain",
    on_read=_on_read,
    on_write=_on_write,
    read_defaults={"dt": ROCKPOOL_DT, **SEMANTICS},
    dt_from_file=written_dt,
    imported_by=_imported,
    importer=_IMPORTER,
))
