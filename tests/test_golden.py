"""Behaviour pinned to records made before the package was reorganised (tests/golden/record.py).

- Every sweep file (and its smoke variant) keeps its spec hash, fixed settings, trial ids, baseline ids,
  epochs and prefix keys exactly: results folders and prefix checkpoints made before stay valid.
- The trial blur-o0-l20-scheduleexponential-s0 of the quickstart as designed on 2026-12-05 (its spec is kept in
  tests/golden/quickstart_2026-12-05.yaml) reproduces its first 8 records: exactly where nothing can differ
  (epochs, learning rates, deficit flags, which epochs carry a Fisher trace, the layers), within
  tolerances derived from the trial's own sensitivity to rounding elsewhere (`rounding.py`), so that the
  comparison holds on any CPU. The trial is chaotic under rounding (docs/layout.md): tight in its first
  epoch, as loose as two seeds after a few, so comparing more epochs would test nothing more. (The
  All-CNN golden trial is checked by tests/test_smoke.py, which trains it anyway.)
"""

from __future__ import annotations

import json
import os

import pytest
import torch

import rounding

from cpsweep.config.sharing import prefix_keys
from cpsweep.config.sweep_file import load_sweep
from cpsweep.config.variants import smoke_sweep
from cpsweep.engine.trial import TrialRun

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(rounding.GOLDEN, "sweeps.json")) as f:
    SWEEPS = json.load(f)


@pytest.mark.parametrize("key", sorted(SWEEPS))
def test_sweep_files_keep_their_hashes_ids_and_prefix_keys(key):
    path, variant = key.rsplit(":", 1)
    sweep = load_sweep(os.path.join(ROOT, path))
    sweep = smoke_sweep(sweep) if variant == "smoke" else sweep
    want = SWEEPS[key]
    assert sweep.hash() == want["hash"]
    assert json.loads(json.dumps(sweep.fixed_settings())) == want["fixed"]
    got = {t.trial_id: {"baseline_id": t.baseline_id, "epochs": t.epochs, "prefix_first": prefix_keys(t)[0],
                        "prefix_last": prefix_keys(t)[-1]} for t in sweep.trials()}
    assert got == want["trials"]


def test_every_sweep_file_is_pinned():
    files = {os.path.relpath(os.path.join(d, f), ROOT) for d in ("sweeps", "sweeps/mini")
             for f in os.listdir(os.path.join(ROOT, d)) if f.endswith(".yaml")}
    assert {k.rsplit(":", 1)[0] for k in SWEEPS} == files


@pytest.mark.slow
def test_quickstart_trial_reproduces_its_golden_records():
    doc = rounding.golden("quickstart")
    sweep = load_sweep(os.path.join(rounding.GOLDEN, "quickstart_2026-12-05.yaml"))
    trial = next(t for t in sweep.trials() if t.trial_id == doc["trial_id"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a sweep's trial with resources.cpu: 1
    try:
        run = TrialRun(trial, "cpu")
        got = rounding.records(run, len(doc["records"]["epoch"]))
    finally:
        torch.set_num_threads(threads)
    assert {n: [run.layer_params[n], run.layer_kinds[n]] for n in doc["layers"]} == doc["layers"]
    assert not rounding.golden_mismatches("quickstart", got)
