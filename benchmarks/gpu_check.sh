#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md in one run (about 6-8 minutes on an H100), for a machine with a
# CUDA GPU and this repository's virtual environment:
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# writes throughput-cuda.json, engine-cuda.json and the logs into OUT_DIR (default benchmarks/results).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/results}"
mkdir -p "$out"
py="${PYTHON:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$py" -m pytest -q -p no:cacheprovider tests/test_fisher.py tests/test_trial.py -k cuda 2>&1 | tail -3 | tee "$out/cuda-tests.log"
"$py" benchmarks/throughput.py --device cuda --out "$out/throughput-cuda.json" 2>&1 | tee "$out/throughput-cuda.log"
"$py" benchmarks/bench_engine.py --device cuda --out "$out/engine-cuda.json" 2>&1 | tee "$out/engine-cuda.log"
