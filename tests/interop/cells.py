"""The interop compatibility matrix: one check per (library, op, direction) cell.

``import``: a network built in the library, written by its own ``to_nir``, read with
``snnir.read(dialect=library)`` and run in the reference interpreter; its spikes are
compared with the library's own simulation of the same random spike input.
``export``: a graph built in snnir, written with ``snnir.write(dialect=library)``, loaded
with the library's ``from_nir`` and run by it; compared with ``snnir.run`` of our graph.

Each check returns an :class:`Outcome`: ``exact`` (every spike equal), ``differs``
(with the share of spike entries that differ, and why) or ``unsupported`` (why).
snnTorch's and Sinabs' spike functions return float32, Rockpool and Spyx (JAX) default to
it: those peers run in float32, Norse in float64; we run float64 on the same parameters.
Used by ``tests/interop/test_matrix.py`` and ``benchmarks/interop_matrix.py``.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from snnir import peers
from snnir.ir import Graph
from snnir.ir.ops import IF, LIF, Affine, Conv2d, Delay, Flatten, Input, Output, SumPool2d
from snnir.ir.semantics import Semantics

from .cells_common import (B, T, Cell, Outcome, _excitatory, _our_feedforward, _save, _skip_unless,
                           _snntorch_sequence, _torch, _written, compare, read_quiet, run_ours, spikes_in)
from .cells_paper import _braille, _cnn_sinabs
from .cells_snntorch_export import SNNTORCH_EXPORT


# --- snnTorch -------------------------------------------------------------------
def _snntorch_import(kind: str) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        snn, missing = _skip_unless("snntorch")
        if missing:
            return missing
        from snntorch.export_nir import export_to_nir

        torch = _torch()
        if kind == "conv":
            net = torch.nn.Sequential(
                torch.nn.Conv2d(2, 4, 3), snn.Leaky(beta=0.8, threshold=0.5, init_hidden=True),
                torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 5), snn.Leaky(beta=0.9, init_hidden=True))
            x = spikes_in((2, 8, 8))
        elif kind == "CubaLIF-recurrent":
            net = torch.nn.Sequential(
                torch.nn.Linear(6, 10), snn.RSynaptic(alpha=0.7, beta=0.85, threshold=0.4, linear_features=10,
                                                      init_hidden=True),
                torch.nn.Linear(10, 4), snn.Synaptic(alpha=0.6, beta=0.9, threshold=0.3, init_hidden=True))
            x = spikes_in((6,), scale=1.5)
        else:
            neuron = (snn.Leaky(beta=0.8, threshold=0.5, init_hidden=True) if kind == "LIF"
                      else snn.Synaptic(alpha=0.6, beta=0.9, threshold=0.3, init_hidden=True))
            net = torch.nn.Sequential(torch.nn.Linear(6, 10), neuron, torch.nn.Linear(10, 4),
                                      snn.Leaky(beta=0.9, threshold=0.4, init_hidden=True))
            x = spikes_in((6,), scale=1.5)
        theirs = _snntorch_sequence(_excitatory(net), x)
        path = _save(export_to_nir(net, torch.from_numpy(x[0]), ignore_dims=[0]), tmp, f"snntorch-{kind}", x.shape[-2:], (4, 6, 6))
        return compare(run_ours(read_quiet(path, dialect="snntorch"), x), theirs)

    return check


def _snntorch_export(kind: str) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        snn, missing = _skip_unless("snntorch")
        if missing:
            return missing
        from snntorch.import_nir import import_from_nir

        graph = _our_feedforward(kind, Semantics(dt=1e-3, discretisation="exp", reset="zero"))
        module = import_from_nir(_written(graph, tmp, f"snntorch-{kind}", "snntorch"))
        x = spikes_in((6,), scale=1.5)
        return compare(run_ours(graph, x), peers.step_torch(module, x))

    return check


# --- Norse ----------------------------------------------------------------------
def _norse_import(kind: str) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        norse, missing = _skip_unless("norse.torch")
        if missing:
            return missing
        torch = _torch()
        nt = norse
        if kind == "conv":
            layers = [torch.nn.Conv2d(2, 4, 3), nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(60.0),
                                                                                v_th=torch.tensor(0.1)))]
            x = spikes_in((2, 8, 8))
        else:
            cell = {
                "LIF": lambda: nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(200.0),
                                                                 v_th=torch.tensor(0.1))),
                "CubaLIF": lambda: nt.LIFCell(nt.LIFParameters(tau_mem_inv=torch.tensor(80.0),
                                                               tau_syn_inv=torch.tensor(150.0),
                                                               v_th=torch.tensor(0.2))),
                "IF": lambda: nt.IAFCell(nt.IAFParameters(v_th=torch.tensor(0.6))),
            }[kind]
            layers = [torch.nn.Linear(6, 10), cell(), torch.nn.Linear(10, 4), cell()]
            x = spikes_in((6,), scale=3.0)
        net = _excitatory(nt.SequentialState(*layers).double())
        xt = torch.from_numpy(x).double()
        with torch.no_grad():
            state, outs = None, []
            for t in range(T):
                out, state = net(xt[t], state)
                outs.append(out.numpy())
        path = _save(nt.to_nir(net, xt[0], dt=1e-3), tmp, f"norse-{kind}", x.shape[-2:])
        return compare(run_ours(read_quiet(path, dialect="norse"), x), np.stack(outs))

    return check


def _norse_export(kind: str) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        norse, missing = _skip_unless("norse.torch")
        if missing:
            return missing

        torch = _torch()
        graph = _our_feedforward(kind, Semantics(dt=5e-4, discretisation="exp", reset="zero"))
        module = norse.from_nir(_written(graph, tmp, f"norse-{kind}", "norse"), dt=1e-3, ignore_warnings=True).double()
        x = spikes_in((6,), scale=1.5)
        state, outs = None, []
        with torch.no_grad():
            for t in range(T):
                out, state = module(torch.from_numpy(x[t]).double(), state)
                outs.append(out.numpy())
        return compare(run_ours(graph, x), np.stack(outs))

    return check


# --- Sinabs ---------------------------------------------------------------------
def _sinabs_import(kind: str) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        sinabs, missing = _skip_unless("sinabs")
        if missing:
            return missing
        import sinabs.layers as sl
        from sinabs.nir import to_nir

        torch = _torch()
        if kind == "conv":
            net = torch.nn.Sequential(
                torch.nn.Conv2d(2, 4, 3, bias=False), sl.IAFSqueeze(batch_size=B), sl.SumPool2d(2),
                torch.nn.Flatten(), torch.nn.Linear(4 * 3 * 3, 5), sl.LIFSqueeze(tau_mem=torch.tensor(6.0),
                                                                               spike_threshold=0.3, batch_size=B))
            x = spikes_in((2, 8, 8))
        else:
            neuron = (sl.LIFSqueeze(tau_mem=torch.tensor(5.0), spike_threshold=0.2, batch_size=B) if kind == "LIF"
                      else sl.IAFSqueeze(batch_size=B))
            net = torch.nn.Sequential(torch.nn.Linear(6, 10), neuron, torch.nn.Linear(10, 4),
                                      sl.LIFSqueeze(tau_mem=torch.tensor(4.0), spike_threshold=0.2, batch_size=B))
            x = spikes_in((6,), scale=2.0)
        theirs = peers.run_sinabs(_excitatory(net), x)
        sample = torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1))).reshape(-1, *x.shape[2:])
        path = _save(to_nir(net, sample), tmp, f"sinabs-{kind}", x.shape[-2:], (4, 3, 3))
        return compare(run_ours(read_quiet(path, dialect="sinabs"), x), theirs)

    return check


def _sinabs_export(kind: str) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        sinabs, missing = _skip_unless("sinabs")
        if missing:
            return missing
        from sinabs.nir import from_nir

        sem = Semantics(dt=1e-3, discretisation="euler", reset="subtract", threshold_compare="ge",
                        spike_mode="multi")
        graph = _our_feedforward(kind, sem)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = from_nir(_written(graph, tmp, f"sinabs-{kind}", "sinabs"), batch_size=B)
        x = spikes_in((6,), scale=1.0)
        return compare(run_ours(graph, x), peers.run_sinabs(net, x))

    return check


def _sinabs_export_conv(tmp: Path) -> Outcome:
    """Our Conv2d -> IF -> SumPool2d -> Flatten -> Affine -> LIF, loaded by Sinabs' ``from_nir``."""
    sinabs, missing = _skip_unless("sinabs")
    if missing:
        return missing
    from sinabs.nir import from_nir

    sem = Semantics(dt=1e-3, discretisation="euler", reset="subtract", threshold_compare="ge", spike_mode="multi")
    rng = np.random.default_rng(1)
    graph = Graph.sequential(
        ("input", Input(shape=(2, 8, 8))),
        ("conv", Conv2d(weight=np.abs(rng.normal(0.3, 0.3, (4, 2, 3, 3))), bias=np.zeros(4), input_shape=(8, 8))),
        ("n1", IF(r=np.full((4, 6, 6), 1.0 / sem.dt), v_threshold=np.full((4, 6, 6), 1.0), sem=sem)),
        ("pool", SumPool2d(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))),
        ("flat", Flatten(start_dim=0)),
        ("fc", Affine(weight=rng.normal(0.1, 0.3, (5, 36)), bias=np.zeros(5))),
        ("n2", LIF(tau=np.full(5, 5e-3), r=np.full(5, 1.0), v_leak=np.zeros(5), v_threshold=np.full(5, 0.5),
                   sem=sem)),
        ("output", Output()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = from_nir(_written(graph, tmp, "sinabs-conv", "sinabs"), batch_size=B)
    x = spikes_in((2, 8, 8))
    return compare(run_ours(graph, x), peers.run_sinabs(net, x))


# --- Rockpool ------------------------------------------------------------------
def _rockpool_import(kind: str) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        nir_module, missing = _skip_unless("rockpool.nn.modules.torch.nir")
        if missing:
            return missing
        from rockpool.nn.combinators import Sequential
        from rockpool.nn.modules import LIFNeuronTorch, LIFTorch, LinearTorch

        torch = _torch()

        def neuron(n: int, tau_syn: float):
            if kind == "LIF":
                return LIFNeuronTorch(n, tau_mem=0.02, threshold=0.5, dt=1e-3)
            return LIFTorch(n, tau_mem=0.02, tau_syn=tau_syn, threshold=1.0, dt=1e-3)

        net = Sequential(LinearTorch((6, 10)), neuron(10, 0.01), LinearTorch((10, 4)), neuron(4, 0.005))
        x = spikes_in((6,), scale=1.0)
        theirs = peers.run_rockpool(net, x)
        path = _save(nir_module.to_nir(net, torch.from_numpy(x[0, :1])), tmp, f"rockpool-{kind}")
        return compare(run_ours(read_quiet(path, dialect="rockpool"), x), theirs)

    return check


def _rockpool_export(kind: str) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        nir_module, missing = _skip_unless("rockpool.nn.modules.torch.nir")
        if missing:
            return missing

        _torch()  # seeds torch for the peer's modules
        graph = _our_feedforward(kind, Semantics(dt=1e-3, discretisation="exp", reset="subtract",
                                                 threshold_compare="ge", spike_mode="multi"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = nir_module.from_nir(_written(graph, tmp, f"rockpool-{kind}", "rockpool"))
        x = spikes_in((6,), scale=1.0)
        return compare(run_ours(graph, x), peers.run_rockpool(net, x))

    return check


# --- Spyx (JAX) ------------------------------------------------------------------
def _spyx_import(kind: str) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        spyx_nir, missing = _skip_unless("spyx.nir")
        if missing:
            return missing
        import jax.numpy as jnp
        import spyx.nn as snn
        from flax import nnx

        rngs = nnx.Rngs(0)

        def neuron(n: int, beta: float):
            return snn.IF((n,), threshold=0.7) if kind == "IF" else snn.LIF((n,), beta=beta, threshold=0.5, rngs=rngs)

        model = snn.Sequential(nnx.Linear(6, 10, rngs=rngs), neuron(10, 0.8), nnx.Linear(10, 4, rngs=rngs),
                               neuron(4, 0.9))
        x = spikes_in((6,), scale=2.0)
        theirs, _ = snn.run(model, jnp.asarray(x))
        path = _save(spyx_nir.to_nir(model, {"input": np.array([6])}, {"output": np.array([4])}, dt=1), tmp,
                     f"spyx-{kind}")
        return compare(run_ours(read_quiet(path, dialect="spyx"), x), np.asarray(theirs))

    return check


def _spyx_import_more(kind: str) -> Callable[[Path], Outcome]:
    """Spyx's recurrent ``RCuBaLIF`` or a conv net. Spyx runs channels-last (HWC) and
    flattens in that order, while its ``to_nir`` writes OIHW weights and NIR's channel-first
    Flatten unchanged: the file says ``[2, 8, 8]`` and we feed our reader CHW spikes. The
    spyx dialect restates the Linear after the Flatten; ``conv-plain`` reads the same file
    as plain NIR, without that restatement."""

    def check(tmp: Path) -> Outcome:
        spyx_nir, missing = _skip_unless("spyx.nir")
        if missing:
            return missing
        import jax.numpy as jnp
        import spyx.nn as snn
        from flax import nnx

        rngs = nnx.Rngs(0)
        if kind.startswith("conv"):
            model = snn.Sequential(nnx.Conv(2, 4, (3, 3), padding="VALID", rngs=rngs),
                                   snn.LIF((6, 6, 4), beta=0.8, threshold=0.5, rngs=rngs), snn.Flatten(),
                                   nnx.Linear(144, 5, rngs=rngs), snn.LIF((5,), beta=0.9, threshold=0.5, rngs=rngs))
            x, shapes = spikes_in((8, 8, 2)), (np.array([2, 8, 8]), np.array([5]))
            ours_x = np.ascontiguousarray(np.moveaxis(x, -1, 2))
            why = ("read as plain NIR: Spyx flattens channels-last (HWC) but its to_nir writes NIR's "
                   "channel-first Flatten and the Linear weights unpermuted; the spyx dialect restates them "
                   "(previous row)")
        else:
            model = snn.Sequential(nnx.Linear(6, 10, rngs=rngs), snn.RCuBaLIF((10,), threshold=0.5, rngs=rngs),
                                   nnx.Linear(10, 4, rngs=rngs), snn.LIF((4,), beta=0.9, threshold=0.5, rngs=rngs))
            x, shapes = spikes_in((6,), scale=2.0), (np.array([6]), np.array([4]))
            ours_x = x
            why = ("Spyx's (R)CuBaLIF decays its reset (beta (V - s thr)), which no NIR semantics says: a NumPy "
                   "replay of Spyx's update is Spyx's spikes with that reset and ours without it "
                   "(test_spyx_recurrent.py)")
        theirs, _ = snn.run(model, jnp.asarray(x))
        graph = spyx_nir.to_nir(model, {"input": shapes[0]}, {"output": shapes[1]}, dt=1)
        path = _save(graph, tmp, f"spyx-{kind}", (8, 8), (4, 6, 6))
        ours = read_quiet(path, dialect="spyx")
        if kind == "conv-plain":  # the Spyx reading, but the Linear's weights as the file has them
            ours = ours.with_nodes(layer_3=ours.nodes["layer_3"].replace(weight=read_quiet(path).nodes["layer_3"].weight))
        return compare(run_ours(ours, ours_x), np.asarray(theirs), "" if kind == "conv" else why)

    return check


def _rockpool_recurrent(tmp: Path) -> Outcome:
    """``LIFTorch(has_rec=True)``: Rockpool's ``to_nir`` writes a plain CubaLIF and drops ``w_rec``."""
    nir_module, missing = _skip_unless("rockpool.nn.modules.torch.nir")
    if missing:
        return missing
    from rockpool.nn.combinators import Sequential
    from rockpool.nn.modules import LIFTorch, LinearTorch

    torch = _torch()
    w_rec = torch.from_numpy(np.random.default_rng(2).normal(0.0, 0.05, (10, 10))).float()
    net = Sequential(LinearTorch((6, 10)), LIFTorch(10, tau_mem=0.02, tau_syn=0.01, threshold=1.0, dt=1e-3,
                                                    has_rec=True, w_rec=w_rec),
                     LinearTorch((10, 4)), LIFTorch(4, tau_mem=0.02, tau_syn=0.005, threshold=1.0, dt=1e-3))
    x = spikes_in((6,), scale=1.0)
    theirs = peers.run_rockpool(net, x)
    path = _save(nir_module.to_nir(net, torch.from_numpy(x[0, :1])), tmp, "rockpool-recurrent")
    return compare(run_ours(read_quiet(path, dialect="rockpool"), x), theirs,
                   "Rockpool 3.1's to_nir writes LIFTorch(has_rec=True) as a plain CubaLIF: w_rec is dropped")


def _spyx_export(tmp: Path) -> Outcome:
    spyx_nir, missing = _skip_unless("spyx.nir")
    if missing:
        return missing
    import jax.numpy as jnp

    sem = Semantics(dt=1.0, reset="subtract", reset_timing="next")
    graph = _our_feedforward("LIF", sem)
    for neuron in ("n1", "n2"):  # Spyx's timing: each layer's spikes leave one step late
        late = neuron + "_spyx_delay"
        graph = graph.replace(
            nodes={**graph.nodes, late: Delay(delay=np.asarray(1.0), sem=sem)},
            edges=tuple((late if s == neuron else s, d) for s, d in graph.edges) + ((neuron, late),))
    graph = graph.with_nodes(n1=graph.nodes["n1"].replace(tau=np.full(10, 5.0)),
                             n2=graph.nodes["n2"].replace(tau=np.full(4, 5.0)))
    x = spikes_in((6,), scale=1.0)
    _, theirs = spyx_nir.from_nir(_written(graph, tmp, "spyx", "spyx"), jnp.asarray(x), dt=1.0)
    return compare(run_ours(graph, x), np.asarray(theirs))


def _unsupported(reason: str) -> Callable[[Path], Outcome]:
    return lambda tmp: Outcome("unsupported", reason)


CELLS: tuple[Cell, ...] = (
    Cell("snntorch", "LIF", "import", _snntorch_import("LIF")),
    Cell("snntorch", "CubaLIF", "import", _snntorch_import("CubaLIF")),
    Cell("snntorch", "CubaLIF-recurrent", "import", _snntorch_import("CubaLIF-recurrent")),
    Cell("snntorch", "conv", "import", _snntorch_import("conv")),
    Cell("snntorch", "LIF", "export", _snntorch_export("LIF")),
    Cell("snntorch", "CubaLIF", "export", _snntorch_export("CubaLIF")),
    *(Cell("snntorch", op, "export", check, expected) for op, check, expected in SNNTORCH_EXPORT),
    Cell("norse", "LIF", "import", _norse_import("LIF")),
    Cell("norse", "CubaLIF", "import", _norse_import("CubaLIF")),
    Cell("norse", "IF", "import", _norse_import("IF")),
    Cell("norse", "conv", "import", _norse_import("conv")),
    Cell("norse", "LIF", "export", _norse_export("LIF")),
    Cell("norse", "CubaLIF", "export", _norse_export("CubaLIF")),
    Cell("norse", "IF", "export", _norse_export("IF")),
    Cell("sinabs", "LIF", "import", _sinabs_import("LIF")),
    Cell("sinabs", "IF", "import", _sinabs_import("IF")),
    Cell("sinabs", "conv", "import", _sinabs_import("conv")),
    Cell("sinabs", "LIF", "export", _sinabs_export("LIF")),
    Cell("sinabs", "IF", "export", _sinabs_export("IF")),
    Cell("sinabs", "conv", "export", _sinabs_export_conv),
    Cell("rockpool", "LIF", "import", _rockpool_import("LIF")),
    Cell("rockpool", "CubaLIF", "import", _rockpool_import("CubaLIF")),
    Cell("rockpool", "CubaLIF", "export", _rockpool_export("CubaLIF")),
    Cell("rockpool", "LIF", "export", _unsupported(
        "Rockpool 3.1's from_nir reads LIF.tau_mem, which NIR's LIF lacks (AttributeError); "
        "snnir refuses to write LIF for Rockpool"), expected="unsupported"),
    Cell("spyx", "LIF", "import", _spyx_import("LIF")),
    Cell("spyx", "IF", "import", _spyx_import("IF")),
    Cell("spyx", "LIF", "export", _spyx_export),
    Cell("norse", "CubaLIF-recurrent", "import", _unsupported(
        "Norse 1.1.0's to_nir has no mapping for LIFRecurrentCell (_extract_norse_module returns None: the "
        "written graph holds a None node)"), expected="unsupported"),
    Cell("rockpool", "CubaLIF-recurrent", "import", _rockpool_recurrent, expected="differs"),
    Cell("rockpool", "conv", "import", _unsupported(
        "Rockpool 3.1 has no convolution module in rockpool.nn.modules, and its torch to_nir maps only "
        "LinearTorch, LIFTorch, LIFNeuronTorch and ExpSynTorch"), expected="unsupported"),
    Cell("spyx", "CubaLIF-recurrent", "import", _spyx_import_more("CubaLIF-recurrent"), expected="differs"),
    Cell("spyx", "conv", "import", _spyx_import_more("conv")),
    Cell("spyx", "conv (Linear as written)", "import", _spyx_import_more("conv-plain"), expected="differs"),
    Cell("sinabs", "cnn_sinabs.nir", "import", _cnn_sinabs("sinabs"), expected="differs"),
    Cell("sinabs", "cnn_sinabs.nir (min_v_mem off)", "import", _cnn_sinabs("sinabs", floor=False)),
    Cell("norse", "cnn_sinabs.nir", "import", _cnn_sinabs("norse")),
    Cell("snntorch", "cnn_sinabs.nir", "import", _cnn_sinabs("snntorch"), expected="unsupported"),
    Cell("snntorch", "braille zero", "import", _braille("zero")),
    Cell("snntorch", "braille subtract", "import", _braille("subtract")),
)


def run_cell(cell: Cell) -> Outcome:
    with tempfile.TemporaryDirectory() as tmp:
        return cell.check(Path(tmp))
