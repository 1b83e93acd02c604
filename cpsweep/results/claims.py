"""Reproduction checks: do a set of sweeps show the paper's claims? (`checks.py`: the verdicts, the
`Check` record and the paired views every check uses; `fisher_claims.py`: the Fisher checks.)

`run_checks(get)` runs every check in `CHECKS` on the sweeps `get(name)` returns (None where a sweep is
missing) and returns one row per claim: key, claim, source, test, measured, verdict.
"""

from __future__ import annotations

import re
from typing import Callable

import pandas as pd

from . import stats
from .checks import (CONTROLS, PAPER, VERDICTS, Check, Getter, by_schedule, combine, contrast, contrast_check,
                     paper_schedule, schedule_contrasts, sensitivities, settings_differ, window)
from .fisher_claims import check_fisher_peak, check_layer_shift, check_robustness
from .reduce import seed_sensitivity
from .store import Results

__all__ = ["CHECKS", "VERDICTS", "Check", "combine", "run_checks", "seed_sensitivity"]

def check_early_vs_late(get: Getter) -> Check:
    key, claim, source = "early_vs_late", "Blur: an early window costs more than a late one", f"{PAPER} (claim 1)"
    test = ("per seed, sensitivity of the earliest onset minus the latest, at every window length, under the "
            "paper's schedule (the sweep's own, never restarted); 95 % t-interval above zero, >= 3 seeds. "
            "Every other schedule of the sweep is tested the same way and listed")
    ss, missing = sensitivities(get, "blur_grid", key, claim, source, test, deficit="blur")
    if missing:
        return missing
    per = schedule_contrasts(ss)
    main = [label for label in per if label not in CONTROLS]
    if not main:
        return Check(key, claim, source, test, "no window under the paper's schedule", "not run")
    shows = [label or "the sweep's schedule" for label, (v, _) in per.items() if combine(v) == "reproduced"]
    parts = [f"shown under: {', '.join(shows) or 'none'}"]
    parts += [f"{label or 'schedule'}: {'; '.join(texts)}" for label, (_, texts) in per.items()]
    return Check(key, claim, source, test, " | ".join(parts), combine([v for m in main for v in per[m][0]]))


def check_annealing(get: Getter) -> Check:
    key = "annealing"
    claim = "The early-late difference is not the decayed learning rate: it holds with the rate restarted " \
            "after the deficit and with a constant rate"
    source = "PAPER.md (the learning-rate confound of late windows; a constant rate as a control)"
    test = ("per seed, earliest minus latest onset at every length under grid.schedule restart and constant: "
            "95 % t-interval above zero (holds), or equivalent to zero within +-0.5 pts (two one-sided t-tests; "
            "then the difference is mostly annealing), >= 3 seeds")
    ss, missing = sensitivities(get, "blur_grid", key, claim, source, test, deficit="blur")
    if missing:
        return missing
    per = schedule_contrasts(ss)
    controls = [c for c in CONTROLS if c in per]
    if not controls:
        return Check(key, claim, source, test, "blur_grid has no schedule controls (grid.schedule: "
                                               "[exponential, restart, constant])", "not run")
    parts, verdicts, gone = [], [], []
    for c in controls:
        verdict = combine(per[c][0])
        if verdict != "reproduced":  # no effect shown: is it shown absent?
            part = by_schedule(ss)[c]
            absent = [stats.no_effect_verdict(contrast(part, length)[0])[0] for length in sorted(part.length.unique())]
            if absent and all(a == "reproduced" for a in absent):
                verdict = "not reproduced"
                gone.append(c)
        verdicts.append(verdict)
        parts.append(f"{c}: {'; '.join(per[c][1])}")
    lead = (f"mostly annealing: the difference vanishes under {', '.join(gone)}. " if gone else "")
    return Check(key, claim, source, test, lead + " | ".join(parts), combine(verdicts))


def check_late_windows(get: Getter) -> Check:
    claim, source = "Blur: the same window late in training does no lasting harm", f"{PAPER} (claim 1)"
    test = ("per seed, sensitivity of the latest onset at every length; equivalent to zero within +-0.5 pts "
            "(two one-sided t-tests at 5 %), >= 3 seeds")
    ss, missing = sensitivities(get, "blur_grid", "late_windows", claim, source, test, deficit="blur")
    if missing:
        return missing
    ss = paper_schedule(ss)
    parts, verdicts = [], []
    for length in sorted(ss.length.unique()):
        late = ss[ss.length == length].onset.max()
        values = window(ss, late, length)
        verdict, reason = stats.no_effect_verdict(values)
        verdicts.append(verdict)
        parts.append(f"onset {late}, length {length}: {stats.interval(values)} pts: {reason}")
    return Check("late_windows", claim, source, test, "; ".join(parts), combine(verdicts))


def check_removal(get: Getter) -> Check:
    claim, source = "Blur removal: the later the blur is removed, the lower the final accuracy", \
        f"{PAPER} (claim 1), PAPER.md (removal protocol)"
    test = "per seed, sensitivity at the last removal epoch minus the first; 95 % t-interval above zero"
    ss, missing = sensitivities(get, "blur_removal", "removal", claim, source, test, deficit="blur")
    if missing:
        return missing
    ss = ss[ss.onset == 0]
    ks = sorted(ss.length.unique())
    if len(ks) < 2:
        return Check("removal", claim, source, test, "fewer than two removal epochs finished", "not run")
    diff = stats.paired(window(ss, 0, ks[-1]), window(ss, 0, ks[0]))
    verdict, reason = stats.effect_verdict(diff)
    per_k = ", ".join(f"k={k}: {stats.interval(window(ss, 0, k)).mean:.2f}" for k in ks)
    return Check("removal", claim, source, test,
                 f"{per_k} pts; k={ks[-1]} minus k={ks[0]}: {stats.interval(diff)}: {reason}", verdict)


def _blur_context(get: Getter, r: Results, allowed: tuple[str, ...]) -> pd.DataFrame:
    """blur_grid's per-seed sensitivities, for context, when its settings equal `r`'s but for `allowed`
    (else empty)."""
    b = get("blur_grid")
    if b is None or settings_differ(r, b, allowed):
        return pd.DataFrame(columns=["onset", "length", "deficit", "seed", "sens"])
    return paper_schedule(seed_sensitivity(b.trials, b.epochs))


def _no_lasting_effect(get: Getter, key: str, name: str, claim: str, source: str) -> Check:
    """Every window of the deficit's sweep: equivalent to zero within the margin (TOST)."""
    test = ("per seed, the window's sensitivity; equivalent to zero within +-0.5 pts (two one-sided t-tests "
            "at 5 %) at every window, >= 3 seeds")
    ss, missing = sensitivities(get, name, key, claim, source, test)
    if missing:
        return missing
    parts, verdicts = [], []
    blur_ss = _blur_context(get, get(name), ("deficit",))
    for (onset, length), part in ss.groupby(["onset", "length"], sort=True):
        values = part.set_index("seed").sens
        verdict, reason = stats.no_effect_verdict(values)
        verdicts.append(verdict)
        blur = window(blur_ss, onset, length, deficit="blur")
        context = f" (blur over the same window: {stats.interval(blur)})" if len(blur) else ""
        parts.append(f"window [{onset}, {onset + length}): {stats.interval(values)} pts{context}: {reason}")
    return Check(key, claim, source, test, "; ".join(parts), combine(verdicts))


def check_vflip(get: Getter) -> Check:
    return _no_lasting_effect(get, "vflip", "vflip", "Vertical flip (keeps low-level statistics) has no "
                              "lasting effect", f"{PAPER} (claim 2)")


def check_label_permutation(get: Getter) -> Check:
    return _no_lasting_effect(get, "label_permutation", "label_permutation",
                              "Permuted class names (a high-level deficit) leave no lasting loss",
                              "paper (claim 2: high-level deficits), PAPER.md (other deficits)")


def check_noise(get: Getter) -> Check:
    return _no_lasting_effect(get, "noise", "noise", "Sensory deprivation (noise inputs) leaves no lasting loss",
                              "PAPER.md (other deficits)")


def check_label_shuffle(get: Getter) -> Check:
    c = _no_lasting_effect(get, "label_shuffle", "label_shuffle",
                           "Random labels (the other reading of label permutation)",
                           "none: reported to tell the two readings apart")
    return c if c.verdict == "not run" else Check(c.key, c.claim, c.source, c.test, c.measured, "measured")


def _depth_of(tags: str) -> int:
    m = re.search(r"hidden=\(([^)]*)\)", tags)
    return len([x for x in m.group(1).split(",") if x.strip()]) if m else 0


def check_depth(get: Getter) -> Check:
    claim, source = "Deeper networks show a more pronounced critical period", f"{PAPER} (claim 1)"
    test = ("per seed, the deepest net's loss minus the shallowest's: after the longest deficit [0, k) (the "
            "removal protocol), or of (early minus late sensitivity) for sliding windows; 95 % t-interval above "
            "zero, >= 3 seeds")
    ss, missing = sensitivities(get, "mlp_depth", "depth", claim, source, test)
    if missing:
        return missing
    by_depth = {_depth_of(t): part for t, part in ss.groupby("tags")}
    if len(by_depth) < 2:
        return Check("depth", claim, source, test, "needs at least two depths (grid model.hidden)", "not run")
    if ss.onset.nunique() == 1:  # the removal protocol: the loss after the longest deficit
        onset, k = int(ss.onset.iloc[0]), int(ss.length.max())
        effects = {d: (window(part, onset, k), f"[{onset}, {k}) {stats.interval(window(part, onset, k))} pts")
                   for d, part in sorted(by_depth.items())}
    else:
        effects = {d: contrast(part) for d, part in sorted(by_depth.items())}
    diff = stats.paired(effects[max(effects)][0], effects[min(effects)][0])
    verdict, reason = stats.effect_verdict(diff)
    parts = [f"{d} hidden layer{'s' * (d > 1)}: {text}" + ("" if ss.onset.nunique() == 1 else
                                                          f", early minus late {stats.interval(c)}")
             for d, (c, text) in effects.items()]
    return Check("depth", claim, source, test,
                 "; ".join(parts) + f"; deepest minus shallowest {stats.interval(diff)}: {reason}", verdict)


def check_architecture(get: Getter) -> Check:
    return contrast_check(get, "architecture", "resnet18", "The critical period persists in ResNet-18",
                           f"{PAPER} (claim 4)")


def check_adam(get: Getter) -> Check:
    return contrast_check(get, "adam", "adam", "The critical period persists with Adam", f"{PAPER} (claim 4)")


def check_lr_restart(get: Getter) -> Check:
    claim = "Restarting the learning rate after the deficit almost closes the gap"
    source = "PAPER.md (a 2025 study)"
    test = ("per seed at the earliest window: its sensitivity under the paper's schedule minus under the "
            "restarted one (grid.schedule of blur_grid), 95 % t-interval above zero (the gap narrows), and the "
            "restarted sensitivity equivalent to zero within +-0.5 pts (closed)")
    ss, missing = sensitivities(get, "blur_grid", "lr_restart", claim, source, test, deficit="blur")
    if missing:
        return missing
    parts = by_schedule(ss)
    main = next((label for label in parts if label not in CONTROLS), None)
    if "restart" not in parts or main is None:
        return Check("lr_restart", claim, source, test, "blur_grid has no restart schedule beside the paper's "
                                                       "(grid.schedule: [exponential, restart])", "not run")
    r, b = parts["restart"], parts[main]
    common = sorted(set(zip(r.onset, r.length)) & set(zip(b.onset, b.length)), key=lambda w: (w[0], -w[1]))
    if not common:
        return Check("lr_restart", claim, source, test, "no window under both schedules", "not run")
    onset, length = common[0]
    restart, blur = window(r, onset, length), window(b, onset, length)
    narrows, narrow_reason = stats.effect_verdict(stats.paired(blur, restart))
    closed, closed_reason = stats.no_effect_verdict(restart)
    measured = (f"window [{onset}, {onset + length}): restarted {stats.interval(restart)} pts, without restart "
                f"{stats.interval(blur)}; without minus restarted {stats.interval(stats.paired(blur, restart))}: "
                f"{narrow_reason}; closed: {closed_reason}")
    return Check("lr_restart", claim, source, test, measured, combine([narrows, closed]))


CHECKS: list[Callable[[Getter], Check]] = [
    check_early_vs_late, check_annealing, check_lr_restart, check_late_windows, check_removal, check_vflip,
    check_label_permutation, check_label_shuffle, check_noise, check_fisher_peak, check_layer_shift, check_depth,
    check_architecture, check_adam, check_robustness]


def run_checks(get: Getter) -> pd.DataFrame:
    """Every check, as a table: key, claim, source, test, measured, verdict."""
    return pd.DataFrame([vars(c(get)) for c in CHECKS], columns=["key", "claim", "source", "test", "measured",
                                                                  "verdict"])

