"""Progress of a running sweep: one line per finished trial, and the tables rebuilt as trials end.

`Progress` holds the sweep's status board (trial id -> pending | running | ok | diverged | failed) and the
rows of the finished trials. Its Tune callback marks trials running, reads each finished trial's shard,
prints one line with a running total, and rewrites the top-level Parquet tables (atomically), so a sweep
stopped at any moment leaves valid tables. `tune_callback` wraps the board in a Tune callback (ray is
imported only there, when a launch builds it).
"""

from __future__ import annotations

import math
import sys
from typing import Sequence, TextIO

import pandas as pd

from ..config.spec import TrialSpec
from ..results.records import STATUSES, trial_row
from ..results.reduce import accuracy_after
from ..results.store import Store, empty_table
from .live import Live
from .preflight import DATA_ERROR
from .task import TrialTask


class Progress:
    """The status board of one launch (pickled by Tune with its callback: it holds no open stream)."""

    def __init__(self, store: Store, trials: Sequence[TrialSpec], done: set[str], spec_hash: str,
                 out: TextIO | None = None):
        self.store, self.out, self.spec_hash = store, out, spec_hash
        self.trials = {t.trial_id: t for t in trials}
        self.status = {tid: "pending" for tid in self.trials}
        self.errors: dict[str, str] = {}
        self.data_errors: dict[str, str] = {}  # trials that could not load their data set (not retried)
        shards = store.read_shards(set(self.trials) & done)
        self.rows = {r["trial_id"]: r for r in shards["trials"].to_dict("records")}
        self.epochs = [shards["epochs"]]
        self.layers = [shards["fisher_layers"]]
        for tid, row in self.rows.items():
            self.status[tid] = row["status"]
        self.curves: dict[str, pd.Series] = {}  # baseline id -> test accuracy per epoch
        self._keep_curves(shards["epochs"])
        self.finished_now = 0
        self.to_run = sum(1 for s in self.status.values() if s == "pending")
        self.live: Live | None = None  # the epoch-level progress of a running launch (`live.py`)

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for v in self.status.values() if v == s) for s in STATUSES}

    def baseline_acc(self, trial: TrialSpec) -> float | None:
        """The final accuracy of `trial`'s baseline after as many epochs as `trial` trained (length-matched,
        `reduce.seed_sensitivity`), once the baseline has finished."""
        row = self.rows.get(trial.baseline_id)
        if row is None or row["status"] != "ok":
            return None
        if row["epochs"] <= trial.epochs:
            return row["final_test_acc"]
        acc = accuracy_after(self.curves.get(trial.baseline_id, pd.Series(dtype=float)), trial.epochs)
        return None if math.isnan(acc) else acc

    def _keep_curves(self, epochs: pd.DataFrame) -> None:
        """Keep the test accuracy per epoch of the baselines among `epochs`' trials."""
        for tid, part in epochs.groupby("trial_id"):
            if tid in self.trials and self.trials[tid].is_baseline:
                self.curves[tid] = part.set_index("epoch").test_acc

    # -- events --------------------------------------------------------------------------------------
    def started(self, tid: str) -> None:
        if self.status.get(tid) == "pending":
            self.status[tid] = "running"
            self.write_tables()

    def finished(self, tid: str) -> None:
        shard = self.store.read_shards({tid})
        if shard["trials"].empty:  # the trial ended without a shard: a data error it reported, or unknown
            self.failed(tid, self.data_errors.get(tid) or "ended without writing its results")
            return
        row = shard["trials"].iloc[0].to_dict()
        self.rows[tid] = row
        self.status[tid] = row["status"]
        self.epochs.append(shard["epochs"])
        self.layers.append(shard["fisher_layers"])
        self._keep_curves(shard["epochs"])
        self.finished_now += 1
        acc = row["final_test_acc"]
        base = self.baseline_acc(self.trials[tid])
        delta = f"  {100 * (acc - base):+6.2f} pts vs baseline" if base is not None and tid in self.trials and \
            not self.trials[tid].is_baseline else ""
        shared = int(row.get("shared_epochs") or 0)
        branched = f" (first {shared} epoch{'s' if shared > 1 else ''} shared)" if shared else ""
        self.line(f"{row['status']:8} {tid:28} final {100 * acc:6.2f}%{delta}  {row['wall_seconds']:6.0f} s{branched}")
        self.write_tables()

    def failed(self, tid: str, error: str) -> None:
        self.status[tid] = "failed"
        self.errors[tid] = error
        self.finished_now += 1
        self.line(f"{'failed':8} {tid:28} {error}")
        self.write_tables()

    def line(self, text: str) -> None:
        c = self.counts()
        total = f"[{self.finished_now:>{len(str(self.to_run))}}/{self.to_run}]"
        tail = f"| {c['ok']} ok, {c['running']} running, {c['pending']} pending" + \
               (f", {c['diverged']} diverged" if c["diverged"] else "") + (f", {c['failed']} failed" if c["failed"] else "")
        if self.live is not None:
            self.live.write(f"{total} {text}  {tail}")
        else:
            print(f"{total} {text}  {tail}", file=self.out or sys.stdout, flush=True)

    def finish(self) -> None:
        for tid, s in self.status.items():
            if s == "running":  # Tune ended without reporting it (e.g. the run was interrupted)
                self.status[tid] = "pending"
        self.write_tables()

    # -- tables --------------------------------------------------------------------------------------
    def write_tables(self) -> None:
        rows = []
        for tid, trial in self.trials.items():
            if tid in self.rows and self.status[tid] in ("ok", "diverged"):
                rows.append(self.rows[tid])
            else:
                rows.append(trial_row(trial, status=self.status[tid], error=self.errors.get(tid, ""),
                                      spec_hash=self.spec_hash))
        epochs = pd.concat([e for e in self.epochs if not e.empty] or [empty_table("epochs")], ignore_index=True)
        layers = pd.concat([x for x in self.layers if not x.empty] or [empty_table("fisher_layers")],
                           ignore_index=True)
        self.store.write_tables(pd.DataFrame(rows), epochs, layers)


def tune_callback(progress: Progress):
    """A Tune callback that feeds the sweep's `Progress` board."""
    from ray.tune import Callback

    class ProgressCallback(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            progress.started(TrialTask.id_of(trial.config))
            if progress.live is not None:
                progress.live.started(TrialTask.id_of(trial.config))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get(DATA_ERROR):
                progress.data_errors[TrialTask.id_of(trial.config)] = result[DATA_ERROR]
            if progress.live is not None and isinstance(result.get("epoch"), int):
                progress.live.epoch(TrialTask.id_of(trial.config), result["epoch"])

        def on_trial_complete(self, iteration, trials, trial, **info):
            tid = TrialTask.id_of(trial.config)
            progress.finished(tid)
            if progress.live is not None:
                progress.live.ended(tid, trained=progress.status[tid] != "failed")

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.failed(TrialTask.id_of(trial.config), f"failed after retries; see {trial.path}/error.txt")
            if progress.live is not None:
                progress.live.ended(TrialTask.id_of(trial.config), trained=False)

    return ProgressCallback()
