"""Running trials in the test process, and comparing their records.

    reference_epochs(spec)   the sweep's trials back to back, uninterrupted: what a sweep must reproduce
    read(folder)             a results folder's trials and epochs tables, sorted
    COMPARE                  the epoch columns that must match exactly (everything but wall times)
    comparable(records)      records without their wall times
    image_data()             a small synthetic image data set (no files)
"""

from __future__ import annotations

import dataclasses
import math
import os

import pandas as pd
import torch

from cpsweep.config.sweep_file import load_sweep, parse_sweep
from cpsweep.engine.data import Dataset
from cpsweep.engine.trial import train_trial

COMPARE = ["trial_id", "epoch", "lr", "deficit_active", "train_loss", "train_acc", "test_loss", "test_acc",
           "fisher_trace"]


def reference_epochs(spec, ids=None) -> pd.DataFrame:
    """The trials of `spec` (a YAML path or a dict; only those in `ids` if given) run back to back in this
    process, uninterrupted, on one thread like the trials of a sweep."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sweep = parse_sweep(spec) if isinstance(spec, dict) else load_sweep(spec)
    try:
        frames = []
        for trial in (t for t in sweep.trials() if ids is None or t.trial_id in ids):
            recs = list(train_trial(trial, "cpu"))
            frames.append(pd.DataFrame([{**r.to_row(), "trial_id": trial.trial_id} for r in recs]))
        return pd.concat(frames).sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    finally:
        torch.set_num_threads(threads)


def read(folder):
    """A results folder's trials table and its epochs table, sorted by trial and epoch."""
    epochs = pd.read_parquet(os.path.join(folder, "epochs.parquet"))
    return (pd.read_parquet(os.path.join(folder, "trials.parquet")),
            epochs.sort_values(["trial_id", "epoch"]).reset_index(drop=True))


def comparable(records):
    """Records without their wall-clock times (everything else must match bit for bit), NaN (an unmeasured
    Fisher trace, the training loss at initialisation) as None so that equal records compare equal."""
    def plain(v):
        return None if isinstance(v, float) and math.isnan(v) else v
    return [dataclasses.replace(r, **{f.name: plain(getattr(r, f.name)) for f in dataclasses.fields(r)
                                      if isinstance(getattr(r, f.name), float) and "seconds" not in f.name},
                                seconds=0.0, fisher_seconds=0.0) for r in records]


def image_data(n=96, augment=True, nan=False) -> Dataset:
    """`n` random 3x8x8 "images" of 4 classes (the test set: the first 32), float32, no files."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 8, 8, generator=g)
    if nan:
        x[0, 0, 0, 0] = float("nan")
    y = torch.arange(n) % 4
    return Dataset("synthetic", x, y, x[:32].clone(), y[:32].clone(), 4, augment)
