"""snnir's extension ops (``op_type`` ``"snnir.<Name>"``), made by graph passes.

``FusedLayerNeuron(layer, neuron)``: one node computing ``y = neuron(layer(x))``
per step, where ``layer`` is an Affine, Linear, Conv1d or Conv2d and ``neuron``
any :class:`Neuron`:

    h[t] = layer(x[t])            (W x + b, or the convolution)
    y[t], s[t] = neuron(h[t], s[t-1])   (the neuron's discrete update, see ops/neuron.py)

Its state is the neuron's; its definition (:meth:`FusedLayerNeuron.expand`) is
the graph ``input -> layer -> neuron -> output``, so its state variables are
named ``"<node>.neuron.<state>"`` by the reference interpreter. Convolutions
must carry ``input_shape`` so the expansion can declare its Input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from snnir.errors import SnnirError
from snnir.ir.ops.base import Op, Shape
from snnir.ir.ops.conv import Conv1d, Conv2d
from snnir.ir.ops.io import Input, Output
from snnir.ir.ops.linear import Affine, Linear
from snnir.ir.ops.neuron import Neuron
from snnir.ir.registry import register_op

if TYPE_CHECKING:
    from snnir.ir.graph import Graph

FUSABLE_LAYERS = (Affine, Linear, Conv1d, Conv2d)
#: Metadata key naming the ``[layer, neuron]`` nodes a fused node was made from.
FUSED_FROM = "snnir.fused_from"


@dataclass(frozen=True, eq=False)
class FusedLayerNeuron(Op):
    """``y = neuron(layer(x))``; state is the neuron's (see the module docstring)."""

    op_type = "snnir.FusedLayerNeuron"
    stateful = True
    layer: Op
    neuron: Op

    def __post_init__(self) -> None:
        if not isinstance(self.layer, FUSABLE_LAYERS):
            raise SnnirError(
                f"FusedLayerNeuron.layer must be one of {[c.op_type for c in FUSABLE_LAYERS]}, "
                f"got {type(self.layer).__name__}"
            )
        if not isinstance(self.neuron, Neuron):
            raise SnnirError(f"FusedLayerNeuron.neuron must be a neuron, got {type(self.neuron).__name__}")
        if isinstance(self.layer, (Conv1d, Conv2d)) and self.layer.input_shape is None:
            raise SnnirError("FusedLayerNeuron needs a convolution with a declared input_shape")
        super().__post_init__()

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.neuron.state_names

    def input_shape(self) -> Shape:
        """The per-sample input shape the layer accepts."""
        layer = self.layer
        if isinstance(layer, (Affine, Linear)):
            return (int(layer.weight.shape[1]),)
        return (int(layer.weight.shape[1]) * layer.groups,) + tuple(layer.input_shape)

    def infer_shape(self, input_shape: Shape | None, node: str) -> Shape:
        return self.neuron.infer_shape(self.layer.infer_shape(input_shape, node), node)

    def expand(self) -> "Graph":
        """The definition in standard ops: ``input -> layer -> neuron -> output``."""
        from snnir.ir.graph import Graph  # graph.py imports the ops package

        return Graph.sequential(
            ("input", Input(self.input_shape())),
            ("layer", self.layer),
            ("neuron", self.neuron),
            ("output", Output()),
        )

    def from_expansion(self, graph: "Graph") -> "FusedLayerNeuron":
        """This op with the layer and neuron of ``graph``, an :meth:`expand` of it whose parameters
        may since have changed (trained): the inverse of :meth:`expand`."""
        return self.replace(layer=graph.nodes["layer"], neuron=graph.nodes["neuron"])

    def summary(self) -> str:
        return f"{self.layer.op_type}[{self.layer.summary()}] -> {self.neuron.op_type}[{self.neuron.summary()}]"


EXTENSION_OPS = (FusedLayerNeuron,)
for _cls in EXTENSION_OPS:
    register_op(_cls)
