"""Readable, standalone torch source for a graph, with its weights in a file beside it.

The generated module needs torch alone, plus ``safetensors`` for a ``.safetensors`` weights
file (the default where installed; else a ``.pt`` file of plain tensors read with
``torch.load(weights_only=True)``, never unpickled); it imports no snnir. It embeds the
plain-torch kernels of :mod:`snnir.targets.torch.standalone_kernels` and spells the graph out
as one ``step`` method, node by node in schedule order; ``forward`` runs it over time.
Nested graphs and extension ops are inlined first (fused nodes split back into their layer
and neuron), so node paths read ``"outer.inner"``. Spikes equal the reference interpreter's
in float64; parameters an op marks trainable train (fast-sigmoid surrogate).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from snnir.errors import SnnirError, warn
from snnir.ir.graph import Graph
from snnir.ir.ops import (
    IF, LI, LIF, Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Flatten, I, Input, Linear, Output,
    Scale, Subgraph, SumPool2d, Threshold,
)
from snnir.ir.ops.pool import MAX_POOLS
from snnir.ir.ops.probe import StateProbe
from snnir.ir.ops.base import Op
from snnir.ir.ops.neuron import Neuron
from snnir.ir.schedule import schedule
from snnir.targets.torch.neuron_update import decay_of, held_decays
from snnir.targets.torch.surrogate import Surrogate, traced_surrogate
from snnir.ir.shapes import infer_shapes

_LOADERS = {
    "safetensors": '''def load_weights(path=WEIGHTS):
    """Parameter tensors by "<node>.<parameter>"."""
    from safetensors.torch import load_file

    return load_file(str(path))''',
    "torch": '''def load_weights(path=WEIGHTS):
    """Parameter tensors by "<node>.<parameter>" (plain tensors: nothing is unpickled)."""
    return torch.load(path, weights_only=True)''',
}
_SUFFIX = {"safetensors": ".safetensors", "torch": ".weights.pt"}
_KERNELS = Path(__file__).with_name("standalone_kernels.py")
#: Stateful ops: the kernel and whether it spikes.
_STATEFUL = {I: ("integrator", False), IF: ("integrator", True), LI: ("leaky", False), LIF: ("leaky", True),
             CubaLI: ("current_based", False), CubaLIF: ("current_based", True), Delay: ("delay", False)}
_STATELESS = {Affine: "affine", Linear: "linear", Scale: "scale", Threshold: "threshold"}


def default_weights_format() -> str:
    return "safetensors" if importlib.util.find_spec("safetensors") else "torch"


def standalone_graph(graph: Graph) -> Graph:
    """One level of standard ops: fused nodes split, extension ops lowered, nested graphs inlined."""
    from snnir.ir.nir_io import lower_extensions, split_fused
    from snnir.passes.structure import flatten_subgraphs

    return flatten_subgraphs(lower_extensions(split_fused(graph)))


class _Source:
    """The ``step`` body, parameters, state shapes and semantics of one flat graph."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.shapes = infer_shapes(graph)
        self.plan = schedule(graph)
        self.weights: dict[str, np.ndarray] = {}
        self.steps: set[str] = set()  # the weights that are a Delay's steps (int64), not floats
        self.trainable: list[str] = []
        self.states: dict[str, dict[str, tuple[int, ...]]] = {}
        self.semantics: dict[str, dict] = {}
        self.lines = [self.node(name) for name in self.plan.order]
        self.carried = sorted({src for src, _ in self.plan.delayed})  # outputs read one step late

    def parameters(self) -> dict[str, dict[str, tuple[tuple[int, ...], str]]]:
        """Per node, its parameters' shapes and kinds (``"steps"``: a Delay's int64 steps, else
        ``"float"``), from the weights written (a key is ``"<node>.<parameter>"``, the parameter
        without dots)."""
        table: dict[str, dict[str, tuple[tuple[int, ...], str]]] = {}
        for key, value in self.weights.items():
            node, param = key.rsplit(".", 1)
            kind = "steps" if key in self.steps else "float"
            table.setdefault(node, {})[param] = (tuple(int(d) for d in value.shape), kind)
        return table

    def params(self, name: str, op: Op) -> str:
        """The source of node ``name``'s parameters: a tied copy uses its group's first node's
        (equal ops), so the generated module trains one parameter per tie."""
        owner = (self.graph.tie_of(name) or (name,))[0]
        if owner != name:
            return f"self.params_of({owner!r})"
        held = held_decays(op, set(op.trainable)) if isinstance(op, Neuron) else {}
        for param, value in op.params().items():
            self.weights[f"{name}.{param}"] = np.array(value, order="C")
            if param in held:  # trains as its decay, the input gain held (sem.gain_held)
                self.weights[f"{name}.{held[param]}"] = decay_of(op, param).numpy()
                self.trainable.append(f"{name}.{held[param]}")
            elif param in op.trainable:
                self.trainable.append(f"{name}.{param}")
        return f"self.params_of({name!r})"

    def input_of(self, name: str, fed_back: bool = False) -> str:
        """The sum of the edges into ``name``: those of its drive, or with ``fed_back`` those of
        its fed-back drive (:mod:`snnir.ir.schedule`; ``""`` where it has none)."""
        terms = [f"prev[{src!r}]" if (src, dst) in self.plan.delayed else f"h[{src!r}]"
                 for src, dst in self.graph.edges if dst == name and ((src, dst) in self.plan.fed_back) == fed_back]
        if not terms and not fed_back:
            raise SnnirError("has no input edge", name)
        return " + ".join(terms)

    def node(self, name: str) -> str:
        op = self.graph.nodes[name]
        if isinstance(op, Subgraph):
            raise SnnirError("a nested graph on a cycle of its outer graph cannot be inlined, so the standalone "
                             "source cannot express it; use snnir.compile(graph, target='torch')", name)
        if isinstance(op, Input):
            return f"h[{name!r}] = x[{name!r}]"
        if isinstance(op, StateProbe):  # its neuron, ordered before it, has just made its new state
            (neuron,) = [src for src, dst in self.graph.edges if dst == name]
            return f"h[{name!r}] = new[{neuron!r}][{op.state!r}]"
        x = self.input_of(name)
        if isinstance(op, Output):
            return f"h[{name!r}] = {x}"
        if type(op) in _STATEFUL:
            kernel, spiking = _STATEFUL[type(op)]
            params = self.params(name, op)
            if isinstance(op, Delay):
                steps = op.steps(name)
                self.weights[f"{name}.steps"] = np.asarray(steps, dtype=np.int64)
                self.steps.add(f"{name}.steps")
                depth = int(steps.max()) if steps.size else 0
                self.states[name] = {"buffer": (depth,) + tuple(self.shapes.outputs[name])}
            else:
                self.states[name] = {s: tuple(self.shapes.outputs[name]) for s in op.state_names}
            self.semantics[name] = op.sem.to_dict()
            fed = self.input_of(name, fed_back=True)
            return (f"h[{name!r}], new[{name!r}] = {kernel}({x}, state[{name!r}], {params}, "
                    f"SEMANTICS[{name!r}], spiking={spiking}{f', fed={fed}' if fed else ''})")
        if type(op) in _STATELESS:
            return f"h[{name!r}] = {_STATELESS[type(op)]}({x}, {self.params(name, op)})"
        if isinstance(op, (Conv1d, Conv2d)):
            return (f"h[{name!r}] = conv({x}, {self.params(name, op)}, stride={op.stride}, "
                    f"padding={op.explicit_padding()}, dilation={op.dilation}, groups={op.groups})")
        if isinstance(op, (SumPool2d, AvgPool2d)):
            kernel = "sum_pool" if isinstance(op, SumPool2d) else "avg_pool"
            return f"h[{name!r}] = {kernel}({x}, {op.kernel_size}, {op.stride}, {op.padding})"
        if isinstance(op, MAX_POOLS):
            return (f"h[{name!r}] = max_pool({x}, {op.kernel_size}, {op.stride}, {op.padding}, {op.dilation}, "
                    f"{op.ceil_mode})")
        if isinstance(op, Flatten):
            start, end = op.dims(len(self.shapes.inputs[name]), name)
            return f"h[{name!r}] = ({x}).flatten({start + 1}, {end + 1})"
        raise SnnirError(f"{op.op_type} has no standalone torch source", name)


def _in_docstring(text: str) -> str:
    """``text`` (a file name: user-controlled) for a ``\"\"\"`` docstring: as ``ascii()`` spells it,
    with backslashes and quotes escaped, so the docstring reads back exactly that and no name can
    end it (and run code on import) or hold an invalid escape (a SyntaxError)."""
    return ascii(text).replace("\\", "\\\\").replace('"', '\\"')


def generate_source(graph: Graph, weights_name: str, weights_format: str, source: str | None = None):
    """``(python source, weights by key)`` for ``graph``."""
    from snnir.ir.verify import verify

    verify(graph)  # a graph snnir.run refuses is refused for the same reason, before it is inlined
    flat = standalone_graph(graph)
    body = _Source(flat)
    kernels = _KERNELS.read_text().split('"""\n', 1)[1].strip()  # the code after the docstring
    step = "".join(f"        {line}\n" for line in body.lines)
    outputs = {name: name for name in flat.outputs}
    origin = "a snnir graph" if source is None else _in_docstring(source)
    text = f'''"""Generated by `snnir compile` from {origin}: standalone, it needs torch alone
(and safetensors for the weights file) and not snnir.

``load_model()`` returns a trainable torch module of the graph, its parameters read from
{_in_docstring(weights_name)} (next to this file): ``model(x)`` takes ``[T, B, *shape]`` (a dict by Input
name for several inputs) and returns ``[T, B, ...]`` (a dict by Output name for several);
``model.step(x_t, state)`` runs one step. The kernels below are snnir's ops in plain torch.
"""

from pathlib import Path

{kernels}

WEIGHTS = Path(__file__).with_name({weights_name!r})
INPUTS = {tuple(flat.inputs)!r}
OUTPUTS = {tuple(outputs)!r}
#: Per stateful node: its state variables and their per-sample shapes.
STATES = {body.states!r}
#: Outputs read one step late (recurrent edges), per-sample shapes.
CARRIED = {{{", ".join(f"{n!r}: {tuple(body.shapes.outputs[n])!r}" for n in body.carried)}}}
SEMANTICS = {body.semantics!r}
#: Per node with parameters: each parameter's shape and kind ("float", or "steps": a Delay's int64 steps).
PARAMETERS = {body.parameters()!r}
TRAINABLE = {tuple(body.trainable)!r}


def parameter_name(node, param):
    """The ``ParameterDict`` name of ``node``'s parameter ``param``: torch forbids dots in names,
    so ``"%"`` and ``":"`` are escaped first (``%25``, ``%3A``) and dots become ``":"``; distinct
    nodes never share a name (``a.b``, a nested node, is ``a:b``; a node named ``a:b`` is ``a%3Ab``)."""
    return node.replace("%", "%25").replace(":", "%3A").replace(".", ":") + ":" + param


{_LOADERS[weights_format]}


class Model(torch.nn.Module):
    def __init__(self, weights=None, dtype=torch.float32):
        super().__init__()
        weights = load_weights() if weights is None else weights
        self.params = torch.nn.ParameterDict({{
            parameter_name(node, param): torch.nn.Parameter(
                weights[f"{{node}}.{{param}}"] if kind == "steps" else weights[f"{{node}}.{{param}}"].to(dtype),
                requires_grad=f"{{node}}.{{param}}" in TRAINABLE)
            for node, params in PARAMETERS.items() for param, (_, kind) in params.items()
        }})
        self.dtype = dtype

    def params_of(self, node):
        """Node ``node``'s parameters by name."""
        return {{param: self.params[parameter_name(node, param)] for param in PARAMETERS[node]}}

    def initial_state(self, batch, device=None):
        zeros = lambda shape: torch.zeros((batch,) + shape, dtype=self.dtype, device=device)  # noqa: E731
        state = {{node: {{name: zeros(shape) for name, shape in states.items()}} for node, states in STATES.items()}}
        for node, states in STATES.items():
            if "buffer" in states:
                state[node]["buffer"] = state[node]["buffer"].movedim(0, 1)
        state["#carried"] = {{node: zeros(shape) for node, shape in CARRIED.items()}}
        return state

    def step(self, x, state):
        """One step: ``x`` by Input name, ``[B, *shape]``; returns (outputs by name, new state)."""
        h, new, prev = {{}}, {{}}, state["#carried"]
{step}        new["#carried"] = {{node: h[node] for node in CARRIED}}
        return {{name: h[name] for name in OUTPUTS}}, new

    def forward(self, x, state=None):
        xs = {{name: value.to(self.dtype) for name, value in (x if isinstance(x, dict) else {{INPUTS[0]: x}}).items()}}
        steps, batch = next(iter(xs.values())).shape[:2]
        state = self.initial_state(batch, next(iter(xs.values())).device) if state is None else state
        outs = {{name: [] for name in OUTPUTS}}
        for t in range(steps):
            y, state = self.step({{name: value[t] for name, value in xs.items()}}, state)
            for name in OUTPUTS:
                outs[name].append(y[name])
        stacked = {{name: torch.stack(values) for name, values in outs.items()}}
        return stacked[OUTPUTS[0]] if len(OUTPUTS) == 1 else stacked


def load_model(dtype=torch.float32):
    """The graph as a trainable torch module with the weights beside this file."""
    return Model(dtype=dtype)


if __name__ == "__main__":
    print(load_model())
'''
    return text, body.weights


def _weights_path(module: Path, weights_format: str) -> Path:
    return module.with_name(module.stem + _SUFFIX[weights_format])


def written_files(path: str | Path) -> tuple[Path, ...]:
    """The files :func:`write_module` may write for ``path``: the module and its weights in any format."""
    return (Path(path), *(_weights_path(Path(path), weights_format) for weights_format in _SUFFIX))


def write_module(graph: Graph, path: str | Path, weights_format: str | None = None, source: str | None = None):
    """Write ``path`` (a ``.py`` file) and its weights file beside it; returns both paths."""
    path = Path(path)
    if path.suffix != ".py":
        raise SnnirError(f"the generated module must be a .py file, got {path}")
    weights_format = weights_format or default_weights_format()
    if weights_format not in _LOADERS:
        raise SnnirError(f"weights format must be one of {list(_LOADERS)}, got {weights_format!r}")
    weights_path = _weights_path(path, weights_format)
    traced = traced_surrogate(graph)
    if traced is not None and traced != Surrogate("fast_sigmoid", 25.0):
        warn(f"the graph was traced with the surrogate gradient {traced.name} slope {traced.slope:g}; the "
             "generated module trains with fast_sigmoid slope 25 (snnir.compile(graph, target='torch') "
             "trains with the traced one)")
    text, weights = generate_source(graph, weights_path.name, weights_format, source)
    try:
        with open(weights_path, "wb") as stream:
            if weights_format == "safetensors":
                from safetensors.numpy import save

                stream.write(save(weights))
            else:
                import torch

                torch.save({k: torch.from_numpy(v.copy()) for k, v in weights.items()}, stream)
        path.write_text(text, encoding="utf-8")  # Python source's encoding, whatever the locale
    except OSError as exc:
        raise SnnirError(f"cannot write {exc.filename or path}: {exc.strerror or exc}") from None
    return path, weights_path
