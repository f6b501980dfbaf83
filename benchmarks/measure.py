"""Timing and memory measurement shared by the benchmarks.

- :func:`race`: contenders timed interleaved, round after round, so that a machine that slows
  down mid-run slows every contender alike; medians and minima in ms.
- :func:`rss_growth`: the peak RSS growth of one call (Linux), for a fresh child process:
  torch has no CPU allocator statistics. :func:`child_mb` runs such a child.
- :func:`child_within`: run a child process for at most some seconds (``torch.compile`` of a long
  unrolled loop is tried there first: stopping it in this process could abort it);
  :func:`stderr_to_notes`: what a call writes to stderr becomes a note, not lines in the report.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time

import torch

#: glibc settings for a memory child: freed tensors leave the RSS at once
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def timed(fn) -> float:
    """Milliseconds one ``fn()`` takes; synchronised where this process uses CUDA."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def race(steps_of: dict, floor_train, floor_infer, reps: int) -> dict:
    """Interleaved timing of ``{name: (train step, inference)}`` closures (inference under
    ``no_grad``) and of the floor, after one warm-up round. The floor is a closure or a
    ``{variant: closure}`` dict for each of train and inference; its figure is the fastest
    variant's median (``"floor_by"`` holds every variant's).

    Then each contender alone, ``reps`` steps in a row after one more (a training loop's own
    pace: on a small VM a step started right after another contender's can run slower, see
    docs/performance.md, Benchmarks), and the floor likewise (its fastest variant):
    ``"back_to_back"``.

    Returns ``{"train", "infer", "train_min", "infer_min": {name: ms}, "floor": {"train",
    "infer": ms}, "floor_by": {"train", "infer": {variant: ms}}, "back_to_back": {"train",
    "infer": {name: ms}}}``."""
    floors = {kind: f if isinstance(f, dict) else {"floor": f}
              for kind, f in (("train", floor_train), ("infer", floor_infer))}
    train = {n: [] for n in steps_of}
    infer = {n: [] for n in steps_of}
    floor_times = {kind: {v: [] for v in fs} for kind, fs in floors.items()}
    for rep in range(reps + 1):  # the first round warms up
        for name, (train_fn, infer_fn) in steps_of.items():
            t_train = timed(train_fn)
            with torch.no_grad():
                t_infer = timed(infer_fn)
            if rep:
                train[name].append(t_train)
                infer[name].append(t_infer)
        for kind, fs in floors.items():
            for variant, fn in fs.items():
                t = timed(fn)
                if rep:
                    floor_times[kind][variant].append(t)
    floor_by = {kind: {v: statistics.median(ts) for v, ts in vs.items()} for kind, vs in floor_times.items()}

    def in_a_row(fn) -> float:
        return statistics.median([timed(fn) for _ in range(reps + 1)][1:])

    back_to_back = {"train": {}, "infer": {}}
    for name, (train_fn, infer_fn) in steps_of.items():
        back_to_back["train"][name] = in_a_row(train_fn)
        with torch.no_grad():
            back_to_back["infer"][name] = in_a_row(infer_fn)
    for kind, fs in floors.items():
        back_to_back[kind]["floor"] = min(in_a_row(fn) for fn in fs.values())
    return {
        "back_to_back": back_to_back,
        "train": {n: statistics.median(v) for n, v in train.items()},
        "infer": {n: statistics.median(v) for n, v in infer.items()},
        "train_min": {n: min(v) for n, v in train.items()},
        "infer_min": {n: min(v) for n, v in infer.items()},
        "floor": {kind: min(vs.values()) for kind, vs in floor_by.items()},
        "floor_by": floor_by,
    }


def status_bytes(field: str) -> int:
    """``VmRSS`` / ``VmHWM`` (peak RSS) of this process from ``/proc/self/status``."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def rss_growth(fn) -> int:
    """Bytes the peak RSS rose above the RSS before ``fn()`` (Linux: writing "5" to
    ``/proc/self/clear_refs`` resets the peak; the RSS is read after that). The kernel updates
    the two counters lazily, so they can disagree by a few pages: a figure below zero is 0.
    Run under :data:`CHILD_ENV`."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = status_bytes("VmRSS")
    fn()
    return max(0, status_bytes("VmHWM") - before)


def child_mb(cmd: list[str], tuned: bool = True, timeout: float = 600) -> float | None:
    """Run a memory child ``cmd`` that prints a byte count as its last line; MB, or ``None``
    where it failed (its error is not this run's subject)."""
    env = dict(os.environ, **(CHILD_ENV if tuned else {}))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1]) / 2**20


def child_within(cmd: list[str], seconds: float) -> tuple[str | None, str]:
    """Run ``cmd`` for at most ``seconds``: ``(its last stdout line, "")``, or ``(None, why)``
    where it ran out of time (then killed) or failed (the last line it wrote to stderr)."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds)
    except subprocess.TimeoutExpired:
        return None, f"did not finish within {seconds:g} s"
    if done.returncode:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        return None, (lines[-1] if lines else f"exit status {done.returncode}")[:200]
    lines = done.stdout.strip().splitlines()
    return (lines[-1] if lines else ""), ""


@contextlib.contextmanager
def stderr_to_notes(notes: list[str], label: str):
    """Keep what the block writes to ``sys.stderr`` out of the report: one note saying how many
    lines and the first."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        lines = [line for line in captured.getvalue().splitlines() if line.strip()]
        if lines:
            notes.append(f"{label} wrote {len(lines)} lines to stderr, the first: {lines[0].strip()[:200]}")


def build_native(notes: list[str]) -> None:
    """Build the C++ kernels as ``make install`` does (or find them built): the default
    ``snnir`` contender then runs on them; note how long it took."""
    from snnir.targets.torch import native

    start = time.perf_counter()
    ok = all(t is not None for t in native.build().values())
    notes.append(f"native kernels: {'ready' if ok else 'could not be built: snnir runs the Python loop'} in "
                 f"{time.perf_counter() - start:.1f} s (a first build compiles C++; later processes import it)")


def note_gpu_kernels(notes: list[str], device: torch.device) -> None:
    """On CUDA, say which neuron scans the ``snnir`` contenders run: the Triton kernels (the
    default where Triton is installed) or the plain-torch loop."""
    if device.type != "cuda":
        return
    from snnir.targets.torch import gpu

    if gpu.enabled(None, torch.empty(0, device=device)):
        import triton

        notes.append(f"neuron scans on CUDA: the Triton kernels by default (triton {triton.__version__})")
    else:
        notes.append("neuron scans on CUDA: the plain-torch loop (Triton not installed, or SNNIR_TRITON=0)")
