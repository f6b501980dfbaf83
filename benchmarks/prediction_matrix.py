"""Run every prediction cell (``tests/interop/prediction_cells.py``) and write ``docs/prediction_matrix.md``.

Usage: ``python benchmarks/prediction_matrix.py [--out docs/prediction_matrix.md]`` (``make interop``).
Each cell: a corpus file and a library; the library's own importer and simulation against
``snnir.imported_by``'s prediction. Exit status 1 when a cell does not hold (see the cells' docstring).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from interop_matrix import REPO, run_rows  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from tests.interop.prediction_cells import CELLS, document

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "prediction_matrix.md")
    args = parser.parse_args(argv)
    rows = run_rows(CELLS, desc="prediction cells")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(document(rows))
    print(f"wrote {args.out}")
    return 0 if all(cell.holds(status) for cell, status, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
