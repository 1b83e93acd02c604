"""Reproduction checks on the Fisher Information: its rise and fall, the per-layer shift a deficit causes,
and the robustness twins (which also re-test the early-late blur contrast per architecture variant).
"""

from __future__ import annotations

import math

import pandas as pd

from . import stats
from .checks import PAPER, Check, Getter, combine, contrast
from .reduce import fisher_peak, layer_shift, seed_sensitivity

PEAK_PART = 1 / 3       # the Fisher trace must peak within this part of training
FISHER_MARGIN = math.log(1.1)  # a rise or fall of the Fisher trace by less than 10 % is none
CENTRE_MARGIN = 0.05    # a shift of the Fisher mass's centre smaller than this (fraction of the depth) is none


def _rise_and_fall(p: pd.DataFrame) -> tuple[list[str], str]:
    """The Fisher-peak verdicts (rise from initialisation, fall to the end, an early peak) of `fisher_peak`'s
    per-seed table, and their text."""
    early = bool((p.peak_epoch < PEAK_PART * p.epochs).all())
    fall, fall_reason = stats.effect_verdict(stats.log_ratio(p.peak, p.final), margin=FISHER_MARGIN)
    if p.init.isna().all():
        rise, rise_reason = "not shown", "not shown: no measurement at initialisation (epoch -1) in these results"
    else:
        rise, rise_reason = stats.effect_verdict(stats.log_ratio(p.peak, p.init), margin=FISHER_MARGIN)
    text = (f"peak at epoch {', '.join(str(e) for e in p.peak_epoch)} of {p.epochs.iloc[0]} "
            f"({'within' if early else 'not all within'} the first {PEAK_PART:.0%}); rise: init/peak "
            f"{stats.interval(p.init / p.peak)}: {rise_reason}; fall: final/peak {stats.interval(p.final / p.peak)}: "
            f"{fall_reason}")
    return [rise, fall] + ([] if early else ["not reproduced"]), text


def check_fisher_peak(get: Getter) -> Check:
    claim, source = "The baseline's Fisher trace rises fast early in training, then falls", f"{PAPER} (claim 3)"
    test = (f"per seed, log(peak / value at initialisation) and log(peak / final value): both 95 % t-intervals "
            f"above zero (a change below 10 % is none), and every peak within the first {PEAK_PART:.0%} of "
            f"training")
    r = get("fisher_study")
    if r is None:
        return Check("fisher_peak", claim, source, test, "no fisher_study results", "not run")
    p = fisher_peak(r.epochs, r.trials).set_index("seed")
    if p.empty:
        return Check("fisher_peak", claim, source, test, "no baseline with a Fisher trace", "not run")
    verdicts, text = _rise_and_fall(p)
    return Check("fisher_peak", claim, source, test, text, combine(verdicts))


ROBUSTNESS = ("robust_kernel", "robust_width", "robust_bias")


def check_robustness(get: Getter) -> Check:
    key = "robustness"
    claim = "The early-late blur contrast and the Fisher rise and fall survive small architecture changes"
    source = "issue 13 (an independent loop: kernel 3 shrinks the MNIST-1D contrast)"
    test = ("per variant of kernel size, width and conv bias (sweeps/mini/robust_*.yaml), the early_vs_late "
            "test at the longest window and the fisher_peak test on its baselines; each as in those checks")
    found = [(name, get(name)) for name in ROBUSTNESS]
    found = [(name, r) for name, r in found if r is not None]
    if not found:
        return Check(key, claim, source, test, "no robust_* results", "not run")
    parts, verdicts = [], []
    for name, r in found:
        ss = seed_sensitivity(r.trials, r.epochs)
        for tags in sorted(r.trials[r.trials.deficit == "none"].tags.unique()):
            part = ss[ss.tags == tags]
            if part.onset.nunique() < 2:
                parts.append(f"{tags}: no early and late window finished")
                verdicts.append("not shown")
                continue
            diff, text = contrast(part)
            contrast_verdict, reason = stats.effect_verdict(diff)
            p = fisher_peak(r.epochs, r.trials[r.trials.tags == tags]).set_index("seed")
            fisher_verdicts, fisher_text = _rise_and_fall(p) if len(p) else (["not shown"], "no Fisher trace")
            verdicts += [contrast_verdict, combine(fisher_verdicts)]
            parts.append(f"{tags}: early minus late {stats.interval(diff)}: {reason} ({text}); Fisher "
                         f"{combine(fisher_verdicts)}: {fisher_text}")
    return Check(key, claim, source, test, " | ".join(parts), combine(verdicts))


def check_layer_shift(get: Getter) -> Check:
    claim = "A blur deficit shifts the per-layer Fisher shares towards higher layers"
    source, test = f"{PAPER} (claim 3)", ("per seed, the shift of the Fisher mass's centre (0: first layer, 1: "
                                         "last) against its baseline at the window's end; 95 % t-interval "
                                         f"above zero, no shift within +-{CENTRE_MARGIN:g}")
    r = get("fisher_study")
    if r is None:
        return Check("layer_shift", claim, source, test, "no fisher_study results", "not run")
    texts, verdicts = [], {}
    for at in ("window_end", "final"):
        s = layer_shift(r.fisher_layers, r.trials, at)
        if s.empty:
            return Check("layer_shift", claim, source, test, "no deficit trial with per-layer Fisher", "not run")
        shift = s.set_index("seed").centre_shift
        verdicts[at], reason = stats.effect_verdict(shift, margin=CENTRE_MARGIN)
        texts.append(f"{'window end' if at == 'window_end' else 'last epoch'} (epoch {int(s.epoch.iloc[0])}): "
                     f"centre shift {stats.interval(shift)}: {reason}; distance {stats.interval(s.tv)} vs "
                     f"seed-to-seed {float(s.noise_tv.mean()):.3f}")
    return Check("layer_shift", claim, source, test, "; ".join(texts), verdicts["window_end"])
