"""Export a graph as a one-timestep ONNX model with explicit state.

The model's inputs are the graph inputs (named by their Input nodes,
``[batch, *shape]``) followed by one tensor per state variable
(``"<node path>.<state>"``); its outputs are the graph outputs (named by their
Output nodes) followed by the new states (``"<...>.next"``). States start at
zero. A delayed (recurrent) edge reads its source's previous output from the
extra state ``"<source>.out"``; a neuron's fed-back edges (:mod:`snnir.ir.schedule`) are summed
apart into its kernel's ``fed`` input. Fused neuron steps and the surrogate spike are
custom ops in domain ``ai.snnir`` (see :mod:`snnir.targets.ipu.kernels`) whose
ONNX function bodies (:mod:`~snnir.targets.ipu.onnx_functions`) ship in ``model.functions``: any
ONNX runtime runs them, PopART binds the custom ops instead. Built with
``onnx.helper`` from the snnir graph; nothing is traced.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.ops import (
    Affine, AvgPool2d, Conv1d, Conv2d, Delay, Flatten, Input, Linear, Output, Scale, Subgraph,
    SumPool2d, Threshold,
)
from snnir.ir.ops.neuron import Neuron
from snnir.ir.ops.norm import BatchNorm
from snnir.ir.ops.probe import StateProbe
from snnir.ir.ops.pool import MaxPool1d, MaxPool2d
from snnir.ir.schedule import schedule
from snnir.ir.shapes import Shapes, infer_shapes
from snnir.ir.verify import verify
from snnir.targets.ipu.kernels import DOMAIN, DOMAIN_VERSION, SPIKE_OP, Kernel, coefficients, kernel_for
from snnir.targets.ipu.onnx_functions import OPSET, neuron_function, spike_function
from snnir.targets.precision import check_params_fit
from snnir.targets.reference.interpreter import EXTENSIONS

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
#: The files :func:`write` puts in its directory.
FILES = (MODEL_FILE, MANIFEST_FILE)
PRECISIONS = {"fp32": (TensorProto.FLOAT, np.float32), "fp16": (TensorProto.FLOAT16, np.float16)}
BATCH = "batch"
_REMEDY = ("the ONNX and IPU targets compute in float32 at most (precision='fp32'); "
           "the torch target holds it with dtype=torch.float64")


@dataclass
class OnnxExport:
    """An exported model, its manifest (shapes mark the batch dim with ``BATCH``) and its kernels by name."""

    model: onnx.ModelProto
    manifest: dict[str, Any]
    kernels: dict[str, Kernel] = field(default_factory=dict)


def compile_onnx(graph: Graph, out_dir: Any = None, *, precision: str = "fp32") -> Path:
    """Write ``out_dir/model.onnx`` and ``out_dir/manifest.json``; returns ``out_dir``."""
    require_out_dir(out_dir, "ONNX")
    return write(export(graph, precision=precision), out_dir)


def require_out_dir(out_dir: Any, target: str) -> None:
    """``out_dir`` names a directory: a non-empty path (an empty one would be the current directory)."""
    if not isinstance(out_dir, (str, os.PathLike)) or not os.fspath(out_dir):
        got = "" if out_dir is None else f", got {out_dir!r}"
        raise SnnirError(f"the {target} target needs an output directory (out_dir=...){got}")


def write(exported: OnnxExport, out_dir: Any, **manifest_extra: Any) -> Path:
    """Save the model and its manifest (with ``manifest_extra`` entries added) into ``out_dir``."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SnnirError(f"cannot create the output directory {out}: {exc.strerror}") from None
    onnx.save(exported.model, out / MODEL_FILE)
    manifest = {**exported.manifest, **manifest_extra}
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def export(graph: Graph, *, precision: str = "fp32") -> OnnxExport:
    """Build the ONNX model of one step of ``graph`` (verified first)."""
    if precision not in PRECISIONS:
        raise SnnirError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    shapes = verify(graph).shapes
    builder = _Builder(shapes, precision)
    check_params_fit(graph, builder.act_dtype, precision, _REMEDY)
    ports = {}
    for name in graph.inputs:
        ports[name] = name
        builder.graph_inputs.append(builder.value_info(name, shapes.outputs[name], builder.act_type))
    outs = builder.level(graph, "", ports)
    for name, tensor in outs.items():
        builder.add("Identity", [tensor], [name])
        builder.graph_outputs.append(builder.value_info(name, shapes.inputs[name], builder.act_type))
    model = builder.model()
    onnx.checker.check_model(model)
    return OnnxExport(model, builder.manifest(graph), builder.kernels)


class _Builder:
    def __init__(self, shapes: Shapes, precision: str):
        self.shapes = shapes
        self.precision = precision
        self.act_type, self.act_dtype = PRECISIONS[precision]
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.graph_inputs: list[onnx.ValueInfoProto] = []
        self.graph_outputs: list[onnx.ValueInfoProto] = []
        self.state_inputs: list[onnx.ValueInfoProto] = []
        self.state_outputs: list[onnx.ValueInfoProto] = []
        self.states: dict[str, dict[str, Any]] = {}
        self.kernels: dict[str, Kernel] = {}
        self.node_info: dict[str, dict[str, Any]] = {}
        self.detached: list[str] = []  # values that pass no gradient back (Delay's sem.detached)
        self.uses_spike = False

    # --- small helpers -----------------------------------------------------
    def value_info(self, name: str, shape, elem_type: int, leading: tuple = (BATCH,)) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, elem_type, list(leading) + [int(d) for d in shape])

    def add(self, op_type: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs: Any) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=outputs[0], domain=domain, **attrs))

    def const(self, name: str, array: np.ndarray, dtype=None) -> str:
        array = np.asarray(array, dtype=dtype if dtype is not None else self.act_dtype)
        self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def state(self, name: str, shape, elem_type: int, leading: tuple = (BATCH,)) -> str:
        """Declare state ``name`` (an input) and its ``name.next`` output; returns the input name."""
        self.state_inputs.append(self.value_info(name, shape, elem_type, leading))
        self.state_outputs.append(self.value_info(f"{name}.next", shape, elem_type, leading))
        self.states[name] = {
            "shape": list(leading) + [int(d) for d in shape],
            "dtype": "float32" if elem_type == TensorProto.FLOAT else "float16",
            "init": "zeros",
        }
        return name

    def sum(self, path: str, port: Any, tensors: list[str]) -> str:
        total = tensors[0]
        for k, tensor in enumerate(tensors[1:]):
            out = f"{path}/sum{'' if port is None else '.' + port}{k}"
            self.add("Add", [total, tensor], [out])
            total = out
        return total

    # --- graph levels --------------------------------------------------------
    def level(self, graph: Graph, prefix: str, ports: Mapping[str, str]) -> dict[str, str]:
        """Emit one graph level; ``ports`` maps its Input nodes to tensors. Returns Output -> tensor."""
        sched = schedule(graph)
        sources: dict[str, list[tuple[str, str | None, bool]]] = {}
        fed_back: dict[str, set[int]] = {}  # per node, the positions of its fed-back edges
        for src, dst in graph.edges:
            node, port = graph.resolve(dst, as_source=False)
            s_node, s_port = graph.resolve(src, as_source=True)
            key = f"{s_node}.{s_port}" if s_port is not None else s_node
            if (src, dst) in sched.fed_back:
                fed_back.setdefault(node, set()).add(len(sources.get(node, [])))
            sources.setdefault(node, []).append((key, port, (src, dst) in sched.delayed))
        previous: dict[str, str] = {}
        for key, _, delayed in (s for lst in sources.values() for s in lst):
            if delayed and key not in previous:
                shape = self.shapes.outputs[prefix + key]
                previous[key] = self.state(f"{prefix}{key}.out", shape, self.act_type)
        values: dict[str, str] = {}
        for name in sched.order:
            op = graph.nodes[name]
            path = prefix + name
            if isinstance(op, Input):
                values[name] = ports[name]
                continue
            if isinstance(op, StateProbe):  # its neuron's new state (emitted before it), in the activation type
                state, values[name] = f"{prefix}{sources[name][0][0]}.{op.state}.next", f"{path}/y"
                cast = {"to": self.act_type} if self.precision == "fp16" else {}
                self.add("Cast" if cast else "Identity", [state], [values[name]], **cast)
                continue
            summed: dict[str | None, list[str]] = {}
            fed: list[str] = []
            for index, (key, port, delayed) in enumerate(sources.get(name, [])):
                value = previous[key] if delayed else values[key]
                (fed if index in fed_back.get(name, ()) else summed.setdefault(port, [])).append(value)
            inputs = {port: self.sum(path, port, tensors) for port, tensors in summed.items()}
            if fed:  # a neuron's fed-back drive
                values[name] = self.neuron(op, path, inputs[None], f"{path}/y", self.sum(path, "fed", fed))
                continue
            if isinstance(op, Subgraph):
                child_ports = {(p if p is not None else op.graph.inputs[0]): t for p, t in inputs.items()}
                outs = self.level(op.graph, path + ".", child_ports)
                for port, tensor in outs.items():
                    values[f"{name}.{port}"] = tensor
                if len(outs) == 1:
                    values[name] = next(iter(outs.values()))
                continue
            x = inputs[None]
            if type(op) in EXTENSIONS:  # run by its definition, state under its path (as snnir.run)
                values[name] = self.extension(op, path, x)
                continue
            if isinstance(op, Output):
                values[name] = x
                continue
            try:
                values[name] = self.lower(op, path, x)
            except SnnirError as exc:
                raise SnnirError(exc.reason, exc.node or path) from None
            info = self.node_info.setdefault(path, {"op": op.op_type})
            info["shape"] = [BATCH] + list(self.shapes.outputs[path])
        for key, state in previous.items():
            self.add("Identity", [values[key]], [f"{state}.next"])
        return {name: values[name] for name in graph.outputs}

    def extension(self, op: Any, path: str, x: str) -> str:
        expansion = EXTENSIONS[type(op)](op)
        inner = infer_shapes(expansion)
        for table, inner_table in ((self.shapes.inputs, inner.inputs), (self.shapes.outputs, inner.outputs)):
            table.update({f"{path}.{key}": value for key, value in inner_table.items()})
        outs = self.level(expansion, path + ".", {expansion.inputs[0]: x})
        return next(iter(outs.values()))

    # --- ops ---------------------------------------------------------------------
    def lower(self, op: Any, path: str, x: str) -> str:
        """Emit one op's step by its entry in ``LOWERINGS`` (or its nearest base class's)."""
        lowering = next((LOWERINGS[cls] for cls in type(op).__mro__ if cls in LOWERINGS), None)
        if lowering is None:
            raise SnnirError(f"the ONNX/IPU target has no lowering for {op.op_type}", path)
        y = f"{path}/y"
        lowering(self, op, path, x, y)
        return y

    def delay(self, op: Delay, path: str, x: str, y: str) -> None:
        shape = tuple(self.shapes.outputs[path])
        steps = np.broadcast_to(op.steps(path), shape)
        depth = int(steps.max()) if steps.size else 0
        self.node_info[path] = {"op": "Delay", "depth": depth, "dt": op.sem.dt}
        if op.sem.detached:
            self.detached.append(y)
        if depth == 0:
            self.add("Identity", [x], [y])
            return
        buffer = self.state(f"{path}.buffer", shape, self.act_type, leading=(depth, BATCH))
        axis0 = self.const(f"{path}/axis0", [0], np.int64)
        self.add("Unsqueeze", [x, axis0], [f"{path}/x1"])
        self.add("Concat", [buffer, f"{path}/x1"], [f"{path}/history"], axis=0)
        # y = history[depth - steps] per element, as a one-hot mask summed over time (exact)
        mask = (np.arange(depth + 1).reshape((-1,) + (1,) * steps.ndim) == depth - steps)[:, None]
        self.add("Mul", [f"{path}/history", self.const(f"{path}/mask", mask)], [f"{path}/picked"])
        self.add("ReduceSum", [f"{path}/picked", axis0], [y], keepdims=0)
        big = self.const(f"{path}/end", [np.iinfo(np.int64).max], np.int64)
        self.add("Slice", [f"{path}/history", self.const(f"{path}/one", [1], np.int64), big, axis0],
                 [f"{buffer}.next"])

    def neuron(self, op: Neuron, path: str, x: str, y: str, fed: str | None = None) -> str:
        """Emit ``op``'s step into ``y`` (returned); ``fed``: its fed-back drive."""
        kernel = kernel_for(op, fed is not None)
        self.kernels[kernel.name] = kernel
        shape = self.shapes.outputs[path]
        state_ins = [self.state(f"{path}.{s}", shape, TensorProto.FLOAT) for s in kernel.state_names]
        coeffs = []
        for name, value in coefficients(op).items():
            with np.errstate(over="ignore"):
                if not np.all(np.isfinite(value.astype(np.float32))):
                    raise SnnirError(f"the step coefficient {name} (from the parameters, time constants and dt) "
                                     f"is not finite in float32: {_REMEDY}", path)
            coeffs.append(self.const(f"{path}/{name}", value, np.float32))
        x_ins = [x] + ([fed] if fed is not None else [])
        if self.precision == "fp16":
            for k, name in enumerate(("x32", "fed32")[: len(x_ins)]):
                self.add("Cast", [x_ins[k]], [f"{path}/{name}"], to=TensorProto.FLOAT)
                x_ins[k] = f"{path}/{name}"
        y32 = f"{path}/y32" if self.precision == "fp16" else y
        outs = [y32] + [f"{s}.next" for s in state_ins]
        self.add(kernel.name, x_ins + state_ins + coeffs, outs, domain=DOMAIN)
        if self.precision == "fp16":
            self.add("Cast", [y32], [y], to=self.act_type)
        self.node_info[path] = {
            "op": op.op_type, "kernel": kernel.name, "states": list(kernel.state_names),
            "dt": op.sem.dt, "semantics": op.sem.to_dict(), "shape": [BATCH] + list(self.shapes.outputs[path]),
        }
        return y

    # --- assembly -------------------------------------------------------------------
    def model(self) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, "snnir_step", self.graph_inputs + self.state_inputs,
            self.graph_outputs + self.state_outputs, self.initializers,
        )
        functions = [neuron_function(k) for k in self.kernels.values()]
        if self.uses_spike:
            functions.append(spike_function())
        opsets = [helper.make_opsetid("", OPSET), helper.make_opsetid(DOMAIN, DOMAIN_VERSION)]
        model = helper.make_model(graph, opset_imports=opsets, functions=functions, producer_name="snnir")
        model.ir_version = 8
        return model

    def manifest(self, graph: Graph) -> dict[str, Any]:
        return {
            "format": "snnir-onnx-step/1",
            "model": MODEL_FILE,
            "precision": self.precision,
            "state_precision": "fp32 (neurons); activations elsewhere",
            "domain": DOMAIN,
            "domain_version": DOMAIN_VERSION,
            "inputs": {n: [BATCH] + list(self.shapes.outputs[n]) for n in graph.inputs},
            "outputs": {n: [BATCH] + list(self.shapes.inputs[n]) for n in graph.outputs},
            "states": self.states,
            "custom_ops": sorted(self.kernels) + ([SPIKE_OP] if self.uses_spike else []),
            "nodes": self.node_info,
            "detached": self.detached,
        }


# --- running with onnxruntime ---------------------------------------------------------
def simulate(model_dir: Any, x: Any) -> dict[str, np.ndarray]:
    """Step ``model_dir/model.onnx`` with onnxruntime over ``x`` (``[T, B, *shape]`` or a dict by
    Input name), states from zero. Returns ``{output: [T, B, ...]}`` and ``{state: [T, ...]}`` (float64)."""
    import onnxruntime as ort

    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text())
    session = ort.InferenceSession(str(model_dir / manifest["model"]), providers=["CPUExecutionProvider"])
    names = list(manifest["inputs"])
    given = dict(x) if isinstance(x, Mapping) else {names[0]: x}
    dtype = np.float16 if manifest["precision"] == "fp16" else np.float32
    arrays = {n: np.asarray(given[n]) for n in names}
    steps, batch = next(iter(arrays.values())).shape[:2]
    state = {
        n: np.zeros([batch if d == BATCH else d for d in s["shape"]], dtype=s["dtype"])
        for n, s in manifest["states"].items()
    }
    outputs = list(manifest["outputs"]) + [f"{n}.next" for n in state]
    results: dict[str, list[np.ndarray]] = {n: [] for n in list(manifest["outputs"]) + list(state)}
    for t in range(steps):
        feed = {n: arrays[n][t].astype(dtype) for n in names}
        feed.update(state)
        values = dict(zip(outputs, session.run(outputs, feed)))
        state = {n: values[f"{n}.next"] for n in state}
        for n in manifest["outputs"]:
            results[n].append(values[n])
        for n, v in state.items():
            results[n].append(v)
    return {n: np.stack(v).astype(np.float64) for n, v in results.items()}


# --- the lowering table: op class -> fn(builder, op, path, x, y) writing the op's step to y --------
def _dense(b: _Builder, op: Any, path: str, x: str, y: str) -> None:
    wt = b.const(f"{path}/weight_t", np.asarray(op.weight).T)
    if isinstance(op, Linear):
        b.add("MatMul", [x, wt], [y])
    else:
        b.add("MatMul", [x, wt], [f"{path}/matmul"])
        b.add("Add", [f"{path}/matmul", b.const(f"{path}/bias", op.bias)], [y])


def _scale(b: _Builder, op: Scale, path: str, x: str, y: str) -> None:
    b.add("Mul", [x, b.const(f"{path}/scale", op.scale)], [y])


def _batch_norm(b: _Builder, op: BatchNorm, path: str, x: str, y: str) -> None:
    params = [b.const(f"{path}/{n}", getattr(op, n)) for n in ("weight", "bias", "mean", "var")]
    b.add("BatchNormalization", [x] + params, [y], epsilon=float(op.eps))


def _flatten(b: _Builder, op: Flatten, path: str, x: str, y: str) -> None:
    b.add("Reshape", [x, b.const(f"{path}/shape", [0] + list(b.shapes.outputs[path]), np.int64)], [y])


def _conv(b: _Builder, op: Any, path: str, x: str, y: str) -> None:
    bias = np.broadcast_to(np.asarray(op.bias), (op.weight.shape[0],))
    pads = list(op.explicit_padding())
    b.add(
        "Conv", [x, b.const(f"{path}/weight", op.weight), b.const(f"{path}/bias", bias)], [y],
        kernel_shape=list(op.weight.shape[2:]), strides=list(op.stride), dilations=list(op.dilation),
        pads=pads + pads, group=int(op.groups),
    )


def _sum_pool(b: _Builder, op: SumPool2d, path: str, x: str, y: str) -> None:
    channels = b.shapes.inputs[path][0]
    ones = b.const(f"{path}/ones", np.ones((channels, 1) + tuple(op.kernel_size)))
    b.add("Conv", [x, ones], [y], kernel_shape=list(op.kernel_size), strides=list(op.stride),
          pads=list(op.padding) * 2, group=int(channels))


def _avg_pool(b: _Builder, op: AvgPool2d, path: str, x: str, y: str) -> None:
    b.add("AveragePool", [x], [y], kernel_shape=list(op.kernel_size), strides=list(op.stride),
          pads=list(op.padding) * 2, count_include_pad=1)


def _max_pool(b: _Builder, op: MaxPool1d | MaxPool2d, path: str, x: str, y: str) -> None:
    """-inf padding made explicit (``op.pads``: ceil_mode's extra windows included), then a
    floor-mode MaxPool without pads."""
    pads = op.pads(b.shapes.inputs[path][1:])
    begins, ends = [0, 0] + [lo for lo, _ in pads], [0, 0] + [hi for _, hi in pads]
    b.add("Pad", [x, b.const(f"{path}/pads", begins + ends, np.int64), b.const(f"{path}/neg_inf", -np.inf)],
          [f"{path}/padded"], mode="constant")
    b.add("MaxPool", [f"{path}/padded"], [y], kernel_shape=list(op.kernel_size), strides=list(op.stride),
          dilations=list(op.dilation))


def _threshold(b: _Builder, op: Threshold, path: str, x: str, y: str) -> None:
    b.add("Sub", [x, b.const(f"{path}/threshold", op.threshold)], [f"{path}/shifted"])
    b.add(SPIKE_OP, [f"{path}/shifted"], [y], domain=DOMAIN)
    b.uses_spike = True


#: every op the ONNX/IPU target lowers; a class not listed takes its nearest listed base's
#: (every neuron op: ``Neuron``'s fused step)
LOWERINGS: dict[type, Any] = {
    Affine: _dense, Linear: _dense, Scale: _scale, Flatten: _flatten, Conv1d: _conv, Conv2d: _conv,
    SumPool2d: _sum_pool, AvgPool2d: _avg_pool, MaxPool1d: _max_pool, MaxPool2d: _max_pool, Threshold: _threshold, Delay: _Builder.delay,
    BatchNorm: _batch_norm,
    Neuron: _Builder.neuron,
}
