"""NIR file I/O: ``read``/``load`` NIR HDF5 files into a :class:`Graph`, ``write`` them back.

Invariants:
- our files are plain NIR 1.0 (``nir.read`` loads them); what NIR cannot say
  (semantics, trainable names, exact shapes and dtypes) travels in each node's
  metadata under the one key ``snnir`` (see :mod:`snnir.ir.nir_io.encoding`),
  so read(write(g)) == g;
- where a file states no semantics, defaults apply in this order: file-less
  defaults (dt = :data:`DEFAULT_DT`, reset ``"zero"``), the dialect's
  ``read_defaults``, then the caller's ``dt``/``reset``/``semantics``; every
  node they touched is listed in :class:`ReadReport`;
- a file with no ``snnir`` record at all (another tool wrote it) states no trainable flags: the
  weights and biases of Linear, Affine, Conv and Scale nodes train, neuron parameters do not, as
  in torch.nn (:func:`torch_nn_trainable`); our own files' records rule;
- every read graph has passed :func:`verify`; bad files raise a one-line
  :class:`SnnirError` naming the node;
- reading is held to :class:`snnir.limits.Limits` (time, memory, data, nesting):
  libhdf5 first parses a file in a child process (:mod:`snnir.ir.nir_io.tree`),
  so its crash or hang is an error here; bytes this process wrote or already
  parsed safely are parsed in-process;
- writing goes to a temporary file in the target directory that replaces the
  target only once complete: on error the old file is untouched; a symlink is kept
  (its target replaced), a device or FIFO written into (:mod:`snnir.atomic`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import h5py
import numpy as np

from snnir.atomic import replace_atomically
from snnir.errors import SnnirError, warn
from snnir.ir.graph import Graph
from snnir.ir.dialect import DIALECTS, FILE_PREDICTORS, Dialect, get_dialect, map_neurons
from snnir.ir.ops import Affine, Conv1d, Conv2d, Linear, Neuron, Output, Scale, Subgraph
from snnir.ir.ops.base import Op
from snnir.ir.ops.fused import FUSED_FROM, FusedLayerNeuron
from snnir.ir.ops.norm import BatchNorm
from snnir.ir.ops.pool import MAX_POOLS
from snnir.ir.ops.probe import StateProbe
from snnir.ir.registry import is_extension
from snnir.ir.semantics import DEFAULT_DT, Semantics
from snnir.ir.shapes import infer_shapes
from snnir.ir.verify import is_name_list, verify
from snnir.ir.nir_io.encoding import SNNIR_KEY
from snnir.ir.nir_io.batchnorm import fold_batchnorms
from snnir.ir.nir_io.max_pool import restore_max_pools, spell_max_pools
from snnir.ir.nir_io.reader import Reader
from snnir.ir.nir_io.tree import file_tree, is_path, trust_written
from snnir.ir.nir_io.writer import NIR_VERSION, check_written_size, write_file
from snnir.ir.memory import resolve_limits
from snnir.limits import Limits, current as current_limits

#: How ``write`` expresses an extension op in standard NIR: op class -> fn(op) -> Graph of
#: standard ops with one Input and one Output. The node becomes a nested NIRGraph of the same
#: name (so it reads back as a :class:`Subgraph`). Ops missing here fall back to their
#: reference-interpreter expansion.
LOWER_EXTENSION: dict[type[Op], Callable[[Op], Graph]] = {}

#: Where a file states no semantics: dt of the NIR paper, reset to v_reset as NIR >= 1.0 says.
FILELESS_DEFAULTS: Mapping[str, Any] = {"dt": DEFAULT_DT, "reset": "zero"}

__all__ = ["read", "load", "read_unchecked", "write", "as_written", "split_fused", "ReadReport", "torch_nn_trainable", "TORCH_NN_TRAINABLE", "LOWER_EXTENSION", "FILELESS_DEFAULTS", "SNNIR_KEY",
           "NIR_VERSION"]


@dataclass
class ReadReport:
    """What ``load`` assumed (``defaults_applied``), noticed (``warnings``) or fixed (``repairs``),
    and the file's root ``version`` string (first 40 characters; None where it holds none)."""

    defaults_applied: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    version: str | None = None


def read(path: Any, dt: float | None = None, reset: str | None = None, *, dialect: str | None = None,
         repair: bool = False, semantics: Semantics | Mapping[str, Any] | None = None,
         limits: Limits | None = None) -> Graph:
    """Read a NIR file into a verified graph; warns once (:class:`SnnirWarning`) with what it assumed.

    ``semantics`` (a :class:`Semantics`, every field stated, or a mapping of some fields) applies
    where the file states none; ``limits`` bound the cost of reading (default: :func:`snnir.limits.current`)."""
    graph, report = load(path, dt=dt, reset=reset, dialect=dialect, repair=repair, semantics=semantics,
                         limits=limits)
    by_default: dict[str, list[str]] = {}
    for line in report.defaults_applied:
        node, _, what = line.partition(": ")
        by_default.setdefault(what, []).append(node)
    lines = (
        [f"default applied ({what}) to nodes {', '.join(nodes)}" for what, nodes in by_default.items()]
        + [f"repaired: {r}" for r in report.repairs]
        + report.warnings
    )
    if lines:
        warn(f"reading {os.fspath(path) if is_path(path) else 'file'}: " + "; ".join(lines))
    return graph


def load(path: Any, dt: float | None = None, reset: str | None = None, *, dialect: str | None = None,
         repair: bool = False, semantics: Semantics | Mapping[str, Any] | None = None,
         limits: Limits | None = None) -> tuple[Graph, ReadReport]:
    """Read a NIR file; return the verified graph and a :class:`ReadReport`. See :func:`read`."""
    limits = resolve_limits(limits)
    if isinstance(semantics, Semantics):
        semantics = semantics.to_dict()
    if semantics is not None and not isinstance(semantics, Mapping):
        raise SnnirError(f"semantics must be a Semantics or a mapping of its fields to values (e.g. "
                         f"{{'reset': 'zero'}}), got {type(semantics).__name__}")
    chosen = get_dialect(dialect)
    caller = {k: v for k, v in {"dt": dt, "reset": reset, **(semantics or {})}.items() if v is not None}
    sem, sources = _default_semantics(chosen.read_defaults, caller)
    reader = Reader(sem, sources, {k: getattr(sem, k) for k in caller}, repair, limits)
    graph = restore_max_pools(_read_file(path, reader, limits), reader.warnings)
    _check_param_bytes(graph, limits)
    report = ReadReport(reader.defaults, reader.warnings, reader.repairs, reader.version)
    graph = _normalise_outputs(graph, report.warnings)
    graph = _dialect_on_read(chosen, graph, report, dt_given="dt" in caller)
    if not reader.found_record:
        graph = torch_nn_trainable(graph)
    report.warnings.extend(verify(graph).warnings)
    return graph, report


#: The parameters torch.nn trains by default, per op type with weights.
TORCH_NN_TRAINABLE: Mapping[type[Op], tuple[str, ...]] = {
    Linear: ("weight",), Affine: ("weight", "bias"), Conv1d: ("weight", "bias"), Conv2d: ("weight", "bias"),
    Scale: ("scale",),
}


def torch_nn_trainable(graph: Graph) -> Graph:
    """``graph`` with the weights and biases of every layer trainable (nested graphs included)."""
    nodes = {}
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph):
            op = op.replace(graph=torch_nn_trainable(op.graph))
        elif type(op) in TORCH_NN_TRAINABLE:
            op = op.replace(trainable=TORCH_NN_TRAINABLE[type(op)])
        nodes[name] = op
    return graph.replace(nodes=nodes)


def read_unchecked(path: Any, *, repair: bool = False) -> tuple[Graph, ReadReport]:
    """The file's nodes as written (plain-NIR defaults, no dialect), neither normalised nor
    verified: for looking at what a file holds (e.g. who wrote it), never for running it."""
    limits = resolve_limits(None)
    sem, sources = _default_semantics({}, {})
    reader = Reader(sem, sources, {}, repair, limits)
    graph = _read_file(path, reader, limits)
    return graph, ReadReport(reader.defaults, reader.warnings, reader.repairs, reader.version)


def _dialect_on_read(dialect: Dialect, graph: Graph, report: ReadReport, dt_given: bool) -> Graph:
    """Apply the dialect only to neurons whose semantics the file did not state:
    a file snnir wrote already means exactly what its records say. Where the dialect's files
    determine ``dt`` and the caller gave none, those neurons take the file's. A note of
    ``read_notes`` is added where a neuron took its field from the dialect."""
    defaulted = {line.partition(": ")[0] for line in report.defaults_applied}
    as_read = dict(graph.walk())
    neuron_lines = [line for line in report.defaults_applied if isinstance(as_read.get(line.partition(": ")[0]), Neuron)]
    for name, note in dialect.read_notes.items():
        if any(re.search(rf"\b{name}=[^,]* \(dialect\)", line) for line in neuron_lines):
            report.warnings.append(note)
    if dialect.dt_from_file is not None and not dt_given:
        graph = map_neurons(graph, lambda path, op: _dt_from_file(dialect, path, op, report)
                            if path in defaulted else op)
    adjusted = dialect.on_read(graph, report.warnings)
    return map_neurons(
        adjusted,
        lambda path, op: op if path in defaulted or path not in as_read else as_read[path],
    )


def _dt_from_file(dialect: Dialect, path: str, op: Any, report: ReadReport) -> Any:
    """``op`` at the ``dt`` its parameters determine in ``dialect``'s files; its line in
    ``report.defaults_applied`` then names that ``dt`` and where it came from."""
    dt = dialect.dt_from_file(op)
    if dt is None:
        return op
    stated = f"dt={op.sem.dt!r} (dialect)"
    recovered = f"dt={dt!r} (from the file's parameters, as {dialect.name} reads it)"
    report.defaults_applied[:] = [line.replace(stated, recovered) if line.partition(": ")[0] == path else line
                                  for line in report.defaults_applied]
    return op.replace(sem=op.sem.with_(dt=dt))


def write(graph: Graph, path: Any, *, dialect: str | None = None, keep_extensions: bool = False,
          binary_inputs: Any = ()) -> None:
    """Write ``graph`` as a NIR file that ``nir.read`` loads and :func:`read` restores exactly.

    Extension ops are written lowered to standard NIR (see :data:`LOWER_EXTENSION`) unless
    ``keep_extensions``, which writes their ``snnir.*`` type and fields (read back exactly).
    Max pools of 0/1 spikes (``binary_inputs`` names Inputs that carry them) are written in
    standard NIR, others as extension ops with a warning (see :mod:`~snnir.ir.nir_io.max_pool`);
    a BatchNorm is folded into the layer before it, with a warning, where it can be, else written
    as an extension op (see :mod:`~snnir.ir.nir_io.batchnorm`); a library dialect refuses the
    extension ops kept.
    """
    if not isinstance(graph, Graph):
        raise SnnirError(f"write needs a Graph, got {type(graph).__name__}")
    if not is_path(path):
        raise SnnirError(f"write needs a file path (str or os.PathLike), got {type(path).__name__}")
    notes: list[str] = []
    graph = as_written(graph, dialect=dialect, keep_extensions=keep_extensions, notes=notes,
                       binary_inputs=binary_inputs)
    try:
        shapes = infer_shapes(graph)
    except SnnirError as exc:
        if dialect not in (None, "nir"):  # a peer's importer needs every node's shape
            raise SnnirError(f"cannot write a file for {dialect}: {exc}") from None
        shapes = None  # plain NIR may leave shapes unstated
    if dialect not in (None, "nir"):
        notes += refuse_unimported(graph, get_dialect(dialect))
    check_written_size(graph, shapes, current_limits())
    target = os.fspath(path)

    def write_to(temp: str) -> None:
        with h5py.File(temp, "w") as file:
            write_file(file, graph, shapes)
        trust_written(temp)

    replace_atomically(target, write_to)
    if notes:
        warn(f"writing {target}: " + "; ".join(notes))


def refuse_unimported(graph: Graph, dialect: Dialect) -> list[str]:
    """Refuse a file for ``dialect`` (``graph`` as written) that its library's importer, as
    ``imported_by`` describes it (a registered ``FILE_PREDICTORS`` entry), cannot read: it would
    fail, or drop a node without a word. Returns the notes for the write: where snnir cannot state
    exactly what the library runs (``imported_by``'s refusals that end "not predicted", such as a
    membrane floor), that the spikes there may differ; for a dialect that writes plain NIR (no
    ``on_write`` of its own says it), what the importer changes."""
    if dialect.imported_by is None or not FILE_PREDICTORS:
        return []
    changes: list[str] = []
    try:
        FILE_PREDICTORS[0](graph, dialect.name, changes)
    except SnnirError as exc:
        if not exc.reason.endswith("not predicted"):
            raise SnnirError(f"not written for {dialect.name}: {exc.reason}", exc.node) from None
        where = f"node '{exc.node}': " if exc.node is not None else ""
        return [f"{dialect.name}: {where}{exc.reason[: -len('not predicted')]}its spikes may differ from this "
                "graph's (snnir cannot state exactly what it runs)"]
    if dialect.on_write is not DIALECTS["nir"].on_write:
        return []
    return [f"{dialect.name}: {change}" for change in changes]


def as_written(graph: Graph, *, dialect: str | None = None, keep_extensions: bool = False,
               notes: list[str] | None = None, binary_inputs: Any = ()) -> Graph:
    """The graph :func:`write` puts in the file (what reading it back gives, up to defaults):
    the dialect's form, then, unless ``keep_extensions``, fused nodes split back into their named
    layer and neuron (:func:`split_fused`), BatchNorms folded into the layer before them where they
    can be and the others kept (:mod:`~snnir.ir.nir_io.batchnorm`), max pools of spikes in their
    standard form and the others kept (:mod:`~snnir.ir.nir_io.max_pool`), state probes kept (NIR has
    no form for them; a library dialect refuses them, and the BatchNorms and max pools kept), and
    other extension ops lowered to standard NIR."""
    notes = [] if notes is None else notes
    if keep_extensions:
        norms = [path for path, op in graph.walk() if isinstance(op, BatchNorm)]
    else:
        graph, folded, norms = fold_batchnorms(graph)
        if folded:
            notes.append("BatchNorm folded into the layer before it (standard NIR; the folded layer rounds "
                         "otherwise, so a reader's spikes may differ where a membrane comes within rounding of "
                         "its threshold): "
                         + ", ".join(repr(p) for p in folded))
    if norms and dialect not in (None, "nir"):
        raise SnnirError(f"the {dialect} dialect cannot write a BatchNorm that does not directly follow one Linear, "
                         "Affine or convolution feeding only it: NIR has no BatchNorm and other libraries cannot read "
                         "snnir.BatchNorm ops (write plain NIR, or place it after such a layer)", norms[0])
    probes = [path for path, op in graph.walk() if isinstance(op, StateProbe)]
    if probes and dialect not in (None, "nir"):
        raise SnnirError(f"the {dialect} dialect cannot write a neuron's state read as a value (snnir.StateProbe, "
                         "a returned membrane or current): NIR has no such op and other libraries cannot read it "
                         "(write plain NIR, or return only spikes)", probes[0])
    if dialect not in (None, "nir") and not keep_extensions:  # the library reads the layer and neuron apart
        graph = lower_extensions(split_fused(graph))
    graph = get_dialect(dialect).on_write(graph, notes)
    if keep_extensions:
        kept = [path for path, op in graph.walk() if isinstance(op, MAX_POOLS)]
    else:
        graph, kept = spell_max_pools(graph, frozenset(binary_inputs))
    if kept and dialect not in (None, "nir"):
        raise SnnirError(f"the {dialect} dialect cannot write max pooling of values that are not known to be 0/1 "
                         "spikes: NIR has no max pool and other libraries cannot read snnir.MaxPool ops "
                         "(write plain NIR, or pool spikes)", kept[0])
    if keep_extensions:
        return graph
    if kept:
        notes.append("max pooling of values not known to be 0/1 spikes has no NIR form; written as snnir "
                     f"extension ops, which only snnir reads: {', '.join(repr(p) for p in kept)}")
    if norms:
        notes.append("a BatchNorm that does not follow one layer feeding only it has no NIR form; written as "
                     f"snnir.BatchNorm extension ops, which only snnir reads: {', '.join(repr(p) for p in norms)}")
    if probes:
        notes.append("a neuron's state read as a value has no NIR form; written as snnir.StateProbe extension ops, "
                     f"which only snnir reads: {', '.join(repr(p) for p in probes)}")
    return lower_extensions(split_fused(graph))


def split_fused(graph: Graph) -> Graph:
    """``graph`` with every :class:`FusedLayerNeuron` that records the nodes it was fused from
    (``FUSED_FROM``) back as those two nodes, where the layer's name is free: names survive a file."""
    nodes: dict[str, Op] = {}
    edges = list(graph.edges)
    split: dict[str, list[str]] = {}
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph):
            op = op.replace(graph=split_fused(op.graph))
        origin = op.metadata.get(FUSED_FROM) if isinstance(op, FusedLayerNeuron) else None
        if is_name_list(origin) and len(origin) == 2 and origin[1] == name and origin[0] not in graph.nodes:
            layer = str(origin[0])
            edges = [(src, layer if dst == name else dst) for src, dst in edges] + [(layer, name)]
            nodes[layer], op = op.layer, op.neuron
            split[name] = [layer, name]
        nodes[name] = op
    metadata = {key: _split_names(value, split) if key.startswith("snnir.") else value
                for key, value in graph.metadata.items()}
    return graph.replace(nodes=nodes, edges=tuple(edges), metadata=metadata)


def _split_names(value: Any, split: Mapping[str, list[str]]) -> Any:
    """A list of node names (or a mapping of such lists, as an execution plan is) with each split
    node's name replaced by the names it was split into; anything else unchanged."""
    if isinstance(value, Mapping):
        return {key: _split_names(names, split) for key, names in value.items()}
    if isinstance(value, (list, tuple)) and all(isinstance(name, str) for name in value):
        return type(value)(part for name in value for part in split.get(name, [name]))
    return value


def lower_extensions(graph: Graph, prefix: str = "") -> Graph:
    """``graph`` with every extension op but max pools, state probes and BatchNorms replaced by a
    nested NIRGraph of standard ops."""
    nodes = {}
    for name, op in graph.nodes.items():
        if isinstance(op, Subgraph):
            op = op.replace(graph=lower_extensions(op.graph, f"{prefix}{name}."))
        elif is_extension(op.op_type) and not isinstance(op, MAX_POOLS + (StateProbe, BatchNorm)):  # see as_written
            op = Subgraph(graph=lower_extensions(_lowering(op, prefix + name), f"{prefix}{name}."))
        nodes[name] = op
    return graph.replace(nodes=nodes)


def _lowering(op: Op, path: str) -> Graph:
    lower = LOWER_EXTENSION.get(type(op), getattr(type(op), "expand", None))
    if lower is None:
        raise SnnirError(f"extension op {op.op_type} has no lowering to standard NIR; "
                         "write with keep_extensions=True", path)
    lowered = lower(op)
    if len(lowered.inputs) != 1 or len(lowered.outputs) != 1:
        raise SnnirError(f"the lowering of {op.op_type} must have one Input and one Output", path)
    return lowered


def _default_semantics(dialect_defaults: Mapping[str, Any], caller: Mapping[str, Any]) -> tuple[Semantics, str]:
    """The semantics for nodes whose file says none, and a line saying where each field came from."""
    layers = [("default", dict(FILELESS_DEFAULTS)), ("dialect", dict(dialect_defaults)), ("caller", dict(caller))]
    chosen: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            chosen[key], origin[key] = value, source
    sem = Semantics.from_dict(chosen)
    described = ", ".join(f"{k}={chosen[k]!r} ({origin[k]})" for k in chosen)
    rest = "" if set(chosen) >= set(Semantics.__dataclass_fields__) else ", others Semantics defaults"
    return sem, f"semantics not in file; used {described}{rest}"


def _read_file(path: Any, reader: Reader, limits: Limits) -> Graph:
    tree = file_tree(path, limits)
    try:
        return reader.read_root(tree)
    except (KeyError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        detail = " ".join(str(exc).split())[:200]
        raise SnnirError(f"cannot read the file as NIR: {type(exc).__name__}: {detail}", reader.current) from None


def _check_param_bytes(graph: Graph, limits: Limits) -> None:
    """The graph's parameters together fit ``limits.data_bytes``."""
    total = 0
    for path, op in graph.walk():
        total += sum(np.asarray(value).nbytes for value in op.params().values())
        if total > limits.data_bytes:
            raise SnnirError(f"the graph's parameters exceed the limit of {limits.data_bytes} bytes "
                             "(raise limits.data_bytes / SNNIR_DATA_LIMIT_BYTES)", path)


def _normalise_outputs(graph: Graph, notes: list[str]) -> Graph:
    """Output shapes that disagree with inference but hold as many elements become the inferred shape."""
    try:
        shapes = infer_shapes(graph)
    except SnnirError:
        return graph  # the verifier reports it
    return _normalise_level(graph, "", shapes.inputs, notes)


def _normalise_level(graph: Graph, prefix: str, inferred: Mapping[str, Any], notes: list[str]) -> Graph:
    nodes = {}
    for name, op in graph.nodes.items():
        path = prefix + name
        if isinstance(op, Subgraph):
            op = op.replace(graph=_normalise_level(op.graph, path + ".", inferred, notes))
        elif isinstance(op, Output) and op.shape is not None and inferred.get(path) is not None:
            got = tuple(inferred[path])
            if got != op.shape and _count(got) == _count(op.shape):
                notes.append(f"node '{path}': Output shape {list(op.shape)} normalised to {list(got)}")
                op = op.replace(shape=got)
        nodes[name] = op
    return graph.replace(nodes=nodes)


def _count(shape: tuple[int, ...]) -> int:
    total = 1
    for d in shape:
        total *= d
    return total

