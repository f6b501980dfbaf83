"""The shared limits: defaults, environment overrides, refusals of bad values."""

from __future__ import annotations

import pytest

from snnir.errors import SnnirError
from snnir.limits import DEFAULTS, Limits, current


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("SNNIR_TIME_LIMIT_S", "2.5")
    monkeypatch.setenv("SNNIR_DATA_LIMIT_BYTES", "1e6")
    monkeypatch.setenv("SNNIR_ISOLATE", "0")
    limits = current()
    assert (limits.time_s, limits.data_bytes, limits.isolate) == (2.5, 1_000_000, False)
    assert limits.memory_bytes == DEFAULTS.memory_bytes


@pytest.mark.parametrize("variable, text", [("SNNIR_TIME_LIMIT_S", "soon"), ("SNNIR_ISOLATE", "yes"),
                                            ("SNNIR_DATA_LIMIT_BYTES", "inf"), ("SNNIR_DEPTH_LIMIT", "-1"),
                                            ("SNNIR_TIME_LIMIT_S", "inf"), ("SNNIR_MEMORY_LIMIT_BYTES", "0")])
def test_bad_environment_value(monkeypatch, variable, text):
    monkeypatch.setenv(variable, text)
    with pytest.raises(SnnirError, match=f"environment variable {variable} must be"):
        current()


@pytest.mark.parametrize("field, value", [("time_s", 0), ("data_bytes", float("inf")), ("memory_bytes", float("nan")),
                                          ("depth", "64"), ("state_bytes", True), ("isolate", "no")])
def test_bad_limit(field, value):
    """Infinity was accepted and overflowed where a limit became an integer (OverflowError)."""
    with pytest.raises(SnnirError, match=f"limit {field} must be"):
        Limits(**{field: value})


def test_the_suite_reads_files_under_a_generous_time_limit_and_the_default_stays(monkeypatch):
    """tests/conftest.py sets 120 s so a loaded machine does not trip reads that are not about the
    limit; the tests about it (tests/ir/test_hostile_files.py) pass their own short Limits."""
    assert current().time_s >= 60, "reads not about the time limit need a generous one (tests/conftest.py)"
    assert DEFAULTS.time_s == 10.0
    monkeypatch.delenv("SNNIR_TIME_LIMIT_S")
    assert current().time_s == 10.0
