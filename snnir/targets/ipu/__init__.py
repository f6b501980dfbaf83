"""The Graphcore IPU target: PopART custom ops, a poptorch module and an ONNX model.

``compile_ipu(graph, out_dir)`` writes, for the fused neuron steps the graph
needs (see :mod:`snnir.targets.ipu.kernels`): C++ PopART custom ops and Poplar
codelets with a Makefile (built against the Poplar SDK where present), the
ONNX step model with its manifest (:mod:`snnir.targets.ipu.onnx_export`),
``graph.nir`` and ``ipu_model.py``, a poptorch-ready module that falls back
to the snnir torch target without poptorch. Nothing here needs the SDK.
"""

from __future__ import annotations

import pprint
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from snnir.errors import SnnirError
from snnir.ir.graph import Graph
from snnir.targets.ipu import codegen
from snnir.targets.ipu.kernels import DOMAIN, DOMAIN_VERSION, SPIKE_OP, SURROGATES
from snnir.targets.ipu.onnx_export import FILES as ONNX_FILES, export, require_out_dir
from snnir.targets.ipu.onnx_export import write as write_onnx

PYTHON_MODULE = "ipu_model.py"
GRAPH_FILE = "graph.nir"
#: The files :func:`compile_ipu` puts in its directory.
FILES = tuple(sorted([*ONNX_FILES, GRAPH_FILE, PYTHON_MODULE, "Makefile", codegen.MATH_HEADER, codegen.CONFIG_HEADER,
                      codegen.CODELETS, codegen.CUSTOM_OPS]))


@dataclass(frozen=True)
class IpuArtifacts:
    """What :func:`compile_ipu` wrote."""

    out_dir: Path
    files: tuple[str, ...]
    custom_ops: tuple[str, ...]

    def load_module(self) -> Any:
        """Import the generated ``ipu_model.py`` (a fresh module object each call)."""
        import importlib.util

        spec = importlib.util.spec_from_file_location(f"snnir_ipu_model_{id(self)}", self.out_dir / PYTHON_MODULE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def compile_ipu(
    graph: Graph, out_dir: Any = None, *, surrogate: str | None = None, slope: float | None = None,
    precision: str = "fp32",
) -> IpuArtifacts:
    """Write the IPU build of ``graph`` into ``out_dir`` (created if missing). ``surrogate``
    ``None``: the one the graph's neurons were traced with where their ops record it, else
    ``"fast_sigmoid"`` (as the torch target)."""
    from snnir.targets.torch.surrogate import DEFAULT_SLOPES, Surrogate, traced_surrogate  # imports torch

    if surrogate is None:
        traced = traced_surrogate(graph) or Surrogate()
        surrogate, slope = traced.name, traced.slope if slope is None else slope
    if surrogate not in SURROGATES:
        raise SnnirError(f"unknown surrogate '{surrogate}' (known: {', '.join(SURROGATES)})")
    slope = DEFAULT_SLOPES[surrogate] if slope is None else slope
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not slope > 0:
        raise SnnirError(f"surrogate slope must be a positive number, got {slope!r}")
    require_out_dir(out_dir, "IPU")
    exported = export(graph, precision=precision)
    kernels = [exported.kernels[name] for name in sorted(exported.kernels)]
    library = {
        "library": codegen.LIBRARY, "build": "make (needs the Poplar SDK)",
        "surrogate": {"name": surrogate, "slope": float(slope)},
    }
    out = write_onnx(exported, out_dir, ipu=library)
    custom = {k.name: (list(k.input_names), list(k.output_names)) for k in kernels}
    custom[SPIKE_OP] = (["x"], ["y"])
    sources = {
        codegen.MATH_HEADER: codegen.math_header(),
        codegen.CONFIG_HEADER: codegen.config_header(surrogate, slope),
        codegen.CODELETS: codegen.codelets(kernels),
        codegen.CUSTOM_OPS: codegen.custom_ops(kernels),
        "Makefile": codegen.makefile(),
        PYTHON_MODULE: _python_module(surrogate, float(slope), custom),
    }
    for name, text in sources.items():
        (out / name).write_text(text)
    from snnir.ir.nir_io import write as write_nir

    write_nir(graph, out / GRAPH_FILE, keep_extensions=True)  # read back by snnir alone
    return IpuArtifacts(out, FILES, tuple(custom))


def _python_module(surrogate: str, slope: float, custom: dict) -> str:
    template = resources.files("snnir.targets.ipu").joinpath("templates", "ipu_model.py.tmpl").read_text()
    values = {
        "@LIBRARY@": codegen.LIBRARY, "@DOMAIN@": DOMAIN, "@DOMAIN_VERSION@": str(DOMAIN_VERSION),
        "@SURROGATE@": surrogate, "@SLOPE@": repr(slope),
        "@CUSTOM_OPS@": pprint.pformat({k: tuple(map(tuple, v)) for k, v in custom.items()}, width=100),
    }
    for key, value in values.items():
        template = template.replace(key, value)
    return template


__all__ = ["compile_ipu", "IpuArtifacts"]
