"""Targets: each is a lowering table keyed by op type."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from snnir.errors import SnnirError
from snnir.ir.graph import Graph, require_graph

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
    require_graph(graph, "compile")
    compile_for = getattr(importlib.import_module(module_name), func)
    try:
        inspect.signature(compile_for).bind(graph, **options)
    except TypeError as exc:
        raise SnnirError(f"bad options for the {target} target: {exc}") from None
    return compile_for(graph, **options)
