"""Bad input to the torch target raises one SnnirError naming what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir import SnnirError
from snnir.ir import LIF, Output
from snnir.targets.torch import compile_torch

from torch_target_graphs import graphs_for


@pytest.fixture(scope="module")
def lif_module():
    return compile_torch(graphs_for(LIF)[0])


def test_wrong_input_shape(lif_module):
    with pytest.raises(SnnirError, match=r"node 'in': input must have shape \[T, B, 5\], got \[4, 2, 3\]"):
        lif_module(torch.zeros(4, 2, 3))
    with pytest.raises(SnnirError, match=r"\[B, 5\]"):
        lif_module.step(torch.zeros(4, 2, 5))


def test_wrong_input_dtype(lif_module):
    with pytest.raises(SnnirError, match="dtype torch.float64 but the module computes in torch.float32"):
        lif_module(torch.zeros(4, 2, 5, dtype=torch.float64))


def test_a_module_on_the_meta_device_refuses_a_call_by_name():
    """``.to("meta")`` (shape-only tooling does it) moves the module; a call then says why it
    cannot run, instead of failing inside torch."""
    import copy

    module = copy.deepcopy(compile_torch(graphs_for(LIF)[0])).to("meta")
    for call in (lambda: module(torch.zeros(4, 2, 5, device="meta")),
                 lambda: module.step(torch.zeros(2, 5, device="meta"))):
        with pytest.raises(SnnirError, match=r"node 'in': .*meta device, which holds no values"):
            call()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_nan_or_inf_input_is_refused_as_the_reference_refuses_it(lif_module, bad):
    x = torch.rand(4, 2, 5)
    x[2, 1, 3] = bad
    with pytest.raises(SnnirError, match=r"node 'in': input contains NaN or inf"):
        lif_module(x)
    with pytest.raises(SnnirError, match=r"node 'in': input contains NaN or inf"):
        lif_module.step(x[2])
    with pytest.raises(SnnirError, match=r"node 'in': input contains NaN or inf"):
        snnir.run(lif_module.graph, x.numpy())


def test_finite_inputs_whose_sum_overflows_run(lif_module):
    x = torch.full((4, 2, 5), 3e38)
    assert not torch.isfinite(x.sum())
    assert lif_module(x).shape[:2] == (4, 2)


def test_missing_input_of_multi_input_graph():
    module = compile_torch(graphs_for(Output)[0])
    with pytest.raises(SnnirError, match=r"node 'b': missing input"):
        module({"a": torch.zeros(3, 1, 3)})
    with pytest.raises(SnnirError, match="pass a dict by Input name"):
        module(torch.zeros(3, 1, 3))
    with pytest.raises(SnnirError, match="no Input node named"):
        module({"a": torch.zeros(3, 1, 3), "b": torch.zeros(3, 1, 3), "c": torch.zeros(3, 1, 3)})
    with pytest.raises(SnnirError, match="disagree"):
        module({"a": torch.zeros(3, 1, 3), "b": torch.zeros(3, 2, 3)})


def test_state_from_another_batch_size(lif_module):
    state = lif_module.initial_state(2)
    with pytest.raises(SnnirError, match=r"node 'cell': state 'cell.v' has shape \[2, 4\], expected \[3, 4\]"):
        lif_module.step(torch.zeros(3, 5), state)
    with pytest.raises(SnnirError, match="state keys do not fit"):
        lif_module.step(torch.zeros(2, 5), {"v": torch.zeros(2, 4)})


@pytest.mark.parametrize("dtype,device", [(torch.float64, "cpu"), (torch.int64, "cpu"), (torch.float32, "meta")])
def test_state_of_another_dtype_or_device(lif_module, dtype, device):
    """Found by probing (2026-12-04): a float64 state made float64 outputs of a float32 module, and
    one on another device failed deep inside the kernels."""
    state = {k: v.to(dtype=dtype, device=device) for k, v in lif_module.initial_state(2).items()}
    with pytest.raises(SnnirError, match=rf"node 'cell': state 'cell\.v' is {dtype} on {device}, where this module "
                                         r"runs torch.float32 on cpu"):
        lif_module(torch.zeros(3, 2, 5), state)


def test_bad_options():
    graph = graphs_for(LIF)[0]
    with pytest.raises(SnnirError, match="unknown torch compile options"):
        compile_torch(graph, learning_rate=1)
    with pytest.raises(SnnirError, match="match no parameter that can train"):
        compile_torch(graph, trainable=["cell.nope"])
    for bad in ("relu", ["arctan"], 3.0):
        with pytest.raises(SnnirError, match="unknown surrogate"):
            compile_torch(graph, surrogate=bad)
    with pytest.raises(SnnirError, match="unknown target"):
        snnir.compile(graph, target="fpga")


def test_invalid_graph_names_the_node():
    graph = graphs_for(LIF)[0]
    broken = graph.replace(edges=graph.edges + (("out", "cell"),))
    with pytest.raises(SnnirError, match="node 'out'"):
        compile_torch(broken)


def test_trainable_choices():
    graph = graphs_for(LIF)[0]
    assert set(dict(compile_torch(graph, trainable=["tau", "fc.weight"]).named_parameters())) == {
        "cell.tau", "fc.weight"}
    every = set(dict(compile_torch(graph, trainable="all").named_parameters()))
    assert {"fc.weight", "fc.bias", "cell.tau", "cell.v_threshold", "rec.weight"} <= every
    marked = graph.with_nodes(cell=graph.nodes["cell"].replace(trainable=("tau",)))
    assert set(dict(compile_torch(marked).named_parameters())) == {"cell.tau"}


def test_registered_lowering_is_used(monkeypatch):
    from snnir.ir import Affine
    from snnir.targets.torch import LOWERINGS, register_lowering
    from snnir.targets.torch.modules import AffineModule

    class Doubled(AffineModule):
        def forward(self, x):
            return 2 * super().forward(x)

    monkeypatch.setitem(LOWERINGS, Affine, LOWERINGS[Affine])
    register_lowering(Affine, Doubled)
    graph = graphs_for(Affine)[0]
    x = torch.randn(3, 2, 5)
    torch.testing.assert_close(compile_torch(graph)(x), 2 * torch.as_tensor(
        snnir.run(graph, x.double().numpy())["out"], dtype=torch.float32), rtol=1e-5, atol=1e-5)


def test_snntorch_names_of_surrogates_are_accepted():
    """snnTorch calls them ``atan`` and ``straight_through_estimator``."""
    from snnir.targets.torch.surrogate import Surrogate

    assert Surrogate("atan") == Surrogate("arctan")
    assert Surrogate("straight_through_estimator", 1.0) == Surrogate("straight_through", 1.0)
    compile_torch(graphs_for(LIF)[0], surrogate="atan")


@pytest.mark.parametrize("slope", ["abc", np.array([1.0, 2.0]), 10**400, True], ids=["str", "array", "huge", "bool"])
def test_a_traced_surrogate_record_that_is_no_surrogate_names_the_node(slope):
    """A file's metadata 'surrogate' with a string or array slope was a raw ValueError/TypeError."""
    graph = graphs_for(LIF)[0]
    (name,) = [n for n, op in graph.nodes.items() if isinstance(op, LIF)]
    lif = graph.nodes[name]
    graph = graph.with_nodes({name: lif.replace(metadata={"surrogate": {"name": "arctan", "slope": slope}})})
    with pytest.raises(SnnirError, match=rf"node '{name}': its metadata 'surrogate' .* slope must be a positive number"):
        compile_torch(graph)
    assert compile_torch(graph, surrogate="arctan") is not None
