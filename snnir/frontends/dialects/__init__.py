"""Library dialects: how each SNN library means the NIR files it writes and reads.

Each library's module registers its :class:`~snnir.ir.dialect.Dialect` in the I/O core's
registry when imported; importing this package registers the loader that imports them all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.dialect import (
    DIALECTS, FILE_PREDICTORS, Dialect, get_dialect, map_neurons, register_dialect, register_loader,
)
from snnir.ir.semantics import NO_LEAK_STEPS, Semantics, euler_tau

if TYPE_CHECKING:
    from snnir.ir.ops import Neuron

__all__ = ["DIALECTS", "Dialect", "get_dialect", "map_neurons", "register_dialect"]


def _load_builtin() -> None:
    """Import the library dialect modules, which register themselves."""
    import importlib

    for module in ("snntorch", "norse", "sinabs", "rockpool", "spyx", "nengo", "lava"):
        try:
            importlib.import_module(f"snnir.frontends.dialects.{module}")
        except ModuleNotFoundError as exc:
            if exc.name != f"snnir.frontends.dialects.{module}":
                raise


register_loader(_load_builtin)


def _predict_file(graph, library: str, warnings: list[str]):
    from snnir.frontends.dialects.imported import predicted_from_file

    return predicted_from_file(graph, library, warnings)


if _predict_file not in FILE_PREDICTORS:
    FILE_PREDICTORS.append(_predict_file)


# --- helpers the library dialects share ------------------------------------------
def each_neuron(
    fn: Callable[[str, "Neuron", list[str]], "Neuron"], note: str | None = None
) -> Callable[[Graph, list[str]], Graph]:
    """A dialect hook applying ``fn(path, op, warnings)`` to every neuron (see :func:`map_neurons`),
    after adding ``note`` to the warnings when given."""

    def hook(graph: Graph, warnings: list[str]) -> Graph:
        if note:
            warnings.append(note)
        return map_neurons(graph, lambda path, op: fn(path, op, warnings))

    return hook


def decay_gain(tau: np.ndarray, sem: Semantics) -> tuple[np.ndarray, np.ndarray]:
    """Per-step decay ``a`` and input gain ``b`` of a time constant (the neuron docstring's)."""
    tau = np.asarray(tau, float)
    if sem.discretisation == "euler":
        return 1.0 - sem.dt / tau, sem.dt / tau
    decay = np.exp(-sem.dt / tau)
    return decay, 1.0 - decay


def as_euler(op: "Neuron", dt: float, path: str) -> "Neuron":
    """The same per-step dynamics written as forward Euler with step ``dt``.

    Keeps every decay ``a`` and input gain exactly (up to rounding):
    ``tau' = dt / (1 - a)`` and ``r'``/``w_in'`` rescaled so ``b' r' = b r``.
    A neuron that does not leak (``a == 1``) gets ``tau' = dt NO_LEAK_STEPS``, whose decay is 1 in
    float (:data:`~snnir.ir.semantics.NO_LEAK_STEPS`); one that grows (``a > 1``) is refused.
    """
    from snnir.ir.ops import IF, CubaLI, CubaLIF, I

    sem = op.sem.with_(dt=dt, discretisation="euler")
    if isinstance(op, (I, IF)):
        return op.replace(r=np.asarray(op.r, float) * op.sem.dt / dt, sem=sem)

    def retime(tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        decay, gain = decay_gain(tau, op.sem)
        if np.any(decay > 1.0):
            raise SnnirError("a negative time constant (a membrane that grows) has no forward-Euler tau", path)
        no_leak = decay == 1.0
        return euler_tau(decay, dt), np.where(no_leak, gain * NO_LEAK_STEPS, gain / np.where(no_leak, 1.0, 1.0 - decay))

    if isinstance(op, (CubaLI, CubaLIF)):
        tau_syn, syn_scale = retime(op.tau_syn)
        tau_mem, mem_scale = retime(op.tau_mem)
        return op.replace(tau_syn=tau_syn, tau_mem=tau_mem, w_in=np.asarray(op.w_in, float) * syn_scale,
                          r=np.asarray(op.r, float) * mem_scale, sem=sem)
    tau, scale = retime(op.tau)
    return op.replace(tau=tau, r=np.asarray(op.r, float) * scale, sem=sem)


def note_semantics(op: "Neuron", path: str, library: str, wanted: dict, warnings: list[str]) -> None:
    """Warn for each Semantics field that matters to ``op`` and that ``library``'s reader
    will not honour (``wanted`` maps field names to the values that library uses)."""
    ignored = set()
    if not op.spiking:
        ignored |= {"reset", "reset_timing", "threshold_compare", "spike_mode"}
    if not op.has_current:
        ignored.add("current_order")
    if "tau" not in op.param_names() and "tau_mem" not in op.param_names():
        ignored.add("discretisation")
    for name, value in wanted.items():
        have = getattr(op.sem, name)
        if name not in ignored and have != value:
            warnings.append(f"node '{path}': {library} reads it with {name}={value!r}, not {have!r} (lossy)")


def drop_sample_batch(graph: Graph, warnings: list[str]) -> Graph:
    """Undo nirtorch's habit of writing the sample's batch dimension into Input/Output shapes.

    Applied only when the graph's shapes do not check as written and do once the leading
    dimension of every top-level Input (and shaped Output) is dropped.
    """
    from snnir.ir.ops import Input, Output
    from snnir.ir.shapes import infer_shapes

    try:
        infer_shapes(graph)
        return graph
    except SnnirError as exc:
        first_error = exc
    nodes = dict(graph.nodes)
    for name, op in graph.nodes.items():
        if isinstance(op, Input) and len(op.shape) > 1:
            nodes[name] = op.replace(shape=op.shape[1:])
        elif isinstance(op, Output) and op.shape is not None and len(op.shape) > 1:
            nodes[name] = op.replace(shape=None)
    fixed = graph.replace(nodes=nodes)
    try:
        infer_shapes(fixed)
    except SnnirError:
        raise first_error from None
    warnings.append("dropped the batch dimension nirtorch wrote into the input/output shapes")
    return fixed
