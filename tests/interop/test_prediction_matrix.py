"""The prediction matrix (``prediction_cells.py``) as tests: every cell holds (exact, or a refusal
that was predicted or named) or is a known difference that says why; the corpus fires as
promised; ``docs/prediction_matrix.md`` is what the cells give now.

A cell whose library is not installed skips saying why. The doc check uses the outcomes of this
module's cells, so it runs (last) only when all of them ran here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .prediction_cells import CELLS, KNOWN, document
from .prediction_corpus import CORPUS, firing_rates

pytestmark = pytest.mark.interop

DOC = Path(__file__).resolve().parents[2] / "docs" / "prediction_matrix.md"
OUTCOMES: dict[str, tuple] = {}


@pytest.fixture(scope="module")
def corpus_folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("prediction-corpus")


@pytest.mark.parametrize("entry", [e for e in CORPUS if e.build is not None], ids=lambda e: e.name)
def test_every_built_graph_fires_5_to_30_percent(entry, corpus_folder) -> None:
    rates = firing_rates(entry.graph(corpus_folder), entry.input())
    assert rates and all(0.05 <= rate <= 0.30 for rate in rates.values()), rates


def test_every_paper_file_has_a_layer_firing_5_to_30_percent(corpus_folder) -> None:
    for entry in (e for e in CORPUS if e.build is None):
        rates = firing_rates(entry.graph(corpus_folder), entry.input())
        assert any(0.05 <= rate <= 0.30 for rate in rates.values()), (entry.name, rates)


def test_every_known_difference_is_a_cell() -> None:
    assert set(KNOWN) <= {(cell.op, cell.library) for cell in CELLS}


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.name)
def test_cell(cell, corpus_folder) -> None:
    outcome = cell.check(corpus_folder)
    OUTCOMES[cell.name] = (cell, outcome.status, outcome.note)
    if outcome.status == "unsupported":
        pytest.skip(outcome.note)
    assert cell.holds(outcome.status), f"{cell.name}: {outcome.status}: {outcome.note}"
    assert outcome.status == "exact" or outcome.note, "a cell that is not exact must say why"


def test_the_doc_is_current() -> None:
    """Regenerate with ``python benchmarks/prediction_matrix.py``."""
    rows = [OUTCOMES.get(cell.name) for cell in CELLS]
    if None in rows:
        pytest.skip("needs every cell of this module run first")
    if any(status == "unsupported" for _, status, _ in rows):
        pytest.skip("a library is not installed here: the doc is written where all are")
    assert DOC.read_text() == document(rows)
