"""The HTML report: rendered from hand-made tables, and opened in a real headless Chromium."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from cpsweep.results.report import render, render_compare
from results_fixture import make_results

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def test_report_contents_and_critical_period_in_the_header():
    page = render(make_results(onsets=(0, 10, 20, 30)))
    assert page.startswith("<!DOCTYPE html>") and "cpsweep report: hand" in page
    # sensitivity 6 - onset/5 (+0.5 for seed 1): mean 6.25, 4.25, 2.25, 0.25, each +- t(0.975, 1) * 0.25 =
    # +- 3.18 over the two seeds: the intervals of onsets 0 and 10 lie above zero
    assert ("critical period (blur, length 10): onsets 0, 10</b>, where the window's 95% interval of lost "
            "accuracy lies above zero (largest 6.25 at onset 0, 95% CI [3.07, 9.43]; n=2+ seeds)") in page
    assert "<script src=" not in page and len(page) > 3_000_000  # plotly.js (~4.6 MB) embedded, nothing fetched
    assert "data mnist1d, model cnn1d, optimiser sgd (lr 0.05" in page


def test_report_without_a_critical_period_says_so():
    page = render(make_results(onsets=(40, 50)))
    assert "critical period (blur, length 10): none shown</b>: no window's 95% interval lies above zero" in page
    one_seed = render(make_results(onsets=(0, 10), seeds=(0,)))
    assert "critical period (blur, length 10): not shown</b>: 1 seed per window, an interval needs at least 2" in \
        one_seed


def test_schedules_side_by_side_and_unmatched_baselines_flagged():
    import pandas as pd

    from cpsweep.results.reduce import sensitivity
    from cpsweep.results.report import sensitivity_curve_figure
    from cpsweep.results.store import Results

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


def figures_expected(page: str) -> int:
    return page.count('class="plotly-graph-div"')


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
@pytest.mark.parametrize("kind", ["report", "compare"])
def test_report_renders_in_headless_chromium(tmp_path, kind):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    res = make_results(onsets=(0, 10, 20), lengths=(10, 20), missing={(20, 20)}, failed={(10, 20)})
    page_html = render(res) if kind == "report" else render_compare([("a", res), ("b", make_results())])
    path = tmp_path / "report.html"
    path.write_text(page_html)
    expected = figures_expected(page_html)
    assert expected == (8 if kind == "report" else 2)
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # a fresh profile each launch
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {expected}")
        rendered = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        shot = tmp_path / "shot.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert errors == []
    assert rendered == expected
    assert all(u.startswith(("file:", "data:", "about:", "blob:")) for u in requests), requests
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # not blank
