"""An adaptive sweep against the full grid of the same onsets: the same end? for how many epochs?

    cpsweep launch sweeps/mini/blur_boundary.yaml --storage results
    cpsweep launch sweeps/mini/blur_boundary.yaml --storage results --full-grid
    python analysis/search_vs_grid.py results/mini_blur_boundary results/mini_blur_boundary-grid [--json out.json]

Per window group it prints every onset of the lattice with its class (in / out / unclear, the search's
rule: `results/boundary.py`), mean and 95 % interval as the search saw it (and the round that added it)
and as the full grid sees it; then the end each locates (the last onset shown in, and the next one) and
whether they agree, whether the trials both ran have identical final accuracies (the search's trials are
the grid's), and the epochs each trained (`epochs - shared_epochs` summed over its trials) with their ratio.
A grid folder that holds more seeds than the search is read at the search's seeds only.
"""

from __future__ import annotations

import argparse
import json
import sys

from cpsweep.errors import CpsweepError
from cpsweep.results.boundary import classify_windows, locate
from cpsweep.results.reduce import seed_sensitivity
from cpsweep.storage.folder import load_results


def trained(trials) -> int:
    done = trials[trials.status.isin(["ok", "diverged"])]
    return int((done.epochs - done.shared_epochs.fillna(0)).sum())


def compare(search_uri: str, grid_uri: str) -> dict:
    search, grid = load_results(search_uri, fisher_layers=False), load_results(grid_uri, fisher_layers=False)
    if not search.search:
        raise CpsweepError(f"{search_uri} holds no search.json: not an adaptive sweep's results")
    settings, lattice = search.search["settings"], search.search["lattice"]
    seeds = set(search.trials.seed)  # like with like: a grid run with more seeds is read at the search's
    grid.trials = grid.trials[grid.trials.seed.isin(seeds)]
    grid.epochs = grid.epochs[grid.epochs.trial_id.isin(set(grid.trials.trial_id))]
    grid_points = classify_windows(seed_sensitivity(grid.trials, grid.epochs), settings["threshold"],
                                   settings["margin"])
    common = search.trials.merge(grid.trials, on="trial_id", suffixes=("_search", "_grid"))
    common = common[(common.status_search == "ok") & (common.status_grid == "ok")]
    out = {"groups": [], "identical_trials": int((common.final_test_acc_search == common.final_test_acc_grid).sum()),
           "common_trials": len(common), "epochs_search": trained(search.trials), "epochs_grid": trained(grid.trials),
           "seeds": sorted(int(s) for s in seeds),
           "rounds": len(search.search["rounds"])}
    out["fraction"] = out["epochs_search"] / out["epochs_grid"] if out["epochs_grid"] else None
    for g in search.search["groups"]:
        key = (g["deficit"], g["tags"], g["length"])
        full = grid_points.get(key, [])
        found, ref = g["boundary"] or {}, locate(full, lattice).to_dict() if full else {}
        by_onset = {p["onset"]: p for p in g["points"]}
        rows = [{"onset": o, "search": by_onset.get(o), "grid": next((vars(p) for p in full if p.onset == o), None)}
                for o in lattice]
        out["groups"].append({"deficit": g["deficit"], "tags": g["tags"], "length": g["length"], "rows": rows,
                              "search_end": found, "grid_end": ref,
                              "agree": found.get("last_in") == ref.get("last_in")})
    return out


def _cell(p: dict | None, with_round: bool = False) -> str:
    if p is None:
        return f"{'-':>34}"
    ci = "" if p["low"] != p["low"] else f"[{p['low']:5.2f}, {p['high']:5.2f}]"
    r = f" r{p['round']}" if with_round else ""
    return f"{p['cls']:>7} {p['mean']:6.2f} {ci:>16}{r:>4}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("search", help="the adaptive sweep's results folder")
    p.add_argument("grid", help="the full grid's results folder (cpsweep launch ... --full-grid)")
    p.add_argument("--json", default=None, help="also write the comparison here")
    args = p.parse_args(argv)
    try:
        out = compare(args.search, args.grid)
    except CpsweepError as e:
        print(f"search_vs_grid: {e}", file=sys.stderr)
        return 2
    for g in out["groups"]:
        print(f"{g['deficit']} length {g['length']} {g['tags']}")
        print(f"{'onset':>5}  {'search: class, mean, 95 % CI, round':>38}  {'full grid: class, mean, 95 % CI':>34}")
        for r in g["rows"]:
            print(f"{r['onset']:5d}  {_cell(r['search'], True)}  {_cell(r['grid'])}")
        s, f = g["search_end"], g["grid_end"]
        print(f"  search:    {s.get('status')}: {s.get('text')}")
        print(f"  full grid: {f.get('status')}: {f.get('text')}")
        print(f"  the same last onset in: {'yes' if g['agree'] else 'no'}")
    frac = f" ({out['fraction']:.1%})" if out["fraction"] is not None else ""
    print(f"{out['identical_trials']} of the {out['common_trials']} trials both ran have identical final accuracies; "
          f"epochs trained: search {out['epochs_search']:,} in {out['rounds']} round(s), full grid "
          f"{out['epochs_grid']:,}{frac}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
