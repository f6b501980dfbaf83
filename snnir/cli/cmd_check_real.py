"""``snnir check --run-real``: each installed library's own importer and simulation of the file
(:func:`snnir.peers.run_real`) on the check's input, against snnir's prediction.

One row per library: ``confirmed`` (the real output equals the prediction entry for entry, the
real importer fails where the prediction said it cannot import, or it drops a node without a word,
as predicted, and then runs what is left or fails), ``not predicted`` (snnir
refused to predict; what the library does is reported), ``not installed`` or ``MISMATCH`` (named,
and the check's exit status is 2). The libraries run at their default precision, float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from snnir.errors import SnnirError, one_line
from snnir.frontends.dialects.imported import DROPS_SILENTLY

#: what a prediction refusal says when snnir declines to predict (the library may still run)
_NOT_PREDICTED = "not predicted"
_DROPS = "confirmed: it drops the node without a word"


def confirm(path: str | Path, name: str, options: dict[str, Any], x: np.ndarray | dict[str, np.ndarray],
            predicted: np.ndarray | None, refusal: str, spiking: np.ndarray | None = None) -> tuple[str, bool]:
    """``(the row's verdict, whether it is a mismatch)`` for library ``name`` on the file ``path``:
    ``x`` is the one input (a ``.npy``) or the inputs by name; ``predicted`` is snnir's
    ``[T, B, N]`` prediction, or ``None`` and ``refusal`` why not. ``spiking`` marks the columns
    that carry spikes (all by default), compared exactly; the others carry values (a membrane, a
    layer's sum), which the library computes in float32: compared to float32 rounding."""
    from snnir.peers import installed, run_real

    missing = installed(name)
    if missing is not None:
        return f"not installed: {one_line(missing)}", False
    if isinstance(x, np.ndarray):
        x = {"input": x}
    if len(x) != 1:
        return f"not run: its importer reads one input, the check has {len(x)}", False
    (inputs,) = x.values()
    try:
        real = np.asarray(run_real(path, name, inputs.astype(np.float32), **options))
    except SnnirError as exc:
        if predicted is None and DROPS_SILENTLY in refusal:
            return f"{_DROPS}, then fails ({one_line(str(exc))})", False
        if predicted is None:
            return f"confirmed: it cannot import or run the file ({one_line(str(exc))})", False
        return f"MISMATCH: predicted a run, but {one_line(str(exc))}", True
    count = f"{int(np.count_nonzero(real))} non-zero output entries"
    if predicted is None:
        if _NOT_PREDICTED in refusal:
            return f"not predicted; it runs ({count})", False
        if DROPS_SILENTLY in refusal:
            return f"{_DROPS} and runs what is left ({count}), not the file's network", False
        return f"MISMATCH: predicted it cannot import the file, but it runs ({count})", True
    real = real.reshape(*real.shape[:2], -1)
    if real.shape != predicted.shape:
        return f"MISMATCH: output shape {list(real.shape)}, predicted {list(predicted.shape)}", True
    exact = np.ones(real.shape[-1], bool) if spiking is None else spiking
    scale = max(1.0, float(np.abs(predicted[..., ~exact]).max(initial=0.0)))
    differ = np.where(exact, real != predicted, ~np.isclose(real, predicted, rtol=1e-5, atol=1e-6 * scale))
    if not differ.any():
        rounding = "" if exact.all() else ", values to float32 rounding"
        return f"confirmed: real output equals the prediction ({count}{rounding})", False
    first = int(np.nonzero(differ.reshape(len(differ), -1).any(axis=1))[0][0])
    return f"MISMATCH: {100 * differ.mean():.2f}% of output entries differ, first at step {first}", True


def print_rows(rows: list[tuple[str, str]]) -> None:
    print("real libraries (--run-real):")
    width = max(len(label) for label, _ in rows)
    for label, verdict in rows:
        print(f"{label.ljust(width)}  {verdict}")
