"""Every registered op: shape inference, parameter checks, immutability and errors."""

from __future__ import annotations

import numpy as np
import pytest

from snnir.errors import SnnirError
from snnir.ir import (
    IF, LI, LIF, OPS, Affine, AvgPool2d, Conv1d, Conv2d, CubaLI, CubaLIF, Delay, Flatten, Graph, I, Input,
    Linear, Output, Scale, Semantics, Subgraph, SumPool2d, Threshold, op_class, verify,
)

ONE = np.ones(())
ZERO = np.zeros(())


def examples():
    """op_type -> (op, input shape, expected output shape); one valid case per registered op."""
    chain = Graph.sequential(("i", Input((3,))), ("o", Output()))
    return {
        "Input": (Input((3, 4)), None, (3, 4)),
        "Output": (Output(), (5,), (5,)),
        "Affine": (Affine(weight=np.ones((4, 3)), bias=np.zeros(4)), (3,), (4,)),
        "Linear": (Linear(weight=np.ones((2, 3))), (3,), (2,)),
        "Scale": (Scale(scale=np.arange(3.0)), (3,), (3,)),
        "Flatten": (Flatten(start_dim=0, end_dim=-1), (2, 3, 4), (24,)),
        "Conv1d": (Conv1d(weight=np.ones((4, 2, 3)), stride=2, padding=1), (2, 9), (4, 5)),
        "Conv2d": (Conv2d(weight=np.ones((6, 1, 3, 3)), groups=2, dilation=2), (2, 8, 7), (6, 4, 3)),
        "SumPool2d": (SumPool2d(kernel_size=2), (3, 5, 4), (3, 2, 2)),
        "AvgPool2d": (AvgPool2d(kernel_size=3, stride=1, padding=1), (3, 5, 4), (3, 5, 4)),
        "Delay": (Delay(delay=np.array([0.0, 1e-4, 2e-4])), (3,), (3,)),
        "Threshold": (Threshold(threshold=ONE), (2, 2), (2, 2)),
        "I": (I(r=np.ones(3)), (3,), (3,)),
        "IF": (IF(r=ONE, v_threshold=ONE), (3,), (3,)),
        "LI": (LI(tau=np.full(3, 0.01), r=ONE, v_leak=ZERO), (3,), (3,)),
        "LIF": (LIF(tau=ONE, r=ONE, v_leak=ZERO, v_threshold=np.ones(3)), (3,), (3,)),
        "CubaLI": (CubaLI(tau_syn=ONE, tau_mem=ONE, r=ONE, v_leak=ZERO), (2, 2), (2, 2)),
        "CubaLIF": (CubaLIF(tau_syn=ONE, tau_mem=ONE, r=ONE, v_leak=ZERO, v_threshold=ONE), (4,), (4,)),
        "NIRGraph": (Subgraph(chain), (3,), (3,)),
    }


def test_every_registered_standard_op_has_an_example():
    assert set(examples()) >= {k for k in OPS if not k.startswith("snnir.")}


@pytest.mark.parametrize("op_type", sorted(examples()))
def test_shape_inference(op_type):
    op, in_shape, out_shape = examples()[op_type]
    assert op_class(op_type) is type(op)
    if isinstance(op, Subgraph):
        graph = Graph.sequential(("x", Input(in_shape)), ("g", op), ("y", Output()))
        assert verify(graph).shapes.out("g") == out_shape
        return
    assert op.infer_shape(in_shape, "n") == out_shape


@pytest.mark.parametrize("op_type", sorted(examples()))
def test_params_are_read_only_and_replace_returns_new(op_type):
    op = examples()[op_type][0]
    for name, value in op.params().items():
        assert not value.flags.writeable
        with pytest.raises(ValueError):
            value[...] = 0
        changed = op.replace(**{name: value + 1})
        assert changed is not op and not np.array_equal(getattr(changed, name), value)
        assert np.array_equal(getattr(op, name), value)
    assert op == examples()[op_type][0]
    with pytest.raises(AttributeError):
        op.metadata = {}


def test_params_copy_the_callers_array_and_keep_dtype():
    weight = np.ones((2, 3), dtype=np.float32)
    op = Linear(weight=weight)
    weight[0, 0] = 7
    assert op.weight[0, 0] == 1 and op.weight.dtype == np.float32


@pytest.mark.parametrize(
    "op, in_shape, fragment",
    [
        (Affine(weight=np.ones((4, 3)), bias=np.zeros(4)), (2,), "expects input [3]"),
        (Affine(weight=np.ones((4, 3)), bias=np.zeros(5)), (3,), "bias has shape [5]"),
        (Affine(weight=np.ones(3), bias=np.zeros(3)), (3,), "must be 2-D"),
        (Linear(weight=np.ones((2, 3))), (3, 1), "expects input [3]"),
        (Scale(scale=np.ones(4)), (3,), "does not fit input shape [3]"),
        (Flatten(start_dim=2), (3,), "do not fit an input of rank 1"),
        (Conv1d(weight=np.ones((4, 2, 3))), (3, 9), "does not fit input channels 3"),
        (Conv1d(weight=np.ones((4, 2, 3))), (2, 9, 9), "expects input [C, 1 spatial dims]"),
        (Conv1d(weight=np.ones((4, 2, 3))), (2, 2), "output would be empty"),
        (Conv2d(weight=np.ones((3, 1, 3, 3)), groups=2), (2, 5, 5), "groups=2"),
        (Conv2d(weight=np.ones((4, 2, 3))), (2, 5, 5), "must be 4-D and non-empty"),
        (Conv2d(weight=np.ones((4, 2, 3, 3)), bias=np.ones(3)), (2, 5, 5), "bias has shape [3]"),
        (Conv2d(weight=np.ones((4, 2, 3, 3)), input_shape=(6, 6)), (2, 5, 5), "declares input_shape"),
        (Conv2d(weight=np.ones((4, 2, 2, 2)), padding="same"), (2, 5, 5), "odd effective kernel"),
        (SumPool2d(kernel_size=2), (3, 4), "expects input [C, H, W]"),
        (AvgPool2d(kernel_size=5), (3, 4, 4), "output would be empty"),
        (Delay(delay=np.array(1.5e-4)), (1,), "not a whole number of steps"),
        (Delay(delay=np.array(-1e-4)), (1,), "between 0 and"),
        (LIF(tau=np.ones(4), r=ONE, v_leak=ZERO, v_threshold=ONE), (3,), "tau has shape [4]"),
        (IF(r=ONE, v_threshold=ONE), None, "has no input"),
        (Output(), None, "no input edge"),
        (Input((3,)), (4,), "expects shape [3]"),
        (Threshold(threshold=np.ones((2, 3))), (3, 2), "does not fit"),
    ],
)
def test_shape_errors_name_the_node(op, in_shape, fragment):
    with pytest.raises(SnnirError) as info:
        op.infer_shape(in_shape, "bad_node")
    assert info.value.node == "bad_node"
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: Linear(weight=np.array(["a"])), "must be numeric"),
        (lambda: Linear(weight=np.ones(2) * 1j), "must be real"),
        (lambda: Linear(weight=[[1, 2], [3]]), "not an array"),
        (lambda: Input((0, 3)), "must be positive"),
        (lambda: Input("abc"), "list of positive integers"),
        (lambda: Conv2d(weight=np.ones((1, 1, 3, 3)), padding="full"), "'same', 'valid'"),
        (lambda: Conv2d(weight=np.ones((1, 1, 3, 3)), stride=0), "stride must be 2 integers >= 1"),
        (lambda: SumPool2d(kernel_size=(1, 2, 3)), "kernel_size must be 2 integers"),
        (lambda: Flatten(start_dim=1.5), "must be an integer"),
        (lambda: LIF(tau=ONE, r=ONE, v_leak=ZERO, v_threshold=ONE, sem="exp"), "must be a Semantics"),
        (
            lambda: LIF(tau=ONE, r=ONE, v_leak=ZERO, v_threshold=ONE, sem=Semantics(spike_mode="multi")),
            "needs threshold_compare 'ge'",
        ),
        (lambda: Linear(weight=np.ones((1, 1)), trainable=("bias",)), "no parameters ['bias']"),
        (lambda: Subgraph(graph="g"), "must be a Graph"),
        (lambda: Semantics(dt=0), "dt must be a finite positive number"),
        (lambda: Semantics(dt=float("nan")), "dt must be a finite positive number"),
        (lambda: Semantics(dt=10**400), "dt must be a finite positive number, got 1000000"),
        (lambda: Semantics(reset="half"), "reset must be one of"),
        (lambda: Semantics(gain_held=1), "gain_held must be True or False"),
        (lambda: Semantics.from_dict({"dt": 1.0, "colour": "red"}), "unknown semantics fields ['colour']"),
        (lambda: op_class("Bogus", "n"), "unknown op type 'Bogus'"),
    ],
)
def test_construction_errors(make, fragment):
    with pytest.raises(SnnirError) as info:
        make()
    assert fragment in str(info.value)


def test_neuron_state_names_follow_semantics():
    lif = LIF(tau=ONE, r=ONE, v_leak=ZERO, v_threshold=ONE)
    assert lif.state_names == ("v",)
    assert lif.replace(sem=Semantics(reset_timing="next")).state_names == ("v", "z")
    cuba = CubaLIF(tau_syn=ONE, tau_mem=ONE, r=ONE, v_leak=ZERO, v_threshold=ONE, sem=Semantics(reset_timing="next"))
    assert cuba.state_names == ("i", "v", "z")
    assert LI(tau=ONE, r=ONE, v_leak=ZERO, sem=Semantics(reset_timing="next")).state_names == ("v",)
    assert Delay(delay=ONE).state_names == ("buffer",)
    assert not Affine(weight=np.ones((1, 1)), bias=ZERO).stateful and lif.stateful


def test_semantics_accept_numpy_scalars_for_dt():
    assert Semantics(dt=np.float32(0.5)).dt == 0.5 and Semantics(dt=np.int64(2)).dt == 2.0
    assert isinstance(Semantics(dt=np.float32(0.5)).dt, float)
    with pytest.raises(SnnirError):
        Semantics(dt=True)


def test_semantics_round_trip_and_with():
    sem = Semantics(dt=1e-3, discretisation="exp", reset="subtract")
    assert Semantics.from_dict(sem.to_dict()) == sem
    assert sem.with_(reset=None, dt=2e-3) == Semantics(dt=2e-3, discretisation="exp", reset="subtract")
    assert "gain_held" not in sem.to_dict()  # written only when set: other files read as before
    held = sem.with_(gain_held=True)
    assert Semantics.from_dict(held.to_dict()) == held and held.to_dict()["gain_held"] is True


def test_op_equality_compares_dtype_and_values():
    a = Linear(weight=np.ones((2, 2)))
    assert a == Linear(weight=np.ones((2, 2)))
    assert a != Linear(weight=np.ones((2, 2), dtype=np.float32))
    assert a != Linear(weight=np.eye(2))
    assert a != Scale(scale=np.ones((2, 2)))


@pytest.mark.parametrize("op_type", sorted(k for k, (op, _, _) in examples().items() if op.params()))
def test_non_finite_parameters_are_refused_naming_the_node(op_type):
    op, in_shape, _ = examples()[op_type]
    for name, value in op.params().items():
        bad = np.array(value, dtype=np.float64)
        bad.reshape(-1)[0] = np.nan
        graph = Graph.sequential(("x", Input(in_shape)), ("node", op.replace(**{name: bad})), ("y", Output()))
        with pytest.raises(SnnirError, match=f"parameter {name} has 1 non-finite") as info:
            verify(graph)
        assert info.value.node == "node"
