"""Graph.ties: the rule (verifier), what graph edits and passes do with ties, files, and the torch
target's one parameter per tie (the traced regression tutorial: tests/frontends/test_trace_ties.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirError
from snnir.ir import LIF, Graph, Input, Linear, Output, Semantics, Subgraph, verify
from snnir.passes import PASSES
from snnir.passes.fusion import FoldAffine, FuseLayerNeuron

SEM = Semantics(dt=1e-3)


def lif(**changes) -> LIF:
    op = LIF(tau=np.full(3, 5e-3), r=np.full(3, 2.0), v_leak=np.zeros(3), v_threshold=np.full(3, 0.5), sem=SEM,
             trainable=("tau",))
    return op.replace(**changes)


def shared(fc_a=None, fc_b=None, ties=(("a", "b"),)) -> Graph:
    """in -> fa -> a -> oa and in -> fb -> b -> ob, neurons a and b tied."""
    fc_a = fc_a if fc_a is not None else Linear(np.full((3, 2), 1.5))
    fc_b = fc_b if fc_b is not None else Linear(np.full((3, 2), 2.0))
    return Graph({"in": Input((2,)), "fa": fc_a, "fb": fc_b, "a": lif(), "b": lif(metadata={"call": 2}),
                  "oa": Output(), "ob": Output()},
                 (("in", "fa"), ("in", "fb"), ("fa", "a"), ("fb", "b"), ("a", "oa"), ("b", "ob")), ties=ties)


@pytest.mark.parametrize("ties,node,message", [
    ((("a", "c"),), "c", "not a node"),
    ((("a",),), "a", "two or more"),
    ((("a", "b"), ("b", "a")), "b", "two ties"),
    ((("a", "fa"),), "fa", "differs"),
])
def test_the_verifier_names_a_broken_tie(ties, node, message):
    with pytest.raises(SnnirError, match=message) as err:
        verify(shared(ties=ties))
    assert err.value.node == node


def test_tied_ops_must_be_equal_but_for_metadata():
    verify(shared())
    with pytest.raises(SnnirError, match="differs") as err:
        verify(shared().with_nodes(b=lif(tau=np.full(3, 6e-3))))
    assert err.value.node == "b"
    with pytest.raises(SnnirError, match="sequence of node names"):
        Graph({}, ties=("ab",))


def test_edits_equality_and_removal():
    graph = shared()
    assert graph.tie_of("b") == ("a", "b") and graph.tie_of("fa") is None
    assert graph == shared(ties=(("b", "a"),)) and graph != shared(ties=())
    assert graph.replace(edges=graph.edges).ties == graph.ties
    assert graph.without_nodes(["b", "ob"]).ties == ()
    verify(PASSES["eliminate_dead_nodes"](graph.without_nodes(["ob"])))


@pytest.mark.parametrize("name", sorted(PASSES))
def test_every_pass_keeps_ties_or_leaves_the_tied_nodes(name):
    graph = shared(fc_a=Linear(np.full((3, 2), 1.5)), fc_b=Linear(np.full((3, 2), 1.5)), ties=(("a", "b"), ("fa", "fb")))
    rewritten = PASSES[name](graph, **({"dt": 2e-3} if name == "change_dt" else {}))
    verify(rewritten)
    assert {frozenset(g) for g in rewritten.ties} == {frozenset(g) for g in graph.ties}
    x = np.random.default_rng(0).uniform(0, 1, (10, 2, 2))
    want, got = snnir.run(graph, x), snnir.run(rewritten, x)
    np.testing.assert_allclose(got["oa"], want["oa"])


def test_fold_and_fuse_leave_a_tied_node_alone():
    graph = Graph({"in": Input((2,)), "s": Linear(np.eye(2) * 2), "fa": Linear(np.full((3, 2), 1.5)),
                   "fb": Linear(np.full((3, 2), 1.5)), "a": lif(), "b": lif(), "oa": Output(), "ob": Output()},
                  (("in", "s"), ("s", "fa"), ("in", "fb"), ("fa", "a"), ("fb", "b"), ("a", "oa"), ("b", "ob")),
                  ties=(("fa", "fb"),))
    optimized = snnir.optimize(graph, level=2)
    assert {"s", "fa", "fb", "a", "b"} <= set(optimized.nodes) and optimized.ties == (("fa", "fb"),)
    assert "would break a parameter tie: node 'fb' is tied to 'fa'" in dict(FoldAffine().explain(graph))[("s", "fa")]
    assert "would break a parameter tie" in dict(FuseLayerNeuron().explain(graph))[("fb", "b")]
    untied = snnir.optimize(graph.replace(ties=()), level=2)
    assert "s" not in untied.nodes and untied.nodes["a"].op_type == "snnir.FusedLayerNeuron"


def test_inlining_lifts_nested_ties():
    inner = shared()
    inner = inner.replace(nodes={**inner.nodes, "in": Input((2,))})
    graph = Graph({"x": Input((2,)), "sub": Subgraph(graph=inner), "y": Output(), "z": Output()},
                  (("x", "sub.in"), ("sub.oa", "y"), ("sub.ob", "z")))
    flat = PASSES["flatten_subgraphs"](graph)
    assert flat.ties == (("sub.a", "sub.b"),)
    verify(flat)


def test_a_file_keeps_ties(tmp_path):
    graph = shared()
    snnir.write(graph, tmp_path / "g.nir")
    assert snnir.read(tmp_path / "g.nir").ties == (("a", "b"),)


def test_the_torch_target_trains_one_parameter_per_tie():
    graph = shared()
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    assert [name for name, _ in module.named_parameters()] == ["a.tau"]
    assert module.node_module("a").tau is module.node_module("b").tau
    x = torch.from_numpy(np.random.default_rng(0).uniform(0, 1, (10, 2, 2)))
    out = module(x)
    out["oa"].sum().backward()
    only_a = module.node_module("a").tau.grad.clone()
    module.zero_grad()
    out = module(x)
    (out["oa"].sum() + out["ob"].sum()).backward()
    assert not torch.equal(module.node_module("a").tau.grad, only_a)  # both calls' gradients accumulate
    torch.optim.SGD(module.parameters(), lr=1e-9).step()
    verify(module.to_graph())
    from snnir.frontends.tracer import trace_submodules

    stepped = module.to_graph()
    assert snnir.trace(module, x) == stepped and trace_submodules(module, x) == stepped  # ties traced back too


def test_the_standalone_source_keeps_one_parameter_per_tie(tmp_path):
    import importlib.util

    from snnir.targets.torch.codegen import write_module

    graph = shared()
    source, _ = write_module(graph, tmp_path / "tied.py", "safetensors")
    spec = importlib.util.spec_from_file_location("generated_tied", source)
    generated = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generated)
    model = generated.load_model(dtype=torch.float64)
    assert [key for key, p in model.params.items() if p.requires_grad] == ["a:tau"]
    assert not any(key.startswith("b:") for key in model.params)
    x = np.random.default_rng(0).uniform(0, 1, (10, 2, 2))
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    want = snnir.run(graph, x)
    for name in ("oa", "ob"):
        np.testing.assert_allclose(out[name].numpy(), want[name], rtol=1e-12)
