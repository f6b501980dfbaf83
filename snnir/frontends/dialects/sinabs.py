"""Sinabs 3.x: what its ``to_nir`` writes and what its ``from_nir`` reads.

Sinabs counts time in steps (``dt = 1``) and decays exponentially
(``alpha = exp(-1 / tau)``); its layers default to ``MultiSpike`` (``floor(v / thr)``
spikes when ``v >= thr``) with reset by subtraction in the same step. ``to_nir`` writes
``r = 1`` whatever ``norm_input`` was; a default ``LIF`` (``norm_input=True``) steps
``v' = alpha v + (1 - alpha) x``, which is NIR's exact exponential step with ``r = 1``
— so files are read with ``discretisation="exp"``.

``from_nir`` builds ``LIF`` with ``norm_input=False`` (``v' = alpha v + x``, ignoring
``r``) and ``IAF`` with ``min_v_mem = -v_threshold`` (a floor we cannot express; it only
matters when the membrane falls below ``-v_threshold``). ``on_write`` re-expresses each
neuron in Sinabs' units and scales thresholds so ``from_nir`` reproduces the dynamics.
"""

from __future__ import annotations

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.dialects import Dialect, decay_gain, each_neuron, note_semantics, register_dialect
from snnir.ir.ops import IF, LI, LIF, Neuron

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


DIALECT = register_dialect(Dialect(
    name="sinabs",
    description="Sinabs 3.x: dt=1 step, exp decay, MultiSpike, reset by subtraction",
    on_write=each_neuron(_for_import),
    read_defaults=READ_SEMANTICS,
))
