"""What each sweep file costs to run: trials, training epochs from scratch and with shared prefixes, and
GPU-hours at an estimated time per epoch of its model (no GPU timing has been made yet: the estimates come
from each model's FLOPs, docs/cluster.md; a measured figure replaces them once `benchmarks/gpu_check.sh`
has run). Prints a table and writes benchmarks/results/plan_costs.json.

    python benchmarks/plan_costs.py [sweeps/*.yaml ...]
"""

from __future__ import annotations

import glob
import json
import os
import sys

from cpsweep.config.sharing import sharing_summary
from cpsweep.config.sweep_file import load_sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# estimated seconds per training epoch on one A10G- or L4-class GPU (FLOPs at 30-40 % of its FP32 peak;
# docs/cluster.md)
SECONDS_PER_EPOCH = {("all_cnn_c", "cifar10"): 10.0, ("resnet18", "cifar10"): 17.0, ("mlp", "mnist"): 2.0}


def cost(path: str) -> dict:
    sweep = load_sweep(path)
    trials = sweep.trials()
    alone, shared = sharing_summary(trials)
    key = (sweep.base.model.name, sweep.base.data.name)
    per_epoch = SECONDS_PER_EPOCH.get(key)
    hours = (lambda epochs: round(epochs * per_epoch / 3600, 1)) if per_epoch else (lambda epochs: None)
    return {"sweep": os.path.relpath(path, ROOT), "trials": len(trials), "seeds": len(sweep.seeds),
            "epochs_alone": alone, "epochs_shared": shared, "seconds_per_epoch": per_epoch,
            "gpu_hours_alone": hours(alone), "gpu_hours_shared": hours(shared)}


def main(paths: list[str]) -> None:
    rows = [cost(p) for p in paths]
    print(f"{'sweep':32} {'trials':>6} {'seeds':>5} {'epochs alone':>12} {'shared':>8} {'GPU-h alone':>11} "
          f"{'shared':>7}")
    for r in rows:
        h = lambda v: "-" if v is None else f"{v:,.1f}"  # noqa: E731
        print(f"{r['sweep']:32} {r['trials']:>6} {r['seeds']:>5} {r['epochs_alone']:>12,} {r['epochs_shared']:>8,} "
              f"{h(r['gpu_hours_alone']):>11} {h(r['gpu_hours_shared']):>7}")
    paper = [r for r in rows if r["gpu_hours_alone"] is not None]
    print(f"{'paper-scale total':32} {sum(r['trials'] for r in paper):>6} {'':>5} "
          f"{sum(r['epochs_alone'] for r in paper):>12,} {sum(r['epochs_shared'] for r in paper):>8,} "
          f"{sum(r['gpu_hours_alone'] for r in paper):>11,.1f} {sum(r['gpu_hours_shared'] for r in paper):>7,.1f}")
    out = os.path.join(ROOT, "benchmarks", "results", "plan_costs.json")
    with open(out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"wrote {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:] or sorted(glob.glob(os.path.join(ROOT, "sweeps", "*.yaml"))
                               + glob.glob(os.path.join(ROOT, "sweeps", "mini", "*.yaml"))))
