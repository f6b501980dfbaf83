"""The optimisation example runs, quickly, and its exact pipeline stays exact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "optimisation_experiment.py"


def test_optimisation_example_runs_under_ten_seconds():
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    assert "--- after fuse_layer_neuron ---" in done.stdout
    assert "spikes agree with the original: 100.00%" in done.stdout
