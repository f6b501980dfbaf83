"""``snnir compile FILE.nir --target torch|ipu|onnx -o OUT [--dt DT] [--reset MODE] [--surrogate NAME] [--slope S]``.

``torch``: ``OUT`` is a ``.py`` file: a readable module that needs torch alone (and
safetensors for its weights, in a file beside it), not snnir (see
:mod:`snnir.targets.torch.codegen`). Other targets:
``snnir.compile(graph, target=..., out_dir=OUT)``. ``--surrogate``/``--slope`` are
``compile``'s ``surrogate=``/``slope=`` (torch and ipu: the gradient they train with).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from snnir.cli.cmd_inspect import add_read_options, load_graph
from snnir.cli.files import not_an_input, output_dir, output_file
from snnir.errors import SnnirError, escape

TARGETS = ("torch", "ipu", "onnx")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("compile", help="compile a NIR file for a target (torch source, ipu, onnx)")
    add_read_options(parser)
    parser.add_argument("--target", choices=TARGETS, default="torch", help="what to compile for (default torch)")
    parser.add_argument("-o", "--output", required=True, help="torch: the .py file to write; others: a directory")
    parser.add_argument("--weights-format", choices=("safetensors", "torch"),
                        help="torch: weights file format (default safetensors when installed)")
    parser.add_argument("--surrogate", help="torch, ipu: the surrogate gradient to train with (fast_sigmoid, arctan, "
                        "sigmoid, straight_through, triangular; default: the one traced, else fast_sigmoid)")
    parser.add_argument("--slope", type=float, help="torch, ipu: the surrogate's slope (default: its own)")
    parser.set_defaults(func=run)


def written_files(target: str, output: str) -> tuple[Path, ...]:
    """Every file compiling for ``target`` to ``-o output`` may write."""
    if target == "torch":
        from snnir.targets.torch.codegen import written_files as module_files

        return module_files(output)
    from snnir.targets.ipu import FILES as IPU_FILES
    from snnir.targets.ipu.onnx_export import FILES as ONNX_FILES

    return tuple(Path(output) / name for name in (IPU_FILES if target == "ipu" else ONNX_FILES))


def run(args: argparse.Namespace) -> int:
    import snnir

    gradient = {"surrogate": args.surrogate, "slope": args.slope}
    if args.target == "onnx" and (args.surrogate or args.slope is not None):
        raise SnnirError("--surrogate and --slope are for --target torch or ipu: the ONNX model has no gradients")
    if args.target == "torch":
        output_file(args.output)
    else:
        output_dir(args.output)
    not_an_input(written_files(args.target, args.output), [args.file])
    graph, _ = load_graph(args)
    if args.target == "torch":
        from snnir.targets.torch.codegen import write_module

        source, weights = write_module(graph, args.output, args.weights_format, source=Path(args.file).name, **gradient)
        print(f"wrote {escape(str(source))} and {escape(str(weights))}")
        return 0
    result = snnir.compile(graph, target=args.target, out_dir=args.output,
                           **(gradient if args.target == "ipu" else {}))
    detail = f": {result}" if isinstance(result, (str, Path)) else ""
    print(f"compiled {args.file} for {args.target} into {args.output}{detail}")
    return 0
