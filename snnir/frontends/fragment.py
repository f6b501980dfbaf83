"""A layer's translation: a few named ops wired together, entered and left by name."""

from __future__ import annotations

from dataclasses import dataclass, field

from snnir.ir.ops import Op


@dataclass
class Fragment:
    """Ops for one traced layer.

    Node keys are suffixes: ``""`` is the layer's own name, ``"x"`` becomes
    ``"<layer>_x"``. The layer's input is summed into every ``entries`` node;
    its output is ``exit``'s output. ``edges`` connect nodes inside the fragment.
    """

    nodes: dict[str, Op]
    entries: tuple[str, ...] = ("",)
    exit: str = ""
    edges: tuple[tuple[str, str], ...] = field(default=())

    @staticmethod
    def single(op: Op) -> "Fragment":
        return Fragment({"": op})

    def name(self, layer: str, key: str) -> str:
        return layer if key == "" else f"{layer}_{key}"
