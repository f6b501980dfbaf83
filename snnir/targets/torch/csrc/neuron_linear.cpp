// Fused CPU kernel: a neuron whose spikes feed a Linear layer, forward and backward.
//
// The specification is snnir/targets/torch/neuron_linear.py (and its update loop in
// neuron_update.py): the same operations in the same order, so outputs and final states are
// the same bits (built with -ffp-contract=off: nothing is fused into a multiply-add). Only the
// configuration neuron_linear.applies admits: single spikes, no synaptic current, a subtract
// reset without gradient through the spike (or none), one value per coefficient (an absent
// decay or gain is 1: x * 1 is exact). Per step, the update runs over the B x N elements in
// parallel, then the step's spikes, still in cache, go through the layer's GEMM; or, for a layer
// of few outputs whose GEMM's order of summation a probe found for the shape and thread count
// (split_plan), each batch row's update is followed by that row's sum at its spikes in that
// order: the GEMM's bits without its call (tutorial MLP, 25 steps: 2.3 -> 0.9 ms a forward).
//
// Layout: x is [T, B, N] (or [B, N] when held static), states [B, N], weight [O, N].
#include <torch/extension.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>
#include <type_traits>
#include <vector>

#include "blas.h"
#include "spikes.h"
#include "surrogates.h"

namespace {

constexpr int64_t kGrain = 16384;  // elements per parallel task

struct Step {
  bool next, subtract, inclusive;  // a delayed reset; subtract (else none); >= compare
  double a, gain, thr;
};

// One step over elements [b, e): the state read from vi (and zi with a delayed reset, NEXT)
// and written to v (z): the caller's initial state at the first step, in place after it (so
// those pointers may alias, index for index). The step's spikes go to zt and bits (when
// given), u to ut with KEEP. SUB: a subtract reset. With NEXT the spikes are the state z,
// and zt is z (aliasing it, and zi after the first step, index for index).
template <typename T, bool NEXT, bool SUB, bool KEEP>
void update(const Step& p, const T* __restrict__ xt, const T* vi, const T* zi, T* v, T* z, T* zt,
            bool* bits, T* __restrict__ ut, int64_t b, int64_t e) {
  const T a = static_cast<T>(p.a), gain = static_cast<T>(p.gain), thr = static_cast<T>(p.thr);
  const T incl = p.inclusive ? T(1) : T(0);
#pragma omp simd
  for (int64_t i = b; i < e; ++i) {
    const T in = vi[i] * a + gain * xt[i];
    const T u = NEXT && SUB ? in - zi[i] * thr : in;  // the delayed reset after the input
    const T s = (u > thr ? T(1) : T(0)) + (u == thr ? incl : T(0));
    zt[i] = s;
    if (NEXT) {
      v[i] = u;
      z[i] = s;
    } else {
      v[i] = SUB ? u - s * thr : u;
    }
    if (KEEP) ut[i] = u;
  }
  if (bits)
    for (int64_t i = b; i < e; ++i) bits[i] = zt[i] != T(0);
}

// How the BLAS sums y = z W^T + b for one step's [B, N] spikes and an [O, N] weight of few
// outputs (found by probing MKL with two threads, 2026-12-05: it splits n into two halves, one
// per thread, and each half into blocks, 250 + 250 of a half of 500, 196 + 196 of 392, 384 + 384
// + 256 of 1024; each block is summed from 0 in ascending n; the first half's blocks add onto
// the bias one after another, the second half's sum apart and their total adds last): block j
// covers [bounds[j], bounds[j + 1]); blocks before onto_bias add onto the bias, the others sum
// apart. One block onto the bias is the plain sequential sum.
struct SplitSum {
  std::vector<int64_t> bounds;
  int64_t onto_bias;
};

constexpr int kMaxBlocks = 16;

// The candidate plans for N: one sequential sum; all of N in blocks of 384 or 256 and the rest,
// each onto the bias in turn (MKL's order for [128, 784] x [784, 1000], two threads: blocks 384 +
// 384 + 16); and two halves (the larger first or second), each cut alike: whole, into two even
// blocks, or into blocks of 384 or 256 and the rest.
std::vector<SplitSum> split_candidates(int64_t N) {
  std::vector<SplitSum> found{{{0, N}, 1}};
  for (const int64_t block : {384, 256}) {  // all of N in blocks onto the bias (MKL, wide layers)
    SplitSum plan{{0}, 0};
    for (int64_t at = block; at < N; at += block) plan.bounds.push_back(at);
    plan.bounds.push_back(N);
    plan.onto_bias = static_cast<int64_t>(plan.bounds.size()) - 1;
    if (plan.onto_bias > 1 && plan.onto_bias <= kMaxBlocks) found.push_back(std::move(plan));
  }
  auto cut = [](int64_t from, int64_t size, int rule, std::vector<int64_t>& bounds) {
    if (rule == 0) {
      bounds.push_back(from + size);
    } else if (rule == 1) {
      bounds.push_back(from + size - size / 2);
      bounds.push_back(from + size);
    } else {
      const int64_t block = rule == 2 ? 384 : 256;
      for (int64_t at = block; at < size; at += block) bounds.push_back(from + at);
      bounds.push_back(from + size);
    }
  };
  for (const int64_t first : {N - N / 2, N / 2}) {
    for (int rule = 0; rule < 4; ++rule) {
      SplitSum plan{{0}, 0};
      cut(0, first, rule, plan.bounds);
      plan.onto_bias = static_cast<int64_t>(plan.bounds.size()) - 1;
      cut(first, N - first, rule, plan.bounds);
      const bool empty = std::adjacent_find(plan.bounds.begin(), plan.bounds.end()) != plan.bounds.end();
      if (!empty && plan.bounds.size() - 1 <= kMaxBlocks) found.push_back(std::move(plan));
    }
    if (N % 2 == 0) break;
  }
  return found;
}

// W^T [N, O] with each row padded by zeros to a whole number of split_sum_row's output tiles.
constexpr int64_t kTileBytes = 64;  // two 32-byte vectors of outputs per tile

at::Tensor padded_rows(const at::Tensor& weight) {
  const int64_t O = weight.size(0), lanes = kTileBytes / weight.element_size();
  at::Tensor rows = at::zeros({weight.size(1), (O + lanes - 1) / lanes * lanes}, weight.options());
  rows.narrow(1, 0, O).copy_(weight.t());
  return rows;
}

// y (O values) = z W^T + b for one row of spikes z (N values, each 0 or 1) as the plan sums it,
// from the rows of w_t (padded_rows: ld values apart) at the spikes: a product by 0 adds
// nothing, by 1 adds the weight, so each block's sum in ascending n is the BLAS's where the plan
// is its order. Four blocks' sums run side by side (independent chains: one add's latency no
// longer bounds them), a tile of outputs at a time in registers. fired: N scratch indices.
template <typename T>
void split_sum_row(const SplitSum& plan, const T* __restrict__ z, const T* __restrict__ w_t, int64_t ld, int64_t O,
                   const T* bias, T* __restrict__ y, int64_t* fired) {
  typedef T V __attribute__((vector_size(32)));
  constexpr int64_t kLanes = 32 / sizeof(T), kVecs = kTileBytes / 32, kTile = kLanes * kVecs;
  constexpr int kSide = 4;  // chains side by side
  const int blocks = static_cast<int>(plan.bounds.size()) - 1;
  int64_t first[kMaxBlocks + kSide] = {}, count[kMaxBlocks + kSide] = {};
  for (int j = 0, total = 0; j < blocks; ++j) {
    first[j] = total;
    count[j] = list_fired(z, plan.bounds[j], plan.bounds[j + 1], fired + total);
    total += count[j];
  }
  for (int64_t o0 = 0; o0 < O; o0 += kTile) {
    T part[kMaxBlocks + kSide][kTile];
    for (int g = 0; g < blocks; g += kSide) {
      V acc[kSide][kVecs] = {};
      auto add = [&](int q, int64_t f) {
        const T* w = w_t + fired[first[g + q] + f] * ld + o0;
        for (int64_t v = 0; v < kVecs; ++v) {
          V lanes;
          std::memcpy(&lanes, w + v * kLanes, sizeof(V));
          acc[q][v] += lanes;
        }
      };
      const int64_t common = std::min({count[g], count[g + 1], count[g + 2], count[g + 3]});
      for (int64_t f = 0; f < common; ++f)
        for (int q = 0; q < kSide; ++q) add(q, f);
      for (int q = 0; q < kSide; ++q)
        for (int64_t f = common; f < count[g + q]; ++f) add(q, f);
      std::memcpy(part[g], acc, sizeof(acc));
    }
    for (int64_t o = 0; o < std::min(kTile, O - o0); ++o) {
      T sum = bias ? bias[o0 + o] : T(0), rest = T(0);
      for (int j = 0; j < blocks; ++j) {
        if (j < plan.onto_bias) sum = sum + part[j][o];
        else rest = j == plan.onto_bias ? part[j][o] : rest + part[j][o];
      }
      y[o0 + o] = plan.onto_bias < blocks ? sum + rest : sum;
    }
  }
}

// The plan in which F.linear sums [B, N] spikes times a weight like `weight` (with `bias` or
// none) in this dtype and thread count, or null where no candidate (split_candidates) gives its
// bits: each runs against F.linear on random spikes (densities 0.05, 0.3, 0.7) with the call's
// weight and bias and with random ones, every value compared. Kept per shape; a layer of more
// than max_outputs outputs gets none (a neuron's own loop: kSplitMaxOutputs, the GEMM as fast
// beyond; spike_product: kWideMaxOutputs).
constexpr int64_t kSplitMaxOutputs = 64;

const SplitSum* split_plan(int64_t B, const at::Tensor& weight, const at::Tensor& bias,
                           int64_t max_outputs = kSplitMaxOutputs) {
  const int64_t O = weight.size(0), N = weight.size(1);
  if (O > max_outputs || B < 1 || N < 1) return nullptr;
  const auto key = std::make_tuple(B, N, O, static_cast<int>(weight.scalar_type()), bias.numel() > 0,
                                   at::get_num_threads());
  static std::mutex mutex;
  static std::map<decltype(key), std::unique_ptr<SplitSum>> known;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const auto found = known.find(key);
    if (found != known.end()) return found->second.get();
  }
  const auto options = weight.options();
  const auto gen = at::make_generator<at::CPUGeneratorImpl>(20261205);
  // per trial: the spikes, the weight as split_sum_row reads it (padded_rows), the bias, F.linear's result
  std::vector<std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>> trials;
  for (int trial = 0; trial < 6; ++trial) {
    const bool own = trial < 3;
    const at::Tensor w = own ? weight.contiguous() : at::randn({O, N}, gen, options);
    const at::Tensor b = !bias.numel() ? bias : own ? bias.contiguous() : at::randn({O}, gen, options);
    const double density = trial % 3 == 0 ? 0.05 : trial % 3 == 1 ? 0.3 : 0.7;
    const at::Tensor z = at::bernoulli(at::full({B, N}, density, options), gen);
    trials.emplace_back(z, padded_rows(w), b, at::linear(z, w, b.numel() ? std::optional<at::Tensor>(b) : std::nullopt));
  }
  std::vector<int64_t> fired(N);
  std::unique_ptr<SplitSum> chosen;
  for (auto& plan : split_candidates(N)) {
    bool agrees = true;
    for (const auto& [z, w_t, b, want] : trials) {
      at::Tensor got = at::empty({B, O}, options);
      AT_DISPATCH_FLOATING_TYPES(weight.scalar_type(), "snnir_neuron_linear_split_plan", [&] {
        for (int64_t r = 0; r < B; ++r)
          split_sum_row<scalar_t>(plan, z.data_ptr<scalar_t>() + r * N, w_t.data_ptr<scalar_t>(), w_t.size(1), O,
                                  b.numel() ? b.data_ptr<scalar_t>() : nullptr, got.data_ptr<scalar_t>() + r * O,
                                  fired.data());
      });
      if (std::memcmp(want.data_ptr(), got.data_ptr(), got.nbytes()) != 0) {
        agrees = false;
        break;
      }
    }
    if (agrees) {
      chosen = std::make_unique<SplitSum>(std::move(plan));
      break;
    }
  }
  std::lock_guard<std::mutex> lock(mutex);
  return known.emplace(key, std::move(chosen)).first->second.get();  // a plan handed out is never replaced
}

// The rows [0, rows) of y = z W^T + b (z each 0 or 1; y [rows, O]) for the output tiles [t0,
// t1): each block of `plan` summed from 0 in ascending n over the rows of w_rows (spike_rows: W^T
// padded with zeros to whole tiles, ld values apart) at the spikes, eight vectors of outputs in
// registers (eight independent chains; each output's own chain in ascending n), then the blocks
// combined as split_sum_row combines them: the same bits. fired/count: per row, its fired
// positions listed block by block (fired[r * N + ...]) and each block's count (count[r *
// kMaxBlocks + j]). Always inlined into the AVX-512 caller, whose target then compiles it.
template <typename T, int kBytes>
__attribute__((always_inline)) inline void wide_split_sum(const SplitSum& plan, const int64_t* fired,
                                                          const int64_t* count, int64_t rows, int64_t N,
                                                          const T* __restrict__ w_rows, int64_t ld, int64_t O,
                                                          const T* bias, int64_t t0, int64_t t1, T* __restrict__ y) {
  typedef T V __attribute__((vector_size(kBytes)));
  constexpr int64_t kLanes = kBytes / sizeof(T), kVecs = 8, kTile = kVecs * kLanes;
  const int blocks = static_cast<int>(plan.bounds.size()) - 1;
  for (int64_t tile = t0; tile < t1; ++tile) {  // a tile's columns of W^T stay in cache over the rows
    const int64_t o0 = tile * kTile, width = std::min(kTile, O - o0);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t* c_row = count + r * kMaxBlocks;
      T* y_row = y + r * O;
      V sum[kVecs], rest[kVecs] = {};
      if (bias && width == kTile) {
        std::memcpy(sum, bias + o0, sizeof(sum));
      } else {
        T first[kTile] = {};
        for (int64_t o = 0; o < width && bias; ++o) first[o] = bias[o0 + o];
        std::memcpy(sum, first, sizeof(sum));
      }
      const int64_t* f = fired + r * N;
      for (int j = 0; j < blocks; ++j) {
        V acc[kVecs] = {};
        for (int64_t k = 0; k < c_row[j]; ++k) {
          V w[kVecs];
          std::memcpy(w, w_rows + f[k] * ld + o0, sizeof(w));
          for (int64_t v = 0; v < kVecs; ++v) acc[v] += w[v];
        }
        f += c_row[j];
        for (int64_t v = 0; v < kVecs; ++v) {
          if (j < plan.onto_bias) sum[v] = sum[v] + acc[v];
          else rest[v] = j == plan.onto_bias ? acc[v] : rest[v] + acc[v];
        }
      }
      if (plan.onto_bias < blocks)
        for (int64_t v = 0; v < kVecs; ++v) sum[v] = sum[v] + rest[v];
      if (width == kTile) {
        std::memcpy(y_row + o0, sum, sizeof(sum));
      } else {
        T last[kTile];
        std::memcpy(last, sum, sizeof(sum));
        std::copy(last, last + width, y_row + o0);
      }
    }
  }
}

//: outputs per tile of wide_split_sum in 64-byte vectors of float (spike_rows pads W^T to it)
constexpr int64_t kWideTileBytes = 8 * 64;

#if defined(__GNUC__) && defined(__x86_64__)
__attribute__((target("avx512f"))) void wide_split_sum_avx512(const SplitSum& plan, const int64_t* fired,
                                                               const int64_t* count, int64_t rows, int64_t N,
                                                               const float* w_rows, int64_t ld, int64_t O,
                                                               const float* bias, int64_t t0, int64_t t1, float* y) {
  wide_split_sum<float, 64>(plan, fired, count, rows, N, w_rows, ld, O, bias, t0, t1, y);
}
#endif

//: the most outputs spike_product sums (its probe runs split_sum_row over them)
constexpr int64_t kWideMaxOutputs = 4096;

//: one cache line more per row of spike_rows: rows a multiple of 4 KiB apart fall in the same L1
//: sets, and the ~100 rows a row of spikes reads thrashed them (the tutorial MLP's input layer,
//: 1024 columns: 16.7 ms for 25 steps, the GEMMs 19.9)
constexpr int64_t kSkewBytes = 64;

// W^T [N, O] padded with zeros to whole tiles of wide_split_sum (kWideTileBytes) and a line, as
// spike_product reads it; empty where a weight is not finite (its product by 0 is NaN in the
// GEMM, nothing in a sum at the spikes).
at::Tensor spike_rows(const at::Tensor& weight) {
  if (weight.dim() != 2 || !all_finite(weight)) return at::empty({0}, weight.options());
  const int64_t O = weight.size(0), lanes = kWideTileBytes / weight.element_size();
  at::Tensor rows = at::zeros({weight.size(1), (O + lanes - 1) / lanes * lanes + kSkewBytes / weight.element_size()},
                              weight.options());
  rows.narrow(1, 0, O).copy_(weight.t());
  return rows;
}

// Whether the first 8 rows of z [R, N] are all 0 or 1 with fewer than sparse_below of them 1:
// the cheap first look of spike_product (an analog or dense input's call costs 2 us, where 64
// rows counted took 31), made before anything is built for the sum.
bool sparse_sample(const at::Tensor& z, double sparse_below) {
  if (z.dim() != 2 || !z.is_contiguous() || !z.numel()) return false;
  const int64_t sampled = std::min<int64_t>(z.size(0), 8) * z.size(1);
  int64_t ones = 0, others = 0;
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "snnir_spike_product_sample", [&] {
    const scalar_t* p = z.data_ptr<scalar_t>();
    for (int64_t k = 0; k < sampled; ++k) {
      ones += p[k] == scalar_t(1);
      others += (p[k] != scalar_t(0)) & (p[k] != scalar_t(1));
    }
  });
  return !others && static_cast<double>(ones) < sparse_below * static_cast<double>(sampled);
}

// y [R, O] = z W^T (+ bias) for rows z [R, N] whose every value is 0 or 1, each row with the bits
// F.linear gives a [batch, N] step of them (a network fed rate-coded spikes: the tutorial MLP's
// per-step input layer), as the sum at the spikes in the order split_plan found, from w_rows =
// spike_rows(weight), once sparse_sample said the sum pays (the caller asks it first); an empty
// tensor where the bits cannot be had (a value other than 0 or 1, a bias not finite, no plan):
// the caller's GEMM runs. The output tiles are split between the
// threads (each keeps its columns of W^T in cache); the rows go 64 at a time, their fired
// positions listed once per thread (and each listed value checked to be 1).
at::Tensor spike_product(const at::Tensor& z_in, const at::Tensor& weight, const at::Tensor& w_rows,
                         const at::Tensor& bias, int64_t batch) {
  const at::Tensor none = at::empty({0}, weight.options());
  const at::Tensor z = z_in.contiguous();
  TORCH_CHECK(z.dim() == 2 && weight.dim() == 2 && z.size(1) == weight.size(1) && z.scalar_type() == weight.scalar_type()
                  && w_rows.scalar_type() == weight.scalar_type(),
              "spike_product: shapes or dtypes disagree");
  const int64_t R = z.size(0), N = z.size(1), O = weight.size(0);
  const int64_t lanes = kWideTileBytes / weight.element_size(), tiles = (O + lanes - 1) / lanes;
  if (!R || !O || w_rows.dim() != 2 || w_rows.size(0) != N
      || w_rows.size(1) != tiles * lanes + kSkewBytes / weight.element_size())
    return none;
  const at::Tensor bias_row = bias.reshape({-1}).contiguous();
  if ((bias_row.numel() && bias_row.numel() != O) || !all_finite(bias_row)) return none;
  const SplitSum* plan = split_plan(batch, weight, bias_row, kWideMaxOutputs);
  if (!plan) return none;
  at::Tensor y = at::empty({R, O}, weight.options());
  const int blocks = static_cast<int>(plan->bounds.size()) - 1;
  constexpr int64_t kRows = 64;
  std::atomic<bool> binary{true};  // every value 0 or 1 (checked as the rows' spikes are listed)
#if defined(__GNUC__) && defined(__x86_64__)
  const bool wide = z.scalar_type() == at::kFloat && avx512_sums();
#endif
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), tiles));
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "snnir_spike_product", [&] {
    const scalar_t *pz = z.data_ptr<scalar_t>(), *pw = w_rows.data_ptr<scalar_t>();
    const scalar_t* pb = bias_row.numel() ? bias_row.data_ptr<scalar_t>() : nullptr;
    scalar_t* py = y.data_ptr<scalar_t>();
    at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
      for (int64_t k = begin; k < end; ++k) {
        const int64_t t0 = tiles * k / threads, t1 = tiles * (k + 1) / threads;
        std::vector<int64_t> fired(kRows * N + N), count(kRows * kMaxBlocks);
        for (int64_t r0 = 0; r0 < R; r0 += kRows) {
          const int64_t r1 = std::min(R, r0 + kRows);
          for (int64_t r = r0; r < r1; ++r) {
            int64_t total = 0;
            for (int j = 0; j < blocks; ++j) {
              int64_t& n = count[(r - r0) * kMaxBlocks + j];
              n = list_fired(pz + r * N, plan->bounds[j], plan->bounds[j + 1], fired.data() + (r - r0) * N + total);
              total += n;
            }
            int64_t other = 0;  // listed values other than 1 (the sum would take them as 1)
            for (int64_t q = 0; q < total; ++q) other += pz[r * N + fired[(r - r0) * N + q]] != scalar_t(1);
            if (other) binary = false;
          }
          if (!binary) return;
          scalar_t* y_rows = py + r0 * O;
#if defined(__GNUC__) && defined(__x86_64__)
          if (wide) {  // (float only: the branch is compiled for double too, never taken)
            wide_split_sum_avx512(*plan, fired.data(), count.data(), r1 - r0, N, reinterpret_cast<const float*>(pw),
                                  w_rows.size(1), O, reinterpret_cast<const float*>(pb), t0, t1,
                                  reinterpret_cast<float*>(y_rows));
            continue;
          }
#endif
          // 32-byte vectors: a tile is half of spike_rows' padding, so twice as many tiles
          wide_split_sum<scalar_t, 32>(*plan, fired.data(), count.data(), r1 - r0, N, pw, w_rows.size(1), O, pb,
                                       2 * t0, std::min(2 * t1, (O + lanes / 2 - 1) / (lanes / 2)), y_rows);
        }
      }
    });
  });
  return binary ? y : none;
}

// y[t] = z_t W^T (+ bias), the GEMM F.linear makes for one step.
void layer_step(at::Tensor y_t, const at::Tensor& z_t, const at::Tensor& weight, const at::Tensor& bias) {
  if (bias.numel())
    at::addmm_out(y_t, bias, z_t, weight.t());
  else
    at::mm_out(y_t, z_t, weight.t());
}

// Per-thread buffer for the backward's recomputed membranes, kept between calls: the same
// pages are reused every training step instead of being faulted in afresh.
at::Tensor workspace(int64_t n, const at::Tensor& like) {
  static thread_local at::Tensor buffer;
  if (!buffer.defined() || buffer.numel() < n || buffer.scalar_type() != like.scalar_type())
    buffer = at::empty({n}, like.options());
  return buffer.narrow(0, 0, n);
}

// The fused update loop of a neuron's configuration: [delayed reset][subtract reset][keep u].
template <typename T>
using Update = void (*)(const Step&, const T*, const T*, const T*, T*, T*, T*, bool*, T*, int64_t, int64_t);

template <typename T>
Update<T> update_of(const Step& p, bool keep) {
  static constexpr Update<T> kernels[2][2][2] = {
      {{update<T, false, false, false>, update<T, false, false, true>},
       {update<T, false, true, false>, update<T, false, true, true>}},
      {{update<T, true, false, false>, update<T, true, false, true>},
       {update<T, true, true, false>, update<T, true, true, true>}}};
  return kernels[p.next][p.subtract][keep];
}

// A neuron's [B, N] state through consecutive steps: read from vi (zi) at the first step, the
// caller's initial state (only read), then in place in v (z). The step's spikes go to `spikes`,
// which is z itself with a delayed reset.
template <typename T>
struct NeuronSteps {
  Step p;
  Update<T> update;
  int64_t B, N;
  const T *vi, *zi;
  T *v, *z;
  at::Tensor spikes;

  NeuronSteps(const Step& step, bool keep, const at::Tensor& v0, const at::Tensor& z0, at::Tensor& v_out,
              at::Tensor& z_out)
      : p(step), update(update_of<T>(step, keep)), B(v_out.size(0)), N(v_out.size(1)), vi(v0.data_ptr<T>()),
        zi(z_out.numel() ? z0.data_ptr<T>() : nullptr), v(v_out.data_ptr<T>()),
        z(z_out.numel() ? z_out.data_ptr<T>() : nullptr),
        spikes(step.next ? z_out : at::empty({B, N}, v_out.options())) {}
};

// The Linear layer a neuron's spikes feed: y_t = z_t W^T (+ b), F.linear's bits for the step:
// each batch row's sum at its spikes in the BLAS's order where split_plan found it for the
// shape (w_t: padded_rows), else the step's GEMM.
struct LayerAfter {
  at::Tensor weight, bias, w_t;
  const SplitSum* plan;
};

LayerAfter layer_after(int64_t B, const at::Tensor& weight, const at::Tensor& bias, int64_t steps) {
  // the sum at the spikes where it gives F.linear's bits (spikes.h: finite weights only)
  const at::Tensor bias_row = bias.reshape({-1}).contiguous();
  const SplitSum* plan = steps && weight.size(0) && weight.size(0) <= kSplitMaxOutputs
                             && (!bias_row.numel() || bias_row.numel() == weight.size(0))
                             && all_finite(weight) && all_finite(bias_row)
                             ? split_plan(B, weight, bias_row) : nullptr;
  return {weight, plan ? bias_row : bias, plan ? padded_rows(weight) : at::Tensor(), plan};
}

// One step of neuron n from input xt (its spikes as bools to bits, u to ut, where given), then
// its layer's product of the spikes into y_t (layer null: none): with a sum at the spikes, each
// batch row's update is followed by that row's sum while the spikes are in cache.
template <typename T>
void neuron_step(NeuronSteps<T>& n, const T* xt, bool* bits, T* ut, const LayerAfter* layer, at::Tensor y_t) {
  T* zt = n.spikes.template data_ptr<T>();
  if (layer && layer->plan) {
    const int64_t N = n.N, O = layer->weight.size(0), ld = layer->w_t.size(1);
    const T *wt = layer->w_t.template data_ptr<T>(), *pb = layer->bias.numel() ? layer->bias.template data_ptr<T>() : nullptr;
    T* yt = y_t.template data_ptr<T>();
    at::parallel_for(0, n.B, std::max<int64_t>(1, kGrain / N), [&](int64_t r0, int64_t r1) {
      std::vector<int64_t> fired(N);
      for (int64_t r = r0; r < r1; ++r) {
        n.update(n.p, xt, n.vi, n.zi, n.v, n.z, zt, bits, ut, r * N, (r + 1) * N);
        split_sum_row<T>(*layer->plan, zt + r * N, wt, ld, O, pb, yt + r * O, fired.data());
      }
    });
  } else {
    at::parallel_for(0, n.B * n.N, kGrain,
                     [&](int64_t b, int64_t e) { n.update(n.p, xt, n.vi, n.zi, n.v, n.z, zt, bits, ut, b, e); });
    if (layer) layer_step(y_t, n.spikes, layer->weight, layer->bias);
  }
  n.vi = n.v;
  n.zi = n.z;
}

// The forward's loop from the initial state (v0, z0) into v (and z): v0 and z0 are only read.
// y: the layer's outputs (empty: no layer, the backward's recomputation).
template <typename T>
void run(const Step& p, const at::Tensor& x, bool is_static, int64_t steps, const at::Tensor& v0,
         const at::Tensor& z0, at::Tensor v, at::Tensor z, const LayerAfter& layer, at::Tensor y, at::Tensor bits,
         at::Tensor us) {
  NeuronSteps<T> n(p, us.numel() > 0, v0, z0, v, z);
  const int64_t M = n.B * n.N;
  const T* xp = x.data_ptr<T>();
  for (int64_t t = 0; t < steps; ++t) {
    neuron_step<T>(n, is_static ? xp : xp + t * M, bits.numel() ? bits.data_ptr<bool>() + t * M : nullptr,
                   us.numel() ? us.data_ptr<T>() + t * M : nullptr, y.numel() ? &layer : nullptr,
                   y.numel() ? y[t] : y);
  }
}

// Returns y [T, B, O], v_T, z_T, the spikes as bools (want_bits) and the pre-reset
// membranes (keep_u): what the backward needs.
std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& v0, const at::Tensor& z0,
                                const at::Tensor& weight, const at::Tensor& bias, int64_t steps, bool is_static,
                                bool next, bool subtract, bool inclusive, double a, double gain, double thr,
                                bool want_bits, bool keep_u) {
  const Step p{next, subtract, inclusive, a, gain, thr};
  const int64_t B = v0.size(0), N = v0.size(1);
  const at::Tensor v0c = v0.contiguous(), z0c = next ? z0.contiguous() : z0;
  auto v = at::empty({B, N}, v0.options()), z = next ? at::empty({B, N}, v0.options()) : at::empty({0}, v0.options());
  auto y = at::empty({steps, B, weight.size(0)}, v0.options());
  auto bits = want_bits ? at::empty({steps, B, N}, v0.options().dtype(at::kBool)) : at::empty({0}, v0.options());
  auto us = keep_u ? at::empty({steps, B, N}, v0.options()) : at::empty({0}, v0.options());
  const LayerAfter layer = layer_after(B, weight, bias, steps);
  AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "snnir_neuron_linear_forward", [&] {
    run<scalar_t>(p, x.contiguous(), is_static, steps, v0c, z0c, v, z, layer, y, bits, us);
  });
  if (!steps) {  // no step ran: the final state is the initial one
    v.copy_(v0c);
    if (next) z.copy_(z0c);
  }
  return {y, v, next ? z : z0, bits, us};  // z0 unused without a delayed reset: handed back as given
}

// Inference through a chain of neurons, each feeding the next through a Linear layer, one step
// at a time in one call (snnTorch's order, its bits): per step, neuron 0 from its input, its
// layer's product of its spikes into neuron 1's input, and so on. Neuron i starts from v0s[i]
// (and z0s[i] with a delayed reset; ignored otherwise) with the update of Step (params[6 i],
// ..., params[6 i + 5]): next, subtract, inclusive, a, gain, thr; layer i (weights[i],
// biases[i], empty: none) follows neuron i, for every neuron but maybe the last. x is neuron
// 0's input [T, B, N0] ([B, N0] held: is_static), or, with in_weight, the input [T, B, K] of a
// first layer [N0, K], applied to `block` steps' rows at once (the caller found those rows
// rounded as each step's own product: AffineModule.rows_alike; also the rest of the steps):
// a sum at the spikes where in_rows (spike_rows) is given and spike_product gives the bits,
// else F.linear's GEMM. Returns y [T, B, O] (the last layer's outputs, or the last neuron's
// spikes), then each neuron's final v and z (z0s[i] as given without a delayed reset): v0s and
// z0s themselves, overwritten, with in_place (the caller's own), else new tensors. Only one
// step's values exist at a time, besides a block of the first layer's outputs.
std::vector<at::Tensor> chain_forward(const at::Tensor& x_in, bool is_static, int64_t steps,
                                      const at::Tensor& in_weight, const at::Tensor& in_bias,
                                      const at::Tensor& in_rows, int64_t block, const std::vector<at::Tensor>& v0s,
                                      const std::vector<at::Tensor>& z0s, const std::vector<double>& params,
                                      const std::vector<at::Tensor>& weights, const std::vector<at::Tensor>& biases,
                                      bool in_place) {
  const size_t count = v0s.size(), layers_count = weights.size();
  const bool layered = in_weight.numel() > 0;
  TORCH_CHECK(count > 0 && z0s.size() == count && params.size() == 6 * count && biases.size() == layers_count
                  && (layers_count == count || layers_count + 1 == count) && block > 0 && !(layered && is_static),
              "chain_forward: the chain's parts disagree");
  const at::Tensor x = x_in.contiguous();
  const auto options = v0s[0].options();
  TORCH_CHECK(v0s[0].dim() == 2, "chain_forward: states are [B, N]");
  const int64_t B = v0s[0].size(0), N0 = v0s[0].size(1);
  auto agrees = [&](const at::Tensor& t, int64_t rows, int64_t cols) {
    return t.dim() == 2 && t.size(0) == rows && t.size(1) == cols && t.scalar_type() == x.scalar_type();
  };
  TORCH_CHECK(layered ? x.dim() == 3 && x.size(0) >= steps && x.size(1) == B && agrees(in_weight, N0, x.size(2))
                            && (!in_bias.numel() || in_bias.numel() == N0)
                      : x.dim() == (is_static ? 2 : 3) && (is_static || x.size(0) >= steps)
                            && x.size(x.dim() - 2) == B && x.size(x.dim() - 1) == N0,
              "chain_forward: the input's shape disagrees with the first neuron's");
  std::vector<at::Tensor> v0c, z0c, v, z, mids;
  std::vector<LayerAfter> layers;
  std::vector<Step> ps;
  for (size_t i = 0; i < count; ++i) {
    const double* q = params.data() + 6 * i;
    ps.push_back(Step{q[0] != 0, q[1] != 0, q[2] != 0, q[3], q[4], q[5]});
    const int64_t N = v0s[i].size(1);
    const int64_t O = i < layers_count ? weights[i].size(0) : N;
    TORCH_CHECK(agrees(v0s[i], B, N) && (!ps[i].next || agrees(z0s[i], B, N))
                    && (i >= layers_count || (agrees(weights[i], O, N) && (!biases[i].numel() || biases[i].numel() == O)
                                              && (i + 1 == count || v0s[i + 1].size(1) == O))),
                "chain_forward: neuron ", i, "'s state or layer disagrees with the chain's shapes");
    v0c.push_back(v0s[i].contiguous());
    z0c.push_back(ps[i].next ? z0s[i].contiguous() : z0s[i]);
    v.push_back(in_place ? v0c[i] : at::empty({B, N}, options));
    z.push_back(!ps[i].next ? at::empty({0}, options) : in_place ? z0c[i] : at::empty({B, N}, options));
    if (i < layers_count) layers.push_back(layer_after(B, weights[i], biases[i], steps));
    if (i + 1 < count) mids.push_back(at::empty({B, v0s[i + 1].size(1)}, options));
  }
  const int64_t O = layers_count == count ? weights.back().size(0) : v0s.back().size(1);
  at::Tensor y = at::empty({steps, B, O}, options);
  const int64_t rows_per_block = std::min(block, std::max<int64_t>(steps, 1)) * B;
  at::Tensor first = layered ? at::empty({rows_per_block, N0}, options) : at::empty({0}, options);
  AT_DISPATCH_FLOATING_TYPES(options.dtype().toScalarType(), "snnir_chain_forward", [&] {
    using T = scalar_t;
    std::vector<NeuronSteps<T>> neurons;
    for (size_t i = 0; i < count; ++i) neurons.emplace_back(ps[i], false, v0c[i], z0c[i], v[i], z[i]);
    const T* xp = x.data_ptr<T>();
    for (int64_t t0 = 0; t0 < steps; t0 += block) {
      const int64_t t1 = std::min(steps, t0 + block);
      at::Tensor inputs = x;  // neuron 0's input of steps [t0, t1), from row t0 * B on
      if (layered) {
        const at::Tensor rows = x.narrow(0, t0, t1 - t0).reshape({(t1 - t0) * B, x.size(-1)});
        inputs = in_rows.numel() ? spike_product(rows, in_weight, in_rows, in_bias, B) : at::Tensor();
        if (!inputs.defined() || !inputs.numel()) {
          inputs = first.narrow(0, 0, (t1 - t0) * B);
          layer_step(inputs, rows, in_weight, in_bias);
        }
      }
      const T* in = inputs.data_ptr<T>();
      for (int64_t t = t0; t < t1; ++t) {
        const T* xt = layered ? in + (t - t0) * B * N0 : is_static ? xp : xp + t * B * N0;
        for (size_t i = 0; i < count; ++i) {
          const bool last = i + 1 == count;
          at::Tensor out = last ? y[t] : mids[i];
          neuron_step<T>(neurons[i], i == 0 ? xt : mids[i - 1].template data_ptr<T>(), nullptr, nullptr,
                         i < layers_count ? &layers[i] : nullptr, out);
          if (last && layers_count < count) out.copy_(neurons[i].spikes);
        }
      }
    }
  });
  std::vector<at::Tensor> found{y};
  for (size_t i = 0; i < count; ++i) {
    if (!steps) {  // no step ran: the final state is the initial one
      v[i].copy_(v0c[i]);
      if (ps[i].next) z[i].copy_(z0c[i]);
    }
    found.push_back(v[i]);
    found.push_back(ps[i].next ? z[i] : z0s[i]);
  }
  return found;
}

// One backward step over elements [b, e): carry holds dL/du of the step after (LAST: the
// gradients at the final states instead, NEXT: with the spikes' one, gz); g_in goes to gx
// (added for a held input, stored otherwise; null when not needed).
template <typename T, int SURR, bool LAST, bool NEXT>
void grad_step(double slope, T thr, T a, const T* __restrict__ ut, const T* __restrict__ gs, const T* __restrict__ gz,
               const T* __restrict__ gv, T* __restrict__ carry, T* __restrict__ gx, bool is_static, int64_t b, int64_t e) {
#pragma omp simd
  for (int64_t i = b; i < e; ++i) {
    const T s = surrogate_grad_of<SURR>(slope, ut[i] - thr);
    T g = s * gs[i];
    if (LAST) {
      if (NEXT) g = g + s * gz[i];  // z_T also feeds the next step's state
      g = g + gv[i];
    } else {
      g = g + carry[i] * a;
    }
    carry[i] = g;
  }
  if (!gx) return;
  if (is_static) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) gx[i] = gx[i] + carry[i];
  } else {
    std::copy(carry + b, carry + e, gx + b);
  }
}

// The gradients of forward: g_x (empty unless need_x), g_v0 and g_W. us: the saved pre-reset
// membranes, or empty for a held input (then recomputed from x, v0, z0 into the workspace).
template <typename T, int SURR>
void backward_steps(const Step& p, double slope, const at::Tensor& g_y, const at::Tensor& weight,
                    const at::Tensor& bits, const T* U, const T* gv, const T* gz, int64_t steps, bool is_static,
                    T* gx, T* carry, at::Tensor g_w) {
  const int64_t B = g_y.size(1), N = weight.size(1), M = B * N;
  const T a = static_cast<T>(p.a), thr = static_cast<T>(p.thr);
  at::Tensor gs = at::empty({B, N}, weight.options()), zf = at::empty({B, N}, weight.options());
  T* gsp = gs.data_ptr<T>();
  for (int64_t t = steps - 1; t >= 0; --t) {
    at::mm_out(gs, g_y[t], weight);  // dL/dz_t
    const T* ut = U + t * M;
    T* gxt = gx == nullptr ? nullptr : (is_static ? gx : gx + t * M);
    const bool last = t == steps - 1;
    if (last)
      at::parallel_for(0, M, kGrain, [&](int64_t b, int64_t e) {
        if (p.next) grad_step<T, SURR, true, true>(slope, thr, a, ut, gsp, gz, gv, carry, gxt, is_static, b, e);
        else grad_step<T, SURR, true, false>(slope, thr, a, ut, gsp, gz, gv, carry, gxt, is_static, b, e);
      });
    else
      at::parallel_for(0, M, kGrain, [&](int64_t b, int64_t e) {
        grad_step<T, SURR, false, false>(slope, thr, a, ut, gsp, gz, gv, carry, gxt, is_static, b, e);
      });
    if (g_w.numel()) {
      zf.copy_(bits[t].view(at::kByte));  // uint8 -> float: the fast conversion
      g_w.addmm_(g_y[t].t(), zf);
    }
  }
}

std::vector<at::Tensor> backward(const at::Tensor& g_y_in, const at::Tensor& weight, const at::Tensor& bits,
                                 const at::Tensor& us, const at::Tensor& x, const at::Tensor& v0,
                                 const at::Tensor& z0, const at::Tensor& g_v, const at::Tensor& g_z, int64_t steps,
                                 bool is_static, bool next, bool subtract, bool inclusive, double a, double gain,
                                 double thr, int64_t surrogate, double slope, bool need_x, bool need_w) {
  const Step p{next, subtract, inclusive, a, gain, thr};
  const int64_t B = v0.size(0), N = v0.size(1), M = B * N;
  const at::Tensor g_y = g_y_in.contiguous(), gv = g_v.contiguous(), gz = next ? g_z.contiguous() : g_v;
  auto g_x = need_x ? (is_static ? at::zeros({B, N}, v0.options()) : at::empty({steps, B, N}, v0.options()))
                    : at::empty({0}, v0.options());
  auto carry = at::empty({B, N}, v0.options());
  auto g_w = need_w ? at::zeros_like(weight) : at::empty({0}, weight.options());
  at::Tensor U = us;
  if (!U.numel()) {  // a held input: recompute the membranes
    U = workspace(steps * M, v0);
    auto v = at::empty({B, N}, v0.options()), z = next ? at::empty({B, N}, v0.options()) : at::empty({0}, v0.options());
    const at::Tensor v0c = v0.contiguous(), z0c = next ? z0.contiguous() : z0;
    AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "snnir_neuron_linear_recompute", [&] {
      run<scalar_t>(p, x.contiguous(), is_static, steps, v0c, z0c, v, z, LayerAfter{}, at::empty({0}, v0.options()),
                    at::empty({0}, v0.options()), U);
    });
  }
  AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "snnir_neuron_linear_backward", [&] {
    scalar_t* gxp = g_x.numel() ? g_x.data_ptr<scalar_t>() : nullptr;
    auto go = [&](auto surr) {
      backward_steps<scalar_t, decltype(surr)::value>(
          p, slope, g_y, weight, bits, U.data_ptr<scalar_t>(), gv.data_ptr<scalar_t>(), gz.data_ptr<scalar_t>(),
          steps, is_static, gxp, carry.data_ptr<scalar_t>(), g_w);
    };
    with_surrogate(static_cast<int>(surrogate), go);
  });
  if (need_x && gain != 1.0) g_x.mul_(gain);
  return {g_x, carry.mul_(a), g_w};
}

// ---- Narrow layers (few outputs, as a classifier's): one pass, nothing of size T kept ----
// Per chunk of R batch rows' neurons (L of each; every step's values stay near the core): the
// membranes and spikes of every step are recomputed into local buffers (the forward's, bit for
// bit); dL/dz_t = dL/dy_t W for every row and step is one GEMM ([R T, O] x [O, L]: it needs no
// carry); time is walked backwards for dL/du, row by row; and dL/dW += dL/dy^T z is one GEMM
// ([O, R T] x [R T, L]) into one partial sum per thread (dw_part), added up by the caller.
template <typename T, int SURR, bool NEXT, bool SUB>
void narrow_chunk(const Step& p, double slope, const T* x, bool is_static, int64_t steps, int64_t B, int64_t N,
                  int64_t O, int64_t b0, int64_t R, int64_t n0, int64_t L, const T* v0, const T* z0, const T* gy,
                  const T* W, const T* gv, const T* gz, T* gx, T* gv0, T* dw_part, T* buf) {
  const int64_t M = B * N, TL = steps * L;
  const T a = static_cast<T>(p.a), gain = static_cast<T>(p.gain), thr = static_cast<T>(p.thr);
  const T incl = p.inclusive ? T(1) : T(0);
  T *ub = buf, *zs = ub + R * TL, *gs = zs + R * TL, *g = gs + R * TL, *v = g + R * steps * O, *z = v + L;
  T* carry = z + L;
  for (int64_t r = 0; r < R; ++r)  // dL/dy of the chunk's rows: [R T, O], row r T + t
    for (int64_t t = 0; t < steps; ++t) std::copy_n(gy + (t * B + b0 + r) * O, O, g + (r * steps + t) * O);
  for (int64_t r = 0; r < R; ++r) {
    const int64_t off = (b0 + r) * N + n0;
    std::copy(v0 + off, v0 + off + L, v);
    if (NEXT) std::copy(z0 + off, z0 + off + L, z);
    // the forward's update, written out as update<> does it (the same bits): update<> called
    // here, on local state that its pointers may alias, took 5-8 % longer a backward (GCC 12,
    // 2026-12-05; before -fno-trapping-math, 4.5x: its spike compares were left scalar).
    for (int64_t t = 0; t < steps; ++t) {
      const T* xt = (is_static ? x : x + t * M) + off;
      T *ut = ub + r * TL + t * L, *zt = zs + r * TL + t * L;
#pragma omp simd
      for (int64_t j = 0; j < L; ++j) {
        const T in = v[j] * a + gain * xt[j];
        const T u = NEXT && SUB ? in - z[j] * thr : in;  // the delayed reset after the input
        const T s = (u > thr ? T(1) : T(0)) + (u == thr ? incl : T(0));
        ut[j] = u;
        zt[j] = s;
        if (NEXT) {
          v[j] = u;
          z[j] = s;
        } else {
          v[j] = SUB ? u - s * thr : u;
        }
      }
    }
  }
  if (O) gemm<T>(false, false, R * steps, L, O, g, O, W + n0, N, T(0), gs, L);  // dL/dz, every row and step
  else std::fill(gs, gs + R * TL, T(0));
  for (int64_t r = 0; r < R; ++r) {
    const int64_t off = (b0 + r) * N + n0;
    for (int64_t t = steps - 1; t >= 0; --t) {
      const T *ut = ub + r * TL + t * L, *gst = gs + r * TL + t * L;
      T* gxt = gx == nullptr ? nullptr : (is_static ? gx + off : gx + t * M + off);
      if (t == steps - 1)
        grad_step<T, SURR, true, NEXT>(slope, thr, a, ut, gst, gz + off, gv + off, carry, gxt, is_static, 0, L);
      else
        grad_step<T, SURR, false, false>(slope, thr, a, ut, gst, gz + off, gv + off, carry, gxt, is_static, 0, L);
    }
#pragma omp simd
    for (int64_t j = 0; j < L; ++j) gv0[off + j] = carry[j] * a;
  }
  if (dw_part && O && steps) gemm<T>(true, false, O, L, R * steps, g, O, zs, L, T(1), dw_part + n0, N);
}

// A narrow chunk's shape {R rows, L neurons}: L at least 512 (with fewer, each step's slice of x
// and dL/dx is a short run at its own address: T=1000, B=32, 1000 neurons took 100 ms a backward
// in chunks of 64, 73 in chunks of 512 or 1024) and a multiple of 16 unless it is the whole row,
// then as many rows as keep the three [R T, L] buffers within kNarrowBytes (about a core's L2 on
// most CPUs), with chunks enough for two tasks per thread. More rows make the GEMMs' R T longer:
// the tutorial MLP's hidden layer (1000 -> 10, B=128, T=25) 1.82-1.88 ms a backward one row a
// chunk, 1.62-1.68 two rows (768 KiB), 1.83 five (1.5 MiB), 2.04-2.14 ten (3 MiB).
constexpr int64_t kNarrowBytes = 768 * 1024;

std::pair<int64_t, int64_t> narrow_chunk_shape(int64_t steps, int64_t B, int64_t N, int64_t item) {
  const int64_t row_bytes = 3 * std::max<int64_t>(steps, 1) * item;
  int64_t L = std::min(N, std::max<int64_t>(512, kNarrowBytes / row_bytes / 16 * 16));
  const int64_t want = 2 * at::get_num_threads();
  if (B < want) {
    const int64_t per_row = (want + B - 1) / B;
    L = std::min(L, std::max<int64_t>(16, ((N + per_row - 1) / per_row + 15) / 16 * 16));
    return {1, std::max<int64_t>(1, std::min(L, N))};
  }
  int64_t R = std::max<int64_t>(1, kNarrowBytes / (row_bytes * L));
  R = std::min(R, std::max<int64_t>(1, B * ((N + L - 1) / L) / want));
  return {std::min(R, B), L};
}

// The gradients (g_x, g_v0, g_W) of forward for a narrow layer, from the input and the
// initial state alone (the forward kept no spikes and no membranes).
std::vector<at::Tensor> backward_narrow(const at::Tensor& g_y_in, const at::Tensor& weight_in, const at::Tensor& x_in,
                                        const at::Tensor& v0_in, const at::Tensor& z0_in, const at::Tensor& g_v,
                                        const at::Tensor& g_z, int64_t steps, bool is_static, bool next, bool subtract,
                                        bool inclusive, double a, double gain, double thr, int64_t surrogate,
                                        double slope, bool need_x, bool need_w) {
  const Step p{next, subtract, inclusive, a, gain, thr};
  const at::Tensor g_y = g_y_in.contiguous(), weight = weight_in.contiguous(), x = x_in.contiguous();
  const at::Tensor v0 = v0_in.contiguous(), z0 = next ? z0_in.contiguous() : v0, gv = g_v.contiguous();
  const at::Tensor gz = next ? g_z.contiguous() : gv;
  const int64_t B = v0.size(0), N = v0.size(1), O = weight.size(0);
  const auto [R, L] = narrow_chunk_shape(steps, B, N, v0.element_size());
  const int64_t chunks_per_row = (N + L - 1) / L, row_groups = (B + R - 1) / R;
  auto g_x = need_x ? (is_static ? at::zeros({B, N}, v0.options()) : at::empty({steps, B, N}, v0.options()))
                    : at::empty({0}, v0.options());
  auto g_v0 = at::empty({B, N}, v0.options());
  const int64_t threads = at::get_num_threads();
  auto dw_parts = need_w ? at::zeros({threads, O, N}, v0.options()) : at::empty({0}, v0.options());
  AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "snnir_neuron_linear_backward_narrow", [&] {
    using T = scalar_t;
    auto run_chunks = [&](auto surr, auto nxt, auto sub) {
      constexpr int S = decltype(surr)::value;
      constexpr bool NX = decltype(nxt)::value, SB = decltype(sub)::value;
      at::parallel_for(0, row_groups * chunks_per_row, 1, [&](int64_t begin, int64_t end) {
        std::vector<T> buf(R * steps * (3 * L + O) + 3 * L);
        T* part = need_w ? dw_parts.data_ptr<T>() + at::get_thread_num() * O * N : nullptr;
        for (int64_t c = begin; c < end; ++c) {
          const int64_t b0 = (c / chunks_per_row) * R, n0 = (c % chunks_per_row) * L;
          narrow_chunk<T, S, NX, SB>(p, slope, x.data_ptr<T>(), is_static, steps, B, N, O, b0, std::min(R, B - b0),
                                     n0, std::min(L, N - n0), v0.data_ptr<T>(), z0.data_ptr<T>(),
                                     g_y.data_ptr<T>(), weight.data_ptr<T>(), gv.data_ptr<T>(), gz.data_ptr<T>(),
                                     need_x ? g_x.data_ptr<T>() : nullptr, g_v0.data_ptr<T>(), part, buf.data());
        }
      });
    };
    auto with_reset = [&](auto surr) {
      if (next && subtract) run_chunks(surr, std::true_type{}, std::true_type{});
      else if (next) run_chunks(surr, std::true_type{}, std::false_type{});
      else if (subtract) run_chunks(surr, std::false_type{}, std::true_type{});
      else run_chunks(surr, std::false_type{}, std::false_type{});
    };
    with_surrogate(static_cast<int>(surrogate), with_reset);
  });
  if (need_x && gain != 1.0) g_x.mul_(gain);
  return {g_x, g_v0, need_w ? dw_parts.sum(0) : at::empty({0}, v0.options())};
}

}  // namespace

// The entry points run without the GIL, as torch's own operators do: other Python threads run
// meanwhile, and a worker thread that needs it (to copy a Python object) cannot deadlock.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  const pybind11::call_guard<pybind11::gil_scoped_release> no_gil;
  m.def("forward", &forward, no_gil, "a neuron then a Linear layer, forward");
  m.def("backward", &backward, no_gil, "a neuron then a Linear layer, backward");
  m.def("chain_forward", &chain_forward, no_gil, "neurons each feeding the next through a Linear layer, step by step");
  m.def("backward_narrow", &backward_narrow, no_gil, "the same for a layer of few outputs, in one pass");
  m.def("split_plan", [](int64_t batch, const at::Tensor& weight, const at::Tensor& bias) {
    const SplitSum* plan = split_plan(batch, weight, bias);
    return plan ? std::make_pair(plan->bounds, plan->onto_bias) : std::make_pair(std::vector<int64_t>{}, int64_t(0));
  }, no_gil, "the blocks and onto-bias count of the sum at the spikes that gives F.linear's bits here (none: empty)");
  m.def("spike_rows", &spike_rows, no_gil, "W^T padded as spike_product reads it (empty: a weight not finite)");
  m.def("sparse_sample", &sparse_sample, no_gil, "whether the first rows are 0/1 values, few of them 1");
  m.def("spike_product", &spike_product, no_gil,
        "F.linear's bits for rows of 0/1 values as a sum at them (empty where it cannot: the caller's GEMM runs)");
}
