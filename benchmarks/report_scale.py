"""What the HTML report costs as a sweep grows: hand-made results of 100 and 1,000 windows (2 seeds each,
per-epoch Fisher traces and per-layer rows, tests/results_fixture.py), rendered, written and opened in
headless Chromium. Prints a table and writes benchmarks/results/report_scale.json.

    python benchmarks/report_scale.py [--windows 100 1000] [--out benchmarks/results/report_scale.json]

`data MB`: the page less plotly.js (embedded once, 4.8 MB with plotly 7.1): the figures' data and the text.
Page load = wall time of `chromium --headless --dump-dom` on the file (start-up included, about 2 s for an
empty page here; it returns once the page's scripts have run, so every figure is drawn); `drawn` counts the
plotly figures drawn in the dumped DOM against the figures on the page.

Run with PYTHONPATH pointing at another checkout's package to measure that version (the fixture comes from
this one's tests/).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import plotly.offline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from results_fixture import make_results, peaked

from cpsweep.results.report import render

LENGTHS = (5, 10, 15, 20, 25)  # five lengths x onsets 0.. x 2 seeds
SEEDS = (0, 1)
EPOCHS = 50


def open_in_chromium(path: str) -> tuple[float, int]:
    """Seconds `chromium --headless --dump-dom` takes on `path`, and the plotly figures drawn in its DOM."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return float("nan"), -1
    with tempfile.TemporaryDirectory() as profile:
        start = time.perf_counter()
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                              "--dump-dom", f"file://{path}"], check=False, capture_output=True, text=True,
                             timeout=300).stdout
        seconds = time.perf_counter() - start
    return seconds, dom.count("plotly-graph-div js-plotly-plot")  # plotly adds the class as it draws the div


def measure(windows: int, folder: str) -> dict:
    res = make_results(onsets=tuple(range(windows // len(LENGTHS))), lengths=LENGTHS, seeds=SEEDS, epochs=EPOCHS,
                       damage=peaked)
    start = time.perf_counter()
    page = render(res)
    render_s = time.perf_counter() - start
    path = os.path.join(folder, f"report-{windows}.html")
    with open(path, "w") as f:
        f.write(page)
    load_s, drawn = open_in_chromium(path)
    return {"windows": windows, "trials": len(res.trials), "epoch_rows": len(res.epochs),
            "render_s": round(render_s, 2), "report_mb": round(len(page.encode()) / 1e6, 2),
            "data_mb": round((len(page.encode()) - len(plotly.offline.get_plotlyjs().encode())) / 1e6, 2),
            "load_s": round(load_s, 2), "figures": page.count('class="plotly-graph-div"'), "drawn": drawn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "report_scale.json"))
    args = parser.parse_args()
    render(make_results())  # warm up: plotly's first figure loads its validators and template (~1 s)
    with tempfile.TemporaryDirectory() as folder:
        rows = [measure(n, folder) for n in args.windows]
    print(f"{'windows':>7} {'trials':>6} {'render s':>8} {'report MB':>9} {'data MB':>7} {'load s':>6} "
          f"{'figures drawn':>13}")
    for r in rows:
        print(f"{r['windows']:>7} {r['trials']:>6} {r['render_s']:>8} {r['report_mb']:>9} {r['data_mb']:>7} "
              f"{r['load_s']:>6} {r['drawn']:>6} of {r['figures']}")
    with open(args.out, "w") as f:
        json.dump({"cpu_count": os.cpu_count(), "rows": rows}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
