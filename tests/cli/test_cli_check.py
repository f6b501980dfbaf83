"""``snnir check``: one row per library (imports or why not, share of spikes moved, first step
that differs, spike steps), the semantic differences, exit 0 / 2 (differs) / 1 (error)."""

from __future__ import annotations

import numpy as np
import pytest

import snnir
from snnir.cli.cmd_check import compare, parse_libraries, random_input
from snnir.cli.main import main
from snnir.ir import LIF, Graph, Input, Linear, Output, Semantics

from test_cli_bad_inputs import assert_one_line_error

SNNTORCH_IMPORT = Semantics(dt=1e-4)  # euler, zero reset in the same step, v > thr: what import_from_nir runs


def test_the_papers_lif_file_at_its_dt_in_snntorch_and_norse(fixtures_dir, capsys) -> None:
    path = fixtures_dir / "lif_norse.nir"
    assert main(["check", str(path), "--dt", "1e-4", "--libraries", "snntorch,norse:dt=1e-4"]) == 0
    out = capsys.readouterr().out
    assert "written by: Norse before 1.1" in out and "file semantics: norse-1.0" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("snntorch ", "norse:dt"))]
    assert [row[1:4] for row in rows] == [["yes", "0.0%", "-"]] * 2 and rows[0][4:] == rows[1][4:]


def test_every_library_gets_a_row_and_a_difference_exits_2(fixtures_dir, capsys) -> None:
    assert main(["check", str(fixtures_dir / "lif_norse.nir"), "--dt", "1e-4"]) == 2
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[3:10]}
    assert set(rows) == {"snntorch", "norse", "sinabs", "rockpool", "spyx", "nengo", "lava:fixed_pt=0"}
    assert rows["rockpool"].split()[1] == "no" and "LIF.tau_mem" in rows["rockpool"]
    assert rows["norse"].split()[1:3] != ["yes", "0.0%"]  # Norse's own default dt is 1e-3
    assert "norse: node '1': Norse's from_nir simulates dt 0.001, the graph states 0.0001" in out
    assert "spyx: each spiking layer's output delayed one step, as Spyx emits it" in out
    assert rows["lava:fixed_pt=0"].split()[1:5] == ["yes", "100.0%", "3", "14"]  # 12, two Dense steps late


def test_an_input_file_and_the_plot(fixtures_dir, tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (the test extra) is not installed")
    np.save(tmp_path / "x.npy", np.tile([[[1.0]], [[0.0]], [[1.0]], [[1.0]]], (30, 2, 1)))
    png = tmp_path / "rasters.png"
    code = main(["check", str(fixtures_dir / "lif_norse.nir"), "--dt", "1e-4", "--input", str(tmp_path / "x.npy"),
                 "--libraries", "snntorch,spyx:dt=1e-4", "--plot", str(png)])
    out = capsys.readouterr().out
    assert code == 2 and f"input: {tmp_path / 'x.npy'}" in out and png.stat().st_size > 0


def test_a_file_snnir_wrote_states_its_semantics(tmp_path, capsys) -> None:
    """A graph in exactly the semantics snnTorch's importer runs: snnTorch moves no spike."""
    graph = Graph.sequential(
        ("input", Input(shape=(2,))), ("fc", Linear(weight=np.array([[0.6, 0.3], [0.2, 0.9]]))),
        ("lif", LIF(tau=np.full(2, 1e-3), r=np.full(2, 10.0), v_leak=np.zeros(2), v_threshold=np.ones(2),
                    sem=SNNTORCH_IMPORT)), ("output", Output()))
    snnir.write(graph, tmp_path / "ours.nir")
    assert main(["check", str(tmp_path / "ours.nir"), "--libraries", "snntorch"]) == 0
    out = capsys.readouterr().out
    assert "file semantics: nir" in out and "semantic differences" not in out


@pytest.mark.parametrize(("libraries", "expected"), [
    ("norse:foo=1", "Norse's from_nir takes no option 'foo' (it takes: dt, ignore_warnings)"),
    ("brian2", "unknown dialect 'brian2'"), ("nir", "no importer is described for 'nir'"),
    ("norse:dt", "not key=value"), ("norse:dt=abc", "must be a number"), ("norse:dt=nan", "must be finite"),
    ("norse:dt=-1", "norse:dt must be positive, got '-1'"), ("spyx:dt=0", "spyx:dt must be positive, got '0'"),
    (",", "empty library name"),
])
def test_bad_libraries_are_one_line(fixtures_dir, capsys, libraries, expected) -> None:
    assert main(["check", str(fixtures_dir / "lif_norse.nir"), "--libraries", libraries]) == 1
    assert_one_line_error(capsys, "check", expected)


def test_a_bad_file_is_one_line(tmp_path, capsys) -> None:
    (tmp_path / "bad.nir").write_bytes(b"not hdf5")
    assert main(["check", str(tmp_path / "bad.nir")]) == 1
    assert_one_line_error(capsys, "check")


def test_a_file_that_needs_repair_names_the_option(fixtures_dir, capsys) -> None:
    path = fixtures_dir / "braille_noDelay_bias_zero_subgraph.nir"
    assert main(["check", str(path)]) == 1
    assert_one_line_error(capsys, "check", "(add --repair to fix)")
    assert main(["check", str(path), "--repair"]) == 2
    assert "nirtorch 2.6 (snnTorch's import_from_nir) reaches this nested graph" in capsys.readouterr().out


def test_library_options_parse_as_numbers() -> None:
    assert parse_libraries("snntorch, norse:dt=1e-4:ignore_warnings=1") == [
        ("snntorch", {}), ("norse", {"dt": 1e-4, "ignore_warnings": 1})]


def test_the_built_in_input_covers_ten_time_constants(fixtures_dir) -> None:
    with pytest.warns(snnir.errors.SnnirWarning):
        graph = snnir.read(fixtures_dir / "lif_norse.nir", dt=1e-4)  # tau = 25 steps
    (x,) = random_input(graph).values()
    assert x.shape == (250, 4, 1) and set(np.unique(x)) == {0.0, 1.0}
    np.testing.assert_array_equal(x, random_input(graph)["input"])  # seeded


def test_compare_counts_moved_spike_events_and_the_first_step() -> None:
    ref = np.array([[[1.0]], [[0.0]], [[1.0]], [[0.0]]])
    assert compare(ref, ref) == (0.0, None, False)
    assert compare(ref, np.array([[[1.0]], [[0.0]], [[0.0]], [[1.0]]])) == (0.5, 2, False)


def test_compare_tells_spikes_on_the_same_steps_with_other_heights() -> None:
    """nengo's spikes are 1/dt high: none moved, but the outputs differ."""
    ref = np.array([[[1.0]], [[0.0]], [[1.0]]])
    assert compare(ref, 1e4 * ref) == (0.0, None, True)


# --- --run-real: the real libraries confirm the predictions ---------------------------
def _real_rows(out: str) -> dict[str, str]:
    lines = out.splitlines()
    start = lines.index("real libraries (--run-real):")
    return {line.split()[0]: line for line in lines[start + 1:]}


def test_run_real_confirms_each_installed_library_on_the_papers_lif_file(fixtures_dir, capsys) -> None:
    path = fixtures_dir / "lif_norse.nir"
    code = main(["check", str(path), "--dt", "1e-4", "--libraries", "snntorch,norse:dt=1e-4,rockpool", "--run-real"])
    rows = _real_rows(capsys.readouterr().out)
    assert code == 2  # Rockpool cannot import it (predicted, and confirmed below)
    assert set(rows) == {"snntorch", "norse:dt=0.0001", "rockpool"}
    for row in rows.values():
        assert row.split()[1] in ("confirmed:", "not"), row  # "not installed: ..." where a library is missing
    assert "MISMATCH" not in "".join(rows.values())


def test_run_real_names_a_mismatch_and_exits_2(fixtures_dir, capsys) -> None:
    """Sinabs runs in float32, where the threshold divides an exact multiple into one more spike
    than snnir's float64 prediction (docs/prediction_matrix.md)."""
    from snnir.peers import installed

    if (missing := installed("sinabs")) is not None:
        pytest.skip(missing)
    path = fixtures_dir / "lif_norse.nir"
    assert main(["check", str(path), "--dt", "1e-4", "--libraries", "sinabs", "--run-real"]) == 2
    assert _real_rows(capsys.readouterr().out)["sinabs"].split()[1] == "MISMATCH:"


def test_run_real_says_when_a_library_is_missing(fixtures_dir, capsys, monkeypatch) -> None:
    import snnir.peers

    monkeypatch.setattr(snnir.peers, "installed", lambda library: f"{library} is not installed here (test)")
    path = fixtures_dir / "lif_norse.nir"
    assert main(["check", str(path), "--dt", "1e-4", "--libraries", "snntorch", "--run-real"]) == 0
    assert "not installed: snntorch is not installed here (test)" in _real_rows(capsys.readouterr().out)["snntorch"]


@pytest.mark.parametrize("steps", [1000, 1])
def test_run_real_takes_an_npy_input(fixtures_dir, tmp_path, capsys, steps) -> None:
    """A .npy input is the file's one input: --run-real runs it (it once said "the check has
    1000 inputs", and a one-step input raised a traceback)."""
    from frontends.test_dialect_versions import PAPER_INPUT
    from snnir.peers import installed

    if (missing := installed("snntorch")) is not None:
        pytest.skip(missing)
    x = tmp_path / "x.npy"
    np.save(x, PAPER_INPUT[:steps].astype(np.float32))
    main(["check", str(fixtures_dir / "lif_norse.nir"), "--dt", "1e-4", "--input", str(x), "--libraries", "snntorch",
          "--run-real"])
    assert _real_rows(capsys.readouterr().out)["snntorch"].split()[1] == "confirmed:"


def test_random_input_over_the_memory_limit_is_refused() -> None:
    """The default input of a graph with an Input of 1e9 numbers would be 7.5 GiB a step and sample."""
    graph = Graph.sequential(("x", Input((10**9,))), ("y", Output()))
    with pytest.raises(snnir.SnnirError, match="more than the limit memory_bytes"):
        random_input(graph)


def test_a_membrane_output_is_values_not_spike_steps(tmp_path, capsys) -> None:
    """An LI's membrane as the output: the check once printed its non-zero steps as spike steps."""
    from snnir.ir import LI, Affine

    graph = Graph.sequential(
        ("input", Input(shape=(2,))), ("fc", Affine(weight=np.array([[0.6, -0.3], [0.2, 0.9]]), bias=np.zeros(2))),
        ("li", LI(tau=np.full(2, 1e-3), r=np.ones(2), v_leak=np.zeros(2))), ("output", Output()))
    snnir.write(graph, tmp_path / "li.nir")
    main(["check", str(tmp_path / "li.nir"), "--libraries", "sinabs"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("spike steps (sample 0): no spike output; values, not spikes: output 'output'")
    assert lines[3].split()[:4] == ["sinabs", "yes", "(other", "values)"] and lines[3].endswith("no spike output")


def test_run_real_confirms_a_node_sinabs_drops_without_a_word(tmp_path, capsys) -> None:
    """Sinabs' from_nir has no Linear; nirtorch's load drops it and runs the rest. The check named that
    in its prediction, then called the real run a MISMATCH ("predicted it cannot import the file")."""
    from snnir.peers import installed

    if (missing := installed("sinabs")) is not None:
        pytest.skip(missing)
    graph = Graph.sequential(
        ("input", Input(shape=(4,))), ("fc", Linear(weight=np.full((4, 4), 0.3))),
        ("lif", LIF(tau=np.full(4, 2e-3), r=np.ones(4), v_leak=np.zeros(4), v_threshold=np.full(4, 0.1))),
        ("output", Output()))
    snnir.write(graph, tmp_path / "linear.nir")
    np.save(tmp_path / "x.npy", np.tile([[[1.0, 0.0, 1.0, 1.0]], [[0.0, 1.0, 0.0, 0.0]]], (10, 2, 1)))
    assert main(["check", str(tmp_path / "linear.nir"), "--input", str(tmp_path / "x.npy"), "--libraries", "sinabs",
                 "--run-real"]) == 2  # it does not run the file's network
    out = capsys.readouterr().out
    assert next(line for line in out.splitlines() if line.startswith("sinabs ")).split()[1] == "drops"
    assert _real_rows(out)["sinabs"].split(None, 1)[1].startswith("confirmed: it drops the node without a word")


def test_run_real_compares_value_outputs_to_float32_rounding(monkeypatch):
    """A library's float32 logits against snnir's float64 prediction were compared entry for entry:
    MISMATCH for 23-98 % of entries 3e-8 apart. Spike columns stay exact."""
    import numpy as np

    from snnir import peers
    from snnir.cli.cmd_check_real import confirm

    predicted = np.random.default_rng(0).normal(size=(5, 2, 3))
    spiking = np.array([False, False, True])
    predicted[..., 2] = predicted[..., 2] > 0
    real = predicted.astype(np.float32).astype(np.float64)
    monkeypatch.setattr(peers, "installed", lambda name: None)
    monkeypatch.setattr(peers, "run_real", lambda *args, **kwargs: real)
    x = np.zeros((5, 2, 1), np.float32)
    verdict, mismatch = confirm("f.nir", "snntorch", {}, x, predicted, "", spiking)
    assert not mismatch and verdict.startswith("confirmed") and "float32 rounding" in verdict
    real[0, 0, 2] = 1 - real[0, 0, 2]  # a spike moved
    verdict, mismatch = confirm("f.nir", "snntorch", {}, x, predicted, "", spiking)
    assert mismatch and verdict.startswith("MISMATCH")
