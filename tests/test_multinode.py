"""A sweep on a real two-node Ray cluster on this machine (two raylets, `ray start`): trials run on both
nodes; the worker node's raylet is SIGKILLed mid-sweep, and every trial still finishes exactly once with
the records of an undisturbed run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest
from ray_cluster import raylet_node_id
from tiny_specs import write_spec
from trial_runs import COMPARE, read, reference_epochs

pytestmark = pytest.mark.slow

# ~0.4 s an epoch on one core (~10-20 s a trial): long enough to kill a trial in its middle
LONGER = {"epochs": 20, "data": {"name": "mnist1d"}, "model": {"name": "cnn1d", "channels": 32, "depth": 3},
          "fisher": {"every": 1, "probe_per_class": 10}, "grid": {"onset": [0, 5, 10], "length": [5]}}


def checkpoints(folder) -> list[dict]:
    """meta.json of every checkpoint in the sweep's Tune folders: trial id, epoch, node."""
    metas = []
    for path in folder.glob("tune/*/*/checkpoint_*/meta.json"):
        try:
            metas.append(json.loads(path.read_text()))
        except (OSError, ValueError):  # being written, or deleted as no longer among the newest two
            pass
    return metas


def finished_nodes(folder) -> dict[str, str]:
    """trial id -> node, of the trials that wrote their shard."""
    done = {}
    for path in folder.glob("shards/*/trial.parquet"):
        row = pd.read_parquet(path).iloc[0]
        done[row.trial_id] = row.node
    return done


def wait_for(condition, timeout: float, what: str, driver: subprocess.Popen, log):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = condition()
        if found:
            return found
        assert driver.poll() is None, f"the sweep ended before {what}:\n{log.read_text()}"
        time.sleep(0.1)
    raise AssertionError(f"no {what} after {timeout} s:\n{log.read_text()}")


def test_two_node_sweep_survives_losing_the_worker_node(tmp_path, ray_cluster):
    spec = write_spec(tmp_path, **LONGER)
    cluster = ray_cluster()
    cluster.start_head("--num-cpus=1")
    worker_raylet = cluster.add_worker("--num-cpus=1")
    head, worker = cluster.head_node_id, raylet_node_id(worker_raylet)
    storage, folder, log = tmp_path / "res", tmp_path / "res" / "tiny", tmp_path / "launch.log"
    # a local path without --shared-storage is refused on a cluster of two nodes, before anything runs
    refused = subprocess.run([sys.executable, "-m", "cpsweep.cli", "launch", spec, "--address", cluster.address,
                              "--storage", str(tmp_path / "local")], env=cluster.env, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert (f"--storage: the cluster has 2 nodes but {tmp_path / 'local'} is a local path, which the other nodes "
            f"cannot see; use shared storage such as --storage s3://bucket/prefix") in refused.stderr
    assert not any((tmp_path / "local" / "tiny").glob("shards/*")) and not (tmp_path / "local" / "tiny" / "tune").exists()
    cmd = [sys.executable, "-m", "cpsweep.cli", "launch", spec, "--address", cluster.address,
           "--storage", str(storage), "--shared-storage"]
    with open(log, "w") as out:  # the driver carries the cluster's marker: teardown ends it too
        driver = subprocess.Popen(cmd, env=cluster.env, stdout=out, stderr=subprocess.STDOUT)

    def second_trial_on_worker():  # one trial finished on the worker, and the next has 3 epochs there
        done = finished_nodes(folder)
        if worker not in done.values():
            return None
        return next((m for m in checkpoints(folder)
                     if m["node"] == worker and m["epoch"] >= 2 and m["trial_id"] not in done), None)

    victim = wait_for(second_trial_on_worker, 180, "second trial on the worker node", driver, log)
    os.kill(worker_raylet, signal.SIGKILL)
    killed_at = time.time()

    def retried_on_head():
        return any(m["trial_id"] == victim["trial_id"] and m["node"] == head for m in checkpoints(folder))

    wait_for(retried_on_head, 120, f"checkpoint of {victim['trial_id']} from the head", driver, log)
    retried_after = time.time() - killed_at
    assert driver.wait(timeout=180) == 0, log.read_text()
    finished_after = time.time() - killed_at
    print(f"killed the worker raylet during {victim['trial_id']} (epoch {victim['epoch']} checkpointed); "
          f"first checkpoint of its retry on the head {retried_after:.1f} s later; sweep done "
          f"{finished_after:.1f} s after the kill")

    assert "sweep tiny: 4 ok" in log.read_text() and not psutil.pid_exists(worker_raylet)
    trials, epochs = read(folder)
    assert sorted(trials.trial_id) == ["baseline-s0", "blur-o0-l5-s0", "blur-o10-l5-s0", "blur-o5-l5-s0"]
    assert (trials.status == "ok").all() and (trials.epochs_done == 20).all()
    # trials ran on both nodes; the interrupted one finished on the head
    assert set(trials.node) == {head, worker}
    assert trials.set_index("trial_id").node[victim["trial_id"]] == head
    assert (epochs.epoch >= 0).sum() == 80 and not epochs.duplicated(["trial_id", "epoch"]).any()
    # it resumed from its checkpoint rather than restarting: Tune's result log shows its first epoch (its
    # branch epoch from a shared prefix, or 0) only once
    progress = pd.concat(pd.read_csv(p) for p in folder.glob(f"tune/*/{victim['trial_id']}/progress.csv"))
    first = int(trials.set_index("trial_id").shared_epochs[victim["trial_id"]])
    assert progress.epoch.min() == first and (progress.epoch == first).sum() == 1
    assert (progress.epoch == 19).sum() == 1
    # the interrupted trial's records are those of an undisturbed run (the others ran undisturbed; their
    # records against an in-process run: tests/test_sweep.py)
    resumed = epochs[epochs.trial_id == victim["trial_id"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(resumed[COMPARE], reference_epochs(spec, {victim["trial_id"]})[COMPARE])
