"""A sweep run as a Ray job (issue 14, item 6), as docs/cluster.md tells: `ray job submit` to a real
`ray start --head` cluster through its Jobs API, then `ray job logs`, `ray job stop` mid-sweep, and a second
submission of the same command that finishes the sweep (finished trials kept, no row twice)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from ray_cluster import RAY
from tiny_specs import write_spec

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ~0.2 s an epoch, one trial at a time (one CPU): 84 epochs to train (the baseline and [0, 3) from scratch,
# the other windows from the baseline's prefixes at 6, 12 and 18); the first trial to end trains 24, which
# leaves 60 epochs (~12 s) in which to stop the job (it stops a few seconds after the first shard appears)
EPOCHS = 24
LONGER = {"epochs": EPOCHS, "grid": {"onset": [0, 6, 12, 18], "length": [3]}, "resources": {"cpu": 1}}


def job(cluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    sub, *rest = args
    return subprocess.run([RAY, "job", sub, "--address", cluster.dashboard, *rest], env=cluster.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def wait_status(cluster, sid: str, wanted: set[str], timeout: float) -> str:
    """The job's status (through the Jobs API's Python client) once it is one of `wanted`."""
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(cluster.dashboard)
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = str(client.get_job_status(sid).value)
        if status in wanted:
            return status
        time.sleep(1)
    raise AssertionError(f"job {sid} is {status}, not {wanted}, after {timeout} s")


def test_a_sweep_as_a_ray_job_can_be_followed_stopped_and_resubmitted(tmp_path, ray_cluster):
    cluster = ray_cluster()
    cluster.start_head("--num-cpus=1", dashboard=True)
    spec = write_spec(tmp_path, **LONGER)
    storage, folder = tmp_path / "res", tmp_path / "res" / "tiny"
    command = ["--", sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", str(storage)]
    for _ in range(60):  # the head's job agent takes a few seconds to come up after `ray start`
        first = job(cluster, "submit", "--no-wait", "--submission-id", "sweep-1", *command)
        if "try again later" not in first.stderr:
            break
        time.sleep(1)
    assert first.returncode == 0, first.stderr
    deadline = time.time() + 240
    while time.time() < deadline and len(list(folder.glob("shards/*/trial.parquet"))) < 1:
        time.sleep(0.5)
    assert list(folder.glob("shards/*/trial.parquet")), job(cluster, "logs", "sweep-1").stdout
    stopped = job(cluster, "stop", "sweep-1")
    assert stopped.returncode == 0, stopped.stderr
    wait_status(cluster, "sweep-1", {"STOPPED"}, 120)
    logs = job(cluster, "logs", "sweep-1").stdout
    assert "sweep tiny: 5 trials, 0 already done, 5 to run" in logs and "[1/5] ok" in logs
    done_before = len(list(folder.glob("shards/*/trial.parquet")))
    assert done_before < 5

    second = job(cluster, "submit", "--submission-id", "sweep-2", *command, timeout=600)  # waits, streams logs
    assert second.returncode == 0, second.stdout + second.stderr
    assert wait_status(cluster, "sweep-2", {"SUCCEEDED"}, 60) == "SUCCEEDED"
    logs = job(cluster, "logs", "sweep-2").stdout
    assert f"5 trials, {done_before} already done" in logs and "sweep tiny: 5 ok" in logs
    trials = pd.read_parquet(folder / "trials.parquet")
    epochs = pd.read_parquet(folder / "epochs.parquet")
    assert (trials.status == "ok").all() and len(trials) == 5
    assert set(trials.node) == {cluster.head_node_id}  # the job joined the cluster (RAY_ADDRESS), no Ray of its own
    assert not epochs.duplicated(["trial_id", "epoch"]).any() and (epochs.epoch >= 0).sum() == 5 * EPOCHS
