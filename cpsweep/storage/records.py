"""The record and row types that the engine, the store, the progress board and the reports share
(no torch, no pandas, no ray).

    EpochRecord       what one epoch of one trial produced (a row of epochs.parquet, plus per-layer Fisher)
    trial_row(...)    one row of trials.parquet: the trial's axes, status, outcome and provenance
    *_FIELDS          the columns of the three tables, in order, with their types (*_COLUMNS: the names)
"""

from __future__ import annotations

import ast
import json
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from .. import __version__
from ..config.spec import TrialSpec

FINAL_EPOCHS = 10  # "final" accuracy = median of the last 10 epochs (the authors' plotting code)
MIN_SEEDS = 3  # fewer paired seeds decide no verdict (results/stats.py; here so `cpsweep validate` stays light)
STATUSES = ("ok", "diverged", "failed", "running", "pending")
METRIC = "metric."  # the prefix of the epochs table's columns of a user's metrics
# Every table's columns, in order, with their types: declared here once. `tables.py` builds the Parquet
# schemas from them, `store.py` casts a trial's rows with them; docs/results.md describes each column.
EPOCH_FIELDS = {"trial_id": "string", "epoch": "int64", "lr": "float64", "deficit_active": "bool",
                "train_loss": "float64", "train_acc": "float64", "test_loss": "float64", "test_acc": "float64",
                "fisher_trace": "float64", "seconds": "float64", "fisher_seconds": "float64"}
LAYER_FIELDS = {"trial_id": "string", "epoch": "int64", "layer": "string", "order": "int64", "trace": "float64",
                "params": "int64", "kind": "string"}
TRIAL_FIELDS = {"trial_id": "string", "baseline_id": "string", "sweep": "string", "status": "string",
                "deficit": "string", "onset": "int64", "length": "int64", "seed": "int64", "epochs": "int64",
                "epochs_done": "int64", "model": "string", "data": "string", "tags": "string",
                "final_test_acc": "float64", "best_test_acc": "float64", "wall_seconds": "float64",
                "error": "string", "spec_hash": "string", "cpsweep_version": "string", "git_commit": "string",
                "node": "string", "shared_epochs": "int64", "round": "int64", "reason": "string",
                "plugins": "string", "numerics": "string"}
EPOCH_COLUMNS, LAYER_COLUMNS, TRIAL_COLUMNS = list(EPOCH_FIELDS), list(LAYER_FIELDS), list(TRIAL_FIELDS)


def numeric_types(fields: dict[str, str]) -> dict[str, str]:
    """The non-string columns of `fields` and their types (what a DataFrame of new rows is cast to)."""
    return {name: kind for name, kind in fields.items() if kind != "string"}


@dataclass
class EpochRecord:
    """What one epoch of one trial produced (one row of epochs.parquet, plus per-layer Fisher)."""
    trial_id: str
    epoch: int                      # 0-based; -1: the record at initialisation, before any training step
    lr: float                       # learning rate used during this epoch
    deficit_active: bool
    train_loss: float               # mean cross-entropy over the epoch's (possibly deficit) batches
    train_acc: float                # fraction correct on those batches
    test_loss: float                # on the clean test set, after the BN refresh
    test_acc: float
    fisher_trace: float             # trace of the Fisher on the probe set; NaN when not measured
    fisher_layers: dict[str, float] = field(default_factory=dict)  # module name -> trace
    layer_params: dict[str, int] = field(default_factory=dict)     # module name -> its trainable parameters
    layer_kinds: dict[str, str] = field(default_factory=dict)      # module name -> module class, e.g. Conv2d
    seconds: float = 0.0            # wall time of the whole epoch (training, BN refresh, test, Fisher)
    fisher_seconds: float = 0.0     # wall time of the Fisher measurement alone
    metrics: dict[str, float] = field(default_factory=dict)  # "metric.<name>" -> the user's metric (Fisher epochs)

    def to_row(self) -> dict[str, Any]:
        """The epochs.parquet row (per-layer values go to fisher_layers.parquet); a user's metrics are
        columns of their own, `metric.<name>`."""
        return {**{k: getattr(self, k) for k in EPOCH_COLUMNS}, **self.metrics}

    def layer_rows(self) -> list[dict[str, Any]]:
        """The fisher_layers.parquet rows, layers in order from the input."""
        return [{"trial_id": self.trial_id, "epoch": self.epoch, "layer": name, "order": i, "trace": value,
                 "params": self.layer_params.get(name, 0), "kind": self.layer_kinds.get(name, "")}
                for i, (name, value) in enumerate(self.fisher_layers.items())]


def records_to_json(records: Sequence[EpochRecord]) -> str:
    return json.dumps([asdict(r) for r in records])


def records_from_json(text: str | bytes, trial_id: str | None = None) -> list[EpochRecord]:
    """Records read back (under `trial_id` instead of their own, when given)."""
    rename = {"trial_id": trial_id} if trial_id is not None else {}
    return [EpochRecord(**{**r, **rename}) for r in json.loads(text)]


def trained(records: Sequence[EpochRecord]) -> list[EpochRecord]:
    """The records of trained epochs (without the record at initialisation, epoch -1)."""
    return [r for r in records if r.epoch >= 0]


def final_accuracy(records: Sequence[EpochRecord], last: int = FINAL_EPOCHS) -> float:
    """Median test accuracy of the last `last` trained epochs (NaN with none)."""
    accs = [r.test_acc for r in trained(records)[-last:]]
    return statistics.median(accs) if accs else float("nan")


def tags_text(trial: TrialSpec) -> str:
    """A trial's other grid axes as trials.parquet's `tags` column writes them: `key=value,...`
    (`tag_values` reads them back)."""
    return ",".join(f"{k}={v}" for k, v in trial.tags)


def tag_items(text: str | None) -> list[tuple[str, str]]:
    """The (axis, value as written) pairs of a `tags` text, in order: split at the commas outside brackets
    (a value may be a tuple, `model.hidden=(256, 256)`), each at its first `=`."""
    parts, depth, start, text = [], 0, 0, str(text or "")
    for i, ch in enumerate(text):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [(key, value) for key, _, value in (p.partition("=") for p in parts if p)]


def tag_values(text: str | None) -> dict[str, Any]:
    """A `tags` text's axes with typed values, the inverse of `tags_text`: numbers, booleans, None and
    tuples as Python values, anything else (a schedule's or a component's name) as its text."""
    return {key: _literal(value) for key, value in tag_items(text)}


def _literal(value: str) -> Any:
    """A tag's value as a Python value where it reads as one, else its text."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return value


def tags_label(text: str | None) -> str:
    """A `tags` text as the report and `cpsweep status` show it: `model=mlp(hidden=[32]), optim.lr=0.1`, a
    component given as a mapping shown as its name and options."""
    parts = []
    for key, value in tag_items(text):
        parsed = _literal(value)
        if isinstance(parsed, dict) and "name" in parsed:
            options = ", ".join(f"{k}={v}" for k, v in parsed.items() if k != "name")
            value = f"{parsed['name']}({options})" if options else str(parsed["name"])
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def trial_row(trial: TrialSpec, records: Sequence[EpochRecord] = (), status: str = "pending", error: str = "",
              spec_hash: str = "", git_commit: str = "", node: str = "", shared: int = 0,
              numerics: str = "") -> dict[str, Any]:
    """One row of trials.parquet: the trial's axes, its status and outcome, and provenance (`node`: the Ray
    node id of the process that finished the trial, empty outside Ray; `shared_epochs`: how many of its
    first epochs it took from another trial's prefix checkpoint instead of training them; `plugins`: the
    identities of the user's code it ran, `kind=reference@source;...`; `numerics`: how its arithmetic ran,
    `engine/numerics.py`'s label, e.g. "cpu fp32 1 thread", empty until it ran)."""
    done = trained(records)
    return {"trial_id": trial.trial_id, "baseline_id": trial.baseline_id, "sweep": trial.sweep, "status": status,
            "deficit": "none" if trial.is_baseline else trial.deficit.name,
            "onset": trial.onset, "length": trial.length, "seed": trial.seed, "epochs": trial.epochs,
            "epochs_done": len(done), "model": trial.model.name, "data": trial.data.name,
            "tags": tags_text(trial),
            "final_test_acc": final_accuracy(records),
            "best_test_acc": max((r.test_acc for r in done), default=float("nan")),
            "wall_seconds": float(sum(r.seconds for r in records)), "error": error,
            "spec_hash": spec_hash, "cpsweep_version": __version__, "git_commit": git_commit, "node": node,
            "shared_epochs": shared, "plugins": trial.plugins, "numerics": numerics}
