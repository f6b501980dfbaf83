"""The benchmark's contenders agree with snnTorch spike for spike, and its train step runs.

``benchmarks/bench_tutorial.py`` asserts this itself before timing anything; here it
is checked at a T that splits the compiled module's sequence into runs of steps
(``time_chunk``), for a static and a rate-coded input, with the real snnTorch.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.interop
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_tutorial.py"


@pytest.fixture(autouse=True)
def default_kernels(monkeypatch):
    """The benchmark's defaults: the C++ kernels where they build (``snnir``), next to the
    Python loop (``snnir-python``)."""
    monkeypatch.delenv("SNNIR_NATIVE", raising=False)
    from snnir.targets.torch import native

    native.build()


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("snntorch", reason="snntorch is not installed (pip install -e '.[test]')")
    if str(BENCH.parent) not in sys.path:  # the script imports its neighbours (measure.py), as when run
        sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("bench_tutorial", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("static", [True, False], ids=["static", "dynamic"])
def test_contenders_match_snntorch_and_train(bench, static):
    from snntorch import functional as SF

    torch.manual_seed(0)  # the networks' weights: the same whichever tests ran before
    steps = 37  # two runs of the default time_chunk (32)
    x, targets = bench.make_input(steps, static, batch=16)
    notes: list[str] = []
    found = bench.contenders(steps, static, x, notes)  # raises if any spikes differ from snnTorch's
    assert set(found) == {"snntorch", "kernel", "snnir", "snnir-python", "snnir-recompute"}
    module, forward = found["snnir"]
    before = [p.detach().clone() for p in module.parameters()]
    bench.train_step(module, forward, torch.optim.Adam(module.parameters(), lr=1e-3), x, targets, SF.ce_count_loss())
    assert any(not torch.equal(a, p) for a, p in zip(before, module.parameters()))


@pytest.mark.parametrize("static", [True, False], ids=["static", "dynamic"])
def test_snnir_gradients_equal_snntorch(bench, static):
    """One loss, the same weights: the compiled modules' layer gradients are snnTorch's
    (snnTorch's Leaky: arctan surrogate, reset not differentiated)."""
    from snntorch import functional as SF

    torch.manual_seed(0)  # the networks' weights: the same whichever tests ran before
    steps = 37
    x, targets = bench.make_input(steps, static, batch=16)
    found = bench.contenders(steps, static, x, [])
    loss_fn = SF.ce_count_loss()
    grads = {}
    for name in ("snntorch", "snnir", "snnir-python", "snnir-recompute"):
        module, forward = found[name]
        module.zero_grad()
        loss_fn(forward(x), targets).backward()
        grads[name] = sorted((tuple(p.shape), p.grad) for p in module.parameters() if p.grad is not None)
    for name in ("snnir", "snnir-python", "snnir-recompute"):
        assert [s for s, _ in grads["snntorch"]] == [s for s, _ in grads[name]]
        for (_, a), (_, b) in zip(grads["snntorch"], grads[name]):  # float32 sums in other orders
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5 * float(a.abs().max()))
