"""Shared test fixtures: the published NIR files and random-graph helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("SNNIR_FIXTURES", REPO.parent / "shared" / "fixtures" / "nir-paper"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """``../shared/fixtures/nir-paper`` (override with SNNIR_FIXTURES)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"the NIR paper fixtures are not at {FIXTURES} (set SNNIR_FIXTURES)")
    return FIXTURES
