"""Reproduction checks: do a set of sweeps show the paper's claims?

Each check reads the sweeps it needs (by name, from a results root: `blur_grid`, `vflip`, … or their
laptop-scale twins `mini_blur_grid`, …) and returns a `Check`: the claim, what was expected, what was
measured (mean over seeds ± standard error over seeds) and a verdict: "reproduced", "partly", "not
reproduced", "measured" (nothing to test, reported), or "not run" (a sweep it needs is missing).

One rule decides every verdict: a difference is *clear* when, over at least two seeds, its mean exceeds
`SIGNIFICANCE` standard errors of the per-seed (paired) differences and `MIN_EFFECT` percentage points.
Sensitivities are paired by seed: a window trial is compared with its own seed's baseline, and two sweeps
are compared on the seeds they share. Comparing two sweeps requires their fixed settings to be equal
except for the keys the check varies on purpose (the deficit, the schedule, …).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from ..config.spec import diff_settings
from .reduce import sem, seed_sensitivity
from .store import Results

SIGNIFICANCE = 2.0   # standard errors
MIN_EFFECT = 0.5     # percentage points of final test accuracy
PEAK_PART = 1 / 3    # the Fisher trace must peak within this part of training ...
FALL_TO = 0.5        # ... and end below this fraction of its peak
VERDICTS = ("reproduced", "partly", "not reproduced", "measured", "not run")


@dataclass(frozen=True)
class Check:
    key: str
    claim: str
    expected: str
    measured: str
    verdict: str


class Stat(NamedTuple):
    mean: float
    sem: float
    n: int

    def __str__(self) -> str:
        sem = "n/a" if np.isnan(self.sem) else f"{self.sem:.2f}"
        return f"{self.mean:.2f} ± {sem}"


def stat(values: pd.Series) -> Stat:
    values = values.dropna()
    n = len(values)
    return Stat(float(values.mean()) if n else float("nan"), sem(values), n)


def paired(a: pd.Series, b: pd.Series) -> pd.Series:
    """Per-seed a - b over the seeds both have (both indexed by seed)."""
    common = a.index.intersection(b.index)
    return a[common] - b[common]


def clear(s: Stat) -> bool:
    """True when the mean is positive beyond noise: >= 2 seeds, > SIGNIFICANCE s.e. and >= MIN_EFFECT."""
    return s.n >= 2 and s.mean >= MIN_EFFECT and s.mean > SIGNIFICANCE * s.sem


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


def _grade(best: bool, some: bool) -> str:
    return "reproduced" if best else "partly" if some else "not reproduced"


# ---- the checks: each takes `get(name) -> Results | None` -------------------------------------------------

Getter = Callable[[str], "Results | None"]


def check_early_vs_late(get: Getter) -> Check:
    claim, expected = ("Blur: an early window costs more than a late one (claim 1)",
                       "onset 0 loses clearly more than the last onset, at every window length")
    r = get("blur_grid")
    if r is None:
        return Check("early_vs_late", claim, expected, "", "not run")
    ss = seed_sensitivity(r.trials)
    ss = ss[ss.deficit == "blur"]
    if ss.empty:
        return Check("early_vs_late", claim, expected, "no finished blur windows", "not run")
    parts, diffs = [], []
    for length in sorted(ss.length.unique()):
        c, text = _contrast(ss, length)
        diffs.append(stat(c))
        parts.append(f"length {length}: {text} (difference {diffs[-1]}, n={diffs[-1].n})")
    return Check("early_vs_late", claim, expected, "; ".join(parts),
                 _grade(all(clear(d) for d in diffs), any(d.mean > 0 for d in diffs)))


def check_removal(get: Getter) -> Check:
    claim, expected = ("Blur removal: the later the blur is removed, the lower the final accuracy (claim 1, "
                       "Fig. 1)", "sensitivity grows with the removal epoch k")
    r = get("blur_removal")
    if r is None:
        return Check("removal", claim, expected, "", "not run")
    ss = seed_sensitivity(r.trials)
    ss = ss[(ss.deficit == "blur") & (ss.onset == 0)]
    ks = sorted(ss.length.unique())
    if len(ks) < 2:
        return Check("removal", claim, expected, "fewer than two removal epochs finished", "not run")
    per_k = {k: stat(window(ss, 0, k)) for k in ks}
    d = stat(paired(window(ss, 0, ks[-1]), window(ss, 0, ks[0])))
    rising = all(per_k[a].mean < per_k[b].mean for a, b in zip(ks, ks[1:]))
    measured = (", ".join(f"k={k}: {s}" for k, s in per_k.items()) + f" pts; k={ks[-1]} minus k={ks[0]}: {d}"
                f" (n={d.n}); {'rising at every step' if rising else 'not monotone'}")
    return Check("removal", claim, expected, measured, _grade(clear(d) and clear(per_k[ks[-1]]), d.mean > 0))


def _against_blur(get: Getter, key: str, name: str, claim: str, expected: str, much: bool,
                  allowed: tuple[str, ...] = ("deficit",)) -> Check:
    """A deficit sweep against blur_grid over their earliest common window (same seeds, same settings)."""
    r, b = get(name), get("blur_grid")
    if r is None or b is None:
        return Check(key, claim, expected, "", "not run")
    differ = settings_differ(r, b, allowed)
    if differ:
        return Check(key, claim, expected, f"settings differ from blur_grid: {', '.join(differ)}", "not run")
    ss, sb = seed_sensitivity(r.trials), seed_sensitivity(b.trials)
    sb = sb[sb.deficit == "blur"]
    common = sorted(set(zip(ss.onset, ss.length)) & set(zip(sb.onset, sb.length)), key=lambda w: (w[0], -w[1]))
    if not common:
        return Check(key, claim, expected, "no finished window in common with blur_grid", "not run")
    onset, length = common[0]
    other, blur = window(ss, onset, length), window(sb, onset, length)
    d, so, sbl = stat(paired(blur, other)), stat(other), stat(blur)
    measured = (f"window [{onset}, {onset + length}): {so} pts against blur's {sbl} (blur minus it: {d}, "
                f"n={d.n})")
    best = clear(d) and (so.mean < 0.5 * sbl.mean if much else True)
    return Check(key, claim, expected, measured, _grade(best, d.mean > 0))


def check_vflip(get: Getter) -> Check:
    return _against_blur(get, "vflip_vs_blur", "vflip",
                         "Vertical flip (keeps low-level statistics) has no lasting effect (claim 2)",
                         "much less loss than blur over the same window (below half of blur's)", much=True)


def check_label_permutation(get: Getter) -> Check:
    return _against_blur(get, "label_permutation", "label_permutation",
                         "Permuted class names (a high-level deficit) leave no lasting loss",
                         "much less loss than blur over the same window (below half of blur's)", much=True)


def check_noise(get: Getter) -> Check:
    return _against_blur(get, "noise_vs_blur", "noise",
                         "Sensory deprivation (noise inputs) hurts less than blur",
                         "less loss than blur over the same window", much=False)


def check_label_shuffle(get: Getter) -> Check:
    c = _against_blur(get, "label_shuffle", "label_shuffle",
                      "Random labels (the other reading of label permutation): no claim in the paper",
                      "reported, to tell the two readings apart", much=False)
    return c if c.verdict == "not run" else Check(c.key, c.claim, c.expected, c.measured, "measured")


def _contrast(ss: pd.DataFrame, length: int | None = None) -> tuple[pd.Series, str]:
    """Per-seed sensitivity of the earliest window minus the latest one, at `length` (default: the
    longest), and a description of both."""
    length = ss.length.max() if length is None else length
    part = ss[ss.length == length]
    early, late = part.onset.min(), part.onset.max()
    c = paired(window(part, early, length), window(part, late, length))
    return c, (f"onset {early} {stat(window(part, early, length))} vs onset {late} "
               f"{stat(window(part, late, length))} pts")


def _persists(get: Getter, key: str, name: str, claim: str, expected: str) -> Check:
    r = get(name)
    if r is None:
        return Check(key, claim, expected, "", "not run")
    ss = seed_sensitivity(r.trials)
    if ss.onset.nunique() < 2:
        return Check(key, claim, expected, "needs an early and a late window", "not run")
    c, text = _contrast(ss)
    s = stat(c)
    measured = f"{text} (early minus late {s}, n={s.n})"
    b = get("blur_grid")
    if b is not None and len(seed_sensitivity(b.trials)):
        bc, _ = _contrast(seed_sensitivity(b.trials))
        measured += f"; blur_grid, for reference: early minus late {stat(bc)}"
    return Check(key, claim, expected, measured, _grade(clear(s), s.mean > 0))


def check_adam(get: Getter) -> Check:
    return _persists(get, "adam", "adam", "The critical period persists with Adam (claim 4)",
                     "the early blur window costs clearly more than the late one")


def check_constant_lr(get: Getter) -> Check:
    return _persists(get, "constant_lr", "constant_lr",
                     "The critical period persists with a constant learning rate (paper's control)",
                     "the paper: yes; PAPER.md's MNIST-1D reference: it vanished")


def check_lr_restart(get: Getter) -> Check:
    return _against_blur(get, "lr_restart", "lr_restart",
                         "Restarting the learning rate after the deficit almost closes the gap (2025 study)",
                         "the early window's loss below half of that without restart", much=True,
                         allowed=("schedule.restart_after_deficit",))


def check_architecture(get: Getter) -> Check:
    claim, expected = ("The critical period persists in another architecture (claim 4)",
                       "the early blur window costs accuracy")
    r = get("resnet18")
    if r is None:
        return Check("architecture", claim, expected, "", "not run")
    ss = seed_sensitivity(r.trials)
    onset, length = ss.onset.min(), ss.length.max()
    s = stat(window(ss, onset, length))
    return Check("architecture", claim, expected, f"window [{onset}, {onset + length}): {s} pts (n={s.n})",
                 _grade(clear(s), s.mean > 0))


def _depth_of(tags: str) -> int:
    m = re.search(r"hidden=\(([^)]*)\)", tags)
    return len([x for x in m.group(1).split(",") if x.strip()]) if m else 0


def check_depth(get: Getter) -> Check:
    claim, expected = ("Deeper networks show a critical period at least as pronounced (claim 1)",
                       "the deepest net's early-minus-late loss is clear and at least the shallowest's")
    r = get("mlp_depth")
    if r is None:
        return Check("depth", claim, expected, "", "not run")
    ss = seed_sensitivity(r.trials)
    by_depth = {_depth_of(t): part for t, part in ss.groupby("tags")}
    if len(by_depth) < 2:
        return Check("depth", claim, expected, "needs at least two depths (grid model.hidden)", "not run")
    contrasts = {depth: _contrast(part) for depth, part in sorted(by_depth.items())}
    stats = {depth: (stat(c), text) for depth, (c, text) in contrasts.items()}
    measured = "; ".join(f"{d} hidden layer{'s' * (d > 1)}: {text}, early minus late {s} (n={s.n})"
                         for d, (s, text) in stats.items())
    deep, shallow = stats[max(stats)][0], stats[min(stats)][0]
    verdict = ("reproduced" if clear(deep) and deep.mean >= shallow.mean else
               "partly" if clear(deep) or (clear(shallow) and deep.mean > 0) else "not reproduced")
    return Check("depth", claim, expected, measured, verdict)


def fisher_peak(epochs: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Per baseline seed: the epoch of its Fisher trace's peak, the peak, the final value and the epochs
    trained. Columns: seed, peak_epoch, peak, final, epochs."""
    rows = []
    base = trials[(trials.status == "ok") & (trials.deficit == "none")]
    for _, t in base.iterrows():
        f = epochs[epochs.trial_id == t.trial_id].dropna(subset=["fisher_trace"]).sort_values("epoch")
        if len(f):
            top = f.loc[f.fisher_trace.idxmax()]
            rows.append({"seed": t.seed, "peak_epoch": int(top.epoch), "peak": float(top.fisher_trace),
                         "final": float(f.fisher_trace.iloc[-1]), "epochs": int(t.epochs)})
    return pd.DataFrame(rows, columns=["seed", "peak_epoch", "peak", "final", "epochs"])


def check_fisher_peak(get: Getter) -> Check:
    claim = "The baseline's Fisher trace rises to a peak early in training, then falls (claim 3)"
    expected = (f"peak within the first {PEAK_PART:.0%} of training; final value below {FALL_TO:.0%} of the "
                f"peak")
    r = get("fisher_study")
    if r is None:
        return Check("fisher_peak", claim, expected, "", "not run")
    p = fisher_peak(r.epochs, r.trials)
    if p.empty:
        return Check("fisher_peak", claim, expected, "no baseline with a Fisher trace", "not run")
    early = (p.peak_epoch < PEAK_PART * p.epochs).all()
    ratio = stat(p.final / p.peak)
    falls = (p.final < FALL_TO * p.peak).all()
    measured = (f"peak at epoch {', '.join(str(e) for e in p.peak_epoch)} of {p.epochs.iloc[0]} "
                f"(per seed; epoch 0 is the first measured), peak {stat(p.peak)}, final/peak {ratio} "
                f"(n={ratio.n})")
    return Check("fisher_peak", claim, expected, measured, _grade(early and falls, early or falls))


def shares_at(layers: pd.DataFrame, trial_id: str, epoch: int) -> pd.Series:
    """Each layer's share of the Fisher trace at `epoch` (or the last measured epoch before it),
    indexed by the layer's order from the input."""
    part = layers[(layers.trial_id == trial_id) & (layers.epoch <= epoch)]
    part = part[part.epoch == part.epoch.max()]
    s = part.set_index("order").trace.sort_index()
    return s / s.sum()


def centre(shares: pd.Series) -> float:
    """Where the Fisher mass sits: 0 = the first layer, 1 = the last (share-weighted layer position)."""
    pos = np.arange(len(shares)) / max(len(shares) - 1, 1)
    return float((shares.to_numpy() * pos).sum())


def layer_shift(layers: pd.DataFrame, trials: pd.DataFrame, at: str = "window_end") -> pd.DataFrame:
    """Per deficit trial: the total-variation distance between its per-layer Fisher shares and its
    baseline's, and the shift of the Fisher mass's centre (positive: towards the output), at the window's
    last epoch (`at="window_end"`) or at the last epoch (`"final"`). Also `noise_tv`: the mean distance
    between the baselines of different seeds at the same epoch, the yardstick for "a shift"."""
    ok = trials[trials.status == "ok"]
    base = ok[ok.deficit == "none"]
    rows = []
    for _, t in ok[ok.deficit != "none"].iterrows():
        epoch = t.onset + t.length - 1 if at == "window_end" else t.epochs - 1
        w, b = shares_at(layers, t.trial_id, epoch), shares_at(layers, t.baseline_id, epoch)
        if w.empty or b.empty:
            continue
        others = [shares_at(layers, o, epoch) for o in base.trial_id if o != t.baseline_id]
        noise = [0.5 * (b - o).abs().sum() for o in others if not o.empty]
        rows.append({"trial_id": t.trial_id, "seed": t.seed, "epoch": epoch, "tv": 0.5 * (w - b).abs().sum(),
                     "centre_shift": centre(w) - centre(b), "noise_tv": np.mean(noise) if noise else np.nan})
    return pd.DataFrame(rows, columns=["trial_id", "seed", "epoch", "tv", "centre_shift", "noise_tv"])


def check_layer_shift(get: Getter) -> Check:
    claim = "A blur deficit shifts the per-layer Fisher shares (the paper: towards higher layers; claim 3)"
    expected = ("at the window's end, blur-vs-baseline distance above twice the seed-to-seed distance, the "
                "mass moving towards the output")
    r = get("fisher_study")
    if r is None:
        return Check("layer_shift", claim, expected, "", "not run")
    texts, grades = [], {}
    for at in ("window_end", "final"):
        s = layer_shift(r.fisher_layers, r.trials, at)
        if s.empty:
            return Check("layer_shift", claim, expected, "no deficit trial with per-layer Fisher", "not run")
        tv, noise, shift = stat(s.tv), float(s.noise_tv.mean()), stat(s.centre_shift)
        moved = tv.mean > 2 * noise
        up = shift.n >= 2 and shift.mean > SIGNIFICANCE * shift.sem
        down = shift.n >= 2 and -shift.mean > SIGNIFICANCE * shift.sem
        grades[at] = _grade(moved and up, moved)
        direction = "towards the output" if up else "towards the input" if down else "no clear direction"
        texts.append(f"{'window end' if at == 'window_end' else 'last epoch'} (epoch {int(s.epoch.iloc[0])}): "
                     f"distance {tv.mean:.3f} ± {tv.sem:.3f} vs seed-to-seed {noise:.3f}; centre shift "
                     f"{shift.mean:+.3f} ± {shift.sem:.3f} ({direction})")
    return Check("layer_shift", claim, expected, "; ".join(texts) + f" (n={stat(s.tv).n})", grades["window_end"])


CHECKS: list[Callable[[Getter], Check]] = [
    check_early_vs_late, check_removal, check_vflip, check_label_permutation, check_label_shuffle,
    check_noise, check_fisher_peak, check_layer_shift, check_depth, check_architecture, check_adam,
    check_constant_lr, check_lr_restart]


def run_checks(get: Getter) -> pd.DataFrame:
    """Every check, as a table: key, claim, expected, measured, verdict."""
    return pd.DataFrame([vars(c(get)) for c in CHECKS], columns=["key", "claim", "expected", "measured",
                                                                  "verdict"])
