#!/usr/bin/env bash
# The wheels the GPU machine lacks for benchmarks/gpu_check.sh, fetched here (where the package registry
# is reachable) into an ignored folder that travels with the checkout:
#   bash benchmarks/fetch_wheels.sh [DIR]        # DIR defaults to wheels/ (in .gitignore)
# The machine has python3 3.12 with torch, torchvision, numpy, scipy, matplotlib, requests, pandas, pyarrow,
# pyyaml, filelock, tqdm and pytest (+ pytest-timeout), but no mnist1d, ray or plotly. The benchmarks need
# only mnist1d of those (a pure-Python wheel; its needs numpy, scipy, matplotlib and requests are there, so
# --no-deps); ray and plotly are never imported on the benchmark path. Never torch: the machine's own is
# the one built for its GPU. gpu_check.sh installs whatever *.whl it finds in wheels/ (--no-index --no-deps).
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-wheels}"
py="${PYTHON:-python3}"
# one version of each package (two stop the whole install there); mnist1d as pinned by the project's env
packages=("mnist1d==0.0.2.post1")
mkdir -p "$dest"
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$dest" "${packages[@]}"
ls -l "$dest"
du -sh "$dest"
