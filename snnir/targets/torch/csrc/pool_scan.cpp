// A max pool feeding one snnir neuron, over T steps in one pass (inference: no backward).
// Per chunk of pooled elements and per step, the window maxima go into a local array that
// the neuron update of neuron_step.h reads at once: neither the pooled [T, M] tensor nor the
// pool's indices are ever made, and the pool's input is read once.
//
// The maxima are those of torch's CPU max_pool1d/2d: each window scanned row by row, a value
// replacing the running maximum (from -inf) when greater or NaN, so the same value comes out
// (sign of zero and NaN included); windows are clipped to the input (padding, ceil_mode).
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "neuron_step.h"

namespace {

// Input planes H x W, output planes OH x OW, then kernel, stride, padding, dilation (h, w).
struct Window {
  int64_t H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw;
};

// torch's update of a running window maximum: a value replaces it when greater or NaN. With
// arg, the replacing value's place in the window (i * kw + j) is kept too.
template <typename T>
inline void take_max(T& m, T val, uint8_t& at, uint8_t place) {
  const bool take = (val > m) | (val != val);
  m = take ? val : m;
  at = take ? place : at;
}

// Every window lies inside the input (no padding, none clipped): no bounds to check.
inline bool inside(const Window& p) {
  return p.ph == 0 && p.pw == 0 && (p.OH - 1) * p.sh + (p.kh - 1) * p.dh < p.H &&
         (p.OW - 1) * p.sw + (p.kw - 1) * p.dw < p.W;
}

// dst[e] = the maximum of the window of pooled element b + e (n of them), from in (one step);
// arg[e] (when ARG) its place in the window (as a T: stored with the maxima, the loops vectorize).
template <typename T, bool ARG>
void pool_chunk(const Window& p, const T* in, int64_t b, int64_t n, T* dst, T* arg) {
  const int64_t plane = p.OH * p.OW;
  int64_t q = b / plane, oh = (b % plane) / p.OW, ow = b % p.OW;
  for (int64_t e = 0; e < n; ++e) {
    const T* src = in + q * p.H * p.W;
    T m = -std::numeric_limits<T>::infinity();
    const int64_t h0 = oh * p.sh - p.ph, w0 = ow * p.sw - p.pw;
    int64_t i0 = 0, j0 = 0;  // torch's place while nothing replaced -inf: the first one inside
    while (h0 + i0 * p.dh < 0) ++i0;
    while (w0 + j0 * p.dw < 0) ++j0;
    uint8_t at = static_cast<uint8_t>(i0 * p.kw + j0);
    for (int64_t i = 0; i < p.kh; ++i) {
      const int64_t h = h0 + i * p.dh;
      if (h < 0 || h >= p.H) continue;
      for (int64_t j = 0; j < p.kw; ++j) {
        const int64_t w = w0 + j * p.dw;
        if (w < 0 || w >= p.W) continue;
        take_max(m, src[h * p.W + w], at, static_cast<uint8_t>(i * p.kw + j));
      }
    }
    dst[e] = m;
    if (ARG) arg[e] = T(at);
    if (++ow == p.OW) {
      ow = 0;
      if (++oh == p.OH) {
        oh = 0;
        ++q;
      }
    }
  }
}

// n maxima of 2 x 2 windows at stride 2 along rows r0, r1 (r1 = r0 + dh * W): pool_chunk's
// values and places, written so that it vectorizes (restrict: a uint8_t may alias anything; starting from the first value is starting
// from -inf: a -inf first value is kept either way, at place 0).
template <typename T, bool ARG>
void pool_row_2x2(const T* __restrict r0, const T* __restrict r1, int64_t n, T* __restrict dst,
                  T* __restrict arg) {
  for (int64_t k = 0; k < n; ++k) {
    T m = r0[2 * k], at = 0;
    const T b = r0[2 * k + 1], c = r1[2 * k], d = r1[2 * k + 1];
    bool take = (b > m) | (b != b);
    m = take ? b : m;
    at = take ? T(1) : at;
    take = (c > m) | (c != c);
    m = take ? c : m;
    at = take ? T(2) : at;
    take = (d > m) | (d != d);
    m = take ? d : m;
    at = take ? T(3) : at;
    dst[k] = m;
    if (ARG) arg[k] = at;
  }
}

// pool_chunk where every window lies inside the input (``inside``), one output row piece at a
// time, the same scan order; KH, KW: the window, compiled in (0: given by p at run time).
template <typename T, bool ARG, int KH, int KW>
void pool_chunk_inside(const Window& p, const T* in, int64_t b, int64_t n, T* dst, T* arg) {
  const int64_t kh = KH ? KH : p.kh, kw = KW ? KW : p.kw, row_step = p.dh * p.W, sw = p.sw, dw = p.dw;
  const int64_t plane = p.OH * p.OW;
  int64_t q = b / plane, oh = (b % plane) / p.OW, ow = b % p.OW;
  for (int64_t e = 0; e < n;) {
    const int64_t run = std::min(n - e, p.OW - ow);
    const T* row = in + (q * p.H + oh * p.sh) * p.W + ow * sw;
    if (KH == 2 && KW == 2 && sw == 2 && dw == 1) {
      pool_row_2x2<T, ARG>(row, row + row_step, run, dst + e, ARG ? arg + e : nullptr);
    } else {
      for (int64_t k = 0; k < run; ++k) {
        const T* w = row + k * sw;
        T m = -std::numeric_limits<T>::infinity();
        uint8_t at = 0;
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j)
            take_max(m, w[i * row_step + j * dw], at, static_cast<uint8_t>(i * kw + j));
        dst[e + k] = m;
        if (ARG) arg[e + k] = T(at);
      }
    }
    e += run;
    ow += run;
    if (ow == p.OW) {
      ow = 0;
      if (++oh == p.OH) {
        oh = 0;
        ++q;
      }
    }
  }
}

// The window maxima of one step: the fastest of the functions above that applies.
template <typename T, bool ARG = false>
void pool_any(const Window& p, const T* in, int64_t b, int64_t n, T* dst, T* arg = nullptr) {
  if (!inside(p)) {
    pool_chunk<T, ARG>(p, in, b, n, dst, arg);
  } else if (p.kh == 2 && p.kw == 2) {
    pool_chunk_inside<T, ARG, 2, 2>(p, in, b, n, dst, arg);
  } else if (p.kh == 1 && p.kw == 2) {
    pool_chunk_inside<T, ARG, 1, 2>(p, in, b, n, dst, arg);
  } else {
    pool_chunk_inside<T, ARG, 0, 0>(p, in, b, n, dst, arg);
  }
}

Window make_window(const at::Tensor& x, int64_t out_h, int64_t out_w, const std::vector<int64_t>& window) {
  TORCH_CHECK(x.dim() >= 2 && x.is_contiguous() && window.size() == 8, "pool_scan: bad arguments");
  TORCH_CHECK(window[0] * window[1] <= 256, "pool_scan: a window holds at most 256 values");
  return Window{x.size(-2), x.size(-1), out_h, out_w, window[0], window[1], window[2], window[3],
                window[4], window[5], window[6], window[7]};
}

// A max pool alone, for training: x [P, H, W] contiguous (P planes) -> the maxima
// [P, out_h, out_w] and each one's place in its window (uint8, for the backward).
std::vector<at::Tensor> max_pool_forward(const at::Tensor& x, int64_t out_h, int64_t out_w,
                                         const std::vector<int64_t>& window) {
  const Window p = make_window(x, out_h, out_w, window);
  const int64_t planes = x.size(0), M = planes * out_h * out_w;
  auto out = at::empty({planes, out_h, out_w}, x.options());
  auto arg = at::empty({planes, out_h, out_w}, x.options().dtype(at::kByte));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "snnir_max_pool_forward", [&] {
    const scalar_t* xd = x.data_ptr<scalar_t>();
    scalar_t* od = out.data_ptr<scalar_t>();
    uint8_t* ad = arg.data_ptr<uint8_t>();
    at::parallel_for(0, M, 4 * kChunk, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> places(std::min(4 * kChunk, end - begin));
      for (int64_t b = begin; b < end; b += 4 * kChunk) {
        const int64_t n = std::min(4 * kChunk, end - b);
        pool_any<scalar_t, true>(p, xd, b, n, od + b, places.data());
        for (int64_t e = 0; e < n; ++e) ad[b + e] = static_cast<uint8_t>(places[e]);
      }
    });
  });
  return {out, arg};
}

// Its backward: each pooled element's gradient added at its window's maximum, per plane in
// order of the pooled elements (torch's order, so overlapping windows sum alike).
at::Tensor max_pool_backward(const at::Tensor& grad, const at::Tensor& arg, int64_t in_h, int64_t in_w,
                             const std::vector<int64_t>& window) {
  TORCH_CHECK(grad.dim() == 3 && grad.is_contiguous() && arg.is_contiguous() && arg.sizes() == grad.sizes() &&
                  window.size() == 8, "pool_scan: bad arguments");
  const int64_t planes = grad.size(0), OH = grad.size(1), OW = grad.size(2);
  const int64_t kw = window[1], sh = window[2], sw = window[3], ph = window[4], pw = window[5];
  std::vector<int64_t> offset(window[0] * kw);  // a window place's offset from the window's corner
  for (int64_t i = 0; i < window[0]; ++i)
    for (int64_t j = 0; j < kw; ++j) offset[i * kw + j] = i * window[6] * in_w + j * window[7];
  auto out = at::empty({planes, in_h, in_w}, grad.options());  // each plane zeroed by its thread, then added to
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "snnir_max_pool_backward", [&] {
    const scalar_t* gd = grad.data_ptr<scalar_t>();
    const uint8_t* ad = arg.data_ptr<uint8_t>();
    scalar_t* od = out.data_ptr<scalar_t>();
    const int64_t* off = offset.data();
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t q = begin; q < end; ++q) {
        const scalar_t* g = gd + q * OH * OW;
        const uint8_t* a = ad + q * OH * OW;
        std::fill(od + q * in_h * in_w, od + (q + 1) * in_h * in_w, scalar_t(0));  // in cache for the adds
        for (int64_t oh = 0; oh < OH; ++oh) {
          const int64_t corner = q * in_h * in_w + (oh * sh - ph) * in_w - pw;  // of window (oh, 0), padded
          for (int64_t ow = 0; ow < OW; ++ow) od[corner + ow * sw + off[a[oh * OW + ow]]] += g[oh * OW + ow];
        }
      }
    });
  });
  return out;
}

// x: [T, P, H, W] contiguous (P planes: batch x channels); states [M], M = P x OH x OW;
// window: kh, kw, sh, sw, ph, pw, dh, dw. Returns spikes (or membranes) [T, M] and the
// final v, i, z (i, z empty where the neuron has none).
std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& v0, const at::Tensor& i0,
                                const at::Tensor& z0, const std::vector<at::Tensor>& coeffs,
                                const std::vector<int64_t>& flags, double slope, int64_t out_h,
                                int64_t out_w, const std::vector<int64_t>& window) {
  TORCH_CHECK(x.dim() == 4, "pool_scan: bad arguments");
  const Config c = make_config(flags, slope);
  const Window p = make_window(x, out_h, out_w, window);
  const int64_t steps = x.size(0), M = v0.numel(), in_step = x.size(1) * p.H * p.W;
  TORCH_CHECK(M == x.size(1) * out_h * out_w && (!c.has_current || i0.numel() == M) &&
                  (!c.next_timing || z0.numel() == M) && coeffs.size() == N_COEF,
              "pool_scan: the state does not match the pooled shape");
  for (const auto& k : coeffs) TORCH_CHECK(k.numel() <= 1 || M % k.numel() == 0, "pool_scan: bad coefficient");
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
          pool_any(p, xd + t * in_step, b, n, xp);
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

// A pool of a conv chain's stage, as the graph's modules compute it: p[0] 1 (mean) or 2 (sum):
// PoolModule's at::constant_pad_nd and at::avg_pool2d (times the window's size for a sum); 3
// (max): torch's max pool (MaxPoolModule's values); then kernel h, w, stride h, w, padding h, w,
// dilation h, w, ceil mode.
at::Tensor pooled_by(const at::Tensor& x, const int64_t* p) {
  TORCH_CHECK(x.dim() == 4 && p[0] >= 1 && p[0] <= 3, "conv chain: bad pool");
  if (p[0] == 3) return at::max_pool2d(x, {p[1], p[2]}, {p[3], p[4]}, {p[5], p[6]}, {p[7], p[8]}, p[9] != 0);
  const at::Tensor padded = (p[5] || p[6]) ? at::constant_pad_nd(x, {p[6], p[6], p[5], p[5]}, 0) : x;
  const at::Tensor y = at::avg_pool2d(padded, {p[1], p[2]}, {p[3], p[4]});
  return p[0] == 2 ? y * static_cast<double>(p[1] * p[2]) : y;
}

// A line of stages run one step at a time (inference): per step, each stage's pool before its
// convolution, its convolution (at::conv2d, as the graph's ConvModule calls it), its mean or sum
// pool after it (each pooled_by, or none), then its max pool and neuron (forward above, one
// step; a stage without that max pool takes a 1 x 1 window: the same values).
// x: [T, B, C, H, W], or [B, C, H, W] held over the steps (is_static). Per stage s:
// weights[s], biases[s] (empty: none); conv_args[7s..]: stride h, w, padding h, w, dilation
// h, w, groups; bias_inside[s]: the bias goes into the convolution call (else added after, per
// channel); pools[20s..]: the pool before the convolution and the one after it, 10 values each
// (pooled_by; a first value 0: none); windows[8s..]; pooled[3s..]: the neuron's C, OH, OW;
// states[3s..]: its v, i, z ([B x C x OH x OW] or empty); coeffs[N_COEF s..]; flags[10s..];
// slopes[s]. Returns the last stage's outputs [T, M] and each stage's final v, i, z.
std::vector<at::Tensor> chain_forward(const at::Tensor& x, bool is_static, int64_t steps,
                                      const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& biases,
                                      const std::vector<int64_t>& conv_args, const std::vector<int64_t>& bias_inside,
                                      const std::vector<int64_t>& pools, const std::vector<int64_t>& windows,
                                      const std::vector<int64_t>& pooled, std::vector<at::Tensor> states,
                                      const std::vector<at::Tensor>& coeffs, const std::vector<int64_t>& flags,
                                      const std::vector<double>& slopes) {
  const size_t n = weights.size();
  TORCH_CHECK(n >= 1 && biases.size() == n && conv_args.size() == 7 * n && bias_inside.size() == n &&
                  pools.size() == 20 * n && windows.size() == 8 * n && pooled.size() == 3 * n &&
                  states.size() == 3 * n && coeffs.size() == N_COEF * n && flags.size() == 10 * n &&
                  slopes.size() == n,
              "conv chain: bad arguments");
  TORCH_CHECK(x.dim() == (is_static ? 4 : 5) && (is_static || x.size(0) >= steps) && steps >= 0,
              "conv chain: bad input");
  const int64_t batch = x.size(is_static ? 0 : 1);
  at::Tensor out;
  for (int64_t t = 0; t < steps; ++t) {
    at::Tensor cur = is_static ? x : x[t];
    for (size_t s = 0; s < n; ++s) {
      const int64_t* a = conv_args.data() + 7 * s;
      if (pools[20 * s]) cur = pooled_by(cur, pools.data() + 20 * s);
      if (weights[s].numel()) {
        TORCH_CHECK(weights[s].dim() == 4 && cur.dim() == 4, "conv chain: bad convolution");
        const bool inside = bias_inside[s] && biases[s].numel();
        cur = at::conv2d(cur, weights[s], inside ? c10::optional<at::Tensor>(biases[s]) : c10::nullopt,
                         {a[0], a[1]}, {a[2], a[3]}, {a[4], a[5]}, a[6]);
        if (biases[s].numel() && !inside) cur = cur + biases[s].reshape({-1, 1, 1});
      }
      if (pools[20 * s + 10]) cur = pooled_by(cur, pools.data() + 20 * s + 10);
      const int64_t C = pooled[3 * s], OH = pooled[3 * s + 1], OW = pooled[3 * s + 2];
      TORCH_CHECK(cur.dim() == 4 && cur.size(0) == batch && cur.size(1) == C, "conv chain: stage ", s,
                  " gets the wrong shape");
      auto planes = cur.reshape({1, batch * C, cur.size(2), cur.size(3)}).contiguous();
      std::vector<at::Tensor> k(coeffs.begin() + N_COEF * s, coeffs.begin() + N_COEF * (s + 1));
      std::vector<int64_t> f(flags.begin() + 10 * s, flags.begin() + 10 * (s + 1));
      std::vector<int64_t> w(windows.begin() + 8 * s, windows.begin() + 8 * (s + 1));
      auto found = forward(planes, states[3 * s], states[3 * s + 1], states[3 * s + 2], k, f, slopes[s], OH, OW, w);
      states[3 * s] = found[1];
      if (found[2].numel()) states[3 * s + 1] = found[2];
      if (found[3].numel()) states[3 * s + 2] = found[3];
      if (s + 1 == n) {
        if (!out.defined()) out = at::empty({steps, found[0].numel()}, found[0].options());
        out[t].copy_(found[0].view(-1));
      } else {
        cur = found[0].view({batch, C, OH, OW});
      }
    }
  }
  if (!out.defined()) out = at::empty({0}, x.options());
  std::vector<at::Tensor> result{out};
  result.insert(result.end(), states.begin(), states.end());
  return result;
}

}  // namespace

// The entry points run without the GIL, as torch's own operators do: other Python threads run
// meanwhile, and a worker thread that needs it (to copy a Python object) cannot deadlock.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  const pybind11::call_guard<pybind11::gil_scoped_release> no_gil;
  m.def("forward", &forward, no_gil, "max pool then neuron scan, forward only");
  m.def("chain_forward", &chain_forward, no_gil, "convolutions, max pools and neurons in a line, step by step");
  m.def("max_pool_forward", &max_pool_forward, no_gil, "max pool with each maximum's place in its window");
  m.def("max_pool_backward", &max_pool_backward, no_gil, "the max pool's backward from those places");
}
