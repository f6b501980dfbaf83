// Fused CPU scan of one snnir neuron over T steps (forward and BPTT backward):
// the tensor entry points of the chunk kernels in neuron_step.h.
#include <torch/extension.h>

#include <vector>

#include "neuron_step.h"

namespace {

at::Tensor empty_unless(bool cond, at::IntArrayRef shape, const at::Tensor& like) {
  return cond ? at::empty(shape, like.options()) : at::empty({0}, like.options());
}

std::vector<at::Tensor> forward(const at::Tensor& x, const at::Tensor& v0, const at::Tensor& i0,
                                const at::Tensor& z0, const std::vector<at::Tensor>& coeffs,
                                int64_t steps, bool is_static, const std::vector<int64_t>& flags,
                                double slope) {
  const Config c = make_config(flags, slope);
  const int64_t M = v0.numel();
  auto out = at::empty({steps, M}, v0.options());
  auto v_end = at::empty({M}, v0.options());
  auto i_end = empty_unless(c.has_current, {M}, v0);
  auto z_end = empty_unless(c.next_timing, {M}, v0);
  AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "snnir_neuron_scan_forward", [&] {
    const scalar_t* k[N_COEF];
    int64_t period[N_COEF];
    for (int j = 0; j < N_COEF; ++j) {
      k[j] = ptr_or_null<scalar_t>(coeffs[j]);
      period[j] = coeffs[j].numel();
    }
    forward_kernel<scalar_t>(c, x.data_ptr<scalar_t>(), v0.data_ptr<scalar_t>(),
                             ptr_or_null<scalar_t>(i0), ptr_or_null<scalar_t>(z0), k, period, steps,
                             is_static, M, out.data_ptr<scalar_t>(), v_end.data_ptr<scalar_t>(),
                             i_end.numel() ? i_end.data_ptr<scalar_t>() : nullptr,
                             z_end.numel() ? z_end.data_ptr<scalar_t>() : nullptr);
  });
  return {out, v_end, i_end, z_end};
}

// Returns g_x, g_v0, g_i0, g_z0 and, per coefficient, its per-element gradient
// summed over steps (empty unless needed[j]). The membranes and currents of the
// forward are recomputed chunk by chunk (nothing of size [T, M] is kept).
std::vector<at::Tensor> backward(const at::Tensor& x, const at::Tensor& v0, const at::Tensor& i0,
                                 const at::Tensor& z0, const std::vector<at::Tensor>& coeffs, const at::Tensor& g_out,
                                 const at::Tensor& g_v, const at::Tensor& g_i,
                                 const at::Tensor& g_z, int64_t steps, bool is_static,
                                 const std::vector<int64_t>& flags, double slope,
                                 const std::vector<int64_t>& needed, bool need_x) {
  const Config c = make_config(flags, slope);
  const int64_t M = v0.numel();
  // g_out [T, M] may be a broadcast (e.g. the gradient of a sum): read in place
  // on the fast path when one value per step, else made contiguous over elements
  bool fast = fast_path(c);
  for (int j = 0; j < N_COEF; ++j) fast = fast && !needed[j];
  at::Tensor go = g_out;
  if (go.stride(1) != 1 && !(fast && go.stride(1) == 0)) go = go.contiguous();
  const bool go_bcast = fast && go.stride(1) == 0 && M > 1;
  auto g_x = need_x ? (is_static ? at::empty({M}, v0.options()) : at::empty({steps, M}, v0.options()))
                    : at::empty({0}, v0.options());
  auto g_v0 = at::empty({M}, v0.options());
  auto g_i0 = empty_unless(c.has_current, {M}, v0);
  auto g_z0 = empty_unless(c.next_timing, {M}, v0);
  std::vector<at::Tensor> result{g_x, g_v0, g_i0, g_z0};
  for (int j = 0; j < N_COEF; ++j)
    result.push_back(needed[j] ? at::zeros({M}, v0.options()) : at::empty({0}, v0.options()));
  AT_DISPATCH_FLOATING_TYPES(v0.scalar_type(), "snnir_neuron_scan_backward", [&] {
    const scalar_t* k[N_COEF];
    scalar_t* acc[N_COEF];
    int64_t period[N_COEF];
    for (int j = 0; j < N_COEF; ++j) {
      k[j] = ptr_or_null<scalar_t>(coeffs[j]);
      period[j] = coeffs[j].numel();
      acc[j] = result[4 + j].numel() ? result[4 + j].data_ptr<scalar_t>() : nullptr;
    }
    backward_kernel<scalar_t>(
        c, x.data_ptr<scalar_t>(), v0.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(i0),
        ptr_or_null<scalar_t>(z0), k, period,
        go.data_ptr<scalar_t>(), go.stride(0), go_bcast, g_v.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(g_i),
        ptr_or_null<scalar_t>(g_z), steps, is_static, M,
        g_x.numel() ? g_x.data_ptr<scalar_t>() : nullptr, g_v0.data_ptr<scalar_t>(),
        g_i0.numel() ? g_i0.data_ptr<scalar_t>() : nullptr,
        g_z0.numel() ? g_z0.data_ptr<scalar_t>() : nullptr, acc);
  });
  return result;
}

}  // namespace

// The entry points run without the GIL, as torch's own operators do: other Python threads run
// meanwhile, and a worker thread that needs it (to copy a Python object) cannot deadlock.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  const pybind11::call_guard<pybind11::gil_scoped_release> no_gil;
  m.def("forward", &forward, no_gil, "fused neuron scan, forward");
  m.def("backward", &backward, no_gil, "fused neuron scan, backward");
}
