"""`benchmarks/gpu_check.sh`, rehearsed on this CPU exactly as the bare GPU machine will run it.

The GPU machine has a plain `python3` with torch, pandas, pyarrow, scipy and pytest, but no cpsweep
install, no ray, no plotly, no mnist1d and no network. The rehearsal stands in for it like this:

* a fresh virtual environment (`python -m venv --without-pip`, no system site-packages): cpsweep is not
  installed in it;
* one `.pth` file in its site-packages names the test's own site-packages as a plain path, so torch and
  the rest are found as on the device, while that folder's own `.pth` files are not run (Python runs
  those only in site directories) -- among them the editable install's hook for cpsweep -- so
  `import cpsweep` resolves only through the PYTHONPATH that gpu_check.sh sets, to the repository;
* a second line of that file hides ray and plotly (a None in `sys.modules` makes their import fail): the
  run passes only if the benchmark path never imports them;
* mnist1d comes from the wheel that `benchmarks/fetch_wheels.sh` downloads, installed by gpu_check.sh into
  a temporary folder as on the device, when the package registry answers (else from this environment,
  and the test says so);
* the command is the device's, `bash benchmarks/gpu_check.sh OUT --device cpu --quick`, with
  PYTHON set to the fresh environment's interpreter (on the device: `python3`).

summary.json records where cpsweep, mnist1d, ray and plotly were found; the test asserts that, that every
step succeeded, and that each JSON file exists and holds rows. A second test shows the script failing
loudly when nothing at all could be measured (an interpreter without torch). The time-outs of the packed
benchmark's workers (`pack_timing.gather`) are tested at the end.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def bare_python(folder: Path, with_packages: bool) -> Path:
    """A fresh virtual environment's interpreter; with_packages: this environment's packages visible (but
    not cpsweep's editable install), ray and plotly hidden."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(folder)
    python = folder / "bin" / "python"
    if with_packages:
        site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        Path(site, "zz_device_stand_in.pth").write_text(
            sysconfig.get_paths()["purelib"] + "\n"
            + 'import sys; sys.modules.update({"ray": None, "plotly": None})\n')
    return python


def run_check(python: Path, out: Path, tmp: Path, wheels: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "CPSWEEP_DATA_DIR")}
    env.update(PYTHON=str(python), TMPDIR=str(tmp), WHEELS=str(wheels), PATH=f"{python.parent}:{env['PATH']}")
    return subprocess.run(["bash", str(SCRIPT), str(out), "--device", "cpu", "--quick"], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_rehearsal_of_the_device_command(tmp_path):
    wheels = tmp_path / "wheels"
    fetched = subprocess.run(["bash", str(ROOT / "benchmarks" / "fetch_wheels.sh"), str(wheels)],
                             capture_output=True, text=True, timeout=300)
    if fetched.returncode != 0:
        print(f"(the registry did not answer, mnist1d comes from this environment: {fetched.stderr[-500:]})")
    python = bare_python(tmp_path / "venv", with_packages=True)
    out = tmp_path / "out"
    began = time.monotonic()
    result = run_check(python, out, tmp_path, wheels)
    seconds = time.monotonic() - began
    print(result.stdout[-3000:], result.stderr[-3000:], f"gpu_check.sh took {seconds:.0f} s", sep="\n")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    modules = summary["modules"]
    assert modules["cpsweep"] == str(ROOT / "cpsweep" / "__init__.py")  # through PYTHONPATH alone
    assert modules["ray"] is None and modules["plotly"] is None
    if fetched.returncode == 0:
        assert modules["mnist1d"].startswith(str(tmp_path / "cpsweep-wheels"))  # the carried wheel
    expected = {"cuda-tests": 0, "throughput": 0, "engine": 0, "fisher": 0, "checks": 0}
    if fetched.returncode == 0:
        expected["wheels"] = 0
    assert {s["step"]: s["exit"] for s in summary["steps"]} == expected
    # every CUDA test of the four files (6, with their parameters) collected on the bare environment, and
    # skipped on this CPU
    log = (out / "gpu_check.log").read_text()
    cuda_tests = log[log.index("=== cuda-tests"):log.index("=== cuda-tests: exit")]
    assert re.search(r"\b6 skipped, \d+ deselected\b", cuda_tests) and "error" not in cuda_tests.lower(), cuda_tests
    names = ["throughput-cpu.json", "engine-cpu.json", "fisher-cpu.json", "checks-cpu.json"]
    assert sorted(os.listdir(out)) == sorted(names + ["gpu_check.log", "summary.json"])  # <= 8 files come back
    for name in names:
        doc = json.loads((out / name).read_text())
        assert doc["complete"] and summary["files"][name]["rows"] > 0, name
    throughput = json.loads((out / "throughput-cpu.json").read_text())
    assert {r["model"] for r in throughput["rows"]} == {"all_cnn_c", "resnet18"} and throughput["small_model"]
    fisher = json.loads((out / "fisher-cpu.json").read_text())["results"]
    assert {(r["model"], r["backend"]) for r in fisher} >= {(m, b) for m in ("all_cnn_c", "resnet18")
                                                            for b in ("func", "gram")}
    checks = json.loads((out / "checks-cpu.json").read_text())["rows"]
    assert {r["check"] for r in checks} == {"memory", "resume", "drift", "drift_summary"}
    # on the CPU the engine is bit for bit reproducible, so the resumed trial must equal the uninterrupted one
    assert all(r["resume_identical"] and r["repeat_identical"] for r in checks if r["check"] == "resume")


def test_nothing_measured_fails_loudly(tmp_path):
    python = bare_python(tmp_path / "venv", with_packages=False)  # no torch, no pytest: every step fails
    out = tmp_path / "out"
    result = run_check(python, out, tmp_path, tmp_path / "no-wheels")
    assert result.returncode == 1
    assert "NOTHING WAS MEASURED" in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 0 and all(s["exit"] != 0 for s in summary["steps"])


def _hang(seconds, barrier, queue):
    time.sleep(seconds)


def _crash(seconds, barrier, queue):
    sys.exit(3)


def _meet(seconds, barrier, queue):
    barrier.wait(timeout=seconds)
    queue.put(os.getpid())


def test_packed_workers_cannot_hang_the_benchmark():
    from pack_timing import gather

    assert len(set(gather(_meet, (60,), 2, timeout_s=120))) == 2
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="1 of 1 workers gave no result .after 3 s"):
        gather(_hang, (600,), 1, timeout_s=3)
    with pytest.raises(TimeoutError, match=r"exit codes \[3, "):
        gather(_crash, (0,), 2, timeout_s=300)  # found dead at once, not after the time-out
    assert time.monotonic() - began < 60
