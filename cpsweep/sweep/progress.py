"""Progress of a running sweep: one line per finished trial, and the tables extended as trials end.

`Progress` holds the sweep's status board (trial id -> pending | running | ok | diverged | failed), each
trial's row of `trials.parquet`, and the per-epoch test accuracy of the finished baselines (for the
"pts lost vs baseline" of each line: positive is harm, as everywhere); never the epoch rows of other trials, so the driver's memory does not grow
with their epochs. Its Tune callback marks trials running, reads each finished trial's row from its shard,
prints one line with a running total, and flushes the tables (`storage/tables.py`: the rows of the trials
finished since the last flush appended as one part, `trials.parquet` rewritten) at most every
`flush_every` seconds and when the launch ends. Every event costs the same at any number of trials.
`tune_callback` wraps the board in a Tune callback (ray is imported only there, when a launch builds it).
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from typing import Callable, Sequence, TextIO

import pandas as pd

from ..config.spec import TrialSpec
from ..storage.records import METRIC, STATUSES, trial_row
from ..results.reduce import accuracy_after
from ..storage.store import Store
from ..storage.tables import Tables
from .live import Live
from .preflight import DATA_ERROR, TRIAL_ERROR
from .task import TrialTask

FINISHED = ("ok", "diverged")  # statuses of trials with a complete shard
FLUSH_EVERY = 10.0             # seconds between two flushes of the tables while trials end


def finished_trials(store: Store) -> tuple[Tables, dict[str, dict], set[str]]:
    """What a results folder holds: its tables' manifest, the rows of the trials its tables hold (finished
    or not), and the finished trials whose rows they do not hold yet (their shard complete, the flush that
    would have added them cut off). One read of `trials.parquet`, one listing of `shards/`, and one check
    per shard the tables do not know."""
    tables, trials = Tables.read(store)
    rows = {r["trial_id"]: r for r in trials.to_dict("records")} if trials is not None and not tables.legacy else {}
    indexed = {tid for tid, r in rows.items() if r["status"] in FINISHED}
    unknown = sorted(store.shard_ids() - indexed)
    return tables, rows, store.complete_shards(unknown) if unknown else set()


def metric_columns(trials: Sequence[TrialSpec]) -> list[str]:
    """The epochs table's columns of the trials' own metrics (`metric.<name>`)."""
    return sorted({METRIC + m.label for t in trials for m in t.metrics})


def _plugins(row: dict) -> str:
    """A row's `plugins` (empty for built-ins, and in folders written before plug-ins existed)."""
    value = row.get("plugins")
    return value if isinstance(value, str) else ""


class Progress:
    """The status board of one launch (pickled by Tune with its callback: it holds no open stream)."""

    def __init__(self, store: Store, trials: Sequence[TrialSpec], spec_hash: str, out: TextIO | None = None,
                 flush_every: float = FLUSH_EVERY, clock: Callable[[], float] = time.monotonic):
        self.store, self.out, self.spec_hash = store, out, spec_hash
        self.flush_every, self.clock = flush_every, clock
        self.tables, old_rows, unindexed = finished_trials(store)
        self.trials = {t.trial_id: t for t in trials}
        self.tables.add_metrics(metric_columns(trials))
        # rows: every trial the tables list (those of an earlier grid of this sweep too) and every grid trial
        self.rows = {tid: r for tid, r in old_rows.items() if r["status"] in FINISHED}
        self.errors: dict[str, str] = {}
        self.data_errors: dict[str, str] = {}  # trials that could not load their data set (not retried)
        self.unflushed = sorted(unindexed)  # finished trials whose rows no part of the tables holds yet
        for tid in self.unflushed:
            shard = store.read_shard(tid, ("trials",))
            if shard is not None:
                self.rows[tid] = shard["trials"].iloc[0].to_dict()
        # finished trials whose plug-in code was edited since, and baselines a grid extended since needs longer
        # (a later onset or a longer window; a longer one than needed serves: windows read it at their length):
        # trained again (`retire_stale`)
        self.edited = {tid: (_plugins(self.rows[tid]), t.plugins) for tid, t in self.trials.items()
                       if tid in self.rows and _plugins(self.rows[tid]) != t.plugins}
        self.shorter = {tid: (int(self.rows[tid]["epochs"]), t.epochs) for tid, t in self.trials.items()
                        if tid in self.rows and tid not in self.edited and int(self.rows[tid]["epochs"]) < t.epochs}
        self.stale = {*self.edited, *self.shorter}
        for tid in self.stale:
            del self.rows[tid]
        self.unflushed = [tid for tid in self.unflushed if tid not in self.stale]
        self.status = {tid: r["status"] for tid, r in self.rows.items()}
        self.status.update({tid: "pending" for tid in self.trials if tid not in self.rows})
        self.tally = Counter(self.status[tid] for tid in self.trials)
        self.done = {tid for tid in self.trials if self.status[tid] in FINISHED}
        baselines = [tid for tid in self.done if self.trials[tid].is_baseline]
        self.curves: dict[str, pd.Series] = {}  # finished baseline id -> test accuracy per epoch
        indexed = [tid for tid in baselines if tid not in unindexed]
        if indexed:
            self._keep_curves(self.tables.read_table("epochs", ["trial_id", "epoch", "test_acc"], indexed))
        for tid in set(baselines) & unindexed:
            self._keep_curves(store.read_shard(tid, ("epochs",))["epochs"])
        self.finished_now = 0
        self.to_run = self.tally["pending"]
        self.flushed_at = float("-inf")
        self.dirty = True
        self.live: Live | None = None  # the epoch-level progress of a running launch (`live.py`)
        self.notes: dict[str, tuple[int, str]] = {}  # trial id -> (round, reason) in an adaptive sweep

    def retire_stale(self) -> None:
        """Remove the results of the finished trials to train again (`stale`: their plug-ins changed, or the
        grid now needs them longer) from the tables and their shards, so that they run like pending trials;
        says so in one line per cause."""
        if not self.stale:
            return
        out = self.out or sys.stdout
        if self.edited:
            changed = sorted({p for old, new in self.edited.values()
                              for p in set(new.split(";")) - set(old.split(";")) if p})
            what = ", ".join(p.partition("=")[2] for p in changed) or "built-ins"
            print(f"{len(self.edited)} finished trial(s) ran other plug-in code than {what}; training them again",
                  file=out, flush=True)
        if self.shorter:
            pairs = sorted({(old, new) for old, new in self.shorter.values()})
            lengths = ", ".join(f"{old} epochs where the grid now needs {new}" for old, new in pairs)
            print(f"{len(self.shorter)} finished trial(s) trained {lengths} (a later or longer window extends "
                  f"its seed's baseline); training them again", file=out, flush=True)
        self.tables.remove_uncommitted()
        self.tables.drop(self.trials_frame(), list(self.stale))
        self.store.remove_shards(list(self.stale))
        self.flushed_at = self.clock()

    def extend(self, trials: Sequence[TrialSpec], notes: dict[str, tuple[int, str]] | None = None) -> None:
        """Add trials to the board (an adaptive sweep's next round): pending unless already finished."""
        self.tables.add_metrics(metric_columns(trials))
        for t in trials:
            if t.trial_id in self.trials:
                continue
            self.trials[t.trial_id] = t
            status = self.status.setdefault(t.trial_id, "pending")
            self.tally[status] += 1
            if status in FINISHED:
                self.done.add(t.trial_id)
            else:
                self.to_run += 1
        self.notes.update(notes or {})
        self.dirty = True

    def counts(self) -> dict[str, int]:
        """Trials of the grid per status."""
        return {s: self.tally[s] for s in STATUSES}

    def set_status(self, tid: str, status: str) -> None:
        if tid in self.trials:
            self.tally[self.status[tid]] -= 1
            self.tally[status] += 1
        self.status[tid] = status
        self.dirty = True

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
            self.set_status(tid, "running")

    def finished(self, tid: str) -> None:
        trial = self.trials.get(tid)
        shard = self.store.read_shard(tid, ("trials", "epochs") if trial is not None and trial.is_baseline
                                      else ("trials",))
        if shard is None:  # the trial ended without a shard: a data error it reported, or unknown
            self.failed(tid, self.data_errors.get(tid) or self.errors.get(tid)
                        or "ended without writing its results")
            return
        row = shard["trials"].iloc[0].to_dict()
        self.rows[tid] = row
        self.set_status(tid, row["status"])
        if tid not in self.done:
            self.done.add(tid)
            self.unflushed.append(tid)
        if "epochs" in shard:
            self._keep_curves(shard["epochs"])
        self.finished_now += 1
        acc = row["final_test_acc"]
        base = self.baseline_acc(trial) if trial is not None else None
        delta = ""
        if base is not None and not trial.is_baseline:  # positive: harm (as `status` and the report)
            delta = f"  {100 * (base - acc):+6.2f} pts lost vs baseline"
        shared = int(row.get("shared_epochs") or 0)
        branched = f" (first {shared} epoch{'s' if shared > 1 else ''} shared)" if shared else ""
        self.line(f"{row['status']:8} {tid:28} final {100 * acc:6.2f}%{delta}  {row['wall_seconds']:6.0f} s{branched}")
        self.tick()

    def failed(self, tid: str, error: str) -> None:
        self.set_status(tid, "failed")
        self.errors[tid] = error
        self.finished_now += 1
        self.line(f"{'failed':8} {tid:28} {error}")
        self.tick()

    def line(self, text: str) -> None:
        c = self.counts()
        total = f"[{self.finished_now:>{len(str(self.to_run))}}/{self.to_run}]"
        tail = f"| {c['ok']} ok, {c['running']} running, {c['pending']} pending" + \
               (f", {c['diverged']} diverged" if c["diverged"] else "") + (f", {c['failed']} failed" if c["failed"] else "")
        if self.live is not None:
            self.live.write(f"{total} {text}  {tail}")
        else:
            print(f"{total} {text}  {tail}", file=self.out or sys.stdout, flush=True)

    def tick(self) -> None:
        """Flush the tables if something changed and the last flush is `flush_every` seconds old."""
        if self.dirty and self.clock() - self.flushed_at >= self.flush_every:
            self.flush()

    def finish(self) -> None:
        for tid, s in list(self.status.items()):
            if s == "running":  # Tune ended without reporting it (e.g. the run was interrupted)
                self.set_status(tid, "pending")
        self.flush()

    # -- tables --------------------------------------------------------------------------------------
    def trials_frame(self) -> pd.DataFrame:
        """trials.parquet: every grid trial (a finished one's row from its shard), then the finished trials
        of an earlier grid of this sweep."""
        rows = []
        for tid, trial in self.trials.items():
            if tid in self.rows and self.status[tid] in FINISHED:
                rows.append(self.rows[tid])
            else:
                rows.append(trial_row(trial, status=self.status[tid], error=self.errors.get(tid, ""),
                                      spec_hash=self.spec_hash))
        rows += [r for tid, r in self.rows.items() if tid not in self.trials]
        frame = pd.DataFrame(rows)
        if self.notes:
            frame["round"] = frame.trial_id.map(lambda t: self.notes.get(t, (None,))[0]).astype("Int64")
            frame["reason"] = frame.trial_id.map(lambda t: self.notes.get(t, (None, ""))[1])
        return frame

    def flush(self) -> None:
        """Append the rows of the trials finished since the last flush and rewrite trials.parquet
        (`Tables.commit`); the first flush of a launch first deletes what a cut-off flush left."""
        if self.flushed_at == float("-inf"):
            self.tables.remove_uncommitted()
        self.tables.commit(self.trials_frame(), self.unflushed)
        self.unflushed = []
        self.dirty = False
        self.flushed_at = self.clock()


def tune_callback(progress: Progress):
    """A Tune callback that feeds the sweep's `Progress` board."""
    from ray.tune import Callback

    class ProgressCallback(Callback):
        def on_step_end(self, iteration, trials, **info):
            progress.tick()

        def on_trial_start(self, iteration, trials, trial, **info):
            progress.started(TrialTask.id_of(trial.config))
            if progress.live is not None:
                progress.live.started(TrialTask.id_of(trial.config))

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get(DATA_ERROR):
                progress.data_errors[TrialTask.id_of(trial.config)] = result[DATA_ERROR]
            if result.get(TRIAL_ERROR):
                progress.errors[TrialTask.id_of(trial.config)] = result[TRIAL_ERROR]
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
