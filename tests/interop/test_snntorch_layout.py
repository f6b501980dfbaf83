"""The snntorch dialect's layout, without snnTorch: what ``import_from_nir`` needs in the
file (batch-free Flatten dims, loops nested in execution order, diagonal V, the recurrent
bias on the input), reset restatements, refusals naming the node, and that snnir reads
every such file back to the same spikes. The cells in ``cells_snntorch_export.py`` run
the files in snnTorch itself."""

from __future__ import annotations

import warnings

import nir
import numpy as np
import pytest

import snnir
from snnir.errors import SnnirError
from snnir.frontends.dialects import get_dialect
from snnir.ir import Graph
from snnir.ir.ops import LIF, Affine, Conv2d, CubaLIF, Flatten, Input, Linear, Output, Scale, Threshold
from snnir.ir.semantics import Semantics

ZERO_DELAYED = Semantics(dt=1e-4, discretisation="euler", reset="zero", reset_timing="next")


def _lif(n: int, sem: Semantics = ZERO_DELAYED, cuba: bool = False):
    if cuba:
        return CubaLIF(tau_syn=np.full(n, 4e-4), tau_mem=np.full(n, 5e-4), r=np.full(n, 5.0), v_leak=np.zeros(n),
                       w_in=np.full(n, 4.0), v_threshold=np.full(n, 0.5), sem=sem)
    return LIF(tau=np.full(n, 5e-4), r=np.full(n, 5.0), v_leak=np.zeros(n), v_threshold=np.full(n, 0.5), sem=sem)


def _recurrent(loop, cuba: bool = False, sem: Semantics = ZERO_DELAYED) -> Graph:
    rng = np.random.default_rng(0)
    return Graph(
        {"input": Input(shape=(6,)), "fc": Affine(weight=rng.random((8, 6)) * 0.6, bias=np.zeros(8)),
         "lif": _lif(8, sem, cuba), "rec": loop, "out": Linear(weight=rng.random((3, 8))), "output": Output()},
        (("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "out"), ("out", "output")),
    )


def _write(graph: Graph, path) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snnir.write(graph, path, dialect="snntorch")
    return [str(w.message) for w in caught]


def _same_spikes_read_back(graph: Graph, path, shape) -> None:
    x = (np.random.default_rng(1).random((30, 3, *shape)) < 0.4).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = snnir.read(path, dialect="snntorch")
    np.testing.assert_array_equal(snnir.run(graph, x)["output"], snnir.run(back, x)["output"])


RNG = np.random.default_rng(2)
LOOPS = {
    "Linear": Linear(weight=RNG.normal(0, 0.3, (8, 8))),
    "Affine": Affine(weight=RNG.normal(0, 0.3, (8, 8)), bias=RNG.normal(0.1, 0.05, 8)),
    "Scale": Scale(scale=RNG.random(8)),
}


@pytest.mark.parametrize("cuba", [False, True])
@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_a_loop_is_nested_as_snntorch_reads_it(kind: str, cuba: bool, tmp_path) -> None:
    graph = _recurrent(LOOPS[kind], cuba)
    assert _write(graph, tmp_path / "rec.nir") == []
    written = nir.read(tmp_path / "rec.nir")
    assert list(written.nodes) == ["input", "fc", "lif", "out", "output"]  # execution order
    nested = written.nodes["lif"]
    assert isinstance(nested, nir.NIRGraph) and isinstance(nested.nodes["recurrent"], nir.Linear)
    loop = LOOPS[kind]
    expected = np.diag(loop.scale) if kind == "Scale" else loop.weight
    np.testing.assert_allclose(nested.nodes["recurrent"].weight, expected)
    assert ("input", "bias" if kind == "Affine" else "neuron") in nested.edges
    if kind == "Affine":  # snnTorch adds the bias from the first step: it rides on the input
        np.testing.assert_array_equal(nested.nodes["bias"].weight, np.eye(8))
        np.testing.assert_array_equal(nested.nodes["bias"].bias, loop.bias)
    _same_spikes_read_back(graph, tmp_path / "rec.nir", (6,))


def _conv_flatten(flat: Flatten) -> Graph:
    rng = np.random.default_rng(4)
    return Graph.sequential(
        ("input", Input(shape=(2, 8, 8))), ("conv", Conv2d(weight=rng.random((4, 2, 3, 3)) * 0.3)),
        ("lif", _lif(1)), ("flat", flat), ("fc", Affine(weight=rng.random((5, 144)) * 0.1, bias=np.zeros(5))),
        ("lif2", _lif(1)), ("output", Output()))


@pytest.mark.parametrize("dims", [(0, -1), (0, 2), (-3, -1)])
def test_flatten_dims_count_from_the_end(dims, tmp_path) -> None:
    """snnTorch builds nn.Flatten(start_dim, end_dim) from the file: only negative dims
    keep the batch dimension out of it (the SAE tutorial's Flatten(1, 3) is (0, 2) here)."""
    graph = _conv_flatten(Flatten(start_dim=dims[0], end_dim=dims[1]))
    _write(graph, tmp_path / "conv.nir")
    written = nir.read(tmp_path / "conv.nir")
    assert (written.nodes["flat"].start_dim, written.nodes["flat"].end_dim) == (-3, -1)
    assert written.nodes["conv"].bias.shape == (4,)  # torch.Tensor refuses snnir's scalar zero bias
    _same_spikes_read_back(graph, tmp_path / "conv.nir", (2, 8, 8))


@pytest.mark.parametrize("dims, written", [((1, 2), (-2, -1)), ((0, 1), (-3, -2)), ((1, 1), (-2, -2))])
def test_partial_flatten_dims_count_from_the_end(dims, written) -> None:
    graph = Graph.sequential(("input", Input(shape=(2, 8, 8))), ("flat", Flatten(*dims)), ("output", Output()))
    assert get_dialect("snntorch").on_write(graph, []).nodes["flat"] == Flatten(*written)


def test_a_zero_reset_before_the_input_is_restated_without_warning(tmp_path) -> None:
    """Zeroing the membrane before the next input spikes exactly as zeroing it at once."""
    graph = _recurrent(LOOPS["Linear"], sem=ZERO_DELAYED)
    assert _write(graph, tmp_path / "zero.nir") == []
    _same_spikes_read_back(graph, tmp_path / "zero.nir", (6,))


@pytest.mark.parametrize("sem, says", [
    (ZERO_DELAYED.with_(reset_timing="next_after_input"), "node 'lif'.*input included, one step later"),
    (ZERO_DELAYED.with_(reset="subtract"), "node 'lif'.*resets to zero, this node resets by 'subtract'"),
])
def test_a_reset_snntorch_changes_is_warned_naming_the_node(sem, says, tmp_path) -> None:
    with pytest.warns(UserWarning, match=says):
        snnir.write(_recurrent(LOOPS["Linear"], sem=sem), tmp_path / "lossy.nir", dialect="snntorch")


def _refused(graph: Graph, says: str, tmp_path) -> None:
    with pytest.raises(SnnirError, match=says), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(graph, tmp_path / "refused.nir", dialect="snntorch")
    assert not (tmp_path / "refused.nir").exists()


def test_ops_snntorch_cannot_build_are_refused_naming_them(tmp_path) -> None:
    graph = Graph.sequential(("input", Input(shape=(4,))), ("lif", _lif(4)),
                             ("thr", Threshold(threshold=np.full(4, 0.5))), ("output", Output()))
    _refused(graph, "node 'thr'.*no module for Threshold", tmp_path)


def test_a_loop_snntorch_cannot_read_is_refused_naming_the_neuron(tmp_path) -> None:
    graph = _recurrent(LOOPS["Linear"])
    escaping = graph.replace(edges=graph.edges + (("rec", "out"),))
    _refused(escaping, "node 'lif'.*recurrent op 'rec' connects beyond the loop", tmp_path)
    conv_graph = Graph(
        {"input": Input(shape=(2, 5, 5)), "lif": _lif(1), "rec": Conv2d(weight=np.ones((2, 2, 1, 1))),
         "output": Output()},
        (("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")))
    _refused(conv_graph, "node 'lif'.*recurrent weight on a flat layer", tmp_path)
    longer = Graph(
        {"input": Input(shape=(4,)), "lif": _lif(4), "a": Linear(weight=np.eye(4)), "b": Linear(weight=np.eye(4)),
         "output": Output()},
        (("input", "lif"), ("lif", "a"), ("a", "b"), ("b", "lif"), ("lif", "output")))
    _refused(longer, "node 'a'.*only as a neuron <-> one weight op; this one runs through a, b, lif", tmp_path)


def test_a_negative_threshold_is_refused(tmp_path) -> None:
    graph = _recurrent(LOOPS["Linear"])
    graph = graph.with_nodes(lif=graph.nodes["lif"].replace(v_threshold=np.full(8, -0.1)))
    _refused(graph, "node 'lif'.*negative v_threshold", tmp_path)


def test_a_lif_layer_with_several_input_gains_is_refused(tmp_path) -> None:
    """snnTorch's importer divides every LIF threshold by the first neuron's gain."""
    graph = _recurrent(LOOPS["Linear"])
    lif = graph.nodes["lif"]
    graph = graph.with_nodes(lif=lif.replace(r=np.linspace(4.0, 6.0, 8), v_threshold=np.linspace(0.4, 0.6, 8)))
    _refused(graph, "node 'lif'.*one input gain", tmp_path)


def test_two_inputs_are_refused(tmp_path) -> None:
    graph = Graph({"a": Input(shape=(4,)), "b": Input(shape=(4,)), "lif": _lif(4), "output": Output()},
                  (("a", "lif"), ("b", "lif"), ("lif", "output")))
    _refused(graph, "one Input and one Output", tmp_path)


def test_a_traced_reset_delay_false_subtract_reset_is_refused_naming_the_layer_and_option(tmp_path) -> None:
    snntorch = pytest.importorskip("snntorch")
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 3)
            self.lif = snntorch.Leaky(beta=0.9, reset_mechanism="subtract", reset_delay=False)

        def forward(self, x):
            mem = self.lif.init_leaky()
            spikes = []
            for step in range(x.shape[0]):
                spike, mem = self.lif(self.fc(x[step]), mem)
                spikes.append(spike)
            return torch.stack(spikes)

    graph = snnir.trace(Net(), torch.rand(5, 2, 4))
    _refused(graph, "node 'lif'.*snntorch.Leaky has a subtract reset with reset_delay=False.*use reset_delay=True",
             tmp_path)
