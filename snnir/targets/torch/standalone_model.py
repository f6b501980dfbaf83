"""The checked interface of a generated standalone module: its weights, inputs and state.

Generated torch source (:mod:`snnir.targets.torch.codegen`) embeds this file's code after its
docstring, so it imports nothing but torch (and must not import snnir). It reads the constants
the generated module defines before it (``WEIGHTS``, ``INPUTS``, ``OUTPUTS``, ``PARAMETERS``,
``STATES``, ``CARRIED``, ``TRAINABLE`` and ``load_weights``) only when called; the generated
``Model`` subclass adds ``graph_step``, the graph spelled out node by node. Every wrong weight,
input or state is a ``ValueError`` (a ``TypeError`` for a wrong kind of value) naming the
weight, Input or node, before anything runs: never a silent broadcast.
"""

import torch


def parameter_name(node, param):
    """The ``ParameterDict`` name of ``node``'s parameter ``param``: torch forbids dots in names,
    so ``"%"`` and ``":"`` are escaped first (``%25``, ``%3A``) and dots become ``":"``; distinct
    nodes never share a name (``a.b``, a nested node, is ``a:b``; a node named ``a:b`` is ``a%3Ab``)."""
    return node.replace("%", "%25").replace(":", "%3A").replace(".", ":") + ":" + param


def check_weights(weights, where):
    """``weights`` (tensors by ``"<node>.<parameter>"``) as ``PARAMETERS`` says, or an error
    naming the first key that is missing, unexpected, or of the wrong shape or dtype."""
    if not isinstance(weights, dict):
        raise TypeError(f"{where}: expected a dict of tensors by '<node>.<parameter>', got {type(weights).__name__}")
    expected = {f"{node}.{param}": spec for node, params in PARAMETERS.items() for param, spec in params.items()}
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    if missing or unexpected:
        raise ValueError(f"{where}: the keys do not fit this model: missing {missing}, unexpected {unexpected}")
    for key, (shape, kind) in expected.items():
        value = weights[key]
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{where}: {key!r} is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided or value.is_meta:
            raise ValueError(f"{where}: {key!r} is a {value.layout} tensor on {value.device}, expected a dense one")
        if tuple(value.shape) != shape:
            raise ValueError(f"{where}: {key!r} has shape {list(value.shape)}, expected {list(shape)}")
        if kind == "steps":  # a Delay's steps: int64, within its buffer
            depth = STATES[key.rsplit(".", 1)[0]]["buffer"][0]
            if value.dtype != torch.int64:
                raise ValueError(f"{where}: {key!r} has dtype {value.dtype}, expected torch.int64")
            if value.numel() and not 0 <= int(value.min()) <= int(value.max()) <= depth:
                raise ValueError(f"{where}: {key!r} holds delays outside 0..{depth}")
        elif not value.dtype.is_floating_point:
            raise ValueError(f"{where}: {key!r} has dtype {value.dtype}, expected a floating point dtype")
        elif not bool(torch.isfinite(value).all()):
            raise ValueError(f"{where}: {key!r} holds non-finite values (NaN or inf)")


def own_copy(value, dtype, key):
    """``value`` copied (training never changes the caller's tensors) into ``dtype`` (None: kept),
    or an error where ``dtype`` cannot hold it: a value that becomes inf, or a non-zero one 0."""
    copied = value.detach().to(dtype=dtype or value.dtype, copy=True)
    if dtype is not None and (not bool(torch.isfinite(copied).all()) or bool(((value != 0) & (copied == 0)).any())):
        raise ValueError(f"the weight {key!r} does not fit {dtype} (a value overflows or becomes 0): "
                         "load it with load_model(dtype=torch.float64)")
    return copied


def expected_shape(leading, shape):
    """``"[T, B, 2]"`` for ``leading`` ``("T", "B")`` and ``shape`` ``(2,)``."""
    return "[" + ", ".join([*leading, *map(str, shape)]) + "]"


class GraphModel(torch.nn.Module):
    """A generated graph as a trainable module: ``model(x)`` over ``[T, B, *shape]`` and
    ``model.step(x_t, state)`` on ``[B, *shape]``, as the module ``snnir.compile`` returns."""

    def __init__(self, weights=None, dtype=torch.float32):
        super().__init__()
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating point torch dtype, got {dtype!r}")
        if weights is None:
            weights = load_weights()  # checked as it is read
        else:
            check_weights(weights, "the weights given")
        self.params = torch.nn.ParameterDict({
            parameter_name(node, param): torch.nn.Parameter(
                own_copy(weights[f"{node}.{param}"], None if kind == "steps" else dtype, f"{node}.{param}"),
                requires_grad=f"{node}.{param}" in TRAINABLE)
            for node, params in PARAMETERS.items() for param, (_, kind) in params.items()
        })
        # follows model.to(...), .double(), .float(): the dtype and device of inputs and states
        self.register_buffer("dtype_probe", torch.zeros((), dtype=dtype), persistent=False)

    @property
    def dtype(self):
        return self.dtype_probe.dtype

    @property
    def device(self):
        return self.dtype_probe.device

    def params_of(self, node):
        """Node ``node``'s parameters by name."""
        return {param: self.params[parameter_name(node, param)] for param in PARAMETERS[node]}

    def initial_state(self, batch, device=None, dtype=None):
        """All-zero state for ``batch`` samples, in the model's dtype and device by default."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        device = self.device if device is None else device
        dtype = self.dtype if dtype is None else dtype
        zeros = lambda shape: torch.zeros((batch,) + shape, dtype=dtype, device=device)  # noqa: E731
        state = {node: {name: zeros(shape) for name, shape in states.items()} for node, states in STATES.items()}
        for node, states in STATES.items():
            if "buffer" in states:
                state[node]["buffer"] = state[node]["buffer"].movedim(0, 1)
        state["#carried"] = {node: zeros(shape) for node, shape in CARRIED.items()}
        return state

    def forward(self, x, state=None, steps=None, return_state=False):
        """The graph over time. ``x`` is ``[T, B, *shape]`` (a dict by Input name for several
        Inputs), or a static ``[B, *shape]`` held for ``steps=T`` steps; returns ``[T, B, ...]``
        (a dict by Output name for several), and with ``return_state`` the final state too."""
        xs, steps, batch = self.sequences(x, steps)
        state = self.initial_state(batch) if state is None else self.checked_state(state, batch)
        outs = {name: [] for name in OUTPUTS}
        for t in range(steps):
            y, state = self.graph_step({name: value[t] for name, value in xs.items()}, state)
            for name in OUTPUTS:
                outs[name].append(y[name])
        stacked = {name: torch.stack(values) for name, values in outs.items()}
        out = stacked[OUTPUTS[0]] if len(OUTPUTS) == 1 else stacked
        return (out, state) if return_state else out

    def step(self, x, state=None):
        """One step: ``x`` is ``[B, *shape]`` (a dict by Input name for several Inputs); returns
        ``(output, new state)``, the output ``[B, ...]`` (a dict by Output name for several)."""
        xs, batch = {}, None
        for name, value in self.tensors(x).items():
            if value.dim() != len(INPUTS[name]) + 1 or tuple(value.shape[1:]) != INPUTS[name]:
                raise ValueError(f"input {name!r} must have shape {expected_shape(('B',), INPUTS[name])}, "
                                 f"got {list(value.shape)}")
            batch = self.same_batch(batch, value.shape[0], name)
            xs[name] = value
        state = self.initial_state(batch) if state is None else self.checked_state(state, batch)
        y, state = self.graph_step(xs, state)
        return (y[OUTPUTS[0]] if len(OUTPUTS) == 1 else y), state

    # --- checks -------------------------------------------------------------------------
    def tensors(self, x):
        """``x`` by Input name (``x`` itself for a model of one Input) as tensors in the model's dtype."""
        if not isinstance(x, dict):
            if len(INPUTS) != 1:
                raise TypeError(f"this model has the Inputs {list(INPUTS)}: give a dict of tensors by Input name")
            x = {next(iter(INPUTS)): x}
        missing = [name for name in INPUTS if name not in x]
        unexpected = [name for name in x if name not in INPUTS]
        if missing or unexpected:
            raise ValueError(f"inputs do not fit this model's Inputs {list(INPUTS)}: missing {missing}, "
                             f"unexpected {unexpected}")
        tensors = {}
        for name, value in x.items():
            try:
                value = torch.as_tensor(value)
            except (TypeError, ValueError, RuntimeError) as exc:
                raise TypeError(f"input {name!r} is not a tensor of numbers: {exc}") from None
            if value.is_complex():
                raise TypeError(f"input {name!r} has dtype {value.dtype}; inputs must be real numbers")
            if value.device != self.device:
                raise ValueError(f"input {name!r} is on {value.device} but the model is on {self.device}")
            value = value.to(self.dtype)
            # NaN never fires and stays in the membrane: refused, as snnir refuses it (on a CPU: a
            # GPU would wait for the answer every call); one sum, every element only where it is not finite
            if value.device.type == "cpu" and not (torch.isfinite(value.sum()) or torch.isfinite(value).all()):
                raise ValueError(f"input {name!r} contains NaN or inf")
            tensors[name] = value
        return tensors

    def sequences(self, x, steps=None):
        """``(inputs by name as [T, B, *shape], T, B)``; a static ``[B, *shape]`` input needs ``steps``."""
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        xs, found, batch = {}, None, None
        for name, value in self.tensors(x).items():
            shape = INPUTS[name]
            if value.dim() == len(shape) + 1 and tuple(value.shape[1:]) == shape:
                if steps is None:
                    raise ValueError(
                        f"input {name!r} of shape {list(value.shape)} is a static {expected_shape(('B',), shape)} "
                        f"input: give steps=T (model(x, steps=T)) or a {expected_shape(('T', 'B'), shape)} sequence")
                batch = self.same_batch(batch, value.shape[0], name)
                value = value.expand(steps, *value.shape)
            elif value.dim() == len(shape) + 2 and tuple(value.shape[2:]) == shape:
                t = value.shape[0]
                if steps is not None and t != steps:
                    raise ValueError(f"input {name!r} has {t} time steps but steps={steps}")
                if found is not None and t != found:
                    raise ValueError(f"inputs disagree on the number of time steps T: {found} vs {t} ({name!r})")
                found = t
                batch = self.same_batch(batch, value.shape[1], name)
            else:
                raise ValueError(f"input {name!r} must have shape {expected_shape(('T', 'B'), shape)}, got "
                                 f"{list(value.shape)} (or {expected_shape(('B',), shape)} with steps=T for a static input)")
            xs[name] = value
        steps = steps if steps is not None else found
        if steps == 0:
            raise ValueError(f"the input has no time steps (T = 0): {list(xs)}")
        return xs, steps, batch

    @staticmethod
    def same_batch(batch, b, name):
        if batch is not None and b != batch:
            raise ValueError(f"inputs disagree on the batch size B: {batch} vs {b} ({name!r})")
        return b

    def checked_state(self, state, batch):
        """``state`` if it fits ``batch`` samples as :meth:`initial_state` builds it, else an error
        naming the node."""
        expected = self.initial_state(batch, device="meta")
        if not isinstance(state, dict) or set(state) != set(expected):
            raise ValueError(f"state must be a dict with the keys {sorted(expected)} (see initial_state)")
        for node, values in expected.items():
            given = state[node]
            if not isinstance(given, dict) or set(given) != set(values):
                raise ValueError(f"state[{node!r}] must be a dict with the keys {sorted(values)} (see initial_state)")
            for name, ref in values.items():
                value = given[name]
                if not isinstance(value, torch.Tensor) or value.shape != ref.shape:
                    got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                    raise ValueError(f"state[{node!r}][{name!r}] must have shape {list(ref.shape)} for batch "
                                     f"{batch}, got {got} (see initial_state)")
                if value.dtype != self.dtype or value.device != self.device:
                    raise ValueError(f"state[{node!r}][{name!r}] is {value.dtype} on {value.device}, where the "
                                     f"model runs {self.dtype} on {self.device} (see initial_state)")
        return state
