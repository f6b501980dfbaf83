// Sums at the spikes (every value 0 or 1), shared by the kernels: listing where they fired,
// and the check such a sum needs to give a GEMM's result (a product by 0 of an inf or NaN
// weight is NaN in the GEMM, nothing in the sum).
#pragma once
#include <torch/extension.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace {

// Whether the sums may take 64-byte vectors: GCC on x86-64 (a target("avx512f") function
// compiles them; the template it calls must be always_inline, else GCC emulates the vectors:
// 5x slower) on a CPU with AVX-512F, asked once.
inline bool avx512_sums() {
#if defined(__GNUC__) && defined(__x86_64__)
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
#else
  return false;
#endif
}

#if defined(__AVX2__)
// For each 8-bit mask, the positions of its set bits packed to the front (the rest zero).
const std::array<std::array<int32_t, 8>, 256>& packed_positions() {
  static const auto table = [] {
    std::array<std::array<int32_t, 8>, 256> t{};
    for (int mask = 0; mask < 256; ++mask)
      for (int bit = 0, n = 0; bit < 8; ++bit)
        if (mask >> bit & 1) t[mask][n++] = bit;
    return t;
  }();
  return table;
}
#endif

// The indices k in [begin, end) where z[k] fired (z[k] != 0), into at, ascending; returns how
// many; at may be written up to end - begin entries past its start. Branch-free: spikes fire
// unpredictably (a jump per element, or per eight, measured slower at 8 % fired). With AVX2
// (floats, indices under 2^31), eight at a time: their nonzero mask picks from a table the
// positions to store, and the count moves by its bits.
template <typename Z>
int64_t list_fired(const Z* z, int64_t begin, int64_t end, int64_t* at) {
  int64_t n = 0, k = begin;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<Z, float>) {
    if (end < (int64_t(1) << 31)) {
      const auto& table = packed_positions();
      const __m256 zero = _mm256_setzero_ps();
      for (; k + 8 <= end; k += 8) {
        const int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(z + k), zero, _CMP_NEQ_UQ));
        const __m256i where = _mm256_add_epi32(
            _mm256_set1_epi32(static_cast<int32_t>(k)),
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table[mask].data())));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(at + n), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(where)));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(at + n + 4),
                            _mm256_cvtepi32_epi64(_mm256_extracti128_si256(where, 1)));
        n += __builtin_popcount(static_cast<unsigned>(mask));
      }
    }
  }
#endif
  for (; k < end; ++k) {
    at[n] = k;
    n += z[k] != Z(0);
  }
  return n;
}

// Whether every value of t is finite: an inf or NaN has every exponent bit set. One pass
// whose OR of integers vectorizes (at::isfinite(t).all() made a call's fixed cost 2x).
bool all_finite(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  bool finite = true;
  AT_DISPATCH_FLOATING_TYPES(c.scalar_type(), "snnir_all_finite", [&] {
    using U = std::conditional_t<sizeof(scalar_t) == 4, uint32_t, uint64_t>;
    constexpr U kExponent = sizeof(scalar_t) == 4 ? U(0x7f800000u) : U(0x7ff0000000000000ull);
    const scalar_t* p = c.data_ptr<scalar_t>();
    U bad = 0;
    for (int64_t e = 0; e < c.numel(); ++e) {
      U bits;
      std::memcpy(&bits, p + e, sizeof(bits));
      bad |= U((bits & kExponent) == kExponent);
    }
    finite = !bad;
  });
  return finite;
}

}  // namespace
