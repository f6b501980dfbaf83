"""``benchmarks/ranges.py``: two saved suite reports become RESULTS.md's tables, each figure the
range over the runs, and a target counts as met only where every run met it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"

RUN = """# snnir benchmark suite

| case | T, B | contender | train ms | infer ms | train vs snnTorch | infer / floor | spikes vs snnTorch |
|---|---|---|---|---|---|---|---|
| conv-step | 25, 128 | snntorch | {snntorch} (500.0) | 290.0 (280.0) | 1.00x | 3.57 | identical |
| conv-step | 25, 128 | snnir | 515.3 (489.8) | 263.4 (259.3) | {ratio}x | 3.24 | identical |
| conv-step | 25, 128 | floor (train {kind}, infer per-step) | 300.8 | 81.2 | | 1.00 | |

| case | target | value | met |
|---|---|---|---|
| conv-step | snnir train >= 1.2x snnTorch | {ratio} | {met} |
| conv-step | snnir inference peak <= 2x snnTorch's | 1.50 | yes |
"""


@pytest.fixture
def ranges(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import ranges

    return ranges


def test_two_runs_give_ranges_and_targets_met_in_both(ranges, tmp_path, capsys):
    one, two = tmp_path / "1.md", tmp_path / "2.md"
    one.write_text(RUN.format(snntorch="600.9", ratio="1.17", met="**no**", kind="per-step"))
    two.write_text(RUN.format(snntorch="580.1", ratio="1.25", met="yes", kind="time-batched"))
    assert ranges.main([str(one), str(two)]) == 0
    out = capsys.readouterr().out
    assert "| conv-step | 25, 128 | snntorch | 580.1-600.9 | 290.0 | 1.00x | 3.57 | identical |" in out
    assert "| conv-step | 25, 128 | snnir | 515.3 | 263.4 | 1.17x-1.25x | 3.24 | identical |" in out
    assert "| conv-step | 25, 128 | floor | 300.8 |" in out  # the floor's kind differed between runs
    assert "| conv-step | snnir train >= 1.2x snnTorch | 1.17-1.25 | in one run only |" in out
    assert "| conv-step | snnir inference peak <= 2x snnTorch's | 1.50 | yes |" in out


def test_one_report_is_refused_with_the_usage(ranges, capsys):
    assert ranges.main(["only-one.md"]) == 2
    assert "ranges.py" in capsys.readouterr().err


def test_stray_lines_amid_a_table_are_skipped(ranges, tmp_path, capsys):
    """A traceback printed amid a report (a peer's teardown on stderr) loses no row of either table."""
    noise = ("Exception ignored in: <function WeakIdKeyDictionary.__init__.<locals>.remove at 0x7f>\n"
             "Traceback (most recent call last):\n  File \"x.py\", line 1, in remove\nTimeLimit: did not finish\n\n")
    one, two = tmp_path / "1.md", tmp_path / "2.md"
    run = RUN.format(snntorch="600.9", ratio="1.17", met="**no**", kind="per-step")
    lines = run.splitlines(keepends=True)
    one.write_text("".join(lines[:5] + [noise] + lines[5:10] + [noise] + lines[10:]))
    two.write_text(RUN.format(snntorch="580.1", ratio="1.25", met="yes", kind="per-step"))
    assert ranges.main([str(one), str(two)]) == 0
    out = capsys.readouterr().out
    assert "Exception" not in out and "(in 1 of 2 runs)" not in out
    assert "| conv-step | 25, 128 | snnir | 515.3 | 263.4 | 1.17x-1.25x | 3.24 | identical |" in out
    assert "| conv-step | 25, 128 | floor (train per-step, infer per-step) | 300.8 |" in out
    assert "| conv-step | snnir inference peak <= 2x snnTorch's | 1.50 | yes |" in out
