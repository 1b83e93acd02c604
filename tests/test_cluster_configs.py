"""Every file in cluster/ passes Ray's own launcher validation (offline, no credentials), plus the checks
Ray's schema does not make: per-type min <= max, explicit resources, token auth, nothing exposed."""

from __future__ import annotations

import copy
import glob
import os
import re

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "cluster", "*.yaml")))


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


def test_there_are_three_configs():
    assert [os.path.basename(p) for p in CONFIGS] == ["aws.yaml", "gcp.yaml", "onprem.yaml"]


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_ray_validates_the_config(path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(load(path)))


@pytest.mark.parametrize("mistake, message", [
    ("resourcess", "'resources' is a required property"),        # a misspelt key: the real one is missing
    ("max_workers", "'many' is not of type 'integer'"),           # a wrong type
])
def test_ray_validation_catches_mistakes(mistake, message):
    """The validation above is not vacuous: Ray's schema refuses these mistakes, for the reason given."""
    import jsonschema
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = copy.deepcopy(load(CONFIGS[0]))
    gpu = bad["available_node_types"]["gpu_worker"]
    if mistake == "resourcess":
        gpu["resourcess"] = gpu.pop("resources")
    else:
        gpu["max_workers"] = "many"
    with pytest.raises(jsonschema.ValidationError) as info:
        validate_config(prepare_config(bad))
    assert info.value.message == message


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_what_ray_does_not_check(path):
    raw = load(path)
    text = open(path).read()
    for name, node in (raw.get("available_node_types") or {}).items():
        assert "resources" in node, f"{name}: explicit resources (nothing detects them offline)"
        assert node.get("min_workers", 0) <= node.get("max_workers", 0) or name == raw["head_node_type"]
    if raw["provider"]["type"] != "local":
        gpu = raw["available_node_types"]["gpu_worker"]
        assert gpu["min_workers"] == 0 and gpu["resources"]["GPU"] == 1
        assert raw["available_node_types"][raw["head_node_type"]]["resources"] == {"CPU": 0, "GPU": 0}
    starts = raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if c.strip().startswith("RAY_AUTH_MODE") or "ray start" in c)
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert "cluster/requirements.txt" in " ".join(raw["setup_commands"])
    # nothing opened to the internet, no credentials
    assert "0.0.0.0" not in text and "dashboard-host" not in text and "IpPermissions" not in text
    assert not re.search(r"(?i)(aws_secret|secret_access_key|access_key_id|private_key:\s*-----|token:\s*\S{20,})", text)


def test_pinned_requirements_match_the_project():
    pins = dict(line.split("==") for line in open(os.path.join(ROOT, "cluster", "requirements.txt"))
                if "==" in line and not line.startswith("#"))
    from packaging.version import Version

    assert pins["torch"].strip() == "2.14.1"
    assert Version(pins["ray[tune,default]"].strip()) >= Version("2.52")  # CVE-2025-62593
