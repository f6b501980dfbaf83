"""Race snnTorch's IPU tutorial network against the same network through snnir.

Network (written as in the snnTorch tutorial): 784-1000-10, ``snn.Leaky(beta=0.9)``
after each Linear, batch 128, ``ce_count_loss``, ``Adam(lr=1e-3)``. Inputs:

- static: one ``[128, 784]`` image at every step (snnir hoists the first Linear);
- dynamic: ``[T, 128, 784]`` rate-coded spikes.

Contenders: ``snntorch`` (eager), ``snnir`` (``snnir.trace`` -> ``snnir.optimize`` ->
``snnir.compile(target="torch")`` with its defaults, the C++ kernels built first as
``make install`` does; a static image is passed once as ``module(x, steps=T)``, so the
compiled module runs the first Linear on B rows; on CUDA the Triton kernels), ``snnir-python``
(``native=False, triton=False``: the Python loop), ``snnir-recompute`` (``recompute=True``) and ``kernel`` (the same network
built by hand from ``snnir.targets.torch.scan`` and ``torch.nn.Linear``). Spikes of every contender are asserted identical
to snnTorch's on the same weights and input before anything is timed.

Reported per case: median train step (forward, loss, backward, Adam) and
inference (no_grad forward) in ms, samples/s, ratios to snnTorch and to the GEMM
floor (the Linears' forward GEMMs, plus dW1, dW2 and dX2 for training, at T*B
rows, or B rows for the first layer with static input), and peak memory growth of
one train step. Memory: torch has no CPU allocator statistics, so each memory
figure comes from a fresh subprocess: after a warm-up train step, the peak RSS
(``VmHWM``, reset through ``/proc/self/clear_refs``) of one more train step minus
the RSS just before it, with glibc's mmap threshold fixed at 64 KiB so freed
tensors really leave the RSS (Linux only). A second table reads the process's peak RSS
after three train steps with glibc's defaults, input and model included: that is how the
issue's "about 270 MB" for snnTorch reads (175-326 MB here, from run to run).

Usage: ``python benchmarks/bench_tutorial.py [--quick] [--steps 25 100 400] [--device cuda]
[--case tutorial recurrent] [--no-compile]`` (``--case``: the networks to race, by default
both; the recurrent one is ``bench_recurrent.py``)
(on a GPU, spikes that differ from snnTorch's are counted in the notes instead of stopping
the run: cuBLAS may round a product differently for another matrix shape).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time

import torch
from torch import nn

from measure import build_native, child_mb, note_gpu_kernels, race, rss_growth, status_bytes
from snnir.progress import echo, progress

BATCH, N_IN, N_HID, N_OUT, BETA = 128, 784, 1000, 10, 0.9
THREADS = 2
#: the networks ``--case`` chooses from (``bench_recurrent.py`` holds the recurrent one)
CASES = ("tutorial", "recurrent")
#: where every contender runs (``--device``); CUDA timings synchronise, CUDA memory is the
#: allocator's peak instead of the RSS
DEVICE = torch.device("cpu")


# --- the tutorial network, as snnTorch users write it --------------------------------
def snntorch_net(steps: int) -> nn.Module:
    import snntorch as snn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(N_IN, N_HID)
            self.lif1 = snn.Leaky(beta=BETA)
            self.fc2 = nn.Linear(N_HID, N_OUT)
            self.lif2 = snn.Leaky(beta=BETA)

        def forward(self, x):
            mem1 = self.lif1.init_leaky()
            mem2 = self.lif2.init_leaky()
            spk2_rec = []
            for step in range(steps):
                cur1 = self.fc1(x[step] if x.dim() == 3 else x)
                spk1, mem1 = self.lif1(cur1, mem1)
                cur2 = self.fc2(spk1)
                spk2, mem2 = self.lif2(cur2, mem2)
                spk2_rec.append(spk2)
            return torch.stack(spk2_rec)

    torch.manual_seed(0)
    return Net().to(DEVICE)


# --- the same network from the snnir kernel, built by hand ----------------------------
class KernelNet(nn.Module):
    """fc1 -> LIF -> fc2 -> LIF with :func:`neuron_sequence`; a static ``[B, 784]``
    input runs fc1 once and holds its output over the steps."""

    def __init__(self, reference: nn.Module, steps: int):
        super().__init__()
        from snnir.ir import Semantics
        from snnir.ir.ops import LIF
        from snnir.targets.torch.surrogate import Surrogate

        self.steps = steps
        self.fc1 = nn.Linear(N_IN, N_HID)
        self.fc2 = nn.Linear(N_HID, N_OUT)
        self.load_state_dict({k: v for k, v in reference.state_dict().items() if k.startswith("fc")})
        self.to(DEVICE)
        dt = 1e-4
        tau = dt / (1 - BETA)
        sem = Semantics(dt=dt, reset="subtract", reset_timing="next")
        self.lif = LIF(tau=tau, r=tau / dt, v_leak=0.0, v_threshold=1.0, sem=sem)
        self.surrogate = Surrogate("arctan", 2.0)  # snnTorch's default spike_grad

    def _lif(self, x, steps=None):
        from snnir.targets.torch.scan import neuron_sequence

        return neuron_sequence(self.lif, {}, x, None, self.surrogate, steps=steps, detach_reset=True)[0]

    def forward(self, x):
        if x.dim() == 2:
            spk1 = self._lif(self.fc1(x), steps=self.steps)
        else:
            spk1 = self._lif(self.fc1(x.flatten(0, 1)).unflatten(0, x.shape[:2]))
        return self._lif(self.fc2(spk1))


#: the snnir contenders: name -> (compile's ``native`` option, recompute); ``None`` is the
#: default (the C++ kernels where built, which ``build_native`` sees to, and the Triton
#: kernels on CUDA); ``False`` also turns the Triton kernels off (``triton=False``)
SNNIR_CONTENDERS = {"snnir": (None, False), "snnir-python": (False, False), "snnir-recompute": (None, True)}


def snnir_pipeline(reference: nn.Module, steps: int, static: bool, sample: torch.Tensor, name: str = "snnir"):
    """``trace -> optimize -> compile`` as ``(module, x -> spikes)``; a static ``[B, 784]``
    image is held over the steps by the module (``module(x, steps=T)``). ``snnir``: the
    defaults (the C++ kernels where built, the Triton kernels on CUDA); ``snnir-python``:
    ``native=False, triton=False`` (the Python loop); ``snnir-recompute``: ``recompute=True`` (each run of steps rerun in the backward
    instead of keeping its activations)."""
    import snnir

    native, recompute = SNNIR_CONTENDERS[name]
    graph = snnir.trace(copy.deepcopy(reference).cpu(), sample.cpu())
    graph = snnir.optimize(graph, static_inputs=list(graph.inputs) if static else ())
    module = snnir.compile(graph, target="torch", surrogate="arctan", recompute=recompute, native=native,
                           triton=native, device=DEVICE)

    def forward(x):
        return module(x, steps=steps) if static else module(x)

    return module, forward


# --- measurement ----------------------------------------------------------------------
def make_input(steps: int, static: bool, batch: int = BATCH):
    g = torch.Generator().manual_seed(1)
    image = torch.rand(batch, N_IN, generator=g)
    targets = torch.randint(0, N_OUT, (batch,), generator=g)
    x = image if static else (torch.rand(steps, batch, N_IN, generator=g) < image).float()
    return x.to(DEVICE), targets.to(DEVICE)


def contenders(steps: int, static: bool, x: torch.Tensor, notes: list[str]):
    """{name: (module, forward)} with spikes asserted equal to snnTorch's (on a GPU: counted)."""
    ref = snntorch_net(steps)
    out = {"snntorch": (ref, ref)}
    kernel = KernelNet(ref, steps)
    out["kernel"] = (kernel, kernel)
    for name in SNNIR_CONTENDERS:
        start = time.perf_counter()
        module, forward = snnir_pipeline(ref, steps, static, x, name)
        with torch.no_grad():
            forward(x)
        took = time.perf_counter() - start
        out[name] = (module, forward)
        notes.append(f"{name} pipeline ({'static' if static else 'dynamic'}, T={steps}): "
                     f"trace+optimize+compile+first call {took:.2f} s")
    with torch.no_grad():
        want = ref(x)
        for name, (_, forward) in out.items():
            got = forward(x)
            if not torch.equal(got, want):
                differ = f"{name}: spikes differ from snnTorch in {int((got != want).sum())} of {want.numel()} places"
                if DEVICE.type == "cpu":
                    raise AssertionError(differ)
                notes.append(f"{differ} (on {DEVICE} a matrix multiply may round differently for another shape)")
    return out


def train_step(module, forward, optimiser, x, targets, loss_fn):
    optimiser.zero_grad(set_to_none=True)
    loss = loss_fn(forward(x), targets)
    loss.backward()
    optimiser.step()


def gemm_floor(steps: int, static: bool, batch: int):
    """``(train, inference)`` closures running the Linears' unavoidable matrix multiplies."""
    rows1, rows2 = (batch if static else steps * batch), steps * batch
    a1, w1 = torch.rand(rows1, N_IN, device=DEVICE), torch.rand(N_HID, N_IN, device=DEVICE)
    a2, w2 = torch.rand(rows2, N_HID, device=DEVICE), torch.rand(N_OUT, N_HID, device=DEVICE)
    g1, g2 = torch.rand(rows1, N_HID, device=DEVICE), torch.rand(rows2, N_OUT, device=DEVICE)

    def forward():
        a1 @ w1.T
        a2 @ w2.T

    def train():
        forward()
        g2 @ w2  # dX2
        g2.T @ a2  # dW2
        g1.T @ a1  # dW1

    return train, forward


def time_case(
    steps: int, static: bool, reps: int, notes: list[str], batch: int = BATCH, scaling: bool = False,
) -> dict:
    from snntorch import functional as SF

    x, targets = make_input(steps, static, batch)
    found = _scaling_contenders(steps, x) if scaling else contenders(steps, static, x, notes)
    loss_fn = SF.ce_count_loss()
    optimisers = {n: torch.optim.Adam(m.parameters(), lr=1e-3) for n, (m, _) in found.items()}
    floor_train, floor_infer = gemm_floor(steps, static, batch)
    steps_of = {
        name: (lambda m=module, f=forward, o=optimisers[name]: train_step(m, f, o, x, targets, loss_fn),
               lambda f=forward: f(x))
        for name, (module, forward) in found.items()
    }
    return race(steps_of, floor_train, floor_infer, reps)


def _scaling_contenders(steps, x):
    """snnTorch and the default compiled module (spikes as checked by :func:`contenders`)."""
    ref = snntorch_net(steps)
    return {"snntorch": (ref, ref), "snnir": snnir_pipeline(ref, steps, False, x)}


# --- memory, one fresh process per figure ----------------------------------------------
def memory_child(name: str, steps: int, static: bool, whole_process: bool = False) -> None:
    """Print the peak memory growth (bytes) of one train step of contender ``name``: of the
    RSS on the CPU, of the CUDA allocator's allocated memory on a GPU. ``whole_process``:
    the process's peak RSS after three train steps instead (input, model and the allocator's
    reuse included: how the issue's figure for snnTorch reads)."""
    from snntorch import functional as SF

    torch.set_num_threads(THREADS)
    x, targets = make_input(steps, static)
    ref = snntorch_net(steps)
    if name == "snntorch":
        module, forward = ref, ref
    elif name == "kernel":
        module = forward = KernelNet(ref, steps)
    else:
        module, forward = snnir_pipeline(ref, steps, static, x, name)
    optimiser = torch.optim.Adam(module.parameters(), lr=1e-3)
    loss_fn = SF.ce_count_loss()
    train_step(module, forward, optimiser, x, targets, loss_fn)
    if whole_process:
        for _ in range(2):
            train_step(module, forward, optimiser, x, targets, loss_fn)
        peak = torch.cuda.max_memory_allocated() if DEVICE.type == "cuda" else status_bytes("VmHWM")
        print(json.dumps(peak))
        return
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        train_step(module, forward, optimiser, x, targets, loss_fn)
        torch.cuda.synchronize()
        print(json.dumps(torch.cuda.max_memory_allocated() - before))
        return
    print(json.dumps(rss_growth(lambda: train_step(module, forward, optimiser, x, targets, loss_fn))))


def peak_mb(name: str, steps: int, static: bool, whole_process: bool = False) -> float | None:
    """:func:`memory_child`'s figure in MB, from a fresh process (glibc's defaults for
    ``whole_process``; else freed tensors leave the RSS at once)."""
    cmd = [sys.executable, __file__, "--memory-child", name, str(steps), "static" if static else "dynamic",
           "process" if whole_process else "step", "--device", str(DEVICE)]
    return child_mb(cmd, tuned=not whole_process)


# --- report --------------------------------------------------------------------------
def print_targets(results: dict, memory: dict) -> None:
    """The issue's targets against this run's figures, per snnir contender and T."""
    print("\n## Against the targets (this run)")
    print("| target | contender | " + " | ".join(f"T={t}" for _, t in sorted(k for k in results if k[0])) + " |")
    print("|---|---|" + "---|" * sum(1 for k in results if k[0]))
    names = [n for n in SNNIR_CONTENDERS if any(n in r["train"] for r in results.values())]
    checks = (
        ("static train >= 8x snnTorch", True, lambda r, n: r["train"]["snntorch"] / r["train"][n], 8.0, True),
        ("static inference >= 10x snnTorch", True, lambda r, n: r["infer"]["snntorch"] / r["infer"][n], 10.0, True),
        ("dynamic train <= 1.2x GEMM floor", False, lambda r, n: r["train"][n] / r["floor"]["train"], 1.2, False),
        ("dynamic inference <= 1.2x GEMM floor", False, lambda r, n: r["infer"][n] / r["floor"]["infer"], 1.2, False),
    )
    for label, static, value, bound, above in checks:
        for name in names:
            cells = []
            for steps in sorted(t for s, t in results if s == static):
                v = value(results[(static, steps)], name)
                cells.append(f"{v:.2f} {'yes' if (v >= bound if above else v <= bound) else 'no'}")
            print(f"| {label} | {name} | " + " | ".join(cells) + " |")
    for (static, name), ratio in sorted(memory.items()):
        print(f"| training memory growth T=25->100 <= 1/4 of snnTorch's ({'static' if static else 'dynamic'}) | "
              f"{name} | {ratio:.2f} {'yes' if ratio <= 0.25 else 'no'} |")

def tutorial_case(args, steps_list: list[int], reps: int, notes: list[str]) -> None:
    """The tutorial MLP: every input kind and T, the scaling table, memory and the targets."""
    print("\n| input | T | contender | train ms | infer ms | train samples/s | train vs snnTorch | "
          "infer vs snnTorch | train / GEMM floor | infer / GEMM floor |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    results = {}
    cases = [(static, steps) for static in (True, False) for steps in steps_list]
    for static, steps in progress(cases, desc="timing cases", unit="case", delay=0):
        r = time_case(steps, static, reps, notes)
        results[(static, steps)] = r
        base_t, base_i = r["train"]["snntorch"], r["infer"]["snntorch"]
        for name in r["train"]:
            tr, inf = r["train"][name], r["infer"][name]
            echo(f"| {'static' if static else 'dynamic'} | {steps} | {name} | {tr:.1f} ({r['train_min'][name]:.1f}) | "
                 f"{inf:.1f} ({r['infer_min'][name]:.1f}) | "
                 f"{BATCH / tr * 1e3:.0f} | {base_t / tr:.2f}x | {base_i / inf:.2f}x | "
                 f"{tr / r['floor']['train']:.2f} | {inf / r['floor']['infer']:.2f} |")
        echo(f"| {'static' if static else 'dynamic'} | {steps} | GEMM floor | {r['floor']['train']:.1f} | "
             f"{r['floor']['infer']:.1f} | | | | 1.00 | 1.00 |")

    print("\n## Scaling (snnir, train ms; dynamic input)")
    print("| T | B | train ms | ms per (T*B) sample-step |")
    print("|---|---|---|---|")
    sizes = [(t, b) for t, b in ((25, 64), (25, 128), (25, 256), (50, 128), (100, 128)) if not (args.quick and b == 256)]
    for steps, batch in progress(sizes, desc="scaling cases", unit="case", delay=0):
        r = time_case(steps, False, max(reps // 2, 1), notes, batch=batch, scaling=True)
        tr = r["train"]["snnir"]
        echo(f"| {steps} | {batch} | {tr:.1f} | {tr / (steps * batch) * 1e3:.2f} us |")

    memory: dict = {}
    if not args.no_memory:
        tables = (
            (False, "Peak memory growth of one train step (MB, fresh process each)", ("snntorch", "kernel")),
            (True, "Process peak RSS after three train steps (MB, fresh process each, glibc defaults: "
                   "input, model and allocator reuse included, as the issue's 270 MB for snnTorch reads; "
                   "for information: it moves by tens of MB between runs)", ("snntorch",)),
        )
        for whole_process, title, baselines in tables:
            print(f"\n## {title}")
            print("| input | contender | T=25 | T=100 | growth 25->100 |")
            print("|---|---|---|---|---|")
            names = baselines + tuple(SNNIR_CONTENDERS)
            for static in (True, False):
                growth = {}
                for name in names:
                    m25, m100 = (peak_mb(name, t, static, whole_process) for t in (25, 100))
                    if m25 is None or m100 is None:
                        continue
                    growth[name] = m100 - m25
                    print(f"| {'static' if static else 'dynamic'} | {name} | {m25:.0f} | {m100:.0f} | "
                          f"{m100 - m25:.0f} |", flush=True)
                for name in names[1:]:
                    if not whole_process and name in growth and growth.get("snntorch", 0) > 0:
                        memory[(static, name)] = growth[name] / growth["snntorch"]
    print_targets(results, memory)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions, T=25 and 100 only")
    parser.add_argument("--steps", type=int, nargs="+", help="timesteps to measure (default 25 100 400)")
    parser.add_argument("--reps", type=int, help="timed repetitions per contender (default 7, quick 3)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--device", default="cpu", help="torch device of every contender (default cpu; e.g. cuda)")
    parser.add_argument("--case", choices=CASES, nargs="+", default=list(CASES),
                        help="which networks to race (default all): the tutorial MLP, the recurrent net")
    parser.add_argument("--no-compile", action="store_true",
                        help="recurrent case: leave out snnTorch + torch.compile (compiling takes minutes)")
    parser.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    if args.memory_child:
        name, steps, kind, how = args.memory_child
        memory_child(name, int(steps), kind == "static", how == "process")
        return 0

    torch.set_num_threads(THREADS)
    steps_list = args.steps or ([25, 100] if args.quick else [25, 100, 400])
    reps = args.reps or (3 if args.quick else 7)
    notes: list[str] = []
    where = (torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda"
             else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {THREADS} threads")
    print(f"# snnTorch tutorial race on {DEVICE} ({where}), torch {torch.__version__}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"\nMedians of {reps} interleaved repetitions (min in brackets).")
    build_native(notes)
    note_gpu_kernels(notes, DEVICE)
    if "tutorial" in args.case:
        tutorial_case(args, steps_list, reps, notes)
    if "recurrent" in args.case:
        import bench_recurrent

        bench_recurrent.report(bench_recurrent.run(reps, notes, race, DEVICE, not args.no_compile))
    if notes:
        print("\nNotes:")
        for note in notes:
            print(f"- {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
