"""Ray's autoscaler runs the sweep: a head with no CPU, and worker nodes of one CPU that Ray's fake
multi-node provider starts as real raylets on this machine when trials wait for them and removes when idle.
Also: `cpsweep launch`'s resource check reads the node types of the project's own cluster configs."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from ray.util import get_node_ip_address
from ray_cluster import connected
from tiny_specs import write_spec
from trial_runs import COMPARE, read, reference_epochs

from cpsweep.sweep import _cluster

MAX_WORKERS = 2


def fake_cluster_config(gcs_address: str) -> dict:
    """An autoscaling config for Ray's fake multi-node provider (what `ray up` would read, minus the cloud):
    a 0-CPU head and up to two 1-CPU workers, removed after 6 s idle."""
    return {
        "cluster_name": "cpsweep-fake", "max_workers": MAX_WORKERS, "upscaling_speed": 1.0,
        "idle_timeout_minutes": 0.1,
        # the provider starts workers in the autoscaler's process, joining the GCS at gcs_address (default :6379)
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address, "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "auth": {}, "docker": {},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            "ray.worker.cpu": {"resources": {"CPU": 1, "object_store_memory": 200_000_000}, "node_config": {},
                               "min_workers": 0, "max_workers": MAX_WORKERS}},
        "head_node_type": "ray.head.default",
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": []}


@pytest.mark.slow
def test_autoscaler_adds_workers_for_the_trials_and_removes_them_after(tmp_path, ray_cluster):
    cluster = ray_cluster(AUTOSCALER_UPDATE_INTERVAL_S="1", RAY_FAKE_CLUSTER="1")
    config = tmp_path / "fake_cluster.yaml"
    config.write_text(yaml.safe_dump(fake_cluster_config(f"{get_node_ip_address()}:{cluster.port}")))
    cluster.start_head("--num-cpus=0", f"--autoscaling-config={config}")
    spec = write_spec(tmp_path)  # 3 trials of one CPU each: none fits on the head
    log = tmp_path / "launch.log"
    cmd = [sys.executable, "-m", "cpsweep.cli", "launch", spec, "--address", cluster.address,
           "--storage", str(tmp_path / "res"), "--shared-storage"]
    start = time.time()
    first_worker_at, alive_max = None, 1
    with connected(cluster.address) as ray, open(log, "w") as out:
        driver = subprocess.Popen(cmd, env=cluster.env, stdout=out, stderr=subprocess.STDOUT)
        while driver.poll() is None and time.time() - start < 240:
            alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
            alive_max = max(alive_max, len(alive))
            if first_worker_at is None and len(alive) > 1:
                first_worker_at = time.time() - start
            time.sleep(0.5)
        assert driver.wait(timeout=10) == 0, log.read_text()
        done_at = time.time() - start
        while time.time() - start < done_at + 60 and len([n for n in ray.nodes() if n["Alive"]]) > 1:
            time.sleep(1)
        idle_removed_after = time.time() - start - done_at
        alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        added = {n["NodeID"] for n in ray.nodes()} - {cluster.head_node_id}
    print(f"first worker node alive {first_worker_at:.1f} s after launch; {len(added)} workers added, at most "
          f"{alive_max} nodes alive at once; sweep done at {done_at:.1f} s; idle workers gone "
          f"{idle_removed_after:.1f} s later")

    assert "sweep tiny: 3 ok" in log.read_text()
    assert alive == [cluster.head_node_id], "idle workers were not removed within 60 s"
    assert 1 <= len(added) and alive_max <= 1 + MAX_WORKERS
    trials, epochs = read(tmp_path / "res" / "tiny")
    assert (trials.status == "ok").all() and len(trials) == 3
    # every trial ran on a node the autoscaler added
    assert set(trials.node) <= added and cluster.head_node_id not in set(trials.node)
    assert (epochs.epoch >= 0).sum() == 18 and not epochs.duplicated(["trial_id", "epoch"]).any()
    pd.testing.assert_frame_equal(epochs[COMPARE], reference_epochs(spec)[COMPARE])


@pytest.mark.parametrize("config", ["aws", "gcp"])
def test_resource_check_sees_the_gpu_workers_of_the_cluster_configs(monkeypatch, config):
    """On a `ray up` cluster `check_fits` counts the node types of the config the autoscaler runs with: the
    GPU workers, though the head has no GPU (Ray publishes no node types in the GCS)."""
    path = os.path.join(os.path.dirname(__file__), "..", "cluster", f"{config}.yaml")
    monkeypatch.setattr(_cluster, "autoscaling_config_path", lambda: path)
    types = _cluster.autoscaler_node_types()
    assert any(t.get("GPU", 0) >= 1 for t in types), types


def test_a_local_storage_path_is_refused_where_the_autoscaler_may_add_nodes(monkeypatch):
    """A `ray up` cluster starts with its head alone: counting the live nodes would let a local --storage
    through, and the GPU workers added later would write to their own disks."""
    import ray

    from cpsweep.errors import SpecError

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}])  # the head alone
    monkeypatch.setattr(_cluster, "autoscaler_node_types", lambda: [{"CPU": 8.0, "GPU": 1.0}])
    with pytest.raises(SpecError, match="--storage: the cluster's autoscaler may add nodes but results is a local "
                                        "path, which the other nodes cannot see"):
        _cluster.check_shared_storage("results", shared=False)
    _cluster.check_shared_storage("results", shared=True)  # (on NFS)
    _cluster.check_shared_storage("s3://bucket/prefix", shared=False)
    monkeypatch.setattr(_cluster, "autoscaler_node_types", lambda: [])
    _cluster.check_shared_storage("results", shared=False)  # a laptop's Ray
