"""What every reproduction check shares: the `Check` record, the verdicts and how they combine, and the
paired, per-seed views of a sweep's results the checks test (`claims.py` lists the checks).

Each check reads the sweeps it needs (by name, from a results root: `blur_grid`, `vflip`, ... or their
laptop-scale twins `mini_blur_grid`, ...) and returns a `Check`: the claim and its source, the test that
decides it, what was measured (estimates with their intervals and n) and a verdict:

    reproduced       the test shows the claim
    partly           a claim with several parts (every window length, rise and fall): some shown, some
                     shown not to hold
    not reproduced   the data show the claim does not hold (the opposite effect, or no effect where one is
                     claimed, or a lasting effect where none is)
    not shown        the data cannot decide: too few paired seeds, an interval too wide, or baselines that
                     are not length-matched; the measured text says which
    measured         reported, no claim to test (a control)
    not run          a sweep it needs is missing, or holds nothing to compare

Every test is paired by seed (a window trial against its own seed's length-matched baseline, two sweeps
on the seeds they share) and uses `stats.py`: an effect is claimed when the 95 % t-interval of the
per-seed values lies above zero; "no lasting effect" is an equivalence test (two one-sided tests)
against +-0.5 points; fewer than 3 paired seeds decide nothing. Two sweeps are compared only when their
fixed settings are equal except for the keys the check varies on purpose. A sweep with a `grid.schedule`
axis is split by schedule: the paper's claims are graded under the paper's schedule, the controls
(`restart`, `constant`) are reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd

from ..config.spec import diff_settings
from . import stats
from .reduce import schedule_of, seed_sensitivity
from .store import Results

VERDICTS = ("reproduced", "partly", "not reproduced", "not shown", "measured", "not run")
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


def sensitivities(get: Getter, name: str, key: str, claim: str, source: str, test: str,
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


def contrast_check(get: Getter, key: str, name: str, claim: str, source: str, per_length: bool = False,
                    measured_only: bool = False) -> Check:
    """Early window minus late window, paired by seed: an effect (or, for a control, just measured)."""
    test = ("per seed, sensitivity of the earliest onset minus the latest, " +
            ("at every window length; " if per_length else "at the longest window; ") +
            "95 % t-interval above zero, >= 3 seeds")
    ss, missing = sensitivities(get, name, key, claim, source, test)
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


def schedule_contrasts(ss: pd.DataFrame) -> dict[str, tuple[list[str], list[str]]]:
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
