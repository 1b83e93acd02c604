"""Shared entry point of the analysis scripts: read a results folder, build one figure, write it.

Each script in analysis/ is one figure of the paper, drawn from a sweep's results folder (local or
s3://...). It writes `<name>.html` (standalone, plotly.js embedded) and `<name>.png` when an image exporter
(kaleido) is installed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

import plotly.graph_objects as go

from cpsweep.errors import CpsweepError
from cpsweep.storage.folder import Results, load_results


def run(name: str, description: str, build: Callable[[Results, argparse.Namespace], go.Figure],
        add_args: Callable[[argparse.ArgumentParser], None] | None = None, argv=None) -> int:
    p = argparse.ArgumentParser(prog=f"{name}.py", description=description)
    p.add_argument("results", help="a sweep's results folder, e.g. results/blur_grid (or s3://...)")
    p.add_argument("-o", "--out-dir", default=".", help="where to write <name>.html/.png (default: here)")
    if add_args:
        add_args(p)
    args = p.parse_args(argv)
    try:
        fig = build(load_results(args.results), args)
    except CpsweepError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out_dir, exist_ok=True)
    for path in write_figure(fig, os.path.join(args.out_dir, name)):
        print(path)
    return 0


def write_figure(fig: go.Figure, path: str) -> list[str]:
    """`path`.html (plotly.js embedded) and, when an image exporter is available, `path`.png; the paths
    written."""
    fig.write_html(path + ".html", include_plotlyjs=True)
    try:
        fig.write_image(path + ".png", width=1000, height=500)
    except (ImportError, ValueError, RuntimeError) as e:  # no kaleido / no Chrome for it
        reason = (str(e).strip().splitlines() or [""])[0][:120] or type(e).__name__
        print(f"(no PNG: {reason}; pip install kaleido for PNG export)", file=sys.stderr)
        return [path + ".html"]
    return [path + ".html", path + ".png"]
