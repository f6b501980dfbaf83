"""The prediction matrix: for each corpus file and installed library, the library's own importer
and simulation (``snnir.peers.run_real``) against ``snnir.run(snnir.imported_by(graph, library)[0])``,
the graph being the file as snnir reads it (``prediction_corpus.py``); both get :data:`OPTIONS`.

Statuses: ``exact`` (every output entry equal), ``refused`` (the library cannot import or run the
file, and snnir predicted that refusal; or snnir refuses a node that nirtorch's importers drop, after
which what runs depends on the process's string hash order), ``not predicted`` (snnir refuses to predict, naming the
node, and the library runs something anyway) and ``differs`` (a wrong prediction: :data:`KNOWN`
must say why). Each note also gives the share of output entries where the library departs from
the file's own semantics (``snnir.run`` of the graph as read), which ``snnir check`` reports.
Used by ``tests/interop/test_prediction_matrix.py`` and ``benchmarks/prediction_matrix.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from snnir.errors import SnnirError
from snnir.frontends.dialects.imported import DROPS_SILENTLY
from snnir.peers import installed, run_real

from .cells_common import Cell, Outcome, compare, run_ours
from .prediction_corpus import B, CORPUS, Entry

#: the libraries of the matrix, in its column order (``norse-1.0``: Norse 1.0.0, from ``snnir.peers.folder``)
LIBRARIES = ("snntorch", "norse", "norse-1.0", "sinabs", "rockpool", "spyx", "nengo", "lava")
#: importer options given to both sides (Sinabs' layers need a batch size; Lava runs its
#: floating-point models: its converter's default, fixed point, is not predicted)
OPTIONS = {"sinabs": {"batch_size": B}, "lava": {"fixed_pt": False}}
#: statuses that mean the prediction held
AGREES = ("exact", "refused", "not predicted")

#: (corpus file, library) -> why the prediction is wrong, for every cell expected to differ
KNOWN: dict[tuple[str, str], str] = {
    ("lif_norse.nir", "sinabs"): (
        "Sinabs runs in float32 (its default): at a membrane of exactly 1, the float32 threshold 0.1 divides "
        "it into 10 spikes where float64 gives 9.99999985 (9 spikes); test_imported_by_peers.py shows it. "
        "snnir predicts in float64; a float32 prediction would also need Sinabs' order of operations "
        "(v' = a v + x), which snnir's exact step (v' = a v + (1 - a) r x) does not share."),
}


def _prediction(graph, library: str, x: np.ndarray) -> tuple[np.ndarray | None, str]:
    """snnir's predicted output, or ``None`` and the refusal."""
    import snnir

    try:
        predicted, _ = snnir.imported_by(graph, library, **OPTIONS.get(library, {}))
        return run_ours(predicted, x), ""
    except SnnirError as exc:
        return None, str(exc)


def _moved(ours: np.ndarray, theirs: np.ndarray) -> str:
    if ours.shape != theirs.shape:
        return "moved from the file's semantics: another output shape"
    return f"{100.0 * np.mean(ours != theirs):.1f}% moved from the file's semantics"


def _spikes(out: np.ndarray) -> str:
    return f"{int(np.count_nonzero(out))} spiking entries"


def predict_check(entry: Entry, library: str) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        missing = installed(library)
        if missing is not None:
            return Outcome("unsupported", missing)
        path, graph, x = entry.path(tmp), entry.graph(tmp), entry.input()
        ours, refused = _prediction(graph, library, x)
        if ours is None and DROPS_SILENTLY in refused:  # what runs then varies with the process's hash seed
            return Outcome("refused", f"{refused}. What {library} then runs depends on the order of "
                           "nirtorch's sets of names (PYTHONHASHSEED), so it is not run")
        try:
            theirs = run_real(path, library, x, **OPTIONS.get(library, {}))
        except SnnirError as exc:
            failed = str(exc).replace(str(path), path.name)
            if ours is None:
                return Outcome("refused", f"{failed}. Predicted: {refused}")
            return Outcome("differs", f"{failed}, but snnir predicts a run. {KNOWN.get((entry.name, library), '')}")
        if ours is None:
            return Outcome("not predicted", f"{refused}; {library} runs it anyway ({_spikes(theirs)})")
        if not np.any(theirs) and not np.any(ours):
            outcome = Outcome("exact", "no spikes on either side")
        else:
            outcome = compare(ours, theirs, KNOWN.get((entry.name, library), ""))
        return Outcome(outcome.status, f"{outcome.note}; {_moved(run_ours(graph, x), theirs)}")

    return check


def _cell(entry: Entry, library: str) -> Cell:
    known = (entry.name, library) in KNOWN
    return Cell(library, entry.name, "predict", predict_check(entry, library),
                expected="differs" if known else "exact", also=() if known else AGREES)


CELLS: tuple[Cell, ...] = tuple(_cell(entry, library) for entry in CORPUS for library in LIBRARIES)

_SHORT = {"exact": "exact", "refused": "refused", "not predicted": "not predicted", "differs": "**differs**",
          "unsupported": "not installed", "error": "**error**"}


def document(rows: list[tuple[Cell, str, str]]) -> str:
    """``docs/prediction_matrix.md`` from the matrix's ``(cell, status, note)`` rows."""
    by = {(cell.op, cell.library): (status, note) for cell, status, note in rows}
    lines = [
        "# Prediction matrix",
        "",
        "Generated by `benchmarks/prediction_matrix.py` (run by `make interop`); checked by",
        "`tests/interop/test_prediction_matrix.py`. Each file of the corpus",
        "(`tests/interop/prediction_corpus.py`: the NIR paper's files and a graph per op and per",
        "semantics option, written by `snnir.write`) is imported and run by each library's own",
        "importer (`snnir.peers.run_real`) and compared with `snnir.run(snnir.imported_by(graph, library)[0])`",
        f"on the same random spikes (5-30 % of each built graph's neurons fire). Options: {OPTIONS}.",
        "",
        "*exact*: every output entry equal. *refused*: the library cannot import or run the file, as",
        "predicted, or snnir refuses a node that nirtorch's importers drop without a word (what they then",
        "run depends on Python's string hash order, so it is not run). *not predicted*: snnir refuses to",
        "predict, naming the node, and the library runs something anyway. *differs*: a wrong prediction,",
        "explained below. `norse-1.0` is Norse 1.0.0 (`make interop` puts it in `.venv-peers/`), which has no",
        "`from_nir`: it imports no file, as predicted.",
        "",
        "| file | covers | " + " | ".join(LIBRARIES) + " |",
        "| --- | --- | " + " | ".join("---" for _ in LIBRARIES) + " |",
    ]
    for entry in CORPUS:
        cells = [_SHORT.get(by.get((entry.name, lib), ("-", ""))[0], "-") for lib in LIBRARIES]
        lines.append(f"| {entry.name} | {entry.covers} | " + " | ".join(cells) + " |")
    lines += ["", "## Every cell", ""]
    for entry in CORPUS:
        for library in LIBRARIES:
            status, note = by.get((entry.name, library), ("-", ""))
            lines.append(f"- {entry.name} / {library}: {status}. {note.replace('|', '/')}")
    return "\n".join(lines) + "\n"
