r"""GPU kernels in Triton for the torch target (an optional dependency: ``pip install snnir[gpu]``).

:mod:`~snnir.targets.torch.gpu.scan` runs a neuron over all T steps as one Triton kernel,
forward and BPTT backward, for every neuron op and semantics option of the Python loop
(the specification, which it equals spike for spike). On the same kernels and cuBLAS GEMMs,
:mod:`~snnir.targets.torch.gpu.neuron_linear` runs a neuron with the Linear layer it hands its
spikes to, and :mod:`~snnir.targets.torch.gpu.recurrent` a recurrent component (a neuron and its
feedback layer) over all steps. The choice (:func:`enabled`), for all three:

- ``triton=None`` (the default): on CUDA tensors where Triton is installed, unless
  ``SNNIR_TRITON=0``;
- ``triton=True``: also on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``
  set before Triton is first imported), which is how the tests run the kernels without a
  GPU; where Triton is not installed, one warning and the plain-torch path;
- ``triton=False``: never.

Before the first use on a device a small forward and backward runs through the kernels; where
it fails (no C compiler for Triton's launcher, an unsupported GPU...), one warning, and the
plain-torch path runs there instead.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings

import torch


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Whether Triton can be imported here."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether Triton runs kernels in its interpreter (on CPU tensors, with numpy)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def enabled(choice: bool | None, x: torch.Tensor) -> bool:
    """Whether the Triton kernels should run on ``x`` (see the module docstring)."""
    if choice is False:
        return False
    setting = os.environ.get("SNNIR_TRITON") if choice is None else None
    if setting == "0" or (setting != "1" and choice is None and not x.is_cuda):  # asked per neuron call: no more
        return False
    if not available():
        if choice is True:
            _warn_missing()
        return False
    if x.is_cuda:
        return _works(str(x.device))
    if x.device.type == "cpu" and interpreting() and (choice is True or setting == "1"):
        return _works("cpu")
    return False


@functools.lru_cache(maxsize=None)
def _works(device: str) -> bool:
    """Whether the kernels run on ``device`` (tried once; a failure warns once)."""
    try:
        from snnir.targets.torch.gpu import scan

        scan.self_test(torch.device(device))
    except Exception as exc:  # no compiler, no driver, an unsupported GPU: never fatal
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
        warnings.warn(
            f"snnir: the Triton kernels do not run on {device} ({type(exc).__name__}: {reason}); "
            "using the plain-torch path",
            RuntimeWarning,
            stacklevel=4,
        )
        return False
    return True


@functools.lru_cache(maxsize=None)
def _warn_missing() -> None:
    warnings.warn(
        "snnir: triton=True but Triton is not installed (pip install 'snnir[gpu]'); using the plain-torch path",
        RuntimeWarning,
        stacklevel=4,
    )


def state_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the kernels keep the state in: float64 for float64 inputs, else float32
    (bf16/fp16 inputs are widened as they are read)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32
