"""Merge saved ``bench.py`` reports into RESULTS.md's tables: each figure the range over the runs.

    python benchmarks/ranges.py out/bench-1.md out/bench-2.md

Prints the suite table (medians only, ``a-b`` where the runs differ) and the targets table, where a
target counts as met only if every run met it. A row present in some runs only is marked so.
"""
from __future__ import annotations

import re
import sys

SUITE_HEADER = "| case | T, B | contender |"
TARGET_HEADER = "| case | target | value | met |"
FIGURE = re.compile(r"^\s*(-?[0-9]+(?:\.[0-9]+)?)(x?)")


def rows(text: str, header: str) -> list[list[str]]:
    """The cells of every data row of the tables starting with ``header`` (a report may hold one).
    A table ends where another table's header (a row followed by ``|---``) starts; lines that are
    no row (a peer's warning or traceback printed amid the table, blank lines) are skipped."""
    out, inside = [], False
    lines = text.splitlines()
    for line, after in zip(lines, lines[1:] + [""]):
        if not line.startswith("|") or line.startswith("|---"):
            continue
        if after.startswith("|---"):
            inside = line.startswith(header)
        elif inside:
            out.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return out


def spread(cells: list[str]) -> str:
    """One cell over the runs: the range of its leading figure (brackets dropped), else the text if equal."""
    figures = [FIGURE.match(cell) for cell in cells]
    if all(figures):
        values = sorted(float(m.group(1)) for m in figures)
        digits = max(len(m.group(1).partition(".")[2]) for m in figures)
        unit = figures[0].group(2)
        low, high = (f"{v:.{digits}f}{unit}" for v in (values[0], values[-1]))
        return low if low == high else f"{low}-{high}"
    return cells[0] if len(set(cells)) == 1 else " / ".join(cells)


def merge(reports: list[str], header: str, key_columns: int) -> list[list[str]]:
    """Rows keyed by their first ``key_columns`` cells, in the first report's order, the rest spread."""
    tables = [{key_of(r[:key_columns]): r for r in rows(text, header)} for text in reports]
    keys = list(dict.fromkeys(k for table in tables for k in table))
    merged = []
    for key in keys:
        present = [table[key] for table in tables if key in table]
        width = max(len(r) for r in present)
        cells = [spread([r[i] if i < len(r) else "" for r in present]) for i in range(width)]
        if len(present) < len(tables):
            cells[-1] += f" (in {len(present)} of {len(tables)} runs)"
        merged.append(list(key) + cells[key_columns:] if len(set(r[key_columns - 1] for r in present)) > 1
                      else present[0][:key_columns] + cells[key_columns:])
    return merged


def key_of(cells: list[str]) -> tuple[str, ...]:
    """A row's identity: its key cells without bracketed remarks (the floor names its kind per run)."""
    return tuple(re.sub(r" \(.*\)$", "", cell) for cell in cells)


def met_in_all(reports: list[str]) -> list[list[str]]:
    """The targets table: the value's range, and 'yes' only where every run met the target."""
    merged = merge(reports, TARGET_HEADER, 2)
    verdicts = [{tuple(r[:2]): r[3] for r in rows(text, TARGET_HEADER)} for text in reports]
    for row in merged:
        said = [v.get(tuple(row[:2]), "absent") for v in verdicts]
        row[3] = "yes" if all(s == "yes" for s in said) else "no" if all(s != "yes" for s in said) else "in one run only"
    return merged


def table(header: str, body: list[list[str]]) -> str:
    width = header.count("|") - 1
    return "\n".join([header, "|" + " --- |" * width] + ["| " + " | ".join(r) + " |" for r in body])


def main(paths: list[str]) -> int:
    if len(paths) < 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    reports = [open(path, encoding="utf-8").read() for path in paths]
    suite_header = next(line for line in reports[0].splitlines() if line.startswith(SUITE_HEADER))
    print(table(suite_header, merge(reports, SUITE_HEADER, 3)))
    print()
    print(table(TARGET_HEADER, met_in_all(reports)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
