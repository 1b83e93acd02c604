"""Reducers: the computation behind every figure of the report (DataFrame in, DataFrame out).

Each is pure and tested on small hand-made tables (tests/test_reduce.py, tests/test_claims.py);
`report.py` only draws and `claims.py` grades. Intervals over seeds come from `stats.py`.
Accuracies come in as fractions (the tables' unit) and go out in percent; sensitivities are percentage
points of final test accuracy lost against the seed's no-deficit baseline ("final" = median of the last
10 epochs, as the authors' plotting code).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..storage.records import FINAL_EPOCHS, tag_items, tag_values
from .recovery import add_gains
from .stats import CORRECTION, MARGIN, check_unique_seeds, fdr, interval, p_detect

GROUP = ["deficit", "tags", "onset", "length"]
DEFAULT_THRESHOLD = 0.0  # percentage points: a window belongs to the critical period if it is shown to cost
                         # more than this (Benjamini-Hochberg over onsets); a larger value asks for a minimal loss


def schedule_of(tags: str) -> str:
    """The `grid.schedule` label in a trial's tags ("" where the sweep has no schedule axis)."""
    return str(tag_values(tags).get("schedule", ""))


def variant_of(tags: str) -> str:
    """A trial's tags without its `grid.schedule` label: its values of the sweep's other grid axes (the
    checks grade the schedules side by side within one variant)."""
    return ",".join(f"{key}={value}" for key, value in tag_items(tags) if key != "schedule")


def sem(values: pd.Series) -> float:
    """Standard error of the mean of the non-missing values (sample SD / sqrt(n)); NaN below two."""
    n = values.count()
    return float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def group_sem(values: pd.core.groupby.SeriesGroupBy) -> pd.Series:
    """`sem` of every group at once (one vectorised pass: a sweep of 1,000 windows has 50,000 groups of
    epochs); NaN below two values, as `std(ddof=1)` is."""
    return values.std(ddof=1) / np.sqrt(values.count())


def accuracy_after(curve: pd.Series, trained: int, last: int = FINAL_EPOCHS, sparse: bool = False) -> float:
    """A trial's "final" test accuracy had it stopped after `trained` epochs, from its test accuracy per
    epoch (`curve`, indexed by epoch): the median over epochs [trained - last, trained), what
    `records.final_accuracy` gives a trial of that length; NaN unless the curve holds them all (`sparse`:
    a measure taken only at some epochs, such as a user's metric at the Fisher epochs: those it holds)."""
    part = curve[(curve.index >= max(trained - last, 0)) & (curve.index < trained)].dropna()
    enough = len(part) > 0 if sparse else len(part) == min(last, trained)
    return float(part.median()) if enough else float("nan")


def accuracy_curves(epochs: pd.DataFrame, trial_ids, column: str = "test_acc") -> dict[str, pd.Series]:
    """Test accuracy (or `column`) per epoch (indexed by epoch) of each of `trial_ids`."""
    part = epochs[epochs.trial_id.isin(set(trial_ids))]
    return {tid: g.set_index("epoch")[column] for tid, g in part.groupby("trial_id")}


def seed_sensitivity(trials: pd.DataFrame, epochs: pd.DataFrame | None = None,
                     measure: str = "test_acc") -> pd.DataFrame:
    """One row per finished window trial whose baseline also finished: `sens` = the baseline's final test
    accuracy minus the window's, in percentage points, length-matched: the baseline's accuracy after as
    many epochs as the window trained (read from `epochs` when the baseline trained longer, which it
    does when it serves several lengths). `matched` is False where the baseline trained fewer epochs
    than the window (results from before length-matched baselines): there `sens` also holds the extra
    epochs the window trained. Columns: deficit, tags, onset, length, seed, sens, acc and baseline_acc
    (final accuracies, fractions), epochs, matched, (`recovery.add_gains`, NaN without `epochs`) gain,
    base_gain, clean, and the window's and its baseline's trial_id, baseline_id. A window with two trials of
    one seed is refused (`stats.DuplicateSeeds`). `measure`: a user's metric column (`metric.<name>`) to
    read instead of test accuracy, each trial's median over the same last epochs (those it was measured
    at); `acc` and `baseline_acc` then hold it."""
    columns = [*GROUP, "seed", "sens", "acc", "baseline_acc", "epochs", "matched", "gain", "base_gain", "clean",
               "trial_id", "baseline_id"]
    ok = trials[trials.status == "ok"]
    base = ok[ok.deficit == "none"].set_index("trial_id")
    win = ok[ok.deficit != "none"].copy()
    # astype: with no finished baseline the mapped column comes back with the ids' (string) dtype
    win["baseline_acc"] = win.baseline_id.map(base.final_test_acc).astype(float)
    base_epochs = win.baseline_id.map(base.epochs).astype(float)
    win["matched"] = (base_epochs >= win.epochs).astype(bool)
    longer = win.index[base_epochs > win.epochs]
    if len(longer):
        if epochs is None:
            raise ValueError("the baselines trained longer than their windows: pass the epochs table")
        curves = accuracy_curves(epochs, win.loc[longer, "baseline_id"])
        empty = pd.Series(dtype=float)
        win.loc[longer, "baseline_acc"] = [accuracy_after(curves.get(b, empty), int(e))
                                           for b, e in zip(win.loc[longer, "baseline_id"], win.loc[longer, "epochs"])]
    win["acc"] = win.final_test_acc.astype(float)
    if measure != "test_acc":  # a user's metric (`metric.<name>`) instead of accuracy, read the same way
        if epochs is None or measure not in epochs:
            raise ValueError(f"no column {measure} in the epochs table")
        curves = accuracy_curves(epochs, set(win.trial_id) | set(win.baseline_id), measure)
        empty = pd.Series(dtype=float)
        win["acc"] = [accuracy_after(curves.get(t, empty), int(e), sparse=True)
                      for t, e in zip(win.trial_id, win.epochs)]
        win["baseline_acc"] = [accuracy_after(curves.get(b, empty), int(e), sparse=True)
                               for b, e in zip(win.baseline_id, win.epochs)]
    win = win.dropna(subset=["baseline_acc"])
    win["sens"] = 100 * (win.baseline_acc - win.acc)
    for key, part in win.groupby(GROUP, sort=False):
        check_unique_seeds(pd.Index(part.seed), f"the window {key[0]} [{key[2]}, {key[2] + key[3]})"
                                                + (f" ({key[1]})" if key[1] else ""))
    return add_gains(win, epochs)[columns]


def sensitivity(trials: pd.DataFrame, epochs: pd.DataFrame | None = None, measure: str = "test_acc") -> pd.DataFrame:
    """Sensitivity of every window, mean over seeds (`seed_sensitivity`: length-matched).

    Only `ok` trials whose baseline is also `ok` count. Returns one row per (deficit, tags, onset, length)
    with `sensitivity` (mean over seeds), `sem` (standard error over seeds, NaN with one seed), `low` and
    `high` (its two-sided `stats.LEVEL` t-interval, NaN with one seed), `n_seeds`, `acc` and
    `baseline_acc` (mean final accuracies, in %), `matched` (every seed's baseline length-matched), and
    the still-recovering check (`recovery.py`): `recovery` (mean over seeds of how much the loss shrank
    over the last 10 epochs), `base_gain` (the baseline's own gain), `clean` (clean epochs after the window).
    """
    return window_means(seed_sensitivity(trials, epochs, measure))


def window_means(win: pd.DataFrame) -> pd.DataFrame:
    """`sensitivity` from per-seed rows already made (`seed_sensitivity`), for a caller that also needs them."""
    columns = [*GROUP, "sensitivity", "sem", "low", "high", "n_seeds", "acc", "baseline_acc", "matched",
               "recovery", "base_gain", "clean"]
    if win.empty:
        return pd.DataFrame(columns=columns)
    g = win.groupby(GROUP, sort=True)
    est = g.sens.agg(interval)
    out = pd.DataFrame({"sensitivity": g.sens.mean(), "sem": group_sem(g.sens),
                        "low": est.map(lambda e: e.low), "high": est.map(lambda e: e.high),
                        "n_seeds": g.sens.count(), "acc": 100 * g.acc.mean(),
                        "baseline_acc": 100 * g.baseline_acc.mean(), "matched": g.matched.all(),
                        "recovery": (win.gain - win.base_gain).groupby([win[k] for k in GROUP], sort=True).mean(),
                        "base_gain": g.base_gain.mean(), "clean": g.clean.min()})
    return out.reset_index()[columns]


def heatmap_grid(sens: pd.DataFrame, trials: pd.DataFrame, deficit: str, tags: str) -> pd.DataFrame:
    """Sensitivity as a length x onset grid over every window of the sweep; cells without a finished
    trial are NaN, never zero."""
    windows = trials[(trials.deficit == deficit) & (trials.tags == tags)]
    onsets, lengths = sorted(windows.onset.unique()), sorted(windows.length.unique())
    part = sens[(sens.deficit == deficit) & (sens.tags == tags)]
    grid = part.pivot(index="length", columns="onset", values="sensitivity").reindex(index=lengths, columns=onsets)
    grid.index.name = grid.columns.name = None
    return grid.astype(float)


def critical_period(sens: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Per (deficit, tags, length): the onsets whose window is shown to cost more than `threshold` points
    (0: any accuracy), by one-sided t-tests over seeds corrected for the number of onsets by
    Benjamini-Hochberg's procedure (`stats.fdr`): the expected share of false onsets among those shown stays
    below 2.5 %, and with no effect at any onset so does the chance of showing any, however many onsets the
    grid has (with one onset: its 95 % interval lies above `threshold`).

    Columns: `first_onset`, `last_onset` (NaN when none is shown), `onsets` (all shown, in order),
    `peak_onset`, `peak`, `peak_low`, `peak_high` (the largest mean sensitivity and its interval),
    `min_seeds` (the fewest seeds behind any onset: an onset with fewer than `stats.MIN_SEEDS` is never
    shown), `threshold`, `tested`
    (onsets in the family), `correction` (its name), `recovering` (onsets whose window is still recovering,
    `recovery.py`).
    """
    rows = []
    for (deficit, tags, length), part in sens.groupby(["deficit", "tags", "length"], sort=True):
        part = part.sort_values("onset")
        p = [p_detect(r.sensitivity, r.sem, int(r.n_seeds), threshold) for r in part.itertuples(index=False)]
        shown = part[fdr(p)]
        peak = part.loc[part.sensitivity.idxmax()]
        recovering = part[part.recovery > MARGIN].onset if "recovery" in part else pd.Series(dtype=int)
        rows.append({"deficit": deficit, "tags": tags, "length": length,
                     "first_onset": shown.onset.min() if len(shown) else np.nan,
                     "last_onset": shown.onset.max() if len(shown) else np.nan,
                     "onsets": [int(o) for o in shown.onset], "peak_onset": peak.onset, "peak": peak.sensitivity,
                     "peak_low": peak.low, "peak_high": peak.high, "min_seeds": int(part.n_seeds.min()),
                     "threshold": threshold, "tested": len(part), "correction": CORRECTION,
                     "recovering": [int(o) for o in recovering]})
    return pd.DataFrame(rows, columns=["deficit", "tags", "length", "first_onset", "last_onset", "onsets",
                                       "peak_onset", "peak", "peak_low", "peak_high", "min_seeds", "threshold",
                                       "tested", "correction", "recovering"])


def removal_curve(trials: pd.DataFrame, epochs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Final test accuracy against the deficit's removal epoch, for windows that start at epoch 0 (the
    paper's first figure); the baseline is removal epoch 0, read after the epochs a window of length 0
    would train (with `clean_after: K`, K; with `epochs: E`, E) when `epochs` is given and the baseline
    trained longer to serve the other lengths. Columns: deficit, tags, removal, acc (%), sem (% over
    seeds), n_seeds."""
    ok = trials[trials.status == "ok"]
    base = ok[ok.deficit == "none"]
    win = ok[(ok.deficit != "none") & (ok.onset == 0)]
    rows = []
    for (deficit, tags), part in win.groupby(["deficit", "tags"], sort=True):
        bases = base[base.trial_id.isin(part.baseline_id)]
        # a fixed total gives every window the same length; clean_after gives each K more than its window
        zero = int(part.epochs.iloc[0]) if part.epochs.nunique() == 1 else int((part.epochs - part.length).min())
        accs0 = bases.final_test_acc
        if epochs is not None and len(bases) and (bases.epochs > zero).any():
            curves, empty = accuracy_curves(epochs, bases.trial_id), pd.Series(dtype=float)
            accs0 = pd.Series([accuracy_after(curves.get(b, empty), zero) if e > zero else a
                               for b, e, a in zip(bases.trial_id, bases.epochs, bases.final_test_acc)], dtype=float)
        for removal, accs in [(0, accs0), *((k, g.final_test_acc) for k, g in part.groupby("length"))]:
            rows.append({"deficit": deficit, "tags": tags, "removal": int(removal), "acc": 100 * accs.mean(),
                         "sem": 100 * sem(accs), "n_seeds": int(accs.count())})
    return pd.DataFrame(rows, columns=["deficit", "tags", "removal", "acc", "sem", "n_seeds"])


def group_curves(epochs: pd.DataFrame, trials: pd.DataFrame, column: str) -> pd.DataFrame:
    """A per-epoch column (`test_acc`, `fisher_trace`) averaged over the seeds of each window (and of the
    baselines), NaN epochs dropped. Columns: deficit, tags, onset, length, epoch, mean, sem, n_seeds."""
    ok = trials[trials.status == "ok"][["trial_id", *GROUP]]
    data = epochs[["trial_id", "epoch", column]].dropna().merge(ok, on="trial_id")
    if data.empty:
        return pd.DataFrame(columns=[*GROUP, "epoch", "mean", "sem", "n_seeds"])
    g = data.groupby([*GROUP, "epoch"], sort=True)[column]
    out = pd.DataFrame({"mean": g.mean(), "sem": group_sem(g), "n_seeds": g.count()}).reset_index()
    if column.endswith("_acc"):
        out[["mean", "sem"]] *= 100
    return out


def layer_shares(layers: pd.DataFrame, trial_id: str, per_parameter: bool = False) -> pd.DataFrame:
    """Per-layer Fisher of one trial as a layers x epochs table, each epoch's column summing to one.

    With `per_parameter`, each layer's trace is first divided by its number of parameters (so large
    layers do not dominate by size alone). Rows ordered from input to output.
    """
    part = layers[layers.trial_id == trial_id].copy()
    if part.empty:
        return pd.DataFrame()
    if per_parameter:
        part["trace"] = part.trace / part.params.clip(lower=1)
    if "kind" in part:  # "3 Conv1d" reads better than "3"
        part["layer"] = (part.layer + " " + part.kind.fillna("")).str.strip()
    table = part.pivot_table(index=["order", "layer"], columns="epoch", values="trace", aggfunc="sum")
    table = table.sort_index(level="order").droplevel("order")
    return table / table.sum(axis=0)


def chosen_trials(trials: pd.DataFrame, sens: pd.DataFrame) -> dict[str, dict[str, str | None]]:
    """The trials the report shows in detail, per facet (each value of the trials' `tags`, the sweep's
    extra grid axes): its most and least damaging windows (by the seed-averaged sensitivity within the
    facet), each the lowest seed's trial (the same seed for both where it can), and the worst window's own
    baseline (restarted baselines differ per onset); a facet without windows shows its first seed's
    baseline. Facets in `tags` order; {"": {...}} for a sweep without trials."""
    ok = trials[trials.status == "ok"].sort_values(["seed", "trial_id"])
    out: dict[str, dict[str, str | None]] = {}
    for tags in sorted(set(trials.tags.fillna(""))) or [""]:
        own = ok[ok.tags.fillna("") == tags]
        base = own[own.deficit == "none"]
        pick: dict[str, str | None] = {"baseline": base.trial_id.iloc[0] if len(base) else None,
                                       "worst": None, "best": None}
        ranked = sens[sens.tags.fillna("") == tags].dropna(subset=["sensitivity"]).sort_values("sensitivity")
        seed = None
        for key, row in (("worst", ranked.iloc[-1:]), ("best", ranked.iloc[:1])):
            if row.empty:
                continue
            r = row.iloc[0]
            match = own[(own.deficit == r.deficit) & (own.onset == r.onset) & (own.length == r.length)
                        & own.baseline_id.isin(base.trial_id)]
            if seed is not None and (match.seed == seed).any():
                match = match[match.seed == seed]
            if len(match):
                pick[key] = match.trial_id.iloc[0]
                if key == "worst":
                    seed, pick["baseline"] = match.seed.iloc[0], match.baseline_id.iloc[0]
        out[tags] = pick
    return out


def shown_trials(picks: dict[str, dict[str, str | None]]) -> list[str]:
    """Every trial `chosen_trials` picked, once."""
    return list(dict.fromkeys(t for pick in picks.values() for t in pick.values() if t))


def sample_windows(sens: pd.DataFrame, k: int = 12) -> pd.DataFrame:
    """At most `k` windows of `sens` (one row per window, see `sensitivity`) to draw one curve each: all of
    them when they are `k` or fewer; otherwise the most and the least damaging (largest and smallest mean
    sensitivity) and `k - 2` more at evenly spaced positions of the windows ordered by (deficit, tags,
    length, onset), which spreads them over the deficits, over the lengths and, within a length, over the
    onsets. Ties between extremes go to the first in that order; windows with a NaN sensitivity (no
    baseline yet) can be spread picks, never extremes. Returns those rows in that order (fewer than `k`
    when a spread pick is also an extreme)."""
    ordered = sens.sort_values(["deficit", "tags", "length", "onset"], kind="stable").reset_index(drop=True)
    if len(ordered) <= k:
        return ordered
    assert k >= 3, "k counts the two extremes and at least one spread window"
    n, m = len(ordered), k - 2
    keep = {j * (n - 1) // max(m - 1, 1) for j in range(m)}  # evenly spaced from the first to the last, floored
    known = ordered.sensitivity.astype(float).dropna()
    if len(known):
        keep |= {int(known.idxmax()), int(known.idxmin())}
    return ordered.loc[sorted(keep)].reset_index(drop=True)


def fisher_peak(epochs: pd.DataFrame, trials: pd.DataFrame) -> pd.DataFrame:
    """Per baseline seed: the trace at initialisation (epoch -1, before any training step; NaN in results
    that did not record it), the epoch and value of its peak over the training epochs, the final value and
    the epochs trained. Also `held_epoch` and `held_peak`: the epoch at which the other seeds' mean log trace
    peaks (the baselines of the same settings and onset), and this seed's trace there. A seed's own maximum is
    biased up by its own noise (a flat noisy trace "rises" and "falls" from its maximum), the held-out peak
    is not: the rise and fall are tested on it (NaN without another seed). Columns: seed, init, peak_epoch,
    peak, final, epochs, held_epoch, held_peak."""
    rows, traces, groups = [], [], []  # (parallel: a baseline's row, its trace per epoch, its settings)
    base = trials[(trials.status == "ok") & (trials.deficit == "none")]
    for _, t in base.iterrows():
        f = epochs[epochs.trial_id == t.trial_id].dropna(subset=["fisher_trace"]).sort_values("epoch")
        init = f[f.epoch < 0].fisher_trace
        f = f[f.epoch >= 0]
        if len(f):
            top = f.loc[f.fisher_trace.idxmax()]
            traces.append(f.set_index("epoch").fisher_trace)
            groups.append((t.get("tags", ""), t.get("onset", 0)))
            rows.append({"seed": t.seed, "init": float(init.iloc[0]) if len(init) else np.nan,
                         "peak_epoch": int(top.epoch), "peak": float(top.fisher_trace),
                         "final": float(f.fisher_trace.iloc[-1]), "epochs": int(t.epochs)})
    logs = pd.DataFrame({i: np.log(tr.where(tr > 0)) for i, tr in enumerate(traces)})  # epochs x baselines
    for i, row in enumerate(rows):
        others = logs[[j for j, r in enumerate(rows) if r["seed"] != row["seed"] and groups[j] == groups[i]]]
        mean = others.mean(axis=1)[traces[i].index.intersection(others.index)].dropna()
        epoch = int(mean.idxmax()) if len(mean) else None
        row.update(held_epoch=epoch if epoch is not None else np.nan,
                   held_peak=float(traces[i][epoch]) if epoch is not None else np.nan)
    return pd.DataFrame(rows, columns=["seed", "init", "peak_epoch", "peak", "final", "epochs", "held_epoch",
                                       "held_peak"])


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
    """Per deficit trial (with its deficit, tags, onset and length): the total-variation distance between its
    per-layer Fisher shares and its baseline's, and the shift of the Fisher mass's centre (positive: towards
    the output), at the window's last epoch (`at="window_end"`) or at the last epoch (`"final"`). Also
    `noise_tv`: the mean distance between the baselines of different seeds at the same epoch, the yardstick
    for "a shift"."""
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
        rows.append({"trial_id": t.trial_id, "deficit": t.deficit, "tags": t.tags, "onset": t.onset,
                     "length": t.length, "seed": t.seed, "epoch": epoch, "tv": 0.5 * (w - b).abs().sum(),
                     "centre_shift": centre(w) - centre(b), "noise_tv": np.mean(noise) if noise else np.nan})
    return pd.DataFrame(rows, columns=["trial_id", "deficit", "tags", "onset", "length", "seed", "epoch", "tv",
                                       "centre_shift", "noise_tv"])
