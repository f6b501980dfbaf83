"""The ``snnir`` command. Each subcommand lives in ``snnir/cli/cmd_<name>.py`` and
exposes ``add_parser(subparsers)`` whose parser sets ``func(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

from snnir.errors import SnnirError

COMMANDS = ("inspect", "run", "verify", "convert", "export", "optimize", "compile", "plot", "native")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="snnir", description="Spiking neural network interchange and compiler (NIR).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"snnir.cli.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"snnir.cli.cmd_{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SnnirError as exc:
        print(f"snnir {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"snnir {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
