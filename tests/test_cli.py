"""`cpsweep trial` end to end: a real subprocess, real Parquet read back, clean errors with exit 2."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(ROOT, "sweeps", "quickstart.yaml")


def cpsweep(*args, **kw):
    return subprocess.run([sys.executable, "-m", "cpsweep.cli", *args], capture_output=True, text=True,
                          cwd=kw.get("cwd", ROOT), timeout=300)


@pytest.mark.slow
def test_trial_prints_epochs_and_writes_parquet(tmp_path):
    out = tmp_path / "o0"
    res = cpsweep("trial", QUICKSTART, "--onset", "1", "--length", "2", "--epochs", "4", "--seed", "1",
                  "--out", str(out))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    # the sweep's own trial: its id names the value of its other grid axis, taken at its first value
    assert lines[0].startswith("trial quickstart/blur-o1-l2-scheduleexponential-s1: mnist1d, cnn1d, deficit blur "
                               "in [1, 3), 4 epochs")
    assert lines[1] == "  schedule=exponential (first of 2); pick another with --axis AXIS=VALUE"
    epoch_lines = [line for line in lines if line.startswith("epoch")]
    assert len(epoch_lines) == 4
    assert "deficit off" in epoch_lines[0] and "deficit on" in epoch_lines[1]
    assert lines[-1].startswith("final test accuracy (median of the last 10 epochs):")
    epochs = pd.read_parquet(out / "epochs.parquet")
    # on as many threads as the sweep's trial (resources.cpu: 1), whatever this machine's default
    assert pd.read_parquet(out / "trials.parquet").numerics.tolist() == ["cpu fp32 1 thread"]
    assert list(epochs.epoch) == [-1, 0, 1, 2, 3]  # -1: at initialisation
    assert (epochs.trial_id == "blur-o1-l2-scheduleexponential-s1").all()
    assert list(epochs.deficit_active) == [False, False, True, True, False]
    assert lines[2].startswith("init ") and "fisher" in lines[2]
    layers = pd.read_parquet(out / "fisher_layers.parquet")
    assert set(layers.epoch) == {-1, 1, 3}  # at initialisation, every 2 epochs and at the last
    assert set(layers.kind) == {"Conv1d", "BatchNorm1d", "Linear"}
    first = layers[layers.epoch == 1].sort_values("order")
    assert first.params.tolist()[:3] == [1 * 32 * 5, 2 * 32, 32 * 32 * 5]  # conv, BN (weight + bias), conv
    per_epoch = layers.groupby("epoch").trace.sum()
    measured = epochs.set_index("epoch").fisher_trace.dropna()
    assert per_epoch.values == pytest.approx(measured.values, rel=1e-9)
    trials = pd.read_parquet(out / "trials.parquet")
    assert trials.status.tolist() == ["ok"] and trials.epochs_done.tolist() == [4]


@pytest.mark.parametrize("args, message", [
    (["--onset", "100", "--length", "30", "--epochs", "120"],
     f"{QUICKSTART}: --onset/--length: window [100, 130) ends after the last epoch (120 epochs)"),
    # a flag's own mistake names the flag, not the file (which holds no such value)
    (["--onset", "-2", "--length", "3"], "error: --onset: expected a whole number of epochs >= 0, got -2"),
    (["--onset", "0", "--length", "-1"], "error: --length: expected a whole number of epochs >= 0, got -1"),
    (["--onset", "0", "--length", "3", "--epochs", "0"],
     "error: --epochs: expected a whole number of epochs >= 1, got 0"),
    (["--onset", "0", "--length", "3", "--seed", "-3"], "error: --seed: expected a seed >= 0, got -3"),
])
def test_trial_bad_arguments_exit_2_without_traceback(args, message, tmp_path):
    res = cpsweep("trial", QUICKSTART, *args, "--out", str(tmp_path / "x"))
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.splitlines()) == 1, res.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("device, message", [
    ("meta", "--device: 'meta': cpsweep trains on cpu, cuda, mps; use one of them"),
    ("tpu", "--device: 'tpu' is not a device"),
    ("gpu0", "--device: 'gpu0' is not a device; use one of cpu, cuda, cuda:N or mps"),
    ("cuda", "asks for cuda (--device) but torch finds no GPU on this node"),
    ("cuda:3", "asks for cuda:3 (--device) but torch finds no GPU on this node"),
])
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_trial_on_a_device_that_is_not_here_is_one_line(device, message, tmp_path):
    """No CUDA traceback and no silent CPU run: the device asked for is checked before anything is written."""
    res = cpsweep("trial", QUICKSTART, "--onset", "0", "--length", "3", "--device", device,
                  "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1 and not (tmp_path / "x").exists() and "epoch" not in res.stdout


def test_trial_unwritable_output_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = cpsweep("trial", QUICKSTART, "--onset", "0", "--length", "3", "--out", str(blocker / "sub"))
    assert res.returncode == 2
    assert res.stderr.startswith(f"cpsweep: error: cannot write results to {blocker / 'sub'}")
    assert "epoch" not in res.stdout


def test_trial_into_a_sweeps_results_folder_fails_before_training(tmp_path):
    """A sweep's results folder (its tables are folders of parts) is refused before any epoch, and kept."""
    import shutil

    folder = tmp_path / "quickstart"
    shutil.copytree(os.path.join(ROOT, "docs", "reproduction", "data", "quickstart"), folder)
    before = sorted(p.name for p in folder.rglob("*"))
    res = cpsweep("trial", QUICKSTART, "--onset", "0", "--length", "1", "--epochs", "2", "--out", str(folder))
    assert res.returncode == 2 and "epoch" not in res.stdout
    assert res.stderr == (f"cpsweep: error: --out: {folder} holds a sweep's results, which one trial's tables would "
                          "overwrite; choose another folder with --out (a new one, or a trial's own)\n")
    assert sorted(p.name for p in folder.rglob("*")) == before


def test_missing_spec_file():
    res = cpsweep("validate", "no/such.yaml")
    assert res.returncode == 2 and "no/such.yaml: (file): cannot read the spec" in res.stderr


def test_validate_prints_an_adaptive_sweeps_round_0_cost():
    res = cpsweep("validate", os.path.join("sweeps", "mini", "blur_boundary.yaml"))
    assert res.returncode == 0, res.stderr
    assert "21900 with shared prefixes" in res.stdout
    assert ("adaptive search: round 0 runs onsets [0, 50, 100]: 55 trials, 3900 epochs (18% of the full grid's)"
            in res.stdout)


def test_validate_refuses_a_common_end_with_unequal_recovery(tmp_path):
    """precision.yaml's earlier form (epochs: 120, windows ending at 40 and 100) without common_end: one line
    naming `epochs` and both fixes, exit 2; with common_end: true it validates."""
    raw = yaml.safe_load(Path(ROOT, "sweeps", "precision.yaml").read_text())
    raw.pop("clean_after")
    raw["epochs"] = 120
    bad = tmp_path / "unequal.yaml"
    bad.write_text(yaml.safe_dump(raw))
    res = cpsweep("validate", str(bad))
    assert res.returncode == 2 and res.stdout == "" and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [
        f"cpsweep: error: {bad}: epochs: windows end at epochs 40 and 100, so with a common end they get 80 and 20 "
        f"clean epochs: give clean_after: K (the same K clean epochs after every window), or set common_end: true "
        f"to accept unequal recovery"]
    bad.write_text(yaml.safe_dump({**raw, "common_end": True}))
    res = cpsweep("validate", str(bad))
    assert res.returncode == 0 and "18 trials (6 baselines), 2160 training epochs" in res.stdout, res.stderr


def test_launch_reports_every_mistake_of_every_file_at_once(tmp_path):
    typos = tmp_path / "typos.yaml"
    typos.write_text(Path(QUICKSTART).read_text().replace("replicates:", "replicate:").replace("lr:", "lrr:"))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\ngrid: {onset: [0, length: [1]}\n")
    res = cpsweep("launch", str(typos), str(binary), str(broken), "--storage", str(tmp_path / "out"))
    assert res.returncode == 2 and res.stdout == "" and "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert lines[0] == f"cpsweep: error: {typos}: 2 problems; fix them and run again:"
    assert lines[1].startswith('  replicate: unknown key "replicate" (did you mean "replicates"?)')
    assert lines[2].startswith('  optim.lrr: unknown key "lrr" (did you mean "lr"?)')
    assert lines[3].startswith(f"{binary}: (file): not UTF-8 text (byte 0: b'\\x89')")
    assert lines[4].startswith(f"{broken}: (file): not valid YAML: line 2, column")
    assert len(lines) == 5 and not (tmp_path / "out").exists()


def test_validate_and_a_refused_launch_load_no_heavy_library(tmp_path):
    """A mistake in a sweep file, and `validate`, are answered in a fraction of a second: before torch, Ray,
    pandas or scipy load (they took 2.5-4 s of every such command here)."""
    typos = tmp_path / "typos.yaml"
    typos.write_text(Path(QUICKSTART).read_text().replace("replicates:", "replicate:"))
    code = ("import sys; from cpsweep.cli import main; rcs = [main(a.split(chr(10))) for a in sys.argv[1:3]]; "
            "print(rcs, sorted(m for m in ('torch', 'ray', 'pandas', 'scipy') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code, f"validate\n{QUICKSTART}", f"launch\n{typos}"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert res.stdout.splitlines()[-1] == "[0, 2] []", res.stdout + res.stderr
    assert 'replicate: unknown key "replicate"' in res.stderr


@pytest.mark.slow
def test_launch_with_a_tracker_that_is_not_installed(tmp_path):
    missing = tmp_path / "site"  # a wandb that fails to import, as an absent one does
    (missing / "wandb").mkdir(parents=True)
    (missing / "wandb" / "__init__.py").write_text("raise ImportError('No module named wandb')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(missing), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-m", "cpsweep.cli", "launch", QUICKSTART, "--tracker", "wandb",
                          "--storage", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env=env, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "the wandb tracker needs its package: pip install 'cpsweep[wandb]'" in res.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


@pytest.mark.parametrize("command", ["status", "report"])
def test_status_and_report_of_a_folder_without_results(tmp_path, command):
    res = cpsweep(command, str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.strip() == f"cpsweep: error: {tmp_path} holds no cpsweep results (no trials.parquet); pass " \
                                 f"the folder of one sweep, e.g. results/quickstart"
    gone = cpsweep(command, str(tmp_path / "nowhere"))
    assert gone.returncode == 2 and gone.stderr.strip() == f"cpsweep: error: {tmp_path / 'nowhere'} does not " \
                                                           f"exist; pass the results folder of one sweep, e.g. " \
                                                           f"results/quickstart"


@pytest.mark.parametrize("slope, verdict", [(1.0, "reproduced"), (-1.0, "not reproduced")])
def test_status_prints_the_verdict_of_each_claim_the_sweep_tests(tmp_path, capsys, slope, verdict):
    """Windows at onsets 0, 10, 20 over 5 seeds whose cost falls (slope 1) or rises (slope -1) with the onset by
    about 4 points, the seeds' slopes apart by 10 %: the early-vs-late claim must read reproduced, or not."""
    from results_fixture import make_results, write_tables

    from cpsweep.cli import main

    damage = lambda onset, length, seed: 3 + slope * (1 - onset / 10) * (2 + 0.2 * seed)  # noqa: E731
    write_tables(str(tmp_path / "hand"), make_results(seeds=range(5), damage=damage))
    assert main(["status", str(tmp_path / "hand")]) == 0
    lines = capsys.readouterr().out.splitlines()
    heading = lines.index("the paper's claims this sweep tests (verdict under its own schedule; the numbers are in "
                          "the report):")
    below = lines[heading + 1:]
    rows = [re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in below if not line.strip().startswith("why: ")]
    claims = {rest.split("; under the controls: ")[0]: said for said, rest in rows}
    assert claims["Blur: an early window costs more than a late one"] == verdict, lines
    assert all(line.startswith("  ") for line in below) and len(claims) >= 2, lines
    # a claim the data cannot decide says why on the next line: what was measured, with the reason
    for i, line in enumerate(below):
        if "not shown" in line and not line.strip().startswith("why: "):
            assert below[i + 1].strip().startswith("why: ") and len(below[i + 1].strip()) > 20, lines
    assert any("not shown" in line for line in below) or verdict != "not reproduced", lines


def test_storage_errors_are_one_line(tmp_path):
    unreachable = "s3://bucket/sweep?endpoint_override=http://127.0.0.1:9&scheme=http"  # nothing listens on 9
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "trials.parquet").write_bytes(b"PAR1 this is not parquet")
    damaged = tmp_path / "damaged"
    (damaged / "quickstart").mkdir(parents=True)
    (damaged / "quickstart" / "spec.yaml").write_text("- a list")
    cases = [(["status", unreachable], f"cannot read {unreachable}: ", "Could not connect"),
             (["status", "nosuchfs://x/y"], "cannot open nosuchfs://x/y: ", "Unrecognized filesystem"),
             (["status", str(corrupt)], f"cannot read trials.parquet in {corrupt}: ", "Parquet"),
             (["status", "s3:/bucket/p"], "'s3:/bucket/p' looks like a URI without its '//': ", "write s3://bucket/p"),
             (["report", "gs:bucket/p"], "'gs:bucket/p' looks like a URI without its '//': ", "write gs://bucket/p"),
             (["launch", QUICKSTART, "--storage", str(damaged)], f"{damaged}/quickstart/spec.yaml is damaged: it "
                                                                 "holds a list, not a mapping", "restore it"),
             (["launch", QUICKSTART, "--storage", unreachable],  # reads what the folder holds first
              "cannot read s3://bucket/sweep/quickstart?endpoint_override=http://127.0.0.1:9&scheme=http: ",
              "Could not connect"),
             # no Google Cloud credentials (and no network): pyarrow's client retries for minutes unless told
             (["status", "gs://cpsweep-test-nobucket/p"], "cannot reach gs://cpsweep-test-nobucket/p (retried for "
                                                          "10 s): ", "gcloud auth application-default login"),
             (["launch", QUICKSTART, "--storage", "gs://cpsweep-test-nobucket"],
              "cannot reach gs://cpsweep-test-nobucket/quickstart (retried for 10 s): ", "?retry_limit_seconds=N")]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_EC2_METADATA_DISABLED": "true"}
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    # the commands run side by side: an unreachable S3 endpoint costs ~6 s of the S3 client's retry back-off
    # (not settable in a URI), spent waiting
    procs = [subprocess.Popen([sys.executable, "-m", "cpsweep.cli", *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env) for args, _, _ in cases]
    try:
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    for (args, start, detail), proc, (stdout, stderr) in zip(cases, procs, outputs):
        assert proc.returncode == 2, (args, stderr)
        assert stderr.startswith(f"cpsweep: error: {start}") and detail in stderr, stderr
        assert len(stderr.splitlines()) == 1 and stdout == "", stderr
        # a local table that does not read is damaged, not a matter of endpoints and credentials
        if args[-1] == str(corrupt):
            assert "a table that does not read is damaged" in stderr and "credentials" not in stderr, stderr


def test_launch_to_an_unreachable_cluster_fails_at_once_and_leaves_nothing(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    res = cpsweep("launch", QUICKSTART, "--address", f"127.0.0.1:{port}", "--storage", str(tmp_path / "out" / "r"))
    assert res.returncode == 2 and "Traceback" not in res.stderr  # (ray.init alone retries for minutes)
    assert res.stderr.startswith(f"cpsweep: error: cannot reach the Ray cluster at 127.0.0.1:{port}: nothing "
                                 f"answers at 127.0.0.1:{port} (Connection refused); check the address"), res.stderr
    assert len(res.stderr.splitlines()) == 1 and res.stdout == ""  # (no plan printed before it)
    assert os.listdir(tmp_path) == []  # the results folder and its parents, made to check them, are gone


@pytest.mark.slow
def test_launch_to_an_unwritable_storage(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = cpsweep("launch", QUICKSTART, "--storage", str(blocker))
    assert res.returncode == 2 and "cannot write results to" in res.stderr and "Traceback" not in res.stderr
    # a file where the results folder keeps a folder: refused before anything is written
    folder = tmp_path / "res" / "quickstart"
    folder.mkdir(parents=True)
    (folder / "tune").write_text("x")
    res = cpsweep("launch", QUICKSTART, "--storage", str(tmp_path / "res"))
    assert res.returncode == 2 and f"{folder}/tune is a file where cpsweep keeps a folder; move it away" in res.stderr
    assert sorted(os.listdir(folder)) == ["tune"]  # (no spec.yaml, no tables, no lock)


@pytest.mark.slow
def test_launch_of_several_specs_checks_them_all_before_running_any(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = open(QUICKSTART).read()
    assert "\nclean_after: 30 " in text
    bad.write_text(text.replace("\nclean_after: 30 ", "\nepochs: 35 "))  # [30, 40) ends too late
    res = cpsweep("launch", QUICKSTART, str(bad), "--storage", str(tmp_path / "out"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "bad.yaml: grid.onset/length: window [30, 40) ends after the last epoch" in res.stderr
    assert not (tmp_path / "out").exists()  # the first, valid sweep did not start


@pytest.mark.parametrize("flags, share", [((), True), (("--no-share",), False)])
def test_launch_shares_prefixes_unless_told_not_to(monkeypatch, flags, share):
    """`--no-share` reaches `launch` (sharing itself is tested end to end in test_sharing.py)."""
    import cpsweep.sweep.launch
    from cpsweep.cli import main
    from cpsweep.sweep.launch import Summary

    calls = []
    monkeypatch.setattr(cpsweep.sweep.launch, "launch",
                        lambda spec, **kw: calls.append(kw) or Summary("quickstart", "", {"ok": 1}, 0.0, None))
    assert main(["launch", QUICKSTART, *flags]) == 0
    assert [kw["share"] for kw in calls] == [share]


def test_validate_takes_many_files_and_reports_every_bad_one(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nepochs: 4\noptim: {lr: fast}\ngrid: {onset: [0], length: [9]}\n")
    worse = tmp_path / "worse.yaml"
    worse.write_text("name: worse\nepohcs: 4\ngrid: {onset: [0], length: [2]}\n")
    res = cpsweep("validate", QUICKSTART, str(bad), str(worse), os.path.join("sweeps", "mini", "vflip.yaml"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "quickstart.yaml: ok" in res.stdout and "vflip.yaml: ok" in res.stdout
    assert "bad.yaml" in res.stderr and "optim.lr" in res.stderr and "worse.yaml" in res.stderr
    assert 'unknown key "epohcs"' in res.stderr


def test_files_that_name_one_sweep_are_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    """Two files whose sweeps have one name (here after name=) would share one results folder: launch ran the
    first to its end and only then refused the second, and validate said both were ok. Both now refuse them
    before anything runs, in one line naming both files and the name."""
    import cpsweep.sweep.launch
    from cpsweep.cli import main

    calls = []
    monkeypatch.setattr(cpsweep.sweep.launch, "launch", lambda spec, **kw: calls.append(spec))
    one, two = tmp_path / "one.yaml", tmp_path / "two.yaml"
    one.write_text("name: one\nepochs: 4\ngrid: {onset: [0], length: [2]}\n")
    two.write_text("name: two\nepochs: 4\noptim: {lr: 0.01}\ngrid: {onset: [0], length: [2]}\n")
    line = (f"cpsweep: error: {one} and {two} both name sweep 'same', and one results folder holds one sweep; "
            f"name= on the command line names every file's sweep: launch them one at a time, each with its own "
            f"name=...\n")
    for command in ("validate", "launch"):
        assert main([command, str(one), str(two), "name=same"]) == 2
        assert capsys.readouterr() == ("", line)
    assert main(["validate", str(one), str(two)]) == 0 and capsys.readouterr().err == ""  # their own names
    two.write_text(two.read_text().replace("name: two", "name: one"))
    assert main(["launch", str(one), str(two)]) == 2
    assert capsys.readouterr().err.endswith("both name sweep 'one', and one results folder holds one sweep; change "
                                            "the name: of one of them\n")
    assert main(["validate", str(one), os.path.join(str(tmp_path), ".", "one.yaml")]) == 2
    assert capsys.readouterr().err.endswith("one.yaml: given twice; give each sweep file once\n")
    assert calls == []


def test_validate_says_nothing_of_savings_where_there_are_none(tmp_path):
    one = tmp_path / "one.yaml"
    one.write_text("name: one\nepochs: 4\ngrid: {onset: [0], length: [2]}\n")  # a baseline and one window at 0
    res = cpsweep("validate", str(one))
    assert res.returncode == 0 and "saved" not in res.stdout and "x fewer" not in res.stdout, res.stdout


def test_validate_notes_windows_read_during_their_deficit(tmp_path):
    """A window followed by fewer than 10 clean epochs is read (median of the last 10) during its deficit:
    validate says so, once, with the windows; a design with 10 clean epochs says nothing."""
    short = tmp_path / "short.yaml"
    short.write_text("name: short\nclean_after: 4\ngrid: {onset: [0, 3], length: [2]}\n")
    res = cpsweep("validate", str(short))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1] == (
        '  note: 2 windows followed by fewer than 10 clean epochs: [0, 2) (4 clean), [3, 5) (4 clean); the final '
        'accuracy is the median of the last 10 epochs, so it holds deficit epochs and the verdicts on those '
        'windows will be "not shown" (clean_after: 10 or more avoids it)')
    short.write_text("name: short\nreplicates: 3\nclean_after: 10\ngrid: {onset: [0, 3], length: [2]}\n")
    res = cpsweep("validate", str(short))
    assert res.returncode == 0 and "note:" not in res.stdout, res.stdout


def test_validate_notes_a_design_of_too_few_seeds():
    res = cpsweep("validate", os.path.join(ROOT, "sweeps", "quickstart.yaml"), "replicates=2")
    assert res.returncode == 0 and res.stdout.splitlines()[1:] == [
        '  note: 2 seeds: fewer than 3 paired seeds decide no claim, so every verdict will be "not shown" '
        '(replicates: 3 or more; `cpsweep seeds` sizes it from a pilot)'], res.stdout


def test_report_output_errors_name_the_path_and_a_new_folder_is_said(tmp_path):
    from results_fixture import make_results, write_tables

    folder = str(tmp_path / "res")
    r = make_results()
    write_tables(folder, r)
    res = cpsweep("report", folder, "-o", "/proc/nowhere/r.html")
    assert res.returncode == 2 and res.stderr.strip().startswith(
        "cpsweep: error: cannot write the report r.html to /proc/nowhere: ")
    assert res.stderr.strip().endswith("pass -o a file in a folder you can write to") and "--storage" not in res.stderr
    new = tmp_path / "new" / "deeper"
    res = cpsweep("report", folder, "-o", str(new / "r.html"))
    assert res.returncode == 0 and res.stdout.strip() == f"{new / 'r.html'} (created the folder {new})"
    assert (new / "r.html").stat().st_size > 0


def test_overrides_on_the_command_line_are_validated_and_recorded(tmp_path):
    res = cpsweep("validate", QUICKSTART, "replicates=3", "grid.onset=[0,30]", "optim.lr=1e-2")
    assert res.returncode == 0, res.stderr
    from cpsweep.config.sweep_file import load_sweep

    plain = load_sweep(QUICKSTART)
    sweep = load_sweep(QUICKSTART, ["replicates=3", "grid.onset=[0,30]", "optim.lr=1e-2"])
    assert sweep.seeds == (0, 1, 2) and sweep.grid["onset"] == (0, 30) and sweep.base.optim.lr == 0.01
    assert f"{len(sweep.trials())} trials" in res.stdout and len(sweep.trials()) != len(plain.trials())
    assert sweep.hash() != plain.hash()  # another sweep (its settings and grid), under the same name
    from cpsweep.storage.store import Store
    from cpsweep.sweep.launch import write_spec

    store = Store(str(tmp_path))
    write_spec(store, sweep)
    doc = yaml.safe_load(store.read_bytes("spec.yaml"))
    assert doc["overrides"] == ["replicates=3", "grid.onset=[0,30]", "optim.lr=1e-2"]
    assert doc["spec"]["optim"]["lr"] == "1e-2" and doc["spec"]["replicates"] == 3  # the merged file as read
    bad = cpsweep("validate", QUICKSTART, "optim.lrr=0.1", "grid.onset=[0,")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "grid.onset: the override's value '[0,' is not YAML" in bad.stderr
    bad = cpsweep("launch", QUICKSTART, "optim.lrr=0.1", "--storage", str(tmp_path / "r"))
    assert bad.returncode == 2 and 'optim.lrr: unknown key "lrr" (did you mean "lr"?)' in bad.stderr
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args, message", [
    (["--max-concurrent", "0"], "--max-concurrent: must be a whole number >= 1 (trials at once), got 0"),
    (["--max-concurrent", "-1"], "--max-concurrent: must be a whole number >= 1 (trials at once), got -1"),
    (["--storage", "s3:/bucket/p"], "--storage: 's3:/bucket/p' looks like a URI without its '//': write "
                                    "s3://bucket/p"),
    (["--storage", ""], "--storage: must name a folder or a URI (e.g. results or s3://bucket/prefix), got ''"),
    (["--full-grid"], "--full-grid: sweep 'quickstart' has no search: section, so it runs every onset already"),
])
def test_launch_options_are_checked_before_anything_runs(args, message, tmp_path):
    res = cpsweep("launch", QUICKSTART, *args, cwd=str(tmp_path))
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) == 1 and list(tmp_path.iterdir()) == []  # no folder, no s3:/ folder


@pytest.mark.parametrize("threshold", ["-5", "inf"])
def test_report_threshold_below_zero_or_infinite_is_refused(tmp_path, threshold):
    res = cpsweep("report", str(tmp_path), "--threshold", threshold, "-o", str(tmp_path / "r.html"))
    assert res.returncode == 2 and "--threshold: must be >= 0 points" in res.stderr


@pytest.mark.parametrize("flag", [["--threshold", "1"], ["--per-parameter"], ["--measure", "metric.x"]])
def test_a_report_option_that_compare_would_ignore_is_refused(tmp_path, flag):
    res = cpsweep("report", str(tmp_path), "--compare", str(tmp_path), *flag, "-o", str(tmp_path / "c.html"))
    assert res.returncode == 2 and f"{flag[0]}: applies to one sweep's report, not to --compare's overlay" in \
        res.stderr and not (tmp_path / "c.html").exists()
    assert not (tmp_path / "r.html").exists()


def test_a_mistake_in_the_command_line_itself_is_one_line():
    res = cpsweep("launch", QUICKSTART, "--max-concurrent", "abc")
    assert res.returncode == 2 and res.stderr == ("cpsweep launch: error: argument --max-concurrent: invalid int "
                                                  "value: 'abc' (see cpsweep launch --help)\n")


def test_an_override_given_twice_is_refused():
    res = cpsweep("validate", QUICKSTART, "replicates=2", "replicates=3")
    assert res.returncode == 2 and "replicates: overridden twice on the command line; give it once" in res.stderr
    forgotten = cpsweep("validate", QUICKSTART, "replicates")  # no =value: read as a second sweep file
    assert forgotten.returncode == 2 and "replicates: (file): cannot read the spec: No such file or directory; if " \
                                         "it is an override, write key=value" in forgotten.stderr
    inner = cpsweep("validate", QUICKSTART, "grid={onset: [0], onset: [60], length: [20]}")  # as in a file
    assert inner.returncode == 2 and '"onset" is given twice' in inner.stderr and "Traceback" not in inner.stderr


def test_overrides_may_follow_the_options_and_other_strays_name_the_command(capsys):
    from cpsweep.cli import parse_args

    args = parse_args(["launch", "q.yaml", "--smoke", "replicates=3", "--storage", "out", "optim.lr=1e-2"])
    assert args.spec == ["q.yaml", "replicates=3", "optim.lr=1e-2"] and args.smoke and args.storage == "out"
    assert parse_args(["validate", "a.yaml", "b.yaml", "seed=4"]).spec == ["a.yaml", "b.yaml", "seed=4"]
    for argv, stray in ((["launch", "q.yaml", "--smoke", "--bogus"], "--bogus"),
                        (["status", "results/q", "replicates=3"], "replicates=3")):  # status takes no overrides
        with pytest.raises(SystemExit) as info:
            parse_args(argv)
        assert info.value.code == 2
        assert capsys.readouterr().err == (f"cpsweep {argv[0]}: error: unrecognized arguments: {stray} (see cpsweep "
                                           f"{argv[0]} --help)\n")


def test_a_reader_that_stops_early_gets_no_traceback():
    """`cpsweep status DIR | head -1`: the pipe closes under the printing (here before it: `true` reads
    nothing and is gone long before cpsweep has imported pandas); nothing on stderr."""
    folder = os.path.join(ROOT, "docs", "reproduction", "data", "mini_fisher_study")
    shell = subprocess.run(f'"{sys.executable}" -m cpsweep.cli status "{folder}" | true; echo "rc=${{PIPESTATUS[0]}}"',
                           shell=True, executable="/bin/bash", capture_output=True, text=True)
    assert shell.stderr == "" and shell.stdout == "rc=1\n", shell
