"""Interop cells on the NIR paper's files (``tests/fixtures/nir-paper``): the Sinabs CNN and the
snnTorch braille networks, imported by the peers (see ``cells.py``)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from snnir import peers

from .cells_common import B, Outcome, _skip_unless, _snntorch_sequence, _torch, compare, read_quiet, run_ours


# --- the NIR paper's files (tests/fixtures/nir-paper) ---------------------------
FIXTURES = Path(os.environ.get("SNNIR_FIXTURES", Path(__file__).resolve().parents[1] / "fixtures" / "nir-paper"))


def _fixture(name: str) -> Path | None:
    path = FIXTURES / name
    return path if path.is_file() else None


def _nmnist_events(batch: int = 2, steps: int = 12) -> np.ndarray:
    """Synthetic N-MNIST-shaped events [T, B, 2, 34, 34] (5% of pixels fire per step)."""
    rng = np.random.default_rng(0)
    return (rng.random((steps, batch, 2, 34, 34)) < 0.05).astype(np.float32)


def _cnn_sinabs(library: str, floor: bool = True) -> Callable[[Path], Outcome]:
    def check(tmp: Path) -> Outcome:
        lib, missing = _skip_unless({"sinabs": "sinabs", "norse": "norse.torch", "snntorch": "snntorch"}[library])
        if missing:
            return missing
        path = _fixture("cnn_sinabs.nir")
        if path is None:
            return Outcome("unsupported", f"fixture cnn_sinabs.nir not found in {FIXTURES}")
        import nir

        _torch()  # seeds torch for the peers' modules
        x = _nmnist_events()
        ours = run_ours(read_quiet(path, dialect=library), x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if library == "sinabs":
                from sinabs.nir import from_nir

                net = from_nir(nir.read(path), batch_size=x.shape[1])
                if not floor:
                    for module in net.modules():
                        if hasattr(module, "min_v_mem"):
                            module.min_v_mem = None
                return compare(ours, peers.run_sinabs(net, x), "Sinabs' from_nir floors every IAF membrane at "
                               "-v_threshold (min_v_mem), which a Sinabs-written file does not say")
            if library == "norse":
                module = lib.from_nir(nir.read(path), dt=1e-3)
                return compare(ours, peers.per_sample(module, x))
            from snntorch.import_nir import import_from_nir

            try:
                theirs = peers.step_torch(import_from_nir(nir.read(path)), x)
            except Exception as exc:  # noqa: BLE001 - the peer's failure is the finding
                return Outcome("unsupported", f"snnTorch's import_from_nir module fails to run: "
                               f"{type(exc).__name__} (it builds IF as Leaky(beta=0.9, init_hidden=False), whose "
                               "(spk, mem) tuple reaches the next Conv2d)")
            return compare(ours, theirs, "snnTorch's import_from_nir builds IF as Leaky(beta=0.9)")

    return check


def _braille(mode: str) -> Callable[[Path], Outcome]:
    """snnTorch's own network for a Braille file, built by hand from its parameters:
    ``import_from_nir`` cannot load nested graphs with nirtorch 2.6 (its
    ``_construct_state_recursive`` calls ``GraphModule.items``), and ``RSynaptic`` with
    ``reset_delay=False`` and ``init_hidden=True`` fails, so the delayed reset is used."""

    def check(tmp: Path) -> Outcome:
        snn, missing = _skip_unless("snntorch")
        if missing:
            return missing
        name = f"braille_noDelay_{'bias_zero' if mode == 'zero' else 'noBias_subtract'}.nir"
        path = _fixture(name)
        if path is None:
            return Outcome("unsupported", f"fixture {name} not found in {FIXTURES}")
        import nir

        torch = _torch()
        g, dt = nir.read(path), 1e-4
        fc1, fc2, rec, lif1, lif2 = (g.nodes[k] for k in ("fc1", "fc2", "lif1.w_rec", "lif1.lif", "lif2"))
        hidden = fc1.weight.shape[0]

        def linear(node, layer=None):
            layer = layer or torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
            with torch.no_grad():
                layer.weight.copy_(torch.from_numpy(np.asarray(node.weight)))
                bias = np.asarray(node.bias) if hasattr(node, "bias") else np.zeros(node.weight.shape[0])
                layer.bias.copy_(torch.from_numpy(bias))
            return layer

        def decays(node):
            return dict(alpha=float(1 - dt / node.tau_syn[0]), beta=float(1 - dt / node.tau_mem[0]),
                        threshold=float(node.v_threshold[0]), reset_mechanism=mode, init_hidden=True)

        recurrent = snn.RSynaptic(linear_features=hidden, **decays(lif1))
        linear(rec, recurrent.recurrent)
        readout = snn.Synaptic(**decays(lif2))
        net = torch.nn.Sequential(linear(fc1), recurrent, linear(fc2), readout)
        rng = np.random.default_rng(0)
        x = (rng.random((100, B, fc1.weight.shape[1])) < 0.2).astype(np.float32)
        theirs = _snntorch_sequence(net, x)
        ours = run_ours(read_quiet(path, dialect="snntorch", reset=mode), x)
        return compare(ours, theirs, "snnTorch's (R)Synaptic delayed zero reset clears the whole new membrane; "
                       "the dialect reads it as reset_timing='next_after_input'")

    return check
