#!/usr/bin/env bash
# The prepared GPU check: CUDA tests, then the timing table, all within about 8 minutes on one
# GPU. Run from the repository root on a machine with a CUDA GPU; the last line is one JSON line.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python -c "import torch, sys; print('cuda:', torch.cuda.is_available(), torch.__version__); sys.exit(0 if torch.cuda.is_available() else 1)" \
  || { echo '{"gpu_check": "no CUDA GPU visible"}'; exit 1; }
timeout 150 python -m pytest -q tests/test_cuda.py tests/test_losses.py -x -p no:cacheprovider
tests=$?
timeout 330 python scripts/gpu_check.py --budget 300
timing=$?
echo "{\"cuda_tests_exit\": $tests, \"timing_exit\": $timing}"
