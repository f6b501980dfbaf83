"""Nodes a graph module runs as a nested level (``graph_module.py``): an extension op without a
torch lowering, run by its reference expansion; the refusal of hooks on such nodes."""

from __future__ import annotations

from torch import nn

from snnir.errors import SnnirError
from snnir.ir.ops import Op
from snnir.targets.torch.modules import Shared


class ExpandedModule(nn.Module):
    """An extension op without a torch lowering, run by its reference expansion.
    Its parameters are those of the expansion; ``to_op`` returns the op with them, as trained."""

    def __init__(self, op: Op, expansion: nn.Module):
        super().__init__()
        self._source = Shared(op)
        self.expansion = expansion

    def initial_state(self, batch, dtype, device):
        return self.expansion.initial_state(batch, dtype, device)

    def run_ports(self, ports, static_ports, state, record, steps, cache, batch):
        return self.expansion.run_ports(ports, static_ports, state, record, steps, cache, batch)

    def to_op(self) -> Op:
        op = self._source.value
        if hasattr(op, "from_expansion"):
            return op.from_expansion(self.expansion.to_graph())
        if next(self.expansion.parameters(), None) is None:
            return op
        raise SnnirError(f"cannot export the parameters of '{op.op_type}': the op defines no from_expansion, "
                         "the inverse of its expansion", self.expansion._prefix.rstrip("."))


def refuse_hooks(module: nn.Module, path: str, op: Op) -> None:
    """A module run as a nested level (a subgraph, an expanded extension op such as a fused
    layer-neuron node) is never called itself, so a hook on it would never run: refused by name."""
    if module._forward_hooks or module._forward_pre_hooks:
        parts = [name for name, m in module.named_modules() if not any(True for _ in m.children())]
        raise SnnirError(
            f"a forward hook on this {op.op_type} node would never run: it runs as its parts, so hook "
            f"those (its submodules {', '.join(repr(p) for p in parts)}), or compile the graph without "
            "fusing it (snnir.optimize(graph, level=1))", path)
