"""The Ray Tune function trainable: a short adapter from a `TrialTask` and Tune's checkpoints to the engine.

Each trained epoch's record is reported to Tune (the record at initialisation, epoch -1, only goes into the
trial's records, checkpoints and shard); every `checkpoint_every` epochs (and at the last) together with
a checkpoint (`checkpoints.py`). A retried trial resumes from Tune's latest checkpoint; a trial of a
relaunched sweep from its task's `resume_from`; a trial that branches from a shared prefix from that
prefix checkpoint, and a trial others branch from saves theirs before it reports the branch epoch. When
the trial ends it writes its shard of the results tables, with the id of the Ray node it ran on; a
diverged trial writes its shard with status `diverged` and returns normally, so the sweep goes on.
"""

from __future__ import annotations

import math
import tempfile
from typing import Any

import ray
import torch
from ray import tune

from ..engine.data import load_data
from ..engine.trial import train_trial
from ..errors import DataError, TrialDiverged
from ..results.records import EpochRecord, trained
from ..results.store import Store
from .checkpoints import load_prefix, read_checkpoint, save_prefix, write_checkpoint
from .preflight import DATA_ERROR
from .task import TrialTask


def record_metrics(record: EpochRecord) -> dict[str, Any]:
    """A record as flat Tune metrics (per-layer Fisher traces as `fisher/<layer>`)."""
    metrics = {k: v for k, v in record.to_row().items() if k != "trial_id"}
    metrics.update({f"fisher/{name or 'model'}": v for name, v in record.fisher_layers.items()})
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def starting_point(task: TrialTask, store: Store) -> tuple[dict | None, list[EpochRecord], int]:
    """(state, records so far, epochs taken from a shared prefix): Tune's own checkpoint of a retried
    trial, else this trial's checkpoint from an earlier launch, else the prefix it branches from, else
    nothing (train from scratch)."""
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and task.resume_from:
        checkpoint = tune.Checkpoint(task.resume_from)
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            return read_checkpoint(folder)
    if task.branch_key:
        try:
            state, records = load_prefix(store, task.branch_key, task.trial)
            return state, records, len(trained(records))
        except OSError:  # removed or unreadable: train the prefix again (the same records, later)
            pass
    return None, [], 0


def run_trial(config: dict[str, Any]) -> None:
    """Train one trial under Tune (the function trainable)."""
    task = TrialTask.from_config(config)
    trial = task.trial
    torch.set_num_threads(max(1, int(task.cpus)))
    device = "cuda" if task.gpus > 0 and torch.cuda.is_available() else "cpu"
    save = dict(task.save)
    store = Store(task.store)
    state, records, shared = starting_point(task, store)
    node = ray.get_runtime_context().get_node_id()  # recorded with the results: where the trial finished
    every = trial.checkpoint_every
    try:  # a data set that cannot be loaded, or too small for the probe, fails the same on every retry:
        # reported, not raised (`preflight.py`)
        run = train_trial(trial, device, resume=state, data=load_data(trial.data, device))
    except DataError as e:
        tune.report({DATA_ERROR: str(e)})
        return
    if run.epoch in save:  # a trial that starts exactly where others branch
        save_prefix(store, save[run.epoch], run.state_dict(), records)
    if run.epoch >= trial.epochs:  # every epoch came from a shared prefix
        tune.report(record_metrics(records[-1]))
    provenance = {"spec_hash": task.spec_hash, "git_commit": task.git_commit, "node": node, "shared": shared}
    try:
        for record in run:
            records.append(record)
            if record.epoch < 0:  # the record at initialisation: kept with the records, not a Tune iteration
                continue
            metrics = record_metrics(record)
            if run.epoch in save:  # before the report that releases the trials branching here
                save_prefix(store, save[run.epoch], run.state_dict(), records)
            if (record.epoch + 1) % every == 0 or record.epoch == trial.epochs - 1:
                with tempfile.TemporaryDirectory() as folder:
                    write_checkpoint(folder, run.state_dict(), records, trial.trial_id, node, shared)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
            else:
                tune.report(metrics)
    except TrialDiverged as e:
        store.write_shard(trial, records, "diverged", str(e), **provenance)
        tune.report({"epoch": e.epoch, "diverged": True})
        return
    store.write_shard(trial, records, "ok", "", **provenance)
