"""``snnir native [--build]``: the C++ neuron kernels of the torch target.

Prints each kernel's library and whether it is built; ``--build`` compiles the missing
ones first (about a minute; ``make install`` does it). Built kernels are used by every
compiled module unless ``SNNIR_NATIVE=0`` or ``compile(..., native=False)``. Exit 1 when
``--build`` could not build one (no compiler: the Python loop is used instead).
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("native", help="show (or --build) the C++ neuron kernels of the torch target")
    parser.add_argument("--build", action="store_true", help="compile the kernels not built yet")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from snnir.targets.torch import native

    took = native.build() if args.build else {}
    failed = False
    for kernel in native.KERNELS:
        library = native.library_path(kernel)
        if args.build and took[kernel] is None:
            failed = True
            state = "could not be built: compiled modules use the Python loop"
        elif library.exists():
            state = f"built ({took[kernel]:.1f} s)" if kernel in took else "built"
        else:
            state = "not built: compiled modules use the Python loop (snnir native --build)"
        print(f"{kernel}: {state}\n  {library}")
    return 1 if failed else 0
