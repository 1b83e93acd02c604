"""Variants of a sweep: the same file shrunk for a quick end-to-end check, or an adaptive sweep as its
full grid (no torch, no ray).

    smoke_sweep(sweep)       `cpsweep launch --smoke`: 3 epochs, two windows, one seed, results under <name>-smoke
    full_grid_sweep(sweep)   `cpsweep launch --full-grid`: every onset of a `search:` sweep, under <name>-grid
"""

from __future__ import annotations

import copy

from ..errors import SpecError
from .sweep_file import SweepSpec, parse_sweep


def full_grid_sweep(sweep: SweepSpec) -> SweepSpec:
    """An adaptive sweep as the plain grid of every onset of its range, under `<name>-grid` (`cpsweep launch
    --full-grid`: the reference a search is checked against; the trials are the same, so results agree
    bit for bit where both ran)."""
    if sweep.search is None:
        raise SpecError("--full-grid", f"sweep {sweep.name!r} has no search: section, so it runs every onset "
                                       f"already; drop --full-grid", sweep.source)
    raw = copy.deepcopy(sweep.raw)
    raw["name"] = f"{sweep.name}-grid"
    raw.pop("search")
    return parse_sweep(raw, sweep.source)


SMOKE = {"epochs": 3, "subset": 256, "probe_per_class": 2, "bn_refresh": 2, "batch_size": 64}


def smoke_sweep(sweep: SweepSpec) -> SweepSpec:
    """The same sweep shrunk for a quick end-to-end check: 3 epochs for every trial (`common_end`: the windows
    [0, 1) and [1, 2) get 2 and 1 clean epochs), one seed, 256 training examples, a tiny Fisher probe, one
    CPU per trial; every other axis (deficits, models, ...) kept."""
    raw = copy.deepcopy(sweep.raw)
    raw["name"] = f"{sweep.name}-smoke"
    raw.pop("clean_after", None)
    raw.pop("search", None)  # two onsets: nothing to search
    raw["epochs"], raw["replicates"], raw["bn_refresh"] = SMOKE["epochs"], 1, SMOKE["bn_refresh"]
    raw["common_end"] = True  # windows [0, 1) and [1, 2) both stop at epoch 3: 2 and 1 clean epochs
    grid = dict(raw["grid"])
    grid["onset"], grid["length"] = [0, 1], [1]
    if "seed" in grid:
        grid["seed"] = grid["seed"][:1]
    raw["grid"] = grid
    raw["data"] = {**(raw.get("data") or {}), "subset": SMOKE["subset"]}
    raw["fisher"] = {**(raw.get("fisher") or {}), "probe_per_class": SMOKE["probe_per_class"]}
    optim = dict(raw.get("optim") or {})
    optim["batch_size"] = min(optim.get("batch_size", 128), SMOKE["batch_size"])
    raw["optim"] = optim
    raw["resources"] = {**(raw.get("resources") or {}), "cpu": 1}  # the GPU share is kept only if there are GPUs
    return parse_sweep(raw, sweep.source)
