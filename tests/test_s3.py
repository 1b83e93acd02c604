"""Results, Tune state and checkpoints on S3 (a real moto server on localhost): a sweep whose driver is
SIGKILLed, relaunched with an extended grid, runs only what is missing, resuming from the checkpoint left in
the bucket; `cpsweep report s3://...` reads the bucket and writes the report into it. Also: a checkpoint
cut off mid-upload is not resumed from."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import yaml
from ray_cluster import free_port, marked_env, stop_marked, wait_for_port
from tiny_specs import write_spec
from trial_runs import COMPARE, reference_epochs

from cpsweep.storage.folder import load_results

KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
# ~0.1 s an epoch plus the checkpoint upload: a trial lasts a few seconds, long enough to be interrupted
LONGER = {"epochs": 12, "data": {"name": "mnist1d", "subset": 1000}}


@dataclass
class S3:
    fs: pafs.S3FileSystem
    endpoint: str

    def uri(self, path: str) -> str:
        return f"s3://{path}?endpoint_override={self.endpoint}&scheme=http"

    def files(self, path: str) -> list[str]:
        """Every object under `path`, relative to it."""
        infos = self.fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
        return sorted(i.path[len(path) + 1:] for i in infos if i.type == pafs.FileType.File)

    def read_table(self, path: str) -> pd.DataFrame:
        return pq.read_table(path, filesystem=self.fs).to_pandas()


@pytest.fixture
def s3(monkeypatch, tmp_path):
    """A moto S3 server on a free local port with an empty bucket `bucket`; dummy credentials only."""
    for key, value in KEYS.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    port = free_port()
    server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    with open(tmp_path / "moto.log", "w") as log:
        moto = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc=moto)
        keys = {"access_key": KEYS["AWS_ACCESS_KEY_ID"], "secret_key": KEYS["AWS_SECRET_ACCESS_KEY"],
                "region": KEYS["AWS_DEFAULT_REGION"]}
        pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True,
                          **keys).create_dir("bucket")
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", **keys)
        yield S3(fs, f"127.0.0.1:{port}")
    finally:
        moto.terminate()
        try:
            moto.wait(10)
        except subprocess.TimeoutExpired:
            moto.kill()
            moto.wait()


def cpsweep(*args: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cpsweep.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def finished(s3: S3, folder: str) -> set[str]:
    """Trials that wrote their shard."""
    return {r.split("/")[1] for r in s3.files(folder) if r.startswith("shards/") and r.endswith("/trial.parquet")}


def checkpoint_metas(s3: S3, folder: str) -> list[dict]:
    metas = []
    for rel in s3.files(f"{folder}/tune"):
        if rel.endswith("/meta.json"):
            try:
                with s3.fs.open_input_stream(f"{folder}/tune/{rel}") as f:
                    metas.append(json.loads(f.read()))
            except (OSError, ValueError):  # deleted meanwhile (only the newest two are kept)
                pass
    return metas


@pytest.mark.slow
@pytest.mark.serial
def test_sweep_on_s3_resumes_from_the_bucket_and_reports(tmp_path, s3):
    folder = "bucket/prefix/tiny"
    storage = s3.uri("bucket/prefix")
    spec = write_spec(tmp_path, **LONGER, grid={"onset": [0, 4, 8], "length": [2]})

    # 1. one trial at a time; the driver is SIGKILLed once a trial finished and the next has checkpoints
    token = uuid.uuid4().hex[:12]
    env = marked_env(token)  # the driver's local Ray inherits the marker: its processes are ended by it
    with open(tmp_path / "launch1.log", "w") as log:
        driver = subprocess.Popen([sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", storage,
                                   "--max-concurrent", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline, victim = time.time() + 150, None
        while victim is None and time.time() < deadline and driver.poll() is None:
            done = finished(s3, folder)
            victim = next((m for m in checkpoint_metas(s3, folder) if done and m["trial_id"] not in done
                           and m["epoch"] >= 2), None)
            time.sleep(0.2)
        assert victim is not None, (tmp_path / "launch1.log").read_text()
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()
    finally:
        stop_marked(token)
    files = s3.files(folder)
    assert {"spec.yaml", "trials.parquet"} <= set(files)
    assert [r for r in files if r.startswith("epochs.parquet/part-")]  # the tables: folders of parts
    assert [r for r in files if r.startswith("tune/launch-") and f"/{victim['trial_id']}/checkpoint_" in r]
    done = finished(s3, folder)
    # the killed driver's tables are valid, and hold the rows of the trials they list as ok, once each (the
    # finished trial's rows only if a flush, every 10 s at most, came before the kill)
    left = load_results(s3.uri(folder))
    listed = set(left.trials.trial_id[left.trials.status == "ok"])
    assert len(done) == 1 and listed <= done and set(left.epochs.trial_id) == listed
    assert (left.epochs.epoch >= 0).sum() == 12 * len(listed)

    # 2. a relaunch with one more window runs only the missing trials, the interrupted one from its checkpoint
    spec2 = write_spec(tmp_path, name="tiny2.yaml", **LONGER, grid={"onset": [0, 4, 8, 10], "length": [2]})
    try:
        res = cpsweep("launch", spec2, "--storage", storage, env=env)
    finally:
        stop_marked(token)  # nothing left if it ended normally; its local Ray if it timed out
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 trials, 1 already done, 4 to run" in res.stdout and "sweep tiny: 5 ok" in res.stdout
    files = s3.files(folder)
    launches = sorted({r.split("/")[1] for r in files if r.startswith("tune/launch-")})
    assert len(launches) == 2
    second = {r.split("/")[2] for r in files if r.startswith(f"tune/{launches[1]}/") and r.count("/") > 2}
    assert second == {"baseline-s0", "blur-o0-l2-s0", "blur-o4-l2-s0", "blur-o8-l2-s0", "blur-o10-l2-s0"} - done
    # Tune's experiment state and the trials' checkpoints (the newest two of each, launch.keep_newest_checkpoints) are in the bucket
    state = [r for r in files if r.startswith(f"tune/{launches[1]}/experiment_state-") and r.endswith(".json")]
    assert state and f"tune/{launches[1]}/tuner.pkl" in files
    for trial in second:
        ckpts = {r.split("/")[3] for r in files if r.startswith(f"tune/{launches[1]}/{trial}/checkpoint_")}
        assert 1 <= len(ckpts) <= 2, (trial, ckpts)
    with s3.fs.open_input_stream(f"{folder}/tune/{launches[1]}/{victim['trial_id']}/progress.csv") as f:
        resumed = pd.read_csv(io.BytesIO(f.read()))
    # a checkpoint's "epoch" counts the epochs done, so the first epoch trained after it has that index
    assert resumed.epoch.iloc[0] >= victim["epoch"] >= 2 and resumed.epoch.iloc[-1] == 11  # not from epoch 0

    trials = s3.read_table(f"{folder}/trials.parquet")
    epochs = s3.read_table(f"{folder}/epochs.parquet").sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    assert len(trials) == 5 and (trials.status == "ok").all() and trials.trial_id.is_unique
    assert (epochs.epoch >= 0).sum() == 60 and not epochs.duplicated(["trial_id", "epoch"]).any()
    # the interrupted trial's records are those of an undisturbed run (the others ran undisturbed)
    interrupted = epochs[epochs.trial_id == victim["trial_id"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(interrupted[COMPARE], reference_epochs(spec2, {victim["trial_id"]})[COMPARE])

    # 3. `cpsweep report` reads the bucket and writes the report into it
    s3.fs.delete_file(f"{folder}/report.html")
    res = cpsweep("report", s3.uri(folder), env=dict(os.environ))
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "s3://bucket/prefix/tiny/report.html"
    with s3.fs.open_input_stream(f"{folder}/report.html") as f:
        page = f.read().decode()
    with s3.fs.open_input_stream(f"{folder}/spec.yaml") as f:
        spec_hash = yaml.safe_load(f.read())["hash"]
    assert page.startswith("<!DOCTYPE html>") and "<li>trials: 5 ok</li>" in page and f"spec hash {spec_hash}" in page


def test_resume_point_is_the_newest_complete_checkpoint(s3):
    """A driver or node killed while Tune uploads a checkpoint (one file after the other) leaves one without
    all its files: a relaunch resumes from the checkpoint before it."""
    from cpsweep.storage.store import Store
    from cpsweep.sweep.checkpoint_store import CHECKPOINT_FILES, newest_checkpoints

    store = Store(s3.uri("bucket/prefix/tiny"))
    for epoch, names in ((2, CHECKPOINT_FILES), (3, ("meta.json", "records.json"))):
        for name in names:
            body = json.dumps({"trial_id": "t", "epoch": epoch}).encode() if name == "meta.json" else b"[]"
            store.write_bytes(body, "tune", "launch-1", "t", f"checkpoint_00000{epoch}", name)
    found = newest_checkpoints(store, ["t", "other"])
    assert found == {"t": (2, s3.uri("bucket/prefix/tiny/tune/launch-1/t/checkpoint_000002"))}
