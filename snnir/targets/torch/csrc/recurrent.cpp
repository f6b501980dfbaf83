// A recurrent component (a neuron and the Linear/Affine layer that feeds its spikes back)
// over T steps in one call, forward and BPTT backward.
//
// Step t: the neuron's update of neuron_step.h on x_t with r_{t-1} its fed-back drive
// ((leak + g x_t) + g r_{t-1}, snnir/ir/schedule.py; spikes z_t); r_t = z_t W^T + b, the GEMM torch's F.linear makes (at::addmm, or at::mm
// without a bias, into a [B, N] buffer laid out as a fresh tensor, as the step-by-step
// Python path has), so every output equals that path's bit for bit. r_{-1} is given (the
// delayed value's state). The input projection x_t is computed outside, over all T at once.
//
// Two ways through the steps:
// - fused (fast_path(c) of neuron_step.h and no coefficient gradient wanted): the fused
//   branch-free update over all M elements at once, coefficients spread over them once
//   per call. Training keeps u_t (the membrane after the input, before the reset) per
//   step and nothing else: the fused backward needs only it and the spikes;
// - general: the sequence kernel's update one step at a time. Training keeps, per step,
//   r_{t-1} and the neuron's states before the step (membrane, and current for Cuba
//   neurons); the backward recomputes each step from them and x.
// The forward makes each step's GEMM over the whole batch (F.linear's call, so its bits), or
// the sum at the spikes where that gives the same bits (Projection, sparse_agrees);
// the fused backward splits the batch into blocks of rows (see row_blocks). Both keep the spikes
// as out holds them (a Linear fed out keeps that same tensor: spike_linear.py), so the
// weight gradient's GEMM reads them as they are. The backward walks time back: dL/dz_t = g_out_t
// + dL/dr_t W (one GEMM), then the neuron's backward of one step gives dL/dx_t =
// dL/dr_{t-1} (one gain scales both); after the scan dL/dW is one GEMM over all steps, or, where few
// spikes fired, a sum of the gradient's rows at the spikes (weight_grads), and dL/db one sum. Scratch and kept buffers come from a pool (see Pool) instead of fresh memory.
#include <c10/util/strides.h>
#include <torch/extension.h>

#include <ATen/CPUGeneratorImpl.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>
#include <vector>

#include "blas.h"
#include "neuron_step.h"
#include "spikes.h"

#define CT(x) decltype(x)::value  // a compile-time argument back as a value (neuron_step.h's)

namespace {

// Memory reused across calls (outputs, kept and scratch buffers): a new tensor over a held
// storage that nothing else uses any more (no tensor, view or autograd record), so a reuse
// is never visible; reusing spares the page faults of fresh memory (glibc returns large
// freed blocks to the system), a few ms a call. Storages, not tensors, are held: a tensor
// once handed to Python stays referenced by its Python object. At most kPoolSize are
// held: a new one is held while fewer are, else takes the place of a free one of another size,
// else is not held (a training call's buffers and an inference call's of other run lengths,
// alternating, kept evicting each other: fresh pages at every call, the bench's recurrent
// inference 1.14-1.18 -> 1.36x its floor once training ran one run of 100 steps)
class Pool {
 public:
  at::Tensor get(at::IntArrayRef shape, const at::TensorOptions& options) {
    const auto nbytes = static_cast<size_t>(c10::multiply_integers(shape)) * options.dtype().itemsize();
    if (!nbytes) return at::empty(shape, options);
    std::lock_guard<std::mutex> lock(mutex_);
    c10::Storage* free_slot = nullptr;
    for (auto& storage : held_) {
      if (storage.use_count() != 1) continue;
      if (storage.nbytes() == nbytes) return at::empty({0}, options).set_(storage, 0, shape, c10::contiguous_strides(shape));
      free_slot = &storage;
    }
    auto fresh = at::empty(shape, options);
    if (held_.size() < kPoolSize) held_.push_back(fresh.storage());
    else if (free_slot) *free_slot = fresh.storage();
    return fresh;
  }

 private:
  static constexpr size_t kPoolSize = 24;
  std::mutex mutex_;
  std::vector<c10::Storage> held_;
};

Pool& pool() {
  static Pool instance;
  return instance;
}

struct Coefficients {
  explicit Coefficients(const std::vector<at::Tensor>& coeffs) : tensors(coeffs) {
    TORCH_CHECK(coeffs.size() == N_COEF, "recurrent: expected ", N_COEF, " coefficients");
  }
  template <typename T>
  void pointers(const T** k, int64_t* period) const {
    for (int j = 0; j < N_COEF; ++j) {
      k[j] = ptr_or_null<T>(tensors[j]);
      period[j] = tensors[j].numel();
    }
  }
  const std::vector<at::Tensor>& tensors;
};

// The coefficients as the fused loops read them at element e of a chunk: all one value
// each (scalar), or each spread over the M elements (a per-neuron one tiled over the
// batch, a single value repeated); an absent a_mem is ones (v * 1 is exact).
struct Spread {
  Spread(const std::vector<at::Tensor>& coeffs, int64_t M, const at::TensorOptions& options) {
    scalar = std::all_of(coeffs.begin(), coeffs.end(), [](const at::Tensor& k) { return k.numel() <= 1; });
    for (int j = 0; j < N_COEF; ++j) {
      const at::Tensor& k = coeffs[j];
      if (!k.numel() && j == A_MEM) held.push_back(at::ones({scalar ? 1 : M}, options));
      else if (!k.numel() || scalar) held.push_back(k);
      else held.push_back(k.numel() == 1 ? k.expand({M}).contiguous() : k.repeat({M / k.numel()}));
    }
  }
  template <typename T>
  void at(int64_t b, const T** k) const {
    for (int j = 0; j < N_COEF; ++j) k[j] = held[j].numel() ? held[j].data_ptr<T>() + (scalar ? 0 : b) : nullptr;
  }
  std::vector<at::Tensor> held;
  bool scalar;
};

template <typename T>
T* mutable_or_null(at::Tensor& t) {
  return t.numel() ? t.data_ptr<T>() : nullptr;
}

at::Tensor empty_unless(bool cond, at::IntArrayRef shape, const at::Tensor& like) {
  return cond ? at::empty(shape, like.options()) : at::empty({0}, like.options());
}

// Elements [b, b + n) of [rows, N] rows each equal to bias: out[e - b] = bias[e % N].
template <typename T>
void fill_bias(const T* bias, int64_t N, int64_t b, int64_t n, T* out) {
  for (int64_t e = b, col = b % N; e < b + n;) {
    const int64_t len = std::min(N - col, b + n - e);
    std::copy(bias + col, bias + col + len, out + (e - b));
    e += len;
    col = 0;
  }
}

// r = z W^T (+ b) as F.linear computes it for a [B, N] input, into r (contiguous rows),
// w_t = W^T. With a bias, F.linear's addmm copies b into every row of its output and has
// the GEMM add into it (beta 1); here fill_bias does the first (in the caller's tasks,
// with filled, else here) and an addmm whose input is its output the second: the same
// GEMM call on the same values, without the broadcast copy's and the transpose's per-call
// cost.
template <typename T>
void project(at::Tensor& r, const at::Tensor& z, const at::Tensor& w_t, const at::Tensor& bias, bool filled = false) {
  if (!bias.numel()) {
    at::mm_out(r, z, w_t);
    return;
  }
  if (!filled) fill_bias(bias.data_ptr<T>(), r.size(1), 0, r.numel(), r.data_ptr<T>());
  at::addmm_out(r, r, z, w_t);
}

// r = z W^T (+ b) from spikes z (every value 0 or 1) as a sum of the rows of w_t = W^T at
// the spikes, each row of r on its own: acc = 0, acc += w_t[k] for each fired k in
// ascending order, then acc + b. Where the GEMM library runs the product in that order
// (one accumulator per output over k in order: a product by 0 adds nothing, by 1 adds
// the weight), both give the same bits; sparse_agrees checks that for the call's shape
// before this is used. About density x the GEMM's adds, without its blocking: tiles of 8
// vectors of outputs in registers, then a vector at a time (sum_span), then single values.
// kBytes: the vector width (each output's sum is the same chain at any width); always inlined,
// so that the AVX-512 caller's target compiles it.
template <typename T, int kBytes, int64_t kVecs>
__attribute__((always_inline)) inline void sum_span(const int64_t* fired, int64_t n, const T* __restrict__ w_t,
                                                    int64_t N, int64_t j0, const T* __restrict__ bias,
                                                    T* __restrict__ out) {
  typedef T V __attribute__((vector_size(kBytes)));
  constexpr int64_t kLanes = kBytes / sizeof(T), kSpan = kLanes * kVecs;
  V acc[kVecs] = {};
  for (int64_t f = 0; f < n; ++f) {
    const T* w = w_t + fired[f] * N + j0;
    for (int64_t v = 0; v < kVecs; ++v) {
      V lanes;
      std::memcpy(&lanes, w + v * kLanes, sizeof(V));
      acc[v] += lanes;
    }
  }
  T sums[kSpan];
  std::memcpy(sums, acc, sizeof(sums));
  for (int64_t j = 0; j < kSpan; ++j) out[j0 + j] = bias ? sums[j] + bias[j0 + j] : sums[j];
}

template <typename T, int kBytes>
__attribute__((always_inline)) inline int64_t sparse_rows_of(const T* __restrict__ z, int64_t first, int64_t last,
                                                             int64_t K, const T* __restrict__ w_t, int64_t N,
                                                             const T* __restrict__ bias, T* __restrict__ r) {
  int64_t spikes = 0;
  constexpr int64_t kLanes = kBytes / sizeof(T), kVecs = 8, kTile = kLanes * kVecs;
  std::vector<int64_t> fired(K);
  for (int64_t b = first; b < last; ++b) {
    const int64_t n = list_fired(z + b * K, 0, K, fired.data());
    spikes += n;
    T* __restrict__ out = r + b * N;
    int64_t j0 = 0;
    for (; j0 + kTile <= N; j0 += kTile) sum_span<T, kBytes, kVecs>(fired.data(), n, w_t, N, j0, bias, out);
    for (; j0 + kLanes <= N; j0 += kLanes) sum_span<T, kBytes, 1>(fired.data(), n, w_t, N, j0, bias, out);
    for (int64_t j = j0; j < N; ++j) {
      T acc = T(0);
      for (int64_t f = 0; f < n; ++f) acc += w_t[fired[f] * N + j];
      out[j] = bias ? acc + bias[j] : acc;
    }
  }
  return spikes;
}

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx512f"))) int64_t sparse_rows_avx512(const float* z, int64_t first, int64_t last, int64_t K,
                                                               const float* w_t, int64_t N, const float* bias,
                                                               float* r) {
  return sparse_rows_of<float, 64>(z, first, last, K, w_t, N, bias, r);
}
#endif

// sparse_rows_of at the widest vectors this CPU runs (float: AVX-512 where present); the spike count.
template <typename T>
int64_t sparse_rows(const T* z, int64_t first, int64_t last, int64_t K, const T* w_t, int64_t N, const T* bias, T* r) {
#if defined(__GNUC__) && defined(__x86_64__)
  if constexpr (std::is_same_v<T, float>) {
    if (avx512_sums()) return sparse_rows_avx512(z, first, last, K, w_t, N, bias, r);
  }
#endif
  return sparse_rows_of<T, 32>(z, first, last, K, w_t, N, bias, r);
}

// sparse_rows over all rows, the rows split over the threads.
template <typename T>
void sparse_project(const T* z, int64_t batch, int64_t K, const T* w_t, int64_t N, const T* bias, T* r) {
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) { sparse_rows<T>(z, begin, end, K, w_t, N, bias, r); });
}

// Whether sparse_project gives project's bits for [batch, K] spikes and a [N, K] weight (with
// a bias or not) in this dtype and thread count: both run on random spikes (several
// densities) with the call's weight and bias and with random ones; the answer is kept per
// shape. A GEMM library that splits or reorders the sum over k (other shapes, other
// libraries) fails it, and the GEMM runs.
bool sparse_agrees(int64_t batch, const at::Tensor& weight, const at::Tensor& bias) {
  const int64_t N = weight.size(0), K = weight.size(1);
  const auto key = std::make_tuple(batch, K, N, static_cast<int>(weight.scalar_type()), bias.numel() > 0,
                                   at::get_num_threads());
  static std::mutex mutex;
  static std::map<decltype(key), bool> known;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto found = known.find(key);
    if (found != known.end()) return found->second;
  }
  const auto options = weight.options();
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(20261205);
  bool agrees = true;
  for (int trial = 0; trial < 4 && agrees; ++trial) {
    const bool own = trial < 2;
    const at::Tensor w = own ? weight.contiguous() : at::randn({N, K}, gen, options);
    const at::Tensor b = !bias.numel() ? bias : own ? bias.contiguous() : at::randn({N}, gen, options);
    const double density = trial % 2 ? 0.5 : 0.1;
    const at::Tensor z = at::bernoulli(at::full({batch, K}, density, options), gen);
    at::Tensor dense = at::empty({batch, N}, options), sparse = at::empty({batch, N}, options);
    const at::Tensor w_t = w.t(), wt_rows = w_t.contiguous();
    AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "snnir_recurrent_sparse_agrees", [&] {
      project<scalar_t>(dense, z, w_t, b);
      sparse_project<scalar_t>(z.data_ptr<scalar_t>(), batch, K, wt_rows.data_ptr<scalar_t>(), N,
                               b.numel() ? b.data_ptr<scalar_t>() : nullptr, sparse.data_ptr<scalar_t>());
    });
    agrees = std::memcmp(dense.data_ptr(), sparse.data_ptr(), dense.nbytes()) == 0;
  }
  std::lock_guard<std::mutex> lock(mutex);
  known[key] = agrees;
  return agrees;
}

// A step's r_t = z_t W^T (+ b): sparse_project where sparse_agrees, the weight and bias are
// finite (a product by 0 of an inf or NaN weight is NaN in the GEMM, nothing here) and fewer
// than sparse_below of the step's spikes fired; else project (sparse_below 0: always).
struct Projection {
  Projection(const at::Tensor& weight, const at::Tensor& bias, int64_t batch, double sparse_below)
      : w_t(weight.t()), bias(bias), batch(batch), K(weight.size(1)), N(weight.size(0)),
        limit(sparse_below * static_cast<double>(batch * K)) {
    sparse = sparse_below > 0 && all_finite(weight) && (!bias.numel() || all_finite(bias)) &&
             sparse_agrees(batch, weight, bias);
    if (sparse) rows = w_t.contiguous();
    const double last = last_fired(weight.data_ptr(), batch, -1.0);
    rows_alone = sparse && last >= 0 && last < sparse_below;
  }
  // The fraction of the spikes that fired in the last call with this weight and batch: a
  // guess at this call's (unknown before the first: -1); only speed depends on it. At most
  // kKnown are kept (then forgotten at once: a process making many modules).
  static double last_fired(const void* weight, int64_t batch, double update) {
    static constexpr size_t kKnown = 4096;
    static std::mutex mutex;
    static std::map<std::pair<const void*, int64_t>, double> known;
    std::lock_guard<std::mutex> lock(mutex);
    const auto key = std::make_pair(weight, batch);
    if (update >= 0 && known.size() >= kKnown && !known.count(key)) known.clear();
    if (update >= 0) known[key] = update;
    const auto found = known.find(key);
    return found == known.end() ? -1.0 : found->second;
  }
  // the fraction of spikes fired over a call of `steps` steps, kept for the next call's guess
  void fired_over(const at::Tensor& weight, int64_t fired, int64_t steps) const {
    if (sparse) last_fired(weight.data_ptr(), batch, static_cast<double>(fired) / static_cast<double>(steps * batch * K));
  }
  // fired: the spikes of z; filled: r already holds the bias in every row (project's first half)
  template <typename T>
  void run(at::Tensor& r, const at::Tensor& z, int64_t fired, bool filled) const {
    if (sparse && static_cast<double>(fired) < limit)
      sparse_project<T>(z.data_ptr<T>(), batch, K, rows.data_ptr<T>(), N, bias.numel() ? bias.data_ptr<T>() : nullptr,
                        r.data_ptr<T>());
    else
      project<T>(r, z, w_t, bias, filled);
  }
  at::Tensor w_t, rows, bias;
  int64_t batch, K, N;
  double limit;
  bool sparse, rows_alone;
};

// Whether the fused loops run this neuron (the backward computes no coefficient gradient).
bool fused(const std::vector<int64_t>& flags, bool coefficient_grads) {
  return fast_path(make_config(flags, 0.0)) && !coefficient_grads;
}

// The spikes of a fused step with u kept, into zt: left in z by a delayed reset, else made
// again from u as the loop makes them.
template <typename T, bool NEXT, bool SC>
void store_spikes(const T* __restrict__ z, const T* __restrict__ u, const T* thr_values, T incl, int64_t n,
                  T* __restrict__ zt) {
  const Coeff<T, SC> thr(thr_values);
  for (int64_t e = 0; e < n; ++e) zt[e] = NEXT ? z[e] : spike_of(u[e], thr[e], incl);
}

// The batch rows are independent through the whole loop (row b of dL/dr_t needs only row b
// of dL/dz_t), so the fused backward gives each thread its own rows for all steps: no
// barrier per step, each thread's GEMM on its rows alone (single-threaded, which may round
// otherwise than the whole batch's threaded GEMM: gradients agree to rounding; the forward
// never does this, see docs/performance.md). Blocks start at multiples of kRowAlign rows and
// hold at least kRowAlign. One block (few rows, one thread) is the whole batch, its loop and
// GEMM parallel inside.
constexpr int64_t kRowAlign = 8;

// Row bounds of the blocks: [0, b_1, ..., batch].
std::vector<int64_t> row_blocks(int64_t batch) {
  const int64_t units = batch / kRowAlign;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), units));
  std::vector<int64_t> bounds{0};
  for (int64_t k = 1; k < blocks; ++k) bounds.push_back(kRowAlign * (units * k / blocks));
  bounds.push_back(batch);
  return bounds;
}

// f(first row, end row) for each block of row_blocks, the blocks in parallel, each thread
// under no_grad (an aten call in f, the GEMM's fallback, records nothing). Not the caller's
// whole thread-local state: it may hold Python objects (the saved-tensor hooks of
// torch.utils.checkpoint or save_on_cpu), and copying one takes the GIL, which the caller held
// before the kernels released it: a deadlock.
template <typename F>
void for_row_blocks(int64_t batch, const F& f) {
  const auto bounds = row_blocks(batch);
  at::parallel_for(0, static_cast<int64_t>(bounds.size()) - 1, 1, [&](int64_t begin, int64_t end) {
    const at::NoGradGuard no_grad;
    for (int64_t k = begin; k < end; ++k) f(bounds[k], bounds[k + 1]);
  });
}

// The fused steps: v, i, z (the states, [M] each) updated in place; the spikes of step t
// into out[t] and, with keep, u_t into us[t]. Each task also
// writes the bias into its elements of r once the update has read them (project's first
// half, done in parallel while they are in cache), and the GEMM reads the spikes from out[t]
// where every out[t] starts at a 64-byte boundary as a fresh tensor does (else from a buffer
// that is copied there).
template <typename T>
void forward_fused(const Config& c, const Spread& k, const at::Tensor& x, at::Tensor& v, at::Tensor& i,
                  at::Tensor& z, at::Tensor& r, const at::Tensor& weight, const at::Tensor& bias,
                  int64_t batch, bool keep, at::Tensor& out, at::Tensor& us, const Projection& projection) {
  const int64_t steps = x.size(0), M = v.numel(), N = weight.size(0);
  const auto options = v.options();
  const bool in_place = (M * static_cast<int64_t>(sizeof(T))) % 64 == 0;
  // the rows-apart path writes its spikes straight into out
  at::Tensor zbuf = in_place || projection.rows_alone ? at::Tensor() : pool().get({batch, N}, options);
  T *pv = v.data_ptr<T>(), *pi = mutable_or_null<T>(i), *pz = mutable_or_null<T>(z);
  T *pr = r.data_ptr<T>(), *pout = out.data_ptr<T>();
  const T* pb = bias.numel() ? bias.data_ptr<T>() : nullptr;
  const T* px = x.data_ptr<T>();
  const T incl = c.inclusive ? T(1) : T(0);
  with_structure(c, k.held[V_LEAK].numel() > 0, k.scalar, [&](auto next, auto reset, auto vl, auto cur, auto sc) {
    constexpr bool NEXT = CT(next), SC = CT(sc);
    // step t of elements [b, b + n): spikes into zt + b, with keep u_t too
    auto update = [&](int64_t t, int64_t b, int64_t n, T* zt) {
      const T* kc[N_COEF];
      k.at(b, kc);
      const T* xt = px + t * M;
      T *vb = pv + b, *ib = pi ? pi + b : nullptr, *zb = pz ? pz + b : nullptr;
      if (!keep) {
        run_chunk_fast<T, NEXT, CT(reset), CT(vl), CT(cur), false, SC, true>(
            c, kc, xt + b, 0, 1, n, vb, ib, zb, zt + b, 0, nullptr, pr + b);
      } else {
        T* ut = us.data_ptr<T>() + t * M;
        run_chunk_fast<T, NEXT, CT(reset), CT(vl), CT(cur), true, SC, true>(
            c, kc, xt + b, 0, 1, n, vb, ib, zb, nullptr, 0, ut + b, pr + b);
        store_spikes<T, NEXT, SC>(zb, ut + b, kc[THR], incl, n, zt + b);
      }
    };
    if (projection.rows_alone) {  // each thread its own rows for all steps, no barrier per step
      const T* w_rows = projection.rows.data_ptr<T>();
      std::atomic<int64_t> fired{0};
      for_row_blocks(batch, [&](int64_t first, int64_t last) {
        int64_t here = 0;
        for (int64_t t = 0; t < steps; ++t) {
          T* zt = pout + t * M;
          for (int64_t b = first * N; b < last * N; b += kChunk) update(t, b, std::min(kChunk, last * N - b), zt);
          here += sparse_rows<T>(zt, first, last, N, w_rows, N, pb, pr);
        }
        fired += here;
      });
      projection.fired_over(weight, fired.load(), steps);
      return;
    }
    // else a step at a time: the tasks write the bias (project's first half) and, for the
    // sparse sum's choice, count the spikes
    const bool count = projection.sparse;
    int64_t all_fired = 0;
    for (int64_t t = 0; t < steps; ++t) {
      const at::Tensor z_t = in_place ? out[t].view({batch, N}) : zbuf;
      T* zt = z_t.data_ptr<T>();
      std::atomic<int64_t> fired{0};
      at::parallel_for(0, M, kChunk, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; b += kChunk) {
          const int64_t n = std::min(kChunk, end - b);
          update(t, b, n, zt);
          if (pb) fill_bias(pb, N, b, n, pr + b);
          if (count) {
            int64_t here = 0;
            for (int64_t e = 0; e < n; ++e) here += zt[b + e] != T(0);
            fired += here;
          }
        }
      });
      all_fired += fired.load();
      projection.run<T>(r, z_t, fired.load(), /*filled=*/true);
      if (!in_place) std::copy(zt, zt + M, pout + t * M);
    }
    projection.fired_over(weight, all_fired, steps);
  });
}

// The sequence kernel's update one step at a time (any configuration); with keep, r_{t-1} and
// the states before each step into ins, vs, is (Cuba).
template <typename T>
void forward_general(const Config& c, const Coefficients& coefficients, const at::Tensor& x, at::Tensor& v,
                     at::Tensor& i, at::Tensor& z, at::Tensor& r, const at::Tensor& weight,
                     const at::Tensor& bias, int64_t batch, bool keep, at::Tensor& out, at::Tensor& ins,
                     at::Tensor& vs, at::Tensor& is, const Projection& projection) {
  const int64_t steps = x.size(0), M = v.numel(), N = weight.size(0);
  at::Tensor zbuf = pool().get({batch, N}, v.options());
  const T* k[N_COEF];
  int64_t period[N_COEF];
  coefficients.pointers(k, period);
  T *pv = v.data_ptr<T>(), *pi = mutable_or_null<T>(i), *pz = mutable_or_null<T>(z), *zt = zbuf.data_ptr<T>();
  const T* px = x.data_ptr<T>();
  for (int64_t t = 0; t < steps; ++t) {
    const T *xt = px + t * M, *rt = r.data_ptr<T>();
    if (keep) {
      std::copy(rt, rt + M, ins.data_ptr<T>() + t * M);
      std::copy(pv, pv + M, vs.data_ptr<T>() + t * M);
      if (c.has_current) std::copy(pi, pi + M, is.data_ptr<T>() + t * M);
    }
    forward_kernel<T>(c, xt, pv, pi, pz, k, period, 1, false, M, zt, pv, pi, pz, rt);
    const int64_t fired = projection.sparse ? std::count_if(zt, zt + M, [](T s) { return s != T(0); }) : 0;
    projection.run<T>(r, zbuf, fired, false);
    std::copy(zt, zt + M, out.data_ptr<T>() + t * M);
  }
}

// Returns out [T, M] (spikes), the final v, i, z, r, and with keep what the backward needs
// besides out: u [T, M] (fused), or r_{t-1} [T, M], v before each step
// [T, M] and i before each step [T, M] (Cuba) (general; its backward also takes x).
std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& v0, const at::Tensor& i0,
                                const at::Tensor& z0, const std::vector<at::Tensor>& coeffs,
                                const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& r0,
                                int64_t batch, const std::vector<int64_t>& flags, double slope,
                                bool keep, bool coefficient_grads, double sparse_below) {
  const Config c = make_config(flags, slope);
  const int64_t steps = x.size(0), M = v0.numel(), N = weight.size(0);
  TORCH_CHECK(c.spiking && !c.multi, "recurrent: single-spike neurons only");
  TORCH_CHECK(M == batch * N && r0.numel() == M, "recurrent: shapes disagree");
  const auto options = v0.options();
  const bool use_fused = fused(flags, coefficient_grads);
  // the bias as one contiguous row (it may be given as any shape that broadcasts to one)
  const at::Tensor bias_row = bias.numel() ? bias.expand({1, N}).reshape({N}).contiguous() : bias;
  auto out = pool().get({steps, M}, options);
  auto v = v0.clone(), i = c.has_current ? i0.clone() : at::empty({0}, options);
  auto z = c.next_timing ? z0.clone() : at::empty({0}, options);
  auto r = r0.reshape({batch, N}).clone();
  const Projection projection(weight, bias_row, batch, sparse_below);
  std::vector<at::Tensor> kept;
  if (use_fused) {
    auto us = keep ? pool().get({steps, M}, options) : at::empty({0}, options);
    const Spread spread(coeffs, M, options);
    AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "snnir_recurrent_forward_fused", [&] {
      forward_fused<scalar_t>(c, spread, x, v, i, z, r, weight, bias_row, batch, keep, out, us, projection);
    });
    kept = {us};
  } else {
    auto ins = empty_unless(keep, {steps, M}, v0), vs = empty_unless(keep, {steps, M}, v0);
    auto is = empty_unless(keep && c.has_current, {steps, M}, v0);
    const Coefficients coefficients(coeffs);
    AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "snnir_recurrent_forward", [&] {
      forward_general<scalar_t>(c, coefficients, x, v, i, z, r, weight, bias_row, batch, keep, out, ins, vs,
                                is, projection);
    });
    kept = {ins, vs, is};
  }
  std::vector<at::Tensor> result{out, v, i, z, r.reshape({M})};
  if (keep) result.insert(result.end(), kept.begin(), kept.end());
  return result;
}

// g_zt [rows, N] = dL/dz_t, all the gradient at the spikes of step t: from outside (g_out_t,
// and g_last at the last step, given for the last spikes as a separate output; else null), and
// through r_t into the next step (g_r_t [rows, N]): g_out_t copied in, the GEMM adds into it
// (times the weight, packed for these rows: blas.h's PackedB).
template <typename T>
void gradient_at_spikes(T* g_zt, const T* g_out_t, const T* g_last, const T* g_r_t, const T* weight,
                        const PackedB& packed, int64_t rows, int64_t N) {
  std::copy(g_out_t, g_out_t + rows * N, g_zt);
  packed.add_product<T>(g_r_t, N, weight, N, g_zt, N);  // += g_r_t W
  if (g_last)
    for (int64_t e = 0; e < rows * N; ++e) g_zt[e] += g_last[e];
}

// dL/dW^T [N, N] += z^T g over the rows [first, last) of the spikes z [rows, N] (each 0 or 1)
// and the gradient g [rows, N], and g_b [N] += their sum of g's rows (g_b null: not wanted),
// where few spikes fired: row j of dL/dW^T sums the rows of g at which z[., j] fired, nnz x N
// adds where the GEMM makes rows x N x N multiply-adds. kBlock rows at a time: the rows that
// fired are listed per j (one scan of the block's spikes), then each tile of kVecs vectors of
// row j is summed in registers over them, reading the block's rows of g from cache. The same
// sums in another order: it agrees with the GEMM to rounding. kBytes: the vector width;
// always inlined, so that the AVX-512 caller's target compiles it (else 64-byte vectors are
// emulated: 5x slower).
template <typename T, int kBytes>
__attribute__((always_inline)) inline void sparse_grad_rows(const T* __restrict__ g, const T* __restrict__ z, int64_t first, int64_t last,
                             int64_t N, T* __restrict__ g_wt, T* __restrict__ g_b) {
  typedef T V __attribute__((vector_size(kBytes)));
  constexpr int64_t kLanes = kBytes / sizeof(T), kTile = 4 * kLanes, kBlock = 64;
  auto load = [](const T* p) { V v; std::memcpy(&v, p, sizeof(V)); return v; };
  auto store = [](T* p, V v) { std::memcpy(p, &v, sizeof(V)); };
  std::vector<int64_t> row_fired(N);
  std::vector<int32_t> listed(N * kBlock), count(N);
  for (int64_t r0 = first; r0 < last; r0 += kBlock) {
    const int64_t r1 = std::min(last, r0 + kBlock);
    std::fill(count.begin(), count.end(), 0);
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = list_fired(z + r * N, 0, N, row_fired.data());
      for (int64_t f = 0; f < n; ++f) listed[row_fired[f] * kBlock + count[row_fired[f]]++] = static_cast<int32_t>(r);
      if (g_b)
        for (int64_t e = 0; e < N; ++e) g_b[e] += g[r * N + e];
    }
    for (int64_t j = 0; j < N; ++j) {
      const int32_t* rows = listed.data() + j * kBlock;
      const int64_t n = count[j];
      T* out = g_wt + j * N;
      int64_t i0 = 0;
      for (; n && i0 + kTile <= N; i0 += kTile) {  // four accumulators in registers
        V a0 = load(out + i0), a1 = load(out + i0 + kLanes), a2 = load(out + i0 + 2 * kLanes),
          a3 = load(out + i0 + 3 * kLanes);
        for (int64_t f = 0; f < n; ++f) {
          const T* row = g + rows[f] * N + i0;
          a0 += load(row);
          a1 += load(row + kLanes);
          a2 += load(row + 2 * kLanes);
          a3 += load(row + 3 * kLanes);
        }
        store(out + i0, a0);
        store(out + i0 + kLanes, a1);
        store(out + i0 + 2 * kLanes, a2);
        store(out + i0 + 3 * kLanes, a3);
      }
      for (int64_t f = 0; f < n; ++f)
        for (int64_t e = i0; e < N; ++e) out[e] += g[rows[f] * N + e];
    }
  }
}

#if defined(__GNUC__) && defined(__x86_64__)
// sparse_grad_rows in AVX-512 vectors, for CPUs that have them (the kernels are built for AVX2;
// the bench's recurrent net's rows, 11% fired, 2 threads: 0.9 ms against 1.2 in AVX2 vectors)
__attribute__((target("avx512f"))) void sparse_grad_rows_avx512(const float* g, const float* z, int64_t first,
                                                                 int64_t last, int64_t N, float* g_wt, float* g_b) {
  sparse_grad_rows<float, 64>(g, z, first, last, N, g_wt, g_b);
}
#endif

// dL/dW = g^T z and (want_b) dL/db = g's rows summed, for spikes z and g [rows, N] where few
// fired: each thread sums its own block of rows (sparse_grad_rows) into its own dL/dW^T and
// dL/db, then they are added (the bench's recurrent net, 6336 rows of 256, 2 threads: 1.2 ms
// at 11% fired, 1.6 at 20%, 2.0 at 30%; the GEMM 2.8 at any).
template <typename T>
std::vector<at::Tensor> sparse_weight_grads(const at::Tensor& g, const at::Tensor& z, bool want_b) {
  const int64_t rows = g.size(0), N = g.size(1);
  const int threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / 64 + 1));
  std::vector<at::Tensor> parts(threads), biases(threads);
  const T *pg = g.data_ptr<T>(), *pz = z.data_ptr<T>();
#if defined(__GNUC__) && defined(__x86_64__)
  const bool wide = std::is_same_v<T, float> && avx512_sums();
#endif
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      parts[k] = at::zeros({N, N}, g.options());
      biases[k] = want_b ? at::zeros({N}, g.options()) : at::Tensor();
      const int64_t first = rows * k / threads, last = rows * (k + 1) / threads;
      T *out = parts[k].data_ptr<T>(), *g_b = want_b ? biases[k].data_ptr<T>() : nullptr;
#if defined(__GNUC__) && defined(__x86_64__)
      if constexpr (std::is_same_v<T, float>) {
        if (wide) {
          sparse_grad_rows_avx512(pg, pz, first, last, N, out, g_b);
          continue;
        }
      }
#endif
      sparse_grad_rows<T, 32>(pg, pz, first, last, N, out, g_b);
    }
  });
  for (int k = 1; k < threads; ++k) {
    parts[0].add_(parts[k]);
    if (want_b) biases[0].add_(biases[k]);
  }
  return {parts[0].t().contiguous(), want_b ? biases[0] : at::empty({0}, g.options())};
}

// dL/dW and dL/db (empty unless wanted): r_t feeds step t + 1, so dL/dr_t = g_x[t + 1]
// and dL/dW = sum_t dL/dr_t^T z_t over t < T - 1 (spikes: out [T, M], each 0 or 1): the
// sparse sums above (dL/db with them) where less than sparse_below of the spikes fired, else one GEMM.
std::vector<at::Tensor> weight_grads(const at::Tensor& g_x, const at::Tensor& spikes, int64_t batch,
                                     int64_t N, bool want_w, bool want_b, double sparse_below) {
  const int64_t steps = g_x.size(0), rows = (steps - 1) * batch;
  const auto options = g_x.options();
  at::Tensor g_w = at::empty({0}, options), g_b = at::empty({0}, options);
  const at::Tensor g_r = g_x.narrow(0, 1, steps - 1).reshape({rows, N});
  const at::Tensor z = spikes.narrow(0, 0, steps - 1).reshape({rows, N});
  bool bias_summed = false;  // by the sparse sum, with dL/dW
  if (want_w) {
    AT_DISPATCH_FLOATING_TYPES(g_x.scalar_type(), "snnir_recurrent_weight_grad", [&] {
      const scalar_t* s = z.data_ptr<scalar_t>();
      const int64_t fired = at::parallel_reduce(0, rows * N, 1 << 16, int64_t(0), [&](int64_t b, int64_t e, int64_t n) {
        for (int64_t k = b; k < e; ++k) n += s[k] != scalar_t(0);
        return n;
      }, std::plus<int64_t>());
      if (fired >= sparse_below * static_cast<double>(rows * N)) {
        g_w = at::mm(g_r.t(), z);
        return;
      }
      auto grads = sparse_weight_grads<scalar_t>(g_r, z, want_b);
      g_w = grads[0];
      g_b = grads[1];
      bias_summed = want_b;
    });
  }
  if (want_b && !bias_summed) g_b = g_r.sum(0);
  return {g_w, g_b};
}

// The fused backward (see forward_fused) from the kept u [T, M]; returns as backward does.
std::vector<at::Tensor> backward_fused(const at::Tensor& us, const at::Tensor& spikes,
                                      const std::vector<at::Tensor>& coeffs, const at::Tensor& weight,
                                      const at::Tensor& g_out, const at::Tensor& g_v, const at::Tensor& g_i,
                                      const at::Tensor& g_z, const at::Tensor& g_r, const at::Tensor& g_last,
                                      int64_t batch, const std::vector<int64_t>& flags, double slope,
                                      bool want_w, bool want_b, double sparse_below) {
  const Config c = make_config(flags, slope);
  TORCH_CHECK(fast_path(c), "recurrent: backward_fused needs the fused path's neuron");
  const int64_t steps = us.size(0), M = us.size(1), N = weight.size(0);
  const auto options = us.options();
  auto g_x = pool().get({steps, M}, options);
  auto gv = g_v.clone(), gi = c.has_current ? g_i.clone() : at::empty({0}, options);
  auto gz = c.next_timing ? g_z.clone() : at::empty({0}, options);
  at::Tensor g_zt = pool().get({batch, N}, options), go_buf = pool().get({M}, options);
  const Spread k(coeffs, M, options);
  const bool sub_grad = c.reset == RESET_SUBTRACT && !c.detach_reset;
  const at::Tensor w = weight.contiguous(), g_r_end = g_r.contiguous(), g_last_all = g_last.contiguous();
  AT_DISPATCH_FLOATING_TYPES(us.scalar_type(), "snnir_recurrent_backward_fused", [&] {
    using T = scalar_t;
    T *pgv = gv.data_ptr<T>(), *pgi = mutable_or_null<T>(gi), *pgz = mutable_or_null<T>(gz);
    T *pgo = g_zt.data_ptr<T>(), *pbuf = go_buf.data_ptr<T>(), *pgx = g_x.data_ptr<T>();
    const T *pu = us.data_ptr<T>(), *pw = w.data_ptr<T>(), *pgl = ptr_or_null<T>(g_last_all);
    with_structure(c, false, k.scalar, [&](auto next, auto reset, auto, auto cur, auto sc) {
      using R = I_<CT(reset) == RESET_SUBTRACT ? RESET_SUBTRACT_GRAD : CT(reset)>;
      with_surrogate(c.surrogate, [&](auto surr) {
        auto scan = [&](auto r) {  // each block of rows on its own
          for_row_blocks(batch, [&](int64_t first, int64_t last) {
            const int64_t rows = last - first, e0 = first * N, e1 = last * N;
            const T* g_out_block = g_out.data_ptr<T>() + e0;
            const T* g_r_rows = g_r_end.data_ptr<T>() + e0;
            const PackedB packed(pw, rows, N, N, N);
            for (int64_t t = steps - 1; t >= 0; --t) {
              gradient_at_spikes<T>(pgo + e0, g_out_block + t * M, pgl && t == steps - 1 ? pgl + e0 : nullptr, g_r_rows,
                                    pw, packed, rows, N);
              at::parallel_for(e0, e1, kChunk, [&](int64_t begin, int64_t end) {
                for (int64_t b = begin; b < end; b += kChunk) {
                  const T* kc[N_COEF];
                  k.at(b, kc);
                  backward_chunk_fast<T, CT(next), CT(r), CT(surr), CT(cur), CT(sc)>(
                      c, kc, pu + t * M + b, nullptr, pgo + b, 0, false, pbuf + b, M, 1,
                      std::min(kChunk, end - b), pgv + b, pgi ? pgi + b : nullptr, pgz ? pgz + b : nullptr,
                      pgx + t * M + b, false, nullptr);
                }
              });
              g_r_rows = pgx + t * M + e0;
            }
          });
        };
        if (sub_grad) scan(R{}); else scan(reset);
      });
    });
  });
  std::vector<at::Tensor> result{g_x, gv, gi, gz};
  for (auto& g : weight_grads(g_x, spikes, batch, N, want_w, want_b, sparse_below)) result.push_back(g);
  return result;
}

// Returns dL/dx [T, M] (dL/dx_0 is also dL/dr_{-1}), dL/dv0, dL/di0, dL/dz0, dL/dW and
// dL/db (empty unless wanted) and, per coefficient, its per-element gradient summed over
// steps (empty unless needed[j]). spikes: out [T, M]; g_out [T, M] contiguous; g_v,
// g_i, g_z, g_r: gradients at the final states; g_last: at the last spikes (or empty).
std::vector<at::Tensor> backward(const at::Tensor& x, const at::Tensor& ins, const at::Tensor& vs,
                                 const at::Tensor& is,
                                 const at::Tensor& spikes, const at::Tensor& z0,
                                 const std::vector<at::Tensor>& coeffs, const at::Tensor& weight,
                                 const at::Tensor& g_out, const at::Tensor& g_v, const at::Tensor& g_i,
                                 const at::Tensor& g_z, const at::Tensor& g_r, const at::Tensor& g_last,
                                 int64_t batch, const std::vector<int64_t>& flags, double slope,
                                 const std::vector<int64_t>& needed, bool want_w, bool want_b,
                                 double sparse_below) {
  const Config c = make_config(flags, slope);
  const int64_t steps = ins.size(0), M = ins.size(1), N = weight.size(0);
  auto opts = ins.options();
  auto g_x = pool().get({steps, M}, opts);
  auto gv = g_v.clone(), gi = c.has_current ? g_i.clone() : at::empty({0}, opts);
  auto gz = c.next_timing ? g_z.clone() : at::empty({0}, opts);
  at::Tensor g_zt = pool().get({batch, N}, opts);
  std::vector<at::Tensor> result{g_x, gv, gi, gz, {}, {}};  // dL/dW and dL/db after the scan
  for (int j = 0; j < N_COEF; ++j) result.push_back(needed[j] ? at::zeros({M}, opts) : at::empty({0}, opts));
  const at::Tensor w = weight.contiguous(), g_r_end = g_r.contiguous(), g_last_all = g_last.contiguous();
  const Coefficients coefficients(coeffs);
  AT_DISPATCH_FLOATING_TYPES(ins.scalar_type(), "snnir_recurrent_backward", [&] {
    const scalar_t* k[N_COEF];
    int64_t period[N_COEF];
    coefficients.pointers(k, period);
    scalar_t* acc[N_COEF];
    for (int j = 0; j < N_COEF; ++j) acc[j] = needed[j] ? result[6 + j].data_ptr<scalar_t>() : nullptr;
    scalar_t *pgv = gv.data_ptr<scalar_t>(), *pgi = mutable_or_null<scalar_t>(gi), *pgz = mutable_or_null<scalar_t>(gz);
    const scalar_t *ps = spikes.data_ptr<scalar_t>(), *pw = w.data_ptr<scalar_t>();
    const scalar_t *pgl = ptr_or_null<scalar_t>(g_last_all), *g_r_t = g_r_end.data_ptr<scalar_t>();
    const PackedB packed(pw, batch, N, N, N);
    for (int64_t t = steps - 1; t >= 0; --t) {
      gradient_at_spikes<scalar_t>(g_zt.data_ptr<scalar_t>(), g_out.data_ptr<scalar_t>() + t * M,
                                   t == steps - 1 ? pgl : nullptr, g_r_t, pw, packed, batch, N);
      const scalar_t* z_before = !c.next_timing ? nullptr : t ? ps + (t - 1) * M : z0.data_ptr<scalar_t>();
      scalar_t* g_in = g_x.data_ptr<scalar_t>() + t * M;
      backward_kernel<scalar_t>(c, x.data_ptr<scalar_t>() + t * M, vs.data_ptr<scalar_t>() + t * M,
                                c.has_current ? is.data_ptr<scalar_t>() + t * M : nullptr, z_before, k,
                                period, g_zt.data_ptr<scalar_t>(), M, false, pgv, pgi, pgz, 1, false, M,
                                g_in, pgv, pgi, pgz, acc, ins.data_ptr<scalar_t>() + t * M);
      g_r_t = g_x.data_ptr<scalar_t>() + t * M;
    }
  });
  auto grads = weight_grads(g_x, spikes, batch, N, want_w, want_b, sparse_below);
  result[4] = grads[0];
  result[5] = grads[1];
  return result;
}

}  // namespace
#undef CT

// The entry points run without the GIL, as torch's own operators do: other Python threads run
// meanwhile, and a worker thread that needs it (to copy a Python object) cannot deadlock.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  const pybind11::call_guard<pybind11::gil_scoped_release> no_gil;
  m.def("fused", &fused, "whether the fused loops run (and training keeps u only)");
  m.def("forward", &forward, no_gil, "recurrent neuron component, forward");
  m.def("sparse_agrees", &sparse_agrees, no_gil, "whether the forward's sparse sum gives the GEMM's bits for this shape");
  m.def("fired_fraction", [](const at::Tensor& weight, int64_t batch) { return Projection::last_fired(weight.data_ptr(), batch, -1.0); },
        "the fraction of spikes the last call with this weight and batch fired (-1: none known)");
  m.def("backward", &backward, no_gil, "recurrent neuron component, backward");
  m.def("backward_fused", &backward_fused, no_gil, "recurrent neuron component, the fused loops' backward");
}
