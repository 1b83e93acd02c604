"""A small hand-made results set (all three tables and the spec) for report tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cpsweep.storage.folder import Results
from cpsweep.storage.store import Store
from cpsweep.storage.tables import Tables


def write_tables(uri: str, res: Results) -> None:
    """A results folder holding `res`'s three tables (one part each), as a launch would leave them."""
    Tables(Store(uri)).write_frames(res.trials, res.epochs, res.fisher_layers)


def falling(onset: int, length: int, seed: int) -> float:
    """The default damage: sensitivity (pts) = 6 - onset / 5 (+ seed * 0.5), whatever the length."""
    return 6 - onset / 5 + seed * 0.5


def peaked(onset: int, length: int, seed: int) -> float:
    """A damage that peaks at onset 37 and grows with the length (the worst window: onset 37, the longest)."""
    return 8 * float(np.exp(-((onset - 37) / 30) ** 2)) * length / 25 + seed * 0.5


def make_results(onsets=(0, 10, 20), lengths=(10,), seeds=(0, 1), epochs=50, missing=(), failed=(),
                 damage=falling) -> Results:
    """Trials whose sensitivity (pts) is `damage(onset, length, seed)`: by default 6 - onset / 5 (+ seed * 0.5),
    falling with onset. Every trial trains `epochs` epochs, a Fisher trace and per-layer rows every other one."""
    trials, ep, layers = [], [], []

    def add(tid, deficit, onset, length, seed, acc, status="ok"):
        trials.append({"trial_id": tid, "baseline_id": f"baseline-s{seed}", "sweep": "hand", "status": status,
                       "deficit": deficit, "onset": onset, "length": length, "seed": seed, "epochs": epochs,
                       "epochs_done": epochs if status == "ok" else 0, "model": "cnn1d", "data": "mnist1d",
                       "tags": "", "final_test_acc": acc if status == "ok" else np.nan})
        if status != "ok":
            return
        for e in range(epochs):
            active = deficit != "none" and onset <= e < onset + length
            fisher = 100.0 * np.exp(-e / 5) + 10 + (50.0 if active else 0.0)
            ep.append({"trial_id": tid, "epoch": e, "lr": 0.05 * 0.97 ** e, "deficit_active": active,
                       "train_loss": 1.0, "train_acc": 0.9, "test_loss": 1.0, "test_acc": acc - 0.3 * np.exp(-e),
                       "fisher_trace": fisher if e % 2 == 1 else np.nan, "seconds": 0.1, "fisher_seconds": 0.01})
            if e % 2 == 1:
                shares = [0.2, 0.5, 0.3] if not active else [0.1, 0.3, 0.6]
                for i, share in enumerate(shares):
                    layers.append({"trial_id": tid, "epoch": e, "layer": str(i), "order": i,
                                   "trace": share * fisher, "params": 100 * (i + 1)})

    for seed in seeds:
        add(f"baseline-s{seed}", "none", 0, 0, seed, 0.95)
        for onset in onsets:
            for length in lengths:
                tid = f"blur-o{onset}-l{length}-s{seed}"
                status = "failed" if (onset, length) in failed else "pending" if (onset, length) in missing else "ok"
                add(tid, "blur", onset, length, seed, 0.95 - damage(onset, length, seed) / 100, status)
    spec = {"hash": "0123456789ab", "spec": {"name": "hand"},
            "fixed": {"data": {"name": "mnist1d"}, "model": {"name": "cnn1d"},
                      "optim": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128},
                      "schedule": {"name": "exponential"}, "epochs": epochs}}
    return Results(pd.DataFrame(trials), pd.DataFrame(ep), pd.DataFrame(layers), spec)


def make_faceted_results(facets: dict, onsets=(0, 10, 20), lengths=(10,), seeds=(0, 1), epochs=50,
                         restart: str | None = None) -> Results:
    """Results of a sweep with extra grid axes: `facets` maps each tags value (e.g. "schedule=restart,
    model.width=8") to its damage function (see `make_results`); trial ids get the facet as a suffix. The
    facets whose tags contain `restart` get one baseline per seed and onset (a restarted baseline), their
    windows pointing at the one of their onset."""
    parts = []
    for n, (tags, damage) in enumerate(facets.items()):
        res = make_results(onsets, lengths, seeds, epochs, damage=damage)
        suffix = f"-f{n}"
        rename = {t: t + suffix for t in res.trials.trial_id}
        trials = res.trials.assign(tags=tags, trial_id=res.trials.trial_id.map(rename),
                                   baseline_id=res.trials.baseline_id.map(rename))
        ep, layers = res.epochs.assign(trial_id=res.epochs.trial_id.map(rename)), \
            res.fisher_layers.assign(trial_id=res.fisher_layers.trial_id.map(rename))
        if restart is not None and restart in tags:  # a baseline per onset: copies of the seed's baseline
            base = trials[trials.deficit == "none"]
            copies = [base.assign(onset=o, trial_id=base.trial_id + f"-r{o}") for o in onsets]
            trials = trials[trials.deficit != "none"].copy()
            trials["baseline_id"] = trials.baseline_id + "-r" + trials.onset.astype(str)
            trials = pd.concat([*copies, trials], ignore_index=True)
            ep = pd.concat([ep[~ep.trial_id.isin(base.trial_id)],
                            *(ep[ep.trial_id.isin(base.trial_id)].assign(trial_id=lambda d, o=o: d.trial_id + f"-r{o}")
                              for o in onsets)], ignore_index=True)
            layers = pd.concat([layers[~layers.trial_id.isin(base.trial_id)],
                                *(layers[layers.trial_id.isin(base.trial_id)].assign(
                                    trial_id=lambda d, o=o: d.trial_id + f"-r{o}") for o in onsets)], ignore_index=True)
        parts.append((trials, ep, layers))
    spec = make_results().spec
    return Results(*(pd.concat([p[i] for p in parts], ignore_index=True) for i in range(3)), spec)
