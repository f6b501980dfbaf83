"""Sinabs 3.x: what its ``to_nir`` writes and what its ``from_nir`` reads.

Sinabs counts time in steps (``dt = 1``) and decays exponentially
(``alpha = exp(-1 / tau)``); its layers default to ``MultiSpike`` (``floor(v / thr)``
spikes when ``v >= thr``) with reset by subtraction in the same step. ``to_nir`` writes
``r = 1`` whatever ``norm_input`` was; a default ``LIF`` (``norm_input=True``) steps
``v' = alpha v + (1 - alpha) x``, which is NIR's exact exponential step with ``r = 1``
— so files are read with ``discretisation="exp"``.

An LI is an ``ExpLeak``, whose default ``norm_input=False`` adds x unscaled: read so
(``r / (1 - alpha)``). ``from_nir`` builds ``LIF`` with ``norm_input=False`` (``v' = alpha v + x``, ignoring
``r``) and ``IAF`` with ``min_v_mem = -v_threshold`` (a floor we cannot express; it only
matters when the membrane falls below ``-v_threshold``, so ``imported_by`` does not predict it). ``on_write`` re-expresses each
neuron in Sinabs' units and scales thresholds so ``from_nir`` reproduces the dynamics.
"""

from __future__ import annotations

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.dialects import Dialect, decay_gain, each_neuron, map_neurons, note_semantics, register_dialect
from snnir.frontends.dialects.imported import (
    DROPS_SILENTLY, refuse_loops, refuse_several_ends, refuse_unreadable,
)
from snnir.ir.graph import Graph
from snnir.ir.ops import IF, LI, LIF, Affine, Conv2d, Flatten, Input, Linear, Neuron, Output, Subgraph, SumPool2d

READ_SEMANTICS = {"dt": 1.0, "discretisation": "exp", "reset": "subtract", "reset_timing": "same",
                  "threshold_compare": "ge", "spike_mode": "multi"}


def _for_import(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    if not isinstance(op, (IF, LI, LIF)):
        raise SnnirError(f"Sinabs' from_nir has no layer for {op.op_type}", path)
    note_semantics(op, path, "Sinabs' from_nir", {k: v for k, v in READ_SEMANTICS.items() if k != "dt"}, warnings)
    sem = op.sem.with_(**READ_SEMANTICS)
    if isinstance(op, IF):
        gain = op.sem.dt * np.asarray(op.r, float)  # v += gain x; Sinabs adds x
        warnings.append(f"node '{path}': Sinabs' IAF floors the membrane at -v_threshold")
        return op.replace(r=np.ones_like(gain), v_threshold=op.v_threshold / gain, sem=sem)
    if np.any(op.v_leak != 0.0):
        raise SnnirError("Sinabs' from_nir needs v_leak = 0", path)
    decay, gain = decay_gain(op.tau, op.sem)
    if np.any(decay <= 0.0):
        raise SnnirError("a decay <= 0 per step has no Sinabs time constant", path)
    tau = -1.0 / np.log(decay)  # in steps
    # Sinabs adds x unscaled (norm_input=False): with r' = 1 / (1 - a') the exp step
    # adds x; dividing the threshold by the original gain g = b r keeps the spikes.
    g = gain * np.asarray(op.r, float)
    r = 1.0 / (1.0 - np.exp(-1.0 / tau))
    if isinstance(op, LI):
        if not np.allclose(g, 1.0):
            raise SnnirError("Sinabs reads LI with r = 1 and adds x unscaled; this LI has another gain", path)
        warnings.append(f"node '{path}': written with r = 1, which Sinabs' from_nir requires for LI "
                        "(it adds x unscaled): the file is for Sinabs, not plain NIR")
        return op.replace(tau=tau, r=np.ones_like(r), sem=sem)
    if not np.allclose(g, 1.0):
        warnings.append(f"node '{path}': threshold divided by the input gain (Sinabs adds x unscaled)")
    return op.replace(tau=tau, r=r, v_threshold=op.v_threshold / g, sem=sem)


# --- what from_nir builds from a file (imported_by) ----------------------------------
_IMPORTER = "Sinabs' from_nir"
#: What ``_import_sinabs_module`` builds (its Conv1d branch calls ``.detach()`` on nir's numpy
#: arrays and fails; it has no Linear branch; nirtorch recurses into nested graphs).
READABLE = (Input, Output, Affine, Conv2d, Flatten, SumPool2d, IF, LI, LIF, Subgraph)


def _on_read(graph: Graph, warnings: list[str]) -> Graph:
    """An LI is Sinabs' ``ExpLeak``, which ``to_nir`` writes with ``r = 1`` and which adds its input
    unscaled (``norm_input=False``, its default and what ``from_nir`` builds): ``v' = a v + r x``, so
    the exp step's gain ``(1 - a) r'`` must be ``r``."""

    def unscaled(path: str, op: Neuron) -> Neuron:
        if not isinstance(op, LI):
            return op
        _, gain = decay_gain(op.tau, op.sem)
        return op.replace(r=np.asarray(op.r, float) / gain)

    return map_neurons(graph, unscaled)


def _on_write(graph: Graph, warnings: list[str]) -> Graph:
    """Each neuron as Sinabs' ``from_nir`` reads it, a Linear as an Affine of zero bias (as Sinabs'
    ``to_nir`` writes one: ``from_nir`` has no Linear and would drop it); any other node it has no
    module for refused by name."""
    graph = each_neuron(_for_import)(_linear_as_affine(graph), warnings)
    refuse_unreadable(graph, READABLE, _IMPORTER, fate=DROPS_SILENTLY)
    return graph


def _linear_as_affine(graph: Graph) -> Graph:
    nodes = {}
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph):
            op = op.replace(graph=_linear_as_affine(op.graph))
        elif isinstance(op, Linear):
            op = Affine(weight=op.weight, bias=np.zeros(op.weight.shape[0], op.weight.dtype), metadata=op.metadata)
        nodes[name] = op
    return graph.replace(nodes=nodes)


def _python_any_raises(values) -> bool:
    """Python's ``any`` takes the truth of each row of ``values``; a row of several entries raises."""
    return np.ndim(values) >= 2 and len(values) > 0 and np.size(values[0]) > 1


def _refuse_unimportable(path: str, op: Neuron) -> None:
    """Raise where Sinabs' importer fails on this neuron (checked for every neuron before any is
    predicted, so that a node it cannot import is named even after one it runs unpredictably)."""
    if isinstance(op, IF):
        return
    if np.ndim(op.v_leak) == 0:
        raise SnnirError(f"{_IMPORTER} calls torch's unsqueeze on a scalar v_leak (a numpy array after nir.read): "
                         "it cannot import this graph", path)
    for name, line in ({"v_leak": 73, "r": 75} if isinstance(op, LI) else {"v_leak": 97}).items():
        if _python_any_raises(getattr(op, name)):
            raise SnnirError(f"{_IMPORTER} applies Python's any() to {name} (sinabs/nir.py:{line}, Sinabs' bug), "
                             f"which raises on a {list(np.shape(getattr(op, name)))} array: it cannot import this "
                             "graph", path)
    if np.any(op.v_leak != 0.0):
        raise SnnirError(f"{_IMPORTER} raises '`v_leak` must be 0': it cannot import this graph", path)
    if isinstance(op, LI) and (np.ndim(op.r) == 0 or np.any(op.r != 1.0)):
        raise SnnirError(f"{_IMPORTER} reads LI only with r = 1 as an array: it cannot import this graph", path)


def _as_built(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    """``LIFSqueeze`` / ``ExpLeakSqueeze`` at one step per step, ``norm_input=False``
    (``v' = exp(-1/tau) v + x``), MultiSpike, reset by subtraction; r and v_reset ignored.
    ``IAFSqueeze``'s membrane floor is not predicted. ``op`` passed :func:`_refuse_unimportable`."""
    if isinstance(op, IF):
        raise SnnirError(f"{_IMPORTER} builds IAFSqueeze(min_v_mem=-v_threshold) (sinabs/nir.py:88), a membrane "
                         "floor snnir's IR cannot state: not predicted", path)
    if op.spiking and np.any(op.v_reset != 0.0):
        warnings.append(f"node '{path}': {_IMPORTER} ignores v_reset (subtracts the threshold)")
    if not np.allclose(decay_gain(op.tau, op.sem)[1] * op.r, 1.0):
        warnings.append(f"node '{path}': {_IMPORTER} adds the input unscaled (ignores r)")
    decay = np.exp(-1.0 / np.asarray(op.tau, float))
    return op.replace(r=1.0 / (1.0 - decay), sem=op.sem.with_(**READ_SEMANTICS))


def _imported(graph: Graph, warnings: list[str], options: dict) -> Graph:
    refuse_unreadable(graph, READABLE, _IMPORTER, fate=DROPS_SILENTLY)
    refuse_several_ends(graph, _IMPORTER)
    refuse_loops(graph, _IMPORTER)
    neurons = [(path, op) for path, op in graph.walk() if isinstance(op, Neuron)]
    if neurons and options["batch_size"] is None and options["num_timesteps"] is None:
        raise SnnirError(f"{_IMPORTER} needs batch_size or num_timesteps for its layers (pass one)", neurons[0][0])
    for path, op in neurons:
        _refuse_unimportable(path, op)
    return map_neurons(graph, lambda path, op: _as_built(path, op, warnings))


DIALECT = register_dialect(Dialect(
    name="sinabs",
    description="Sinabs 3.x: dt=1 step, exp decay, MultiSpike, reset by subtraction",
    on_read=_on_read,
    on_write=_on_write,
    imported_by=_imported,
    importer=_IMPORTER,
    import_options={"batch_size": None, "num_timesteps": None},
    read_defaults=READ_SEMANTICS,
))
