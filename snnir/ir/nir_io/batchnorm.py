"""How BatchNorms (``snnir.BatchNorm``; NIR has none) go into files.

A BatchNorm whose one source is a Linear, Affine, Conv1d or Conv2d node that feeds nothing else
(and shares no parameters) is folded into that layer: the layer's weight and bias scaled per
output channel, standard NIR that every reader loads. The folded layer rounds otherwise than the
two did, so the caller warns that a reader's spikes may differ where a membrane comes within
rounding of its threshold. Any other BatchNorm is written as itself (lossless; only snnir reads
it), and the caller warns; a library dialect refuses it naming the node.

This is the writer's job, not a pass: in memory the BatchNorm keeps the model's bits.
"""

from __future__ import annotations

import numpy as np

from snnir.ir.graph import Graph
from snnir.ir.ops import Affine, Conv1d, Conv2d, Linear, Subgraph
from snnir.ir.ops.base import Op
from snnir.ir.ops.norm import BatchNorm

FOLDS_INTO = (Affine, Linear, Conv1d, Conv2d)


def fold_batchnorms(graph: Graph, prefix: str = "") -> tuple[Graph, list[str], list[str]]:
    """``(graph with every foldable BatchNorm folded into its layer, the paths of those folded,
    the paths of those kept)``."""
    folded: list[str] = []
    kept: list[str] = []
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph):
            inner, inner_folded, inner_kept = fold_batchnorms(op.graph, f"{prefix}{name}.")
            nodes[name] = op.replace(graph=inner)
            folded += inner_folded
            kept += inner_kept
            continue
        if not isinstance(op, BatchNorm):
            continue
        into = [src for src, dst in edges if dst == name]
        layer = into[0] if len(into) == 1 else None
        if (layer is None or not isinstance(nodes.get(layer), FOLDS_INTO) or graph.tie_of(layer)
                or [dst for src, dst in edges if src == layer] != [name]
                or nodes[layer].weight.shape[0] != op.channels):
            kept.append(prefix + name)
            continue
        nodes[layer] = folded_layer(nodes[layer], op)
        del nodes[name]
        edges = [(layer if src == name else src, dst) for src, dst in edges if (src, dst) != (layer, name)]
        folded.append(prefix + name)
    return graph.replace(nodes=nodes, edges=tuple(edges)), folded, kept


def folded_layer(layer: Op, bn: BatchNorm) -> Op:
    """``layer`` then ``bn`` as one layer of the same family (a Linear becomes an Affine), in float64."""
    scale, shift = bn.coefficients()
    weight = np.asarray(layer.weight, np.float64)
    bias = scale * np.broadcast_to(np.asarray(getattr(layer, "bias", np.zeros(())), np.float64), scale.shape) + shift
    trainable = tuple(n for n in ("weight", "bias") if n in layer.trainable or n in bn.trainable)
    weight = scale.reshape((-1,) + (1,) * (weight.ndim - 1)) * weight
    if isinstance(layer, (Affine, Linear)):
        return Affine(weight=weight, bias=bias, trainable=trainable, metadata=layer.metadata)
    return layer.replace(weight=weight, bias=bias, trainable=trainable)
