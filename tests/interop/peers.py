"""Loading the peer SNN libraries for the interop checks, and the one shim they need.

nirtorch 2.x (which snnTorch 1.0 and Norse 1.1 need) passes ``type_check=`` to
``nir.NIRGraph``; nir 1.0.4 — pinned because Sinabs 3.1.3 requires ``nir<=1.0.4`` —
has no such argument. :func:`nir_compat` drops it (type checks stay off, as asked).
snnTorch 1.0's exporter also passes ``v_reset=0`` to ``nir.LIF``/``CubaLIF``, a field
nir 1.0.4 lacks; the shim drops it when it is zero (NIR 1.0.4 resets to 0 anyway).
"""

from __future__ import annotations

import functools
import importlib

import nir
import numpy as np


def nir_compat() -> None:
    """Let ``nir.NIRGraph`` accept (and ignore) nirtorch 2.x's ``type_check`` keyword."""
    init = nir.NIRGraph.__init__
    if getattr(init, "_snnir_compat", False):
        return

    @functools.wraps(init)
    def accept_type_check(self, *args, type_check: bool = True, **kwargs):  # noqa: ARG001
        init(self, *args, **kwargs)

    accept_type_check._snnir_compat = True
    nir.NIRGraph.__init__ = accept_type_check
    for cls in (nir.IF, nir.LIF, nir.CubaLIF):
        if "v_reset" not in cls.__dataclass_fields__:
            cls.__init__ = _dropping_zero_v_reset(cls.__init__)


def _dropping_zero_v_reset(init):
    @functools.wraps(init)
    def accept_v_reset(self, *args, v_reset=None, **kwargs):
        if v_reset is not None and np.any(np.asarray(v_reset) != 0):
            raise ValueError("nir 1.0.4 cannot store a non-zero v_reset")
        init(self, *args, **kwargs)

    return accept_v_reset


def load(module: str):
    """Import ``module`` or return the reason it cannot be used here."""
    try:
        lib = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available here"
        return None, f"{module} not importable: {type(exc).__name__}: {exc}"[:300]
    nir_compat()
    return lib, None
