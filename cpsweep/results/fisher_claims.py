"""Reproduction checks on the Fisher Information: its rise and fall, the layers that hold the most of it,
the per-layer shift a deficit causes, its link with the sensitivity to a deficit, and the robustness twins
(which also re-test the early-late blur contrast per architecture variant, under each schedule).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as _st

from . import stats
from .checks import (CONTROLS, PAPER, Check, Getter, by_schedule, combine, conjunction, grade_contrasts, graded,
                     length_contrasts, paper_schedule, readable, schedule_name, sensitivities)
from .reduce import fisher_peak, layer_shift, seed_sensitivity, variant_of
from .recovery import unlearned_note

PEAK_PART = 1 / 3       # the Fisher trace must peak within this part of training
FISHER_MARGIN = math.log(1.1)  # a rise or fall of the Fisher trace by less than 10 % is none
CENTRE_MARGIN = 0.05    # a shift of the Fisher mass's centre smaller than this (fraction of the depth) is none
SHARE_MARGIN = 0.05     # a difference of per-layer shares smaller than this is none
CORR_MARGIN = 0.2       # a rank correlation smaller than this is none
WEIGHT_LAYERS = ("Conv1d", "Conv2d", "Linear")  # the connections: modules with weights (BN rows excluded)


def _fisher_parts(p: pd.DataFrame) -> tuple[list[pd.Series], list[float]]:
    """The three per-seed tests of `fisher_peak`'s per-seed table and their margins: log(peak / init) (a rise
    from initialisation), log(peak / final) (a fall to the end), each with the held-out peak (the seed's trace
    where the other seeds' peaks: its own maximum would be biased up by its own noise), and the epochs its
    own peak comes before PEAK_PART of training (an early peak)."""
    before = (PEAK_PART * p.epochs - p.peak_epoch).astype(float)
    return [stats.log_ratio(p.held_peak, p.init), stats.log_ratio(p.held_peak, p.final), before], \
        [FISHER_MARGIN, FISHER_MARGIN, 0.0]


def _fisher_result(p: pd.DataFrame, graded_: Sequence[tuple[str, str]]) -> tuple[list[str], str]:
    """The rise, fall and early-peak verdicts from the three parts' (verdict, reason), and their text."""
    (rise, fall, (early, early_reason)), (up, down, before) = graded_, _fisher_parts(p)[0]
    if p.init.isna().all():
        rise = ("not shown", "not shown: no measurement at initialisation (epoch -1) in these results")
    factor = lambda logs: f"a factor of {math.exp(logs.mean()):.3g}" if logs.notna().any() else "none"  # noqa: E731
    held = ", ".join("-" if np.isnan(e) else str(int(e)) for e in p.held_epoch)
    text = (f"peak at epoch {', '.join(str(e) for e in p.peak_epoch)} of {p.epochs.iloc[0]} (the other seeds' "
            f"peak: epoch {held}); the first "
            f"{PEAK_PART:.0%} minus the peak epoch {stats.interval(before)} epochs: {early_reason}; rise: "
            f"log(peak/init) {stats.interval(up)} ({factor(up)}): {rise[1]}; fall: log(peak/final) "
            f"{stats.interval(down)} ({factor(down)}): {fall[1]}")
    return [rise[0], fall[0], early], text


def _rise_and_fall(p: pd.DataFrame) -> tuple[list[str], str]:
    """The Fisher-peak verdicts of `fisher_peak`'s per-seed table (rise from initialisation, fall to the end,
    an early peak: the mean peak epoch before PEAK_PART of training, by its 95 % interval), and their text.
    The three are tested as one family (`stats.family_verdicts`)."""
    parts, margins = _fisher_parts(p)
    return _fisher_result(p, stats.family_verdicts(parts, "effect", margins, what="parts",
                                                   readable=_fisher_readable(p)))


def _fisher_readable(p: pd.DataFrame) -> list[bool]:
    """Which of the three parts `_fisher_result` lets stand: no rise is shown without a measurement at
    initialisation."""
    return [not p.init.isna().all(), True, True]


def check_fisher_peak(get: Getter) -> Check:
    claim, source = "The baseline's Fisher trace rises fast early in training, then falls", f"{PAPER} (claim 3)"
    test = (f"per seed, log(peak / value at initialisation) and log(peak / final value), the peak being the "
            f"seed's trace at the epoch where the other seeds' mean log trace peaks (its own maximum is biased up "
            f"by its own noise): both 95 % t-intervals above zero and not shown within +-log 1.1 (a 10 % change), "
            f"and its own peak epoch's 95 % t-interval within the first {PEAK_PART:.0%} of training; >= 3 seeds; "
            f"{stats.family_rule('three parts')}")
    r = get("fisher_study")
    if r is None:
        return Check("fisher_peak", claim, source, test, "no fisher_study results", "not run")
    p = fisher_peak(r.epochs, r.trials).set_index("seed")
    if p.empty:
        return Check("fisher_peak", claim, source, test, "no baseline with a Fisher trace", "not run")
    verdicts, text = _rise_and_fall(p)
    return Check("fisher_peak", claim, source, test, text, conjunction(verdicts))


ROBUSTNESS = ("robust_kernel", "robust_width", "robust_bias")


def check_robustness(get: Getter) -> Check:
    key = "robustness"
    claim = "The early-late blur contrast and the Fisher rise and fall survive small architecture changes"
    source = "issue 13 (an independent loop: kernel 3 shrinks the MNIST-1D contrast)"
    test = ("per variant of kernel size, width and conv bias (sweeps/mini/robust_*.yaml), the early_vs_late "
            "test at every window length and the fisher_peak test on its baselines; each as in those checks, "
            "but Holm-corrected over every test of the claim under its schedule (all variants, lengths and "
            "Fisher parts: a test shown not to hold, and one shown to hold unless all are); the contrast also "
            "under the learning-rate controls")
    found = [(name, get(name)) for name in ROBUSTNESS]
    found = [(name, r) for name, r in found if r is not None]
    if not found:
        return Check(key, claim, source, test, "no robust_* results", "not run")
    variants, empty = [], []  # (variant, its sensitivities by schedule, its baselines' fisher_peak table)
    for name, r in found:
        ss = seed_sensitivity(r.trials, r.epochs if len(r.epochs) else None)
        base = r.trials[r.trials.deficit == "none"]
        for variant in sorted(base.tags.map(variant_of).unique()):
            part = ss[ss.tags.map(variant_of) == variant]
            why = "no finished window" if part.empty else unlearned_note(part, r.epochs if len(r.epochs) else None)
            if why:
                empty.append(f"{variant}: {why}")
                continue
            plain = base[(base.tags.map(variant_of) == variant) & (base.onset == 0)]
            plain = plain[plain.tags.isin(paper_schedule(plain).tags)]
            variants.append((variant, by_schedule(part), fisher_peak(r.epochs, plain).set_index("seed")))
    labels = list(dict.fromkeys(label for _, scheds, _ in variants for label in scheds))
    graded_ = {label: _robustness_family(variants, label, len(empty)) for label in labels}
    parts = list(empty)
    verdicts, controls = ["not shown"] * len(empty), {}
    mains = [label for label in labels if label not in CONTROLS]
    for i, (variant, scheds, _) in enumerate(variants):
        per = {label: graded_[label][i][0] for label in labels if label in scheds}
        fisher_verdicts, fisher_text = next((graded_[label][i][1] for label in mains if graded_[label][i][1]),
                                            None) or (["not shown"], "no Fisher trace")
        unrun = [label for label in mains if label not in scheds]  # (its windows ran under a control only)
        verdicts += [v for label, (v, _) in per.items() if label not in CONTROLS] + ["not shown"] * len(unrun)
        verdicts.append(conjunction(fisher_verdicts))
        for label, (v, _) in per.items():
            if label in CONTROLS:
                controls.setdefault(label, []).append(v)
        contrasts = "; ".join([f"{schedule_name(label)}: {text}" for label, (_, text) in per.items()]
                              + [f"{schedule_name(label)}: no finished window" for label in unrun])
        parts.append(f"{variant}: {contrasts}; Fisher {conjunction(fisher_verdicts)}: {fisher_text}")
    return Check(key, claim, source, test, " | ".join(parts), combine(verdicts),
                 "; ".join(f"{c}: {combine(v)}" for c, v in controls.items()) or "no control in the sweeps")


def _robustness_family(variants: list, label: str, empty: int = 0) -> list:
    """Under one schedule: per variant, ((contrast verdict, text), (Fisher verdicts, text) or None), every
    test of the claim under that schedule (each variant's contrast at every length and, under the paper's
    schedule, its Fisher rise, fall and early peak) graded as one family (`stats.family_verdicts`). `empty`:
    variants with no finished window, parts of the claim with nothing to test (so it cannot hold whole)."""
    instances, margins, slots, read = [], [], [], []

    def add(values, margin: float = stats.MARGIN, slot=None, ok: bool = False) -> None:
        """One test of the family; by default a part with nothing to test (so the claim cannot hold whole)."""
        instances.append(values)
        margins.append(margin)
        slots.append(slot)
        read.append(ok)

    for _ in range(empty):
        add([])
    contrasts = [length_contrasts(scheds[label]) if label in scheds else {} for _, scheds, _ in variants]
    for i, ((_, _, p), cs) in enumerate(zip(variants, contrasts)):
        if not cs and label not in CONTROLS:  # no window under the paper's schedule
            add([])
        for length, c in cs.items():
            add([] if c is None else c[0], slot=(i, length), ok=c is not None and readable(c[2]))
        if label not in CONTROLS and len(p):
            for k, (values, margin, ok) in enumerate(zip(*_fisher_parts(p), _fisher_readable(p))):
                add(values, margin, (i, f"fisher{k}"), ok)
        elif label not in CONTROLS:  # no Fisher trace to test
            add([])
    graded_ = dict(zip(slots, stats.family_verdicts(instances, "effect", margins, what="tests", readable=read)))
    out = []
    for i, ((_, _, p), cs) in enumerate(zip(variants, contrasts)):
        contrast = grade_contrasts(cs, {k: graded_[(i, k)] for k in cs}) if cs else None
        fisher = _fisher_result(p, [graded_[(i, f"fisher{k}")] for k in range(3)]) \
            if label not in CONTROLS and len(p) else None
        out.append((contrast, fisher))
    return out


def _layer_shift(get: Getter, key: str, claim: str, at: str, when: str) -> Check:
    """The per-seed shift of the Fisher mass's centre against the baseline at `at` ("window_end" or
    "final", `reduce.layer_shift`), per window, graded as one family over the windows."""
    source = f"{PAPER} (claim 3); docs/paper.md (final per-layer shares)" if at == "final" else f"{PAPER} (claim 3)"
    test = (f"per seed, the shift of the Fisher mass's centre (0: first layer, 1: last) against its baseline at "
            f"{when}, per window; 95 % t-interval above zero, no shift within +-{CENTRE_MARGIN:g} "
            f"({stats.family_rule('windows')})")
    r = get("fisher_study")
    if r is None:
        return Check(key, claim, source, test, "no fisher_study results", "not run")
    s = layer_shift(r.fisher_layers, r.trials, at)
    if s.empty:
        return Check(key, claim, source, test, "no deficit trial with per-layer Fisher", "not run")
    windows = list(s.groupby(["deficit", "tags", "onset", "length"], sort=True))  # each seed once per window
    shifts = [w.set_index("seed").centre_shift for _, w in windows]
    for shift in shifts:
        stats.check_unique_seeds(shift.index, "the per-layer shift of one window")
    graded_ = stats.family_verdicts(shifts, "effect", CENTRE_MARGIN, what="windows")
    texts = [f"window [{onset}, {onset + length}), {when} (epoch {int(w.epoch.iloc[0])}): centre shift "
             f"{stats.interval(shift)}: {reason}; distance {stats.interval(w.tv)} vs seed-to-seed "
             f"{float(w.noise_tv.mean()):.3f}"
             for ((_, _, onset, length), w), shift, (_, reason) in zip(windows, shifts, graded_)]
    return Check(key, claim, source, test, "; ".join(texts), combine([v for v, _ in graded_]))


def check_layer_shift(get: Getter) -> Check:
    claim = "During a blur deficit the per-layer Fisher shares shift towards higher layers"
    return _layer_shift(get, "layer_shift", claim, "window_end", "the window's last epoch")


def check_layer_shift_lasting(get: Getter) -> Check:
    claim = ("The shift of the per-layer Fisher shares towards higher layers outlasts the deficit: it is still "
             "there at the end of training")
    return _layer_shift(get, "layer_shift_lasting", claim, "final", "the last epoch")


def layer_peak(layers: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Per baseline seed: each weight layer's share of the Fisher trace (the modules with weights, input
    to output, BN rows left out), averaged over every measured training epoch, and `stat` = the largest
    share of an intermediate layer minus the larger of the first and the last layer's. Columns: seed,
    shares (a list), peak_layer (0-based among the weight layers), stat."""
    rows = []
    base = trials[(trials.status == "ok") & (trials.deficit == "none") & (trials.onset == 0)]
    for _, t in base.iterrows():
        part = layers[(layers.trial_id == t.trial_id) & (layers.epoch >= 0)]
        if "kind" in part:
            part = part[part.kind.isin(WEIGHT_LAYERS)]
        table = part.pivot_table(index="order", columns="epoch", values="trace", aggfunc="sum").sort_index()
        if len(table) < 3:
            continue
        shares = (table / table.sum(axis=0)).mean(axis=1).to_numpy()
        rows.append({"seed": t.seed, "shares": [float(s) for s in shares], "peak_layer": int(np.argmax(shares)),
                     "stat": float(shares[1:-1].max() - max(shares[0], shares[-1]))})
    return pd.DataFrame(rows, columns=["seed", "shares", "peak_layer", "stat"])


def check_layer_peak(get: Getter) -> Check:
    claim = "The strongest connections form in intermediate layers (the largest per-layer Fisher shares)"
    source, test = f"{PAPER} (claim 3)", ("per baseline seed, each weight layer's share of the Fisher trace "
                                         "averaged over training; the largest intermediate share minus the "
                                         "larger of the first and last layer's: 95 % t-interval above zero "
                                         f"and not shown within +-{SHARE_MARGIN:g}, >= 3 seeds")
    r = get("fisher_study")
    if r is None:
        return Check("layer_peak", claim, source, test, "no fisher_study results", "not run")
    p = layer_peak(r.fisher_layers, r.trials)
    if p.empty:
        return Check("layer_peak", claim, source, test, "no baseline with per-layer Fisher", "not run")
    p = p.set_index("seed")
    verdict, reason = stats.effect_verdict(p.stat, margin=SHARE_MARGIN)
    mean = np.mean(np.stack(p.shares.to_numpy()), axis=0)
    return Check("layer_peak", claim, source, test,
                 f"mean shares, input to output: {', '.join(f'{s:.2f}' for s in mean)}; largest at weight layer "
                 f"{', '.join(str(x) for x in p.peak_layer)} (per seed, 0 = first of {len(mean)}); intermediate "
                 f"minus ends {stats.interval(p.stat)}: {reason}", verdict)


def fisher_at_onsets(epochs: pd.DataFrame, ss: pd.DataFrame) -> pd.Series:
    """For each row of `ss` (per-seed window rows with baseline_id and onset): the Fisher trace of the
    window's own baseline at its onset, i.e. its last measurement before epoch `onset` (the one at
    initialisation, epoch -1, for onset 0); NaN where none was measured within 5 epochs."""
    if "fisher_trace" not in epochs:
        return pd.Series(np.nan, index=ss.index)
    f = epochs[["trial_id", "epoch", "fisher_trace"]].dropna()
    out = []
    for base, onset in zip(ss.baseline_id, ss.onset):
        before = f[(f.trial_id == base) & (f.epoch < onset) & (f.epoch >= onset - 5)]
        out.append(float(before.sort_values("epoch").fisher_trace.iloc[-1]) if len(before) else np.nan)
    return pd.Series(out, index=ss.index)


def _link(epochs: pd.DataFrame):
    def grade(part: pd.DataFrame) -> tuple[str, str]:
        part = part.assign(fisher=fisher_at_onsets(epochs, part)).dropna(subset=["fisher"])
        if part.onset.nunique() < 3:
            return "not shown", "needs the baseline's Fisher trace at three onsets or more"
        lengths = {length: pd.Series({seed: _st.spearmanr(g.fisher, g.sens).statistic
                                      for seed, g in at.groupby("seed") if g.onset.nunique() >= 3}).dropna()
                   for length, at in part.groupby("length")}
        graded_ = stats.family_verdicts(list(lengths.values()), "effect", CORR_MARGIN, what="window lengths")
        texts = [f"length {length}: rank correlation over onsets {stats.interval(r)}: {reason}"
                 for (length, r), (_, reason) in zip(lengths.items(), graded_)]
        return combine([v for v, _ in graded_]), "; ".join(texts)
    return grade


def check_fisher_link(get: Getter) -> Check:
    key = "fisher_link"
    claim = ("Windows cost more at onsets where the Fisher trace is high (over onsets; both fall with time, so "
             "this is necessary for 'the critical period closes as the trace falls', not a test of it)")
    source = f"{PAPER} (claims 1 and 3)"
    test = ("per seed and window length, the rank (Spearman) correlation over onsets between the Fisher trace of "
            "the window's own baseline at the window's onset and the window's loss; 95 % t-interval above zero "
            f"and not shown within +-{CORR_MARGIN:g}, >= 3 seeds ({stats.family_rule('lengths')}); under "
            "the paper's schedule and each "
            "control. Both fall with time, so a positive correlation is necessary for the claim, not sufficient")
    ss, missing, note = sensitivities(get, "blur_grid", key, claim, source, test, deficit="blur")
    if missing:
        return missing
    return graded(key, claim, source, test, ss, _link(get("blur_grid").epochs), note)
