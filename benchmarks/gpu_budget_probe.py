"""On a GPU: inference with the default memory budget against ``memory_budget=None``, on four of
the suite's cases (``bench.CASES``): synchronised medians and spikes against snnTorch, one run.
The diagnostic behind RESULTS.md's GPU section. ``--device cpu`` runs it here."""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

sys.path.insert(0, "benchmarks")
import bench  # noqa: E402
import measure  # noqa: E402

import snnir  # noqa: E402

NAMES = ("tutorial-static", "tutorial-step", "conv-static", "wide")
REPS = 9


def median_ms(fn) -> float:
    fn()  # warm-up
    return statistics.median(measure.timed(fn) for _ in range(REPS))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    device = torch.device(parser.parse_args().device)
    for name in NAMES:
        case = bench.CASES[name]
        ref = case.build(case.steps)
        x, _ = case.inputs(case.steps, case.batch, case.static, torch.device("cpu"))
        graph = snnir.trace(ref, x)
        graph = snnir.optimize(graph, static_inputs=list(graph.inputs) if case.static else ())
        ref, x = ref.to(device), x.to(device)
        with torch.no_grad():
            want = ref(x)
            row = [f"snntorch {median_ms(lambda: ref(x)):.2f} ms"]
            for budget in ("auto", None):
                module = snnir.compile(graph, target="torch", device=device, memory_budget=budget, **case.surrogate)
                run = (lambda: module(x, steps=case.steps)) if case.static else (lambda: module(x))
                differ = int((run() != want).sum())
                plan = str(module._planner.last).replace("\n", " /")
                row.append(f"budget={budget}: {median_ms(run):.2f} ms, {differ} spikes differ, plan {plan}")
        print(f"{name}: " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
