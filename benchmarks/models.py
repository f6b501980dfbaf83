"""The suite's feed-forward networks, written as snnTorch users write them, and their inputs.

Every network loops over the steps in ``forward`` and returns the output layer's spikes
stacked over time, ``[T, B, classes]``. Its input is either held (static: one ``[B, ...]``
sample shown at every step, ``steps`` set at construction) or given per step (``[T, B, ...]``,
``steps`` read from it). The recurrent network is ``bench_recurrent.snntorch_net``.
"""

from __future__ import annotations

import torch
from torch import nn

BETA = 0.9  # the tutorial MLP's and the wide MLP's Leaky
CONV_BETA = 0.5  # tutorial 6's


class MLP(nn.Module):
    """``Linear -> Leaky`` per layer, ``sizes[0]`` inputs (the tutorial: 784-1000-10)."""

    def __init__(self, sizes: tuple[int, ...], steps: int, beta: float = BETA):
        import snntorch as snn

        super().__init__()
        self.steps = steps
        self.fcs = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.lifs = nn.ModuleList(snn.Leaky(beta=beta) for _ in sizes[1:])

    def forward(self, x):
        mems = [lif.init_leaky() for lif in self.lifs]
        held = x.dim() == 2
        spk_rec = []
        for step in range(self.steps if held else x.shape[0]):
            spk = x if held else x[step]
            for i, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
                spk, mems[i] = lif(fc(spk), mems[i])
            spk_rec.append(spk)
        return torch.stack(spk_rec)


class ConvNet(nn.Module):
    """Tutorial 6's network: ``Conv2d(1, 12, 5) -> MaxPool2d(2) -> Leaky -> Conv2d(12, 64, 5)
    -> MaxPool2d(2) -> Leaky -> Linear(1024, 10) -> Leaky`` on 28x28 images, ``beta=0.5``,
    ``fast_sigmoid(slope=25)`` surrogate."""

    def __init__(self, steps: int):
        import snntorch as snn
        from snntorch import surrogate

        super().__init__()
        self.steps = steps
        grad = surrogate.fast_sigmoid(slope=25)
        self.conv1, self.pool1 = nn.Conv2d(1, 12, 5), nn.MaxPool2d(2)
        self.lif1 = snn.Leaky(beta=CONV_BETA, spike_grad=grad)
        self.conv2, self.pool2 = nn.Conv2d(12, 64, 5), nn.MaxPool2d(2)
        self.lif2 = snn.Leaky(beta=CONV_BETA, spike_grad=grad)
        self.fc1, self.lif3 = nn.Linear(64 * 4 * 4, 10), snn.Leaky(beta=CONV_BETA, spike_grad=grad)

    def forward(self, x):
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        held = x.dim() == 4
        spk_rec = []
        for step in range(self.steps if held else x.shape[0]):
            spk1, mem1 = self.lif1(self.pool1(self.conv1(x if held else x[step])), mem1)
            spk2, mem2 = self.lif2(self.pool2(self.conv2(spk1)), mem2)
            spk3, mem3 = self.lif3(self.fc1(spk2.flatten(1)), mem3)
            spk_rec.append(spk3)
        return torch.stack(spk_rec)


def seeded(model: nn.Module, gain: float = 1.0) -> nn.Module:
    """``model`` (built after ``torch.manual_seed(0)``) with its Linear and Conv2d weights scaled
    by ``gain``: random weights at torch's default scale leave the deeper layers silent, and a
    silent layer checks no spikes."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.mul_(gain)
    return model


def make_input(shape: tuple[int, ...], steps: int, batch: int, static: bool, classes: int, device,
               gain: float = 1.0):
    """``(x, targets)``: an image ``[B, *shape]`` of rates in ``[0, gain)`` held (static), or
    rate-coded spikes ``[T, B, *shape]`` drawn from it; fixed seed."""
    g = torch.Generator().manual_seed(1)
    image = torch.rand(batch, *shape, generator=g) * gain
    targets = torch.randint(0, classes, (batch,), generator=g)
    x = image if static else (torch.rand(steps, batch, *shape, generator=g) < image).float()
    return x.to(device), targets.to(device)
