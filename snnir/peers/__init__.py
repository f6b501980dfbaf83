"""The real peer libraries, run on a NIR file: their own importer, their own simulation.

``run_real(path, library, x, **options)`` loads ``path`` with the library's ``from_nir``
(``options`` are that importer's own, e.g. Norse's and Spyx's ``dt``) and steps the module it
builds over ``x`` (``[T, B, *input shape]``) as the library is stepped, returning the output
``[T, B, ...]``. What ``snnir.imported_by(graph, library)`` predicts is checked against it.

Each library's conventions, kept here and nowhere else:

- snnTorch 1.0: ``import_from_nir`` builds a stateful graph module called ``module(x_t, state)``
  per step.
- Norse 1.1: ``norse.torch.from_nir(dt=0.001)``; stepped ``module(x_t, state)``.
- ``norse-1.0``: Norse 1.0.0, in a folder of its own (``snnir.peers.folder``): it has no
  ``from_nir``, so every file is refused with that reason.
- Both keep NIR's per-sample Flatten ``start_dim`` as torch's (snntorch/import_nir.py:216,
  norse/torch/utils/import_nir.py:86), so a Flatten folds the batch in: each sample runs alone,
  as a batch of one, which is what such a model can run on.
- Sinabs 3.1: ``sinabs.nir.from_nir(batch_size=B)``; one call on the time-flattened
  ``[B * T, ...]`` batch.
- Rockpool 3.1: ``from_nir``; one call on batch-first ``[B, T, ...]``.
- Spyx 1.0: ``spyx.nir.from_nir(graph, x, dt=1)`` builds and runs (JAX, float32); Spyx is
  channels-last, so image inputs go in as ``[T, B, H, W, C]`` and image outputs come back
  channel-first.
- nengo 4.1 has no NIR importer of its own: the NIR paper's ``nir_to_nengo`` recipe
  (:mod:`snnir.peers.nengo_recipe`) builds the network, ``nengo.Simulator(dt=1e-3)`` runs each sample
  (float64); its spikes are ``1 / dt`` high.
- Lava 0.10 (``lava-nc``, Python 3.10 only): the NIR paper's converter and Lava's CPU simulation,
  run in another interpreter (:mod:`snnir.peers.lava_env`); ``x`` is ``[T, B, n]``, each sample alone.

Norse and Sinabs run in ``x``'s precision where it is float64, otherwise in float32 (all
their defaults; a Sinabs layer after a neuron fails in float64, on the float32 spikes Sinabs'
neurons emit); snnTorch (whose neurons do the same), Spyx and Rockpool always in float32 (Rockpool's modules keep float32 tensors
that ``.to(torch.float64)`` does not convert). snnTorch's importer never returns on a file whose edge names no node; such a file is refused
before it starts. The libraries are optional: a library that is missing, an importer that fails, or a
simulation that fails is a :class:`SnnirError` naming the library and why.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from snnir.errors import SnnirError, escape
from snnir.peers.folder import FOLDERS, inside, probe
from snnir.peers.lava_env import lava_missing, run_lava


def nir_compat() -> None:
    """Let nir 1.0.4 take what nirtorch 2.x and snnTorch 1.0 pass it.

    nirtorch 2.x (which snnTorch 1.0 and Norse 1.1 need) passes ``type_check=`` to
    ``nir.NIRGraph``; nir 1.0.4, pinned because Sinabs 3.1.3 requires ``nir<=1.0.4``, has no
    such argument: it is accepted and ignored (type checks stay off, as asked). snnTorch 1.0's
    exporter passes ``v_reset=0`` to ``nir.LIF``/``CubaLIF``/``IF``, fields nir 1.0.4 lacks: a zero
    one is dropped (NIR 1.0.4 resets to 0 anyway), another refused. Idempotent.
    """
    import nir

    init = nir.NIRGraph.__init__
    if getattr(init, "_snnir_compat", False):
        return

    @functools.wraps(init)
    def accept_type_check(self, *args, type_check: bool = True, **kwargs):  # noqa: ARG001
        init(self, *args, **kwargs)

    accept_type_check._snnir_compat = True
    nir.NIRGraph.__init__ = accept_type_check
    for cls in (nir.IF, nir.LIF, nir.CubaLIF):
        if "v_reset" not in cls.__dataclass_fields__:
            cls.__init__ = _dropping_zero_v_reset(cls.__init__)


def _dropping_zero_v_reset(init):
    @functools.wraps(init)
    def accept_v_reset(self, *args, v_reset=None, **kwargs):
        if v_reset is not None and np.any(np.asarray(v_reset) != 0):
            raise ValueError("nir 1.0.4 cannot store a non-zero v_reset")
        init(self, *args, **kwargs)

    return accept_v_reset


def load(module: str):
    """``(module, None)``, or ``(None, reason)`` when ``module`` cannot be imported here."""
    try:
        lib = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available here"
        return None, f"{module} not importable: {type(exc).__name__}: {exc}"[:300]
    nir_compat()
    return lib, None


# --- stepping ----------------------------------------------------------------------
def step_torch(module, x: np.ndarray) -> np.ndarray:
    """Call ``module(x_t, state)`` for each step of ``x`` from ``state=None``, in ``x``'s dtype;
    the outputs stacked."""
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x))
    module = module.to(xt.dtype)
    state, outs = None, []
    with torch.no_grad():
        for t in range(len(xt)):
            out, state = module(xt[t], state)
            outs.append(out.detach().numpy())
    return np.stack(outs)


def run_sinabs(net, x: np.ndarray) -> np.ndarray:
    """Run a Sinabs network (states reset first) on ``x`` flattened to ``[B * T, ...]``, in ``x``'s dtype."""
    import sinabs
    import torch

    for module in net.modules():
        if isinstance(module, sinabs.layers.StatefulLayer):
            module.reset_states()
    flat = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1)))
    with torch.no_grad():
        out = net(flat.reshape(-1, *x.shape[2:]))
    out = (out[0] if isinstance(out, tuple) else out).numpy()
    return np.swapaxes(out.reshape(x.shape[1], x.shape[0], *out.shape[1:]), 0, 1)


def run_rockpool(net, x: np.ndarray) -> np.ndarray:
    """Run a Rockpool torch module on batch-first ``x``; its output back time-first."""
    import torch

    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1))))
    out = out[0] if isinstance(out, tuple) else out
    return np.swapaxes(out.detach().numpy(), 0, 1)


def _channels_last(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, 2, -1)) if x.ndim >= 5 else x


def _channels_first(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(x, -1, 2)) if x.ndim >= 5 else x


# --- each library: importer, then simulation --------------------------------------
def _snntorch_import(graph, x, options):
    from snntorch.import_nir import import_from_nir

    missing = _dangling_end(graph)
    if missing is not None:  # nir_to_torch would re-queue the node forever (nir_interpreter.py:442)
        raise ValueError(f"an edge names '{escape(missing)}', which is no node: nirtorch's nir_to_torch "
                         "would wait for that input forever, so it is not started")
    return import_from_nir(graph, **options)


def _dangling_end(graph) -> str | None:
    """An edge end (``node`` or ``subgraph.port``) of ``graph`` or a nested graph naming no node."""
    import nir

    for end in (end for edge in graph.edges for end in edge):
        head, _, port = end.partition(".")
        inner = graph.nodes.get(head)
        if end not in graph.nodes and not (isinstance(inner, nir.NIRGraph) and port in inner.nodes):
            return end
    for node in graph.nodes.values():
        if isinstance(node, nir.NIRGraph) and (missing := _dangling_end(node)) is not None:
            return missing
    return None


def _snntorch_run(module, x):
    """snnTorch's layers built with ``init_hidden=True`` keep their state in the module: reset
    every one before each sample (``snntorch.utils.reset`` finds only those at the top level, not
    a loop's nested one, whose state then ran on into the next sample). In float32: its neurons
    emit float32 spikes, which a float64 layer after them refuses."""
    import snntorch.utils

    def reset(net):
        snntorch.utils.reset(net)
        for layer in net.modules():
            if callable(getattr(layer, "reset_mem", None)):
                layer.reset_mem()

    return per_sample(module, x.astype(np.float32), reset)


def _norse_import(graph, x, options):
    import norse.torch

    return norse.torch.from_nir(graph, **{"ignore_warnings": True, **options})


def per_sample(module, x: np.ndarray, reset: Callable[[Any], None] = lambda module: None) -> np.ndarray:
    """Step a torch module on each sample of ``x`` alone (see the module docstring), calling
    ``reset(module)`` first; an output that lost its batch of one (a Flatten over it) gets it back."""
    outs = []
    for b in range(x.shape[1]):
        reset(module)
        out = step_torch(module, x[:, b:b + 1])
        outs.append(out if out.shape[1:2] == (1,) else out[:, None])
    return np.concatenate(outs, axis=1)


def _sinabs_import(graph, x, options):
    from sinabs.nir import from_nir

    return from_nir(graph, **{"batch_size": x.shape[1], **options}).to(_torch_dtype(x))


def _torch_dtype(x: np.ndarray):
    import torch

    return getattr(torch, str(x.dtype))


def _rockpool_import(graph, x, options):
    from rockpool.nn.modules.torch.nir import from_nir

    return from_nir(graph, **options)


def _rockpool_run(net, x):
    return run_rockpool(net, x.astype(np.float32))


def _spyx_import(graph, x, options):
    import jax.numpy as jnp
    from spyx.nir import from_nir

    _, out = from_nir(graph, jnp.asarray(_channels_last(x.astype(np.float32))), **options)
    return out


def _spyx_run(out, x):
    return _channels_first(np.asarray(out))


def _nengo_import(graph, x, options):
    from snnir.peers.nengo_recipe import NENGO_DT, build

    unknown = sorted(set(options) - {"dt"})
    if unknown:
        raise TypeError(f"the recipe and nengo.Simulator take no option {unknown[0]!r} (only dt)")
    build(graph)  # the recipe's failures are the importer's; simulate builds afresh per sample
    return graph, options.get("dt", NENGO_DT)


def _nengo_run(imported, x):
    from snnir.peers.nengo_recipe import simulate

    graph, dt = imported
    return simulate(graph, x, dt)


@dataclass(frozen=True)
class Peer:
    """How one library imports a NIR graph (``load(nir_graph, x, options)``) and simulates what
    it built (``simulate(module, x)``); ``module`` is what must import for it to be here."""

    library: str
    module: str
    load: Callable[[Any, np.ndarray, dict], Any]
    simulate: Callable[[Any, np.ndarray], np.ndarray]
    version: Callable[[str], bool] = lambda version: True
    needs: str = ""  # the versions ``version`` accepts, in words


def _below(major_minor: tuple[int, int]) -> Callable[[str], bool]:
    def check(version: str) -> bool:
        parts = [int(p) for p in version.split(".")[:2] if p.isdigit()]
        return tuple(parts) < major_minor

    return check


PEERS: dict[str, Peer] = {
    peer.library: peer
    for peer in (
        Peer("snntorch", "snntorch", _snntorch_import, _snntorch_run),
        Peer("norse", "norse.torch", _norse_import, per_sample, lambda v: not _below((1, 1))(v), "1.1 or later"),
        Peer("norse-1.0", "norse.torch", _norse_import, per_sample, _below((1, 1)), "before 1.1"),
        Peer("sinabs", "sinabs", _sinabs_import, run_sinabs),
        Peer("rockpool", "rockpool.nn.modules.torch.nir", _rockpool_import, _rockpool_run),
        Peer("spyx", "spyx.nir", _spyx_import, _spyx_run),
        Peer("nengo", "nengo", _nengo_import, _nengo_run),
    )
}


def installed(library: str) -> str | None:
    """``None`` when ``library`` can be run here, otherwise why not."""
    if library == "lava":
        return lava_missing()
    peer = _peer(library)
    if library in FOLDERS and not inside(library):
        return probe(library)[0]
    lib, reason = load(peer.module)
    if lib is None:
        return f"{library} is not installed here ({reason})"
    version = _version(peer.module)
    if version is not None and not peer.version(version):
        return f"{library} needs {peer.module.split('.')[0]} {peer.needs}; {version} is installed here"
    return None


def run_real(path: str | Path, library: str, x: np.ndarray, **options) -> np.ndarray:
    """The output of ``library``'s own importer and simulation of the NIR file ``path`` on ``x``
    (``[T, B, *input shape]``), ``[T, B, ...]``; ``options`` go to the library's importer."""
    peer = None if library == "lava" else _peer(library)
    why = installed(library)
    if why is not None:
        raise SnnirError(why)
    if library in FOLDERS:  # looked at from a child Python only: Norse 1.0.0 has no importer
        no_importer = probe(library)[1] or "snnir runs no importer from a peer folder"
        raise SnnirError(f"{library}'s importer fails on '{escape(str(path))}': {no_importer}")
    x = np.asarray(x)
    x = x.astype(np.float64 if x.dtype == np.float64 else np.float32)
    if x.ndim < 2:
        raise SnnirError(f"{library}: the input must be [T, B, ...], got shape {list(x.shape)}")
    shown = escape(str(path))
    if peer is None:
        return run_lava(path, x, shown, **options)
    import nir

    try:
        with _quiet():
            graph = nir.read(str(path))
    except Exception as exc:  # noqa: BLE001 - nir's failure to read is the user's answer
        raise SnnirError(f"{library}: nir.read cannot load '{shown}': {_reason(exc)}") from None
    try:
        with _quiet():
            module = peer.load(graph, x, options)
    except Exception as exc:  # noqa: BLE001 - the peer's failure is the finding
        raise SnnirError(f"{library}'s importer fails on '{shown}': {_reason(exc)}") from None
    try:
        with _quiet():
            return np.asarray(peer.simulate(module, x))
    except Exception as exc:  # noqa: BLE001
        raise SnnirError(f"{library}'s simulation of '{shown}' fails: {_reason(exc)}") from None


def _peer(library: str) -> Peer:
    try:
        return PEERS[library]
    except KeyError:
        raise SnnirError(f"no runner for library '{escape(library)}' (known: {', '.join(PEERS)}, lava)") from None


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module.split(".")[0])
    except PackageNotFoundError:
        return None


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


@contextlib.contextmanager
def _quiet():
    """The peers print and warn as they import and run; neither reaches our user."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield
