"""Run a torch/snnTorch model and its traced graph side by side, in float64."""

from __future__ import annotations

import numpy as np
import torch

import snnir

STEPS, BATCH = 100, 4


def as_float64(model: torch.nn.Module) -> torch.nn.Module:
    """``model.double()``; snnTorch emits float32 spikes, so layers cast inputs up."""
    model = model.double()
    for module in model.modules():
        module.register_forward_pre_hook(
            lambda _m, args: tuple(a.double() if torch.is_tensor(a) else a for a in args)
        )
    return model


def neuron_paths(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    from snntorch._neurons.neurons import SpikingNeuron

    return {p: m for p, m in model.named_modules() if isinstance(m, SpikingNeuron)}


def run_step_model(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Spikes ``[T, B, ...]`` of a step-style model and each neuron's ``mem``/``syn`` per step."""
    neurons = neuron_paths(model)
    for module in neurons.values():
        module.reset_mem()
    outputs, states = [], {}
    with torch.no_grad():
        for t in range(x.shape[0]):
            out = model(x[t])
            outputs.append(out[0] if isinstance(out, tuple) else out)
            for path, module in neurons.items():
                name = path.replace(".", "_")
                for theirs, ours in (("mem", "v"), ("syn", "i")):
                    if hasattr(module, theirs) and torch.is_tensor(getattr(module, theirs)):
                        states.setdefault(f"{name}.{ours}", []).append(getattr(module, theirs).clone())
    return torch.stack(outputs).double().numpy(), {k: torch.stack(v).numpy() for k, v in states.items()}


def check_same(graph: snnir.Graph, spikes: np.ndarray, states: dict[str, np.ndarray], x: np.ndarray) -> dict:
    """The reference interpreter gives identical spikes and membranes within 1e-5."""
    out = snnir.run(graph, x, record=True)
    assert out["output"].shape == spikes.shape
    mismatch = np.argwhere(out["output"] != spikes)
    assert mismatch.size == 0, f"{len(mismatch)} spikes differ, first at [t, b, ...] = {mismatch[0].tolist()}"
    for key, value in states.items():
        if key in out:
            np.testing.assert_allclose(out[key], value, atol=1e-5, rtol=0, err_msg=key)
    return out


def random_input(shape: tuple[int, ...], scale: float = 2.0, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((STEPS, BATCH) + shape, generator=generator, dtype=torch.float64) * scale


def state_snapshot(model: torch.nn.Module) -> dict:
    """Everything tracing must leave alone: tensors (values, dtype, device), flags."""
    snap = {}
    for path, module in model.named_modules():
        snap[f"{path}.training"] = module.training
        for name, value in vars(module).items():
            if torch.is_tensor(value):
                snap[f"{path}.{name}"] = (value.detach().clone(), value.dtype, value.requires_grad)
        for name, value in list(module._buffers.items()) + list(module._parameters.items()):
            if value is not None:
                snap[f"{path}.{name}"] = (value.detach().clone(), value.dtype, value.requires_grad)
    return snap


def assert_same_snapshot(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key, value in before.items():
        other = after[key]
        if isinstance(value, tuple):
            assert value[1:] == other[1:], key
            assert value[0].shape == other[0].shape and torch.equal(value[0], other[0]), key
        else:
            assert value == other, key
