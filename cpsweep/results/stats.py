"""The statistics behind every verdict: paired, t-based intervals, equivalence tests and the correction for
many comparisons, over seeds.

Every claim cpsweep checks is about a difference measured once per seed (a window's sensitivity against
its own seed's baseline, or two sensitivities of the same seed), so the unit of replication is the seed:

    est = interval(per_seed_values)         # mean with a two-sided LEVEL t-interval (n - 1 dof)
    g = grade(per_seed_values, margin)      # the one rule that turns values into an effect / no effect
    fdr(p_values)                           # which of many one-sided tests are detections (Benjamini-Hochberg)
    holm(p_values)                          # ... with the family-wise error controlled instead (Holm)

- `interval`: mean +- t_{(1+LEVEL)/2, n-1} s / sqrt(n), s the sample standard deviation. With n < 2 it
  has no width (low = high = NaN): nothing can be decided from one seed.
- `grade`, the one rule for "an effect" and "no effect", used by every verdict (`effect_verdict`,
  `no_effect_verdict`) with the claim's own margin:
      negligible   the two one-sided tests (TOST, Schuirmann 1987) at ALPHA_TOST reject both
                   "mean <= -margin" and "mean >= +margin", i.e. the (1 - 2 ALPHA_TOST) t-interval lies
                   inside (-margin, +margin): an effect smaller than the margin counts as none, for an
                   effect claim ("not reproduced") and a no-effect claim ("reproduced") alike
      positive     not negligible, and the LEVEL interval lies above zero (negative: below zero)
      unclear      neither
  and `beyond`: the LEVEL interval lies wholly beyond the margin. A no-effect claim is "not reproduced"
  only then; an interval that excludes zero but overlaps the margin shows neither ("not shown").
- `fdr`: Benjamini-Hochberg's step-up procedure over one-sided p-values (`p_above`), the correction of
  every detection over many onsets (the critical period, the adaptive search's "in"): the expected share
  of false detections among the onsets reported stays below ALPHA_ONE_SIDED, and with no effect at any
  onset so does the chance of reporting any. With one comparison it is exactly "the LEVEL interval lies
  above the threshold". `holm`: Holm's step-down procedure (the family-wise error rate below alpha), for
  simultaneous statements such as the confidence set of the most damaging onset.
- `family_verdicts`: a claim made of several instances (every window, every length) holds only when each
  instance does (no correction needed for that), but is shown NOT to hold as soon as one instance is: a
  union of tests, whose false "not reproduced" would grow with the number of instances. So each
  instance's evidence against the claim (the p-value of the test that shows it does not hold, over that
  test's own level: ALPHA_TOST for an equivalence, ALPHA_ONE_SIDED otherwise) goes through Holm's
  step-down procedure over the instances tested, and a "not reproduced" that does not survive it is "not
  shown". With one instance nothing changes. The same holds the other way: a claim that does not hold in
  every instance can hold only in part ("partly": some instances shown to hold), again a union of tests. So
  unless every instance is shown to hold (all at their own level: an intersection, no correction needed),
  each instance shown to hold must survive Holm's procedure on its own evidence for the claim (`supports`).
- `paired` and every per-seed table refuse a seed that appears twice (`DuplicateSeeds`): counting one seed
  twice would narrow every interval.

The defaults, fixed before any run and stated in every verdict: LEVEL = 0.95; MARGIN = 0.5 percentage
points of final test accuracy (the public replication's "at most 0.5 points" for windows that do no
harm, docs/paper.md); ALPHA_TOST = 0.05; ALPHA_ONE_SIDED = 0.025; MIN_SEEDS = 3 paired seeds for any verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import special as _sc

from ..errors import CpsweepError
from ..storage import records

LEVEL = 0.95        # two-sided confidence level of every interval
ALPHA_ONE_SIDED = (1 - LEVEL) / 2  # a one-sided test at this level = "the LEVEL interval lies above"
ALPHA_TOST = 0.05   # level of each one-sided test of an equivalence (so a 90 % interval)
MARGIN = 0.5        # percentage points: a lasting effect smaller than this counts as none
# what `effect_verdict` does besides the interval above zero, said in the `test` of every claim graded by it
NEGLIGIBLE_RULE = (f"shown not to hold also when the 90 % interval lies inside +-{MARGIN:g} pts (two one-sided "
                   f"t-tests: an effect too small to count, whichever its sign)")
MIN_SEEDS = records.MIN_SEEDS  # fewer paired seeds than this (3) decide nothing: "not shown"
CORRECTION = "Benjamini-Hochberg"  # how detections over many onsets are corrected (false discovery rate)


class DuplicateSeeds(CpsweepError):
    """A seed appears more than once where each seed must be one paired value."""


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


def t_quantile(q: float, df: int) -> float:
    """Student's t quantile: `scipy.stats.t.ppf(q, df)`'s own kernel, without that method's generic
    argument handling, which took most of the time of the statistics' simulations (tests/test_stats.py)."""
    return float(_sc.stdtrit(df, q))


def floats(values: Iterable[float]) -> np.ndarray:
    """The non-missing values as floats (NaN, None and pandas' NA dropped)."""
    try:
        x = np.array(list(values), dtype=float)
    except TypeError:  # pandas' NA
        x = pd.array(list(values), dtype="Float64").to_numpy(dtype=float, na_value=np.nan)
    return x[~np.isnan(x)]


def interval(values: Iterable[float], level: float = LEVEL) -> Estimate:
    """Mean of the non-missing `values` with a two-sided t-interval at `level`."""
    x = floats(values)
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, level)
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, level)
    half = float(t_quantile((1 + level) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Estimate(mean, mean - half, mean + half, n, level)


def check_unique_seeds(index: pd.Index, what: str = "a comparison") -> None:
    """Raise `DuplicateSeeds` when a seed appears twice in `index` (per-seed values)."""
    dup = sorted({int(s) for s in index[index.duplicated()]})
    if dup:
        raise DuplicateSeeds(f"seed{'s' * (len(dup) > 1)} {', '.join(map(str, dup))} appear{'s' * (len(dup) == 1)} "
                             f"more than once in {what}; each seed must be one paired value (counting it twice "
                             f"would narrow the interval): remove the duplicated trials or give them other seeds")


def paired(a: pd.Series, b: pd.Series) -> pd.Series:
    """Per-seed a - b over the seeds both have (both indexed by seed), missing values dropped; a seed
    indexed twice on either side is refused (`DuplicateSeeds`)."""
    check_unique_seeds(a.index)
    check_unique_seeds(b.index)
    common = a.dropna().index.intersection(b.dropna().index)
    return (a[common] - b[common]).sort_index()


def equivalent(values: Iterable[float], margin: float = MARGIN, alpha: float = ALPHA_TOST) -> tuple[bool, Estimate]:
    """Whether the mean is shown to lie within (-margin, +margin) by two one-sided t-tests at `alpha`,
    and the (1 - 2 alpha) interval that decides it."""
    est = interval(values, 1 - 2 * alpha)
    return (not math.isnan(est.low) and -margin < est.low and est.high < margin), est


@dataclass(frozen=True)
class Grade:
    """What per-seed values show against zero and a margin (the one rule; module docstring)."""
    est: Estimate       # the LEVEL interval
    eq: Estimate        # the (1 - 2 ALPHA_TOST) interval of the equivalence test
    margin: float
    kind: str           # "too few" | "negligible" | "positive" | "negative" | "unclear"
    beyond: bool        # the LEVEL interval lies wholly beyond +-margin


def grade(values: Iterable[float], margin: float = MARGIN, min_seeds: int = MIN_SEEDS) -> Grade:
    values = list(values)
    est = interval(values)
    same, eq = equivalent(values, margin)
    beyond = not math.isnan(est.low) and (est.low > margin or est.high < -margin)
    if est.n < min_seeds or math.isnan(est.low):
        kind = "too few"
    elif same:
        kind = "negligible"
    elif est.low > 0:
        kind = "positive"
    elif est.high < 0:
        kind = "negative"
    else:
        kind = "unclear"
    return Grade(est, eq, margin, kind, beyond)


def _too_few(n: int, min_seeds: int) -> str:
    return f"not shown: {n} paired seed{'s' * (n != 1)}, at least {min_seeds} needed"


def effect_verdict(values: Iterable[float], min_seeds: int = MIN_SEEDS, margin: float = MARGIN) -> tuple[str, str]:
    """(verdict, reason) for a claim that the mean is positive ("X costs more than Y").

    reproduced: the LEVEL interval lies above zero and the effect is not shown negligible. not reproduced:
    shown negligible (within +-margin by TOST: an effect smaller than the margin counts as none), or the
    interval lies below zero. not shown: otherwise.
    """
    g = grade(values, margin, min_seeds)
    if g.kind == "too few":
        return "not shown", _too_few(g.est.n, min_seeds)
    if g.kind == "negligible":
        return "not reproduced", f"no effect worth the name: equivalent to zero within +-{margin:g} ({g.eq})"
    if g.kind == "positive":
        return "reproduced", f"{g.est.level:.0%} interval above zero"
    if g.kind == "negative":
        return "not reproduced", f"{g.est.level:.0%} interval below zero"
    return "not shown", f"the {g.est.level:.0%} interval contains zero and is too wide to show no effect"


def no_effect_verdict(values: Iterable[float], min_seeds: int = MIN_SEEDS, margin: float = MARGIN) -> tuple[str, str]:
    """(verdict, reason) for a claim of no lasting effect (the mean is zero, up to +-margin).

    reproduced: equivalence within +-margin shown by TOST. not reproduced: the LEVEL interval lies wholly
    beyond the margin. not shown: otherwise, including an interval that excludes zero but overlaps the
    margin (an effect, but not shown to be one worth the name).
    """
    g = grade(values, margin, min_seeds)
    if g.kind == "too few":
        return "not shown", _too_few(g.est.n, min_seeds)
    if g.kind == "negligible":
        return "reproduced", f"equivalent to zero within +-{margin:g} ({g.eq}, two one-sided tests)"
    if g.beyond:
        return "not reproduced", f"a lasting effect beyond the margin: the {g.est.level:.0%} interval lies " \
                                 f"wholly beyond +-{margin:g}"
    if g.est.excludes_zero:
        return "not shown", (f"the {g.est.level:.0%} interval excludes zero but overlaps the +-{margin:g} margin: "
                             f"neither no effect nor an effect beyond the margin is shown ({g.eq})")
    return "not shown", f"neither an effect nor equivalence within +-{margin:g} can be shown ({g.eq})"


def _p_values(values: Iterable[float], margin: float) -> tuple[float, float, float, float]:
    """One-sided p-values of the tests that decide a claim, from per-seed values: (equivalence within +-margin
    by TOST: the larger of its two one-sided p-values; "mean < 0"; "the mean lies beyond +-margin": the
    smaller of "mean > margin" and "mean < -margin"; "mean > 0"). Each rejects at its level exactly when
    `grade` says negligible, negative, beyond or above zero."""
    x = floats(values)
    n = len(x)
    if n < 2:
        return 1.0, 1.0, 1.0, 1.0
    mean, sem = float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))
    tost = max(p_above(mean, sem, n, -margin), p_above(-mean, sem, n, -margin))
    negative = p_above(-mean, sem, n, 0.0)
    beyond = min(p_above(mean, sem, n, margin), p_above(-mean, sem, n, margin))
    return tost, negative, beyond, p_above(mean, sem, n, 0.0)


def against(values: Iterable[float], claim: str, margin: float = MARGIN) -> float:
    """How strongly the per-seed `values` show a claim does not hold, as p-value over the test's level (at
    most 1: shown at that level). claim "effect" (the mean is positive): shown negligible (TOST at
    ALPHA_TOST) or negative (ALPHA_ONE_SIDED), whichever is stronger; "no effect": beyond the margin
    (ALPHA_ONE_SIDED)."""
    tost, negative, beyond, _ = _p_values(values, margin)
    if claim == "effect":
        return min(tost / ALPHA_TOST, negative / ALPHA_ONE_SIDED)  # (margin 0: TOST's p is >= 0.5, never shown)
    if claim == "no effect":
        return beyond / ALPHA_ONE_SIDED
    raise ValueError(f"claim must be 'effect' or 'no effect', not {claim!r}")


def supports(values: Iterable[float], claim: str, margin: float = MARGIN) -> float:
    """How strongly the per-seed `values` show a claim holds, as p-value over the test's level (at most 1:
    shown at that level; `effect_verdict` also asks that the effect is not negligible). claim "effect": the
    mean above zero (ALPHA_ONE_SIDED); "no effect": equivalence within +-margin (TOST at ALPHA_TOST)."""
    tost, _, _, positive = _p_values(values, margin)
    if claim == "effect":
        return positive / ALPHA_ONE_SIDED
    if claim == "no effect":
        return tost / ALPHA_TOST
    raise ValueError(f"claim must be 'effect' or 'no effect', not {claim!r}")


def holm_levels(ratios: Sequence[float]) -> list[bool]:
    """Holm's step-down procedure on p-values given as p / (the test's own level): the smallest ratio must be
    at most 1 / m, the next 1 / (m - 1), ..., stopping at the first that fails. Each test keeps its own
    level and the chance of any false rejection stays at most the largest level (Holm 1979, weighted)."""
    order = np.argsort(np.asarray(ratios, dtype=float), kind="stable")
    m, out = len(order), [False] * len(order)
    for rank, i in enumerate(order):
        if not ratios[i] <= 1 / (m - rank):
            break
        out[i] = True
    return out


def family_rule(what: str) -> str:
    """How `family_verdicts` corrects a claim made of several `what` ("lengths"), said in its test."""
    return (f"Holm-corrected over the {what}: one shown not to hold, and one shown to hold unless all of them "
            f"are")


def family_verdicts(instances: Sequence[Iterable[float]], claim: str | Sequence[str],
                    margin: float | Sequence[float] = MARGIN,
                    min_seeds: int = MIN_SEEDS, what: str = "instances",
                    readable: Sequence[bool] | None = None) -> list[tuple[str, str]]:
    """(verdict, reason) of each instance of a claim made of several (module docstring): `effect_verdict`
    (claim "effect") or `no_effect_verdict` ("no effect"; `claim`: one for all, or one per instance, for a
    claim made of different statements), corrected over the instances tested (those with
    `min_seeds` seeds) by Holm's procedure both ways: every "not reproduced" is kept only where it survives;
    and unless every instance is "reproduced" (the claim holds whole), so is every "reproduced", since the
    claim can then hold only in part. Else "not shown", saying so. `margin`: one for all, or one per
    instance. `what` names the instances in that text ("windows", "window lengths"). `readable`: False for
    an instance whose verdict the caller will set aside whatever its test shows (a window still recovering
    when read: `checks.lasting`), so the claim cannot hold whole; pass an instance with nothing to test
    (no early and late window) as no values."""
    instances = [list(v) for v in instances]
    margins = [margin] * len(instances) if isinstance(margin, (int, float)) else list(margin)
    claims = [claim] * len(instances) if isinstance(claim, str) else list(claim)
    readable = [True] * len(instances) if readable is None else list(readable)
    if not len(claims) == len(margins) == len(readable) == len(instances):
        raise ValueError("family_verdicts: one claim, margin and readable flag per instance (or one for all)")
    out = [(effect_verdict if c == "effect" else no_effect_verdict)(v, min_seeds, m)
           for v, c, m in zip(instances, claims, margins)]
    tested = [i for i, v in enumerate(instances) if interval(v).n >= min_seeds]
    if len(tested) < 2:
        return out
    whole = all(v == "reproduced" and ok for (v, _), ok in zip(out, readable))
    against_ = dict(zip(tested, holm_levels([against(instances[i], claims[i], margins[i]) for i in tested])))
    for_ = dict(zip(tested, holm_levels([supports(instances[i], claims[i], margins[i]) for i in tested])))
    for i in tested:
        verdict, reason = out[i]
        held_in_part = verdict == "reproduced" and not whole and readable[i]  # (else set aside, saying why)
        if (verdict == "not reproduced" and not against_[i]) or (held_in_part and not for_[i]):
            out[i] = ("not shown", f"{reason} at its own level, but not after Holm's correction over the "
                                   f"{len(tested)} {what} of this claim"
                                   + (" (it does not hold in every one)" if verdict == "reproduced" else ""))
    return out


def p_above(mean: float, sem: float, n: int, threshold: float = 0.0) -> float:
    """One-sided p-value of a t-test of "mean <= threshold" against "mean > threshold", from a mean over n
    seeds and its standard error; 1 where it cannot be tested (n < 2, no spread and not above)."""
    if n < 2 or not np.isfinite(mean) or not np.isfinite(sem):
        return 1.0
    if sem == 0:
        return 0.0 if mean > threshold else 1.0
    return float(_sc.stdtr(n - 1, -(mean - threshold) / sem))  # (Student's t survival function)


def p_detect(mean: float, sem: float, n: int, threshold: float = 0.0, min_seeds: int = MIN_SEEDS) -> float:
    """`p_above` for a detection among many (an onset of a critical period): 1 with fewer than `min_seeds`
    seeds, which decide nothing and whose p-value must not loosen the correction of the others'."""
    return p_above(mean, sem, n, threshold) if n >= min_seeds else 1.0


def holm(p_values: Sequence[float], alpha: float = ALPHA_ONE_SIDED) -> list[bool]:
    """Holm's step-down procedure: which hypotheses are rejected, in the order given. The smallest p-value
    is compared with alpha / m, the next with alpha / (m - 1), ..., stopping at the first that fails;
    the family-wise error rate is at most alpha for any dependence between the tests."""
    order = np.argsort(np.asarray(p_values, dtype=float), kind="stable")
    m, out = len(order), [False] * len(order)
    for rank, i in enumerate(order):
        if not p_values[i] <= alpha / (m - rank):
            break
        out[i] = True
    return out


def fdr(p_values: Sequence[float], alpha: float = ALPHA_ONE_SIDED) -> list[bool]:
    """Benjamini-Hochberg's step-up procedure: which hypotheses are rejected, in the order given: the k
    smallest p-values, k the largest rank i with p_(i) <= i alpha / m. The expected share of false ones among
    the rejected stays at most alpha (independent or positively dependent tests, as onsets sharing a
    baseline are), and when no hypothesis is false, so does the chance of rejecting any."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    passed = [rank for rank, i in enumerate(order, 1) if p[i] <= alpha * rank / m]
    k = max(passed, default=0)
    out = [False] * m
    for i in order[:k]:
        out[i] = True
    return out


def log_ratio(num: pd.Series, den: pd.Series) -> pd.Series:
    """Per-seed log(num / den) over the seeds both have with positive values (ratios of Fisher traces)."""
    return paired(np.log(num.where(num > 0)), np.log(den.where(den > 0)))
