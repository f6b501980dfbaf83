"""Train a small snnTorch network, export it to NIR with snnir, and check the file
reproduces every spike of snnTorch's own forward (run in float64).

    python examples/export_snntorch.py [OUT.nir]
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import snntorch as snn
import torch

import snnir

STEPS, BATCH, N_IN, N_HID, N_OUT = 30, 16, 20, 32, 4


def build() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(N_IN, N_HID), snn.Leaky(beta=0.9, threshold=0.3, learn_beta=True, init_hidden=True),
        torch.nn.Linear(N_HID, N_OUT), snn.Leaky(beta=0.85, threshold=0.3, init_hidden=True, output=True),
    )


def run_snntorch(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Output spikes [T, B, N_OUT], states reset first."""
    for module in model.modules():
        if isinstance(module, snn.SpikingNeuron):
            module.reset_mem()
    return torch.stack([model(x[t])[0] for t in range(x.shape[0])])


def synthetic_data(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Poisson spikes [T, B, N_IN] whose rates depend on the label, and the labels."""
    labels = torch.randint(0, N_OUT, (BATCH,), generator=generator)
    rates = torch.rand(N_OUT, N_IN, generator=torch.Generator().manual_seed(0))[labels]
    return (torch.rand(STEPS, BATCH, N_IN, generator=generator) < rates).float(), labels


def train(model: torch.nn.Module, steps: int = 10) -> None:
    """A few steps of rate-coded classification (spike-count targets)."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(steps):
        x, labels = synthetic_data(generator)
        target = torch.nn.functional.one_hot(labels, N_OUT).float() * 0.5 * STEPS
        loss = torch.nn.functional.mse_loss(run_snntorch(model, x).sum(0), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main(out: Path) -> None:
    torch.manual_seed(0)
    model = build()
    train(model)
    graph = snnir.trace(model, torch.zeros(1, N_IN))
    snnir.write(graph, out)

    x = synthetic_data(torch.Generator().manual_seed(1))[0].double()
    reference = model.double()
    for module in reference.modules():  # snnTorch emits float32 spikes even in a float64 model
        module.register_forward_pre_hook(lambda _m, a: tuple(t.double() if torch.is_tensor(t) else t for t in a))
    with torch.no_grad():
        expected = run_snntorch(reference, x).double().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = snnir.run(snnir.read(out), x.numpy())["output"]
    differ = int(np.sum(ours != expected))
    print(f"wrote {out}: {len(graph.nodes)} nodes; {int(expected.sum())} snnTorch spikes, {differ} differ")
    if differ or not expected.any():
        raise SystemExit(1)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "snntorch_net.nir")
