"""snnTorch's Leaky subtracts the reset after adding the input; the compiled module must round alike.

snnTorch (``reset_mechanism="subtract"``, the default) computes ``(beta * mem + input) - reset *
threshold``; ``(beta * mem - reset * threshold) + input`` rounds differently: a constant input of
``0x1.5b6dd8p+0`` into ``Leaky(beta=0.5)`` then spikes differently from step 17 on. Found by the
benchmark suite's ``conv-static`` case (tutorial 6's conv net, a held image: 5 of 32000 output
spikes differed at B=128, T=25). Fixed by defining the delayed subtract reset after the input
(``Semantics.resets_after_input``); ``tests/interop/test_snntorch_float32.py`` covers more.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.interop
snn = pytest.importorskip("snntorch", reason="snntorch is not installed (pip install -e '.[test]')")


class OneLeaky(nn.Module):
    def __init__(self):
        super().__init__()
        self.lif = snn.Leaky(beta=0.5)

    def forward(self, x):
        mem = self.lif.init_leaky()
        spikes = []
        for step in range(x.shape[0]):
            spk, mem = self.lif(x[step], mem)
            spikes.append(spk)
        return torch.stack(spikes)


@pytest.mark.parametrize("native", [None, False], ids=["defaults", "python-loop"])
def test_held_current_spikes_as_snntorch(native):
    import snnir

    x = torch.full((25, 1, 1), float.fromhex("0x1.5b6dd8p+0"))
    model = OneLeaky()
    with torch.no_grad():
        want = model(x)
        module = snnir.compile(snnir.optimize(snnir.trace(model, x)), target="torch", native=native)
        got = module(x)
    assert torch.equal(got, want), f"spikes differ at steps {(got != want).flatten().nonzero().flatten().tolist()}"
