"""Reproduction checks: do a set of sweeps show the paper's claims?

Each check reads the sweeps it needs (by name, from a results root: `blur_grid`, `vflip`, ... or their
laptop-scale twins `mini_blur_grid`, ...) and returns a `Check`: the claim and its source, the test that
decides it, what was measured (estimates with their intervals and n) and a verdict:

    reproduced       the test shows the claim
    partly           a claim with several parts (every window length, rise and fall): some shown, some
                     shown not to hold
    not reproduced   the data show the claim does not hold (the opposite effect, or no effect where one is
                     claimed, or a lasting effect where none is)
    not shown        the data cannot decide: too few paired seeds, or an interval too wide; the measured
                     text says which
    measured         reported, no claim to test (a control)
    not run          a sweep it needs is missing, or holds nothing to compare

Every test is paired by seed (a window trial against its own seed's baseline, two sweeps on the seeds
they share) and uses `stats.py`: an effect is claimed when the 95 % t-interval of the per-seed values
lies above zero; "no lasting effect" is an equivalence test (two one-sided tests) against +-0.5 points;
fewer than 3 paired seeds decide nothing. Two sweeps are compared only when their fixed settings are
equal except for the keys the check varies on purpose.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd

from ..config.spec import diff_settings
from . import stats
from .reduce import fisher_peak, layer_shift, schedule_of, seed_sensitivity
from .store import Results

VERDICTS = ("reproduced", "partly", "not reproduced", "not shown", "measured", "not run")
PEAK_PART = 1 / 3       # the Fisher trace must peak within this part of training
FISHER_MARGIN = math.log(1.1)  # a rise or fall of the Fisher trace by less than 10 % is none
CENTRE_MARGIN = 0.05    # a shift of the Fisher mass's centre smaller than this (fraction of the depth) is none
PAPER = "paper, abstract"


@dataclass(frozen=True)
class Check:
    key: str
    claim: str
    source: str        # where the claim comes from
    test: str          # what decides it
    measured: str
    verdict: str


Getter = Callable[[str], "Results | None"]


def window(ss: pd.DataFrame, onset: int, length: int, deficit: str | None = None, tags: str | None = None
           ) -> pd.Series:
    """Per-seed sensitivity of one window (indexed by seed)."""
    part = ss[(ss.onset == onset) & (ss.length == length)]
    if deficit is not None:
        part = part[part.deficit == deficit]
    if tags is not None:
        part = part[part.tags == tags]
    return part.set_index("seed").sens


def settings_differ(a: Results, b: Results, allowed: tuple[str, ...]) -> list[str]:
    """Fixed settings (dotted keys) that differ between two sweeps, other than the `allowed` prefixes."""
    skip = ("sweep", *allowed)
    return [k for k, _, _ in diff_settings(a.spec.get("fixed") or {}, b.spec.get("fixed") or {})
            if not k.startswith(skip)]


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a claim made of parts that must all hold."""
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if "reproduced" in verdicts:
        return "partly"
    return "not reproduced" if "not reproduced" in verdicts else "not shown"


def contrast(ss: pd.DataFrame, length: int | None = None) -> tuple[pd.Series, str]:
    """Per-seed sensitivity of the earliest window minus the latest one at `length` (default: the longest),
    paired by seed, and a description of both windows."""
    length = ss.length.max() if length is None else length
    part = ss[ss.length == length]
    early, late = part.onset.min(), part.onset.max()
    a, b = window(part, early, length), window(part, late, length)
    return stats.paired(a, b), (f"onset {early} {stats.interval(a)} vs onset {late} {stats.interval(b)} pts "
                                f"(length {length})")


def _sens(get: Getter, name: str, key: str, claim: str, source: str, test: str,
          deficit: str | None = None) -> tuple[pd.DataFrame | None, Check | None]:
    """A sweep's per-seed sensitivities, or the "not run" check that says why there are none."""
    r = get(name)
    if r is None:
        return None, Check(key, claim, source, test, f"no {name} results", "not run")
    ss = seed_sensitivity(r.trials, r.epochs)
    if deficit is not None:
        ss = ss[ss.deficit == deficit]
    if ss.empty:
        return None, Check(key, claim, source, test, f"no finished window of {name} with its baseline", "not run")
    if not ss.matched.all():
        return None, Check(key, claim, source, test, f"{name}'s baselines trained fewer epochs than its windows "
                                                     "(results from before length-matched baselines)", "not shown")
    return ss, None


def _contrast_check(get: Getter, key: str, name: str, claim: str, source: str, per_length: bool = False,
                    measured_only: bool = False) -> Check:
    """Early window minus late window, paired by seed: an effect (or, for a control, just measured)."""
    test = ("per seed, sensitivity of the earliest onset minus the latest, " +
            ("at every window length; " if per_length else "at the longest window; ") +
            "95 % t-interval above zero, >= 3 seeds")
    ss, missing = _sens(get, name, key, claim, source, test)
    if missing:
        return missing
    if ss.onset.nunique() < 2:
        return Check(key, claim, source, test, "needs an early and a late window", "not run")
    parts, verdicts = [], []
    for length in (sorted(ss.length.unique()) if per_length else [ss.length.max()]):
        diff, text = contrast(ss, length)
        verdict, reason = stats.effect_verdict(diff)
        verdicts.append(verdict)
        parts.append(f"{text}; early minus late {stats.interval(diff)}: {reason}")
    return Check(key, claim, source, test, "; ".join(parts), "measured" if measured_only else combine(verdicts))


CONTROLS = ("restart", "constant")  # grid.schedule values that remove the learning-rate confound


def by_schedule(ss: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per-seed sensitivities split by schedule label (sorted; "" = the sweep's only schedule)."""
    labels = ss.tags.map(schedule_of)
    return {label: ss[labels == label] for label in sorted(labels.unique())}


def paper_schedule(ss: pd.DataFrame) -> pd.DataFrame:
    """The sensitivities under the paper's schedule: every schedule but the controls (restart, constant)."""
    return ss[~ss.tags.map(schedule_of).isin(CONTROLS)]


def _schedule_contrasts(ss: pd.DataFrame) -> dict[str, tuple[list[str], list[str]]]:
    """Per schedule: the early-minus-late verdict and text at every window length."""
    out = {}
    for label, part in by_schedule(ss).items():
        verdicts, texts = [], []
        if part.onset.nunique() < 2:
            out[label] = (["not shown"], ["needs an early and a late window"])
            continue
        for length in sorted(part.length.unique()):
            diff, text = contrast(part, length)
            verdict, reason = stats.effect_verdict(diff)
            verdicts.append(verdict)
            texts.append(f"{text}; early minus late {stats.interval(diff)}: {reason}")
        out[label] = (verdicts, texts)
    return out


def check_early_vs_late(get: Getter) -> Check:
    key, claim, source = "early_vs_late", "Blur: an early window costs more than a late one", f"{PAPER} (claim 1)"
    test = ("per seed, sensitivity of the earliest onset minus the latest, at every window length, under the "
            "paper's schedule (the sweep's own, never restarted); 95 % t-interval above zero, >= 3 seeds. "
            "Every other schedule of the sweep is tested the same way and listed")
    ss, missing = _sens(get, "blur_grid", key, claim, source, test, deficit="blur")
    if missing:
        return missing
    per = _schedule_contrasts(ss)
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
    ss, missing = _sens(get, "blur_grid", key, claim, source, test, deficit="blur")
    if missing:
        return missing
    per = _schedule_contrasts(ss)
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
    ss, missing = _sens(get, "blur_grid", "late_windows", claim, source, test, deficit="blur")
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
    ss, missing = _sens(get, "blur_removal", "removal", claim, source, test, deficit="blur")
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
    ss, missing = _sens(get, name, key, claim, source, test)
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


def _depth_of(tags: str) -> int:
    m = re.search(r"hidden=\(([^)]*)\)", tags)
    return len([x for x in m.group(1).split(",") if x.strip()]) if m else 0


def check_depth(get: Getter) -> Check:
    claim, source = "Deeper networks show a more pronounced critical period", f"{PAPER} (claim 1)"
    test = ("per seed, the deepest net's loss minus the shallowest's: after the longest deficit [0, k) (the "
            "removal protocol), or of (early minus late sensitivity) for sliding windows; 95 % t-interval above "
            "zero, >= 3 seeds")
    ss, missing = _sens(get, "mlp_depth", "depth", claim, source, test)
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
    return _contrast_check(get, "architecture", "resnet18", "The critical period persists in ResNet-18",
                           f"{PAPER} (claim 4)")


def check_adam(get: Getter) -> Check:
    return _contrast_check(get, "adam", "adam", "The critical period persists with Adam", f"{PAPER} (claim 4)")


def check_lr_restart(get: Getter) -> Check:
    claim = "Restarting the learning rate after the deficit almost closes the gap"
    source = "PAPER.md (a 2025 study)"
    test = ("per seed at the earliest window: its sensitivity under the paper's schedule minus under the "
            "restarted one (grid.schedule of blur_grid), 95 % t-interval above zero (the gap narrows), and the "
            "restarted sensitivity equivalent to zero within +-0.5 pts (closed)")
    ss, missing = _sens(get, "blur_grid", "lr_restart", claim, source, test, deficit="blur")
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

