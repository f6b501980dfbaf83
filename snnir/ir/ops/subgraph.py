"""``Subgraph``: a nested graph used as one node (NIR's nested ``NIRGraph``).

Edges address its ports as ``"node.port"``: the nested Input ``port`` as a
destination, the nested Output ``port`` as a source; a bare ``"node"`` is
allowed when there is exactly one such port. Its state is the state of the
nodes inside it, named ``"<node>.<inner>.<state>"``.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

from snnir.errors import SnnirError
from snnir.ir.ops.base import Op, Shape

if TYPE_CHECKING:
    from snnir.ir.graph import Graph


@dataclass(frozen=True, eq=False)
class Subgraph(Op):
    op_type = "NIRGraph"
    graph: "Graph"

    def __post_init__(self) -> None:
        from snnir.ir.graph import Graph  # graph.py imports the ops package

        if not isinstance(self.graph, Graph):
            raise SnnirError(f"Subgraph.graph must be a Graph, got {type(self.graph).__name__}")
        super().__post_init__()
        # computed once from the direct children (nested Subgraphs hold theirs), so that
        # asking is O(1) at any depth; not a field, so equality is untouched
        object.__setattr__(self, "_stateful", any(op.stateful for op in self.graph.nodes.values()))

    @property
    def stateful(self) -> bool:  # type: ignore[override]
        """Whether any node inside it, at any depth, is stateful."""
        return self._stateful

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        raise SnnirError("nested graphs are shaped by infer_shapes, port by port", node)
