"""Where does the critical period end? Classify each sampled onset, bracket the end, propose where to look.

An adaptive sweep (`sweep/adaptive.py`) samples a few onsets of a lattice (`grid.onset` as a range) for one
window length and seed set, and after each round asks this module three things, all pure functions of the
per-seed sensitivities (`reduce.seed_sensitivity`: each window against its own seed's baseline):

1. `classify`: is a window at this onset in the critical period, out of it, or can the seeds not tell?
       in       shown to cost more than `threshold`: a one-sided t-test over seeds at 2.5 %, corrected by
                Benjamini-Hochberg's procedure over the onsets sampled so far in the group
                (`classify_windows`; the test `reduce.critical_period` uses over a grid's onsets): the
                expected share of false "in"s stays below 2.5 %, and with no effect anywhere so does the
                chance of any (alone, an onset is "in" when its two-sided 95 % t-interval lies above
                `threshold`)
       out      the one-sided 95 % upper bound (the upper end of the 90 % t-interval: one half of the
                equivalence test of `stats.equivalent`) lies below `threshold + margin`: shown to cost less
                than `margin` points more than the threshold
       unclear  neither, or fewer than `stats.MIN_SEEDS` paired seeds
   (both "in" and "out" can hold when the interval is narrow and inside (threshold, threshold + margin):
   "in" wins, since the window is shown to cost something.) A claim about k window lengths at once (the
   boundary check, `window_claims.check_boundary`) classes each length with `family=k`: every level above
   divided by k (Bonferroni), so the chance that any length's "in" or "out" is false stays at the one level.
2. `locate`: the end of the critical period is where the last onset shown "in" (L) gives way to onsets
   that are not: the end lies between L and the next onset of the lattice, which is the resolution, once
   that onset has been sampled. `first_out` (F) is the first onset after L shown "out"; the onsets between
   L and F are unclear with these seeds: the statistical uncertainty of the end, which more seeds narrow.
   L is the last "in" of all sampled onsets (as `reduce.critical_period`'s `last_onset`), so a full grid of
   the same lattice and seeds gives the same L when the search sampled every onset that the grid shows
   "in"; an "in" after an "out" is reported as non-monotone.
3. `propose`: between L and F (or the ends of the lattice when either is missing) lies the zone where
   the end can be. Its two edges are refined: the pair of neighbouring sampled onsets that starts at L
   (or the lattice's first onset) and the pair that ends at F (or its last), when their classes differ
   (in | unclear | out) or are both unclear (too wide to tell) and lattice onsets lie between them: the
   lattice onset nearest their midpoint is added, a bisection from each side. Onsets strictly inside the
   zone, between two unclear ones, could move the end only if the sensitivity is not monotone (or by a
   false positive), so they are not added; outside [L, F] nothing is added either. While no onset is shown
   "in" only the upper edge is refined: under a sensitivity that falls with onset, the first onsets (the
   largest effects) not being shown "in" says the seeds cannot show a period there, and the search looks
   instead for where the windows are shown "out" (an "in" found on the way starts the bisection of L).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import pandas as pd

from .stats import ALPHA_ONE_SIDED, ALPHA_TOST, LEVEL, MIN_SEEDS, fdr, floats, interval, p_detect

IN, OUT, UNCLEAR = "in", "out", "unclear"
WINDOW = ["deficit", "tags", "length"]  # one search per window length (and deficit, and other axes' values)


@dataclass(frozen=True)
class Point:
    """One sampled onset: its class and the numbers behind it (sensitivity in points, over seeds)."""
    onset: int
    cls: str
    mean: float
    low: float      # two-sided LEVEL t-interval
    high: float
    upper: float    # one-sided (1 - ALPHA_TOST) upper bound
    n: int


def classify(onset: int, values: Iterable[float], threshold: float, margin: float,
             min_seeds: int = MIN_SEEDS, shown_in: bool | None = None, family: int = 1) -> Point:
    """The class of one onset from its per-seed sensitivities (see the module docstring). `shown_in`: the
    verdict of the corrected test of "costs more than threshold" over the group (`classify_windows`);
    None: this onset alone (its 95 % interval above `threshold`). `family`: the number of groups graded as
    one claim; the intervals' error rates are divided by it (Bonferroni)."""
    values = list(values)
    est = interval(values, 1 - (1 - LEVEL) / family)
    upper = interval(values, 1 - 2 * ALPHA_TOST / family).high
    if shown_in is None:
        shown_in = not math.isnan(est.low) and est.low > threshold
    if est.n < min_seeds or math.isnan(est.low):
        cls = UNCLEAR
    elif shown_in:
        cls = IN
    elif upper < threshold + margin:
        cls = OUT
    else:
        cls = UNCLEAR
    return Point(int(onset), cls, est.mean, est.low, est.high, upper, est.n)


def classify_windows(seed_sens: pd.DataFrame, threshold: float, margin: float,
                     family: bool = False) -> dict[tuple, list[Point]]:
    """(deficit, tags, length) -> its sampled onsets' `Point`s, by onset, from `reduce.seed_sensitivity`;
    "in" by Benjamini-Hochberg over the group's sampled onsets (`stats.fdr`). `family`: the groups are one
    claim (the boundary check's window lengths): each is classed at the levels divided by their number
    (Bonferroni; False: each group alone, as the search decides where to sample)."""
    groups = list(seed_sens.groupby(WINDOW, sort=True))
    k = len(groups) if family else 1
    out: dict[tuple, list[Point]] = {}
    for key, part in groups:
        onsets = [(o, g["sens"].to_numpy()) for o, g in part.groupby("onset", sort=True)]
        shown = fdr([p_above_values(v, threshold) for _, v in onsets], ALPHA_ONE_SIDED / k)  # < MIN_SEEDS: p=1
        out[tuple(key)] = [classify(o, v, threshold, margin, shown_in=s, family=k)
                           for (o, v), s in zip(onsets, shown)]
    return out


def out_among_later(part: pd.DataFrame, after: int, threshold: float, margin: float,
                    family: int = 1) -> tuple[int | None, int]:
    """(the first onset after `after` shown "out" as one of the m onsets sampled after it, m) for one group
    (rows of `reduce.seed_sensitivity`). "A later window is shown not to cost" holds when any of the m does,
    so each is tested at ALPHA_TOST / (family * m) (Bonferroni): one "out" at its own level among several
    tried is no longer one at that level. None: no onset is."""
    later = [(int(o), g["sens"].to_numpy()) for o, g in part.groupby("onset", sort=True) if o > after]
    m = len(later)
    first = next((o for o, v in later if classify(o, v, threshold, margin, shown_in=False, family=family * m).cls
                  == OUT), None)  # (none of them is "in": they come after the last one)
    return first, m


def p_above_values(values: Iterable[float], threshold: float) -> float:
    """One-sided p-value of "the mean sensitivity exceeds `threshold`" from per-seed values (`stats.p_detect`:
    1 with fewer than MIN_SEEDS seeds)."""
    x = floats(values)
    n = len(x)
    if n == 0:
        return 1.0
    return p_detect(float(x.mean()), float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan, n, threshold)


@dataclass
class Boundary:
    """Where the critical period of one window length ends, as far as the sampled onsets show.

    status: located  the end lies between `last_in` and the next lattice onset, both sampled (the
                     resolution); `first_out` says from where later windows are shown not to cost
            open     onsets that could move the end are not sampled yet (rounds or budget ran out)
            beyond   the last onset of the lattice is still "in": the period lasts past the range
            none     no onset is shown "in", and the first is shown "out": no critical period in the range
            unclear  no onset is shown "in", every lattice onset that could be is sampled and unclear
    """
    status: str
    last_in: int | None
    next_onset: int | None          # the lattice onset after last_in
    first_out: int | None
    non_monotone: list[int] = field(default_factory=list)  # onsets shown "in" after an onset shown "out"
    text: str = ""

    def to_dict(self) -> dict:
        return {"status": self.status, "last_in": self.last_in, "next_onset": self.next_onset,
                "first_out": self.first_out, "non_monotone": self.non_monotone, "text": self.text}


def _region(points: Sequence[Point], lattice: Sequence[int]) -> tuple[int | None, int | None, int, int]:
    """(L, F, lo, hi): the last onset shown "in", the first "out" after it, and the onsets [lo, hi] between
    which the end can still move."""
    ins = [p.onset for p in points if p.cls == IN]
    last_in = max(ins) if ins else None
    outs = [p.onset for p in points if p.cls == OUT and (last_in is None or p.onset > last_in)]
    first_out = min(outs) if outs else None
    lo = last_in if last_in is not None else lattice[0]
    hi = first_out if first_out is not None else lattice[-1]
    return last_in, first_out, lo, hi


def locate(points: Sequence[Point], lattice: Sequence[int]) -> Boundary:
    """The `Boundary` the sampled `points` (any order) show on `lattice` (sorted onsets)."""
    points, lattice = sorted(points, key=lambda p: p.onset), sorted(lattice)
    sampled = {p.onset for p in points}
    last_in, first_out, _, _ = _region(points, lattice)
    first_any_out = min((p.onset for p in points if p.cls == OUT), default=None)
    non_monotone = [p.onset for p in points if p.cls == IN and first_any_out is not None and p.onset > first_any_out]
    following = [o for o in lattice if last_in is not None and o > last_in]
    nxt = following[0] if following else None
    pending = bool(propose(points, lattice))
    if last_in is None:
        first = next((p for p in points if p.onset == lattice[0]), None)
        if first is not None and first.cls == OUT and not pending:
            status, text = "none", f"no onset is shown to cost accuracy; onset {lattice[0]} is shown not to"
        elif not pending:
            status, text = "unclear", "no onset is shown to cost accuracy, nor the first shown not to: add seeds"
        else:
            status, text = "open", "no onset is shown to cost accuracy yet; unclear onsets remain unsampled"
    elif nxt is None:
        status, text = "beyond", f"the last onset ({last_in}) still costs accuracy: the period lasts past the range"
    elif nxt in sampled and not pending:
        status = "located"
        text = f"ends after onset {last_in} and by onset {nxt}"
        if first_out is None:
            text += "; no later onset is shown to cost less than the margin"
        elif first_out > nxt:
            text += f"; onsets {nxt}-{first_out - 1} are unclear, shown out from {first_out}"
        else:
            text += f" (shown out at {first_out})"
    else:
        status, text = "open", f"last onset shown in: {last_in}; onsets that could move the end are not sampled"
    if non_monotone:
        text += f"; not monotone: onsets {non_monotone} are shown in after one shown out"
    return Boundary(status, last_in, nxt, first_out, non_monotone, text)


def propose(points: Sequence[Point], lattice: Sequence[int]) -> list[tuple[int, str]]:
    """(onset, reason) to add next: the lattice onset nearest the midpoint (the lower on a tie) of the first
    (only once an onset is shown "in") and the last pair of neighbouring sampled onsets in [L, F], where
    they differ or are both unclear and have room between them."""
    points, lattice = sorted(points, key=lambda p: p.onset), sorted(lattice)
    last_in, _, lo, hi = _region(points, lattice)
    inside = [p for p in points if lo <= p.onset <= hi]
    pairs = list(zip(inside, inside[1:]))
    edges = pairs[-1:] if last_in is None or len(pairs) < 2 else [pairs[0], pairs[-1]]
    out = []
    for a, b in edges:
        between = [o for o in lattice if a.onset < o < b.onset]
        if not between or (a.cls == b.cls and a.cls != UNCLEAR):
            continue
        mid = (a.onset + b.onset) / 2
        onset = min(between, key=lambda o: (abs(o - mid), o))
        why = "they differ" if a.cls != b.cls else "both unclear: too wide to tell"
        out.append((onset, f"between {a.onset} ({a.cls}) and {b.onset} ({b.cls}): {why}"))
    return out
