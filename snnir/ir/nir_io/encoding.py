"""The ``snnir`` node-metadata record and the structural limits every read enforces.

Each node group may hold ``metadata/snnir``: one JSON string that other NIR
tools ignore. Its keys (all optional):

- ``sem``: the node's :class:`Semantics` as a dict;
- ``trainable``: names of parameters a regenerated module trains;
- ``shapes``: ``{param: shape}`` for parameters broadcast on write so that
  nir can read them (restored by taking the first slice of every stretched dim);
- ``absent``: ``{param: {"dtype", "shape"}}`` for all-zero parameters left out
  so that older NIR readers load the node (``v_reset``);
- ``none``: attributes that were ``None`` (written with the inferred value, or left out);
- ``tuples``: attributes of extension ops that were tuples;
- ``graphs``: attributes of extension ops that are graphs (sub-groups of type ``NIRGraph``);
- ``op_metadata``: a nested graph node's own metadata (the group's metadata is the graph's);
- ``writer``: (in the top graph's record) ``"snnir"``: the file states its trainable flags, so
  a file without any record gets torch.nn's (see :func:`snnir.ir.nir_io.load`);
- ``nodes``: (in a graph's record) the records of child nodes whose NIR type has no
  metadata in nir 1.0.4 (Input, Output, Linear, Scale, Conv2d, AvgPool2d).

Arrays inside the record are tagged ``{"__ndarray__": {dtype, shape, b64}}`` so they
round-trip exactly.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Mapping

import numpy as np

from snnir.errors import SnnirError
from snnir.ir.nir_io.extract import MAX_DATASET_ELEMENTS, MAX_STRING_BYTES

#: The one metadata key carrying snnir's explicit semantics.
SNNIR_KEY = "snnir"
#: More nodes than this in one graph level are refused.
MAX_NODES = 100_000
#: More edges than this in one graph level are refused.
MAX_EDGES = 1_000_000
__all__ = ["SNNIR_KEY", "MAX_NODES", "MAX_EDGES", "MAX_DATASET_ELEMENTS", "MAX_STRING_BYTES", "dumps", "loads"]


def _encode(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)) and not isinstance(value, (np.str_, np.bytes_)):
        array = np.ascontiguousarray(value)
        return {
            "__ndarray__": {
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "b64": base64.b64encode(array.tobytes()).decode("ascii"),
            }
        }
    if isinstance(value, Mapping):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        tagged = value.get("__ndarray__")
        if tagged is not None and len(value) == 1:
            dtype = np.dtype(tagged["dtype"])
            shape = tuple(int(d) for d in tagged["shape"])
            if dtype.kind not in "biuf" or int(np.prod(shape, dtype=object)) > MAX_DATASET_ELEMENTS:
                raise ValueError(f"bad array {dtype} {list(shape)}")
            return np.frombuffer(base64.b64decode(tagged["b64"]), dtype=dtype).reshape(shape).copy()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def dumps(record: Mapping[str, Any]) -> str:
    """The JSON text of a record (arrays tagged)."""
    try:
        return json.dumps(_encode(record), sort_keys=True, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise SnnirError(f"cannot store {exc}") from None


def loads(text: str, node: str) -> dict[str, Any]:
    """Parse a record, or raise an error naming ``node``."""
    if len(text) > MAX_STRING_BYTES:
        raise SnnirError("its snnir metadata record is too long", node)
    try:
        record = _decode(json.loads(text))
    except (ValueError, TypeError, KeyError) as exc:
        raise SnnirError(f"its snnir metadata record is not valid: {exc}", node) from None
    problem = _check_record(record)
    if problem:
        raise SnnirError(f"its snnir metadata record is not valid: {problem}", node)
    return record


def _is_shape(value: Any) -> bool:
    return (isinstance(value, list) and all(isinstance(d, int) and d >= 0 for d in value)
            and int(np.prod(value, dtype=object)) <= MAX_DATASET_ELEMENTS)


def _check_record(record: Any) -> str | None:
    """What is wrong with a parsed record (a hostile file may hold anything), or ``None``."""
    if not isinstance(record, dict):
        return "not a JSON object"
    for key in ("trainable", "none", "tuples", "graphs"):
        if not isinstance(record.get(key, []), list) or not all(isinstance(v, str) for v in record.get(key, [])):
            return f"'{key}' must be a list of names"
    for key in ("sem", "op_metadata", "shapes", "absent", "nodes"):
        if not isinstance(record.get(key, {}), dict):
            return f"'{key}' must be an object"
    if not all(_is_shape(v) for v in record.get("shapes", {}).values()):
        return "'shapes' must hold shapes"
    for spec in record.get("absent", {}).values():
        if not (isinstance(spec, dict) and _is_shape(spec.get("shape"))
                and spec.get("dtype") in {np.dtype(t).str for t in np.typecodes["AllInteger"] + np.typecodes["Float"]}):
            return "'absent' must hold a numeric dtype and shape"
    for child in record.get("nodes", {}).values():
        problem = _check_record(child)
        if problem:
            return f"in 'nodes': {problem}"
    return None
