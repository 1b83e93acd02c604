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
import io
import json
import math
import os
import tempfile
from typing import Any

import ray
import torch
from ray import tune

from .data import cached_dataset
from .errors import CpsweepError, TrialDiverged
from .spec import TrialSpec
from .store import Store
from .train import EpochRecord, load_checkpoint, save_checkpoint, train_trial


def record_metrics(record: EpochRecord) -> dict[str, Any]:
    """A record as flat Tune metrics (per-layer Fisher traces as `fisher/<layer>`)."""
    metrics = {k: v for k, v in record.to_row().items() if k != "trial_id"}
    metrics.update({f"fisher/{name or 'model'}": v for name, v in record.fisher_layers.items()})
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def records_json(records: list[EpochRecord]) -> str:
    return json.dumps([dataclasses.asdict(r) for r in records])


def records_from_json(text: str | bytes, trial_id: str | None = None) -> list[EpochRecord]:
    """Records read back (under `trial_id` instead of their own, when given)."""
    rename = {"trial_id": trial_id} if trial_id is not None else {}
    return [EpochRecord(**{**r, **rename}) for r in json.loads(text)]


# what `write_checkpoint` writes; Tune uploads them one after the other, so a checkpoint in storage is
# complete only when all three are there
CHECKPOINT_FILES = ("state.pt", "records.json", "meta.json")


def write_checkpoint(folder: str, state: dict[str, Any], records: list[EpochRecord], trial_id: str,
                     node: str = "", shared: int = 0) -> None:
    save_checkpoint(state, os.path.join(folder, "state.pt"))
    with open(os.path.join(folder, "records.json"), "w") as f:
        f.write(records_json(records))
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump({"trial_id": trial_id, "epoch": state["epoch"], "node": node, "shared_epochs": shared}, f)


def read_checkpoint(checkpoint: tune.Checkpoint) -> tuple[dict[str, Any], list[EpochRecord], int]:
    """A checkpoint's training state, records so far, and how many of them came from a shared prefix."""
    with checkpoint.as_directory() as folder:
        state = load_checkpoint(os.path.join(folder, "state.pt"))
        with open(os.path.join(folder, "records.json")) as f:
            records = records_from_json(f.read())
        with open(os.path.join(folder, "meta.json")) as f:
            shared = int(json.load(f).get("shared_epochs", 0))
    return state, records, shared


def save_prefix(store: Store, key: str, state: dict[str, Any], records: list[EpochRecord]) -> None:
    """A prefix checkpoint (`prefixes/<key>/`): the training state after `state["epoch"]` epochs and their
    records, for the trials that branch there; `meta.json` last, as the completion marker."""
    buf = io.BytesIO()
    torch.save(state, buf)
    store.write_bytes(buf.getvalue(), "prefixes", key, "state.pt")
    store.write_bytes(records_json(records).encode(), "prefixes", key, "records.json")
    meta = {"key": key, "epoch": state["epoch"], "trial_id": records[-1].trial_id if records else ""}
    store.write_bytes(json.dumps(meta).encode(), "prefixes", key, "meta.json")


def load_prefix(store: Store, key: str, trial: TrialSpec) -> tuple[dict[str, Any], list[EpochRecord]]:
    """A prefix checkpoint, made `trial`'s own: its records renamed, its state marked as this trial's (the
    plan matched the prefix keys, so the state is the one this trial would have reached)."""
    state = torch.load(io.BytesIO(store.read_bytes("prefixes", key, "state.pt")), map_location="cpu",
                       weights_only=True)
    records = records_from_json(store.read_bytes("prefixes", key, "records.json"), trial.trial_id)
    if len(records) != state["epoch"]:
        raise CpsweepError(f"prefix checkpoint {store.uri}/prefixes/{key} is inconsistent "
                           f"({len(records)} records for epoch {state['epoch']}); remove it and relaunch")
    state["trial"] = trial.to_dict()
    return state, records


def run_trial(config: dict[str, Any]) -> None:
    """Train one trial under Tune (the function trainable)."""
    trial = TrialSpec.from_dict(config["t"]["trial"])
    torch.set_num_threads(max(1, int(config["cpus"])))
    device = "cuda" if config["gpus"] > 0 and torch.cuda.is_available() else "cpu"
    start = config["t"].get("start") or {}
    save = {int(epoch): key for epoch, key in start.get("save", [])}
    store = Store(config["store"])
    checkpoint = tune.get_checkpoint()
    if checkpoint is None and config["t"]["resume_from"]:
        checkpoint = tune.Checkpoint(config["t"]["resume_from"])
    if checkpoint is not None:
        state, records, shared = read_checkpoint(checkpoint)
    else:
        state, records, shared = None, [], 0
        if start.get("branch_key"):
            try:
                state, records = load_prefix(store, start["branch_key"], trial)
                shared = len(records)
            except OSError:  # removed or unreadable: train the prefix again (the same records, later)
                pass
    node = ray.get_runtime_context().get_node_id()  # recorded with the results: where the trial finished
    every = trial.checkpoint_every
    run = train_trial(trial, device, resume=state, data=cached_dataset(trial, device))
    if run.epoch in save:  # a trial that starts exactly where others branch
        save_prefix(store, save[run.epoch], run.state_dict(), records)
    if run.epoch >= trial.epochs:  # every epoch came from a shared prefix
        tune.report(record_metrics(records[-1]))
    try:
        for record in run:
            records.append(record)
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
        store.write_shard(trial, records, "diverged", str(e), config["spec_hash"], config["git_commit"], node,
                          shared)
        tune.report({"epoch": e.epoch, "diverged": True})
        return
    store.write_shard(trial, records, "ok", "", config["spec_hash"], config["git_commit"], node, shared)
