"""Reducers over the results tables (DataFrame in, DataFrame out) and the standalone HTML report.

Reducers are pure and tested on hand-made tables; figures only draw what the reducers computed.

    sensitivity(trials)   per window: final accuracy lost against the seed's baseline, in percentage
                          points, mean over seeds with its standard error (missing cells stay missing)
    write_report(uri)     report.html next to the tables (plotly.js embedded: it opens offline)
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from .store import Store, load_results

GROUP = ["deficit", "tags", "onset", "length"]


def sensitivity(trials: pd.DataFrame) -> pd.DataFrame:
    """Sensitivity of every window: baseline final accuracy minus the trial's, in percentage points.

    Only `ok` trials whose baseline is also `ok` count. Returns one row per (deficit, tags, onset, length)
    with `sensitivity` (mean over seeds), `sem` (standard error over seeds, NaN with one seed), `n_seeds`,
    `acc` and `baseline_acc` (mean final accuracies, in %).
    """
    ok = trials[trials.status == "ok"]
    base = ok[ok.deficit == "none"].set_index("trial_id").final_test_acc
    win = ok[ok.deficit != "none"].copy()
    win["baseline_acc"] = win.baseline_id.map(base)
    win = win.dropna(subset=["baseline_acc"])
    win["sens"] = 100 * (win.baseline_acc - win.final_test_acc)
    columns = [*GROUP, "sensitivity", "sem", "n_seeds", "acc", "baseline_acc"]
    if win.empty:
        return pd.DataFrame(columns=columns)
    g = win.groupby(GROUP, sort=True)
    out = pd.DataFrame({
        "sensitivity": g.sens.mean(),
        "sem": g.sens.std(ddof=1) / np.sqrt(g.sens.count()),
        "n_seeds": g.sens.count(),
        "acc": 100 * g.final_test_acc.mean(),
        "baseline_acc": 100 * g.baseline_acc.mean(),
    }).reset_index()
    return out[columns]


def heatmap_grid(sens: pd.DataFrame, trials: pd.DataFrame, deficit: str, tags: str) -> pd.DataFrame:
    """Sensitivity as a length x onset grid for one deficit, over every window of the sweep (cells with
    no finished trial are NaN, not zero)."""
    windows = trials[(trials.deficit == deficit) & (trials.tags == tags)]
    onsets, lengths = sorted(windows.onset.unique()), sorted(windows.length.unique())
    part = sens[(sens.deficit == deficit) & (sens.tags == tags)].set_index(["length", "onset"]).sensitivity
    return pd.DataFrame([[part.get((l, o), np.nan) for o in onsets] for l in lengths], index=lengths,
                        columns=onsets, dtype=float)


def heatmap_figure(sens: pd.DataFrame, trials: pd.DataFrame, deficit: str, tags: str):
    import plotly.graph_objects as go

    grid = heatmap_grid(sens, trials, deficit, tags)
    info = sens[(sens.deficit == deficit) & (sens.tags == tags)].set_index(["length", "onset"])
    hover = []
    for length in grid.index:
        row = []
        for onset in grid.columns:
            if (length, onset) in info.index:
                r = info.loc[(length, onset)]
                sem = "" if math.isnan(r["sem"]) else f" ± {r['sem']:.2f}"
                row.append(f"onset {onset}, length {length}<br>sensitivity {r['sensitivity']:.2f}{sem} pts<br>"
                           f"accuracy {r['acc']:.2f}% vs baseline {r['baseline_acc']:.2f}%<br>"
                           f"{int(r['n_seeds'])} seed(s)")
            else:
                row.append(f"onset {onset}, length {length}<br>no finished trial")
        hover.append(row)
    finite = grid.values[np.isfinite(grid.values)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0  # the scale starts at 0: no loss is white
    high = max(float(finite.max()), low + 0.1) if finite.size else 1.0
    fig = go.Figure(go.Heatmap(z=grid.values, x=[str(o) for o in grid.columns], y=[str(l) for l in grid.index],
                               text=hover, hoverinfo="text", texttemplate="%{z:.2f}", colorscale="Reds",
                               zmin=low, zmax=high, colorbar={"title": "pts lost"}))
    title = f"{deficit}{' (' + tags + ')' if tags else ''}: accuracy lost vs baseline (percentage points)"
    fig.update_layout(title=title, xaxis_title="deficit onset (epoch)", yaxis_title="deficit length (epochs)",
                      height=360, margin={"t": 60, "b": 50})
    return fig


def render(results) -> str:
    """The report as one standalone HTML page."""
    trials = results.trials
    sens = sensitivity(trials)
    name = html.escape(str((results.spec.get("spec") or {}).get("name", "sweep")))
    counts = trials.status.value_counts().to_dict()
    parts = [f"<h1>cpsweep report: {name}</h1>",
             f"<p>spec hash {html.escape(str(results.spec.get('hash', '?')))}; trials: "
             + ", ".join(f"{v} {html.escape(str(k))}" for k, v in sorted(counts.items())) + "</p>"]
    first = True
    windows = trials[trials.deficit != "none"][["deficit", "tags"]].drop_duplicates()
    for deficit, tags in windows.itertuples(index=False):
        fig = heatmap_figure(sens, trials, deficit, tags)
        parts.append("<p>How to read: each cell is a deficit window (onset across, length up); its colour is "
                     "how many points of final test accuracy the window cost against the no-deficit baseline "
                     "of the same seed (median of the last 10 epochs); blank cells have no finished trial.</p>")
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first))
        first = False
    if first:
        parts.append("<p>No finished deficit window yet.</p>")
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>cpsweep report: " + name
            + "</title></head><body style='font-family: sans-serif; max-width: 1100px; margin: auto'>"
            + "\n".join(parts) + "</body></html>")


def write_report(uri: str, path: str | None = None) -> str:
    """Write report.html into the results folder `uri` (or to `path`); return where it went."""
    page = render(load_results(uri)).encode()
    if path is None:
        Store(uri).write_bytes(page, "report.html")
        return f"{uri.split('?')[0].rstrip('/')}/report.html"
    folder_store = Store(path.rsplit("/", 1)[0] if "/" in path else ".")
    folder_store.write_bytes(page, path.rsplit("/", 1)[-1])
    return path
