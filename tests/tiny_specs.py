"""The tests' sweep specs: one tiny MNIST-1D sweep, and each test module's variant of it as a few changes.

    tiny_sweep(UNIT, epochs=5)                        # a dict: TINY with whole keys (sections) replaced
    write_spec(tmp_path, **changes)                   # the same, as a YAML file; returns its path
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

# trains in about a second per trial on one core: 400 signals, a 3-block net of 8 channels
TINY: dict[str, Any] = {
    "name": "tiny", "seed": 0, "replicates": 1, "epochs": 6,
    "common_end": True,  # every trial stops at epoch 6 though [0, 2) and [3, 5) end apart (clean_after: drop it)
    "data": {"name": "mnist1d", "subset": 400},
    "model": {"name": "cnn1d", "channels": 8, "depth": 3},
    "optim": {"lr": 0.05, "batch_size": 50}, "deficit": "blur",
    "fisher": {"every": 1, "probe_per_class": 2}, "bn_refresh": 2,
    "grid": {"onset": [0, 3], "length": [2]}, "resources": {"cpu": 1},
}
# the unit tests of one trial (test_trial.py, test_packed.py)
UNIT = {"name": "unit", "epochs": 4, "data": {"name": "mnist1d", "subset": 600},
        "optim": {"lr": 0.05, "batch_size": 64}, "fisher": {"every": 1, "probe_per_class": 3},
        "grid": {"onset": [1], "length": [2]}}
# a grid with many shared prefixes (test_sharing.py)
GRID = {"name": "g", "replicates": 2, "epochs": 12, "data": {"name": "mnist1d", "subset": 200},
        "model": {"name": "cnn1d", "channels": 4, "depth": 2}, "schedule": {"name": "exponential", "gamma": 0.9},
        "fisher": {"every": 2, "probe_per_class": 1}, "bn_refresh": 1,
        "grid": {"onset": [0, 2, 4, 8], "length": [2, 4]}}


def tiny_sweep(*variants: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A fresh copy of TINY with the keys of `variants`, then of `changes`, replaced whole (a section given
    replaces the section; None removes the key)."""
    raw = copy.deepcopy(TINY)
    for change in (*variants, changes):
        for key, value in change.items():
            if value is None:
                raw.pop(key, None)
            else:
                raw[key] = copy.deepcopy(value)
    return raw


def write_spec(tmp_path, name: str = "tiny.yaml", *variants: dict[str, Any], **changes: Any) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tiny_sweep(*variants, **changes)))
    return str(path)
