"""Experiment trackers (W&B, MLflow), fed by the driver: one tracker run per trial, logged against the
trial's own epoch.

A run is named by the trial id and identified by (sweep name, trial id), so a relaunch that resumes or
finishes a trial logs into the same run (W&B: a fixed run id with `resume="allow"`; MLflow: the run tagged
with that trial id). Every metric is logged with the trial's epoch as its step (W&B: the `epoch` step
metric), never with Tune's iteration count: a trial that branches from a shared prefix reports its first
trained epoch to Tune as iteration 1, but its tracker run shows every epoch where it belongs.

What is logged when: each trained epoch as Tune reports it; when the trial ends, the epochs it did not
train in this launch and no earlier launch logged (the record at initialisation, epoch -1, and the epochs
of a shared prefix it branched from), read from its shard. An epoch reported twice in one launch (Tune
retrying a trial from its last checkpoint) is logged once; a driver killed mid-trial may have logged the
epochs since the trial's last checkpoint, and the relaunch logs them again, with the same values. A trial
that Tune starts again without ending it (a reused or restarted actor) keeps its open runs: the callback
opens each trial's runs once and closes them when it ends.
"""

from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..config.spec import TrialSpec
from ..config.sweep_file import TRACKERS, SweepSpec
from ..errors import CpsweepError, SpecError
from ..storage.records import EPOCH_COLUMNS, METRIC
from ..storage.store import Store

STEP = "epoch"
LOGGED = [c for c in EPOCH_COLUMNS if c not in ("trial_id", "epoch")]  # and metric.<name>, fisher/<layer>


def run_id(sweep: str, trial_id: str) -> str:
    """The tracker run id of a trial: the same in every launch of the sweep."""
    return "cps-" + hashlib.sha256(f"{sweep}/{trial_id}".encode()).hexdigest()[:24]


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers (flags as 0/1) among a result's or a record row's columns of epochs.parquet (a
    sweep's own `metric.<name>` included) and per-layer Fisher traces (`fisher/<layer>`); Tune's own
    bookkeeping is left out."""
    out = {}
    for k, v in metrics.items():
        if not (k in LOGGED or k.startswith(("fisher/", METRIC))) or isinstance(v, str) or v is None:
            continue
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out[k] = v
    return out


class WandbTracker:
    name = "wandb"

    def __init__(self, sweep: SweepSpec, options: dict[str, Any]):
        import wandb  # noqa: F401 - fail at once if missing

        self.sweep = sweep.name
        self.project = options.pop("project", sweep.name)
        self.options = options
        self.runs: dict[str, Any] = {}
        if str(options.get("mode") or os.environ.get("WANDB_MODE", "online")) not in ("offline", "disabled", "dryrun"):
            _check_wandb_key()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "runs": {}}

    def open(self, trial: TrialSpec) -> None:
        import wandb

        run = wandb.init(project=self.project, id=run_id(self.sweep, trial.trial_id), name=trial.trial_id,
                         group=self.sweep, resume="allow", reinit="create_new", config=trial.to_dict(), **self.options)
        run.define_metric(STEP)
        run.define_metric("*", step_metric=STEP)
        self.runs[trial.trial_id] = run

    def log(self, tid: str, epoch: int, metrics: dict[str, float]) -> None:
        self.runs[tid].log({**metrics, STEP: epoch})

    def close(self, tid: str) -> None:
        run = self.runs.pop(tid, None)
        if run is not None:
            run.finish()


def _check_wandb_key() -> None:
    """Fail before anything runs when W&B has no API key (each trial's wandb.init would fail mid-sweep)."""
    from unittest import mock

    import wandb

    try:
        with mock.patch.dict(os.environ, {"WANDB_SILENT": "true"}):  # (no "API key is configured" line)
            wandb.login(verify=False)  # reads the key from the environment or ~/.netrc; no network
    except wandb.errors.UsageError as e:
        raise CpsweepError(f"the wandb tracker has no API key ({str(e).splitlines()[0]}): run `wandb login` or "
                           f"set WANDB_API_KEY, or set WANDB_MODE=offline to log locally (`wandb sync` "
                           f"later)") from None


class MlflowTracker:
    name = "mlflow"

    def __init__(self, sweep: SweepSpec, options: dict[str, Any]):
        import mlflow  # noqa: F401 - fail at once if missing

        self.sweep = sweep.name
        self.uri = options.pop("tracking_uri", None)
        self.experiment = options.pop("experiment_name", sweep.name)
        if options:
            raise TypeError(f"unexpected options {sorted(options)} (valid: tracking_uri, experiment_name)")
        self.runs: dict[str, str] = {}
        try:
            self.client()  # opens no connection: a URI MLflow cannot use fails here, not in every trial
        except Exception as e:  # (MLflow raises several types: an unknown scheme, a store it cannot build)
            uri = self.uri or os.environ.get("MLFLOW_TRACKING_URI") or "its default"
            detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
            if len(detail) > 200:  # (some list every store MLflow knows: cut at a word, and say so)
                detail = detail[:200].rsplit(" ", 1)[0].rstrip(",;:([{") + " ..."
            raise SpecError("tracking.mlflow.tracking_uri", f"MLflow cannot log to {uri} ({detail}); give a "
                            f"tracking server (http://host:5000) or a folder (file:./mlruns, with "
                            f"MLFLOW_ALLOW_FILE_STORE=true)") from None

    def client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def open(self, trial: TrialSpec) -> None:
        client = self.client()
        exp = client.get_experiment_by_name(self.experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(self.experiment)
        tag = run_id(self.sweep, trial.trial_id)
        found = client.search_runs([exp_id], filter_string=f"tags.cpsweep_run = '{tag}'", max_results=1)
        if found:
            self.runs[trial.trial_id] = found[0].info.run_id
            client.update_run(found[0].info.run_id, status="RUNNING")
            return
        run = client.create_run(exp_id, run_name=trial.trial_id,
                                tags={"cpsweep_run": tag, "cpsweep_sweep": self.sweep, "cpsweep_trial": trial.trial_id})
        self.runs[trial.trial_id] = run.info.run_id
        params = pd.json_normalize(trial.to_dict(), sep=".").iloc[0].to_dict()
        from mlflow.entities import Param

        client.log_batch(run.info.run_id, params=[Param(k, str(v)[:500]) for k, v in sorted(params.items())])

    def log(self, tid: str, epoch: int, metrics: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client().log_batch(self.runs[tid], metrics=[Metric(k, v, now, epoch) for k, v in sorted(metrics.items())])

    def close(self, tid: str) -> None:
        run = self.runs.pop(tid, None)
        if run is not None:
            self.client().set_terminated(run)


KINDS = {"wandb": WandbTracker, "mlflow": MlflowTracker}


def make_trackers(sweep: SweepSpec, names: Sequence[str]) -> list:
    """The trackers asked for by `--tracker` names and the spec's `tracking` section (checked here, before
    anything runs: unknown names, missing packages, bad options)."""
    settings = dict(sweep.raw.get("tracking") or {})
    wanted = list(dict.fromkeys([*settings, *names]))
    trackers = []
    for name in wanted:
        if name not in TRACKERS:
            raise SpecError("tracking", f'unknown tracker "{name}"; valid trackers: {", ".join(TRACKERS)}')
        try:
            trackers.append(KINDS[name](sweep, dict(settings.get(name) or {})))
        except ImportError:
            raise CpsweepError(f"the {name} tracker needs its package: pip install 'cpsweep[{name}]' "
                               f"(or pip install {name})") from None
        except TypeError as e:
            raise SpecError(f"tracking.{name}", f"{e}") from None
    return trackers


def tracker_callback(trackers: list, store: Store, specs: Mapping[str, TrialSpec]):
    """A Tune callback that logs every trial's epochs to `trackers` (see the module docstring)."""
    from ray.tune import Callback

    from .task import TrialTask

    class TrackerCallback(Callback):
        def __init__(self):
            self.logged: dict[str, set[int]] = {}
            self.opened: set[str] = set()  # trials with an open run in every tracker

        def log(self, tid: str, epoch: int, metrics: dict[str, float]) -> None:
            if epoch in self.logged.setdefault(tid, set()) or not metrics:
                return
            self.logged[tid].add(epoch)
            for t in trackers:
                t.log(tid, epoch, metrics)

        def on_trial_start(self, iteration, trials, trial, **info):
            tid = TrialTask.id_of(trial.config)
            if tid in self.opened:  # Tune starts a trial again (a reused or restarted actor): same runs
                return
            for t in trackers:
                t.open(specs[tid])
            self.opened.add(tid)

        def close(self, tid: str) -> None:
            self.opened.discard(tid)
            for t in trackers:
                t.close(tid)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if isinstance(result.get("epoch"), int) and not result.get("diverged"):
                self.log(TrialTask.id_of(trial.config), result["epoch"], numeric(result))

        def on_trial_complete(self, iteration, trials, trial, **info):
            tid = TrialTask.id_of(trial.config)
            shard = store.read_shard(tid)
            if shard is not None:
                shared = int(shard["trials"].iloc[0].get("shared_epochs") or 0)
                layers = shard["fisher_layers"]
                for row in shard["epochs"].to_dict("records"):
                    epoch = int(row["epoch"])
                    if epoch < max(shared, 0) or epoch < 0:  # never reported to Tune: init, a shared prefix
                        per_layer = layers[layers.epoch == epoch]
                        metrics = {**numeric(row), **{f"fisher/{name or 'model'}": float(v) for name, v in
                                                       zip(per_layer.layer, per_layer.trace)}}
                        self.log(tid, epoch, metrics)
            self.close(tid)

        def on_trial_error(self, iteration, trials, trial, **info):
            self.close(TrialTask.id_of(trial.config))

    return TrackerCallback()
