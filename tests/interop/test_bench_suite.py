"""``make bench`` (``benchmarks/bench.py``): its quick run prints the table, spikes that differ
fail the case, ``--device cuda`` refuses at once without a GPU, the floor records the right
layer calls, and a compile that overruns its limit is skipped with a note."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.interop
BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    pytest.importorskip("snntorch", reason="snntorch is not installed (pip install -e '.[test]')")
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import bench

    return bench


def table_rows(out: str, case: str) -> dict[str, list[str]]:
    """``{contender: cells}`` of ``case`` in the printed table."""
    rows = [line.strip("|").split(" | ") for line in out.splitlines() if line.startswith(f"| {case} |")]
    return {cells[2].strip(): [c.strip() for c in cells] for cells in rows if len(cells) > 3}


def test_quick_run_prints_one_table_with_every_contender(bench, capsys):
    code = bench.main(["--quick", "--case", "tutorial-static", "conv-step", "--no-compile", "--no-memory"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.count("| case | T, B | contender |") == 1
    for case in ("tutorial-static", "conv-step"):
        rows = table_rows(out, case)
        assert {"snntorch", "snnir"} <= set(rows), out
        assert rows["snnir"][-1] == "identical"
        assert any(name.startswith("floor (train ") for name in rows), out
    assert "| tutorial-static | snnir train >= 8x snnTorch |" in out
    assert "| conv-step | snnir inference >= 1.2x snnTorch |" in out
    assert "- conv-step: back to back (1 step of each in a row after the race" in out


def test_inference_memory_comes_from_a_child_process(bench):
    import measure

    for name in ("snntorch", "snnir"):
        cmd = [sys.executable, bench.__file__, "--memory-child", "conv-step", name, "--quick"]
        mb = measure.child_mb(cmd, timeout=120)
        assert mb is not None and mb >= 0, name


def test_spikes_that_differ_fail_the_case_loudly(bench, capsys, monkeypatch):
    make = bench.snnir_forward

    def off_by_one_spike(*args):
        module, forward = make(*args)

        def wrong(x):
            spikes = forward(x).clone()
            spikes.view(-1)[0] = 1 - spikes.view(-1)[0]
            return spikes
        return module, wrong

    monkeypatch.setattr(bench, "snnir_forward", off_by_one_spike)
    code = bench.main(["--quick", "--case", "tutorial-static", "--no-compile", "--no-memory"])
    captured = capsys.readouterr()
    assert code == 1
    assert "**FAILED: snnir's spikes differ from snnTorch's in 1 of" in captured.out
    assert "FAILED: tutorial-static" in captured.err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU is present")
def test_cuda_without_a_gpu_is_refused_at_once(bench, capsys):
    assert bench.main(["--device", "cuda"]) == 2
    assert "no CUDA device here" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no GPU is present")
def test_gpu_script_refuses_at_once_without_a_gpu(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path))
    done = subprocess.run(["bash", str(BENCHMARKS / "gpu_run.sh")], capture_output=True, text=True, env=env,
                          timeout=60)
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr
    assert not any(tmp_path.iterdir())


def test_floor_records_each_layer_call_and_a_held_input_once(bench):
    import floor

    case = bench.CASES["conv-static"]
    steps, batch = case.quick
    x, _ = case.inputs(steps, batch, True, torch.device("cpu"))
    layers = floor.record(case.build(steps), x)
    assert [(type(lc.module).__name__, lc.calls, lc.from_input, lc.held) for lc in layers] == [
        ("Conv2d", 1, True, True), ("Conv2d", steps, False, False), ("Linear", steps, False, False)]
    assert layers[1].in_shape == (batch, 12, 12, 12) and layers[1].out_shape == (batch, 64, 8, 8)
    train, infer = floor.floor(case.build(steps), x, torch.device("cpu"))
    for closure in (*train.values(), *infer.values()):
        closure()


def test_a_compile_over_its_limit_is_skipped_with_a_note(bench, monkeypatch):
    """A compile whose probe outlasts its limit is skipped, and never started in this process
    (stopping dynamo here could abort the whole bench)."""
    from snntorch import functional as SF

    def no_compile_here(module):
        raise AssertionError("compiled in the bench's own process")

    monkeypatch.setattr(bench.torch, "compile", no_compile_here)
    case = bench.CASES["tutorial-step"]
    x, targets = case.inputs(3, 2, False, torch.device("cpu"))
    notes: list[str] = []
    slow = [sys.executable, "-c", "import time; time.sleep(30)"]
    start = time.perf_counter()
    assert bench.try_compile(case.build(3), x, targets, SF.ce_count_loss(), 0.5, notes, "tutorial-step", slow) is None
    assert time.perf_counter() - start < 10
    assert notes == ["tutorial-step: snntorch+compile skipped: did not finish within 0.5 s"]


def test_a_compile_that_fails_in_its_probe_is_skipped_saying_why(bench):
    from snntorch import functional as SF

    case = bench.CASES["tutorial-step"]
    x, targets = case.inputs(3, 2, False, torch.device("cpu"))
    notes: list[str] = []
    failing = [sys.executable, "-c", "raise TypeError('cannot determine truth value of Relational')"]
    assert bench.try_compile(case.build(3), x, targets, SF.ce_count_loss(), 60, notes, "conv-step", failing) is None
    assert notes == ["conv-step: snntorch+compile skipped: TypeError: cannot determine truth value of Relational"]


def test_the_compile_probe_reports_its_compile_seconds(bench):
    import measure

    cmd = [sys.executable, bench.__file__, "--compile-child", "tutorial-step", "--quick"]
    seconds, why = measure.child_within(cmd, 300)
    assert why == "" and seconds is not None
    infer_s, train_s = json.loads(seconds)
    assert infer_s > 0 and train_s > 0


def test_what_a_peer_writes_to_stderr_becomes_one_note(bench, capfd):
    import measure

    notes: list[str] = []
    with measure.stderr_to_notes(notes, "case: snntorch+compile"):
        print("a peer's warning", file=sys.stderr)
        print("and its second line", file=sys.stderr)
    assert "warning" not in capfd.readouterr().err
    assert notes == ["case: snntorch+compile wrote 2 lines to stderr, the first: a peer's warning"]
