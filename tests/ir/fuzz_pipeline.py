"""Fuzzing the whole pipeline (not collected by pytest; see docs/nir-files.md):

    PYTHONPATH=$PWD timeout 1800 nice -n 15 python tests/ir/fuzz_pipeline.py --minutes 25 --out /tmp/fuzz

Every ``.nir`` fixture under ``tests/fixtures/`` is mutated (bytes, the h5py mutations of
test_fuzz_files.py, and NIR-level ones: NaN/inf/huge parameters, cycles, dangling or dropped edges,
unknown or swapped node types, wrong versions, huge or negative declared shapes, deleted fields) and
each mutant goes through ``snnir.read``, ``verify``, the reference interpreter on a few steps, the
reference on the optimised graph and the torch target in float64 (both must equal the reference),
and the CLI's ``verify``, ``inspect``, ``run`` and ``check``; each graph that reads also gets
``GRAPH_MUTANTS`` one-field variants through the same stages. A case runs in a worker process:
anything but a result or a one-line SnnirError, a difference, a case over ``HANG_S`` or a dead
worker is a finding, saved with its traceback under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
import traceback
import warnings
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT))

from tests.ir.test_fuzz_files import h5_mutant  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
HANG_S = 20.0
STEPS, BATCH = 4, 2
#: odd variants of each graph that reads (one field of one node each)
GRAPH_MUTANTS = 3
#: Inputs larger than this are not built by the fuzzer (the limits refuse them in read or run).
MAX_INPUT_VALUES = 1 << 20
ODD_FLOATS = [np.nan, np.inf, -np.inf, 1e38, -1e38, 1e-45, 0.0, -0.0]
ODD_SHAPES = [[1 << 40], [1 << 31, 1 << 31], [-1], [0], [], [3, -2], [1 << 62, 4]]
ODD_TYPES = ["Bogus", "", "Input", "Output", "NIRGraph", "Conv2d", "LIF", "Delay", "\x1b[31mred"]
ODD_VERSIONS = ["99.0", "0.0.1", "", "not a version", "0.2.0"]


# --- NIR-level mutations (h5py) ------------------------------------------------------------
def _datasets(f: h5py.File, kind: str) -> list[str]:
    names: list[str] = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) and o.dtype.kind in kind
                 and "metadata" not in n else None)
    return names


def _odd_floats(f, rng) -> None:
    names = _datasets(f, "f")
    if names:
        name = str(rng.choice(names))
        data = np.array(f[name][()], dtype=np.float64)
        flat = data.reshape(-1)
        if flat.size:
            flat[rng.integers(flat.size)] = rng.choice(ODD_FLOATS)
        del f[name]
        f.create_dataset(name, data=data.astype(np.float32))


def _graph_groups(f) -> list[str]:
    groups = [""] if "node" not in f else ["node"]
    f.visititems(lambda n, o: groups.append(n) if isinstance(o, h5py.Group) and "nodes" in o and "edges" in o
                 and n not in groups else None)
    return [g for g in groups if g and "nodes" in f[g]]


def _edges_of(group) -> tuple[list[list[str]], str]:
    edges = group["edges"]
    if isinstance(edges, h5py.Group):
        pairs = [[a.decode() if isinstance(a, bytes) else str(a), b.decode() if isinstance(b, bytes) else str(b)]
                 for a, b in zip(edges["src"][()], edges["dst"][()])]
        return pairs, "group"
    return [[x.decode() if isinstance(x, bytes) else str(x) for x in row] for row in edges[()].reshape(-1, 2)], "array"


def _edges(f, rng) -> None:
    groups = _graph_groups(f)
    if not groups:
        return
    group = f[str(rng.choice(groups))]
    pairs, layout = _edges_of(group)
    nodes = list(group["nodes"])
    kind = int(rng.integers(6))
    if kind == 0 and pairs:  # a cycle: the last edge reversed
        pairs.append(pairs[-1][::-1])
    elif kind == 1 and nodes:  # a self-loop
        node = str(rng.choice(nodes))
        pairs.append([node, node])
    elif kind == 2 and nodes:  # dangling
        pairs.append([str(rng.choice(nodes)), "ghost"] if rng.random() < 0.5 else ["ghost", str(rng.choice(nodes))])
    elif kind == 3 and pairs:  # dropped
        pairs.pop(int(rng.integers(len(pairs))))
    elif kind == 4 and pairs:  # duplicated
        pairs.append(pairs[int(rng.integers(len(pairs)))])
    else:  # a fan-in to the first node's target
        if len(nodes) > 1:
            pairs.append([str(rng.choice(nodes)), str(rng.choice(nodes))])
    del group["edges"]
    text = h5py.string_dtype()
    if layout == "group":
        group.create_dataset("edges/src", data=[p[0] for p in pairs], dtype=text)
        group.create_dataset("edges/dst", data=[p[1] for p in pairs], dtype=text)
    else:
        group.create_dataset("edges", data=np.array(pairs, dtype=object).reshape(-1, 2), dtype=text)


def _node_type(f, rng) -> None:
    names = [n for n in _datasets(f, "OS") if n.endswith("/type") and "/nodes/" in n]
    if names:
        name = str(rng.choice(names))
        del f[name]
        f.create_dataset(name, data=str(rng.choice(ODD_TYPES)), dtype=h5py.string_dtype())


def _version(f, rng) -> None:
    if "version" in f:
        del f["version"]
    if rng.random() < 0.8:
        f.create_dataset("version", data=str(rng.choice(ODD_VERSIONS)), dtype=h5py.string_dtype())


def _declared_shape(f, rng) -> None:
    names = [n for n in _datasets(f, "iuf") if n.rsplit("/", 1)[-1] in
             ("shape", "input_shape", "output_shape", "input_type", "output_type", "delay", "tau", "kernel_size",
              "stride", "padding", "dilation", "groups", "n_neurons", "num_neurons")]
    if not names:
        return
    name = str(rng.choice(names))
    dtype = f[name].dtype
    del f[name]
    value = ODD_SHAPES[int(rng.integers(len(ODD_SHAPES)))] if dtype.kind in "iu" or rng.random() < 0.5 \
        else [float(rng.choice([1e30, 1e-30, -1.0, 0.0, np.inf]))]
    f.create_dataset(name, data=np.array(value, dtype=np.int64 if dtype.kind in "iu" else np.float64))


def _delete(f, rng) -> None:
    names: list[str] = []
    f.visit(names.append)
    names = [n for n in names if "/nodes/" in n]
    if names:
        del f[str(rng.choice(names))]


NIR_MUTATIONS = (_odd_floats, _edges, _node_type, _version, _declared_shape, _delete)


def nir_mutant(source: Path, out: Path, rng) -> Path:
    out.write_bytes(source.read_bytes())
    with h5py.File(out, "a") as f:
        for _ in range(int(rng.integers(1, 3))):
            NIR_MUTATIONS[int(rng.integers(len(NIR_MUTATIONS)))](f, rng)
    return out


def byte_mutant(source: Path, out: Path, rng) -> Path:
    data = bytearray(source.read_bytes())
    if rng.random() < 0.3:
        data = data[: int(rng.integers(0, len(data)))]
    else:
        for _ in range(int(rng.integers(1, 6))):
            at = int(rng.integers(0, len(data)))
            data[at] ^= 1 << int(rng.integers(8))
    out.write_bytes(bytes(data))
    return out


def mutant(source: Path, out: Path, rng) -> tuple[Path, str]:
    """A mutant of ``source`` at ``out`` and the kind of mutation; an unwritable h5 mutation falls back."""
    kind = ["bytes", "h5", "nir", "nir"][int(rng.integers(4))]
    try:
        if kind == "nir":
            return nir_mutant(source, out, rng), kind
        if kind == "h5":
            return h5_mutant(source, out, rng), kind
    except Exception:  # noqa: BLE001 - h5py refusing our own mutation is not a finding
        pass
    return byte_mutant(source, out, rng), "bytes"


# --- graph-level mutations (what a Python user can build) ------------------------------------
ODD_VALUES = [0.0, -1.0, 1e30, 1e-30, np.nan, np.inf]


def graph_mutant(graph, rng):
    """``graph`` with one parameter, attribute or semantics field of one top-level node made odd;
    ``None`` when the op refuses the value (a SnnirError: building it is the refusal)."""
    import dataclasses

    from snnir.errors import SnnirError

    name = str(rng.choice(sorted(graph.nodes)))
    op = graph.nodes[name]
    fields = list(op.param_names()) + [f for f in op.attribute_names() if f != "graph"]
    if not fields:
        return None
    field = str(rng.choice(fields))
    old = getattr(op, field)
    kind = int(rng.integers(4))
    if field == "sem":
        sem_field = str(rng.choice(["dt", "reset", "discretisation", "spike_mode", "threshold_compare"]))
        value = dataclasses.replace(old, **{sem_field: rng.choice(ODD_VALUES) if sem_field == "dt" else "bogus"}) \
            if sem_field == "dt" or kind == 0 else old
    elif isinstance(old, np.ndarray) and old.dtype.kind == "f":
        value = np.array(old, copy=True)
        if kind == 0 and value.size:
            value.reshape(-1)[rng.integers(value.size)] = rng.choice(ODD_VALUES)
        elif kind == 1:
            value = np.ones(tuple(int(d) + 1 for d in value.shape) or (2,), dtype=value.dtype)
        elif kind == 2:
            value = np.float64(rng.choice(ODD_VALUES))
        else:
            value = value.astype(np.int64) if value.size else np.zeros((0,))
    elif isinstance(old, tuple) and all(isinstance(v, (int, np.integer)) for v in old):
        value = [(0,), (-1,), (1 << 40,), (), (2, 0, 3)][int(rng.integers(5))]
    elif isinstance(old, (int, np.integer)) and not isinstance(old, bool):
        value = int(rng.choice([0, -1, 1 << 40]))
    else:
        return None
    try:
        return graph.with_nodes({name: op.replace(**{field: value})}), f"{name}.{field}={value!r}"[:200]
    except SnnirError:
        return None


# --- the pipeline, in a worker -------------------------------------------------------------
def input_arrays(graph) -> dict[str, np.ndarray] | None:
    """Random spikes for each Input, ``[STEPS, BATCH, *shape]``; ``None`` when too large to build."""
    from snnir.ir.ops import Input

    shapes = {n: graph.nodes[n].shape for n in graph.inputs if isinstance(graph.nodes[n], Input)}
    if not shapes or any(int(np.prod(s, dtype=object)) * STEPS * BATCH > MAX_INPUT_VALUES for s in shapes.values()):
        return None
    rng = np.random.default_rng(0)
    return {n: (rng.random((STEPS, BATCH, *s)) < 0.3).astype(np.float32) for n, s in shapes.items()}


def simulated(graph, limits, inputs) -> list[str]:
    """The reference interpreter, the torch target (float64) and the reference on the optimised
    graph, on a few steps of ``inputs`` (made when ``None``): all three must agree."""
    import torch

    import snnir

    inputs = input_arrays(graph) if inputs is None else inputs
    if inputs is None:
        return []
    x = next(iter(inputs.values())) if len(inputs) == 1 else inputs
    expected = snnir.run(graph, x, limits=limits)
    same(expected, snnir.run(snnir.optimize(graph), x, limits=limits), "the optimised graph")
    module = snnir.compile(graph, target="torch", limits=limits, dtype=torch.float64)
    if len(inputs) != 1:
        return ["run", "optimize", "compile"]
    with torch.no_grad():
        out = module(torch.from_numpy(x).double())
    out = {k: v.numpy() for k, v in out.items()} if isinstance(out, dict) else {graph.outputs[0]: out.numpy()}
    same(expected, out, "the torch target")
    return ["run", "optimize", "compile", "torch"]


def same(expected: dict, got: dict, what: str) -> None:
    """``got`` equals the reference's ``expected`` output for output (spikes exact, values to 1e-6)."""
    for name, value in got.items():
        if name in expected and not np.allclose(value, expected[name], rtol=1e-6, atol=1e-9, equal_nan=True):
            where = np.argwhere(~np.isclose(value, expected[name], rtol=1e-6, atol=1e-9, equal_nan=True))[0]
            raise AssertionError(f"{what} differs from the reference on output {name!r} at {tuple(where)}: "
                                 f"{value[tuple(where)]!r} != {expected[name][tuple(where)]!r}")


def one_line(exc) -> None:
    if "\n" in str(exc):
        raise AssertionError(f"multi-line SnnirError: {exc!r}") from exc


def pipeline(path: str, scratch: str, with_check: bool, seed: int) -> list[str]:
    """The stages each mutant passes; raise anything but SnnirError (the API) or print a traceback (CLI)."""
    import snnir
    from snnir.cli.main import main as cli
    from snnir.errors import SnnirError
    from snnir.limits import Limits

    limits = Limits(time_s=10.0, memory_bytes=512 << 20, data_bytes=256 << 20, state_bytes=256 << 20)
    stages: list[str] = []
    os.environ.update({"SNNIR_TIME_LIMIT_S": "10", "SNNIR_MEMORY_LIMIT_BYTES": str(512 << 20),
                       "SNNIR_DATA_LIMIT_BYTES": str(256 << 20), "SNNIR_STATE_LIMIT_BYTES": str(256 << 20),
                       "SNNIR_DEBUG": "1"})
    inputs = None
    try:
        graph = snnir.read(path, repair=True, limits=limits)
        stages.append("read")
        snnir.verify(graph)
        stages.append("verify")
        inputs = input_arrays(graph)
        stages += simulated(graph, limits, inputs)
        for variant in range(GRAPH_MUTANTS):
            changed = graph_mutant(graph, np.random.default_rng([seed, variant]))
            if changed is not None:
                stages.append(f"graph[{changed[1]}]")
                try:
                    snnir.verify(changed[0])
                    stages += simulated(changed[0], limits, None)
                except SnnirError as exc:
                    one_line(exc)
                    stages.append("graph-refused")
    except SnnirError as exc:
        one_line(exc)
        stages.append("refused")
    argvs = [["verify", path], ["inspect", path, "--repair"]]
    if inputs is not None and len(inputs) == 1:
        np.save(f"{scratch}/x.npy", next(iter(inputs.values())))
        argvs.append(["run", path, "--input", f"{scratch}/x.npy", "-o", f"{scratch}/out.npz", "--record"])
    if with_check:
        argvs.append(["check", path, "--repair"] if inputs is None else
                     ["check", path, "--repair", "--input", f"{scratch}/x.npy"])
    for argv in argvs:
        err = io.StringIO()
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            status = cli(argv)
        if status not in (0, 1, 2) or err.getvalue().count("error:") > 1:
            raise AssertionError(f"snnir {argv[0]}: status {status}, stderr {err.getvalue()!r}")
        stages.append(f"cli-{argv[0]}:{status}")
    return stages


def worker(tasks, results) -> None:
    warnings.simplefilter("ignore")
    while True:
        task = tasks.get()
        if task is None:
            return
        path, scratch, with_check, seed = task
        try:
            results.put(("ok", pipeline(path, scratch, with_check, seed)))
        except BaseException:  # noqa: BLE001 - the finding itself
            results.put(("bug", traceback.format_exc()))


class Pool:
    """One worker process, restarted after a hang or a crash."""

    def __init__(self) -> None:
        self.context = mp.get_context("spawn")
        self.start()

    def start(self) -> None:
        self.tasks, self.results = self.context.Queue(), self.context.Queue()
        self.process = self.context.Process(target=worker, args=(self.tasks, self.results), daemon=True)
        self.process.start()

    def run(self, path: str, scratch: str, with_check: bool, seed: int, timeout: float) -> tuple[str, object]:
        self.tasks.put((path, scratch, with_check, seed))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return self.results.get(timeout=0.5)
            except Exception:  # noqa: BLE001 - queue.Empty
                if not self.process.is_alive():
                    code = self.process.exitcode
                    self.start()
                    return "crash", f"worker died with exit code {code}"
        self.process.kill()
        self.process.join()
        self.start()
        return "hang", f"no result in {timeout:.0f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--out", default="/tmp/snnir-fuzz")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    (out / "findings").mkdir(parents=True, exist_ok=True)
    sources = sorted(FIXTURES.rglob("*.nir"))
    rng = np.random.default_rng(args.seed)
    pool = Pool()
    # the first case pays the imports
    counts: dict[str, int] = {}
    stop = time.monotonic() + 60 * args.minutes
    case = 0
    log = open(out / "log.jsonl", "a")
    while time.monotonic() < stop:
        source = sources[case % len(sources)]
        scratch = out / "scratch"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        path, kind = mutant(source, scratch / "m.nir", rng)
        timeout = HANG_S + (60.0 if case == 0 else 0.0) + (40.0 if case % 5 == 0 else 0.0)
        outcome, detail = pool.run(str(path), str(scratch), case % 5 == 0, args.seed * 1_000_003 + case, timeout)
        counts[outcome] = counts.get(outcome, 0) + 1
        record = {"case": case, "source": source.name, "kind": kind, "outcome": outcome,
                  "detail": detail if outcome != "ok" else " ".join(detail)}
        log.write(json.dumps(record) + "\n")
        log.flush()
        if outcome != "ok":
            shutil.copy(path, out / "findings" / f"case{case}_{source.stem}.nir")
            (out / "findings" / f"case{case}_{source.stem}.txt").write_text(f"{source}\n{kind}\n{detail}")
            print(f"case {case} {source.name} {kind}: {outcome}: {str(detail).strip().splitlines()[-1]}", flush=True)
        case += 1
        if case % 50 == 0:
            print(f"{case} cases: {counts}", flush=True)
    pool.tasks.put(None)
    print(f"done: {case} cases: {counts}", flush=True)
    return 1 if set(counts) - {"ok"} else 0


if __name__ == "__main__":
    sys.exit(main())
