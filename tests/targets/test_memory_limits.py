"""Simulation memory is checked before it is allocated, in the reference interpreter and the
torch target: state against ``Limits.state_bytes``, the whole run against ``Limits.memory_bytes``,
raised per call (``limits=``) or by the environment."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

import snnir
from snnir.cli.main import main
from snnir.errors import SnnirError
from snnir.ir import Affine, Delay, Graph, Input, Linear, Output, Semantics
from snnir.ir.ops.pool import MaxPool2d
from snnir.limits import ENVIRONMENT, Limits


def delayed(size: int, steps: int) -> Graph:
    """``x -> d -> y`` where ``d`` delays by ``steps`` steps."""
    sem = Semantics(dt=1e-6)
    return Graph.sequential(("x", Input((size,))), ("d", Delay(delay=np.array(steps * 1e-6), sem=sem)), ("y", Output()))


@pytest.fixture(autouse=True)
def no_env_limits(monkeypatch):
    for variable in ENVIRONMENT:
        monkeypatch.delenv(variable, raising=False)


def test_a_maximal_delay_is_refused_before_allocating():
    graph = delayed(300, 1_000_000)  # 1e6 steps x 300 float64: 2.4 GB for one step
    tracemalloc.start()
    try:
        with pytest.raises(SnnirError, match=r"node 'd': Delay state for a batch of 1 needs 2\.2 GiB, more than the "
                                             r"limit state_bytes of 1\.0 GiB \(raise it with limits=Limits\(state_bytes"
                                             r"=\.\.\.\) or the environment variable SNNIR_STATE_LIMIT_BYTES\)"):
            snnir.run(graph, np.zeros((1, 1, 300)))
        assert tracemalloc.get_traced_memory()[1] < 50 << 20
    finally:
        tracemalloc.stop()


def test_the_state_is_counted_times_the_batch():
    graph = delayed(10, 1000)  # 80 KB per sample
    limits = Limits(state_bytes=1 << 20)
    assert snnir.run(graph, np.ones((3, 2, 10)), limits=limits)["y"].shape == (3, 2, 10)
    with pytest.raises(SnnirError, match=r"node 'd': Delay state for a batch of 20 needs 1\.5 MiB"):
        snnir.run(graph, np.ones((3, 20, 10)), limits=limits)


def test_all_states_together_count():
    sem = Semantics(dt=1e-6)
    graph = Graph.sequential(("x", Input((10,))), *[(f"d{i}", Delay(delay=np.array(1e-3), sem=sem)) for i in range(3)],
                             ("y", Output()))  # three 80 KB buffers
    with pytest.raises(SnnirError, match="the state of all nodes for a batch of 1 needs 234.4 KiB"):
        snnir.run(graph, np.ones((1, 1, 10)), limits=Limits(state_bytes=100_000))


def test_the_environment_sets_the_limit_and_the_keyword_overrides_it(monkeypatch):
    graph = delayed(10, 1000)
    monkeypatch.setenv("SNNIR_STATE_LIMIT_BYTES", "65536")
    with pytest.raises(SnnirError, match="node 'd'.*limit state_bytes of 64.0 KiB"):
        snnir.run(graph, np.ones((3, 1, 10)))
    assert snnir.run(graph, np.ones((3, 1, 10)), limits=Limits())["y"].shape == (3, 1, 10)
    monkeypatch.setenv("SNNIR_STATE_LIMIT_BYTES", "lots")
    with pytest.raises(SnnirError, match="SNNIR_STATE_LIMIT_BYTES must be a number"):
        snnir.run(graph, np.ones((3, 1, 10)))


def test_parameters_and_the_run_arrays_count_in_the_total():
    big = Graph.sequential(("x", Input((1000,))), ("fc", Affine(weight=np.zeros((1000, 1000)), bias=np.zeros(1000))),
                           ("y", Output()))  # 8 MB of parameters, no state
    with pytest.raises(SnnirError, match=r"simulating 2 steps of a batch of 1 \(7\.6 MiB of parameters.*memory_bytes"):
        snnir.run(big, np.zeros((2, 1, 1000)), limits=Limits(memory_bytes=4 << 20))
    with pytest.raises(SnnirError, match="simulating 1000 steps"):  # inputs and results over T
        snnir.run(delayed(1000, 1), np.zeros((1000, 1, 1000)), limits=Limits(memory_bytes=10 << 20))


def test_narrow_parameters_count_their_float_copy():
    """A bool weight is 1 byte a number stored, but the run computes with it as float64: it was
    counted at 1 byte (a 64 MiB bool weight ran past memory_bytes=256 MiB)."""
    graph = Graph.sequential(("x", Input((1000,))), ("fc", Linear(weight=np.ones((1000, 1000), dtype=bool))),
                             ("y", Output()))
    with pytest.raises(SnnirError, match=r"\(8\.6 MiB of parameters"):
        snnir.run(graph, np.zeros((1, 1, 1000)), limits=Limits(memory_bytes=4 << 20))


def test_a_max_pools_padded_input_counts():
    """The reference pads a pool's input with -inf before pooling: a 4000-wide kernel half padded
    on a 1x1 input is 128 MB per sample for a 1x1 output, once allocated unchecked."""
    pool = MaxPool2d(kernel_size=4000, padding=2000)
    graph = Graph.sequential(("x", Input((1, 1, 1))), ("pool", pool), ("y", Output()))
    with pytest.raises(SnnirError, match=r"simulating 1 steps of a batch of 1 .* needs 122\.1 MiB"):
        snnir.run(graph, np.ones((1, 1, 1, 1, 1)), limits=Limits(memory_bytes=64 << 20))


def test_a_broadcast_input_view_is_refused_before_it_is_scanned():
    """A zero-copy view of 1e12 steps: converting or scanning it for NaN would allocate 8 TiB."""
    x = np.broadcast_to(np.zeros(1, dtype=np.int64), (10**12, 2, 3))
    with pytest.raises(SnnirError, match="simulating 1000000000000 steps of a batch of 2"):
        snnir.run(delayed(3, 1), x, record=True)


def test_recording_counts_the_state_traces():
    graph = delayed(100, 100)  # 80 KB of state per sample; 100 steps of traces: 8 MB
    limits = Limits(memory_bytes=2 << 20)
    snnir.run(graph, np.zeros((100, 1, 100)), limits=limits)
    with pytest.raises(SnnirError, match="simulating 100 steps"):
        snnir.run(graph, np.zeros((100, 1, 100)), record=True, limits=limits)


def test_torch_target_checks_state_per_batch_and_dtype(monkeypatch):
    graph = delayed(10, 1000)
    module = snnir.compile(graph, target="torch", limits=Limits(state_bytes=1 << 20))
    assert module(torch.ones(3, 2, 10)).shape == (3, 2, 10)
    with pytest.raises(SnnirError, match=r"node 'd': Delay state for a batch of 40 needs 1\.5 MiB"):
        module(torch.ones(3, 40, 10))
    with pytest.raises(SnnirError, match="node 'd'"):
        module.initial_state(40)
    with pytest.raises(SnnirError, match="node 'd'"):  # float64 doubles the state
        module.initial_state(20, dtype=torch.float64)
    monkeypatch.setenv("SNNIR_STATE_LIMIT_BYTES", "1024")
    with pytest.raises(SnnirError, match="limit state_bytes of 1.0 KiB"):
        snnir.compile(graph, target="torch")(torch.ones(3, 1, 10))


@pytest.mark.parametrize("value", [0, "1G", {"state_bytes": 5}])
def test_bad_limits_are_refused(value):
    with pytest.raises(SnnirError, match="limits must be a snnir.limits.Limits"):
        snnir.compile(delayed(2, 2), target="torch", limits=value)
    with pytest.raises(SnnirError, match="limits must be a snnir.limits.Limits"):
        snnir.run(delayed(2, 2), np.zeros((1, 1, 2)), limits=value)


def test_cli_run_refuses_a_maximal_delay_in_one_line(tmp_path, capsys):
    snnir.write(delayed(300, 1_000_000), tmp_path / "delay.nir")
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 300)))
    assert main(["run", str(tmp_path / "delay.nir"), "--input", str(tmp_path / "x.npy"), "-o",
                 str(tmp_path / "o.npz")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("snnir run: error: node 'd': Delay state") and "2.2 GiB" in err and "SNNIR_STATE_LIMIT_BYTES" in err
