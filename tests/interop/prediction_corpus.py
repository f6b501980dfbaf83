"""The prediction matrix's corpus: the NIR paper's files and graphs built here, one per op
and per semantics option, each a NIR file that every library imports.

A built graph is written by ``snnir.write`` (plain NIR; our semantics in its metadata, which
the libraries ignore). Every entry has its own random spike input ``[T, B, *shape]``, scaled so
that each spiking layer of the graph, run as the file states, fires on 5-30 % of its entries
(``test_prediction_matrix.py`` checks it).
"""

from __future__ import annotations

import functools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import snnir
from snnir.ir import Graph
from snnir.ir.ops import (
    IF, LI, LIF, Affine, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Flatten, I, Input, Linear, Output,
    Scale, Subgraph, SumPool2d, Threshold, AvgPool2d,
)
from snnir.ir.ops.pool import MaxPool2d
from snnir.ir.semantics import Semantics

T, B = 25, 2
FIXTURES = Path(os.environ.get("SNNIR_FIXTURES", Path(__file__).resolve().parents[1] / "fixtures" / "nir-paper"))
DT = 1e-4  # the NIR paper's and snnTorch's importer's step: the built graphs' unless an entry is about dt


@dataclass(frozen=True, eq=False)
class Entry:
    """One file of the corpus: ``build()`` makes the graph (``None``: ``FIXTURES / name``),
    ``shape`` is one input sample's, ``gain`` scales the 0/1 input spikes (drawn with
    probability ``p``, ``steps`` of them: fewer for the large CNN); ``read`` are
    ``snnir.read``'s options for the file."""

    name: str
    covers: str
    shape: tuple[int, ...]
    gain: float
    build: Callable[[], Graph] | None = None
    p: float = 0.3
    read: dict = field(default_factory=dict)
    steps: int = T

    def path(self, folder: Path) -> Path:
        """The file: the fixture, or the built graph written to ``folder``."""
        if self.build is None:
            return FIXTURES / self.name
        path = folder / f"{self.name}.nir"
        if not path.is_file():
            snnir.write(_built(self), path)
        return path

    def graph(self, folder: Path) -> Graph:
        """The file as snnir reads it (its stated semantics)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return snnir.read(self.path(folder), **self.read)

    def input(self) -> np.ndarray:
        rng = np.random.default_rng(0)
        return ((rng.random((self.steps, B, *self.shape)) < self.p) * self.gain).astype(np.float32)


@functools.lru_cache(maxsize=None)
def _built(entry: Entry) -> Graph:
    return tuned(entry.build(), entry.input())


# --- the graphs ------------------------------------------------------------------
def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _lif(n: int, sem: Semantics, **params) -> LIF:
    values = dict(tau=5 * sem.dt, r=1.0, v_leak=0.0, v_threshold=1.0) | params
    return LIF(**{k: np.full(n, float(v)) for k, v in values.items()}, sem=sem)


def _cuba(n: int, sem: Semantics, **params) -> CubaLIF:
    values = dict(tau_syn=3 * sem.dt, tau_mem=5 * sem.dt, r=1.0, v_leak=0.0, v_threshold=0.5) | params
    return CubaLIF(**{k: np.full(n, float(v)) for k, v in values.items()}, sem=sem)


def _dense(hidden, readout, n_in: int = 8, n_hidden: int = 12, n_out: int = 4) -> Graph:
    """Input -> Affine -> hidden(n_hidden) -> Affine -> readout(n_out) -> Output."""
    rng = _rng()
    return Graph.sequential(
        ("input", Input(shape=(n_in,))),
        ("fc1", Affine(weight=rng.normal(0.5, 0.4, (n_hidden, n_in)), bias=rng.normal(0.0, 0.05, n_hidden))),
        ("n1", hidden(n_hidden)),
        ("fc2", Affine(weight=rng.normal(0.5, 0.4, (n_out, n_hidden)), bias=np.zeros(n_out))),
        ("n2", readout(n_out)),
        ("output", Output()),
    )


def lif_graph(**sem) -> Callable[[], Graph]:
    s = Semantics(**{"dt": DT, **sem})
    return lambda: _dense(lambda n: _lif(n, s), lambda n: _lif(n, s))


def _lif_params() -> Graph:
    s = Semantics(dt=DT)
    return _dense(lambda n: _lif(n, s, r=2.0, v_leak=0.1, v_threshold=1.2, v_reset=-0.2), lambda n: _lif(n, s))


def _zero_bias() -> Graph:
    """The ``lif`` graph with zero Affine biases, the form the NIR paper's Lava converter reads, and
    weights a tenth as large: thresholds tuned below 1, which Lava's spikes (its Dense passes at
    most ``dt/tau`` a step) can reach."""
    g = lif_graph()()
    return g.with_nodes(fc1=Affine(weight=g.nodes["fc1"].weight / 10, bias=np.zeros(12)),
                        fc2=Affine(weight=g.nodes["fc2"].weight / 10, bias=np.zeros(4)))


def _if() -> Graph:
    s = Semantics(dt=DT)
    return _dense(lambda n: IF(r=np.full(n, 1.0 / DT), v_threshold=np.full(n, 2.0), sem=s),
                  lambda n: IF(r=np.full(n, 1.0 / DT), v_threshold=np.full(n, 2.0), sem=s))


def cuba_graph(**sem) -> Callable[[], Graph]:
    s = Semantics(**{"dt": DT, **sem})
    return lambda: _dense(lambda n: _cuba(n, s), lambda n: _cuba(n, s))


def _cuba_w_in() -> Graph:
    s = Semantics(dt=DT)
    return _dense(lambda n: _cuba(n, s, w_in=2.0, r=0.5), lambda n: _cuba(n, s))


def _cuba_unit_gains() -> Graph:
    """CubaLIF with w_in = tau_syn/dt and r = tau_mem/dt (unit gains): the form snnTorch writes and reads."""
    s = Semantics(dt=DT)
    return _dense(lambda n: _cuba(n, s, w_in=3.0, r=5.0), lambda n: _cuba(n, s, w_in=3.0, r=5.0))


def _then_threshold(make: Callable[[int, Semantics], object]) -> Callable[[], Graph]:
    """Input -> Affine -> (non-spiking neuron -> Threshold) -> Affine -> LIF -> Output."""
    s = Semantics(dt=DT)

    def build() -> Graph:
        g = _dense(lambda n: make(n, s), lambda n: _lif(n, s))
        nodes = dict(g.nodes)
        nodes = {**{k: nodes.pop(k) for k in ("input", "fc1", "n1")}, "thr": Threshold(threshold=np.full(12, 0.6)),
                 **nodes}
        edges = tuple(("n1", "thr") if e == ("n1", "fc2") else e for e in g.edges) + (("thr", "fc2"),)
        return g.replace(nodes=nodes, edges=edges)

    return build


def _li(n: int, s: Semantics) -> LI:
    return LI(tau=np.full(n, 5 * s.dt), r=np.ones(n), v_leak=np.zeros(n), sem=s)


def _cubali(n: int, s: Semantics) -> CubaLI:
    return CubaLI(tau_syn=np.full(n, 3 * s.dt), tau_mem=np.full(n, 5 * s.dt), r=np.ones(n), v_leak=np.zeros(n),
                  sem=s)


def _i(n: int, s: Semantics) -> I:
    return I(r=np.full(n, 0.1 / s.dt), sem=s)


def _scale() -> Graph:
    g = lif_graph()()
    edges = tuple(("gain", "fc1") if e == ("input", "fc1") else e for e in g.edges) + (("input", "gain"),)
    return g.replace(nodes={**g.nodes, "gain": Scale(scale=np.linspace(0.5, 2.0, 8))}, edges=edges)


def _swap_first_layer(op) -> Callable[[], Graph]:
    def build() -> Graph:
        g = lif_graph()()
        return g.with_nodes(fc1=op(g.nodes["fc1"]))

    return build


def _delay() -> Graph:
    s = Semantics(dt=DT)
    g = lif_graph()()
    nodes = {**g.nodes, "late": Delay(delay=np.full(12, 2 * DT), sem=s)}
    edges = tuple(("n1", "late") if e == ("n1", "fc2") else e for e in g.edges) + (("late", "fc2"),)
    return g.replace(nodes=nodes, edges=edges)


def _recurrent() -> Graph:
    """Input -> Affine -> NIRGraph(CubaLIF <-> w_rec) -> Affine -> LIF, as the Braille files nest it."""
    s, rng = Semantics(dt=DT), _rng()
    inner = Graph(
        {"input": Input(shape=(12,)), "lif": _cuba(12, s),
         "w_rec": Linear(weight=rng.normal(0.0, 0.3, (12, 12))), "output": Output()},
        (("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")), {})
    g = lif_graph()()
    return g.with_nodes(n1=Subgraph(graph=inner))


def _conv2d(pool=None, channels: int = 3) -> Callable[[], Graph]:
    """Input[2, 8, 8] -> Conv2d(3x3) -> LIF -> [pool] -> Flatten -> Affine -> LIF -> Output."""

    def build() -> Graph:
        s, rng = Semantics(dt=DT), _rng()
        side = 6 if pool is None else 3
        layers = [("input", Input(shape=(2, 8, 8))),
                  ("conv", Conv2d(weight=rng.normal(0.4, 0.3, (channels, 2, 3, 3)), bias=np.zeros(channels))),
                  ("n1", _lif(1, s).replace(**{k: np.full((channels, 6, 6), float(v.flat[0]))
                                              for k, v in _lif(1, s).params().items()}))]
        if pool is not None:
            layers.append(("pool", pool))
        layers += [("flat", Flatten(start_dim=0)),
                   ("fc", Affine(weight=rng.normal(0.3, 0.2, (4, channels * side * side)), bias=np.zeros(4))),
                   ("n2", _lif(4, s)), ("output", Output())]
        return Graph.sequential(*layers)

    return build


def _conv1d() -> Graph:
    s, rng = Semantics(dt=DT), _rng()
    n1 = _lif(1, s)
    return Graph.sequential(
        ("input", Input(shape=(2, 10))),
        ("conv", Conv1d(weight=rng.normal(0.4, 0.3, (3, 2, 3)), bias=np.zeros(3))),
        ("n1", n1.replace(**{k: np.full((3, 8), float(v.flat[0])) for k, v in n1.params().items()})),
        ("flat", Flatten(start_dim=0)),
        ("fc", Affine(weight=rng.normal(0.3, 0.2, (4, 24)), bias=np.zeros(4))),
        ("n2", _lif(4, s)), ("output", Output()))


#: every built graph: (name, what it covers, input shape, input gain, builder)
_BUILT = (
    ("lif", "LIF, Affine; euler, reset zero, same step, v > thr, dt 1e-4", (8,), 1.0, lif_graph()),
    ("lif-exp", "discretisation exp", (8,), 1.0, lif_graph(discretisation="exp")),
    ("lif-subtract", "reset subtract", (8,), 1.0, lif_graph(reset="subtract")),
    ("lif-no-reset", "reset none", (8,), 1.0, lif_graph(reset="none")),
    ("lif-reset-next", "reset timing next", (8,), 1.0, lif_graph(reset_timing="next")),
    ("lif-reset-next-after-input", "reset timing next_after_input", (8,), 1.0,
     lif_graph(reset_timing="next_after_input")),
    ("lif-ge", "v >= thr", (8,), 1.0, lif_graph(threshold_compare="ge")),
    ("lif-multi", "multiple spikes per step (v >= thr, subtract)", (8,), 1.0,
     lif_graph(threshold_compare="ge", spike_mode="multi", reset="subtract")),
    ("lif-dt-1e-3", "dt 1e-3 (Norse's from_nir default)", (8,), 1.0, lif_graph(dt=1e-3)),
    ("lif-dt-1", "dt 1 (Spyx's from_nir default)", (8,), 1.0, lif_graph(dt=1.0)),
    ("lif-params", "LIF r, v_leak, v_reset", (8,), 1.0, _lif_params),
    ("lif-zero-bias", "Affine without bias (all Lava's converter reads)", (8,), 1.0, _zero_bias),
    ("if", "IF", (8,), 1.0, _if),
    ("cubalif", "CubaLIF (current first)", (8,), 1.0, cuba_graph()),
    ("cubalif-voltage-first", "CubaLIF voltage first", (8,), 1.0, cuba_graph(current_order="voltage_first")),
    ("cubalif-w-in", "CubaLIF w_in", (8,), 1.0, _cuba_w_in),
    ("cubalif-unit-gains", "CubaLIF r = tau_mem/dt, w_in = tau_syn/dt (snnTorch's form)", (8,), 1.0,
     _cuba_unit_gains),
    ("li-threshold", "LI, Threshold", (8,), 1.0, _then_threshold(_li)),
    ("cubali-threshold", "CubaLI, Threshold", (8,), 1.0, _then_threshold(_cubali)),
    ("i-threshold", "I, Threshold", (8,), 1.0, _then_threshold(_i)),
    ("linear", "Linear", (8,), 1.0, _swap_first_layer(lambda fc: Linear(weight=fc.weight))),
    ("scale", "Scale", (8,), 1.0, _scale),
    ("delay", "Delay (a two-step output delay)", (8,), 1.0, _delay),
    ("recurrent", "NIRGraph with a recurrent Linear", (8,), 1.0, _recurrent),
    ("conv2d", "Conv2d, Flatten", (2, 8, 8), 1.0, _conv2d()),
    ("conv1d", "Conv1d", (2, 10), 1.0, _conv1d),
    ("sumpool2d", "SumPool2d", (2, 8, 8), 1.0, _conv2d(SumPool2d(kernel_size=2, stride=2))),
    ("avgpool2d", "AvgPool2d", (2, 8, 8), 1.0, _conv2d(AvgPool2d(kernel_size=2, stride=2))),
    ("maxpool2d", "MaxPool2d (snnir extension)", (2, 8, 8), 1.0, _conv2d(MaxPool2d(kernel_size=2, stride=2))),
)

#: the NIR paper's files (tests/fixtures/nir-paper), read with their writer's dialect: (file, what it is,
#: input shape, gain, spike probability, read options). Their weights are fixed, so only some layers
#: reach 5-30 % (two_lif_neurons' second neuron, with threshold 20, never fires in T steps).
_PAPER = (
    ("lif_norse.nir", "paper: one LIF, written by an unreleased Norse between 1.0.0 and 1.1.0", (1,), 1.0, 0.3,
     {"dialect": "norse-1.0"}),
    ("lif_rockpool.nir", "paper: one LIF, written by Rockpool", (1,), 1.0, 0.3, {"dialect": "rockpool"}),
    ("two_lif_neurons.nir", "paper: two LIF neurons", (1,), 64.0, 0.3, {}),
    ("cnn_sinabs.nir", "paper: the N-MNIST CNN, written by Sinabs", (2, 34, 34), 2.0, 0.05, {"dialect": "sinabs"}),
    ("braille_noDelay_bias_zero.nir", "paper: Braille, snnTorch, reset zero", (12,), 4.0, 0.3,
     {"dialect": "snntorch"}),
    ("braille_noDelay_noBias_subtract.nir", "paper: Braille, snnTorch, reset subtract", (12,), 16.0, 0.05,
     {"dialect": "snntorch", "reset": "subtract"}),
    ("braille_noDelay_bias_zero_subgraph.nir", "paper: Braille as a nested graph (broken edge)", (12,), 4.0, 0.3,
     {"dialect": "snntorch", "repair": True}),
)

CORPUS: tuple[Entry, ...] = (
    *(Entry(name, covers, shape, gain, build) for name, covers, shape, gain, build in _BUILT),
    *(Entry(name, covers, shape, gain, p=p, read=read, steps=10 if shape == (2, 34, 34) else T)
      for name, covers, shape, gain, p, read in _PAPER),
)


def firing_rates(graph: Graph, x: np.ndarray) -> dict[str, float]:
    """The share of (step, sample, neuron) entries on which each top-level spiking node fires."""
    spiking = _spiking(graph)
    probes = {f"probe_{name}": Output() for name in spiking}
    probed = graph.replace(nodes={**graph.nodes, **probes},
                           edges=graph.edges + tuple((name, f"probe_{name}") for name in spiking))
    out = snnir.run(probed, x.astype(np.float64))
    return {name: float(np.mean(out[f"probe_{name}"] > 0)) for name in spiking}


def tuned(graph: Graph, x: np.ndarray, low: float = 0.08, high: float = 0.25) -> Graph:
    """``graph`` with each spiking node's threshold scaled, first layer first, so that it fires
    on ``low``-``high`` of its entries on ``x`` (bisection on the scale's logarithm)."""
    for name in _spiking(graph):
        lo, hi, best = -6.0, 6.0, graph
        for _ in range(16):
            mid = (lo + hi) / 2
            trial = graph.with_nodes({name: _threshold_scaled(graph.nodes[name], np.exp(mid))})
            rate = firing_rates(trial, x)[name]
            best = trial
            if low <= rate <= high:
                break
            lo, hi = (mid, hi) if rate > high else (lo, mid)
        graph = best
    return graph


def _spiking(graph: Graph) -> list[str]:
    return [name for name, op in graph.nodes.items()
            if getattr(op, "spiking", False) or isinstance(op, Threshold)
            or (isinstance(op, Subgraph) and any(getattr(o, "spiking", False) for _, o in op.graph.walk()))]


def _threshold_scaled(op, factor: float):
    if isinstance(op, Subgraph):
        inner = op.graph
        return op.replace(graph=inner.with_nodes({n: _threshold_scaled(o, factor) for n, o in inner.nodes.items()
                                                    if getattr(o, "spiking", False)}))
    field_name = "threshold" if isinstance(op, Threshold) else "v_threshold"
    return op.replace(**{field_name: np.asarray(getattr(op, field_name)) * factor})
