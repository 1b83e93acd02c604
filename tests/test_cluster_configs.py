"""Every file in cluster/ passes Ray's own launcher validation (offline, no credentials), plus the checks
Ray's schema does not make: per-type min <= max, explicit resources, token auth, nothing exposed."""

from __future__ import annotations

import copy
import glob
import os
import re
import subprocess
import sys

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


# -- the nodes' software agrees with the project (issue 14, item 1) ------------------------------------

IMAGE = re.compile(r"^rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py3(?P<minor>\d+)-(?P<kind>cpu|gpu|cu\d+)$")
PLATFORMS = [f"manylinux_2_{i}_x86_64" for i in range(5, 40)] + ["manylinux2014_x86_64", "manylinux1_x86_64"]


def pins() -> dict[str, str]:
    """cluster/requirements.txt as {canonical name: version}."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    out = {}
    with open(os.path.join(ROOT, "cluster", "requirements.txt")) as f:
        text = f.read()
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line.strip())
            out[canonicalize_name(req.name)] = str(req.specifier).removeprefix("==")
    return out


def project() -> dict:
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def image_pythons() -> dict[str, str]:
    """Every image any config runs -> its Python version ('3.11')."""
    out = {}
    for path in CONFIGS:
        docker = load(path).get("docker") or {}
        for key in ("image", "head_image", "worker_image"):
            if docker.get(key):
                match = IMAGE.match(docker[key])
                assert match, f"{path}: {key} {docker[key]!r} is not a pinned rayproject/ray image"
                out[docker[key]] = f"3.{match['minor']}"
    return out


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_every_node_runs_a_pinned_ray_image_of_a_python_the_project_supports(path):
    from packaging.specifiers import SpecifierSet

    raw = load(path)
    docker = raw["docker"]
    images = [docker["image"]] if "image" in docker else [docker["head_image"], docker["worker_image"]]
    for image in images:  # every node type has an image
        match = IMAGE.match(image)
        assert match and match["ray"] == pins()["ray"], image  # the Ray of the pins, so pip keeps the image's
        assert f"3.{match['minor']}" in SpecifierSet(project()["requires-python"])
    assert images[-1].endswith("-gpu")  # the trials' nodes have CUDA
    assert ".git" not in raw["rsync_exclude"]  # the nodes can tell which commit they run (git_commit)


def test_every_pin_is_in_the_projects_range_and_every_dependency_is_pinned():
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    have = pins()
    for dep in project()["dependencies"]:
        req = Requirement(dep)
        name = canonicalize_name(req.name)
        assert name in have, f"{name} is a dependency but not pinned in cluster/requirements.txt"
        assert req.specifier.contains(have[name]), f"{name}=={have[name]} is outside pyproject's {req.specifier}"


def resolve(requirements: list[str], python: str, tmp_path) -> subprocess.CompletedProcess:
    """pip's resolver, without installing, for `python` on x86-64 Linux, wheels only (as on the nodes)."""
    req = tmp_path / f"req-{python}.txt"
    req.write_text("\n".join(requirements) + "\n")
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--target", str(tmp_path / "t"),
           "--python-version", python, "--implementation", "cp", "--only-binary", ":all:",
           *[arg for p in PLATFORMS for arg in ("--platform", p)], "-r", str(req),
           "--report", str(tmp_path / f"report-{python}.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if res.returncode and re.search(r"(?i)(connection|temporary failure|name resolution|timed out)", res.stderr):
        pytest.skip(f"the package index cannot be reached: {res.stderr.strip().splitlines()[-1]}")
    return res


@pytest.mark.slow
def test_pip_resolves_the_pins_for_every_images_python(tmp_path):
    import json

    have = pins()
    with open(os.path.join(ROOT, "cluster", "requirements.txt")) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    for python in sorted(set(image_pythons().values())):
        res = resolve(lines, python, tmp_path)
        assert res.returncode == 0, f"the pins do not install under Python {python}:\n{res.stderr[-2000:]}"
        report = json.loads((tmp_path / f"report-{python}.json").read_text())
        chosen = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in report["install"]}
        assert all(chosen[name] == version for name, version in have.items()), (python, chosen)
    # the check can fail: pandas 3.1 has no wheel for the Python 3.10 of the Deep Learning images
    old = resolve([f"pandas=={have['pandas']}"], "3.10", tmp_path)
    assert old.returncode != 0 and "pandas" in old.stderr
