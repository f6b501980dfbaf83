"""Lava (lava-nc 0.10): what the NIR paper's Lava converter builds from a file, and how Lava's CPU
simulation runs it. Lava writes no NIR files; this dialect only describes ``imported_by``.

The converter (neuromorphs/NIR ``paper/01_lif/_lava_nir.py``, ``ImportConfig(dt=1e-4,
fixed_pt=True)``; snnir's own ``snnir/peers/lava_runner.py`` runs the same conversion) reads
``Affine`` (zero bias only) as ``Dense(W)`` and ``LIF`` as ``Dense(dt/tau)`` into Lava's ``LIF``
with ``du = 1`` (no current memory), ``dv = dt/tau``, ``vth = v_threshold`` and no bias: ``r``
and ``v_leak`` are not read. Every other node is refused. Lava's processes (lava-nc 0.10,
``lava/proc/lif/models.py``, ``lava/proc/dense/models.py``):

- ``LIF`` (``PyLifModelFloat``): ``u = u (1 - du) + a_in``, ``v = v (1 - dv) + u + bias``,
  spike ``v > vth``, then ``v = 0``: forward Euler with ``r = 1``, ``v_leak = 0``, reset to zero
  in the same step, ``v > thr``.
- ``Dense`` (``PyDenseModelFloat``): sends last step's accumulation first (one step late), and
  with its default ``num_message_bits=0`` casts its input to bool: any non-zero input, whatever
  its sign or size, is one spike. Inputs arrive from a ``RingBuffer`` the same way.
- Fixed point (the converter's default; ``PyLifModelBitAcc``/``PyDenseModelBitAcc``): integers
  of 12-24 bits, each decay truncated; snnir's IR cannot state that rounding, so it is not
  predicted. ``fixed_pt=False`` selects the floating-point models, which ``imported_by``
  predicts exactly.

The predicted graph keeps each node's name for the Linear/LIF Lava runs, and adds before it the
bool cast (``x > 0`` plus ``-x > 0``: ``Threshold`` nodes; omitted when the only source is a
spiking LIF) and the one-step ``Delay`` of its ``Dense``.
"""

from __future__ import annotations

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.dialects import Dialect, register_dialect
from snnir.frontends.dialects.imported import refuse_loops, refuse_several_ends, refuse_unreadable
from snnir.ir.graph import Graph
from snnir.ir.ops import LIF, Affine, Delay, Input, Linear, Output, Scale, Threshold
from snnir.ir.semantics import Semantics

IMPORTER = "the NIR paper's Lava converter"
LAVA_DT = 1e-4
SEMANTICS = {"discretisation": "euler", "reset": "zero", "reset_timing": "same", "threshold_compare": "gt",
             "spike_mode": "single"}


def _readable(graph: Graph, fixed_pt: bool) -> None:
    """Refuse, naming the node, what the converter cannot build or snnir cannot state."""
    refuse_unreadable(graph, (Input, Output, Affine, LIF), IMPORTER, fate="it raises ValueError")
    refuse_several_ends(graph, IMPORTER)
    for src, dst in graph.edges:
        if isinstance(graph.nodes[src], Input) and isinstance(graph.nodes[dst], Output):
            raise SnnirError(f"{IMPORTER} builds no process between the Input and the Output", src)
    for name, op in graph.nodes.items():
        if isinstance(op, Input) and len(op.shape) != 1:
            raise SnnirError(f"Lava's RingBuffer feeds a flat vector; this Input is {list(op.shape)}: not predicted",
                             name)
        if isinstance(op, Affine) and np.any(np.asarray(op.bias) != 0):
            raise SnnirError(f"{IMPORTER} asserts a zero bias (Lava's Dense has none): it cannot import this graph",
                             name)
        if isinstance(op, LIF):
            for field in ("tau", "v_threshold"):
                values = np.asarray(getattr(op, field)).ravel()
                if np.any(values != values[0]):
                    raise SnnirError(f"Lava's LIF takes one {field} for the whole node; this one's differ: "
                                     "it cannot import this graph", name)
    refuse_loops(graph, "Lava", runs="runs a loop with each Dense one step late, which snnir's prediction of "
                 "loops is not checked against")
    if fixed_pt:
        first = next((name for name, op in graph.nodes.items() if isinstance(op, (Affine, LIF))), None)
        raise SnnirError(f"{IMPORTER} runs in Loihi fixed point by default (fixed_pt=True): integer dv, vth and "
                         "weights and truncated decays, which snnir cannot state: not predicted (fixed_pt=False "
                         "runs Lava's floating-point models, which are predicted)", first)


def _as_run(name: str, op, dt: float, warnings: list[str]):
    """The Linear or LIF Lava runs for ``op`` (its Dense's cast and delay are added by the caller):
    a LIF decays by ``dv = dt/tau`` at the converter's ``dt`` (named by ``semantic_changes``)."""
    if isinstance(op, Affine):
        return Linear(weight=np.asarray(op.weight, float))
    if np.any(np.asarray(op.r) != 1.0):
        warnings.append(f"node '{name}': {IMPORTER} ignores r (its Dense scales the input by dt/tau only)")
    if np.any(np.asarray(op.v_leak) != 0.0):
        warnings.append(f"node '{name}': {IMPORTER} ignores v_leak")
    shape = np.shape(op.tau)
    return op.replace(r=np.ones(shape), v_leak=np.zeros(shape), v_reset=np.zeros(shape),
                      sem=op.sem.with_(dt=dt, **SEMANTICS))


def _size(op) -> int:
    return int(np.asarray(op.weight).shape[1]) if isinstance(op, Affine) else int(np.asarray(op.tau).size)


def _imported(graph: Graph, warnings: list[str], options: dict) -> Graph:
    dt, fixed_pt = float(options["dt"]), bool(options["fixed_pt"])
    _readable(graph, fixed_pt)
    nodes, edges = {}, []
    for name, op in graph.nodes.items():
        if isinstance(op, (Input, Output)):
            nodes[name] = op
            continue
        sources = [src for src, dst in graph.edges if dst == name]
        n, late = _size(op), f"{name}_lava_dense_delay"
        spiking = len(sources) == 1 and isinstance(graph.nodes[sources[0]], LIF)
        if not spiking:
            pos, neg, flip = f"{name}_lava_spike", f"{name}_lava_spike_negative", f"{name}_lava_negate"
            nodes.update({pos: Threshold(threshold=np.zeros(n)), flip: Scale(scale=-np.ones(n)),
                          neg: Threshold(threshold=np.zeros(n))})
            edges += [(src, pos) for src in sources] + [(src, flip) for src in sources]
            edges += [(flip, neg), (pos, late), (neg, late)]
            warnings.append(f"node '{name}': Lava's Dense reads its input as spikes (any non-zero value is one)")
        else:
            edges.append((sources[0], late))
        nodes[late] = Delay(delay=np.full(n, dt), sem=Semantics(dt=dt))
        nodes[name] = _as_run(name, op, dt, warnings)
        edges.append((late, name))
        warnings.append(f"node '{name}': Lava's Dense delivers its input one step late")
    edges += [(src, dst) for src, dst in graph.edges if isinstance(graph.nodes[dst], Output)]
    return graph.replace(nodes=nodes, edges=tuple(edges))


DIALECT = register_dialect(Dialect(
    name="lava",
    description="Lava 0.10 via the NIR paper's converter: Euler LIF at its dt, reset to zero, each Dense "
                "one step late and reading its input as spikes; fixed point by default (not predicted)",
    imported_by=_imported,
    importer=IMPORTER,
    import_options={"dt": LAVA_DT, "fixed_pt": True},
))
