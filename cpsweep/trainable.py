"""The Ray Tune function trainable: a short adapter from Tune's config and checkpoints to `train_trial`.

Config keys (built by `sweep.py`): `t` (this trial's grid point: `id`, `trial` (a `TrialSpec.to_dict()`),
`resume_from` (a checkpoint of this trial left by an earlier launch, or None)), and for every trial
`store` (the sweep's results URI), `cpus`, `gpus` (one trial's resources), `spec_hash`, `git_commit`.

Each epoch's record is reported to Tune; every `checkpoint_every` epochs (and at the last) together with
a checkpoint: the training state (`state.pt`, read back with `weights_only=True`), the records so far
(`records.json`) and `meta.json` (trial id, epoch, and the id of the Ray node that wrote it). A retried
trial resumes from Tune's latest checkpoint; a trial of a relaunched sweep from `resume_from`. When the
trial ends it writes its shard of the results tables, with the id of the Ray node it ran on; a diverged
trial writes its shard with status `diverged` and returns normally, so the sweep goes on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from typing import Any

import ray
import torch
from ray import tune

from .errors import TrialDiverged
from .spec import TrialSpec
from .store import Store
from .train import EpochRecord, load_checkpoint, save_checkpoint, train_trial


def record_metrics(record: EpochRecord) -> dict[str, Any]:
    """A record as flat Tune metrics (per-layer Fisher traces as `fisher/<layer>`)."""
    metrics = {k: v for k, v in record.to_row().items() if k != "trial_id"}
    metrics.update({f"fisher/{name or 'model'}": v for name, v in record.fisher_layers.items()})
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


# what `write_checkpoint` writes; Tune uploads them one after the other, so a checkpoint in storage is
# complete only when all three are there
CHECKPOINT_FILES = ("state.pt", "records.json", "meta.json")


def write_checkpoint(folder: str, state: dict[str, Any], records: list[EpochRecord], trial_id: str,
                     node: str = "") -> None:
    save_checkpoint(state, os.path.join(folder, "state.pt"))
    with open(os.path.join(folder, "records.json"), "w") as f:
        json.dump([dataclasses.asdict(r) for r in records], f)
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump({"trial_id": trial_id, "epoch": state["epoch"], "node": node}, f)


def read_checkpoint(checkpoint: tune.Checkpoint) -> tuple[dict[str, Any], list[EpochRecord]]:
    with checkpoint.as_directory() as folder:
        state = load_checkpoint(os.path.join(folder, "state.pt"))
        with open(os.path.join(folder, "records.json")) as f:
            records = [EpochRecord(**r) for r in json.load(f)]
    return state, records


def run_trial(config: dict[str, Any]) -> None:
    """Train one trial under Tune (the function trainable)."""
    trial = TrialSpec.from_dict(config["t"]["trial"])
    torch.set_num_threads(max(1, int(config["cpus"])))
    device = "cuda" if config["gpus"] > 0 and torch.cuda.is_available() else "cpu"
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and config["t"]["resume_from"]:
        checkpoint = tune.Checkpoint(config["t"]["resume_from"])
    state, records = read_checkpoint(checkpoint) if checkpoint is not None else (None, [])
    store = Store(config["store"])
    node = ray.get_runtime_context().get_node_id()  # recorded with the results: where the trial finished
    every = trial.checkpoint_every
    run = train_trial(trial, device, resume=state)
    try:
        for record in run:
            records.append(record)
            metrics = record_metrics(record)
            if (record.epoch + 1) % every == 0 or record.epoch == trial.epochs - 1:
                with tempfile.TemporaryDirectory() as folder:
                    write_checkpoint(folder, run.state_dict(), records, trial.trial_id, node)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))
            else:
                tune.report(metrics)
    except TrialDiverged as e:
        store.write_shard(trial, records, "diverged", str(e), config["spec_hash"], config["git_commit"], node)
        tune.report({"epoch": e.epoch, "diverged": True})
        return
    store.write_shard(trial, records, "ok", "", config["spec_hash"], config["git_commit"], node)
