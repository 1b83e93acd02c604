"""One local `cpsweep launch`, looked at from outside while it runs, for the tests that need a live launch.

    watch(tmp_path)    runs the launch to its end and returns a `Watched`: what was seen while it ran

A local launch costs ~45 s on 2 cores (its own Ray, a tiny sweep long enough to be looked at), and two
tests need one: test_live.py (progress lines, `cpsweep status` while trials run) and test_local_ray.py
(what the launch's Ray listens on, with which authentication). So one launch serves both (the session
fixture `watched_launch` in conftest.py): while it runs, everything either test asserts on is recorded
here, the Ray's sockets first (they open before any trial starts), then `cpsweep status` until it shows a
running trial; the tests then assert on the record, each only on its own part.

The launch runs as a user with authentication turned off would run it (RAY_AUTH_MODE=disabled).
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
from tiny_specs import write_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
LOOPBACK = ("127.0.0.1", "::1")
# two trials of ~30 s of training each, side by side: time enough for both tests' looks
SPEC = {"epochs": 150, "grid": {"onset": [0], "length": [10]}}


@dataclasses.dataclass
class Watched:
    """What was seen of one launch (`out`: its storage root; the sweep is `out / "tiny"`)."""

    out: Path
    returncode: int
    stdout: str
    stderr: str
    # the launch's Ray, once its GCS and raylet listened (None: they never did, within 120 s)
    listeners: list[tuple[str, str, int]] | None = None  # (process name, ip, port) of every listening socket
    server_auth_modes: list[str | None] = dataclasses.field(default_factory=list)  # GCS and raylet's RAY_AUTH_MODE
    http_answers: dict[tuple[str, int], str] = dataclasses.field(default_factory=dict)  # beyond loopback
    anonymous_status: subprocess.CompletedProcess | None = None  # `ray status` without a token, at the GCS
    running_after_ray_checks: bool = False  # the sweep was still going when those looks were done
    status_while_running: str | None = None  # the first `cpsweep status` output that showed a running trial


def ray_listeners(pid: int, timeout: float = 120) -> tuple[dict[int, psutil.Process], list[tuple[str, str, int]]]:
    """The Ray processes a launch started (by pid) and their listening sockets (process name, ip, port),
    once its GCS and raylet listen."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        procs, listeners = {}, []
        for p in psutil.Process(pid).children(recursive=True):
            try:
                conns = p.net_connections(kind="tcp")
                procs[p.pid] = p
                listeners += [(p.name(), c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
            except psutil.Error:
                continue
        names = {name for name, _, _ in listeners}
        if {"gcs_server", "raylet"} <= names:
            return procs, listeners
        time.sleep(0.5)
    raise TimeoutError("the launch's Ray did not start listening")


def http_status(ip: str, port: int) -> str:
    """What a plain HTTP GET without a token gets: 'HTTP 200', 'HTTP 401', or 'not HTTP' (a gRPC server)."""
    host = "127.0.0.1" if ip in ("0.0.0.0", "::") else (f"[{ip}]" if ":" in ip else ip)
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/api/jobs/", timeout=5) as r:
            return f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:  # gRPC (HTTP/2 only) answers no HTTP/1.1 status
        return f"not HTTP ({type(e).__name__})"


def look_at_ray(proc: subprocess.Popen, seen: Watched, env: dict[str, str]) -> None:
    try:
        procs, listeners = ray_listeners(proc.pid)
    except TimeoutError:
        return
    seen.listeners = listeners
    servers = [p for p in procs.values() if p.name() in ("gcs_server", "raylet")]
    seen.server_auth_modes = [p.environ().get("RAY_AUTH_MODE") for p in servers]
    exposed = [(name, ip, port) for name, ip, port in listeners if ip not in LOOPBACK]
    seen.http_answers = {(name, port): http_status(ip, port) for name, ip, port in exposed}
    gcs_port = next((port for name, _, port in exposed if name == "gcs_server"), None)
    node_ip = next((a.split("=", 1)[1] for p in servers for a in p.cmdline() if a.startswith("--node_ip_address=")),
                   None)
    if gcs_port is not None and node_ip is not None:
        seen.anonymous_status = subprocess.run([RAY, "status", f"--address={node_ip}:{gcs_port}"], capture_output=True,
                                               text=True, env={**env, "RAY_AUTH_MODE": "disabled"}, timeout=60,
                                               check=False)
    seen.running_after_ray_checks = proc.poll() is None


def look_at_status(proc: subprocess.Popen, folder: Path, seen: Watched, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (folder / "live.json").exists() and (folder / "trials.parquet").exists():
            status = subprocess.run([sys.executable, "-m", "cpsweep.cli", "status", str(folder)], cwd=ROOT,
                                    capture_output=True, text=True, timeout=120, check=False)
            if "  running " in status.stdout:
                seen.status_while_running = status.stdout
                return
        time.sleep(1)


def watch(tmp_path: Path) -> Watched:
    """Launch the tiny sweep with `SPEC`'s changes under `tmp_path`, look at it while it runs, wait for its end."""
    spec = write_spec(tmp_path, **SPEC)
    out = tmp_path / "out"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # the user turned auth off
    proc = subprocess.Popen([sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", str(out)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = Watched(out, -1, "", "")
    try:
        look_at_ray(proc, seen, env)
        look_at_status(proc, out / "tiny", seen)
    finally:
        seen.stdout, seen.stderr = proc.communicate(timeout=600)
        seen.returncode = proc.returncode
    return seen
