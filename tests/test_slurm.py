"""cluster/slurm.sbatch on a real single-node Slurm (issue 14, item 7): munged, slurmctld and slurmd from
Debian's packages (`apt-get install slurmd slurmctld munge`), started here on private ports with a private
config, then `sbatch cluster/slurm.sbatch` runs a tiny sweep: Ray's head in a job step, the driver in the
batch script. Skipped, with the reason, where Slurm is not installed or cannot start."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pandas as pd
import pytest
from ray_cluster import MARKER, free_port, stop_marked
from tiny_specs import write_spec

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # one Slurm daemon on the machine
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAEMONS = ("munged", "slurmctld", "slurmd")
CONF = """ClusterName=cpstest
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={dir}/munge.socket
CredType=cred/munge
SlurmUser={user}
SlurmdUser=root
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MpiDefault=none
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def daemon(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)),
                                      None)


@pytest.fixture
def slurm(tmp_path_factory):
    """A single-node Slurm of this machine's CPUs: (environment with SLURM_CONF, folder); stopped after."""
    missing = [d for d in (*DAEMONS, "sbatch") if daemon(d) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurmd slurmctld munge")
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs; run the tests as root to include this one")
    key = "/etc/munge/munge.key"
    if not os.path.exists(key):
        pytest.skip(f"munge has no key ({key}); reinstall munge or run mungekey")
    folder = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    shutil.copy(key, folder / "munge.key")
    os.chmod(folder / "munge.key", 0o400)
    os.chmod(folder, 0o700)
    host = socket.gethostname()
    conf = folder / "slurm.conf"
    conf.write_text(CONF.format(host=host, ctld_port=free_port(), d_port=free_port(), dir=folder, user="root",
                                cpus=os.cpu_count()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    started = []
    try:
        subprocess.run([daemon("munged"), f"--socket={folder}/munge.socket", f"--key-file={folder}/munge.key",
                        f"--pid-file={folder}/munged.pid", f"--log-file={folder}/munged.log",
                        f"--seed-file={folder}/munge.seed", "--force"], check=True, timeout=30)
        started.append(folder / "munged.pid")
        for name in ("slurmctld", "slurmd"):
            subprocess.run([daemon(name)], env=env, check=True, timeout=30)
            started.append(folder / f"{name}.pid")
        deadline = time.time() + 60
        while time.time() < deadline:
            info = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=30)
            if info.stdout.strip() == "idle":
                break
            time.sleep(1)
        else:
            pytest.skip(f"Slurm did not come up: sinfo says {info.stdout.strip() or info.stderr.strip()!r}")
    except (subprocess.SubprocessError, OSError) as e:
        _stop(started)
        pytest.skip(f"Slurm cannot start here: {e}")
    yield env, folder
    _stop(started)


def _stop(pidfiles) -> None:
    for pidfile in reversed(pidfiles):
        try:
            os.kill(int(pidfile.read_text().strip()), 15)
        except (OSError, ValueError):
            pass


def test_the_sbatch_script_runs_a_sweep_on_slurm(tmp_path, slurm):
    env, folder = slurm
    spec = write_spec(tmp_path)
    token = uuid.uuid4().hex[:12]
    bin_dir = os.path.dirname(sys.executable)
    job_env = {**env, "SPEC": spec, "STORAGE": str(tmp_path / "res"), "RAY_PORT": str(free_port()),
               "PATH": f"{bin_dir}:{env['PATH']}", MARKER: token, "RAY_AUTH_MODE": "token"}
    subprocess.run([os.path.join(bin_dir, "ray"), "get-auth-token", "--generate"], env=job_env, capture_output=True,
                   timeout=60, check=False)  # the cluster's token (kept if there is one)
    log = tmp_path / "job.log"
    try:
        sub = subprocess.run(["sbatch", "--parsable", "--nodes=1", "--gpus-per-node=0", f"--output={log}",
                              os.path.join(ROOT, "cluster", "slurm.sbatch")], env=job_env, cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=False)
        assert sub.returncode == 0, sub.stderr
        job = sub.stdout.strip().split(";")[0]
        deadline, state = time.time() + 400, ""
        while time.time() < deadline:
            show = subprocess.run(["scontrol", "show", "job", job], env=env, capture_output=True, text=True, timeout=30)
            state = next((w.split("=", 1)[1] for w in show.stdout.split() if w.startswith("JobState=")), "")
            if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                break
            time.sleep(2)
        text = log.read_text() if log.exists() else ""
        assert state == "COMPLETED", f"job {job} {state}:\n{text}"
    finally:
        stop_marked(token)
    assert f"cpsweep on Slurm job {job}: Ray head on {socket.gethostname()}" in text
    assert "Ray cluster up: 1 of 1 node(s)" in text and "sweep tiny: 3 ok" in text, text
    trials = pd.read_parquet(tmp_path / "res" / "tiny" / "trials.parquet")
    assert (trials.status == "ok").all() and len(trials) == 3
