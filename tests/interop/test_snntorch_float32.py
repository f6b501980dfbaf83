"""snnTorch's subtract-reset neurons, traced and compiled, spike exactly as snnTorch in float32.

snnTorch's ``Leaky``, ``Synaptic`` and ``RLeaky`` (default ``reset_mechanism="subtract"``,
``reset_delay=True``) compute ``(decayed + input) - reset * threshold``; the IR defines the
delayed subtract reset in that order (``Semantics.resets_after_input``), so float32 spikes are
the same bits, not only equal in exact arithmetic; likewise ``RLeaky``/``RSynaptic`` add the
recurrent input right after the decayed state and the input, as the IR adds a neuron's fed-back
drive (``Schedule.fed_back``). Inputs are held over 200 steps and chosen to hit the rounding:
``0x1.5b6dd8p+0`` into ``Leaky(beta=0.5)`` rounds to different spikes from step 17 when the
reset is subtracted before the input (``MODELS`` lists such constants for each
neuron); random currents elsewhere. Every neuron runner is checked: the Python loop, the C++ kernels (scan,
fused neuron-Linear, recurrent) and the Triton kernels (in Triton's interpreter without a GPU).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.interop
snn = pytest.importorskip("snntorch", reason="snntorch is not installed (pip install -e '.[test]')")

STEPS, BATCH, WIDTH = 200, 8, 32


class FirstThenLeaky(nn.Module):
    """A neuron on the input itself (so held constants reach it unchanged), then Linear and Leaky
    (the first neuron's spikes feed a layer: the fused neuron-Linear path where it applies)."""

    def __init__(self, first: nn.Module, both: bool = True):
        super().__init__()
        self.first, self.fc, self.last = first, nn.Linear(WIDTH, WIDTH), snn.Leaky(beta=0.85, threshold=0.5)
        self.both = both  # return both layers' spikes, else the last layer's only

    def forward(self, x):
        kind = type(self.first).__name__
        recurrent = kind in ("RLeaky", "RSynaptic")  # takes and returns its spikes with its state
        if kind == "Synaptic":
            state = self.first.init_synaptic()
        elif kind == "RLeaky":
            state = self.first.init_rleaky()
        elif kind == "RSynaptic":
            state = self.first.init_rsynaptic()
        else:
            state = (self.first.init_leaky(),)
        mem = self.last.init_leaky()
        spikes1, spikes2 = [], []
        for step in range(x.shape[0]):
            if recurrent:
                state = self.first(x[step], *state)
            else:
                out = self.first(x[step], *state)
                state = out[1:]
            spk1 = state[0] if recurrent else out[0]
            spk2, mem = self.last(self.fc(spk1), mem)
            spikes1.append(spk1)
            spikes2.append(spk2)
        return (torch.stack(spikes1), torch.stack(spikes2)) if self.both else torch.stack(spikes2)


def _rleaky(**options) -> nn.Module:
    """RLeaky whose spikes come back to the same neuron times 0.25 (a diagonal recurrent Linear):
    each neuron on its own, so a held constant's rounding is known."""
    return _diagonal(snn.RLeaky(beta=0.9, threshold=0.8, linear_features=WIDTH, **options))


def _diagonal(neuron: nn.Module) -> nn.Module:
    """``neuron`` with its recurrent Linear set to 0.25 times the identity, no bias."""
    with torch.no_grad():
        neuron.recurrent.weight.copy_(0.25 * torch.eye(WIDTH))
        neuron.recurrent.bias.zero_()
    return neuron


# Each first neuron, and held constants (float.hex) whose spikes differ within 200 steps when the
# delayed subtract reset comes before the input (found by stepping both orders in numpy float32).
# "leaky-fused" returns the last layer's spikes only: the Leaky's spikes then feed only the Linear,
# so the two run as one fused op (where it applies: a reset without gradient through the spike).
MODELS = {
    "leaky": (lambda: snn.Leaky(beta=0.5), ["0x1.5b6dd8p+0"]),
    "leaky-fused": (lambda: snn.Leaky(beta=0.5), ["0x1.5b6dd8p+0"]),
    "synaptic": (lambda: snn.Synaptic(alpha=0.8, beta=0.9, threshold=0.7), ["0x1.a3fb5p-4"]),
    "rleaky": (_rleaky, ["0x1.25e2f6p-1", "0x1.76d53ap-3", "0x1.3a729cp-1", "0x1.32773ep-1"]),
}


# RLeaky sums ``(beta mem + input) + recurrent`` and RSynaptic ``(alpha syn + input) + recurrent``;
# the IR adds a neuron's fed-back drive (``Schedule.fed_back``: the recurrent layer's edge) right
# after its drive, the same order. These constants spike differently from step 79-169 in the order
# ``beta mem + (input + recurrent)`` (``tests/targets/test_fed_back.py`` checks that without
# snnTorch). ``one-to-one``: ``all_to_all=False, V=0.25``, the same values through a Scale in place
# of the diagonal Linear (``0.25 z`` is exact either way).
_RLEAKY_SUM = ["0x1.e2b1c2p-2", "0x1.0cf67ap-2", "0x1.953c1ap-2", "0x1.7ad5a2p-2"]
_RSYNAPTIC_SUM = ["0x1.8616d6p-3", "0x1.af4b46p-4", "0x1.582fbap-3", "0x1.80b434p-3"]
SUM_ORDER = {
    "rleaky-sum": (_rleaky, _RLEAKY_SUM),
    "rleaky-one-to-one-sum": (lambda: snn.RLeaky(beta=0.9, threshold=0.8, all_to_all=False, V=0.25), _RLEAKY_SUM),
    "rsynaptic-sum": (
        lambda: _diagonal(snn.RSynaptic(alpha=0.8, beta=0.9, threshold=2.0, linear_features=WIDTH)), _RSYNAPTIC_SUM,
    ),
    "rsynaptic-one-to-one-sum": (
        lambda: snn.RSynaptic(alpha=0.8, beta=0.9, threshold=2.0, all_to_all=False, V=0.25), _RSYNAPTIC_SUM,
    ),
}
LONG_STEPS = 500  # the sum-order cases run longer than STEPS


def _held_input(constants: list[str], device: str, steps: int = STEPS) -> torch.Tensor:
    """[steps, BATCH, WIDTH] float32, every step the same: the constants in sample 0 (each over
    four neurons), random currents from 0 to 2 elsewhere."""
    g = torch.Generator().manual_seed(6)
    held = torch.rand(BATCH, WIDTH, generator=g) * 2.0
    for k, value in enumerate(constants):
        held[0, 4 * k: 4 * k + 4] = float.fromhex(value)
    return held.expand(steps, BATCH, WIDTH).contiguous().to(device)


def _compile_and_compare(name: str, device: str = "cpu", steps: int = STEPS, **options) -> None:
    import snnir

    build, constants = MODELS[name] if name in MODELS else SUM_ORDER[name]
    torch.manual_seed(0)
    model = FirstThenLeaky(build(), both=name != "leaky-fused").to(device)
    x = _held_input(constants, device, steps)
    with torch.no_grad():
        want = model(x)
        graph = snnir.optimize(snnir.trace(model, x[:3]))  # a short trace: the steps repeat
        got = snnir.compile(graph, target="torch", device=device, **options)(x)
    want = want if isinstance(want, tuple) else (want,)
    got = tuple(got.values()) if isinstance(got, dict) else (got,)
    assert len(got) == len(want)
    for layer, (mine, theirs) in enumerate(zip(got, want)):
        assert mine.dtype == theirs.dtype == torch.float32
        assert theirs.sum() > 0 and theirs.sum() < theirs.numel(), f"output {layer} is silent or saturated"
        differ = (mine != theirs).nonzero()
        assert not len(differ), f"{name}: output {layer} differs at {len(differ)} places, first {differ[:3].tolist()}"


@pytest.mark.parametrize("name", list(MODELS))
def test_python_loop_spikes_as_snntorch(name):
    _compile_and_compare(name, native=False, triton=False)


# the C++ kernel that runs each model's first neuron (the fused neuron-Linear kernel takes a reset
# without gradient through the spike: the same forward)
FIRST_KERNEL = {"leaky": "neuron_scan", "leaky-fused": "neuron_linear", "synaptic": "neuron_scan", "rleaky": "recurrent"}
# ... and its last Leaky: with its Linear in a step chain (step_chain.py), except where the first
# neuron applies that Linear in its own scan
LAST_KERNEL = {"leaky-fused": "neuron_scan"}


@pytest.mark.parametrize("name", list(MODELS))
def test_native_kernels_spike_as_snntorch(name, kernels_used):
    _compile_and_compare(name, native=True, triton=False, detach_reset=name == "leaky-fused")
    wanted = {FIRST_KERNEL[name], LAST_KERNEL.get(name, "neuron_linear")}
    assert wanted <= kernels_used, f"the C++ kernels used: {sorted(kernels_used)}"


@pytest.mark.parametrize("name", list(MODELS))
def test_triton_kernels_spike_as_snntorch(name):
    from tests.targets.triton_device import DEVICE  # skips without Triton or a place to run it

    _compile_and_compare(name, device=DEVICE, native=False, triton=True)


@pytest.mark.parametrize("name", list(SUM_ORDER))
def test_recurrent_sum_rounds_as_snntorch(name):
    _compile_and_compare(name, steps=LONG_STEPS, native=False, triton=False)


# all-to-all: the C++ recurrent kernel (its fused loop); one-to-one: the step loop (a neuron with a
# fed-back drive steps in the Python loop there)
@pytest.mark.parametrize("name", list(SUM_ORDER))
def test_recurrent_sum_rounds_as_snntorch_native(name, native_kernels):
    _compile_and_compare(name, steps=LONG_STEPS, native=True, triton=False)


@pytest.mark.parametrize("name", list(SUM_ORDER))
def test_recurrent_sum_rounds_as_snntorch_triton(name):
    from tests.targets.triton_device import DEVICE  # skips without Triton or a place to run it

    _compile_and_compare(name, device=DEVICE, native=False, triton=True)  # differs before step 170
