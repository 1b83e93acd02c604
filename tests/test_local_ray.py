"""A local launch is safe on a shared network: the Ray it starts listens beyond loopback only with token
authentication, even when the user's environment turns authentication off (issue 14, item 8)."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest
from tiny_specs import write_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOOPBACK = ("127.0.0.1", "::1")


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
    raise AssertionError("the launch's Ray did not start listening")


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


@pytest.mark.slow
def test_a_local_launch_listens_beyond_loopback_only_with_a_token(tmp_path):
    spec = write_spec(tmp_path, epochs=150, grid={"onset": [0], "length": [10]})  # ~30 s of training
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}  # the user turned it off
    proc = subprocess.Popen([sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", str(tmp_path / "out")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        procs, listeners = ray_listeners(proc.pid)
        servers = [p for p in procs.values() if p.name() in ("gcs_server", "raylet")]
        assert servers and all(p.environ().get("RAY_AUTH_MODE") == "token" for p in servers)
        exposed = [(name, ip, port) for name, ip, port in listeners if ip not in LOOPBACK]
        assert exposed  # Ray's servers do listen on every interface: the token is what protects them
        answers = {(name, port): http_status(ip, port) for name, ip, port in exposed}
        # no open HTTP endpoint (Ray's metrics exporters, on 44217 / 44227 by default, are kept from binding)
        assert not [k for k, v in answers.items() if v == "HTTP 200"], answers
        assert not [port for _, _, port in listeners if port in (44217, 44227)], listeners
        gcs_port = next(port for name, _, port in exposed if name == "gcs_server")
        node_ip = next(a.split("=", 1)[1] for p in servers for a in p.cmdline() if a.startswith("--node_ip_address="))
        ray = os.path.join(os.path.dirname(sys.executable), "ray")
        anonymous = subprocess.run([ray, "status", f"--address={node_ip}:{gcs_port}"], capture_output=True, text=True,
                                   env={**env, "RAY_AUTH_MODE": "disabled"}, timeout=60, check=False)
        assert anonymous.returncode != 0 and "InvalidAuthToken" in anonymous.stdout + anonymous.stderr
        assert proc.poll() is None, "the sweep ended before the check: lengthen its trials"
    finally:
        out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "2 ok" in out
