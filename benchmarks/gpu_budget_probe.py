"""On a GPU: inference with the default memory budget against ``memory_budget=None`` (one run,
synchronised medians; spikes against snnTorch). A diagnostic for RESULTS.md's GPU section."""

from __future__ import annotations

import copy
import statistics
import sys
import time

import torch

sys.path.insert(0, "benchmarks")
import models  # noqa: E402

import snnir  # noqa: E402

CASES = {  # name: (build, input shape, static, T, B, gain, input gain)
    "tutorial-static": (lambda t: models.MLP((784, 1000, 10), t), (784,), True, 25, 128, 1.0, 1.0),
    "tutorial-step": (lambda t: models.MLP((784, 1000, 10), t), (784,), False, 25, 128, 1.0, 1.0),
    "conv-static": (lambda t: models.ConvNet(t), (1, 28, 28), True, 25, 128, 3.0, 1.0),
    "wide": (lambda t: models.MLP((784, 2048, 2048, 10), t), (784,), False, 50, 256, 2.0, 1.0),
}


def timed(fn, reps: int = 9) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    device = torch.device("cuda")
    for name, (build, shape, static, steps, batch, gain, x_gain) in CASES.items():
        torch.manual_seed(0)
        ref = models.seeded(build(steps), gain)
        x, _ = models.make_input(shape, steps, batch, static, 10, "cpu", x_gain)
        graph = snnir.trace(copy.deepcopy(ref), x)
        graph = snnir.optimize(graph, static_inputs=list(graph.inputs) if static else ())
        ref, x = ref.to(device), x.to(device)
        with torch.no_grad():
            want = ref(x)
            row = [f"snntorch {timed(lambda: ref(x)):.2f} ms"]
            for budget in ("auto", None):
                module = snnir.compile(graph, target="torch", device=device, memory_budget=budget)
                run = (lambda: module(x, steps=steps)) if static else (lambda: module(x))
                got = run()
                plan = str(module._planner.last).replace("\n", " /")
                row.append(f"budget={budget}: {timed(run):.2f} ms, {int((got != want).sum())} spikes differ, plan {plan}")
        print(f"{name}: " + " | ".join(row), flush=True)


if __name__ == "__main__":
    main()
