"""Conformance: one loop over the op registry, every path against the reference.

For each registered op type (standard and extension) :func:`conformance_graph`
builds a small graph containing it; every cell runs that graph on random inputs
(``STEPS`` steps, batch ``BATCH``) through one path and compares it with
:func:`snnir.run` (numpy float64):

- ``nir``, ``nir:keep_extensions``: write a .nir file (extension ops lowered or kept), read it back;
- ``pass:<name>``: every registered pass alone; ``O0``..``O2``: :func:`snnir.optimize`;
- ``torch``: the torch target in float64: spikes identical, other values rtol 1e-6;
  ``torch:float32``: in float32, spikes identical, other values rtol 1e-4; ``torch:stepwise``:
  one step per call; ``torch:native``: the C++ kernels and the paths only an inference
  without recorded states takes (a max pool run inside its neuron's scan), outputs only;
- ``onnx``: model.onnx stepped by onnxruntime in float32: spikes identical, other
  values rtol 1e-4; ``ipu``: the IPU build, run only where poptorch is.

Float32 rounding can only flip a spike whose membrane sits at its threshold, so
:func:`robust_inputs` picks inputs whose reference spikes do not change under a
1e-4 relative input perturbation (far above float32 rounding).

A new op with no example here, or no lowering in a target's table, fails.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

import snnir
from snnir.ir import Graph, Semantics
from snnir.ir import semantics as semantics_options
from snnir.ir.ops import (
    IF, LI, LIF, Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Flatten, I, Input, Linear, Output,
    Scale, Subgraph, SumPool2d, Threshold,
)
from snnir.ir.ops.fused import FusedLayerNeuron
from snnir.ir.ops.neuron import Neuron
from snnir.ir.ops.norm import BatchNorm
from snnir.ir.ops.pool import MaxPool1d, MaxPool2d
from snnir.ir.ops.probe import StateProbe
from snnir.ir.registry import OPS
from snnir.passes import LEVELS, PASSES

STEPS, BATCH, DT = 50, 3, 1e-3
RTOL = {"float64": 1e-6, "float32": 1e-4}

#: Options for passes that cannot run without them; each keeps behaviour step by step.
PASS_OPTIONS = {"change_dt": {"dt": 2 * DT}}  # doubling dt rescales taus and delays exactly


# --- one example graph per op type -------------------------------------------------------
def _neuron(kind: type, rng: np.random.Generator, n: int, sem: Semantics):
    """A ``kind`` neuron of ``n`` units that spikes (if it can) under unit-scale drive."""
    def pos(lo, hi):
        return rng.uniform(lo, hi, size=n)

    params = {
        I: dict(r=pos(50, 150)),
        IF: dict(r=pos(100, 300), v_threshold=pos(0.5, 1.5), v_reset=rng.uniform(-0.2, 0.2, n)),
        LI: dict(tau=pos(5e-3, 2e-2), r=pos(0.5, 2), v_leak=rng.uniform(-0.1, 0.1, n)),
        LIF: dict(tau=pos(5e-3, 2e-2), r=pos(1, 3), v_leak=rng.uniform(-0.1, 0.1, n), v_threshold=pos(0.3, 1.0),
                  v_reset=rng.uniform(-0.2, 0.2, n)),
        CubaLI: dict(tau_syn=pos(3e-3, 1e-2), tau_mem=pos(5e-3, 2e-2), r=pos(0.5, 2), v_leak=0.0, w_in=pos(0.5, 1.5)),
        CubaLIF: dict(tau_syn=pos(3e-3, 1e-2), tau_mem=pos(5e-3, 2e-2), r=pos(2, 6), v_leak=rng.uniform(-0.1, 0.1),
                      v_threshold=pos(0.3, 1.0), v_reset=0.0, w_in=pos(0.5, 1.5)),
    }[kind]
    return kind(**params, sem=sem)


#: One semantics per neuron type; with the nested graph's (reset "none") the loop covers every option.
NEURON_SEMANTICS = {
    I: Semantics(dt=DT, discretisation="exp"),
    IF: Semantics(dt=DT, reset="subtract", reset_timing="next_after_input", threshold_compare="ge", spike_mode="multi"),
    LI: Semantics(dt=DT, discretisation="exp", current_order="voltage_first"),
    LIF: Semantics(dt=DT, reset="zero", reset_timing="next", threshold_compare="ge"),
    CubaLI: Semantics(dt=DT, discretisation="euler", current_order="voltage_first"),
    CubaLIF: Semantics(dt=DT, discretisation="exp", reset="subtract", reset_timing="next", gain_held=True),
}


def _seq(*named, shape) -> Graph:
    return Graph.sequential(("in", Input(shape)), *named, ("out", Output()))


def _with_spiking_branch(graph: Graph, after: str, n: int, rng: np.random.Generator) -> Graph:
    """Add ``after -> lif -> out_spikes``: analogue ops are also checked feeding a neuron."""
    lif = _neuron(LIF, rng, n, Semantics(dt=DT, reset="subtract"))
    nodes = {**graph.nodes, "lif": lif, "out_spikes": Output()}
    return graph.replace(nodes=nodes, edges=graph.edges + ((after, "lif"), ("lif", "out_spikes")))


def conformance_graph(op_type: str) -> tuple[Graph, tuple[int, ...]]:
    """A small graph exercising ``op_type`` and the per-sample input shape it takes."""
    rng = np.random.default_rng(sorted(OPS).index(op_type))
    cls = OPS[op_type]
    normal = rng.normal
    if cls in NEURON_SEMANTICS:
        neuron = _neuron(cls, rng, 6, NEURON_SEMANTICS[cls])
        return _seq(("fc", Affine(normal(0.5, 1.0, (6, 4)), normal(0, 0.2, 6))), ("node", neuron), shape=(4,)), (4,)
    if cls in (Input, Output):
        return _seq(shape=(4,)), (4,)
    if cls is Threshold:
        return _seq(("fc", Linear(normal(0, 1, (5, 4)))), ("node", Threshold(normal(0.3, 0.3, 5))), shape=(4,)), (4,)
    if cls in (Affine, Linear, Scale):
        op = {
            Affine: lambda: Affine(normal(0.5, 1, (5, 4)), normal(0, 0.3, 5)),
            Linear: lambda: Linear(normal(0.5, 1, (5, 4))),
            Scale: lambda: Scale(rng.uniform(0.5, 2, 4)),
        }[cls]()
        n = 4 if cls is Scale else 5
        graph = _seq(("pre", Scale(rng.uniform(0.5, 2, 4))), ("node", op), shape=(4,))
        graph = _with_spiking_branch(graph, "node", n, rng)
        # a chain for fold_affine (pre -> node) and a dead node for eliminate_dead_nodes
        dead = Linear(normal(0, 1, (2, n)))
        return graph.replace(nodes={**graph.nodes, "dead": dead}, edges=graph.edges + (("node", "dead"),)), (4,)
    if cls is Flatten:
        graph = _seq(("node", Flatten(start_dim=0)), shape=(2, 3, 2))
        return _with_spiking_branch(graph, "node", 12, rng), (2, 3, 2)
    if cls is Conv1d:
        conv = Conv1d(normal(0.2, 0.6, (4, 2, 3)), normal(0, 0.1, 4), stride=2, padding=1)
        return _with_spiking_branch(_seq(("node", conv), ("flat", Flatten(0)), shape=(2, 9)), "flat", 20, rng), (2, 9)
    if cls is Conv2d:
        conv = Conv2d(normal(0.2, 0.6, (4, 1, 3, 3)), normal(0, 0.1, 4), padding="same", groups=2)
        graph = _seq(("node", conv), ("flat", Flatten(0)), shape=(2, 5, 5))
        return _with_spiking_branch(graph, "flat", 100, rng), (2, 5, 5)
    if cls in (SumPool2d, AvgPool2d):
        pool = cls(kernel_size=2, stride=(2, 1), padding=(1, 0))
        graph = _seq(("node", pool), ("flat", Flatten(0)), shape=(2, 4, 4))
        return _with_spiking_branch(graph, "flat", 2 * 3 * 3, rng), (2, 4, 4)
    if cls is MaxPool1d:  # fed spikes: written to files in standard NIR (a Conv1d of ones, then Threshold)
        lif = _neuron(LIF, rng, 9, Semantics(dt=DT, reset="subtract"))
        graph = _seq(("lif0", lif), ("node", MaxPool1d(kernel_size=3, stride=2, padding=1, dilation=2)),
                     ("flat", Flatten(0)), shape=(2, 9))
        return _with_spiking_branch(graph, "flat", 2 * 4, rng), (2, 9)
    if cls is MaxPool2d:  # analogue values and windows that ceil_mode adds: written as an extension op
        pool = MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)
        graph = _with_spiking_branch(_seq(("node", pool), ("flat", Flatten(0)), shape=(2, 6, 6)), "flat", 32, rng)
        # and a pool whose only consumer is a neuron (inference runs them in one pass)
        nodes = {**graph.nodes, "pool_in": MaxPool2d(kernel_size=2, stride=2),
                 "pooled_lif": _neuron(LIF, rng, (2, 3, 3), Semantics(dt=DT, reset="zero")), "out_pooled": Output()}
        edges = (("in", "pool_in"), ("pool_in", "pooled_lif"), ("pooled_lif", "out_pooled"))
        return graph.replace(nodes=nodes, edges=graph.edges + edges), (2, 6, 6)
    if cls is BatchNorm:  # after a Conv2d (folded into it in a file) and on the input (kept as an extension op)
        def norm(channels: int) -> BatchNorm:
            return BatchNorm(mean=normal(0, 0.2, channels), var=rng.uniform(0.5, 2, channels),
                             weight=rng.uniform(0.5, 1.5, channels), bias=normal(0, 0.1, channels), eps=1e-3)

        conv = Conv2d(normal(0.2, 0.6, (4, 2, 3, 3)), normal(0, 0.1, 4), padding=1)
        graph = _seq(("conv", conv), ("node", norm(4)), ("flat", Flatten(0)), shape=(2, 5, 5))
        graph = _with_spiking_branch(graph, "flat", 100, rng)
        nodes = {**graph.nodes, "raw": norm(2), "raw_flat": Flatten(0), "out_raw": Output()}
        edges = (("in", "raw"), ("raw", "raw_flat"), ("raw_flat", "out_raw"))
        return graph.replace(nodes=nodes, edges=graph.edges + edges), (2, 5, 5)
    if cls is Delay:
        delay = Delay(rng.integers(0, 5, 4) * DT, sem=Semantics(dt=DT, detached=True))  # training only
        return _with_spiking_branch(_seq(("node", delay), shape=(4,)), "node", 4, rng), (4,)
    if cls is Subgraph:
        inner = Graph(
            {"input": Input((5,)), "lif": _neuron(LIF, rng, 5, Semantics(dt=DT, reset="none", discretisation="exp")),
             "rec": Linear(normal(0, 0.5, (5, 5))), "output": Output((5,))},
            (("input", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")),
        )
        fc = Affine(normal(0.5, 1, (5, 4)), normal(0, 0.2, 5))
        return _seq(("fc", fc), ("node", Subgraph(graph=inner)), shape=(4,)), (4,)
    if cls is FusedLayerNeuron:
        neuron = _neuron(CubaLIF, rng, 6, Semantics(dt=DT, reset="zero", threshold_compare="ge"))
        return _seq(("node", FusedLayerNeuron(layer=Linear(normal(0.5, 1, (6, 4))), neuron=neuron)), shape=(4,)), (4,)
    if cls is StateProbe:  # a zero-reset neuron's membrane (before its delayed reset) and its current
        cell = _neuron(CubaLIF, rng, 6, Semantics(dt=DT, reset="zero", reset_timing="next", threshold_compare="ge"))
        graph = _seq(("fc", Affine(normal(0.5, 1.0, (6, 4)), normal(0, 0.2, 6))), ("cell", cell), shape=(4,))
        graph = graph.replace(nodes={**graph.nodes, "node": StateProbe("v"), "current": StateProbe("i"),
                                     "out_v": Output(), "out_i": Output()},
                              edges=graph.edges + (("cell", "node"), ("node", "out_v"), ("cell", "current"),
                                                   ("current", "out_i")))
        return _with_spiking_branch(graph, "node", 6, rng), (4,)
    raise AssertionError(f"no conformance example for op type '{op_type}': add one to conformance_graph")


def random_inputs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1.5, (STEPS, BATCH) + tuple(shape))


def is_spikes(values: np.ndarray) -> bool:
    return bool(np.all(values == np.round(values)) and np.all(values >= 0))


def robust_inputs(graph: Graph, shape: tuple[int, ...], relative: float = 1e-4, tries: int = 20) -> np.ndarray:
    """Inputs whose reference spikes survive a ``relative`` random perturbation of every input value."""
    for seed in range(tries):
        x = random_inputs(shape, seed)
        nudged = x * (1 + relative * np.random.default_rng(1000 + seed).uniform(-1, 1, x.shape))
        want, moved = snnir.run(graph, x), snnir.run(graph, nudged)
        if all(np.array_equal(want[k], moved[k]) for k in want if is_spikes(want[k])):
            return x
    raise AssertionError(f"no inputs with spikes clear of thresholds in {tries} seeds")


def assert_conforms(got: dict, want: dict, rtol: float, keys=None) -> None:
    """``got`` equals the reference ``want`` on ``keys`` (default: every key of ``want``)."""
    for key in want if keys is None else keys:
        assert key in got, f"'{key}' missing (has {sorted(got)})"
        a, b = np.asarray(got[key], dtype=np.float64), want[key]
        assert a.shape == b.shape, f"{key}: shape {a.shape} != {b.shape}"
        if is_spikes(b) and key.split(".")[-1] not in ("v", "i", "buffer"):
            bad = np.argwhere(a != b)
            assert bad.size == 0, f"{key}: spikes differ first at step {bad[0][0]} of {len(b)}"
        else:
            scale = max(1.0, float(np.abs(b).max()))
            np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=key)


# --- the loop ----------------------------------------------------------------------------
OP_TYPES = sorted(OPS)
PATHS = (
    ["nir", "nir:keep_extensions"]
    + [f"pass:{name}" for name in sorted(PASSES)]
    + [f"O{level}" for level in sorted(LEVELS)]
    + ["torch", "torch:float32", "torch:stepwise", "torch:native", "onnx", "ipu"]
)
#: (op type, path) -> why that cell is known to fail (xfail strict); empty when all conform.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}


def _cells():
    for op_type in OP_TYPES:
        for path in PATHS:
            reason = KNOWN_FAILURES.get((op_type, path))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            yield pytest.param(op_type, path, marks=marks, id=f"{op_type}-{path}")


@pytest.fixture(scope="module")
def references():
    """op type -> (graph, inputs, reference run with state traces), built once per op."""
    cache = {}

    def get(op_type):
        if op_type not in cache:
            graph, shape = conformance_graph(op_type)
            x = robust_inputs(graph, shape)
            cache[op_type] = graph, x, snnir.run(graph, x, record=True)
        return cache[op_type]

    return get


def _run_path(path: str, graph: Graph, x: np.ndarray, tmp_path) -> tuple[dict, float]:
    """Outputs (and any state traces) of ``graph`` on ``x`` through ``path``, and its tolerance."""
    if path.startswith("nir"):
        snnir.write(graph, tmp_path / "g.nir", keep_extensions=path.endswith("keep_extensions"))
        return snnir.run(snnir.read(tmp_path / "g.nir"), x, record=True), RTOL["float64"]
    if path.startswith("pass:"):
        name = path[len("pass:"):]
        try:
            rewritten = PASSES[name](graph, **PASS_OPTIONS.get(name, {}))
        except snnir.SnnirError as exc:
            hint = "if it needs options, add them to PASS_OPTIONS"
            raise AssertionError(f"pass '{name}' failed ({exc}); {hint}") from None
        return snnir.run(rewritten, x, record=True), RTOL["float64"]
    if path.startswith("O"):
        return snnir.run(snnir.optimize(graph, level=int(path[1:])), x, record=True), RTOL["float64"]
    if path.startswith("torch"):
        import torch

        dtype = torch.float32 if path.endswith("float32") else torch.float64
        # stepwise: every segment of layers in calls of one step (snnTorch's order), see plan.py
        top = [n for n, op in graph.nodes.items() if op.op_type not in ("Input", "Output")]
        plan = {"layer_chunks": dict.fromkeys(top, 1)} if path.endswith("stepwise") else {}
        native = path.endswith("native")
        module = snnir.compile(graph, target="torch", dtype=dtype, native=native, **plan)
        with torch.no_grad():
            x_t = torch.from_numpy(x).to(dtype)
            out, traces = (module(x_t), {}) if native else module(x_t, record=True)
        outs = out if isinstance(out, dict) else {graph.outputs[0]: out}
        rtol = RTOL["float64"] if dtype == torch.float64 else RTOL["float32"]
        return {k: v.numpy() for k, v in {**outs, **traces}.items()}, rtol
    if path == "onnx":
        if importlib.util.find_spec("onnxruntime") is None:
            pytest.skip("onnxruntime is not installed (the test extra)")
        from snnir.targets.ipu.onnx_export import simulate

        model_dir = snnir.compile(graph, target="onnx", out_dir=tmp_path / "onnx")
        return simulate(model_dir, x), RTOL["float32"]
    if path == "ipu":
        return _run_ipu(graph, x, tmp_path), RTOL["float32"]
    raise AssertionError(f"unknown path {path}")


def _run_ipu(graph: Graph, x: np.ndarray, tmp_path) -> dict:
    """The IPU build: generated on any machine, run only where poptorch and an IPU exist."""
    from snnir.targets.ipu import compile_ipu

    artifacts = compile_ipu(graph, tmp_path / "ipu")
    module = artifacts.load_module()
    if module.poptorch is None:
        pytest.skip("poptorch (Graphcore Poplar SDK) is not installed: the IPU build was generated, not run")
    import torch

    net = module.poptorch.inferenceModel(module.ipu_module())
    out = net(torch.tensor(x, dtype=torch.float32))
    outs = out if isinstance(out, dict) else {graph.outputs[0]: out}
    return {k: v.detach().numpy() for k, v in outs.items()}


@pytest.mark.parametrize(("op_type", "path"), list(_cells()))
def test_conforms_to_reference(op_type, path, references, tmp_path, request):
    graph, x, want = references(op_type)
    if path == "torch:native":
        request.getfixturevalue("native_kernels")  # skips where they cannot be built
    got, rtol = _run_path(path, graph, x, tmp_path)
    assert_conforms(got, want, rtol, keys=graph.outputs)
    # state of nodes the path keeps (same name, same state variable) must match too
    assert_conforms(got, want, rtol, keys=[k for k in want if k in got and k not in graph.outputs])
    if path.startswith(("nir", "torch")) and path != "torch:native":  # every node kept: every state trace there
        assert_conforms(got, want, rtol)


def test_examples_exercise_spikes(references):
    """Each example containing a spiking op produces spikes (else spike equality is vacuous)."""
    silent = []
    for op_type in OP_TYPES:
        graph, _, want = references(op_type)
        spiking = [k for k in graph.outputs if is_spikes(want[k])]
        if spiking and not any(want[k].sum() > 0 for k in spiking):
            silent.append(op_type)
    assert not silent, f"no output spikes for {silent}"


def test_examples_cover_every_semantics_option():
    """Every value of every Semantics option (but dt) is used by some example's neuron
    (``detached``: by a Delay)."""
    choices = {
        "discretisation": semantics_options.DISCRETISATIONS, "reset": semantics_options.RESETS,
        "reset_timing": semantics_options.RESET_TIMINGS, "threshold_compare": semantics_options.THRESHOLD_COMPARES,
        "spike_mode": semantics_options.SPIKE_MODES, "current_order": semantics_options.CURRENT_ORDERS,
        "gain_held": (False, True), "detached": (False, True),
    }
    fields = {f.name for f in dataclasses.fields(Semantics)} - {"dt"}
    assert fields == set(choices), f"new Semantics fields {fields - set(choices)}: cover them here"
    used = {name: set() for name in choices}
    for op_type in OP_TYPES:
        for _, op in conformance_graph(op_type)[0].walk():
            if isinstance(op, Delay):
                used["detached"].add(op.sem.detached)
            for neuron in (op, getattr(op, "neuron", None)):
                if isinstance(neuron, Neuron):
                    for name in choices:
                        used[name].add(getattr(neuron.sem, name))
    missing = {name: sorted(set(values) - used[name]) for name, values in choices.items() if set(values) - used[name]}
    assert missing == {}, f"no example uses {missing}"


# --- lowering tables ---------------------------------------------------------------------
def _handled_by_graph_machinery() -> set:
    from snnir.targets.reference import EXTENSIONS

    return {Input, Output, Subgraph, StateProbe} | set(EXTENSIONS)  # a probe reads its neuron's state


def test_reference_executes_every_op():
    from snnir.targets.reference import check_lowerings
    from snnir.targets.reference.kernels import STATEFUL, STATELESS

    table = set(STATELESS) | set(STATEFUL) | _handled_by_graph_machinery()
    missing = [t for t, cls in OPS.items() if cls not in table]
    assert missing == [] and check_lowerings() == [], f"the reference interpreter cannot run {missing}"


def test_torch_lowers_every_op():
    from snnir.targets.torch import LOWERINGS

    missing = [t for t, cls in OPS.items() if cls not in LOWERINGS and cls not in _handled_by_graph_machinery()]
    assert missing == [], f"the torch target's LOWERINGS lacks {missing}"


def test_onnx_lowers_every_op(tmp_path):
    """The ONNX exporter dispatches in code (no table): every example must export."""
    pytest.importorskip("onnx", reason="onnx is not installed (the test extra)")
    from snnir.targets.ipu.onnx_export import export

    failed = {}
    for op_type in OP_TYPES:
        try:
            export(conformance_graph(op_type)[0])
        except snnir.SnnirError as exc:
            failed[op_type] = str(exc)
    assert failed == {}, failed
