"""snnTorch 1.x: what its ``export_to_nir`` writes and what its ``import_from_nir`` reads.

Export (``Leaky``, ``Synaptic``, ``RLeaky``, ``RSynaptic``) hard-codes ``dt = 1e-4`` and
writes ``tau = dt / (1 - beta)``, ``r = tau / dt`` (and ``w_in = tau_syn / dt``), so in
forward Euler ``v' = beta v + x``; the reset mechanism is not stored. Read defaults are
a default ``Leaky``: subtract reset, delayed by one step (``reset_delay=True``), spike
when ``v > threshold``, synaptic current updated before the membrane.

Import always builds ``reset_mechanism="zero"``, ``reset_delay=False`` at ``dt = 1e-4``
and needs ``v_leak = 0``; ``on_write`` re-times every neuron to that step (the decays and
gains are kept exactly) and warns about the semantics snnTorch will not honour.
"""

from __future__ import annotations

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.dialects import (
    Dialect, as_euler, drop_sample_batch, each_neuron, map_neurons, note_semantics, register_dialect,
)
from snnir.ir.graph import Graph
from snnir.ir.ops import IF, LIF, CubaLIF, Neuron

#: The step snnTorch's exporter and importer assume.
SNNTORCH_DT = 1e-4
#: How ``import_from_nir`` runs every spiking neuron.
IMPORT_SEMANTICS = {"reset": "zero", "reset_timing": "same", "threshold_compare": "gt",
                    "current_order": "current_first", "spike_mode": "single"}


def _synaptic_delayed_reset(path: str, op: Neuron) -> Neuron:
    """snnTorch's CubaLIF come from (R)Synaptic, whose delayed zero reset clears the whole
    new membrane, this step's input included (Leaky's clears before the input)."""
    if isinstance(op, CubaLIF) and op.sem.reset == "zero" and op.sem.reset_timing == "next":
        return op.replace(sem=op.sem.with_(reset_timing="next_after_input"))
    return op


def _on_read(graph: Graph, warnings: list[str]) -> Graph:
    warnings.append(
        "snntorch files do not store the reset mechanism: assumed Leaky's default (subtract, "
        "delayed one step); pass reset='zero' for reset_mechanism='zero'"
    )
    return map_neurons(drop_sample_batch(graph, warnings), _synaptic_delayed_reset)


def _for_import(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    if isinstance(op, IF):
        raise SnnirError("snnTorch's import_from_nir builds IF as Leaky(beta=0.9, init_hidden=False), which "
                         "leaks and returns a tuple the next layer cannot take: not written", path)
    if not isinstance(op, (LIF, CubaLIF)):
        raise SnnirError(f"snnTorch's import_from_nir has no module for {op.op_type}", path)
    if np.any(op.v_leak != 0.0):
        raise SnnirError("snnTorch's import_from_nir needs v_leak = 0", path)
    if op.spiking and np.any(op.v_reset != 0.0):
        warnings.append(f"node '{path}': snnTorch ignores v_reset (resets to 0)")
    note_semantics(op, path, "snnTorch's import_from_nir", IMPORT_SEMANTICS, warnings)
    op = as_euler(op, SNNTORCH_DT, path)
    if isinstance(op, CubaLIF):
        gain = op.r * SNNTORCH_DT / op.tau_mem  # snnTorch needs r = tau_mem / dt: mem += syn
        if not np.allclose(gain, 1.0):
            warnings.append(f"node '{path}': membrane gain folded into the threshold (snnTorch needs r = tau_mem/dt)")
            op = op.replace(r=op.tau_mem / SNNTORCH_DT, v_threshold=op.v_threshold / gain)
        input_gain = op.w_in * SNNTORCH_DT / op.tau_syn
    else:
        input_gain = op.r * SNNTORCH_DT / op.tau
    # snnTorch divides the threshold by the input gain and needs one threshold per layer
    ratio = np.asarray(op.v_threshold / input_gain)
    if not np.allclose(ratio, ratio.flat[0]):
        raise SnnirError("snnTorch needs one v_threshold / input gain for the whole layer", path)
    return op.replace(sem=op.sem.with_(**IMPORT_SEMANTICS))


DIALECT = register_dialect(Dialect(
    name="snntorch",
    description="snnTorch 1.x: dt=1e-4 Euler, r=tau/dt; reads reset-by-subtraction delayed, writes zero-reset",
    on_read=_on_read,
    on_write=each_neuron(_for_import),
    read_defaults={"dt": SNNTORCH_DT, "discretisation": "euler", "reset": "subtract", "reset_timing": "next",
                   "threshold_compare": "gt", "spike_mode": "single", "current_order": "current_first"},
))
