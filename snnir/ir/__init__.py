"""The IR core: ops, graphs, time semantics, shapes and the verifier.

Imports no torch, h5py or poptorch; NIR file I/O lives in :mod:`snnir.ir.nir_io`,
(a package), which depends on this core and is imported on demand.
"""

from snnir.errors import SnnirError
from snnir.ir.graph import Edge, Graph
from snnir.ir.ops import *  # noqa: F403 - registers every standard op
from snnir.ir.ops import STANDARD_OPS
from snnir.ir.registry import OPS, op_class, register_op
from snnir.ir.schedule import Schedule, schedule
from snnir.ir.semantics import DEFAULT_DT, Semantics
from snnir.ir.shapes import Shapes, infer_shapes
from snnir.ir.verify import Report, verify

__all__ = [
    "SnnirError", "Edge", "Graph", "OPS", "op_class", "register_op", "Schedule", "schedule",
    "DEFAULT_DT", "Semantics", "Shapes", "infer_shapes", "Report", "verify", "STANDARD_OPS",
] + [cls.__name__ for cls in STANDARD_OPS]

import snnir.ir.ops.fused  # noqa: E402,F401 - registers snnir extension ops (after the core loads)
import snnir.ir.ops.pool  # noqa: E402,F401 - registers the max pools (extension ops)
import snnir.ir.ops.norm  # noqa: E402,F401 - registers BatchNorm (an extension op)
import snnir.ir.ops.probe  # noqa: E402,F401 - registers the state probe (extension op)
