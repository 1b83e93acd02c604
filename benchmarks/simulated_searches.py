"""Simulated searches: the adaptive search's own decisions on sensitivities of known shape plus noise.

`simulate(sweep, truth, sd, rng)` runs the search itself (`cpsweep.sweep.adaptive.Search`) on a real sweep
spec (so the epochs each round costs are that sweep's, shared prefixes on) but replaces training by a
draw: the sensitivity of the window at onset o for seed s is `truth(o) + N(0, sd^2)`, drawn once for every
onset of the lattice, so that the full grid is judged on the same draws. Each run reports where the search
put the end (the last onset shown "in", and the next lattice onset), whether that brackets the true end,
whether it is the full grid's answer on the same draws, and the epochs it cost against the full grid's.
The end the search gives is the first lattice onset after the last one shown "in" (`Boundary.next_onset`):
"within the resolution" means within one lattice step of the true end; "brackets" that the true end lies
in (last "in", next onset].

    truth = step(end=62.5, size=2.0)     # sensitivity 2 points before onset 62.5, 0 from there
    truth = ramp(end=62.5, size=4.0)     # 4 points at onset 0, falling linearly to 0 at onset 62.5
    runs = simulate_many(sweep, "step", sd=0.5, size=2.0, runs=200, seed=0)

`benchmarks/search_simulation.py` prints the table of docs/adaptive.md; tests/test_boundary.py checks it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from cpsweep.config.sweep_file import SweepSpec
from cpsweep.results.boundary import IN, classify_windows, locate
from cpsweep.sweep.adaptive import GridCache, Search

Truth = Callable[[float], float]


def step(end: float, size: float) -> Truth:
    """`size` points of sensitivity for onsets before `end`, none from there."""
    return lambda o: size if o < end else 0.0


def ramp(end: float, size: float) -> Truth:
    """`size` points at onset 0, falling linearly to none at `end`, none after."""
    return lambda o: size * max(0.0, 1.0 - o / end)


SHAPES = {"step": step, "ramp": ramp}


def simulate(sweep: SweepSpec, truth: Truth, sd: float, rng: np.random.Generator, end: float | None = None,
             cache: GridCache | None = None) -> dict:
    """One simulated search of `sweep` (one window group: its first), and the full grid on the same draws;
    `cache`: `Search`'s cache, shared by the runs of one sweep."""
    search = Search(sweep, cache=cache)
    group = search.groups[0]
    seeds = list(sweep.grid.get("seed", sweep.seeds))
    lattice = search.lattice
    draws = {(o, s): truth(o) + sd * rng.standard_normal() for o in lattice for s in seeds}

    def table(onsets) -> pd.DataFrame:
        return pd.DataFrame([{"deficit": group[0], "tags": group[1], "length": group[2], "onset": o, "seed": s,
                              "sens": draws[o, s]} for o in sorted(onsets) for s in seeds])

    while search.step(table({k[3] for k in search.chosen if tuple(k[:3]) == group})) is not None:
        pass
    found = locate(search.points[group], lattice)
    t = search.settings
    full_points = classify_windows(table(lattice), t.threshold, t.margin)[group]  # Benjamini-Hochberg over every onset
    full = locate(full_points, lattice)
    first_clean = next((o for o in lattice if end is not None and o >= end), None)
    resolution = min(b - a for a, b in zip(lattice, lattice[1:])) if len(lattice) > 1 else 0
    return {"status": found.status, "last_in": found.last_in, "next_onset": found.next_onset,
            "first_out": found.first_out, "full_last_in": full.last_in,
            "agrees": found.last_in == full.last_in,
            "brackets_truth": None if end is None else (found.last_in is not None and found.next_onset == first_clean),
            "full_brackets_truth": None if end is None else (full.last_in is not None and
                                                              full.next_onset == first_clean),
            "within_resolution": None if end is None else _near(found.next_onset, end, resolution),
            "full_within_resolution": None if end is None else _near(full.next_onset, end, resolution),
            "near_full_grid": (found.next_onset is not None and full.next_onset is not None
                               and abs(found.next_onset - full.next_onset) <= resolution),
            "full_in": [p.onset for p in full_points if p.cls == IN],
            "false_in": None if end is None else any(p.cls == IN and p.onset >= end for p in search.points[group]),
            "full_false_in": None if end is None else any(p.cls == IN and p.onset >= end for p in full_points),
            "rounds": search.round + 1, "epochs": search.epochs(), "full_epochs": search.full_epochs[2],
            "sampled": len({k[3] for k in search.chosen if tuple(k[:3]) == group})}


def _near(estimate: int | None, end: float, resolution: int) -> bool:
    """The estimated end (the first lattice onset not shown "in" after the last one that is) lies within one
    resolution step of the true end."""
    return estimate is not None and abs(estimate - end) <= resolution


def simulate_many(sweep: SweepSpec, shape: str, sd: float, size: float, runs: int, seed: int = 0,
                  ends: tuple[float, float] | None = None) -> pd.DataFrame:
    """`runs` simulated searches, the true end drawn uniformly within `ends` (default: the middle 80 % of
    the lattice) and off the lattice; one row per run."""
    rng = np.random.default_rng(seed)
    lattice = sorted(sweep.grid["onset"])
    lo, hi = ends or (lattice[0] + 0.1 * (lattice[-1] - lattice[0]), lattice[0] + 0.9 * (lattice[-1] - lattice[0]))
    rows, cache = [], GridCache(sweep.trials())
    for i in range(runs):
        end = float(rng.uniform(lo, hi))
        if end in lattice:
            end += 0.5
        rows.append({"run": i, "shape": shape, "sd": sd, "size": size, "end": end,
                     **simulate(sweep, SHAPES[shape](end, size), sd, rng, end, cache)})
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> dict:
    """The table's row for one scenario: how often the search found the end, and what it cost."""
    return {"runs": len(runs), "located": float((runs.status == "located").mean()),
            "within_resolution": float(runs.within_resolution.mean()),
            "brackets_truth": float(runs.brackets_truth.mean()),
            "full_grid_within_resolution": float(runs.full_within_resolution.mean()),
            "full_grid_brackets_truth": float(runs.full_brackets_truth.mean()),
            "agrees_with_full_grid": float(runs.agrees.mean()),
            "near_full_grid": float(runs.near_full_grid.mean()),
            "false_in": float(runs.false_in.mean()), "full_grid_false_in": float(runs.full_false_in.mean()),
            "epochs_fraction_mean": float((runs.epochs / runs.full_epochs).mean()),
            "epochs_fraction_max": float((runs.epochs / runs.full_epochs).max()),
            "rounds_mean": float(runs.rounds.mean()), "onsets_mean": float(runs.sampled.mean())}
