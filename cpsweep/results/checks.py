"""What every reproduction check shares: the `Check` record, the verdicts and how they combine, the paired
per-seed views of a sweep's results, and the grading of an onset claim under each learning-rate schedule
(`claims.py` lists the checks).

Each check reads the sweeps it needs (by name, from a results root: `blur_grid`, `vflip`, ... or their
laptop-scale twins `mini_blur_grid`, ...) and returns a `Check`: the claim and its source, the test that
decides it, what was measured (estimates with their intervals and n), a verdict, the verdict of the same
test under the learning-rate controls, and the verdicts in plain words:

    reproduced       the test shows the claim
    partly           a claim with several parts (every window length, rise and fall): some shown, the
                     others not shown either way
    contradictory    a claim tested on several instances (window lengths, variants): some shown to hold and
                     others shown not to hold; the instances are listed, never averaged into "partly" (a
                     claim made of different statements, "rises, then falls", is "not reproduced" when one of
                     them is shown not to hold: `conjunction`)
    not reproduced   the data show the claim does not hold (the opposite effect, no effect where one is
                     claimed, or a lasting effect beyond the margin where none is)
    not shown        the data cannot decide: too few paired seeds, an interval too wide, a window still
                     recovering when read, or baselines that are not length-matched; the text says which
    measured         reported, no claim to test (a control)
    not run          a sweep it needs is missing, or holds nothing to compare

Every test is paired by seed and uses `stats.py` (one rule for "an effect" and "no effect"; the false
discovery rate over many onsets; a claim tested on several instances, every window or every length, is
shown not to hold only where Holm's correction over its instances still shows it, and, unless it holds in
every instance, shown to hold in one only where that correction still shows it: `stats.family_verdicts`).
A claim about onset is graded under every schedule of its sweep (`grid.schedule`): the verdict is the
paper's schedule's; `controls` gives the verdicts under `restart` (the rate restarted at the window's
end, against a baseline restarted there) and `constant`, where the onset does not set the rate the
network recovers at; `plain` says in words whether the effect survives them. A window whose loss is
still shrinking when it is read (`recovery.py`) shows no lasting effect either way: "not shown".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd

from ..config.views import diff_settings
from . import stats
from .recovery import deficit_note, recovery_note, unchecked_note, unlearned_note
from .reduce import schedule_of, seed_sensitivity
from ..storage.folder import Results

VERDICTS = ("reproduced", "partly", "contradictory", "not reproduced", "not shown", "measured", "not run")
PAPER = "paper, abstract"
CONTROLS = ("restart", "constant")  # grid.schedule values that remove the learning-rate confound


@dataclass(frozen=True)
class Check:
    key: str
    claim: str
    source: str        # where the claim comes from
    test: str          # what decides it
    measured: str
    verdict: str       # under the paper's schedule (the sweep's own, never restarted)
    controls: str = ""  # the same test under the learning-rate controls ("" where the claim is not about onset)
    plain: str = ""     # the verdicts in plain words


Getter = Callable[[str], "Results | None"]
Grader = Callable[[pd.DataFrame], "tuple[str, str]"]  # one schedule's per-seed sensitivities -> (verdict, text)


def window(ss: pd.DataFrame, onset: int, length: int, deficit: str | None = None, tags: str | None = None
           ) -> pd.Series:
    """Per-seed sensitivity of one window (indexed by seed; a seed twice is refused)."""
    part = ss[(ss.onset == onset) & (ss.length == length)]
    if deficit is not None:
        part = part[part.deficit == deficit]
    if tags is not None:
        part = part[part.tags == tags]
    values = part.set_index("seed").sens
    stats.check_unique_seeds(values.index, f"the window [{onset}, {onset + length})")
    return values


def settings_differ(a: Results, b: Results, allowed: tuple[str, ...]) -> list[str]:
    """Fixed settings (dotted keys) that differ between two sweeps, other than the `allowed` prefixes."""
    skip = ("sweep", *allowed)
    return [k for k, _, _ in diff_settings(a.spec.get("fixed") or {}, b.spec.get("fixed") or {})
            if not k.startswith(skip)]


def combine(verdicts: Sequence[str]) -> str:
    """One verdict for a claim made of parts that must all hold; parts shown to hold and parts shown not to
    hold are a contradiction, not "partly"."""
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced"
    held = any(v in ("reproduced", "partly") for v in verdicts)
    failed = any(v == "not reproduced" for v in verdicts)
    if "contradictory" in verdicts or (held and failed):
        return "contradictory"
    if held:
        return "partly"
    return "not reproduced" if failed else "not shown"


def conjunction(verdicts: Sequence[str]) -> str:
    """One verdict for a claim that is the conjunction of different statements ("rises, then falls"; "narrows
    and closes"): it does not hold when one of them is shown not to."""
    if verdicts and all(v == "reproduced" for v in verdicts):
        return "reproduced"
    if "not reproduced" in verdicts:
        return "not reproduced"
    return "partly" if "reproduced" in verdicts else "not shown"


def lasting(verdict: str, reason: str, windows: pd.DataFrame, keep: tuple[str, ...] = ()) -> tuple[str, str]:
    """A verdict on lasting losses, unless a window in `windows` (per-seed rows) was read during its deficit,
    or is still recovering, its loss still growing or its baseline still improving when read: then "not
    shown" and why (`recovery.py`). `keep`: verdicts that stand when a window is still recovering (a loss
    already shown negligible cannot become a lasting one by recovering further; it can by growing, or by a
    baseline that improves further). A verdict whose recovery could not be checked stands and says so."""
    if verdict == "not shown":
        return verdict, reason
    during = deficit_note(windows)
    if during is not None:
        return "not shown", f"not shown: {during}"
    note = recovery_note(windows, recovering=verdict not in keep)
    if note is not None:
        return "not shown", f"not shown: {note}"
    unchecked = unchecked_note(windows)
    return verdict, reason + (f" ({unchecked})" if unchecked else "")


def readable(rows: pd.DataFrame, keep: tuple[str, ...] = ()) -> bool:
    """Whether `lasting` lets a verdict shown on these windows stand (not read during the deficit, nor still
    recovering): `stats.family_verdicts` needs it to know whether the claim can hold whole."""
    return lasting("reproduced", "", rows, keep)[0] == "reproduced"


def contrast(ss: pd.DataFrame, length: int | None = None) -> tuple[pd.Series, str, pd.DataFrame]:
    """Per-seed sensitivity of the earliest window minus the latest one at `length` (default: the longest),
    paired by seed, a description of both windows, and their per-seed rows."""
    length = ss.length.max() if length is None else length
    part = ss[ss.length == length]
    early, late = part.onset.min(), part.onset.max()
    a, b = window(part, early, length), window(part, late, length)
    return stats.paired(a, b), (f"onset {early} {stats.interval(a)} vs onset {late} {stats.interval(b)} pts "
                                f"(length {length})"), part[part.onset.isin([early, late])]


def length_contrasts(part: pd.DataFrame, lengths: Sequence[int] | None = None) -> dict:
    """Per window length (every length of `part`, or `lengths`): its `contrast`, or None without an early and
    a late window."""
    lengths = sorted(part.length.unique()) if lengths is None else lengths
    return {k: contrast(part, k) if part[part.length == k].onset.nunique() >= 2 else None for k in lengths}


def grade_contrasts(contrasts: dict, graded_: dict) -> tuple[str, str]:
    """One verdict and text from `length_contrasts` and each tested length's (verdict, reason) (`graded_`,
    corrected over the family the caller chose), each read through `lasting`."""
    verdicts, texts = [], []
    for length, c in contrasts.items():
        if c is None:
            verdicts.append("not shown")
            texts.append(f"length {length}: needs an early and a late window")
            continue
        diff, text, rows = c
        verdict, reason = lasting(*graded_[length], rows)
        verdicts.append(verdict)
        texts.append(f"{text}; early minus late {stats.interval(diff)}: {reason}")
    return combine(verdicts), "; ".join(texts)


def early_minus_late_lengths(part: pd.DataFrame, lengths: Sequence[int] | None = None) -> dict:
    """Earliest minus latest onset at every window length (or `lengths`): per length, its (verdict, text),
    one effect verdict each, Holm-corrected over the lengths (`stats.family_verdicts`: a length shown not to
    hold, and one shown to hold unless every length is). A table with a row per length shows these, so that
    its rows and the claim's verdict (`early_minus_late`) never disagree."""
    contrasts = length_contrasts(part, lengths)
    graded_ = dict(zip(contrasts, stats.family_verdicts(
        [[] if c is None else c[0] for c in contrasts.values()], "effect", what="window lengths",
        readable=[c is not None and readable(c[2]) for c in contrasts.values()])))
    return {length: grade_contrasts({length: c}, graded_) for length, c in contrasts.items()}


def early_minus_late(part: pd.DataFrame, lengths: Sequence[int] | None = None) -> tuple[str, str]:
    """Grader: `early_minus_late_lengths` as one verdict (every length must hold) and one text."""
    per = early_minus_late_lengths(part, lengths).values()
    return combine([v for v, _ in per]), "; ".join(t for _, t in per)


def by_schedule(ss: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per-seed sensitivities split by schedule label: the paper's first (the sweep's own; "" without a
    schedule axis), then the controls in CONTROLS order."""
    labels = ss.tags.map(schedule_of)
    order = sorted(labels.unique(), key=lambda s: (s in CONTROLS, CONTROLS.index(s) if s in CONTROLS else 0, s))
    return {label: ss[labels == label] for label in order}


def paper_schedule(ss: pd.DataFrame) -> pd.DataFrame:
    """The sensitivities under the paper's schedule: every schedule but the controls (restart, constant)."""
    return ss[~ss.tags.map(schedule_of).isin(CONTROLS)]


def schedule_name(label: str) -> str:
    return {"": "the paper's schedule", "restart": "restart control", "constant": "constant-rate control"}.get(
        label, f"{label} (the paper's schedule)" if label not in CONTROLS else label)


WORDS = {"reproduced": "holds", "partly": "holds in part", "contradictory": "has parts that disagree",
         "not reproduced": "is shown not to hold", "not shown": "cannot be decided", "not run": "was not run"}


def plain_words(verdict: str, controls: dict[str, str]) -> str:
    """The verdicts of one claim under the paper's schedule and its controls, in words, and what the controls
    rule out: the restart control gives every window the same rate after it (its recovery), not during it
    (a late window still trains through its deficit at a smaller rate); only the constant-rate control gives
    every epoch the same rate."""
    text = f"Under the paper's schedule the claim {WORDS.get(verdict, verdict)}"
    if not controls:
        return text + "; this sweep has no learning-rate control, so onset and the rate it sets are confounded."
    text += "".join(f"; under the {schedule_name(c)} it {WORDS.get(v, v)}" for c, v in controls.items())
    if verdict != "reproduced":
        return text + "."
    if "not reproduced" in controls.values() or "reproduced" not in controls.values():
        return text + ", so the learning rate is not ruled out as its explanation."
    if controls.get("constant") == "reproduced":
        return text + ". It holds at a constant rate too: not the learning rate's doing."
    constant = {None: "only a constant-rate control rules out.",
                "partly": "the constant-rate control rules out only in part."}.get(
        controls.get("constant"), "the constant-rate control leaves undecided.")
    return text + (". The restart control gives every window the same rate after it, so the rate of the "
                   "recovery does not explain it; the rate during a window still depends on when it falls, which "
                   + constant)


def graded(key: str, claim: str, source: str, test: str, ss: pd.DataFrame, grade: Grader, note: str = "") -> Check:
    """A claim about onset, graded by `grade` under every schedule of the sweep (module docstring)."""
    results = {label: grade(part) for label, part in by_schedule(ss).items()}
    main = [label for label in results if label not in CONTROLS]
    if not main:
        return Check(key, claim, source, test, note + "no window under the paper's schedule", "not run")
    verdict = combine([results[label][0] for label in main])
    controls = {label: v for label, (v, _) in results.items() if label in CONTROLS}
    measured = " | ".join(f"{schedule_name(label)}: {text}" for label, (_, text) in results.items())
    return Check(key, claim, source, test, note + measured, verdict,
                 "; ".join(f"{c}: {v}" for c, v in controls.items()) or "no control in the sweep",
                 plain_words(verdict, controls))


def design_note(r: Results) -> str:
    """What the verdicts must say about a sweep's design: windows read during their deficit, a common end
    epoch (unequal recovery per window) and seeds added after results had been seen (`launch.write_spec`
    keeps the history)."""
    notes = []
    raw = r.spec.get("spec") or {}
    win = r.trials[r.trials.deficit != "none"] if {"deficit", "epochs", "onset", "length"} <= set(r.trials) else None
    during = None if win is None or win.empty else deficit_note(win.assign(clean=win.epochs - win.onset - win.length))
    if during:
        notes.append(during)
    if raw.get("common_end"):
        notes.append(f"recovery differs per window: every trial stops at epoch {raw.get('epochs')} "
                     "(common_end), so later windows had fewer clean epochs")
    design = r.spec.get("design") or []
    for before, d in zip(design, design[1:]):
        added = sorted(set(d["seeds"]) - set(before["seeds"]))
        if added and d.get("trials_done_before"):
            notes.append(f"seed{'s' * (len(added) > 1)} {_span(added)} {'were' if len(added) > 1 else 'was'} added "
                         f"only after {d['trials_done_before']} trials had finished ({d.get('launched', '?')}): "
                         "not a design fixed before its results")
    return "".join(f"NOTE: {n}. " for n in notes)


def _span(seeds: Sequence[int]) -> str:
    seeds = sorted(seeds)
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2 else \
        ", ".join(map(str, seeds))


def sensitivities(get: Getter, name: str, key: str, claim: str, source: str, test: str,
                  deficit: str | None = None) -> tuple[pd.DataFrame | None, Check | None, str]:
    """A sweep's per-seed sensitivities (with the still-recovering columns) and its `design_note`, or the
    "not run" check that says why there are none."""
    r = get(name)
    if r is None:
        return None, Check(key, claim, source, test, f"no {name} results", "not run"), ""
    ss = seed_sensitivity(r.trials, r.epochs if len(r.epochs) else None)
    if deficit is not None:
        ss = ss[ss.deficit == deficit]
    if ss.empty:
        return None, Check(key, claim, source, test, f"no finished window of {name} with its baseline", "not run"), ""
    if not ss.matched.all():
        sweep = str((r.spec.get("spec") or {}).get("name") or name)
        return None, Check(key, claim, source, test, f"{sweep}'s baselines trained fewer epochs than its windows "
                                                        "(a grid extended by a cpsweep before 2026-12-08, or results "
                                                        "from before length-matched baselines): launch it again to "
                                                        "train them to their length", "not shown"), ""
    unlearned = unlearned_note(ss, r.epochs if len(r.epochs) else None)
    if unlearned:
        return None, Check(key, claim, source, test, f"not shown: {unlearned}", "not shown"), ""
    return ss, None, design_note(r)


def contrast_check(get: Getter, key: str, name: str, claim: str, source: str) -> Check:
    """Early window minus late window at every length, paired by seed, under every schedule of the sweep."""
    test = ("per seed, sensitivity of the earliest onset minus the latest, at every window length; 95 % "
            f"t-interval above zero, >= 3 seeds ({stats.family_rule('lengths')}); "
            f"graded under the paper's schedule and each learning-rate control; {stats.NEGLIGIBLE_RULE}")
    ss, missing, note = sensitivities(get, name, key, claim, source, test)
    if missing:
        return missing
    if ss.onset.nunique() < 2:
        return Check(key, claim, source, test, "needs an early and a late window", "not run")
    return graded(key, claim, source, test, ss, early_minus_late, note)
