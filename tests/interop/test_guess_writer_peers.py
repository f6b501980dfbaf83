"""``guess_writer`` on files the installed peer libraries write (the interop import cells'
own exports): each names its writer, or — Norse's IF-only net, written as Sinabs writes
it — names none rather than guess."""

from __future__ import annotations

import warnings

import pytest

from snnir.frontends.dialects.guess import file_facts, guess_writer

from .cells import CELLS

pytestmark = pytest.mark.interop

EXPECTED = {"snntorch": "snntorch", "norse": "norse", "sinabs": "sinabs", "rockpool": "rockpool", "spyx": "spyx"}
CASES = [cell for cell in CELLS if cell.direction == "import" and cell.library in EXPECTED
         and cell.op in ("LIF", "CubaLIF", "IF", "conv") and cell.expected != "unsupported"]


@pytest.mark.parametrize("cell", CASES, ids=lambda cell: cell.name)
def test_peer_files_name_their_writer(cell, tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = cell.check(tmp_path)
    written = sorted(tmp_path.glob("*.nir"))
    if not written:
        pytest.skip(f"{cell.library} wrote no file here: {outcome.note}")
    dialect, evidence = guess_writer(file_facts(written[0]))
    if (cell.library, cell.op) == ("norse", "IF"):
        assert dialect is None and "Sinabs or Norse" in evidence[-1]
    else:
        assert dialect == EXPECTED[cell.library], evidence
