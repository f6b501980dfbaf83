"""``snnir plot FILE.nir --input X.npy -o raster.png [--sample B]``.

Simulates the file and draws a raster of one batch sample: one panel per
spiking node, nested graphs included, and per Output that is not already one
of them (time on x, flattened neuron on y); an Output that carries values, not
spikes (a membrane), as traces. Needs matplotlib (drawn by :mod:`snnir.plotting`).
"""

from __future__ import annotations

import argparse

from snnir.cli.cmd_inspect import add_read_options, load_graph
from snnir.cli.files import load_arrays, output_file, with_steps_and_samples
from snnir.errors import SnnirError, escape
from snnir.ir import Graph, Output, schedule
from snnir.ir.spikes import emits_spikes, spike_outputs
from snnir.plotting import pyplot, spike_raster


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot", help="draw a spike raster of a simulated NIR file")
    add_read_options(parser)
    parser.add_argument("--input", required=True, help="[T, B, *shape] .npy, or .npz keyed by Input name")
    parser.add_argument("-o", "--output", required=True, help="image file to write (.png, .pdf, .svg)")
    parser.add_argument("--sample", type=int, default=0, help="which batch sample to draw")
    parser.set_defaults(func=run)


def with_spike_probes(graph: Graph) -> tuple[Graph, dict[str, str]]:
    """The graph with nested graphs inlined (their nodes named ``"sub.inner"``) and an extra Output
    after every spiking node (a Threshold too); and node -> its probe's Output name, in execution order.
    A probe is named ``"<node>#spikes"``, or ``"<node>#spikes2"``... where a node already has that name."""
    from snnir.passes.structure import flatten_subgraphs

    flat = flatten_subgraphs(graph)
    spiking = [name for name in schedule(flat).order if emits_spikes(flat.nodes[name], counts=True)]
    probes: dict[str, str] = {}
    for name in spiking:
        probe, number = f"{name}#spikes", 1
        while probe in flat.nodes or probe in probes.values():
            number += 1
            probe = f"{name}#spikes{number}"
        probes[name] = probe
    edges = flat.edges + tuple(probes.items())
    return flat.with_nodes({probe: Output() for probe in probes.values()}).replace(edges=edges), probes


def panel_sources(probed: Graph, probes: dict[str, str]) -> dict[str, str]:
    """Panel title -> result key: one per spiking node (titled with the Output it alone feeds, if
    any), then one per Output fed by anything else; no two panels show the same values."""
    outputs = {out: [src for src, dst in probed.edges if dst == out] for out in probed.outputs
               if out not in probes.values()}
    fed = {sources[0]: out for out, sources in outputs.items() if len(sources) == 1 and sources[0] in probes}
    panels = {(f"{name} (output '{fed[name]}')" if name in fed else name): probe for name, probe in probes.items()}
    panels.update({out: out for out in outputs if out not in fed.values()})
    return panels


def run(args: argparse.Namespace) -> int:
    import snnir

    pyplot()  # matplotlib is needed: say so before simulating
    output_file(args.output, inputs=[args.file, args.input])
    graph, _ = load_graph(args)
    probed, probes = with_spike_probes(graph)
    panel_outputs = panel_sources(probed, probes)
    results = snnir.run(probed, with_steps_and_samples(load_arrays(args.input), "plot"))
    batch = next(iter(results.values())).shape[1]
    if not 0 <= args.sample < batch:
        raise SnnirError(f"--sample {args.sample} is outside the batch of {batch}")
    panels = {
        name: results[key][:, args.sample].reshape(results[key].shape[0], -1) for name, key in panel_outputs.items()
    }
    spikes = spike_outputs(probed)
    spike_raster(panels, args.output, values=[name for name, key in panel_outputs.items() if key not in spikes])
    print(f"wrote {escape(args.output)}")
    return 0
