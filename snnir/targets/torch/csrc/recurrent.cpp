// A recurrent component (a neuron and the Linear/Affine layer that feeds its spikes back)
// over T steps in one call, forward and BPTT backward.
//
// Step t: in_t = x_t + r_{t-1}; the neuron's update of neuron_step.h on in_t (spikes
// z_t); r_t = z_t W^T + b, the GEMM torch's F.linear makes (at::addmm, or at::mm
// without a bias, on a fresh [B, N] tensor as the step-by-step Python path has), so
// every output equals that path's bit for bit. r_{-1} is given (the delayed value's
// state). The input projection x_t is computed outside, over all T at once.
//
// Training keeps, per step, the summed input in_t and the neuron's states before the
// step (membrane, and current for Cuba neurons); the spikes are kept by the caller
// (one byte each). The backward walks time back: dL/dz_t = g_out_t + dL/dr_t W (one
// GEMM), then the neuron's backward of one step (recomputing that step from its
// states) gives dL/din_t = dL/dx_t = dL/dr_{t-1}. dL/dW and dL/db are left to the
// caller: one GEMM over all steps.
#include <torch/extension.h>

#include <vector>

#include "neuron_step.h"

namespace {

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

template <typename T>
T* mutable_or_null(at::Tensor& t) {
  return t.numel() ? t.data_ptr<T>() : nullptr;
}

at::Tensor empty_unless(bool cond, at::IntArrayRef shape, const at::Tensor& like) {
  return cond ? at::empty(shape, like.options()) : at::empty({0}, like.options());
}

// r = z W^T (+ b) as F.linear computes it for a [B, N] input
at::Tensor project(const at::Tensor& z, const at::Tensor& weight, const at::Tensor& bias) {
  return bias.numel() ? at::addmm(bias, z, weight.t()) : at::mm(z, weight.t());
}

// Returns out [T, M] (spikes), the final v, i, z, r, and when keep the per-step
// in_t [T, M], v before each step [T, M] and i before each step [T, M] (Cuba).
std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& v0, const at::Tensor& i0,
                                const at::Tensor& z0, const std::vector<at::Tensor>& coeffs,
                                const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& r0,
                                int64_t batch, const std::vector<int64_t>& flags, double slope,
                                bool keep) {
  const Config c = make_config(flags, slope);
  const int64_t steps = x.size(0), M = v0.numel(), N = weight.size(0);
  TORCH_CHECK(c.spiking && !c.multi, "recurrent: single-spike neurons only");
  TORCH_CHECK(M == batch * N && r0.numel() == M, "recurrent: shapes disagree");
  auto out = at::empty({steps, M}, v0.options());
  auto v = v0.clone(), i = c.has_current ? i0.clone() : at::empty({0}, v0.options());
  auto z = c.next_timing ? z0.clone() : at::empty({0}, v0.options());
  auto ins = keep ? at::empty({steps, M}, v0.options()) : at::empty({M}, v0.options());
  auto vs = empty_unless(keep, {steps, M}, v0);
  auto is = empty_unless(keep && c.has_current, {steps, M}, v0);
  at::Tensor r = r0.reshape({batch, N});
  const Coefficients coefficients(coeffs);
  AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "snnir_recurrent_forward", [&] {
    const scalar_t* k[N_COEF];
    int64_t period[N_COEF];
    coefficients.pointers(k, period);
    scalar_t *pv = v.data_ptr<scalar_t>(), *pi = mutable_or_null<scalar_t>(i), *pz = mutable_or_null<scalar_t>(z);
    const scalar_t* px = x.data_ptr<scalar_t>();
    for (int64_t t = 0; t < steps; ++t) {
      scalar_t* in = ins.data_ptr<scalar_t>() + (keep ? t * M : 0);
      const scalar_t *xt = px + t * M, *rt = r.data_ptr<scalar_t>();
      for (int64_t e = 0; e < M; ++e) in[e] = xt[e] + rt[e];
      if (keep) {
        std::copy(pv, pv + M, vs.data_ptr<scalar_t>() + t * M);
        if (c.has_current) std::copy(pi, pi + M, is.data_ptr<scalar_t>() + t * M);
      }
      auto zt = at::empty({batch, N}, v0.options());  // as fresh (aligned) as the Python path's
      forward_kernel<scalar_t>(c, in, pv, pi, pz, k, period, 1, false, M, zt.data_ptr<scalar_t>(), pv,
                               pi, pz);
      r = project(zt, weight, bias);
      std::copy(zt.data_ptr<scalar_t>(), zt.data_ptr<scalar_t>() + M, out.data_ptr<scalar_t>() + t * M);
    }
  });
  return {out, v, i, z, r.reshape({M}), keep ? ins : at::empty({0}, v0.options()), vs, is};
}

// Returns dL/dx [T, M] (dL/dx_0 is also dL/dr_{-1}), dL/dv0, dL/di0, dL/dz0 and, per
// coefficient, its per-element gradient summed over steps (empty unless needed[j]).
// spikes: [T, M] uint8; g_out [T, M] contiguous; g_v, g_i, g_z, g_r: gradients at the
// final states.
std::vector<at::Tensor> backward(const at::Tensor& ins, const at::Tensor& vs, const at::Tensor& is,
                                 const at::Tensor& spikes, const at::Tensor& z0,
                                 const std::vector<at::Tensor>& coeffs, const at::Tensor& weight,
                                 const at::Tensor& g_out, const at::Tensor& g_v, const at::Tensor& g_i,
                                 const at::Tensor& g_z, const at::Tensor& g_r, int64_t batch,
                                 const std::vector<int64_t>& flags, double slope,
                                 const std::vector<int64_t>& needed) {
  const Config c = make_config(flags, slope);
  const int64_t steps = ins.size(0), M = ins.size(1), N = weight.size(0);
  auto opts = ins.options();
  auto g_x = at::empty({steps, M}, opts);
  auto gv = g_v.clone(), gi = c.has_current ? g_i.clone() : at::empty({0}, opts);
  auto gz = c.next_timing ? g_z.clone() : at::empty({0}, opts);
  auto z_prev = at::empty({M}, opts);  // the spikes before a step, as the state z
  std::vector<at::Tensor> result{g_x, gv, gi, gz};
  for (int j = 0; j < N_COEF; ++j) result.push_back(needed[j] ? at::zeros({M}, opts) : at::empty({0}, opts));
  at::Tensor g_r_t = g_r.reshape({batch, N});
  const Coefficients coefficients(coeffs);
  AT_DISPATCH_FLOATING_TYPES(ins.scalar_type(), "snnir_recurrent_backward", [&] {
    const scalar_t* k[N_COEF];
    int64_t period[N_COEF];
    coefficients.pointers(k, period);
    scalar_t* acc[N_COEF];
    for (int j = 0; j < N_COEF; ++j) acc[j] = needed[j] ? result[4 + j].data_ptr<scalar_t>() : nullptr;
    scalar_t *pgv = gv.data_ptr<scalar_t>(), *pgi = mutable_or_null<scalar_t>(gi), *pgz = mutable_or_null<scalar_t>(gz);
    const uint8_t* ps = spikes.data_ptr<uint8_t>();
    scalar_t* pzp = z_prev.data_ptr<scalar_t>();
    for (int64_t t = steps - 1; t >= 0; --t) {
      // all gradient at z_t: from outside, and through r_t into the next step
      at::Tensor g_zt = at::addmm(g_out[t].view({batch, N}), g_r_t, weight);
      const scalar_t* z_before = nullptr;
      if (c.next_timing) {
        if (t) {
          const uint8_t* s = ps + (t - 1) * M;
          for (int64_t e = 0; e < M; ++e) pzp[e] = static_cast<scalar_t>(s[e]);
          z_before = pzp;
        } else {
          z_before = z0.data_ptr<scalar_t>();
        }
      }
      scalar_t* g_in = g_x.data_ptr<scalar_t>() + t * M;
      backward_kernel<scalar_t>(c, ins.data_ptr<scalar_t>() + t * M, vs.data_ptr<scalar_t>() + t * M,
                                c.has_current ? is.data_ptr<scalar_t>() + t * M : nullptr, z_before, k,
                                period, g_zt.data_ptr<scalar_t>(), M, false, pgv, pgi, pgz, 1, false, M,
                                g_in, pgv, pgi, pgz, acc);
      g_r_t = g_x[t].view({batch, N});
    }
  });
  return result;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "recurrent neuron component, forward");
  m.def("backward", &backward, "recurrent neuron component, backward");
}
