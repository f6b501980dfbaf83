"""The prediction matrix: for each corpus file and library, the library's own importer and
simulation (``snnir.peers.run_real``) against ``snnir.run(snnir.imported_by(graph, library)[0])``,
the graph being the file as snnir reads it (``prediction_corpus.py``).

A cell is ``exact`` when every output entry is equal (or when both sides refuse the file the
same way: ``unsupported``, with both reasons); otherwise it ``differs`` and :data:`KNOWN` must
say why. Each note also gives the share of entries where the library departs from the file's
own semantics (``snnir.run`` of the graph as read): what ``snnir check`` warns about.
Used by ``tests/interop/test_prediction_matrix.py`` and ``benchmarks/prediction_matrix.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from snnir.errors import SnnirError
from snnir.peers import installed, run_real

from .cells import Cell, Outcome, compare, run_ours
from .prediction_corpus import CORPUS, Entry

#: the libraries of the matrix, in its column order
LIBRARIES = ("snntorch", "norse", "norse-1.0", "sinabs", "rockpool", "spyx")

#: (corpus file, library) -> (expected status, why) for every cell that is not exact
KNOWN: dict[tuple[str, str], tuple[str, str]] = {}


def _prediction(graph, library: str, x: np.ndarray) -> tuple[np.ndarray | None, str]:
    """snnir's predicted output, or ``None`` and the refusal."""
    import snnir

    try:
        predicted, _ = snnir.imported_by(graph, library)
        return run_ours(predicted, x), ""
    except SnnirError as exc:
        return None, str(exc)


def _moved(ours: np.ndarray, theirs: np.ndarray) -> str:
    if ours.shape != theirs.shape:
        return "the file's own semantics: another output shape"
    return f"{100.0 * np.mean(ours != theirs):.1f}% of entries move from the file's own semantics"


def predict_check(entry: Entry, library: str) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        missing = installed(library)
        if missing is not None:
            return Outcome("unsupported", missing)
        path, graph, x = entry.path(tmp), entry.graph(tmp), entry.input()
        ours, refused = _prediction(graph, library, x)
        try:
            theirs = run_real(path, library, x)
        except SnnirError as exc:
            if ours is None:
                return Outcome("unsupported", f"{exc}; snnir predicts the refusal: {refused}")
            return Outcome("differs", f"{exc}, but snnir predicts a run")
        if ours is None:
            return Outcome("differs", f"snnir refuses ({refused}), but {library} runs")
        if not np.any(theirs) and not np.any(ours):
            outcome = Outcome("exact", "no spikes on either side")
        else:
            outcome = compare(ours, theirs, KNOWN.get((entry.name, library), ("", ""))[1])
        return Outcome(outcome.status, f"{outcome.note}; {_moved(run_ours(graph, x), theirs)}")

    return check


CELLS: tuple[Cell, ...] = tuple(
    Cell(library, entry.name, "predict", predict_check(entry, library),
         KNOWN.get((entry.name, library), ("exact", ""))[0])
    for entry in CORPUS for library in LIBRARIES
)
