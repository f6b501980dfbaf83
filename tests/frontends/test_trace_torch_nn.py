"""Traced torch.nn layers and functional glue match torch's forward; bad input is refused clearly."""

from __future__ import annotations

import warnings
import weakref
from unittest import mock

import numpy as np
import pytest
import torch

import snnir
from snnir.errors import SnnirError
from snnir.ir import LIF, Semantics

from tests.frontends._harness import as_float64, check_same, random_input, run_step_model

snn = pytest.importorskip("snntorch", reason="snnTorch (the test extra) is not installed")


class Residual(torch.nn.Module):
    """A stateless DAG: two branches summed, a difference and a scalar gain."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.fc1 = torch.nn.Linear(8, 10)
        self.fc2 = torch.nn.Linear(10, 10, bias=False)
        self.drop = torch.nn.Dropout(0.5)
        self.fc3 = torch.nn.Linear(10, 4)
        self.skip = torch.nn.Identity()

    def forward(self, x):
        h = self.fc1(x)
        y = self.drop(self.fc2(h)) + self.skip(h)
        return self.fc3(y - 0.5 * h)


def test_stateless_dag_matches_torch(tmp_path):
    model = Residual().train()  # tracing uses eval semantics: Dropout is the identity
    x = random_input((8,), 1.0)
    with pytest.warns(UserWarning, match=r"eval mode, but 'drop' \(Dropout\) is in training mode"):
        graph = snnir.trace(model, x[0].float())
    with torch.no_grad():
        expected = model.double().eval()(x).numpy()
    out = snnir.run(graph, x.numpy())["output"]
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    assert {"fc1", "fc2", "fc3", "neg", "scale"} <= set(graph.nodes)
    assert "drop" not in graph.nodes and "skip" not in graph.nodes
    snnir.write(graph, tmp_path / "dag.nir")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = snnir.run(snnir.read(tmp_path / "dag.nir"), x.numpy())["output"]
    np.testing.assert_allclose(again, expected, rtol=0, atol=1e-6)


def conv_net() -> torch.nn.Module:
    torch.manual_seed(4)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, padding=1),
        torch.nn.BatchNorm2d(4),
        snn.Leaky(beta=0.8, init_hidden=True),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 3 * 3, 10),
        torch.nn.BatchNorm1d(10),
        snn.Leaky(beta=0.9, threshold=0.5, init_hidden=True, output=True),
    )
    for bn in (net[1], net[6]):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.1, 0.1)
    return net


def test_conv_batchnorm_pool_flatten_network():
    model = conv_net().eval()
    x = random_input((2, 6, 6), 1.5)
    graph = snnir.trace(model, x[0].float())
    assert graph.nodes["0"].op_type == "Conv2d" and graph.nodes["1"].op_type == "snnir.BatchNorm"
    assert graph.nodes["4"].op_type == "Flatten" and graph.nodes["5"].op_type == "Affine"
    spikes, states = run_step_model(as_float64(model).eval(), x)
    assert 0 < spikes.mean() < 1
    check_same(graph, spikes, states, x.numpy())


def test_batchnorm_in_training_mode_is_named_in_a_warning():
    """In training mode BatchNorm normalises by each batch's statistics; the graph uses the
    running ones, so the trace says which layers the model computes differently."""
    x = random_input((2, 6, 6), 1.5)
    with pytest.warns(UserWarning, match=r"'1' \(BatchNorm2d\), '6' \(BatchNorm1d\) are in training mode"):
        snnir.trace(conv_net(), x[0].float())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in eval mode nothing to say: the graph computes what the model does
        snnir.trace(conv_net().eval(), x[0].float())


@pytest.mark.parametrize("name", ["Dropout", "Identity", "BatchNorm1d"])
def test_a_model_class_named_like_a_torch_layer_is_traced_through(name):
    """Only torch.nn's own Dropout/Identity/BatchNorm pass through or normalise: a user's model of
    the same class name is traced as any model (it once became a pass-through of its input)."""
    def forward(self, x):
        mem, out = self.lif.init_leaky(), []
        for t in range(x.shape[0]):
            spk, mem = self.lif(self.fc(x[t]), mem)
            out.append(spk)
        return torch.stack(out)

    def init(self):
        torch.nn.Module.__init__(self)
        self.fc, self.lif = torch.nn.Linear(8, 16), snn.Leaky(beta=0.9)

    model = type(name, (torch.nn.Module,), {"__init__": init, "forward": forward})()
    x = random_input((8,), 2.0)
    graph = snnir.trace(model, x.float())
    assert set(graph.nodes) == {"input", "fc", "lif", "output"}
    with torch.no_grad():
        want = model(x.float())
    got = snnir.compile(graph, target="torch")(x.float())
    assert torch.equal(got, want)


def test_batch_first_data_is_refused_naming_the_layer_and_the_fix():
    """``x[:, t]`` on ``[B, T, ...]`` data: time is the first dimension in snnir, so the trace
    says so (it once failed only at the guard, as a value mismatch)."""
    class BatchFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.lif = torch.nn.Linear(8, 16), snn.Leaky(beta=0.9)

        def forward(self, x):
            mem, out = self.lif.init_leaky(), []
            for t in range(x.shape[1]):
                spk, mem = self.lif(self.fc(x[:, t]), mem)
                out.append(spk)
            return torch.stack(out, dim=1)

    with pytest.raises(SnnirError, match=r"node 'fc': .*x\[:, t\].*trace x.transpose\(0, 1\) and index x\[t\]"):
        snnir.trace(BatchFirst(), torch.rand(4, 20, 8))


def test_conv1d_and_functional_flatten():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(5)
            self.conv = torch.nn.Conv1d(3, 4, 3, stride=2, padding=1)
            self.lif1 = snn.Leaky(beta=0.7, init_hidden=True)
            self.fc = torch.nn.Linear(4 * 4, 3)
            self.lif2 = snn.Leaky(beta=0.7, init_hidden=True)

        def forward(self, x):
            return self.lif2(self.fc(self.lif1(self.conv(x)).view(x.shape[0], -1)))

    model = Net()
    x = random_input((3, 8), 2.0)
    graph = snnir.trace(model, x[0].float())
    assert graph.nodes["flatten"].op_type == "Flatten"
    spikes, states = run_step_model(as_float64(model), x)
    check_same(graph, spikes, states, x.numpy())


def test_modules_with_to_op_are_leaves():
    class OwnLIF(torch.nn.Module):
        """Stands in for an ``snnir.nn`` layer: tracing uses ``to_op``, not its numerics."""

        def forward(self, x):
            return x

        def to_op(self):
            return LIF(tau=2e-3, r=1.0, v_leak=0.0, v_threshold=1.0, sem=Semantics(reset="subtract"))

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)
            self.own = OwnLIF()

        def forward(self, x):
            return self.own(self.fc(x))

    graph = snnir.trace(Net(), torch.rand(2, 3))
    assert isinstance(graph.nodes["own"], LIF) and ("fc", "own") in graph.edges


@pytest.mark.parametrize(
    "forward,needle,node",
    [
        (lambda m, x: m.lif(torch.relu(m.fc(x))), "relu", "lif"),
        (lambda m, x: m.lif(m.fc(x)) + m.lif(m.fc(x) * 2.0), "different inputs while its state lives", "lif"),
        (lambda m, x: m.lif(m.fc(x) * m.fc(x)), "mul", "lif"),
        (lambda m, x: m.lif(torch.ones_like(m.fc(x))), "ones_like", "lif"),
        (lambda m, x: m.lif(m.fc(torch.ones(2, 3))), "does not derive", "fc"),
        (lambda m, x: m.lif(torch.cat([m.fc(x), x], dim=1)), "'cat' in '<model>'", "lif"),
        (lambda m, x: torch.cat([m.lif(m.fc(x)), x], dim=1), "'cat' in '<model>'", "output"),
    ],
)
def test_untraceable_glue_is_refused_naming_the_layer(forward, needle, node):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 3)
            self.lif = snn.Leaky(beta=0.5, init_hidden=True)

        def forward(self, x):
            return forward(self, x)

    with pytest.raises(SnnirError) as info:
        snnir.trace(Net(), torch.rand(2, 3))
    assert info.value.node == node and needle in str(info.value)


def test_membrane_used_as_input_is_refused():
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 3)
            self.lif = snn.Leaky(beta=0.5)
            self.out = torch.nn.Linear(3, 2)

        def forward(self, x):
            _, mem = self.lif(self.fc(x))
            return self.out(mem)

    with pytest.raises(SnnirError, match="neuron state"):
        snnir.trace(Net(), torch.rand(2, 3))


def test_bad_arguments():
    with pytest.raises(SnnirError, match="torch.nn.Module"):
        snnir.trace(lambda x: x, torch.rand(2, 3))
    with pytest.raises(SnnirError, match="batch dimension"):
        snnir.trace(torch.nn.Linear(3, 2), torch.rand(3))
    with pytest.raises(SnnirError, match=r"Linear takes inputs \[B, 3\] \(3 features last\), got \[2, 5\]") as info:
        snnir.trace(torch.nn.Sequential(torch.nn.Linear(3, 2)), torch.rand(2, 5))
    assert info.value.node == "0"


def test_node_names_are_stable_module_paths():
    model = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(3, 3), snn.Leaky(beta=0.5, init_hidden=True)))
    first = snnir.trace(model, torch.rand(2, 3))
    second = snnir.trace(model, torch.rand(5, 3))
    assert set(first.nodes) == {"input", "0_0", "0_1", "output"}
    assert first == second


def test_convolutional_rleaky_with_conv_recurrence():
    torch.manual_seed(6)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 3, 3, padding=1),
        snn.RLeaky(beta=0.8, conv2d_channels=3, kernel_size=3, init_hidden=True),
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 5 * 5, 4),
        snn.Leaky(beta=0.9, init_hidden=True),
    )
    x = random_input((1, 5, 5), 2.0)
    graph = snnir.trace(model, x[0].float())
    assert graph.nodes["1_recurrent"].op_type == "Conv2d"
    spikes, states = run_step_model(as_float64(model), x)
    assert 0 < spikes.mean() < 1
    check_same(graph, spikes, states, x.numpy())


def test_snnir_nn_layers_trace_to_their_own_ops():
    snnir_nn = pytest.importorskip("snnir.nn")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(7)
            self.fc = torch.nn.Linear(5, 6)
            self.lif = snnir_nn.LIF(tau=2e-3, r=2.0, v_threshold=0.5, reset="subtract", trainable=("tau",))

        def forward(self, x):
            state, out = None, []
            for t in range(x.shape[0]):
                y, state = self.lif(self.fc(x[t]), state)
                out.append(y)
            return torch.stack(out)

    model = Net().double()
    x = random_input((5,), 2.0)
    graph = snnir.trace(model, x[:2])
    assert graph.nodes["lif"] == model.lif.to_op()
    with torch.no_grad():
        expected = model(x).numpy()
    assert 0 < expected.mean() < 1
    np.testing.assert_array_equal(snnir.run(graph, x.numpy())["output"], expected)


class TutorialNet(torch.nn.Module):
    """snnTorch tutorial 5 / the IPU tutorial's loop: the same frame fed at every step;
    ``after_loop()`` (when given) runs once the steps are done."""

    def __init__(self, num_steps: int = 25, after_loop=None):
        super().__init__()
        torch.manual_seed(8)
        self.num_steps, self.after_loop = num_steps, after_loop
        self.fc1, self.lif1 = torch.nn.Linear(12, 8), snn.Leaky(beta=0.9)
        self.fc2, self.lif2 = torch.nn.Linear(8, 3), snn.Leaky(beta=0.9)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk2_rec = []
        for _ in range(self.num_steps):
            spk1, mem1 = self.lif1(self.fc1(x.view(x.shape[0], -1)), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk2_rec.append(spk2)
        if self.after_loop is not None:
            self.after_loop()
        return torch.stack(spk2_rec, dim=0)


def test_tutorial_style_static_input_loop():
    """snnTorch tutorial 5 / the IPU tutorial: the same frame is fed at every step."""
    model = TutorialNet()
    frame = torch.rand(4, 3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    graph = snnir.trace(model, frame.float())
    assert graph.nodes["input"].shape == (3, 4) and graph.nodes["flatten"].op_type == "Flatten"
    with torch.no_grad():
        expected = as_float64(model)(frame).double().numpy()
    assert 0 < expected.mean() < 1
    out = snnir.run(graph, np.broadcast_to(frame.numpy(), (25,) + tuple(frame.shape)))["output"]
    np.testing.assert_array_equal(out, expected)


def test_tracing_keeps_no_step_alive():
    """The recorder tags tensors weakly: over a long loop only what the model itself keeps
    (here the recorded output spikes) stays alive, not every step's currents and membranes."""
    from snnir.frontends import recorder

    tagged = []
    tag = recorder.Recorder.tag

    def spy(self, tensor, what):
        tagged.append(weakref.ref(tensor))
        tag(self, tensor, what)

    alive_at_end = []
    model = TutorialNet(num_steps=60, after_loop=lambda: alive_at_end.append(sum(r() is not None for r in tagged)))
    with mock.patch.object(recorder.Recorder, "tag", spy):
        snnir.trace(model, torch.rand(2, 12))
    assert len(tagged) > 4 * 60 and alive_at_end[0] < 60 + 10, (len(tagged), alive_at_end)
