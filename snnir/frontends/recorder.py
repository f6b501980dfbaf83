"""The recorder behind :mod:`snnir.frontends.tracer`: what one traced run saw.

A :class:`Recorder` is driven by the tracer's forward hooks (``pre_hook`` /
``post_hook`` on every module) and by its ``TorchFunctionMode``
(``on_function``, called only outside leaf layers; :mod:`snnir.frontends.glue`). It tags each tensor with
a :class:`Tag` (the nodes whose summed outputs it carries, a neuron state,
the whole input sequence, or "bad" with the reason) and accumulates the graph
being built: ``nodes``, ``edges`` and each node's recorded inputs
(``inputs_of``).

Invariants: ``tags`` holds each tagged tensor weakly and looks it up by
identity: its entry goes when the tensor does (so a long run keeps no step's
activations alive) and a recycled ``id`` never inherits a tag; a leaf layer is one node per module
path and set of sources however often it is called (a call passed a node's state is that node; a
first call ``padded`` with zeros may be completed later, in whole-sequence mode); a leaf nested inside
another leaf records nothing (``depth``); each functional glue node is
recorded once per (function, sources) key. A "bad" or state tag used as a
leaf's input raises SnnirError naming the layer. This module does not import
:mod:`snnir.frontends.tracer`.
"""

from __future__ import annotations

import weakref
from collections import Counter
from typing import Any, Callable

from snnir.errors import SnnirError
from snnir.frontends.fragment import Fragment
from snnir.frontends.functional import avg_pool1d_op, check_avg_pool
from snnir.frontends.glue import GlueRecording
from snnir.frontends.tag import Tag
from snnir.ir.ops import Input, Op

_STATES = ("mem", "syn", "spk", "syn_exc", "syn_inh")  # snnTorch neurons' state attributes
#: what an snnTorch neuron returns after its spikes
_STATE_OUTPUTS = {"Synaptic": ("syn", "mem"), "RSynaptic": ("syn", "mem"), "Alpha": ("syn_exc", "syn_inh", "mem")}


def call_states(module: Any, states: list) -> list:
    """The state tensors of an snnTorch neuron's call: those among ``states`` (its arguments
    after the input), else those it holds (``init_hidden``)."""
    import torch

    given = [s for s in states if isinstance(s, torch.Tensor)]
    return given or [v for v in (getattr(module, a, None) for a in _STATES) if isinstance(v, torch.Tensor)]


class Recorder(GlueRecording):
    """``whole_sequences``: the model is a compiled module that runs whole
    sequences ``[T, B, ...]`` and names its leaves by node path (``path``)."""

    def __init__(self, model: Any, whole_sequences: bool = False, reserved: tuple[str, ...] = ("input", "output")):
        import torch

        self.torch = torch
        self.whole_sequences = whole_sequences
        self.reserved = reserved
        self.tags: dict[int, tuple[Callable[[], Any], Tag]] = {}  # id -> (weak reference, tag)
        self.nodes: dict[str, Op] = {}
        self.inputs_of: dict[str, tuple[tuple[str, ...], bool]] = {}
        self.edges: list[tuple[str, str]] = []
        self.layer_nodes: dict[str, Fragment] = {}
        self.names: dict[str, list[str]] = {}  # module path -> its nodes (several when called on several inputs)
        self.calling: dict[int, str] = {}  # id(module) -> the node of its call in progress
        self.functional: dict[tuple, str] = {}
        self.passthrough: dict[int, tuple[str, ...]] = {}
        self.path_of = {id(m): p for p, m in model.named_modules()}
        #: paths of the modules with to_op() (snnir.nn layers...): one never called names a likely cause
        self.declared = [p for p, m in model.named_modules() if p and callable(getattr(m, "to_op", None))]
        self.owner_of = {id(t): p.rpartition(".")[0].replace(".", "_") for p, t in model.named_parameters()}
        self.indexed = False  # the input is a sequence indexed along time (loop-style)
        self.last_step: int | None = None  # the step of the input sequence read last, x[t]
        self.input_as: tuple[int, ...] | None = None  # the input's own step shape, when reshaped for its Input
        self.stack: list[str] = []
        self.depth = 0
        self.input_shape: tuple[int, ...] | None = None
        self.fresh_calls: dict[str, list[bool]] = {}  # neuron node -> per call: did it start from zero state?
        self.modules: dict[str, Any] = {}  # layer node -> its module (of this run's copy)

    # --- tags ------------------------------------------------------------------
    def tag(self, tensor: Any, tag: Tag) -> None:
        key = id(tensor)
        try:
            held = weakref.ref(tensor, lambda ref: self._forget(key, ref))
        except TypeError:  # not weakly referenceable: held strongly until the run ends
            held = lambda: tensor  # noqa: E731
        self.tags[key] = (held, tag)

    def _forget(self, key: int, ref: weakref.ref) -> None:
        entry = self.tags.get(key)
        if entry is not None and entry[0] is ref:  # not a newer tensor's entry under a recycled id
            del self.tags[key]

    def tag_of(self, obj: Any) -> Tag | None:
        entry = self.tags.get(id(obj))
        return entry[1] if entry is not None and entry[0]() is obj else None

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
        if tag is not None:
            tag = self.read_if_step(obj, tag)
        if tag is None or tag.kind == "fresh":
            raise SnnirError("its input does not derive from the model input", layer)
        if tag.kind == "bad":
            raise SnnirError(f"its input went through {tag.why}, which cannot be traced", layer)
        if tag.kind == "state":
            raise SnnirError(f"its input is the {tag.why} of '{tag.sources[0]}', a neuron state; "
                             "only spikes and currents can be traced", layer)
        if tag.kind == "sequence":
            return self.input_node(tuple(obj.shape[1:]), layer)
        return tag.sources

    def reshapes_input(self, before: tuple[int, ...], after: tuple[int, ...]) -> bool:
        """The model input itself unsqueezed (``x.unsqueeze(1)``) before any layer sees it: the
        graph's Input takes the reshaped shape. Always the same reshape, or none."""
        if self.input_as is None and not any(src == "input" for src, _ in self.edges) and before != after:
            self.input_as, self.input_shape = before, after
            self.nodes["input"] = Input(shape=after)
        return self.input_as == before and self.input_shape == after

    def input_node(self, shape: tuple[int, ...], layer: str) -> tuple[str, ...]:
        if self.input_as is not None and shape == self.input_as:
            return ("input",)
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
        from snnir.frontends.torch_nn_map import LAYERS, PASSTHROUGH

        if callable(getattr(module, "to_op", None)):
            return "to_op"
        if is_snntorch_neuron(module):
            return "snntorch"
        name = type(module).__name__
        if not type(module).__module__.startswith("torch.nn"):  # a model class may share a layer's name
            return None
        if name in PASSTHROUGH:
            return "passthrough"
        return "layer" if name in LAYERS else None

    def fragment(self, module: Any, kind: str, layer: str, x: Any) -> Fragment:
        from snnir.frontends.snntorch_map import neuron_fragment
        from snnir.frontends.torch_nn_map import check_layer_input, layer_op

        if kind == "snntorch":
            return neuron_fragment(module, layer)
        if kind == "to_op":
            op = module.to_op()
            if not isinstance(op, Op):
                raise SnnirError(f"to_op() returned {type(op).__name__}, not an snnir Op", layer)
            return Fragment.single(op)
        if type(module).__name__ == "AvgPool1d":
            check_avg_pool("AvgPool1d", vars(module), layer)
            return Fragment.single(avg_pool1d_op(x.shape[1], module.kernel_size, module.stride, module.padding))
        check_layer_input(module, x, layer)
        return Fragment.single(layer_op(module, layer))

    def pre_hook(self, module: Any, args: tuple, kwargs: dict | None = None) -> None:
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
        fed = (kwargs or {}).get("fed") if self.whole_sequences else None
        if fed is not None:  # a compiled neuron's fed-back drive (snnir.ir.schedule): its edges too
            sources += self.use(fed, layer)
            fed_tag = self.tag_of(fed)
            padded = padded or (fed_tag.padded if fed_tag is not None else self.is_zero(fed))
        if kind == "passthrough":
            self.passthrough[id(module)] = sources
            return
        states = list(args[1:]) + list((kwargs or {}).values())
        name = self.instance(module, kind, self.names.setdefault(path, []), sources, states, layer)
        if name is None:
            fragment = self.fragment(module, kind, layer, args[0])
            name = self.node_name(layer)
            self.names[path].append(name)
            self.layer_nodes[name] = fragment
            for key, op in fragment.nodes.items():
                self.nodes[fragment.name(name, key)] = op
            self.edges.extend((fragment.name(name, a), fragment.name(name, b)) for a, b in fragment.edges)
        self.calling[id(module)] = name
        fragment = self.layer_nodes[name]
        self.connect(name, sources, tuple(fragment.name(name, e) for e in fragment.entries), layer, padded)
        self.modules[name] = module
        if kind == "snntorch":
            if name not in self.fresh_calls:
                self.refuse_a_given_start(states, layer)
            self.fresh_calls.setdefault(name, []).append(self.starts_from_zero(module, states))

    def instance(self, module: Any, kind: str, names: list[str], sources: tuple[str, ...], states: list,
                 layer: str) -> str | None:
        """Which node of this layer a call is: the one whose state it is passed, else the one with
        these inputs; ``None`` for a new node (the layer called on another input within a step:
        a second node with the same parameters)."""
        if not names or self.whole_sequences:
            return names[0] if names else None
        for state in states:
            tag = self.tag_of(state)
            if tag is not None and tag.kind in ("state", "value") and tag.sources and tag.sources[0] in names:
                return tag.sources[0]
        for name in names:
            if self.inputs_of[name][0] == tuple(sorted(sources)):
                return name
        if kind == "snntorch" and getattr(module, "init_hidden", False):
            raise SnnirError("is called on different inputs while its state lives in the module (init_hidden=True): "
                             "snnTorch steps that one state twice per step, which no graph states; use one neuron "
                             "module per layer, or pass each call its own state (init_hidden=False)", layer)
        return None

    def refuse_a_given_start(self, states: list, layer: str) -> None:
        """A neuron's first call passed a state that no traced layer made and that is not zero
        (``mem = torch.full(...)``): the graph's neurons start from zero, so it is refused."""
        for state in states:
            if isinstance(state, self.torch.Tensor) and self.tag_of(state) is None and bool(state.any()):
                raise SnnirError(
                    "is first called with a state that is not zero (a tensor made outside the traced layers, "
                    "such as torch.full): a graph's neurons start from zero; start it from init_leaky() or "
                    "zeros", layer)

    def starts_from_zero(self, module: Any, states: list) -> bool:
        """Whether this call's state (:func:`call_states`) was set to zeros during the run
        (``init_leaky()``, ``reset_mem()``, ``torch.zeros``)."""
        tags = [self.tag_of(s) for s in call_states(module, states)]
        return bool(tags) and all(t is not None and t.kind == "fresh" for t in tags)

    def layer_name(self, module: Any, path: str) -> str:
        """A compiled module's leaves carry their node path; other leaves are named by module path."""
        node_path = getattr(module, "path", None)
        if self.whole_sequences and isinstance(node_path, str) and node_path:
            return node_path
        return path.replace(".", "_") or "model"

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
            name = self.calling[id(module)]
            sources = (self.layer_nodes[name].name(name, self.layer_nodes[name].exit),)
        outputs = output if isinstance(output, (tuple, list)) else (output,)
        self.tag(outputs[0], Tag("value", sources))
        names = _STATE_OUTPUTS.get(type(module).__name__, ("mem",)) if kind == "snntorch" else ()
        for k, extra in enumerate(outputs[1:]):
            if isinstance(extra, self.torch.Tensor):
                state = names[k] if k < len(names) else f"output {k + 1}"
                self.tag(extra, Tag("state", sources, why=state))
        for state in names:  # init_hidden keeps them as attributes: self.lif.mem is what output=True returns
            held = getattr(module, state, None)
            if isinstance(held, self.torch.Tensor) and self.tag_of(held) is None:
                self.tag(held, Tag("state", sources, why=state))
