"""snnTorch's published models (tests/frontends/tutorial_models.py) export exactly or are refused
naming the layer: never silently wrong.

For an exact model, every snnTorch neuron layer's spikes at every step, and every value forward
returns, are compared with snnTorch's own float64 forward through three paths: the reference
interpreter (``snnir.run``), the compiled torch module (float64), and a ``.nir`` file round trip.
Spikes must be identical; returned membranes agree to 1e-9 (1e-6 through the compiled module).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirError

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")

from snnir.frontends.guard import in_float64  # noqa: E402
from snnir.ir.ops import Output  # noqa: E402
from tests.frontends.tutorial_models import CASES, Case  # noqa: E402

BATCH = 2


def case_input(case: Case) -> torch.Tensor:
    """``[T, B, *shape]``: rate-coded spikes scaled by ``case.scale``, as the tutorials feed them."""
    generator = torch.Generator().manual_seed(7)
    return torch.rand((case.steps, BATCH) + case.shape, generator=generator, dtype=torch.float64) * case.scale


def model_run(case: Case, x: torch.Tensor) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """snnTorch's float64 run: what forward returns (stacked over calls for step models) and each
    neuron layer's spikes per call."""
    calls: dict[str, list] = {}

    def watch(layer, module):
        module.register_forward_hook(
            lambda _m, _a, out: calls.setdefault(layer, []).append((out[0] if isinstance(out, tuple) else out).double()))

    model = in_float64(case.build(), watch)
    with torch.no_grad():
        if case.style == "step":
            per_step = [model(x[t]) for t in range(x.shape[0])]
            per_step = [s if isinstance(s, tuple) else (s,) for s in per_step]
            returned = [torch.stack([s[k] for s in per_step]) for k in range(len(per_step[0]))]
        else:
            out = model(x if case.style == "loop" else x[0])
            returned = list(out) if isinstance(out, tuple) else [out]
    spikes = {layer: torch.stack(values).numpy() for layer, values in calls.items() if len(values) == case.steps}
    return [r.numpy() for r in returned], spikes


def with_layer_outputs(graph: snnir.Graph, layers: list[str]) -> snnir.Graph:
    """``graph`` with an extra Output ``spikes_<layer>`` fed by each neuron layer's node."""
    nodes = dict(graph.nodes) | {f"spikes_{layer}": Output() for layer in layers}
    return graph.replace(nodes=nodes, edges=graph.edges + tuple((layer, f"spikes_{layer}") for layer in layers))


def compare(got: dict, graph: snnir.Graph, returned: list, spikes: dict, path: str, tol: float) -> None:
    for name, value in zip(graph.outputs, returned):
        actual = np.asarray(got[name])
        actual = actual if actual.shape == value.shape else actual[-1]
        if np.isin(value, (0.0, 1.0)).all():
            assert (actual == value).all(), f"{path}: output '{name}' spikes differ"
        else:
            np.testing.assert_allclose(actual, value, rtol=0, atol=tol * max(1, np.abs(value).max()),
                                       err_msg=f"{path}: output '{name}'")
    for layer, value in spikes.items():
        mismatch = np.argwhere(np.asarray(got[f"spikes_{layer}"]) != value)
        assert not mismatch.size, f"{path}: layer '{layer}': {len(mismatch)} spikes differ, first at {mismatch[0]}"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tutorial_model(case: Case, tmp_path):
    x = case_input(case)
    sample = x if case.style == "loop" else x[0]
    if case.expect != "exact":
        with pytest.raises(SnnirError, match=case.expect):
            snnir.trace(case.build(), sample.float())
        return
    graph = snnir.trace(case.build(), sample.float())
    returned, spikes = model_run(case, x)
    spikes = {layer: s for layer, s in spikes.items() if layer in graph.nodes}
    assert spikes, "no neuron layer was compared"
    rates = {layer: float(s.mean()) for layer, s in spikes.items()}
    assert all(0 < r < 0.6 or layer in case.quiet for layer, r in rates.items()), f"firing rates: {rates}"
    probe = with_layer_outputs(graph, sorted(spikes))
    steps = x.numpy() if case.style != "static" else np.broadcast_to(x[0].numpy(), x.shape).copy()
    steps = steps.reshape(steps.shape[:2] + probe.nodes["input"].shape)
    compare(snnir.run(probe, steps), probe, returned, spikes, "snnir.run", 1e-9)
    module = snnir.compile(probe, target="torch", dtype=torch.float64)
    with torch.no_grad():
        out = module(torch.from_numpy(steps))
    compare({k: v.numpy() for k, v in out.items()}, probe, returned, spikes, "compiled module", 1e-6)
    snnir.write(probe, tmp_path / "model.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compare(snnir.run(snnir.read(tmp_path / "model.nir"), steps), probe, returned, spikes, "file", 1e-9)


def test_the_readme_lists_the_corpus():
    """Regenerate with ``python -m tests.frontends.tutorial_models`` when the corpus changes."""
    from pathlib import Path

    from tests.frontends.tutorial_models import readme_section

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    listed = readme.split("<!-- corpus:start -->\n")[1].split("\n<!-- corpus:end -->")[0]
    assert listed == readme_section()
