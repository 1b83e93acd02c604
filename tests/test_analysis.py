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


def test_precision_check_pairs_each_trial_with_its_other_precision(tmp_path):
    """bf16 costs 0.3 pts more in every window (hand-made): 9 window pairs differ by -0.3 pts, the 3
    baseline pairs by 0; each precision's sensitivity and early-minus-late contrast read back as made."""
    from results_fixture import falling, make_faceted_results

    sys.path.insert(0, os.path.join(ROOT, "analysis"))
    try:
        import precision_check
    finally:
        sys.path.pop(0)
    res = make_faceted_results({"engine.precision=fp32": falling,
                                "engine.precision=bf16": lambda o, n, s: falling(o, n, s) + 0.3}, seeds=(0, 1, 2))
    write_tables(str(tmp_path), res)
    doc = precision_check.compare(str(tmp_path))
    means = {(w["precision"], w["onset"]): w["mean"] for w in doc["windows"]}
    for onset in (0, 10, 20):  # falling: 6 - onset / 5 + seed / 2, mean over seeds 0-2: + 0.5
        assert means["fp32", onset] == pytest.approx(6.5 - onset / 5)
        assert means["bf16", onset] == pytest.approx(6.8 - onset / 5)
    assert [round(c["mean"], 9) for c in doc["contrasts"]] == [4.0, 4.0]
    pairs = doc["pairs"]
    assert pairs["n"] == 12 and pairs["bf16_higher"] == 0
    assert pairs["mean_diff"] == pytest.approx(9 * -0.3 / 12) and pairs["max_abs_diff"] == pytest.approx(0.3)
    with pytest.raises(Exception, match="needs finished trials in both precisions"):
        write_tables(str(tmp_path / "one"), make_results())
        precision_check.compare(str(tmp_path / "one"))
