"""The standalone HTML report of a sweep (plotly.js embedded: it opens offline and can be mailed around).

    write_report(uri)                     report.html next to the tables (local folder or s3://...)
    write_compare([uri, ...], path)       several sweeps overlaid: sensitivity curves and Fisher traces

Every figure draws what a reducer in `reduce.py` computed, with hover values and a one-sentence caption
saying how to read it. The page stays a few MB at any sweep size (benchmarks/report_scale.py): per-window
curves are drawn for at most CURVE_WINDOWS windows (`reduce.sample_windows`, the caption says which and that
every trial is in the Parquet tables), and figure data go out as float32 (7 significant digits; hovers show 2-3).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..errors import CpsweepError
from .reduce import (DEFAULT_THRESHOLD, GROUP, chosen_trials, group_curves, heatmap_grid,
                     layer_shares, removal_curve, sample_windows, schedule_of, sensitivity)
from .report_checks import checks_table
from .search_report import search_sections
from .summary import header, onset_table
from .summary import label as _label
from .stats import LEVEL
from .store import Results, Store, load_results
from .records import METRIC
from .tables import Tables

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]
CURVE_WINDOWS = 12      # per-window curves drawn at most (besides the baselines); the tables hold them all
DENSE_COLUMNS = 30      # heatmap onsets beyond which the cells are too narrow to print their value in


def _compact(values) -> np.ndarray:
    """`values` as float32 (plotly embeds it as 4 bytes a value, not 8), or float64 where float32 would turn
    a value into infinity or zero (no trace or accuracy comes near, but a diverged trial might)."""
    a = np.asarray(values, dtype=float)
    finite = np.abs(a[np.isfinite(a) & (a != 0)])
    fits = not finite.size or (finite.max() < 1e38 and finite.min() > 1e-37)
    return a.astype(np.float32) if fits else a


def _band(fig: go.Figure, x, mean, sem, color: str, name: str, group: str, **cell) -> None:
    """A line with a shaded band of one standard error (where known); `cell`: row and col of a subplot."""
    sem = np.nan_to_num(np.asarray(sem, dtype=float))
    x, mean = list(x), np.asarray(mean, dtype=float)
    edge = _compact(np.concatenate([mean + sem, (mean - sem)[::-1]]))
    fig.add_trace(go.Scatter(x=x + x[::-1], y=edge, fill="toself",
                             fillcolor=color, opacity=0.2, line={"width": 0}, hoverinfo="skip", showlegend=False,
                             legendgroup=group), **cell)
    fig.add_trace(go.Scatter(x=x, y=_compact(mean), mode="lines+markers", name=name, line={"color": color},
                             legendgroup=group, customdata=_compact(sem),
                             hovertemplate="%{x}: %{y:.2f} ± %{customdata:.2f}<extra>" + html.escape(name) + "</extra>"),
                  **cell)


def heatmap_figure(sens: pd.DataFrame, trials: pd.DataFrame, deficit: str, tags: str) -> go.Figure:
    grid = heatmap_grid(sens, trials, deficit, tags)
    part = sens[(sens.deficit == deficit) & (sens.tags == tags)]
    info = {(r.length, r.onset): r for r in part.itertuples(index=False)}
    windows = trials[(trials.deficit == deficit) & (trials.tags == tags)]
    states = {key: ", ".join(sorted(set(g))) for key, g in windows.groupby(["length", "onset"]).status}
    dense = len(grid.columns) > DENSE_COLUMNS
    hover, marks = [], []  # hover: one short line per cell (the template adds onset and length)
    for length in grid.index:
        row = []
        for onset in grid.columns:
            r = info.get((length, onset))
            if r is not None:
                ci = "" if math.isnan(r.low) else f", {LEVEL:.0%} CI [{r.low:.2f}, {r.high:.2f}]"
                row.append(f"lost {r.sensitivity:.2f} pts{ci}<br>accuracy {r.acc:.2f}% vs baseline "
                           f"{r.baseline_acc:.2f}%, {int(r.n_seeds)} seed(s)")
            else:
                state = states.get((length, onset)) or "not in the grid"
                row.append(f"no result: {state}")
                marks.append((str(onset), str(length), state))
        hover.append(row)
    finite = grid.values[np.isfinite(grid.values)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0  # the scale starts at 0: no loss is white
    high = max(float(finite.max()), low + 0.1) if finite.size else 1.0
    # a cell's value is printed in it unless the cells are too narrow to hold it (then: hover)
    fig = go.Figure(go.Heatmap(z=_compact(grid.values), x=[str(o) for o in grid.columns],
                               y=[str(l) for l in grid.index], text=hover,
                               hovertemplate="onset %{x}, length %{y}<br>%{text}<extra></extra>",
                               texttemplate=None if dense else "%{z:.2f}", colorscale="Reds",
                               zmin=low, zmax=high, colorbar={"title": "pts lost"}))
    if marks:  # missing or failed cells are marked, not drawn as zero (their state in the hover when dense)
        fig.add_trace(go.Scatter(x=[m[0] for m in marks], y=[m[1] for m in marks],
                                 mode="markers" if dense else "markers+text",
                                 marker={"symbol": "x", "size": 8 if dense else 14, "color": "#555"},
                                 text=None if dense else [m[2] for m in marks], textposition="bottom center",
                                 hoverinfo="skip", showlegend=False))
    fig.update_layout(title=f"{_label(deficit, tags)}: accuracy lost vs baseline (percentage points)",
                      xaxis_title="deficit onset (epoch)", yaxis_title="deficit length (epochs)", height=380,
                      xaxis={"type": "category"}, yaxis={"type": "category"})
    return fig


def sensitivity_curve_figure(sens: pd.DataFrame, name: str = "") -> go.Figure:
    """Sensitivity against onset, a line per (deficit, tags, length) with its t-interval band; with a
    `grid.schedule` axis, one panel per schedule side by side (shared y axis)."""
    labels = sorted(sens.tags.map(schedule_of).unique()) if len(sens) else [""]
    fig = make_subplots(rows=1, cols=len(labels), shared_yaxes=True, subplot_titles=[
        f"schedule: {label}" for label in labels] if labels != [""] else None)
    for i, ((deficit, tags, length), part) in enumerate(sens.groupby(["deficit", "tags", "length"], sort=True)):
        part = part.sort_values("onset")
        col = labels.index(schedule_of(tags)) + 1
        label = f"{name + ': ' if name else ''}{_label(deficit, tags)}, length {int(length)}"
        half = part["high"] - part.sensitivity  # the t-interval is symmetric about the mean
        _band(fig, part.onset.tolist(), part.sensitivity, half, COLORS[i % len(COLORS)], label, label,
              row=1, col=col)
    fig.add_hline(y=0, line={"color": "#999", "dash": "dot"})
    fig.update_layout(title="Sensitivity against window onset" + (" under each schedule" if len(labels) > 1 else ""),
                      yaxis_title="accuracy lost (pts)", height=380)
    fig.update_xaxes(title_text="deficit onset (epoch)")
    return fig


def removal_figure(curve: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for i, ((deficit, tags), part) in enumerate(curve.groupby(["deficit", "tags"], sort=True)):
        label = _label(deficit, tags)
        _band(fig, part.removal.tolist(), part.acc, part["sem"], COLORS[i % len(COLORS)], label, label)
    fig.update_layout(title="Final test accuracy against deficit removal epoch", height=380,
                      xaxis_title="epoch the deficit is removed (0: never applied)", yaxis_title="final test accuracy (%)")
    return fig


def curves_figure(curves: pd.DataFrame, title: str, y_title: str, log: bool = False,
                  shade: tuple[int, int] | None = None) -> go.Figure:
    fig = go.Figure()
    for i, (key, part) in enumerate(curves.groupby(["deficit", "tags", "onset", "length"], sort=True)):
        label = _label(*key)
        color = "#000" if key[0] == "none" else COLORS[i % len(COLORS)]
        _band(fig, part.epoch.tolist(), part["mean"], part["sem"], color, label, label)
    if shade is not None:
        fig.add_vrect(x0=shade[0] - 0.5, x1=shade[1] - 0.5, fillcolor="#d62728", opacity=0.1, line_width=0,
                      annotation_text="deficit", annotation_position="top left")
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title=y_title, height=420,
                      yaxis={"type": "log"} if log else {})
    return fig


def layer_figure(shares: pd.DataFrame, title: str, shade: tuple[int, int] | None = None) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=_compact(shares.values), x=list(shares.columns), y=list(shares.index),
                               colorscale="Viridis", colorbar={"title": "share"},
                               hovertemplate="layer %{y}, epoch %{x}: %{z:.3f}<extra></extra>"))
    if shade is not None:
        fig.add_vrect(x0=shade[0] - 0.5, x1=shade[1] - 0.5, line={"color": "white", "dash": "dash"})
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="layer (input at the bottom)", height=380,
                      yaxis={"type": "category"})
    return fig


def _window(trials: pd.DataFrame, trial_id: str | None) -> tuple[int, int] | None:
    row = trials[trials.trial_id == trial_id]
    if row.empty or row.deficit.iloc[0] == "none":
        return None
    return int(row.onset.iloc[0]), int(row.onset.iloc[0] + row.length.iloc[0])


def sampled_curves(curves: pd.DataFrame, sens: pd.DataFrame, trials: pd.DataFrame, worst: str | None,
                   k: int = CURVE_WINDOWS) -> tuple[pd.DataFrame, str]:
    """The rows of `curves` (a `group_curves` table) to draw: the baselines' and those of at most `k`
    windows (`sample_windows`; the most damaging trial's window always among them), and the caption's
    words for them ("every window", or "12 of the 1,000 windows (...)")."""
    keys = curves[GROUP].drop_duplicates()
    windows = keys[keys.deficit != "none"]
    if len(windows) <= k:
        return curves, "every window"
    ranked = windows.merge(sens[[*GROUP, "sensitivity"]], on=GROUP, how="left")  # NaN: no baseline to compare
    picked = sample_windows(ranked, k)[GROUP]
    row = trials[trials.trial_id == worst][GROUP]
    keep = curves.merge(pd.concat([keys[keys.deficit == "none"], picked, row]).drop_duplicates(), on=GROUP)
    n = len(keep[keep.deficit != "none"][GROUP].drop_duplicates())
    which = ("the most and least damaging, the others spread over the lengths and onsets"
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


def render(results: Results, threshold: float = DEFAULT_THRESHOLD, per_parameter: bool = False,
           measure: str = "test_acc") -> str:
    """The report of one sweep as a standalone HTML page; `measure`: a user's metric column to measure the
    sensitivity by instead of test accuracy (the heatmaps and curves; the claims stay on accuracy)."""
    trials, epochs, layers = results.trials, results.epochs, results.fisher_layers
    sens = sensitivity(trials, epochs, measure)
    pick = chosen_trials(trials, sens)
    worst_window = _window(trials, pick["worst"])
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
    claims = checks_table(results)
    if claims:
        sections.append((("The paper's claims this sweep can test, each graded by the check that grades the "
                          "committed twins (docs/reproduction.md): under the paper's schedule and, beside it, under "
                          "the learning-rate controls the sweep has; 'not shown' says why the data cannot decide."),
                         claims))
    windows = trials[trials.deficit != "none"][["deficit", "tags"]].drop_duplicates()
    for deficit, tags in windows.itertuples(index=False):
        sections.append((("Each cell is a deficit window (onset across, length up) coloured by the points of "
                          "final test accuracy it cost against the same seed's baseline, mean over seeds (hover: "
                          f"its {LEVEL:.0%} t-interval, accuracies, seed count); an x marks a window with no "
                          "finished result."),
                         heatmap_figure(sens, trials, deficit, tags)))
    if not sens.empty:
        sections.append((("The paper's sliding-window curve: accuracy lost against the window's onset, one line "
                          f"per window length, the band its {LEVEL:.0%} t-interval across seeds (none with one "
                          "seed); the critical period is where the band lies above zero."),
                         sensitivity_curve_figure(sens)))
    removal = removal_curve(trials, epochs)
    if removal.removal.nunique() > 1:
        sections.append((("The paper's first figure: final accuracy of trials with the deficit from epoch 0 to the "
                          "removal epoch; a falling curve means later removal leaves a permanent deficit."),
                         removal_figure(removal)))
    chosen = [t for t in (pick["baseline"], pick["worst"], pick["best"]) if t]
    acc = epochs[epochs.trial_id.isin(chosen)][["trial_id", "epoch", "test_acc"]].merge(
        trials[["trial_id", "deficit", "tags", "onset", "length"]], on="trial_id")
    if not acc.empty:
        acc = acc.assign(mean=100 * acc.test_acc, sem=np.nan)
        sections.append((("Clean test accuracy per epoch of the first seed's baseline and of its most and least "
                          "damaging windows (the most damaging window shaded)."),
                         curves_figure(acc, "Test accuracy per epoch", "test accuracy (%)", shade=worst_window)))
    for column in sorted(c for c in epochs.columns if c.startswith(METRIC)):
        curves, drawn = sampled_curves(group_curves(epochs, trials, column), sens, trials, pick["worst"])
        if not curves.empty:
            sections.append((f"Your metric {html.escape(column[len(METRIC):])} at the epochs the Fisher trace is "
                             f"measured, mean over seeds, for the baseline (black) and {drawn}; the most damaging "
                             "window is shaded" + (" (the measure of the sensitivity above)." if column == measure
                                                   else "."),
                             curves_figure(curves, column, column[len(METRIC):], shade=worst_window)))
    fisher, drawn = sampled_curves(group_curves(epochs, trials, "fisher_trace"), sens, trials, pick["worst"])
    if not fisher.empty:
        for log in (False, True):
            sections.append((("Log scale: " if log else "") + "Trace of the Fisher Information of the weights on the "
                             f"probe set, mean over seeds, for the baseline (black) and {drawn}; the most "
                             "damaging window is shaded. The paper: it rises fast early, then falls.",
                             curves_figure(fisher, "Fisher trace" + (" (log scale)" if log else ""), "tr F",
                                           log=log, shade=worst_window)))
    norm = "per parameter, " if per_parameter else ""
    for key, title in (("baseline", "baseline"), ("worst", "most damaging window")):
        shares = layer_shares(layers, pick[key], per_parameter) if pick[key] else pd.DataFrame()
        if not shares.empty:
            sections.append(((f"Each layer's share of the Fisher trace ({norm}each epoch's column sums to one) for "
                              f"the {title} ({pick[key]}); the paper: a blur deficit moves the mass towards higher "
                              "layers."),
                             layer_figure(shares, f"Per-layer Fisher: {pick[key]}", _window(trials, pick[key]))))
    name = str((results.spec.get("spec") or {}).get("name", "sweep"))
    intro = header(results, sens, threshold)
    if measure != "test_acc":
        intro += (f"<p><b>sensitivity measured by {html.escape(measure)}</b> (baseline minus window, x100, over the "
                  "same last epochs), not by test accuracy: read 'pts' in the heatmaps and curves as that</p>")
    return _page(f"cpsweep report: {name}", sections or [("No finished trial yet.", None)], intro)


def render_compare(named: Sequence[tuple[str, Results]]) -> str:
    """Several sweeps overlaid: their sensitivity curves and their baselines' Fisher traces."""
    sens_fig = go.Figure()
    fisher_fig = go.Figure()
    for i, (name, res) in enumerate(named):
        sens = sensitivity(res.trials, res.epochs)
        for (deficit, tags, length), part in sens.groupby(["deficit", "tags", "length"], sort=True):
            part = part.sort_values("onset")
            label = f"{name}: {_label(deficit, tags)}, length {int(length)}"
            _band(sens_fig, part.onset.tolist(), part.sensitivity, part["sem"], COLORS[i % len(COLORS)], label, label)
        fisher = group_curves(res.epochs, res.trials, "fisher_trace")
        base = fisher[fisher.deficit == "none"]
        for tags, part in base.groupby("tags"):
            label = f"{name}: {_label('none', tags)}"
            _band(fisher_fig, part.epoch.tolist(), part["mean"], part["sem"], COLORS[i % len(COLORS)], label, label)
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
    in detail (`chosen_trials`): the largest table stays on disk at any scale."""
    res = load_results(uri, fisher_layers=False)
    if measure != "test_acc" and measure not in res.epochs:
        have = [c for c in res.epochs.columns if c.startswith(METRIC)]
        raise CpsweepError(f"--measure: {uri} has no column {measure}; its metrics: {', '.join(have) or 'none'} "
                           f"(a sweep's metrics: section)")
    pick = chosen_trials(res.trials, sensitivity(res.trials, res.epochs, measure))
    res.fisher_layers = Tables.read(Store(uri))[0].read_table("fisher_layers", trial_ids=[t for t in pick.values() if t])
    return res


def write_report(uri: str, path: str | None = None, threshold: float = DEFAULT_THRESHOLD,
                 per_parameter: bool = False, measure: str = "test_acc") -> str:
    """Write the report of the results folder `uri` to `path` (default: `<uri>/report.html`); `measure`:
    see `render`."""
    page = render(results_for_report(uri, measure), threshold, per_parameter, measure)
    if path is None:
        Store(uri).write_bytes(page.encode(), "report.html")
        return f"{uri.split('?')[0].rstrip('/')}/report.html"
    return _write(page, path)


def write_compare(uris: Sequence[str], path: str) -> str:
    named = [(u.split("?")[0].rstrip("/").rsplit("/", 1)[-1], load_results(u)) for u in uris]
    return _write(render_compare(named), path)
