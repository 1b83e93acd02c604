"""Synthetic shards for trials that train nothing: the scale benchmark (`benchmarks/scale.py`) and the
bookkeeping tests feed them through the real store, tables and progress board.

`SyntheticShards(store, epochs, layers)` writes, for any `TrialSpec`, the three files a finished trial
writes (`Store.write_shard`'s layout) from one template of `epochs` epoch rows and `epochs` x `layers`
per-layer rows, with the trial's id and a test accuracy that depends on the trial (so reducers have
something to compute). Building the template once keeps the writer's cost out of the figures of the
driver that reads them. `CountingHandler` counts what a driver asks of its file system, and can stop it
at a chosen call (a driver killed mid-flush).
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from cpsweep.config.spec import TrialSpec
from cpsweep.storage.records import EPOCH_COLUMNS, LAYER_COLUMNS, trial_row
from cpsweep.storage.store import SHARD_TRIAL, TABLE_FILES, Store


class SyntheticShards:
    def __init__(self, store: Store, epochs: int, layers: int):
        self.store, self.n_epochs, self.n_layers = store, epochs, layers
        e = np.arange(-1, epochs)
        self.epochs = pd.DataFrame({"trial_id": "", "epoch": e, "lr": 0.05 * 0.97 ** np.maximum(e, 0),
                                    "deficit_active": False, "train_loss": 1.0, "train_acc": 0.9, "test_loss": 1.0,
                                    "test_acc": 0.9, "fisher_trace": 100.0 * np.exp(-np.maximum(e, 0) / 20) + 1,
                                    "seconds": 0.0, "fisher_seconds": 0.0})[EPOCH_COLUMNS]
        ee, ll = np.meshgrid(e, np.arange(layers), indexing="ij")
        self.layers = pd.DataFrame({"trial_id": "", "epoch": ee.ravel(), "layer": [f"l{i}" for i in ll.ravel()],
                                    "order": ll.ravel(), "trace": 1.0, "params": 1000, "kind": "Linear"})[LAYER_COLUMNS]

    def accuracy(self, trial: TrialSpec) -> float:
        """A final accuracy that depends on the trial (its id's hash) and not on the run."""
        return 0.9 - 0.05 * (zlib.crc32(trial.trial_id.encode()) % 1000) / 1000 * (not trial.is_baseline)

    def write(self, trial: TrialSpec) -> None:
        """The shard of `trial` as the trainable leaves it: epochs, per-layer rows, then trial.parquet."""
        n = min(trial.epochs, self.n_epochs)
        acc = self.accuracy(trial)
        epochs = self.epochs[self.epochs.epoch < n].assign(trial_id=trial.trial_id, test_acc=acc)
        layers = self.layers[self.layers.epoch < n].assign(trial_id=trial.trial_id)
        self.store.write_table(epochs, "shards", trial.trial_id, TABLE_FILES["epochs"])
        self.store.write_table(layers, "shards", trial.trial_id, TABLE_FILES["fisher_layers"])
        row = trial_row(trial, status="ok")
        row.update(epochs_done=n, final_test_acc=acc, best_test_acc=acc)
        self.store.write_table(pd.DataFrame([row]), "shards", trial.trial_id, SHARD_TRIAL)


class CountingHandler(pafs.FileSystemHandler):
    """A file system (`pafs.PyFileSystem(CountingHandler(fs))`) that passes every call to `fs`, counting the
    calls (listings, file infos, opened files, writes: moves and deletes), and kills the caller
    (KeyboardInterrupt) at the first call for which `kill(method, path)` is true."""

    def __init__(self, fs: pafs.FileSystem):
        self.fs, self.kill = fs, None
        self.reset()

    def reset(self) -> None:
        self.calls = {"list": 0, "info": 0, "read": 0, "write": 0}

    def __eq__(self, other):
        return self is other

    def __ne__(self, other):
        return self is not other

    def check(self, method, path):
        if self.kill is not None and self.kill(method, path):
            raise KeyboardInterrupt

    def get_type_name(self):
        return "handler"

    def normalize_path(self, path):
        return path

    def get_file_info(self, paths):
        self.calls["info"] += len(paths)
        return self.fs.get_file_info(paths)

    def get_file_info_selector(self, selector):
        self.calls["list"] += 1
        return self.fs.get_file_info(selector)

    def open_input_stream(self, path):
        self.calls["read"] += 1
        return self.fs.open_input_stream(path)

    def open_input_file(self, path):
        self.calls["read"] += 1
        return self.fs.open_input_file(path)

    def create_dir(self, path, recursive):
        self.fs.create_dir(path, recursive=recursive)

    def delete_dir(self, path):
        self.fs.delete_dir(path)

    def delete_dir_contents(self, path, missing_dir_ok=False):
        self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

    def delete_root_dir_contents(self):
        raise NotImplementedError

    def delete_file(self, path):
        self.check("delete_file", path)
        self.calls["write"] += 1
        self.fs.delete_file(path)

    def move(self, src, dest):
        self.check("move", dest)
        self.calls["write"] += 1
        self.fs.move(src, dest)

    def copy_file(self, src, dest):
        self.fs.copy_file(src, dest)

    def open_output_stream(self, path, metadata):
        self.calls["write"] += 1
        return self.fs.open_output_stream(path)

    def open_append_stream(self, path, metadata):
        return self.fs.open_append_stream(path)
