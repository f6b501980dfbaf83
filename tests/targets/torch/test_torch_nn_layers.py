"""snnir.nn layers: exact reference semantics, and ``to_op`` gives the op back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import snnir
from snnir import nn as snn
from snnir.ir import Graph, Input, Output

LAYERS = {
    "I": lambda: snn.I(r=np.array([20.0, 40.0, 60.0]), dt=1e-3),
    "IF": lambda: snn.IF(r=40.0, v_threshold=0.5, dt=1e-3, reset="subtract"),
    "LI": lambda: snn.LI(tau=5e-3, r=2.0, v_leak=0.1, dt=1e-3, discretisation="exp"),
    "LIF": lambda: snn.LIF(tau=torch.tensor([5e-3, 8e-3, 2e-2]), v_threshold=0.2, dt=1e-3, trainable=("tau",)),
    "CubaLIF": lambda: snn.CubaLIF(tau_syn=4e-3, tau_mem=8e-3, v_threshold=0.1, dt=1e-3, reset_timing="next",
                                   current_order="voltage_first"),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_reference(name):
    layer = LAYERS[name]().double()
    op = layer.to_op()
    assert op.op_type == name
    graph = Graph.sequential(("in", Input((3,))), ("cell", op), ("out", Output()))
    x = np.random.default_rng(0).normal(0.5, 1.0, (20, 2, 3))
    expected = snnir.run(graph, x)["out"]
    with torch.no_grad():
        seq = layer.sequence(torch.as_tensor(x))
        state, steps = None, []
        for t in range(20):
            y, state = layer(torch.as_tensor(x[t]), state)
            steps.append(y)
    np.testing.assert_allclose(seq.numpy(), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(torch.stack(steps).numpy(), expected, rtol=1e-9, atol=1e-12)


def test_to_op_carries_trained_values_and_trainable():
    layer = LAYERS["LIF"]()
    assert [n for n, _ in layer.named_parameters()] == ["tau"]
    with torch.no_grad():
        layer.tau.mul_(2)
    op = layer.to_op()
    assert op.trainable == ("tau",)
    np.testing.assert_allclose(op.tau, [1e-2, 1.6e-2, 4e-2], rtol=1e-6)


def test_bad_semantics_is_a_snnir_error():
    with pytest.raises(snnir.SnnirError, match="unknown semantics fields"):
        snn.LIF(tau=1e-2, resett="zero")
