"""``guess_writer`` names the library (and version) that wrote each of the NIR paper's files and
Norse 1.1.0's (``tests/fixtures/norse-1.1``), with evidence, and names none where no fingerprint
fits; ``snnir inspect`` prints it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import snnir
from snnir.cli.main import main
from snnir.frontends.dialects import get_dialect
from snnir.frontends.dialects.guess import file_facts, guess_writer
from snnir.ir import Graph
from snnir.ir.ops import LIF, Affine, Input, Output
from snnir.ir.semantics import Semantics

PAPER_WRITERS = {
    "lif_norse.nir": ("norse-1.0", "'0.1.1'"),
    "lif_rockpool.nir": ("rockpool", "0_LinearTorch"),
    "cnn_sinabs.nir": ("sinabs", "SumPool2d"),
    "braille_noDelay_bias_zero.nir": ("snntorch", "r = tau/1e-4"),
    "braille_noDelay_noBias_subtract.nir": ("snntorch", "r = tau/1e-4"),
    "braille_noDelay_bias_zero_subgraph.nir": ("snntorch", "r = tau/1e-4"),
    "two_lif_neurons.nir": (None, "not nirtorch's node names"),  # the paper's debug script, nir by hand
}


def test_every_paper_fixture_is_covered(fixtures_dir) -> None:
    assert {path.name for path in fixtures_dir.glob("*.nir")} == set(PAPER_WRITERS)


@pytest.mark.parametrize("name", sorted(PAPER_WRITERS))
def test_the_papers_files_name_their_writer(fixtures_dir, name: str) -> None:
    expected, clue = PAPER_WRITERS[name]
    dialect, evidence = guess_writer(file_facts(fixtures_dir / name, repair="subgraph" in name))
    assert dialect == expected
    assert evidence[0].startswith("nir version attribute") and any(clue in line for line in evidence)
    if dialect is not None:
        get_dialect(dialect)  # a name the reader takes


#: files Norse 1.1.0's to_nir wrote (tests/fixtures/norse-1.1/README.md); Norse 1.0.0 writes none (no to_nir)
NORSE_1_1 = Path(__file__).resolve().parents[1] / "fixtures" / "norse-1.1"
NORSE_1_1_WRITERS = {"norse-LIF.nir": "norse", "norse-CubaLIF.nir": "norse", "norse-conv.nir": "norse",
                     "norse-IF.nir": None}  # IF-only: Norse and Sinabs write it alike


@pytest.mark.parametrize("name", sorted(NORSE_1_1_WRITERS))
def test_norse_1_1_files_name_norse_1_1_not_the_earlier_norse(name: str) -> None:
    dialect, evidence = guess_writer(file_facts(NORSE_1_1 / name))
    assert dialect == NORSE_1_1_WRITERS[name], evidence
    assert ("Norse 1.1's tau * dt" if dialect else "Sinabs or Norse") in evidence[-1]


def test_every_norse_1_1_fixture_is_covered() -> None:
    assert {path.name for path in NORSE_1_1.glob("*.nir")} == set(NORSE_1_1_WRITERS)


def test_a_file_snnir_wrote_is_plain_nir(tmp_path) -> None:
    graph = Graph.sequential(("input", Input(shape=(2,))), ("fc", Affine(weight=np.ones((3, 2)), bias=np.zeros(3))),
                             ("lif", LIF(tau=np.full(3, 0.01), r=np.ones(3), v_leak=np.zeros(3),
                                         v_threshold=np.ones(3), sem=Semantics(dt=1e-4))), ("output", Output()))
    snnir.write(graph, tmp_path / "ours.nir")
    dialect, evidence = guess_writer(file_facts(tmp_path / "ours.nir"))
    assert dialect == "nir" and "snnir's metadata record" in evidence[-1]


def test_inspect_prints_the_guess(fixtures_dir, capsys) -> None:
    assert main(["inspect", str(fixtures_dir / "lif_norse.nir"), "--dialect", "norse-1.0", "--dt", "1e-4"]) == 0
    out = capsys.readouterr().out
    assert ("written by: Norse before 1.1 (read with --dialect norse-1.0); "
            "evidence: nir version attribute '0.1.1'") in out


@pytest.mark.parametrize("version, expected", [("0.1.1-unique-to-this-test", "0.1.1-unique-to-this-test"),
                                               (None, None)])
def test_the_version_comes_from_the_isolated_reading(fixtures_dir, tmp_path, monkeypatch, version, expected) -> None:
    """The caller never opens the untrusted file with libhdf5 (it read the version dataset itself,
    and a corrupt one, here not a string, cost it memory outside the reading process's limit)."""
    import h5py

    path = tmp_path / "f.nir"
    path.write_bytes((fixtures_dir / "lif_norse.nir").read_bytes())
    with h5py.File(path, "r+") as file:
        del file["version"]
        if version is None:
            file.create_dataset("version", shape=(), dtype=h5py.vlen_dtype("i4"))[()] = np.arange(7, dtype="i4")
        else:
            file["version"] = np.bytes_(version.encode())

    def forbidden(*args, **kwargs):
        raise AssertionError("the caller opened the file with h5py")

    monkeypatch.setattr(h5py, "File", forbidden)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert file_facts(path).version == expected


def test_a_file_that_is_not_nir_fails_in_one_line(tmp_path) -> None:
    path = tmp_path / "bad.nir"
    path.write_bytes(b"not hdf5")
    with pytest.raises(snnir.SnnirError, match="cannot read"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        file_facts(path)


def test_a_neuron_whose_parameters_do_not_broadcast_is_refused_naming_it(fixtures_dir, tmp_path) -> None:
    """A fuzzer's mutant: one time constant cut to 2 of 7 neurons (the fingerprints compared the
    parameters element-wise, and numpy's broadcast error reached `snnir check` as a traceback)."""
    import shutil

    import h5py

    path = tmp_path / "cut.nir"
    shutil.copy(fixtures_dir / "braille_noDelay_bias_zero_subgraph.nir", path)
    with h5py.File(path, "r+") as file:
        neuron = file["node/nodes/lif2"]
        tau = neuron["tau_mem"][:2]
        del neuron["tau_mem"]
        neuron["tau_mem"] = tau
    with pytest.raises(snnir.SnnirError, match=r"node 'lif2': CubaLIF parameters have incompatible shapes"):
        file_facts(path, repair=True)
    assert main(["check", str(path), "--repair"]) != 0


def test_a_neuron_without_time_constants_is_refused_naming_it(fixtures_dir, tmp_path) -> None:
    """A fuzzer's mutant: Rockpool's `tau` emptied (it broadcasts with `r` to no neuron at all).
    The guess names the writer without a `dt`, and `snnir check` refuses the node (it was an
    IndexError from the `dt` fit)."""
    import shutil

    import h5py

    path = tmp_path / "empty.nir"
    shutil.copy(fixtures_dir / "lif_rockpool.nir", path)
    with h5py.File(path, "r+") as file:
        neuron = file["node/nodes/1_LIFNeuronTorch"]
        del neuron["tau"]
        neuron["tau"] = np.zeros(0)
    dialect, evidence = guess_writer(file_facts(path, repair=True))
    assert dialect == "rockpool" and not any("dt =" in line for line in evidence)
    assert main(["check", str(path), "--repair"]) != 0
