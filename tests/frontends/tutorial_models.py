"""snnTorch's published architectures, rebuilt small, written the way their tutorials write them.

Sources (read on GitHub, jeshraghian/snntorch, docs/ and examples/): the README quickstart,
tutorials 2-7, the regression tutorials, population coding, the spiking autoencoder (SAE),
ST-MNIST, binarised SNNs (BSNN), exoplanet hunting, the IPU tutorial and snnTorch's NIR
tests. Layer widths and image sizes are shrunk to keep the corpus fast; the structure (layer
order, neuron options, how forward loops, records and returns) is theirs. Weights are random.

Each entry: ``Case(name, build, shape, steps, style, expect, scale)``: ``build()`` gives the
model, ``shape`` one sample's input shape, ``style`` "step" (forward is one step, called per
step) or "loop" (forward takes ``[T, B, ...]``, or loops ``steps`` times over a static input:
"static"), ``expect`` "exact" or the text a refusal must contain (naming the layer); ``scale`` the input's
and ``build``'s weight gain are chosen so that every layer fires, 5-30 % of its neurons on average.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

import snntorch as snn
from snntorch import surrogate, utils

SPIKE_GRAD = surrogate.fast_sigmoid(slope=25)


@dataclass
class Case:
    name: str
    build: Callable[[], nn.Module]
    shape: tuple[int, ...]
    style: str = "step"
    expect: str = "exact"
    scale: float = 1.0
    steps: int = 25
    quiet: tuple[str, ...] = ()  # layers whose spikes are not the point (read-out membranes): may stay silent


def seeded(build: Callable[[], nn.Module], seed: int = 0, gain: float = 1.0) -> Callable[[], nn.Module]:
    """``build`` under a fixed seed, its weights scaled by ``gain`` (random weights fire little)."""

    def make() -> nn.Module:
        torch.manual_seed(seed)
        model = build()
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                    module.weight.mul_(gain)
        return model.eval()

    return make


def quickstart(pool: type = nn.MaxPool2d) -> nn.Module:
    """README: a convolutional network as one nn.Sequential of init_hidden neurons."""
    beta = 0.5
    return nn.Sequential(
        nn.Conv2d(1, 8, 5), pool(2), snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD, init_hidden=True),
        nn.Conv2d(8, 16, 5), pool(2), snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD, init_hidden=True),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
        snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD, init_hidden=True, output=True),
    )


class Tutorial2(nn.Module):
    """Tutorial 2: a Lapicque neuron driven by a current, its membrane and spikes recorded."""

    def __init__(self):
        super().__init__()
        self.lif1 = snn.Lapicque(R=5.1, C=5e-3, time_step=1e-3)

    def forward(self, cur_in):
        mem, spk_rec, mem_rec = torch.zeros(cur_in.shape[1:]), [], []
        for step in range(cur_in.shape[0]):
            spk, mem = self.lif1(cur_in[step], mem)
            spk_rec.append(spk)
            mem_rec.append(mem)
        return torch.stack(spk_rec), torch.stack(mem_rec)


class Tutorial3(nn.Module):
    """Tutorial 3: one Linear into a Leaky, stepped over an input spike train."""

    def __init__(self):
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(16, 10), snn.Leaky(beta=0.995)

    def forward(self, spk_in):
        mem1 = self.lif1.init_leaky()
        spk1_rec, mem1_rec = [], []
        for step in range(spk_in.shape[0]):
            cur1 = self.fc1(spk_in[step])
            spk1, mem1 = self.lif1(cur1, mem1)
            spk1_rec.append(spk1)
            mem1_rec.append(mem1)
        return torch.stack(spk1_rec), torch.stack(mem1_rec)


class Tutorial4(nn.Module):
    """Tutorial 4: Synaptic (or Alpha) neurons behind a Linear, explicit states."""

    def __init__(self, neuron: str = "synaptic"):
        super().__init__()
        self.fc1 = nn.Linear(16, 10)
        self.neuron = neuron
        if neuron == "synaptic":
            self.lif1 = snn.Synaptic(alpha=0.9, beta=0.8)
        else:
            self.lif1 = snn.Alpha(alpha=0.9, beta=0.85)

    def forward(self, spk_in):
        spk_rec, mem_rec = [], []
        if self.neuron == "synaptic":
            syn, mem = self.lif1.init_synaptic()
            for step in range(spk_in.shape[0]):
                spk, syn, mem = self.lif1(self.fc1(spk_in[step]), syn, mem)
                spk_rec.append(spk)
                mem_rec.append(mem)
        else:
            syn_exc, syn_inh, mem = self.lif1.init_alpha()
            for step in range(spk_in.shape[0]):
                spk, syn_exc, syn_inh, mem = self.lif1(self.fc1(spk_in[step]), syn_exc, syn_inh, mem)
                spk_rec.append(spk)
                mem_rec.append(mem)
        return torch.stack(spk_rec), torch.stack(mem_rec)


class Tutorial5(nn.Module):
    """Tutorial 5 (and the IPU tutorial): the same flattened frame at every step, membranes returned."""

    def __init__(self, num_inputs=64, num_hidden=40, num_outputs=10, num_steps=25, beta=0.95, reset="subtract"):
        super().__init__()
        self.num_steps = num_steps
        self.fc1, self.lif1 = nn.Linear(num_inputs, num_hidden), snn.Leaky(beta=beta, reset_mechanism=reset)
        self.fc2, self.lif2 = nn.Linear(num_hidden, num_outputs), snn.Leaky(beta=beta, reset_mechanism=reset)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk2_rec, mem2_rec = [], []
        for step in range(self.num_steps):
            cur1 = self.fc1(x)
            spk1, mem1 = self.lif1(cur1, mem1)
            cur2 = self.fc2(spk1)
            spk2, mem2 = self.lif2(cur2, mem2)
            spk2_rec.append(spk2)
            mem2_rec.append(mem2)
        return torch.stack(spk2_rec, dim=0), torch.stack(mem2_rec, dim=0)


class Tutorial6(nn.Module):
    """Tutorial 6's first Net: functional pooling, and init_leaky() inside the step forward (so,
    as written, no neuron keeps its membrane from one step to the next)."""

    def __init__(self, pool: Callable = F.max_pool2d, beta: float = 0.5):
        super().__init__()
        self.pool = pool
        self.conv1, self.lif1 = nn.Conv2d(1, 6, 5), snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD)
        self.conv2, self.lif2 = nn.Conv2d(6, 8, 5), snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD)
        self.fc1, self.lif3 = nn.Linear(8 * 4 * 4, 10), snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD)

    def forward(self, x):
        mem1, mem2, mem3 = self.lif1.init_leaky(), self.lif2.init_leaky(), self.lif3.init_leaky()
        cur1 = self.pool(self.conv1(x), 2)
        spk1, mem1 = self.lif1(cur1, mem1)
        cur2 = self.pool(self.conv2(spk1), 2)
        spk2, mem2 = self.lif2(cur2, mem2)
        cur3 = self.fc1(spk2.view(spk2.shape[0], -1))
        spk3, mem3 = self.lif3(cur3, mem3)
        return spk3, mem3


def tutorial6_sequential(pool: type = nn.MaxPool2d) -> nn.Module:
    """Tutorial 6's nn.Sequential form (init_hidden, stepped by a forward_pass loop)."""
    beta = 0.5
    return nn.Sequential(
        nn.Conv2d(1, 6, 5), pool(2), snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD, init_hidden=True),
        nn.Conv2d(6, 8, 5), pool(2), snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD, init_hidden=True),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
        snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD, init_hidden=True, output=True),
    )


def tutorial7(pool: type = nn.MaxPool2d) -> nn.Module:
    """Tutorial 7 (N-MNIST through Tonic): two-channel event frames."""
    beta = 0.5
    return nn.Sequential(
        nn.Conv2d(2, 6, 5), pool(2), snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD, init_hidden=True),
        nn.Conv2d(6, 8, 5), pool(2), snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD, init_hidden=True),
        nn.Flatten(), nn.Linear(8 * 5 * 5, 10),
        snn.Leaky(beta=beta, spike_grad=SPIKE_GRAD, init_hidden=True, output=True),
    )


class Regression1(nn.Module):
    """Regression tutorial 1: a spiking hidden layer and a non-resetting output neuron whose
    membrane is the prediction."""

    def __init__(self, timesteps=25, hidden=32, out_reset="none"):
        super().__init__()
        self.timesteps = timesteps
        self.fc1 = nn.Linear(1, hidden)
        self.lif = snn.Leaky(beta=torch.rand(hidden), threshold=torch.rand(hidden), learn_beta=True,
                             spike_grad=SPIKE_GRAD)
        self.fc2 = nn.Linear(hidden, 1)
        self.li = snn.Leaky(beta=0.5, threshold=1.0, learn_beta=True, spike_grad=SPIKE_GRAD,
                            reset_mechanism=out_reset)

    def forward(self, x):
        mem_1, mem_2 = self.lif.init_leaky(), self.li.init_leaky()
        mem_2_rec = []
        for step in range(self.timesteps):
            spk_1, mem_1 = self.lif(self.fc1(x[step]), mem_1)
            _, mem_2 = self.li(self.fc2(spk_1), mem_2)
            mem_2_rec.append(mem_2)
        return torch.stack(mem_2_rec)


class Regression2(nn.Module):
    """Regression tutorial 2 (as published): a recurrent hidden layer, and one output neuron
    module called for two layers in a step (each call with its own state)."""

    def __init__(self, hidden=24, learn=False):
        super().__init__()
        self.fc1 = nn.Linear(1, hidden)
        self.lif1 = snn.RLeaky(beta=0.9, linear_features=hidden, spike_grad=SPIKE_GRAD)
        self.fc_a, self.fc_b = nn.Linear(hidden, 1), nn.Linear(hidden, 1)
        self.li_out = snn.Leaky(beta=0.8, reset_mechanism="none", spike_grad=SPIKE_GRAD, learn_beta=learn,
                                learn_threshold=learn)

    def forward(self, x):
        spk1, mem1 = self.lif1.init_rleaky()
        mem_a, mem_b = self.li_out.init_leaky(), self.li_out.init_leaky()
        rec_a, rec_b = [], []
        for step in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[step]), spk1, mem1)
            _, mem_a = self.li_out(self.fc_a(spk1), mem_a)
            _, mem_b = self.li_out(self.fc_b(spk1), mem_b)
            rec_a.append(mem_a)
            rec_b.append(mem_b)
        return torch.stack(rec_a), torch.stack(rec_b)


def population(num_outputs=4, pop_outputs=20) -> nn.Module:
    """Population coding tutorial: many output neurons per class."""
    return nn.Sequential(
        nn.Flatten(), nn.Linear(64, 40), snn.Leaky(beta=0.9, spike_grad=SPIKE_GRAD, init_hidden=True),
        nn.Linear(40, pop_outputs), snn.Leaky(beta=0.9, spike_grad=SPIKE_GRAD, init_hidden=True, output=True),
    )


class SAE(nn.Module):
    """Spiking autoencoder tutorial: the encoder (conv + BatchNorm + Leaky, records stacked on dim 2),
    then a decoder that starts with nn.Unflatten and uses ConvTranspose2d."""

    def __init__(self, num_steps=20, latent_dim=8, with_decoder=True):
        super().__init__()
        self.num_steps, self.with_decoder = num_steps, with_decoder
        leaky = dict(beta=0.5, spike_grad=SPIKE_GRAD, init_hidden=True, threshold=0.5)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, stride=2), nn.BatchNorm2d(4), snn.Leaky(**leaky),
            nn.Conv2d(4, 8, 3, padding=1, stride=2), nn.BatchNorm2d(8), snn.Leaky(**leaky),
            nn.Flatten(start_dim=1, end_dim=3), nn.Linear(8 * 4 * 4, latent_dim), snn.Leaky(output=True, **leaky),
        )
        if not with_decoder:
            return
        self.latentToConv = nn.Sequential(nn.Linear(latent_dim, 8 * 4 * 4), snn.Leaky(output=True, **leaky))
        self.decoder = nn.Sequential(
            nn.Unflatten(1, (8, 4, 4)), snn.Leaky(**leaky),
            nn.ConvTranspose2d(8, 1, 3, padding=1, stride=(2, 2), output_padding=1),
            snn.Leaky(beta=0.5, spike_grad=SPIKE_GRAD, init_hidden=True, output=True, threshold=20000),
        )

    def forward(self, x):
        utils.reset(self.encoder)
        if self.with_decoder:
            utils.reset(self.decoder)
            utils.reset(self.latentToConv)
        spk_rec, spk_mem = [], []
        for step in range(self.num_steps):
            spk_x, mem_x = self.encoder(x)
            spk_rec.append(spk_x)
            spk_mem.append(mem_x)
        spk_rec = torch.stack(spk_rec, dim=2)
        if not self.with_decoder:
            return torch.stack([spk_rec[..., step] for step in range(self.num_steps)])
        spk_mem2 = []
        for step in range(self.num_steps):
            spk_x, _ = self.latentToConv(spk_rec[..., step])
            _, x_mem_recon = self.decoder(spk_x)
            spk_mem2.append(x_mem_recon)
        return torch.stack(spk_mem2, dim=4)[:, :, :, :, -1]


def stmnist(pool: type = nn.MaxPool2d) -> nn.Module:
    """ST-MNIST tutorial: tactile 10x10 frames, two conv blocks."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), snn.Leaky(beta=0.95, spike_grad=SPIKE_GRAD, init_hidden=True),
        pool(2),
        nn.Conv2d(8, 8, 3, padding=1), snn.Leaky(beta=0.95, spike_grad=SPIKE_GRAD, init_hidden=True),
        pool(2),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 10),
        snn.Leaky(beta=0.95, spike_grad=SPIKE_GRAD, init_hidden=True, output=True),
    )


class BinaryConv2d(nn.Conv2d):
    """BSNN tutorial: a convolution whose forward uses the sign of its weights."""

    def forward(self, x):
        return F.conv2d(x, torch.sign(self.weight), self.bias, self.stride, self.padding)


def bsnn() -> nn.Module:
    return nn.Sequential(
        BinaryConv2d(1, 4, 3), snn.Leaky(beta=0.5, init_hidden=True),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 10), snn.Leaky(beta=0.5, init_hidden=True, output=True),
    )


class Exoplanet(nn.Module):
    """Exoplanet-hunting tutorial: light curves through Linear layers, init_leaky() in the step forward."""

    def __init__(self, num_inputs=48, num_hidden=32):
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(num_inputs, num_hidden), snn.Leaky(beta=0.9)
        self.fc2, self.lif2 = nn.Linear(num_hidden, 2), snn.Leaky(beta=0.9)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk1, mem1 = self.lif1(self.fc1(x), mem1)
        spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
        return spk2, mem2


def nir_test(kind: str) -> nn.Module:
    """snnTorch's own NIR tests (test_nir.py): sequential networks of each neuron type."""
    if kind == "leaky":
        neurons = [snn.Leaky(beta=0.9, init_hidden=True), snn.Leaky(beta=0.9, init_hidden=True, output=True)]
    elif kind == "synaptic":
        neurons = [snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True),
                   snn.Synaptic(alpha=0.5, beta=0.9, init_hidden=True, output=True)]
    elif kind == "rleaky":
        neurons = [snn.RLeaky(beta=0.9, linear_features=20, init_hidden=True),
                   snn.RLeaky(beta=0.9, all_to_all=False, init_hidden=True, output=True)]
    else:
        neurons = [snn.RSynaptic(alpha=0.5, beta=0.9, linear_features=20, init_hidden=True),
                   snn.RSynaptic(alpha=0.5, beta=0.9, linear_features=5, init_hidden=True, output=True)]
    return nn.Sequential(nn.Linear(16, 20), neurons[0], nn.Linear(20, 5), neurons[1])


def nir_test_conv() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.AvgPool2d(2), snn.Leaky(beta=0.9, init_hidden=True),
        nn.Flatten(), nn.Linear(4 * 3 * 3, 5), snn.Leaky(beta=0.9, init_hidden=True, output=True),
    )


def with_option(**option) -> Callable[[], nn.Module]:
    """A tutorial-3 style step network whose hidden Leaky takes an option snnir refuses."""
    return lambda: nn.Sequential(nn.Linear(16, 10), snn.Leaky(beta=0.9, init_hidden=True, **option),
                                 nn.Linear(10, 4), snn.Leaky(beta=0.9, init_hidden=True))


class LSTMNet(nn.Module):
    def __init__(self, conv: bool):
        super().__init__()
        self.lstm = snn.SConv2dLSTM(1, 4, 3) if conv else snn.SLSTM(16, 8)

    def forward(self, x):
        syn, mem = self.lstm.reset_mem()
        spk, syn, mem = self.lstm(x, syn, mem)
        return spk


def _quant():
    from snntorch.functional import quant

    return quant.state_quant(num_bits=4, uniform=True)


CASES = [
    Case("readme_quickstart", seeded(quickstart, gain=3.0), (1, 28, 28), scale=2.0),
    Case("readme_quickstart_avgpool", seeded(lambda: quickstart(nn.AvgPool2d), gain=3.0), (1, 28, 28), scale=2.0),
    Case("tutorial_2_lapicque", seeded(Tutorial2), (10,), "loop", scale=1.5),
    Case("tutorial_3_feedforward", seeded(Tutorial3, gain=2.0), (16,), "loop", scale=1.0),
    Case("tutorial_4_synaptic", seeded(lambda: Tutorial4("synaptic"), gain=1.0), (16,), "loop", scale=0.5),
    Case("tutorial_4_alpha", seeded(lambda: Tutorial4("alpha")), (16,), "loop", expect="'lif1'.*reset_mechanism='zero'.*reset_mechanism='none'"),
    Case("tutorial_5", seeded(Tutorial5, gain=2.0), (64,), "static", scale=1.0),
    Case("tutorial_6_net", seeded(Tutorial6, gain=3.0), (1, 28, 28), scale=2.0),
    Case("tutorial_6_net_avgpool", seeded(lambda: Tutorial6(F.avg_pool2d), gain=3.0), (1, 28, 28), scale=2.0),
    Case("tutorial_6_sequential", seeded(tutorial6_sequential, gain=2.0), (1, 28, 28), scale=2.0),
    Case("tutorial_6_sequential_avgpool", seeded(lambda: tutorial6_sequential(nn.AvgPool2d), gain=3.0),
         (1, 28, 28), scale=2.0),
    Case("tutorial_7", seeded(tutorial7, gain=3.0), (2, 34, 34), scale=1.0),
    Case("tutorial_7_avgpool", seeded(lambda: tutorial7(nn.AvgPool2d), gain=5.0), (2, 34, 34), scale=2.0),
    Case("regression_1", seeded(Regression1, gain=2.0), (1,), "loop", scale=2.0, quiet=("li",)),
    Case("regression_1_zero_reset", seeded(lambda: Regression1(out_reset="zero"), gain=2.0), (1,), "loop", scale=2.0,
         quiet=("li",)),
    Case("regression_2_shared_output", seeded(Regression2, gain=2.0), (1,), "loop", scale=2.0,
         quiet=("li_out",)),
    Case("population_coding", seeded(population, gain=2.0), (1, 8, 8), scale=1.0),
    Case("sae_encoder", seeded(lambda: SAE(with_decoder=False), gain=2.0), (1, 16, 16), "static", scale=2.0,
         steps=20),
    Case("sae", seeded(SAE), (1, 16, 16), "static", expect="'decoder_1'.*unflatten", steps=20),
    Case("stmnist", seeded(stmnist, gain=2.0), (1, 10, 10), scale=2.0),
    Case("stmnist_avgpool", seeded(lambda: stmnist(nn.AvgPool2d), gain=3.0), (1, 10, 10), scale=2.0),
    Case("bsnn_binarised_conv", seeded(bsnn, gain=5.0), (1, 8, 8), scale=1.0),
    Case("exoplanet", seeded(Exoplanet, gain=5.0), (48,), scale=1.0),
    Case("ipu_tutorial", seeded(lambda: Tutorial5(num_inputs=64, num_hidden=50, beta=0.9), gain=2.0), (64,),
         "static", scale=1.0),
    Case("ipu_tutorial_zero_reset", seeded(lambda: Tutorial5(num_inputs=64, num_hidden=50, beta=0.9, reset="zero"),
                                           gain=2.0), (64,), "static", scale=1.0),
    Case("nir_test_leaky", seeded(lambda: nir_test("leaky"), gain=2.0), (16,), scale=1.0),
    Case("nir_test_synaptic", seeded(lambda: nir_test("synaptic"), gain=1.0), (16,), scale=0.5),
    Case("nir_test_rleaky", seeded(lambda: nir_test("rleaky"), gain=2.0), (16,), scale=1.0),
    Case("nir_test_rsynaptic", seeded(lambda: nir_test("rsynaptic"), gain=1.0), (16,), scale=0.5),
    Case("nir_test_conv", seeded(nir_test_conv, gain=2.0), (1, 8, 8), scale=2.0),
    Case("graded_spikes", seeded(with_option(graded_spikes_factor=2.0)), (16,), expect="'1'.*graded.*graded_spikes_factor=1"),
    Case("inhibition", seeded(with_option(inhibition=True)), (16,), expect="'1'.*inhibition.*inhibition=False"),
    Case("state_quant", seeded(lambda: with_option(state_quant=_quant())()), (16,), expect="'1'.*state_quant.*state_quant=False"),
    Case("slstm", seeded(lambda: LSTMNet(conv=False)), (16,), expect="'lstm'.*SLSTM.*LSTM cell"),
    Case("sconv2dlstm", seeded(lambda: LSTMNet(conv=True)), (1, 6, 6), expect="'lstm'.*SConv2dLSTM.*LSTM cell"),
]


def readme_section() -> str:
    """The README's list of what the corpus exports exactly and what it refuses (regenerate with
    ``python -m tests.frontends.tutorial_models``; a test checks the README holds it)."""
    exact, refused, layers = [], [], set()
    for case in CASES:
        if case.expect != "exact":
            refused.append(case.name)
        else:
            exact.append(case.name)
            inside_neurons: set[int] = set()
            for module in case.build().modules():
                if isinstance(module, snn.SpikingNeuron):
                    layers.add(f"{type(module).__name__}({module.reset_mechanism})")
                    inside_neurons |= {id(m) for m in module.modules()}
                elif not list(module.children()) and id(module) not in inside_neurons:
                    layers.add(type(module).__name__)
    return "\n".join([
        f"- exact, every layer's spikes identical to snnTorch's ({len(exact)}): {', '.join(exact)}",
        f"- layers and reset mechanisms in them: {', '.join(sorted(layers))}",
        f"- refused, naming the layer and what to change ({len(refused)}): {', '.join(refused)}",
    ])


if __name__ == "__main__":
    print(readme_section())
