"""Shared prefixes: the plan against a brute-force trie, branching exact bit for bit, the order Tune gets them in."""

from __future__ import annotations

import copy

import pytest
import torch

from tiny_specs import GRID as GRID_CHANGES
from tiny_specs import tiny_sweep
from trial_runs import COMPARE

from cpsweep.config.sharing import cost, plan, prefix_keys, sharing_summary, subtree_epochs
from cpsweep.config.sweep_file import load_sweep, parse_sweep
from cpsweep.engine.trial import train_trial
from cpsweep.storage.store import Store

GRID = tiny_sweep(GRID_CHANGES)


def brute_force_epochs(trials) -> int:
    """Epochs of the trie of all trials' epoch sequences, written out by hand for this grid: an epoch is
    (seed, learning rate, deficit on?, Fisher measured?), a prefix the tuple of its epochs; every distinct
    non-empty prefix is one epoch to train."""
    prefixes = set()
    for t in trials:
        seq = []
        for e in range(t.epochs):
            on = t.length > 0 and t.onset <= e < t.onset + t.length
            fisher = (e + 1) % 2 == 0 or e == t.epochs - 1
            seq.append((0.05 * 0.9 ** e, on, fisher))
            prefixes.add((t.seed, tuple(seq)))
    return len(prefixes)


def test_plan_trains_every_distinct_prefix_once():
    trials = parse_sweep(GRID).trials()
    starts = plan(trials)
    # per seed: baseline 12, o0-l2 12, o0-l4 10, o2-l2 10, o2-l4 8, o4-l2 8, o4-l4 6, o8-l2 4, o8-l4 2
    assert cost(trials, starts) == brute_force_epochs(trials) == 2 * 72
    # any order of the trials gives the same cost
    assert cost(trials, plan(trials[::-1])) == cost(trials, starts)
    for t in trials:  # every branch point is a prefix both trials share, and its parent passes through it
        s = starts[t.trial_id]
        if s.parent is None:
            continue
        parent = next(u for u in trials if u.trial_id == s.parent)
        assert prefix_keys(parent)[s.epoch] == prefix_keys(t)[s.epoch] == s.branch_key
        assert starts[s.parent].save[s.epoch] == s.branch_key and t.trial_id in starts[s.parent].children
        assert starts[s.parent].epoch <= s.epoch
    # windows branch from the baseline at their onset; same-onset windows from the shorter one
    assert starts["blur-o4-l2-s1"].parent == "baseline-s1" and starts["blur-o4-l2-s1"].epoch == 4
    assert starts["blur-o4-l4-s1"].parent == "blur-o4-l2-s1" and starts["blur-o4-l4-s1"].epoch == 6
    assert starts["blur-o0-l2-s0"].parent is None and starts["blur-o0-l4-s0"].epoch == 2
    assert all(s.epoch == 0 for s in plan(trials, share=False).values())


def test_schedules_share_the_epochs_where_their_rates_agree():
    """grid.schedule: a restarted window is the plain window until its end, and so is its baseline (restarted
    at the same epoch); a constant rate shares only the first epoch (0.05 both). Cost against the trie
    written out by hand with each schedule's closed form."""
    raw = {**GRID, "replicates": 1, "grid": {**GRID["grid"], "schedule": ["exponential", "restart", "constant"]}}
    trials = parse_sweep(raw).trials()

    def lr(t, e):
        label = dict(t.tags)["schedule"]
        if label == "constant":
            return 0.05
        end = t.onset + t.length  # a window's end; a restarted baseline's onset is its restart epoch
        return 0.05 * 0.9 ** (e - end if label == "restart" and end > 0 and e >= end else e)

    prefixes = set()
    for t in trials:
        seq = []
        for e in range(t.epochs):
            on = not t.is_baseline and t.onset <= e < t.onset + t.length
            seq.append((lr(t, e), on, (e + 1) % 2 == 0 or e == t.epochs - 1))
            prefixes.add(tuple(seq))
    starts = plan(trials)
    assert cost(trials, starts) == len(prefixes)
    r = starts["blur-o4-l2-schedulerestart-s0"]
    assert (r.parent, r.epoch) == ("blur-o4-l2-scheduleexponential-s0", 6)
    b = starts["baseline-r6-schedulerestart-s0"]
    assert b.epoch == 6 and b.parent.startswith("baseline-") and "restart" not in b.parent
    by_id = {t.trial_id: prefix_keys(t) for t in trials}
    const, expo = by_id["baseline-scheduleconstant-s0"], by_id["baseline-scheduleexponential-s0"]
    assert const[1] == expo[1] and const[2] != expo[2]


def test_keys_tell_apart_what_changes_an_epoch():
    sweep = parse_sweep(GRID)
    a, b = sweep.make_trial(4, 2, 0), sweep.make_trial(8, 2, 0)
    ka, kb = prefix_keys(a), prefix_keys(b)
    assert ka[:5] == kb[:5] and ka[5] != kb[5]  # the same until epoch 4 is blurred in one of them
    other_seed = prefix_keys(sweep.make_trial(4, 2, 1))
    assert other_seed[0] != ka[0]
    other_lr = prefix_keys(parse_sweep({**GRID, "optim": {"lr": 0.1, "batch_size": 50}}).make_trial(4, 2, 0))
    assert other_lr[0] != ka[0]
    # a cosine schedule depends on the total epochs: trials of other lengths part after the first epoch
    cos = parse_sweep({**GRID, "schedule": {"name": "cosine"}})
    k12, k14 = prefix_keys(cos.make_trial(4, 2, 0, epochs=12)), prefix_keys(cos.make_trial(6, 2, 0, epochs=14))
    assert k12[1] == k14[1] and k12[2] != k14[2]
    e12, e14 = prefix_keys(sweep.make_trial(4, 2, 0, epochs=12)), prefix_keys(sweep.make_trial(6, 2, 0, epochs=14))
    assert e12[4] == e14[4] and e12[5] != e14[5]  # exponential: the same until the first window starts
    # a removal curve (windows [0, k), then 4 clean epochs, exponential): each k branches from the one before
    rem = {**GRID, "grid": {"onset": [0], "length": [2, 4, 6]}, "clean_after": 4}
    rem.pop("epochs"), rem.pop("common_end")
    trials = [t for t in parse_sweep(rem).trials() if t.seed == 0 and not t.is_baseline]
    starts = plan(trials)
    assert [starts[t.trial_id].epoch for t in trials] == [0, 2, 4]


def test_plan_uses_stored_prefixes_and_own_checkpoints():
    trials = parse_sweep(GRID).trials()
    o8 = next(t for t in trials if t.trial_id == "blur-o8-l2-s0")
    pending = [o8]
    assert plan(pending)["blur-o8-l2-s0"].epoch == 0  # nothing to branch from
    s = plan(pending, stored={prefix_keys(o8)[8]})["blur-o8-l2-s0"]
    assert (s.epoch, s.branch_key, s.parent) == (8, prefix_keys(o8)[8], None)
    s = plan(pending, stored={prefix_keys(o8)[8]}, resume={"blur-o8-l2-s0": 9})["blur-o8-l2-s0"]
    assert (s.epoch, s.branch_key) == (9, None)  # its own checkpoint is further on
    # a parent resumed past a branch point cannot save it: the child looks for an earlier one
    base = next(t for t in trials if t.trial_id == "baseline-s0")
    starts = plan([base, o8], resume={"baseline-s0": 10})
    assert starts["blur-o8-l2-s0"].epoch == 0 and not starts["baseline-s0"].save


def test_priority_is_the_longest_chain_of_work():
    trials = parse_sweep({**GRID, "replicates": 1, "grid": {"onset": [0, 4], "length": [2, 4]}}).trials()
    starts = plan(trials)
    prio = subtree_epochs(trials, starts)
    # o4-l4 branches from o4-l2 at 6, which branches from the baseline at 4: 4 + 2 + 6 = 12 epochs
    assert prio["blur-o4-l4-s0"] == 6 and prio["blur-o4-l2-s0"] == 2 + 6 and prio["baseline-s0"] == 12


def test_prefix_order_holds_children_until_their_branch_epoch():
    pytest.importorskip("ray")
    from ray.tune.search import Searcher

    from cpsweep.sweep.prefix_order import PrefixOrder
    from cpsweep.sweep.task import TrialTask

    trials = parse_sweep({**GRID, "replicates": 1, "grid": {"onset": [0, 4], "length": [2, 4]}}).trials()
    starts = plan(trials)
    ids = [t.trial_id for t in trials]
    tasks = {t.trial_id: TrialTask.plan(t, starts[t.trial_id], store="s", cpus=1, gpus=0, spec_hash="h",
                                        git_commit="") for t in trials}
    s = PrefixOrder(tasks, starts, subtree_epochs(trials, starts), ids)
    suggest = lambda trial_id: TrialTask.from_config(s.suggest(trial_id))  # noqa: E731
    got = [suggest("a").id, suggest("b").id]
    assert got == ["baseline-s0", "blur-o0-l2-s0"]
    assert s.suggest("c") is None  # the others wait
    s.on_trial_result("a", {"epoch": 2})
    assert s.suggest("c") is None  # the baseline has not reached epoch 4 yet
    s.on_trial_result("a", {"epoch": 3})  # epochs 0-3 done: the prefix at 4 is saved
    c = suggest("c")
    assert c.id == "blur-o4-l2-s0" and c.branch_key == prefix_keys(c.trial)[4] and c.branch_epoch == 4
    s.on_trial_result("b", {"epoch": 1})
    assert suggest("d").id == "blur-o0-l4-s0"
    # o4-l2 diverges at epoch 5, before o4-l4's branch epoch 6: o4-l4 starts from scratch instead
    s.on_trial_result("c", {"epoch": 4})
    s.on_trial_result("c", {"epoch": 5, "diverged": True})  # epoch 5 never finished: nothing released
    assert s.suggest("e") is None
    s.on_trial_complete("c")
    task = suggest("e")
    assert task.id == "blur-o4-l4-s0" and task.branch_key is None and task.branch_epoch is None
    assert tasks["blur-o4-l4-s0"].branch_key is not None  # the caller's tasks untouched
    assert s.suggest("f") == Searcher.FINISHED


def test_a_task_survives_the_tune_config_unchanged():
    """What crosses the process boundary: a task packed into a Tune config (plain JSON) and read back."""
    import json

    from cpsweep.sweep.task import TrialTask

    trials = parse_sweep({**GRID, "replicates": 1}).trials()
    starts = plan(trials)
    for t in trials:
        task = TrialTask.plan(t, starts[t.trial_id], resume_from="s3://b/x?endpoint_override=h", store="s3://b",
                              cpus=0.5, gpus=0.25, spec_hash="abc", git_commit="f00")
        config = json.loads(json.dumps(task.to_config()))
        assert TrialTask.from_config(config) == task and TrialTask.id_of(config) == t.trial_id
    assert any(dict(TrialTask.plan(t, starts[t.trial_id], store="", cpus=1, gpus=0, spec_hash="",
                                   git_commit="").save) for t in trials)


@pytest.mark.slow
def test_branching_is_exact(tmp_path):
    """A window trial started from the baseline's prefix checkpoint (saved and read through storage, as
    under Tune) gives the records of the same trial trained from scratch, bit for bit."""
    from cpsweep.sweep.checkpoint_store import load_prefix, save_prefix

    sweep = parse_sweep({**GRID, "replicates": 1})
    base, window = sweep.make_trial(0, 0, 0), sweep.make_trial(4, 4, 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store = Store(str(tmp_path / "res"))
        run, records = train_trial(base, "cpu"), []
        for _ in range(5):  # initialisation and 4 epochs
            records.append(next(run))
        key = prefix_keys(base)[4]
        assert key == prefix_keys(window)[4]
        save_prefix(store, key, copy.deepcopy(run.state_dict()), records)
        list(run)  # the baseline goes on; the saved prefix must not change
        state, shared = load_prefix(store, key, window)
        branched = shared + list(train_trial(window, "cpu", resume=state))
        alone = list(train_trial(window, "cpu"))
    finally:
        torch.set_num_threads(threads)
    strip = lambda r: {k: v for k, v in vars(r).items() if k not in ("seconds", "fisher_seconds")}  # noqa: E731
    assert [r.trial_id for r in branched] == [window.trial_id] * 13 and branched[0].epoch == -1
    assert [repr(strip(r)) for r in branched] == [repr(strip(r)) for r in alone]  # NaN-safe, exact


def test_validate_prints_both_costs(capsys):
    from cpsweep.cli import main

    assert main(["validate", "sweeps/blur_grid.yaml"]) == 0
    out = capsys.readouterr().out
    alone, shared = sharing_summary(load_sweep("sweeps/blur_grid.yaml").trials())
    assert f"{alone} training epochs without sharing, {shared} with shared prefixes" in out
    assert (alone, shared) == (103800, 60234)  # 3 seeds x 3 schedules (benchmarks/plan_costs.py)


@pytest.mark.slow
def test_shared_sweep_equals_unshared_and_trains_fewer_epochs(tmp_path, ray_local):
    """The same grid launched with and without sharing on a real local Ray: equal records, and Tune's
    result logs show exactly the planned epochs trained. The unshared launch also packs four trials onto
    the two CPUs (resources.cpu: 0.5, as resources.gpu: 0.25 packs four onto a GPU): packing changes
    nothing either."""
    import json

    import pandas as pd
    import yaml

    from cpsweep.sweep.launch import launch

    raw = {**GRID, "replicates": 1, "epochs": 8, "grid": {"onset": [0, 2, 4], "length": [2, 4]}}
    spec = tmp_path / "g.yaml"
    spec.write_text(yaml.safe_dump(raw))
    trials = load_sweep(str(spec)).trials()
    alone, shared = sharing_summary(trials)
    runs = {}
    for share in (True, False):
        root = tmp_path / ("shared" if share else "alone")
        raw["resources"] = {"cpu": 1 if share else 0.5}
        spec.write_text(yaml.safe_dump(raw))
        summary = launch(str(spec), storage=str(root), share=share)
        assert summary.counts["ok"] == len(trials)
        folder = root / "g"
        trained = sum(len(p.read_text().splitlines()) for p in folder.glob("tune/*/*/result.json"))
        runs[share] = (pd.read_parquet(folder / "trials.parquet").set_index("trial_id").sort_index(),
                       pd.read_parquet(folder / "epochs.parquet").sort_values(["trial_id", "epoch"])
                       .reset_index(drop=True), trained)
    (t_sh, e_sh, n_sh), (t_al, e_al, n_al) = runs[True], runs[False]
    assert (n_sh, n_al) == (shared, alone) and shared < alone
    assert sum(json.loads(p.read_text())["epoch"] >= 0 for p in (tmp_path / "shared" / "g").glob(
        "prefixes/*/meta.json")) == sum(len(s.save) for s in plan(trials).values())
    pd.testing.assert_frame_equal(e_sh[COMPARE], e_al[COMPARE], check_exact=True)
    starts = plan(trials)
    assert t_sh.shared_epochs.to_dict() == {t: starts[t].epoch for t in t_sh.index}
    assert (t_al.shared_epochs == 0).all()
    assert t_sh.final_test_acc.equals(t_al.final_test_acc)


@pytest.mark.slow
def test_a_schedule_grid_launches_and_branches_across_schedules(tmp_path, ray_local):
    """grid.schedule end to end on a real local Ray, in the shape of sweeps/blur_grid.yaml's smoke (3 epochs,
    windows [0, 1) and [1, 2), the paper's schedule and both learning-rate controls, the restarted baselines
    per window end; tests/test_smoke.py runs that file with the axis cut): every trial ok, each started where
    the plan says (branching across schedules), only the planned epochs trained, and every trial's records
    equal to the same trial trained alone from scratch in this process."""
    import json

    import pandas as pd
    import yaml
    from trial_runs import read, reference_epochs

    from cpsweep.sweep.launch import launch

    raw = {**GRID, "replicates": 1, "epochs": 3,
           "grid": {"onset": [0, 1], "length": [1], "schedule": ["exponential", "restart", "constant"]}}
    spec = tmp_path / "g.yaml"
    spec.write_text(yaml.safe_dump(raw))
    trials = load_sweep(str(spec)).trials()
    starts = plan(trials)
    assert "baseline-r1-schedulerestart-s0" in starts and "baseline-r2-schedulerestart-s0" in starts
    schedule = {t.trial_id: dict(t.tags)["schedule"] for t in trials}
    assert any(s.parent and schedule[s.parent] != schedule[t] for t, s in starts.items())  # across schedules
    summary = launch(str(spec), storage=str(tmp_path / "res"))
    assert summary.counts["ok"] == len(trials) == 11
    folder = tmp_path / "res" / "g"
    trained = {t.trial_id: list(range(starts[t.trial_id].epoch, t.epochs)) for t in trials}
    assert sum(map(len, trained.values())) == sharing_summary(trials)[1] < sharing_summary(trials)[0]
    for tid, planned in trained.items():  # Tune's result log holds the epochs trained; a trial whose every
        # epoch came from a prefix (here the restarted baseline, which never restarts) reports the last, once
        (log,) = folder.glob(f"tune/*/{tid}/result.json")
        reported = [json.loads(line)["epoch"] for line in log.read_text().splitlines()]
        assert reported == (planned or [raw["epochs"] - 1]), tid
    assert trained["baseline-schedulerestart-s0"] == []
    got, epochs = read(folder)
    assert got.set_index("trial_id").shared_epochs.to_dict() == {t: s.epoch for t, s in starts.items()}
    pd.testing.assert_frame_equal(epochs[COMPARE], reference_epochs(raw)[COMPARE], check_exact=True)


@pytest.mark.slow
def test_children_of_a_diverged_parent_run_from_scratch(tmp_path, ray_local):
    """[2, 3) diverges in epoch 2 (noise of std 1e38), before [2, 5) could branch from it at epoch 3: the
    searcher starts [2, 5) from scratch, which diverges in the same epoch, and the sweep ends."""
    import pandas as pd
    import yaml

    from cpsweep.sweep.launch import launch

    raw = {**GRID, "replicates": 1, "epochs": 6, "deficit": {"name": "noise", "std": 1e38},
           "grid": {"onset": [2], "length": [1, 3]}}
    spec = tmp_path / "d.yaml"
    spec.write_text(yaml.safe_dump(raw))
    starts = plan(load_sweep(str(spec)).trials())
    assert starts["noise-o2-l3-s0"].parent == "noise-o2-l1-s0" and starts["noise-o2-l3-s0"].epoch == 3
    summary = launch(str(spec), storage=str(tmp_path / "res"))
    assert summary.counts["diverged"] == 2 and summary.counts["ok"] == 1
    trials = pd.read_parquet(tmp_path / "res" / "g" / "trials.parquet").set_index("trial_id")
    assert trials.status.to_dict() == {"baseline-s0": "ok", "noise-o2-l1-s0": "diverged",
                                       "noise-o2-l3-s0": "diverged"}
    assert trials.shared_epochs.to_dict() == {"baseline-s0": 0, "noise-o2-l1-s0": 2, "noise-o2-l3-s0": 0}
    assert trials.error.str.contains("epoch 2").sum() == 2
