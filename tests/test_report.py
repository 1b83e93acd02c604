"""The HTML report: rendered from hand-made tables, and opened in a real headless Chromium."""

from __future__ import annotations

import html
import os
import re
import time

import numpy as np
import pytest
from headless_chromium import CHROMIUM, FIGURES, figures_expected, open_in_chromium
from results_fixture import make_results, peaked

from cpsweep.results.report import render, render_compare


def test_report_contents_and_critical_period_in_the_header():
    page = render(make_results(onsets=(0, 10, 20, 30), seeds=(0, 1, 2)))
    assert page.startswith("<!DOCTYPE html>") and "cpsweep report: hand" in page
    # sensitivity 6 - onset/5 (+0.5 per seed): means 6.5, 4.5, 2.5, 0.5, standard error 0.289 over 3 seeds;
    # one-sided p (t, 2 dof) 0.001, 0.002, 0.0065, 0.11: Benjamini-Hochberg over 4 onsets keeps the first three
    # (0.0065 <= 3 * 0.025 / 4; 0.11 > 0.025)
    assert ("critical period (blur, length 10): onsets 0, 10, 20</b>, the windows shown to cost accuracy above "
            "zero (one-sided t-tests over seeds, Benjamini-Hochberg over the 4 onsets: false onsets on average at most 2.5 % of "
            "those shown, and no onset shown by chance in more than 2.5 % of grids without any effect; largest 6.50 "
            "at onset 0, 95% CI [5.26, 7.74]; n=3+ seeds)") in page
    assert "<script src=" not in page and len(page) > 3_000_000  # plotly.js (~4.6 MB) embedded, nothing fetched
    assert "data mnist1d, model cnn1d, optimiser sgd (lr 0.05, momentum 0.9, weight decay" in page
    assert "every trial trains 50 epochs" in page and "seeds with trials: 0, 1, 2" in page
    # the early-late table: onset 0 against onset 30, 6.0 points in every seed
    assert "early minus late 6.00 [6.00, 6.00] (95% CI, n=3): 95% interval above zero</td><td>reproduced" in page


def test_report_without_a_critical_period_says_so():
    page = render(make_results(onsets=(40, 50), seeds=(0, 1, 2)))
    assert "critical period (blur, length 10): none shown</b>: no window is shown to cost accuracy above zero" in page
    everywhere = render(make_results(onsets=(0, 10), seeds=(0, 1, 2)))
    assert ("<b>sensitive at every onset tried (blur, length 10: 0, 10)</b>: the critical period does not end "
            "inside the grid; add later onsets") in everywhere and "critical period (blur" not in everywhere
    for seeds in ((0,), (0, 1)):  # fewer than 3 paired seeds decide nothing (as every verdict of the report)
        few = render(make_results(onsets=(0, 10), seeds=seeds))
        assert (f"critical period (blur, length 10): not shown</b>: {len(seeds)} paired seed{'s' * (len(seeds) > 1)} "
                "at some window, at least 3 needed at every onset") in few, seeds


def test_report_header_states_the_design_and_windows_still_recovering():
    from cpsweep.storage.folder import Results

    res = make_results(onsets=(0, 10, 20), seeds=(0, 1, 2))
    ep = res.epochs.copy()
    late = ep.trial_id.str.startswith("blur-o20") & (ep.epoch < 40)
    ep.loc[late, "test_acc"] -= 0.01  # the [20, 30) windows gain a point over their last 10 epochs
    spec = {**res.spec, "fixed": {**res.spec["fixed"], "epochs": None, "clean_after": 10},
            "spec": {"name": "hand", "seed": 0, "replicates": 5}}
    page = render(Results(res.trials, ep, res.fisher_layers, spec))
    assert "equal recovery: every window is followed by 10 clean epochs (clean_after)" in page
    assert "seeds planned in the file: 0, 1, 2, 3, 4 (5); seeds with trials: 0, 1, 2" in page
    assert ("<b>still recovering (blur, length 10)</b>: at onset 20 the window's loss still shrank by more than "
            "0.5 pts over its last 10 epochs when read") in page
    common = render(Results(res.trials, res.epochs, res.fisher_layers,
                            {**res.spec, "spec": {"name": "hand", "common_end": True, "epochs": 50}}))
    assert "<b>recovery differs per window</b>: every trial stops at epoch 50 (common_end)" in common
    assert "NOTE: recovery differs per window" in common and "read during the deficit" not in common
    short = render(make_results(onsets=(0, 10, 20), seeds=(0, 1, 2), epochs=35))  # [20, 30): 5 clean epochs
    assert "NOTE: window [20, 30) (5 clean epochs) read during the deficit: the final accuracy is the median" in short
    adam = {**res.spec["fixed"], "optim": {"name": "adam", "lr": 0.001, "momentum": 0.9, "beta1": 0.9,
                                           "beta2": 0.999, "weight_decay": 0, "batch_size": 128}}
    page = render(Results(res.trials, res.epochs, res.fisher_layers, {**res.spec, "fixed": adam}))
    assert "optimiser adam (lr 0.001, beta1 0.9, beta2 0.999, weight decay" in page and "momentum" not in page
    # a setting a grid axis replaces is said as the axis's values, never as the file's value no trial used
    axes = {"name": "hand", "grid": {"onset": [0], "length": [10], "optim.lr": [0.1, 0.01],
                                     "model": [{"name": "mlp", "hidden": [32]}, "cnn1d"]}}
    page = render(Results(res.trials, res.epochs, res.fisher_layers, {**res.spec, "spec": axes}))
    assert "model mlp/cnn1d (grid), optimiser sgd (lr 0.1/0.01 (grid), momentum 0.9, weight decay" in page


def test_schedules_side_by_side_and_unmatched_baselines_flagged():
    import pandas as pd

    from cpsweep.results.reduce import sensitivity
    from cpsweep.results.report import sensitivity_curve_figure
    from cpsweep.storage.folder import Results

    res = make_results(onsets=(0, 10, 20, 30))
    both = pd.concat([res.trials.assign(tags="schedule=exponential"),
                      res.trials.assign(tags="schedule=restart", trial_id=res.trials.trial_id + "-r",
                                        baseline_id=res.trials.baseline_id + "-r")])
    fig = sensitivity_curve_figure(sensitivity(both))
    assert [a.text for a in fig.layout.annotations] == ["schedule: exponential", "schedule: restart"]
    assert {t.xaxis for t in fig.data} == {"x", "x2"}  # each schedule's lines in its own panel
    short = res.trials.copy()
    short.loc[short.deficit == "none", "epochs"] = 20  # baselines trained less than their windows
    page = render(Results(short, res.epochs, res.fisher_layers, res.spec))
    assert "baselines not length-matched</b>" in page


def test_the_report_and_status_grade_every_committed_sweep_as_its_whole_tables_do():
    """`results_for_report` reads the per-layer rows of a few trials only; the verdicts it leads to (the
    report's, `cpsweep status`'s, the end of a launch's) must be those of the whole tables, which
    docs/reproduction.md grades: once they differed, the per-layer claims graded from one seed."""
    from cpsweep.results.report import results_for_report
    from cpsweep.results.report_checks import sweep_checks
    from cpsweep.results.reproduction import DATA
    from cpsweep.storage.folder import load_results

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), DATA)
    graded = 0
    for name in sorted(os.listdir(root)):
        folder = os.path.join(root, name)
        whole = [(v, c.key, c.verdict, c.measured) for v, c in sweep_checks(load_results(folder))]
        assert [(v, c.key, c.verdict, c.measured) for v, c in sweep_checks(results_for_report(folder))] == whole, name
        graded += len(whole)
    assert graded >= 20  # (the committed twins test most claims: this compares something)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
@pytest.mark.parametrize("kind", ["report", "compare"])
def test_report_renders_in_headless_chromium(tmp_path, kind):
    from PIL import Image

    res = make_results(onsets=(0, 10, 20), lengths=(10, 20), missing={(20, 20)}, failed={(10, 20)})
    page_html = render(res) if kind == "report" else render_compare([("a", res), ("b", make_results())])
    path = tmp_path / "report.html"
    path.write_text(page_html)
    expected = figures_expected(page_html)
    assert expected == (8 if kind == "report" else 2)
    shot = tmp_path / "shot.png"
    rendered, errors, requests, _ = open_in_chromium(path, expected, shot)
    assert errors == []
    assert rendered == expected
    assert all(u.startswith(("file:", "data:", "about:", "blob:")) for u in requests), requests
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # not blank


@pytest.fixture(scope="module")
def big_report():
    """The report of a sweep of 1,000 windows (200 onsets x 5 lengths, 2 seeds, 50 epochs each, a Fisher
    trace every other epoch, per-layer rows): the page and the seconds `render` took."""
    res = make_results(onsets=tuple(range(200)), lengths=(5, 10, 15, 20, 25), seeds=(0, 1), epochs=50,
                       damage=peaked)
    assert (res.trials.deficit != "none").sum() == 2000 and len(res.fisher_layers) == 150_150
    start = time.perf_counter()
    page = render(res)
    return page, time.perf_counter() - start


def section(page: str, caption: str) -> str:
    """The HTML of the first figure whose caption starts with `caption` (up to the next caption)."""
    start = page.index("<p class='caption'>" + caption)
    end = page.find("<p class='caption'>", start + 1)
    return page[start:end if end > 0 else len(page)]


def test_report_of_a_thousand_windows_stays_a_few_mb(big_report):
    import plotly.offline

    page, seconds = big_report
    size, plotly_js = len(page.encode()), len(plotly.offline.get_plotlyjs().encode())
    print(f"\n1,000 windows: rendered in {seconds:.1f} s, {size / 1e6:.2f} MB "
          f"({(size - plotly_js) / 1e6:.2f} MB besides plotly.js)")
    assert size < 7_000_000 and size - plotly_js < 1_000_000  # before sampling: 9.5 MB, 4.7 MB of it figure data
    fisher = section(page, "Trace of the Fisher")
    assert ("for the baselines (black; dashed where the rate restarts after a window) and 12 of the 1,000 windows "
            "(the most and least damaging, the others spread "
            "over the lengths and onsets; every trial&#x27;s trace per epoch is in the epochs table, "
            "epochs.parquet)") in fisher
    names = re.findall(r'"name":"([^"]+)"', fisher)
    # the damage peaks at onset 37 for the longest windows (25 epochs): that window is drawn, and shaded
    assert len(names) == 13 and "baseline" in names and "blur [37, 62)" in names
    assert '"x0":36.5,"x1":61.5' in fisher.replace(" ", "")
    heat = section(page, "Each cell is a deficit window")
    heat = heat[heat.rindex("Plotly.newPlot("):]  # its data and layout (plotly.js comes before them)
    assert len(heat) < 250_000 and '"hovertemplate":"onset %{x}, length %{y}' in heat
    assert '"texttemplate"' not in heat  # 1,000 cells, too narrow to print in: their values are in the hover


def test_small_sweeps_draw_every_window():
    page = render(make_results(onsets=(0, 10, 20), lengths=(10, 20)))
    fisher = section(page, "Trace of the Fisher")
    assert "for the baselines (black; dashed where the rate restarts after a window) and every window;" in fisher
    assert len(re.findall(r'"name":"([^"]+)"', fisher)) == 1 + 6


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_report_of_a_thousand_windows_opens_in_headless_chromium(big_report, tmp_path):
    page_html, _ = big_report
    path = tmp_path / "report.html"
    path.write_text(page_html)
    expected = figures_expected(page_html)
    rendered, errors, requests, seconds = open_in_chromium(path, expected)
    print(f"\n1,000 windows: {expected} figures drawn in headless Chromium in {seconds:.1f} s")
    assert errors == [] and rendered == expected == 8
    assert all(u.startswith(("file:", "data:", "about:", "blob:")) for u in requests), requests


def test_report_grades_the_claims_the_sweep_can_test():
    # sensitivity 6 - onset/5 (+0.5 per seed): onset 0 minus onset 30 is 6.0 in every seed; the late window
    # (onset 30: 0.5 [-0.74, 1.74]) is neither shown harmless nor harmful; onset 0 is the most damaging in
    # every seed (paired differences of 2.0 with no spread: its confidence set is {0}, before the middle 15)
    page = render(make_results(onsets=(0, 10, 20, 30), seeds=(0, 1, 2)))
    assert "<td>Blur: an early window costs more than a late one</td><td>reproduced</td>" in page
    assert "<td>Blur: the same window late in training does no lasting harm</td><td>not shown</td>" in page
    assert "<td>Blur: the most damaging onset is early in training</td><td>reproduced</td>" in page
    assert "Blur: a longer window costs more" not in page  # one window length: the design cannot answer it


def test_claims_of_one_sweep_per_variant_and_fisher_only_with_one_baseline_per_seed():
    from cpsweep.results.report_checks import sweep_checks
    from cpsweep.results.reproduction import DATA
    from cpsweep.storage.folder import load_results

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), DATA)
    depth = sweep_checks(load_results(os.path.join(root, "mini_mlp_depth")))  # two depths, the same seeds
    assert {v for v, _ in depth} == {"model.hidden=(256,)", "model.hidden=(256, 256, 256, 256)"}
    grid = {c.key for _, c in sweep_checks(load_results(os.path.join(root, "mini_blur_grid")))}
    assert grid == {"early_vs_late", "late_windows", "window_length", "peak_onset", "fisher_link"}
    study = {c.key: c.verdict for _, c in sweep_checks(load_results(os.path.join(root, "mini_fisher_study")))}
    assert study == {"fisher_peak": "reproduced", "layer_peak": "reproduced", "layer_shift": "reproduced",
                     "layer_shift_lasting": "not reproduced"}  # (the shift is shown gone 60 epochs after the window)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_a_three_axis_sweep_gets_a_row_per_value_in_every_figure(tmp_path, ray_local, capsys):
    """A real sweep over onset x length x schedule x model.channels, its report opened in Chromium: every
    figure has one row of panels per value of the extra axes (the sliding-window curve a column per
    schedule), every heatmap one shared colour axis spanning every cell, the chosen trials drawn in every
    row, and `status` names the axis values of its best and worst windows."""
    from PIL import Image
    from tiny_specs import tiny_sweep

    from cpsweep.cli import main
    from cpsweep.storage.folder import load_results
    from cpsweep.sweep.launch import launch

    raw = tiny_sweep(replicates=2, common_end=None, epochs=None, clean_after=2,
                     grid={"onset": [0, 3], "length": [2], "schedule": ["exponential", "restart"],
                           "model.channels": [4, 8]})
    launch(raw, storage=str(tmp_path / "res"), report=True)
    folder = tmp_path / "res" / "tiny"
    trials = load_results(str(folder)).trials
    assert (trials.status == "ok").all()
    rows = sorted(trials.tags.unique())
    assert len(rows) == 4 and all("schedule=" in t and "model.channels=" in t for t in rows)
    page_html = (folder / "report.html").read_text()
    assert "one row per value of the sweep's other grid axes (schedule, model.channels)" in html.unescape(page_html)
    assert "Panels: one column per schedule and one row per value of the other grid axes" in page_html
    shot = tmp_path / "three_axes.png"
    expected = figures_expected(page_html)
    rendered, errors, _, _, figures = open_in_chromium(folder / "report.html", expected, shot, probe=FIGURES)
    assert errors == [] and rendered == expected
    by_title = {f["title"]: f for f in figures}
    titled = [t.replace(",", ", ") for t in rows]
    for title in ("blur: accuracy lost vs baseline (percentage points)", "Test accuracy per epoch", "Fisher trace",
                  "Per-layer Fisher: most damaging window", "Per-layer Fisher: baseline"):
        fig = by_title[title]
        assert fig["yaxes"] == 4, title
        assert all(any(row in panel for panel in fig["panels"]) for row in titled), (title, fig["panels"])
    # the sliding-window curve: a row per channel count, a column per schedule, every panel drawn
    curve = by_title["Sensitivity against window onset under each schedule"]
    assert curve["yaxes"] == 4 and sorted(curve["panels"]) == sorted(
        f"model.channels={c}, schedule: {s}" for c in (4, 8) for s in ("exponential", "restart"))
    assert len({(t["xaxis"], t["yaxis"]) for t in curve["traces"] if t["type"] == "scatter"}) == 4
    # one colour axis over every cell of every heatmap
    heat = by_title["blur: accuracy lost vs baseline (percentage points)"]
    cells = [v for t in heat["traces"] if t["type"] == "heatmap" for v in t["z"] if v is not None]
    assert len([t for t in heat["traces"] if t["type"] == "heatmap"]) == 4 and len(cells) == 8
    assert heat["coloraxis"] == pytest.approx([min(0.0, min(cells)), max(max(cells), min(0.0, min(cells)) + 0.1)],
                                              abs=1e-4)
    # each row's accuracy panel: its baseline, its most and its least damaging window
    acc = by_title["Test accuracy per epoch"]
    lines = [t for t in acc["traces"] if t["fill"] == "none"]  # (not the bands around them)
    assert sorted(len([t for t in lines if t["yaxis"] == y]) for y in {t["yaxis"] for t in lines}) == [3] * 4
    # one legend entry per colour (a window, the baseline), whichever panels draw it; it toggles them all
    for fig in (acc, curve):
        drawn = [t for t in fig["traces"] if t["type"] == "scatter" and t["fill"] == "none"]
        shown = [t["name"] for t in drawn if t["showlegend"]]
        assert sorted(shown) == sorted({t["legendgroup"] for t in drawn}) and len(shown) < len(drawn), shown
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # not blank
    capsys.readouterr()
    assert main(["status", str(folder)]) == 0
    status = capsys.readouterr().out
    for which in ("worst", "best "):
        line = next(ln for ln in status.splitlines() if ln.startswith(which + " window:"))
        assert "schedule=" in line and "model.channels=" in line, line


def test_faceted_figures_share_one_colour_axis_and_choose_trials_per_row():
    """Without a browser: a sweep with an extra axis of three values draws each heatmap, curve and
    per-layer figure with one row per value; the heatmaps' one colour axis spans every cell of every row."""
    from results_fixture import falling, make_faceted_results

    from cpsweep.results.figures import heatmap_figure
    from cpsweep.results.reduce import sensitivity

    facets = {"width=8": falling, "width=16": lambda o, n, s: 20 - o / 2 + s, "width=32": lambda o, n, s: -1.0 + s}
    res = make_faceted_results(facets, onsets=(0, 10, 20), seeds=(0, 1, 2))
    sens = sensitivity(res.trials, res.epochs)
    fig = heatmap_figure(sens, res.trials, "blur")
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert [a.text for a in fig.layout.annotations] == sorted(facets) and len(heat) == 3
    cells = np.concatenate([np.asarray(t.z, dtype=float).ravel() for t in heat])
    # brute force: mean damage over seeds per window, the scale from min(0, lowest) to the highest
    means = [np.mean([d(o, 10, s) for s in (0, 1, 2)]) for d in facets.values() for o in (0, 10, 20)]
    assert sorted(cells) == pytest.approx(sorted(means), abs=1e-4)
    assert {t.coloraxis for t in heat} == {"coloraxis"}
    assert (fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax) == pytest.approx((min(means), max(means)), abs=1e-4)
    page = html.unescape(render(res))
    assert f"Every heatmap of this report shares one colour scale, {min(0.0, min(means)):.2f} to " \
           f"{max(means):.2f} pts" in page
    assert "one row per value of the sweep's other grid axes (the trials' tags)" in page  # no grid in its spec
    assert "Panels: one row per value of the other grid axes, on shared axes. The paper's sliding-window" in page


def test_heatmap_colours_are_white_at_no_loss_and_blue_where_a_window_helped():
    from results_fixture import falling, make_faceted_results

    import pandas as pd

    from cpsweep.results.figures import colour_range, colour_scale, heatmap_figure
    from cpsweep.results.reduce import sensitivity
    from cpsweep.storage.records import tags_label

    assert colour_scale(0.0, 4.0) == "Reds"
    scale = colour_scale(-1.0, 3.0)  # 0 lies a quarter of the way up
    assert scale[0] == [0.0, "#2166ac"] and scale[1] == [0.25, "rgb(255,245,240)"]
    assert scale[-1] == [1.0, "rgb(103,0,13)"] and [z for z, _ in scale] == sorted(z for z, _ in scale)
    # every window helped: the scale still ends at 0, white
    assert colour_range(pd.DataFrame({"sensitivity": [-2.0, -1.0]})) == (-2.0, 0.0)
    assert colour_scale(-2.0, 0.0) == [[0.0, "#2166ac"], [1.0, "rgb(255,245,240)"]]
    res = make_faceted_results({"width=8": falling, "width=16": lambda o, n, s: -2.0}, onsets=(0, 10), seeds=(0, 1, 2))
    fig = heatmap_figure(sensitivity(res.trials, res.epochs), res.trials, "blur")
    low, high = fig.layout.coloraxis.cmin, fig.layout.coloraxis.cmax
    white = [z for z, c in fig.layout.coloraxis.colorscale if c == "rgb(255,245,240)"]
    assert low == pytest.approx(-2.0) and white == [pytest.approx(2.0 / (high + 2.0))]
    # a facet of a component given as a mapping is titled by its name and options
    assert tags_label("model={'name': 'mlp', 'hidden': [32]},optim.lr=0.1") == "model=mlp(hidden=[32]), optim.lr=0.1"
    assert tags_label("model={'name': 'cnn1d'},model.hidden=(256, 256)") == "model=cnn1d, model.hidden=(256, 256)"


def test_each_colour_has_one_legend_entry_across_panels_and_bands_have_no_markers():
    """Without a browser: in a faceted figure a colour (a window length, a window, a deficit) gets one legend
    entry, grouping its lines in every panel (a click hides them all); each line's hover still names its
    panel's axis values; the standard-error bands are drawn without markers (they showed Plotly's default
    colours on their edges); a line of more than 40 points has no markers."""
    from results_fixture import falling, make_faceted_results

    from cpsweep.results.figures import curves_figure, removal_figure, sensitivity_curve_figure
    from cpsweep.results.reduce import group_curves, removal_curve, sensitivity

    facets = {"width=8": falling, "width=16": falling}
    res = make_faceted_results(facets, onsets=(0, 10), lengths=(10, 20), seeds=(0, 1, 2))
    sens = sensitivity(res.trials, res.epochs)
    figures = {"curve": sensitivity_curve_figure(sens),
               "removal": removal_figure(removal_curve(res.trials, res.epochs)),
               "accuracy": curves_figure(group_curves(res.epochs, res.trials, "test_acc"), "acc", "%")}
    expected = {"curve": ["blur, length 10", "blur, length 20"], "removal": ["blur"],
                "accuracy": ["baseline", *(f"blur [{o}, {o + n})" for o in (0, 10) for n in (10, 20))]}
    for name, fig in figures.items():
        lines = [t for t in fig.data if t.fill is None]
        bands = [t for t in fig.data if t.fill == "toself"]
        assert bands and {t.mode for t in bands} == {"lines"}, name
        assert len(lines) == 2 * len(expected[name]), name  # each entry drawn in both panels
        assert sorted(t.name for t in lines if t.showlegend) == sorted(expected[name]), name
        assert all(t.legendgroup == t.name for t in lines), name
        # markers on short lines only (51 epochs: a line; a marker per epoch would hide a dashed baseline)
        assert {t.mode for t in lines} == {"lines" if name == "accuracy" else "lines+markers"}, name
        for width in ("8", "16"):  # the hover names the panel's tags
            assert sum(f"width={width}" in t.hovertemplate for t in lines) == len(expected[name]), name
    # a facet whose rate restarts after each window: its baselines are named by the restart's epoch, dashed
    res = make_faceted_results({"schedule=exponential": falling, "schedule=restart": falling}, onsets=(0, 10, 20),
                               seeds=(0, 1, 2), restart="restart")
    fig = curves_figure(group_curves(res.epochs, res.trials, "test_acc"), "acc", "%")
    styles = {t.name: t.line.dash for t in fig.data if t.fill is None and t.name.startswith("baseline")}
    assert styles == {"baseline": None, "baseline restarted at 10": "dash", "baseline restarted at 20": "dot"}


@pytest.mark.parametrize("measure, message", [
    ("trial_id", "--measure: trial_id is not a metric of {uri}; give test_acc or one of its metrics: metric.m "
     "(a sweep's metrics: section)"),
    ("epoch", "--measure: epoch is not a metric of {uri}; give test_acc or one of its metrics: metric.m "
     "(a sweep's metrics: section)"),
    ("metric.x", "--measure: {uri} has no column metric.x; give test_acc or one of its metrics: metric.m "
     "(a sweep's metrics: section)"),
])
def test_the_sensitivity_is_measured_only_by_accuracy_or_a_metric(tmp_path, measure, message):
    from cpsweep.errors import CpsweepError
    from cpsweep.results.report import results_for_report
    from results_fixture import write_tables

    res = make_results()
    res.epochs["metric.m"] = res.epochs.test_acc
    write_tables(str(tmp_path), res)
    assert results_for_report(str(tmp_path), "metric.m").epochs["metric.m"].notna().any()
    page = render(results_for_report(str(tmp_path), "metric.m"), measure="metric.m")
    assert "metric.m lost vs baseline" in page and "metric.m lost (pts)" in page  # the heatmap's, the curve's
    assert "accuracy lost vs baseline" not in page and "accuracy lost (pts)" not in page
    with pytest.raises(CpsweepError) as info:  # (an id column made a TypeError, `epoch` a KeyError)
        results_for_report(str(tmp_path), measure)
    assert str(info.value) == message.format(uri=tmp_path)
