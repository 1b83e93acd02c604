"""Real Ray clusters (and other process trees) owned by one test, torn down by what they are, not by name.

`ray stop` stops every Ray process of the user on the machine, including a colleague's running sweep, and
a head started with the default temp dir becomes the cluster that any later bare `ray.init()` on the
machine joins (/tmp/ray/ray_current_cluster). So a `LocalCluster` starts its nodes with `ray start` in a
private temp dir and with a marker variable in their environment, which every process Ray starts
inherits (GCS, raylets, agents, workers, the autoscaler's fake nodes); `stop()` kills exactly the
processes that carry the marker and waits until they are gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import psutil

MARKER = "CPSWEEP_TEST_RAY"
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 30, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the process meant to listen on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


def marked_env(token: str, **extra: str) -> dict[str, str]:
    """This process's environment with Ray's auth mode and usage stats set explicitly and the marker."""
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", MARKER: token, **extra}


def marked_processes(token: str) -> list[psutil.Process]:
    """Live processes whose environment carries the marker `token`.

    Reads /proc/<pid>/environ itself: Ray renames many of its processes (setproctitle: `ray::ImplicitFunc`,
    `ray::DashboardAgent`), which blanks the start of that block, and `psutil.Process.environ()` stops at
    the first blank.
    """
    entry = f"{MARKER}={token}".encode()
    found = []
    for p in psutil.process_iter():
        try:
            with open(f"/proc/{p.pid}/environ", "rb") as f:
                if entry in f.read().split(b"\0") and p.status() != psutil.STATUS_ZOMBIE:
                    found.append(p)
        except (OSError, psutil.Error):  # gone, or another user's
            pass
    return found


def stop_marked(token: str, timeout: float = 20) -> None:
    """SIGKILL every process carrying the marker (as `ray stop --force` does, but only those), until none is
    left: a dying raylet may still start one.

    Raises:
        AssertionError: processes still there after `timeout` s.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        procs = marked_processes(token)
        if not procs:
            time.sleep(0.5)
            if not marked_processes(token):
                return
            continue
        for p in procs:
            try:
                p.kill()
            except psutil.Error:
                pass
        time.sleep(0.2)
    left = marked_processes(token)
    assert not left, f"processes survived teardown: {[(p.pid, p.name()) for p in left]}"


def raylet_pids(token: str | None = None) -> set[int]:
    """Pids of the raylets on this machine (`pgrep -f raylet/raylet`), only those of `token` if given."""
    out = subprocess.run(["pgrep", "-f", "raylet/raylet"], capture_output=True, text=True).stdout
    pids = {int(x) for x in out.split()}
    return pids if token is None else {p.pid for p in marked_processes(token) if p.pid in pids}


def raylet_node_id(pid: int) -> str:
    """The Ray node id of a raylet, from its command line (`--node_id=<hex>`)."""
    for arg in psutil.Process(pid).cmdline():
        if arg.startswith("--node_id="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"raylet {pid} has no --node_id argument")


class LocalCluster:
    """Ray nodes started with `ray start` on this machine; see the module docstring."""

    def __init__(self, **env: str):
        self.token = uuid.uuid4().hex[:12]
        # short: Ray's socket paths under it must stay within the 107 characters of a Unix socket name
        self.temp_dir = tempfile.mkdtemp(prefix="cpsray-", dir="/tmp")
        self.env = marked_env(self.token, **env)
        self.port = free_port()
        self.address = ""
        self.head_node_id = ""
        self.dashboard = ""

    def ray(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None, cwd: str | None = None) -> str:
        res = subprocess.run([RAY, *args], env={**self.env, **(env or {})}, capture_output=True, text=True,
                             timeout=timeout, cwd=cwd)
        if res.returncode != 0:
            raise RuntimeError(f"ray {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res.stdout + res.stderr

    def start_head(self, *args: str, dashboard: bool = False) -> None:
        """Start the head; with `dashboard`, its dashboard (and so the Jobs API) on loopback at
        `self.dashboard` (http://127.0.0.1:<port>)."""
        view = ["--include-dashboard=false"]
        if dashboard:
            port = free_port()
            view = ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={port}",
                    f"--dashboard-agent-listen-port={free_port()}"]  # not the default 52365: another Ray may hold it
            self.dashboard = f"http://127.0.0.1:{port}"
        self.ray("start", "--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
                 *view, *args)
        with open(os.path.join(self.temp_dir, "ray_current_cluster")) as f:
            self.address = f.read().strip()  # <head ip>:<port>
        (pid,) = raylet_pids(self.token)
        self.head_node_id = raylet_node_id(pid)

    def add_worker(self, *args: str, env: dict[str, str] | None = None, cwd: str | None = None) -> int:
        """Start one more node (its processes see `env` on top of the cluster's, and start in `cwd`); returns
        its raylet's pid (the one raylet that was not there before)."""
        before = raylet_pids()
        self.ray("start", f"--address={self.address}", f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
                 *args, env=env, cwd=cwd)
        (pid,) = raylet_pids(self.token) - before
        return pid

    def stop(self) -> None:
        try:
            stop_marked(self.token)
        finally:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


@contextlib.contextmanager
def connected(address: str):
    """This process as a Ray driver of the cluster at `address` (for `ray.nodes()`), disconnected after."""
    import ray

    if ray.is_initialized():  # the local Ray this process's earlier tests kept (conftest.py's ray_local)
        ray.shutdown()
    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    try:
        yield ray
    finally:
        ray.shutdown()
