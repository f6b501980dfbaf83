"""Where the Triton kernels' tests run, imported by each of them before anything imports Triton.

Without a GPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, set here unless
given) on CPU tensors; with ``TRITON_INTERPRET=0`` and a GPU on CUDA. The importing test module
skips, saying why, where Triton is not installed or there is nowhere to run the kernels.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton's first import: kernels run on CPU

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton", reason="Triton is not installed (pip install 'snnir[gpu]'): its kernels are untested")

from snnir.targets.torch import gpu  # noqa: E402

if gpu.interpreting():
    DEVICE = "cpu"
elif torch.cuda.is_available():
    DEVICE = "cuda"
else:
    pytest.skip("TRITON_INTERPRET=0 and no GPU: nowhere to run the Triton kernels", allow_module_level=True)


@pytest.fixture(autouse=True)
def kernels_checked():
    """The kernels' first-use check has run (it calls the kernels, which tests count)."""
    assert gpu.enabled(True, torch.empty(1, device=DEVICE)), "the Triton kernels do not run"
