"""snnTorch neurons as snnir ops, exactly (read from snnTorch 1.0's ``_neurons``).

snnTorch steps (``reset`` = spike of the previous step, i.e. ``mem_prev > thr``):

- ``Leaky``:    mem = beta mem + x, the reset applied to ``beta mem``-side
  before the input ("subtract": ``- reset thr``; "zero": ``(1 - reset) mem``).
  This is our Euler LIF with ``reset_timing="next"``, ``tau = dt/(1-beta)``,
  ``r = tau/dt`` (so the input gain ``dt/tau * r`` is 1).
- ``Synaptic``: syn = alpha syn + x; mem = beta mem + syn: CubaLIF with
  ``current_order="current_first"``, ``w_in = tau_syn/dt``, ``r = tau_mem/dt``.
- ``RLeaky`` / ``RSynaptic``: as Leaky / Synaptic with ``recurrent(spk_prev)``
  added to the input: an edge neuron -> recurrent op -> neuron (the schedule
  delays the neuron's edge by one step; zero spikes at t=0, so a recurrent
  Linear adds its bias from the first step, as snnTorch does).
- ``Lapicque``: mem = (1 - dt/(RC)) mem + dt/(RC) R x: LIF with ``tau = RC``,
  ``r = R``, ``dt = time_step``.
- ``Alpha`` (reset "none" only): two LIs (excitatory, inhibitory) whose
  outputs sum, scaled by ``tau_alpha``, into a Threshold.

"zero" with the delay in ``Synaptic``, ``RLeaky``, ``RSynaptic`` and ``Lapicque``
zeroes the whole new membrane, input (and recurrent input) included:
``mem = (beta mem + syn) (1 - reset)``; ``syn`` itself is never reset
(``_base_state_reset_zero`` returns 0 for it). That is our
``reset_timing="next_after_input"``.

``reset_delay=False`` with "zero" is our ``reset_timing="same"`` (exact for
thresholds >= 0, where snnTorch's ``do_reset`` correction never sees a
post-reset membrane above threshold). "subtract" with ``reset_delay=False``
tests the spike on the membrane minus the *previous* step's reset once more:

    p = (m_prev > thr);  u = beta m_prev + x;  s = (u - p thr > thr);  m = u - s thr

No single neuron does this, so it becomes graph structure (see
:func:`_recheck_fragment`). Refused as inexact, with the reason: graded
spikes, inhibition, state quantisation, SLSTM.
``RSynaptic`` ignores ``reset_delay`` in snnTorch 1.0 (its correction writes
to a local variable), so it is always traced as delayed.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import numpy as np

from snnir.errors import SnnirError, shown, warn
from snnir.frontends.fragment import Fragment
from snnir.ir.ops import IF, LI, LIF, CubaLIF, Scale, Threshold
from snnir.ir.semantics import DEFAULT_DT, Semantics, euler_tau

SUPPORTED = ("Leaky", "Synaptic", "RLeaky", "RSynaptic", "Lapicque", "Alpha")


def is_snntorch_neuron(module: Any) -> bool:
    try:
        from snntorch._neurons.neurons import SpikingNeuron
    except ImportError:
        return False
    return isinstance(module, SpikingNeuron)


@contextlib.contextmanager
def neuron_registry_of(model: Any) -> Iterator[None]:
    """snnTorch's class-level list of every neuron made (``SpikingNeuron.instances``, which
    ``utils.reset`` and ``Leaky.reset_hidden`` walk) holding only ``model``'s neurons while this
    lasts: a reset inside the traced ``forward`` of a copy resets the copy's neurons, as it
    resets the model's own when the model runs, and leaves the model's untouched."""
    if "snntorch" not in sys.modules:
        yield
        return
    from snntorch._neurons.neurons import SpikingNeuron

    classes, stack = [], [SpikingNeuron]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if "instances" in vars(cls):
            classes.append(cls)
    saved = {cls: vars(cls)["instances"] for cls in classes}
    own = [m for m in model.modules() if isinstance(m, SpikingNeuron)]
    try:
        for cls in classes:
            cls.instances = list(own)
        yield
    finally:
        for cls, instances in saved.items():
            cls.instances = instances


def _array(module: Any, name: str) -> np.ndarray:
    return getattr(module, name).detach().cpu().double().numpy().copy()


def _learnable(module: Any, name: str) -> bool:
    value = getattr(module, name, None)
    return bool(getattr(value, "requires_grad", False)) and name in dict(module.named_parameters(recurse=False))


def _warn_untrained(module: Any, layer: str, names: tuple[str, ...], structure: str) -> None:
    """Warn that ``module``'s trained parameters among ``names`` are constants of the graph: each
    enters several of the nodes that ``structure`` is traced as, and no node trains it."""
    trained = [name for name in names if _learnable(module, name)]
    if trained:
        listed = ", ".join(f"learn_{name}" for name in trained)
        warn(f"layer '{shown(layer)}': {listed}: {structure} is traced as several nodes that each hold the value; "
             "compiled modules keep it constant, so training them differs from snnTorch's")


def _refuse(layer: str, what: str) -> SnnirError:
    return SnnirError(f"cannot be traced exactly: {what}", layer)


def _check_common(module: Any, layer: str) -> None:
    if getattr(module, "inhibition", False):
        raise _refuse(layer, "inhibition=True (winner-take-all spikes have no NIR equivalent); "
                             "use inhibition=False to export it")
    if getattr(module, "state_quant", False):
        raise _refuse(layer, "state_quant (quantised states have no NIR equivalent); "
                             "use state_quant=False to export it")
    factor = getattr(module, "graded_spikes_factor", None)
    if factor is not None and not np.all(factor.detach().cpu().numpy() == 1):
        raise _refuse(layer, "graded spikes (graded_spikes_factor != 1; NIR spikes are 0 or 1); use "
                             "graded_spikes_factor=1 and scale the next layer's weights by the factor instead")
    _check_spike_function(module, layer)


#: where a custom ``spike_grad``'s forward is probed: ``mem - threshold`` below, at and above 0
_PROBES = (-1.0, -1e-3, 0.0, 1e-3, 1.0)


def _check_spike_function(module: Any, layer: str) -> None:
    """A ``spike_grad`` not snnTorch's own must fire as snnTorch's do, 1 where ``mem - threshold``
    is above 0 and 0 elsewhere (at 0 too): the graph's neurons spike so. One firing at 0 (``>=``)
    or giving values other than 0 and 1 is refused; one that cannot run on a probe is left to
    the tracer's guard."""
    import torch

    fn = getattr(module, "spike_grad", None)
    if fn is None or getattr(fn, "__module__", None) == "snntorch.surrogate":
        return
    probe = torch.tensor(_PROBES)
    try:
        with torch.no_grad():
            fired = torch.as_tensor(fn(probe.clone())).detach().cpu().double().reshape(-1).tolist()
    except Exception:  # noqa: BLE001 - the guard runs the model itself and says what differs
        return
    if fired != [0.0, 0.0, 0.0, 1.0, 1.0]:
        shown_values = ", ".join(f"{v:g} -> {f:g}" for v, f in zip(_PROBES, fired))
        raise _refuse(layer, f"its spike_grad's forward gives {shown_values} (mem - threshold -> spike), "
                             "where NIR neurons spike 1 above the threshold and 0 at or below it, as "
                             "snnTorch's own surrogates do")


def _decay(value: np.ndarray, layer: str, name: str) -> np.ndarray:
    """snnTorch clamps decays to [0, 1]; 1 (no leak) has no finite tau."""
    value = np.clip(value, 0.0, 1.0)
    if np.any(value == 1.0):
        raise _refuse(layer, f"{name} = 1 (no leak) has no finite time constant here")
    return value


def _time_constant(module: Any, name: str, layer: str, dt: float) -> np.ndarray:
    """``dt / (1 - decay)`` for snnTorch's decay ``name`` clamped to [0, 1], a decay of exactly 1
    (no leak, an IF neuron among leaky ones) as :data:`~snnir.ir.semantics.NO_LEAK_STEPS` steps.
    A trained decay at 1 is refused: snnTorch trains it through the clamp, no time constant does."""
    decay = np.clip(_array(module, name), 0.0, 1.0)
    if np.any(decay == 1.0) and _learnable(module, name):
        raise _refuse(layer, f"learn_{name} with {name} = 1: snnTorch trains it (the clamp to [0, 1] passes its "
                             f"gradient at exactly 1) but no time constant gives a decay of 1; start {name} "
                             f"below 1 or set learn_{name}=False")
    return euler_tau(decay, dt)


def _timing(module: Any, layer: str, zero_keeps_input: bool) -> tuple[str, str]:
    """(reset, reset_timing) for snnTorch's reset_mechanism and reset_delay
    (subtract without delay is graph structure, built before this is asked);
    ``zero_keeps_input``: a delayed zero reset happens before the input (Leaky)."""
    reset = module.reset_mechanism
    delayed = getattr(module, "reset_delay", True) or type(module).__name__ == "RSynaptic"
    if reset == "none":
        return "none", "same"
    if delayed:
        _first_step_reset(module, layer, reset, zero_keeps_input)
        return reset, "next" if reset != "zero" or zero_keeps_input else "next_after_input"
    if reset == "subtract":
        raise _refuse(layer, "reset_mechanism='subtract' with reset_delay=False")
    if np.any(_array(module, "threshold") < 0):
        raise _refuse(layer, "reset_delay=False with a negative threshold")
    return "zero", "same"


def _first_step_reset(module: Any, layer: str, reset: str, zero_keeps_input: bool) -> None:
    """Refuse a negative threshold where snnTorch's delayed reset resets the first step: its reset
    comes from the previous membrane, the zero initial one included (0 > threshold), where the
    traced neuron starts with no spike. Leaky's zero reset (it zeroes a zero membrane) is exact."""
    if reset == "zero" and zero_keeps_input:
        return
    if np.any(_array(module, "threshold") < 0):
        raise _refuse(layer, f"a negative threshold with the delayed {reset} reset (snnTorch resets the first "
                             "step from its zero initial membrane, 0 > threshold)")


def _trainable(module: Any, mapping: dict[str, str]) -> tuple[str, ...]:
    return tuple(ours for theirs, ours in mapping.items() if _learnable(module, theirs))


def _refuse_trained_negative_decays(module: Any, layer: str) -> None:
    """snnTorch steps with ``beta.clamp(0, 1)``, whose gradient is zero below 0, so a trained decay
    below 0 never moves there; the traced decay of 0 would train (the clamp passes its gradient at 0)."""
    for name in ("alpha", "beta"):
        if _learnable(module, name) and np.any(_array(module, name) < 0):
            raise _refuse(layer, f"learn_{name} with {name} < 0: snnTorch's clamp to [0, 1] gives it no gradient "
                                 f"there, where the traced decay of 0 would train; start {name} at 0 or above, or "
                                 f"set learn_{name}=False")


def _decay_semantics(module: Any, **fields: Any) -> Semantics:
    """The semantics of a neuron whose decays are ``beta`` (and ``alpha``): where one trains,
    snnTorch trains it with the input gain held at 1 (``gain_held``)."""
    held = any(_learnable(module, decay) for decay in ("alpha", "beta"))
    return Semantics(dt=DEFAULT_DT, gain_held=held, **fields)


def _meta(module: Any) -> dict[str, Any]:
    return {"source": f"snntorch.{type(module).__name__}", "surrogate": _surrogate(module)}


#: snnTorch's surrogate factories whose gradient one of ours computes (``targets/torch/surrogate.py``):
#: factory -> (our name, the factory's argument that is our slope; None: no argument, slope 1)
_SURROGATES = {"atan": ("arctan", "alpha"), "fast_sigmoid": ("fast_sigmoid", "slope"),
               "sigmoid": ("sigmoid", "slope"), "straight_through_estimator": ("straight_through", None)}


def _surrogate(module: Any) -> dict[str, Any]:
    """The surrogate gradient snnTorch trains ``module``'s spikes with: ``{"name", "slope"}`` of
    ours, or ``{"unknown": what it is}`` where we have none equal (a custom ``spike_grad``,
    snnTorch's ``triangular``, whose gradient is +-threshold, and the rest)."""
    fn = getattr(module, "spike_grad", None)
    qualname = str(getattr(fn, "__qualname__", type(fn).__name__))
    factory = qualname.split(".<locals>.")[0]
    if getattr(fn, "__module__", None) == "snntorch.surrogate" and factory in _SURROGATES:
        ours, argument = _SURROGATES[factory]
        if argument is None:
            return {"name": ours, "slope": 1.0}
        cells = dict(zip(fn.__code__.co_freevars, (cell.cell_contents for cell in fn.__closure__ or ())))
        slope = cells.get(argument)
        if isinstance(slope, (int, float)) and not isinstance(slope, bool) and 0 < slope < float("inf"):
            return {"name": ours, "slope": float(slope)}
    return {"unknown": f"{getattr(fn, '__module__', '?')}.{qualname}"}


def _leaky(module: Any, layer: str, zero_keeps_input: bool) -> LIF | IF:
    reset, timing = _timing(module, layer, zero_keeps_input)
    _refuse_trained_negative_decays(module, layer)
    sem = _decay_semantics(module, reset=reset, reset_timing=timing)
    threshold = _array(module, "threshold")
    beta = np.clip(_array(module, "beta"), 0.0, 1.0)
    trainable = _trainable(module, {"beta": "tau", "threshold": "v_threshold"})
    if np.all(beta == 1.0):
        if "tau" in trainable and np.any(_array(module, "beta") == 1.0):
            raise _refuse(layer, "learn_beta with beta = 1: snnTorch trains it (beta.clamp(0, 1) passes its "
                                 "gradient at exactly 1) but no time constant gives a decay of 1; start beta "
                                 "below 1 or set learn_beta=False")
        return IF(r=np.full(beta.shape, 1.0 / sem.dt), v_threshold=threshold, sem=sem.with_(gain_held=False),
                  trainable=tuple(t for t in trainable if t != "tau"), metadata=_meta(module))
    tau = _time_constant(module, "beta", layer, sem.dt)
    return LIF(tau=tau, r=tau / sem.dt, v_leak=np.zeros(()), v_threshold=threshold, sem=sem,
               trainable=trainable, metadata=_meta(module))


def _synaptic(module: Any, layer: str) -> CubaLIF:
    reset, timing = _timing(module, layer, zero_keeps_input=False)
    _refuse_trained_negative_decays(module, layer)
    sem = _decay_semantics(module, reset=reset, reset_timing=timing, current_order="current_first")
    tau_syn = _time_constant(module, "alpha", layer, sem.dt)
    tau_mem = _time_constant(module, "beta", layer, sem.dt)
    return CubaLIF(
        tau_syn=tau_syn, tau_mem=tau_mem, r=tau_mem / sem.dt, v_leak=np.zeros(()),
        v_threshold=_array(module, "threshold"), w_in=tau_syn / sem.dt, sem=sem,
        trainable=_trainable(module, {"alpha": "tau_syn", "beta": "tau_mem", "threshold": "v_threshold"}),
        metadata=_meta(module),
    )


def _recurrent(module: Any, layer: str) -> Any:
    from snnir.frontends.torch_nn_map import layer_op

    if module.all_to_all:
        op = layer_op(module.recurrent, f"{layer}_recurrent")
        if op is None:
            raise _refuse(layer, f"recurrent layer {type(module.recurrent).__name__}")
        return op
    v = module.recurrent.V
    trainable = ("scale",) if getattr(v, "requires_grad", False) else ()
    return Scale(scale=v.detach().cpu().double().numpy().copy(), trainable=trainable)


def _alpha(module: Any, layer: str) -> Fragment:
    if module.reset_mechanism != "none":
        raise _refuse(
            layer,
            f"Alpha with reset_mechanism={module.reset_mechanism!r} (snnTorch's default is 'zero'): after "
            "a spike its reset rewrites both synaptic currents as well as the membrane, which no NIR neuron "
            "does (NIR's CubaLIF never resets its current); Alpha(reset_mechanism='none') exports exactly",
        )
    _warn_untrained(module, layer, ("alpha", "beta"), "Alpha's pair of decays")
    sem = Semantics(dt=DEFAULT_DT)
    alpha = _decay(_array(module, "alpha"), layer, "alpha")
    beta = _decay(_array(module, "beta"), layer, "beta")
    tau_alpha = np.log(alpha) / (np.log(beta) - np.log(alpha)) + 1.0
    tau_exc, tau_inh = sem.dt / (1.0 - alpha), sem.dt / (1.0 - beta)
    zero = np.zeros(())
    return Fragment(
        nodes={
            "": Threshold(threshold=_array(module, "threshold"), trainable=_trainable(module, {"threshold": "threshold"}),
                          metadata=_meta(module)),
            "exc": LI(tau=tau_exc, r=tau_exc / sem.dt, v_leak=zero, sem=sem),
            "inh": LI(tau=tau_inh, r=-tau_inh / sem.dt, v_leak=zero, sem=sem),
            "exc_scale": Scale(scale=tau_alpha),
            "inh_scale": Scale(scale=tau_alpha),
        },
        entries=("exc", "inh"),
        edges=(("exc", "exc_scale"), ("inh", "inh_scale"), ("exc_scale", ""), ("inh_scale", "")),
    )


def _recheck_fragment(module: Any, layer: str, recurrent: Any = None) -> Fragment:
    """snnTorch's subtract reset with ``reset_delay=False`` as graph structure.

    ``mem`` (an LI, or syn -> mem for Synaptic) holds u, the membrane before
    this step's reset: u = beta (u_prev - thr s_prev) + x. ``last`` (an LI with
    decay 0) holds s, so its edges deliver s_prev. ``recheck`` (a Threshold on
    u_prev - thr s_prev, i.e. on m_prev) gives p. The layer's own node is the
    Threshold s = (beta u_prev - beta thr s_prev + x - thr p > thr), where
    u_prev and s_prev arrive over edges the schedule delays by one step.
    """
    sem = Semantics(dt=DEFAULT_DT)
    thr = _array(module, "threshold")
    beta = np.clip(_array(module, "beta"), 0.0, 1.0)
    tau = _time_constant(module, "beta", layer, sem.dt)
    zero = np.zeros(())
    nodes = {
        "": Threshold(threshold=thr, metadata={**_meta(module), "structure": RECHECK}),
        "mem": LI(tau=tau, r=tau / sem.dt, v_leak=zero, sem=sem),
        "last": LI(tau=np.full(np.shape(thr), sem.dt), r=np.ones(()), v_leak=zero, sem=sem),
        "recheck": Threshold(threshold=thr),
        "mem_decay": Scale(scale=beta),
        "last_decay": Scale(scale=-beta * thr),
        "last_recheck": Scale(scale=-thr),
        "recheck_gain": Scale(scale=-thr),
    }
    edges = [
        ("mem", "mem_decay"), ("mem_decay", ""), ("last", "last_decay"), ("last_decay", ""),
        ("last_decay", "mem"), ("", "last"), ("mem", "recheck"), ("last", "last_recheck"),
        ("last_recheck", "recheck"), ("recheck", "recheck_gain"), ("recheck_gain", ""),
    ]
    entries: tuple[str, ...] = ("mem", "")
    if hasattr(module, "alpha"):
        tau_syn = _time_constant(module, "alpha", layer, sem.dt)
        nodes["syn"] = LI(tau=tau_syn, r=tau_syn / sem.dt, v_leak=zero, sem=sem)
        edges += [("syn", "mem"), ("syn", "")]
        entries = ("syn",)
    if recurrent is not None:
        nodes["recurrent"] = recurrent
        edges += [("last", "recurrent")] + [("recurrent", e) for e in entries]
    return Fragment(nodes, entries=entries, edges=tuple(edges))


RECHECK = "subtract reset with reset_delay=False"  # marks the layer node of a recheck fragment


def _rechecks(module: Any) -> bool:
    return module.reset_mechanism == "subtract" and not getattr(module, "reset_delay", True)


def neuron_fragment(module: Any, layer: str) -> Fragment:
    """The exact ops for one snnTorch neuron, or a SnnirError naming the layer and option."""
    kind = type(module).__name__
    if kind not in SUPPORTED:
        why = " (an LSTM cell: its gates have no NIR equivalent)" if "LSTM" in kind else ""
        raise SnnirError(f"snnTorch {kind}{why} cannot be exported; exportable neurons: {', '.join(SUPPORTED)}",
                         layer)
    _check_common(module, layer)
    if not getattr(module, "reset_delay", True) and module.reset_mechanism != "none" and kind != "RSynaptic":
        warn(f"layer '{shown(layer)}': snnTorch's reset_delay=False resets through the spike without detaching "
             "it, a gradient through the reset that compiled modules do not have: spikes are exact, training "
             "gradients differ")
    if _rechecks(module):
        _warn_untrained(module, layer, ("threshold", "beta", "alpha"), "the subtract reset with reset_delay=False")
    if kind in ("Leaky", "Synaptic") and _rechecks(module):
        return _recheck_fragment(module, layer)
    if kind == "RLeaky" and _rechecks(module):
        return _recheck_fragment(module, layer, _recurrent(module, layer))
    if kind == "Leaky":
        return Fragment.single(_leaky(module, layer, zero_keeps_input=True))
    if kind == "Synaptic":
        return Fragment.single(_synaptic(module, layer))
    if kind == "RLeaky":
        neuron = _leaky(module, layer, zero_keeps_input=False)
        return Fragment({"": neuron, "recurrent": _recurrent(module, layer)},
                        edges=(("", "recurrent"), ("recurrent", "")))
    if kind == "RSynaptic":
        return Fragment({"": _synaptic(module, layer), "recurrent": _recurrent(module, layer)},
                        edges=(("", "recurrent"), ("recurrent", "")))
    if kind == "Lapicque":
        reset, timing = _timing(module, layer, zero_keeps_input=False)
        sem = Semantics(dt=float(module.time_step), reset=reset, reset_timing=timing)
        r = _array(module, "R")
        tau = r * _array(module, "C")
        if not np.all(np.isfinite(tau) & (tau > 0)):
            raise _refuse(layer, f"Lapicque's time constant R*C = {np.asarray(tau).ravel()[:4].tolist()} is not "
                                 "positive and finite (snnTorch derives C from beta, and beta >= 1 or <= 0 gives "
                                 "none); use 0 < beta < 1, or Leaky")
        return Fragment.single(LIF(tau=tau, r=r, v_leak=np.zeros(()),
                                   v_threshold=_array(module, "threshold"), sem=sem,
                                   trainable=_trainable(module, {"threshold": "v_threshold"}),
                                   metadata=_meta(module)))
    return _alpha(module, layer)


def stateless_fragment(module: Any, layer: str) -> Fragment:
    """A neuron whose state is zero at every call (``init_leaky()`` inside a step
    ``forward``): snnTorch computes ``mem = beta * 0 + x`` (Synaptic: ``syn = x``,
    ``mem = syn``) with no reset pending, so the spikes are ``x > threshold``:
    a Threshold. Exact for thresholds >= 0 (a negative one makes the zero state
    itself count as a pending reset); other neurons are refused."""
    kind = type(module).__name__
    _check_common(module, layer)
    advice = "initialise its state once, before the time loop, or use init_hidden=True"
    if kind not in ("Leaky", "Synaptic"):
        raise _refuse(layer, f"its state is set to zero at every call, which snnir traces for Leaky and Synaptic "
                             f"only, not {kind}; {advice}")
    threshold = _array(module, "threshold")
    if np.any(threshold < 0):
        raise _refuse(layer, f"its state is set to zero at every call with a negative threshold; {advice}")
    return Fragment.single(Threshold(threshold=threshold, trainable=_trainable(module, {"threshold": "threshold"}),
                                     metadata=_meta(module)))
