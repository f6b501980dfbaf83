"""``snnir check FILE.nir [--input X.npy] [--libraries a,b:dt=1e-4] [--run-real] [--plot OUT.png] [--dialect D]``.

Predicts what each library's own importer does with the file (:func:`snnir.imported_by`) and
compares its spikes with the file's stated semantics: the file read as its writer meant it
(``--dialect``, by default the writer ``snnir inspect`` names, else plain NIR). One row per
library: whether it imports the file (``drops``: its importer drops a node without a word; else
why not), the share of spikes that move, the first step
where they (or the values of an output that is not spikes, a membrane) differ and the spike steps
of sample 0; then the named semantic differences.
Without ``--input`` the input is seeded random spikes (20% per step) of a length that covers
the file's slowest time constant ten times (100 to 1000 steps), 4 samples.
``--run-real`` then runs each installed library on the file and confirms each prediction
(:mod:`snnir.cli.cmd_check_real`); the libraries load the file themselves (``nir.read``, libhdf5)
in this process, outside snnir's isolated reading: use it only on files you trust.
Exit status: 0 when every library spikes as the file says, 2 when any differs or cannot
import it (or, with ``--run-real``, a real run contradicts its prediction), 1 on an error
(one line on stderr).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from snnir.cli.cmd_inspect import add_read_options, load_graph
from snnir.cli.files import load_arrays, output_file, with_steps_and_samples
from snnir.errors import SnnirError, escape, one_line, shown

#: One per library, at its installed version (``norse-1.0``, Norse 1.0.0, has no importer: not a default);
#: Lava in its floating-point models (its converter's default, fixed point, is not predicted).
DEFAULT_LIBRARIES = ("snntorch", "norse", "sinabs", "rockpool", "spyx", "nengo", "lava:fixed_pt=0")
DIFFERS = 2
_SAMPLES, _RATE, _SEED = 4, 0.2, 0
_SHOWN_STEPS = 8


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("check", help="predict how each library's importer runs a NIR file")
    add_read_options(parser)
    parser.add_argument("--input", help="[T, B, *shape] .npy, or .npz keyed by Input name (default: random spikes)")
    parser.add_argument("--libraries", default=",".join(DEFAULT_LIBRARIES),
                        help="comma-separated, each LIB or LIB:option=value[:...], e.g. norse:dt=1e-4")
    parser.add_argument("--run-real", action="store_true",
                        help="also run each installed library's own importer and confirm the prediction; the "
                             "libraries load the file in this process (nir.read, not snnir's isolated "
                             "reader): only for files you trust")
    parser.add_argument("--plot", help="image file for the spike rasters side by side (.png, .pdf, .svg)")
    parser.set_defaults(func=run)


def parse_libraries(text: str) -> list[tuple[str, dict[str, Any]]]:
    """``"snntorch,norse:dt=1e-4"`` -> ``[("snntorch", {}), ("norse", {"dt": 1e-4})]``; an unknown
    library or an option its importer does not take is refused."""
    from snnir.frontends.dialects.imported import import_options

    libraries = []
    for item in text.split(","):
        name, *settings = item.strip().split(":")
        if not name:
            raise SnnirError(f"--libraries: empty library name in {text!r}")
        options: dict[str, Any] = {}
        for setting in settings:
            key, sep, value = setting.partition("=")
            if not sep or not key:
                raise SnnirError(f"--libraries: option {setting!r} of {name} is not key=value")
            options[key] = _number(value, f"--libraries: {name}:{key}")
            if key == "dt" and options[key] <= 0:  # every importer's step: the user's value, not the library's
                raise SnnirError(f"--libraries: {name}:dt must be positive, got {value!r}")
        try:
            import_options(name, options)
        except SnnirError as exc:
            raise SnnirError(f"--libraries: {exc}") from None
        libraries.append((name, options))
    return libraries


def _number(text: str, where: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise SnnirError(f"{where} must be a number, got {text!r}") from None
    if not np.isfinite(value):
        raise SnnirError(f"{where} must be finite, got {text!r}")
    return value


def random_input(graph, seed: int = _SEED) -> dict[str, np.ndarray]:
    """Seeded random spikes for every Input: enough steps for ten of the slowest time constants."""
    from snnir.ir import verify
    from snnir.ir.memory import Footprint
    from snnir.ir.ops import Input, Neuron

    steps = [float(np.max(getattr(op, name))) / op.sem.dt for _, op in graph.walk() if isinstance(op, Neuron)
             for name in ("tau", "tau_mem", "tau_syn") if name in op.param_names()]
    length = int(np.clip(np.ceil(10 * max(steps, default=10.0)), 100, 1000))
    Footprint.of(graph, verify(graph).shapes).check(_SAMPLES, itemsize=8, steps=length)  # the run it is for
    rng = np.random.default_rng(seed)
    return {name: (rng.random((length, _SAMPLES, *graph.nodes[name].shape)) < _RATE).astype(float)
            for name in graph.inputs if isinstance(graph.nodes[name], Input)}


def stated_fields_with(reference, plain):
    """The file's own fields (``plain``) with the semantics ``reference`` states for each neuron."""
    from snnir.frontends.dialects import map_neurons

    stated = {path: op.sem for path, op in reference.walk() if hasattr(op, "sem")}
    return map_neurons(plain, lambda path, op: op.replace(sem=stated[path]) if path in stated else op)


def spikes_of(graph, x) -> np.ndarray:
    """Every output of ``graph`` on ``x``, as ``[T, B, N]`` in output order."""
    import snnir

    results = snnir.run(graph, x)
    return np.concatenate([results[name].reshape(*results[name].shape[:2], -1) for name in graph.outputs], axis=2)


def spike_columns(graph) -> tuple[np.ndarray, list[str]]:
    """Which columns of :func:`spikes_of` carry spikes (:func:`snnir.ir.spikes.spike_outputs`),
    and the outputs whose columns carry values instead (membranes)."""
    from snnir.ir import verify
    from snnir.ir.spikes import spike_outputs
    from snnir.passes.structure import flatten_subgraphs

    spiking = spike_outputs(flatten_subgraphs(graph))
    shapes = verify(graph).shapes.outputs
    columns = [np.full(int(np.prod(shapes[name])), name in spiking) for name in graph.outputs]
    return np.concatenate(columns), [name for name in graph.outputs if name not in spiking]


def compare(reference: np.ndarray, predicted: np.ndarray) -> tuple[float, int | None, bool]:
    """(the share of spike events that move: 1 - matched / the larger count; the first step whose
    events differ; whether the values differ where both are non-zero, e.g. nengo's 1/dt-high spikes)."""
    ours, theirs = reference != 0, predicted != 0
    both = ours & theirs
    total = max(int(ours.sum()), int(theirs.sum()))
    share = 0.0 if total == 0 else 1.0 - int(both.sum()) / total
    heights = not np.array_equal(reference[both], predicted[both])
    return share, first_difference(ours, theirs), heights


def first_difference(reference: np.ndarray, predicted: np.ndarray) -> int | None:
    """The first step where two ``[T, ...]`` arrays differ, or None."""
    steps = np.nonzero((reference != predicted).reshape(reference.shape[0], -1).any(axis=1))[0]
    return int(steps[0]) if steps.size else None


def spike_steps(spikes: np.ndarray) -> str:
    if spikes.shape[2] == 0:
        return "no spike output"
    steps = np.nonzero(spikes[:, 0].reshape(spikes.shape[0], -1).any(axis=1))[0]
    more = f" ... ({steps.size} steps)" if steps.size > _SHOWN_STEPS else ""
    return " ".join(map(str, steps[:_SHOWN_STEPS])) + more if steps.size else "none"


def run(args: argparse.Namespace) -> int:
    import snnir
    from snnir.frontends.dialects.guess import describe_writer, file_facts, guess_writer
    from snnir.frontends.dialects.imported import DROPS_SILENTLY

    libraries = parse_libraries(args.libraries)
    if args.plot:
        from snnir.plotting import pyplot

        pyplot()  # matplotlib is needed: say so before simulating
        output_file(args.plot, inputs=[args.file, args.input])
    if args.dialect is None:
        try:
            print(describe_writer(args.file, repair=args.repair))
            args.dialect = guess_writer(file_facts(args.file, repair=args.repair))[0]
        except SnnirError as exc:
            raise exc.for_cli() from None
    reference, _ = load_graph(args)
    dialect, args.dialect = args.dialect, None
    plain, _ = load_graph(args)
    stated = stated_fields_with(reference, plain)
    x = with_steps_and_samples(load_arrays(args.input), "check") if args.input else random_input(reference)
    expected = spikes_of(reference, x)
    spiking, values = spike_columns(reference)
    what = f"{args.input}" if args.input else f"random spikes, {expected.shape[0]} steps x {expected.shape[1]} samples"
    print(f"file semantics: {dialect or 'nir'}; input: {what}; spike steps (sample 0): "
          f"{spike_steps(expected[..., spiking])}"
          + (f"; values, not spikes: output {', '.join(map(repr, map(shown, values)))}" if values else ""))
    drawn = spiking if spiking.any() else ~spiking  # the plot: spike rasters, else value traces
    panels = {f"file ({dialect or 'nir'})": expected[:, 0, drawn]}
    rows, notes, differs, real = [], [], False, []
    for name, options in libraries:
        label = name + "".join(f":{k}={v}" for k, v in options.items())
        if name == "sinabs" and not {"batch_size", "num_timesteps"} & set(options):
            options = {**options, "batch_size": expected.shape[1]}  # its layers need one: the input's
        try:
            predicted, warnings = snnir.imported_by(stated, name, **options)
            spikes = spikes_of(predicted, x)
        except SnnirError as exc:
            imports = "drops" if DROPS_SILENTLY in str(exc) else "?" if str(exc).endswith("not predicted") else "no"
            rows.append((label, imports, "-", "-", one_line(str(exc))))
            differs = True
            real.append((label, name, options, None, str(exc)))
            continue
        real.append((label, name, options, spikes, ""))
        share, first, heights = compare(expected[..., spiking], spikes[..., spiking])
        changed = first_difference(expected[..., ~spiking], spikes[..., ~spiking])
        first = min((step for step in (first, changed) if step is not None), default=None)
        differs |= first is not None or heights
        moved = " ".join(filter(None, (f"{100 * share:.1f}%" if spiking.any() else "",
                                       "(other heights)" if heights else "",
                                       "(other values)" if changed is not None else ""))) or "-"
        rows.append((label, "yes", moved, "-" if first is None else str(first), spike_steps(spikes[..., spiking])))
        notes += [f"  {label}: {one_line(line.removeprefix(name + ': '))}" for line in warnings]
        panels[label] = spikes[:, 0, drawn]
    _print_table(rows)
    if notes:
        print("semantic differences:")
        print("\n".join(notes))
    if args.run_real:
        from snnir.cli.cmd_check_real import confirm, print_rows

        verdicts = [(label, confirm(args.file, name, options, x, spikes, refusal, spiking))
                    for label, name, options, spikes, refusal in real]
        print_rows([(label, verdict) for label, (verdict, _) in verdicts])
        differs |= any(mismatch for _, (_, mismatch) in verdicts)
    if args.plot:
        from snnir.plotting import spike_raster

        spike_raster(panels, args.plot, title=f"{shown(args.file)}: sample 0", side_by_side=True,
                     values=() if spiking.any() else list(panels))
        print(f"wrote {escape(args.plot)}")
    return DIFFERS if differs else 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    header = ("library", "imports", "spikes moved", "first diff", "spike steps (sample 0) or why not")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4])
