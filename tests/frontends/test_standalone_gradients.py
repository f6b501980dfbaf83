"""The standalone source (``snnir compile --target torch -o model.py``) trains as snnTorch does:
its reset, like snnTorch's ``mem_reset``, passes no gradient through the spikes (float64)."""

from __future__ import annotations

import pytest
import torch

import snnir

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

from snnir.frontends.guard import in_float64  # noqa: E402
from tests.frontends.test_trace_learn_decay import Net, load_standalone, sample, snntorch_run, step_loss  # noqa: E402


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("kind", ["Leaky", "Synaptic", "RLeaky", "RSynaptic"])
def test_standalone_gradients_equal_snntorchs(kind, reset, tmp_path):
    model = Net(kind, reset_mechanism=reset, learn_threshold=True)
    graph = snnir.trace(model, sample()[0].float())
    twin, standalone = in_float64(model), load_standalone(graph, tmp_path / "model.py")
    theirs, ours = snntorch_run(twin), standalone(sample())
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    step_loss(theirs).backward()
    step_loss(ours).backward()
    pairs = {"fc:weight": twin.fc.weight, "fc:bias": twin.fc.bias, "lif:a_mem": twin.lif.beta,
             "lif:v_threshold": twin.lif.threshold}
    for key, their_param in pairs.items():
        assert their_param.grad.abs().max() > 0, key
        torch.testing.assert_close(standalone.params[key].grad, their_param.grad, rtol=1e-6, atol=1e-12,
                                   msg=lambda m, key=key: f"{key}: {m}")
