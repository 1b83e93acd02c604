"""The Ray Tune function trainable: a short adapter from a `TrialTask` and Tune's checkpoints to the engine.

Each trained epoch's record is reported to Tune (the record at initialisation, epoch -1, only goes into the
trial's records, checkpoints and shard); every `checkpoint_every` epochs (and at the last) together with
a checkpoint (`checkpoint_store.py`). A retried trial resumes from Tune's latest checkpoint; a trial of a
relaunched sweep from its task's `resume_from`; a trial that branches from a shared prefix from that
prefix checkpoint, and a trial others branch from saves theirs before it reports the branch epoch. When
the trial ends it writes its shard of the results tables, with the id of the Ray node it ran on; a
diverged trial writes its shard with status `diverged` and returns normally, so the sweep goes on. A
trial that fails for a reason a retry cannot change reports it and ends without a shard (`run_trial`).
"""

from __future__ import annotations

import math
import sys
import tempfile
import traceback
from typing import Any

import ray
import torch
from ray import tune

from ..config.views import checkpoint_identity
from ..engine import _device
from ..engine.data import load_data
from ..engine.numerics import prepare_process
from ..engine.trial import train_trial
from ..errors import CpsweepError, DataError, StorageError, TrialDiverged
from ..storage.records import EpochRecord, trained
from ..storage.store import Store
from .checkpoint_store import DAMAGED, load_prefix, read_checkpoint, save_prefix, write_checkpoint
from .preflight import DATA_ERROR, TRIAL_ERROR
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
        try:
            with checkpoint.as_directory() as folder:
                state, records, shared = read_checkpoint(folder)
        except DAMAGED as e:  # cut short or damaged: an earlier point, the same results (an OSError: retried)
            print(f"cpsweep: {task.trial.trial_id}: checkpoint {checkpoint.path} is damaged ({e}); starting "
                  f"from its prefix or from scratch", file=sys.stderr)
            state = None
        if state is not None:
            stored = state.get("trial") if isinstance(state.get("trial"), dict) else {}
            if checkpoint_identity(stored, type(task.trial)) == checkpoint_identity(task.trial):
                return state, records, shared
        # an earlier launch's checkpoint taken with other plug-in code: start over (below)
    if task.branch_key:
        try:
            state, records = load_prefix(store, task.branch_key, task.trial)
            return state, records, len(trained(records))
        except (OSError, *DAMAGED):  # removed, cut short or unreadable: train the prefix again (same records)
            pass
    return None, [], 0


def run_trial(config: dict[str, Any]) -> None:
    """Train one trial under Tune (the function trainable). An error that would recur on every retry (a
    data set that cannot be loaded, a mistake in a plug-in or a spec, any exception of the computation) is
    reported to the driver instead of raised, so Tune never retries it; its traceback goes to
    `logs/<trial id>.txt` in the results folder. Errors of the machine (memory, files, the network, Ray)
    are raised: Tune retries the trial from its last checkpoint."""
    task = TrialTask.from_config(config)
    store = Store(task.store)
    try:
        train(task, store)
    except DataError as e:  # (before any epoch: the preflight's message, `preflight.py`)
        tune.report({DATA_ERROR: str(e)})
    except Exception as e:  # noqa: BLE001 - sorted into deterministic and transient right here
        if transient(e):
            raise
        tune.report({TRIAL_ERROR: fail_for_good(task, store, e)})


def transient(e: BaseException) -> bool:
    """Whether a retry could succeed: out of memory, a file or network error, storage, Ray itself."""
    return (isinstance(e, (OSError, MemoryError, TimeoutError, StorageError, torch.OutOfMemoryError))
            or type(e).__module__.split(".")[0] == "ray")


def fail_for_good(task: TrialTask, store: Store, e: BaseException) -> str:
    """The one line the driver prints for a deterministic failure; the full traceback written to the
    trial's log file (best effort: the line is what matters)."""
    log = store.uri_of("logs", f"{task.id}.txt")
    text = "".join(traceback.format_exception(e))
    try:
        store.write_bytes(f"trial {task.id}\n{text}".encode(), "logs", f"{task.id}.txt")
    except CpsweepError:
        log = "not written"
    message = " ".join(str(e).split()) or type(e).__name__
    prefix = "" if isinstance(e, CpsweepError) else f"{type(e).__name__}: "
    return f"{prefix}{message[:300]} (not retried: it would fail again; traceback: {log})"


def trial_device(trial_id: str, gpus: float) -> str:
    """Where a trial given `gpus` GPUs (resources.gpu) trains: "cuda", or "cpu" for none. A trial given a
    GPU where torch finds none fails (deterministically: not retried) instead of training on the CPU."""
    return _device.choose(None, gpus, f"trial {trial_id}", "resources.gpu")


def train(task: TrialTask, store: Store) -> None:
    """The trial's epochs from its starting point, reported to Tune; its shard written at the end."""
    trial = task.trial
    torch.set_num_threads(max(1, int(task.cpus)))
    prepare_process(trial.engine)  # before the trial's first CUDA call
    device = trial_device(task.id, task.gpus)
    save = dict(task.save)
    state, records, shared = starting_point(task, store)
    node = ray.get_runtime_context().get_node_id()  # recorded with the results: where the trial finished
    every = trial.checkpoint_every
    run = train_trial(trial, device, resume=state, data=load_data(trial.data, device))
    if run.epoch in save:  # a trial that starts exactly where others branch
        save_prefix(store, save[run.epoch], run.state_dict(), records)
    if run.epoch >= trial.epochs:  # every epoch came from a shared prefix
        tune.report(record_metrics(records[-1]))
    provenance = {"spec_hash": task.spec_hash, "git_commit": task.git_commit, "node": node, "shared": shared,
                  "numerics": run.numerics}
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
