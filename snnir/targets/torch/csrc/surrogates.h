// The surrogate derivatives of snnir/targets/torch/surrogate.py, shared by the native kernels.
// Operation order as bptt._surrogate_grad's in-place torch ops (built with -ffp-contract=off).
#pragma once
#include <cmath>
#include <type_traits>

namespace {

enum Surr { FAST_SIGMOID = 0, ARCTAN = 1, TRIANGULAR = 2, SIGMOID = 3, STRAIGHT_THROUGH = 4 };

template <int KIND, typename T>
inline T surrogate_grad_of(double slope, T x) {
  const T k = static_cast<T>(slope);
  if (KIND == FAST_SIGMOID) {
    const T d = std::abs(x) * k + T(1);
    return T(1) / (d * d);
  }
  if (KIND == ARCTAN) {
    const T a = x * static_cast<T>(M_PI / 2 * slope);
    return (T(1) / (a * a + T(1))) * static_cast<T>(slope / 2);
  }
  if (KIND == TRIANGULAR) {
    const T a = std::abs(x) * (-k) + T(1);
    return (a < T(0) ? T(0) : a) * k;
  }
  if (KIND == SIGMOID) {
    const T s = T(1) / (T(1) + std::exp(-(k * x)));
    return k * s * (T(1) - s);
  }
  return T(1);
}

// Calls f(std::integral_constant<int, KIND>{}) for a surrogate chosen at run time.
template <typename F>
void with_surrogate(int kind, F&& f) {
  switch (kind) {
    case FAST_SIGMOID: f(std::integral_constant<int, FAST_SIGMOID>{}); break;
    case ARCTAN: f(std::integral_constant<int, ARCTAN>{}); break;
    case TRIANGULAR: f(std::integral_constant<int, TRIANGULAR>{}); break;
    case SIGMOID: f(std::integral_constant<int, SIGMOID>{}); break;
    default: f(std::integral_constant<int, STRAIGHT_THROUGH>{}); break;
  }
}

}  // namespace
