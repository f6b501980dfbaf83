"""Which library (and version) wrote a NIR file, and on what evidence.

:func:`file_facts` gathers what a file shows (its ``version`` attribute, node names, every
neuron as plain NIR reads it); :func:`guess_writer` turns that into a dialect name and the
evidence, one line each. The fingerprints, from each library's exporter:

- names: Rockpool ``<i>_<Module>Torch``, Spyx ``layer_<i>``; nirtorch's exporters (Norse,
  Sinabs, snnTorch on a ``Sequential``) ``<i>`` with ``input``/``output``;
- snnTorch: ``r = tau / 1e-4`` (and a CubaLIF's ``w_in = tau_syn / 1e-4``): its dt is hard-coded;
- Spyx: ``r = beta = 1 - 1 / tau`` (time in steps);
- Sinabs and Norse write ``r = 1``: Sinabs' taus are steps (>= 1), Norse 1.1's are ``tau * dt``
  (below 1e-4 s for any usual time constant), earlier Norse's the time constant itself;
- snnir: every neuron states its semantics in snnir's metadata record.

A guess is never silent about being one: with no fingerprint it says so and names none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from snnir.errors import SnnirError

#: Dialects' writers in words, for the one-line description.
WRITERS = {
    "nir": "snnir (semantics stated in the file)", "snntorch": "snnTorch", "spyx": "Spyx", "sinabs": "Sinabs",
    "rockpool": "Rockpool", "norse": "Norse 1.1+", "norse-1.0": "Norse before 1.1",
}
#: Time constants below this (in s) are Norse 1.1's ``tau * dt``, not time constants.
NORSE_TAU_TIMES_DT_BELOW = 1e-4
_ROCKPOOL_NAME = re.compile(r"\d+_\w+Torch")
_SPYX_NAME = re.compile(r"layer_\d+")


@dataclass(frozen=True)
class FileFacts:
    """What a NIR file shows of its writer: ``version`` (the file's nir version attribute),
    ``names`` (every node path), ``neurons`` (path -> neuron op as plain NIR reads it) and
    ``stated`` (neurons whose semantics the file itself states)."""

    version: str | None
    names: tuple[str, ...]
    neurons: dict[str, Any]
    stated: frozenset[str]
    ops: tuple[str, ...]


def file_facts(path: Any, repair: bool = False) -> FileFacts:
    """Read ``path`` as written (no dialect, unverified: a peer's file may need its dialect to
    check) and collect its :class:`FileFacts`; a neuron whose parameters do not broadcast
    together is refused, naming it."""
    from snnir.ir.nir_io import read_unchecked
    from snnir.ir.ops import Neuron

    graph, report = read_unchecked(path, repair=repair)
    defaulted = {line.partition(": ")[0] for line in report.defaults_applied}
    nodes = dict(graph.walk())
    neurons = {name: op for name, op in nodes.items() if isinstance(op, Neuron)}
    for name, op in neurons.items():  # the fingerprints compare parameters element by element
        try:
            op.neuron_shape()
        except SnnirError as exc:
            raise SnnirError(exc.reason, name) from None
    return FileFacts(report.version, tuple(nodes), neurons, frozenset(set(neurons) - defaulted),
                     tuple(sorted({op.op_type for op in nodes.values()})))


def _tau(op: Any) -> np.ndarray | None:
    names = op.param_names()
    if "tau_mem" in names:
        return np.asarray(op.tau_mem, float)
    if "tau" in names:
        return np.asarray(op.tau, float)
    return None


def _all(facts: FileFacts, test) -> bool:
    """``test(op, tau)`` holds for every neuron that has a time constant (and there is one)."""
    timed = [(op, _tau(op)) for op in facts.neurons.values() if _tau(op) is not None]
    return bool(timed) and all(test(op, tau) for op, tau in timed)


def _snntorch_gains(op: Any, tau: np.ndarray) -> bool:
    ok = np.allclose(np.asarray(op.r, float) * 1e-4, tau, rtol=1e-4)
    if "w_in" in op.param_names():
        ok = ok and np.allclose(np.asarray(op.w_in, float) * 1e-4, op.tau_syn, rtol=1e-4)
    return bool(ok)


def guess_writer(facts: FileFacts) -> tuple[str | None, list[str]]:
    """``(dialect name or None, evidence lines)`` for the file ``facts`` describe."""
    evidence = [f"nir version attribute {facts.version!r}" + (" (before NIR 1.0)" if _before_1(facts.version) else "")]
    top = [name for name in facts.names if "." not in name]
    if facts.neurons and facts.stated == set(facts.neurons):
        return "nir", evidence + ["every neuron states its semantics in snnir's metadata record"]
    if any(_ROCKPOOL_NAME.fullmatch(name) for name in top):
        from snnir.frontends.dialects.rockpool import written_dt

        evidence.append("node names like '0_LinearTorch' (Rockpool's to_nir: index_ModuleTorch)")
        dts = {written_dt(op) for op in facts.neurons.values()} - {None}
        if dts:
            evidence.append(f"r = tau exp(-dt/tau)/dt at dt = {', '.join(f'{dt:.6g}' for dt in sorted(dts))}")
        return "rockpool", evidence
    if any(_SPYX_NAME.fullmatch(name) for name in top):
        evidence.append("node names like 'layer_0' (Spyx's to_nir)")
        if _all(facts, lambda op, tau: np.allclose(op.r, 1.0 - 1.0 / tau, rtol=1e-5)):
            evidence.append("r = 1 - 1/tau on every neuron (Spyx's beta, time in steps)")
        return "spyx", evidence
    if _all(facts, _snntorch_gains):
        return "snntorch", evidence + ["r = tau/1e-4 (and w_in = tau_syn/1e-4) on every neuron: "
                                       "snnTorch's export with its hard-coded dt = 1e-4"]
    if _all(facts, lambda op, tau: np.all(tau > 1) and np.allclose(op.r, 1.0 - 1.0 / tau, rtol=1e-5)):
        return "spyx", evidence + ["r = 1 - 1/tau on every neuron (Spyx's beta, time in steps)"]
    return _unit_gain_writer(facts, top, evidence)


def _unit_gain_writer(facts: FileFacts, top: list[str], evidence: list[str]) -> tuple[str | None, list[str]]:
    """Sinabs and both Norses write ``r = 1``; their time constants tell them apart."""
    if not facts.neurons or not all(np.allclose(op.r, 1.0) for op in facts.neurons.values()):
        return None, evidence + ["no library's fingerprint (names, r and tau) fits: read it as plain NIR "
                                 "or name the dialect"]
    evidence.append("r = 1 on every neuron (Norse's and Sinabs' exporters)")
    taus = [_tau(op) for op in facts.neurons.values() if _tau(op) is not None]
    nirtorch_names = {"input", "output"} <= set(top) and all(n.isdigit() for n in top if n not in ("input", "output"))
    if not taus:
        if "SumPool2d" in facts.ops:
            return "sinabs", evidence + ["IF neurons and SumPool2d (Sinabs' to_nir; Norse's writes no pooling)"]
        return None, evidence + ["IF neurons only: Sinabs or Norse (they write IF alike)"]
    if all(np.all(tau >= 1.0) for tau in taus):
        return "sinabs", evidence + ["time constants of 1 or more: Sinabs' time in steps"]
    if all(np.all(tau < NORSE_TAU_TIMES_DT_BELOW) for tau in taus):
        return "norse", evidence + [f"time constants below {NORSE_TAU_TIMES_DT_BELOW:g} s: Norse 1.1's tau * dt"]
    if nirtorch_names:
        return "norse-1.0", evidence + ["time constants in seconds as written (tau = 1/tau_inv) and nirtorch's "
                                        "node names: Norse before 1.1"]
    return None, evidence + ["time constants in seconds but not nirtorch's node names: not a known "
                             "library's export (written with nir directly?)"]


def _before_1(version: str | None) -> bool:
    match = re.match(r"(\d+)\.", version or "")
    return bool(match) and int(match.group(1)) < 1


def describe_writer(path: Any, repair: bool = False) -> str:
    """One line: the guessed writer and dialect, with the evidence."""
    name, evidence = guess_writer(file_facts(path, repair=repair))
    who = f"{WRITERS.get(name, name)} (read with --dialect {name})" if name else "unknown"
    return f"written by: {who}; evidence: {'; '.join(evidence)}"
