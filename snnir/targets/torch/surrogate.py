r"""Spike functions with surrogate gradients.

Forward is the exact spike ``H(x)`` of ``x = u - threshold`` (``x > 0``, or
``x >= 0`` with ``inclusive``); backward replaces ``dH/dx`` by ``grad(x)``:

- ``fast_sigmoid``:   1 / (slope |x| + 1)^2                      (snnTorch, slope 25)
- ``arctan``:         (slope / 2) / (1 + (pi slope x / 2)^2)     (snnTorch atan, slope 2)
- ``sigmoid``:        slope s (1 - s),  s = sigmoid(slope x)     (slope 5)
- ``straight_through``: 1
- ``triangular``:     slope max(0, 1 - slope |x|)                (slope 1)
"""

from __future__ import annotations

import math
import numbers
import reprlib
from dataclasses import dataclass

import torch

from snnir.errors import SnnirError, shown, warn
from snnir.ir.graph import Graph

DEFAULT_SLOPES = {
    "fast_sigmoid": 25.0,
    "arctan": 2.0,
    "sigmoid": 5.0,
    "straight_through": 1.0,
    "triangular": 1.0,
}
#: snnTorch's names of the same surrogates (its factories ``surrogate.atan()``...)
ALIASES = {"atan": "arctan", "straight_through_estimator": "straight_through"}


@dataclass(frozen=True)
class Surrogate:
    name: str = "fast_sigmoid"
    slope: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.name, str) and self.name in ALIASES:
            object.__setattr__(self, "name", ALIASES[self.name])
        if not isinstance(self.name, str) or self.name not in DEFAULT_SLOPES:
            raise SnnirError(f"unknown surrogate '{self.name}' (known: {', '.join(DEFAULT_SLOPES)})")
        if self.slope is None:
            object.__setattr__(self, "slope", DEFAULT_SLOPES[self.name])
        if not (isinstance(self.slope, (int, float)) and math.isfinite(self.slope) and self.slope > 0):
            raise SnnirError(f"surrogate slope must be a positive number, got {self.slope!r}")

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative at ``x = u - threshold``."""
        k = float(self.slope)
        if self.name == "fast_sigmoid":
            return 1.0 / (k * x.abs() + 1.0) ** 2
        if self.name == "arctan":
            return (k / 2) / (1 + (math.pi / 2 * k * x) ** 2)
        if self.name == "sigmoid":
            s = torch.sigmoid(k * x)
            return k * s * (1 - s)
        if self.name == "straight_through":
            return torch.ones_like(x)
        return k * torch.clamp(1 - k * x.abs(), min=0)

    def spike(self, x: torch.Tensor, inclusive: bool = False) -> torch.Tensor:
        """``H(x)`` forward, ``grad(x)`` backward."""
        return _Spike.apply(x, self, inclusive)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, surrogate: Surrogate, inclusive: bool) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return (x >= 0 if inclusive else x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad_out * ctx.surrogate.grad(x), None, None


def traced_surrogate(graph: Graph) -> Surrogate | None:
    """The surrogate the graph's neurons were traced with (their ops' metadata ``"surrogate"``,
    ``{"name", "slope"}``, as the snnTorch frontend records it; a fused op's neuron's), or None
    where no op says.
    Two different ones, or a record whose name or slope is not one (a file's string or array), are
    a SnnirError naming the node (a compiled module takes one); an op traced with one we have none
    equal to (``{"unknown": ...}``) is warned about, naming it."""
    found: dict[tuple[str, float], str] = {}
    unknown: list[tuple[str, str]] = []
    for path, op in graph.walk():
        metadata = getattr(op, "neuron", op).metadata  # a fused layer-neuron op keeps its neuron's
        recorded = metadata.get("surrogate") if isinstance(metadata, dict) else None
        if not isinstance(recorded, dict):
            continue
        if "unknown" in recorded:
            unknown.append((path, str(recorded["unknown"])))
        elif set(recorded) == {"name", "slope"}:
            surrogate = _recorded(recorded, path)
            found.setdefault((surrogate.name, surrogate.slope), path)
    if len(found) > 1:
        (first, at), (other, node) = sorted(found.items(), key=lambda item: item[1])[:2]
        raise SnnirError(f"neurons were traced with different surrogate gradients ({first[0]} slope {first[1]:g} "
                         f"at '{shown(at)}', {other[0]} slope {other[1]:g} here); a compiled module trains with one: "
                         "pass surrogate= (and slope=)", node)
    chosen = Surrogate(*next(iter(found))) if found else None
    if unknown:
        (node, what), more = sorted(unknown)[0], f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        fallback = (f"the other neurons' {chosen.name} slope {chosen.slope:g}" if chosen is not None
                    else "fast_sigmoid slope 25")
        warn(f"node '{shown(node)}'{more} was traced with the surrogate gradient {shown(what)}, which no surrogate "
             f"of snnir's computes: training uses the one given to compile, by default {fallback}")
    return chosen


def _recorded(recorded: dict, node: str) -> Surrogate:
    """The surrogate a ``{"name", "slope"}`` record names, else a SnnirError naming ``node``."""
    slope = recorded["slope"]
    try:
        if isinstance(slope, bool) or not isinstance(slope, numbers.Real):
            raise TypeError
        return Surrogate(recorded["name"], float(slope))
    except (TypeError, OverflowError):
        reason = f"surrogate slope must be a positive number, got {reprlib.repr(slope)}"
    except SnnirError as exc:
        reason = exc.reason
    raise SnnirError(f"its metadata 'surrogate' (the one it was traced with) is unusable: {reason} "
                     "(pass surrogate= to compile with one)", node)


def chosen_surrogate(graph: Graph, surrogate: str | Surrogate | None = None, slope: float | None = None) -> Surrogate:
    """What a compiled module trains with: ``surrogate`` (a name or :class:`Surrogate`), else the one
    the graph was traced with (:func:`traced_surrogate`), else ``fast_sigmoid``; ``slope`` replaces its slope."""
    if surrogate is None:
        surrogate = traced_surrogate(graph) or Surrogate()
    if not isinstance(surrogate, Surrogate):
        return Surrogate(surrogate, slope)
    return surrogate if slope is None else Surrogate(surrogate.name, slope)
