"""The ``norse-1.0`` dialect against Norse 1.0.0 itself, run in a child Python whose path starts
with ``.venv-peers/norse-1.0`` (``snnir.peer_folder``; ``scripts/install_norse_1_0.sh``, run by
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
from snnir.peer_folder import probe, run_child

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
