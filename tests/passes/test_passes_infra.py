"""Pass manager, registry, rules' reasons, the fused op and the cost estimate."""

from __future__ import annotations

import numpy as np
import pytest
from passes_support import DT, random_graph, random_input, random_neuron, verified_or_skip

import snnir
from snnir.ir import LIF, Affine, Conv2d, Flatten, Graph, Input, Linear, Output, Scale, Subgraph
from snnir.ir.ops.fused import FusedLayerNeuron
from snnir.ir.registry import OPS
from snnir.ir.semantics import Semantics
from snnir.passes import PASSES, PassManager, estimate_cost, get_pass, register_pass
from snnir.passes.canonical import AffineWithoutBias, BroadcastNeuronParams, ExplicitConvPadding, RemoveIdentity
from snnir.passes.fusion import FoldAffine, FuseLayerNeuron
from snnir.passes.structure import InlineSubgraph
from snnir.targets.reference import EXTENSIONS, check_lowerings

RNG = np.random.default_rng(0)


def lif(n: int = 3) -> LIF:
    return random_neuron(np.random.default_rng(n), n, "LIF")


def chain(*named, inputs: int = 3) -> Graph:
    return Graph.sequential(("in", Input((inputs,))), *named, ("out", Output()))


# --- registry and manager --------------------------------------------------------------
def test_register_custom_pass_and_options_reach_only_declaring_passes():
    seen = {}

    @register_pass("test_tag_graph", replace=True)
    def tag(graph: Graph, *, tag: str = "none") -> Graph:
        seen["tag"] = tag
        return graph.replace(metadata={**graph.metadata, "tag": tag})

    try:
        graph = random_graph(0)
        out = snnir.optimize(graph, passes=["canonicalize", "test_tag_graph", "change_dt"], tag="x", dt=5.0)
        assert out.metadata["tag"] == "x" and seen["tag"] == "x"
        with pytest.raises(snnir.SnnirError, match="takes the options \\['bits'\\]"):
            snnir.optimize(graph, passes=["test_tag_graph"], bits=3)
        with pytest.raises(snnir.SnnirError, match="already registered"):
            register_pass("test_tag_graph")(tag)
    finally:
        PASSES.pop("test_tag_graph")


def test_plain_functions_are_passes_and_unknown_names_list_known_ones():
    assert get_pass(lambda g: g).name == "<lambda>"
    with pytest.raises(snnir.SnnirError, match="unknown pass 'nope'.*canonicalize"):
        snnir.optimize(random_graph(0), passes=["nope"])
    with pytest.raises(snnir.SnnirError, match="unknown optimisation level 7"):
        snnir.optimize(random_graph(0), level=7)
    with pytest.raises(snnir.SnnirError, match="needs a Graph"):
        snnir.optimize("graph.nir")


def test_verifier_failure_names_the_pass():
    def break_graph(graph: Graph) -> Graph:
        return graph.without_nodes(["out"])

    with pytest.raises(snnir.SnnirError, match="invalid after pass 'break_graph': graph has no Output"):
        snnir.optimize(random_graph(0), passes=[break_graph])
    assert len(snnir.optimize(random_graph(0), passes=[break_graph], verify_each=False).outputs) == 0


def test_pass_errors_name_the_pass_and_node():
    graph = chain(("n", LIF(tau=np.array(3), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(1.0))))
    with pytest.raises(snnir.SnnirError, match="node 'n': pass 'change_dt' failed: cannot change dt exactly"):
        snnir.optimize(graph, passes=["change_dt"], dt=2.5e-4)
    assert snnir.optimize(graph, passes=["change_dt"], dt=3e-4).nodes["n"].tau == 9


def test_dump_after_prints_the_named_pass_only():
    dumps = []
    snnir.optimize(random_graph(1), level=2, dump_after=["fuse_layer_neuron"], dump=lambda n, t: dumps.append((n, t)))
    assert [n for n, _ in dumps] == ["fuse_layer_neuron"]
    assert "snnir.FusedLayerNeuron" in dumps[0][1]
    with pytest.raises(snnir.SnnirError, match="not in the pipeline"):
        PassManager(["canonicalize"], dump_after=["fold_affine"])


def test_passes_do_not_change_their_input():
    graph = random_graph(3)
    copy = Graph(dict(graph.nodes), graph.edges, dict(graph.metadata))
    snnir.optimize(graph, level=2)
    assert graph == copy


# --- rules say why they do not apply ---------------------------------------------------
def test_remove_identity_reasons():
    graph = chain(("s", Scale(np.array(2.0))), ("l", Linear(np.ones((3, 3)))),
                  ("a", Affine(np.eye(3), np.ones(3))), ("f", Flatten(0, 0)))
    reasons = dict(RemoveIdentity().explain(graph))
    assert reasons[("s",)] == "its scale is not all ones"
    assert reasons[("l",)] == "its weight is not an identity matrix"
    assert reasons[("a",)] == "its bias is not zero"
    assert reasons[("f",)] is None
    square = Graph({"in": Input((3,)), "s": Scale(np.array(1.0)), "out": Output()},
                   (("in", "s"), ("in", "out"), ("s", "out")))
    assert "duplicate an edge" in dict(RemoveIdentity().explain(square))[("s",)]


def test_remove_identity_keeps_what_trains():
    """snnTorch's RLeaky(all_to_all=False) traces its learnable V (1 at init) as a trainable
    Scale(1); removing it dropped V from the compiled module without a word (also the identity
    Linears of a NIR file, which train when read)."""
    graph = chain(("s", Scale(np.array(1.0), trainable=("scale",))), ("l", Linear(np.eye(3), trainable=("weight",))),
                  ("a", Affine(np.eye(3), np.zeros(3))))
    reasons = dict(RemoveIdentity().explain(graph))
    assert "['scale'] are trainable" in reasons[("s",)] and "['weight'] are trainable" in reasons[("l",)]
    assert reasons[("a",)] is None
    optimized = snnir.optimize(graph, passes=["canonicalize"])
    assert set(optimized.nodes) == {"in", "s", "l", "out"}


def test_remove_identity_keeps_loop_delays():
    neuron = LIF(tau=np.array(5e-3), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(0.5),
                 sem=Semantics(dt=DT))
    graph = Graph({"in": Input((3,)), "id": Linear(np.eye(3)), "n": neuron, "out": Output()},
                  (("in", "id"), ("n", "id"), ("id", "n"), ("id", "out")))
    reason = dict(RemoveIdentity().explain(graph))[("id",)]
    assert reason == "it lies on a loop: bypassing it would change whether n -> out carries last step's value"
    assert "id" in snnir.optimize(graph, passes=["canonicalize"]).nodes


def test_remove_identity_keeps_the_fed_back_drive_apart():
    """An identity summing a neuron's input and its fed-back spikes: bypassed, the two would
    reach the neuron as drive and fed-back drive, added in another order (snnir.ir.schedule)."""
    neuron = LIF(tau=np.array(5e-3), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(0.5),
                 sem=Semantics(dt=DT))
    graph = Graph({"in": Input((3,)), "id": Scale(np.array(1.0)), "n": neuron, "rec": Linear(np.ones((3, 3))),
                   "out": Output()},
                  (("in", "id"), ("rec", "id"), ("id", "n"), ("n", "rec"), ("n", "out")))
    reason = dict(RemoveIdentity().explain(graph))[("id",)]
    assert reason == ("it lies on a loop: bypassing it would change whether rec -> n is a fed-back drive "
                      "(the order the neuron adds it in)")
    assert "id" in snnir.optimize(graph, passes=["canonicalize"]).nodes


def test_remove_identity_on_a_long_chain_is_fast():
    """800 identities took about 20 s, each rewrite scheduling the whole graph twice; they go
    at once now (RemoveIdentity.apply_all, on an edge table updated in place)."""
    import time

    graph = chain(*[(f"s{i}", Scale(np.ones(3))) for i in range(3000)])
    start = time.perf_counter()
    optimized = snnir.optimize(graph, passes=["canonicalize"])
    assert time.perf_counter() - start < 3
    assert optimized == Graph({"in": Input((3,)), "out": Output()}, (("in", "out"),))


class _CountedEdges(tuple):
    """Edges that count how often all of them are scanned."""

    scans = 0

    def __iter__(self):
        type(self).scans += 1
        return super().__iter__()


def test_matching_scans_the_edges_a_fixed_number_of_times():
    """Every match's edges were found by scanning all edges: a 300-node DAG with all forward
    edges (44,850) took 107 s to optimize. Edge lookups are indexed once per graph now."""
    names = [f"s{i}" for i in range(40)]
    graph = Graph({"in": Input((1,)), **{n: Scale(np.ones(1)) for n in names}, "out": Output()},
                  [("in", names[0]), (names[-1], "out")]
                  + [(a, b) for i, a in enumerate(names) for b in names[i + 1:]])
    object.__setattr__(graph, "edges", _CountedEdges(graph.edges))
    _CountedEdges.scans = 0
    assert get_pass("fold_affine")(graph) is graph  # no link is single: nothing folds
    assert _CountedEdges.scans < 10


def test_canonical_rule_reasons():
    graph = chain(("a", Affine(np.ones((3, 3)), np.ones(3))), ("n", lif()))
    assert dict(AffineWithoutBias().explain(graph))[("a",)] == "its bias is not zero"
    canonical = snnir.optimize(graph, passes=["canonicalize"])
    assert dict(BroadcastNeuronParams().explain(canonical))[("n",)] == ("its untrained parameters already have the "
                                                                        "input shape")
    assert all(v.shape == (3,) for v in canonical.nodes["n"].params().values())


def test_any_node_name_is_rewritten():
    """A node named 'self' made every rewrite of it a TypeError (with_nodes took names as keywords)."""
    graph = chain(("self", Affine(np.ones((3, 3)), np.zeros(3))), ("ops", lif().replace(v_threshold=np.array(1.0))))
    canonical = snnir.optimize(graph, passes=["canonicalize"])
    assert isinstance(canonical.nodes["self"], Linear) and canonical.nodes["ops"].v_threshold.shape == (3,)


def test_a_trained_scalar_stays_one_value():
    """A trained scalar (snnTorch's learn_threshold) is shared by all neurons: broadcast, each
    neuron's copy trained apart (6 of 240 spikes differed from snnTorch's after one SGD step)."""
    graph = chain(("a", Affine(np.ones((3, 3)), np.ones(3))), ("n", lif().replace(trainable=("v_threshold",))))
    params = snnir.optimize(graph, passes=["canonicalize"]).nodes["n"].params()
    assert params["v_threshold"].shape == () and params["tau"].shape == (3,)


def test_conv_padding_becomes_explicit():
    conv = Conv2d(RNG.normal(size=(2, 1, 3, 3)), RNG.normal(size=2), padding="same")
    graph = Graph.sequential(("in", Input((1, 5, 5))), ("c", conv), ("out", Output()))
    canonical = snnir.optimize(graph, passes=["canonicalize"])
    assert canonical.nodes["c"].padding == (1, 1)
    assert dict(ExplicitConvPadding().explain(canonical))[("c",)] == "its padding is already explicit"
    x = RNG.normal(size=(3, 2, 1, 5, 5))
    np.testing.assert_array_equal(snnir.run(canonical, x)["out"], snnir.run(graph, x)["out"])


def test_fold_affine_reasons():
    w = RNG.normal(size=(3, 3))
    branch = Graph({"in": Input((3,)), "a": Linear(w), "b": Linear(w), "out": Output(), "o2": Output()},
                   (("in", "a"), ("a", "b"), ("b", "out"), ("a", "o2")))
    assert dict(FoldAffine().explain(branch))[("a", "b")] == "'a' has consumers other than 'b'"
    two_in = Graph({"in": Input((3,)), "a": Linear(w), "b": Linear(w), "out": Output()},
                   (("in", "a"), ("a", "b"), ("in", "b"), ("b", "out")))
    assert dict(FoldAffine().explain(two_in))[("a", "b")] == "'b' has inputs other than 'a'"
    trained = chain(("a", Linear(w, trainable=("weight",))), ("b", Linear(w)))
    assert "trainable" in dict(FoldAffine().explain(trained))[("a", "b")]
    bottleneck = chain(("a", Linear(RNG.normal(size=(1, 8)))), ("b", Linear(RNG.normal(size=(8, 1)))), inputs=8)
    assert "raise MACs per step from 16 to 64" in dict(FoldAffine().explain(bottleneck))[("a", "b")]
    matrix_scale = chain(("a", Linear(w)), ("s", Scale(np.ones((1, 3)) * 2)))
    assert "cannot fold into a matrix" in dict(FoldAffine().explain(matrix_scale))[("a", "s")]


@pytest.mark.parametrize("order", ["scale_first", "scale_last", "two_scales", "affine_affine"])
def test_fold_affine_forms(order):
    w1, w2 = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 4))
    ops = {
        "scale_first": [("s", Scale(RNG.normal(size=3))), ("a", Affine(w1, RNG.normal(size=4)))],
        "scale_last": [("a", Affine(w1, RNG.normal(size=4))), ("s", Scale(np.array(0.5)))],
        "two_scales": [("s", Scale(RNG.normal(size=3))), ("t", Scale(np.array(3.0)))],
        "affine_affine": [("a", Affine(w1, np.array(0.3))), ("b", Affine(w2, RNG.normal(size=4)))],
    }[order]
    graph = chain(*ops)
    folded = snnir.optimize(graph, passes=["fold_affine"])
    assert len(folded.nodes) == 3
    x = RNG.normal(size=(4, 2, 3))
    np.testing.assert_allclose(snnir.run(folded, x)["out"], snnir.run(graph, x)["out"], rtol=0, atol=1e-12)


def test_fuse_layer_neuron_reasons_and_recurrence():
    w = RNG.uniform(0.5, 1.5, size=(3, 3))
    shared = Graph({"in": Input((3,)), "l": Linear(w), "n": lif(), "out": Output(), "o2": Output()},
                   (("in", "l"), ("l", "n"), ("n", "out"), ("l", "o2")))
    assert dict(FuseLayerNeuron().explain(shared))[("l", "n")] == "'l' has consumers other than 'n'"
    recurrent_into_neuron = Graph(
        {"in": Input((3,)), "l": Linear(w), "n": lif(), "r": Linear(w), "out": Output()},
        (("in", "l"), ("l", "n"), ("n", "r"), ("r", "n"), ("n", "out")),
    )
    assert dict(FuseLayerNeuron().explain(recurrent_into_neuron))[("l", "n")] == "'n' has inputs other than 'l'"
    recurrent_into_layer = Graph(
        {"in": Input((3,)), "l": Linear(w), "n": lif(), "out": Output()},
        (("in", "l"), ("l", "n"), ("n", "l"), ("n", "out")),
    )
    fused = snnir.optimize(recurrent_into_layer, passes=["fuse_layer_neuron"])
    assert ("n", "n") in fused.edges and isinstance(fused.nodes["n"], FusedLayerNeuron)
    x = RNG.uniform(0, 3, size=(30, 2, 3))
    before, after = snnir.run(recurrent_into_layer, x, record=True), snnir.run(fused, x, record=True)
    np.testing.assert_array_equal(after["out"], before["out"])
    np.testing.assert_allclose(after["n.neuron.v"], before["n.v"], rtol=0, atol=1e-12)
    assert before["out"].any()


def test_inline_subgraph_refuses_name_clashes():
    inner = Graph.sequential(("i", Input((3,))), ("n", lif()), ("o", Output()))
    graph = Graph({"in": Input((3,)), "s": Subgraph(inner), "s.n": Scale(np.array(2.0)), "out": Output()},
                  (("in", "s"), ("s", "s.n"), ("s.n", "out")))
    assert dict(InlineSubgraph().explain(graph))[("s",)] == "inlined names ['s.n'] are already taken"


def test_inline_subgraph_refuses_a_subgraph_on_a_cycle():
    inner = Graph.sequential(("i", Input((3,))), ("n", lif()), ("o", Output()))
    graph = Graph({"in": Input((3,)), "s": Subgraph(inner), "r": Linear(np.eye(3) * 0.5), "out": Output()},
                  (("in", "s"), ("s", "r"), ("r", "s"), ("s", "out")))
    assert "lies on a cycle" in dict(InlineSubgraph().explain(graph))[("s",)]
    assert isinstance(snnir.optimize(graph, passes=["flatten_subgraphs"]).nodes["s"], Subgraph)


# --- the fused op ------------------------------------------------------------------------
def test_fused_op_is_registered_and_defined_by_expansion():
    assert OPS["snnir.FusedLayerNeuron"] is FusedLayerNeuron
    assert EXTENSIONS[FusedLayerNeuron] is FusedLayerNeuron.expand
    assert check_lowerings() == []
    from snnir.ir.nir_io import LOWER_EXTENSION

    assert LOWER_EXTENSION[FusedLayerNeuron] is FusedLayerNeuron.expand
    neuron = lif(4)
    op = FusedLayerNeuron(Linear(RNG.normal(size=(4, 3))), neuron)
    assert op.state_names == neuron.state_names
    assert op.infer_shape((3,), "f") == (4,)
    assert list(op.expand().nodes) == ["input", "layer", "neuron", "output"]
    with pytest.raises(snnir.SnnirError, match="expects input \\[3\\]"):
        op.infer_shape((5,), "f")
    with pytest.raises(snnir.SnnirError, match="layer must be one of"):
        FusedLayerNeuron(Scale(np.array(1.0)), neuron)
    with pytest.raises(snnir.SnnirError, match="must be a neuron"):
        FusedLayerNeuron(Linear(np.eye(3)), Linear(np.eye(3)))
    with pytest.raises(snnir.SnnirError, match="declared input_shape"):
        FusedLayerNeuron(Conv2d(np.ones((2, 1, 3, 3))), neuron)


def test_fused_conv_gets_its_input_shape():
    sem = Semantics(dt=DT)
    conv = Conv2d(RNG.normal(size=(2, 1, 3, 3)), RNG.normal(size=2), padding=1)
    neuron = LIF(tau=np.array(5e-3), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(0.5), sem=sem)
    graph = Graph.sequential(("in", Input((1, 5, 5))), ("c", conv), ("n", neuron), ("out", Output()))
    fused = snnir.optimize(graph, passes=["fuse_layer_neuron"])
    assert fused.nodes["n"].layer.input_shape == (5, 5)
    x = random_input(graph, 0, steps=10)
    before, after = snnir.run(graph, x), snnir.run(fused, x)
    np.testing.assert_array_equal(after["out"], before["out"])
    assert before["out"].any()


def test_cost_estimate_counts_macs_and_state():
    neuron = LIF(tau=np.array(5e-3), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(1.0))
    graph = chain(("a", Affine(np.ones((4, 3)), np.zeros(4))), ("n", neuron))
    cost = estimate_cost(graph)
    assert (cost.nodes, cost.macs, cost.state_elements) == (4, 12 + 4, 4)
    fused = estimate_cost(snnir.optimize(graph, level=2))
    assert (fused.nodes, fused.macs, fused.state_elements) == (3, 16, 4)
    assert "16 MACs/step" in fused.report()


def test_neuron_params_are_not_broadcast_over_the_data_limit():
    """A scalar parameter broadcast to an input of 1e9 numbers would allocate 7.5 GiB each."""
    neuron = LIF(tau=np.array(5e-3), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(0.5),
                 sem=Semantics(dt=DT))
    graph = Graph.sequential(("in", Input((10**9,))), ("n", neuron), ("out", Output()))
    reason = dict(BroadcastNeuronParams().explain(graph))[("n",)]
    assert reason.startswith("its parameters at the input shape [1000000000] would take 37.3 GiB, more than the limit")
    assert snnir.optimize(graph).nodes["n"] == neuron


class _OneAtATime(RemoveIdentity):
    def apply_all(self, graph):
        return None


def _identity_maze(seed: int) -> Graph:
    """Identities, non-identities and neurons wired at random: fan-in and fan-out (duplicate
    edges to avoid), and loops back from neurons (some through identities)."""
    rng = np.random.default_rng(seed)
    neuron = LIF(tau=np.array(5e-3), r=np.array(1.0), v_leak=np.array(0.0), v_threshold=np.array(0.5),
                 sem=Semantics(dt=1e-3))
    nodes = {"in": Input((3,))}
    for i in range(int(rng.integers(8, 30))):
        kind = rng.integers(0, 4)
        nodes[f"n{i}"] = Scale(np.array(2.0)) if kind == 0 else neuron if kind == 1 else Scale(np.ones(3))
    names = list(nodes)
    edges = set()
    for j, name in enumerate(names[1:], 1):
        for src in rng.choice(names[:j], size=min(j, int(rng.integers(1, 3))), replace=False):
            edges.add((str(src), name))
    for src in [n for n in names if isinstance(nodes[n], LIF)]:
        if rng.random() < 0.5:
            edges.add((src, str(rng.choice(names[1:]))))
    nodes["out"] = Output()
    edges.add((names[-1], "out"))
    order = list(rng.permutation(sorted(edges)))
    return Graph(nodes, tuple((str(a), str(b)) for a, b in order))


@pytest.mark.parametrize("seed", range(40))
def test_removing_all_identities_at_once_is_one_at_a_time(seed):
    """RemoveIdentity.apply_all gives the very graph, edge order included (it orders sums)."""
    from snnir.passes.base import RewritePass

    graph = verified_or_skip(_identity_maze(seed), "a loop with no neuron")
    expected = RewritePass("one", (_OneAtATime(),))(graph)
    got = RewritePass("all", (RemoveIdentity(),))(graph)
    assert list(got.nodes) == list(expected.nodes) and got.edges == expected.edges


def test_one_pass_name_alone_and_a_level_with_passes():
    """A name alone was iterated letter by letter ("unknown pass 'f'"); a level given with passes
    was ignored without a word."""
    graph = chain(("a", Affine(np.ones((3, 3)), np.zeros(3))), ("n", lif()))
    assert snnir.optimize(graph, passes="canonicalize") == snnir.optimize(graph, passes=["canonicalize"])
    with pytest.raises(snnir.SnnirError, match="a level or a list of passes, not both"):
        snnir.optimize(graph, level=1, passes=["canonicalize"])
