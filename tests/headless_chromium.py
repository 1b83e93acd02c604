"""Opening a report in a real headless Chromium (Debian's `chromium`; .ci/run installs it).

    CHROMIUM                                  the browser's path, or None: tests skip without it
    figures_expected(page)                    the plotly figures a page's HTML holds
    open_in_chromium(path, expected)          open it, wait until they are drawn: (drawn, errors, URLs, seconds)
    open_in_chromium(path, n, probe=FIGURES)  ... and what each drawn figure holds (titles, panels, traces)
"""

from __future__ import annotations

import shutil
import time

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


# each drawn figure as the browser holds it: its title, its panels' titles, its y axes, its colour axis and
# its traces (type, panel axes, name, legend entry and group, fill, heatmap values)
FIGURES = """Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
    title: (gd.layout.title || {}).text || '',
    panels: (gd.layout.annotations || []).map(a => a.text),
    yaxes: Object.keys(gd._fullLayout).filter(k => /^yaxis[0-9]*$/.test(k)).length,
    coloraxis: gd._fullLayout.coloraxis ? [gd._fullLayout.coloraxis.cmin, gd._fullLayout.coloraxis.cmax] : null,
    traces: gd._fullData.map(t => ({type: t.type, xaxis: t.xaxis, yaxis: t.yaxis, name: t.name || '',
                                    showlegend: t.showlegend !== false, fill: t.fill || 'none',
                                    legendgroup: t.legendgroup || '',
                                    z: t.type === 'heatmap' ? Array.from(t.z, r => Array.from(r)).flat() : null}))}))"""


def figures_expected(page: str) -> int:
    return page.count('class="plotly-graph-div"')


def open_in_chromium(path, expected: int, screenshot=None, probe: str | None = None) -> tuple:
    """Open the page at `path` in headless Chromium and wait until its `expected` figures are drawn.
    Returns the figures drawn, the page's errors, the URLs it requested and the seconds it took, and with
    `probe` (a JavaScript expression, e.g. FIGURES) what it evaluates to in the drawn page."""
    from playwright.sync_api import sync_playwright

    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)  # a fresh profile each launch
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("request", lambda r: requests.append(r.url))
        start = time.perf_counter()
        page.goto(path.as_uri())
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {expected}",
                               timeout=120_000)
        seconds = time.perf_counter() - start
        rendered = page.evaluate("document.querySelectorAll('.js-plotly-plot').length")
        probed = page.evaluate(probe) if probe else None
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return (rendered, errors, requests, seconds) + ((probed,) if probe else ())
