"""DistributedDataParallel on 2 CPU processes (gloo) gives the single-process gradients.

The workers are spawned, not forked: a fork after torch has started its thread pool can deadlock."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from snnir.ir import CubaLIF
from snnir.targets.torch import compile_torch

from torch_target_graphs import graphs_for, random_input

TRAINABLE = ["fc.weight", "fc.bias", "cell.tau_mem", "cell.tau_syn", "rec.weight"]
STEPS, BATCH = 2, 4


def _model_and_data():
    graph = graphs_for(CubaLIF)[0]
    module = compile_torch(graph, dtype=torch.float64, trainable=TRAINABLE)
    x = torch.as_tensor(random_input(graph, 15, BATCH))
    return module, x


def _train(module, x, steps):
    """SGD steps on the batch mean; returns the gradients of the last step."""
    optimiser = torch.optim.SGD(module.parameters(), lr=0.1)
    for _ in range(steps):
        optimiser.zero_grad()
        module(x).mean().backward()
        optimiser.step()
    return [p.grad.detach().clone() for p in module.parameters()]


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        module, x = _model_and_data()
        share = BATCH // world
        ddp = torch.nn.parallel.DistributedDataParallel(module)
        grads = _train(ddp, x[:, rank * share : (rank + 1) * share], STEPS)
        torch.save(grads, os.path.join(out_dir, f"grads{rank}.pt"))
        dist.barrier()  # neither rank tears gloo down while the other still talks to it
    finally:
        dist.destroy_process_group()


def _spawn_workers(tmp_path) -> None:
    """Run the two workers. A rank that tore gloo down while the other still used it
    aborted ("terminate called without an active exception", about 1 run in 4 here) until
    the workers met at a barrier first; one retry with a fresh rendezvous file remains,
    warning with the first failure, so a recurrence is visible rather than red."""
    failures = []
    for attempt in range(2):
        try:
            init = tmp_path / f"init{attempt}"
            mp.start_processes(_worker, args=(2, str(init), str(tmp_path)), nprocs=2, start_method="spawn")
            if failures:
                warnings.warn(f"DDP workers passed on the second try; the first failed: {failures[0]}", stacklevel=2)
            return
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as exc:
            failures.append(f"attempt {attempt + 1}: {exc}")
    pytest.fail("DDP workers failed twice:\n" + "\n".join(failures))


def test_ddp_matches_single_process(tmp_path):
    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this torch build")
    _spawn_workers(tmp_path)
    module, x = _model_and_data()
    expected = _train(module, x, STEPS)
    for rank in range(2):
        got = torch.load(tmp_path / f"grads{rank}.pt", weights_only=True)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
