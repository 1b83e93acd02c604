"""Results as tidy Parquet tables on a local folder or any pyarrow file system (s3://, gs://, NFS).

Layout of one sweep (docs/results.md lists every column, its type, unit and meaning):

    <storage>/<sweep>/spec.yaml               the resolved spec and its hash
    <storage>/<sweep>/trials.parquet          one row per trial of the grid (status pending ... ok)
    <storage>/<sweep>/epochs.parquet          one row per (trial, epoch)
    <storage>/<sweep>/fisher_layers.parquet   one row per (trial, epoch, layer)
    <storage>/<sweep>/shards/<trial>/...      the same three tables for one finished trial: the source of
                                              truth, written by the trial itself when it ends
    <storage>/<sweep>/tune/...                Ray Tune's experiment state and checkpoints

Every file is written atomically (a temporary name, then a rename), so a reader never sees half a file and
a sweep stopped at any point leaves valid tables. A trial's shard is replaced, never appended to, and the
top-level tables are rebuilt from the shards, so a row can neither be lost nor duplicated.
"""

from __future__ import annotations

import io
import os
import statistics
import uuid
from dataclasses import dataclass
from typing import Any, Sequence

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from . import __version__
from .errors import CpsweepError

FINAL_EPOCHS = 10  # "final" accuracy = median of the last 10 epochs (the authors' plotting code)
EPOCH_COLUMNS = ["trial_id", "epoch", "lr", "deficit_active", "train_loss", "train_acc", "test_loss", "test_acc",
                 "fisher_trace", "seconds", "fisher_seconds"]
LAYER_COLUMNS = ["trial_id", "epoch", "layer", "order", "trace", "params", "kind"]
TRIAL_COLUMNS = ["trial_id", "baseline_id", "sweep", "status", "deficit", "onset", "length", "seed", "epochs", "epochs_done", "model",
                 "data", "tags", "final_test_acc", "best_test_acc", "wall_seconds", "error", "spec_hash",
                 "cpsweep_version", "git_commit", "node", "shared_epochs"]
TABLES = ("trials", "epochs", "fisher_layers")


def final_accuracy(records: Sequence[Any], last: int = FINAL_EPOCHS) -> float:
    """Median test accuracy of the last `last` epochs (NaN with no records)."""
    accs = [r.test_acc for r in records[-last:]]
    return statistics.median(accs) if accs else float("nan")


def epochs_frame(trial, records: Sequence[Any]) -> pd.DataFrame:
    rows = [{**r.to_row(), "trial_id": trial.trial_id} for r in records]
    return pd.DataFrame(rows, columns=EPOCH_COLUMNS).astype({"epoch": "int64", "deficit_active": "bool"})


def layers_frame(trial, records: Sequence[Any]) -> pd.DataFrame:
    rows = [{"trial_id": trial.trial_id, "epoch": r.epoch, "layer": name, "order": i, "trace": value,
             "params": r.layer_params.get(name, 0), "kind": r.layer_kinds.get(name, "")}
            for r in records for i, (name, value) in enumerate(r.fisher_layers.items())]
    return pd.DataFrame(rows, columns=LAYER_COLUMNS).astype({"epoch": "int64", "order": "int64", "trace": "float64",
                                                             "params": "int64"})


def trial_row(trial, records: Sequence[Any] = (), status: str = "pending", error: str = "",
              spec_hash: str = "", git_commit: str = "", node: str = "", shared: int = 0) -> dict[str, Any]:
    """One row of trials.parquet: the trial's axes, its status and outcome, and provenance (`node`: the Ray
    node id of the process that finished the trial, empty outside Ray; `shared_epochs`: how many of its
    first epochs it took from another trial's prefix checkpoint instead of training them)."""
    return {"trial_id": trial.trial_id, "baseline_id": trial.baseline_id, "sweep": trial.sweep, "status": status,
            "deficit": "none" if trial.is_baseline else trial.deficit.name,
            "onset": trial.onset, "length": trial.length, "seed": trial.seed, "epochs": trial.epochs,
            "epochs_done": len(records), "model": trial.model.name, "data": trial.data.name,
            "tags": ",".join(f"{k}={v}" for k, v in trial.tags),
            "final_test_acc": final_accuracy(records),
            "best_test_acc": max((r.test_acc for r in records), default=float("nan")),
            "wall_seconds": float(sum(r.seconds for r in records)), "error": error,
            "spec_hash": spec_hash, "cpsweep_version": __version__, "git_commit": git_commit, "node": node,
            "shared_epochs": shared}


class Store:
    """The results folder of one sweep, on a local path or a pyarrow file-system URI."""

    def __init__(self, uri: str, filesystem: pafs.FileSystem | None = None):
        self.uri = uri
        if filesystem is not None:
            self.fs, self.root = filesystem, uri
        elif "://" in uri:
            self.fs, self.root = pafs.FileSystem.from_uri(uri)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(uri)
        self.root = self.root.rstrip("/")

    def path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    # -- raw files -----------------------------------------------------------------------------------
    def exists(self, *parts: str) -> bool:
        return self.fs.get_file_info(self.path(*parts)).type != pafs.FileType.NotFound

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write atomically: a temporary sibling, then a rename (a single PUT on object stores)."""
        target = self.path(*parts)
        folder = target.rsplit("/", 1)[0]
        tmp = f"{folder}/.tmp-{uuid.uuid4().hex}"
        try:
            self.fs.create_dir(folder, recursive=True)
            with self.fs.open_output_stream(tmp) as f:
                f.write(data)
            self.fs.move(tmp, target)
        except OSError as e:
            raise CpsweepError(f"cannot write results to {self.uri}: {e}; check --storage and its permissions") from None

    def read_bytes(self, *parts: str) -> bytes:
        with self.fs.open_input_stream(self.path(*parts)) as f:
            return f.read()

    def write_table(self, df: pd.DataFrame, *parts: str) -> None:
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        self.write_bytes(buf.getvalue(), *parts)

    def read_table(self, *parts: str) -> pd.DataFrame:
        with self.fs.open_input_file(self.path(*parts)) as f:
            return pq.read_table(f).to_pandas()

    def check_writable(self) -> None:
        """Fail before any work if the results folder cannot be written."""
        self.write_bytes(b"", ".write-test")
        self.fs.delete_file(self.path(".write-test"))

    # -- shards: one finished trial each -------------------------------------------------------------
    def write_shard(self, trial, records: Sequence[Any], status: str, error: str = "", spec_hash: str = "",
                    git_commit: str = "", node: str = "", shared: int = 0) -> None:
        """A finished trial's three tables; `trial.parquet` last, as the completion marker."""
        sid = trial.trial_id
        self.write_table(epochs_frame(trial, records), "shards", sid, "epochs.parquet")
        self.write_table(layers_frame(trial, records), "shards", sid, "fisher_layers.parquet")
        row = trial_row(trial, records, status, error, spec_hash, git_commit, node, shared)
        self.write_table(pd.DataFrame([row]), "shards", sid, "trial.parquet")

    def finished_ids(self) -> set[str]:
        """Trials whose shard is complete (status ok or diverged)."""
        return set(self.read_shards()["trials"].trial_id) if self.exists("shards") else set()

    def read_shards(self, ids: set[str] | None = None) -> dict[str, pd.DataFrame]:
        frames: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
        if self.exists("shards"):
            infos = self.fs.get_file_info(pafs.FileSelector(self.path("shards"), allow_not_found=True))
            for info in sorted(infos, key=lambda i: i.base_name):
                sid = info.base_name
                if info.type != pafs.FileType.Directory or (ids is not None and sid not in ids):
                    continue
                if not self.exists("shards", sid, "trial.parquet"):
                    continue  # a trial that died while writing its shard: it will be rerun
                frames["trials"].append(self.read_table("shards", sid, "trial.parquet"))
                frames["epochs"].append(self.read_table("shards", sid, "epochs.parquet"))
                frames["fisher_layers"].append(self.read_table("shards", sid, "fisher_layers.parquet"))
        empty = {"trials": pd.DataFrame(columns=TRIAL_COLUMNS),
                 "epochs": pd.DataFrame(columns=EPOCH_COLUMNS), "fisher_layers": pd.DataFrame(columns=LAYER_COLUMNS)}
        return {t: pd.concat(frames[t], ignore_index=True) if frames[t] else empty[t] for t in TABLES}

    # -- the top-level tables ------------------------------------------------------------------------
    def write_tables(self, trials: pd.DataFrame, epochs: pd.DataFrame, layers: pd.DataFrame) -> None:
        self.write_table(epochs, "epochs.parquet")
        self.write_table(layers, "fisher_layers.parquet")
        self.write_table(trials, "trials.parquet")


@dataclass
class Results:
    trials: pd.DataFrame
    epochs: pd.DataFrame
    fisher_layers: pd.DataFrame
    spec: dict[str, Any]


def load_results(uri: str) -> Results:
    """The tables of a sweep's results folder (local or a pyarrow URI).

    Raises:
        CpsweepError: the folder holds no cpsweep results.
    """
    import yaml

    store = Store(uri)
    if not store.exists("trials.parquet"):
        raise CpsweepError(f"{uri} holds no cpsweep results (no trials.parquet); pass the folder of one sweep, "
                           f"e.g. results/quickstart")
    spec = yaml.safe_load(store.read_bytes("spec.yaml")) if store.exists("spec.yaml") else {}
    return Results(store.read_table("trials.parquet"), store.read_table("epochs.parquet"),
                   store.read_table("fisher_layers.parquet"), spec or {})


def write_trial_records(trial, records: Sequence[Any], folder: str, status: str) -> None:
    """The three tables of a single trial run by `cpsweep trial`, in `folder`."""
    store = Store(folder)
    store.write_table(epochs_frame(trial, records), "epochs.parquet")
    store.write_table(layers_frame(trial, records), "fisher_layers.parquet")
    store.write_table(pd.DataFrame([trial_row(trial, records, status)]), "trials.parquet")
