#!/usr/bin/env bash
# Every GPU number in the README comes from one run of this script on one CUDA machine:
#
#   bash benchmarks/run_on_gpu.sh CIFAR10_DIR OUT_DIR
#
# CIFAR10_DIR holds CIFAR-10 as train/<class>/* and test/<class>/* image folders, or the
# torchvision files. Logging everything under OUT_DIR, it runs:
#   0. the main notebook in smoke mode on the GPU (stops here if that fails),
#   1. the epoch benchmark (lecture's setup vs fast path, and the cost of DETERMINISTIC = True),
#   2. the main notebook with its default settings (50 epochs), without Jupyter,
#   3. the determinism check,
#   4. the standardized notebook with its default settings.
# Each step has its own time limit, so one slow step cannot take the later ones down.
set -uo pipefail
data=${1:?CIFAR10_DIR}
out=${2:?OUT_DIR}
cd "$(dirname "$0")/.." || exit 1
mkdir -p "$out"
export PYTHONUNBUFFERED=1

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$out/gpu.txt" 2>&1
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
  >> "$out/gpu.txt"
cat "$out/gpu.txt"

run_notebook() {  # NAME LIMIT [NAME=VALUE ...]
  local name=$1 limit=$2 start
  shift 2
  start=$(date +%s)
  timeout "$limit" python3 benchmarks/notebook_code.py "$name.ipynb" DATA_ROOT="$data" \
    RESULTS_DIR="/tmp/results-$name" "$@" 2>&1 | tee "$out/$name.log"
  local status=${PIPESTATUS[0]}
  echo "exit status $status; wall time of the whole notebook: $(( $(date +%s) - start )) s" | tee -a "$out/$name.log"
  mkdir -p "$out/$name"
  cp /tmp/results-"$name"/*.png /tmp/results-"$name"/*.json "$out/$name/" 2>/dev/null
  return "$status"
}

timeout 60 python3 benchmarks/notebook_code.py vgg16-cifar10.ipynb SMOKE_TEST=True RESULTS_DIR=/tmp/smoke \
  > "$out/smoke.log" 2>&1 || { tail -30 "$out/smoke.log"; exit 1; }
echo "smoke test on the GPU: passed"
timeout 110 python3 benchmarks/benchmark_epoch.py --deterministic --json "$out/benchmark.json" 2>&1 \
  | tee "$out/benchmark.log"
run_notebook vgg16-cifar10 210
timeout 45 python3 benchmarks/check_determinism.py 2>&1 | tee "$out/determinism.log"
run_notebook vgg16-cifar10-standardized 150
