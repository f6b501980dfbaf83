"""A Norse model in; a trainable torch module and an IPU build out.

Builds a small Norse network (Linear -> LIFBoxCell -> Linear -> LIFCell), writes it with
Norse's own ``to_nir``, reads it with ``snnir.read(..., dialect="norse")`` (which undoes
Norse's ``tau * dt`` and its current-jump convention), checks that the reference
interpreter reproduces Norse's spikes, then compiles the graph for torch (trainable)
and for the IPU (an ONNX model plus Poplar custom-op sources written to a folder).

    python examples/import_from_norse.py [--out-dir build/norse_ipu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np


def norse_network(torch, norse):
    torch.manual_seed(0)
    net = norse.SequentialState(
        torch.nn.Linear(8, 16),
        norse.LIFBoxCell(norse.LIFBoxParameters(tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(0.1))),
        torch.nn.Linear(16, 4),
        norse.LIFCell(norse.LIFParameters(tau_mem_inv=torch.tensor(80.0), tau_syn_inv=torch.tensor(150.0),
                                          v_th=torch.tensor(0.1))),
    ).double()
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.abs_()
    return net


def main(argv: list[str] | None = None) -> int:
    """0 when Norse's spikes were reproduced (and each available target compiled)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("build") / "norse_ipu", help="IPU build folder")
    args = parser.parse_args(argv)
    try:
        import nir
        import norse.torch as norse
        import torch
    except ImportError as exc:
        print(f"needs norse and torch (scripts/install_interop.sh): {exc}")
        return 1
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    import snnir
    from snnir.peers import nir_compat  # nirtorch 2.x on nir 1.0.4

    nir_compat()
    net = norse_network(torch, norse)
    x = (torch.rand(50, 2, 8, generator=torch.Generator().manual_seed(1)) < 0.3).double() * 2
    with torch.no_grad():
        state, spikes = None, []
        for t in range(len(x)):
            out, state = net(x[t], state)
            spikes.append(out.numpy())
    theirs = np.stack(spikes)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "norse.nir"
        nir.write(path, norse.to_nir(net, x[0], dt=1e-3))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = snnir.read(path, dialect="norse")
    ours = snnir.run(graph, x.numpy())[graph.outputs[0]]
    status = 0 if (ours == theirs).all() else 1
    print(f"reference interpreter vs Norse: spikes identical: {bool((ours == theirs).all())} "
          f"({int(theirs.sum())} spikes)")

    try:
        module = snnir.compile(graph, "torch", trainable="all", dtype=torch.float64)
    except snnir.SnnirError as exc:
        print(f"torch target unavailable: {exc}")
    else:
        compiled = module(x).detach().numpy()
        print(f"torch module: {sum(p.numel() for p in module.parameters())} trainable parameters, "
              f"spikes equal to the interpreter: {bool((compiled == ours).all())}")
    try:
        artifacts = snnir.compile(graph, "ipu", out_dir=args.out_dir)
    except (snnir.SnnirError, ImportError) as exc:
        print(f"IPU target unavailable: {exc}")
    else:
        print(f"IPU build written to {args.out_dir}: {', '.join(artifacts.files)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
