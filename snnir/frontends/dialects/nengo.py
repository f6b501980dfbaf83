"""nengo 4.1, importing a file as the NIR paper's ``nir_to_nengo`` recipe does (``snnir.peers.nengo_recipe``).

nengo writes no NIR files: reading and writing with this dialect is plain NIR. ``imported_by``
restates what nengo simulates after that recipe reads a file, stepped at ``nengo.Simulator``'s
``dt`` (its option; nengo's default 1e-3, the paper's 1e-4):

- ``nengo.LIF`` (``nengo/neurons.py``) integrates ``v += (J - v)(1 - exp(-dt/tau_rc))`` (the
  exact step for an input held over the step: NIR's LIF with ``discretisation="exp"``), spikes
  when ``v > 1``, resets to 0 in the same step and, with ``tau_ref = 0``, is never refractory.
  ``J = gain x`` with ``gain = 1 / v_threshold``: the same neuron with threshold 1 and
  ``r = 1 / v_threshold``. Every neuron takes the first neuron's ``tau``.
- Its spikes are ``1 / dt`` high (``amplitude / dt``): a ``Scale(1 / dt)`` follows each LIF.
- It floors the membrane at ``min_voltage = 0``, which snnir cannot state: a LIF whose input can
  be negative (a negative weight or bias on the way from the graph's input) is not predicted,
  and the prediction holds for non-negative graph inputs (spikes).
- ``LI`` is a ``Lowpass(tau)`` synapse (``nengo/synapses.py``, zero-order hold: the exact step,
  ``r = 1``, ``v_leak = 0`` whatever the file says) built in "update" mode, so its output
  reaches the next step: an ``LI`` followed by a one-step ``Delay``.
- ``Affine`` is ``weight @ x + bias`` in the same step; connections have no delay.

A refractory period (``tau_ref > 0``, which the recipe never sets) would hold each neuron for a
time measured from its spike's interpolated moment within the step: no Semantics field says that.
"""

from __future__ import annotations

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.dialects import Dialect, register_dialect
from snnir.frontends.dialects.imported import refuse_loops, refuse_several_ends, refuse_unreadable
from snnir.ir.graph import Graph
from snnir.ir.ops import LI, LIF, Affine, Delay, Input, Output, Scale
from snnir.ir.semantics import Semantics
from snnir.peers.nengo_recipe import NENGO_DT

_IMPORTER = "the NIR paper's nir_to_nengo (nengo)"
READABLE = (Input, Output, LIF, LI, Affine)
SEMANTICS = {"discretisation": "exp", "reset": "zero", "reset_timing": "same", "threshold_compare": "gt",
             "spike_mode": "single"}


def _refuse_shapes(graph: Graph) -> None:
    """The recipe sizes nodes by the first entry of a shape and ``tau[0]``: one-dimensional only."""
    for name, op in graph.nodes.items():
        if isinstance(op, Input) and len(op.shape) != 1:
            raise SnnirError(f"{_IMPORTER} sizes an Input by the first entry of its shape {list(op.shape)}: "
                             "it cannot import this graph", name)
        if isinstance(op, (LIF, LI)) and np.ndim(op.tau) != 1:
            raise SnnirError(f"{_IMPORTER} reads {op.op_type}.tau[0] as a scalar time constant; this tau has "
                             f"shape {list(np.shape(op.tau))}: it cannot import this graph", name)
        if isinstance(op, LIF) and (np.any(op.r != 1.0) or np.any(op.v_leak != 0.0)):
            raise SnnirError(f"{_IMPORTER} asserts LIF r == 1 and v_leak == 0: it cannot import this graph", name)


def _non_negative_inputs(graph: Graph) -> dict[str, bool]:
    """Whether each node's summed input is never negative when the graph's inputs are not (spikes)."""
    import networkx as nx

    from snnir.ir.schedule import node_digraph

    digraph = node_digraph(graph)
    fed: dict[str, bool] = {}
    gives: dict[str, bool] = {}  # whether each node's output is never negative
    for name in nx.topological_sort(digraph):
        op = graph.nodes[name]
        fed[name] = all(gives[pre] for pre in digraph.predecessors(name))
        if isinstance(op, Affine):
            gives[name] = fed[name] and bool(np.all(op.weight >= 0) and np.all(op.bias >= 0))
        else:
            gives[name] = isinstance(op, (Input, LIF)) or fed[name]
    return fed


def _restated(graph: Graph, warnings: list[str], dt: float) -> Graph:
    """Each LIF as nengo steps it, with its 1/dt spikes; each LI with its one-step delay."""
    sem = Semantics(dt=dt, **SEMANTICS)
    nodes, renamed = {}, {}
    fed = _non_negative_inputs(graph)
    for name, op in graph.nodes.items():
        nodes[name] = op
        if not isinstance(op, (LIF, LI)):
            continue
        tau = np.full(np.shape(op.tau), float(np.asarray(op.tau).flat[0]))
        if np.any(tau != op.tau):
            warnings.append(f"node '{name}': nengo runs every neuron with the first tau, {tau[0]:.8g}")
        if isinstance(op, LIF):
            if np.any(np.asarray(op.v_threshold) <= 0):
                raise SnnirError("nengo's LIF gets gain 1/v_threshold and fires above 1; a threshold <= 0 gives a "
                                 "gain snnir does not state: not predicted", name)
            if not fed[name]:
                raise SnnirError("nengo's LIF floors its membrane at 0 (min_voltage), which snnir cannot state, "
                                 "and this node's input can be negative (a negative weight or bias): not predicted",
                                 name)
            if np.any(op.v_reset != 0.0):
                warnings.append(f"node '{name}': nengo's LIF ignores v_reset (resets to 0)")
            gain = np.ones(np.shape(op.v_threshold)) / np.asarray(op.v_threshold, float)
            nodes[name] = op.replace(tau=tau, r=gain, v_threshold=np.ones_like(gain),
                                     v_reset=np.zeros(np.shape(op.v_reset)), sem=sem)
            renamed[name] = f"{name}_nengo_spike_height"
            nodes[renamed[name]] = Scale(scale=np.full(np.shape(gain), 1.0 / dt))
            warnings.append(f"node '{name}': nengo's LIF has threshold 1 and input gain 1/v_threshold; its spikes "
                            f"are 1/dt = {1.0 / dt:g} high, and it floors the membrane at 0 (exact for non-negative "
                            "inputs)")
        else:
            if np.any(op.r != 1.0) or np.any(op.v_leak != 0.0):
                warnings.append(f"node '{name}': nengo's Lowpass ignores LI r and v_leak (r = 1, v_leak = 0)")
            nodes[name] = op.replace(tau=tau, r=np.ones(np.shape(tau)), v_leak=np.zeros(np.shape(tau)),
                                     sem=op.sem.with_(dt=dt, discretisation="exp"))
            renamed[name] = f"{name}_nengo_synapse_delay"
            nodes[renamed[name]] = Delay(delay=np.full(np.shape(tau), dt), sem=Semantics(dt=dt))
            warnings.append(f"node '{name}': nengo's Lowpass synapse passes its output on one step late")
    edges = tuple((renamed.get(src, src), dst) for src, dst in graph.edges)
    edges += tuple((name, after) for name, after in renamed.items())
    return graph.replace(nodes=nodes, edges=edges)


def _imported(graph: Graph, warnings: list[str], options: dict) -> Graph:
    refuse_unreadable(graph, READABLE, _IMPORTER,
                      fate="the recipe skips the node and the edge naming it fails (KeyError): it cannot import "
                           "this graph")
    refuse_several_ends(graph, _IMPORTER)
    _refuse_shapes(graph)
    refuse_loops(graph, "nengo", runs="builds a loop only through a synapse and orders its operators itself, "
                 "which snnir does not describe")
    return _restated(graph, warnings, options["dt"])


DIALECT = register_dialect(Dialect(
    name="nengo",
    description="nengo 4.1 through the NIR paper's nir_to_nengo: exact LIF step, threshold 1, spikes 1/dt high, "
                "membrane floored at 0, LI as a Lowpass synapse one step late (writes no NIR files)",
    imported_by=_imported,
    importer=_IMPORTER,
    import_options={"dt": NENGO_DT},
))
