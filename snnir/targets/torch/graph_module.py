"""A graph as a torch module: one submodule per node, named as the node.

Execution, per graph level: strongly connected components in topological
order. A component without recurrence runs over the whole sequence at once
(stateless ops on ``[T*B, ...]``, neurons by their sequence scan); a recurrent
component steps through time, its delayed edges reading the previous step's
value (zero at the first step), exactly as :mod:`snnir.ir.schedule` defines (``step_loop.py``).

Static (time-invariant) values: a static Input is ``[B, ...]``, held over the
T steps, as is a nested graph's Input port no edge enters (zero, the empty
sum). A stateless node whose inputs are all static runs once on
``[B, ...]`` and its output is static too (the rule of the
``hoist_time_invariant`` pass, applied at run time, also inside nested graphs
and fused layer-neuron nodes). A neuron fed only a static value runs its scan
with ``steps=T``; any other consumer sees it broadcast over time.

Runs of steps: the top level runs a sequence as consecutive runs of at most
``time_chunk`` steps (``time_chunks``), state carried between them and static
values computed once; results are identical, and training keeps one run's
gradients at a time (with ``recompute``, only each run's inputs and start state:
its forward reruns in the backward). Layers fed only spikes (``binary_values``)
keep their input as bools for the backward (``spike_linear``); a neuron whose
spikes only a Linear or Affine layer takes applies that layer in its own scan
(``spike_flow.plan_handovers``, ``neuron_linear``).

State is one flat dict of tensors: ``"<node path>.<state>"`` for op states (the
keys of :func:`snnir.run`'s traces) and ``"<source>@prev"`` for the last value
carried by a delayed edge.
"""

from __future__ import annotations

from typing import Any, Mapping

import networkx as nx
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.ir.ops import Input, Op, Output, Subgraph
from snnir.ir.schedule import node_digraph, schedule
from snnir.ir.shapes import Shapes, infer_shapes
from snnir.ir.spikes import Sources, binary_values, edge_sources, fed_binary
from snnir.targets.reference.interpreter import EXTENSIONS
from snnir.targets.torch.conv_chain import plan_all_chains
from snnir.targets.torch.expanded import ExpandedModule, refuse_hooks
from snnir.targets.torch.modules import LOWERINGS, AffineModule, LoweringContext, Shared
from snnir.targets.torch.neuron_module import NeuronModule
from snnir.targets.torch.options import Options
from snnir.targets.torch.plan import SegmentRun, later_reads, segments, time_chunks
from snnir.targets.torch.pool_neuron import passes_on, plan_pools
from snnir.targets.torch.recurrent import FeedbackLoop, feedback_loop
from snnir.targets.torch.spike_flow import hands_over, plan_handovers, plan_probes, share_tied_parameters
from snnir.targets.torch.run_state import FreshState, RunState, State, joined
from snnir.targets.torch.step_loop import run_recurrent

def attribute_name(node: str) -> str:
    """A submodule name for a node: dots become underscores (torch forbids dots)."""
    return node.replace(".", "_")


class GraphModule(nn.Module):
    """One graph level; nested graphs and expanded extension ops are child levels."""

    def __init__(
        self, graph: Graph, shapes: Shapes, shape_prefix: str, prefix: str, options: Options,
        binary_inputs: frozenset[str] = frozenset(),
    ):
        super().__init__()
        self._shared_graph = Shared(graph)
        self._input_names, self._output_names = graph.inputs, graph.outputs  # asked per call
        self._shapes, self._shape_prefix, self._prefix = shapes, shape_prefix, prefix
        self._attrs: dict[str, str] = {}
        self._state_names: dict[str, tuple[str, ...]] = {}
        self.time_chunk, self.recompute = options.time_chunk, options.recompute
        sched = schedule(graph)
        self._sources: Sources = edge_sources(graph, sched)
        #: per neuron, the positions in its ``_sources`` of its fed-back drive (snnir.ir.schedule)
        self._fed_back = _fed_back_positions(graph, sched.fed_back)
        binary = binary_values(graph, sched.order, self._sources, binary_inputs)
        for name, op in graph.nodes.items():
            if isinstance(op, (Input, Output)):
                continue
            self._attrs[name] = self._free_attribute(name)
            fed_spikes = fed_binary(self._sources, name, binary)
            self.add_module(self._attrs[name], self._lower(name, op, options, fed_spikes))
        share_tied_parameters(self, graph)
        self._plan = self._components(graph, sched.order)
        self._segments = segments(self._plan, lambda name: graph.nodes[name].stateful)
        #: per segment, the value keys a later segment or an Output reads (see plan.py)
        self._delayed_keys = sorted({k for srcs in self._sources.values() for k, _, d in srcs if d})
        #: per component, the sources of its delayed edges (all inside it, by the schedule's rule)
        self._component_delayed = {
            members: sorted({k for m in members for k, _, d in self._sources.get(m, ()) if d})
            for members, _ in self._plan
        }
        self._then: dict[str, AffineModule] = {}  # see spike_flow.py
        self._given: dict[str, NeuronModule] = {}
        #: recurrent components that may run as one native call (see recurrent.py)
        self._loops: dict[tuple[str, ...], FeedbackLoop] = {}
        if options.fast:
            plan_handovers(self)
            found = {members: feedback_loop(self, members) for members, recurrent in self._plan if recurrent}
            self._loops = {members: loop for members, loop in found.items() if loop is not None}
        #: neuron node -> the states probes read (see spike_flow.plan_probes)
        self._probed: dict[str, set[str]] = plan_probes(self, graph)
        #: neuron node -> the max pool it runs on its input; pool node -> that neuron (pool_neuron.py)
        self._pool_of = plan_pools(self)
        self._pooled_by = {self._sources[n][0][0]: self.node_module(n) for n in self._pool_of}
        self._read_later = later_reads(self._segments, self._sources, self._graph.outputs, self._probed)
        #: the top level's step and conv chains, by first segment (step_chain.py, conv_chain.py; the
        #: planner picks those that run)
        self._chains = plan_all_chains(self) if options.fast and not prefix else {}

    @property
    def _graph(self) -> Graph:
        return self._shared_graph.value

    # --- building ---------------------------------------------------------------------
    def _free_attribute(self, name: str) -> str:
        attr = attribute_name(name)
        while hasattr(self, attr) or attr in self._attrs.values():
            attr += "_"
        return attr

    def _lower(self, name: str, op: Op, options: Options, binary_input: bool) -> nn.Module:
        path = self._prefix + name
        shape_key = self._shape_prefix + name
        if isinstance(op, Subgraph):
            return GraphModule(op.graph, self._shapes, shape_key + ".", path + ".", options)
        in_shape = self._shapes.inputs.get(shape_key)
        lowering = LOWERINGS.get(type(op))
        if lowering is None and type(op) in EXTENSIONS:
            expanded = EXTENSIONS[type(op)](op)
            sub_shapes = infer_shapes(expanded, {expanded.inputs[0]: in_shape})
            fed = frozenset(expanded.inputs[:1]) if binary_input else frozenset()
            return ExpandedModule(op, GraphModule(expanded, sub_shapes, "", path + ".", options, fed))
        if lowering is None:
            raise SnnirError(f"the torch target has no lowering for op type '{op.op_type}'", path)
        tie = self._graph.tie_of(name) or (name,)  # tied copies train what any of them trains
        ctx = LoweringContext(
            path=path,
            trainable=frozenset().union(*(options.trainable_for(self._prefix + n, op) for n in tie)),
            surrogate=options.surrogate,
            dtype=options.dtype,
            in_shape=in_shape,
            out_shape=tuple(self._shapes.outputs[shape_key]),
            fast=options.fast,
            detach_reset=options.detach_reset,
            binary_input=binary_input,
            native=options.native,
            triton=options.triton,
        )
        module = lowering(op, ctx)
        if module.stateful:
            probe = module.initial_state(1, ctx.out_shape, options.dtype, "meta")
            self._state_names[name] = tuple(probe)
        return module

    @staticmethod
    def _components(graph: Graph, order: tuple[str, ...]) -> list[tuple[tuple[str, ...], bool]]:
        """SCCs in topological order, members in schedule order; flag the recurrent ones."""
        g = node_digraph(graph)
        position = {name: i for i, name in enumerate(order)}
        condensed = nx.condensation(g)
        members = condensed.graph["mapping"]
        groups: dict[int, list[str]] = {}
        for node, comp in members.items():
            groups.setdefault(comp, []).append(node)
        first = {c: min(position[n] for n in nodes) for c, nodes in groups.items()}
        plan = []
        for comp in nx.lexicographical_topological_sort(condensed, key=lambda c: first[c]):
            nodes = tuple(sorted(groups[comp], key=position.__getitem__))
            plan.append((nodes, len(nodes) > 1 or g.has_edge(nodes[0], nodes[0])))
        return plan

    def node_module(self, name: str) -> nn.Module:
        """The submodule of node ``name`` of this level."""
        return self._modules[self._attrs[name]]

    # --- state ------------------------------------------------------------------------
    def initial_state(self, batch: int, dtype: torch.dtype, device: Any) -> State:
        state: State = {}
        for name, attr in self._attrs.items():
            module = getattr(self, attr)
            if isinstance(module, (GraphModule, ExpandedModule)):
                state.update(module.initial_state(batch, dtype, device))
            elif module.stateful:
                shape = self._shapes.outputs[self._shape_prefix + name]
                for key, value in module.initial_state(batch, shape, dtype, device).items():
                    state[f"{self._prefix}{name}.{key}"] = value
        for key in self._delayed_keys:
            shape = tuple(self._shapes.outputs[self._shape_prefix + key])
            state[f"{self._prefix}{key}@prev"] = torch.zeros((batch,) + shape, dtype=dtype, device=device)
        return state

    # --- running ----------------------------------------------------------------------
    def run(
        self, inputs: Mapping[str, torch.Tensor], state: State, record: bool, steps: int,
        static: frozenset[str] = frozenset(), run_length: int | None = None, chunk_of=None, chains=None,
    ):
        """Inputs by Input name: ``[T, B, ...]`` with ``T = steps``, or ``[B, ...]`` held over
        the steps for the names in ``static`` -> (outputs ``[T, B, ...]`` by Output name, new
        state, traces or None). A static Output comes back as an expanded view (time stride 0).
        ``run_length`` (default ``time_chunk``), ``chunk_of`` and ``chains``: the plan (see ``plan.py``)."""
        sizes = time_chunks(steps, self.time_chunk if run_length is None else run_length)
        outs, static_outs, new_state, traces = self._run_chunks(inputs, static, state, record, sizes, chunk_of, chains)
        for name in static_outs:
            outs[name] = outs[name].expand((steps,) + tuple(outs[name].shape))
        return outs, new_state, traces

    def _run_chunks(self, inputs, static, state, record, sizes, chunk_of=None, chains=None):
        """:meth:`_run_level` over consecutive runs of ``sizes`` steps (often just one), the
        state carried from one to the next and static values computed once. Identical results;
        for training, autograd keeps one run's values at a time in the backward, and a neuron
        with a held input keeps only its state at the start of each run (see ``scan.py``)."""
        cache: dict = {}
        current, new_state = dict(state), {}
        parts: dict[str, list[torch.Tensor]] = {}
        trace_parts: dict[str, list[torch.Tensor]] = {}
        run = self._rerun_in_backward if self.recompute and torch.is_grad_enabled() else self._run_level
        split = {n: v.split(sizes) for n, v in inputs.items() if n not in static}  # one backward join (plan.py)
        owned = frozenset(state) if isinstance(state, FreshState) else frozenset()
        for k, size in enumerate(sizes):
            chunk = {n: v if n in static else split[n][k] for n, v in inputs.items()}
            # a copy of the state: a rerun in the backward must see this run's, not a later one
            outs, static_outs, changed, traces = run(chunk, static, RunState(current, owned), record, size, cache,
                                                     chunk_of, chains)
            owned |= changed.keys()
            current.update(changed)
            new_state.update(changed)
            if isinstance(state, FreshState):
                for key in changed:
                    state.pop(key, None)
            for name, value in outs.items():
                parts.setdefault(name, []).append(value)
            for key, value in (traces or {}).items():
                trace_parts.setdefault(key, []).append(value)
        outs = {n: joined(p, n in static_outs) for n, p in parts.items()}
        traces = {k: joined(p, False) for k, p in trace_parts.items()} if record else None
        return outs, static_outs, new_state, traces

    def _rerun_in_backward(self, inputs, static, state, record, steps, cache, chunk_of=None, chains=None):
        """:meth:`_run_level` keeping only its inputs and starting state (``recompute=True``): its
        forward reruns in the backward, with a new cache each time (a rerun must save what it saved).
        (No step chain runs while gradients are on.)"""
        return checkpoint(
            lambda *a: self._run_level(*a, {}, chunk_of), inputs, static, state, record, steps, use_reentrant=False
        )

    def _run_level(self, inputs, static, state, record, steps, cache, chunk_of=None, chains=None):
        """As :meth:`run`, but static Outputs stay ``[B, ...]`` and are named in the second result.
        ``cache`` keeps the outputs of nodes fed only static values, by path, across runs of steps.
        ``chunk_of(index, steps, trial)`` (the top level's plan, see ``plan.py``): the steps per
        call of segment ``index``; ``trial(chunk)`` times it. Without it each segment runs whole.
        ``chains``: first segment -> (its step chain, steps per product of its first layer), the
        chains the plan runs (no traces; ``step_chain.py``)."""
        values: dict[str, torch.Tensor] = {}
        held: set[str] = set()  # keys of values that are static [B, ...]
        new_state: State = {}
        traces: dict[str, torch.Tensor] | None = {} if record else None
        after_chain = 0  # segments before this index ran in a step chain
        for index, components in enumerate(self._segments):
            if index < after_chain:
                continue
            if chains and index in chains:
                chain, block = chains[index]
                chain.run(self, block, inputs, static, values, held, state, new_state, steps, cache)
                after_chain = chain.last + 1
                continue
            run = None if chunk_of is None else SegmentRun(self, components, inputs, static, values, held, state, steps)
            chunk = steps if run is None else chunk_of(index, steps, run.trial)
            if chunk >= steps:
                self._run_components(components, inputs, static, values, held, state, new_state, traces, steps, cache)
            else:
                run.in_calls(chunk, new_state, traces, cache, self._read_later[index])
        outputs = self._output_names
        return {name: values[name] for name in outputs}, {n for n in outputs if n in held}, new_state, traces

    def _run_components(self, components, inputs, static, values, held, state, new_state, traces, steps, cache):
        """Run ``components`` (of :attr:`_plan`, in order) over ``steps`` steps, adding to
        ``values``, ``held``, ``new_state`` and ``traces``. ``inputs`` names every Input of
        the level (a nested level's unfed ports are zeros, see :meth:`run_ports`)."""
        batch = _batch_of(inputs, static)
        for members, recurrent in components:
            if recurrent:
                run_recurrent(self, members, steps, values, held, state, new_state, traces, cache)
                continue
            name = members[0]
            if name in inputs:
                values[name] = inputs[name]
                if name in static:
                    held.add(name)
                continue
            x, held_ports, _ = self._gather(name, values, held)  # fed-back drive is in loops only
            outs, held_outs, node_state, node_traces = self._run_node(
                name, x, held_ports, state, record=traces is not None, steps=steps, cache=cache, batch=batch
            )
            values.update(outs)
            held.update(held_outs)
            new_state.update(node_state)
            if traces is not None and node_traces:
                traces.update(node_traces)

    def _gather(self, name, values, held, step_values=None, prev=None, t=None):
        """The summed input of each port of ``name``, the set of ports whose sum is static and
        the summed fed-back drive of a neuron (None where it has none; only inside a recurrent
        component, whose step loop passes ``t``). A static ``[B, ...]`` term broadcasts against
        ``[T, B, ...]`` ones."""
        summed: dict[str | None, torch.Tensor] = {}
        static_ports: dict[str | None, bool] = {}
        fed_back, fed = self._fed_back.get(name, ()), None
        for index, (key, port, delayed) in enumerate(self._sources.get(name, ())):
            is_static = False
            if delayed:
                value = prev[key][None]
            elif step_values is not None and key in step_values:
                value = step_values[key]
            elif t is not None:
                value = values[key][None] if key in held else values[key][t : t + 1]
            else:
                value = values[key]
                is_static = key in held
            if index in fed_back:
                fed = value if fed is None else fed + value
                continue
            summed[port] = summed[port] + value if port in summed else value
            static_ports[port] = static_ports.get(port, True) and is_static
        return summed, {port for port, flag in static_ports.items() if flag}, fed

    def _run_node(
        self, name: str, x: dict, static_ports: set, state: State, record: bool, steps: int, cache: dict,
        fed: torch.Tensor | None = None, batch: tuple[int, torch.Tensor] | None = None,
    ):
        """Run one node over sequences; returns (values by source key, the keys among them that
        are static ``[B, ...]``, its new state, its traces). ``fed``: a neuron's fed-back drive.
        ``batch``: the level's ``(B, a value)`` (see :func:`_batch_of`), for a nested graph no
        edge enters (else it is taken from ``x``)."""
        op = self._graph.nodes[name]
        static = None in static_ports
        if isinstance(op, Output):
            return {name: x[None]}, ({name} if static else set()), {}, None
        module = self.node_module(name)
        if isinstance(module, (GraphModule, ExpandedModule)):
            refuse_hooks(module, self._prefix + name, op)
            batch = _batch_of(x, static_ports) if x else batch
            outs, static_outs, new_state, traces = module.run_ports(x, static_ports, state, record, steps, cache,
                                                                    batch)
            values = {f"{name}.{port}": value for port, value in outs.items()}
            held = {f"{name}.{port}" for port in static_outs}
            if len(outs) == 1:
                values[name] = next(iter(outs.values()))
                held |= {name} if static_outs else set()
            return values, held, new_state, traces
        if not module.stateful:
            if name in self._given and hands_over(self._given[name], module):  # its neuron applied it
                return {name: x[None]}, set(), {}, None
            if not static and passes_on(self, name, module):  # its neuron pools (a static input: pooled once)
                return {name: x[None]}, set(), {}, None
            if not static:
                return {name: module(x[None])}, set(), {}, None
            key = self._prefix + name
            if key not in cache:
                cache[key] = module(x[None])
            return {name: cache[key]}, {name}, {}, None
        key = f"{self._prefix}{name}."
        own = {s: state[key + s] for s in self._state_names[name]}
        if fed is not None:
            if name in self._probed:
                y, final, traces = module.sequence_with_states(x[None], own, fed=fed)
                values = {name: y, **{(name, s): traces[s] for s in self._probed[name]}}
                return values, set(), {key + s: v for s, v in final.items()}, (
                    {key + s: v for s, v in traces.items()} if record else None)
            y, final, traces = module(x[None], own, record, fed=fed)
            return {name: y}, set(), {key + s: v for s, v in final.items()}, (
                {key + s: v for s, v in traces.items()} if traces else None)
        if name in self._probed:
            y, final, traces = module.sequence_with_states(x[None], own, steps if static else None)
            values = {name: y, **{(name, s): traces[s] for s in self._probed[name]}}
            return values, set(), {key + s: v for s, v in final.items()}, (
                {key + s: v for s, v in traces.items()} if record else None)
        then = self._then.get(name)
        extra = {"then": then} if then is not None and hands_over(module, then) else {}
        pool = self._pool_of.get(name)
        if pool is not None and not static and hands_over(module, pool):
            extra["pool"] = pool
        if static and module.takes_held_input:
            y, final, traces = module(x[None], own, record, steps=steps, **extra)
        elif static:
            y, final, traces = module(x[None].expand((steps,) + tuple(x[None].shape)), own, record)
        else:
            y, final, traces = module(x[None], own, record, **extra)
        new_state = {key + s: v for s, v in final.items()}
        return {name: y}, set(), new_state, ({key + s: v for s, v in traces.items()} if traces else None)

    def run_ports(self, ports: dict, static_ports: set, state: State, record: bool, steps: int, cache: dict,
                  batch: tuple[int, torch.Tensor]):
        """Run as a nested level: ``ports`` by Input name (``None`` for the only one), those in
        ``static_ports`` static; a port no edge feeds is a static zero (an empty sum, as in the
        reference), of batch size, dtype and device those of ``batch`` (``(B, a value)``).
        Returns :meth:`_run_level`'s results."""
        first = self._input_names[0]
        inputs = {(port if port is not None else first): v for port, v in ports.items()}
        static = {(port if port is not None else first) for port in static_ports}
        size, like = batch
        for port in self._input_names:
            if port not in inputs:
                shape = (size,) + tuple(self._shapes.outputs[self._shape_prefix + port])
                inputs[port] = torch.zeros(shape, dtype=like.dtype, device=like.device)
                static.add(port)
        return self._run_level(inputs, static, state, record, steps, cache)

    # --- back to a graph --------------------------------------------------------------
    def to_graph(self) -> Graph:
        """The graph with this module's current parameter values."""
        nodes = {}
        for name, op in self._graph.nodes.items():
            if name not in self._attrs:
                nodes[name] = op
                continue
            module = self.node_module(name)
            nodes[name] = op.replace(graph=module.to_graph()) if isinstance(module, GraphModule) else module.to_op()
        return self._graph.replace(nodes=nodes)


def _batch_of(values: Mapping, static) -> tuple[int, torch.Tensor]:
    """``(B, a value)`` of non-empty ``values``: ``[T, B, ...]``, or ``[B, ...]`` for keys in ``static``."""
    key, value = next(iter(values.items()))
    return (value.shape[0] if key in static else value.shape[1]), value


def _fed_back_positions(graph: Graph, fed_back) -> dict[str, frozenset[int]]:
    """Per node, the positions among its incoming edges (graph order, as ``edge_sources``
    lists them) of the edges in ``fed_back``."""
    positions: dict[str, list[int]] = {}
    count: dict[str, int] = {}
    for edge in graph.edges:
        node = graph.resolve(edge[1], as_source=False)[0]
        index = count.get(node, 0)
        count[node] = index + 1
        if edge in fed_back:
            positions.setdefault(node, []).append(index)
    return {node: frozenset(found) for node, found in positions.items()}
