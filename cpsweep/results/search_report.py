"""The report's adaptive-search section: what `sweep/adaptive.py` wrote to search.json, drawn.

    search_sections(doc)   [(caption, figure or HTML)]: a summary, one figure per window group
                           (sensitivity against onset, each sampled onset's interval coloured by its class
                           and labelled by its round, the located end shaded), and the table of rounds

The numbers are those the search decided on (its classes and intervals, `results/boundary.py`), so the
page shows why each onset was added.
"""

from __future__ import annotations

import html
import math
from typing import Any

import plotly.graph_objects as go

from .stats import ALPHA_TOST, CORRECTION, LEVEL

CLASS_COLORS = {"in": "#d62728", "unclear": "#7f7f7f", "out": "#2ca02c"}


def _label(group: dict[str, Any]) -> str:
    tags = f" [{group['tags']}]" if group["tags"] else ""
    return f"{group['deficit']}{tags}, length {group['length']}"


def group_figure(group: dict[str, Any], doc: dict[str, Any]) -> go.Figure:
    """Sensitivity against onset for one window group, as the search saw it when it stopped."""
    s, b = doc["settings"], group["boundary"] or {}
    fig = go.Figure()
    if b.get("last_in") is not None and b.get("next_onset") is not None:
        fig.add_vrect(x0=b["last_in"], x1=b["next_onset"], fillcolor="#d62728", opacity=0.12, line_width=0,
                      annotation_text="end", annotation_position="top left")
    if b.get("first_out") is not None:
        fig.add_vline(x=b["first_out"], line={"color": CLASS_COLORS["out"], "dash": "dot"})
    fig.add_hline(y=s["threshold"], line={"color": "#999", "dash": "dot"})
    fig.add_hline(y=s["threshold"] + s["margin"], line={"color": "#2ca02c", "dash": "dash", "width": 1})
    for cls, color in CLASS_COLORS.items():
        pts = [p for p in group["points"] if p["cls"] == cls]
        if not pts:
            continue
        err = [0.0 if math.isnan(p["high"]) else p["high"] - p["mean"] for p in pts]
        fig.add_trace(go.Scatter(
            x=[p["onset"] for p in pts], y=[p["mean"] for p in pts], mode="markers+text", name=cls,
            marker={"color": color, "size": 9}, error_y={"type": "data", "array": err, "visible": True},
            text=[f"r{p['round']}" for p in pts], textposition="top right",
            hovertemplate=[f"onset {p['onset']} ({cls}, round {p['round']}): {p['mean']:.2f} pts, {LEVEL:.0%} CI "
                           f"[{p['low']:.2f}, {p['high']:.2f}], one-sided {1 - ALPHA_TOST:.0%} upper "
                           f"{p['upper']:.2f}, n={p['n']}<extra></extra>" for p in pts]))
    skipped = sorted(set(doc["lattice"]) - {p["onset"] for p in group["points"]})
    if skipped:
        fig.add_trace(go.Scatter(x=skipped, y=[s["threshold"]] * len(skipped), mode="markers", name="not run",
                                 marker={"symbol": "line-ns-open", "color": "#bbb", "size": 10},
                                 hovertemplate="onset %{x}: not run<extra></extra>"))
    fig.update_layout(title=f"{_label(group)}: {b.get('status', 'no result')}", height=380,
                      xaxis_title="deficit onset (epoch)", yaxis_title="accuracy lost (pts)")
    return fig


def rounds_table(doc: dict[str, Any]) -> str:
    full = doc["epochs"]["full_grid"]
    rows = []
    for r in doc["rounds"]:
        added = "<br>".join(html.escape(f"{a['deficit']} l{a['length']}{' [' + a['tags'] + ']' if a['tags'] else ''}"
                                        f" onset {a['onset']}: {a['reason']}") for a in r["added"])
        share = f"{r['epochs'] / full:.0%}" if full else ""
        rows.append(f"<tr><td>{r['round']}</td><td>{added}</td><td>{r['trials']}</td>"
                    f"<td>{r['epochs']:,}</td><td>{share}</td></tr>")
    return ("<table id='search-rounds' border='1' cellpadding='4' style='border-collapse: collapse'>"
            "<tr><th>round</th><th>onsets added (reason)</th><th>trials so far</th>"
            "<th>epochs so far (shared prefixes)</th><th>of the full grid's</th></tr>" + "".join(rows) + "</table>")


def summary(doc: dict[str, Any]) -> str:
    e, s = doc["epochs"], doc["settings"]
    frac = f" ({e['fraction']:.0%})" if e.get("fraction") is not None else ""
    lines = [f"Adaptive search over onsets {doc['lattice'][0]}-{doc['lattice'][-1]} (resolution "
             f"{_resolution(doc['lattice'])} epochs): {len(doc['rounds'])} round(s), {doc['trials']['search']} of "
             f"the full grid's {doc['trials']['full_grid']} trials, {e['search']:,} epochs trained with shared "
             f"prefixes against {e['full_grid']:,} for the full grid at the same resolution{frac}; stopped: "
             f"{doc['stop']}.",
             f"An onset is in the critical period when it is shown to cost more than {s['threshold']:g} pts "
             f"(one-sided t-tests over seeds, {CORRECTION} at 2.5 % over the group's sampled onsets), out when its one-sided {1 - ALPHA_TOST:.0%} upper bound lies below "
             f"{s['threshold'] + s['margin']:g} pts, unclear otherwise; the end lies between the last onset in "
             "and the next onset of the grid (shaded)."]
    for g in doc["groups"]:
        if g["boundary"]:
            lines.append(f"{_label(g)}: {g['boundary']['status']}: {g['boundary']['text']}.")
    return " ".join(lines)


def _resolution(lattice: list[int]) -> int:
    return min((b - a for a, b in zip(lattice, lattice[1:])), default=0)


def search_sections(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """The adaptive search's part of the report (empty when the sweep is a plain grid)."""
    if not doc:
        return []
    sections: list[tuple[str, Any]] = [(summary(doc), None)]
    for g in doc["groups"]:
        sections.append(((f"Adaptive search, {_label(g)}: each sampled onset's mean sensitivity with its "
                          f"{LEVEL:.0%} t-interval, coloured by its class and labelled by the round that added "
                          "it; grey ticks: onsets of the grid the search did not need; dotted green line: the "
                          "first onset shown out; dashed: threshold + margin."), group_figure(g, doc)))
    sections.append(("The rounds of the adaptive search: which onsets each added and why, and the epochs "
                     "spent so far against the full grid's.", rounds_table(doc)))
    return sections
