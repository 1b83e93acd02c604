"""How well and how cheaply the adaptive search finds the end of a critical period, on simulated sweeps.

Each scenario runs a few hundred searches of sweeps/mini/blur_boundary.yaml (onsets 0-100 every 5
epochs, 20-epoch windows, 60 clean epochs after each; its paper's schedule) through the search's own
decisions (`simulated_searches.py`), with the per-seed sensitivity drawn from a known shape plus noise
instead of trained: a step (the effect stops at the true end) or a ramp (it fades linearly to zero there),
the true end uniform in onsets 10-90. The full grid is judged on the same draws. Columns:

    within res.    the search's end (the first onset after the last one shown "in") is within 5 epochs
                   (one lattice step) of the true end
    grid within    the same for the full grid on the same draws
    near grid      the search's end is within 5 epochs of the full grid's
    false in       runs where an onset at or after the true end (anywhere, with no effect: size 0) is shown
                   "in", by the search / by the full grid (Benjamini-Hochberg over the onsets, 2.5 %)
    epochs         mean (max) epochs the search trains, with shared prefixes, as a share of the full grid's

    python benchmarks/search_simulation.py [--runs 300]

Prints the table and writes benchmarks/results/search_simulation.json (docs/adaptive.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import yaml

from cpsweep.config.sweep_file import load_sweep, parse_sweep
from simulated_searches import simulate_many, summarise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "sweeps", "mini", "blur_boundary.yaml")
# (shape, effect size in points, noise sd per seed in points, seeds); the MNIST-1D blur twin's windows cost
# about 1 point with a per-seed sd of about 0.4 (docs/adaptive.md)
SCENARIOS = [("step", 2.0, 0.25, 3), ("step", 2.0, 0.25, 5), ("step", 2.0, 0.5, 5), ("step", 1.0, 0.4, 3),
             ("step", 1.0, 0.4, 5), ("ramp", 4.0, 0.25, 5), ("ramp", 2.0, 0.4, 5), ("step", 0.0, 0.4, 5)]


def sweep_with(seeds: int):
    sweep = load_sweep(SPEC)
    raw = yaml.safe_load(open(SPEC))
    raw["replicates"] = seeds
    return sweep if seeds == len(sweep.seeds) else parse_sweep(raw, SPEC)


def main(runs: int) -> None:
    rows = []
    print(f"{'shape':6} {'size':>5} {'sd':>5} {'seeds':>5} {'runs':>5} {'located':>8} {'within res.':>11} "
          f"{'grid within':>11} {'near grid':>9} {'false in':>11} {'epochs mean (max)':>18} {'rounds':>6} "
          f"{'onsets':>6}")
    for i, (shape, size, sd, seeds) in enumerate(SCENARIOS):
        start = time.time()
        ends = (-1.0, -0.5) if size == 0 else None  # no effect: every onset is at or after the "end"
        s = summarise(simulate_many(sweep_with(seeds), shape, sd=sd, size=size, runs=runs, seed=100 + i, ends=ends))
        rows.append({"shape": shape, "size": size, "sd": sd, "seeds": seeds, **s,
                     "seconds": round(time.time() - start, 1)})
        print(f"{shape:6} {size:5.1f} {sd:5.2f} {seeds:5d} {s['runs']:5d} {s['located']:8.0%} "
              f"{s['within_resolution']:11.0%} {s['full_grid_within_resolution']:11.0%} {s['near_full_grid']:9.0%} "
              f"{s['false_in']:5.1%}/{s['full_grid_false_in']:5.1%} "
              f"{s['epochs_fraction_mean']:10.0%} ({s['epochs_fraction_max']:.0%}) {s['rounds_mean']:6.1f} "
              f"{s['onsets_mean']:6.1f}")
    out = os.path.join(ROOT, "benchmarks", "results", "search_simulation.json")
    with open(out, "w") as f:
        json.dump({"spec": os.path.relpath(SPEC, ROOT), "runs": runs, "scenarios": rows}, f, indent=1)
    print(f"wrote {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=300, help="simulated searches per scenario")
    main(p.parse_args().runs)
