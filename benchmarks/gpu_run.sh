#!/usr/bin/env bash
# The benchmark suite on a GPU, as one prepared run (a few minutes, stopped at 10): from the
# repository root, `bash benchmarks/gpu_run.sh`. It writes its tables to $OUT (default ./out):
#   bench_cuda.md          every case, no torch.compile (first, so that it always comes back)
#   bench_cuda_compile.md  issue 16's GPU cases again with snnTorch + torch.compile (60 s each)
#   exactness_cuda.txt     spikes against snnTorch's, default plan and time_chunk=1 (gpu_exactness_probe.py)
#   env.txt                GPU, driver, torch, triton
# It needs a python3 whose torch sees a GPU (PYTHON overrides the interpreter) and fails at once
# where none does. snnTorch and nir, which a bare GPU image lacks, install from the wheels in
# .whl/ (benchmarks/README.md says how to fetch them); nothing is downloaded here.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${OUT:-$PWD/out}
mkdir -p "$OUT"

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_run.sh: no CUDA device for $PYTHON (torch.cuda.is_available() is False): nothing run" >&2
  exit 2
fi
if ! "$PYTHON" -c 'import snntorch, nir' 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu_run.sh: snntorch or nir missing and no wheels in .whl/ (see benchmarks/README.md)" >&2
    exit 2
  fi
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/bench-site .whl/*.whl
  export PYTHONPATH=/tmp/bench-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  "$PYTHON" -c 'import triton; print("triton", triton.__version__)' || echo "triton: not installed"
} >"$OUT/env.txt" 2>&1

status=0
timeout 200 "$PYTHON" benchmarks/bench.py --device cuda --reps 5 --no-compile 2>&1 | tee "$OUT/bench_cuda.md" \
  || status=$?
timeout 280 "$PYTHON" benchmarks/bench.py --device cuda --reps 5 --compile-limit 60 \
  --case tutorial-static conv-static wide recurrent 2>&1 | tee "$OUT/bench_cuda_compile.md" || status=$?
timeout 120 "$PYTHON" benchmarks/gpu_exactness_probe.py 2>&1 | tee "$OUT/exactness_cuda.txt" || status=$?
exit $status
