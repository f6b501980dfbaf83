"""snnir in one minute: inspect and simulate two published NIR files.

Reads ``lif_norse.nir`` and ``cnn_sinabs.nir`` (the NIR paper's fixtures, in
``tests/fixtures/nir-paper`` or ``$SNNIR_FIXTURES``), prints each node table
with the semantics the reader assumed, then runs the reference interpreter:
the LIF neuron on a current step, the CNN on synthetic N-MNIST-like events
``[T, B, 2, 34, 34]``, and prints spike counts and firing rates per layer.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

import snnir
from snnir.cli.cmd_plot import with_spike_probes
from snnir.ir import Graph
from snnir.ir.nir_io import load
from snnir.ir.printer import format_table

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("SNNIR_FIXTURES", REPO / "tests" / "fixtures" / "nir-paper"))


def nmnist_like_events(steps: int, batch: int, seed: int = 0) -> np.ndarray:
    """Events ``[T, B, 2, 34, 34]`` in {0, 1}: a ring "digit" moved along three saccades
    (as the N-MNIST camera moved); ON (channel 0) where brightness rises, OFF where it falls,
    plus sparse background noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:34, :34]
    events = np.zeros((steps, batch, 2, 34, 34))
    saccades = np.array([[1.0, 1.0], [-1.0, 1.0], [0.0, -2.0]]) * 0.6
    for b in range(batch):
        radius = rng.uniform(6, 10)
        centre = rng.uniform(14, 20, size=2)
        previous = None
        for t in range(steps):
            offset = centre + saccades[min(3 * t // steps, 2)] * (t % max(steps // 3, 1))
            distance = np.hypot(yy - offset[0], xx - offset[1])
            image = np.exp(-((distance - radius) ** 2) / 4.0)
            if previous is not None:
                change = image - previous
                events[t, b, 0] = rng.random((34, 34)) < np.clip(4 * change, 0, 1)
                events[t, b, 1] = rng.random((34, 34)) < np.clip(-4 * change, 0, 1)
            events[t, b] = np.maximum(events[t, b], rng.random((2, 34, 34)) < 0.002)
            previous = image
    return events


def spike_counts(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Spikes ``[T, B, ...]`` of every spiking node, in execution order."""
    probed, probes = with_spike_probes(graph)
    out = snnir.run(probed, x)
    return {name: out[probe] for name, probe in probes.items()}


def show(title: str, path: Path, dialect: str, x: np.ndarray) -> None:
    graph, report = load(path, dialect=dialect)
    print(f"=== {title}: {path.name} (read as dialect '{dialect}') ===")
    print(format_table(graph), end="")
    print(f"defaults the reader applied: {len(report.defaults_applied)}; warnings: {len(report.warnings)}")
    for line in report.defaults_applied[:2] + report.warnings[:2]:
        print(f"  {line}")
    start = time.perf_counter()
    layers = spike_counts(graph, x)
    elapsed = time.perf_counter() - start
    steps, batch = x.shape[:2]
    print(f"simulated T={steps} steps, B={batch} samples in {elapsed:.2f} s (reference interpreter)")
    print(f"  {'layer':<8} {'op':<8} {'neurons':>8} {'spikes':>9} {'spikes per neuron and step':>27}")
    for name, spikes in layers.items():
        neurons = int(np.prod(spikes.shape[2:]))
        rate = spikes.sum() / (steps * batch * neurons)
        print(f"  {name:<8} {graph.nodes[name].op_type:<8} {neurons:>8} {int(spikes.sum()):>9} {rate:>27.4f}")
    last = list(layers.values())[-1]
    if last.ndim == 3 and last.shape[2] > 1:
        counts = last.sum(axis=0)
        print(f"  last layer's spike counts per sample: {counts.astype(int).tolist()}; "
              f"most active unit: {counts.argmax(axis=1).tolist()}")
    print()


def main() -> int:
    if not FIXTURES.is_dir():
        print(f"demo: the NIR paper fixtures are not at {FIXTURES}; set SNNIR_FIXTURES", file=sys.stderr)
        return 1
    current = np.zeros((300, 1, 1))
    current[20:260] = 10.0  # a current step: the LIF fires regularly while it lasts
    lif_file = FIXTURES / "lif_norse.nir"
    show("a single LIF neuron from Norse", lif_file, "norse", current)
    plain = sum(int(s.sum()) for s in spike_counts(load(lif_file, dialect="nir")[0], current).values())
    print(f"the same file read as plain NIR (dt={snnir.ir.DEFAULT_DT:g}, no Norse conventions) fires {plain} "
          "spikes: semantics matter, and snnir states them per node\n")
    show("a spiking CNN from Sinabs", FIXTURES / "cnn_sinabs.nir", "sinabs", nmnist_like_events(30, 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
