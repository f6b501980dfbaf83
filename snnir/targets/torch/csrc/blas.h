// Matrix products for the kernels' backward passes, on raw pointers.
#pragma once
#include <torch/extension.h>

#include <cstdint>
#include <type_traits>

#if defined(__linux__)
// The Fortran BLAS GEMM of the library torch links (MKL, OpenBLAS), where it exports one. The
// sizes go as int64 holding small values, read right by LP64 (4-byte ints, little-endian) and
// ILP64 builds alike.
extern "C" {
void sgemm_(const char*, const char*, const int64_t*, const int64_t*, const int64_t*, const float*, const float*,
            const int64_t*, const float*, const int64_t*, const float*, float*, const int64_t*) __attribute__((weak));
void dgemm_(const char*, const char*, const int64_t*, const int64_t*, const int64_t*, const double*, const double*,
            const int64_t*, const double*, const int64_t*, const double*, double*, const int64_t*) __attribute__((weak));
// MKL's packed-operand GEMM (CBLAS, by value: each integer passed as int64 is read right by LP64
// and ILP64 builds alike, in a register or an 8-byte stack slot of a little-endian machine).
size_t cblas_sgemm_pack_get_size(int64_t, int64_t, int64_t, int64_t) __attribute__((weak));
void cblas_sgemm_pack(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, float, const float*, int64_t,
                      float*) __attribute__((weak));
void cblas_sgemm_compute(int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, const float*, int64_t, const float*,
                         int64_t, float, float*, int64_t) __attribute__((weak));
}
#endif

namespace {

// Row-major c [m, n] (rows ldc apart) = op(a) op(b) + beta c, op(a) [m, k], op(b) [k, n]; a is
// stored [m, k] (rows lda apart), or [k, m] with ta; b likewise [k, n], or [n, k] with tb. The
// BLAS is called with the pointers where torch exports it: no dispatcher work or tensors (5-10 us
// a call measured); else at::addmm_out on tensors over the same memory. Its bits may differ from
// F.linear's: for gradients only. beta 0: c is not read.
template <typename T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, int64_t ldb,
          T beta, T* c, int64_t ldc) {
#if defined(__linux__)
  const char op_a = ta ? 'T' : 'N', op_b = tb ? 'T' : 'N';
  const T one = 1;
  // column-major: c^T = op(b)^T op(a)^T
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_) return sgemm_(&op_b, &op_a, &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc);
  } else if constexpr (std::is_same_v<T, double>) {
    if (dgemm_) return dgemm_(&op_b, &op_a, &n, &m, &k, &one, b, &ldb, a, &lda, &beta, c, &ldc);
  }
#endif
  const auto options = at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value);
  auto view = [&](const T* p, int64_t rows, int64_t cols, int64_t ld, bool t) {
    at::Tensor x = at::from_blob(const_cast<T*>(p), {t ? cols : rows, t ? rows : cols}, {ld, 1}, options);
    return t ? x.t() : x;
  };
  at::Tensor out = at::from_blob(c, {m, n}, {ldc, 1}, options);
  if (beta == T(0)) out.zero_();
  at::addmm_out(out, out, view(a, m, k, lda, ta), view(b, k, n, ldb, tb), beta == T(0) ? 1 : beta);
}

// A row-major [k, n] operand b (rows ldb apart) of many products c [m, n] += a [m, k] b with one
// m, packed once into the GEMM library's own layout where it offers that (MKL, float), so that
// each product skips packing b again (the recurrent backward's [32, 256] x [256, 256] steps:
// 2.86 against 3.0 ms per 100 steps of two threads); else the plain gemm above.
class PackedB {
 public:
  template <typename T>
  PackedB(const T* b, int64_t m, int64_t n, int64_t k, int64_t ldb) : m_(m), n_(n), k_(k) {
#if defined(__linux__)
    if constexpr (std::is_same_v<T, float>) {
      if (cblas_sgemm_pack_get_size && cblas_sgemm_pack && cblas_sgemm_compute && m > 0 && n > 0 && k > 0) {
        const size_t bytes = cblas_sgemm_pack_get_size(kB, m, n, k);
        packed_ = at::empty({static_cast<int64_t>(bytes / sizeof(float)) + 1}, at::kFloat);
        cblas_sgemm_pack(kRowMajor, kB, kNoTrans, m, n, k, 1.0f, b, ldb, packed_.data_ptr<float>());
      }
    }
#endif
  }
  // c [m, n] (rows ldc apart) += a [m, k] (rows lda apart) b; b: the operand given at packing
  template <typename T>
  void add_product(const T* a, int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc) const {
#if defined(__linux__)
    if constexpr (std::is_same_v<T, float>) {
      if (packed_.defined())
        return cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, m_, n_, k_, a, lda, packed_.data_ptr<float>(), ldb,
                                   1.0f, c, ldc);
    }
#endif
    gemm<T>(false, false, m_, n_, k_, a, lda, b, ldb, T(1), c, ldc);
  }

 private:
  static constexpr int64_t kRowMajor = 101, kNoTrans = 111, kPacked = 151, kB = 162;  // CBLAS's values
  int64_t m_, n_, k_;
  at::Tensor packed_;
};

}  // namespace

