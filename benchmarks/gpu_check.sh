#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md ("First GPU run") in one run, on a bare machine: a plain python3
# with torch, the repository on PYTHONPATH (set here), no cpsweep install, no ray, no plotly, no network.
#   bash benchmarks/gpu_check.sh OUT_DIR [--quick] [--device cuda|cpu]     (OUT_DIR: benchmarks/results if none)
# Wheels in wheels/ (benchmarks/fetch_wheels.sh, run where the registry is reachable; WHEELS=DIR for
# another folder) are installed first into a temporary folder put on PYTHONPATH. Every step runs under its
# own time-out and may fail without stopping the others; each benchmark rewrites its JSON in OUT_DIR after
# every row. Steps and time-outs (seconds, full / --quick; at most 8 and 3 minutes in all):
#   wheels 10/10, nvidia-smi 5/5, the CUDA tests (-m cuda) 50/30, throughput.py 190/50, bench_engine.py 50/25,
#   bench_fisher.py 55/20, gpu_checks.py 120/35.
# OUT_DIR then holds (6 files): gpu_check.log (every step's output), throughput-<dev>.json,
# engine-<dev>.json, fisher-<dev>.json, checks-<dev>.json and summary.json (each step's exit status and
# seconds, the rows in each file, the GPU, the Python environment). Exits non-zero only when no file holds
# a row. --device cpu --quick is its rehearsal on a CPU (tests/test_gpu_check.py), with tiny models and
# twice the time-outs.
set -uo pipefail
caller="$(pwd)"
cd "$(dirname "$0")/.."
root="$(pwd)"
out="" quick="" device="cuda"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick="--quick" ;;
        --device) device="$2"; shift ;;
        --device=*) device="${1#--device=}" ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) if [ -z "$out" ]; then out="$1"; else echo "gpu_check.sh: unexpected argument $1" >&2; exit 2; fi ;;
    esac
    shift
done
case "$out" in
    "") out="$root/benchmarks/results" ;;
    /*) ;;
    *) out="$caller/$out" ;;  # relative to where the command was started
esac
mkdir -p "$out" && out="$(cd "$out" && pwd)" || exit 2
py="${PYTHON:-python3}"
tmp="${TMPDIR:-/tmp}"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export CPSWEEP_DATA_DIR="${CPSWEEP_DATA_DIR:-$tmp/cpsweep-gpu-check-data}"  # the MNIST-1D cache
log="$out/gpu_check.log"
: >"$log"
steps=()
began=$SECONDS
if [ -n "$quick" ]; then limits=(10 5 30 50 25 20 35); else limits=(10 5 50 190 50 55 120); fi
if [ "$device" = cpu ]; then  # the rehearsal on a shared 2-core machine: its time-outs doubled, not the GPU's
    for i in "${!limits[@]}"; do limits[$i]=$((2 * limits[$i])); done
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # two threads on a busy 2-core machine: up to 10x slower
fi

step() {  # step NAME LIMIT_S COMMAND...: run it under its time-out, its output to the log and stdout
    local name="$1" limit="$2" start=$SECONDS rc
    shift 2
    echo "=== $name (time-out ${limit} s): $*" | tee -a "$log"
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 124 ] && echo "step $name timed out after ${limit} s" | tee -a "$log"
    [ "$rc" != 0 ] && echo "step $name failed (exit $rc)" | tee -a "$log"
    echo "=== $name: exit $rc in $((SECONDS - start)) s" | tee -a "$log"
    steps+=("$name:$rc:$((SECONDS - start))")
    return 0
}

wheels="${WHEELS:-$root/wheels}"
if compgen -G "$wheels/*.whl" >/dev/null; then
    site="$tmp/cpsweep-wheels"
    step wheels "${limits[0]}" "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$site" "$wheels"/*.whl
    export PYTHONPATH="$PYTHONPATH:$site"
else
    echo "no wheels in $wheels (benchmarks/fetch_wheels.sh): the packages must already be there" | tee -a "$log"
fi
if command -v nvidia-smi >/dev/null; then
    step nvidia-smi "${limits[1]}" nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
fi
step cuda-tests "${limits[2]}" "$py" -m pytest -q -p no:cacheprovider -o addopts="" -m cuda -rA \
    tests/test_fisher.py tests/test_trial.py tests/test_numerics.py tests/test_host_device.py
step throughput "${limits[3]}" "$py" benchmarks/throughput.py --device "$device" $quick \
    --out "$out/throughput-$device.json"
step engine "${limits[4]}" "$py" benchmarks/bench_engine.py --device "$device" $quick --out "$out/engine-$device.json"
step fisher "${limits[5]}" "$py" benchmarks/bench_fisher.py --device "$device" $quick \
    --models cnn1d all_cnn_c resnet18 --out "$out/fisher-$device.json"
step checks "${limits[6]}" "$py" benchmarks/gpu_checks.py --device "$device" $quick --out "$out/checks-$device.json"
rm -f "$out"/.tmp-*.json  # a write cut short by a time-out

GPU_CHECK_STEPS="${steps[*]}" GPU_CHECK_SECONDS=$((SECONDS - began)) "$py" - "$out" "$device" "$quick" <<'PY' 2>&1 | tee -a "$log"
"""summary.json: each step's exit status and seconds, the rows each JSON holds; exit 1 if none holds one."""
import importlib.util
import json
import os
import subprocess
import sys

out, device, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "--quick"


def rows(doc):
    return sum(len(v) for k, v in doc.items() if k != "errors" and isinstance(v, list) and v
               and all(isinstance(r, dict) for r in v)) if isinstance(doc, dict) else 0


files = {}
for name in sorted(os.listdir(out)):
    if name.endswith(".json") and name != "summary.json":
        try:
            with open(os.path.join(out, name)) as f:
                doc = json.load(f)
            files[name] = {"rows": rows(doc), "complete": doc.get("complete"), "errors": doc.get("errors")}
        except (OSError, ValueError) as exc:
            files[name] = {"rows": 0, "unreadable": f"{type(exc).__name__}: {exc}"}
steps = [dict(zip(("step", "exit", "seconds"), s.split(":"))) for s in os.environ["GPU_CHECK_STEPS"].split()]
for s in steps:
    s["exit"], s["seconds"] = int(s["exit"]), int(s["seconds"])
where = {m: (lambda spec: spec.origin if spec else None)(importlib.util.find_spec(m))
         for m in ("cpsweep", "torch", "mnist1d", "ray", "plotly")}
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=10).stdout.strip()
except (OSError, subprocess.SubprocessError):
    gpu = None
total = sum(f["rows"] for f in files.values())
summary = {"device": device, "quick": quick, "seconds": int(os.environ["GPU_CHECK_SECONDS"]), "gpu": gpu,
           "python": sys.version.split()[0], "modules": where, "steps": steps, "files": files, "rows": total}
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
print("summary:", ", ".join(f"{s['step']} exit {s['exit']} ({s['seconds']} s)" for s in steps))
print("rows:", ", ".join(f"{k} {v['rows']}{'' if v.get('complete') else ' (incomplete)'}" for k, v in files.items()))
if total == 0:
    print(f"nothing was measured: no JSON file in {out} holds a row")
    sys.exit(1)
PY
rc=${PIPESTATUS[0]}
[ -s "$out/summary.json" ] || { echo "gpu_check.sh: no summary written (is $py a working Python?)" >&2; exit 1; }
[ "$rc" = 0 ] || echo "gpu_check.sh: NOTHING WAS MEASURED (no JSON in $out holds a row): see $log" >&2
exit "$rc"
