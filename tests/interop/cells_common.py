"""What every interop cell shares: the :class:`Outcome` and :class:`Cell` types, spike inputs,
quiet reading and writing, running our reference, and the feedforward graph built in snnir
(see ``cells.py``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import snnir
from snnir.ir import Graph
from snnir import peers
from snnir.ir.ops import IF, LIF, Affine, CubaLIF, Input, Output
from snnir.ir.semantics import Semantics

T, B = 40, 3


@dataclass(frozen=True)
class Outcome:
    status: str  # "exact" | "differs" | "unsupported"
    note: str = ""


@dataclass(frozen=True)
class Cell:
    library: str
    op: str
    direction: str
    check: Callable[[Path], Outcome]
    expected: str = "exact"  # a cell expected otherwise explains itself in its outcome's note
    also: tuple[str, ...] = ()  # other statuses that hold for this cell

    @property
    def name(self) -> str:
        return f"{self.library}-{self.op}-{self.direction}"

    def holds(self, status: str) -> bool:
        return status == self.expected or status in self.also


def compare(ours: np.ndarray, theirs: np.ndarray, why: str = "") -> Outcome:
    ours, theirs = np.asarray(ours, float), np.asarray(theirs, float)
    if ours.shape != theirs.shape:
        return Outcome("differs", f"shapes differ: snnir {list(ours.shape)} vs library {list(theirs.shape)}")
    wrong = int(np.count_nonzero(ours != theirs))
    spikes = int(theirs.sum())
    if spikes == 0:
        return Outcome("differs", "no spikes at all: the check proves nothing")
    if wrong == 0:
        return Outcome("exact", f"{spikes} spikes, all equal")
    return Outcome("differs", f"{100.0 * wrong / ours.size:.2f}% of entries differ ({spikes} spikes). {why}".strip())


def spikes_in(shape: tuple[int, ...], seed: int = 0, p: float = 0.3, scale: float = 1.0) -> np.ndarray:
    """A ``[T, B, *shape]`` float32 random spike train."""
    rng = np.random.default_rng(seed)
    return ((rng.random((T, B, *shape)) < p) * scale).astype(np.float32)


def read_quiet(path: Path, **options) -> Graph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return snnir.read(path, **options)


def write_quiet(graph: Graph, path: Path, **options) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(graph, path, **options)


def run_ours(graph: Graph, x: np.ndarray) -> np.ndarray:
    (out,) = snnir.run(graph, x.astype(np.float64)).values()
    return out


def _torch():
    import torch

    torch.manual_seed(0)
    return torch


def _excitatory(net):
    """Make every weight positive so that the check sees plenty of spikes."""
    torch = _torch()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
                module.weight.abs_().mul_(0.3)
    return net


def _skip_unless(module: str):
    lib, reason = peers.load(module)
    return lib, (Outcome("unsupported", reason) if lib is None else None)


def _snntorch_sequence(net, x):
    import snntorch.utils

    torch = _torch()
    snntorch.utils.reset(net)
    with torch.no_grad():
        return np.stack([net(torch.from_numpy(x[t])).numpy() for t in range(len(x))])


def _written(graph: Graph, tmp: Path, name: str, dialect: str):
    """``graph`` written for ``dialect`` to ``tmp/ours-<name>.nir``, as nir reads it back for the peer."""
    import nir

    path = tmp / f"ours-{name}.nir"
    write_quiet(graph, path, dialect=dialect)
    return nir.read(path)


def _known(types) -> bool:
    return isinstance(types, dict) and all(v is not None for v in types.values())


def _save(nir_graph, tmp: Path, name: str, image=None, flat=None) -> Path:
    """Write a library's NIR graph. Their exporters leave ``Conv2d.input_shape`` and
    ``Flatten.input_type`` ``None``, which nir 1.0.4 cannot write: ``image`` ([H, W] of
    the first Conv2d's input) and ``flat`` (the Flatten's input [C, H, W]) fill them."""
    import nir

    for node in nir_graph.nodes.values():
        if isinstance(node, nir.Conv2d) and node.input_shape is None:
            node.input_shape = np.asarray(image)
        if isinstance(node, nir.Flatten) and not _known(node.input_type):
            node.input_type = {"input": np.asarray(flat)}
        for types in ("input_type", "output_type"):
            if isinstance(getattr(node, types, None), dict):
                setattr(node, types, {k: v for k, v in getattr(node, types).items() if v is not None})
    path = tmp / f"{name}.nir"
    nir.write(path, nir_graph)
    return path



# --- graphs built in snnir --------------------------------------------------------
def _our_feedforward(kind: str, sem: Semantics) -> Graph:
    """Input[6] -> Affine -> neuron[10] -> Affine -> neuron[4] -> Output, fixed random weights."""
    rng = np.random.default_rng(1)

    def neuron(n: int):
        if kind == "CubaLIF":
            return CubaLIF(tau_syn=np.full(n, 4e-3), tau_mem=np.full(n, 8e-3), r=np.full(n, 1.0),
                           v_leak=np.zeros(n), v_threshold=np.full(n, 0.05), sem=sem)
        if kind == "IF":
            return IF(r=np.full(n, 1.0 / sem.dt), v_threshold=np.full(n, 1.0), sem=sem)
        return LIF(tau=np.full(n, 5e-3), r=np.full(n, 1.0), v_leak=np.zeros(n), v_threshold=np.full(n, 0.2),
                   sem=sem)

    return Graph.sequential(
        ("input", Input(shape=(6,))),
        ("fc1", Affine(weight=rng.normal(0.6, 0.5, (10, 6)), bias=rng.normal(0.0, 0.05, 10))),
        ("n1", neuron(10)),
        ("fc2", Affine(weight=rng.normal(0.6, 0.5, (4, 10)), bias=np.zeros(4))),
        ("n2", neuron(4)),
        ("output", Output()),
    )
