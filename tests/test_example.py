"""examples/own_experiment as a user runs it (its grid shrunk by command-line overrides), copied out of the
repository, on a real two-node cluster whose worker starts elsewhere (so only the code the launch ships can
make the plug-ins import there); editing a plug-in retrains exactly the trials that run it. (Launched from
its own folder on a local Ray, the example needs nothing more: the driver's folder, the sweep file's, is on
every worker's path.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from ray_cluster import raylet_node_id

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "own_experiment")
CPSWEEP = [sys.executable, "-m", "cpsweep.cli"]


def copy_example(tmp_path) -> str:
    where = tmp_path / "my_project"
    shutil.copytree(EXAMPLE, where, ignore=shutil.ignore_patterns("results", "__pycache__"))
    return str(where)


# the example's grid, shrunk as a user would with overrides: one seed, windows [0, 4) and [4, 8) with 4 clean
# epochs, 300 signals (5 trials, not 10; what is tested is where its plug-ins run, not what they learn)
SMALLER = ("replicates=1", "clean_after=4", "grid.onset=[0,4]", "grid.length=[4]", "data.subset=300")


def launch(folder: str, *args: str, env=None, spec: str = "sweep.yaml") -> subprocess.CompletedProcess:
    res = subprocess.run([*CPSWEEP, "launch", spec, *SMALLER, *args], cwd=folder, capture_output=True, text=True,
                         timeout=600, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


@pytest.mark.slow
def test_the_copied_example_runs_on_two_nodes_with_only_shipped_code_and_an_edit_retrains_its_trials(
        tmp_path, ray_cluster):
    """Ray puts the driver's current folder on every worker's path (which exists on this one machine), so
    the driver runs from another folder and names the sweep file by path: the plug-ins import on the
    driver from the sweep file's folder, and on the worker node only from the code the launch ships. Every
    trial runs on the worker (the head offers no CPU). One cluster serves both launches: a local Ray would
    test less (its workers import from the driver's folder), at the cost of another Ray."""
    folder = copy_example(tmp_path)
    elsewhere, driver_home = tmp_path / "worker_home", tmp_path / "driver_home"
    elsewhere.mkdir()
    driver_home.mkdir()
    cluster = ray_cluster()
    cluster.start_head("--num-cpus=0")  # every trial runs on the worker node
    worker = raylet_node_id(cluster.add_worker("--num-cpus=2", cwd=str(elsewhere)))
    storage = tmp_path / "shared"
    args = ("--address", cluster.address, "--storage", str(storage), "--shared-storage")
    first = launch(str(driver_home), *args, env=cluster.env, spec=os.path.join(folder, "sweep.yaml"))
    results = os.path.join(storage, "own_experiment")
    trials = pd.read_parquet(os.path.join(results, "trials.parquet"))
    assert (trials.status == "ok").all() and len(trials) > 2 and (trials.node == worker).all()
    assert trials.plugins.str.contains("model=my_models:TinyConv@src-").all()
    windows = trials[trials.deficit == "my_deficits:sensor_dropout"]
    assert len(windows) and windows.plugins.str.contains("deficit=my_deficits:sensor_dropout@src-").all()
    others = trials[trials.deficit == "weight_decay"]  # the built-in window: the model is the only plug-in
    assert len(others) and not others.plugins.str.contains("deficit=").any()
    with open(os.path.join(results, "report.html")) as f:
        page = f.read()
    assert "plug-ins: deficit my_deficits:sensor_dropout (src-" in page and "Your metric noisy_accuracy" in page
    # the user's metric ran on the worker too
    measured = pd.read_parquet(os.path.join(results, "epochs.parquet"))["metric.noisy_accuracy"]
    assert measured.notna().sum() > len(trials) and measured.dropna().between(0, 1).all()
    assert "0 already done" in first.stdout

    with open(os.path.join(folder, "my_deficits.py"), "a") as f:
        f.write("\n# a comment is an edit too: the code's hash changes\n")
    again = launch(str(driver_home), *args, env=cluster.env, spec=os.path.join(folder, "sweep.yaml"))
    n = len(windows)  # the sensor-dropout trials only: the baselines and weight-decay windows stay
    assert f"{len(trials) - n} already done, {n} to run" in again.stdout, again.stdout
    assert f"{n} finished trial(s) ran other plug-in code than my_deficits:sensor_dropout@src-" in again.stdout
    epochs = pd.read_parquet(os.path.join(results, "epochs.parquet"))
    assert not epochs.duplicated(["trial_id", "epoch"]).any()  # the old rows are gone, not doubled
    after = pd.read_parquet(os.path.join(results, "trials.parquet")).set_index("trial_id")
    assert set(after.index) == set(trials.trial_id) and (after.status == "ok").all() and (after.node == worker).all()
    assert len(os.listdir(os.path.join(results, "shards"))) == len(trials)
