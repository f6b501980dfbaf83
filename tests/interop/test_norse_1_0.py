"""The ``norse-1.0`` dialect against Norse 1.0.0 itself, run in a child Python whose path starts
with ``.venv-peers/norse-1.0`` (``snnir.peers.folder``; ``scripts/install_norse_1_0.sh``, run by
``make interop``, puts it there). Skipped, saying why, where it is absent.

Norse 1.0.0, the one release before 1.1, predates NIR: it has no ``from_nir``, so its importer
refuses every file, as ``snnir.imported_by(graph, "norse-1.0")`` predicts. Its neuron cells run:
the paper's ``lif_norse.nir`` read with ``norse-1.0`` spikes as 1.0.0's own ``LIFBoxCell`` built
with the file's parameters (``tau_mem_inv = 1 / tau``) at the paper's ``dt``.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import snnir
from snnir import peers
from snnir.errors import SnnirError
from snnir.peers.folder import probe, run_child

from frontends.test_dialect_versions import NORSE_SPIKES, PAPER_INPUT

pytestmark = pytest.mark.interop

PAPER_DT = 1e-4
#: Norse 1.0.0's LIFBoxCell stepped on argv[1] (.npy, [T, 1, 1]) with tau_mem_inv, v_th, dt from argv[2:5]
_LIF_BOX = """
import json, sys
import numpy as np, torch
import norse
from norse.torch import LIFBoxCell, LIFBoxParameters
x = torch.from_numpy(np.load(sys.argv[1], allow_pickle=False))
tau_mem_inv, v_th, dt = (torch.tensor(float(a)) for a in sys.argv[2:5])
cell = LIFBoxCell(LIFBoxParameters(tau_mem_inv=tau_mem_inv, v_th=v_th), dt=float(dt))
state, steps = None, []
with torch.no_grad():
    for t in range(len(x)):
        z, state = cell(x[t], state)
        if z.any():
            steps.append(t)
print(json.dumps({"version": norse.__version__, "steps": steps}))
"""


@pytest.fixture(scope="module", autouse=True)
def norse_1_0() -> None:
    missing = peers.installed("norse-1.0")
    if missing is not None:
        pytest.skip(missing)


def _read(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return snnir.read(path, **options)


def test_norse_1_0_has_no_importer_as_predicted(fixtures_dir) -> None:
    assert "norse 1.0.0 has no norse.torch.from_nir" in probe("norse-1.0")[1]
    with pytest.raises(SnnirError, match="norse-1.0's importer fails on .*lif_norse.nir.*has no norse.torch.from_nir"):
        peers.run_real(fixtures_dir / "lif_norse.nir", "norse-1.0", PAPER_INPUT)
    with pytest.raises(SnnirError, match="Norse 1.0.0.*has no NIR importer"):
        snnir.imported_by(_read(fixtures_dir / "lif_norse.nir", dialect="norse-1.0"), "norse-1.0", dt=PAPER_DT)


def test_the_papers_file_read_as_norse_1_0_spikes_as_its_lif_box_cell(fixtures_dir, tmp_path) -> None:
    graph = _read(fixtures_dir / "lif_norse.nir", dialect="norse-1.0", dt=PAPER_DT)
    weight, lif = graph.nodes["0"], graph.nodes["1"]
    assert np.all(weight.weight == 1.0) and np.all(weight.bias == 0.0)  # the neuron sees the input as is
    assert np.all(lif.r == 1.0) and np.all(lif.v_leak == 0.0)
    np.save(tmp_path / "x.npy", PAPER_INPUT.astype(np.float32))
    args = [str(tmp_path / "x.npy"), repr(float(1.0 / lif.tau[0])), repr(float(lif.v_threshold[0])), repr(PAPER_DT)]
    proc = run_child("norse-1.0", ["-c", _LIF_BOX, *args])
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    (ours,) = snnir.run(graph, PAPER_INPUT).values()
    assert answer["version"] == "1.0.0"
    assert answer["steps"] == np.nonzero(ours[:, 0, 0])[0].tolist() == NORSE_SPIKES


#: Norse 1.0.0's LIFCell or IAFCell (argv[2]) with the parameters of argv[3] (JSON) at dt argv[4],
#: stepped on argv[1] (.npy, float64); the spikes saved to argv[5]
_CELL = """
import json, sys
import numpy as np, torch
from norse.torch import IAFCell, IAFParameters, LIFCell, LIFParameters
from norse.torch.functional.iaf import IAFFeedForwardState
from norse.torch.functional.lif import LIFFeedForwardState
x = torch.from_numpy(np.load(sys.argv[1], allow_pickle=False))
p = {k: torch.tensor(v, dtype=torch.float64) for k, v in json.loads(sys.argv[3]).items()}
zero = torch.zeros_like(x[0])
if sys.argv[2] == "lif":
    cell, state = LIFCell(LIFParameters(**p), dt=float(sys.argv[4])), LIFFeedForwardState(v=zero, i=zero)
else:
    cell, state = IAFCell(IAFParameters(**p)), IAFFeedForwardState(v=zero)
out = []
with torch.no_grad():
    for t in range(len(x)):
        z, state = cell(x[t], state)
        out.append(z.numpy())
np.save(sys.argv[5], np.stack(out).astype(np.float64))
"""
N_NEURONS, STEPS, DT = 6, 80, 1e-3


def _norse_1_0_cell(kind: str, params: dict, x: np.ndarray, folder) -> np.ndarray:
    np.save(folder / "x.npy", x)
    args = [str(folder / "x.npy"), kind, json.dumps(params), repr(DT), str(folder / "z.npy")]
    proc = run_child("norse-1.0", ["-c", _CELL, *args])
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.load(folder / "z.npy", allow_pickle=False)


def _as_a_norse_file_before_1_1(node, path) -> None:
    """The file the unreleased Norse after 1.0.0 wrote: ``to_nir``'s field mapping of 1.1
    (norse/torch/utils/export_nir.py) with the true time constants (no ``* dt``)."""
    import nir

    shape = np.array([N_NEURONS])
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=shape), "0": node, "output": nir.Output(output_type=shape)},
                         edges=[("input", "0"), ("0", "output")])
    nir.write(str(path), graph)


@pytest.mark.parametrize("kind", ["lif", "iaf"])
def test_norse_1_0_cells_spike_as_the_dialect_reads_their_files(kind, tmp_path) -> None:
    """LIFCell (written as CubaLIF, w_in = r = 1) and IAFCell (IF, r = 1: v += x) of Norse 1.0.0
    against snnir on the file, read with ``norse-1.0``; every spike equal. 1.0.0's LIFCell updates
    the membrane from last step's current, then the current jumps by x (``voltage_first``; Norse
    1.1's jumps first). Its cells would start the membrane at ``v_leak`` (LIF) or ``v_reset`` (IAF)
    with ``torch.full``, which under torch 2.13 takes no tensor: they start from zero states here,
    as NIR's membranes start."""
    import nir

    rng = np.random.default_rng(3)
    ones = np.ones(N_NEURONS)
    v_th = rng.uniform(0.5, 1.5, N_NEURONS)
    v_reset = rng.uniform(-0.2, 0.2, N_NEURONS)
    if kind == "lif":
        tau_mem, tau_syn = rng.uniform(5e-3, 3e-2, N_NEURONS), rng.uniform(2e-3, 1e-2, N_NEURONS)
        params = {"tau_mem_inv": (1 / tau_mem).tolist(), "tau_syn_inv": (1 / tau_syn).tolist(),
                  "v_th": v_th.tolist(), "v_reset": v_reset.tolist(), "v_leak": [0.0] * N_NEURONS}
        node = nir.CubaLIF(tau_mem=tau_mem, tau_syn=tau_syn, r=ones, v_leak=0 * ones, v_threshold=v_th, w_in=ones,
                           **_v_reset(nir.CubaLIF, v_reset))
        x = (rng.random((STEPS, 2, N_NEURONS)) < 0.3) * rng.uniform(1.0, 3.0, N_NEURONS)
    else:
        params = {"v_th": v_th.tolist(), "v_reset": v_reset.tolist()}
        node = nir.IF(r=ones, v_threshold=v_th, **_v_reset(nir.IF, v_reset))
        x = (rng.random((STEPS, 2, N_NEURONS)) < 0.3) * rng.uniform(0.1, 0.5, N_NEURONS)
    if "v_reset" not in node.__dataclass_fields__:
        params["v_reset"] = [0.0] * N_NEURONS  # nir 1.0.4 stores no v_reset: the file resets to 0
    _as_a_norse_file_before_1_1(node, tmp_path / "f.nir")
    theirs = _norse_1_0_cell(kind, params, x, tmp_path)
    (ours,) = snnir.run(_read(tmp_path / "f.nir", dialect="norse-1.0", dt=DT), x).values()
    assert theirs.any() and not theirs.all()
    np.testing.assert_array_equal(ours, theirs)


def _v_reset(cls, v_reset: np.ndarray) -> dict:
    return {"v_reset": v_reset} if "v_reset" in cls.__dataclass_fields__ else {}
