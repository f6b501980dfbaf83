"""snnir's main job end to end, on data it makes itself (``make demo``; under two minutes on two cores).

1. build snnTorch's IPU-tutorial network (784-1000-10, ``snn.Leaky(beta=0.9)``, 25 steps),
   written as the tutorial writes it;
2. train it briefly in snnTorch on a synthetic task: ten classes of 28x28 "digits" (a bright
   stroke whose position and angle give the class, plus noise), rate-coded into spikes;
3. trace it, write ``model.nir`` and read it back;
4. optimise it, compile it to torch and check its spikes are identical to snnTorch's;
5. compile it for the IPU (PopART ops, codelets, ONNX, manifest) and to ONNX, and step the ONNX
   model in onnxruntime, checking it agrees;
6. time inference and a training step against snnTorch;
7. draw a spike raster, membrane traces and the graph before and after optimisation.

    python examples/demo.py [--out build/demo] [--quick]

``--quick`` trains and times less (the test suite runs it so). Prints where everything went.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from snntorch import functional as SF

import snnir
from snnir.plotting import graph_diagram, membrane_traces, spike_raster
from snnir.progress import progress
from snnir.targets.ipu.onnx_export import simulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compile_for_ipu import N_IN, N_OUT, STEPS, Net  # noqa: E402 - the tutorial network, as the tutorial writes it

BATCH = 128
TRAIN_BATCH = 64  # small batches: the demo's training is brief


def synthetic_digits(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes ``[T, B, 784]`` and labels ``[B]``: class c is a stroke through a class-given
    point at a class-given angle on a 28x28 canvas, jittered, with noise; each pixel spikes at
    each step with probability equal to its brightness."""
    labels = torch.randint(0, N_OUT, (batch,), generator=generator)
    angle = labels * (torch.pi / N_OUT) + 0.08 * torch.randn(batch, generator=generator)
    centre = 8 + 12 * torch.stack([(labels % 5) / 4, (labels // 5).float()], 1) + torch.randn(batch, 2, generator=generator)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    dy, dx = yy[None] - centre[:, 0, None, None], xx[None] - centre[:, 1, None, None]
    across = dx * torch.sin(angle)[:, None, None] - dy * torch.cos(angle)[:, None, None]
    along = dx * torch.cos(angle)[:, None, None] + dy * torch.sin(angle)[:, None, None]
    image = torch.exp(-across**2 / 2) * (along.abs() < 7) + 0.05 * torch.rand(batch, 28, 28, generator=generator)
    rates = image.clamp(0, 1).reshape(batch, N_IN)
    return (torch.rand(STEPS, batch, N_IN, generator=generator) < rates).float(), labels


def train(net: Net, iterations: int, generator: torch.Generator) -> list[float]:
    """Adam steps with snnTorch's spike-count cross-entropy; the losses."""
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = SF.ce_count_loss()
    losses = []
    with progress(range(iterations), desc="training in snnTorch", unit="batch", delay=0) as bar:
        for _ in bar:
            x, labels = synthetic_digits(TRAIN_BATCH, generator)
            loss = loss_fn(net(x), labels)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            bar.set_postfix_str(f"loss {loss.item():.3f}")
    return losses


def accuracy(spikes: torch.Tensor, labels: torch.Tensor) -> float:
    return (spikes.sum(0).argmax(1) == labels).float().mean().item()


def median_ms(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def train_step_fn(module: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor):
    optimiser, loss_fn = torch.optim.Adam(module.parameters(), lr=1e-4), SF.ce_count_loss()

    def step() -> None:
        optimiser.zero_grad()
        loss_fn(module(x), labels).backward()
        optimiser.step()

    return step


class Demo:
    """The steps, each printing what it did and where its files went."""

    def __init__(self, out: Path, quick: bool) -> None:
        self.out, self.quick, self.ok = out, quick, True
        self.generator = torch.Generator().manual_seed(0)

    def say(self, step: str, text: str) -> None:
        print(f"[{step}] {text}", flush=True)

    def check(self, step: str, passed: bool, text: str) -> None:
        self.ok &= passed
        self.say(step, f"{'ok' if passed else 'FAILED'}: {text}")

    def run(self) -> int:
        torch.manual_seed(0)
        net = Net()
        self.say("1 build", "snnTorch's IPU-tutorial network: 784-1000-10, Leaky(beta=0.9), 25 steps")
        x_test, y_test = synthetic_digits(BATCH, torch.Generator().manual_seed(1))
        with torch.no_grad():
            before = accuracy(net(x_test), y_test)
        losses = train(net, 4 if self.quick else 20, self.generator)
        with torch.no_grad():
            reference = net(x_test)
        self.say("2 train", f"{len(losses)} Adam steps on synthetic digits: loss {losses[0]:.3f} -> {losses[-1]:.3f}, "
                            f"test accuracy {before:.0%} -> {accuracy(reference, y_test):.0%}")

        graph = snnir.trace(net, x_test[:, :1])
        path = self.out / "model.nir"
        snnir.write(graph, path)
        again = snnir.read(path)
        self.check("3 trace", again == graph, f"traced {len(graph.nodes)} nodes; wrote {path}; read back equal")

        optimised = snnir.optimize(again)
        module = snnir.compile(optimised, target="torch", surrogate="arctan")
        with torch.no_grad():
            ours = module(x_test)
        self.check("4 compile", torch.equal(ours, reference),
                   f"-O2 graph has {len(optimised.nodes)} nodes; compiled to torch: "
                   f"{int(ours.sum())} output spikes, identical to snnTorch's: {torch.equal(ours, reference)}")

        self.ipu_and_onnx(optimised, x_test, reference)
        self.speed(net, module, x_test, y_test)
        self.pictures(graph, optimised, module, x_test)
        print(f"\nall outputs in {self.out}/" + ("" if self.ok else " -- some checks FAILED"))
        return 0 if self.ok else 1

    def ipu_and_onnx(self, graph: snnir.Graph, x: torch.Tensor, reference: torch.Tensor) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no poptorch here": the artifacts are written all the same
            artifacts = snnir.compile(graph, target="ipu", out_dir=self.out / "ipu")
        self.say("5 ipu", f"wrote {len(artifacts.files)} files to {self.out / 'ipu'} "
                          f"(custom ops {', '.join(artifacts.custom_ops)}; build with the Poplar SDK: "
                          f"make -C {self.out / 'ipu'})")
        onnx_dir = self.out / "onnx"
        snnir.compile(graph, target="onnx", out_dir=onnx_dir)
        stepped = torch.from_numpy(simulate(onnx_dir, x.numpy())[graph.outputs[0]]).float()
        same = torch.equal(stepped, reference)
        self.check("5 onnx", same, f"wrote {onnx_dir / 'model.onnx'}; stepped {STEPS} times by onnxruntime: "
                                   f"{(stepped == reference).float().mean().item():.2%} of output spikes agree "
                                   f"with snnTorch's (identical: {same})")

    def speed(self, net: Net, module: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor) -> None:
        reps = 1 if self.quick else 3
        rows = {}
        for name, model in (("snnTorch", net), ("snnir", module)):
            with torch.no_grad():
                infer = median_ms(lambda: model(x), reps)  # noqa: B023 - called at once
            rows[name] = (infer, median_ms(train_step_fn(model, x, labels), reps))
        (ti, tt), (si, st) = rows["snnTorch"], rows["snnir"]
        self.say("6 speed", f"batch {BATCH}, T={STEPS}, {torch.get_num_threads()} threads, medians of {reps}: "
                            f"inference {ti:.0f} ms (snnTorch) vs {si:.0f} ms (snnir), {ti / si:.1f}x; "
                            f"train step {tt:.0f} ms vs {st:.0f} ms, {tt / st:.1f}x (rate-coded input, new at "
                            f"every step: bounded by the matrix multiplies; the README's larger figures "
                            f"are for a static input)")

    def pictures(self, graph: snnir.Graph, optimised: snnir.Graph, module: torch.nn.Module, x: torch.Tensor) -> None:
        with torch.no_grad():
            _, record = module(x[:, :1], record=True)  # states by "<node>.<state>" ("<node>.neuron.<state>" once fused)

        def trace(node: str, state: str) -> np.ndarray:
            key = next(k for k in record if k.startswith(f"{node}.") and k.endswith(f".{state}"))
            return record[key][:, 0].numpy()

        hidden, output = (name for name, op in graph.nodes.items() if op.op_type == "LIF")
        files = {"raster": self.out / "spike_raster.png", "membranes": self.out / "membrane_traces.png",
                 "before": self.out / "graph_before.png", "after": self.out / "graph_after.png"}
        spike_raster({f"{hidden}: hidden layer": trace(hidden, "z"), f"{output}: output layer": trace(output, "z")},
                     files["raster"], "spikes of test sample 0")
        membrane_traces({f"{output}: the 10 output membranes": trace(output, "v"),
                         f"{hidden}: 8 hidden membranes": trace(hidden, "v")[:, :8]}, files["membranes"], threshold=1.0)
        graph_diagram(graph, files["before"], "traced")
        graph_diagram(optimised, files["after"], "after -O2")
        self.say("7 pictures", "; ".join(f"{k}: {v}" for k, v in files.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("build/demo"), help="where everything goes")
    parser.add_argument("--quick", action="store_true", help="train and time less (for tests)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    status = Demo(args.out, args.quick).run()
    print(f"demo took {time.perf_counter() - start:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
