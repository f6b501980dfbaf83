"""Every op family; importing this registers all standard ops."""

from snnir.ir.ops.base import Op, Shape, param
from snnir.ir.ops.conv import AvgPool2d, Conv1d, Conv2d, SumPool2d
from snnir.ir.ops.delay import Delay
from snnir.ir.ops.io import Input, Output
from snnir.ir.ops.linear import Affine, Flatten, Linear, Scale
from snnir.ir.ops.neuron import IF, LI, LIF, CubaLI, CubaLIF, I, Neuron, Threshold
from snnir.ir.ops.subgraph import Subgraph
from snnir.ir.registry import register_op

STANDARD_OPS = (
    Input, Output, Affine, Linear, Scale, Flatten, Conv1d, Conv2d, SumPool2d, AvgPool2d,
    Delay, Threshold, I, IF, LI, LIF, CubaLI, CubaLIF, Subgraph,
)
for _cls in STANDARD_OPS:
    register_op(_cls)

__all__ = [cls.__name__ for cls in STANDARD_OPS] + ["Op", "Shape", "param", "Neuron", "STANDARD_OPS"]
