"""Closing the loop: a graph compiled for torch and traced back is the same graph.

Two ways back are checked against each other and against the original:
``snnir.trace(module, x)`` (the module's own ``to_graph()``) and
``trace_submodules(module, x)`` (genuine tracing through each op submodule's
``to_op()``). Nested graphs come back inlined from the latter: equal to
``flatten_subgraphs(original)``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import snnir
from snnir.errors import SnnirError
from snnir.frontends.tracer import trace_submodules
from snnir.ir import (
    IF, LI, LIF, Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Flatten, Graph, I, Input, Linear,
    Output, Scale, Semantics, Subgraph, SumPool2d, Threshold, infer_shapes,
)
from snnir.passes import get_pass

DT = 1e-3
STEPS, BATCH = 6, 2

SEMANTICS = {
    "default": Semantics(dt=DT),
    "exp-subtract-next-multi": Semantics(
        dt=DT, discretisation="exp", reset="subtract", reset_timing="next", threshold_compare="ge",
        spike_mode="multi", current_order="voltage_first",
    ),
    "none-next-ge": Semantics(dt=DT, reset="none", reset_timing="next", threshold_compare="ge"),
    "exp-zero-next-dt2": Semantics(dt=2 * DT, discretisation="exp", reset="zero", reset_timing="next"),
}


def _neuron(cls, n, rng, sem, trainable=(), **extra):
    values = {
        "tau": rng.uniform(3e-3, 2e-2, n), "tau_syn": rng.uniform(3e-3, 1e-2, n),
        "tau_mem": rng.uniform(3e-3, 2e-2, n), "v_leak": rng.normal(0, 0.05, n),
        "v_threshold": rng.uniform(0.05, 0.2, n), "v_reset": rng.normal(0, 0.02, n),
        "w_in": rng.uniform(0.5, 2, n), "r": rng.uniform(20, 60, n) if cls in (I, IF) else rng.uniform(0.5, 2, n),
    }
    return cls(**{k: v for k, v in values.items() if k in cls.param_names()}, sem=sem, trainable=trainable, **extra)


def _dense(cls, n_in, n_out, rng, trainable=(), dtype=np.float64):
    weight = rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)).astype(dtype)
    if cls is Affine:
        return Affine(weight=weight, bias=rng.normal(0, 0.1, n_out).astype(dtype), trainable=trainable)
    return Linear(weight=weight, trainable=trainable)


def dense_graph(sem: Semantics, seed: int = 0) -> Graph:
    """Two inputs, three outputs (one fed by two nodes), a recurrent loop, a delay, every dense op and neuron."""
    rng = np.random.default_rng(seed)
    nodes = {
        "a": Input((6,)), "b": Input((4,)),
        "fc": _dense(Affine, 6, 5, rng, trainable=("weight", "bias")).replace(metadata={"origin": "test"}),
        "lin": _dense(Linear, 4, 5, rng, dtype=np.float32),
        "lif": _neuron(LIF, 5, rng, sem, trainable=("tau", "v_threshold")),
        "rec": _dense(Linear, 5, 5, rng, trainable=("weight",)),
        "delay": Delay(delay=np.array([0, 1, 2, 3, 1]) * sem.dt, sem=sem),
        "cuba": _neuron(CubaLIF, 5, rng, sem, trainable=("tau_syn", "w_in")),
        "thr": Threshold(threshold=rng.normal(0, 0.5, 5)),
        "scale": Scale(scale=rng.normal(1, 0.3, 5), trainable=("scale",)),
        "li": _neuron(LI, 5, rng, sem),
        "lin2": _dense(Linear, 4, 5, rng),
        "cubali": _neuron(CubaLI, 5, rng, sem, metadata={"note": [1, 2]}),
        "w3": _dense(Affine, 6, 3, rng),
        "integ": _neuron(I, 3, rng, sem),
        "if_": _neuron(IF, 3, rng, sem),
        "spikes": Output(), "potential": Output((5,)), "count": Output(),
    }
    edges = (
        ("a", "fc"), ("b", "lin"), ("fc", "lif"), ("lin", "lif"), ("lif", "rec"), ("rec", "lif"),
        ("lif", "delay"), ("delay", "cuba"), ("cuba", "spikes"), ("fc", "thr"), ("thr", "spikes"),
        ("lif", "scale"), ("scale", "li"), ("li", "potential"), ("b", "lin2"), ("lin2", "cubali"),
        ("cubali", "potential"), ("a", "w3"), ("w3", "integ"), ("integ", "if_"), ("if_", "count"),
    )
    return Graph(nodes, edges, {"name": "dense", "version": 2})


def conv_graph(sem: Semantics, seed: int = 1) -> Graph:
    """Conv2d, pools and Flatten on one input; Conv1d on another; both summed into one neuron.
    Two neurons have scalar parameters."""
    rng = np.random.default_rng(seed)
    nodes = {
        "image": Input((2, 9, 9)), "signal": Input((3, 10)),
        "c2": Conv2d(weight=rng.normal(0, 0.5, (4, 1, 3, 3)), bias=rng.normal(0, 0.1, 4), stride=1,
                     padding=(1, 2), dilation=(1, 2), groups=2, trainable=("weight",)),
        "if_": _neuron(IF, 1, rng, sem).replace(r=np.array(30.0), v_threshold=np.array(0.1), v_reset=np.array(0.0)),
        "sum": SumPool2d(kernel_size=2, stride=2),
        "avg": AvgPool2d(kernel_size=3, stride=1, padding=1),
        "flat": Flatten(start_dim=0, end_dim=-1),
        "fc": _dense(Affine, 64, 3, rng),
        "c1": Conv1d(weight=rng.normal(0, 0.5, (2, 3, 3)), bias=rng.normal(0, 0.1, 2), stride=2, padding=1),
        "cuba": _neuron(CubaLIF, 1, rng, sem).replace(tau_syn=np.array(5e-3)),
        "flat1": Flatten(start_dim=0, end_dim=1),
        "fc1": _dense(Linear, 10, 3, rng),
        "lif": _neuron(LIF, 3, rng, sem),
        "out": Output(),
    }
    edges = (
        ("image", "c2"), ("c2", "if_"), ("if_", "sum"), ("sum", "avg"), ("avg", "flat"), ("flat", "fc"),
        ("fc", "lif"), ("signal", "c1"), ("c1", "cuba"), ("cuba", "flat1"), ("flat1", "fc1"), ("fc1", "lif"),
        ("lif", "out"),
    )
    return Graph(nodes, edges)


def nested_graph(sem: Semantics, seed: int = 2) -> Graph:
    """Two levels of nesting, recurrence inside, two ports out of the outer nested graph."""
    rng = np.random.default_rng(seed)
    innermost = Graph(
        {"x": Input((4,)), "li": _neuron(LI, 4, rng, sem), "y": Output()}, (("x", "li"), ("li", "y"))
    )
    inner = Graph(
        {"x": Input((4,)), "lif": _neuron(LIF, 4, rng, sem, trainable=("tau",)), "rec": _dense(Linear, 4, 4, rng),
         "deep": Subgraph(innermost), "spk": Output(), "v": Output()},
        (("x", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "spk"), ("x", "deep"), ("deep", "v")),
        {"inner": True},
    )
    nodes = {
        "in": Input((3,)), "fc": _dense(Affine, 3, 4, rng), "sub": Subgraph(inner),
        "head": _dense(Affine, 4, 2, rng), "out": Output(), "v": Output(),
    }
    edges = (("in", "fc"), ("fc", "sub.x"), ("sub.spk", "head"), ("head", "out"), ("sub.v", "v"))
    return Graph(nodes, edges)


GRAPHS = {
    f"{kind}-{sem_name}": (build, sem)
    for kind, build in (("dense", dense_graph), ("conv", conv_graph), ("nested", nested_graph))
    for sem_name, sem in SEMANTICS.items()
}


def sample(graph: Graph, dtype=torch.float64, seed: int = 0):
    """Random ``[T, B, *shape]`` per Input (a dict when there are several)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = infer_shapes(graph)
    xs = {
        name: torch.randn((STEPS, BATCH) + tuple(shapes.outputs[name]), generator=gen, dtype=dtype) + 0.5
        for name in graph.inputs
    }
    return xs if len(xs) > 1 else next(iter(xs.values()))


def flattened(graph: Graph) -> Graph:
    """What genuine tracing gives back for ``graph``: nested graphs inlined."""
    flat = get_pass("flatten_subgraphs")(graph)
    assert not any(isinstance(op, Subgraph) for op in flat.nodes.values()), "flatten_subgraphs left a nested graph"
    return flat


def _not_asked():
    raise AssertionError("to_graph() was called")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", sorted(GRAPHS))
def test_compiled_graph_traces_back_to_itself(case, dtype):
    build, sem = GRAPHS[case]
    graph = build(sem)
    module = snnir.compile(graph, target="torch", dtype=dtype)
    x = sample(graph, dtype)
    assert snnir.trace(module, x) == graph
    module.to_graph = _not_asked  # genuine tracing must not ask the module for its graph
    traced = trace_submodules(module, x)
    assert traced == flattened(graph)
    if not any(isinstance(op, Subgraph) for op in graph.nodes.values()):
        assert traced == graph


def test_extension_op_without_lowering_comes_back_expanded():
    from snnir.ir.ops.fused import FusedLayerNeuron
    from snnir.targets.torch import LOWERINGS

    rng = np.random.default_rng(4)
    sem = SEMANTICS["exp-subtract-next-multi"]
    fused = FusedLayerNeuron(layer=_dense(Affine, 5, 4, rng), neuron=_neuron(CubaLIF, 4, rng, sem))
    graph = Graph.sequential(("in", Input((5,))), ("fused", fused), ("out", Output()))
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    x = sample(graph)
    assert snnir.trace(module, x) == graph
    if FusedLayerNeuron not in LOWERINGS:  # run by its definition, so traced as its definition
        assert trace_submodules(module, x) == flattened(graph.with_nodes(fused=Subgraph(fused.expand())))
    else:
        assert trace_submodules(module, x) == graph


NEURONS = (I, IF, LI, LIF, CubaLI, CubaLIF)
SEMANTICS_CHOICES = {
    "discretisation": ("euler", "exp"), "reset": ("zero", "subtract", "none"), "reset_timing": ("same", "next", "next_after_input"),
    "threshold_compare": ("gt", "ge"), "spike_mode": ("single", "multi"),
    "current_order": ("current_first", "voltage_first"),
}


@settings(max_examples=20, deadline=None, derandomize=True)
@given(data=st.data())
def test_random_layer_stacks_trace_back(data):
    """Stacks of dense layers and neurons with sampled semantics, trainable flags and recurrent loops."""
    seed = data.draw(st.integers(0, 10_000), label="seed")
    rng = np.random.default_rng(seed)
    nodes, edges, width, previous = {"input": Input((3,))}, [], 3, "input"
    for k in range(data.draw(st.integers(1, 3), label="layers")):
        n = data.draw(st.integers(1, 4), label="width")
        layer_cls = data.draw(st.sampled_from([Affine, Linear]), label="layer")
        cls = data.draw(st.sampled_from(NEURONS), label="neuron")
        choice = data.draw(st.fixed_dictionaries({f: st.sampled_from(v) for f, v in SEMANTICS_CHOICES.items()}))
        if choice["spike_mode"] == "multi":
            choice["threshold_compare"] = "ge"
        trainable = data.draw(st.lists(st.sampled_from(cls.param_names()), unique=True), label="trainable")
        nodes[f"fc{k}"] = _dense(layer_cls, width, n, rng, trainable=("weight",) if trainable else ())
        nodes[f"n{k}"] = _neuron(cls, n, rng, Semantics(dt=DT, **choice), trainable=tuple(trainable))
        edges += [(previous, f"fc{k}"), (f"fc{k}", f"n{k}")]
        if data.draw(st.booleans(), label="recurrent"):
            nodes[f"rec{k}"] = _dense(Linear, n, n, rng)
            edges += [(f"n{k}", f"rec{k}"), (f"rec{k}", f"n{k}")]
        width, previous = n, f"n{k}"
    nodes["output"] = Output()
    graph = Graph(nodes, tuple(edges) + ((previous, "output"),))
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    x = sample(graph, seed=seed)
    assert snnir.trace(module, x) == graph
    assert trace_submodules(module, x) == graph


def test_every_op_the_torch_target_lowers_is_covered():
    from snnir.ir.registry import is_extension
    from snnir.targets.torch import LOWERINGS

    covered = {
        type(op) for build, sem in GRAPHS.values() for _, op in build(sem).walk()
    } | set(NEURONS)
    standard = {cls for cls in LOWERINGS if not is_extension(cls.op_type)}
    assert standard <= covered, f"not covered here: {sorted(c.op_type for c in standard - covered)}"


def test_inlined_trace_computes_the_same():
    graph = nested_graph(SEMANTICS["exp-subtract-next-multi"])
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    x = sample(graph)
    traced = trace_submodules(module, x)
    assert {"sub.lif", "sub.rec", "sub.deep.li"} <= set(traced.nodes)
    expected, got = snnir.run(graph, x.numpy()), snnir.run(traced, x.numpy())
    for name in graph.outputs:
        np.testing.assert_array_equal(got[name], expected[name])


def _nested_with(edges_out, ports=("x",)) -> Graph:
    rng = np.random.default_rng(5)
    sem = SEMANTICS["default"]
    inner = Graph(
        {**{p: Input((4,)) for p in ports}, "lif": _neuron(LIF, 4, rng, sem), "y": Output()},
        tuple((p, "lif") for p in ports) + (("lif", "y"),),
    )
    nodes = {"in": Input((3,)), "fc": _dense(Affine, 3, 4, rng), "sub": Subgraph(inner), "out": Output()}
    if any("back" in edge for edge in edges_out):
        nodes["back"] = _dense(Linear, 4, 4, rng)
    return Graph(nodes, (("in", "fc"), ("sub.y", "out")) + edges_out)


@pytest.mark.parametrize(
    "graph, reason",
    [
        (_nested_with((("fc", "sub.x"), ("sub.y", "back"), ("back", "sub.x"))), "lies on a cycle"),
        (_nested_with((("fc", "sub.x"), ("fc", "sub.h")), ports=("x", "h")), "receives 'fc' twice"),
    ],
    ids=["on-a-cycle", "duplicate-edge"],
)
def test_nested_graphs_that_cannot_be_inlined_are_refused(graph, reason):
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    x = sample(graph)
    assert snnir.trace(module, x) == graph
    with pytest.raises(SnnirError, match=reason) as info:
        trace_submodules(module, x)
    assert info.value.node == ("sub" if reason == "lies on a cycle" else "sub.lif")


def test_tracing_leaves_the_module_untouched():
    graph = dense_graph(SEMANTICS["default"])
    module = snnir.compile(graph, target="torch", dtype=torch.float64).train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trace_submodules(module, sample(graph))
    assert module.training
    after = module.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def _train(module: torch.nn.Module, x, steps: int = 3) -> None:
    optimiser = torch.optim.Adam(module.parameters(), lr=5e-4)  # small: time constants stay positive
    for _ in range(steps):
        optimiser.zero_grad()
        outputs = module(x)
        loss = sum(((y - 0.5) ** 2).mean() for y in outputs.values())
        loss.backward()
        optimiser.step()


def test_trained_module_gives_trained_graph_that_round_trips(tmp_path):
    graph = dense_graph(SEMANTICS["default"])
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    x = sample(graph)
    trained_names = {f"{n}.{p}" for n, op in graph.nodes.items() for p in op.trainable}
    assert {name for name, _ in module.named_parameters()} == trained_names
    _train(module, x)

    trained = module.to_graph()
    for name, param in module.named_parameters():
        node, field = name.split(".")
        value = getattr(trained.nodes[node], field)
        assert value.dtype == getattr(graph.nodes[node], field).dtype
        np.testing.assert_array_equal(value, param.detach().numpy())
    for node, field in (("fc", "weight"), ("rec", "weight"), ("lif", "tau"), ("scale", "scale")):
        assert not np.array_equal(getattr(trained.nodes[node], field), getattr(graph.nodes[node], field))
    for node in ("lin", "thr", "li", "cubali", "delay"):
        assert trained.nodes[node] == graph.nodes[node]
    assert trained.nodes["fc"].metadata == {"origin": "test"}

    assert snnir.trace(module, x) == trained
    assert trace_submodules(module, x) == trained

    path = tmp_path / "trained.nir"
    snnir.write(trained, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = snnir.read(path)
    assert loaded == trained
    with torch.no_grad():
        spikes = module(x)["spikes"].numpy()
    np.testing.assert_array_equal(snnir.run(loaded, {k: v.numpy() for k, v in x.items()})["spikes"], spikes)


FIXTURES = (
    "braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir", "braille_noDelay_bias_zero_subgraph.nir",
    "cnn_sinabs.nir", "lif_norse.nir", "lif_rockpool.nir", "two_lif_neurons.nir",
)


@pytest.mark.parametrize("name", FIXTURES)
def test_nir_paper_fixture_traces_back(fixtures_dir, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NIR < 1.0 files: defaults applied, reported elsewhere
        graph = snnir.read(fixtures_dir / name, repair=name.endswith("_subgraph.nir"))
    module = snnir.compile(graph, target="torch")
    x = sample(graph, torch.float32)
    assert snnir.trace(module, x) == graph
    assert trace_submodules(module, x) == flattened(graph)


def test_bad_sample_input_names_the_input():
    graph = conv_graph(SEMANTICS["default"])
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    x = sample(graph)
    with pytest.raises(SnnirError, match="image") as info:
        snnir.trace(module, {**x, "image": x["image"][0]})
    assert "[T, B, 2, 9, 9]" in str(info.value)
    with pytest.raises(SnnirError, match="Input nodes"):
        snnir.trace(module, x["signal"])
    with pytest.raises(SnnirError, match="Input nodes"):
        trace_submodules(module, {"signal": x["signal"]})
    with pytest.raises(SnnirError, match="image"):
        trace_submodules(module, {**x, "image": x["image"][0]})
    with pytest.raises(SnnirError, match="'signal': sample input is not a tensor"):
        trace_submodules(module, {**x, "signal": "zeros"})


def test_trace_submodules_needs_a_compiled_module():
    with pytest.raises(SnnirError, match="compiled snnir module"):
        trace_submodules(torch.nn.Linear(3, 2), torch.zeros(2, 1, 3))


def test_snntorch_model_traced_compiled_and_traced_again():
    snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Linear(6, 5),
        snn.RLeaky(beta=0.8, linear_features=5, init_hidden=True, reset_mechanism="subtract", learn_beta=True),
        torch.nn.Linear(5, 4, bias=False),
        snn.Synaptic(alpha=0.7, beta=0.9, init_hidden=True, reset_delay=False, reset_mechanism="subtract"),
        torch.nn.Linear(4, 3),
        snn.Leaky(beta=0.9, init_hidden=True, reset_delay=False, reset_mechanism="zero", learn_threshold=True),
    )
    graph = snnir.trace(net, torch.zeros(1, 6))
    module = snnir.compile(graph, target="torch")
    x = torch.rand(STEPS, BATCH, 6)
    assert snnir.trace(module, x) == graph
    assert trace_submodules(module, x) == graph


def test_compiled_module_inside_a_model_is_refused_clearly():
    graph = nested_graph(SEMANTICS["default"])
    module = snnir.compile(graph, target="torch", dtype=torch.float64)
    with pytest.raises(SnnirError, match="compiled snnir module inside") as info:
        snnir.trace(torch.nn.Sequential(module), sample(graph))
    assert info.value.node == "0"
