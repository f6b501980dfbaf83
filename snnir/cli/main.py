"""The ``snnir`` command. Each subcommand lives in ``snnir/cli/cmd_<name>.py`` and
exposes ``add_parser(subparsers)`` whose parser sets ``func(args) -> int``.

Whatever goes wrong, a command prints one line on stderr, ``snnir CMD: error: ...``
with unprintable characters escaped, and exits 1 (130 when interrupted); warnings are
one line each too. ``SNNIR_DEBUG=1`` shows the traceback of an unexpected error. A reader
that closes the output early (``snnir inspect net.nir | head``) ends the command quietly with
status 141, as a shell reports a tool killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import sys
import warnings
from typing import NoReturn

from snnir.errors import SnnirError, one_line

COMMANDS = ("inspect", "run", "verify", "convert", "export", "optimize", "compile", "plot", "check", "native")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, exit status 1, like every other error."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="snnir", description="Spiking neural network interchange and compiler (NIR).")
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


def _lists_joined(argv: list[str]) -> list[str]:
    """``--option -1,8`` as ``--option=-1,8``: argparse takes a value that starts with '-' and
    is not a plain number for an option of its own ('expected one argument'); a list of numbers
    is never an option, so it is the value, which the command then judges."""
    joined: list[str] = []
    for item in argv:
        after_option = joined and joined[-1].startswith("--") and "=" not in joined[-1]
        if after_option and re.fullmatch(r"-\d[\d,-]*,[\d,-]*", item):
            joined[-1] = f"{joined[-1]}={item}"
        else:
            joined.append(item)
    return joined


#: The status of a command whose output was closed early (128 + SIGPIPE, as a shell reports it).
CLOSED_OUTPUT = 141


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return _command(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not as a message when the interpreter exits
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):  # nothing left for the interpreter to flush at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return CLOSED_OUTPUT


def _command(argv: list[str] | None) -> int:
    args = build_parser().parse_args(_lists_joined(sys.argv[1:] if argv is None else argv))
    prefix = f"snnir {args.command}"

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{prefix}: warning: {one_line(message)}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return int(args.func(args) or 0)
    except SnnirError as exc:
        reason = exc
    except BrokenPipeError:
        raise
    except OSError as exc:
        reason = f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else exc
    except MemoryError:
        reason = "out of memory (lower SNNIR_MEMORY_LIMIT_BYTES or the input's size)"
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug of ours: still one line, never a traceback
        if os.environ.get("SNNIR_DEBUG"):
            raise
        reason = f"internal error, please report it: {type(exc).__name__}: {exc} (SNNIR_DEBUG=1 shows where)"
    print(f"{prefix}: error: {one_line(reason)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
