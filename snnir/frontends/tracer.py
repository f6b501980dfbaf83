"""Trace a torch-style spiking network into a Graph by running it once.

How: a deep copy of the model runs in eval mode under ``torch.no_grad``.
Forward hooks record every call of a *leaf* layer (snnTorch neuron, known
torch.nn layer, or any module with ``to_op()``); a ``TorchFunctionMode``
records the functional glue between leaves (``+``/``-`` for residuals,
scalar ``*``, ``flatten``/``view``/``reshape``, ``x[t]`` on the input
sequence, functional layers). Each tensor is tagged with the nodes whose
(summed) outputs it carries, so arbitrary Python control flow is followed. A
layer called at every step of a time loop becomes one node; called on another
input within a step, a second node. Anything else applied to traced values
raises SnnirError when used. Every returned tensor becomes an output, and the
guard runs the graph against the model before the graph is returned.

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

This module drives a trace (copy the model, hook it, run it once, wire the
outputs); what a run records lives in :mod:`snnir.frontends.recorder`.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections import Counter
from typing import Any, Mapping

from snnir.errors import SnnirError
from snnir.frontends.guard import check_trace, runs_as_parts
from snnir.frontends.outputs import make_stateless, wire_outputs
from snnir.frontends.recorder import Recorder, Tag, call_states
from snnir.frontends.snntorch_map import neuron_registry_of
from snnir.frontends.ties import traced_ties
from snnir.ir.ties import inlined_ties
from snnir.ir.graph import Graph
from snnir.ir.ops import Output, Subgraph
from snnir.ir.verify import verify


def trace(model: Any, sample_input: Any) -> Graph:
    """Trace ``model`` on ``sample_input`` into a Graph with one output per
    tensor ``forward`` returns (see :mod:`snnir.frontends.outputs`), checked
    against the model on ``sample_input`` (:mod:`snnir.frontends.guard`).

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
    _refuse_several_inputs(model)
    if not isinstance(sample_input, torch.Tensor):
        try:
            sample_input = torch.as_tensor(sample_input)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise SnnirError(f"sample_input is not a tensor: {exc}") from None
    if sample_input.ndim < 2:
        raise SnnirError(f"sample_input needs a batch dimension, got shape {list(sample_input.shape)}")
    _warn_eval_semantics(model)
    twin = _twin(model)
    recorder = Recorder(twin)
    first = next((p for p in twin.parameters() if p.is_floating_point()), None)
    x = sample_input.detach().clone()
    if first is not None:  # the model's device and, for float input, its dtype
        x = x.to(device=first.device, dtype=first.dtype if x.is_floating_point() else x.dtype)
    recorder.tag(x, Tag("sequence"))
    before = _python_state(twin)
    result = _record(twin, recorder, x)
    _refuse_python_state(before, _python_state(twin))
    steps = max(map(len, recorder.fresh_calls.values()), default=1)  # neuron calls in one forward
    if recorder.indexed and recorder.fresh_calls and x.shape[0] == 1:
        # one step of a loop cannot show whether a state is carried to the next: trace two
        return trace(model, torch.cat([sample_input, sample_input]))
    _refuse_misaligned_steps(recorder, steps)
    carried = _carried_after_first_call(twin, recorder, x) if steps == 1 else frozenset()
    try:
        graph = _finish(recorder, result, model, carried)
    except SnnirError as exc:
        if recorder.indexed and sample_input.ndim <= 2:
            raise SnnirError(f"{exc.reason} (the model steps through the first dimension of its input, so one "
                             f"step is {list(sample_input.shape[1:])}, with no batch: trace it on a sequence "
                             "[T, B, ...])", exc.node, flag=exc.flag) from None
        if steps > 1 or not recorder.fresh_calls or sample_input.ndim < 3 or not _traces(model, sample_input[0]):
            raise
        raise SnnirError(f"{exc.reason} (the model takes one step per call: trace it on one step [B, ...], as "
                         f"sample_input[0] of shape {list(sample_input.shape[1:])}, not the sequence [T, B, ...])",
                         exc.node, flag=exc.flag) from None
    # a module of the user's own with to_op() declares its op, its forward may be no definition of it;
    # snnir.nn's layers step their op's own update, so the guard checks them (and what feeds them)
    declared = any(recorder.leaf_kind(m) == "to_op" and type(m).__module__.split(".")[0] != "snnir"
                   for m in recorder.modules.values())
    indexed = recorder.indexed
    del twin, result, recorder  # the guard runs a copy of its own
    if not declared:
        guarded = _twin(model)
        with neuron_registry_of(guarded):
            check_trace(graph, guarded, x, steps, indexed, _flatten_result)
    return graph


def _refuse_several_inputs(model: Any) -> None:
    """``forward`` is called with ``sample_input`` alone: one that needs more inputs is refused."""
    try:
        parameters = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):  # no signature to read: the call says what is wrong
        return
    required = [p.name for p in parameters
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) > 1:
        raise SnnirError(f"{type(model).__name__}.forward takes {len(required)} inputs ({', '.join(required)}) and "
                         "trace gives it one, sample_input: it traces models of one input tensor")


def _refuse_misaligned_steps(recorder: Recorder, steps: int) -> None:
    """The graph reads x[t] at step t, so a loop over ``steps`` neuron steps that reads the input
    in order must end at x[steps - 1]: x[0] read at every step, or x[t // 2], ends earlier."""
    if not recorder.indexed or not recorder.fresh_calls or recorder.last_step is None:
        return
    if recorder.last_step + 1 != steps:
        neuron = next(name for name, calls in recorder.fresh_calls.items() if len(calls) == steps)
        read = "only x[0]" if recorder.last_step == 0 else f"x[0] to x[{recorder.last_step}]"
        raise SnnirError(f"forward ran {steps} steps but read {read} of the input "
                         f"(the graph reads x[t] at step t: a loop reading x[0], or one step over several "
                         "steps, has no graph; index the input by the loop's step)", neuron)


def _traces(model: Any, sample_input: Any) -> bool:
    """:func:`trace` succeeds on ``sample_input``."""
    try:
        trace(model, sample_input)
    except SnnirError:
        return False
    return True


def trace_submodules(module: Any, sample_input: Any) -> Graph:
    """Trace a compiled module (``snnir.compile(graph, target="torch")``) through
    its op submodules, without asking it for its graph.

    ``sample_input`` is what its forward takes: ``[T, B, *shape]`` or a dict by
    Input name. Every op submodule (``to_op()``) becomes the node named by its
    ``path``; the glue between them (sums, time slicing, the delayed edges that
    are zero at the first step) becomes edges. Ports and graph metadata are not
    modules: they come from ``module.graph``. Nested graphs come back inlined,
    their nodes named ``"<sub>.<inner>"`` (as the ``flatten_subgraphs`` pass names them), and so
    are the parameter ties of ``module.graph``'s levels (its copies share their parameters).
    """
    import torch

    skeleton = getattr(module, "graph", None)
    if not isinstance(module, torch.nn.Module) or not isinstance(skeleton, Graph):
        raise SnnirError(f"trace_submodules needs a compiled snnir module, got {type(module).__name__}")
    _refuse_nested_cycles(skeleton)
    given = _by_input(sample_input, skeleton.inputs)
    twin = _twin(module)
    recorder = Recorder(twin, whole_sequences=True, reserved=skeleton.inputs + skeleton.outputs)
    tensors = list(twin.parameters()) + list(twin.buffers())
    first = next((t for t in tensors if t.is_floating_point()), None)
    xs = {}
    for name, value in given.items():
        x = value.detach().clone()
        if first is not None and x.is_floating_point():
            x = x.to(device=first.device, dtype=first.dtype)
        recorder.nodes[name] = skeleton.nodes[name]
        recorder.tag(x, Tag("value", (name,)))
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


def _warn_eval_semantics(model: Any) -> None:
    """Warn, naming them, where layers in training mode compute what the graph will not: the
    graph is the eval-mode model (Dropout passes its input through, BatchNorm normalises by its
    running statistics), and a model in training mode gives other values."""
    from snnir.frontends.torch_nn_map import BATCHNORMS, DROPOUTS

    differ = [
        f"'{path.replace('.', '_') or 'model'}' ({type(m).__name__})" for path, m in model.named_modules()
        if m.training and type(m).__module__.startswith("torch.nn")
        and type(m).__name__ in DROPOUTS + BATCHNORMS
    ]
    if differ:
        warnings.warn(
            f"snnir.trace traces the model in eval mode, but {', '.join(differ)} "
            f"{'is' if len(differ) == 1 else 'are'} in training mode, where the model's values differ from "
            "the graph's (Dropout passes its input through, BatchNorm uses its running statistics); "
            "call model.eval() first to trace what it computes",
            stacklevel=4,  # the caller of snnir.trace
        )


def _twin(model: Any) -> Any:
    """A deep copy in eval mode, so that tracing leaves ``model`` untouched."""
    try:
        twin = copy.deepcopy(model, _detached_states(model))
    except Exception as exc:  # noqa: BLE001 - any failure means we cannot trace without side effects
        raise SnnirError(f"the model cannot be copied for tracing: {exc}") from None
    return twin.eval()


def _record(twin: Any, recorder: Recorder, x: Any) -> Any:
    """Run ``twin(x)`` once with every module hooked and the glue recorded."""
    import torch

    handles = []
    for module in twin.modules():
        if runs_as_parts(module):
            continue
        handles.append(module.register_forward_pre_hook(recorder.pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(recorder.post_hook))
    try:
        with torch.no_grad(), neuron_registry_of(twin), _Mode(recorder):
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


_PLAIN = (bool, int, float, str, type(None))


def _python_state(model: Any) -> dict[tuple[str, str], Any]:
    """The plain Python values (numbers, strings, None, tuples of them) that the user's own
    modules hold as attributes, by (module path, attribute); torch's and snnTorch's modules
    are left out (their state is tensors, which the trace follows)."""
    found = {}
    for path, module in model.named_modules():
        if type(module).__module__.split(".")[0] in ("torch", "snntorch"):
            continue
        for attr, value in vars(module).items():
            plain = isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value))
            if plain and not attr.startswith("_"):
                found[path, attr] = value
    return found


def _refuse_python_state(before: dict, after: dict) -> None:
    """Refuse a forward that changed a plain attribute of the model that held a value before (a
    step counter): the graph computes what the traced call did at every step, not what later
    calls would. One set from None (a cache of the batch size) is left alone."""
    for (path, attr), value in before.items():
        now = after.get((path, attr), value)
        if value is not None and now is not value and now != value:  # the same object (a NaN too) is unchanged
            raise SnnirError(
                f"forward changes the attribute '{attr}' ({value!r} -> {after[path, attr]!r}): state kept in Python, "
                "which a graph cannot follow (a reset every few calls would give other spikes from then on); "
                "keep forward's computation free of such state to trace it", path.replace(".", "_") or "model")


def _carried_after_first_call(twin: Any, recorder: Recorder, x: Any) -> frozenset[str]:
    """The snnTorch neurons of a step model (one call per forward) that the traced call started
    from a zero state made during it, but that a second call of ``twin`` starts from a state that
    is not zero (``if self.mem is None: self.mem = lif.init_leaky()``): their state is carried
    from call to call. Empty where the second call fails (the guard then says why)."""
    import torch

    fresh = [name for name, calls in recorder.fresh_calls.items() if calls == [True]]
    found: set[str] = set()

    def watch(name: str) -> Any:
        def hook(module: Any, args: tuple, kwargs: dict) -> None:
            if any(bool(s.any()) for s in call_states(module, list(args[1:]) + list(kwargs.values()))):
                found.add(name)
        return hook

    if not fresh:
        return frozenset()
    handles = [recorder.modules[name].register_forward_pre_hook(watch(name), with_kwargs=True) for name in fresh]
    try:
        with torch.no_grad(), neuron_registry_of(twin):
            twin(x)
    except Exception:  # noqa: BLE001 - a forward that fails on a second call: the guard reports it
        return frozenset()
    finally:
        for handle in handles:
            handle.remove()
    return frozenset(found)


def _finish(recorder: Recorder, result: Any, model: Any, carried: frozenset[str] = frozenset()) -> Graph:
    """The recorded nodes with one Output per returned tensor (see :mod:`snnir.frontends.outputs`)."""
    if "input" not in recorder.nodes:
        raise SnnirError("no traced layer received the model input")
    make_stateless(recorder, carried)
    outputs, edges = wire_outputs(recorder, _flatten_result(result))
    nodes = dict(recorder.nodes) | outputs
    graph = Graph(nodes, tuple(recorder.edges) + tuple(edges), {"source": f"snnir.trace({type(model).__name__})"},
                  traced_ties(recorder))
    verify(graph)
    return graph


def _finish_ports(recorder: Recorder, result: Any, skeleton: Graph) -> Graph:
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
    graph = Graph(nodes, tuple(edges), skeleton.metadata, inlined_ties(skeleton))
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
        def __init__(self, recorder: Recorder):
            super().__init__()
            self.recorder = recorder

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            result = func(*args, **kwargs)
            if not self.recorder.depth:
                self.recorder.on_function(func, args, kwargs, result)
            return result

    return Mode


def _Mode(recorder: Recorder) -> Any:  # noqa: N802 - reads as a context manager
    return _mode_class()(recorder)
