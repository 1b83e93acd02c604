"""The report's figures (Plotly), each drawing what a reducer in `reduce.py` computed.

A sweep's extra grid axes (every key besides onset, length and seed: `schedule`, `model.width`, ...) reach
the tables as each trial's `tags`. Every figure is faceted by them: one row of panels per tags value
(`facet_rows`), the rows sharing their axes, so that a row compares to the next at a glance; the sliding-
window curve puts the schedules side by side in columns. Every heatmap of a report shares one colour axis
(`colour_range`), so equal colours mean equal losses across rows and deficits. A line's colour means the
same in every panel (a window length, a window, a deficit) and has one legend entry, which shows or hides
it in all panels; its hover names the panel's axis values too.

Figure data go out as float32 (7 significant digits; hovers show 2-3): the page stays a few MB at any
sweep size (benchmarks/report_scale.py).
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .reduce import heatmap_grid, schedule_of, variant_of
from .stats import LEVEL
from .summary import label as _label
from ..storage.records import tags_label

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]
# the line styles of the baselines whose rate restarts, by restart epoch (black like the plain one, not solid)
RESTART_DASHES = ["dash", "dot", "dashdot", "longdash", "longdashdot"]
MARKED_POINTS = 40      # a line of more points is drawn without markers
DENSE_COLUMNS = 30      # heatmap onsets beyond which the cells are too narrow to print their value in
ROW_HEIGHT = 260        # pixels per facet row (a heatmap's: by its lengths, `heatmap_figure`)


def _compact(values) -> np.ndarray:
    """`values` as float32 (plotly embeds it as 4 bytes a value, not 8), or float64 where float32 would turn
    a value into infinity or zero (no trace or accuracy comes near, but a diverged trial might)."""
    a = np.asarray(values, dtype=float)
    finite = np.abs(a[np.isfinite(a) & (a != 0)])
    fits = not finite.size or (finite.max() < 1e38 and finite.min() > 1e-37)
    return a.astype(np.float32) if fits else a


def facet_rows(tags: Iterable) -> list[str]:
    """The facet rows of a figure: the distinct tags values, in order ([""] for a sweep without extra axes)."""
    return sorted({"" if t is None or (isinstance(t, float) and math.isnan(t)) else str(t) for t in tags}) or [""]


def facet_title(tags: str) -> str:
    return tags_label(tags)


def facets(rows: list[str], cols: list[str] | None = None, title: str = "", row_height: int = ROW_HEIGHT,
           **shared) -> go.Figure:
    """An empty figure of one row of panels per value of `rows` (and a column per value of `cols`), each
    panel titled by its axis values, height growing with the rows."""
    cols = cols or [""]
    titles = [", ".join(p for p in (facet_title(r), c) if p) for r in rows for c in cols]
    fig = make_subplots(rows=len(rows), cols=len(cols), subplot_titles=titles if any(titles) else None,
                        vertical_spacing=min(0.3 / len(rows), 0.12), **shared)
    fig.update_layout(title=title, height=100 + row_height * len(rows))
    return fig


def band(fig: go.Figure, x, mean, sem, color: str, name: str, group: str, hover: str | None = None,
         legend: bool = True, dash: str | None = None, **cell) -> None:
    """A line with a shaded band of one standard error (where known); `cell`: row and col of a subplot.
    `name`: the legend entry (shown only if `legend`: a group drawn in several panels has one entry, which
    shows or hides it in all); `hover`: the line's name on hover (default `name`)."""
    sem = np.nan_to_num(np.asarray(sem, dtype=float))
    x, mean = list(x), np.asarray(mean, dtype=float)
    edge = _compact(np.concatenate([mean + sem, (mean - sem)[::-1]]))
    fig.add_trace(go.Scatter(x=x + x[::-1], y=edge, fill="toself", mode="lines",  # (no markers on its edge)
                             fillcolor=color, opacity=0.2, line={"width": 0}, hoverinfo="skip", showlegend=False,
                             legendgroup=group), **cell)
    marked = len(x) <= MARKED_POINTS  # (a marker at each of 140 epochs hides the line's dashes)
    fig.add_trace(go.Scatter(x=x, y=_compact(mean), mode="lines+markers" if marked else "lines", name=name,
                             line={"color": color, "dash": dash},
                             legendgroup=group, showlegend=legend, customdata=_compact(sem),
                             hovertemplate="%{x}: %{y:.2f} ± %{customdata:.2f}<extra>"
                             + html.escape(hover or name) + "</extra>"),
                  **cell)


def _first(seen: set, key) -> bool:
    """True the first time `key` is seen (its legend entry is drawn once, whatever the panels)."""
    new = key not in seen
    seen.add(key)
    return new


def colour_range(sens: pd.DataFrame) -> tuple[float, float]:
    """The one colour axis every heatmap of a report shares: from 0 (no loss is white; lower where a window
    helped) to the largest mean loss of any window (0 when every window helped)."""
    finite = sens.sensitivity.astype(float).to_numpy() if len(sens) else np.array([])
    finite = finite[np.isfinite(finite)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    return low, max(float(finite.max()), low + 0.1, 0.0) if finite.size else 1.0


def colour_scale(low: float, high: float) -> str | list:
    """The heatmaps' colours on [low, high] (`colour_range`): plotly's Reds, white at no loss; where a window
    helped (low < 0), blue below zero, so that white stays at 0 and not at the lowest value."""
    if low >= 0:
        return "Reds"
    reds = plotly.colors.sequential.Reds
    if high <= 0:  # every window helped: blue up to the lightest at the top
        return [[0.0, "#2166ac"], [1.0, reds[0]]]
    zero = -low / (high - low)
    return [[0.0, "#2166ac"], *([zero + (1 - zero) * i / (len(reds) - 1), c] for i, c in enumerate(reds))]


def _heat_cells(sens: pd.DataFrame, trials: pd.DataFrame, deficit: str, tags: str, grid: pd.DataFrame):
    """Each cell's hover line, and the (onset, length, state) of the cells with no finished result."""
    part = sens[(sens.deficit == deficit) & (sens.tags == tags)]
    info = {(r.length, r.onset): r for r in part.itertuples(index=False)}
    windows = trials[(trials.deficit == deficit) & (trials.tags == tags)]
    states = {key: ", ".join(sorted(set(g))) for key, g in windows.groupby(["length", "onset"]).status}
    hover, marks = [], []
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
    return hover, marks


def heatmap_figure(sens: pd.DataFrame, trials: pd.DataFrame, deficit: str, rows: list[str] | None = None,
                   scale: tuple[float, float] | None = None) -> go.Figure:
    """Sensitivity over onset x length of one deficit: a heatmap per facet row (`rows`: tags values, default
    every one the deficit's windows have), all on one colour axis (`scale`, default `colour_range(sens)`)."""
    windows = trials[trials.deficit == deficit]
    rows = rows if rows is not None else facet_rows(windows.tags)
    low, high = scale or colour_range(sens)
    onsets = [str(o) for o in sorted(windows.onset.unique())]
    lengths = windows.length.nunique()
    fig = facets(rows, title=f"{deficit}: accuracy lost vs baseline (percentage points)", shared_xaxes=True,
                 row_height=min(max(140, 90 + 30 * lengths), 400))
    for i, tags in enumerate(rows, start=1):
        grid = heatmap_grid(sens, trials, deficit, tags)
        dense = len(grid.columns) > DENSE_COLUMNS
        hover, marks = _heat_cells(sens, trials, deficit, tags, grid)
        # a cell's value is printed in it unless the cells are too narrow to hold it (then: hover)
        fig.add_trace(go.Heatmap(z=_compact(grid.values), x=[str(o) for o in grid.columns],
                                 y=[str(n) for n in grid.index], text=hover, coloraxis="coloraxis",
                                 hovertemplate="onset %{x}, length %{y}<br>%{text}<extra></extra>",
                                 texttemplate=None if dense else "%{z:.2f}"), row=i, col=1)
        if marks:  # missing or failed cells are marked, not drawn as zero (their state in the hover when dense)
            fig.add_trace(go.Scatter(x=[m[0] for m in marks], y=[m[1] for m in marks],
                                     mode="markers" if dense else "markers+text",
                                     marker={"symbol": "x", "size": 8 if dense else 14, "color": "#555"},
                                     text=None if dense else [m[2] for m in marks], textposition="bottom center",
                                     hoverinfo="skip", showlegend=False), row=i, col=1)
        fig.update_yaxes(title_text="length (epochs)", type="category", row=i, col=1)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=onsets)
    fig.update_xaxes(title_text="deficit onset (epoch)", row=len(rows), col=1)
    fig.update_layout(coloraxis={"colorscale": colour_scale(low, high), "cmin": low, "cmax": high,
                                 "colorbar": {"title": "pts lost"}})
    return fig


def sensitivity_curve_figure(sens: pd.DataFrame, name: str = "") -> go.Figure:
    """Sensitivity against onset, a line per (deficit, length) with its t-interval band; a row of panels per
    value of the extra axes other than `schedule`, a column per schedule (every panel on one y axis)."""
    rows = facet_rows(sens.tags.map(variant_of)) if len(sens) else [""]
    cols = facet_rows(sens.tags.map(schedule_of)) if len(sens) else [""]
    fig = facets(rows, [f"schedule: {c}" if c else "" for c in cols],
                 "Sensitivity against window onset" + (" under each schedule" if len(cols) > 1 else ""),
                 shared_yaxes="all", shared_xaxes=True)
    keys = sorted(sens.groupby(["deficit", "length"]).groups) if len(sens) else []
    seen: set = set()
    prefix = f"{name}: " if name else ""
    for (deficit, tags, length), part in sens.groupby(["deficit", "tags", "length"], sort=True):
        part = part.sort_values("onset")
        color = COLORS[keys.index((deficit, length)) % len(COLORS)]
        entry = f"{prefix}{deficit}, length {int(length)}"  # a colour; the panel's title says the rest
        half = part["high"] - part.sensitivity  # the t-interval is symmetric about the mean
        band(fig, part.onset.tolist(), part.sensitivity, half, color, entry, entry,
             hover=f"{prefix}{_label(deficit, tags)}, length {int(length)}", legend=_first(seen, entry),
             row=rows.index(variant_of(tags)) + 1, col=cols.index(schedule_of(tags)) + 1)
    fig.add_hline(y=0, line={"color": "#999", "dash": "dot"}, row="all", col="all")
    fig.update_yaxes(title_text="accuracy lost (pts)", col=1)
    fig.update_xaxes(title_text="deficit onset (epoch)", row=len(rows))
    return fig


def removal_figure(curve: pd.DataFrame) -> go.Figure:
    """Final accuracy against the removal epoch, a line per deficit, a row per facet (shared axes)."""
    rows = facet_rows(curve.tags)
    fig = facets(rows, title="Final test accuracy against deficit removal epoch", shared_xaxes=True,
                 shared_yaxes="all")
    deficits, seen = sorted(curve.deficit.unique()), set()
    for (deficit, tags), part in curve.groupby(["deficit", "tags"], sort=True):
        band(fig, part.removal.tolist(), part.acc, part["sem"], COLORS[deficits.index(deficit) % len(COLORS)],
             deficit, deficit, hover=_label(deficit, tags), legend=_first(seen, deficit), row=rows.index(tags) + 1,
             col=1)
    fig.update_xaxes(title_text="epoch the deficit is removed (0: never applied)", row=len(rows))
    fig.update_yaxes(title_text="final test accuracy (%)")
    return fig


def curves_figure(curves: pd.DataFrame, title: str, y_title: str, log: bool = False,
                  shade: dict[str, tuple[int, int] | None] | tuple[int, int] | None = None) -> go.Figure:
    """Per-epoch curves (a `reduce.group_curves` table): a line per window (the baselines black, those whose
    rate restarts dashed and named by the restart's epoch), a row per facet (shared axes); `shade`: the
    window to shade, per facet (tags -> (start, end)) or for every row."""
    rows = facet_rows(curves.tags)
    fig = facets(rows, title=title, shared_xaxes=True, shared_yaxes="all")
    keys, seen = sorted(curves[curves.deficit != "none"].groupby(["deficit", "onset", "length"]).groups), set()
    restarts = sorted(set(curves.onset[(curves.deficit == "none") & (curves.onset > 0)]))  # restarted baselines
    for key, part in curves.groupby(["deficit", "tags", "onset", "length"], sort=True):
        window = (key[0], key[2], key[3])
        color = "#000" if key[0] == "none" else COLORS[keys.index(window) % len(COLORS)]
        entry = _label(key[0], "", key[2], key[3])  # a window (a colour) in whichever panels show it
        restarted = key[0] == "none" and key[2] > 0
        dash = RESTART_DASHES[restarts.index(key[2]) % len(RESTART_DASHES)] if restarted else None
        band(fig, part.epoch.tolist(), part["mean"], part["sem"], color, entry, entry, hover=_label(*key),
             legend=_first(seen, entry), dash=dash, row=rows.index(key[1]) + 1, col=1)
    for i, tags in enumerate(rows, start=1):
        window = shade.get(tags) if isinstance(shade, dict) else shade
        if window is not None:
            fig.add_vrect(x0=window[0] - 0.5, x1=window[1] - 0.5, fillcolor="#d62728", opacity=0.1, line_width=0,
                          annotation_text="deficit", annotation_position="top left", row=i, col=1)
    fig.update_xaxes(title_text="epoch", row=len(rows))
    fig.update_yaxes(title_text=y_title, type="log" if log else None)
    return fig


def layer_figure(shares: pd.DataFrame | dict[str, pd.DataFrame], title: str,
                 shade: tuple[int, int] | dict[str, tuple[int, int] | None] | None = None) -> go.Figure:
    """Each layer's share of the Fisher trace per epoch (`reduce.layer_shares`) of one trial, or of one
    trial per facet row (`shares`: row title -> table; `shade`: the window per row), on one colour axis."""
    tables = shares if isinstance(shares, dict) else {"": shares}
    rows = list(tables) or [""]
    fig = facets(rows, title=title, shared_xaxes=True)
    for i, (name, table) in enumerate(tables.items(), start=1):
        fig.add_trace(go.Heatmap(z=_compact(table.values), x=list(table.columns), y=list(table.index),
                                 coloraxis="coloraxis",
                                 hovertemplate="layer %{y}, epoch %{x}: %{z:.3f}<extra></extra>"), row=i, col=1)
        window = shade.get(name) if isinstance(shade, dict) else shade
        if window is not None:
            fig.add_vrect(x0=window[0] - 0.5, x1=window[1] - 0.5, line={"color": "white", "dash": "dash"},
                          row=i, col=1)
        fig.update_yaxes(title_text="layer (input at the bottom)", type="category", row=i, col=1)
    fig.update_xaxes(title_text="epoch", row=len(rows))
    fig.update_layout(coloraxis={"colorscale": "Viridis", "colorbar": {"title": "share"}})
    return fig
