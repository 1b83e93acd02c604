"""Sweeps on a real local Ray: Parquet end to end, a killed worker, a killed driver, grid extension,
refused changes, impossible resources."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import psutil
import pytest

from killed_launch import launch_and_kill, relaunch
from tiny_specs import tiny_sweep, write_spec
from trial_runs import COMPARE, read, reference_epochs

from cpsweep.errors import SpecError

pytestmark = pytest.mark.slow


def test_small_sweep_end_to_end(tmp_path, ray_local, capsys):
    import cpsweep
    from cpsweep.sweep.launch import launch

    environment = dict(os.environ)
    summary = cpsweep.launch(tiny_sweep(), storage=str(tmp_path / "res"))  # the public API, from a dict
    assert dict(os.environ) == environment  # the caller's environment as it was
    assert summary.counts["ok"] == 3 and summary.counts["pending"] == 0
    folder = tmp_path / "res" / "tiny"
    trials, epochs = read(folder)
    assert sorted(trials.trial_id) == ["baseline-s0", "blur-o0-l2-s0", "blur-o3-l2-s0"]
    assert (trials.status == "ok").all() and (trials.epochs_done == 6).all()
    assert (epochs.epoch >= 0).sum() == 18 and not epochs.duplicated(["trial_id", "epoch"]).any()
    layers = pd.read_parquet(folder / "fisher_layers.parquet")
    assert not layers.duplicated(["trial_id", "epoch", "layer"]).any()
    pd.testing.assert_frame_equal(epochs[COMPARE], reference_epochs(tiny_sweep())[COMPARE])
    assert (folder / "report.html").exists() and (folder / "spec.yaml").exists()
    out = capsys.readouterr().out
    assert out.count("ok ") >= 3 and "[3/3]" in out and "sweep tiny: 3 ok" in out
    # the claims' verdicts (one seed: not shown), then the summary as the last line
    assert "\n  not shown  Blur: an early window costs more than a late one; under the controls: " in out
    assert out.index("the paper's claims this sweep tests") < out.index("sweep tiny: 3 ok")

    # launching again (the same sweep from its YAML file) runs nothing and keeps every row exactly once
    spec = write_spec(tmp_path)
    summary = launch(spec, storage=str(tmp_path / "res"))
    assert summary.counts["ok"] == 3
    trials2, epochs2 = read(folder)
    pd.testing.assert_frame_equal(epochs2, epochs)

    # an extended grid runs only the new trials
    spec2 = write_spec(tmp_path, grid={"onset": [0, 3, 4], "length": [2]})
    launch(spec2, storage=str(tmp_path / "res"))
    out = capsys.readouterr().out
    assert "4 trials, 3 already done, 1 to run" in out and "blur-o4-l2-s0" in out and "baseline-s0 " not in out
    trials3, epochs3 = read(folder)
    assert len(trials3) == 4 and (epochs3.epoch >= 0).sum() == 24 and not epochs3.duplicated(["trial_id", "epoch"]).any()

    # a changed fixed setting under the same name is refused, naming what changed
    spec3 = write_spec(tmp_path, optim={"lr": 0.1, "batch_size": 50})
    with pytest.raises(SpecError, match=r"already holds sweep \"tiny\" run with other fixed settings "
                                        r"\(optim.lr: 0.05 -> 0.1\)"):
        launch(spec3, storage=str(tmp_path / "res"))
    # without spec.yaml (the record of the settings the results ran with) nothing can be checked: refused
    (folder / "spec.yaml").rename(tmp_path / "kept.yaml")
    with pytest.raises(SpecError, match=r"holds results of a sweep but no spec.yaml .* restore spec.yaml"):
        launch(spec3, storage=str(tmp_path / "res"))
    assert not (folder / "spec.yaml").exists()


def test_a_grid_extended_to_a_later_onset_trains_its_baseline_to_the_new_length(tmp_path, ray_local, capsys):
    """With `clean_after`, a later onset lengthens its seed's baseline: launching the extended grid trains
    that baseline again to the new length (it was kept at the old one, and the new window compared with a
    baseline shorter than itself), with every row once and the epochs of a fresh launch of the new grid."""
    from cpsweep.sweep.launch import launch

    equal = dict(epochs=None, common_end=None, clean_after=1, grid={"onset": [0, 2], "length": [2]})
    launch(write_spec(tmp_path, **equal), storage=str(tmp_path / "res"))
    trials, _ = read(tmp_path / "res" / "tiny")
    assert trials.set_index("trial_id").epochs.to_dict() == {"baseline-s0": 5, "blur-o0-l2-s0": 3,
                                                             "blur-o2-l2-s0": 5}
    capsys.readouterr()
    longer = dict(equal, grid={"onset": [0, 2, 4], "length": [2]})
    launch(write_spec(tmp_path, **longer), storage=str(tmp_path / "res"))
    out = capsys.readouterr().out
    assert "1 finished trial(s) trained 5 epochs where the grid now needs 7" in out
    assert "4 trials, 2 already done, 2 to run" in out and "baseline-s0 " in out
    trials, epochs = read(tmp_path / "res" / "tiny")
    assert trials.set_index("trial_id").epochs.to_dict() == {"baseline-s0": 7, "blur-o0-l2-s0": 3,
                                                             "blur-o2-l2-s0": 5, "blur-o4-l2-s0": 7}
    assert (trials.status == "ok").all() and len(trials) == 4
    assert not epochs.duplicated(["trial_id", "epoch"]).any() and (epochs.epoch >= 0).sum() == 7 + 3 + 5 + 7
    pd.testing.assert_frame_equal(epochs[COMPARE], reference_epochs(tiny_sweep(**longer))[COMPARE])


def test_impossible_resources_fail_at_once(tmp_path, ray_local, capsys):
    from cpsweep.sweep.launch import launch

    spec = write_spec(tmp_path, resources={"cpu": 1, "gpu": 1})
    start = time.time()
    with pytest.raises(SpecError, match=r"resources: each trial needs CPU=1, GPU=1 but the largest node has "
                                        r"CPU=2, GPU=0"):
        launch(spec, storage=str(tmp_path / "res"))
    assert time.time() - start < 30
    # the error alone: no plan line saying what would run (it is printed once the checks on Ray pass), and
    # no results folder
    assert capsys.readouterr().out == "" and not (tmp_path / "res").exists()


def kill_worker_when(condition, stop: threading.Event, killed: list):
    """Kill (SIGKILL) the Ray worker running a trial as soon as `condition()` holds. Only this test's own
    Ray (started by this process: its raylet and workers are our descendants) is touched, never another
    Ray running on the machine."""
    while not stop.is_set():
        if condition():
            for p in psutil.Process().children(recursive=True):
                if any("ImplicitFunc" in part for part in (p.cmdline() or [])):
                    p.kill()
                    killed.append(p.pid)
            if killed:
                return
        time.sleep(0.05)


@pytest.mark.serial
def test_killed_worker_is_retried_from_its_checkpoint(tmp_path, ray_local):
    from cpsweep.sweep.launch import launch

    spec = write_spec(tmp_path, name="one.yaml", epochs=8, grid={"onset": [2], "length": [3]})
    folder = tmp_path / "res" / "tiny"

    def mid_run():  # the window trial has saved its 3rd-epoch checkpoint
        return any(folder.glob("tune/*/blur-o2-l3-s0/checkpoint_000002"))

    stop, killed = threading.Event(), []
    killer = threading.Thread(target=kill_worker_when, args=(mid_run, stop, killed))
    killer.start()
    try:
        summary = launch(spec, storage=str(tmp_path / "res"), max_concurrent=1)
    finally:
        stop.set()
        killer.join()
    assert killed, "the worker was never killed"
    assert summary.counts["ok"] == 2
    trials, epochs = read(folder)
    assert (epochs.epoch >= 0).sum() == 16 and not epochs.duplicated(["trial_id", "epoch"]).any()
    pd.testing.assert_frame_equal(epochs[COMPARE], reference_epochs(spec)[COMPARE])
    # it branched from the baseline at its onset, and resumed rather than restarting after the kill: Tune's
    # result log of the trial starts at epoch 2 and shows it only once
    progress = pd.concat(pd.read_csv(p) for p in folder.glob("tune/*/blur-o2-l3-s0/progress.csv"))
    assert progress.epoch.min() == 2 and (progress.epoch == 2).sum() == 1 and (progress.epoch == 7).sum() == 1
    assert trials.set_index("trial_id").shared_epochs.to_dict() == {"baseline-s0": 0, "blur-o2-l3-s0": 2}


@pytest.mark.serial
def test_killed_driver_relaunch_finishes_every_trial_once(tmp_path):
    spec = write_spec(tmp_path, grid={"onset": [0, 1, 2, 3], "length": [2]}, epochs=6)
    storage = tmp_path / "res"
    folder = storage / "tiny"
    cmd = launch_and_kill(spec, storage, lambda: bool(list(folder.glob("shards/*/trial.parquet"))),
                          "a finished trial")
    done_before = len(list(folder.glob("shards/*/trial.parquet")))
    assert done_before < 5
    # the killed driver's lock is left behind; status sees its holder gone, and the relaunch takes it over
    assert (folder / "launch.json").exists()
    status = subprocess.run([sys.executable, "-m", "cpsweep.cli", "status", str(folder)], capture_output=True,
                            text=True)
    assert "the last launch stopped before it finished" in status.stdout, status.stdout + status.stderr
    res = relaunch(cmd)
    assert f"5 trials, {done_before} already done" in res.stdout
    trials, epochs = read(folder)
    assert (trials.status == "ok").all() and len(trials) == 5
    assert (epochs.epoch >= 0).sum() == 30 and not epochs.duplicated(["trial_id", "epoch"]).any()
    pd.testing.assert_frame_equal(epochs[COMPARE], reference_epochs(spec)[COMPARE])


@pytest.mark.serial
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_a_launch_that_says_how_to_finish_it(tmp_path, sig):
    """SIGINT (Ctrl-C) to the driver, or SIGTERM (scancel, `ray job stop`, `docker stop`): Tune stops the
    trials, the launch ends with its summary saying which trials did not finish and how to finish them, and
    leaves no lock; launching again finishes the sweep."""
    spec = write_spec(tmp_path, grid={"onset": [0, 1, 2, 3], "length": [2]}, epochs=6)
    folder = tmp_path / "res" / "tiny"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", str(tmp_path / "res")]
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (folder / "live.json").exists():  # (a trial has trained an epoch)
        time.sleep(0.1)
    driver.send_signal(sig)
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == (143 if sig == signal.SIGTERM else 1)
    assert "not finished (interrupted): launch again to finish them" in out.splitlines()[-1], out
    assert not (folder / "launch.json").exists()
    res = relaunch(cmd)
    trials, epochs = read(folder)
    assert (trials.status == "ok").all() and len(trials) == 5 and "already done" in res.stdout
    assert not epochs.duplicated(["trial_id", "epoch"]).any()


def test_only_each_trials_newest_two_checkpoints_are_kept(tmp_path):
    """What Tune's num_to_keep did, without the experiment-state snapshot it forces (launch.py)."""
    from ray.tune import Checkpoint

    from cpsweep.sweep.launch import keep_newest_checkpoints

    class Trial:
        def __init__(self, trial_id):
            self.trial_id = trial_id

    keeper = keep_newest_checkpoints(2)
    for i in range(5):
        for tid in ("a", "b"):
            folder = tmp_path / tid / f"checkpoint_{i:06d}"
            folder.mkdir(parents=True)
            (folder / "state.pt").write_bytes(b"x")
            keeper.on_checkpoint(0, [], Trial(tid), Checkpoint.from_directory(str(folder)))
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["checkpoint_000003", "checkpoint_000004"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["checkpoint_000003", "checkpoint_000004"]


def test_a_relaunch_on_another_thread_count_says_the_resumed_trials_will_not_match(tmp_path):
    from cpsweep.config.sweep_file import parse_sweep
    from cpsweep.storage.store import Store
    from cpsweep.sweep.launch import thread_change, write_spec as write_spec_yaml

    store = Store(str(tmp_path / "res"))
    assert thread_change(store, parse_sweep(tiny_sweep())) is None  # no results yet
    write_spec_yaml(store, parse_sweep(tiny_sweep()))  # resources.cpu: 1
    assert thread_change(store, parse_sweep(tiny_sweep())) is None
    assert thread_change(store, parse_sweep(tiny_sweep(resources={"cpu": 1.5}))) is None  # (1 thread either way)
    note = thread_change(store, parse_sweep(tiny_sweep(resources={"cpu": 2})))
    assert note == ("sweep tiny: note: resources.cpu is 2 where the results so far ran with 1; on the CPU a trial's "
                    "arithmetic depends on its thread count, so the trials resumed now match neither count's "
                    "uninterrupted run bit for bit (the numerics column records the count each trial finished with)")
    assert thread_change(store, parse_sweep(tiny_sweep(resources={"cpu": 2, "gpu": 1}))) is None  # (on GPUs)


@pytest.mark.parametrize("sigint", ["default", "ignored"])
def test_sigterm_outside_tune_interrupts_even_where_sigint_is_ignored(sigint):
    """Before and after Tune runs (planning, flushing, the report) SIGTERM interrupts the launch as Ctrl-C
    would, also in a driver started in the background by a script (SIGINT ignored there); the handler before
    it comes back after the block."""
    code = ("import os, signal, time\n"
            f"signal.signal(signal.SIGINT, signal.{'SIG_IGN' if sigint == 'ignored' else 'default_int_handler'})\n"
            "from cpsweep.sweep.launch import TERMINATED, sigterm_as_ctrl_c\n"
            "try:\n"
            "    with sigterm_as_ctrl_c():\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "        time.sleep(5)\n"
            "    print('not interrupted')\n"
            "except KeyboardInterrupt:\n"
            "    print('interrupted', TERMINATED.is_set(), signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.stdout.strip() == "interrupted True True", res.stdout + res.stderr
