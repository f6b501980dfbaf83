"""``fold_affine`` and ``fuse_layer_neuron``: merge chains of nodes into one.

``fold_affine`` re-associates arithmetic (``W2 (W1 x)`` becomes ``(W2 W1) x``),
so results agree with the original to float64 rounding, not bit for bit;
folded parameters are float64. ``fuse_layer_neuron`` is exact.
"""

from __future__ import annotations

import numpy as np

from snnir.ir.graph import Graph
from snnir.ir.ops import Affine, Conv1d, Conv2d, Linear, Scale
from snnir.ir.ops.fused import FUSED_FROM, FusedLayerNeuron
from snnir.ir.ops.probe import probed_neurons
from snnir.ir.shapes import infer_shapes
from snnir.passes.analysis import LAYERS, NEURONS, in_degree, in_edges, out_degree, out_edges
from snnir.passes.base import Match, RewritePass, Rule, register_pass

AFFINE_LIKE = (Linear, Affine, Scale)


def _single_link(graph: Graph, first: str, second: str) -> str | None:
    """``None`` if ``first``'s only consumer is ``second`` and that is ``second``'s only input."""
    if out_degree(graph, first) != 1 or out_edges(graph, first) != [(first, second)]:
        return f"'{first}' has consumers other than '{second}'"
    if in_degree(graph, second) != 1 or in_edges(graph, second) != [(first, second)]:
        return f"'{second}' has inputs other than '{first}'"
    return None


def _rewire(graph: Graph, removed: str, survivor: str, replacement) -> Graph:
    """Drop ``removed`` (which feeds only ``survivor``); its inputs now feed ``survivor``."""
    edges = []
    for src, dst in graph.edges:
        if src == removed:
            continue
        edges.append((src, survivor) if dst == removed else (src, dst))
    nodes = {n: op for n, op in graph.nodes.items() if n != removed}
    nodes[survivor] = replacement
    return graph.replace(nodes=nodes, edges=tuple(edges))


def _matrix(op) -> tuple[np.ndarray, np.ndarray | None]:
    weight = np.asarray(op.weight, dtype=np.float64)
    if isinstance(op, Affine):
        return weight, np.broadcast_to(np.asarray(op.bias, dtype=np.float64), (weight.shape[0],))
    return weight, None


class FoldAffine(Rule):
    """``first -> second`` with both in {Linear, Affine, Scale} becomes one node
    named ``second``: y = W2 (W1 x + b1) + b2 = (W2 W1) x + (W2 b1 + b2)."""

    name = "fold_affine"
    pattern = (AFFINE_LIKE, AFFINE_LIKE)

    def check(self, graph: Graph, match: Match) -> str | None:
        first, second = match.nodes
        reason = _single_link(graph, first, second)
        if reason:
            return reason
        a, b = graph.nodes[first], graph.nodes[second]
        for name, op in ((first, a), (second, b)):
            if op.trainable:
                return f"'{name}' has trainable parameters {list(op.trainable)}; folding would change what trains"
        scales = [op for op in (a, b) if isinstance(op, Scale)]
        if len(scales) == 1 and scales[0].scale.ndim > 1:
            return f"a Scale of shape {list(scales[0].scale.shape)} cannot fold into a matrix"
        if not scales:
            (n_out1, n_in), (n_out, _) = a.weight.shape, b.weight.shape
            before, after = n_out1 * n_in + n_out * n_out1, n_out * n_in
            if after > before:
                return f"folding would raise MACs per step from {before} to {after} (a bottleneck)"
        return None

    def rewrite(self, graph: Graph, match: Match) -> Graph:
        first, second = match.nodes
        a, b = graph.nodes[first], graph.nodes[second]
        return _rewire(graph, first, second, _compose(a, b, b.metadata))


def _compose(a, b, metadata):
    if isinstance(a, Scale) and isinstance(b, Scale):
        return Scale(np.asarray(a.scale, np.float64) * np.asarray(b.scale, np.float64), metadata=metadata)
    if isinstance(a, Scale):
        weight, bias = _matrix(b)
        weight = weight * np.broadcast_to(np.asarray(a.scale, np.float64), (weight.shape[1],))[None, :]
    elif isinstance(b, Scale):
        weight, bias = _matrix(a)
        s = np.broadcast_to(np.asarray(b.scale, np.float64), (weight.shape[0],))
        weight, bias = s[:, None] * weight, (None if bias is None else s * bias)
    else:
        (w1, b1), (w2, b2) = _matrix(a), _matrix(b)
        weight = w2 @ w1
        bias = None if b1 is None and b2 is None else (0 if b1 is None else w2 @ b1) + (0 if b2 is None else b2)
    if bias is None:
        return Linear(weight, metadata=metadata)
    return Affine(weight, np.asarray(bias, dtype=np.float64), metadata=metadata)


fold_affine = register_pass()(
    RewritePass("fold_affine", (FoldAffine(),), "fold chains of Linear/Affine/Scale into one node")
)


class FuseLayerNeuron(Rule):
    """``layer -> neuron`` (layer's only consumer, neuron's only input) becomes one
    ``snnir.FusedLayerNeuron`` node named after the neuron."""

    name = "fuse_layer_neuron"
    pattern = (LAYERS, NEURONS)

    def check(self, graph: Graph, match: Match) -> str | None:
        if match.nodes[1] in probed_neurons(graph):
            return f"a StateProbe reads the state of '{match.nodes[1]}', which must stay a neuron node"
        return _single_link(graph, *match.nodes)

    def rewrite(self, graph: Graph, match: Match) -> Graph:
        layer_name, neuron_name = match.nodes
        layer, neuron = graph.nodes[layer_name], graph.nodes[neuron_name]
        if isinstance(layer, (Conv1d, Conv2d)) and layer.input_shape is None:
            layer = layer.replace(input_shape=tuple(infer_shapes(graph).inputs[layer_name][1:]))
        fused = FusedLayerNeuron(layer, neuron, metadata={FUSED_FROM: [layer_name, neuron_name]})
        return _rewire(graph, layer_name, neuron_name, fused)


fuse_layer_neuron = register_pass()(
    RewritePass("fuse_layer_neuron", (FuseLayerNeuron(),), "fuse a layer and the neuron it alone feeds")
)
