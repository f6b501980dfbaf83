"""The compile options every level of a torch graph module shares."""

from __future__ import annotations

from typing import Any

import torch

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.ops import Op
from snnir.targets.torch.surrogate import Surrogate


class Options:
    """Compile options shared by every level: which parameters train, the
    surrogate, the dtype and whether neuron scans may use the fast path."""

    def __init__(
        self, graph: Graph, trainable: Any, surrogate: Surrogate, dtype: torch.dtype, fast: bool, detach_reset: bool,
        time_chunk: int = 0, recompute: bool = False, native: bool | None = None, triton: bool | None = None,
    ):
        self.surrogate, self.dtype, self.fast, self.detach_reset = surrogate, dtype, fast, detach_reset
        self.time_chunk, self.recompute, self.native, self.triton = time_chunk, recompute, native, triton
        self.mode = trainable if isinstance(trainable, str) else "list"
        if self.mode not in ("metadata", "all", "list"):
            raise SnnirError(f"trainable must be 'metadata', 'all' or a list of names, got {trainable!r}")
        self.names = set() if isinstance(trainable, str) else set(trainable)
        if self.mode == "list":
            known = set()
            for path, op in graph.walk():
                known.update(op.trainable_params())
                known.update(f"{path}.{p}" for p in op.trainable_params())
            unknown = sorted(self.names - known)
            if unknown:
                raise SnnirError(f"trainable names {unknown} match no parameter that can train ('name' or "
                                 "'node.name'; a BatchNorm's mean and var are fixed statistics)")

    def trainable_for(self, path: str, op: Op) -> frozenset[str]:
        if self.mode == "metadata":
            return frozenset(op.trainable)
        names = op.trainable_params()
        if self.mode == "all":
            return frozenset(p for p in names if op.params()[p].dtype.kind == "f")
        return frozenset(p for p in names if p in self.names or f"{path}.{p}" in self.names)
