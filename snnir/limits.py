"""The resource limits every untrusted input is held to, settable by the caller.

One :class:`Limits` value bounds reading a file (time, memory, structure) and
what a graph may make us allocate (parameters, simulation state). Defaults
come from :data:`DEFAULTS`, each overridable by an environment variable (so
the CLI's limits can be raised without a flag) or per call
(``snnir.read(path, limits=Limits(time_s=60))``).

Invariants: every numeric field is positive and finite, ``isolate`` a bool; a bad
environment value raises :class:`SnnirError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from snnir.errors import SnnirError


@dataclass(frozen=True)
class Limits:
    """Bounds on the cost of one untrusted input.

    - ``time_s``: wall-clock seconds to parse a file of normal size (plus 1 s per 100 MB of file);
    - ``memory_bytes``: memory the parsing process may add beyond its start-up size;
    - ``data_bytes``: bytes of arrays a file may make us allocate, all counted (datasets,
      fill values of unwritten chunks, parameters our metadata says are absent zeros);
    - ``state_bytes``: bytes of simulation state (neuron and Delay buffers) one run may allocate;
    - ``depth``: nesting of HDF5 groups in a file (a nested graph takes two levels);
    - ``isolate``: parse files in a child process, so a crash or hang in the HDF5 library
      becomes an error instead of taking the caller down (files this process wrote are trusted).
    """

    time_s: float = 10.0
    memory_bytes: int = 2 << 30
    data_bytes: int = 1 << 30
    state_bytes: int = 1 << 30
    depth: int = 64
    isolate: bool = True

    def __post_init__(self) -> None:
        for name in ("time_s", "memory_bytes", "data_bytes", "state_bytes", "depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise SnnirError(f"limit {name} must be a positive finite number, got {value!r}")
        if not isinstance(self.isolate, bool):
            raise SnnirError(f"limit isolate must be True or False, got {self.isolate!r}")

    def replace(self, **changes: object) -> "Limits":
        return dataclasses.replace(self, **changes)


#: The defaults before environment overrides.
DEFAULTS = Limits()

#: Environment variable -> Limits field it overrides.
ENVIRONMENT = {
    "SNNIR_TIME_LIMIT_S": "time_s",
    "SNNIR_MEMORY_LIMIT_BYTES": "memory_bytes",
    "SNNIR_DATA_LIMIT_BYTES": "data_bytes",
    "SNNIR_STATE_LIMIT_BYTES": "state_bytes",
    "SNNIR_DEPTH_LIMIT": "depth",
    "SNNIR_ISOLATE": "isolate",
}


def current() -> Limits:
    """:data:`DEFAULTS` with the environment's overrides applied."""
    changes: dict[str, object] = {}
    for variable, name in ENVIRONMENT.items():
        text = os.environ.get(variable)
        if text is None:
            continue
        kind = type(getattr(DEFAULTS, name))
        try:
            if kind is bool:
                if text not in ("0", "1"):
                    raise ValueError(text)
                changes[name] = text == "1"
            else:
                changes[name] = kind(float(text)) if kind is int else float(text)
            DEFAULTS.replace(**{name: changes[name]})
        except (ValueError, OverflowError, SnnirError):
            what = "0 or 1" if kind is bool else "a number (positive and finite)"
            raise SnnirError(f"environment variable {variable} must be {what}, got {text!r}") from None
    return DEFAULTS.replace(**changes)
