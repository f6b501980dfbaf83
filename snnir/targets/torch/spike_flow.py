"""Where spikes flow in a graph module's level, decided once from the graph when it is built.

- :func:`~snnir.ir.spikes.binary_values` (from the IR): the values that are exactly 0/1,
  so that a Linear fed one keeps its input as bools (``spike_linear``).
- :func:`plan_handovers`: the neurons that apply the next layer in their own scan
  (:mod:`~snnir.targets.torch.neuron_linear`). Where a node's output is a single-spike
  neuron's spikes and its only consumer (fed by nothing else) starts with a Linear or
  Affine layer, both outside any loop, the neuron's level records the layer
  (``level._then[neuron] = layer module``) and the layer's level records that its input
  already is its output (``level._given[layer] = neuron module``). The neuron may sit
  inside an expansion (a fused layer-neuron node) or a nested graph, as long as it alone
  feeds that node's single output; the layer likewise alone takes that node's single input.
- :func:`plan_probes`: a ``snnir.StateProbe`` takes its neuron's state, not its output.
- :func:`share_tied_parameters`: the copies of a tie (``Graph.ties``) use one set of parameters.
"""

from __future__ import annotations

from torch import nn

from snnir.ir.graph import Graph
from snnir.ir.ops.probe import probe_sources
from snnir.ir.spikes import emits_spikes
from snnir.targets.torch.modules import AffineModule
from snnir.targets.torch.neuron_module import NeuronModule


def hands_over(neuron: nn.Module, layer: nn.Module) -> bool:
    """A neuron applies its consumer layer only while no forward hook watches either (a hook
    expects its module to be called: the tracer's, for one)."""
    hooks = nn.modules.module
    return not (
        neuron._forward_hooks or neuron._forward_pre_hooks or layer._forward_hooks or layer._forward_pre_hooks
        or hooks._global_forward_hooks or hooks._global_forward_pre_hooks
    )


def plan_handovers(level) -> None:
    """Fill ``_then`` and ``_given`` of ``level`` and of the levels inside its nodes."""
    consumers = _consumers(level)
    for name in level._attrs:
        uses = consumers.get(name, [])
        if len(uses) != 1 or uses[0][1] or _in_loop(level, name):
            continue
        consumer = uses[0][0]
        if consumer not in level._attrs or len(level._sources[consumer]) != 1 or _in_loop(level, consumer):
            continue
        neuron, layer = _spike_neuron(level, name), _first_layer(level, consumer)
        if neuron is not None and layer is not None:
            neuron[0]._then[neuron[1]] = layer[0].node_module(layer[1])
            layer[0]._given[layer[1]] = neuron[0].node_module(neuron[1])


def _consumers(level) -> dict[str, list[tuple[str, bool]]]:
    """Source key -> (consuming node, delayed) per edge of ``level``."""
    found: dict[str, list[tuple[str, bool]]] = {}
    for node, feeds in level._sources.items():
        for key, _, delayed in feeds:
            found.setdefault(key, []).append((node, delayed))
    return found


def _in_loop(level, name: str) -> bool:
    return any(recurrent and name in members for members, recurrent in level._plan)


def _inner(level, name: str):
    """The graph module inside node ``name`` (its expansion or nested graph), or None."""
    from snnir.targets.torch.expanded import ExpandedModule
    from snnir.targets.torch.graph_module import GraphModule

    module = level.node_module(name)
    inner = module.expansion if isinstance(module, ExpandedModule) else module
    return inner if isinstance(inner, GraphModule) else None


def _spike_neuron(level, name: str):
    """(level, node) of the single-spike neuron whose spikes are node ``name``'s output, or None."""
    module = level.node_module(name)
    if isinstance(module, NeuronModule):
        return (level, name) if module.fast and emits_spikes(module.source_op) else None
    inner = _inner(level, name)
    if inner is None or len(inner._graph.outputs) != 1:
        return None
    feeds = inner._sources.get(inner._graph.outputs[0], [])
    if len(feeds) != 1:
        return None
    key, _, delayed = feeds[0]
    if delayed or key not in inner._attrs or len(_consumers(inner).get(key, [])) != 1 or _in_loop(inner, key):
        return None
    return _spike_neuron(inner, key)


def _first_layer(level, name: str):
    """(level, node) of the Linear or Affine layer that alone takes node ``name``'s input, or None."""
    if isinstance(level.node_module(name), AffineModule):
        return level, name
    inner = _inner(level, name)
    if inner is None or len(inner._graph.inputs) != 1:
        return None
    uses = _consumers(inner).get(inner._graph.inputs[0], [])
    if len(uses) != 1 or uses[0][1]:
        return None
    first = uses[0][0]
    if first not in inner._attrs or len(inner._sources[first]) != 1 or _in_loop(inner, first):
        return None
    return _first_layer(inner, first)


def plan_probes(level, graph: Graph) -> dict[str, set[str]]:
    """Neuron node -> the states probes of ``level`` read. Each probe's source becomes the key
    ``(neuron, state)``, which the neuron's run fills with that state per step; a probed neuron
    runs by its step loop (its states in autograd), never in a native feedback loop. Call after
    :func:`plan_handovers` (a probe is a consumer: its neuron hands no layer over)."""
    probed: dict[str, set[str]] = {}
    for probe, neuron in probe_sources(graph, level._prefix).items():
        state = graph.nodes[probe].state
        probed.setdefault(neuron, set()).add(state)
        level._sources[probe] = [((neuron, state), None, False)]
    level._loops = {members: loop for members, loop in level._loops.items() if loop.neuron not in probed}
    return probed


def share_tied_parameters(level, graph: Graph) -> None:
    """Each tied copy's module (lowered from an op equal to its group's first) uses the first's
    parameter objects: training updates all copies and their gradients accumulate into one."""
    for group in graph.ties:
        owner = level.node_module(group[0])
        for copy in group[1:]:
            for path, parameter in owner.named_parameters():
                *parents, leaf = path.split(".")
                target = level.node_module(copy)
                for part in parents:
                    target = getattr(target, part)
                target.register_parameter(leaf, parameter)
