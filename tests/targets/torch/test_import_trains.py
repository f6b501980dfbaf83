"""Imported models train: a file with no trainable flags gets torch.nn's (weights and biases of
Linear, Affine, Conv and Scale train, neuron parameters do not); our own files' flags rule."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import torch

import snnir
from snnir.ir import LIF, Affine, Graph, Input, Output, Semantics


def quiet_read(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return snnir.read(path, **options)


def plain_nir_file(path) -> None:
    """A two-layer LIF network written by the nir package itself (no snnir records)."""
    rng = np.random.default_rng(0)

    def lif(n: int) -> nir.LIF:
        return nir.LIF(tau=np.full(n, 2e-3), r=np.full(n, 10.0), v_leak=np.zeros(n), v_threshold=np.ones(n))

    nodes = {
        "input": nir.Input(input_type={"input": np.array([12])}),
        "fc1": nir.Affine(weight=rng.normal(0, 0.5, (16, 12)), bias=np.zeros(16)),
        "lif1": lif(16),
        "fc2": nir.Linear(weight=rng.normal(0, 0.5, (4, 16))),
        "lif2": lif(4),
        "output": nir.Output(output_type={"output": np.array([4])}),
    }
    edges = [("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")]
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges))


def train(module: torch.nn.Module, n_inputs: int, n_classes: int, steps: int = 12) -> list[float]:
    """Losses of Adam steps on spike trains whose channel rates depend on the class."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, n_classes, (16,), generator=gen)
    rates = torch.rand(n_classes, n_inputs, generator=gen) * 0.6
    x = (torch.rand(25, 16, n_inputs, generator=gen) < rates[labels]).float()
    optimiser = torch.optim.Adam(module.parameters(), lr=2e-2)
    losses = []
    for _ in range(steps):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(5 * module(x).mean(0), labels)
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return losses


def test_a_plain_nir_file_trains_its_weights_and_biases(tmp_path):
    path = tmp_path / "plain.nir"
    plain_nir_file(path)
    graph = quiet_read(path)
    assert graph.nodes["fc1"].trainable == ("weight", "bias") and graph.nodes["fc2"].trainable == ("weight",)
    assert graph.nodes["lif1"].trainable == ()
    module = snnir.compile(graph, target="torch")
    names = {name for name, p in module.named_parameters() if p.requires_grad}
    assert names and all(name.split(".")[-1] in ("weight", "bias") for name in names)
    losses = train(module, 12, 4)
    assert losses[-1] < 0.85 * losses[0], losses


def test_a_published_file_trains(fixtures_dir):
    graph = quiet_read(fixtures_dir / "braille_noDelay_noBias_subtract.nir", reset="subtract")
    module = snnir.compile(graph, target="torch")
    assert any(p.requires_grad for p in module.parameters())
    (n_inputs,) = graph.nodes[graph.inputs[0]].shape
    n_classes = snnir.verify(graph).shapes.inputs[graph.outputs[0]][0]
    losses = train(module, n_inputs, n_classes, steps=5)
    assert losses[-1] < losses[0], losses


def test_our_own_files_flags_rule(tmp_path):
    sem = Semantics(dt=1e-3, reset="subtract")
    frozen = Graph.sequential(
        ("x", Input((3,))),
        ("fc", Affine(weight=np.full((2, 3), 0.5), bias=np.zeros(2))),
        ("lif", LIF(tau=np.full(2, 0.01), r=np.array(5.0), v_leak=np.array(0.0), v_threshold=np.array(1.0),
                    sem=sem, trainable=("tau",))),
        ("y", Output()),
    )
    snnir.write(frozen, tmp_path / "ours.nir")
    again = quiet_read(tmp_path / "ours.nir")
    assert again == frozen and again.nodes["fc"].trainable == () and again.nodes["lif"].trainable == ("tau",)
    only_layers = Graph.sequential(("x", Input((3,))), ("fc", Affine(weight=np.ones((2, 3)), bias=np.zeros(2))),
                                   ("y", Output()))
    snnir.write(only_layers, tmp_path / "layers.nir")  # no neuron, so no per-node record: still ours
    assert quiet_read(tmp_path / "layers.nir").nodes["fc"].trainable == ()
