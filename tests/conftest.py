"""Shared test fixtures: the published NIR files, the built C++ kernels (and which a test ran), random-graph helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The suite checks the Python loop, the torch target's specification, unless told otherwise
# (``SNNIR_NATIVE=1 make test`` runs it all on the C++ kernels); the kernels' own tests opt in.
os.environ.setdefault("SNNIR_NATIVE", "0")
# Reading a file (a child process that starts and parses it) may take more than the default 10 s
# on a loaded machine; tests not about that limit get 120 s, tests about it pass their own Limits.
os.environ.setdefault("SNNIR_TIME_LIMIT_S", "120")

# The NIR paper's published files ship with the repository (BSD-3; see their README.md).
FIXTURES = Path(os.environ.get("SNNIR_FIXTURES", REPO / "tests" / "fixtures" / "nir-paper"))


@pytest.fixture(scope="session")
def native_kernels():
    """``snnir.targets.torch.native`` with every C++ kernel built (once; about 35 s the first
    time); skips where they cannot be built."""
    from snnir.targets.torch import native

    missing = [kernel for kernel, took in native.build().items() if took is None]
    if missing:
        pytest.skip(f"the native kernels {missing} could not be built here (no C++ compiler or ninja)")
    return native


class _Recorded:
    """A kernel's extension that adds the kernel's name to ``used`` when a function of it is looked up."""

    def __init__(self, extension, kernel: str, used: set):
        self._extension, self._kernel, self._used = extension, kernel, used

    def __getattr__(self, name):
        self._used.add(self._kernel)
        return getattr(self._extension, name)


@pytest.fixture
def kernels_used(native_kernels, monkeypatch) -> set:
    """The names of the C++ kernels the test calls (every kernel built), filled as it runs."""
    used: set[str] = set()
    real = native_kernels.extension

    def recording(kernel="neuron_scan", build=True):
        extension = real(kernel, build)
        return None if extension is None else _Recorded(extension, kernel, used)

    monkeypatch.setattr(native_kernels, "extension", recording)
    return used


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``tests/fixtures/nir-paper`` (override with SNNIR_FIXTURES); missing files fail, never skip."""
    assert FIXTURES.is_dir(), f"the NIR paper fixtures are not at {FIXTURES}"
    return FIXTURES
