"""The statistics behind every verdict: paired, t-based intervals and equivalence tests over seeds.

Every claim cpsweep checks is about a difference measured once per seed (a window's sensitivity against
its own seed's baseline, or two sensitivities of the same seed), so the unit of replication is the seed:

    est = interval(per_seed_values)         # mean with a two-sided LEVEL t-interval (n - 1 dof)
    est.low > 0                             # "an effect": the interval excludes zero (one-sided 2.5 %)
    equivalent(per_seed_values)             # "no lasting effect": two one-sided tests against +-MARGIN

- `interval`: mean +- t_{(1+LEVEL)/2, n-1} s / sqrt(n), s the sample standard deviation. With n < 2 it
  has no width (low = high = NaN): nothing can be decided from one seed.
- `equivalent`: the two one-sided tests (TOST, Schuirmann 1987) at level ALPHA_TOST reject both
  "mean <= -MARGIN" and "mean >= +MARGIN" exactly when the (1 - 2 ALPHA_TOST) t-interval lies inside
  (-MARGIN, +MARGIN); that is what is computed. An effect smaller than MARGIN counts as none.
- `effect_verdict` / `no_effect_verdict` turn an estimate into "reproduced", "not reproduced" or
  "not shown", and "not shown" always says why (too few seeds, or an interval too wide to decide).

The defaults, fixed before any run and stated in every verdict: LEVEL = 0.95; MARGIN = 0.5 percentage
points of final test accuracy (the public replication's "at most 0.5 points" for windows that do no
harm, PAPER.md); ALPHA_TOST = 0.05; MIN_SEEDS = 3 paired seeds for any verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd
from scipy import stats as _st

LEVEL = 0.95        # two-sided confidence level of every interval
ALPHA_TOST = 0.05   # level of each one-sided test of an equivalence (so a 90 % interval)
MARGIN = 0.5        # percentage points: a lasting effect smaller than this counts as none
MIN_SEEDS = 3       # fewer paired seeds than this decide nothing: "not shown"


@dataclass(frozen=True)
class Estimate:
    """A mean over seeds with its t-interval."""
    mean: float
    low: float          # NaN when n < 2
    high: float
    n: int
    level: float

    def __str__(self) -> str:
        if self.n == 0:
            return "no data"
        if math.isnan(self.low):
            return f"{self.mean:.2f} (n={self.n}, no interval)"
        return f"{self.mean:.2f} [{self.low:.2f}, {self.high:.2f}] ({self.level:.0%} CI, n={self.n})"

    @property
    def excludes_zero(self) -> bool:
        return not math.isnan(self.low) and (self.low > 0 or self.high < 0)


def interval(values: Iterable[float], level: float = LEVEL) -> Estimate:
    """Mean of the non-missing `values` with a two-sided t-interval at `level`."""
    x = pd.Series(list(values), dtype=float).dropna().to_numpy()
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, level)
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, level)
    half = float(_st.t.ppf((1 + level) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Estimate(mean, mean - half, mean + half, n, level)


def paired(a: pd.Series, b: pd.Series) -> pd.Series:
    """Per-seed a - b over the seeds both have (both indexed by seed), missing values dropped."""
    common = a.dropna().index.intersection(b.dropna().index)
    return (a[common] - b[common]).sort_index()


def equivalent(values: Iterable[float], margin: float = MARGIN, alpha: float = ALPHA_TOST) -> tuple[bool, Estimate]:
    """Whether the mean is shown to lie within (-margin, +margin) by two one-sided t-tests at `alpha`,
    and the (1 - 2 alpha) interval that decides it."""
    est = interval(values, 1 - 2 * alpha)
    return (not math.isnan(est.low) and -margin < est.low and est.high < margin), est


def _too_few(n: int, min_seeds: int) -> str | None:
    if n < min_seeds:
        return f"not shown: {n} paired seed{'s' * (n != 1)}, at least {min_seeds} needed"
    return None


def effect_verdict(values: Iterable[float], min_seeds: int = MIN_SEEDS, margin: float = MARGIN) -> tuple[str, str]:
    """(verdict, reason) for a claim that the mean is positive ("X costs more than Y").

    reproduced: the LEVEL interval lies above zero. not reproduced: the interval lies below zero, or an
    equivalence test shows the mean within +-margin (no effect worth the name). not shown: otherwise.
    """
    values = list(values)
    est = interval(values)
    reason = _too_few(est.n, min_seeds)
    if reason:
        return "not shown", reason
    if est.low > 0:
        return "reproduced", f"{est.level:.0%} interval above zero"
    if est.high < 0:
        return "not reproduced", f"{est.level:.0%} interval below zero"
    same, eq = equivalent(values, margin)
    if same:
        return "not reproduced", f"equivalent to no effect within +-{margin:g} ({eq})"
    return "not shown", f"the {est.level:.0%} interval contains zero and is too wide to show no effect"


def no_effect_verdict(values: Iterable[float], min_seeds: int = MIN_SEEDS, margin: float = MARGIN) -> tuple[str, str]:
    """(verdict, reason) for a claim of no lasting effect (the mean is zero, up to +-margin).

    reproduced: equivalence within +-margin shown by TOST. not reproduced: an effect shown (the LEVEL
    interval excludes zero) that is not within the margin. not shown: otherwise.
    """
    values = list(values)
    est = interval(values)
    reason = _too_few(est.n, min_seeds)
    if reason:
        return "not shown", reason
    same, eq = equivalent(values, margin)
    if same:
        return "reproduced", f"equivalent to zero within +-{margin:g} ({eq}, two one-sided tests)"
    if est.excludes_zero:
        return "not reproduced", f"a lasting effect: the {est.level:.0%} interval excludes zero"
    return "not shown", f"neither an effect nor equivalence within +-{margin:g} can be shown ({eq})"


def log_ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    """Per-seed log(num / den) over the seeds both have with positive values (ratios of Fisher traces)."""
    return paired(np.log(num.where(num > 0)), np.log(den.where(den > 0)))
