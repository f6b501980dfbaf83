"""The ONNX function bodies of the ``ai.snnir`` custom ops (:mod:`snnir.targets.ipu.kernels`):
each fused neuron step and the surrogate ``Spike``, made of standard ops, so that any ONNX
runtime executes them (PopART binds the custom ops instead).

Invariant: a neuron function performs the step of :mod:`snnir.ir.ops.neuron` in the reference
interpreter's order, on float32 tensors.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import FunctionProto, TensorProto, helper

from snnir.targets.ipu.kernels import DOMAIN, SPIKE_OP, Kernel

OPSET = 18


class _Body:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []

    def op(self, op_type: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def scalar(self, name: str, value: float) -> str:
        return self.op("Constant", [], name, value=helper.make_tensor(name, TensorProto.FLOAT, [], [value]))


def _spike(body: _Body, u: str, kernel: Kernel) -> str:
    if kernel.spike_mode == "multi":
        body.op("Div", [u, "thr"], "u_over_thr")
        body.op("Floor", ["u_over_thr"], "floored")
        return body.op("Max", ["floored", body.scalar("zero_f", 0.0)], "spikes")
    compare = "GreaterOrEqual" if kernel.threshold_compare == "ge" else "Greater"
    body.op(compare, [u, "thr"], "fired")
    return body.op("Cast", ["fired"], "spikes", to=TensorProto.FLOAT)


def _reset(body: _Body, u: str, z: str, kernel: Kernel, out: str) -> str:
    if kernel.reset == "zero":
        body.op("Greater", [z, body.scalar(f"{out}_zero", 0.0)], f"{out}_fired")
        return body.op("Where", [f"{out}_fired", "v_reset", u], out)
    if kernel.reset == "subtract":
        body.op("Mul", [z, "thr"], f"{out}_zthr")
        return body.op("Sub", [u, f"{out}_zthr"], out)
    return body.op("Identity", [u], out)


def neuron_function(kernel: Kernel) -> FunctionProto:
    """The ONNX function defining ``kernel``'s forward step (float32 tensors)."""
    body = _Body()
    drive_in = "x"
    if kernel.has_current:
        body.op("Mul", ["a_syn", "i"], "i_decayed")
        body.op("Mul", ["g_syn", "x"], "i_input")
        body.op("Add", ["i_decayed", "i_input"], "i_driven" if kernel.fed else "i_next")
        if kernel.fed:  # the fed-back drive right after the drive
            body.op("Mul", ["g_syn", "fed"], "i_fed")
            body.op("Add", ["i_driven", "i_fed"], "i_next")
        drive_in = "i_next" if kernel.current_order == "current_first" else "i"
    body.op("Sub", ["v", "v_leak"], "v_rel")
    body.op("Mul", ["a_mem", "v_rel"], "v_rel_decayed")
    body.op("Add", ["v_leak", "v_rel_decayed"], "leaked")
    body.op("Mul", ["g_mem", drive_in], "drive")
    fed = kernel.fed and not kernel.has_current  # the fed-back drive right after the drive
    if fed:
        body.op("Mul", ["g_mem", "fed"], "fed_drive")

    def driven(base: str, out: str) -> str:  # base + drive (+ fed_drive)
        body.op("Add", [base, "drive"], f"{out}_driven" if fed else out)
        return body.op("Add", [f"{out}_driven", "fed_drive"], out) if fed else out

    if not kernel.spiking:
        driven("leaked", "v_next")
        body.op("Identity", ["v_next"], "y")
    elif kernel.step_timing == "next":
        _reset(body, "leaked", "z", kernel, "leaked_reset")
        driven("leaked_reset", "v_next")
        _spike(body, "v_next", kernel)
        body.op("Identity", ["spikes"], "y")
        body.op("Identity", ["spikes"], "z_next")
    elif kernel.step_timing == "next_after_input":
        driven("leaked", "u")
        _reset(body, "u", "z", kernel, "v_next")
        _spike(body, "v_next", kernel)
        body.op("Identity", ["spikes"], "y")
        body.op("Identity", ["spikes"], "z_next")
    else:
        driven("leaked", "u")
        _spike(body, "u", kernel)
        body.op("Identity", ["spikes"], "y")
        _reset(body, "u", "spikes", kernel, "v_next")
    return helper.make_function(
        DOMAIN, kernel.name, list(kernel.input_names), list(kernel.output_names), body.nodes,
        [helper.make_opsetid("", OPSET)], attributes=["surrogate", "slope"],
    )


def spike_function() -> FunctionProto:
    """``Spike``: y = 1 where x > 0 else 0 (its surrogate gradient is the IPU grad op's business)."""
    body = _Body()
    body.op("Greater", ["x", body.scalar("zero_f", 0.0)], "fired")
    body.op("Cast", ["fired"], "y", to=TensorProto.FLOAT)
    return helper.make_function(
        DOMAIN, SPIKE_OP, ["x"], ["y"], body.nodes, [helper.make_opsetid("", OPSET)],
        attributes=["surrogate", "slope"],
    )
