"""snnir against other nir releases than the venv's (snnir supports nir 1.0.4 to 1.0.8).

Each extra release is a wheel under ``.venv/nir-<version>/`` (``make install``
downloads nir 1.0.8 there). A wheel is pure Python: it is unzipped into a temp
dir and that nir runs in a subprocess with the dir first on PYTHONPATH. Checked:

- that nir reads every NIR-paper fixture after snnir read and rewrote it;
- that nir reads the file snnir writes for every op type it knows;
- the reverse: graphs built and written by that nir load in snnir, equal to the
  same graphs written by the venv's nir, and run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import snnir
from snnir.ir import OPS, Graph
from snnir.ir.ops import Conv2d, Input, Linear, Output, Subgraph
from snnir.ir.ops.norm import BatchNorm

from test_nir_io import example, wrap  # the round-trip tests' example op per type

VENV = Path(__file__).resolve().parents[2] / ".venv"
WHEEL_DIRS = sorted(VENV.glob("nir-*/"))
VERSIONS = [d.name[len("nir-"):] for d in WHEEL_DIRS]
OP_TYPES = sorted(OPS)  # extension ops are written lowered to standard NIR
VARIANTS = {"scalar": False, "per_neuron": True}

#: (nir version, op type) -> why nir fails to read snnir's file (a nir bug: xfail strict).
NIR_BUGS = {
    ("1.0.8", "Conv2d"): "nir 1.0.8's type check rejects Conv2d with groups > 1 (it ignores groups in the "
                         "input channel count); groups=1 is checked by test_conv2d_groups1_reads",
}

#: nir version -> why it cannot read edges into a nested graph's named port ("sub.input").
PORT_EDGE_GAPS = {
    "1.0.8": "nir 1.0.8's validate_structure rejects 'sub.input'-style edge endpoints, which snnir writes "
             "for edges into a nested graph's named port and nir 1.0.4 reads",
}

#: Code run by each nir (the extra one in a subprocess, the venv's in-process): builds
#: graphs with nir's own API and writes them with nir.write into ``out`` (a Path).
NIR_GRAPHS = r'''
import numpy as np
import nir

def f(*values):
    return np.asarray(values, dtype=np.float32)

graphs = {
    "affine_lif": nir.NIRGraph.from_list(
        nir.Affine(weight=np.arange(6, dtype=np.float32).reshape(3, 2) / 4, bias=f(0.1, 0.0, -0.1)),
        nir.LIF(tau=f(0.01, 0.02, 0.03), r=f(1, 2, 3), v_leak=f(0, 0, 0), v_threshold=f(0.5, 0.5, 1)),
    ),
    "recurrent_cuba": nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([2])),
            "fc": nir.Linear(weight=f(1, 0.5, -0.5, 1).reshape(2, 2)),
            "cuba": nir.CubaLIF(tau_syn=f(5e-3, 5e-3), tau_mem=f(1e-2, 2e-2), r=f(4, 4), v_leak=f(0, 0),
                                v_threshold=f(0.3, 0.4)),
            "rec": nir.Linear(weight=f(0, -0.2, 0.2, 0).reshape(2, 2)),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("input", "fc"), ("fc", "cuba"), ("cuba", "rec"), ("rec", "cuba"), ("cuba", "output")],
    ),
    "conv_if_pool": nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1, 4, 4])),
        nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3), dtype=np.float32) / 9, stride=1, padding=1,
                   dilation=1, groups=1, bias=f(0, 0.1)),
        nir.IF(r=f(*[100] * 32).reshape(2, 4, 4), v_threshold=f(*[1] * 32).reshape(2, 4, 4)),
        nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array([2, 2, 2])}),
        nir.Output(output_type=np.array([8])),
    ),
    "nested_li": nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([2])),
            "sub": nir.NIRGraph.from_list(nir.LI(tau=f(0.01, 0.02), r=f(1, 1), v_leak=f(0, 0))),
            "output": nir.Output(output_type=np.array([2])),
        },
        edges=[("input", "sub"), ("sub", "output")],  # nir 1.0.8 rejects "sub.input" endpoints
    ),
    "scale_threshold_delay": nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([3])),
        nir.Scale(scale=f(1, 2, 3)),
        nir.Delay(delay=f(0, 1e-3, 3e-3)),
        nir.Threshold(threshold=f(0.5, 0.5, 0.5)),
        nir.Output(output_type=np.array([3])),
    ),
}
for name, graph in graphs.items():
    nir.write(out / (name + ".nir"), graph)
'''

#: The subprocess: reports nir's location and version, reads files, writes NIR_GRAPHS.
PROBE = r'''
import json, sys
from pathlib import Path
import nir

job = json.loads(sys.argv[1])
result = {"file": nir.__file__, "version": getattr(nir, "__version__", "?"), "read": {}}
result["types"] = sorted(n for n in dir(nir) if isinstance(getattr(nir, n), type))
result["lif_fields"] = sorted(getattr(nir.LIF, "__dataclass_fields__", {}))
for path in job["read"]:
    try:
        nir.read(path)
        result["read"][path] = None
    except Exception as exc:
        result["read"][path] = f"{type(exc).__name__}: {exc}"
if job.get("write_to"):
    out = Path(job["write_to"])
    exec(job["graphs"])
print(json.dumps(result))
'''


def _probe(site: Path, read=(), write_to: Path | None = None) -> dict:
    job = {"read": [str(p) for p in read], "write_to": str(write_to) if write_to else None, "graphs": NIR_GRAPHS}
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(job)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, f"the nir subprocess failed:\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).is_relative_to(site), f"the subprocess imported nir from {result['file']}, not {site}"
    return result


@pytest.fixture(scope="module", params=VERSIONS or [None], ids=lambda v: f"nir-{v}" if v else "none")
def nir_version(request, tmp_path_factory):
    """(version, unzipped site dir, probe result) for each extra nir release."""
    version = request.param
    if version is None:
        pytest.skip(f"no extra nir release under {VENV}/nir-*/ (make install downloads nir 1.0.8 there)")
    wheels = sorted((VENV / f"nir-{version}").glob("nir-*.whl"))
    if not wheels:
        pytest.skip(f"{VENV}/nir-{version}/ holds no nir wheel (re-run make install)")
    site = tmp_path_factory.mktemp(f"nir-{version}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        wheel.extractall(site)
    probe = _probe(site)
    assert probe["version"] == version, f"the wheel in nir-{version}/ is nir {probe['version']}"
    return version, site, probe


def _op_file(op_type: str, variant: str, probe: dict, directory: Path) -> Path:
    op, shape = example(op_type, np.random.default_rng(7), variant=VARIANTS[variant])
    if "v_reset" in op.param_names() and "v_reset" not in probe["lif_fields"]:
        op = op.replace(v_reset=np.zeros(()))  # that nir has no v_reset: only zero resets are expressible
    path = directory / f"{op_type}-{variant}.nir"
    spikes_in = {"binary_inputs": {"in"}} if "MaxPool" in op_type else {}  # a max pool's NIR form needs spikes
    snnir.write(wrap(op, shape), path, **spikes_in)
    return path


#: the extension ops written as themselves alone (no NIR form; the writer warns that only snnir reads
#: them): a BatchNorm has one only folded into a layer before it (test_folded_batchnorm_reads)
NO_NIR_FORM = ("snnir.StateProbe", "snnir.BatchNorm")


@pytest.fixture(scope="module")
def op_reads(nir_version, tmp_path_factory):
    """(op type, variant) -> that nir's error reading snnir's file (None: read fine), for types it knows."""
    version, site, probe = nir_version
    directory = tmp_path_factory.mktemp(f"ops-{version}")
    paths = {
        (t, v): _op_file(t, v, probe, directory)
        for t in OP_TYPES if t in probe["types"] or t.startswith("snnir.") and t not in NO_NIR_FORM for v in VARIANTS
    }
    result = _probe(site, read=paths.values())["read"]
    return {key: result[str(p)] for key, p in paths.items()}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("op_type", OP_TYPES)
def test_nir_reads_what_snnir_writes(op_type, variant, nir_version, op_reads, request):
    version = nir_version[0]
    if (op_type, variant) not in op_reads:
        pytest.skip(f"nir {version} has no {op_type}")
    if (version, op_type) in NIR_BUGS:
        request.applymarker(pytest.mark.xfail(reason=NIR_BUGS[version, op_type], strict=True))
    error = op_reads[op_type, variant]
    assert error is None, f"nir {version} could not read snnir's {op_type} file: {error}"


def test_conv2d_groups1_reads(nir_version, tmp_path):
    version, site, _ = nir_version
    conv = Conv2d(weight=np.ones((4, 2, 3, 3)), bias=np.zeros(4), padding=1)
    snnir.write(wrap(conv, (2, 5, 5)), tmp_path / "conv.nir")
    assert _probe(site, read=[tmp_path / "conv.nir"])["read"] == {str(tmp_path / "conv.nir"): None}


def test_folded_batchnorm_reads(nir_version, tmp_path):
    """A Conv2d then a BatchNorm is written as one Conv2d, which every nir reads."""
    version, site, _ = nir_version
    conv = Conv2d(weight=np.ones((4, 2, 3, 3)), bias=np.zeros(4), padding=1)
    norm = BatchNorm(mean=np.full(4, 0.1), var=np.full(4, 2.0), weight=np.ones(4), bias=np.zeros(4))
    graph = Graph.sequential(("in", Input((2, 5, 5))), ("conv", conv), ("bn", norm), ("out", Output()))
    with pytest.warns(UserWarning, match="BatchNorm folded"):
        snnir.write(graph, tmp_path / "bn.nir")
    assert _probe(site, read=[tmp_path / "bn.nir"])["read"] == {str(tmp_path / "bn.nir"): None}


def test_nested_port_edges_read(nir_version, tmp_path, request):
    version, site, _ = nir_version
    if version in PORT_EDGE_GAPS:
        request.applymarker(pytest.mark.xfail(reason=PORT_EDGE_GAPS[version], strict=True))
    inner = Graph.sequential(("input", Input((2,))), ("fc", Linear(weight=np.eye(2))), ("output", Output()))
    graph = Graph({"in": Input((2,)), "sub": Subgraph(graph=inner), "out": Output()},
                  (("in", "sub.input"), ("sub.output", "out")))
    snnir.write(graph, tmp_path / "ports.nir")
    assert _probe(site, read=[tmp_path / "ports.nir"])["read"] == {str(tmp_path / "ports.nir"): None}


def test_nir_reads_rewritten_fixtures(nir_version, fixtures_dir, tmp_path):
    version, site, _ = nir_version
    rewritten = []
    for source in sorted(fixtures_dir.glob("*.nir")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the fixtures lack semantics; the read warns what it assumed
            graph = snnir.read(source, repair=True)  # one fixture names a node wrongly
        snnir.write(graph, tmp_path / source.name)
        rewritten.append(tmp_path / source.name)
    assert rewritten, f"no .nir fixtures in {fixtures_dir}"
    failed = {Path(p).name: e for p, e in _probe(site, read=rewritten)["read"].items() if e is not None}
    assert failed == {}, f"nir {version} could not read snnir's rewrites: {failed}"


def test_snnir_reads_what_nir_writes(nir_version, tmp_path):
    """Graphs written by that nir load and run exactly as the same graphs written by the venv's
    nir (not always equal Graphs: nir 1.0.8 writes the zero v_reset that 1.0.4 leaves out)."""
    version, site, _ = nir_version
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    theirs.mkdir()
    ours.mkdir()
    _probe(site, write_to=theirs)
    exec(NIR_GRAPHS, {"out": ours})  # the venv's nir
    names = sorted(p.name for p in ours.glob("*.nir"))
    assert names == sorted(p.name for p in theirs.glob("*.nir"))
    rng = np.random.default_rng(0)
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # plain NIR files: dt and resets come from the defaults given
            graph, reference = snnir.read(theirs / name, dt=1e-3), snnir.read(ours / name, dt=1e-3)
        assert set(graph.nodes) == set(reference.nodes) and graph.edges == reference.edges, name
        (input_name,) = graph.inputs
        shape = snnir.verify(graph).shapes.outputs[input_name]
        x = rng.uniform(0, 2, (20, 2) + tuple(shape))
        got, want = snnir.run(graph, x, record=True), snnir.run(reference, x, record=True)
        assert got.keys() == want.keys(), name
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{name}: {key}")
