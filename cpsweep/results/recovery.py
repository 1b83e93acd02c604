"""Is a window's loss lasting, or is the network still recovering when it is read? (no torch, no ray)

A window's "final" accuracy is the median of its last FINAL_EPOCHS epochs, read after the clean epochs that
follow it (`clean_after`). If those epochs did not suffice, the accuracy is still rising when it is read,
and a loss measured then says nothing about a *lasting* loss. So every window and baseline is also read
FINAL_EPOCHS epochs earlier, and the change between the two reads is kept:

    gain        the window's accuracy, median of its last 10 epochs minus median of the 10 before (points)
    base_gain   the same for its baseline, read at the same epochs
    recovery    gain - base_gain: how much the window's loss shrank over its last 10 epochs

A window is **still recovering** when its mean `recovery` over seeds exceeds the claim's margin (its loss
is still shrinking by more than the smallest effect the verdicts care about, per 10 epochs): a verdict on
it is "not shown: still recovering after N clean epochs", never "lasting". A baseline whose `base_gain`
exceeds the margin is **still improving**: the sensitivity is read before training has settled.

Three more cases say what the reads cannot show:
- windows whose baselines **did not learn** (their final accuracy less than LEARNED points above their
  accuracy at initialisation, chance for an untrained network): what a deficit costs a network that learns
  nothing says nothing of a critical period, so no claim is graded on them (`unlearned_note`);
- a window followed by fewer than FINAL_EPOCHS clean epochs is **read during its deficit**: its "final"
  accuracy holds epochs trained under the deficit, so no verdict on a lasting effect can come from it
  (`deficit_note`; a design with `clean_after` below FINAL_EPOCHS, or `epochs: E` with a window ending
  less than FINAL_EPOCHS epochs before E);
- a window whose two reads cannot both be made (no per-epoch table, or fewer than 2 FINAL_EPOCHS epochs)
  has its **recovery not checked**: its verdict stands, and says so (`unchecked_note`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..storage.records import FINAL_EPOCHS, tags_label
from .stats import MARGIN


def two_reads(epochs: pd.DataFrame, reads: pd.DataFrame) -> pd.DataFrame:
    """Median test accuracy of each (trial_id, at) of `reads` over epochs [at - F, at) (`last`) and
    [at - 2F, at - F) (`prev`), F = FINAL_EPOCHS, as fractions; NaN unless the curve holds all F epochs of
    the part. Indexed by (trial_id, at)."""
    reads = reads[["trial_id", "at"]].drop_duplicates()
    rows = epochs[epochs.trial_id.isin(set(reads.trial_id))][["trial_id", "epoch", "test_acc"]]
    m = rows.merge(reads, on="trial_id")
    m = m[(m.epoch >= m["at"] - 2 * FINAL_EPOCHS) & (m.epoch < m["at"])].dropna(subset=["test_acc"])
    m = m.assign(part=np.where(m.epoch >= m["at"] - FINAL_EPOCHS, "last", "prev"))
    g = m.groupby(["trial_id", "at", "part"]).test_acc
    med, count = g.median().unstack("part"), g.count().unstack("part")
    out = med.where(count == FINAL_EPOCHS).reindex(columns=["last", "prev"])
    return out.reindex(pd.MultiIndex.from_frame(reads))


def add_gains(win: pd.DataFrame, epochs: pd.DataFrame | None) -> pd.DataFrame:
    """`win` (one row per window trial: trial_id, baseline_id, epochs, onset, length) with `gain`,
    `base_gain` (points; NaN without `epochs` or with fewer than 2 F epochs) and `clean` (clean epochs
    after the window)."""
    win = win.assign(clean=(win.epochs - win.onset - win.length).astype(int), gain=np.nan, base_gain=np.nan)
    if epochs is None or win.empty or "test_acc" not in epochs:
        return win
    own = pd.DataFrame({"trial_id": win.trial_id, "at": win.epochs})
    base = pd.DataFrame({"trial_id": win.baseline_id, "at": win.epochs})
    reads = two_reads(epochs, pd.concat([own, base], ignore_index=True))
    change = 100 * (reads["last"] - reads["prev"])
    win["gain"] = change.reindex(pd.MultiIndex.from_frame(own)).to_numpy()
    win["base_gain"] = change.reindex(pd.MultiIndex.from_frame(base)).to_numpy()
    return win


def still_recovering(recovery: float, margin: float = MARGIN) -> bool:
    """Whether a window's mean loss shrinkage over its last 10 epochs passes the margin."""
    return bool(np.isfinite(recovery) and recovery > margin)


def deficit_note(part: pd.DataFrame) -> str | None:
    """The windows of `part` (per-seed rows with `clean`) read during their deficit (fewer than FINAL_EPOCHS
    clean epochs after them), or None."""
    short = part[part.clean < FINAL_EPOCHS]
    if short.empty:
        return None
    spans = [f"[{o}, {o + k}) ({int(g.clean.min())} clean epoch{'s' * (int(g.clean.min()) != 1)})"
             for (o, k), g in short.groupby(["onset", "length"], sort=True)]
    return (f"window{'s' * (len(spans) > 1)} {', '.join(spans)} read during the deficit: the final accuracy is the "
            f"median of the last {FINAL_EPOCHS} epochs, so give at least {FINAL_EPOCHS} clean epochs after every "
            f"window (clean_after: {FINAL_EPOCHS} or more)")


def unchecked_note(part: pd.DataFrame) -> str | None:
    """Which windows of `part` have no still-recovering check (a missing read: no per-epoch table, or
    fewer than 2 FINAL_EPOCHS epochs), or None."""
    missing = part[(part.gain - part.base_gain).isna()]
    if missing.empty:
        return None
    spans = [f"[{o}, {o + k})" for o, k in missing[["onset", "length"]].drop_duplicates().sort_values(
        ["onset", "length"]).itertuples(index=False)]
    return (f"recovery not checked for window{'s' * (len(spans) > 1)} {', '.join(spans)}: it needs each trial's "
            f"last {2 * FINAL_EPOCHS} epochs in the per-epoch table")


def recovery_note(part: pd.DataFrame, margin: float = MARGIN, recovering: bool = True) -> str | None:
    """Why the windows of `part` (per-seed rows of `reduce.seed_sensitivity`) cannot show a lasting
    effect, or None: "still recovering after N clean epochs (loss shrank X pts over the last 10)" for each
    window still recovering (unless `recovering` is False: for a loss already shown negligible, which
    shrinking further cannot make lasting), each window whose loss is still growing, and the baselines still
    improving."""
    notes = []
    for (onset, length), g in part.groupby(["onset", "length"], sort=True):
        rec, base = float((g.gain - g.base_gain).mean()), float(g.base_gain.mean())
        if recovering and still_recovering(rec, margin):
            notes.append(f"window [{onset}, {onset + length}) still recovering after {int(g.clean.min())} clean "
                         f"epochs (its loss shrank {rec:.2f} pts over the last {FINAL_EPOCHS})")
        if still_recovering(-rec, margin):
            notes.append(f"the loss of window [{onset}, {onset + length}) still growing after {int(g.clean.min())} "
                         f"clean epochs ({-rec:.2f} pts over the last {FINAL_EPOCHS})")
        if still_recovering(base, margin):
            notes.append(f"the baseline of [{onset}, {onset + length}) still improving when read ({base:.2f} pts "
                         f"over the last {FINAL_EPOCHS} epochs)")
    return "; ".join(notes) or None


LEARNED = 5.0  # points a baseline must gain over its accuracy at initialisation for a window's cost to count


def unlearned_note(part: pd.DataFrame, epochs: pd.DataFrame | None) -> str | None:
    """Why the windows of `part` (per-seed rows of `reduce.seed_sensitivity`) decide nothing when their
    baselines did not learn: under some value of the other grid axes (a schedule, a variant; each checked
    alone, so that others cannot hide it), the baselines' mean final accuracy less than LEARNED points above
    their mean accuracy at initialisation (epoch -1 of `epochs`, recorded when the Fisher trace is measured);
    None when every one learned, or there is no record at initialisation to compare with."""
    if epochs is None or part.empty or not {"epoch", "test_acc"} <= set(epochs):
        return None
    init = epochs[epochs.epoch < 0].groupby("trial_id").test_acc.mean().dropna()
    unlearned = []
    for tags, rows in part.groupby("tags", sort=True):
        final = rows.groupby("baseline_id").baseline_acc.max()  # each baseline read as late as a window reads it
        start = init.reindex(final.index).dropna()
        if not start.empty and 100 * (final.mean() - start.mean()) < LEARNED:
            unlearned.append((tags, 100 * final.mean(), 100 * start.mean()))
    if not unlearned:
        return None
    named = part.tags.nunique() > 1
    where = "; ".join(f"{tags_label(tags) + ': ' if named and tags else ''}{final:.1f}% at the end against "
                      f"{start:.1f}% at initialisation" for tags, final, start in unlearned)
    return (f"the baselines did not learn: {where} (fewer than {LEARNED:g} points gained), and what a deficit "
            f"costs a network that learns nothing says nothing of a critical period; raise the learning rate or "
            f"train longer")
