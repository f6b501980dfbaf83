"""Pictures of graphs and their activity (matplotlib, imported only when drawing).

- :func:`spike_raster`: one panel per named ``[T, N]`` spike array (time on x, neuron on y),
  values that are not spikes (a membrane output) as traces;
- :func:`membrane_traces`: one panel per named ``[T, N]`` state array, a line per neuron;
- :func:`graph_diagram`: one graph level as boxes (name, op, output shape) in columns by
  depth from the inputs, feed-forward edges as arrows, edges carrying last step's value dashed.

Each writes the image to ``path`` (format from the suffix) or raises :class:`SnnirError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Mapping

import numpy as np

from snnir.errors import SnnirError
from snnir.ir import Graph, schedule
from snnir.ir.shapes import infer_shapes


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend."""
    try:
        import matplotlib
    except ImportError:
        raise SnnirError("plot needs matplotlib: pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: str | Path) -> None:
    plt = pyplot()
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=110)
    except (ValueError, OSError) as exc:  # an unknown image format, or a file system that refuses
        raise SnnirError(f"cannot write {path}: {exc}") from None
    finally:
        plt.close(figure)


def spike_raster(panels: Mapping[str, np.ndarray], path: str | Path, title: str = "",
                 side_by_side: bool = False, values: Collection[str] = ()) -> None:
    """``panels``: title -> ``[T, N]`` spikes of one sample; stacked, or in one row. The panels
    named in ``values`` hold other values (membranes): drawn as traces, not counted as spikes."""
    count = len(panels)
    shape, size = ((1, count), (1 + 3.5 * count, 4)) if side_by_side else ((count, 1), (8, 2 + 2 * count))
    figure, axes = pyplot().subplots(*shape, figsize=size, squeeze=False)
    for axis, (name, spikes) in zip(axes.flat, panels.items()):
        if name in values:
            _traces(axis, f"{name}: values, not spikes", spikes, "value")
            continue
        times, neurons = np.nonzero(spikes)
        axis.scatter(times, neurons, s=4, marker="|", color="black")
        axis.set_title(f"{name}: {int(spikes.sum())} spikes")
        axis.set_xlim(-0.5, spikes.shape[0] - 0.5)
        axis.set_ylim(-0.5, max(spikes.shape[1], 1) - 0.5)
        axis.set_ylabel("neuron")
    for axis in axes[-1]:
        axis.set_xlabel("time step")
    if title:
        figure.suptitle(title)
    _save(figure, path)


def membrane_traces(panels: Mapping[str, np.ndarray], path: str | Path, threshold: float | None = None) -> None:
    """``panels``: title -> ``[T, N]`` membrane values of one sample; ``threshold`` drawn dashed."""
    figure, axes = pyplot().subplots(len(panels), 1, figsize=(8, 1.5 + 2.5 * len(panels)), squeeze=False)
    for axis, (name, values) in zip(axes[:, 0], panels.items()):
        _traces(axis, name, values, "membrane")
        if threshold is not None:
            axis.axhline(threshold, color="grey", linestyle="--", linewidth=1, label="threshold")
            axis.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("time step")
    _save(figure, path)


def _traces(axis: Any, name: str, values: np.ndarray, label: str) -> None:
    """``[T, N]`` values as one line per neuron."""
    axis.plot(np.arange(values.shape[0]), values, linewidth=1)
    axis.set_title(name)
    axis.set_ylabel(label)


def _depths(graph: Graph) -> dict[str, int]:
    """Longest path from a source node over the edges that are not delayed."""
    plan = schedule(graph)
    depth = {name: 0 for name in plan.order}
    for name in plan.order:
        for edge in graph.in_edges(name):
            if edge in plan.delayed:
                continue
            source = graph.resolve(edge[0], as_source=True)[0]
            depth[name] = max(depth[name], depth[source] + 1)
    return depth


def _label(graph: Graph, name: str, shapes: Any) -> str:
    op = graph.nodes[name]
    kind = op.op_type.removeprefix("snnir.")
    parts = [getattr(op, part, None) for part in ("layer", "neuron")]
    if all(parts):
        kind = f"{kind}\n({parts[0].op_type}+{parts[1].op_type})"
    shape = shapes.outputs.get(name) if shapes is not None else None
    return f"{name}\n{kind}" + (f"\n{list(shape)}" if shape is not None else "")


def graph_diagram(graph: Graph, path: str | Path, title: str) -> None:
    """Draw the top level of ``graph`` (see the module docstring)."""
    try:
        shapes = infer_shapes(graph)
    except SnnirError:
        shapes = None
    depth = _depths(graph)
    columns: dict[int, list[str]] = {}
    for name in schedule(graph).order:
        columns.setdefault(depth[name], []).append(name)
    height = max(len(names) for names in columns.values())
    where = {name: (col, (height - 1) / 2 - row) for col, names in columns.items() for row, name in enumerate(names)}
    figure, axis = pyplot().subplots(figsize=(max(4.0, 2.2 * len(columns)), max(2.5, 1.6 * height + 1)))
    delayed = schedule(graph).delayed
    for edge in graph.edges:
        (x0, y0), (x1, y1) = (where[graph.resolve(edge[0], True)[0]], where[graph.resolve(edge[1], False)[0]])
        style = dict(arrowstyle="-|>", color="grey", shrinkA=28, shrinkB=28)
        if edge in delayed:
            style.update(linestyle="--", connectionstyle="arc3,rad=-0.6")
        axis.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops=style)
    for name, (x, y) in where.items():
        stateful = graph.nodes[name].stateful
        axis.text(x, y, _label(graph, name, shapes), ha="center", va="center", fontsize=8,
                  bbox=dict(boxstyle="round", facecolor="#fde2c8" if stateful else "#dce8f5", edgecolor="grey"))
    axis.set_xlim(-0.7, len(columns) - 0.3)
    axis.set_ylim(-(height + 1) / 2, (height + 1) / 2)
    axis.axis("off")
    axis.set_title(f"{title}: {len(graph.nodes)} nodes (orange: stateful; dashed: last step's value)")
    _save(figure, path)
