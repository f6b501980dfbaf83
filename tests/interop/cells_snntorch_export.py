"""snnTorch export cells: a model built in snnTorch, traced by ``snnir.trace``, written with
``snnir.write(dialect="snntorch")``, loaded by snnTorch 1.0's real ``import_from_nir`` and
run by snnTorch at batch ``B`` > 1; its spikes are compared with ``snnir.run`` of the
traced graph. A cell whose dynamics snnTorch's importer changes must have been warned
about when writing (the warning is its note); one the dialect refuses shows the refusal.
``cells.py`` makes the rows of :data:`SNNTORCH_EXPORT` cells (the checks use its helpers).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Callable

import snnir
from snnir.errors import SnnirError, SnnirWarning


def _model(kind: str, snn, torch):
    """An snnTorch network for ``kind`` and the per-sample shape of its input."""
    def leaky(**options):
        return snn.Leaky(init_hidden=True, **options)

    def readout():
        return leaky(beta=0.9, threshold=0.4, reset_mechanism="zero")

    if kind in ("conv-flatten", "sae-flatten"):
        flatten = torch.nn.Flatten() if kind == "conv-flatten" else torch.nn.Flatten(1, 3)
        return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), leaky(beta=0.8, threshold=0.5, reset_mechanism="zero"),
                                   flatten, torch.nn.Linear(4 * 6 * 6, 5), readout()), (2, 8, 8)
    if kind == "conv-avgpool":  # tutorial 6's network, AvgPool2d for its MaxPool2d
        def conv_layer(c_in, c_out, threshold):
            return [torch.nn.Conv2d(c_in, c_out, 5), torch.nn.AvgPool2d(2),
                    leaky(beta=0.5, threshold=threshold, reset_mechanism="zero")]
        return torch.nn.Sequential(*conv_layer(1, 12, 0.7), *conv_layer(12, 64, 0.6), torch.nn.Flatten(),
                                   torch.nn.Linear(64 * 4 * 4, 10), leaky(beta=0.5, threshold=2.5,
                                                                         reset_mechanism="zero")), (1, 28, 28)
    hidden = {
        "leaky-zero": lambda: leaky(beta=0.8, threshold=0.5, reset_mechanism="zero"),
        "leaky-zero-no-delay": lambda: leaky(beta=0.8, threshold=0.5, reset_mechanism="zero", reset_delay=False),
        "leaky-subtract": lambda: leaky(beta=0.8, threshold=0.5),
        "leaky-beta-1": lambda: leaky(beta=1.0, threshold=0.5, reset_mechanism="zero"),
        "synaptic": lambda: snn.Synaptic(alpha=0.6, beta=0.8, threshold=0.5, init_hidden=True,
                                         reset_mechanism="zero", reset_delay=False),
        "rleaky-all-to-all": lambda: snn.RLeaky(beta=0.8, threshold=0.5, linear_features=10, init_hidden=True,
                                                reset_mechanism="zero", reset_delay=False),
        "rleaky-V": lambda: snn.RLeaky(beta=0.8, threshold=0.5, all_to_all=False, V=torch.rand(10),
                                       init_hidden=True, reset_mechanism="zero", reset_delay=False),
        "rsynaptic": lambda: snn.RSynaptic(alpha=0.6, beta=0.8, threshold=0.5, linear_features=10,
                                           init_hidden=True, reset_mechanism="zero"),
    }[kind]
    return torch.nn.Sequential(torch.nn.Linear(6, 10), hidden(), torch.nn.Linear(10, 4), readout()), (6,)


def export_check(kind: str, warned: str | None = None) -> Callable[[Path], "Outcome"]:
    """``warned``: the text the write must warn with (snnTorch's importer changes the dynamics)."""

    def check(tmp: Path) -> "Outcome":
        from snnir.peers import step_torch

        from .cells_common import Outcome, _excitatory, _skip_unless, _torch, compare, run_ours, spikes_in

        snn, missing = _skip_unless("snntorch")
        if missing:
            return missing
        import nir
        from snntorch.import_nir import import_from_nir

        torch = _torch()
        net, shape = _model(kind, snn, torch)
        x = spikes_in(shape, scale=1.5)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                graph = snnir.trace(_excitatory(net), torch.from_numpy(x[0]))
                snnir.write(graph, tmp / f"ours-snntorch-{kind}.nir", dialect="snntorch")
            except SnnirError as exc:
                return Outcome("unsupported", f"refused: {exc}")
        notes = [str(w.message) for w in caught if issubclass(w.category, SnnirWarning)]
        with contextlib.redirect_stdout(io.StringIO()):  # the importer prints as it goes
            module = import_from_nir(nir.read(tmp / f"ours-snntorch-{kind}.nir"))
        outcome = compare(run_ours(graph, x), step_torch(module, x))
        if warned is None or outcome.status == "exact":
            return outcome
        said = [line for note in notes for line in note.split("; ") if warned in line]
        if not said:
            return Outcome("silently differs", f"{outcome.note} without a warning saying '{warned}'")
        return Outcome(outcome.status, f"{outcome.note} Warned: {said[0].split(': ', 1)[-1]}")

    return check


#: (op, check, expected status) of each snnTorch export cell
SNNTORCH_EXPORT: tuple[tuple[str, Callable, str], ...] = (
    ("Leaky reset zero", export_check("leaky-zero"), "exact"),
    ("Leaky reset zero, reset_delay=False", export_check("leaky-zero-no-delay"), "exact"),
    ("Leaky reset subtract", export_check("leaky-subtract", "resets to zero"), "differs"),
    ("Leaky beta=1 (IF)", export_check("leaky-beta-1"), "unsupported"),
    ("Synaptic", export_check("synaptic"), "exact"),
    ("RLeaky all_to_all=True", export_check("rleaky-all-to-all"), "exact"),
    ("RLeaky all_to_all=False (V)", export_check("rleaky-V"), "exact"),
    ("RSynaptic", export_check("rsynaptic", "one step later"), "differs"),
    ("conv + Flatten, batch 3", export_check("conv-flatten"), "exact"),
    ("conv + Flatten(1, 3) (SAE)", export_check("sae-flatten"), "exact"),
    ("conv + AvgPool2d (tutorial 6)", export_check("conv-avgpool"), "exact"),
)
