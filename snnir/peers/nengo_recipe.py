"""nengo's NIR import, as the NIR paper's single-LIF experiment did it, and its simulation.

nengo publishes no NIR importer (neither nengo 4.1 nor a ``nengo-nir`` package). The NIR paper's
nengo runs used a ``nir_to_nengo`` function written in its notebooks; the one for the single-LIF
experiment is ``paper/01_lif/lif_sim_nengo.ipynb`` in neuromorphs/NIR. :func:`build` follows
that recipe (written here from its facts, not copied):

- ``Input`` and ``Output`` become pass-through ``nengo.Node``s of the first dimension of their
  shape.
- ``LIF`` asserts ``r == 1`` and ``v_leak == 0`` and becomes an ``Ensemble`` driven through its
  ``neurons``: ``nengo.LIF(tau_rc=tau[0], tau_ref=0)``, initial voltage 0, ``gain = 1 /
  v_threshold``, ``bias = 0``. Every neuron gets the first neuron's ``tau``.
- ``LI`` becomes a pass-through ``Node``; each connection into it carries ``Lowpass(tau[0])``
  (its ``r`` and ``v_leak`` are not read).
- ``Affine`` becomes a ``Node`` computing ``weight @ x + bias``.
- Any other node is skipped; an edge naming it then fails (``KeyError``), as does an edge whose
  sizes disagree.
- Every other connection has no synapse. The input goes in through a ``PresentInput`` node
  (``presentation_time=dt``, no synapse); ``nengo.Simulator(model, dt)`` runs it (the paper used
  ``dt = 1e-4``; nengo's default is ``1e-3``), and the output node is probed unfiltered.

nengo runs one sample at a time, in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: nengo.Simulator's default step
NENGO_DT = 1e-3


def build(graph: Any) -> tuple[Any, dict[str, Any]]:
    """The nengo network the recipe builds from ``graph`` (a ``nir.NIRGraph``), and each NIR node's
    nengo object; raises as the recipe does (AssertionError, KeyError, ZeroDivisionError)."""
    import nengo
    import nir

    objects: dict[str, Any] = {}
    synapses: dict[Any, Any] = {}
    model = nengo.Network()
    with model:
        for name, node in graph.nodes.items():
            if isinstance(node, nir.Input):
                objects[name] = nengo.Node(None, size_in=int(node.input_type["input"][0]), label=name)
            elif isinstance(node, nir.Output):
                objects[name] = nengo.Node(None, size_in=int(node.output_type["output"][0]), label=name)
            elif isinstance(node, nir.LIF):
                assert np.all(node.r == 1) and np.all(node.v_leak == 0)
                n = node.tau.flatten().shape[0]
                neuron = nengo.LIF(tau_rc=node.tau[0], tau_ref=0,
                                   initial_state={"voltage": nengo.dists.Choice([0])})
                ensemble = nengo.Ensemble(n_neurons=n, dimensions=1, neuron_type=neuron,
                                          gain=np.ones(n) / node.v_threshold, bias=np.zeros(n), label=name)
                objects[name] = ensemble.neurons
            elif isinstance(node, nir.LI):
                filtered = nengo.Node(None, size_in=node.tau.flatten().shape[0], label=name)
                synapses[filtered] = nengo.synapses.Lowpass(node.tau[0])
                objects[name] = filtered
            elif isinstance(node, nir.Affine):
                objects[name] = nengo.Node(lambda t, x, node=node: node.weight @ x + node.bias,
                                           size_in=node.weight.shape[1], size_out=node.weight.shape[0], label=name)
        for pre, post in graph.edges:
            source, target = objects[pre], objects[post]
            if source.size_out != target.size_in:
                raise ZeroDivisionError(f"the recipe stops (1 / 0) on the edge {pre} -> {post}: sizes "
                                        f"{source.size_out} and {target.size_in}")
            nengo.Connection(source, target, synapse=synapses.get(target))
    return model, objects


def simulate(graph: Any, x: np.ndarray, dt: float) -> np.ndarray:
    """Build ``graph`` (a ``nir.NIRGraph``) afresh for each sample of ``x`` (``[T, B, n]``) and run
    it: the probed output ``[T, B, m]`` (nengo's spikes are ``1 / dt`` high)."""
    import nengo

    ends = {type(node).__name__: name for name, node in graph.nodes.items()}
    outs = []
    for b in range(x.shape[1]):
        model, objects = build(graph)
        with model:
            stimulus = nengo.Node(nengo.processes.PresentInput(np.asarray(x[:, b], np.float64), presentation_time=dt))
            nengo.Connection(stimulus, objects[ends["Input"]], synapse=None)
            probe = nengo.Probe(objects[ends["Output"]])
        with nengo.Simulator(model, dt=dt, progress_bar=False) as sim:
            sim.run_steps(x.shape[0])
            outs.append(np.array(sim.data[probe]))
    return np.stack(outs, axis=1)
