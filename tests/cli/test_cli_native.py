"""``snnir native``: where the C++ kernels live and whether they are built; ``--build``."""

from __future__ import annotations

from unittest import mock

from snnir.cli.main import main
from snnir.targets.torch import native


def test_status_names_each_kernel_and_its_library(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(native, "library_path", lambda kernel: tmp_path / f"{kernel}.so")
    (tmp_path / "neuron_scan.so").write_bytes(b"")
    assert main(["native"]) == 0
    out = capsys.readouterr().out
    assert f"neuron_scan: built\n  {tmp_path / 'neuron_scan.so'}" in out
    assert "neuron_linear: not built: compiled modules use the Python loop (snnir native --build)" in out


def test_build_reports_times_and_fails_when_a_kernel_cannot_be_built(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(native, "library_path", lambda kernel: tmp_path / f"{kernel}.so")
    times = dict.fromkeys(native.KERNELS, 2.0) | {"neuron_scan": 1.5}
    with mock.patch.object(native, "build", return_value=times):
        for kernel in native.KERNELS:
            (tmp_path / f"{kernel}.so").write_bytes(b"")
        assert main(["native", "--build"]) == 0
    assert "neuron_scan: built (1.5 s)" in capsys.readouterr().out
    with mock.patch.object(native, "build", return_value=times | {"neuron_linear": None}):
        assert main(["native", "--build"]) == 1
    assert "neuron_linear: could not be built: compiled modules use the Python loop" in capsys.readouterr().out
