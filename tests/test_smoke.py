"""`cpsweep launch --smoke` runs the sweep files of sweeps/ end to end on a real local Ray: one file per
distinct data set (CIFAR-10 + All-CNN, MNIST + MLP with a list-valued grid axis and a fractional GPU,
MNIST-1D + the 1-D CNN). The other files only change settings these exercise (a deficit the unit tests
cover, a window grid, another model: tests/test_registries.py trains every registered model in a real
trial); tests/test_spec.py validates every file, sweeps/mini/ included, and docs/reproduction.md records
the twins' full run. The All-CNN file's window trial is also the golden
All-CNN trial (tests/golden/): its records must match those made before the package was reorganised.

Two cuts are made here, and no other change to a file's smoke. The `schedule` axis of
blur_grid (exponential, restart, constant) would make 11 All-CNN trials of the 3 the window grid needs (18
epochs trained instead of 8: more than half of this test's time), and mlp_depth's (exponential, restart)
would make 24 MLP trials of its 9. What that axis adds (the restarted baselines per
window end, trials branching across schedules) runs end to end on MNIST-1D in the same shape in
tests/test_sharing.py (test_a_schedule_grid_launches_and_branches_across_schedules); the golden trial is
the exponential one, whose id keeps its schedule tag with the axis cut. blur_grid's smoke is also cut to
its first onset (`SMOKE_ONSET_ONLY`: the golden window [0, 1) and its baseline, 2 All-CNN trials side by
side on 2 cores instead of 3 in two rounds, half this test's time): the smoke's second window [1, 2) only
adds a window whose first epoch is the baseline's, which the quickstart's smoke runs on MNIST-1D. That
file's smoke is made here (`smoke_sweep`, as `launch --smoke` makes it), cut, and launched as made, its
GPU share dropped as `--smoke` drops it on a Ray without GPUs.

The CIFAR-10 and MNIST specs read tiny files in the real formats (tests/tiny_data.py) through the real
torchvision loaders; the Ray workers make torchvision expect those files' md5 sums with a
`worker_process_setup_hook`, the only test seam.
"""

from __future__ import annotations

import copy
import os

import pandas as pd
import pytest

import rounding
from tiny_data import trust_tiny_cifar, write_cifar10, write_mnist

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# ~75 s each for the CIFAR-10 files on 2 CPU cores; Adam, the noise deficit and the restarted schedule run
# in tests/test_trial.py and in the MNIST-1D twins (docs/reproduction.md), ResNet-18 in
# tests/test_registries.py, so their CIFAR files are only validated here.
SMOKED = ["quickstart", "blur_grid", "mlp_depth"]
SWEEPS = [os.path.join(ROOT, "sweeps", f"{name}.yaml") for name in SMOKED]
# grid axes cut to their first value in a file's smoke run (see the module docstring)
FIRST_ONLY = {"blur_grid": ["schedule"], "mlp_depth": ["schedule"]}
SMOKE_ONSET_ONLY = ["blur_grid"]  # smoke windows cut to the first (see the module docstring)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_ray(tmp_path_factory):
    import ray

    data = tmp_path_factory.mktemp("tiny-data")
    write_cifar10(data)
    write_mnist(data)
    saved = {k: os.environ.get(k) for k in ("CPSWEEP_DATA_DIR", "PYTHONPATH")}
    os.environ["CPSWEEP_DATA_DIR"] = str(data)
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, saved["PYTHONPATH"]) if p)
    trust_tiny_cifar()
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": "tiny_data.trust_tiny_cifar"})
    yield data
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.parametrize("path", SWEEPS, ids=[os.path.relpath(p, ROOT) for p in SWEEPS])
def test_smoke_runs_every_sweep_file(path, tiny_ray, tmp_path):
    from cpsweep.config.sweep_file import load_sweep, parse_sweep
    from cpsweep.config.variants import smoke_sweep
    from cpsweep.sweep.launch import launch

    sweep = load_sweep(path)
    cut = FIRST_ONLY.get(sweep.name, [])
    if cut:
        raw = copy.deepcopy(sweep.raw)
        raw["grid"].update({axis: raw["grid"][axis][:1] for axis in cut})
        sweep = parse_sweep(raw, sweep.source)
    smoke = True
    if sweep.name in SMOKE_ONSET_ONLY:
        raw = copy.deepcopy(smoke_sweep(sweep).raw)
        raw["grid"]["onset"] = raw["grid"]["onset"][:1]
        raw["resources"]["gpu"] = 0
        sweep, smoke = parse_sweep(raw, sweep.source), False
    expected = len((smoke_sweep(sweep) if smoke else sweep).trials())
    summary = launch(sweep if cut else path, storage=str(tmp_path), smoke=smoke)  # the file itself, if uncut
    assert summary.counts["ok"] == expected, summary.counts
    trials = pd.read_parquet(os.path.join(summary.uri, "trials.parquet"))
    epochs = pd.read_parquet(os.path.join(summary.uri, "epochs.parquet"))
    assert (trials.status == "ok").all() and (epochs.epoch >= 0).sum() == 3 * expected
    assert os.path.exists(os.path.join(summary.uri, "report.html"))
    if path.endswith("blur_grid.yaml"):  # the golden All-CNN trial (tests/golden/record.py), as Ray ran it
        doc = rounding.golden("allcnn_smoke")
        layers = pd.read_parquet(os.path.join(summary.uri, "fisher_layers.parquet"))
        got = rounding.records_from_tables(epochs, layers, doc["trial_id"])
        mine = layers[layers.trial_id == doc["trial_id"]].drop_duplicates("layer")
        assert {r.layer: [r.params, r.kind] for r in mine.itertuples()} == doc["layers"]
        assert not rounding.golden_mismatches("allcnn_smoke", got)
