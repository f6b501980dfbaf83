"""On a GPU: do snnir's spikes equal snnTorch's when every layer runs one step per call?

A matrix product on CUDA may round differently for another number of rows, so the default plan's
time-batched products can flip a spike that snnTorch's per-step ones do not (RESULTS.md: 129 of
320,000 at T=1000). ``time_chunk=1`` makes every layer's call one step, snnTorch's shapes. This
prints, per case, the spikes that differ from snnTorch's and the synchronised median inference
time of the default and of ``time_chunk=1``: what an exact mode on CUDA would cost. One run; not
yet run on a GPU. ``--device cpu`` runs it here (where both give snnTorch's spikes)."""

from __future__ import annotations

import argparse
import sys

import torch

sys.path.insert(0, "benchmarks")
import bench  # noqa: E402
from gpu_budget_probe import median_ms  # noqa: E402

import snnir  # noqa: E402

NAMES = ("tutorial-step", "conv-step", "long")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="the suite's --quick shapes (a smoke run)")
    args = parser.parse_args()
    device = torch.device(args.device)
    for name in NAMES:
        case = bench.CASES[name]
        steps, batch = bench.shapes(case, args.quick)
        ref = case.build(steps)
        x, _ = case.inputs(steps, batch, case.static, torch.device("cpu"))
        graph = snnir.optimize(snnir.trace(ref, x))
        ref, x = ref.to(device), x.to(device)
        with torch.no_grad():
            want = ref(x)
            row = [f"snntorch {median_ms(lambda: ref(x)):.2f} ms"]
            for chunk in (None, 1):
                module = snnir.compile(graph, target="torch", device=device, time_chunk=chunk, **case.surrogate)
                differ = int((module(x) != want).sum())
                row.append(f"time_chunk={chunk}: {median_ms(lambda: module(x)):.2f} ms, "
                           f"{differ} of {want.numel()} spikes differ")
        print(f"{name} (T={steps}, B={batch}): " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
