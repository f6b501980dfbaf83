"""The IR core depends on nothing above it: no module of ``snnir/ir`` imports the frontends,
passes, targets, CLI or peers, and outside NIR I/O (``snnir/ir/nir_io``, which needs h5py) none
imports torch, h5py or poptorch. Checked on the source, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import snnir

IR = Path(snnir.__file__).parent / "ir"
ABOVE = ("snnir.frontends", "snnir.passes", "snnir.targets", "snnir.cli", "snnir.peers")
HEAVY = ("torch", "h5py", "poptorch")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def _within(name: str, packages: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("path", sorted(IR.rglob("*.py")), ids=lambda p: str(p.relative_to(IR)))
def test_the_core_imports_nothing_above_it(path):
    imported = _imports(path)
    assert not [n for n in imported if _within(n, ABOVE)]
    if "nir_io" not in path.parts:
        assert not [n for n in imported if _within(n, HEAVY)]
