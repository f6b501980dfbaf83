"""The state a compiled module's call carries from one run of steps to the next (``graph_module.py``)."""

from __future__ import annotations

import torch

State = dict[str, torch.Tensor]


class FreshState(dict):
    """A state a call made itself (none was passed): the call's runs drop each of its values
    once replaced, so the initial zeros are not held for the whole call."""


class RunState(dict):
    """One run's state: ``owned``, the keys whose tensors the call made itself (a
    :class:`FreshState`'s zeros, an earlier run's results), which a kernel may overwrite."""

    def __init__(self, values, owned: frozenset[str]):
        super().__init__(values)
        self.owned = owned


def joined(parts: list[torch.Tensor], static: bool) -> torch.Tensor:
    """One value from its runs of steps: a static one is the same in each, others concatenate
    (a single run is returned as is, not copied)."""
    return parts[0] if static or len(parts) == 1 else torch.cat(parts)
