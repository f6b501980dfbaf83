"""Import a published NIR graph, fine-tune it in PyTorch, and export it again.

The braille classifier of the NIR paper (snnTorch, reset by subtraction; the
file does not record the reset mode, so we state it) becomes a trainable torch
module whose weights and biases train (the file states no trainable flags, so
torch.nn's apply); a few Adam steps on synthetic spike data change them, and
``module.to_graph()`` carries the trained values back into a NIR file.

    python examples/import_and_finetune.py [--nir FILE] [--steps 5] [--out braille_finetuned.nir]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

import snnir

FIXTURES = Path(os.environ.get("SNNIR_FIXTURES", Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "nir-paper"))
DEFAULT_NIR = FIXTURES / "braille_noDelay_noBias_subtract.nir"


def synthetic_batch(n_inputs: int, n_classes: int, steps: int = 50, batch: int = 16, seed: int = 0):
    """Spike trains whose per-channel rates depend on the class label."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, n_classes, (batch,), generator=gen)
    rates = torch.rand(n_classes, n_inputs, generator=gen) * 0.5
    x = (torch.rand(steps, batch, n_inputs, generator=gen) < rates[labels]).float()
    return x, labels


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nir", type=Path, default=DEFAULT_NIR, help="the NIR file to fine-tune")
    parser.add_argument("--steps", type=int, default=5, help="optimiser steps")
    parser.add_argument("--out", type=Path, default=Path("braille_finetuned.nir"), help="where to export")
    args = parser.parse_args(argv)

    graph = snnir.read(args.nir, reset="subtract")
    module = snnir.compile(graph, target="torch", surrogate="fast_sigmoid")  # weights and biases train, as in torch.nn
    (n_inputs,) = graph.nodes[graph.inputs[0]].shape
    n_classes = snnir.verify(graph).shapes.inputs[graph.outputs[0]][0]
    x, labels = synthetic_batch(n_inputs, n_classes)

    optimiser = torch.optim.Adam(module.parameters(), lr=1e-3)
    for step in range(args.steps):
        optimiser.zero_grad()
        rates = module(x).mean(0)
        loss = torch.nn.functional.cross_entropy(10 * rates, labels)
        loss.backward()
        optimiser.step()
        print(f"step {step}: loss {loss.item():.4f}")

    tuned = module.to_graph()
    snnir.write(tuned, args.out)
    again = snnir.read(args.out)
    with torch.no_grad():
        ours = module(x).numpy()
    reference = snnir.run(again, x.double().numpy())[again.outputs[0]]
    print(f"exported {args.out}; reference interpreter agrees on {np.mean(ours == reference):.1%} of output spikes")
    return loss.item()


if __name__ == "__main__":
    main()
