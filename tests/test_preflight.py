"""Preflight (issue 14, item 2): a data set that cannot be loaded stops a launch before any trial, in one
line naming the data set, the folder and the fix (exit 2); inside a trial the same error is never retried.
So does a Fisher probe the (subset of the) training set cannot supply."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pandas as pd
import pytest
from tiny_specs import tiny_sweep, write_spec

from cpsweep.config.sweep_file import parse_sweep
from cpsweep.errors import DataError, SpecError
from cpsweep.sweep.preflight import check_data, check_probes, data_needs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIFAR = {"model": {"name": "all_cnn_c", "width": 0.25}, "fisher": {"every": 0}}


def test_data_needs_are_the_distinct_sets_and_folders():
    raw = tiny_sweep(grid={"onset": [0], "length": [2], "data.data_dir": ["/a", "/b"]})
    needs = data_needs(parse_sweep(raw).trials())
    assert [(n.name, n.data_dir) for n in needs] == [("mnist1d", "/a"), ("mnist1d", "/b")]


def _fewest_per_class(subset: int) -> tuple[int, int]:
    """The smallest class of MNIST-1D's training set cut to `subset`, counted by hand from the set a trial
    loads (`load_dataset(subset=...)`): (its count, its class)."""
    from cpsweep.engine.data import load_dataset, resolve_data_dir

    y = load_dataset("mnist1d", data_dir=resolve_data_dir(None), subset=subset).y_train.tolist()
    counts = {c: 0 for c in range(10)}
    for label in y:
        counts[label] += 1
    return min((n, c) for c, n in counts.items())


@pytest.mark.parametrize("subset", [None, 40, 256])
def test_the_probe_check_fails_exactly_where_a_trial_could_not_draw_its_probe(subset):
    """`check_probes` refuses a probe iff the trial's own draw (`class_balanced_probe` on the labels the
    trial loads) would raise, and its message gives the smallest class's count and name."""
    from cpsweep.engine.data import load_dataset, resolve_data_dir
    from cpsweep.engine.sampling import class_balanced_probe

    whole = load_dataset("mnist1d", data_dir=resolve_data_dir(None))
    y = load_dataset("mnist1d", data_dir=resolve_data_dir(None), subset=subset).y_train
    fewest, short = _fewest_per_class(subset) if subset else _fewest_per_class(len(whole.y_train))
    for per_class in (1, fewest, fewest + 1):
        trial = parse_sweep(tiny_sweep(data={"name": "mnist1d", "subset": subset},
                                       fisher={"every": 1, "probe_per_class": per_class})).trials()[0]
        try:
            class_balanced_probe(y, per_class, seed=0, num_classes=10)
            drawn = True
        except DataError:
            drawn = False
        if drawn:
            check_probes(whole, [trial])
            continue
        with pytest.raises(SpecError) as e:
            check_probes(whole, [trial], source="s.yaml")
        assert str(e.value) == (f"s.yaml: fisher.probe_per_class: the Fisher probe takes {per_class} training examples"
                                f" of every class, but mnist1d's training set"
                                + (f" cut to data.subset: {subset}" if subset else "")
                                + f" has {fewest} of class {short}; lower fisher.probe_per_class to {fewest} or less"
                                + (" or raise data.subset" if subset else ""))
    assert per_class == fewest + 1 and not drawn  # (the last case was the refused one)
    no_fisher = parse_sweep(tiny_sweep(data={"name": "mnist1d", "subset": subset},
                                       fisher={"every": 0, "probe_per_class": fewest + 1})).trials()
    check_data(data_needs(no_fisher), no_fisher)  # a trial that never measures the Fisher draws no probe


def test_a_class_without_any_example_names_the_subset_not_a_probe_of_zero():
    """data.subset: 3 leaves most of MNIST-1D's 10 classes without an example: the fix is a larger subset (the
    message said to lower fisher.probe_per_class to 0, which must be at least 1); a whole training set without
    a class names fisher.every."""
    import dataclasses

    from cpsweep.engine.data import load_dataset, resolve_data_dir

    whole = load_dataset("mnist1d", data_dir=resolve_data_dir(None))
    fewest, short = _fewest_per_class(3)
    assert fewest == 0
    trial = parse_sweep(tiny_sweep(data={"name": "mnist1d", "subset": 3},
                                   fisher={"every": 2, "probe_per_class": 1})).trials()[0]
    with pytest.raises(SpecError) as e:
        check_probes(whole, [trial], source="s.yaml")
    assert str(e.value) == (f"s.yaml: data.subset: 3 leaves class {short} of mnist1d's training set without any "
                            f"training example, and the Fisher probe takes 1 training example of every class; raise "
                            f"data.subset")
    trial = parse_sweep(tiny_sweep(data={"name": "mnist1d"}, fisher={"every": 2, "probe_per_class": 2})).trials()[0]
    with pytest.raises(SpecError) as e:  # (a plug-in's labels that leave out a class of its num_classes)
        check_probes(dataclasses.replace(whole, num_classes=11), [trial], source="s.yaml")
    assert str(e.value) == ("s.yaml: fisher.every: mnist1d's training set has no example of class 10 (of 11 "
                            "classes), and the Fisher probe takes 2 training examples of every class; give it "
                            "examples of every class, or set fisher.every: 0 to measure no Fisher")


def test_a_probe_larger_than_a_class_stops_the_launch_before_ray_starts(tmp_path):
    fewest, short = _fewest_per_class(256)
    spec = write_spec(tmp_path, data={"name": "mnist1d", "subset": 256}, fisher={"every": 2, "probe_per_class": 30})
    res = subprocess.run([sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", str(tmp_path / "out")],
                         cwd=ROOT, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}, capture_output=True,
                         text=True, timeout=300, check=False)
    assert res.returncode == 2 and res.stdout == "", res.stderr
    assert res.stderr.splitlines() == [
        f"cpsweep: error: {spec}: fisher.probe_per_class: the Fisher probe takes 30 training examples of every class, "
        f"but mnist1d's training set cut to data.subset: 256 has {fewest} of class {short}; lower "
        f"fisher.probe_per_class to {fewest} or less or raise data.subset"]
    assert fewest < 30 and not (tmp_path / "out").exists()  # nothing written, no Ray started


@pytest.mark.slow
def test_an_offline_launch_stops_before_any_trial_with_one_line(tmp_path):
    empty = tmp_path / "data"
    spec = write_spec(tmp_path, data={"name": "cifar10", "data_dir": str(empty)}, **CIFAR)
    # offline: every download goes to a proxy that refuses connections
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "http_proxy": "http://127.0.0.1:9",
           "https_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    start = time.time()
    res = subprocess.run([sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", str(tmp_path / "out")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 2, res.stderr
    assert res.stdout == "" and "Traceback" not in res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"cpsweep: error: cannot load data set cifar10 from data_dir {empty} (")
    assert "download" in lines[0]  # the fix: where to put the files, or how to download them
    assert not (tmp_path / "out").exists()  # nothing written, no Ray started, no trial tried
    assert time.time() - start < 120


@pytest.mark.slow
def test_a_data_error_inside_a_trial_is_not_retried(tmp_path, ray_local, monkeypatch, capsys):
    """A node that joined after the preflight (here: the preflight skipped) cannot load the data: each trial
    reports it once, Tune does not retry it, and the launch ends with the one line (exit 2 from the CLI)."""
    from cpsweep.sweep import launch as launch_module

    monkeypatch.setattr(launch_module, "check_data", lambda *args: None)
    blocker = tmp_path / "file"
    blocker.write_text("a file where the data folder should be")
    raw = tiny_sweep(data={"name": "cifar10", "data_dir": str(blocker / "data")}, **CIFAR)
    with pytest.raises(DataError, match=r"^3 trial\(s\) of sweep tiny could not load their data \(not retried;.*"
                                        r"cannot load data set cifar10 from data_dir "):
        launch_module.launch(raw, storage=str(tmp_path / "out"), report=False)
    out = capsys.readouterr().out
    assert out.count("failed ") == 3 and "cannot load data set cifar10" in out and "after retries" not in out
    trials = pd.read_parquet(tmp_path / "out" / "tiny" / "trials.parquet")
    assert (trials.status == "failed").all() and trials.error.str.contains("cannot load data set cifar10").all()
    errors = list((tmp_path / "out" / "tiny" / "tune").rglob("error.txt"))
    assert errors == []  # Tune recorded no error: nothing was raised, so nothing was retried


@pytest.mark.slow
def test_a_node_that_cannot_load_the_data_stops_the_launch_before_any_trial(tmp_path, ray_cluster):
    """Checked through Ray on each node that can run a trial: here the worker node's data folder (its own
    $CPSWEEP_DATA_DIR) holds a corrupt MNIST-1D cache, while the driver's is fine."""
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "mnist1d.npz").write_bytes(b"not an npz archive")
    cluster = ray_cluster()
    cluster.start_head("--num-cpus=1")
    cluster.add_worker("--num-cpus=1", env={"CPSWEEP_DATA_DIR": str(bad)})
    spec = write_spec(tmp_path)
    res = subprocess.run([sys.executable, "-m", "cpsweep.cli", "launch", spec, "--address", cluster.address,
                          "--storage", str(tmp_path / "out"), "--shared-storage"], cwd=ROOT, env=cluster.env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 2 and "Traceback" not in res.stderr + res.stdout, res.stderr
    (line,) = [x for x in res.stderr.splitlines() if x.startswith("cpsweep: error:")]
    assert line.startswith("cpsweep: error: on node ") and f"cannot read the MNIST-1D cache {bad / 'mnist1d.npz'}" in line
    assert line.endswith("delete it and it will be generated again")
    assert not list((tmp_path / "out").rglob("shards")) and not list((tmp_path / "out").rglob("tune"))
