"""Norse: what its ``to_nir`` writes and what its ``from_nir`` reads, in two versions.

``norse`` (Norse 1.1+): export writes ``tau = dt / tau_inv`` — the true time constant
multiplied by ``dt`` (``dt`` defaults to 1e-3) — so ``on_read`` divides every ``tau`` by ``dt``.
``norse-1.0`` (earlier Norse, the NIR 0.x files of the NIR paper, e.g. its ``lif_norse.nir``):
export wrote ``tau = 1 / tau_inv``, the true time constant, and ``on_read`` keeps it.
Evidence: the paper's ``paper/01_lif/lif.ipynb`` (neuromorphs/NIR) builds
``LIFBoxCell(tau_mem_inv=400, v_th=0.1)`` at ``dt = 1e-4`` and its file stores ``tau = 0.0025``.

Both versions: ``LIFCell`` is written as ``CubaLIF`` with ``w_in = 1``, but Norse adds the input
to the current undecayed (``i += x``): ``on_read`` sets ``w_in = tau_syn / dt``, the forward-Euler
gain for that jump. Norse 1.1's membrane then sees the new ``i`` (``current_first``); Norse
1.0.0's ``LIFCell`` steps the membrane from last step's ``i`` and then jumps the current
(``voltage_first``, ``functional/lif.py:_lif_feed_forward_step_jit``). ``IAFCell`` adds its input
unscaled, so an ``IF``'s ``r`` becomes ``r / dt``. Norse steps with forward Euler, spikes when
``v > v_th`` and resets to ``v_reset`` in the same step.

Import (Norse 1.1) reads ``tau`` as the true time constant (``tau_inv = 1 / tau``) at its own
``dt`` (default 1e-3), ignores ``r`` and ``v_reset`` of ``LIF`` and resets to 0;
``on_write`` re-times neurons to ``dt = 1e-3`` and warns about what Norse drops. Norse 1.0.0
(January 2023, the one release before 1.1) predates NIR: no ``from_nir`` or ``to_nir``, so
``norse-1.0``'s ``imported_by`` refuses every graph, and its ``on_read`` is for files of the
unreleased development versions between 1.0.0 and 1.1.0, stepped as 1.0.0's cells step
(``LIFBoxCell``, ``LIFCell``, ``IAFCell``: ``tests/interop/test_norse_1_0.py`` runs them).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.dialects import (
    Dialect, as_euler, drop_sample_batch, each_neuron, map_neurons, note_semantics, register_dialect,
)
from snnir.frontends.dialects.imported import (
    DROPS_SILENTLY, refuse_loops, refuse_several_ends, refuse_unreadable,
)
from snnir.ir.graph import Graph
from snnir.ir.ops import (
    IF, LI, LIF, Affine, Conv2d, CubaLI, CubaLIF, Flatten, Input, Linear, Neuron, Output, Subgraph, SumPool2d,
)

#: The step ``norse.torch.to_nir`` and ``from_nir`` use by default.
NORSE_DT = 1e-3
READ_SEMANTICS = {"discretisation": "euler", "reset": "zero", "reset_timing": "same",
                  "threshold_compare": "gt", "spike_mode": "single", "current_order": "current_first"}


def _true_time_constants(tau_in_file_is_tau_times_dt: bool) -> Callable[[Graph, list[str]], Graph]:
    """``on_read``: the cells' input gains; taus divided by ``dt`` where the file holds ``tau * dt``."""

    def adjust(path: str, op: Neuron, warnings: list[str]) -> Neuron:
        dt = op.sem.dt
        if np.any(np.asarray(getattr(op, "v_leak", 0.0)) != 0.0):
            warnings.append(f"node '{path}': Norse's cells start the membrane at v_leak, snnir's neurons at 0: "
                            "the first steps differ until the membrane has settled")
        scale = 1.0 / dt if tau_in_file_is_tau_times_dt else 1.0
        if isinstance(op, IF):  # IAFCell adds x undecayed: v += x
            return op.replace(r=np.asarray(op.r, float) / dt)
        if isinstance(op, (LI, LIF)):
            return op.replace(tau=np.asarray(op.tau, float) * scale)
        if isinstance(op, (CubaLI, CubaLIF)):
            tau_syn = np.asarray(op.tau_syn, float) * scale
            if np.any(op.w_in != 1.0):
                warnings.append(f"node '{path}': w_in != 1 in a Norse file; kept and scaled by tau_syn/dt")
            return op.replace(tau_syn=tau_syn, tau_mem=np.asarray(op.tau_mem, float) * scale,
                              w_in=np.asarray(op.w_in, float) * tau_syn / dt)
        return op

    def on_read(graph: Graph, warnings: list[str]) -> Graph:
        if tau_in_file_is_tau_times_dt:
            warnings.append("norse: time constants divided by dt (Norse 1.1's to_nir writes dt/tau_inv)")
        graph = drop_sample_batch(graph, warnings)
        return map_neurons(graph, lambda path, op: adjust(path, op, warnings))

    return on_read


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


# --- what Norse 1.1's from_nir builds from a file (imported_by) ---------------------------
_IMPORTER = "Norse's from_nir"
#: What ``_import_norse_module`` builds a module for (nested graphs: nirtorch recurses).
READABLE = (Input, Output, Affine, Linear, Conv2d, Flatten, SumPool2d, IF, LIF, CubaLIF, Subgraph)
IMPORT_OPTIONS = {"dt": NORSE_DT, "ignore_warnings": False}


def _as_built(path: str, op: Neuron, warnings: list[str], dt: float) -> Neuron:
    """``IAFCell`` adds x unscaled; ``LIFBoxCell`` steps ``v += dt/tau (x + v_leak - v)`` (r ignored);
    its CubaLIF scales x by ``w_in``, runs an ``LIBoxCell`` current and scales it by ``r``;
    every cell resets to 0 in the spiking step when ``v > v_th``, starting from ``v = v_leak``."""
    if np.any(op.v_reset != 0.0):
        warnings.append(f"node '{path}': {_IMPORTER} ignores v_reset (resets to 0)")
    sem = op.sem.with_(dt=dt, **READ_SEMANTICS)
    zero = np.zeros_like(np.asarray(op.v_reset, float))
    if isinstance(op, IF):
        if not np.allclose(op.r, 1.0):
            warnings.append(f"node '{path}': {_IMPORTER} ignores r of IF (adds its input unscaled)")
        return op.replace(r=np.full(np.shape(op.r), 1.0 / dt), v_reset=zero, sem=sem)
    if np.any(op.v_leak != 0.0):
        raise SnnirError(f"{_IMPORTER} starts the membrane at v_leak (and leaks a CubaLIF's current towards it), "
                         "which snnir cannot state: not predicted", path)
    if isinstance(op, LIF):
        if not np.allclose(op.r, 1.0):
            warnings.append(f"node '{path}': {_IMPORTER} ignores r of LIF (reads r = 1)")
        return op.replace(r=np.ones(np.shape(op.r)), v_reset=zero, sem=sem)
    return op.replace(v_reset=zero, sem=sem)


def _imported(graph: Graph, warnings: list[str], options: dict) -> Graph:
    dt = options["dt"]
    refuse_unreadable(graph, READABLE, _IMPORTER, fate=DROPS_SILENTLY)
    refuse_several_ends(graph, _IMPORTER)
    refuse_loops(graph, _IMPORTER)
    for path, op in graph.walk():
        if isinstance(op, Flatten) and (op.start_dim >= 0 or op.end_dim >= 0):
            warnings.append(f"node '{path}': {_IMPORTER} builds nn.Flatten({op.start_dim}, {op.end_dim}) counting "
                            "the batch dimension: predicted per sample (batch 1)")
        if isinstance(op, SumPool2d) and np.any(np.asarray(op.padding) != 0):
            raise SnnirError(f"{_IMPORTER} builds SumPool2d as LPPool2d, which has no padding: not predicted", path)
    return map_neurons(graph, lambda path, op: _as_built(path, op, warnings, dt))


def _on_write(graph: Graph, warnings: list[str]) -> Graph:
    """Each neuron as Norse's ``from_nir`` reads it; a node it has no module for (which nirtorch
    would drop without a word) refused by name."""
    graph = each_neuron(_for_import)(graph, warnings)
    refuse_unreadable(graph, READABLE, _IMPORTER, fate=DROPS_SILENTLY)
    return graph


DIALECT = register_dialect(Dialect(
    name="norse",
    description="Norse 1.1+: files store tau*dt (dt=1e-3); LIFCell's current jumps by x; Euler, reset to v_reset",
    on_read=_true_time_constants(tau_in_file_is_tau_times_dt=True),
    on_write=_on_write,
    imported_by=_imported,
    importer=_IMPORTER,
    import_options=IMPORT_OPTIONS,
    read_defaults={"dt": NORSE_DT, **READ_SEMANTICS},
))

_NO_IMPORTER = ("Norse 1.0.0, the one Norse release before 1.1, has no NIR importer (norse.torch has no "
                "from_nir: it predates NIR), so it imports no file; the unreleased versions after it, which wrote "
                "the NIR paper's files, are not predicted")


def _imported_by_1_0(graph: Graph, warnings: list[str], options: dict) -> Graph:
    """Norse 1.0.0 imports nothing (checked in Norse 1.0.0 itself: ``snnir.peers.folder``)."""
    raise SnnirError(_NO_IMPORTER)


def _written_for_1_0(graph: Graph, warnings: list[str]) -> Graph:
    """No file is written for an importer that does not exist."""
    raise SnnirError(f"{_NO_IMPORTER}; write for dialect 'norse' (Norse 1.1) instead")


DIALECT_1_0 = register_dialect(dataclasses.replace(
    DIALECT,
    name="norse-1.0",
    description="Norse before 1.1 (NIR 0.x files, the NIR paper's): files store the true tau; "
                "LIFCell's membrane sees last step's current; Norse 1.0.0 has no from_nir",
    on_read=_true_time_constants(tau_in_file_is_tau_times_dt=False),
    read_defaults={"dt": NORSE_DT, **READ_SEMANTICS, "current_order": "voltage_first"},
    on_write=_written_for_1_0,
    imported_by=_imported_by_1_0,
    importer="Norse 1.0.0 (no from_nir)",
))
