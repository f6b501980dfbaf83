"""Random graphs and the equivalence check every pass test uses."""

from __future__ import annotations

import numpy as np
import pytest

import snnir
from snnir.ir import IF, LI, LIF, Affine, CubaLI, CubaLIF, Flatten, Graph, I, Input, Linear, Output, Scale
from snnir.ir.semantics import Semantics

DT = 1e-3


def random_sem(rng: np.random.Generator) -> Semantics:
    return Semantics(
        dt=DT,
        discretisation=str(rng.choice(["euler", "exp"])),
        reset=str(rng.choice(["zero", "subtract", "none"])),
        reset_timing=str(rng.choice(["same", "next", "next_after_input"])),
        threshold_compare=str(rng.choice(["gt", "ge"])),
        current_order=str(rng.choice(["current_first", "voltage_first"])),
    )


def random_neuron(rng: np.random.Generator, n: int, kind: str | None = None):
    """A neuron of ``n`` units with per-unit or scalar parameters and random semantics."""
    kind = kind or str(rng.choice(["LIF", "CubaLIF", "IF", "LI", "CubaLI", "I"]))

    def vec(lo, hi):
        return rng.uniform(lo, hi, size=n) if rng.random() < 0.5 else np.array(rng.uniform(lo, hi))

    sem = random_sem(rng)
    if kind == "LIF":
        return LIF(tau=vec(3e-3, 2e-2), r=vec(0.5, 2), v_leak=vec(-0.1, 0.1), v_threshold=vec(0.3, 1), sem=sem)
    if kind == "CubaLIF":
        return CubaLIF(tau_syn=vec(3e-3, 2e-2), tau_mem=vec(3e-3, 2e-2), r=vec(0.5, 2), v_leak=vec(-0.1, 0.1),
                       v_threshold=vec(0.05, 0.3), w_in=vec(0.5, 2), sem=sem)
    if kind == "IF":
        return IF(r=vec(50, 200), v_threshold=vec(0.3, 1), sem=sem)
    if kind == "LI":
        return LI(tau=vec(3e-3, 2e-2), r=vec(0.5, 2), v_leak=vec(-0.1, 0.1), sem=sem)
    if kind == "CubaLI":
        return CubaLI(tau_syn=vec(3e-3, 2e-2), tau_mem=vec(3e-3, 2e-2), r=vec(0.5, 2), v_leak=vec(-0.1, 0.1), sem=sem)
    return I(r=vec(50, 200), sem=sem)


def random_layer(rng: np.random.Generator, n_in: int, n_out: int):
    kind = rng.choice(["Affine", "Linear", "Scale"]) if n_in == n_out else rng.choice(["Affine", "Linear"])
    if kind == "Scale":
        return Scale(rng.uniform(0.5, 2, size=n_in) if rng.random() < 0.5 else np.array(rng.uniform(0.5, 2)))
    weight = rng.normal(1.0, 1.0, size=(n_out, n_in)) * 2 / np.sqrt(n_in)
    if kind == "Affine":
        return Affine(weight, rng.normal(0, 0.2, size=n_out))
    return Linear(weight)


def random_graph(seed: int) -> Graph:
    """A feed-forward stack with identities, a dead branch, folding chains and,
    for odd seeds, a recurrent layer (into the first layer when seed % 4 == 1, else
    straight into the neuron)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 6))
    nodes = {"in": Input((n,))}
    edges = []
    prev = "in"
    for index in range(int(rng.integers(2, 4))):
        width = int(rng.integers(2, 6))
        n_in = n
        names = []
        for depth in range(int(rng.integers(1, 3))):  # chains for fold_affine
            name = f"layer{index}_{depth}"
            nodes[name] = random_layer(rng, n, width if depth == 0 else n)
            n = width if depth == 0 else n
            names.append(name)
        if rng.random() < 0.5:
            nodes[f"id{index}"] = rng.choice([Scale(np.array(1.0)), Linear(np.eye(n)), Flatten(0, 0)])
            names.append(f"id{index}")
        nodes[f"neuron{index}"] = random_neuron(rng, n)
        names.append(f"neuron{index}")
        edges += list(zip([prev] + names, names))
        prev = f"neuron{index}"
        if seed % 2 and index == 0:
            target = names[0] if seed % 4 == 1 else prev
            nodes["rec"] = Linear(rng.normal(0, 0.5, size=(n_in if target == names[0] else n, n)))
            edges += [(prev, "rec"), ("rec", target)]
    nodes["dead"] = Scale(np.array(2.0))
    nodes["dead_neuron"] = random_neuron(rng, n, "LIF")
    edges += [(prev, "dead"), ("dead", "dead_neuron")]
    nodes["out"] = Output()
    edges.append((prev, "out"))
    return Graph(nodes, tuple(edges))


def random_input(graph: Graph, seed: int, steps: int = 25, batch: int = 2):
    rng = np.random.default_rng(1000 + seed)
    shapes = snnir.verify(graph).shapes
    return {
        name: rng.uniform(0, 3, size=(steps, batch) + tuple(shapes.outputs[name])) for name in graph.inputs
    }


def state_key(key: str, graph: Graph) -> str | None:
    """Where ``"<node>.<state>"`` of the original lives in an optimised graph: fused
    nodes (and fused nodes lowered to nested graphs in files) nest it under ``neuron``."""
    node, _, state = key.rpartition(".")
    op = graph.nodes.get(node)
    if op is not None and op.op_type in ("snnir.FusedLayerNeuron", "NIRGraph") and "neuron" in graph_or_expansion(op).nodes:
        return f"{node}.neuron.{state}"
    return key


def graph_or_expansion(op) -> Graph:
    return op.graph if op.op_type == "NIRGraph" else op.expand()


def assert_equivalent(original: Graph, optimised: Graph, x, atol: float = 1e-9) -> None:
    """Same Outputs (spikes identical, values within ``atol``) and same surviving states."""
    before = snnir.run(original, x, record=True)
    after = snnir.run(optimised, x, record=True)
    for name in original.outputs:
        np.testing.assert_allclose(after[name], before[name], rtol=0, atol=atol, err_msg=f"output {name}")
    for key, value in before.items():
        if key in original.outputs:
            continue
        moved = state_key(key, optimised)
        if moved in after:
            np.testing.assert_allclose(after[moved], value, rtol=0, atol=atol, err_msg=f"state {key}")
        else:  # only states of removed (dead) nodes may vanish
            assert key.rpartition(".")[0] not in optimised.nodes, f"state {key} lost"


def random_dag(seed: int) -> Graph:
    """Same-width nodes wired at random: merges (summed edges), fan-out, identities,
    several Outputs and, for some seeds, loops closed by a neuron's output."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5))
    nodes = {"in": Input((n,))}
    edges: list[tuple[str, str]] = []
    makers = [
        lambda: Scale(rng.uniform(0.5, 2, size=n)),
        lambda: Linear(rng.normal(1.0, 1.0, size=(n, n)) * 2 / np.sqrt(n)),
        lambda: Affine(rng.normal(1.0, 1.0, size=(n, n)) * 2 / np.sqrt(n), rng.normal(0, 0.2, size=n)),
        lambda: rng.choice([Scale(np.array(1.0)), Linear(np.eye(n)), Flatten(0, -1)]),
        lambda: random_neuron(rng, n),
        lambda: random_neuron(rng, n),
    ]
    for index in range(int(rng.integers(4, 10))):
        name = f"n{index}"
        nodes[name] = makers[int(rng.integers(len(makers)))]()
        earlier = [k for k in nodes if k != name]
        fan_in = 1 if rng.random() < 0.7 else 2
        for src in rng.choice(earlier, size=min(len(earlier), fan_in), replace=False):
            edges.append((str(src), name))
        if isinstance(nodes[name], (Linear, Affine)) and rng.random() < 0.5:  # a fusable pair
            nodes[f"{name}_neuron"] = random_neuron(rng, n)
            edges.append((name, f"{name}_neuron"))
    stateful = [k for k, op in nodes.items() if op.stateful]
    if seed % 2 == 0 and stateful:  # close a loop: a neuron feeds one of its ancestors
        src = str(rng.choice(stateful))
        ancestors = {src}
        while True:
            grown = ancestors | {a for a, b in edges if b in ancestors and a != "in"}
            if grown == ancestors:
                break
            ancestors = grown
        dst = str(rng.choice(sorted(ancestors)))
        if (src, dst) not in edges:
            edges.append((src, dst))
    names = [k for k in nodes if k != "in"]
    for index, src in enumerate(rng.choice(names, size=min(2, len(names)), replace=False)):
        nodes[f"out{index}"] = Output()
        edges.append((str(src), f"out{index}"))
    return Graph(nodes, tuple(edges))


def verified_or_skip(graph: Graph, why: str) -> Graph:
    """``graph`` if it verifies; a random one that does not skips its test, saying ``why``."""
    try:
        snnir.verify(graph)
    except snnir.SnnirError:
        pytest.skip(why)
    return graph
