"""The report's table of the paper's claims that one sweep's own data can test: the reproduction checks
(`claims.py`, `window_claims.py`, `fisher_claims.py`) run on this sweep alone, each with its verdict under the
paper's schedule, beside it under the learning-rate controls the sweep has, and what was measured.

A check the sweep's design cannot answer (another deficit, no Fisher trace, too few onsets or lengths, the
Fisher checks beside several baselines per seed) is left out; one it can answer but not decide stays, as
"not shown" with its reason. The same functions grade the committed twins in docs/reproduction.md, so a
report and that page never disagree on the same data. `verdict_lines` is the same table in plain text, for
the terminal (the end of `cpsweep launch`, `cpsweep status`).
"""

from __future__ import annotations

import html
from dataclasses import replace
from typing import Callable

import pandas as pd

from .checks import Check, Getter
from .claims import check_early_vs_late, check_late_windows
from .fisher_claims import (check_fisher_link, check_fisher_peak, check_layer_peak, check_layer_shift,
                            check_layer_shift_lasting)
from .reduce import variant_of
from ..storage.folder import Results
from ..storage.records import tags_label
from .window_claims import check_peak_onset, check_window_length


def _windows(r: Results) -> pd.DataFrame:
    t = r.trials
    return t[(t.deficit != "none") & (t.status == "ok")]


def _onsets(r: Results) -> int:
    return _windows(r).onset.nunique()


def _lengths_at_first_onset(r: Results) -> int:
    w = _windows(r)
    return w[w.onset == w.onset.min()].length.nunique() if len(w) else 0


def _one_baseline_and_window_per_seed(r: Results) -> bool:
    """The Fisher checks pair one baseline (and one window) per seed: a fisher_study-like design."""
    t = r.trials[r.trials.status == "ok"]
    base, win = t[t.deficit == "none"].seed.value_counts(), _windows(r).seed.value_counts()
    return len(base) > 0 and base.max() == 1 and (win.empty or win.max() == 1)


# the checks that read a single sweep's windows, baselines and Fisher traces (the others compare sweeps),
# each with what the design needs for it to apply
SWEEP_CHECKS: tuple[tuple[Callable[[Getter], Check], Callable[[Results], bool]], ...] = (
    (check_early_vs_late, lambda r: _onsets(r) >= 2),
    (check_late_windows, lambda r: _onsets(r) >= 2),
    (check_window_length, lambda r: _lengths_at_first_onset(r) >= 2),
    (check_peak_onset, lambda r: _onsets(r) >= 3),
    (check_fisher_link, lambda r: _onsets(r) >= 3 and "fisher_trace" in r.epochs
     and r.epochs.fisher_trace.notna().any()),
    (check_fisher_peak, _one_baseline_and_window_per_seed),
    (check_layer_peak, _one_baseline_and_window_per_seed),
    (check_layer_shift, _one_baseline_and_window_per_seed),
    (check_layer_shift_lasting, _one_baseline_and_window_per_seed))


def _part(results: Results, variant: str) -> Results:
    """The sweep restricted to the trials of one variant (their windows and baselines)."""
    trials = results.trials[results.trials.tags.map(variant_of) == variant]
    ids = set(trials.trial_id)
    layers = results.fisher_layers
    return replace(results, trials=trials, epochs=results.epochs[results.epochs.trial_id.isin(ids)],
                   fisher_layers=layers[layers.trial_id.isin(ids)] if "trial_id" in layers else layers)


def layer_check_trials(results: Results) -> set[str]:
    """The trials whose per-layer Fisher rows the per-layer checks read (`check_layer_peak`, `check_layer_shift`):
    every trial of each variant with a fisher_study-like design (one baseline and one window per seed, so
    few), none elsewhere. `results` may hold no per-layer rows yet: this says which to load."""
    out: set[str] = set()
    for variant in results.trials.tags.map(variant_of).unique():
        part = _part(results, variant)
        if _one_baseline_and_window_per_seed(part):
            out |= set(part.trials.trial_id)
    return out


def sweep_checks(results: Results) -> list[tuple[str, Check]]:
    """(variant, check) for every check this sweep's design can answer, per variant of its other grid axes
    ("" without any), in `SWEEP_CHECKS` order."""
    out = []
    for variant in sorted(results.trials.tags.map(variant_of).unique()):
        part = _part(results, variant)
        for check, applies in SWEEP_CHECKS:
            if applies(part):
                c = check(lambda _name: part)
                if c.verdict != "not run":
                    out.append((variant, c))
    return out


def checks_table(checks: list[tuple[str, Check]]) -> str | None:
    """An HTML table of `sweep_checks`' result: claim, verdict (the paper's schedule), under the controls, what
    was measured; None when no check applies."""
    if not checks:
        return None
    head = ["claim", "verdict", "under the controls", "measured (95 % CI over seeds)"]
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in (c.claim + (f" ({tags_label(v)})" if v else ""),
                                                                c.verdict, c.controls or "-", c.measured))
        + "</tr>" for v, c in checks)
    return ("<table border='1' cellpadding='4' style='border-collapse: collapse; font-size: 90%'><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + body + "</table>")


def verdict_lines(checks: list[tuple[str, Check]]) -> list[str]:
    """`checks_table` in plain text: a heading and one line per claim, its verdict under the sweep's own
    schedule, then under the learning-rate controls the sweep has; [] when no check applies. A claim the data
    cannot decide under some schedule gets a second line, "why:", with what was measured (the reason is in it)."""
    if not checks:
        return []
    width = max(len(c.verdict) for _, c in checks)
    lines = ["the paper's claims this sweep tests (verdict under its own schedule; the numbers are in the report):"]
    for v, c in checks:
        lines.append(f"  {c.verdict:<{width}}  {c.claim}{f' ({tags_label(v)})' if v else ''}"
                     + (f"; under the controls: {c.controls}" if c.controls else ""))
        if c.verdict == "not shown" or ": not shown" in c.controls:  # (controls: "restart: not shown; ...")
            lines.append(f"  {'':<{width}}    why: {c.measured}")
    return lines
