"""Opening a report in a real headless Chromium (Debian's `chromium`; .ci/run installs it).

    CHROMIUM                                  the browser's path, or None: tests skip without it
    figures_expected(page)                    the plotly figures a page's HTML holds
    open_in_chromium(path, expected)          open it, wait until they are drawn: (drawn, errors, URLs, seconds)
"""

from __future__ import annotations

import shutil
import time

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def figures_expected(page: str) -> int:
    return page.count('class="plotly-graph-div"')


def open_in_chromium(path, expected: int, screenshot=None) -> tuple[int, list[str], list[str], float]:
    """Open the page at `path` in headless Chromium and wait until its `expected` figures are drawn.
    Returns the figures drawn, the page's errors, the URLs it requested and the seconds it took."""
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
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return rendered, errors, requests, seconds
