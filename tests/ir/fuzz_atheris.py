"""Coverage-guided fuzzing of ``snnir.read`` with atheris (not collected by pytest; see docs/nir-files.md).

    mkdir -p /tmp/nir-corpus && cp tests/fixtures/nir-paper/*.nir /tmp/nir-corpus/
    PYTHONPATH=$PWD python tests/ir/fuzz_atheris.py /tmp/nir-corpus -max_total_time=300 -timeout=60

Every input is written to a file and read with the default (isolated) reader under tight limits:
anything but a graph or a one-line SnnirError, or a case over its time bound, is a finding
(atheris stops and saves the input). Every 25 cases a line counts cases and outcomes.
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
import time
import warnings

import atheris

with atheris.instrument_imports(include=["snnir"]):
    from snnir.errors import SnnirError
    from snnir.ir.nir_io import read
    from snnir.limits import Limits

LIMITS = Limits(time_s=5.0, memory_bytes=512 << 20, data_bytes=256 << 20)
SLACK_S = 20.0
OUTCOMES: collections.Counter[str] = collections.Counter()
SCRATCH = tempfile.mkdtemp(prefix="snnir-atheris-")


def one_input(data: bytes) -> None:
    path = os.path.join(SCRATCH, "case.nir")
    with open(path, "wb") as file:
        file.write(data)
    start = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            read(path, repair=True, limits=LIMITS)
            OUTCOMES["graph"] += 1
        except SnnirError as exc:
            if "\n" in str(exc):
                raise AssertionError(f"a multi-line error: {exc!r}") from None
            kind = "crash" if "crashed" in str(exc) else "time" if "took longer" in str(exc) else "error"
            OUTCOMES[kind] += 1
    if time.monotonic() - start > LIMITS.time_s + SLACK_S:
        raise AssertionError("a case ran past its time bound")
    if sum(OUTCOMES.values()) % 25 == 0:  # libFuzzer may end the process without running atexit
        print(f"snnir atheris: {sum(OUTCOMES.values())} cases: {dict(OUTCOMES)}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
