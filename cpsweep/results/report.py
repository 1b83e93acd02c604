"""The standalone HTML report of a sweep (plotly.js embedded: it opens offline and can be mailed around).

    write_report(uri)                     report.html next to the tables (local folder or s3://...)
    report_and_verdicts(uri)              the same, and the claims' verdicts as lines for the terminal
    write_compare([uri, ...], path)       several sweeps overlaid: sensitivity curves and Fisher traces

Every figure draws what a reducer in `reduce.py` computed, with hover values and a one-sentence caption
saying how to read it. The page stays a few MB at any sweep size (benchmarks/report_scale.py): per-window
curves are drawn for at most CURVE_WINDOWS windows (`reduce.sample_windows`, the caption says which and that
every trial is in the Parquet tables), and figure data go out as float32 (7 significant digits; hovers show 2-3).
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..errors import CpsweepError
from .figures import (COLORS, band, colour_range, curves_figure, facet_rows, heatmap_figure, layer_figure,
                      removal_figure, sensitivity_curve_figure)
from .reduce import (DEFAULT_THRESHOLD, GROUP, chosen_trials, group_curves, layer_shares, removal_curve,
                     sample_windows, schedule_of, seed_sensitivity, sensitivity, shown_trials, variant_of,
                     window_means)
from .checks import Check
from .power import report_section
from .report_checks import checks_table, layer_check_trials, sweep_checks, verdict_lines
from .search_report import search_sections
from .summary import header, onset_table
from .summary import label as _label
from .stats import LEVEL
from ..storage.store import Store
from ..storage.folder import Results, ResultsFolder, load_results
from ..storage.records import METRIC

CURVE_WINDOWS = 12      # per-window curves drawn at most per facet (besides the baselines); the tables hold them all
BASELINES = "the baselines (black; dashed where the rate restarts after a window)"  # the curves' captions


def _window(trials: pd.DataFrame, trial_id: str | None) -> tuple[int, int] | None:
    row = trials[trials.trial_id == trial_id]
    if row.empty or row.deficit.iloc[0] == "none":
        return None
    return int(row.onset.iloc[0]), int(row.onset.iloc[0] + row.length.iloc[0])


def sampled_curves(curves: pd.DataFrame, sens: pd.DataFrame, trials: pd.DataFrame,
                   picks: dict[str, dict[str, str | None]], k: int = CURVE_WINDOWS) -> tuple[pd.DataFrame, str]:
    """The rows of `curves` (a `group_curves` table) to draw: the baselines' and, per facet (tags), those of
    at most `k` windows (`sample_windows`; the facet's most damaging trial's window always among them), and
    the caption's words for them ("every window", or "12 of the 1,000 windows (...)")."""
    keys = curves[GROUP].drop_duplicates()
    windows = keys[keys.deficit != "none"]
    per_facet = windows.groupby("tags").size()
    if per_facet.empty or per_facet.max() <= k:
        return curves, "every window"
    ranked = windows.merge(sens[[*GROUP, "sensitivity"]], on=GROUP, how="left")  # NaN: no baseline to compare
    worst = [p["worst"] for p in picks.values() if p.get("worst")]
    picked = [sample_windows(part, k)[GROUP] for _, part in ranked.groupby("tags", sort=True)]
    keep = curves.merge(pd.concat([keys[keys.deficit == "none"], *picked, trials[trials.trial_id.isin(worst)][GROUP]])
                        .drop_duplicates(), on=GROUP)
    n = len(keep[keep.deficit != "none"][GROUP].drop_duplicates())
    each = " of each row" if ranked.tags.nunique() > 1 else ""
    which = (f"the most and least damaging{each}, the others spread over the lengths and onsets"
             if ranked.sensitivity.notna().any() else "spread over the lengths and onsets")
    return keep, (f"{n} of the {len(windows):,} windows ({which}; every trial's trace per epoch is in the epochs "
                  "table, epochs.parquet)")


def _page(title: str, sections: list[tuple[str, go.Figure | str | None]], intro: str) -> str:
    parts, first = [intro], True
    for caption, fig in sections:
        if fig is None:
            parts.append(f"<p><i>{html.escape(caption)}</i></p>")
            continue
        if isinstance(fig, str):  # a table, already HTML
            parts.append(f"<p class='caption'>{html.escape(caption)}</p>{fig}")
            continue
        parts.append(f"<p class='caption'>{html.escape(caption)}</p>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first, config={"displaylogo": False}))
        first = False
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title></head>"
            "<body style='font-family: sans-serif; max-width: 1100px; margin: auto'>" + "\n".join(parts)
            + "</body></html>")


FACETED = ("Panels: one row per value of the sweep's other grid axes ({axes}), on shared axes. ")


def _grid_sections(results: Results, sens: pd.DataFrame, facets: str) -> list[tuple[str, go.Figure]]:
    """The figures over the grid: heatmaps (one per deficit, one colour axis), the sliding-window curve, the
    removal curve."""
    trials, out = results.trials, []
    low, high = colour_range(sens)
    for deficit in sorted(trials[trials.deficit != "none"].deficit.unique()):
        out.append((facets + ("Each cell is a deficit window (onset across, length up) coloured by the points of final "
                              "test accuracy it cost against the same seed's baseline, mean over seeds (hover: its "
                              f"{LEVEL:.0%} t-interval, accuracies, seed count); an x marks a window with no finished "
                              f"result. Every heatmap of this report shares one colour scale, {low:.2f} to "
                              f"{high:.2f} pts."),
                    heatmap_figure(sens, trials, deficit, scale=(low, high))))
    if not sens.empty:
        variants, schedules = sens.tags.map(variant_of).nunique(), sens.tags.map(schedule_of).nunique()
        panels = [p for p, n in (("one column per schedule", schedules), ("one row per value of the other grid "
                                                                          "axes", variants)) if n > 1]
        out.append(((f"Panels: {' and '.join(panels)}, on shared axes. " if panels else "")
                    + ("The paper's sliding-window curve: accuracy lost against the window's onset, one line per "
                       f"window length, the band its {LEVEL:.0%} t-interval across seeds (none with one seed); the "
                       "critical period is where the band lies above zero."),
                    sensitivity_curve_figure(sens)))
    removal = removal_curve(trials, results.epochs)
    if removal.removal.nunique() > 1:
        out.append((facets + ("The paper's first figure: final accuracy of trials with the deficit from epoch 0 to "
                              "the removal epoch; a falling curve means later removal leaves a permanent deficit."),
                    removal_figure(removal)))
    return out


def _trial_sections(results: Results, sens: pd.DataFrame, picks: dict[str, dict[str, str | None]],
                    facets: str, per_parameter: bool, measure: str) -> list[tuple[str, go.Figure]]:
    """The figures per epoch: accuracy of the chosen trials, the user's metrics, the Fisher trace, and the
    per-layer Fisher of each facet's baseline and most damaging window."""
    trials, epochs, layers, out = results.trials, results.epochs, results.fisher_layers, []
    shade = {tags: _window(trials, p["worst"]) for tags, p in picks.items()}
    chosen = shown_trials(picks)
    acc = epochs[epochs.trial_id.isin(chosen)][["trial_id", "epoch", "test_acc"]].merge(
        trials[["trial_id", "deficit", "tags", "onset", "length"]], on="trial_id")
    if not acc.empty:
        acc = acc.assign(mean=100 * acc.test_acc, sem=np.nan)
        out.append((facets + ("Clean test accuracy per epoch of the most and least damaging windows (the lowest "
                              "seed's trials) and of their baseline (the most damaging window shaded)."),
                    curves_figure(acc, "Test accuracy per epoch", "test accuracy (%)", shade=shade)))
    for column in sorted(c for c in epochs.columns if c.startswith(METRIC)):
        curves, drawn = sampled_curves(group_curves(epochs, trials, column), sens, trials, picks)
        if not curves.empty:
            out.append((facets + f"Your metric {html.escape(column[len(METRIC):])} at the epochs the Fisher trace "
                        f"is measured, mean over seeds, for {BASELINES} and {drawn}; the most damaging "
                        "window is shaded" + (" (the measure of the sensitivity above)." if column == measure else "."),
                        curves_figure(curves, column, column[len(METRIC):], shade=shade)))
    fisher, drawn = sampled_curves(group_curves(epochs, trials, "fisher_trace"), sens, trials, picks)
    if not fisher.empty:
        for log in (False, True):
            out.append((facets + ("Log scale: " if log else "") + "Trace of the Fisher Information of the weights on "
                        f"the probe set, mean over seeds, for {BASELINES} and {drawn}; the most damaging "
                        "window is shaded. The paper: it rises fast early, then falls.",
                        curves_figure(fisher, "Fisher trace" + (" (log scale)" if log else ""), "tr F", log=log,
                                      shade=shade)))
    norm = "per parameter, " if per_parameter else ""
    for key, title in (("baseline", "baseline"), ("worst", "most damaging window")):
        chosen = [(f"{tags + ': ' if tags else ''}{p[key]}", p[key]) for tags, p in picks.items() if p[key]]
        shares = {name: layer_shares(layers, tid, per_parameter) for name, tid in chosen}
        kept = [(name, tid) for name, tid in chosen if not shares[name].empty]  # (row title, trial)
        if kept:
            out.append(((f"Each layer's share of the Fisher trace ({norm}each epoch's column sums to one) for the "
                         f"{title} ({', '.join(tid for _, tid in kept)})"
                         f"{', one row per value of the other grid axes' if facets else ''}; the "
                         "paper: a blur deficit moves the mass towards higher layers."),
                        layer_figure({name: shares[name] for name, _ in kept}, f"Per-layer Fisher: {title}",
                                     {name: _window(trials, tid) for name, tid in kept})))
    return out


def render(results: Results, threshold: float = DEFAULT_THRESHOLD, per_parameter: bool = False,
           measure: str = "test_acc", checks: list[tuple[str, Check]] | None = None) -> str:
    """The report of one sweep as a standalone HTML page; `measure`: a user's metric column to measure the
    sensitivity by instead of test accuracy (the heatmaps and curves; the claims stay on accuracy). A sweep
    with extra grid axes gets every figure faceted by them (`figures.py`); `checks`: the claims' checks if
    already run (`report_checks.sweep_checks`)."""
    trials = results.trials
    per_seed = seed_sensitivity(trials, results.epochs, measure)
    sens = window_means(per_seed)
    picks = chosen_trials(trials, sens)
    grid = (results.spec.get("spec") or {}).get("grid") or {}
    axes = [k for k in grid if k not in ("onset", "length", "seed")] or ["the trials' tags"]
    facets = FACETED.format(axes=", ".join(axes)) if len(facet_rows(trials.tags)) > 1 else ""
    sections: list[tuple[str, go.Figure | str | None]] = search_sections(results.search)
    table = onset_table(results)
    if table:
        sections.append((("Early against late windows under each learning-rate schedule, side by side: the paper's "
                          "(the sweep's own) and the controls in which the onset does not set the rate the network "
                          "recovers at (restart: the rate restarted after the window, against a baseline restarted "
                          "there; constant). An effect that vanishes under a control is the learning rate's. Verdict: "
                          f"the {LEVEL:.0%} interval of early minus late above zero (reproduced), shown within "
                          "+-0.5 pts or below zero (not reproduced), else not shown; a window still recovering "
                          "when read shows nothing lasting."), table))
    claims = checks_table(sweep_checks(results) if checks is None else checks)
    if claims:
        sections.append((("The paper's claims this sweep can test, each graded by the check that grades the "
                          "committed twins (docs/reproduction.md): under the paper's schedule and, beside it, under "
                          "the learning-rate controls the sweep has; 'not shown' says why the data cannot decide."),
                         claims))
    seeds = report_section(per_seed) if measure == "test_acc" else None
    if seeds:
        sections.append(seeds)
    sections += _grid_sections(results, sens, facets)
    sections += _trial_sections(results, sens, picks, facets, per_parameter, measure)
    name = str((results.spec.get("spec") or {}).get("name", "sweep"))
    intro = header(results, sens, threshold)
    if measure != "test_acc":
        intro += (f"<p><b>sensitivity measured by {html.escape(measure)}</b> (baseline minus window, x100, over the "
                  "same last epochs), not by test accuracy: read 'pts' in the heatmaps and curves as that</p>")
        for _, fig in sections:  # the figures drawn from the sensitivity name what it measures
            if isinstance(fig, go.Figure):
                _relabel(fig, "accuracy lost", f"{measure} lost")
    return _page(f"cpsweep report: {name}", sections or [("No finished trial yet.", None)], intro)


def _relabel(fig: go.Figure, old: str, new: str) -> None:
    """`old` as `new` in a figure's title and axis titles."""
    swap = lambda text: text.replace(old, new) if text else text  # noqa: E731
    fig.update_layout(title_text=swap(fig.layout.title.text))
    fig.for_each_yaxis(lambda axis: axis.update(title_text=swap(axis.title.text)))


def render_compare(named: Sequence[tuple[str, Results]]) -> str:
    """Several sweeps overlaid: their sensitivity curves and their baselines' Fisher traces."""
    sens_fig = go.Figure()
    fisher_fig = go.Figure()
    for i, (name, res) in enumerate(named):
        sens = sensitivity(res.trials, res.epochs)
        for (deficit, tags, length), part in sens.groupby(["deficit", "tags", "length"], sort=True):
            part = part.sort_values("onset")
            label = f"{name}: {_label(deficit, tags)}, length {int(length)}"
            band(sens_fig, part.onset.tolist(), part.sensitivity, part["sem"], COLORS[i % len(COLORS)], label, label)
        fisher = group_curves(res.epochs, res.trials, "fisher_trace")
        base = fisher[fisher.deficit == "none"]
        for tags, part in base.groupby("tags"):
            label = f"{name}: {_label('none', tags)}"
            band(fisher_fig, part.epoch.tolist(), part["mean"], part["sem"], COLORS[i % len(COLORS)], label, label)
    sens_fig.update_layout(title="Sensitivity against window onset", xaxis_title="deficit onset (epoch)",
                           yaxis_title="accuracy lost (pts)", height=420)
    fisher_fig.update_layout(title="Baseline Fisher trace", xaxis_title="epoch", yaxis_title="tr F", height=420,
                             yaxis={"type": "log"})
    names = ", ".join(html.escape(n) for n, _ in named)
    return _page(f"cpsweep comparison: {names}", [
        ("Accuracy lost against window onset for each sweep and window length, bands one standard error.", sens_fig),
        ("Fisher trace of each sweep's baseline (log scale), mean over seeds.", fisher_fig)],
        f"<h1>cpsweep comparison</h1><p>{names}</p>")


def _write(page: str, path: str) -> str:
    """`page` to `path` (-o), its folder created if missing; failures name the path and the fix."""
    folder, _, name = path.rpartition("/")
    Store(folder or ".", fix="pass -o a file in a folder you can write to").write_bytes(
        page.encode(), name, doing=f"write the report {name} to")
    return path


def results_for_report(uri: str, measure: str = "test_acc") -> Results:
    """What `render` draws from: every trial and epoch, and the per-layer rows of only the trials it shows
    in detail (`chosen_trials`) and those the per-layer checks grade (`report_checks.layer_check_trials`:
    every seed's, in a fisher_study-like design only): the largest table stays on disk at any scale."""
    folder = ResultsFolder(uri)
    res = folder.load(fisher_layers=False)
    have = [c for c in res.epochs.columns if c.startswith(METRIC) and pd.api.types.is_numeric_dtype(res.epochs[c])]
    if measure != "test_acc" and measure not in have:  # (not any column: an id, a flag or the epoch is no measure)
        what = f"{measure} is not a metric of {uri}" if measure in res.epochs else f"{uri} has no column {measure}"
        raise CpsweepError(f"--measure: {what}; give test_acc or one of its metrics: "
                           f"{', '.join(have) or 'none'} (a sweep's metrics: section)")
    picks = chosen_trials(res.trials, sensitivity(res.trials, res.epochs, measure))
    wanted = set(shown_trials(picks)) | layer_check_trials(res)
    res.fisher_layers = folder.table("fisher_layers", trial_ids=sorted(wanted))
    return res


def write_report(uri: str, path: str | None = None, threshold: float = DEFAULT_THRESHOLD,
                 per_parameter: bool = False, measure: str = "test_acc") -> str:
    """Write the report of the results folder `uri` to `path` (default: `<uri>/report.html`); `measure`:
    see `render`."""
    page = render(results_for_report(uri, measure), threshold, per_parameter, measure)
    if path is None:
        return _write_beside(page, uri)
    return _write(page, path)


def _write_beside(page: str, uri: str) -> str:
    Store(uri).write_bytes(page.encode(), "report.html")
    return f"{uri.split('?')[0].rstrip('/')}/report.html"


def report_and_verdicts(uri: str) -> tuple[str, list[str]]:
    """Write `<uri>/report.html`; return its path and the claims' verdicts (`report_checks.verdict_lines`),
    both from one read of the tables and one run of the checks."""
    results = results_for_report(uri)
    checks = sweep_checks(results)
    return _write_beside(render(results, checks=checks), uri), verdict_lines(checks)


def write_compare(uris: Sequence[str], path: str) -> str:
    named = [(u.split("?")[0].rstrip("/").rsplit("/", 1)[-1], load_results(u)) for u in uris]
    return _write(render_compare(named), path)
