"""Each cell of the interop matrix (see ``cells.py``) as a test.

A cell whose library is not installed skips saying why; a cell expected to be
``unsupported`` or ``differs`` must say why in its outcome.
"""

from __future__ import annotations

import pytest

from .cells import CELLS, Cell

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.name)
def test_cell(cell: Cell, tmp_path) -> None:
    outcome = cell.check(tmp_path)
    if outcome.status == "unsupported" and "not importable" in outcome.note:
        pytest.skip(outcome.note)
    assert outcome.status == cell.expected, f"{cell.name}: {outcome.note}"
    assert outcome.status == "exact" or outcome.note, "a cell that is not exact must say why"
