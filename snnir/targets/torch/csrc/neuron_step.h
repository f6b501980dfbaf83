// The neuron update of one chunk of elements over steps, forward and BPTT backward,
// shared by the native kernels (neuron_scan.cpp: a whole sequence; recurrent.cpp: one
// step at a time inside a recurrent loop).
//
// Same update, operation order and gradient conventions as the Python loop in
// snnir/targets/torch/scan.py (which states them); that module is the
// specification. Elements are split into chunks of kChunk; each chunk keeps its
// state in local arrays and walks time inside. The common configurations
// (spiking, single spikes, zero or subtract reset; see fast_path) run one fused
// branch-free loop per step; the others one vectorizable loop per stage.
// Built with -ffp-contract=off so no multiply-add is fused: every operation
// rounds as the corresponding torch op does.
#pragma once
//
// Layout: x is [T, M] (or [M] when held static), states [M] (M = batch x N
// neurons); each coefficient is a scalar or given over the N neurons (an absent
// one is an empty tensor). fed (where given, laid out as x, never static): the
// fed-back drive of snnir/ir/schedule.py, through the input's gain right after
// the drive: (leak + gain x) + gain fed, or a_syn i + gain_syn x + gain_syn fed.
// Coefficient order: a_mem, v_leak, gain, thr, v_reset, a_syn, gain_syn.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <type_traits>
#include <vector>

#include "surrogates.h"

namespace {

// A chunk's local arrays (about 20 of kChunk values per thread, plus T x kChunk
// recomputed membranes in the backward) stay in cache; each
// step then reads and writes kChunk-long contiguous runs of the [T, M] tensors.
constexpr int64_t kChunk = 1024;
// Local arrays are kStride apart so that no two share an address modulo 4 KiB
// (as the tensors' chunks do), which would stall loads behind stores.
constexpr int64_t kStride = kChunk + 16;
enum Coef { A_MEM, V_LEAK, GAIN, THR, V_RESET, A_SYN, GAIN_SYN, N_COEF };
enum Reset { RESET_NONE = 0, RESET_ZERO = 1, RESET_SUBTRACT = 2 };
enum Cur { CUR_NONE = 0, CUR_VOLTAGE_FIRST = 1, CUR_CURRENT_FIRST = 2 };  // fast path's current

struct Config {
  bool spiking, has_current, next_timing, inclusive, multi, current_first, detach_reset;
  int reset, surrogate;
  bool after_input;  // the delayed reset comes after the input ("next_after_input")
  double slope;
};

Config make_config(const std::vector<int64_t>& f, double slope) {
  TORCH_CHECK(f.size() == 10, "neuron_scan: expected 10 flags");
  return Config{f[0] != 0, f[1] != 0, f[2] != 0, f[3] != 0, f[4] != 0, f[5] != 0, f[6] != 0,
                static_cast<int>(f[7]), static_cast<int>(f[8]), f[9] != 0, slope};
}

template <typename T>
const T* ptr_or_null(const at::Tensor& t) {
  return t.numel() ? t.data_ptr<T>() : nullptr;
}

// dst[e] = src[(b + e) % period] for e < n: a chunk of a coefficient given over
// the neuron shape (period N) or as a scalar (period 1), broadcast over the batch.
template <typename T>
const T* load_chunk(const T* src, int64_t period, int64_t b, int64_t n, T* dst) {
  if (!src) return nullptr;
  if (period == 1) {
    std::fill(dst, dst + n, src[0]);
    return dst;
  }
  int64_t r = b % period;
  for (int64_t e = 0; e < n; ++e) {
    dst[e] = src[r];
    r = r + 1 == period ? 0 : r + 1;
  }
  return dst;
}

template <typename T>
inline T spike_multi(T u, T thr) {
  const T q = std::floor(u / thr);
  return q < T(0) ? T(0) : q;  // NaN passes through, as torch.clamp
}

// z[e] = spike(u[e]) over a chunk (branches outside the loops, so they vectorize).
template <typename T>
void spikes(const Config& c, const T* u, const T* thr, T* z, int64_t n) {
  if (c.multi) {
    for (int64_t e = 0; e < n; ++e) z[e] = spike_multi(u[e], thr[e]);
  } else if (c.inclusive) {
    for (int64_t e = 0; e < n; ++e) z[e] = u[e] >= thr[e] ? T(1) : T(0);
  } else {
    for (int64_t e = 0; e < n; ++e) z[e] = u[e] > thr[e] ? T(1) : T(0);
  }
}

// m = reset(m, z) by the previous step's spikes z, for a delayed reset (in place).
template <typename T>
void reset_by_previous(const Config& c, const T* z, const T* thr, const T* v_reset, T* m, int64_t n) {
  if (!c.next_timing) return;
  if (c.reset == RESET_ZERO) {
    for (int64_t e = 0; e < n; ++e) m[e] = z[e] > T(0) ? v_reset[e] : m[e];
  } else if (c.reset == RESET_SUBTRACT) {
    for (int64_t e = 0; e < n; ++e) m[e] = m[e] - z[e] * thr[e];
  }
}

// Runs one chunk of n elements over all steps from the states in v, i, z
// (updated in place; k: the chunk's coefficients; scratch: 2 local arrays).
// Writes u_t at u0 + t * u_step (for non-spiking neurons u is the output),
// spikes at out + t * out_step, and i_t at is + t * is_step when is is given;
// fed (or null): the fed-back drive, x_step apart as x.
template <typename T>
void run_chunk(const Config& c, const T* const* k, const T* x, int64_t x_step, int64_t steps,
               int64_t n, T* v, T* i, T* z, T* scratch, T* u0, int64_t u_step, T* out,
               int64_t out_step, T* is, int64_t is_step, const T* fed = nullptr) {
  const T *a_mem = k[A_MEM], *v_leak = k[V_LEAK], *gain = k[GAIN], *thr = k[THR],
          *v_reset = k[V_RESET], *a_syn = k[A_SYN], *gain_syn = k[GAIN_SYN];
  T *drive = scratch, *lk = scratch + kStride;
  for (int64_t t = 0; t < steps; ++t) {
    const T* xt = x + t * x_step;
    const T* ft = fed ? fed + t * x_step : nullptr;
    T* u = u0 + t * u_step;
    if (c.has_current) {
      for (int64_t e = 0; e < n; ++e) {
        T i_new = a_syn[e] * i[e] + gain_syn[e] * xt[e];
        if (ft) i_new = i_new + gain_syn[e] * ft[e];
        drive[e] = gain[e] * (c.current_first ? i_new : i[e]);
        i[e] = i_new;
      }
      if (is) std::copy(i, i + n, is + t * is_step);
    } else {
      for (int64_t e = 0; e < n; ++e) drive[e] = gain[e] * xt[e];
    }
    if (!a_mem) {
      std::copy(v, v + n, lk);
    } else if (!v_leak) {
      for (int64_t e = 0; e < n; ++e) lk[e] = v[e] * a_mem[e];
    } else {
      for (int64_t e = 0; e < n; ++e) lk[e] = v_leak[e] + a_mem[e] * (v[e] - v_leak[e]);
    }
    // a delayed reset by the previous step's spikes: after the input (always for subtract,
    // Semantics.resets_after_input), or of the leaked membrane
    const bool input_first = c.after_input || c.reset == RESET_SUBTRACT;
    if (!input_first) reset_by_previous(c, z, thr, v_reset, lk, n);
    for (int64_t e = 0; e < n; ++e) u[e] = lk[e] + drive[e];
    if (ft && !c.has_current)
      for (int64_t e = 0; e < n; ++e) u[e] = u[e] + gain[e] * ft[e];
    if (input_first) reset_by_previous(c, z, thr, v_reset, u, n);
    if (!c.spiking) {
      std::copy(u, u + n, v);
      continue;
    }
    spikes(c, u, thr, z, n);
    std::copy(z, z + n, out + t * out_step);
    if (c.next_timing || c.reset == RESET_NONE) {
      std::copy(u, u + n, v);
    } else if (c.reset == RESET_ZERO) {
      for (int64_t e = 0; e < n; ++e) v[e] = z[e] > T(0) ? v_reset[e] : u[e];
    } else {
      for (int64_t e = 0; e < n; ++e) v[e] = u[e] - z[e] * thr[e];
    }
  }
}


// Compile-time dispatch: f receives std::integral_constant arguments; CT(x)
// reads one back as a template argument.
#define CT(x) decltype(x)::value
template <bool V>
using B_ = std::integral_constant<bool, V>;
template <int V>
using I_ = std::integral_constant<int, V>;

// ---- Fast path: one fused, branch-free loop per step -----------------------
// For spiking single-spike neurons with a delayed subtract or a same-step zero
// reset (the common configurations). The structure is fixed at compile time
// (NEXT: delayed reset, RESET, VLEAK: a leak towards v_leak, CUR: a synaptic
// current and its order); the rest (>= compare, detach_reset) are selects.
// Every expression keeps the operand order of run_chunk, so the results are
// the same bits. Coefficients are chunk arrays (scalars broadcast into them),
// or registers when all are scalars; an absent a_mem is ones (v * 1 is exact).
// The fused backward computes no coefficient gradients (run_chunk's path does).
// Only the pairs a delayed subtract reset / a same-step zero reset: GCC left
// the fused loop of the other two pairs scalar, with branches (5-8x slower
// than the per-stage loops), so they keep run_chunk.
bool fast_path(const Config& c) {
  return c.spiking && !c.multi && !c.after_input && c.reset == (c.next_timing ? RESET_SUBTRACT : RESET_ZERO);
}

// The spike (1 or 0; NaN never fires) as value selects, which vectorize best;
// incl is 1 for a >= compare, else 0.
template <typename T>
inline T spike_of(T u, T thr, T incl) {
  return (u > thr ? T(1) : T(0)) + (u == thr ? incl : T(0));
}

// A chunk's coefficient: with SCALAR, its one value is held in a register.
template <typename T, bool SCALAR>
struct Coeff {
  explicit Coeff(const T* p) : p(p), v(p && SCALAR ? p[0] : T(0)) {}
  T operator[](int64_t e) const { return SCALAR ? v : p[e]; }
  const T* p;
  T v;
};

// Runs one chunk over all steps (v, i, z updated in place). Spikes go to
// out + t * out_step and the spikes of step t - 1 are read back from there;
// with KEEP (the backward's recomputation) u_t goes to us + t * kStride instead
// and the spikes are only kept in z. SCALAR: every coefficient is one value.
// FED: a fed-back drive at fed, x_step apart as x (see run_chunk).
template <typename T, bool NEXT, int RESET, bool VLEAK, int CUR, bool KEEP, bool SCALAR, bool FED = false>
void run_chunk_fast(const Config& c, const T* const* k, const T* x, int64_t x_step,
                    int64_t steps, int64_t n, T* __restrict__ v, T* __restrict__ i,
                    T* z, T* out, int64_t out_step, T* us, const T* fed = nullptr) {
  using K = Coeff<T, SCALAR>;
  const K a_mem(k[A_MEM]), v_leak(k[V_LEAK]), gain(k[GAIN]), thr(k[THR]), v_reset(k[V_RESET]),
      a_syn(k[A_SYN]), gain_syn(k[GAIN_SYN]);
  const T incl = c.inclusive ? T(1) : T(0);
  constexpr bool HC = CUR != CUR_NONE, cf = CUR == CUR_CURRENT_FIRST;
  for (int64_t t = 0; t < steps; ++t) {
    const T* xt = x + t * x_step;
    const T* ft = FED ? fed + t * x_step : nullptr;
    T* zt = KEEP ? nullptr : out + t * out_step;
    const T* zp = KEEP || t == 0 ? z : zt - out_step;  // the previous spikes
    T* ut = KEEP ? us + t * kStride : nullptr;
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) {
      T drive;
      if (HC) {
        const T i_old = i[e], x_e = xt[e];
        T i_new = a_syn[e] * i_old + gain_syn[e] * x_e;
        if (FED) i_new = i_new + gain_syn[e] * ft[e];
        drive = gain[e] * (cf ? i_new : i_old);
        i[e] = i_new;
      } else {
        drive = gain[e] * xt[e];
      }
      // every load unconditional (selects of values vectorize, of loads may not)
      const T th = thr[e], vr = RESET == RESET_ZERO ? v_reset[e] : T(0), z_prev = NEXT ? zp[e] : T(0);
      T lk = VLEAK ? v_leak[e] + a_mem[e] * (v[e] - v_leak[e]) : v[e] * a_mem[e];
      if (NEXT && RESET == RESET_ZERO) lk = z_prev > T(0) ? vr : lk;
      T driven = lk + drive;
      if (FED && !HC) driven = driven + gain[e] * ft[e];
      const T u = NEXT && RESET != RESET_ZERO ? driven - z_prev * th : driven;
      const T s = spike_of(u, th, incl);
      if (KEEP) ut[e] = u; else zt[e] = s;
      if (NEXT) {
        v[e] = u;
        if (KEEP) z[e] = s;
      } else {
        v[e] = RESET == RESET_ZERO ? (s > T(0) ? vr : u) : u - s * th;
      }
    }
  }
  if (NEXT && !KEEP && steps) std::copy(out + (steps - 1) * out_step, out + (steps - 1) * out_step + n, z);
}

// The backward of one chunk without coefficient gradients, given u_t of every
// step (us, kStride apart): gv, gi, gz hold the gradients at the final states
// and end at the initial ones. g_in of each step is added to gx (static input)
// or stored at g_x + t * M (g_x: the chunk in the [T, M] gradient, or null).
// g_out: the chunk's output gradient, go_step apart over steps; with go_bcast
// one value per step (at g_out + t * go_step), spread into go_buf.
// RESET is RESET_SUBTRACT_GRAD for a subtract reset that is not detached
// (the only case in which the gradient at z_t is not 0 after the last step).
constexpr int RESET_SUBTRACT_GRAD = 3;

template <typename T, bool NEXT, int RESET, int SURR, int CUR, bool SCALAR>
void backward_chunk_fast(const Config& c, const T* const* k, const T* us, const T* z0,
                         const T* g_out, int64_t go_step, bool go_bcast, T* go_buf, int64_t M,
                         int64_t steps, int64_t n, T* __restrict__ gv, T* __restrict__ gi,
                         T* __restrict__ gz, T* gx, bool accumulate, T* scratch) {
  using K = Coeff<T, SCALAR>;
  const K a_mem(k[A_MEM]), gain(k[GAIN]), thr(k[THR]), a_syn(k[A_SYN]), gain_syn(k[GAIN_SYN]);
  const T incl = c.inclusive ? T(1) : T(0);
  constexpr bool HC = CUR != CUR_NONE, cf = CUR == CUR_CURRENT_FIRST;
  constexpr bool kSubGrad = RESET == RESET_SUBTRACT_GRAD;
  const double slope = c.slope;
  // without gradient through z, the gradient at z_T (gz) only adds to step
  // T - 1's output gradient: folded into go_buf, and gz is 0 from there on
  const bool fold = NEXT && !kSubGrad && steps > 0;
  if (fold) {
    const T* go_last = g_out + (steps - 1) * go_step;
    for (int64_t e = 0; e < n; ++e) go_buf[e] = (go_bcast ? go_last[0] : go_last[e]) + gz[e];
    std::fill(gz, gz + n, T(0));
  }
  // one step; FIRST (t == 0) takes the spikes before step 0 from z0
  auto step = [&](int64_t t, auto first_c) {
    constexpr bool FIRST = CT(first_c);
    const T* __restrict__ u_now = us + t * kStride;
    const T* __restrict__ u_prev = FIRST || t == 0 ? z0 : u_now - kStride;
    const bool last = t == steps - 1;
    if (go_bcast && !(fold && last) && (last || go_step || (fold && t == steps - 2)))
      std::fill(go_buf, go_buf + n, g_out[t * go_step]);
    const T* __restrict__ go = go_bcast || (fold && last) ? go_buf : g_out + t * go_step;
    // static: g_in accumulates in gx; else it is stored (at scratch when not needed)
    T* __restrict__ g_dst = accumulate ? gx : gx ? gx + t * M : scratch;
#pragma omp simd
    for (int64_t e = 0; e < n; ++e) {
      // every load unconditional (selects of values vectorize, of loads may not)
      const T u = u_now[e], th = thr[e], g_o = go[e], g_z = NEXT ? gz[e] : T(0);
      const T s = surrogate_grad_of<SURR>(slope, u - th);
      T g_spike = NEXT ? g_o + g_z : g_o;  // all gradient at z_t
      T g_u = gv[e];
      if (!NEXT && RESET == RESET_ZERO) g_u = spike_of(u, th, incl) > T(0) ? T(0) : g_u;
      if (!NEXT && kSubGrad) g_spike = g_spike - g_u * th;
      g_u = g_u + g_spike * s;
      T g_leaked = g_u;
      if (NEXT && kSubGrad) gz[e] = -g_u * th;
      if (NEXT && RESET == RESET_ZERO) {  // the spikes of step t - 1 reset
        const T p = u_prev[e];
        g_leaked = (FIRST ? p : spike_of(p, th, incl)) > T(0) ? T(0) : g_u;
      }
      gv[e] = g_leaked * a_mem[e];
      T g_in;
      if (HC) {
        const T g_drive = g_u * gain[e], g_i = gi[e], a_s = a_syn[e];
        const T g_i_in = cf ? g_i + g_drive : g_i;
        gi[e] = cf ? g_i_in * a_s : g_drive + g_i_in * a_s;
        g_in = g_i_in * gain_syn[e];
      } else {
        g_in = g_u * gain[e];
      }
      const T g_acc = g_dst[e];
      g_dst[e] = (accumulate ? g_acc : T(0)) + g_in;
    }
  };
  constexpr bool kSplit = NEXT && RESET == RESET_ZERO;
  for (int64_t t = steps - 1; t >= (kSplit ? 1 : 0); --t) step(t, B_<false>{});
  if (kSplit && steps > 0) step(0, B_<true>{});
  if (NEXT && !kSubGrad) std::fill(gz, gz + n, T(0));
}

template <typename F>
void with_bool(bool b, F&& f) {
  if (b) f(B_<true>{}); else f(B_<false>{});
}

// f(NEXT, RESET, VLEAK, CUR, SCALAR) for the fast path.
template <typename F>
void with_structure(const Config& c, bool vleak, bool scalar, F&& f) {
  with_bool(c.next_timing, [&](auto next) {
    using R = I_<CT(next) ? RESET_SUBTRACT : RESET_ZERO>;  // see fast_path
    with_bool(vleak, [&](auto vl) {
      auto g = [&](auto cur) { with_bool(scalar, [&](auto sc) { f(next, R{}, vl, cur, sc); }); };
      if (!c.has_current) g(I_<CUR_NONE>{});
      else if (c.current_first) g(I_<CUR_CURRENT_FIRST>{});
      else g(I_<CUR_VOLTAGE_FIRST>{});
    });
  });
}

// Prepares a chunk for the fast path: an absent a_mem becomes ones; a static
// input is turned into its constant drive (gain * x, or gain_syn * x with a
// current) whose multiplier then becomes ones. Returns the input to scan.
template <typename T>
const T* prepare_fast(const Config& c, const T** kc, const T* x, bool is_static, int64_t b,
                      int64_t n, T* ones, T* drive) {
  std::fill(ones, ones + n, T(1));
  if (!kc[A_MEM]) kc[A_MEM] = ones;
  if (!is_static) return x + b;
  const int j = c.has_current ? GAIN_SYN : GAIN;
  const T* xb = x + b;
  const T* g = kc[j];
  for (int64_t e = 0; e < n; ++e) drive[e] = g[e] * xb[e];
  kc[j] = ones;
  return drive;
}

// Per-thread local arrays, kStride apart.
template <typename T>
struct Locals {
  explicit Locals(int64_t count) : storage(new T[count * kStride]()) {}
  T* operator()(int64_t j) { return storage.get() + j * kStride; }
  std::unique_ptr<T[]> storage;
};

// The chunk [b, b + n) of every coefficient into locals 0..N_COEF-1; kc[j] is
// null for an absent coefficient.
template <typename T>
void load_coefficients(const T* const* k, const int64_t* period, int64_t b, int64_t n,
                       Locals<T>& local, const T** kc) {
  for (int j = 0; j < N_COEF; ++j) kc[j] = load_chunk(k[j], period[j], b, n, local(j));
}

template <typename T>
void load_states(const Config& c, const T* v0, const T* i0, const T* z0, int64_t b, int64_t n,
                 T* v, T* i, T* z) {
  std::copy(v0 + b, v0 + b + n, v);
  if (c.has_current) std::copy(i0 + b, i0 + b + n, i);
  if (c.next_timing) std::copy(z0 + b, z0 + b + n, z);
}

// fed (or null, [T, M]): the fed-back drive; it takes run_chunk's per-stage loops (the same bits).
template <typename T>
void forward_kernel(const Config& c, const T* x, const T* v0, const T* i0, const T* z0,
                    const T* const* k, const int64_t* period, int64_t steps, bool is_static,
                    int64_t M, T* out, T* v_end, T* i_end, T* z_end, const T* fed = nullptr) {
  const bool vleak = k[V_LEAK] != nullptr;
  bool scalar = true;  // every coefficient one value (or absent)
  for (int j = 0; j < N_COEF; ++j) scalar = scalar && period[j] <= 1;
  at::parallel_for(0, M, kChunk, [&](int64_t begin, int64_t end) {
    Locals<T> local(N_COEF + 7);
    T *v = local(N_COEF), *i = local(N_COEF + 1), *z = local(N_COEF + 2),
      *x_static = local(N_COEF + 3), *ubuf = local(N_COEF + 4), *scratch = local(N_COEF + 5);
    for (int64_t b = begin; b < end; b += kChunk) {
      const int64_t n = std::min(kChunk, end - b);
      const T* kc[N_COEF];
      load_coefficients(k, period, b, n, local, kc);
      load_states(c, v0, i0, z0, b, n, v, i, z);
      const T* fc = fed ? fed + b : nullptr;
      if (fast_path(c) && !fed) {  // spikes straight into out; v, i, z stay local
        const T* xc = prepare_fast(c, kc, x, is_static, b, n, ubuf, x_static);
        with_structure(c, vleak, scalar, [&](auto next, auto reset, auto vl, auto hc, auto sc) {
          run_chunk_fast<T, CT(next), CT(reset), CT(vl), CT(hc), false, CT(sc)>(
              c, kc, xc, is_static ? 0 : M, steps, n, v, i, z, out + b, M, nullptr);
        });
      } else {
        if (is_static) std::copy(x + b, x + b + n, x_static);
        const T* xc = is_static ? x_static : x + b;
        const int64_t x_step = is_static ? 0 : M;
        if (c.spiking) {  // u only lives in ubuf
          run_chunk(c, kc, xc, x_step, steps, n, v, i, z, scratch, ubuf, 0, out + b, M,
                    static_cast<T*>(nullptr), 0, fc);
        } else {
          run_chunk(c, kc, xc, x_step, steps, n, v, i, z, scratch, out + b, M, out + b, M,
                    static_cast<T*>(nullptr), 0, fc);
        }
      }
      std::copy(v, v + n, v_end + b);
      if (c.has_current) std::copy(i, i + n, i_end + b);
      if (c.next_timing) std::copy(z, z + n, z_end + b);
    }
  });
}

// The fused backward of the chunk [b, b + n) (fast_path, no coefficient
// gradients): recomputes the u_t into us, then runs backward_chunk_fast.
template <typename T>
void backward_fast(const Config& c, const T** kc, const T* x, const T* v0, const T* i0,
                   const T* z0, const T* g_out, int64_t go_step, bool go_bcast, const T* g_v_end,
                   const T* g_i_end, const T* g_z_end, int64_t steps, bool is_static, int64_t M,
                   T* g_x, T* g_v0, T* g_i0, T* g_z0, bool vleak, bool scalar, int64_t b,
                   int64_t n, Locals<T>& local, T* us) {
  T *gv = local(N_COEF), *gi = local(N_COEF + 1), *gz = local(N_COEF + 2), *gx = local(N_COEF + 3),
    *ones = local(N_COEF + 4), *drive = local(N_COEF + 5), *go_buf = local(N_COEF + 6),
    *z_first = local(N_COEF + 7), *scratch = local(N_COEF + 8);
  const T* kf[N_COEF];  // the forward's coefficients (a static input's multiplier made ones)
  std::copy(kc, kc + N_COEF, kf);
  const T* xc = prepare_fast(c, kf, x, is_static, b, n, ones, drive);
  kc[A_MEM] = kf[A_MEM];
  load_states(c, v0, i0, z0, b, n, gv, gi, gz);
  with_structure(c, vleak, scalar, [&](auto next, auto reset, auto vl, auto hc, auto sc) {
    run_chunk_fast<T, CT(next), CT(reset), CT(vl), CT(hc), true, CT(sc)>(
        c, kf, xc, is_static ? 0 : M, steps, n, gv, gi, gz, nullptr, 0, us);
  });
  std::copy(g_v_end + b, g_v_end + b + n, gv);
  if (c.has_current) std::copy(g_i_end + b, g_i_end + b + n, gi);
  if (c.next_timing) {
    std::copy(g_z_end + b, g_z_end + b + n, gz);
    std::copy(z0 + b, z0 + b + n, z_first);
  }
  std::fill(gx, gx + n, T(0));
  const bool sub_grad = c.reset == RESET_SUBTRACT && !c.detach_reset;
  with_structure(c, false, scalar, [&](auto next, auto reset, auto, auto hc, auto sc) {
    using R = I_<CT(reset) == RESET_SUBTRACT ? RESET_SUBTRACT_GRAD : CT(reset)>;
    with_surrogate(c.surrogate, [&](auto surr) {
      auto run = [&](auto r) {
        backward_chunk_fast<T, CT(next), CT(r), CT(surr), CT(hc), CT(sc)>(
            c, kc, us, z_first, go_bcast ? g_out : g_out + b, go_step, go_bcast, go_buf, M, steps,
            n, gv, gi, gz, is_static ? gx : g_x ? g_x + b : nullptr, is_static, scratch);
      };
      if (sub_grad) run(R{}); else run(reset);
    });
  });
  std::copy(gv, gv + n, g_v0 + b);
  if (c.has_current) std::copy(gi, gi + n, g_i0 + b);
  if (c.next_timing) std::copy(gz, gz + n, g_z0 + b);
  if (is_static && g_x) std::copy(gx, gx + n, g_x + b);
}

// s[e] = surrogate'(u[e] - thr[e]) over a chunk.
template <typename T>
void surrogate_grads(const Config& c, const T* u, const T* thr, T* s, int64_t n) {
  switch (c.surrogate) {
#define SNNIR_SURROGATE_LOOP(KIND) \
  case KIND:                       \
    for (int64_t e = 0; e < n; ++e) s[e] = surrogate_grad_of<KIND>(c.slope, u[e] - thr[e]); \
    break;
    SNNIR_SURROGATE_LOOP(FAST_SIGMOID)
    SNNIR_SURROGATE_LOOP(ARCTAN)
    SNNIR_SURROGATE_LOOP(TRIANGULAR)
    SNNIR_SURROGATE_LOOP(SIGMOID)
    SNNIR_SURROGATE_LOOP(STRAIGHT_THROUGH)
#undef SNNIR_SURROGATE_LOOP
  }
}

// Gradients over a chunk of elements; acc[j] (when non-null) receives the
// per-element sum over steps of the gradient at coefficient j. fed (or null):
// the forward's fed-back drive (its gradient is g_x's: the same gain).
template <typename T>
void backward_kernel(const Config& c, const T* x, const T* v0, const T* i0, const T* z0,
                     const T* const* k, const int64_t* period, const T* g_out,
                     int64_t go_step, bool go_bcast, const T* g_v_end, const T* g_i_end,
                     const T* g_z_end, int64_t steps,
                     bool is_static, int64_t M, T* g_x, T* g_v0, T* g_i0, T* g_z0,
                     T* const* acc, const T* fed = nullptr) {
  const bool subtract_grad = c.reset == RESET_SUBTRACT && !c.detach_reset;
  const bool same_timing = c.spiking && !c.next_timing;
  const bool vleak = k[V_LEAK] != nullptr;
  bool fast = fast_path(c) && !fed;  // the fused backward computes no coefficient gradients
  bool scalar = true;  // every coefficient one value (or absent)
  for (int j = 0; j < N_COEF; ++j) fast = fast && !acc[j], scalar = scalar && period[j] <= 1;
  TORCH_CHECK(fast || !go_bcast, "neuron_scan: broadcast g_out needs the fast path");
  at::parallel_for(0, M, kChunk, [&](int64_t begin, int64_t end) {
    Locals<T> local(N_COEF + 13);
    T *gv = local(N_COEF), *gi = local(N_COEF + 1), *gz = local(N_COEF + 2), *gx = local(N_COEF + 3),
      *s = local(N_COEF + 4), *g_spike = local(N_COEF + 5), *g_u = local(N_COEF + 6),
      *g_leaked = local(N_COEF + 7), *zt = local(N_COEF + 8), *prev = local(N_COEF + 9),
      *x_static = local(N_COEF + 10), *scratch = local(N_COEF + 11), *x_fed = local(N_COEF + 12);
    // the chunk's u_t and i_t of every step, recomputed by a forward pass
    std::vector<T> u_steps(steps * kStride), i_steps(c.has_current && !fast ? steps * kStride : 0);
    const T* us = u_steps.data();
    const T* is = i_steps.data();
    for (int64_t b = begin; b < end; b += kChunk) {
      const int64_t n = std::min(kChunk, end - b);
      const T* kc[N_COEF];
      load_coefficients(k, period, b, n, local, kc);
      if (fast) {
        backward_fast(c, kc, x, v0, i0, z0, g_out, go_step, go_bcast, g_v_end, g_i_end, g_z_end,
                      steps, is_static, M, g_x, g_v0, g_i0, g_z0, vleak, scalar, b, n, local,
                      u_steps.data());
        continue;
      }
      const T *a_mem = kc[A_MEM], *v_leak = kc[V_LEAK], *gain = kc[GAIN], *thr = kc[THR],
              *v_reset = kc[V_RESET], *a_syn = kc[A_SYN], *gain_syn = kc[GAIN_SYN];
      if (is_static) std::copy(x + b, x + b + n, x_static);
      load_states(c, v0, i0, z0, b, n, gv, gi, gz);  // used as the forward's states first
      run_chunk(c, kc, is_static ? x_static : x + b, is_static ? 0 : M, steps, n, gv, gi, gz,
                scratch, u_steps.data(), kStride, prev, 0,
                c.has_current ? i_steps.data() : nullptr, kStride, fed ? fed + b : nullptr);
      auto sum = [&](int j) { return acc[j] ? acc[j] + b : nullptr; };
      T *s_a_mem = sum(A_MEM), *s_v_leak = sum(V_LEAK), *s_gain = sum(GAIN), *s_thr = sum(THR),
        *s_v_reset = sum(V_RESET), *s_a_syn = sum(A_SYN), *s_gain_syn = sum(GAIN_SYN);
      std::copy(g_v_end + b, g_v_end + b + n, gv);
      if (c.has_current) std::copy(g_i_end + b, g_i_end + b + n, gi);
      if (c.next_timing) std::copy(g_z_end + b, g_z_end + b + n, gz);
      std::fill(gx, gx + n, T(0));
      for (int64_t t = steps - 1; t >= 0; --t) {
        const T* u = us + t * kStride;
        const T* u_prev = t ? us + (t - 1) * kStride : nullptr;
        const T* go = g_out + t * go_step + b;
        const T* xt = is_static ? x_static : x + t * M + b;
        if (fed && (s_gain || s_gain_syn)) {  // a gain's gradient: by all it scaled (to rounding)
          const T* ft = fed + t * M + b;
          for (int64_t e = 0; e < n; ++e) x_fed[e] = xt[e] + ft[e];
          xt = x_fed;
        }
        // through the spike and a same-step reset: g_u, the gradient at u
        if (c.spiking) {
          surrogate_grads(c, u, thr, s, n);
          if (c.next_timing) {
            for (int64_t e = 0; e < n; ++e) g_spike[e] = go[e] + gz[e];
          } else {
            std::copy(go, go + n, g_spike);
          }
          if (same_timing && c.reset == RESET_ZERO) {
            spikes(c, u, thr, zt, n);
            for (int64_t e = 0; e < n; ++e) g_u[e] = zt[e] > T(0) ? T(0) : gv[e];
            if (s_v_reset)
              for (int64_t e = 0; e < n; ++e) s_v_reset[e] += gv[e] - g_u[e];
          } else if (same_timing && c.reset == RESET_SUBTRACT) {
            spikes(c, u, thr, zt, n);
            if (!c.detach_reset)
              for (int64_t e = 0; e < n; ++e) g_spike[e] = g_spike[e] - gv[e] * thr[e];
            if (s_thr)
              for (int64_t e = 0; e < n; ++e) s_thr[e] += -gv[e] * zt[e];
            std::copy(gv, gv + n, g_u);
          } else {
            std::copy(gv, gv + n, g_u);
          }
          for (int64_t e = 0; e < n; ++e) g_u[e] = g_u[e] + g_spike[e] * s[e];
          if (s_thr)
            for (int64_t e = 0; e < n; ++e) s_thr[e] += -g_spike[e] * s[e];
        } else {
          for (int64_t e = 0; e < n; ++e) g_u[e] = gv[e] + go[e];
        }
        // through a reset by the previous step's spikes: g_leaked (with the reset after the
        // input, the drive entered before it: its gradient is g_leaked too)
        std::copy(g_u, g_u + n, g_leaked);
        if (c.next_timing) {
          if (subtract_grad) {
            for (int64_t e = 0; e < n; ++e) gz[e] = -g_u[e] * thr[e];
          } else {
            std::fill(gz, gz + n, T(0));
          }
          if (c.reset == RESET_ZERO || (c.reset == RESET_SUBTRACT && s_thr)) {
            if (t) {
              spikes(c, u_prev, thr, prev, n);
            } else {
              std::copy(z0 + b, z0 + b + n, prev);
            }
            if (c.reset == RESET_ZERO) {
              for (int64_t e = 0; e < n; ++e) g_leaked[e] = prev[e] > T(0) ? T(0) : g_u[e];
              if (s_v_reset)
                for (int64_t e = 0; e < n; ++e) s_v_reset[e] += g_u[e] - g_leaked[e];
            } else {
              for (int64_t e = 0; e < n; ++e) s_thr[e] += -g_u[e] * prev[e];
            }
          }
        }
        if (c.after_input) std::copy(g_leaked, g_leaked + n, g_u);
        // through the leak: gv, the gradient at the previous step's stored membrane
        if (!a_mem) {
          std::copy(g_leaked, g_leaked + n, gv);
        } else {
          for (int64_t e = 0; e < n; ++e) gv[e] = g_leaked[e] * a_mem[e];
          if (s_a_mem || s_v_leak) {
            if (!t) {
              std::copy(v0 + b, v0 + b + n, prev);
            } else if (!same_timing || c.reset == RESET_NONE) {
              std::copy(u_prev, u_prev + n, prev);
            } else {
              spikes(c, u_prev, thr, zt, n);
              if (c.reset == RESET_ZERO) {
                for (int64_t e = 0; e < n; ++e) prev[e] = zt[e] > T(0) ? v_reset[e] : u_prev[e];
              } else {
                for (int64_t e = 0; e < n; ++e) prev[e] = u_prev[e] - zt[e] * thr[e];
              }
            }
            if (s_a_mem && v_leak) {
              for (int64_t e = 0; e < n; ++e) s_a_mem[e] += g_leaked[e] * (prev[e] - v_leak[e]);
            } else if (s_a_mem) {
              for (int64_t e = 0; e < n; ++e) s_a_mem[e] += g_leaked[e] * prev[e];
            }
            if (s_v_leak)
              for (int64_t e = 0; e < n; ++e) s_v_leak[e] += g_leaked[e] * (T(1) - a_mem[e]);
          }
        }
        // through the drive (and the synaptic current) to the input: g_spike is reused as g_in
        T* g_in = g_spike;
        if (c.has_current) {
          const T* i_now = is + t * kStride;
          const T* i_prev = t ? is + (t - 1) * kStride : i0 + b;
          if (s_gain) {
            const T* drive_in = c.current_first ? i_now : i_prev;
            for (int64_t e = 0; e < n; ++e) s_gain[e] += g_u[e] * drive_in[e];
          }
          T* g_i_in = g_leaked;  // free again
          if (c.current_first) {
            for (int64_t e = 0; e < n; ++e) g_i_in[e] = gi[e] + g_u[e] * gain[e];
            for (int64_t e = 0; e < n; ++e) gi[e] = g_i_in[e] * a_syn[e];
          } else {
            std::copy(gi, gi + n, g_i_in);
            for (int64_t e = 0; e < n; ++e) gi[e] = g_u[e] * gain[e] + g_i_in[e] * a_syn[e];
          }
          if (s_a_syn)
            for (int64_t e = 0; e < n; ++e) s_a_syn[e] += g_i_in[e] * i_prev[e];
          if (s_gain_syn)
            for (int64_t e = 0; e < n; ++e) s_gain_syn[e] += g_i_in[e] * xt[e];
          for (int64_t e = 0; e < n; ++e) g_in[e] = g_i_in[e] * gain_syn[e];
        } else {
          if (s_gain)
            for (int64_t e = 0; e < n; ++e) s_gain[e] += g_u[e] * xt[e];
          for (int64_t e = 0; e < n; ++e) g_in[e] = g_u[e] * gain[e];
        }
        if (is_static) {
          for (int64_t e = 0; e < n; ++e) gx[e] += g_in[e];
        } else if (g_x) {
          std::copy(g_in, g_in + n, g_x + t * M + b);
        }
      }
      std::copy(gv, gv + n, g_v0 + b);
      if (c.has_current) std::copy(gi, gi + n, g_i0 + b);
      if (c.next_timing) std::copy(gz, gz + n, g_z0 + b);
      if (is_static && g_x) std::copy(gx, gx + n, g_x + b);
    }
  });
}

}  // namespace
#undef CT
