// Element-wise math of snnir's fused neuron steps, shared by the Poplar
// vertices (snnir_codelets.cpp) and the host test harness. Plain C++17, no
// Poplar types. Semantics: snnir/targets/ipu/kernels.py (the discrete update
// of snnir/ir/ops/neuron.py over precomputed coefficients).
#pragma once

#include <cmath>

#include "snnir_config.hpp"  // SNNIR_SURROGATE, SNNIR_SLOPE (generated)

namespace snnir {

enum Reset { RESET_ZERO = 0, RESET_SUBTRACT = 1, RESET_NONE = 2 };
// When the previous step's spike z resets: same step, next step before or after the input
// (a delayed subtract reset is always generated as TIMING_NEXT_AFTER_INPUT: Kernel.step_timing).
enum Timing { TIMING_SAME = 0, TIMING_NEXT = 1, TIMING_NEXT_AFTER_INPUT = 2 };
enum Surrogate { FAST_SIGMOID = 0, ARCTAN = 1, SIGMOID = 2, STRAIGHT_THROUGH = 3, TRIANGULAR = 4 };

// Absent fields are zero.
struct State { float i, v, z; };
struct Coeff { float a_syn, g_syn, a_mem, v_leak, g_mem, thr, v_reset; };

// d spike / d x at x = u - thr, as snnir/targets/torch/surrogate.py defines it.
inline float surrogate_grad(float x) {
  const float k = SNNIR_SLOPE;
  if constexpr (SNNIR_SURROGATE == FAST_SIGMOID) {
    const float d = k * std::fabs(x) + 1.0f;
    return 1.0f / (d * d);
  } else if constexpr (SNNIR_SURROGATE == ARCTAN) {
    const float a = 1.5707963267948966f * k * x;
    return (k / 2.0f) / (1.0f + a * a);
  } else if constexpr (SNNIR_SURROGATE == SIGMOID) {
    const float s = 1.0f / (1.0f + std::exp(-k * x));
    return k * s * (1.0f - s);
  } else if constexpr (SNNIR_SURROGATE == STRAIGHT_THROUGH) {
    return 1.0f;
  } else {
    const float t = 1.0f - k * std::fabs(x);
    return t > 0.0f ? k * t : 0.0f;
  }
}

template <bool Ge, bool Multi>
inline float spike(float u, float thr) {
  if constexpr (Multi) {
    const float n = std::floor(u / thr);
    return n > 0.0f ? n : 0.0f;
  } else {
    return (Ge ? u >= thr : u > thr) ? 1.0f : 0.0f;
  }
}

template <int R>
inline float reset(float u, float z, const Coeff &c) {
  if constexpr (R == RESET_ZERO) return z > 0.0f ? c.v_reset : u;
  if constexpr (R == RESET_SUBTRACT) return u - z * c.thr;
  return u;
}

// d reset(u, z) / d u with the spike z detached.
template <int R>
inline float reset_slope(float z) {
  return (R == RESET_ZERO && z > 0.0f) ? 0.0f : 1.0f;
}

// Fed: f is the fed-back drive (snnir/ir/schedule.py), through the input's gain right after
// the drive: i' = (a_syn i + g_syn x) + g_syn f, else (leaked + g_mem x) + g_mem f; f is
// ignored otherwise. Its gradient is x's (one gain scales both).
template <bool Spiking, bool Current, int R, int Timing, bool Ge, bool Multi, bool CurrentFirst, bool Fed = false>
struct Step {
  // a + b, then + fed (a fed-back drive not taken by the current)
  static float driven(float a, float b, float fed) {
    if constexpr (Fed && !Current) return (a + b) + fed;
    return a + b;
  }

  static float current(const State &s, const Coeff &c, float x, float f) {
    if constexpr (Fed) return (c.a_syn * s.i + c.g_syn * x) + c.g_syn * f;
    return c.a_syn * s.i + c.g_syn * x;
  }

  // y and the next state from input x (fed-back drive f) and state s.
  static void forward(float x, float f, const State &s, const Coeff &c, float &y, State &n) {
    n = State{0.0f, 0.0f, 0.0f};
    float d = x;
    if constexpr (Current) {
      n.i = current(s, c, x, f);
      d = CurrentFirst ? n.i : s.i;
    }
    const float leaked = c.v_leak + c.a_mem * (s.v - c.v_leak);
    const float drive = c.g_mem * d;
    const float fed = c.g_mem * f;
    if constexpr (!Spiking) {
      n.v = driven(leaked, drive, fed);
      y = n.v;
    } else if constexpr (Timing == TIMING_NEXT) {
      n.v = driven(reset<R>(leaked, s.z, c), drive, fed);
      y = spike<Ge, Multi>(n.v, c.thr);
      n.z = y;
    } else if constexpr (Timing == TIMING_NEXT_AFTER_INPUT) {
      n.v = reset<R>(driven(leaked, drive, fed), s.z, c);
      y = spike<Ge, Multi>(n.v, c.thr);
      n.z = y;
    } else {
      const float u = driven(leaked, drive, fed);
      y = spike<Ge, Multi>(u, c.thr);
      n.v = reset<R>(u, y, c);
    }
  }

  // One BPTT step: gradients of x and s from those of y and the next state (gn).
  static void backward(float x, float f, const State &s, const Coeff &c, float gy, const State &gn,
                       float &gx, State &gs) {
    float i_next = 0.0f;
    float d = x;
    if constexpr (Current) {
      i_next = current(s, c, x, f);
      d = CurrentFirst ? i_next : s.i;
    }
    const float leaked = c.v_leak + c.a_mem * (s.v - c.v_leak);
    const float drive = c.g_mem * d;
    const float fed = c.g_mem * f;
    float gu = 0.0f;  // d / d drive
    float g_leaked = 0.0f;
    if constexpr (!Spiking) {
      gu = gy + gn.v;
      g_leaked = gu;
    } else if constexpr (Timing == TIMING_NEXT) {
      const float u = driven(reset<R>(leaked, s.z, c), drive, fed);
      gu = gn.v + (gy + gn.z) * surrogate_grad(u - c.thr);
      g_leaked = gu * reset_slope<R>(s.z);
    } else if constexpr (Timing == TIMING_NEXT_AFTER_INPUT) {
      const float u = reset<R>(driven(leaked, drive, fed), s.z, c);
      gu = (gn.v + (gy + gn.z) * surrogate_grad(u - c.thr)) * reset_slope<R>(s.z);
      g_leaked = gu;
    } else {
      const float u = driven(leaked, drive, fed);
      const float z = spike<Ge, Multi>(u, c.thr);
      gu = gn.v * reset_slope<R>(z) + gy * surrogate_grad(u - c.thr);
      g_leaked = gu;
    }
    gs = State{0.0f, g_leaked * c.a_mem, 0.0f};
    const float gd = gu * c.g_mem;
    if constexpr (Current) {
      const float gi_next = gn.i + (CurrentFirst ? gd : 0.0f);
      gs.i = c.a_syn * gi_next + (CurrentFirst ? 0.0f : gd);
      gx = c.g_syn * gi_next;
    } else {
      gx = gd;
    }
  }
};

// The standalone spike: y = [x > 0]; dy/dx := surrogate_grad(x).
inline float spike_forward(float x) { return x > 0.0f ? 1.0f : 0.0f; }
inline float spike_backward(float x, float gy) { return gy * surrogate_grad(x); }

}  // namespace snnir
