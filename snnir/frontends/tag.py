"""The :class:`Tag` the recorder (:mod:`snnir.frontends.recorder`) gives each tensor a traced run makes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tag:
    """What a tensor carries: ``value`` (sum of ``sources``' outputs), ``state``
    (state ``why`` of the neuron node ``sources[0]``), ``sequence`` (the whole
    input), ``step`` (step ``stacked`` of the input, one of ``x.unbind(0)``, as
    ``for x_t in x`` makes them: read as ``x[t]`` when used), ``fresh`` (zeros made
    during the run: a neuron state set to zero) or ``bad``.
    ``padded``: an all-zero untraced tensor was summed in (a delayed edge's
    value at the first step, see
    :func:`snnir.frontends.tracer.trace_submodules`)."""

    kind: str
    sources: tuple[str, ...] = ()
    why: str = ""
    padded: bool = False
    stacked: int | None = None  # torch.stack'ed along this dim: one step per index
