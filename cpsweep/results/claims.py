"""Reproduction checks: do a set of sweeps show the paper's claims? (`checks.py`: the verdicts, the `Check`
record, the per-schedule grading and the paired views every check uses; `fisher_claims.py`: the Fisher
checks; `window_claims.py`: the claims about window length, the most damaging onset and the end of the
critical period.)

`run_checks(get)` runs every check in `CHECKS` on the sweeps `get(name)` returns (None where a sweep is
missing) and returns one row per claim: key, claim, source, test, measured, verdict, controls, plain.
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from . import stats
from .checks import (CONTROLS, PAPER, VERDICTS, Check, Getter, by_schedule, combine, conjunction, contrast,
                     contrast_check, early_minus_late, graded, lasting, paper_schedule, readable, sensitivities,
                     settings_differ, window)
from .fisher_claims import (check_fisher_link, check_fisher_peak, check_layer_peak, check_layer_shift,
                            check_layer_shift_lasting, check_robustness)
from .reduce import seed_sensitivity
from ..storage.folder import Results
from ..storage.records import tag_values
from .window_claims import check_boundary, check_peak_onset, check_window_length

__all__ = ["CHECKS", "VERDICTS", "Check", "combine", "run_checks", "seed_sensitivity"]


def check_early_vs_late(get: Getter) -> Check:
    key, claim, source = "early_vs_late", "Blur: an early window costs more than a late one", f"{PAPER} (claim 1)"
    test = ("per seed, sensitivity of the earliest onset minus the latest, at every window length; 95 % t-interval "
            f"above zero, >= 3 seeds ({stats.family_rule('lengths')}); graded under the "
            "paper's schedule and under each learning-rate control (the rate restarted after the window; a "
            f"constant rate); {stats.NEGLIGIBLE_RULE}")
    ss, missing, note = sensitivities(get, "blur_grid", key, claim, source, test, deficit="blur")
    return missing or graded(key, claim, source, test, ss, early_minus_late, note)


def _late(part: pd.DataFrame) -> tuple[str, str]:
    """Grader: the latest window of every length is equivalent to no loss (Holm-corrected over the lengths,
    `stats.family_verdicts`)."""
    lates = {k: part[part.length == k].onset.max() for k in sorted(part.length.unique())}
    values = {k: window(part, late, k) for k, late in lates.items()}
    rows = {k: part[(part.onset == late) & (part.length == k)] for k, late in lates.items()}
    graded_ = stats.family_verdicts(list(values.values()), "no effect", what="window lengths",
                                    readable=[readable(r, keep=("reproduced",)) for r in rows.values()])
    verdicts, texts = [], []
    for (length, late), result in zip(lates.items(), graded_):
        verdict, reason = lasting(*result, rows[length], keep=("reproduced",))
        verdicts.append(verdict)
        texts.append(f"onset {late}, length {length}: {stats.interval(values[length])} pts: {reason}")
    return combine(verdicts), "; ".join(texts)


def check_late_windows(get: Getter) -> Check:
    claim, source = "Blur: the same window late in training does no lasting harm", f"{PAPER} (claim 1)"
    test = ("per seed, sensitivity of the latest onset at every length; equivalent to zero within +-0.5 pts "
            "(two one-sided t-tests at 5 %; not reproduced only when a window lies beyond the margin by a "
            f"one-sided t-test at 2.5 %; {stats.family_rule('lengths')}), >= 3 seeds; under the paper's schedule "
            "and each learning-rate control")
    ss, missing, note = sensitivities(get, "blur_grid", "late_windows", claim, source, test, deficit="blur")
    return missing or graded("late_windows", claim, source, test, ss, _late, note)


def _removal(part: pd.DataFrame) -> tuple[str, str]:
    """Grader: the loss after the last removal epoch minus after the first."""
    part = part[part.onset == 0]
    ks = sorted(part.length.unique())
    if len(ks) < 2:
        return "not shown", "fewer than two removal epochs finished"
    diff = stats.paired(window(part, 0, ks[-1]), window(part, 0, ks[0]))
    verdict, reason = lasting(*stats.effect_verdict(diff), part[part.length.isin([ks[0], ks[-1]])])
    per_k = ", ".join(f"k={k}: {stats.interval(window(part, 0, k))}" for k in ks)
    return verdict, f"{per_k} pts; k={ks[-1]} minus k={ks[0]}: {stats.interval(diff)}: {reason}"


def check_removal(get: Getter) -> Check:
    claim, source = "Blur removal: the later the blur is removed, the lower the final accuracy", \
        f"{PAPER} (claim 1), docs/paper.md (removal protocol)"
    test = ("per seed, sensitivity at the last removal epoch minus the first, every removal followed by the same "
            "clean epochs; 95 % t-interval above zero; under the paper's schedule and with the rate restarted "
            f"at the removal; {stats.NEGLIGIBLE_RULE}")
    ss, missing, note = sensitivities(get, "blur_removal", "removal", claim, source, test, deficit="blur")
    return missing or graded("removal", claim, source, test, ss, _removal, note)


OTHER_DEFICITS = ("vflip", "noise", "label_permutation", "label_shuffle")


def check_removal_others(get: Getter) -> Check:
    key, claim = "removal_others", "Removal curves of the other deficits (vertical flip, noise, permuted and " \
                                   "shuffled labels)"
    source, test = "issue 24 (removal curves for every deficit)", (
        "per deficit, per seed, sensitivity at every removal epoch k and the last minus the first; reported (the "
        "no-lasting-effect claims are graded by their own checks)")
    parts = []
    for name in OTHER_DEFICITS:
        ss, missing, note = sensitivities(get, name, key, claim, source, test)
        if missing:
            continue
        parts.append(f"{note}{name}: {_removal(ss)[1]}")
    if not parts:
        return Check(key, claim, source, test, "no removal sweep of another deficit", "not run")
    return Check(key, claim, source, test, " | ".join(parts), "measured")


def _blur_context(get: Getter, r: Results, allowed: tuple[str, ...]) -> pd.DataFrame:
    """blur_grid's per-seed sensitivities, for context, when its settings equal `r`'s but for `allowed`
    (else empty)."""
    b = get("blur_grid")
    if b is None or settings_differ(r, b, allowed):
        return pd.DataFrame(columns=["onset", "length", "deficit", "seed", "sens"])
    return paper_schedule(seed_sensitivity(b.trials, b.epochs if len(b.epochs) else None))


def _no_lasting_effect(get: Getter, key: str, name: str, claim: str, source: str) -> Check:
    """Every window of the deficit's sweep: equivalent to zero within the margin (TOST)."""
    test = ("per seed, the window's sensitivity; equivalent to zero within +-0.5 pts (two one-sided t-tests "
            "at 5 %; not reproduced only when a window lies beyond the margin by a one-sided t-test at 2.5 %, "
            f"{stats.family_rule('windows')}) at every window, >= 3 seeds")
    ss, missing, note = sensitivities(get, name, key, claim, source, test)
    if missing:
        return missing
    parts, verdicts = [], []
    blur_ss = _blur_context(get, get(name), ("deficit",))
    groups = list(ss.groupby(["onset", "length"], sort=True))
    graded_ = stats.family_verdicts([window(part, onset, length) for (onset, length), part in groups],
                                    "no effect", what="windows",
                                    readable=[readable(part, keep=("reproduced",)) for _, part in groups])
    for ((onset, length), part), result in zip(groups, graded_):
        values = window(part, onset, length)
        verdict, reason = lasting(*result, part, keep=("reproduced",))
        verdicts.append(verdict)
        blur = window(blur_ss, onset, length, deficit="blur")
        context = f" (blur over the same window: {stats.interval(blur)})" if len(blur) else ""
        parts.append(f"window [{onset}, {onset + length}): {stats.interval(values)} pts{context}: {reason}")
    return Check(key, claim, source, test, note + "; ".join(parts), combine(verdicts))


def check_vflip(get: Getter) -> Check:
    return _no_lasting_effect(get, "vflip", "vflip", "Vertical flip (keeps low-level statistics) has no "
                              "lasting effect", f"{PAPER} (claim 2)")


def check_label_permutation(get: Getter) -> Check:
    return _no_lasting_effect(get, "label_permutation", "label_permutation",
                              "Permuted class names (a high-level deficit) leave no lasting loss",
                              "paper (claim 2: high-level deficits), docs/paper.md (other deficits)")


def check_noise(get: Getter) -> Check:
    return _no_lasting_effect(get, "noise", "noise", "Sensory deprivation (noise inputs) leaves no lasting loss",
                              "cpsweep's hypothesis, by analogy with claim 2: docs/paper.md lists noise among the "
                              "other deficits without a stated result")


def check_label_shuffle(get: Getter) -> Check:
    c = _no_lasting_effect(get, "label_shuffle", "label_shuffle",
                           "Random labels (the other reading of label permutation)",
                           "none: reported to tell the two readings apart")
    return c if c.verdict == "not run" else Check(c.key, c.claim, c.source, c.test, c.measured, "measured")


def _depth_of(tags: str) -> int:
    """The hidden layers of an MLP trial (its `model.hidden` axis, a tuple of widths); 0 without one."""
    hidden = tag_values(tags).get("model.hidden", ())
    return len(hidden) if isinstance(hidden, (tuple, list)) else 1


def _depth(part: pd.DataFrame) -> tuple[str, str]:
    """Grader: the deepest net's critical period minus the shallowest's, paired by seed: of (early minus late)
    for sliding windows, or of the loss after the longest deficit [0, k) (the removal protocol)."""
    by_depth = {_depth_of(t): p for t, p in part.groupby("tags")}
    if len(by_depth) < 2:
        return "not shown", "needs at least two depths (grid model.hidden)"
    if part.onset.nunique() == 1:
        onset, k = int(part.onset.iloc[0]), int(part.length.max())
        effects = {d: (window(p, onset, k), f"[{onset}, {onset + k}) {stats.interval(window(p, onset, k))} pts",
                       p[p.length == k]) for d, p in sorted(by_depth.items())}
    else:
        effects = {d: contrast(p) for d, p in sorted(by_depth.items())}
    deep, shallow = effects[max(effects)], effects[min(effects)]
    diff = stats.paired(deep[0], shallow[0])
    verdict, reason = lasting(*stats.effect_verdict(diff), pd.concat([deep[2], shallow[2]]))
    texts = [f"{d} hidden layer{'s' * (d > 1)}: {text}" + ("" if part.onset.nunique() == 1 else
                                                          f", early minus late {stats.interval(c)}")
             for d, (c, text, _) in effects.items()]
    return verdict, "; ".join(texts) + f"; deepest minus shallowest {stats.interval(diff)}: {reason}"


def check_depth(get: Getter) -> Check:
    claim, source = "Deeper networks show a more pronounced critical period", f"{PAPER} (claim 1)"
    test = ("per seed, the deepest net's (early minus late window loss) minus the shallowest's, each against its "
            "own baseline (for the removal protocol: the loss after the longest deficit); 95 % t-interval above "
            f"zero, >= 3 seeds; under the paper's schedule and the restarted-rate control; {stats.NEGLIGIBLE_RULE}")
    ss, missing, note = sensitivities(get, "mlp_depth", "depth", claim, source, test)
    return missing or graded("depth", claim, source, test, ss, _depth, note)


def check_architecture(get: Getter) -> Check:
    return contrast_check(get, "architecture", "resnet18", "The critical period persists in another "
                          "architecture (the twin: a 7-block, 48-channel 1-D conv net without skip connections)",
                          f"{PAPER} (claim 4)")


def check_adam(get: Getter) -> Check:
    return contrast_check(get, "adam", "adam", "The critical period persists with Adam", f"{PAPER} (claim 4)")


def check_weight_decay(get: Getter) -> Check:
    return contrast_check(get, "weight_decay", "weight_decay", "Removing weight decay during an early window costs "
                          "more final accuracy than removing it late", "Golatkar, Achille & Soatto 2019")


def check_lr_restart(get: Getter) -> Check:
    claim = "Restarting the learning rate after the deficit almost closes the gap"
    source = "docs/paper.md (a 2025 study)"
    test = ("per seed at the earliest window: its sensitivity under the paper's schedule minus under the "
            "restarted one (grid.schedule of blur_grid), 95 % t-interval above zero (the gap narrows; "
            f"{stats.NEGLIGIBLE_RULE}), and the "
            f"restarted sensitivity equivalent to zero within +-0.5 pts (closed); {stats.family_rule('two parts')}")
    ss, missing, note = sensitivities(get, "blur_grid", "lr_restart", claim, source, test, deficit="blur")
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
    rows = pd.concat([x[(x.onset == onset) & (x.length == length)] for x in (r, b)])
    keeps = [(), ("reproduced",)]  # (a loss shown negligible stands while its window still recovers)
    graded_ = stats.family_verdicts([stats.paired(blur, restart), restart], ["effect", "no effect"], what="parts",
                                    readable=[readable(rows, keep) for keep in keeps])
    (narrows, narrow_reason), (closed, closed_reason) = [lasting(*g, rows, keep) for g, keep in zip(graded_, keeps)]
    measured = (f"window [{onset}, {onset + length}): restarted {stats.interval(restart)} pts, without restart "
                f"{stats.interval(blur)}; without minus restarted {stats.interval(stats.paired(blur, restart))}: "
                f"{narrow_reason}; closed: {closed_reason}")
    return Check("lr_restart", claim, source, test, note + measured, conjunction([narrows, closed]))


CHECKS: list[Callable[[Getter], Check]] = [
    check_early_vs_late, check_late_windows, check_window_length, check_peak_onset, check_boundary,
    check_lr_restart, check_removal, check_removal_others, check_vflip, check_label_permutation,
    check_label_shuffle, check_noise, check_fisher_peak, check_layer_peak, check_layer_shift,
    check_layer_shift_lasting, check_fisher_link,
    check_depth, check_architecture, check_adam, check_robustness, check_weight_decay]

COLUMNS = ["key", "claim", "source", "test", "measured", "verdict", "controls", "plain"]


def run_checks(get: Getter) -> pd.DataFrame:
    """Every check, as a table: key, claim, source, test, measured, verdict, controls, plain."""
    return pd.DataFrame([vars(c(get)) for c in CHECKS], columns=COLUMNS)
