"""Traced snnTorch networks match snnTorch's own forward: identical spikes, membranes within 1e-5,
over 100 steps with batch 4, before and after a round trip through a .nir file."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirError

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

from tests.frontends._harness import (  # noqa: E402
    as_float64, assert_same_snapshot, check_same, random_input, run_step_model, state_snapshot,
)

N_IN, N_HID, N_OUT = 6, 12, 5


def per_neuron(n: int, low: float, high: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, generator=generator)


def two_layer(make_neuron, seed: int = 0) -> torch.nn.Module:
    """Linear -> neuron -> Linear -> neuron (output=True, so it returns the membrane too, except where a
    zero reset makes the membrane impossible to read out), step-style."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(N_IN, N_HID), make_neuron(N_HID, False),
        torch.nn.Linear(N_HID, N_OUT), make_neuron(N_OUT, True),
    )


def assert_matches_snntorch(model: torch.nn.Module, scale: float = 2.0, tmp_path=None) -> snnir.Graph:
    x = random_input((N_IN,), scale)
    graph = snnir.trace(model, x[0].float())
    spikes, states = run_step_model(as_float64(model), x)
    assert 0 < spikes.mean() < 1, "the test input should make some but not all neurons spike"
    check_same(graph, spikes, states, x.numpy())
    if tmp_path is not None:
        path = tmp_path / "model.nir"
        snnir.write(graph, path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_same(snnir.read(path), spikes, states, x.numpy())
    return graph


ALL_RESETS = [("subtract", True), ("subtract", False), ("zero", True), ("zero", False), ("none", True), ("none", False)]
LEAKY_CASES = [
    (reset, delay, beta_kind, thr_kind)
    for reset, delay in ALL_RESETS
    for beta_kind in ("scalar", "vector")
    for thr_kind in ("scalar", "vector")
]


@pytest.mark.parametrize("reset,delay,beta_kind,thr_kind", LEAKY_CASES)
def test_leaky_matrix(reset, delay, beta_kind, thr_kind, tmp_path):
    def make(n, output):
        beta = 0.85 if beta_kind == "scalar" else per_neuron(n, 0.5, 0.95, n)
        thr = 1.0 if thr_kind == "scalar" else per_neuron(n, 0.5, 1.5, n + 1)
        return snn.Leaky(beta=beta, threshold=thr, reset_mechanism=reset, reset_delay=delay,
                         init_hidden=True, output=output and reset != "zero")

    graph = assert_matches_snntorch(two_layer(make), tmp_path=tmp_path if beta_kind == thr_kind == "vector" else None)
    if reset == "subtract" and not delay:
        assert graph.nodes["3"].op_type == "Threshold" and graph.nodes["3_mem"].op_type == "LI"


def test_leaky_learnable_parameters_are_recorded(tmp_path):
    def make(n, output):
        return snn.Leaky(beta=per_neuron(n, 0.5, 0.9, n), threshold=torch.ones(n), learn_beta=True,
                         learn_threshold=True, init_hidden=True, output=output)

    model = two_layer(make)
    model[0].weight.requires_grad_(False)
    graph = assert_matches_snntorch(model, tmp_path=tmp_path)
    assert set(graph.nodes["1"].trainable) == {"tau", "v_threshold"}
    assert graph.nodes["0"].trainable == ("bias",)
    assert graph.nodes["2"].trainable == ("weight", "bias")


def test_leaky_without_leak_becomes_if():
    graph = assert_matches_snntorch(two_layer(lambda n, o: snn.Leaky(beta=1.0, init_hidden=True, output=o)), 0.6)
    assert graph.nodes["1"].op_type == "IF"


@pytest.mark.parametrize("reset,delay", ALL_RESETS)
@pytest.mark.parametrize("vector", [False, True])
def test_synaptic_matrix(reset, delay, vector):
    def make(n, output):
        alpha = per_neuron(n, 0.3, 0.9, n) if vector else 0.7
        beta = per_neuron(n, 0.5, 0.95, n + 2) if vector else 0.85
        return snn.Synaptic(alpha=alpha, beta=beta, reset_mechanism=reset, reset_delay=delay,
                            init_hidden=True, output=output and reset != "zero")

    assert_matches_snntorch(two_layer(make), scale=1.0)


@pytest.mark.parametrize(
    "reset,delay", [("subtract", True), ("subtract", False), ("none", True), ("zero", False), ("zero", True)]
)
@pytest.mark.parametrize("recurrence", ["linear", "scalar_v", "vector_v"])
def test_rleaky_matrix(reset, delay, recurrence):
    def make(n, output):
        if recurrence == "linear":
            extra = dict(all_to_all=True, linear_features=n)
        else:
            extra = dict(all_to_all=False, V=0.5 if recurrence == "scalar_v" else per_neuron(n, -1, 1, n))
        return snn.RLeaky(beta=0.8, reset_mechanism=reset, reset_delay=delay, init_hidden=True,
                          output=output and reset != "zero", **extra)

    graph = assert_matches_snntorch(two_layer(make))
    expected = "Affine" if recurrence == "linear" else "Scale"
    assert graph.nodes["1_recurrent"].op_type == expected
    spikes = "1_last" if reset == "subtract" and not delay else "1"
    assert (spikes, "1_recurrent") in graph.edges and ("1_recurrent", "1") in graph.edges


@pytest.mark.parametrize("reset", ["subtract", "none", "zero"])
@pytest.mark.parametrize("recurrence", ["linear", "scalar_v"])
def test_rsynaptic_matrix(reset, recurrence, tmp_path):
    def make(n, output):
        extra = dict(all_to_all=True, linear_features=n) if recurrence == "linear" else dict(all_to_all=False, V=0.5)
        return snn.RSynaptic(alpha=0.6, beta=0.8, reset_mechanism=reset, init_hidden=True, output=output and reset != "zero", **extra)

    assert_matches_snntorch(two_layer(make), scale=1.0, tmp_path=tmp_path)


@pytest.mark.parametrize("reset", ["subtract", "none", "zero"])
@pytest.mark.parametrize("params,scale", [(dict(beta=0.9), 4.0), (dict(R=5.0, C=2.0, time_step=0.5), 1.0)])
def test_lapicque(reset, params, scale):
    assert_matches_snntorch(
        two_layer(lambda n, o: snn.Lapicque(reset_mechanism=reset, threshold=0.1, init_hidden=True,
                                            output=o and reset != "zero", **params)), scale
    )


@pytest.mark.parametrize(
    "make,timing",
    [
        (lambda: snn.Leaky(beta=0.9, reset_mechanism="zero", init_hidden=True), "next"),
        (lambda: snn.Synaptic(alpha=0.5, beta=0.9, reset_mechanism="zero", init_hidden=True), "next_after_input"),
        (lambda: snn.RLeaky(beta=0.9, linear_features=N_HID, reset_mechanism="zero", init_hidden=True),
         "next_after_input"),
        (lambda: snn.RSynaptic(alpha=0.5, beta=0.9, linear_features=N_HID, reset_mechanism="zero", init_hidden=True),
         "next_after_input"),
        (lambda: snn.Lapicque(beta=0.9, reset_mechanism="zero", init_hidden=True), "next_after_input"),
    ],
)
def test_delayed_zero_reset_timing(make, timing):
    """Leaky zeroes before the input; the others zero the whole new membrane, input included."""
    graph = snnir.trace(torch.nn.Sequential(torch.nn.Linear(N_IN, N_HID), make()), torch.rand(4, N_IN))
    assert graph.nodes["1"].sem.reset == "zero" and graph.nodes["1"].sem.reset_timing == timing


def test_alpha_without_reset():
    def make(n, output):
        return snn.Alpha(alpha=0.9, beta=0.8, reset_mechanism="none", init_hidden=True, output=output)

    x = random_input((N_IN,), 2.0)
    model = two_layer(make)
    graph = snnir.trace(model, x[0].float())
    spikes, states = run_step_model(as_float64(model), x)
    assert 0 < spikes.mean() < 1
    check_same(graph, spikes, {}, x.numpy())


class LoopNet(torch.nn.Module):
    """The snnTorch tutorial shape: explicit states, a Python loop over time."""

    def __init__(self, neuron: str = "leaky"):
        super().__init__()
        torch.manual_seed(1)
        self.fc1 = torch.nn.Linear(N_IN, N_HID)
        self.fc2 = torch.nn.Linear(N_HID, N_OUT)
        self.neuron = neuron
        if neuron == "leaky":
            self.lif1, self.lif2 = snn.Leaky(beta=0.9), snn.Leaky(beta=0.8)
        else:
            self.lif1 = snn.RSynaptic(alpha=0.6, beta=0.8, all_to_all=False, V=0.3, reset_delay=False)
            self.lif2 = snn.RSynaptic(alpha=0.5, beta=0.9, linear_features=N_OUT, reset_delay=False)

    def forward(self, x):
        spk_rec, mem_rec = [], []
        if self.neuron == "leaky":
            mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
            for step in range(x.shape[0]):
                spk1, mem1 = self.lif1(self.fc1(x[step]), mem1)
                spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                spk_rec.append(spk2)
                mem_rec.append(mem2)
        else:
            # snnTorch's reset_delay=False path needs states of the right shape
            spk1, syn1, mem1 = (torch.zeros(x.shape[1], N_HID, dtype=x.dtype) for _ in range(3))
            spk2, syn2, mem2 = (torch.zeros(x.shape[1], N_OUT, dtype=x.dtype) for _ in range(3))
            for step in range(x.shape[0]):
                spk1, syn1, mem1 = self.lif1(self.fc1(x[step]), spk1, syn1, mem1)
                spk2, syn2, mem2 = self.lif2(self.fc2(spk1), spk2, syn2, mem2)
                spk_rec.append(spk2)
                mem_rec.append(mem2)
        return torch.stack(spk_rec), torch.stack(mem_rec)


@pytest.mark.parametrize("neuron", ["leaky", "rsynaptic_reset_delay_false"])
def test_loop_style_module(neuron):
    model = LoopNet("leaky" if neuron == "leaky" else "rsynaptic")
    x = random_input((N_IN,), 1.5)
    graph = snnir.trace(model, x[:3].float())
    assert set(graph.nodes) >= {"input", "fc1", "lif1", "fc2", "lif2", "output"}
    with torch.no_grad():
        spikes, mem = as_float64(model)(x)
    check_same(graph, spikes.double().numpy(), {"lif2.v": mem.numpy()}, x.numpy())


def test_trace_leaves_the_model_untouched():
    model = two_layer(lambda n, o: snn.Leaky(beta=0.9, init_hidden=True, output=o, learn_beta=True))
    model.train()
    with torch.no_grad():
        model(torch.rand(3, N_IN))  # give it hidden state of another batch size
    before = state_snapshot(model)
    snnir.trace(model, torch.rand(4, N_IN))
    assert_same_snapshot(before, state_snapshot(model))
    assert model.training


def test_a_step_model_traced_on_a_whole_sequence_is_refused_with_a_hint():
    """A step model (one call, one step) given ``[T, B, ...]`` takes T as the batch: the refusal
    names the layer and says to trace one step."""
    model = two_layer(lambda n, o: snn.Leaky(beta=0.9, init_hidden=True, output=o))
    with pytest.raises(SnnirError, match=r"node '0': .*expects input \[6\].*trace it on one step \[B, \.\.\.\]"):
        snnir.trace(model, torch.rand(10, 4, N_IN))
    snnir.trace(model, torch.rand(4, N_IN))  # one step traces


def test_a_step_model_refused_on_one_step_gets_no_such_hint():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(SnnirError) as refused:
        snnir.trace(model, torch.rand(4, 1, 8, 8))
    assert "relu" in str(refused.value).lower() and "one step per call" not in str(refused.value)


@pytest.mark.parametrize("make", [
    lambda n, o: snn.Leaky(beta=0.8, threshold=-0.2, reset_mechanism="zero", init_hidden=True, output=o),
    lambda n, o: snn.Leaky(beta=0.8, threshold=-0.2, reset_mechanism="none", init_hidden=True, output=o),
], ids=["leaky-zero", "leaky-none"])
def test_negative_thresholds_trace_where_the_first_step_resets_nothing(make):
    assert_matches_snntorch(two_layer(make))


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: snn.Leaky(beta=0.9, inhibition=True, init_hidden=True), "inhibition"),
        (lambda: snn.Leaky(beta=0.9, graded_spikes_factor=2.0, init_hidden=True), "graded"),
        (lambda: snn.Alpha(alpha=0.9, beta=0.8, init_hidden=True), "Alpha"),
        (lambda: snn.SLSTM(N_HID, N_HID, init_hidden=True), "SLSTM"),
        # snnTorch's delayed reset resets the first step from the zero initial membrane
        (lambda: snn.Leaky(beta=0.9, threshold=-0.2, init_hidden=True), "negative threshold with the delayed subtract"),
        (lambda: snn.Synaptic(alpha=0.7, beta=0.9, threshold=-0.2, reset_mechanism="zero", init_hidden=True),
         "negative threshold with the delayed zero"),
        (lambda: snn.RLeaky(beta=0.9, threshold=-0.2, linear_features=N_HID, init_hidden=True), "negative threshold"),
        (lambda: snn.Lapicque(beta=0.9, threshold=-0.2, init_hidden=True), "negative threshold"),
        (lambda: snn.RSynaptic(alpha=0.7, beta=0.9, threshold=-0.2, linear_features=N_HID, init_hidden=True),
         "negative threshold"),
    ],
)
def test_inexact_options_are_refused_naming_the_layer(make, needle):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torch.nn.Sequential(torch.nn.Linear(N_IN, N_HID), make())
    with pytest.raises(SnnirError) as info:
        snnir.trace(model, torch.rand(4, N_IN))
    assert info.value.node == "1"
    assert needle in str(info.value)


def test_subtract_without_delay_rechecks_a_membrane_left_above_threshold():
    """Strong input leaves the post-reset membrane above threshold, where snnTorch's
    reset_delay=False differs from a plain same-step subtract reset."""
    model = torch.nn.Sequential(torch.nn.Linear(N_IN, N_OUT),
                                snn.Leaky(beta=0.9, reset_delay=False, init_hidden=True, output=True))
    x = random_input((N_IN,), 6.0)
    graph = snnir.trace(model, x[0].float())
    spikes, states = run_step_model(as_float64(model), x)
    assert (states["1.v"] > 1.0).mean() > 0.05  # the case that needs the recheck happens often
    out = check_same(graph, spikes, {}, x.numpy())
    np.testing.assert_allclose(out["1_mem.v"] - out["output"], states["1.v"], atol=1e-5, rtol=0)
