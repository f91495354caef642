#!/usr/bin/env bash
# Every GPU number in the README comes from runs of this script on one CUDA machine:
#
#   bash benchmarks/run_on_gpu.sh CIFAR10_DIR WORK_DIR [SECONDS] [STEPS]
#
# CIFAR10_DIR holds CIFAR-10 as train/<class>/* and test/<class>/* image folders (we use
# the JPEG copy, see reference-run/README.md), or the torchvision files. Everything lands
# in WORK_DIR; with PACK=FILE.tgz set, FILE.tgz is rewritten after each step (WORK_DIR without
# weights), so whatever finished survives a time limit. NOTEBOOK_OPTIONS adds papermill options to
# every notebook run (NOTEBOOK_OPTIONS="-p SMOKE_TEST True" tries the whole script on a CPU). SECONDS (default 3600) is the time budget: a
# step that would not fit in what is left is skipped and says so. STEPS (default: all)
# names the steps to run, from:
#   reference    both notebooks, default settings, executed with papermill into
#                WORK_DIR/reference-run/ (the committed reference run);
#   benchmark    benchmarks/benchmark_epoch.py: each speed trick in turn, compile and CUDA graphs,
#                the checkpoint's cost, the data paths alone, and the profile of what limits
#                the epoch (about 6 minutes);
#   profile      a short benchmark (about 3 minutes): the classic path, compile and CUDA graphs
#                against it, and the profile, without the ladder's other rungs;
#   claims       the main notebook with a second seed, at 32x32, with Dropout2d 0.2,
#                and in float32: the README's table of the lecture's claims; each can also be
#                named alone as a step: seed-7, image-size-32, dropout2d-0.2, float32.
# Commit first, and name the commit with the hash that `git rev-parse HEAD` prints on YOUR machine,
# pasted in: the GPU machine's copy may have no .git, or an older one than its working tree (seen on
# 2026-11-26: it named the commit before the one it ran). import_gpu_run.py checks it against the code:
#   RUN_COMMIT=3a536ca... PACK=$OUT/gpu-run.tgz bash benchmarks/run_on_gpu.sh DATA WORK 540 "reference claims"
# machine.txt records the card, the software, and for every invocation the commit, a SHA-256 of each
# code file (import_gpu_run.py compares them with that commit), the date, the command and the data.
# All notebook runs share WORK_DIR/results, one folder per run (see the notebooks). Afterwards,
# `python benchmarks/import_gpu_run.py FILE.tgz` copies it all into reference-run/, and
# `python benchmarks/claims_table.py` prints the README's table of the lecture's claims.
set -uo pipefail
data=${1:?CIFAR10_DIR}
work=${2:?WORK_DIR}
budget=${3:-3600}
steps=${4:-reference benchmark claims}
CLAIMS="seed-7 image-size-32 dropout2d-0.2 float32"
for step in $steps; do  # a mistyped step is refused before anything runs
  case " reference benchmark profile claims $CLAIMS " in
    *" $step "*) ;;
    *) echo "unknown step '$step': choose from reference, benchmark, profile, claims, or one claim: $CLAIMS" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/.." || exit 1
mkdir -p "$work/reference-run" "$work/claims" "$work/results"
export PYTHONUNBUFFERED=1
started=$(date +%s)
left() { echo $(( budget - ($(date +%s) - started) )); }
pack() { if [ -n "${PACK:-}" ]; then tar czf "$PACK" --exclude='*.pt' --exclude='*.tmp' -C "$work" . ; fi; }

if [ ! -f "$work/machine.txt" ]; then  # the machine, once per WORK_DIR
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    python3 -c "import sys, torch, torchvision; print('python', sys.version.split()[0], '| torch', torch.__version__, \
'| torchvision', torchvision.__version__)"
  } > "$work/machine.txt" 2>&1
fi
{  # this invocation, appended: a later one into the same WORK_DIR adds its own block
  echo "--- invocation"
  if [ -n "${RUN_COMMIT:-}" ]; then  # the GPU machine's copy of .git can be older than its working tree
    echo "commit $RUN_COMMIT (from RUN_COMMIT)"
  else
    git log -1 --format='commit %H (%cd)' 2>/dev/null || echo "commit unknown (from RUN_COMMIT)"
    git status --short 2>/dev/null | sed 's/^/uncommitted: /'
  fi
  sha256sum helper_*.py vgg16-cifar10*.ipynb benchmarks/*.py benchmarks/*.sh | sed 's/^/code: /'
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command: bash benchmarks/run_on_gpu.sh$(printf ' %q' "$@")"
  echo "notebook options: ${NOTEBOOK_OPTIONS:-none}"
  if [ -d "$data/train" ]; then
    echo "data: image folders in $data: $(find "$data" \( -iname '*.jpg' -o -iname '*.jpeg' \) | wc -l) JPEG" \
      "and $(find "$data" -iname '*.png' | wc -l) PNG files"
  elif [ -d "$data/cifar-10-batches-py" ] || [ -f "$data/cifar-10-python.tar.gz" ]; then
    echo "data: torchvision's CIFAR-10 files in $data"
  else
    echo "data: no CIFAR-10 in $data"
  fi
} >> "$work/machine.txt" 2>&1
cat "$work/machine.txt"

notebook() {  # OUTPUT_IPYNB SECONDS NOTEBOOK [NAME VALUE ...]: run a notebook with papermill, log its time
  local output=$1 limit=$2 name=$3 begin status
  shift 3
  if (( $(left) < limit )); then echo "SKIPPED $output: $(left) s left, needs $limit s" | tee -a "$work/skipped.txt"; return 0; fi
  local parameters=(-p DATA_ROOT "$data" -p RESULTS_DIR "$work/results")
  # shellcheck disable=SC2206  # NOTEBOOK_OPTIONS="-p SMOKE_TEST True": a dry run of the whole script on a CPU
  parameters+=(${NOTEBOOK_OPTIONS:-})
  while (( $# )); do parameters+=(-p "$1" "$2"); shift 2; done
  begin=$(date +%s)
  timeout "$limit" python3 -m papermill "$name" "$output" "${parameters[@]}" -k python3 --cwd "$PWD" \
    --log-output --no-progress-bar > "${output%.ipynb}.log" 2>&1
  status=$?
  echo "$output: exit status $status, $(( $(date +%s) - begin )) s for the whole notebook" | tee -a "$work/times.txt"
  pack
}

run_benchmark() {  # OUTPUT_STEM NEEDS_SECONDS AT_MOST_SECONDS [BENCHMARK OPTIONS...]: benchmark_epoch.py, timed and logged
  local stem=$1 needs=$2 most=$3 begin status
  shift 3
  if (( $(left) < needs )); then echo "SKIPPED $stem: $(left) s left, needs $needs s" | tee -a "$work/skipped.txt"; return 0; fi
  begin=$(date +%s)
  timeout $(( $(left) < most ? $(left) : most )) python3 benchmarks/benchmark_epoch.py "$@" --json "$stem.json" 2>&1 \
    | tee "$stem.log"
  status=${PIPESTATUS[0]}
  echo "$stem.json: exit status $status, $(( $(date +%s) - begin )) s for the benchmark" | tee -a "$work/times.txt"
  pack
}

run_claim() {  # CLAIM: one of the claims step's notebook runs (on the H100 a whole 64x64 notebook took 176 to 178 s,
  # so 240 s leaves room for a slower day; the 32x32 one reached epoch 48 of 50 in 120 s)
  case $1 in
    seed-7) notebook "$work/claims/seed-7.ipynb" 240 vgg16-cifar10.ipynb RANDOM_SEED 7 ;;
    image-size-32) notebook "$work/claims/image-size-32.ipynb" 200 vgg16-cifar10.ipynb IMAGE_SIZE 32 ;;
    dropout2d-0.2) notebook "$work/claims/dropout2d-0.2.ipynb" 240 vgg16-cifar10.ipynb DROPOUT2D 0.2 ;;
    float32) notebook "$work/claims/float32.ipynb" 300 vgg16-cifar10.ipynb PRECISION float32 ;;
  esac
}

for step in $steps; do
  case $step in
    reference)
      notebook "$work/reference-run/vgg16-cifar10.ipynb" 270 vgg16-cifar10.ipynb
      notebook "$work/reference-run/vgg16-cifar10-standardized.ipynb" 270 vgg16-cifar10-standardized.ipynb
      ;;
    benchmark)
      run_benchmark "$work/benchmark" 360 420 --compile --cudagraphs --profile --checkpoints --checkpoint-dir "$work"
      ;;
    profile)
      run_benchmark "$work/profile" 180 240 --rungs classic --compile --cudagraphs --profile --data-images 2000
      ;;
    claims)
      for claim in $CLAIMS; do run_claim "$claim"; done
      ;;
    *)
      run_claim "$step"
      ;;
  esac
done
echo "done after $(( $(date +%s) - started )) s"
pack
