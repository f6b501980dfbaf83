"""Targets: each is a lowering table keyed by op type."""

from __future__ import annotations

import importlib
from typing import Any

from snnir.errors import SnnirError
from snnir.ir.graph import Graph

#: target name -> "module:function" taking (graph, **options)
TARGETS = {
    "torch": "snnir.targets.torch:compile_torch",
    "ipu": "snnir.targets.ipu:compile_ipu",
    "onnx": "snnir.targets.ipu.onnx_export:compile_onnx",
}


def compile(graph: Graph, target: str = "torch", **options: Any) -> Any:  # noqa: A001
    """Compile ``graph`` for ``target``; see each target's compile function."""
    try:
        module_name, func = TARGETS[target].split(":")
    except KeyError:
        raise SnnirError(f"unknown target '{target}' (known: {', '.join(TARGETS)})") from None
    return getattr(importlib.import_module(module_name), func)(graph, **options)
