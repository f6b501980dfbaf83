"""What is left between Spyx's recurrent CuBaLIF and our reading of its file: only the
decayed reset. A NumPy replay of Spyx's update, on the model's own parameters, equals Spyx's
spikes with ``V' = beta (V - s thr) + I`` and equals our reading with ``V' = beta V + I - s thr``
(the reset NIR semantics can say)."""

from __future__ import annotations

import numpy as np
import pytest

from snnir import peers

from .cells_common import _save, read_quiet, run_ours, spikes_in

pytestmark = pytest.mark.interop


def test_spyx_rcubalif_differs_only_by_its_decayed_reset(tmp_path) -> None:
    spyx_nir, reason = peers.load("spyx.nir")
    if spyx_nir is None:
        pytest.skip(reason)
    import jax.numpy as jnp
    import spyx.nn as snn
    from flax import nnx

    rngs = nnx.Rngs(0)
    model = snn.Sequential(nnx.Linear(6, 10, rngs=rngs), snn.RCuBaLIF((10,), threshold=0.5, rngs=rngs),
                           nnx.Linear(10, 4, rngs=rngs), snn.LIF((4,), beta=0.9, threshold=0.5, rngs=rngs))
    x = spikes_in((6,), scale=2.0)
    theirs = np.asarray(snn.run(model, jnp.asarray(x))[0])
    path = _save(spyx_nir.to_nir(model, {"input": np.array([6])}, {"output": np.array([4])}, dt=1), tmp_path, "rec")
    ours = run_ours(read_quiet(path, dialect="spyx"), x)

    fc1, rec, fc2, out = model.layers
    w1, b1, w2, b2 = (np.asarray(p[...]) for p in (fc1.kernel, fc1.bias, fc2.kernel, fc2.bias))
    alpha, beta = (np.clip(np.asarray(p[...]), 0, 1) for p in (rec.alpha, rec.beta))
    w_rec, beta_out = np.asarray(rec.recurrent_w[...]), np.clip(np.asarray(out.beta[...]), 0, 1)

    def replay(decayed_reset: bool) -> np.ndarray:
        v, i, v_out, spikes = np.zeros((x.shape[1], 10), np.float32), 0.0, np.zeros((x.shape[1], 4), np.float32), []
        for x_t in x:
            s = (v > rec.threshold).astype(np.float32)
            i = alpha * i + (x_t @ w1 + b1) + s @ w_rec
            v = beta * (v - s * rec.threshold) + i if decayed_reset else beta * v + i - s * rec.threshold
            s_out = (v_out > out.threshold).astype(np.float32)
            v_out = beta_out * v_out + (s @ w2 + b2) - s_out * out.threshold
            spikes.append(s_out)
        return np.stack(spikes)

    assert 0.1 < theirs.mean() < 0.9
    np.testing.assert_array_equal(replay(decayed_reset=True), theirs)
    np.testing.assert_array_equal(replay(decayed_reset=False), ours)
    assert np.mean(ours != theirs) < 0.15
