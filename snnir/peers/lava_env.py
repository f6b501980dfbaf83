"""Lava, run as a real peer: ``lava-nc`` needs Python 3.10 (snnir runs on 3.11), so the file is
imported and simulated by ``snnir/peers/lava_runner.py`` in a separate interpreter, exchanging ``.npy``
files and JSON (never pickle).

The interpreter is ``$SNNIR_LAVA_PYTHON``, else ``.venv-lava/bin/python`` in the repository root
(``scripts/make_lava_env.sh`` makes it). Absent, or without ``lava`` and ``nir``: Lava is not
installed here, and :func:`lava_missing` says why.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from snnir.errors import SnnirError
from snnir.peers.child import ask

RUNNER = Path(__file__).resolve().parent / "lava_runner.py"
REPO = RUNNER.parents[2]
TIMEOUT_S = 900
_PROBE = "import importlib.metadata as m, lava.magma, nir; print(m.version('lava-nc'))"


def lava_python() -> str:
    """The interpreter that runs Lava (it may not exist)."""
    return os.environ.get("SNNIR_LAVA_PYTHON") or str(REPO / ".venv-lava" / "bin" / "python")


@functools.lru_cache(maxsize=None)
def _probe(python: str) -> tuple[str | None, str | None]:
    """``(lava-nc version, None)`` or ``(None, why not)`` for ``python``."""
    if not Path(python).is_file():
        return None, (f"no Lava interpreter at {python} (set SNNIR_LAVA_PYTHON, or run "
                      "scripts/make_lava_env.sh to make .venv-lava with a Python 3.10)")
    return ask([python, "-c", _PROBE], f"{python}, importing lava and nir,", 120)


def lava_missing() -> str | None:
    """``None`` when Lava can be run here, otherwise why not."""
    version, why = _probe(lava_python())
    return None if version else f"lava is not installed here: {why}"


def run_lava(path: str | Path, x: np.ndarray, shown: str, **options) -> np.ndarray:
    """The Lava runner's output on ``x`` (``[T, B, *shape]``, each sample flattened as Lava's
    ``RingBuffer`` feeds it): ``[T, B, m]``; its failure is a :class:`SnnirError` naming Lava and why."""
    x = x.reshape(*x.shape[:2], -1)
    with tempfile.TemporaryDirectory(prefix="snnir-lava-") as folder:
        x_path, out_path = Path(folder) / "x.npy", Path(folder) / "out.npy"
        np.save(x_path, np.asarray(x, dtype=np.float64), allow_pickle=False)
        # -I: the runner's folder is not on its path (this package's modules must not shadow Lava's)
        command = [lava_python(), "-I", str(RUNNER), str(path), str(x_path), str(out_path), json.dumps(options)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SnnirError(f"lava's simulation of '{shown}' did not end within {TIMEOUT_S} s") from None
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or ["no message"]
            what = "importer fails on" if done.returncode == 3 else "simulation fails on"
            raise SnnirError(f"lava's {what} '{shown}': {lines[-1][:300]}")
        return np.load(out_path, allow_pickle=False)
