"""What a new user trips on: warnings at the user's line, the optimize report, plot panels, hints."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

import snnir
from snnir.cli.cmd_plot import panel_sources, with_spike_probes
from snnir.cli.main import main
from snnir.errors import SnnirError
from snnir.passes import estimate_cost

BROKEN = "braille_noDelay_bias_zero_subgraph.nir"


def quiet_read(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return snnir.read(path, **options)


def test_read_warning_points_at_the_callers_line(fixtures_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snnir.read(fixtures_dir / "lif_norse.nir")
    assert [w.filename for w in caught] == [__file__]


def test_write_warning_points_at_the_callers_line(tmp_path):
    snntorch = pytest.importorskip("snntorch")
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), snntorch.Leaky(beta=0.9, init_hidden=True))
    graph = snnir.trace(net, torch.zeros(1, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        snnir.write(graph, tmp_path / "n.nir", dialect="norse")  # Norse drops things: a warning
    assert caught and {w.filename for w in caught} == {__file__}


def test_optimize_report_counts_what_is_written_and_keeps_names(tmp_path, capsys):
    snntorch = pytest.importorskip("snntorch")
    net = torch.nn.Sequential(torch.nn.Linear(8, 6), snntorch.Leaky(beta=0.9, init_hidden=True),
                              torch.nn.Linear(6, 3), snntorch.Leaky(beta=0.9, init_hidden=True, output=True))
    src, out = tmp_path / "in.nir", tmp_path / "out.nir"
    snnir.write(snnir.trace(net, torch.zeros(1, 8)), src)
    assert main(["optimize", str(src), "-o", str(out), "-O2"]) == 0
    after = re.search(r"after: +(\d+) nodes", capsys.readouterr().out)
    written = quiet_read(out)
    assert int(after.group(1)) == estimate_cost(written).nodes == sum(1 for _ in written.walk())
    assert set(written.nodes) == set(quiet_read(src).nodes)  # the fused layers are split back, names kept


def test_plot_panels_cover_nested_neurons_once(fixtures_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib (the test extra) is not installed")
    from matplotlib.figure import Figure

    graph = quiet_read(fixtures_dir / BROKEN, repair=True)
    assert set(panel_sources(*with_spike_probes(graph))) == {"lif1.lif1", "lif2 (output 'output')"}
    titles = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: titles.extend(ax.get_title() for ax in self.axes))
    x = tmp_path / "x.npy"
    np.save(x, (np.random.default_rng(0).random((20, 1, 12)) < 0.3).astype(float))
    assert main(["plot", str(fixtures_dir / BROKEN), "--repair", "--input", str(x), "-o", str(tmp_path / "r.png")]) == 0
    assert [t.split(":")[0] for t in titles] == ["lif1.lif1", "lif2 (output 'output')"]


def test_repair_hint_names_the_cli_flag_on_the_command_line(fixtures_dir, capsys):
    with pytest.raises(SnnirError, match=r"read with repair=True to fix"):
        quiet_read(fixtures_dir / BROKEN)
    assert main(["verify", str(fixtures_dir / BROKEN)]) == 1
    err = capsys.readouterr().err
    assert "add --repair to fix" in err and "repair=True" not in err


@pytest.mark.parametrize("library", ["snntorch", "norse"])
def test_optimize_to_a_dialect_at_the_default_level(tmp_path, library):
    """-O2 fuses layer and neuron; --to-dialect refused the fused node ("no module for
    snnir.FusedLayerNeuron") where -O1 wrote: a library's file gets them apart."""
    snntorch = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")
    net = torch.nn.Sequential(torch.nn.Linear(8, 6), snntorch.Leaky(beta=0.9, init_hidden=True,
                                                                    reset_mechanism="zero"))
    src, out = tmp_path / "in.nir", tmp_path / "out.nir"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        snnir.write(snnir.trace(net, torch.zeros(1, 8)), src)
        assert main(["optimize", str(src), "-o", str(out), "--to-dialect", library]) == 0
    assert out.is_file()


def test_plot_probes_take_a_free_name():
    """An Output already named 'lif#spikes' was replaced by lif's probe: the plot showed lif as the
    sum of both (values, not spikes) and no panel for that Output."""
    from snnir.ir import IF, Graph, Input, Output, Scale

    graph = Graph({"input": Input((1,)), "output": Output(), "lif#spikes": Output(),
                   "lif": IF(r=np.full(1, 1e5), v_threshold=np.full(1, 0.5)), "sc": Scale(np.full(1, 7.0))},
                  [("input", "lif"), ("lif", "output"), ("input", "sc"), ("sc", "lif#spikes")])
    probed, probes = with_spike_probes(graph)
    assert probes == {"lif": "lif#spikes2"}
    assert set(panel_sources(probed, probes)) == {"lif (output 'output')", "lif#spikes"}
    results = snnir.run(probed, np.ones((3, 1, 1)))
    np.testing.assert_array_equal(results["lif#spikes"].ravel(), 7.0)
    np.testing.assert_array_equal(results["lif#spikes2"], results["output"])


def test_plot_draws_a_membrane_output_as_traces(tmp_path, monkeypatch):
    """An output fed by an LI (a membrane) was drawn as a raster titled "-13 spikes"."""
    pytest.importorskip("matplotlib", reason="matplotlib (the test extra) is not installed")
    from matplotlib.figure import Figure

    from snnir.ir import LI, LIF, Graph, Input, Linear, Output

    rng = np.random.default_rng(0)
    graph = Graph.sequential(
        ("x", Input((4,))), ("fc", Linear(weight=rng.normal(size=(3, 4)))),
        ("lif", LIF(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.full(3, 0.1))),
        ("fc2", Linear(weight=rng.normal(size=(2, 3)))), ("li", LI(tau=np.full(2, 2e-3), r=np.ones(2),
                                                                   v_leak=np.zeros(2))), ("y", Output()))
    snnir.write(graph, tmp_path / "g.nir")
    np.save(tmp_path / "x.npy", (rng.random((30, 1, 4)) < 0.5).astype(float))
    titles, labels = [], []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (titles.extend(ax.get_title() for ax in self.axes),
                                                                   labels.extend(ax.get_ylabel() for ax in self.axes)))
    assert main(["plot", str(tmp_path / "g.nir"), "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "r.png")]) == 0
    assert titles[0].startswith("lif: ") and titles[0].endswith(" spikes") and titles[1] == "y: values, not spikes"
    assert labels == ["neuron", "value"]


def _surrogate_gradient(module, x):
    module(x).sum().backward()
    return {name: param.grad for name, param in module.named_parameters() if param.grad is not None}


@pytest.mark.parametrize("surrogate, slope", [("arctan", "3"), ("triangular", None)])
def test_compile_to_torch_source_takes_a_surrogate(tmp_path, surrogate, slope):
    """The Python API had surrogate= and slope=; `snnir compile --target torch` trained with fast_sigmoid."""
    import importlib.util

    from snnir.ir import LIF, Graph, Input, Linear, Output

    rng = np.random.default_rng(0)
    graph = Graph.sequential(
        ("x", Input((4,))), ("fc", Linear(weight=rng.normal(size=(3, 4)), trainable=("weight",))),
        ("lif", LIF(tau=np.full(3, 2e-3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.full(3, 0.1))),
        ("y", Output()))
    snnir.write(graph, tmp_path / "g.nir")
    options = ["--surrogate", surrogate] + (["--slope", slope] if slope else [])
    assert main(["compile", str(tmp_path / "g.nir"), "-o", str(tmp_path / "m.py"), "--weights-format", "torch",
                 *options]) == 0
    spec = importlib.util.spec_from_file_location("surrogate_model", tmp_path / "m.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    x = torch.as_tensor((rng.random((20, 2, 4)) < 0.5).astype(np.float64))
    ours = _surrogate_gradient(module.load_model(dtype=torch.float64), x)["params.fc:weight"]
    compiled = snnir.compile(quiet_read(tmp_path / "g.nir"), target="torch", dtype=torch.float64,
                             surrogate=surrogate, slope=None if slope is None else float(slope))
    theirs = [grad for name, grad in _surrogate_gradient(compiled, x).items() if "weight" in name]
    assert len(theirs) == 1 and ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs[0], rtol=1e-9, atol=1e-12)


def test_compile_to_onnx_refuses_a_surrogate(tmp_path, fixtures_dir, capsys):
    assert main(["compile", str(fixtures_dir / "lif_norse.nir"), "--target", "onnx", "-o", str(tmp_path / "o"),
                 "--surrogate", "arctan"]) == 1
    assert "--surrogate and --slope are for --target torch or ipu" in capsys.readouterr().err


@pytest.mark.parametrize("build, shape, expected", [
    ("mlp", "1,28,28", "node '0': Linear takes inputs [B, 784] (784 features last), got [1, 28, 28]"),
    ("conv", "1,28,28", "node '0': Conv2d takes inputs [B, 1, H, W] (4 dimensions), got [1, 28, 28]"),
    ("conv", "1,1,28", "node '0': Conv2d takes inputs [B, 1, H, W] (4 dimensions), got [1, 1, 28]"),
    ("conv", "1,2,28,28", "node '0': Conv2d takes inputs [B, 1, H, W] (4 dimensions), got [1, 2, 28, 28]"),
], ids=["linear rank", "conv rank", "conv rank 3", "conv channels"])
def test_export_names_the_layer_an_input_shape_does_not_fit(tmp_path, capsys, build, shape, expected):
    """torch said "mat1 and mat2 shapes cannot be multiplied (28x28 and 784x10)" or "Kernel size can't be
    greater than actual input size"."""
    pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")
    (tmp_path / "b.py").write_text(
        "import torch, snntorch as snn\n"
        "def mlp():\n    return torch.nn.Sequential(torch.nn.Linear(784, 10), snn.Leaky(beta=0.9, init_hidden=True))\n"
        "def conv():\n    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), snn.Leaky(beta=0.9, init_hidden=True))\n")
    assert main(["export", f"{tmp_path / 'b.py'}:{build}", "--input-shape", shape, "-o", str(tmp_path / "o.nir")]) == 1
    err = capsys.readouterr().err
    assert err == f"snnir export: error: {expected}\n"
