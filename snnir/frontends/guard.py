"""The tracer's guard: a traced graph must compute what the model returned.

After tracing, a float64 copy of the model runs once more on the sample input
and the reference interpreter runs the graph on it; output ``k`` of the graph
(``output``, ``output_1``...) must equal the ``k``-th tensor ``forward``
returned: the whole sequence ``[T, B, ...]``, or its last step when
``forward`` returns one step. A difference is a SnnirError naming the output.

Both sides run in float64 on purpose. The model's float32 membranes differ
from the graph's float64 ones by float32 rounding (~1e-7 relative), so a spike
flips wherever a membrane lands that close to its threshold, which a large
input makes likely. In float64 the two differ only by the order of
operations (~1e-16 relative: ``1 - (1 - beta)`` is not ``beta``), so values
must agree to 1e-8 (relative to the output's largest magnitude) and spikes
exactly, unless some snnTorch neuron's membrane came within 1e-9 of its
threshold (an exact tie, such as an input equal to the threshold). There a
spike may flip by rounding alone, so a difference is reported as a warning
that the guard could not decide, not as an error. A model that cannot run in
float64 is left unchecked, with a warning saying why.

Cost: one more forward pass of the model and one reference run on the
sample input (small by design), plus a float64 copy of the parameters.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.graph import Graph

TIE = 1e-9  # a membrane this close to its threshold (relative) may spike either way by rounding
TOLERANCE = 1e-8  # float64 values agree to this, relative to the output's largest magnitude


def check_trace(graph: Graph, twin: Any, sample: Any, steps: int, indexed: bool,
                flatten: Callable[[Any], list]) -> None:
    """Raise SnnirError naming the first graph output that differs from the model's value.

    ``twin``: an eval-mode copy of the model, which this runs in float64;
    ``steps``: how many time steps one forward call makes (a forward that
    loops over a static input makes several steps of the same input);
    ``indexed``: the sample is a sequence ``[T, B, ...]`` forward indexes by step.
    The sample is reshaped to the graph's Input (which may be the input unsqueezed)."""
    from snnir.targets.reference import run

    calls = 2 if steps == 1 and not indexed else 1  # a step model: its second call carries the first's state
    returned, ties = _run_float64(twin, sample, calls)
    if returned is None:
        return
    x = sample.detach().cpu().double().numpy() if sample.is_floating_point() else sample.detach().cpu().numpy()
    input_shape = tuple(graph.nodes[graph.inputs[0]].shape)
    if indexed:
        sequence = x.reshape(x.shape[:2] + input_shape)
    else:
        sequence = np.broadcast_to(x.reshape(x.shape[:1] + input_shape), (steps * calls, x.shape[0]) + input_shape)
    got = run(graph, sequence)
    for call, result in enumerate(returned):
        _compare(graph, got, [v for v in flatten(result) if hasattr(v, "detach")], ties, call, calls)


def _compare(graph: Graph, got: dict, values: list, ties: list[str], call: int, calls: int) -> None:
    """Raise (or, where a membrane tied with its threshold, warn) at the first graph output whose
    step ``call`` (of ``calls`` one-step calls; the last step where ``calls`` is 1) differs from
    the ``values`` that call of ``forward`` returned."""
    second = (" at its second call (one step each; forward keeps state between calls that one traced call "
              "does not show: a state made at the first call only, a reset every few calls)") if call else ""
    for name, value in zip(graph.outputs, values):
        expected = value.detach().cpu().double().numpy()
        actual = got[name]
        if calls > 1 and expected.shape == actual.shape[1:]:
            actual = actual[call]
        elif calls > 1 and expected.shape == (1,) + actual.shape[1:]:
            actual = actual[call : call + 1]
        elif expected.shape != actual.shape:
            actual = actual[-1]
        if expected.shape != actual.shape:
            raise SnnirError(
                f"the traced graph gives shape {list(got[name].shape)} where the model returns "
                f"{list(expected.shape)}; the model's output is not a per-step value snnir can trace", name
            )
        bound = TOLERANCE * max(1.0, float(np.abs(expected).max(initial=0.0)))
        wrong = np.argwhere(~(np.abs(actual - expected) <= bound))
        if not wrong.size:
            continue
        at = tuple(wrong[0])
        detail = (f"{len(wrong)} of {expected.size} values differ, the first at {list(map(int, at))}: "
                  f"{actual[at]!r} where the model gives {expected[at]!r}")
        if ties:
            warnings.warn(
                f"snnir.trace could not check output '{name}': {detail}, but the sample input puts the "
                f"membrane of '{ties[0]}' on its threshold, where rounding alone may flip a spike; "
                "trace with a random sample input to check it", stacklevel=4)
            continue
        raise SnnirError(f"the traced graph does not compute what the model returns{second}: {detail}", name)


def _run_float64(twin: Any, sample: Any, calls: int) -> tuple[Any, list[str]]:
    """The model's results of ``calls`` consecutive calls on the sample in float64 from zero state
    (None where it cannot run so), and the snnTorch neurons whose membranes tied with their thresholds."""
    import torch

    ties: list[str] = []
    twin = in_float64(twin, lambda path, module: module.register_forward_hook(_tie_watch(path, ties)))
    x = sample.detach().clone()
    x = x.double() if x.is_floating_point() else x
    try:
        with torch.no_grad():
            return [twin(x) for _ in range(calls)], ties
    except Exception as exc:  # noqa: BLE001 - the guard is a check: say why it could not run
        warnings.warn(f"snnir.trace could not check the traced graph: the model does not run in float64 "
                      f"({type(exc).__name__}: {exc})", stacklevel=3)
        return None, []


def runs_as_parts(module: Any) -> bool:
    """A nested level of a compiled snnir module (a subgraph, a fused node): it has no forward of
    its own and is never called, its parts are, so a hook on it would never run (and the torch
    target refuses one)."""
    import torch

    return callable(getattr(module, "run_ports", None)) and type(module).forward is torch.nn.Module.forward


def in_float64(model: Any, watch: Callable[[str, Any], Any] | None = None) -> Any:
    """``model.double()`` with its snnTorch neurons reset to zero state and giving float64
    spikes (snnTorch's are float32, which would meet float64 weights in functional calls);
    ``watch(layer, neuron)`` may hook each neuron first."""
    import torch

    from snnir.frontends.snntorch_map import is_snntorch_neuron

    def to_float64(_module: Any, _args: Any, output: Any) -> Any:
        if isinstance(output, tuple):
            return tuple(o.double() if torch.is_tensor(o) and o.is_floating_point() else o for o in output)
        return output.double() if torch.is_tensor(output) and output.is_floating_point() else output

    model = model.double()
    for path, module in model.named_modules():
        if runs_as_parts(module):
            continue
        module.register_forward_pre_hook(
            lambda _m, args: tuple(a.double() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)
        )
        if is_snntorch_neuron(module):
            if callable(getattr(module, "reset_mem", None)):
                module.reset_mem()  # a state left over from earlier use is not part of the graph
            if watch is not None:
                watch(path.replace(".", "_") or "model", module)
            module.register_forward_hook(to_float64)
    return model


def _tie_watch(layer: str, ties: list[str]) -> Callable:
    import torch

    def hook(module: Any, _args: Any, output: Any) -> None:
        mem, thr = getattr(module, "mem", None), getattr(module, "threshold", None)
        if not torch.is_tensor(mem) or thr is None or layer in ties:
            return
        thr = torch.as_tensor(thr, dtype=mem.dtype)
        candidates = [mem]
        if not getattr(module, "reset_delay", True) and module.reset_mechanism == "subtract":
            spikes = output[0] if isinstance(output, tuple) else output
            candidates.append(mem + (spikes - getattr(module, "reset", 0)) * thr)
        bound = TIE * torch.clamp(thr.abs(), min=1.0)
        if any(bool(((c - thr).abs() <= bound).any()) for c in candidates):
            ties.append(layer)

    return hook
