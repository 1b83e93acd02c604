"""Ray's overhead: a sweep under `cpsweep launch` against the same trials back to back in one process.

    python benchmarks/bench_ray_overhead.py [--spec sweeps/quickstart.yaml] [--out benchmarks/results/ray_overhead.json]

Both on this machine: (a) `cpsweep launch` in a subprocess with fresh storage (local Ray start, Tune,
checkpoints, Parquet, report), trials in parallel on the machine's cores; (b) `train_trial` for every
trial of the grid, one after the other, in this process with torch's default threads. Prints a table and
the ratio of wall times (below 1: the sweep's parallelism wins over Ray's fixed costs).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from cpsweep.config.sweep_file import load_sweep
from cpsweep.engine.trial import train_trial

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default=os.path.join(ROOT, "sweeps", "quickstart.yaml"))
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "ray_overhead.json"))
    args = p.parse_args(argv)
    trials = load_sweep(args.spec).trials()
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"), "RAY_USAGE_STATS_ENABLED": "0"}
    with tempfile.TemporaryDirectory() as storage:
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "cpsweep.cli", "launch", args.spec, "--storage", storage],
                             env=env, capture_output=True, text=True)
        launch_s = time.perf_counter() - start
    if res.returncode != 0:
        print(res.stdout + res.stderr, file=sys.stderr)
        return 1
    start = time.perf_counter()
    epochs = 0
    for trial in trials:
        epochs += sum(1 for _ in train_trial(trial, "cpu"))
    serial_s = time.perf_counter() - start
    rows = [{"mode": "cpsweep launch (local Ray, Tune)", "seconds": launch_s},
            {"mode": f"train_trial back to back ({torch.get_num_threads()} threads)", "seconds": serial_s}]
    print(f"{len(trials)} trials, {epochs} epochs, {os.cpu_count()} cores")
    print(f"{'mode':45} {'wall s':>8}")
    for r in rows:
        print(f"{r['mode']:45} {r['seconds']:8.1f}")
    print(f"ratio launch / back-to-back: {launch_s / serial_s:.2f}")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"spec": os.path.relpath(args.spec, ROOT), "trials": len(trials), "epochs": epochs,
                   "cores": os.cpu_count(), "rows": rows, "ratio": launch_s / serial_s}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
