"""Report reducers on hand-made tables, and the standalone HTML."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cpsweep.report import heatmap_grid, render, sensitivity
from cpsweep.store import Results


def row(tid, deficit, onset, length, seed, acc, status="ok"):
    base = f"baseline-s{seed}"
    return {"trial_id": tid, "baseline_id": base, "status": status, "deficit": deficit, "onset": onset,
            "length": length, "seed": seed, "tags": "", "final_test_acc": acc}


TRIALS = pd.DataFrame([
    row("baseline-s0", "none", 0, 0, 0, 0.90), row("baseline-s1", "none", 0, 0, 1, 0.92),
    row("blur-o0-l10-s0", "blur", 0, 10, 0, 0.80), row("blur-o0-l10-s1", "blur", 0, 10, 1, 0.86),
    row("blur-o20-l10-s0", "blur", 20, 10, 0, 0.89),
    row("blur-o20-l10-s1", "blur", 20, 10, 1, 0.10, status="failed"),
    row("blur-o40-l10-s0", "blur", 40, 10, 0, float("nan"), status="pending"),
])


def test_sensitivity_averages_seeds_against_each_seeds_baseline():
    s = sensitivity(TRIALS).set_index("onset")
    # onset 0: seed 0 lost 10 pts, seed 1 lost 6 pts
    assert s.loc[0, "sensitivity"] == pytest.approx(8.0)
    assert s.loc[0, "sem"] == pytest.approx(np.std([10.0, 6.0], ddof=1) / math.sqrt(2))
    assert s.loc[0, "n_seeds"] == 2 and s.loc[0, "baseline_acc"] == pytest.approx(91.0)
    # onset 20: the failed seed does not count
    assert s.loc[20, "sensitivity"] == pytest.approx(1.0) and s.loc[20, "n_seeds"] == 1
    assert math.isnan(s.loc[20, "sem"])
    assert 40 not in s.index


def test_missing_cells_stay_missing_in_the_grid():
    grid = heatmap_grid(sensitivity(TRIALS), TRIALS, "blur", "")
    assert list(grid.columns) == [0, 20, 40] and list(grid.index) == [10]
    assert grid.loc[10, 0] == pytest.approx(8.0) and math.isnan(grid.loc[10, 40])


def test_window_without_its_baseline_is_left_out():
    t = TRIALS[TRIALS.trial_id != "baseline-s1"]
    s = sensitivity(t).set_index("onset")
    assert s.loc[0, "n_seeds"] == 1 and s.loc[0, "sensitivity"] == pytest.approx(10.0)


def test_render_is_standalone_html():
    page = render(Results(TRIALS, pd.DataFrame(), pd.DataFrame(), {"hash": "abc", "spec": {"name": "s"}}))
    assert page.startswith("<!DOCTYPE html>") and "cpsweep report: s" in page
    assert "plotly" in page and "<script src=\"http" not in page  # plotly.js embedded, not fetched
