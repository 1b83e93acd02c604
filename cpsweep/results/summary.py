"""The report's words: its header (settings, design, the detected critical period with its correction for
many onsets, windows still recovering) and the table that grades early against late windows under every
schedule side by side (no torch, no ray; `report.py` draws the figures).
"""

from __future__ import annotations

import html
import math

import pandas as pd

from .checks import by_schedule, design_note, early_minus_late_lengths, schedule_name
from .reduce import critical_period, seed_sensitivity, variant_of
from .stats import CORRECTION, LEVEL, MARGIN, MIN_SEEDS
from ..config.spec import component_name
from ..storage.folder import Results
from ..storage.records import tags_label


def label(deficit: str, tags: str, onset=None, length=None) -> str:
    """A window as the report names it: "blur [0, 20) (schedule=restart)"; a baseline whose rate restarts
    (its onset: the epoch of the restart, > 0) is "baseline restarted at 20"."""
    if deficit == "none":
        restart = f" restarted at {int(onset)}" if onset is not None and onset > 0 else ""
        return f"baseline{restart}" + (f" ({tags_label(tags)})" if tags else "")
    window = f" [{int(onset)}, {int(onset + length)})" if onset is not None else ""
    return f"{deficit}{window}" + (f" ({tags_label(tags)})" if tags else "")


def _seeds(results: Results) -> str:
    """The seeds the file plans (`seed`, `replicates` or `grid.seed`), and what ran."""
    raw = results.spec.get("spec") or {}
    planned = (raw.get("grid") or {}).get("seed")
    if planned is None:
        first, n = int(raw.get("seed", 0)), int(raw.get("replicates", 1))
        planned = list(range(first, first + n))
    ran = sorted(int(s) for s in results.trials.seed.unique()) if len(results.trials) else []
    text = f"seeds planned in the file: {', '.join(map(str, planned))} ({len(planned)})"
    return text + ("" if ran == sorted(planned) else f"; seeds with trials: {', '.join(map(str, ran))}")


def _recovery(fixed: dict, raw: dict) -> str:
    if raw.get("common_end"):
        return (f"<b>recovery differs per window</b>: every trial stops at epoch {fixed.get('epochs')} (common_end), "
                "so later windows have fewer clean epochs to recover in")
    if fixed.get("clean_after"):
        return f"equal recovery: every window is followed by {fixed['clean_after']} clean epochs (clean_after)"
    return f"every trial trains {fixed.get('epochs')} epochs"


def _plugins(trials: pd.DataFrame) -> str:
    """'plug-ins: model my_models:TinyConv (src-3fa9c1e2b4d5), ...' from the trials' `plugins` column."""
    if "plugins" not in trials:
        return ""
    used = sorted({p for text in trials.plugins.dropna() for p in str(text).split(";") if p})
    return "plug-ins: " + ", ".join(f"{p.partition('=')[0]} {p.partition('=')[2].replace('@', ' (')})"
                                    for p in used) if used else ""


def _setting(fixed: dict, grid: dict, section: str, key: str) -> str:
    """A fixed setting as the header says it, or, where a grid axis replaces it (`grid.optim.lr`, a whole
    `grid.model`), that axis's values: the file's value is then used by no trial."""
    values = grid.get(f"{section}.{key}")
    if values is None and key == "name" and section in grid:
        values = [component_name(v) for v in grid[section]]
    if values is not None:
        return "/".join(str(v) for v in values) + " (grid)"
    return str((fixed.get(section) or {}).get(key, "?"))


def header(results: Results, sens: pd.DataFrame, threshold: float) -> str:
    raw = results.spec.get("spec") or {}
    fixed = results.spec.get("fixed") or {}
    grid = raw.get("grid") or {}
    optim = fixed.get("optim", {})
    epochs = f"{fixed['epochs']} per trial" if fixed.get("epochs") else f"onset + length + {fixed.get('clean_after')}"
    counts = results.trials.status.value_counts().to_dict()
    own = ("momentum",) if optim.get("name", "sgd") == "sgd" else ("beta1", "beta2")
    opt = [f"{word} {_setting(fixed, grid, 'optim', key)}" for word, key in (
        ("lr", "lr"), *((k, k) for k in own), ("weight decay", "weight_decay"), ("batch", "batch_size"))]
    lines = [f"spec hash {results.spec.get('hash', '?')}",
             html.escape(f"data {_setting(fixed, grid, 'data', 'name')}, model "
                         f"{_setting(fixed, grid, 'model', 'name')}, optimiser "
                         f"{_setting(fixed, grid, 'optim', 'name')} ({', '.join(opt)}), schedule "
                         f"{_setting(fixed, grid, 'schedule', 'name')}, epochs {epochs}"),
             _recovery(fixed, raw), _seeds(results),
             "trials: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))]
    own_code = _plugins(results.trials)
    if own_code:
        lines.append(html.escape(own_code))
    note = design_note(results)
    if note:
        lines.append(html.escape(note))
    if len(sens) and not sens.matched.all():
        lines.append("<b>baselines not length-matched</b>: some baselines trained fewer epochs than their windows "
                     "(results from before length-matched baselines), so those sensitivities also hold the extra "
                     "epochs the windows trained; run the sweep again into a new results folder for matched ones")
    rule = f"above {threshold:g} pts" if threshold else "above zero"
    for r in critical_period(sens, threshold).itertuples(index=False):
        what = f"{label(r.deficit, r.tags)}, length {int(r.length)}"
        peak = (f"largest {r.peak:.2f} at onset {int(r.peak_onset)}"
                + ("" if math.isnan(r.peak_low) else f", {LEVEL:.0%} CI [{r.peak_low:.2f}, {r.peak_high:.2f}]"))
        test = (f"one-sided t-tests over seeds, {CORRECTION} over the {r.tested} onsets: false onsets on average at "
                f"most 2.5 % of those shown, and no onset shown by chance in more than 2.5 % of grids without any "
                f"effect")
        if r.min_seeds < MIN_SEEDS:
            lines.append(f"<b>critical period ({what}): not shown</b>: {int(r.min_seeds)} paired "
                         f"seed{'s' * (r.min_seeds != 1)} at some window, at least {MIN_SEEDS} needed at every "
                         f"onset ({peak})")
        elif math.isnan(r.first_onset):
            lines.append(f"<b>critical period ({what}): none shown</b>: no window is shown to cost accuracy "
                         f"{rule} ({test}; {peak}; n={int(r.min_seeds)}+ seeds)")
        elif len(r.onsets) == r.tested:
            lines.append(f"<b>sensitive at every onset tried ({what}: {', '.join(map(str, r.onsets))})</b>: the "
                         f"critical period does not end inside the grid; add later onsets to find where it does "
                         f"({test}; {peak}; n={int(r.min_seeds)}+ seeds)")
        else:
            onsets = ", ".join(str(o) for o in r.onsets)
            lines.append(f"<b>critical period ({what}): onset{'s' * (len(r.onsets) > 1)} {onsets}</b>, the windows "
                         f"shown to cost accuracy {rule} ({test}; {peak}; n={int(r.min_seeds)}+ seeds)")
        if r.recovering:
            lines.append(f"<b>still recovering ({what})</b>: at onset{'s' * (len(r.recovering) > 1)} "
                         f"{', '.join(map(str, r.recovering))} the window's loss still shrank by more than "
                         f"{MARGIN:g} pts over its last 10 epochs when read: not shown to be lasting; give more "
                         "clean epochs (clean_after)")
    return (f"<h1>cpsweep report: {html.escape(str(raw.get('name', 'sweep')))}</h1><ul>"
            + "".join(f"<li>{line}</li>" for line in lines) + "</ul>")


def onset_table(results: Results) -> str | None:
    """An HTML table: per deficit, other axes and window length, the earliest window's loss against the
    latest's under each schedule (the paper's and the learning-rate controls) side by side, with the
    verdict of early minus late (`checks.early_minus_late_lengths`: corrected over the lengths, as the
    claim's check); None without two onsets."""
    ss = seed_sensitivity(results.trials, results.epochs if len(results.epochs) else None)
    if ss.empty or ss.onset.nunique() < 2:
        return None
    rows = []
    for (deficit, variant), part in ss.groupby([ss.deficit, ss.tags.map(variant_of)], sort=True):
        for schedule, sched in by_schedule(part).items():
            graded_ = early_minus_late_lengths(sched)  # (Holm over the lengths, as the claim's check)
            for length in sorted(sched.length.unique()):
                verdict, text = graded_[length]
                rows.append([label(deficit, variant), schedule_name(schedule), str(int(length)), text, verdict])
    head = ["window", "schedule", "length", f"early vs late, early minus late ({LEVEL:.0%} CI over seeds)", "verdict"]
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return ("<table border='1' cellpadding='4' style='border-collapse: collapse; font-size: 90%'><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + body + "</table>")
