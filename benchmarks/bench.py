"""``make bench``: snnir against snnTorch on the networks users train, in one table.

Cases (``--case``; the snnTorch networks are in ``models.py`` and ``bench_recurrent.py``):

- ``tutorial-static`` / ``tutorial-step``: the IPU tutorial MLP 784-1000-10, B=128, T=25, an
  image held over the steps / rate-coded spikes per step;
- ``conv-static`` / ``conv-step``: tutorial 6's conv net with MaxPool, B=128, T=25;
- ``wide``: a 784-2048-2048-10 MLP, per-step input, B=256, T=50;
- ``recurrent``: ``bench_recurrent.py``'s RLeaky network, T=100, B=64;
- ``long``: the tutorial MLP, per-step input, T=1000, B=32.

Contenders, timed interleaved in one process (medians of ``--reps``, minimum in brackets):
``snntorch`` (eager), ``snntorch+compile`` (``torch.compile`` of it; compiling, its first
inference and first train step, is reported apart and given ``--compile-limit`` seconds in a
child process first, after which it is skipped with a note), ``snnir`` (``trace -> optimize -> compile`` with the
defaults; the C++ kernels are built first, as ``make install`` does) and the floor: the faster
of the Linear/Conv2d calls batched over time and made step by step (``floor.py``; the
recurrent case's own ``gemm_floor``). A train step is forward, ``ce_count_loss``, backward and
``Adam(lr=1e-3)``. The targets use these raced figures; a note per case also gives each contender's
median over ``--reps`` steps in a row (a training loop's own pace).

Before timing, snnir's output spikes must equal snnTorch's on the same weights and input, or
the case fails and the run exits 1 (on CUDA, where a matrix product may round differently for
another shape, the differing spikes are counted in the table instead); ``torch.compile``'s are
counted. Inference peak memory: on a CPU the peak RSS growth of one inference, after two warm-up
ones, in a fresh child process (``measure.rss_growth``), on CUDA the allocator's peak above what was allocated before.

Usage: ``python benchmarks/bench.py [--case NAME ...] [--quick] [--reps N] [--device cuda]
[--no-compile] [--compile-limit S] [--no-memory]``. ``--quick``: a few steps and samples per
case and one repetition: a smoke run whose figures mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

import bench_recurrent
import floor as floors
import measure
import models

THREADS = 2


@dataclass(frozen=True)
class Case:
    """A network, its input, shapes (full and ``--quick``) and snnir's matching surrogate."""

    name: str
    title: str
    build: Callable[[int], torch.nn.Module]  # steps -> the snnTorch network, seeded
    inputs: Callable[[int, int, bool, torch.device], tuple]  # steps, batch, static, device -> (x, targets)
    static: bool
    steps: int
    batch: int
    quick: tuple[int, int]  # (steps, batch) with --quick
    surrogate: dict = field(default_factory=lambda: {"surrogate": "arctan"})  # snnTorch's default atan
    floor: Callable | None = None  # device -> (train, infer) closures; None: from the layer calls


def _seeded(make, gain=1.0):
    def build(steps):
        torch.manual_seed(0)
        return models.seeded(make(steps), gain)
    return build


def _images(shape, gain=1.0):
    return lambda steps, batch, static, device: models.make_input(shape, steps, batch, static, 10, device, gain)


_TUTORIAL = _seeded(lambda steps: models.MLP((784, 1000, 10), steps))
_CONV = dict(build=_seeded(models.ConvNet, gain=3.0), inputs=_images((1, 28, 28), gain=2.0),
             surrogate={"surrogate": "fast_sigmoid", "slope": 25.0})
CASES = {c.name: c for c in (
    Case("tutorial-static", "tutorial MLP 784-1000-10, static image", _TUTORIAL, _images((784,)), True, 25, 128,
         (4, 8)),
    Case("tutorial-step", "tutorial MLP 784-1000-10, per-step input", _TUTORIAL, _images((784,)), False, 25, 128,
         (4, 8)),
    Case("conv-static", "tutorial-6 conv net (MaxPool), static image", static=True, steps=25, batch=128,
         quick=(3, 4), **_CONV),
    Case("conv-step", "tutorial-6 conv net (MaxPool), per-step input", static=False, steps=25, batch=128,
         quick=(3, 4), **_CONV),
    Case("wide", "MLP 784-2048-2048-10, per-step input",
         _seeded(lambda steps: models.MLP((784, 2048, 2048, 10), steps), gain=2.0), _images((784,)), False, 50,
         256, (4, 8)),
    Case("recurrent", "Linear(100,256) -> RLeaky -> Linear(256,10) -> Leaky, per-step input",
         lambda steps: bench_recurrent.snntorch_net(), lambda steps, batch, static, device:
         bench_recurrent.make_input(device), False, bench_recurrent.STEPS, bench_recurrent.BATCH,
         (bench_recurrent.STEPS, bench_recurrent.BATCH), floor=bench_recurrent.gemm_floor),
    Case("long", "tutorial MLP 784-1000-10, per-step input, long sequence", _TUTORIAL, _images((784,)), False,
         1000, 32, (40, 4)),
)}


class CaseFailed(Exception):
    """snnir's spikes differ from snnTorch's (or its pipeline failed): the case is not timed."""


def shapes(case: Case, quick: bool) -> tuple[int, int]:
    """``(T, B)`` of this run."""
    return case.quick if quick else (case.steps, case.batch)


def snnir_forward(case: Case, ref, x, steps: int, device):
    """``(module, x -> spikes)``: ``trace -> optimize -> compile`` with the defaults."""
    import snnir

    graph = snnir.trace(copy.deepcopy(ref).cpu(), x.cpu())
    graph = snnir.optimize(graph, static_inputs=list(graph.inputs) if case.static else ())
    module = snnir.compile(graph, target="torch", device=device, **case.surrogate)
    return module, (lambda inp: module(inp, steps=steps)) if case.static else module


def train_step(forward, optimiser, x, targets, loss_fn) -> None:
    optimiser.zero_grad(set_to_none=True)
    loss_fn(forward(x), targets).backward()
    optimiser.step()


def differing(got, want) -> int:
    """How many spikes differ."""
    return int((got != want).sum())


def try_compile(ref, x, targets, loss_fn, limit: float, notes: list[str], label: str, probe: list[str]):
    """``torch.compile`` of snnTorch's network, compiled by its first inference and train step:
    ``(module, optimiser, first inference's spikes)`` (before any training changes the weights),
    or ``None`` with a note saying why. The child process ``probe`` (:func:`compile_child`)
    compiles it first, given ``limit`` seconds: one that runs out is killed there, and only one
    that finished is compiled here (a signal stopping dynamo in this process could abort it)."""
    seconds, why = measure.child_within(probe, limit)
    if seconds is None:
        notes.append(f"{label}: snntorch+compile skipped: {why}")
        return None
    compiled = torch.compile(copy.deepcopy(ref))
    optimiser = torch.optim.Adam(compiled.parameters(), lr=1e-3)
    with measure.stderr_to_notes(notes, f"{label}: snntorch+compile"):  # a peer's warnings
        try:
            with torch.no_grad():
                spikes = compiled(x)
            train_step(compiled, optimiser, x, targets, loss_fn)
        except Exception as e:  # noqa: BLE001 - a peer's compiler: skip it, say why
            torch._dynamo.reset()
            notes.append(f"{label}: snntorch+compile skipped: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            return None
    infer_s, train_s = json.loads(seconds)
    notes.append(f"{label}: snntorch+compile compiled in {infer_s:.1f} s (inference) + {train_s:.1f} s (training), "
                 "in a fresh process")
    return compiled, optimiser, spikes


def compile_child(case: Case, quick: bool, device: torch.device) -> None:
    """Compile snnTorch's network as :func:`try_compile` does and print ``[inference s, train s]``."""
    from snntorch import functional as SF

    torch.set_num_threads(THREADS)
    steps, batch = shapes(case, quick)
    x, targets = case.inputs(steps, batch, case.static, device)
    compiled = torch.compile(case.build(steps).to(device))
    optimiser = torch.optim.Adam(compiled.parameters(), lr=1e-3)
    start = time.perf_counter()
    with torch.no_grad():
        compiled(x)
    infer_s = time.perf_counter() - start
    start = time.perf_counter()
    train_step(compiled, optimiser, x, targets, SF.ce_count_loss())
    print(json.dumps([infer_s, time.perf_counter() - start]))


def inference_peak_cuda(forward, x) -> float:
    """MB the CUDA allocator's peak rose above what was allocated before one inference."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    with torch.no_grad():
        forward(x)
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def run_case(case: Case, args, device, notes: list[str]) -> dict:
    """Spikes checked, then every contender timed: ``measure.race``'s result plus ``"spikes"``
    (differing counts) and ``"memory"`` (MB) per contender."""
    from snntorch import functional as SF

    steps, batch = shapes(case, args.quick)
    x, targets = case.inputs(steps, batch, case.static, device)
    ref = case.build(steps).to(device)
    loss_fn = SF.ce_count_loss()
    start = time.perf_counter()
    try:
        module, forward = snnir_forward(case, ref, x, steps, device)
        with torch.no_grad():
            want, got = ref(x), forward(x)
    except Exception as e:
        raise CaseFailed(f"snnir could not run it: {type(e).__name__}: {e}") from e
    notes.append(f"{case.name}: snnir trace+optimize+compile+first call {time.perf_counter() - start:.1f} s")
    spikes = {"snntorch": 0, "snnir": differing(got, want)}
    if spikes["snnir"] and device.type == "cpu":
        raise CaseFailed(f"snnir's spikes differ from snnTorch's in {spikes['snnir']} of {want.numel()} places")
    found = {"snntorch": (ref, torch.optim.Adam(ref.parameters(), lr=1e-3)),
             "snnir": (forward, torch.optim.Adam(module.parameters(), lr=1e-3))}
    if not args.no_compile:
        probe = [sys.executable, __file__, "--compile-child", case.name, "--device", args.device,
                 *(["--quick"] * args.quick)]
        compiled = try_compile(ref, x, targets, loss_fn, args.compile_limit, notes, case.name, probe)
        if compiled:
            found["snntorch+compile"] = compiled[:2]
            spikes["snntorch+compile"] = differing(compiled[2], want)
    steps_of = {name: (lambda f=f, o=o: train_step(f, o, x, targets, loss_fn), lambda f=f: f(x))
                for name, (f, o) in found.items()}
    floor_train, floor_infer = case.floor(device) if case.floor else floors.floor(ref, x, device)
    result = measure.race(steps_of, floor_train, floor_infer, args.reps)
    notes.append(back_to_back_note(case.name, args.reps, result["back_to_back"]))
    for (grad, *_), plan in module.plans.items():
        notes.append(f"{case.name}: snnir's plan for {'training' if grad else 'inference'}: "
                     + "; ".join(str(plan).splitlines()))
    result["spikes"], result["numel"] = spikes, want.numel()
    result["memory"] = {}
    if not args.no_memory:
        for name, (f, _) in found.items():
            if device.type == "cuda":
                result["memory"][name] = inference_peak_cuda(f, x)
            elif name != "snntorch+compile":  # compiling again in a child takes minutes
                result["memory"][name] = measure.child_mb(
                    [sys.executable, __file__, "--memory-child", case.name, name, *(["--quick"] * args.quick)])
    return result


def back_to_back_note(name: str, reps: int, back: dict) -> str:
    """The note of ``measure.race``'s back-to-back figures: ms, the ratio to snnTorch's, and
    snnir's to the floor's, all from steps in a row."""
    parts = []
    for kind, by in back.items():
        cells = [f"{n} {ms:.1f}" + ("" if n == "floor" else f" ({by['snntorch'] / ms:.2f}x)") for n, ms in by.items()]
        parts.append(f"{kind} " + ", ".join(cells) + f", snnir / floor {by['snnir'] / by['floor']:.2f}")
    return (f"{name}: back to back ({reps} {'step' if reps == 1 else 'steps'} of each in a row after the race; ms, "
            "x snnTorch's): " + "; ".join(parts))


def memory_child(case: Case, name: str, quick: bool) -> None:
    """Print the peak RSS growth (bytes) of one inference of contender ``name`` after two warm-up
    calls: a layer fed spikes makes the padded ``W^T`` its sum reads, and probes that shape's order of
    summation, at its second call with a weight (``modules.AffineModule._spike_product``), once."""
    torch.set_num_threads(THREADS)
    steps, batch = shapes(case, quick)
    device = torch.device("cpu")
    x, _ = case.inputs(steps, batch, case.static, device)
    ref = case.build(steps)
    forward = ref if name == "snntorch" else snnir_forward(case, ref, x, steps, device)[1]
    with torch.no_grad():
        forward(x)
        forward(x)
        print(json.dumps(measure.rss_growth(lambda: forward(x))))


# --- the report -------------------------------------------------------------------------
COLUMNS = ("case", "T, B", "contender", "train ms", "infer ms", "train vs snnTorch", "infer vs snnTorch",
           "train / floor", "infer / floor", "infer peak MB", "spikes vs snnTorch")


def print_rows(case: Case, quick: bool, r: dict) -> None:
    """One case's rows of the run's table: each contender, then the floor."""
    shape = "{}, {}".format(*shapes(case, quick))
    floor_t, floor_i = r["floor"]["train"], r["floor"]["infer"]
    base_t, base_i = r["train"]["snntorch"], r["infer"]["snntorch"]
    for name in r["train"]:
        tr, inf = r["train"][name], r["infer"][name]
        mem = r["memory"].get(name)
        diff = r["spikes"].get(name, 0)
        cells = (case.name, shape, name, f"{tr:.1f} ({r['train_min'][name]:.1f})",
                 f"{inf:.1f} ({r['infer_min'][name]:.1f})", f"{base_t / tr:.2f}x", f"{base_i / inf:.2f}x",
                 f"{tr / floor_t:.2f}", f"{inf / floor_i:.2f}", "" if mem is None else f"{mem:.1f}",
                 "identical" if not diff else f"**{diff} of {r['numel']} differ**")
        print("| " + " | ".join(cells) + " |")
    best = {kind: min(by, key=by.get) for kind, by in r["floor_by"].items()}
    label = "floor" if len(r["floor_by"]["train"]) == 1 else f"floor (train {best['train']}, infer {best['infer']})"
    print(f"| {case.name} | {shape} | {label} | {floor_t:.1f} | "
          f"{floor_i:.1f} | | | 1.00 | 1.00 | | |", flush=True)


def targets(results: dict, device: torch.device) -> list[tuple[str, str, float, bool]]:
    """The issues' targets (18: CPU; 16: recurrent, GPU) against this run: (case, target, value, met)."""
    cuda = device.type == "cuda"
    speedup = {"tutorial-static": (10.0, 10.0) if cuda else (8.0, 10.0), "conv-static": (1.6, 1.6),
               "conv-step": (1.2, 1.2)}
    out = []
    for name, r in results.items():
        t, i, fl = r["train"], r["infer"], r["floor"]
        want_t, want_i = speedup.get(name, (1.0, 1.0))
        out.append((name, f"snnir train >= {want_t:g}x snnTorch", t["snntorch"] / t["snnir"],
                    t["snntorch"] / t["snnir"] >= want_t))
        if not (cuda and name == "tutorial-static"):
            out.append((name, f"snnir inference >= {want_i:g}x snnTorch", i["snntorch"] / i["snnir"],
                         i["snntorch"] / i["snnir"] >= want_i))
        if "snntorch+compile" in t:
            for kind, d in (("train", t), ("inference", i)):
                ratio = d["snntorch+compile"] / d["snnir"]
                out.append((name, f"snnir {kind} faster than snnTorch+compile", ratio, ratio > 1.0))
        bound = 1.5 if cuda and name != "tutorial-static" else 1.3 if name == "recurrent" else None
        if bound:
            for kind, d in (("train", t), ("inference", i)):
                ratio = d["snnir"] / fl["train" if kind == "train" else "infer"]
                out.append((name, f"snnir {kind} <= {bound}x floor", ratio, ratio <= bound))
        mem = r["memory"]
        if mem.get("snnir") is not None and (mem.get("snntorch") or 0) >= 1.0:  # a ratio to ~0 MB says nothing
            ratio = mem["snnir"] / mem["snntorch"]
            out.append((name, "snnir inference peak <= 2x snnTorch's", ratio, ratio <= 2.0))
    return out


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {THREADS} threads"


def commit() -> str:
    import subprocess

    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.abspath(__file__)))
    return done.stdout.strip() or "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", choices=list(CASES), default=list(CASES), help="cases (default all)")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one repetition: a smoke run")
    parser.add_argument("--reps", type=int, help="timed repetitions (default 7, quick 1)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--no-compile", action="store_true", help="leave out snnTorch + torch.compile")
    parser.add_argument("--compile-limit", type=float, default=300.0,
                        help="seconds torch.compile may take per case before it is skipped (default 300)")
    parser.add_argument("--no-memory", action="store_true", help="skip the inference memory figures")
    parser.add_argument("--memory-child", nargs=2, metavar=("CASE", "CONTENDER"), help=argparse.SUPPRESS)
    parser.add_argument("--compile-child", metavar="CASE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"bench.py: --device {args.device}: no CUDA device here (torch {torch.__version__}, "
              f"CUDA build: {torch.version.cuda or 'none'}); run it on a GPU machine (benchmarks/gpu_run.sh)",
              file=sys.stderr)
        return 2
    if args.memory_child:
        memory_child(CASES[args.memory_child[0]], args.memory_child[1], args.quick)
        return 0
    if args.compile_child:
        compile_child(CASES[args.compile_child], args.quick, device)
        return 0
    torch.set_num_threads(THREADS)
    args.reps = args.reps or (1 if args.quick else 7)
    notes: list[str] = []
    print(f"# snnir benchmark suite on {device} ({describe(device)}), torch {torch.__version__}, commit {commit()}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"\nms: medians of {args.reps} interleaved repetitions (minimum in brackets)"
          + ("; --quick: tiny shapes, the figures mean nothing" if args.quick else "") + ".\n")
    if device.type == "cpu":
        measure.build_native(notes)
    measure.note_gpu_kernels(notes, device)
    for name in args.case:
        print("- `{}`: {}, T={}, B={}".format(name, CASES[name].title, *shapes(CASES[name], args.quick)))
    print("\n| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS), flush=True)
    results, failed = {}, []
    for name in args.case:
        case = CASES[name]
        try:
            results[name] = run_case(case, args, device, notes)
        except Exception as e:  # noqa: BLE001 - one case's failure is reported; the others still run
            failed.append(name)
            print(f"| {name} | {'{}, {}'.format(*shapes(case, args.quick))} | **FAILED: {e}** |", flush=True)
            continue
        print_rows(case, args.quick, results[name])
    if device.type == "cpu" and not args.no_memory:
        notes.append("infer peak MB: peak RSS growth of one inference in a fresh process; not measured for "
                     "snntorch+compile (each child would compile again)")
    if results:
        print("\n| case | target | value | met |\n|---|---|---|---|")
        for case_name, label, value, met in targets(results, device):
            print(f"| {case_name} | {label} | {value:.2f} | {'yes' if met else '**no**'} |")
    print("\nNotes:")
    for note in notes:
        print(f"- {note}")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
