"""The progress helper: a bar on a terminal, silence when output is piped or captured."""

from __future__ import annotations

import io

import numpy as np

import snnir
import snnir.progress
from snnir.ir import Affine, Graph, Input, Output


def _graph() -> Graph:
    return Graph.sequential(("x", Input((2,))), ("fc", Affine(weight=np.ones((2, 2)), bias=np.zeros(2))),
                            ("y", Output()))


def test_quiet_when_stderr_is_not_a_terminal(capsys):
    snnir.run(_graph(), np.zeros((500, 1, 2)))
    assert capsys.readouterr().err == ""


def test_a_bar_on_a_terminal(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(snnir.progress.sys, "stderr", stream)
    monkeypatch.setattr(snnir.progress, "_is_terminal", lambda: True)
    for _ in snnir.progress.progress(range(3), desc="counting", delay=0):
        pass
    assert "counting" in stream.getvalue() and "0/3" in stream.getvalue()
