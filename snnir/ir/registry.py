"""The one op registry. Serialisation, verification and every target's
lowering table are keyed by it, and tests loop over it."""

from __future__ import annotations

from snnir.errors import SnnirError
from snnir.ir.ops.base import Op

OPS: dict[str, type[Op]] = {}


def register_op(cls: type[Op]) -> type[Op]:
    """Add an op class under its ``op_type``; extension ops use a ``"snnir."`` prefix."""
    existing = OPS.get(cls.op_type)
    if existing is not None and existing is not cls:
        raise SnnirError(f"op type '{cls.op_type}' is already registered by {existing.__qualname__}")
    OPS[cls.op_type] = cls
    return cls


def op_class(op_type: str, node: str | None = None) -> type[Op]:
    try:
        return OPS[op_type]
    except KeyError:
        raise SnnirError(f"unknown op type '{op_type}' (known: {', '.join(sorted(OPS))})", node) from None


def is_extension(op_type: str) -> bool:
    """Extension ops are ours; standard NIR readers do not know them."""
    return op_type.startswith("snnir.")
