"""Checkpoints cut short or damaged in storage (a node killed while Tune copies a checkpoint's files, which
it does in parallel and not atomically; a full disk): a relaunch resumes from the checkpoint before it, or
from the trial's shared prefix, or from scratch, never fails the trial for good; the results are the same,
as a trial is a pure function of its spec and seed."""

from __future__ import annotations

import os
import warnings

import pytest

from tiny_specs import UNIT, tiny_sweep

from cpsweep.config.sharing import Start, prefix_keys
from cpsweep.config.sweep_file import parse_sweep
from cpsweep.engine.trial import train_trial
from cpsweep.storage.records import trained
from cpsweep.storage.store import Store
from cpsweep.sweep.checkpoint_store import (DamagedCheckpoint, load_prefix, newest_checkpoints, read_checkpoint,
                                            save_prefix, write_checkpoint)
from cpsweep.sweep.task import TrialTask


def trained_for(trial, epochs: int):
    """The run after `epochs` epochs (and its records: initialisation included)."""
    run = train_trial(trial, "cpu")
    records = [next(run) for _ in range(epochs + 1)]
    return run, records


def cut(path, size: int | None = None, garbage: bool = False) -> None:
    """Cut a file short (to `size` bytes, default half), or overwrite it with as many bytes of garbage."""
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(b"x" * len(data) if garbage else data[: len(data) // 2 if size is None else size])


@pytest.fixture(scope="module")
def trial():
    return parse_sweep(tiny_sweep(UNIT)).make_trial(0, 0, 0)


def test_a_checkpoint_cut_short_is_passed_over_for_the_one_before(tmp_path, trial):
    store = Store(str(tmp_path / "res"))
    folder = tmp_path / "res" / "tune" / "launch-1" / trial.trial_id
    run, records = trained_for(trial, 1)
    for epoch in (1, 2):
        ckpt = folder / f"checkpoint_00000{epoch}"
        ckpt.mkdir(parents=True)
        write_checkpoint(str(ckpt), run.state_dict(), records, trial.trial_id)
        if epoch == 1:
            records.append(next(run))
    assert newest_checkpoints(store, [trial.trial_id])[trial.trial_id][0] == 2
    cut(folder / "checkpoint_000002" / "state.pt")  # meta.json complete, state.pt cut short
    assert newest_checkpoints(store, [trial.trial_id])[trial.trial_id] == (1, store.uri_of(
        f"tune/launch-1/{trial.trial_id}/checkpoint_000001"))
    with pytest.raises(DamagedCheckpoint, match="state.pt holds .* bytes, not the .* written"):
        read_checkpoint(str(folder / "checkpoint_000002"))


def test_a_damaged_checkpoint_or_prefix_starts_the_trial_from_an_earlier_point(tmp_path, trial):
    from cpsweep.sweep.trainable import starting_point

    store = Store(str(tmp_path / "res"))
    run, records = trained_for(trial, 1)
    key = prefix_keys(trial)[1]
    save_prefix(store, key, run.state_dict(), records)
    records.append(next(run))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    write_checkpoint(str(ckpt), run.state_dict(), records, trial.trial_id)
    task = TrialTask.plan(trial, Start(trial.trial_id, epoch=1, branch_key=key), resume_from=str(ckpt),
                          store=store.uri, cpus=1, gpus=0, spec_hash="", git_commit="")
    with warnings.catch_warnings():  # (tune.get_checkpoint outside a Tune session: None, with a warning)
        warnings.simplefilter("ignore")
        assert starting_point(task, store)[0]["epoch"] == 2  # the trial's own checkpoint
        cut(ckpt / "state.pt", garbage=True)  # the size it should have, bytes torch cannot read
        state, got, shared = starting_point(task, store)
        assert state["epoch"] == 1 and shared == 1 and len(trained(got)) == 1  # its prefix
        cut(os.path.join(store.path("prefixes"), key, "state.pt"))
        with pytest.raises(DamagedCheckpoint, match="prefix checkpoint .* holds .* bytes, not the .* written"):
            load_prefix(store, key, trial)
        assert starting_point(task, store) == (None, [], 0)  # scratch
