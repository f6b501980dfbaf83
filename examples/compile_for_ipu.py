"""Compile snnTorch's IPU-tutorial network for a Graphcore IPU.

The network of snnTorch's "Accelerating snnTorch on IPUs" tutorial: 784-1000-10
with ``snn.Leaky(beta=0.9)`` and 25 steps. The tutorial feeds the same static
image at every step; here the time loop indexes ``x[t]`` (the image repeated
25 times), the form snnir.trace follows. The script traces it, compiles it
for the IPU into a temporary directory, lists what was written, and runs the
generated module and model.onnx (with onnxruntime). Without poptorch (not on PyPI; it ships with the Poplar SDK)
that module runs on CPU through the snnir torch target and says so; its
spikes are compared with snnTorch's own forward.

    python examples/compile_for_ipu.py [OUT_DIR]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import snntorch as snn
import torch

import snnir
from snnir.targets.ipu.onnx_export import simulate

STEPS, BATCH, N_IN, N_HID, N_OUT = 25, 4, 784, 1000, 10


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(N_IN, N_HID)
        self.lif1 = snn.Leaky(beta=0.9)
        self.fc2 = torch.nn.Linear(N_HID, N_OUT)
        self.lif2 = snn.Leaky(beta=0.9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spikes = []
        for t in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[t]), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spikes.append(spk2)
        return torch.stack(spikes)


def main(out_dir: Path) -> int:
    torch.manual_seed(0)
    net = Net()
    image = torch.rand(BATCH, N_IN)
    x = image.expand(STEPS, BATCH, N_IN).contiguous()
    graph = snnir.trace(net, x)
    print(f"traced: {graph}")
    artifacts = snnir.compile(graph, target="ipu", out_dir=out_dir)
    print(f"wrote to {out_dir}:")
    for name in artifacts.files:
        print(f"  {name:24s} {(out_dir / name).stat().st_size:>10,d} bytes")
    print(f"custom ops (domain ai.snnir): {', '.join(artifacts.custom_ops)}")
    print("build the library on a machine with the Poplar SDK:  make -C", out_dir)

    module = artifacts.load_module().build_module()
    with torch.no_grad():
        ours = module(x)
        theirs = net(x)
    same = torch.equal(ours, theirs)
    print(f"generated module ({type(module).__name__}): {int(ours.sum())} output spikes; "
          f"identical to snnTorch's forward: {same}")
    stepped = simulate(out_dir, x.numpy())["output"]
    same_onnx = bool((torch.from_numpy(stepped).float() == theirs).all())
    print(f"model.onnx stepped by onnxruntime: identical to snnTorch's forward: {same_onnx}")
    return 0 if same and same_onnx else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp)))
