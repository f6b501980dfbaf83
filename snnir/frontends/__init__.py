"""Frontends: torch-style networks and library dialects into snnir graphs."""

from __future__ import annotations

from typing import Any

from snnir.ir.graph import Graph


def trace(model: Any, sample_input: Any) -> Graph:
    """Trace a torch-style spiking network into a Graph (see :func:`snnir.frontends.tracer.trace`)."""
    from snnir.frontends.tracer import trace as _trace

    return _trace(model, sample_input)
