"""analysis/: one script per paper figure, run on a hand-made results folder written to disk."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import shutil

import pytest
import yaml

from cpsweep.storage.store import Store
from results_fixture import make_results, write_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CAN_EXPORT = shutil.which("chromium") is not None and importlib.util.find_spec("kaleido") is not None
SCRIPTS = ["removal_curve", "sliding_window", "sensitivity_heatmap", "fisher_trace", "layer_fisher"]


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("results") / "hand"
    res = make_results(onsets=(0, 10, 20), lengths=(10, 20))
    store = Store(str(folder))
    write_tables(store.uri, res)
    store.write_bytes(yaml.safe_dump(res.spec).encode(), "spec.yaml")
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_writes_its_figure(script, results_dir, tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "analysis", f"{script}.py"), str(results_dir),
                          "-o", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    page = (tmp_path / f"{script}.html").read_text()
    assert "plotly" in page and len(page) > 1_000_000
    if CAN_EXPORT:  # the PNG through kaleido and the system's Chromium, checked not to be blank
        import numpy as np
        from PIL import Image

        pixels = np.asarray(Image.open(tmp_path / f"{script}.png").convert("L"), dtype=float)
        assert pixels.shape == (500, 1000) and pixels.std() > 10


@pytest.mark.slow
def test_script_on_a_folder_without_results(tmp_path):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "analysis", "fisher_trace.py"), str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "holds no cpsweep results" in out.stderr and "Traceback" not in out.stderr
