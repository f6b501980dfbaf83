"""snnir.StateProbe: a neuron's state as a value. Its rules (verifier), the passes that must keep
its neuron, NIR files (written as itself with one warning, refused by every library dialect), and
gradients through it in the torch target. Every path against the reference: tests/test_conformance.py."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirError, SnnirWarning
from snnir.ir import LIF, Graph, Input, Linear, Output, Semantics, verify
from snnir.ir.ops.probe import StateProbe
from snnir.passes import PASSES

SEM = Semantics(dt=1e-3, reset="zero", reset_timing="next")


def lif(n: int = 3) -> LIF:
    return LIF(tau=np.full(n, 5e-3), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5), sem=SEM)


def probed(state: str = "v") -> Graph:
    """in -> fc -> lif -> out, and lif's state read by ``mem`` -> out_mem."""
    return Graph(
        {"in": Input((2,)), "fc": Linear(np.full((3, 2), 1.5)), "lif": lif(), "mem": StateProbe(state),
         "out": Output(), "out_mem": Output()},
        (("in", "fc"), ("fc", "lif"), ("lif", "out"), ("lif", "mem"), ("mem", "out_mem")),
    )


def inputs(steps: int = 20) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 1, (steps, 2, 2))


def test_reads_the_state_the_neuron_reaches_at_each_step():
    got = snnir.run(probed(), inputs(), record=True)
    np.testing.assert_array_equal(got["out_mem"], got["lif.v"])
    assert 0 < got["out"].mean() < 1


@pytest.mark.parametrize("edges,message", [
    ((("in", "fc"), ("fc", "lif"), ("lif", "out"), ("mem", "out_mem")), "exactly one incoming edge"),
    ((("in", "fc"), ("fc", "lif"), ("lif", "out"), ("fc", "mem"), ("mem", "out_mem")), "Linear"),
    ((("in", "fc"), ("fc", "lif"), ("lif", "out"), ("lif", "mem"), ("fc", "mem"), ("mem", "out_mem")),
     "exactly one incoming edge"),
])
def test_the_verifier_names_a_probe_without_its_one_neuron(edges, message):
    graph = probed().replace(edges=edges)
    with pytest.raises(SnnirError, match=message) as err:
        verify(graph)
    assert err.value.node == "mem"


def test_the_verifier_refuses_a_state_the_neuron_lacks_and_a_probe_feeding_its_neuron():
    with pytest.raises(SnnirError, match="state 'i'.*LIF") as err:
        verify(probed("i"))
    assert err.value.node == "mem"
    loop = probed().replace(edges=probed().edges + (("mem", "lif"),))
    with pytest.raises(SnnirError, match="feeds back") as err:
        verify(loop)
    assert err.value.node == "mem"
    with pytest.raises(SnnirError, match="state variable"):
        StateProbe("v; rm")


@pytest.mark.parametrize("name", sorted(PASSES))
def test_every_pass_keeps_the_probed_value(name):
    graph = probed()
    options = {"change_dt": {"dt": 2e-3}}.get(name, {})
    rewritten = PASSES[name](graph, **options)
    want, got = snnir.run(graph, inputs()), snnir.run(rewritten, inputs())
    np.testing.assert_allclose(got["out_mem"], want["out_mem"], rtol=1e-12)


def test_fusion_leaves_a_probed_neuron_and_dead_node_elimination_keeps_it():
    fused = snnir.optimize(probed(), level=2)
    assert fused.nodes["lif"].op_type == "LIF" and "fc" in fused.nodes
    only_probe = probed().without_nodes(["out"])
    assert "lif" in PASSES["eliminate_dead_nodes"](only_probe).nodes


def test_a_file_keeps_it_warning_once_and_reads_back_equal(tmp_path):
    graph = probed()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snnir.write(graph, tmp_path / "g.nir")
    messages = [str(w.message) for w in caught if issubclass(w.category, SnnirWarning)]
    assert len(messages) == 1 and "'mem'" in messages[0] and "only snnir reads" in messages[0]
    assert snnir.read(tmp_path / "g.nir") == graph


@pytest.mark.parametrize("dialect", ["snntorch", "norse", "sinabs", "rockpool", "spyx"])
def test_every_dialect_refuses_it_naming_it(dialect, tmp_path):
    graph = probed().without_nodes(["out"])  # one Input, one Output: what every importer reads
    with pytest.raises(SnnirError, match="StateProbe|state") as err:
        snnir.write(graph, tmp_path / "g.nir", dialect=dialect)
    assert err.value.node == "mem"
    assert not (tmp_path / "g.nir").exists()


def test_gradients_through_the_probe_and_of_the_probed_neurons_spikes():
    """The probed membrane carries gradients to the neuron's parameters and the layer before it, and
    a probed neuron (run by its step loop) gives its spikes the gradients the fast scan gives."""
    trained = {"lif": lif().replace(trainable=("tau", "v_threshold")),
               "fc": Linear(np.full((3, 2), 1.5), trainable=("weight",))}
    graph = probed().with_nodes(trained)
    x = torch.from_numpy(inputs())
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    out = module(x)
    np.testing.assert_allclose(out["out_mem"].detach().numpy(), snnir.run(graph, x.numpy())["out_mem"], rtol=1e-12)
    out["out_mem"].square().sum().backward()
    grads = dict(module.named_parameters())  # a zero reset passes no gradient to the threshold
    assert [n for n, p in grads.items() if p.grad is None or not p.grad.abs().sum() > 0] == ["lif.v_threshold"]

    def spike_grads(g: Graph) -> dict:
        compiled = snnir.compile(g, target="torch", dtype=torch.float64)
        out = compiled(x)
        (out["out"] if isinstance(out, dict) else out).sum().backward()
        return {name: p.grad for name, p in compiled.named_parameters()}

    with_probe, without = spike_grads(graph), spike_grads(graph.without_nodes(["mem", "out_mem"]))
    assert with_probe.keys() == without.keys()
    for name, grad in with_probe.items():
        torch.testing.assert_close(grad, without[name], rtol=1e-12, atol=1e-12)


def test_with_the_native_kernels_a_probed_neuron_falls_back_to_its_step_loop(native_kernels):
    """The C++ scans and feedback loop run the other neurons; the probed one (here in a loop with
    its recurrent Linear) runs by its step loop, and every value equals the reference."""
    graph = Graph(
        {"in": Input((2,)), "fc": Linear(np.full((3, 2), 1.5)), "lif": lif(), "rec": Linear(np.eye(3) * -0.3),
         "mem": StateProbe("v"), "fc2": Linear(np.full((3, 3), 0.8)), "lif2": lif(), "out": Output(),
         "out_mem": Output(), "out2": Output()},
        (("in", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out"), ("lif", "mem"),
         ("mem", "out_mem"), ("lif", "fc2"), ("fc2", "lif2"), ("lif2", "out2")),
    )
    want = snnir.run(graph, inputs())
    module = snnir.compile(graph, target="torch", dtype=torch.float64, native=True)
    got = module(torch.from_numpy(inputs()))
    assert 0 < want["out2"].mean() < 1
    for name in ("out", "out2"):
        np.testing.assert_array_equal(got[name].detach().numpy(), want[name])
    np.testing.assert_allclose(got["out_mem"].detach().numpy(), want["out_mem"], rtol=1e-12, atol=1e-12)
