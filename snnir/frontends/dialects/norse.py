"""Norse 1.1: what its ``to_nir`` writes and what its ``from_nir`` reads.

Export writes ``tau = dt / tau_inv`` — the true time constant multiplied by ``dt``
(``dt`` defaults to 1e-3) — so ``on_read`` divides every ``tau`` by ``dt``. ``LIFCell``
is written as ``CubaLIF`` with ``w_in = 1``, but Norse adds the input to the current
undecayed (``i += x``, then the membrane sees the new ``i``): ``on_read`` sets
``w_in = tau_syn / dt``, the forward-Euler gain for that jump; ``IAFCell`` adds
its input unscaled, so an ``IF``'s ``r`` becomes ``r / dt``. Norse steps with forward
Euler, spikes when ``v > v_th`` and resets to ``v_reset`` in the same step.

Import reads ``tau`` as the true time constant (``tau_inv = 1 / tau``) at its own ``dt``
(default 1e-3), ignores ``r`` and ``v_reset`` of ``LIF`` and resets to 0;
``on_write`` re-times neurons to ``dt = 1e-3`` and warns about what Norse drops.
"""

from __future__ import annotations

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.dialects import (
    Dialect, as_euler, drop_sample_batch, each_neuron, map_neurons, note_semantics, register_dialect,
)
from snnir.ir.graph import Graph
from snnir.ir.ops import IF, LI, LIF, CubaLI, CubaLIF, Neuron

#: The step ``norse.torch.to_nir`` and ``from_nir`` use by default.
NORSE_DT = 1e-3
READ_SEMANTICS = {"discretisation": "euler", "reset": "zero", "reset_timing": "same",
                  "threshold_compare": "gt", "spike_mode": "single", "current_order": "current_first"}


def _true_time_constants(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    dt = op.sem.dt
    if isinstance(op, IF):  # IAFCell adds x undecayed: v += x
        return op.replace(r=np.asarray(op.r, float) / dt)
    if isinstance(op, (LI, LIF)):
        return op.replace(tau=np.asarray(op.tau, float) / dt)
    if isinstance(op, (CubaLI, CubaLIF)):
        tau_syn = np.asarray(op.tau_syn, float) / dt
        if np.any(op.w_in != 1.0):
            warnings.append(f"node '{path}': w_in != 1 in a Norse file; kept and scaled by tau_syn/dt")
        return op.replace(tau_syn=tau_syn, tau_mem=np.asarray(op.tau_mem, float) / dt,
                          w_in=np.asarray(op.w_in, float) * tau_syn / dt)
    return op


def _on_read(graph: Graph, warnings: list[str]) -> Graph:
    warnings.append("norse: time constants divided by dt (Norse's to_nir writes dt/tau_inv)")
    graph = drop_sample_batch(graph, warnings)
    return map_neurons(graph, lambda path, op: _true_time_constants(path, op, warnings))


def _for_import(path: str, op: Neuron, warnings: list[str]) -> Neuron:
    if isinstance(op, IF):
        if not np.allclose(op.r * op.sem.dt, 1.0):
            warnings.append(f"node '{path}': Norse's IAFCell adds its input unscaled (needs r * dt = 1)")
        note_semantics(op, path, "Norse's from_nir", READ_SEMANTICS, warnings)
        return op.replace(sem=op.sem.with_(**READ_SEMANTICS))
    if not isinstance(op, (LI, LIF, CubaLIF)):
        raise SnnirError(f"Norse's from_nir has no module for {op.op_type}", path)
    note_semantics(op, path, "Norse's from_nir", READ_SEMANTICS, warnings)
    op = as_euler(op, NORSE_DT, path)
    if isinstance(op, (LI, LIF)) and not np.allclose(op.r, 1.0):
        warnings.append(f"node '{path}': Norse ignores r of {op.op_type} (reads r = 1)")
    if isinstance(op, CubaLIF) and np.any(op.v_leak != 0.0):
        warnings.append(f"node '{path}': Norse applies v_leak to the synaptic current too")
    if op.spiking and np.any(op.v_reset != 0.0):
        warnings.append(f"node '{path}': Norse's from_nir ignores v_reset (resets to 0)")
    return op.replace(sem=op.sem.with_(**READ_SEMANTICS))


DIALECT = register_dialect(Dialect(
    name="norse",
    description="Norse 1.1: files store tau*dt (dt=1e-3); LIFCell's current jumps by x; Euler, reset to v_reset",
    on_read=_on_read,
    on_write=each_neuron(_for_import),
    read_defaults={"dt": NORSE_DT, **READ_SEMANTICS},
))
