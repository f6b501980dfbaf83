"""snnTorch 1.x: what its ``export_to_nir`` writes and what its ``import_from_nir`` reads.

Export (``Leaky``, ``Synaptic``, ``RLeaky``, ``RSynaptic``) hard-codes ``dt = 1e-4`` and
writes ``tau = dt / (1 - beta)``, ``r = tau / dt`` (and ``w_in = tau_syn / dt``), so in
forward Euler ``v' = beta v + x``; the reset mechanism is not stored. Read defaults are
a default ``Leaky``: subtract reset, delayed by one step (``reset_delay=True``), spike
when ``v > threshold``, synaptic current updated before the membrane.

Import (snnTorch 1.0.0 through nirtorch 2.6) builds every LIF as ``Leaky`` and every
CubaLIF as ``Synaptic``, both ``reset_mechanism="zero"``, ``reset_delay=False`` at
``dt = 1e-4``, and needs ``v_leak = 0``. ``on_write`` writes what that importer runs
with the same spikes at any batch size:

- neurons re-timed to that step (decays and gains kept exactly); a zero reset delayed
  before the input (``reset_timing="next"``) restated as ``"same"``, which gives the
  same spikes; any other reset, or a semantics field snnTorch does not honour, warned
  about naming the node; what it cannot build (IF, LI, per-neuron thresholds, a negative
  threshold, which its ``reset_delay=False`` correction treats differently) refused;
- ``Flatten`` with negative dims: the importer builds ``nn.Flatten(start_dim, end_dim)``
  from the file's batch-free dims, which only negative dims keep off the batch; a
  convolution's bias stated per channel (``torch.Tensor`` refuses a scalar);
- a neuron in a loop with one weight op (RLeaky / RSynaptic) nested as a graph
  ``input -> neuron <-> recurrent -> output``, which nirtorch runs with last step's
  spikes on the loop (zero at the first step). A flat loop is wrapped by snnTorch's own
  ``_create_rnn_subgraph``, which feeds the input through the recurrent weight. A
  per-neuron ``Scale`` (RLeaky's ``V``) becomes a diagonal ``Linear``; a recurrent bias,
  which snnTorch adds from the first step, moves onto the input through an identity
  ``Affine``;
- nodes in execution order (nirtorch builds a nested graph before checking its inputs
  are ready, and fails on a second visit: ``'GraphModule' object has no attribute 'items'``).
"""

from __future__ import annotations

from collections import deque

import networkx as nx
import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.snntorch_map import RECHECK
from snnir.frontends.dialects import (
    Dialect, as_euler, drop_sample_batch, map_neurons, note_semantics, register_dialect,
)
from snnir.frontends.dialects.imported import clamped_decays, refuse_several_ends, refuse_unreadable
from snnir.ir.graph import Graph
from snnir.ir.ops import (
    IF, LIF, Affine, AvgPool2d, Conv1d, Conv2d, CubaLIF, Flatten, Input, Linear, Neuron, Op, Output, Scale,
    Subgraph, SumPool2d,
)
from snnir.ir.schedule import node_digraph, schedule
from snnir.ir.shapes import Shapes, infer_shapes

#: The step snnTorch's exporter and importer assume.
SNNTORCH_DT = 1e-4
#: How ``import_from_nir`` runs every spiking neuron.
IMPORT_SEMANTICS = {"reset": "zero", "reset_timing": "same", "threshold_compare": "gt",
                    "current_order": "current_first", "spike_mode": "single"}
#: What ``import_from_nir`` (with nirtorch's defaults) builds a module for.
READABLE = (Input, Output, Affine, Linear, Conv1d, Conv2d, Flatten, AvgPool2d, LIF, CubaLIF, Subgraph)
_IMPORTER = "snnTorch's import_from_nir"


def _synaptic_delayed_reset(path: str, op: Neuron) -> Neuron:
    """snnTorch's CubaLIF come from (R)Synaptic, whose delayed zero reset clears the whole
    new membrane, this step's input included (Leaky's clears before the input)."""
    if isinstance(op, CubaLIF) and op.sem.reset == "zero" and op.sem.reset_timing == "next":
        return op.replace(sem=op.sem.with_(reset_timing="next_after_input"))
    return op


def _on_read(graph: Graph, warnings: list[str]) -> Graph:
    return map_neurons(drop_sample_batch(graph, warnings), _synaptic_delayed_reset)


def _note_reset(op: Neuron, path: str, warnings: list[str]) -> None:
    """Warn where snnTorch's zero reset without delay changes this neuron's spikes."""
    sem = op.sem
    if sem.reset != "zero":
        warnings.append(f"node '{path}': {_IMPORTER} resets to zero, this node resets by '{sem.reset}': "
                        "snnTorch's spikes will differ (lossy)")
    elif sem.reset_timing == "next_after_input":
        warnings.append(f"node '{path}': {_IMPORTER} resets in the spiking step, this node clears its whole "
                        "membrane, input included, one step later: snnTorch's spikes will differ (lossy)")


def _for_import(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    if isinstance(op, IF):
        raise SnnirError(f"{_IMPORTER} builds IF as Leaky(beta=0.9, init_hidden=False), which "
                         "leaks and returns a tuple the next layer cannot take: not written", path)
    if not isinstance(op, (LIF, CubaLIF)):
        raise SnnirError(f"{_IMPORTER} has no module for {op.op_type}", path)
    if np.any(op.v_leak != 0.0):
        raise SnnirError(f"{_IMPORTER} needs v_leak = 0", path)
    if np.any(op.v_threshold < 0.0):
        raise SnnirError(f"{_IMPORTER} builds reset_delay=False, whose reset differs for a negative "
                         "v_threshold: not written", path)
    if np.any(op.v_reset != 0.0):
        warnings.append(f"node '{path}': snnTorch ignores v_reset (resets to 0)")
    _note_reset(op, path, warnings)
    rest = {k: v for k, v in IMPORT_SEMANTICS.items() if k not in ("reset", "reset_timing")}
    note_semantics(op, path, _IMPORTER, rest, warnings)
    op = as_euler(op, SNNTORCH_DT, path)
    if isinstance(op, CubaLIF):
        gain = op.r * SNNTORCH_DT / op.tau_mem  # snnTorch needs r = tau_mem / dt: mem += syn
        if not np.allclose(gain, 1.0):
            warnings.append(f"node '{path}': membrane gain folded into the threshold (snnTorch needs r = tau_mem/dt)")
            op = op.replace(r=op.tau_mem / SNNTORCH_DT, v_threshold=op.v_threshold / gain)
        input_gain = op.w_in * SNNTORCH_DT / op.tau_syn
    else:
        input_gain = np.asarray(op.r * SNNTORCH_DT / op.tau)
        if not np.allclose(input_gain, input_gain.flat[0]):  # it divides every threshold by the first gain
            raise SnnirError("snnTorch's import_from_nir needs one input gain r*dt/tau for the whole LIF layer", path)
    # snnTorch divides the threshold by the input gain and needs one threshold per layer
    ratio = np.asarray(op.v_threshold / input_gain)
    if not np.allclose(ratio, ratio.flat[0]):
        raise SnnirError("snnTorch needs one v_threshold / input gain for the whole layer", path)
    # a zero reset before the input ("next") spikes exactly as one in the spiking step
    return op.replace(sem=op.sem.with_(**IMPORT_SEMANTICS))


# --- the layout its importer reads ----------------------------------------------------
def _as_built(op: Op, path: str, shapes: Shapes) -> Op:
    """A Flatten with dims counted from the end, so ``nn.Flatten`` leaves the batch alone;
    a convolution's bias as one value per channel, which ``torch.Tensor`` takes."""
    if isinstance(op, Flatten):
        rank = len(shapes.inputs[path])
        start, end = op.dims(rank, path)
        return op.replace(start_dim=start - rank, end_dim=end - rank)
    if isinstance(op, (Conv1d, Conv2d)):
        return op.replace(bias=np.broadcast_to(op.bias, op.weight.shape[:1]).copy())
    return op


def _restated_ops(graph: Graph, shapes: Shapes, prefix: str = "") -> Graph:
    nodes = {name: op.replace(graph=_restated_ops(op.graph, shapes, f"{prefix}{name}."))
             if isinstance(op, Subgraph) else _as_built(op, prefix + name, shapes)
             for name, op in graph.nodes.items()}
    return graph.replace(nodes=nodes)


def _loop_weight(op: Op, size: int, path: str) -> tuple[Op, np.ndarray | None]:
    """The recurrent op as a bias-free weight nirtorch reads, and its bias (None: none)."""
    if isinstance(op, Scale):
        return Linear(weight=np.diag(np.broadcast_to(np.asarray(op.scale, float), (size,)))), None
    if isinstance(op, Linear):
        return Linear(weight=op.weight), None
    if isinstance(op, Affine):
        return Linear(weight=op.weight), (op.bias if np.any(op.bias != 0.0) else None)
    raise SnnirError(f"{_IMPORTER} reads a recurrent Linear, Affine or per-neuron Scale, not {op.op_type}", path)


def _nested_loop(graph: Graph, name: str, shapes: Shapes, prefix: str) -> Graph | None:
    """``graph`` with neuron ``name`` and its loop weight nested as one graph node (named
    ``name``); None when the neuron is in no loop."""
    loops = [dst for src, dst in graph.edges if src == name and (dst, name) in graph.edges]
    if not loops:
        return None
    path = prefix + name
    if len(loops) > 1:
        raise SnnirError(f"{_IMPORTER} reads one recurrent weight per neuron, this one has {len(loops)}", path)
    loop = loops[0]
    if graph.in_edges(loop) != [(name, loop)] or graph.out_edges(loop) != [(loop, name)]:
        raise SnnirError(f"its recurrent op '{loop}' connects beyond the loop, which {_IMPORTER} cannot read", path)
    shape = shapes.inputs[path]
    if len(shape) != 1:
        raise SnnirError(f"{_IMPORTER} reads a recurrent weight on a flat layer, this one is {list(shape)}", path)
    weight, bias = _loop_weight(graph.nodes[loop], shape[0], prefix + loop)
    inner: dict[str, Op] = {"input": Input(shape=shape)}
    feed = "input"
    if bias is not None:  # snnTorch adds it from the first step; nirtorch's loop is silent there
        inner["bias"] = Affine(weight=np.eye(shape[0]), bias=bias)
        feed = "bias"
    inner.update(neuron=graph.nodes[name], recurrent=weight, output=Output())
    edges = [("input", "bias")] if bias is not None else []
    edges += [(feed, "neuron"), ("neuron", "recurrent"), ("recurrent", "neuron"), ("neuron", "output")]
    nested = Subgraph(graph=Graph(inner, tuple(edges)))
    outer = graph.without_nodes([loop])
    return outer.replace(nodes={**outer.nodes, name: nested})


def _nest_loops(graph: Graph, shapes: Shapes, prefix: str = "") -> Graph:
    """Every neuron <-> weight loop as a nested graph (see the module docstring); any
    other loop is refused, naming a node on it."""
    nodes = {name: op.replace(graph=_nest_loops(op.graph, shapes, f"{prefix}{name}."))
             if isinstance(op, Subgraph) else op for name, op in graph.nodes.items()}
    graph = graph.replace(nodes=nodes)
    for name, op in nodes.items():
        if isinstance(op, Neuron) and name in graph.nodes:
            graph = _nested_loop(graph, name, shapes, prefix) or graph
    cycles = [sorted(c) for c in nx.strongly_connected_components(node_digraph(graph)) if len(c) > 1]
    cycles += [[node] for node in graph.nodes if (node, node) in graph.edges]
    if cycles:
        raise SnnirError(f"{_IMPORTER} reads a loop only as a neuron <-> one weight op; this one runs through "
                         f"{', '.join(cycles[0])}", prefix + cycles[0][0])
    return graph


def _check_readable(graph: Graph, prefix: str = "") -> None:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise SnnirError(f"{_IMPORTER} reads a graph with one Input and one Output, this one has "
                         f"{len(graph.inputs)} and {len(graph.outputs)}", prefix[:-1] or None)
    for name, op in graph.nodes.items():
        if not isinstance(op, READABLE + (SumPool2d,)):  # nirtorch builds a SumPool2d (see _sum_pools)
            raise SnnirError(f"{_IMPORTER} has no module for {op.op_type}", prefix + name)
        if isinstance(op, Subgraph):
            _check_readable(op.graph, f"{prefix}{name}.")


def _in_execution_order(graph: Graph) -> Graph:
    nodes = {name: op.replace(graph=_in_execution_order(op.graph)) if isinstance(op, Subgraph) else op
             for name, op in graph.nodes.items()}
    order = schedule(graph).order
    return graph.replace(nodes={name: nodes[name] for name in order})


def _refuse_rechecks(graph: Graph, prefix: str = "") -> None:
    """A traced ``reset_delay=False`` subtract reset is several ops; refused by the layer's node and option."""
    for name, op in graph.nodes.items():
        structure = op.metadata.get("structure")  # a file's metadata may hold an array here
        if isinstance(structure, str) and structure == RECHECK:
            raise SnnirError(f"this {op.metadata.get('source', 'snnTorch neuron')} has a {RECHECK}, which NIR "
                             f"states as several ops that {_IMPORTER} cannot rebuild (it builds reset_delay=False "
                             "only with a zero reset): use reset_delay=True, or write with dialect='nir'",
                             prefix + name)
        if isinstance(op, Subgraph):
            _refuse_rechecks(op.graph, f"{prefix}{name}.")


def _on_write(graph: Graph, warnings: list[str]) -> Graph:
    _refuse_rechecks(graph)
    graph = map_neurons(graph, lambda path, op: _for_import(path, op, warnings))
    shapes = infer_shapes(graph)
    graph = _nest_loops(_restated_ops(graph, shapes), shapes)
    _check_readable(graph)
    return _in_execution_order(graph)


# --- what import_from_nir builds from a file (imported_by) ------------------------------
def _unique_threshold(threshold: np.ndarray, path: str, why: str) -> np.ndarray:
    if np.unique(threshold).size != 1:
        raise SnnirError(f"{_IMPORTER} asserts one v_threshold{why} for the whole layer: it cannot import "
                         "this graph", path)
    return threshold


def _as_built_neuron(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    """The Leaky / Synaptic ``import_from_nir`` builds (zero reset, ``reset_delay=False``, dt 1e-4,
    its input added unscaled: the input gain divided out of the threshold)."""
    dt = SNNTORCH_DT
    if isinstance(op, IF):
        raise SnnirError(f"{_IMPORTER} builds IF as Leaky(beta=0.9, init_hidden=False), which leaks and returns "
                         "a (spk, mem) tuple: it cannot run this graph", path)
    if not np.allclose(op.v_leak, 0.0):
        raise SnnirError(f"{_IMPORTER} asserts v_leak = 0: it cannot import this graph", path)
    if np.any(op.v_reset != 0.0):
        warnings.append(f"node '{path}': {_IMPORTER} ignores v_reset (resets to 0)")
    if isinstance(op, LIF):
        threshold = _unique_threshold(np.asarray(op.v_threshold, float), path, "")
        gain = np.asarray(op.r * dt / op.tau, float)
        if not np.allclose(gain, 1.0):  # it divides by the smallest gain, np.unique(w_scale)[0]
            threshold = threshold / np.unique(gain)[0]
            warnings.append(f"node '{path}': {_IMPORTER} adds the input unscaled and divides v_threshold by the "
                            f"input gain r*dt/tau = {np.unique(gain)[0]:.6g}")
        tau = clamped_decays(op.tau, dt, path, _IMPORTER, warnings)
        built = op.replace(tau=tau, r=tau / dt, v_threshold=threshold)
    else:
        if not np.allclose(op.r, op.tau_mem / dt):
            raise SnnirError(f"{_IMPORTER} asserts r = tau_mem/dt (1e-4) for CubaLIF: it cannot import this graph",
                             path)
        gain = np.asarray(op.w_in * dt / op.tau_syn, float)
        threshold = np.asarray(op.v_threshold, float)
        if not np.allclose(gain, 1.0):
            threshold = threshold / gain
            warnings.append(f"node '{path}': {_IMPORTER} adds the input unscaled and divides v_threshold by the "
                            "input gain w_in*dt/tau_syn")
        _unique_threshold(threshold, path, " / input gain")
        tau_syn = clamped_decays(op.tau_syn, dt, path, _IMPORTER, warnings)
        tau_mem = clamped_decays(op.tau_mem, dt, path, _IMPORTER, warnings)
        built = op.replace(tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / dt, w_in=tau_syn / dt,
                           v_threshold=threshold)
    return built.replace(v_reset=np.zeros_like(np.asarray(op.v_reset, float)),
                         sem=op.sem.with_(dt=dt, discretisation="euler", **IMPORT_SEMANTICS))


def _wrapped_loops(graph: Graph, warnings: list[str]) -> tuple[Graph, Graph]:
    """snnTorch's ``_create_rnn_subgraph``: a flat neuron <-> Linear/Affine loop becomes a nested
    graph (named before the neuron's first dot) whose input feeds the recurrent weight, so
    ``W_rec`` multiplies the input too, appended after every other node. Returns the graph
    that runs (flat, the input rerouted into the weight) and the layout nirtorch then builds."""
    runs, built = graph, graph
    for lif, weight in [(a, b) for a, b in graph.edges if (b, a) in graph.edges]:
        if not (isinstance(graph.nodes.get(lif), (LIF, CubaLIF)) and isinstance(graph.nodes.get(weight), (Affine, Linear))):
            continue
        if len(graph.in_edges(weight)) != 1 or len(graph.out_edges(weight)) != 1:
            continue
        warnings.append(f"node '{lif}': {_IMPORTER} wraps its loop with '{weight}' as a nested graph whose input "
                        f"goes through '{weight}' (W_rec multiplies the input too)")
        runs = runs.replace(edges=tuple((src, weight) if dst == lif and src != weight else (src, dst)
                                        for src, dst in runs.edges))
        name = lif.split(".")[0]
        inner = Graph({"input": Input(shape=(1,)), "neuron": graph.nodes[lif], "recurrent": graph.nodes[weight],
                       "output": Output()}, (("input", "recurrent"), ("recurrent", "neuron"),
                                             ("neuron", "recurrent"), ("neuron", "output")))
        kept = built.without_nodes([lif, weight])
        edges = tuple((name if src == lif else src, name if dst == lif else dst) for src, dst in built.edges
                      if (src, dst) not in ((lif, weight), (weight, lif)))
        built = kept.replace(nodes={**kept.nodes, name: Subgraph(graph=inner)}, edges=edges)
    return runs, built


def _nested_before_inputs(graph: Graph, prefix: str = "") -> str | None:
    """The first nested graph that nirtorch 2.6's fx builder reaches before its inputs exist (it
    builds it, defers it, and on the next visit fails: ``'GraphModule' object has no attribute
    'items'``): its queue starts at the first Input and defers nodes whose inputs are missing."""
    order = list(graph.nodes)
    start = next((i for i, name in enumerate(order) if isinstance(graph.nodes[name], Input)), 0)
    queue, defined, built = deque(order[start:] + order[:start]), set(), set()
    for _ in range(len(order) ** 2 + 1):
        if not queue:
            break
        name = queue.popleft()
        op = graph.nodes[name]
        if isinstance(op, (Input, Output)):
            defined.add(name)
            continue
        if isinstance(op, Subgraph):
            if name in built:
                return prefix + name
            built.add(name)
            inner = _nested_before_inputs(op.graph, f"{prefix}{name}.")
            if inner:
                return inner
        loops = {dst for src, dst in graph.edges if src == name} | {name}
        if any(src not in defined and src not in loops for src, dst in graph.edges if dst == name):
            queue.append(name)
        else:
            defined.add(name)
    return None


def _sum_pools(graph: Graph, warnings: list[str]) -> None:
    """nirtorch's default map builds SumPool2d as ``LPPool2d(norm_type=1)`` (nir_interpreter.py:78),
    which takes no padding and sums as ``avg_pool2d(x) * k``: the window sum up to float rounding."""
    for path, op in graph.walk():
        if not isinstance(op, SumPool2d):
            continue
        if any(op.padding):
            raise SnnirError(f"nirtorch builds SumPool2d as LPPool2d(norm_type=1) for {_IMPORTER}, which ignores "
                             "padding: not predicted", path)
        warnings.append(f"node '{path}': nirtorch builds SumPool2d as LPPool2d(norm_type=1) for {_IMPORTER}: it "
                        "sums as the window's mean times its size (equal up to float rounding)")


def _imported(graph: Graph, warnings: list[str], options: dict) -> Graph:
    refuse_unreadable(graph, READABLE + (IF, SumPool2d), _IMPORTER)
    refuse_several_ends(graph, _IMPORTER)
    _sum_pools(graph, warnings)
    graph, built = _wrapped_loops(map_neurons(graph, lambda path, op: _as_built_neuron(path, op, warnings)),
                                  warnings)
    late = _nested_before_inputs(built)
    if late:
        raise SnnirError(f"nirtorch 2.6 ({_IMPORTER}) reaches this nested graph before its inputs and fails "
                         "('GraphModule' object has no attribute 'items'): it cannot import this graph", late)
    for path, op in graph.walk():
        if isinstance(op, Flatten) and (op.start_dim >= 0 or op.end_dim >= 0):
            warnings.append(f"node '{path}': {_IMPORTER} builds nn.Flatten({op.start_dim}, {op.end_dim}) counting "
                            "the batch dimension: predicted per sample (batch 1)")
    return graph


DIALECT = register_dialect(Dialect(
    name="snntorch",
    description="snnTorch 1.x: dt=1e-4 Euler, r=tau/dt; reads reset-by-subtraction delayed, writes zero-reset",
    on_read=_on_read,
    read_notes={"reset": "snntorch files do not store the reset mechanism: Leaky's default is assumed (subtract, "
                         "delayed one step) for the neurons the file's records do not state it for; pass "
                         "reset='zero' for reset_mechanism='zero'"},
    on_write=_on_write,
    imported_by=_imported,
    importer=_IMPORTER,
    read_defaults={"dt": SNNTORCH_DT, "discretisation": "euler", "reset": "subtract", "reset_timing": "next",
                   "threshold_compare": "gt", "spike_mode": "single", "current_order": "current_first"},
))
