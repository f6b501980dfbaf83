"""Import a NIR file into Lava and simulate it on the CPU: run by ``snnir.peers.run_real(..., "lava")``
as a script in a Python that has ``lava-nc`` (Python 3.10; never imported by snnir itself).

Usage: ``python lava_runner.py FILE.nir X.npy OUT.npy OPTIONS_JSON``. ``X`` is ``[T, B, n]``;
``OUT`` the output node's ``[T, B, m]`` (float64). ``OPTIONS_JSON``: ``dt`` (default 1e-4) and
``fixed_pt`` (default true), the NIR paper converter's ``ImportConfig`` fields. A file it cannot
import exits with status 3 and one line on stderr.

The conversion follows the NIR paper's Lava converter (neuromorphs/NIR ``paper/01_lif/_lava_nir.py``):

- ``Affine`` -> ``Dense(weights=W)``; a non-zero bias is refused (Lava's ``Dense`` has none).
- ``LIF`` -> ``Dense(dt/tau)`` into ``LIF(du=1, dv=dt/tau, vth=v_threshold, no bias)``: ``r``
  and ``v_leak`` are not read. The paper's single-neuron converter builds ``LIF(shape=(1,))``
  with a ``1 x 1`` weight; here the LIF takes the node's shape and the weight is ``dt/tau``
  times the identity. Lava's ``LIF`` holds one ``dv`` and one ``vth``: a node whose ``tau`` or
  ``v_threshold`` differ across neurons is refused.
- ``fixed_pt``: ``dv = int(dt/tau * 4095)``, ``du = 4095``, ``vth = int(v_th * 131071) >> 9``,
  weights ``int(w * 256)``, run with ``Loihi2SimCfg(select_tag="fixed_pt")``; otherwise floats
  with ``select_tag="floating_pt"``.
- Edges from the ``Input`` mark start nodes (fed by a ``RingBuffer`` of ``x``), edges to the
  ``Output`` end nodes (one is read: a LIF's spikes or a Dense's accumulation). Every other
  node type is refused. Each sample runs in its own simulation.
"""

from __future__ import annotations

import json
import sys

import numpy as np

CONVERTER = "the NIR paper's Lava converter"


class Unreadable(Exception):
    """The converter cannot import the file."""


def _single(values, field: str, name: str) -> float:
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0 or np.any(values != values[0]):
        raise Unreadable(f"node '{name}': Lava's LIF holds one {field} for all its neurons; they differ here")
    return float(values[0])


def _processes(name: str, node, dt: float, fixed: bool):
    """The Lava processes for one NIR node: ``(first, last)`` (the ones taking input and giving output)."""
    import nir
    from lava.proc.dense.process import Dense
    from lava.proc.lif.process import LIF

    if isinstance(node, nir.Affine):
        if np.any(np.asarray(node.bias) != 0):
            raise Unreadable(f"node '{name}': Affine with a non-zero bias (Lava's Dense has none)")
        weight = np.asarray(node.weight, dtype=np.float64)
        dense = Dense(weights=(weight * 256).astype(np.int32) if fixed else weight)
        return dense, dense
    if isinstance(node, nir.LIF):
        n = int(np.asarray(node.tau).size)
        gain = dt / _single(node.tau, "tau", name)
        vth = _single(node.v_threshold, "v_threshold", name)
        du, dv, weight = 1.0, gain, np.eye(n) * gain
        if fixed:
            du, dv, vth = int(du * 4095), int(dv * 4095), int(vth * 131071) >> 9
            weight = (weight * 256).astype(np.int32)
        lif = LIF(shape=(n,), du=du, dv=dv, vth=vth, bias_mant=0, bias_exp=0)
        dense = Dense(weights=weight)
        dense.a_out.connect(lif.a_in)
        return dense, lif
    raise Unreadable(f"node '{name}': no Lava process for {type(node).__name__}")


def _out_port(process):
    from lava.proc.dense.process import Dense

    return process.a_out if isinstance(process, Dense) else process.s_out


def _network(graph, dt: float, fixed: bool):
    """Build the processes; ``(start processes, end process)``."""
    import nir

    built = {name: _processes(name, node, dt, fixed) for name, node in graph.nodes.items()
             if not isinstance(node, (nir.Input, nir.Output))}
    starts, ends = [], []
    for src, dst in graph.edges:
        if src not in graph.nodes or dst not in graph.nodes:
            raise Unreadable(f"edge '{src}' -> '{dst}' names no node of this graph")
        if isinstance(graph.nodes[src], nir.Input):
            starts.append(dst)
        elif isinstance(graph.nodes[dst], nir.Output):
            ends.append(src)
        else:
            _out_port(built[src][1]).connect(built[dst][0].s_in)
    if not starts or len(ends) != 1 or any(name not in built for name in starts + ends):
        raise Unreadable("the runner reads one Input feeding nodes and one node feeding the Output")
    return [built[name][0] for name in starts], built[ends[0]][1]


def run(path: str, x: np.ndarray, dt: float = 1e-4, fixed_pt: bool = True) -> np.ndarray:
    """The end node's output on each sample of ``x`` (``[T, B, n]``), ``[T, B, m]``."""
    import nir
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    try:
        graph = nir.read(path)
    except Exception as exc:  # noqa: BLE001 - nir's failure to read the file is the converter's
        raise Unreadable(f"nir.read cannot load it: {type(exc).__name__}: {str(exc)[:200]}") from None
    steps, outs = x.shape[0], []
    for b in range(x.shape[1]):
        starts, end = _network(graph, dt, fixed_pt)
        source = Source(data=np.ascontiguousarray(x[:, b].reshape(steps, -1).T))
        for process in starts:
            source.s_out.connect(process.s_in)
        port = _out_port(end)
        sink = Sink(shape=port.shape, buffer=steps)
        port.connect(sink.a_in)
        sink.run(condition=RunSteps(num_steps=steps),
                 run_cfg=Loihi2SimCfg(select_tag="fixed_pt" if fixed_pt else "floating_pt"))
        try:
            outs.append(np.asarray(sink.data.get(), dtype=np.float64).T)
        finally:
            sink.stop()
    return np.stack(outs, axis=1)


def main(argv: list[str]) -> int:
    path, x_path, out_path, options = argv
    options = json.loads(options)
    x = np.load(x_path, allow_pickle=False)
    try:
        out = run(path, x, dt=float(options.get("dt", 1e-4)), fixed_pt=bool(options.get("fixed_pt", True)))
    except Unreadable as exc:
        print(f"{CONVERTER}: {exc}", file=sys.stderr)
        return 3
    np.save(out_path, out, allow_pickle=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
