"""Trace a torch-style spiking network into a Graph by running it once.

How: a deep copy of the model runs in eval mode under ``torch.no_grad``.
Forward hooks record every call of a *leaf* layer (snnTorch neuron, known
torch.nn layer, or any module with ``to_op()``); a ``TorchFunctionMode``
records the functional glue between leaves (``+``/``-`` for residuals,
scalar ``*``, ``flatten``/``view``/``reshape``, ``x[t]`` on the input
sequence). Each tensor is tagged with the nodes whose (summed) outputs it
carries, so arbitrary Python control flow is followed. A layer called at
every step of a time loop becomes one node: repeated calls must see the same
inputs. Anything else applied to traced values raises SnnirError when used.

Compiled snnir modules (``to_graph()``): ``trace`` returns that graph;
:func:`trace_submodules` traces them for real, running whole sequences
``[T, B, ...]``: leaves are named by their node ``path``, indexing along time
and ``torch.cat`` keep a tensor's sources, and an untraced all-zero tensor
(a delayed edge at the first step) adds nothing, so a layer's first call may
see fewer sources than the later ones.

Invariants: the model passed in is never touched (no state, flag or
parameter changes); node names are module paths with ``.`` replaced by ``_``
(a suffix ``_2``, ``_3``... resolves clashes), plus ``input``, ``output``
and functional nodes named after their function; learnable parameters are
listed in each op's ``trainable``.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

from snnir.errors import SnnirError
from snnir.frontends.fragment import Fragment
from snnir.ir.graph import Graph
from snnir.ir.ops import Input, Op, Output, Scale, Subgraph
from snnir.ir.verify import verify

_IDENTITY_FUNCS = {"clone", "contiguous", "detach", "to", "float", "double", "type_as", "cpu"}
_ADD_FUNCS = {"add", "__add__", "__radd__", "__iadd__"}
_SUB_FUNCS = {"sub", "__sub__", "__isub__"}
_MUL_FUNCS = {"mul", "__mul__", "__rmul__"}
_RESHAPE_FUNCS = {"flatten", "view", "reshape"}


@dataclass(frozen=True)
class _Tag:
    """What a tensor carries: ``value`` (sum of ``sources``' outputs), ``state``
    (a neuron's internal state), ``sequence`` (the whole input) or ``bad``.
    ``padded``: an all-zero untraced tensor was summed in (a delayed edge's
    value at the first step, see :func:`trace_submodules`)."""

    kind: str
    sources: tuple[str, ...] = ()
    why: str = ""
    padded: bool = False


class _Recorder:
    """``whole_sequences``: the model is a compiled module that runs whole
    sequences ``[T, B, ...]`` and names its leaves by node path (``path``)."""

    def __init__(self, model: Any, whole_sequences: bool = False, reserved: tuple[str, ...] = ("input", "output")):
        import torch

        self.torch = torch
        self.whole_sequences = whole_sequences
        self.reserved = reserved
        self.tags: dict[int, tuple[Any, _Tag]] = {}
        self.nodes: dict[str, Op] = {}
        self.inputs_of: dict[str, tuple[tuple[str, ...], bool]] = {}
        self.edges: list[tuple[str, str]] = []
        self.layer_nodes: dict[str, Fragment] = {}
        self.names: dict[str, str] = {}
        self.functional: dict[tuple, str] = {}
        self.passthrough: dict[int, tuple[str, ...]] = {}
        self.folded: set[str] = set()
        self.path_of = {id(m): p for p, m in model.named_modules()}
        self.stack: list[str] = []
        self.depth = 0
        self.last_output: tuple[str, ...] | None = None
        self.input_shape: tuple[int, ...] | None = None

    # --- tags ------------------------------------------------------------------
    def tag(self, tensor: Any, tag: _Tag) -> None:
        self.tags[id(tensor)] = (tensor, tag)

    def tag_of(self, obj: Any) -> _Tag | None:
        entry = self.tags.get(id(obj))
        return entry[1] if entry is not None and entry[0] is obj else None

    def where(self) -> str:
        return self.stack[-1] if self.stack and self.stack[-1] else "<model>"

    def node_name(self, base: str) -> str:
        name = base or "model"
        candidate, k = name, 2
        while candidate in self.nodes or candidate in self.reserved:
            candidate, k = f"{name}_{k}", k + 1
        return candidate

    def use(self, obj: Any, layer: str) -> tuple[str, ...]:
        """The sources a leaf's input carries, or a SnnirError naming the layer."""
        tag = self.tag_of(obj)
        if tag is None and self.is_zero(obj):
            return ()
        if tag is None:
            raise SnnirError("its input does not derive from the model input", layer)
        if tag.kind == "bad":
            raise SnnirError(f"its input went through {tag.why}, which cannot be traced", layer)
        if tag.kind == "state":
            raise SnnirError(f"its input is a neuron state ({tag.why}); only spikes and currents can be traced", layer)
        if tag.kind == "sequence":
            return self.input_node(tuple(obj.shape[1:]), layer)
        return tag.sources

    def input_node(self, shape: tuple[int, ...], layer: str) -> tuple[str, ...]:
        if self.input_shape is None:
            self.input_shape = shape
            self.nodes["input"] = Input(shape=shape)
        elif self.input_shape != shape:
            raise SnnirError(f"the model input is used with shapes {list(self.input_shape)} and {list(shape)}", layer)
        return ("input",)

    def is_zero(self, obj: Any) -> bool:
        """An untraced all-zero tensor (only in whole-sequence mode): a delayed
        edge's value at the first step, which adds nothing."""
        return (
            self.whole_sequences and isinstance(obj, self.torch.Tensor) and self.tag_of(obj) is None
            and not bool(obj.any())
        )

    def connect(
        self, node: str, sources: tuple[str, ...], entries: tuple[str, ...], layer: str, padded: bool = False
    ) -> None:
        """Record ``sources -> entries`` once. A first call whose input was
        ``padded`` (some delayed inputs still zero) may be completed later."""
        key = tuple(sorted(sources))
        if node in self.inputs_of:
            known, was_padded = self.inputs_of[node]
            if known == key:
                return
            if not (was_padded and not Counter(known) - Counter(key)):
                raise SnnirError(
                    f"is called on different inputs ({list(known)} and {list(key)}); "
                    "a layer may be reused across time steps but not shared within one",
                    layer,
                )
            for edge in ((src, entry) for entry in entries for src in known):
                self.edges.remove(edge)
        self.inputs_of[node] = (key, padded)
        self.edges.extend((src, entry) for entry in entries for src in key)

    # --- leaf layers -------------------------------------------------------------
    def leaf_kind(self, module: Any) -> str | None:
        from snnir.frontends.snntorch_map import is_snntorch_neuron
        from snnir.frontends.torch_nn_map import BATCHNORMS, LAYERS, PASSTHROUGH

        if callable(getattr(module, "to_op", None)):
            return "to_op"
        if is_snntorch_neuron(module):
            return "snntorch"
        name = type(module).__name__
        if name in PASSTHROUGH:
            return "passthrough"
        if name in BATCHNORMS:
            return "batchnorm"
        if type(module).__module__.startswith("torch.nn") and name in LAYERS:
            return "layer"
        return None

    def fragment(self, module: Any, kind: str, layer: str) -> Fragment:
        from snnir.frontends.snntorch_map import neuron_fragment
        from snnir.frontends.torch_nn_map import layer_op

        if kind == "snntorch":
            return neuron_fragment(module, layer)
        if kind == "to_op":
            op = module.to_op()
            if not isinstance(op, Op):
                raise SnnirError(f"to_op() returned {type(op).__name__}, not an snnir Op", layer)
            return Fragment.single(op)
        return Fragment.single(layer_op(module, layer))

    def pre_hook(self, module: Any, args: tuple) -> None:
        path = self.path_of.get(id(module), type(module).__name__)
        self.stack.append(path)
        if self.depth:
            self.depth += 0 if self.leaf_kind(module) is None else 1
            return
        if not self.whole_sequences and path and callable(getattr(module, "to_graph", None)):
            raise SnnirError(
                "is a compiled snnir module inside the traced model, which cannot be traced through; "
                "trace it on its own (snnir.trace(module, x) returns its graph)",
                path.replace(".", "_"),
            )
        kind = self.leaf_kind(module)
        if kind is None:
            return
        self.depth += 1
        layer = self.layer_name(module, path)
        if not args:
            raise SnnirError("is called without a tensor input", layer)
        sources = self.use(args[0], layer)
        tag = self.tag_of(args[0])
        padded = tag.padded if tag is not None else self.is_zero(args[0])
        if kind == "passthrough":
            self.passthrough[id(module)] = sources
            return
        if kind == "batchnorm":
            self.passthrough[id(module)] = self.fold(module, sources, layer, path)
            self.tag(args[0], _Tag("bad", why=f"'{sources[0]}' before the BatchNorm '{layer}' folded into it"))
            return
        if path not in self.names:
            fragment = self.fragment(module, kind, layer)
            name = self.node_name(layer)
            self.names[path] = name
            self.layer_nodes[name] = fragment
            for key, op in fragment.nodes.items():
                self.nodes[fragment.name(name, key)] = op
            self.edges.extend((fragment.name(name, a), fragment.name(name, b)) for a, b in fragment.edges)
        name = self.names[path]
        fragment = self.layer_nodes[name]
        self.connect(name, sources, tuple(fragment.name(name, e) for e in fragment.entries), layer, padded)

    def layer_name(self, module: Any, path: str) -> str:
        """A compiled module's leaves carry their node path; other leaves are named by module path."""
        node_path = getattr(module, "path", None)
        if self.whole_sequences and isinstance(node_path, str) and node_path:
            return node_path
        return path.replace(".", "_") or "model"

    def fold(self, bn: Any, sources: tuple[str, ...], layer: str, path: str) -> tuple[str, ...]:
        from snnir.frontends.torch_nn_map import fold_batchnorm

        if len(sources) != 1 or sources[0] not in self.layer_nodes:
            raise SnnirError("BatchNorm must directly follow one Linear or Conv layer to be folded", layer)
        if any(src == sources[0] for src, _ in self.edges):
            raise SnnirError(f"cannot fold into '{sources[0]}': its output is also used before the BatchNorm", layer)
        if path not in self.folded:
            self.folded.add(path)
            self.nodes[sources[0]] = fold_batchnorm(self.nodes[sources[0]], bn, layer, sources[0])
        return sources

    def post_hook(self, module: Any, args: tuple, output: Any) -> None:
        self.stack.pop()
        kind = self.leaf_kind(module)
        if kind is None:
            return
        self.depth -= 1
        if self.depth:
            return
        path = self.path_of.get(id(module), type(module).__name__)
        if id(module) in self.passthrough:
            sources = self.passthrough.pop(id(module))
        else:
            name = self.names[path]
            sources = (self.layer_nodes[name].name(name, self.layer_nodes[name].exit),)
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        self.tag(outputs[0], _Tag("value", sources))
        for extra in outputs[1:]:
            if isinstance(extra, self.torch.Tensor):
                self.tag(extra, _Tag("state", why=f"state of '{path}'"))
        self.last_output = sources

    # --- functional glue ---------------------------------------------------------
    def functional_node(self, key: tuple, base: str, op: Op, sources: tuple[str, ...]) -> tuple[str, ...]:
        if key not in self.functional:
            name = self.node_name(base)
            self.functional[key] = name
            self.nodes[name] = op
            self.connect(name, sources, (name,), name)
        return (self.functional[key],)

    def negated(self, sources: tuple[str, ...]) -> tuple[str, ...]:
        return self.functional_node(("neg", sources), "neg", Scale(scale=-1.0), sources)

    def on_function(self, func: Any, args: tuple, kwargs: dict, result: Any) -> None:
        torch = self.torch
        flat = list(args) + list(kwargs.values())
        tagged = [(a, self.tag_of(a)) for a in flat if isinstance(a, torch.Tensor) and self.tag_of(a)]
        if not tagged or not isinstance(result, torch.Tensor):
            if tagged and isinstance(result, (tuple, list)) and any(isinstance(r, torch.Tensor) for r in result):
                for r in result:
                    if isinstance(r, torch.Tensor):
                        self.tag(r, _Tag("bad", why=f"'{_name(func)}' in '{self.where()}'"))
            if func is torch.stack and isinstance(result, torch.Tensor):
                self.stack_tag(args[0] if args else kwargs.get("tensors", ()), result)
            if func is torch.cat and self.whole_sequences and isinstance(result, torch.Tensor):
                self.cat_tag(args, kwargs, result)
            return
        name = _name(func)
        tags = [t for _, t in tagged]
        new = self.glue(name, args, tags, result)
        self.tag(result, new or _Tag("bad", why=f"'{name}' in '{self.where()}'"))

    def stack_tag(self, tensors: Any, result: Any) -> None:
        tags = {self.tag_of(t) for t in tensors}
        if len(tags) == 1 and None not in tags:
            self.tag(result, next(iter(tags)))

    def cat_tag(self, args: tuple, kwargs: dict, result: Any) -> None:
        """Steps joined along time: one node's values, the padded first step included."""
        tensors = args[0] if args else kwargs.get("tensors", ())
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        tags = [self.tag_of(t) for t in tensors]
        if dim != 0 or not tags or any(t is None or t.kind != "value" for t in tags):
            return
        full = {t.sources for t in tags if not t.padded}
        if len(full) == 1:
            self.tag(result, _Tag("value", next(iter(full))))
        elif not full and len({t.sources for t in tags}) == 1:
            self.tag(result, tags[0])

    def glue(self, name: str, args: tuple, tags: list[_Tag], result: Any) -> _Tag | None:
        """The tag of ``name(*args)``, or ``None`` when it cannot be expressed."""
        if len(tags) == 1 and tags[0].kind == "sequence":
            if name == "__getitem__":
                return _Tag("value", self.input_node(tuple(result.shape[1:]), self.where()))
            # any other use of the whole input means one call is one step
            tags = [_Tag("value", self.input_node(tuple(args[0].shape[1:]), self.where()))]
        if any(t.kind != "value" for t in tags):
            bad = next(t for t in tags if t.kind != "value")
            return bad if bad.kind == "bad" else None
        if name in _IDENTITY_FUNCS and result.shape == args[0].shape:
            return tags[0]
        if self.whole_sequences and name == "__getitem__" and len(args) == 2 and _time_index(args[1]):
            return tags[0]
        if name in _ADD_FUNCS and len(tags) == 2 and len(args) == 2:
            return _Tag("value", tags[0].sources + tags[1].sources, padded=tags[0].padded or tags[1].padded)
        if name in _ADD_FUNCS and len(tags) == 1 and len(args) == 2 and any(self.is_zero(a) for a in args):
            return _Tag("value", tags[0].sources, padded=True)
        if name in _SUB_FUNCS and len(tags) == 2 and len(args) == 2:
            return _Tag("value", tags[0].sources + self.negated(tags[1].sources))
        if name in ("neg", "__neg__") and len(args) == 1:
            return _Tag("value", self.negated(tags[0].sources))
        if name in _MUL_FUNCS and len(tags) == 1 and len(args) == 2:
            factor = args[1] if self.tag_of(args[0]) else args[0]
            if isinstance(factor, (int, float)) and not isinstance(factor, bool):
                key = ("scale", float(factor), tags[0].sources)
                return _Tag("value", self.functional_node(key, "scale", Scale(scale=float(factor)), tags[0].sources))
            return None
        if name in _RESHAPE_FUNCS and len(tags) == 1:
            if result.shape == args[0].shape:
                return tags[0]
            dims = _flatten_dims(tuple(args[0].shape), tuple(result.shape))
            if dims is None:
                return None
            from snnir.frontends.torch_nn_map import flatten_op

            key = ("flatten", dims, tags[0].sources)
            return _Tag("value", self.functional_node(key, "flatten", flatten_op(*dims, self.where()), tags[0].sources))
        return None


def _time_index(index: Any) -> bool:
    """``x[t]``, ``x[a:b]`` or ``x[None]``: an index that only touches the leading (time) dimension."""
    return index is None or isinstance(index, slice) or (isinstance(index, int) and not isinstance(index, bool))


def _name(func: Any) -> str:
    return getattr(func, "__name__", None) or str(func)


def _flatten_dims(before: tuple[int, ...], after: tuple[int, ...]) -> tuple[int, int] | None:
    """(start, end) with ``flatten(start, end)`` mapping ``before`` to ``after`` (batched shapes)."""
    if before == after or not before or not after or before[0] != after[0]:
        return None
    for start in range(1, len(before)):
        for end in range(start + 1, len(before)):
            joined = 1
            for d in before[start : end + 1]:
                joined *= d
            if before[:start] + (joined,) + before[end + 1 :] == after:
                return start, end - len(before) if end == len(before) - 1 else end
    return None


def trace(model: Any, sample_input: Any) -> Graph:
    """Trace ``model`` on ``sample_input`` into a Graph whose output is the
    last layer's spikes.

    Step-style models (one call = one step, e.g. ``nn.Sequential`` of snnTorch
    neurons with ``init_hidden=True``) take one step ``[B, ...]``; models that
    loop over time take what their forward takes (``[T, B, ...]`` indexed as
    ``x[t]``). A module that knows its graph (``to_graph()``, as a compiled
    ``snnir.compile(graph, target="torch")`` module) gives that graph, with its
    current parameters, after ``sample_input`` (what its forward takes) is
    checked against the graph's inputs. ``model`` is left untouched.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise SnnirError(f"trace needs a torch.nn.Module, got {type(model).__name__}")
    if callable(getattr(model, "to_graph", None)):
        return _own_graph(model, sample_input)
    if not isinstance(sample_input, torch.Tensor):
        try:
            sample_input = torch.as_tensor(sample_input)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise SnnirError(f"sample_input is not a tensor: {exc}") from None
    if sample_input.ndim < 2:
        raise SnnirError(f"sample_input needs a batch dimension, got shape {list(sample_input.shape)}")
    twin = _twin(model)
    recorder = _Recorder(twin)
    first = next((p for p in twin.parameters() if p.is_floating_point()), None)
    x = sample_input.detach().clone()
    if first is not None:  # the model's device and, for float input, its dtype
        x = x.to(device=first.device, dtype=first.dtype if x.is_floating_point() else x.dtype)
    recorder.tag(x, _Tag("sequence"))
    result = _record(twin, recorder, x)
    return _finish(recorder, result, model)


def trace_submodules(module: Any, sample_input: Any) -> Graph:
    """Trace a compiled module (``snnir.compile(graph, target="torch")``) through
    its op submodules, without asking it for its graph.

    ``sample_input`` is what its forward takes: ``[T, B, *shape]`` or a dict by
    Input name. Every op submodule (``to_op()``) becomes the node named by its
    ``path``; the glue between them (sums, time slicing, the delayed edges that
    are zero at the first step) becomes edges. Ports and graph metadata are not
    modules: they come from ``module.graph``. Nested graphs come back inlined,
    their nodes named ``"<sub>.<inner>"`` (as the ``flatten_subgraphs`` pass names them).
    """
    import torch

    skeleton = getattr(module, "graph", None)
    if not isinstance(module, torch.nn.Module) or not isinstance(skeleton, Graph):
        raise SnnirError(f"trace_submodules needs a compiled snnir module, got {type(module).__name__}")
    _refuse_nested_cycles(skeleton)
    given = _by_input(sample_input, skeleton.inputs)
    twin = _twin(module)
    recorder = _Recorder(twin, whole_sequences=True, reserved=skeleton.inputs + skeleton.outputs)
    tensors = list(twin.parameters()) + list(twin.buffers())
    first = next((t for t in tensors if t.is_floating_point()), None)
    xs = {}
    for name, value in given.items():
        x = value.detach().clone()
        if first is not None and x.is_floating_point():
            x = x.to(device=first.device, dtype=first.dtype)
        recorder.nodes[name] = skeleton.nodes[name]
        recorder.tag(x, _Tag("value", (name,)))
        xs[name] = x
    result = _record(twin, recorder, xs if isinstance(sample_input, Mapping) else xs[skeleton.inputs[0]])
    return _finish_ports(recorder, result, skeleton)


def _refuse_nested_cycles(graph: Graph, prefix: str = "") -> None:
    """Inlining a nested graph that lies on a cycle would move its delays, so it is refused."""
    import networkx as nx

    from snnir.ir.schedule import node_digraph

    digraph = node_digraph(graph)
    for component in nx.strongly_connected_components(digraph):
        for node in sorted(component):
            op = graph.nodes[node]
            if isinstance(op, Subgraph) and (len(component) > 1 or digraph.has_edge(node, node)):
                raise SnnirError(
                    "this nested graph lies on a cycle: traced through its submodules it would come back "
                    "inlined, which moves its delays; snnir.trace(module, x) returns it intact",
                    prefix + node,
                )
            if isinstance(op, Subgraph):
                _refuse_nested_cycles(op.graph, f"{prefix}{node}.")


def _own_graph(model: Any, sample_input: Any) -> Graph:
    """``model.to_graph()``, once ``sample_input`` fits its inputs ``[T, B, *shape]``."""
    graph = model.to_graph()
    if not isinstance(graph, Graph):
        raise SnnirError(f"{type(model).__name__}.to_graph() returned {type(graph).__name__}, not a Graph")
    shapes = verify(graph).shapes
    for name, value in _by_input(sample_input, graph.inputs).items():
        shape = tuple(value.shape)
        expected = tuple(shapes.outputs[name])
        if len(shape) != len(expected) + 2 or shape[2:] != expected:
            raise SnnirError(
                f"sample input must have shape [T, B, {', '.join(map(str, expected))}], got {list(shape)}", name
            )
    return graph


def _by_input(sample_input: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """``sample_input`` as tensors by Input name: a dict, or one tensor for a single Input."""
    import torch

    given = sample_input if isinstance(sample_input, Mapping) else {name: sample_input for name in names[:1]}
    if set(given) != set(names):
        raise SnnirError(f"sample_input must give the Input nodes {list(names)} (a dict when several)")
    tensors = {}
    for name, value in given.items():
        try:
            tensors[name] = value if isinstance(value, torch.Tensor) else torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise SnnirError(f"sample input is not a tensor: {exc}", name) from None
    return tensors


def _twin(model: Any) -> Any:
    """A deep copy in eval mode, so that tracing leaves ``model`` untouched."""
    try:
        twin = copy.deepcopy(model, _detached_states(model))
    except Exception as exc:  # noqa: BLE001 - any failure means we cannot trace without side effects
        raise SnnirError(f"the model cannot be copied for tracing: {exc}") from None
    return twin.eval()


def _record(twin: Any, recorder: _Recorder, x: Any) -> Any:
    """Run ``twin(x)`` once with every module hooked and the glue recorded."""
    import torch

    handles = []
    for module in twin.modules():
        handles.append(module.register_forward_pre_hook(recorder.pre_hook))
        handles.append(module.register_forward_hook(recorder.post_hook))
    try:
        with torch.no_grad(), _Mode(recorder):
            return twin(x)
    except SnnirError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's forward failed; say where
        raise SnnirError(f"the model's forward failed while tracing: {type(exc).__name__}: {exc}",
                         recorder.where().replace(".", "_") if recorder.stack else None) from None
    finally:
        for handle in handles:
            handle.remove()


def _detached_states(model: Any) -> dict[int, Any]:
    """deepcopy memo: hidden states still attached to an autograd graph (a
    model traced right after training) are copied detached."""
    import torch

    memo: dict[int, Any] = {}
    for module in model.modules():
        for value in list(vars(module).values()) + list(module._buffers.values()):
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                memo[id(value)] = value.detach().clone()
    return memo


def _finish(recorder: _Recorder, result: Any, model: Any) -> Graph:
    if "input" not in recorder.nodes:
        raise SnnirError("no traced layer received the model input")
    sources = None
    for item in _flatten_result(result):
        tag = recorder.tag_of(item)
        if tag is not None and tag.kind == "value":
            sources = tag.sources
            break
    if sources is None:
        sources = recorder.last_output
    if not sources or sources == ("input",):
        raise SnnirError("the model's output does not come from any traced layer")
    nodes = dict(recorder.nodes)
    nodes["output"] = Output()
    edges = list(recorder.edges) + [(src, "output") for src in sources]
    graph = Graph(nodes, tuple(edges), {"source": f"snnir.trace({type(model).__name__})"})
    verify(graph)
    return graph


def _finish_ports(recorder: _Recorder, result: Any, skeleton: Graph) -> Graph:
    """The traced nodes wired to ``skeleton``'s Output nodes (a dict result by name)."""
    results = dict(result) if isinstance(result, Mapping) else {name: result for name in skeleton.outputs[:1]}
    if set(results) != set(skeleton.outputs):
        raise SnnirError(f"the module returned {sorted(results)}, not the Output nodes {list(skeleton.outputs)}")
    nodes = dict(recorder.nodes)
    edges = list(recorder.edges)
    for name, value in results.items():
        tag = recorder.tag_of(value)
        if tag is None or tag.kind != "value":
            raise SnnirError("this output does not come from any traced op", name)
        nodes[name] = skeleton.nodes[name]
        edges += [(src, name) for src in tag.sources]
    unfed = sorted(n for n, (sources, _) in recorder.inputs_of.items() if not sources)
    if unfed:
        raise SnnirError("only ever received zeros, never a traced value", unfed[0])
    repeated = sorted(edge for edge, count in Counter(edges).items() if count > 1)
    if repeated:
        src, dst = repeated[0]
        raise SnnirError(
            f"receives '{src}' twice through the ports of a nested graph: inlined, that is a duplicate edge, "
            "which graphs do not allow; snnir.trace(module, x) returns the nested graph intact",
            dst,
        )
    graph = Graph(nodes, tuple(edges), skeleton.metadata)
    verify(graph)
    return graph


def _flatten_result(result: Any) -> list[Any]:
    if isinstance(result, (tuple, list)):
        return [leaf for item in result for leaf in _flatten_result(item)]
    if isinstance(result, dict):
        return [leaf for item in result.values() for leaf in _flatten_result(item)]
    return [result]


def _mode_class() -> type:
    from torch.overrides import TorchFunctionMode

    class Mode(TorchFunctionMode):
        def __init__(self, recorder: _Recorder):
            super().__init__()
            self.recorder = recorder

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            if not self.recorder.depth:
                self.recorder.on_function(func, args, kwargs, result)
            return result

    return Mode


def _Mode(recorder: _Recorder) -> Any:  # noqa: N802 - reads as a context manager
    return _mode_class()(recorder)
