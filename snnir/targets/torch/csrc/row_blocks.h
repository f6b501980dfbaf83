// Work split over blocks of batch rows, each thread its own rows for all steps.
//
// The batch rows of a neuron's loop are independent (row b of a step's GEMM needs only row b of
// its spikes), so a kernel may give each thread its own rows for every step: no barrier per
// step, each thread's GEMM on its rows alone. Blocks start at multiples of kRowAlign rows and
// hold at least kRowAlign: a GEMM on such a block of rows gives the rows of the GEMM on the
// whole batch bit for bit (tested). One block (few rows, one thread) is the whole batch, its
// loop and GEMM parallel inside (a parallel_for of one task runs on the calling thread).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <algorithm>
#include <vector>

constexpr int64_t kRowAlign = 8;

// Row bounds of the blocks: [0, b_1, ..., batch].
inline std::vector<int64_t> row_blocks(int64_t batch) {
  const int64_t units = batch / kRowAlign;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), units));
  std::vector<int64_t> bounds{0};
  for (int64_t k = 1; k < blocks; ++k) bounds.push_back(kRowAlign * (units * k / blocks));
  bounds.push_back(batch);
  return bounds;
}

// f(first row, end row) for each block of row_blocks, the blocks in parallel, each thread
// with the caller's thread-local state (grad mode: the aten calls in f record nothing).
template <typename F>
void for_row_blocks(int64_t batch, const F& f) {
  const auto bounds = row_blocks(batch);
  const at::ThreadLocalState caller;
  at::parallel_for(0, static_cast<int64_t>(bounds.size()) - 1, 1, [&](int64_t begin, int64_t end) {
    const at::ThreadLocalStateGuard guard(caller);
    for (int64_t k = begin; k < end; ++k) f(bounds[k], bounds[k + 1]);
  });
}
