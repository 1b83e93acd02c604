"""`pytest -n 2` (the README's test command) keeps the serial tests one after another on one worker, and
gives each worker its share of the cores (tests/conftest.py): checked on a small suite run by a real pytest
with two xdist workers, with this suite's own conftest.py and pytest settings."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SUITE = '''
import os
import time

import pytest


def record(name):
    time.sleep(0.3)
    with open(os.environ["RECORD"], "a") as f:
        f.write(f"{name} {os.environ['PYTEST_XDIST_WORKER']} {os.environ.get('OMP_NUM_THREADS')}\\n")


@pytest.mark.serial
@pytest.mark.parametrize("i", range(3))
def test_serial(i):
    record(f"serial{i}")


@pytest.mark.slow
@pytest.mark.serial
def test_slow_serial():
    record("serial3")


@pytest.mark.parametrize("i", range(6))
def test_other(i):
    record(f"other{i}")
'''


def test_serial_tests_run_one_after_another_on_one_worker(tmp_path):
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        settings = tomllib.load(f)["tool"]["pytest"]["ini_options"]
    markers = "".join(f"\n    {m}" for m in settings["markers"])
    (tmp_path / "pytest.ini").write_text(f"[pytest]\nmarkers ={markers}\naddopts = {settings['addopts']}\n")
    with open(os.path.join(ROOT, "tests", "conftest.py")) as f:
        (tmp_path / "conftest.py").write_text(f.read())
    (tmp_path / "test_suite.py").write_text(SUITE)
    record = tmp_path / "record.txt"
    env = {k: v for k, v in os.environ.items()  # (not this run's own xdist worker's, nor the share it was given)
           if not k.startswith("PYTEST_") and k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["RECORD"] = str(record)
    res = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    runs = [line.split() for line in record.read_text().splitlines()]
    assert sorted(name for name, *_ in runs) == sorted([f"serial{i}" for i in range(4)]
                                                       + [f"other{i}" for i in range(6)])
    serial = [(name, worker) for name, worker, *_ in runs if name.startswith("serial")]
    assert len({worker for _, worker in serial}) == 1, runs  # one worker: never two side by side
    # each worker's torch (and what it starts) on its share of the cores (conftest's _share_the_cores)
    share = str(max(1, len(os.sched_getaffinity(0)) // 2))
    assert {threads for _, _, threads in runs} == {share}, runs
