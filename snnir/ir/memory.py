"""What simulating a graph allocates, counted from its shapes before anything is allocated.

A run holds the parameters, each stateful node's state for the batch (a ``Delay``'s
buffer is its longest delay in steps times its size), every node's value for one step
(a max pool's padded copy of its input too), and the ``[T, B, ...]`` arrays of inputs and results (state traces too when recording).
:meth:`Footprint.check` refuses a run whose state is over ``Limits.state_bytes``
(naming the node when one node's state alone is over) or whose whole count is over
``Limits.memory_bytes`` (see :mod:`snnir.limits`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.ops import Op
from snnir.ir.ops.pool import MAX_POOLS
from snnir.ir.shapes import Shapes
from snnir.limits import ENVIRONMENT, Limits, current

_VARIABLE = {field: variable for variable, field in ENVIRONMENT.items()}


def format_bytes(size: int) -> str:
    """``2576980377`` -> ``"2.4 GiB"``."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def check_limit(needed: int, limits: Limits, field: str, what: str, node: str | None = None) -> None:
    """Refuse ``what``, which needs ``needed`` bytes, when that is over ``limits.<field>``;
    the message says how to raise the limit."""
    limit = getattr(limits, field)
    if needed > limit:
        raise SnnirError(
            f"{what} needs {format_bytes(needed)}, more than the limit {field} of {format_bytes(limit)} "
            f"(raise it with limits=Limits({field}=...) or the environment variable {_VARIABLE[field]})",
            node,
        )


def resolve_limits(limits: Limits | None) -> Limits:
    """``limits``, or the defaults with the environment's overrides."""
    if limits is None:
        return current()
    if not isinstance(limits, Limits):
        raise SnnirError(f"limits must be a snnir.limits.Limits, got {type(limits).__name__}")
    return limits


def parameter_bytes(op: Op) -> int:
    """Bytes of ``op``'s arrays as stored, those of ops it holds (an extension's layer and neuron) included."""
    return sum(a.nbytes for a in _arrays(op))


def _arrays(op: Op):
    """``op``'s parameter arrays, those of ops it holds included."""
    yield from (np.asarray(a) for a in op.params().values())
    for name in op.attribute_names():
        if isinstance(getattr(op, name), Op):
            yield from _arrays(getattr(op, name))


def _size(shape) -> int:
    return int(np.prod(shape, dtype=object)) if shape is not None else 0


@dataclass(frozen=True)
class Footprint:
    """What a graph makes a run hold, counted once: ``parameters`` in bytes as stored and
    ``parameter_elements`` (the float item size, 0 for other kinds, and how many numbers of it:
    a run computing in another float type holds a converted copy of each); per sample,
    ``states`` (node path, op type, numbers of state), ``values`` (every node's output, one
    step), ``padded`` (every max pool's -inf padded copy of its input, one step) and ``ends``
    (the Inputs' and Outputs' numbers per step)."""

    parameters: int
    parameter_elements: tuple[tuple[int, int], ...]
    states: tuple[tuple[str, str, int], ...]
    values: int
    padded: int
    ends: int

    @classmethod
    def of(cls, graph: Graph, shapes: Shapes) -> "Footprint":
        states = tuple(
            (path, op.op_type, op.state_elements(shapes.outputs[path], path))
            for path, op in graph.walk()
            if op.stateful and op.state_names and path in shapes.outputs
        )
        stored, elements = 0, {}
        for _, op in graph.walk():
            for array in _arrays(op):
                size = array.dtype.itemsize if array.dtype.kind == "f" else 0
                elements[size] = elements.get(size, 0) + array.size
                stored += array.nbytes
        return cls(
            parameters=stored,
            parameter_elements=tuple(sorted(elements.items())),
            states=states,
            values=sum(_size(shape) for shape in shapes.outputs.values()),
            padded=sum(op.padded_elements(shapes.inputs[path]) for path, op in graph.walk()
                       if isinstance(op, MAX_POOLS) and shapes.inputs.get(path) is not None),
            ends=sum(_size(shapes.outputs.get(name)) for name in graph.inputs + graph.outputs),
        )

    def check(self, batch: int, *, itemsize: int, steps: int = 0, record: bool = False,
              limits: Limits | None = None) -> None:
        """Refuse (SnnirError) a run of ``steps`` steps on ``batch`` samples of ``itemsize``-byte
        floats over ``limits``; ``steps=0`` counts no ``[T, B, ...]`` arrays. Parameters stored as
        another type count a copy at ``itemsize`` besides (a bool weight costs 1 + 8 bytes a number
        in the reference interpreter)."""
        limits = resolve_limits(limits)
        for path, op_type, elements in self.states:
            check_limit(batch * elements * itemsize, limits, "state_bytes", f"{op_type} state for a batch of {batch}",
                        path)
        state = sum(elements for _, _, elements in self.states)
        check_limit(batch * state * itemsize, limits, "state_bytes", f"the state of all nodes for a batch of {batch}")
        arrays = steps * (self.ends + (state if record else 0))
        parameters = self.parameters + itemsize * sum(n for size, n in self.parameter_elements if size != itemsize)
        what = (f"simulating {steps} steps of a batch of {batch} ({format_bytes(parameters)} of parameters, "
                f"{format_bytes(batch * state * itemsize)} of state)")
        check_limit(parameters + batch * (state + self.values + self.padded + arrays) * itemsize, limits,
                    "memory_bytes", what)
