"""The native kernels under thread-local state that holds Python objects.

``torch.utils.checkpoint`` (non-reentrant), ``torch.autograd.graph.save_on_cpu`` and any
``saved_tensors_hooks`` put Python callables in the calling thread's autograd state. A kernel
that copied that state into its worker threads while holding the GIL hung for good (the
recurrent kernel's row blocks did, until 2026-12-05). Each case runs in a child process with a
time limit, so that a hang fails the test instead of stopping the suite; outputs must equal a
plain call's and gradients agree to rounding, on a recurrent net (row blocks on 2 threads) and
a feed-forward one (the neuron-then-Linear and scan kernels).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import numpy as np
    import torch
    from torch.utils.checkpoint import checkpoint

    from snnir.ir import LIF, Affine, Graph, Input, Output, Semantics
    from snnir.targets.torch import compile_torch

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    sem = Semantics(dt=1e-3, reset="subtract", reset_timing="next")


    def lif(n):
        return LIF(tau=np.full(n, 0.01), r=np.ones(n), v_leak=np.zeros(n), v_threshold=np.ones(n),
                   v_reset=np.zeros(n), sem=sem)


    def affine(n_out, n_in):
        return Affine(weight=rng.normal(0, 1 / n_in ** 0.5, (n_out, n_in)), bias=rng.normal(0, 0.1, n_out))


    recurrent = Graph(
        {"in": Input((4,)), "fc": affine(64, 4), "cell": lif(64), "rec": affine(64, 64),
         "readout": affine(10, 64), "out": Output()},
        (("in", "fc"), ("fc", "cell"), ("cell", "rec"), ("rec", "cell"), ("cell", "readout"), ("readout", "out")),
    )
    feed_forward = Graph(
        {"in": Input((4,)), "fc1": affine(64, 4), "lif1": lif(64), "fc2": affine(10, 64), "lif2": lif(10),
         "out": Output()},
        (("in", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "out")),
    )
    x = torch.randn(30, 64, 4, generator=torch.Generator().manual_seed(1)) * 3


    def train(module, call):
        module.zero_grad(set_to_none=True)
        y = call(module, x)
        (y * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum().backward()
        return y.detach(), [p.grad.clone() for p in module.parameters()]


    def within(context, m, x):
        with context:
            return m(x)


    contexts = {
        "saved_tensors_hooks": lambda m, x: within(torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t), m, x),
        "save_on_cpu": lambda m, x: within(torch.autograd.graph.save_on_cpu(), m, x),
        "checkpoint": lambda m, x: checkpoint(m, x, use_reentrant=False),
    }


    for name, graph in (("recurrent", recurrent), ("feed_forward", feed_forward)):
        layers = [n for n, op in graph.nodes.items() if isinstance(op, Affine)]
        module = compile_torch(graph, native=True, trainable=[f"{n}.{p}" for n in layers for p in ("weight", "bias")])
        for _ in range(2):  # the second call runs the recurrent forward's rows apart too
            want = train(module, lambda m, x: m(x))
        for label, call in contexts.items():
            for _ in range(2):
                y, grads = train(module, call)
            assert torch.equal(y, want[0]), (name, label)
            for g, g_want in zip(grads, want[1]):
                torch.testing.assert_close(g, g_want, rtol=1e-5, atol=1e-5 * float(g_want.abs().max()))
            with torch.no_grad(), torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
                assert torch.equal(module(x), want[0]), (name, label, "no_grad")
    print("ok")
    """
)


def test_kernels_under_python_thread_state(native_kernels):
    try:
        done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("a compiled module hung under saved-tensor hooks, save_on_cpu or checkpoint (120 s)")
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]
