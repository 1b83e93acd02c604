"""Results as tidy Parquet tables, written atomically (a temporary file, then a rename).

Tables (see docs/results.md for every column, its type, unit and meaning):
    epochs.parquet         one row per (trial, epoch)
    fisher_layers.parquet  one row per (trial, epoch, layer)
    trials.parquet         one row per trial
"""

from __future__ import annotations

import os
import statistics
import tempfile
from typing import Any, Sequence

import pandas as pd

from . import __version__
from .errors import CpsweepError

FINAL_EPOCHS = 10  # "final" accuracy = median of the last 10 epochs (the authors' plotting code)


def final_accuracy(records: Sequence[Any], last: int = FINAL_EPOCHS) -> float:
    """Median test accuracy of the last `last` epochs (NaN with no records)."""
    accs = [r.test_acc for r in records[-last:]]
    return statistics.median(accs) if accs else float("nan")


def epochs_frame(trial, records: Sequence[Any]) -> pd.DataFrame:
    rows = [{**r.to_row(), "trial_id": trial.trial_id} for r in records]
    return pd.DataFrame(rows, columns=["trial_id", "epoch", "lr", "deficit_active", "train_loss", "train_acc",
                                       "test_loss", "test_acc", "fisher_trace", "seconds", "fisher_seconds"])


def layers_frame(trial, records: Sequence[Any]) -> pd.DataFrame:
    rows = [{"trial_id": trial.trial_id, "epoch": r.epoch, "layer": name, "order": i, "trace": value}
            for r in records for i, (name, value) in enumerate(r.fisher_layers.items())]
    return pd.DataFrame(rows, columns=["trial_id", "epoch", "layer", "order", "trace"])


def trial_row(trial, records: Sequence[Any], status: str) -> dict[str, Any]:
    t = trial.to_dict()
    return {"trial_id": trial.trial_id, "sweep": trial.sweep, "status": status,
            "deficit": trial.deficit.name if not trial.is_baseline else "none",
            "onset": trial.onset, "length": trial.length, "seed": trial.seed, "epochs": trial.epochs,
            "epochs_done": len(records), "model": trial.model.name, "data": trial.data.name,
            "final_test_acc": final_accuracy(records),
            "best_test_acc": max((r.test_acc for r in records), default=float("nan")),
            "wall_seconds": sum(r.seconds for r in records), "cpsweep_version": __version__,
            "tags": repr(t["tags"])}


def write_table_atomic(df: pd.DataFrame, path: str) -> None:
    """Write `df` as Parquet at `path` without ever leaving a partial file there."""
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
    except OSError as e:
        raise CpsweepError(f"cannot write results to {folder}: {e.strerror}") from None
    try:
        df.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_trial_records(trial, records: Sequence[Any], folder: str, status: str) -> None:
    """The three tables of a single trial, in `folder`."""
    write_table_atomic(epochs_frame(trial, records), os.path.join(folder, "epochs.parquet"))
    write_table_atomic(layers_frame(trial, records), os.path.join(folder, "fisher_layers.parquet"))
    write_table_atomic(pd.DataFrame([trial_row(trial, records, status)]), os.path.join(folder, "trials.parquet"))
