"""A `cpsweep launch` killed mid-run (SIGKILL, as a lost driver), and relaunched, for the tests of resuming.

    cmd = launch_and_kill(spec, storage, when, "what when() waits for")   # the killed command
    relaunch(cmd)                                                         # run it again to the end

Only the killed driver's own processes (its session: the Ray it started, the workers) are killed; other
processes on the machine, another Ray included, are left alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil


def launch_and_kill(spec: str, storage, when, what: str, timeout: float = 120) -> list[str]:
    """Run `cpsweep launch spec` in a subprocess, SIGKILL it (and the Ray it started) once `when()` holds,
    and return the command, to relaunch with."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", str(storage)]
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and not when():
        time.sleep(0.1)
    assert when(), f"{what} never happened"
    started = psutil.Process(driver.pid).children(recursive=True)  # the Ray it started, and its workers
    os.kill(driver.pid, signal.SIGKILL)
    driver.wait()
    kill_processes(started, session=driver.pid)  # Ray's processes left behind by the killed driver
    return cmd


def relaunch(cmd: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return res


def kill_processes(procs: list, session: int) -> None:
    """Kill `procs` and anything else still in the killed driver's session (workers started meanwhile);
    other processes on the machine, another Ray included, are left alone."""
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == session:
                procs.append(p)
        except (ProcessLookupError, PermissionError):
            pass
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
