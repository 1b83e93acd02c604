"""Trackers end to end (issue 14, item 4): W&B in offline mode and MLflow with a local file store, fed by a
real launch whose trials branch from shared prefixes; the logged steps are read back: every trial's run
holds each of its epochs (the record at initialisation and the prefix epochs included) once, at the
trial's own epoch, with the values of epochs.parquet; a later launch of the sweep logs into the same runs."""

from __future__ import annotations

import glob
import struct
from collections import defaultdict

import pandas as pd
import pytest
from tiny_specs import tiny_sweep

from cpsweep.sweep.trackers import run_id

pytest.importorskip("wandb")
pytest.importorskip("mlflow")
pytestmark = pytest.mark.slow


def wandb_history(root, files=None) -> dict[str, list[dict]]:
    """run id -> the history rows of every offline run folder under `root` (or of the run `files`) (W&B's
    .wandb files: a header, then LevelDB-log records of 32 KiB blocks holding protobuf `Record`s)."""
    from wandb.proto import wandb_internal_pb2 as pb

    rows = defaultdict(list)
    for path in files if files is not None else glob.glob(f"{root}/wandb/offline-run-*/run-*.wandb"):
        with open(path, "rb") as f:
            data = f.read()
        assert data[:4] == b":W&B"
        pos, block, buf = 7, 32768, b""
        while pos + 7 <= len(data):
            if block - pos % block < 7:
                pos += block - pos % block
                continue
            _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
            buf += data[pos + 7:pos + 7 + length]
            pos += 7 + length
            if kind in (1, 4):  # a full record, or the last part of one
                record = pb.Record()
                record.ParseFromString(buf)
                buf = b""
                if record.WhichOneof("record_type") == "history":
                    rows[path.rsplit("run-", 1)[1][:-6]].append(
                        {item.key or "/".join(item.nested_key): float(item.value_json) for item in record.history.item})
    return rows


def test_trackers_log_every_epoch_at_its_epoch_into_stable_runs(tmp_path, ray_local, monkeypatch):
    from mlflow.tracking import MlflowClient

    from cpsweep.sweep.launch import launch

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store only on request
    mlruns = f"file://{tmp_path}/mlruns"
    raw = tiny_sweep(tracking={"wandb": {"project": "cps-test"}, "mlflow": {"tracking_uri": mlruns}})
    launch(raw, storage=str(tmp_path / "res"), report=False)
    folder = tmp_path / "res" / "tiny"
    epochs = pd.read_parquet(folder / "epochs.parquet")
    trials = pd.read_parquet(folder / "trials.parquet").set_index("trial_id")
    assert trials.shared_epochs.max() > 0  # some trial branched from a shared prefix

    client = MlflowClient(tracking_uri=mlruns)
    exp = client.get_experiment_by_name("tiny")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == set(trials.index)
    history = wandb_history(tmp_path)
    for tid, part in epochs.groupby("trial_id"):
        expected = part.set_index("epoch").test_acc.sort_index()
        assert list(expected.index) == list(range(-1, 6))
        logged = client.get_metric_history(runs[tid].info.run_id, "test_acc")
        assert sorted(m.step for m in logged) == list(range(-1, 6))  # each epoch once, at its epoch
        assert {m.step: m.value for m in logged} == pytest.approx(expected.to_dict())
        rows = history[run_id("tiny", tid)]
        assert sorted(int(r["epoch"]) for r in rows) == list(range(-1, 6))
        assert {int(r["epoch"]): r["test_acc"] for r in rows} == pytest.approx(expected.to_dict())
        assert any("fisher/0" in r for r in rows)  # per-layer Fisher traces too
    first_ids = {tid: r.info.run_id for tid, r in runs.items()}

    # a launch of the same sweep that trains trials again (here a window and its baseline, into another
    # results folder) logs into those trials' runs, not new ones
    again = "blur-o3-l2-s0"
    launch({**raw, "grid": {"onset": [3], "length": [2]}}, storage=str(tmp_path / "res2"), report=False)
    runs = {r.info.run_name: r.info.run_id for r in client.search_runs([exp.experiment_id])}
    assert runs == first_ids
    folders = glob.glob(f"{tmp_path}/wandb/offline-run-*/run-{run_id('tiny', again)}.wandb")
    assert len(folders) == 2 and len(glob.glob(f"{tmp_path}/wandb/offline-run-*")) == len(first_ids) + 2


def test_a_trial_started_again_logs_into_its_open_run(tmp_path, monkeypatch):
    """Tune starts a trial again on a reused actor without ending it (CI saw W&B refuse the second start:
    "run ID ... is in use"): through the Tune callback, the trial keeps its one open run in each tracker."""
    from types import SimpleNamespace

    from mlflow.tracking import MlflowClient

    from cpsweep.config.sweep_file import parse_sweep
    from cpsweep.storage.store import Store
    from cpsweep.sweep.task import TrialTask
    from cpsweep.sweep.trackers import make_trackers, tracker_callback

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    mlruns = f"file://{tmp_path}/mlruns"
    # (W&B keeps settings of the process's first run: its folder and mode also go to its init, and the run's
    # own file is read back)
    sweep = parse_sweep(tiny_sweep(tracking={"wandb": {"project": "cps-test", "dir": str(tmp_path),
                                                       "mode": "offline"},
                                             "mlflow": {"tracking_uri": mlruns}}))
    trial = sweep.trials()[0]
    trackers = make_trackers(sweep, [])
    [wandb_tracker] = [t for t in trackers if t.name == "wandb"]
    callback = tracker_callback(trackers, Store(str(tmp_path / "res")), {trial.trial_id: trial})
    tune_trial = SimpleNamespace(config=TrialTask(trial=trial, store=str(tmp_path / "res"), cpus=1, gpus=0,
                                                  spec_hash="h", git_commit="").to_config())
    callback.on_trial_start(0, [], tune_trial)
    callback.on_trial_result(0, [], tune_trial, {"epoch": 0, "test_acc": 0.5})
    callback.on_trial_start(1, [], tune_trial)  # started again
    callback.on_trial_result(1, [], tune_trial, {"epoch": 1, "test_acc": 0.6})
    files = [wandb_tracker.runs[trial.trial_id].settings.sync_file]
    callback.on_trial_complete(2, [], tune_trial)  # (no shard: nothing more to log)
    assert all(trial.trial_id not in t.runs for t in trackers)  # closed
    client = MlflowClient(tracking_uri=mlruns)
    runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert len(runs) == 1
    assert sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "test_acc")) == [0, 1]
    assert len(files) == 1
    rows = wandb_history(tmp_path, files)[run_id("tiny", trial.trial_id)]
    assert sorted(int(r["epoch"]) for r in rows) == [0, 1]


@pytest.mark.parametrize("tracking, error", [
    ("wandb", "the wandb tracker has no API key (No API key configured."),
    ("mlflow", "tracking.mlflow.tracking_uri: MLflow cannot log to nosuch://x ("),
])
def test_a_tracker_that_cannot_log_stops_the_launch_before_it_starts(tmp_path, tracking, error):
    """Checked when the trackers are made, before the results folder or Ray: each trial's wandb.init or
    MLflow client failed mid-sweep with a traceback. (A fresh process: W&B keeps its login per process.)"""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "MLFLOW_"))}
    env.update(HOME=str(tmp_path), MLFLOW_TRACKING_URI="nosuch://x")  # no ~/.netrc, no W&B key
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    res = subprocess.run([sys.executable, "-m", "cpsweep.cli", "launch", "sweeps/quickstart.yaml", "--tracker",
                          tracking, "--storage", str(tmp_path / "out")], cwd=root, env=env, capture_output=True,
                         text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 2 and res.stderr.startswith(f"cpsweep: error: {error}"), res.stderr
    assert len(res.stderr.splitlines()) == 1 and not (tmp_path / "out").exists()
    if tracking == "mlflow":  # MLflow's message lists every scheme it knows: cut at a word, and said to be
        assert "MLflow cannot log to nosuch://x (Model registry" in res.stderr and " ...); give a " in res.stderr
    # (W&B offline needs no key: the launches of test_trackers_log_every_epoch_at_its_epoch_into_stable_runs)


def test_a_sweeps_own_metrics_are_logged_with_the_built_in_columns():
    from cpsweep.sweep.trackers import numeric

    row = {"trial_id": "t", "epoch": 3, "test_acc": 0.9, "deficit_active": True, "metric.noisy_accuracy": 0.5,
           "fisher/0": 1, "metric.missing": float("nan"), "time_this_iter_s": 2.0, "node_ip": "10.0.0.1"}
    assert numeric(row) == {"test_acc": 0.9, "deficit_active": 1.0, "metric.noisy_accuracy": 0.5, "fisher/0": 1.0}
