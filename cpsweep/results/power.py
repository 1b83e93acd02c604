"""How many seeds a design needs: the power of cpsweep's own verdict rules (`stats.grade`) for a true effect
and a seed-to-seed spread, and the spread measured on a pilot sweep (`cpsweep seeds`).

A design is fixed before its results are seen (docs/science.md), its number of seeds included: seeds added
after a look are flagged in the report. So the spread of a pilot (the quickstart, or a smaller sweep of
the same model and data) decides the seeds of the confirmatory sweep, before it runs:

    power(claim, effect, sd, n)             # P(the claim's verdict is "reproduced") with n seeds
    seeds_needed(claim, effect, sd, 0.8)    # the fewest seeds (at least stats.MIN_SEEDS) with that power
    pilot_spread(seed_sensitivity(...))     # pooled seed-to-seed SD of a window's cost, and of early minus late
    upper_sd(sd, df)                        # a one-sided upper confidence bound of that SD

The claims, each "reproduced" exactly as `stats.effect_verdict` / `no_effect_verdict` grade per-seed values:
    "effect"     the LEVEL t-interval lies above zero and the (1 - 2 ALPHA_TOST) interval does not lie
                 inside +-margin (a window costs accuracy; an early window costs more than a late one)
    "no effect"  the (1 - 2 ALPHA_TOST) interval lies inside +-margin (a late window does no lasting harm)
With `comparisons` = K the level of the test that shows the claim is divided by K (Bonferroni): the mean
above zero for "effect" (whose "not negligible" test keeps its own level, as in `stats.family_verdicts`),
the equivalence for "no effect". That is at least as strict as the Holm correction a claim over K windows
or lengths gets (tests/test_power.py checks that every design it grades "reproduced" is so graded by
`stats.family_verdicts` over K instances), so the seeds it gives are enough.
The power is that of one comparison: a claim that holds only when each of its K instances does (every
window length) needs each to be shown, so aim each at power^(1/K) (`--power 0.95` for 80 % over four).

The power is exact for normal per-seed values: the mean of n seeds is normal and independent of their
sample SD s, so given s each verdict is an interval of the mean, a difference of normal CDFs; averaging
over s, sigma sqrt(chi2_(n-1) / (n - 1)), is one integral (tests/test_power.py checks it against the
noncentral t and against the verdict functions on simulated seeds).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd
from scipy import integrate, special

from . import stats
from .reduce import GROUP

CLAIMS = ("effect", "no effect")
MOST_SEEDS = 200  # `seeds_needed` looks no further


def _levels(claim: str, comparisons: int) -> tuple[float, float]:
    """The one-sided t quantiles' probabilities of the effect test and of each equivalence test: the claim's
    own test corrected over `comparisons`, the "effect" claim's "not negligible" test not (module docstring)."""
    return 1 - stats.ALPHA_ONE_SIDED / comparisons, 1 - stats.ALPHA_TOST / (comparisons if claim == "no effect" else 1)


def power(claim: str, effect: float, sd: float, n: int, margin: float = stats.MARGIN, comparisons: int = 1) -> float:
    """The probability that `claim` is graded "reproduced" from n seeds whose per-seed values are normal
    with mean `effect` and standard deviation `sd` (module docstring); 0 below stats.MIN_SEEDS seeds."""
    if claim not in CLAIMS:
        raise ValueError(f"claim must be one of {CLAIMS}, not {claim!r}")
    if n < stats.MIN_SEEDS:
        return 0.0
    if not sd >= 0:
        raise ValueError(f"sd must be >= 0, got {sd}")
    if sd <= 1e-9 * max(1.0, abs(effect), margin):  # every seed gives `effect` (up to rounding): no width
        return float(effect > max(0.0, margin) if claim == "effect" else -margin < effect < margin)
    df, root = n - 1, math.sqrt(n)
    q1, q2 = _levels(claim, comparisons)
    t1, t2 = stats.t_quantile(q1, df) / root, stats.t_quantile(q2, df) / root  # half-widths per unit of s

    def given(s: float) -> float:  # P(reproduced | the seeds' sample SD is s)
        z = lambda bound: (bound - effect) * root / sd  # noqa: E731 (the mean's standard score)
        if claim == "effect":
            return float(special.ndtr(-z(max(t1 * s, margin - t2 * s))))
        inner = margin - t2 * s
        return float(special.ndtr(z(inner)) - special.ndtr(z(-inner))) if inner > 0 else 0.0

    def weighted(u: float) -> float:  # u = df s^2 / sd^2 ~ chi2(df), times its density
        if u <= 0:
            return 0.0
        log_pdf = (df / 2 - 1) * math.log(u) - u / 2 - (df / 2) * math.log(2) - special.gammaln(df / 2)
        return given(sd * math.sqrt(u / df)) * math.exp(log_pdf)

    # over all but 2e-12 of u's mass, split where the rule changes form (s at which the effect rule's two
    # bounds meet, and at which the equivalence interval can no longer fit inside the margin)
    low, high = 2 * special.gammaincinv(df / 2, 1e-12), 2 * special.gammainccinv(df / 2, 1e-12)
    kinks = [df * (margin / (k * sd)) ** 2 for k in (t1 + t2, t2) if margin > 0]
    value, _ = integrate.quad(weighted, low, high, points=[u for u in kinks if low < u < high] or None, limit=200)
    return min(1.0, max(0.0, value))


def seeds_needed(claim: str, effect: float, sd: float, target: float = 0.8, margin: float = stats.MARGIN,
                 comparisons: int = 1) -> int | None:
    """The fewest seeds (from stats.MIN_SEEDS) whose `power` reaches `target`; None if MOST_SEEDS do not."""
    for n in range(stats.MIN_SEEDS, MOST_SEEDS + 1):
        if power(claim, effect, sd, n, margin, comparisons) >= target:
            return n
    return None


def seeds_at(claim: str, effect: float, sd: float, df: int, target: float = 0.8, margin: float = stats.MARGIN,
             comparisons: int = 1) -> tuple[int | None, int | None]:
    """`seeds_needed` with the spread's SD and with its `upper_sd` (None for the latter without `df`)."""
    high = upper_sd(sd, df)
    return (seeds_needed(claim, effect, sd, target, margin, comparisons),
            None if math.isnan(high) else seeds_needed(claim, effect, high, target, margin, comparisons))


def pooled_sd(groups: Iterable[Iterable[float]]) -> tuple[float, int]:
    """The pooled standard deviation of several groups' values about their own means, and its degrees of
    freedom (each group of n values gives n - 1; a group of one gives none); NaN and 0 without any."""
    squares, df = 0.0, 0
    for values in groups:
        x = stats.floats(values)
        if len(x) >= 2:
            squares += float(((x - x.mean()) ** 2).sum())
            df += len(x) - 1
    return (math.sqrt(squares / df), df) if df else (math.nan, 0)


def upper_sd(sd: float, df: int, confidence: float = 0.8) -> float:
    """One-sided `confidence` upper bound of a standard deviation estimated with `df` degrees of freedom:
    sd sqrt(df / chi2_(1 - confidence, df)) (a pilot of few seeds under-states the spread as often as not)."""
    return sd * math.sqrt(df / (2 * special.gammaincinv(df / 2, 1 - confidence))) if df else math.nan


def pilot_spread(sens: pd.DataFrame) -> dict[str, tuple[float, int, int]]:
    """From per-seed sensitivities (`reduce.seed_sensitivity`): (pooled SD, degrees of freedom, groups) of a
    window's cost over its seeds ("window": every window with 2 or more seeds), and of the per-seed
    earliest-minus-latest contrast at each length of each deficit and setting ("contrast": the claim that
    an early window costs more than a late one, graded on exactly these differences)."""
    from .checks import length_contrasts

    windows = [part.sens for _, part in sens.groupby(GROUP, sort=True) if part.sens.notna().sum() >= 2]
    contrasts = [c[0] for _, part in sens.groupby(["deficit", "tags"], sort=True)
                 for c in length_contrasts(part).values()
                 if c is not None and c[0].notna().sum() >= 2]
    return {"window": (*pooled_sd(windows), len(windows)), "contrast": (*pooled_sd(contrasts), len(contrasts))}


def folder_spread(uri: str) -> dict[str, tuple[float, int, int]]:
    """`pilot_spread` of a results folder (`cpsweep seeds RESULTS_DIR`).

    Raises:
        CpsweepError: no window of the folder has two finished seeds (or the folder cannot be read)."""
    from ..errors import CpsweepError
    from ..storage.folder import load_results
    from .reduce import seed_sensitivity

    res = load_results(uri, fisher_layers=False)
    spread = pilot_spread(seed_sensitivity(res.trials, res.epochs))
    if not spread["window"][1]:
        done = res.trials.status.isin(["ok", "diverged"]).sum() if len(res.trials) else 0
        if done < len(res.trials) and res.trials.seed.nunique() >= 2:
            raise CpsweepError(f"{uri} has no window with two finished seeds yet ({done} of {len(res.trials)} "
                               f"trials finished): finish the sweep (launch it again), or give --sd POINTS")
        raise CpsweepError(f"{uri} has no window with two finished seeds: nothing to measure the spread on; run "
                           f"a pilot with replicates: 2 or more, or give --sd POINTS")
    return spread


def given_spread(sd: float) -> dict[str, tuple[float, int, int]]:
    """A spread given by hand (`--sd`), the same for every claim, without degrees of freedom (no upper bound)."""
    return {"window": (sd, 0, 0), "contrast": (sd, 0, 0)}


def table(spread: dict[str, tuple[float, int, int]], effects: Iterable[float], target: float = 0.8,
          comparisons: int = 1, margin: float = stats.MARGIN) -> pd.DataFrame:
    """Seeds needed per claim and true effect, with the spread's SD and with its upper bound (`upper_sd`;
    none for an SD given without degrees of freedom): one row each."""
    rows = []
    claims = [("a window costs accuracy", "effect", "window", list(effects)),
              ("an early window costs more than a late one", "effect", "contrast", list(effects)),
              (f"a window does no lasting harm (within +-{margin:g} pts)", "no effect", "window", [0.0, margin / 2])]
    for text, claim, kind, sizes in claims:
        sd, df, _ = spread.get(kind, (math.nan, 0, 0))
        if math.isnan(sd):
            continue
        for effect in sizes:
            seeds, upper = seeds_at(claim, effect, sd, df, target, margin, comparisons)
            rows.append({"claim": text, "effect": effect, "sd": sd, "seeds": seeds, "upper_sd": upper_sd(sd, df),
                         "seeds_upper": upper})
    return pd.DataFrame(rows, columns=["claim", "effect", "sd", "seeds", "upper_sd", "seeds_upper"])


def _spread_text(spread: dict[str, tuple[float, int, int]], kind: str, groups: str) -> str:
    sd, df, n = spread[kind]
    if math.isnan(sd):
        return "none (needs " + ("windows at an early and a late onset of one length" if kind == "contrast"
                                 else "a window") + " with two seeds)"
    what = groups if n != 1 else groups[:-1]
    return f"{sd:.2f} pts" + (f" ({n} {what}, {df} df; 80 % upper bound {upper_sd(sd, df):.2f})" if df else "")


def lines(spread: dict[str, tuple[float, int, int]], where: str, effects: Iterable[float], target: float = 0.8,
          comparisons: int = 1) -> list[str]:
    """What `cpsweep seeds` prints: the spread and where it comes from, then the seeds per claim and effect."""
    rows = table(spread, effects, target, comparisons)
    upper = rows.upper_sd.notna().any()  # (a pilot gives an upper bound; --sd does not)
    out = [f"{where}: seed-to-seed SD of a window's cost {_spread_text(spread, 'window', 'windows')}; of early "
           f"minus late {_spread_text(spread, 'contrast', 'contrasts')}",
           f"seeds for {100 * target:g} % power under cpsweep's verdict rules (docs/science.md), each claim's test at "
           f"its level divided by {comparisons} (--comparisons: the windows or lengths it is corrected over):",
           f"  {'claim':<52} {'true effect':>11}  {'seeds':>5}" + ("  at the upper bound" if upper else "")]
    for r in rows.itertuples():
        out.append(f"  {r.claim:<52} {r.effect:>7.2f} pts  {format_seeds(r.seeds):>5}"
                   + (f"  {format_seeds(r.seeds_upper):>18}" if upper else ""))
    out.append("Fix replicates: before the sweep runs; seeds added after its results are seen are flagged in its "
               "report.")
    return out


REPORT_TEXT = ("Sizing the next sweep of this model and data (cpsweep seeds): per claim and true "
               "effect, the fewest seeds that give it an 80 % chance of being graded 'reproduced', with this "
               "sweep's seed-to-seed spread ({spread}) and with its 80 % upper bound. For designing a sweep before "
               "it runs, not for reading this one: a claim this sweep left undecided stays undecided.")


def report_section(sens: pd.DataFrame) -> tuple[str, str] | None:
    """The report's section (text, HTML table) of `table` on this sweep's spread (per-seed sensitivities,
    `reduce.seed_sensitivity`); None without two seeds of any window."""
    import html

    spread = pilot_spread(sens)
    if not spread["window"][1]:
        return None
    rows = table(spread, [0.5, 1.0, 2.0])
    head = ["claim", "true effect (pts)", "seeds", "at the upper bound of the spread"]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in (
        r.claim, f"{r.effect:g}", format_seeds(r.seeds), format_seeds(r.seeds_upper))) + "</tr>"
        for r in rows.itertuples())
    spread_text = "; ".join(f"{what} {_spread_text(spread, kind, groups)}" for kind, what, groups in (
        ("window", "a window's cost", "windows"), ("contrast", "early minus late", "contrasts")))
    return (REPORT_TEXT.format(spread=spread_text),  # (the page escapes a section's text)
            "<table border='1' cellpadding='4' style='border-collapse: collapse; font-size: 90%'><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + body + "</table>")


def format_seeds(n: int | None) -> str:
    return f"> {MOST_SEEDS}" if n is None or (isinstance(n, float) and math.isnan(n)) else str(int(n))
