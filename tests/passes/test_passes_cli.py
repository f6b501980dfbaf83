"""``snnir optimize``: report, dumps, written files that behave like the input."""

from __future__ import annotations

import warnings

import pytest
from passes_support import assert_equivalent, random_input

import snnir
from snnir.cli.main import main
from snnir.passes import execution_plan

pytestmark = pytest.mark.filterwarnings("ignore::snnir.errors.SnnirWarning")


def read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return snnir.read(path)


@pytest.mark.parametrize("name", ["braille_noDelay_bias_zero.nir", "braille_noDelay_noBias_subtract.nir"])
@pytest.mark.parametrize("keep", [False, True])
def test_optimize_writes_an_equivalent_file(fixtures_dir, tmp_path, capsys, name, keep):
    out = tmp_path / "out.nir"
    argv = ["optimize", str(fixtures_dir / name), "-o", str(out), "-O2"] + (["--keep-extensions"] if keep else [])
    assert main(argv) == 0
    report = capsys.readouterr().out
    assert "before:" in report and "after:" in report and "MACs/step" in report
    original, optimised = read(fixtures_dir / name), read(out)
    types = {op.op_type for op in optimised.nodes.values()}
    assert ("snnir.FusedLayerNeuron" in types) == keep
    assert execution_plan(optimised)
    assert_equivalent(original, optimised, random_input(original, 1, steps=30))


def test_passes_option_dump_and_errors(fixtures_dir, tmp_path, capsys):
    src, out = str(fixtures_dir / "braille_noDelay_bias_zero.nir"), str(tmp_path / "o.nir")
    assert main(["optimize", src, "-o", out, "--passes", "flatten_subgraphs,time_batch",
                 "--dump-after", "time_batch"]) == 0
    text = capsys.readouterr().out
    assert "--- after time_batch ---" in text and "snnir.plan" not in text.split("after:")[-1]
    assert main(["optimize", src, "-o", out, "--passes", "canonicalize,nope"]) == 1
    assert "unknown pass 'nope'" in capsys.readouterr().err
    assert main(["optimize", src, "-o", out, "--passes", "change_dt"]) == 1
    assert "change_dt needs the new step" in capsys.readouterr().err
    assert main(["optimize", src, "-o", out, "--passes", "change_dt", "--dt", "1e-3"]) == 0
    assert {op.sem.dt for _, op in read(out).walk() if hasattr(op, "sem")} == {1e-3}
    assert main(["optimize", src, "-o", out, "-O1", "--static", "input"]) == 1  # -O1 does not hoist
    assert "takes the options ['static_inputs']" in capsys.readouterr().err
    assert main(["optimize", src, "-o", out, "--static", "nope"]) == 1
    assert "cannot declare 'nope' static" in capsys.readouterr().err
