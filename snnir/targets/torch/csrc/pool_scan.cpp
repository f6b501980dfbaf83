// A max pool feeding one snnir neuron, over T steps in one pass (inference: no backward).
// Per chunk of pooled elements and per step, the window maxima go into a local array that
// the neuron update of neuron_step.h reads at once: neither the pooled [T, M] tensor nor the
// pool's indices are ever made, and the pool's input is read once.
//
// The maxima are those of torch's CPU max_pool1d/2d: each window scanned row by row, a value
// replacing the running maximum (from -inf) when greater or NaN, so the same value comes out
// (sign of zero and NaN included); windows are clipped to the input (padding, ceil_mode).
#include <torch/extension.h>

#include <cmath>
#include <limits>
#include <vector>

#include "neuron_step.h"

namespace {

// Input planes H x W, output planes OH x OW, then kernel, stride, padding, dilation (h, w).
struct Window {
  int64_t H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw;
};

// dst[e] = the maximum of the window of pooled element b + e (n of them), from in (one step).
template <typename T>
void pool_chunk(const Window& p, const T* in, int64_t b, int64_t n, T* dst) {
  const int64_t plane = p.OH * p.OW;
  int64_t q = b / plane, oh = (b % plane) / p.OW, ow = b % p.OW;
  for (int64_t e = 0; e < n; ++e) {
    const T* src = in + q * p.H * p.W;
    T m = -std::numeric_limits<T>::infinity();
    const int64_t h0 = oh * p.sh - p.ph, w0 = ow * p.sw - p.pw;
    for (int64_t i = 0; i < p.kh; ++i) {
      const int64_t h = h0 + i * p.dh;
      if (h < 0 || h >= p.H) continue;
      for (int64_t j = 0; j < p.kw; ++j) {
        const int64_t w = w0 + j * p.dw;
        if (w < 0 || w >= p.W) continue;
        const T val = src[h * p.W + w];
        if (val > m || std::isnan(val)) m = val;
      }
    }
    dst[e] = m;
    if (++ow == p.OW) {
      ow = 0;
      if (++oh == p.OH) {
        oh = 0;
        ++q;
      }
    }
  }
}

// x: [T, P, H, W] contiguous (P planes: batch x channels); states [M], M = P x OH x OW;
// window: kh, kw, sh, sw, ph, pw, dh, dw. Returns spikes (or membranes) [T, M] and the
// final v, i, z (i, z empty where the neuron has none).
std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& v0, const at::Tensor& i0,
                                const at::Tensor& z0, const std::vector<at::Tensor>& coeffs,
                                const std::vector<int64_t>& flags, double slope, int64_t out_h,
                                int64_t out_w, const std::vector<int64_t>& window) {
  TORCH_CHECK(x.dim() == 4 && x.is_contiguous() && window.size() == 8, "pool_scan: bad arguments");
  const Config c = make_config(flags, slope);
  const Window p{x.size(2), x.size(3), out_h, out_w, window[0], window[1], window[2], window[3],
                 window[4], window[5], window[6], window[7]};
  const int64_t steps = x.size(0), M = v0.numel(), in_step = x.size(1) * p.H * p.W;
  TORCH_CHECK(M == x.size(1) * out_h * out_w, "pool_scan: the state does not match the pooled shape");
  auto out = at::empty({steps, M}, v0.options());
  auto v_end = at::empty({M}, v0.options());
  auto i_end = c.has_current ? at::empty({M}, v0.options()) : at::empty({0}, v0.options());
  auto z_end = c.next_timing ? at::empty({M}, v0.options()) : at::empty({0}, v0.options());
  AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "snnir_pool_scan_forward", [&] {
    const scalar_t* k[N_COEF];
    int64_t period[N_COEF];
    bool scalar = true;  // every coefficient one value (or absent)
    for (int j = 0; j < N_COEF; ++j) {
      k[j] = ptr_or_null<scalar_t>(coeffs[j]);
      period[j] = coeffs[j].numel();
      scalar = scalar && period[j] <= 1;
    }
    const bool vleak = k[V_LEAK] != nullptr, fast = fast_path(c);
    const scalar_t* xd = x.data_ptr<scalar_t>();
    scalar_t* od = out.data_ptr<scalar_t>();
    at::parallel_for(0, M, kChunk, [&](int64_t begin, int64_t end) {
      Locals<scalar_t> local(N_COEF + 8);
      scalar_t *v = local(N_COEF), *i = local(N_COEF + 1), *z = local(N_COEF + 2), *xp = local(N_COEF + 3),
               *ones = local(N_COEF + 4), *ubuf = local(N_COEF + 5), *scratch = local(N_COEF + 6);
      for (int64_t b = begin; b < end; b += kChunk) {
        const int64_t n = std::min(kChunk, end - b);
        const scalar_t* kc[N_COEF];
        load_coefficients(k, period, b, n, local, kc);
        load_states(c, v0.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(i0), ptr_or_null<scalar_t>(z0), b, n,
                    v, i, z);
        if (fast) prepare_fast(c, kc, xp, false, 0, n, ones, static_cast<scalar_t*>(nullptr));
        for (int64_t t = 0; t < steps; ++t) {  // one step at a time: v, i, z stay local
          pool_chunk(p, xd + t * in_step, b, n, xp);
          scalar_t* ot = od + t * M + b;
          if (fast) {
            with_structure(c, vleak, scalar, [&](auto next, auto reset, auto vl, auto hc, auto sc) {
              run_chunk_fast<scalar_t, decltype(next)::value, decltype(reset)::value, decltype(vl)::value,
                             decltype(hc)::value, false, decltype(sc)::value>(
                  c, kc, xp, 0, 1, n, v, i, z, ot, M, nullptr);
            });
          } else {
            run_chunk(c, kc, xp, 0, 1, n, v, i, z, scratch, c.spiking ? ubuf : ot, 0, ot, M,
                      static_cast<scalar_t*>(nullptr), 0);
          }
        }
        std::copy(v, v + n, v_end.data_ptr<scalar_t>() + b);
        if (c.has_current) std::copy(i, i + n, i_end.data_ptr<scalar_t>() + b);
        if (c.next_timing) std::copy(z, z + n, z_end.data_ptr<scalar_t>() + b);
      }
    });
  });
  return {out, v_end, i_end, z_end};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "max pool then neuron scan, forward only");
}
