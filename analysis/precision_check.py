"""Does bf16 keep the science? The two precisions of one sweep (`grid: {engine.precision: [fp32, bf16]}`),
side by side: each window's sensitivity per precision, the early-minus-late contrast, and trial by trial
(same seed, same window or baseline) how far bf16's final accuracy lies from fp32's, against the
seed-to-seed spread of fp32.

    cpsweep launch sweeps/precision.yaml --storage results
    python analysis/precision_check.py results/precision [--json out.json]

Prints a table and the sentences docs/throughput.md quotes. Estimates are mean and 95 % t-interval over
seeds (paired by seed; `cpsweep.results.stats`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from cpsweep.errors import CpsweepError
from cpsweep.results import stats
from cpsweep.results.reduce import seed_sensitivity
from cpsweep.storage.folder import load_results
from cpsweep.storage.records import tag_items, tag_values

AXIS = "engine.precision"


def precision_of(tags) -> str:
    return str(tag_values(tags).get(AXIS, "fp32"))


def compare(uri: str) -> dict:
    res = load_results(uri, fisher_layers=False)
    trials = res.trials[res.trials.status == "ok"].copy()
    trials["precision"] = trials.tags.map(precision_of)
    if set(trials.precision) != {"fp32", "bf16"}:
        raise CpsweepError(f"{uri}: needs finished trials in both precisions (grid: {{{AXIS}: [fp32, bf16]}}); "
                           f"found {sorted(set(trials.precision))}")
    sens = seed_sensitivity(res.trials, res.epochs)
    sens["precision"] = sens.tags.map(precision_of)
    windows = []
    for (precision, onset, length), part in sens.groupby(["precision", "onset", "length"], sort=True):
        windows.append({"precision": precision, "onset": int(onset), "length": int(length),
                        **dataclasses.asdict(stats.interval(part.set_index("seed").sens))})
    contrasts = []
    for precision, part in sens.groupby("precision", sort=True):
        early, late = part.onset.min(), part.onset.max()
        for length in sorted(part.length.unique()):
            at = part[part.length == length].set_index("seed")
            diff = stats.paired(at[at.onset == early].sens, at[at.onset == late].sens)
            contrasts.append({"precision": precision, "length": int(length), "early": int(early), "late": int(late),
                              **dataclasses.asdict(stats.interval(diff))})
    # trial by trial: the same trial but for its precision (deficit, window, seed and other axes), in points
    trials["others"] = trials.tags.map(lambda t: ",".join(f"{k}={v}" for k, v in tag_items(t) if k != AXIS))
    same = ["deficit", "onset", "length", "others"]
    acc = trials.pivot_table(index=[*same, "seed"], columns="precision", values="final_test_acc").dropna() * 100
    diff = acc.bf16 - acc.fp32
    fp32 = trials[trials.precision == "fp32"]
    spread = float((fp32.groupby(same).final_test_acc.std(ddof=1) * 100).mean())  # mean SD over seeds
    return {"results": uri, "windows": windows, "contrasts": contrasts,
            "pairs": {"n": int(len(diff)), "mean_abs_diff": float(diff.abs().mean()), "max_abs_diff":
                      float(diff.abs().max()), "mean_diff": float(diff.mean()), "bf16_higher": int((diff > 0).sum()),
                      "fp32_seed_sd": spread},
            "baselines": {p: float(part.final_test_acc.mean() * 100)
                          for p, part in trials[trials.deficit == "none"].groupby("precision")}}


def report(doc: dict) -> str:
    lines = [f"{'precision':9} {'onset':>5} {'length':>6}  sensitivity, pts (mean [95 % CI], n)"]
    for w in doc["windows"]:
        lines.append(f"{w['precision']:9} {w['onset']:>5} {w['length']:>6}  {w['mean']:.2f} [{w['low']:.2f}, "
                     f"{w['high']:.2f}], n={w['n']}")
    for c in doc["contrasts"]:
        lines.append(f"{c['precision']}: onset {c['early']} minus onset {c['late']} (length {c['length']}): "
                     f"{c['mean']:.2f} [{c['low']:.2f}, {c['high']:.2f}] pts, n={c['n']}")
    p = doc["pairs"]
    lines.append(f"trial by trial ({p['n']} pairs): bf16 minus fp32 final accuracy {p['mean_diff']:+.2f} pts on "
                 f"average, |difference| {p['mean_abs_diff']:.2f} on average and {p['max_abs_diff']:.2f} at most; "
                 f"bf16 higher in {p['bf16_higher']} of {p['n']}; fp32's seed-to-seed SD {p['fp32_seed_sd']:.2f} pts")
    base = ", ".join(f"{k} {v:.2f} %" for k, v in sorted(doc["baselines"].items()))
    lines.append(f"baselines' final accuracy: {base}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", help="the results folder of a sweep with both precisions")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    try:
        doc = compare(args.results)
    except CpsweepError as e:
        print(f"precision_check: error: {e}", file=sys.stderr)
        return 2
    print(report(doc))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
