"""The recurrent case of ``make bench`` (``bench_tutorial.py --case recurrent``).

Network, as snnTorch users write it: ``Linear(100, 256) -> RLeaky(beta=0.9,
linear_features=256) -> Linear(256, 10) -> Leaky(beta=0.9)``; T=100, B=64, a dynamic
rate-coded ``[T, B, 100]`` input, ``ce_count_loss``, ``Adam(lr=1e-3)``.

Contenders: ``snntorch`` (eager), ``snntorch+compile`` (``torch.compile`` of the same
module; its compile time, the first train step and the first inference, is reported
apart), ``snnir`` (``trace -> optimize -> compile`` with the defaults: the C++ kernels,
the recurrent component one native call), ``snnir-python`` (``native=False``: the step
loop, the kernel's specification) and the GEMM floor: the matrix multiplies any
implementation must do, the recurrent one step by step (forward: the two Linears at
``T*B`` rows and ``T`` recurrent ``[B, 256] x [256, 256]`` products; training adds ``dX``
and ``dW`` of the output layer, ``T`` recurrent products back, ``dW`` of the recurrent
layer and of the input layer; every product dense, as a GEMM library makes it: snnir's
kernel sums the recurrent ``dW`` from the gradient rows at the spikes where few fired, less
work than the floor's GEMM). Spikes of every snnir contender are asserted identical to
snnTorch's before timing; those of ``torch.compile`` are counted in the notes (inductor
may round differently). Medians of interleaved repetitions, minimum in brackets.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

STEPS, BATCH, N_IN, N_HID, N_OUT, BETA = 100, 64, 100, 256, 10, 0.9


def snntorch_net() -> nn.Module:
    import snntorch as snn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(N_IN, N_HID)
            self.lif1 = snn.RLeaky(beta=BETA, linear_features=N_HID)
            self.fc2 = nn.Linear(N_HID, N_OUT)
            self.lif2 = snn.Leaky(beta=BETA)

        def forward(self, x):
            spk1, mem1 = self.lif1.init_rleaky()
            mem2 = self.lif2.init_leaky()
            spk2_rec = []
            for step in range(x.shape[0]):
                spk1, mem1 = self.lif1(self.fc1(x[step]), spk1, mem1)
                spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
                spk2_rec.append(spk2)
            return torch.stack(spk2_rec)

    torch.manual_seed(0)
    return Net()


def make_input(device):
    g = torch.Generator().manual_seed(1)
    rates = torch.rand(BATCH, N_IN, generator=g)
    x = (torch.rand(STEPS, BATCH, N_IN, generator=g) < rates).float()
    targets = torch.randint(0, N_OUT, (BATCH,), generator=g)
    return x.to(device), targets.to(device)


def gemm_floor(device):
    """``(train, inference)`` closures running the unavoidable matrix multiplies."""
    rows = STEPS * BATCH

    def rand(*shape):
        return torch.rand(*shape, device=device)

    x, w1, w_rec, w2 = rand(rows, N_IN), rand(N_HID, N_IN), rand(N_HID, N_HID), rand(N_OUT, N_HID)
    s, g_r, g2 = rand(STEPS, BATCH, N_HID), rand(STEPS, BATCH, N_HID), rand(rows, N_OUT)

    def forward():
        x @ w1.T
        for t in range(STEPS):
            s[t] @ w_rec.T
        s.view(rows, N_HID) @ w2.T

    def train():
        forward()
        g2 @ w2  # dX2
        g2.T @ s.view(rows, N_HID)  # dW2
        for t in range(STEPS):
            g_r[t] @ w_rec  # the recurrence back
        g_r.view(rows, N_HID).T @ s.view(rows, N_HID)  # dW_rec
        g_r.view(rows, N_HID).T @ x  # dW1

    return train, forward


def contenders(x, notes: list[str], device, with_compile: bool):
    """{name: module} (each a callable ``x -> spikes``), spikes checked against snnTorch's."""
    import snnir

    ref = snntorch_net().to(device)
    found = {"snntorch": ref}
    if with_compile:
        found["snntorch+compile"] = torch.compile(copy.deepcopy(ref))
    for name, native in (("snnir", None), ("snnir-python", False)):
        start = time.perf_counter()
        graph = snnir.optimize(snnir.trace(copy.deepcopy(ref).cpu(), x.cpu()))
        module = snnir.compile(graph, target="torch", surrogate="arctan", native=native, device=device)
        with torch.no_grad():
            module(x)
        notes.append(f"recurrent: {name} trace+optimize+compile+first call {time.perf_counter() - start:.2f} s")
        found[name] = module
    with torch.no_grad():
        want = ref(x)
        for name, module in found.items():
            start = time.perf_counter()
            got = module(x)
            if name == "snntorch+compile":
                notes.append(f"recurrent: torch.compile of snnTorch, first inference (compiling) "
                             f"{time.perf_counter() - start:.1f} s; spikes differing from eager snnTorch: "
                             f"{int((got != want).sum())} of {want.numel()}")
            elif not torch.equal(got, want):
                raise AssertionError(f"recurrent: {name} spikes differ from snnTorch in "
                                     f"{int((got != want).sum())} of {want.numel()} places")
    return found


def run(reps: int, notes: list[str], race, device=torch.device("cpu"), with_compile: bool = True) -> dict:
    """Time every contender with ``race`` (``bench_tutorial.race``): medians, minima and floor.
    ``with_compile=False`` leaves out snnTorch + torch.compile (whose compiling takes minutes)."""
    from snntorch import functional as SF

    x, targets = make_input(device)
    found = contenders(x, notes, device, with_compile)
    loss_fn = SF.ce_count_loss()
    optimisers = {n: torch.optim.Adam(m.parameters(), lr=1e-3) for n, m in found.items()}

    def train_step(name):
        optimisers[name].zero_grad(set_to_none=True)
        loss_fn(found[name](x), targets).backward()
        optimisers[name].step()

    if with_compile:
        start = time.perf_counter()
        train_step("snntorch+compile")
        notes.append(f"recurrent: torch.compile of snnTorch, first train step (compiling) "
                     f"{time.perf_counter() - start:.1f} s")
    steps_of = {name: (lambda n=name: train_step(n), lambda m=module: m(x)) for name, module in found.items()}
    return race(steps_of, *gemm_floor(device), reps)


def report(r: dict) -> None:
    """The table, and the issue's targets against this run's figures."""
    print(f"\n## Recurrent: Linear({N_IN},{N_HID}) -> RLeaky -> Linear({N_HID},{N_OUT}) -> Leaky; "
          f"T={STEPS}, B={BATCH}, dynamic input")
    print("| contender | train ms | infer ms | train vs snnTorch | infer vs snnTorch | train / floor | infer / floor |")
    print("|---|---|---|---|---|---|---|")
    base_t, base_i = r["train"]["snntorch"], r["infer"]["snntorch"]
    floor_t, floor_i = r["floor"]["train"], r["floor"]["infer"]
    for name in r["train"]:
        tr, inf = r["train"][name], r["infer"][name]
        print(f"| {name} | {tr:.1f} ({r['train_min'][name]:.1f}) | {inf:.1f} ({r['infer_min'][name]:.1f}) | "
              f"{base_t / tr:.2f}x | {base_i / inf:.2f}x | {tr / floor_t:.2f} | {inf / floor_i:.2f} |")
    print(f"| GEMM floor | {floor_t:.1f} | {floor_i:.1f} | | | 1.00 | 1.00 |")
    print("\n| target (recurrent) | value | met |")
    print("|---|---|---|")
    checks = [
        ("snnir train <= 1.3x floor", r["train"]["snnir"] / floor_t, r["train"]["snnir"] <= 1.3 * floor_t),
        ("snnir inference <= 1.3x floor", r["infer"]["snnir"] / floor_i, r["infer"]["snnir"] <= 1.3 * floor_i),
    ]
    for kind in ("train", "infer") if "snntorch+compile" in r["train"] else ():
        theirs, ours = r[kind]["snntorch+compile"], r[kind]["snnir"]
        checks.append((f"snnir {kind} faster than snnTorch+compile (ratio)", theirs / ours, ours < theirs))
    for label, value, ok in checks:
        print(f"| {label} | {value:.2f} | {'yes' if ok else 'no'} |")
