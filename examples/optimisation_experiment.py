"""A graph-optimisation experiment with snnir's pass manager (runs in a few seconds).

1. Build a small spiking network with redundancy (an identity, a foldable
   chain, a dead branch).
2. Register a custom pass, ``quantise_weights``, that rounds every matrix to
   a signed 8-bit grid: an approximation, unlike the built-in passes.
3. Run a pipeline of built-in passes plus the custom one, printing the graph
   after chosen passes, and compare costs and spikes with the reference
   interpreter.

Run: python examples/optimisation_experiment.py
"""

from __future__ import annotations

import numpy as np

import snnir
from snnir.ir import LIF, Affine, Graph, Input, Linear, Output, Scale, Semantics
from snnir.passes import estimate_cost, register_pass


@register_pass("quantise_weights")
def quantise_weights(graph: Graph, *, bits: int = 8) -> Graph:
    """Round Linear/Affine weights to ``2**(bits-1) - 1`` levels per matrix (approximate)."""
    nodes = {}
    for name, op in graph.nodes.items():
        if isinstance(op, (Linear, Affine)):
            step = float(np.max(np.abs(op.weight))) / (2 ** (bits - 1) - 1) or 1.0
            op = op.replace(weight=np.round(op.weight / step) * step)
        nodes[name] = op
    return graph.replace(nodes=nodes)


def build_network(rng: np.random.Generator) -> Graph:
    sem = Semantics(dt=1e-3)

    def lif(n: int) -> LIF:
        return LIF(tau=np.full(n, 5e-3), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(1.0), sem=sem)

    nodes = {
        "in": Input((16,)),
        "fc1": Affine(rng.normal(0.3, 1.0, (32, 16)), rng.normal(0, 0.1, 32)),
        "gain": Scale(np.full(32, 2.0)),
        "mix": Linear(rng.normal(0.2, 0.5, (32, 32))),
        "lif1": lif(32),
        "identity": Scale(np.array(1.0)),
        "fc2": Affine(rng.normal(0.2, 0.5, (10, 32)), np.zeros(10)),
        "lif2": lif(10),
        "probe": Linear(rng.normal(size=(4, 32))),  # feeds nothing: dead
        "out": Output(),
    }
    edges = [("in", "fc1"), ("fc1", "gain"), ("gain", "mix"), ("mix", "lif1"), ("lif1", "identity"),
             ("identity", "fc2"), ("fc2", "lif2"), ("lif2", "out"), ("lif1", "probe")]
    return Graph(nodes, tuple(edges))


def main() -> None:
    rng = np.random.default_rng(0)
    graph = build_network(rng)
    x = rng.uniform(0, 1, size=(100, 4, 16))
    reference = snnir.run(graph, x)["out"]

    exact = snnir.optimize(graph, level=2, dump_after=["fold_affine", "fuse_layer_neuron"])
    pipeline = ["canonicalize", "eliminate_dead_nodes", "fold_affine", "quantise_weights", "fuse_layer_neuron"]
    approx = snnir.optimize(graph, passes=pipeline, bits=6)

    print(f"original:  {estimate_cost(graph).report()}")
    for label, result in (("-O2", exact), ("-O2+quantised", approx)):
        spikes = snnir.run(result, x)["out"]
        agree = float(np.mean(spikes == reference))
        print(f"{label:14s} {estimate_cost(result).report()}; spikes agree with the original: {agree:.2%}")
    assert np.array_equal(snnir.run(exact, x)["out"], reference), "the built-in passes must be exact"


if __name__ == "__main__":
    main()
