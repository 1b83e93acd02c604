"""Record the golden trials (tests/test_golden.py, tests/test_smoke.py compare new code with them).

    python tests/golden/record.py            # rewrites tests/golden/*.json; commit them with a reason

Run it only when a change of the records is intended (a new default, a fixed bug), and say so in the
commit. For each golden trial it writes the first `EPOCHS` records on one thread (what a sweep's trial
computes with `resources.cpu: 1`), its per-layer Fisher traces, and the tolerances of `rounding.py`: the
trial rerun `RUNS` times with every layer's output perturbed by sqrt(fan-in) x u, SAFETY x the largest
deviation.
`sweeps.json` holds the spec hash, fixed settings, trial ids, baseline ids, epochs and prefix keys of
every sweep file (and its smoke variant): what must not change at all.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.dirname(HERE))  # the tests' helper modules

import torch  # noqa: E402

import rounding  # noqa: E402
from tiny_data import trust_tiny_cifar, write_cifar10  # noqa: E402

from cpsweep.config.sharing import prefix_keys  # noqa: E402
from cpsweep.config.sweep_file import load_sweep  # noqa: E402
from cpsweep.config.variants import smoke_sweep  # noqa: E402
from cpsweep.engine.data import load_data  # noqa: E402
from cpsweep.engine.trial import TrialRun  # noqa: E402

# name -> (sweep file, smoke variant?, trial id, epochs compared)
TRIALS = {
    # the quickstart as it was designed on 2026-12-05 (kept here: its records were made with it)
    "quickstart": ("tests/golden/quickstart_2026-12-05.yaml", False, "blur-o0-l20-scheduleexponential-s0", 8),
    "allcnn_smoke": ("sweeps/blur_grid.yaml", True, "blur-o0-l1-scheduleexponential-s0", 3),  # tiny CIFAR-10
}


def golden_trial(name: str):
    path, smoke, trial_id, epochs = TRIALS[name]
    sweep = load_sweep(os.path.join(ROOT, path))
    sweep = smoke_sweep(sweep) if smoke else sweep
    return next(t for t in sweep.trials() if t.trial_id == trial_id), epochs


def record_trial(name: str) -> dict:
    trial, epochs = golden_trial(name)
    data = load_data(trial.data, "cpu")
    make = lambda: TrialRun(trial, "cpu", data=data)  # noqa: E731
    first = make()
    delta = rounding.rounding_delta(first.model)
    plain, spread = rounding.sensitivity(make, delta, epochs, plain_run=first)
    tol = rounding.tolerances(plain, spread, len(data.y_train), len(data.y_test))
    layers = {n: [first.layer_params[n], first.layer_kinds[n]] for n in first.layer_params
              if f"layer:{n}" in plain}
    return {"trial_id": trial.trial_id, "delta": delta, "records": {c: v.tolist() for c, v in plain.items()},
            "tolerance": {c: v.tolist() for c, v in tol.items()}, "layers": layers}


def record_sweeps() -> dict:
    out = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "sweeps", "*.yaml")) +
                       glob.glob(os.path.join(ROOT, "sweeps", "mini", "*.yaml"))):
        for variant in ("full", "smoke"):
            sweep = load_sweep(path)
            sweep = smoke_sweep(sweep) if variant == "smoke" else sweep
            out[f"{os.path.relpath(path, ROOT)}:{variant}"] = {
                "hash": sweep.hash(), "fixed": sweep.fixed_settings(),
                "trials": {t.trial_id: {"baseline_id": t.baseline_id, "epochs": t.epochs,
                                        "prefix_first": prefix_keys(t)[0], "prefix_last": prefix_keys(t)[-1]}
                           for t in sweep.trials()}}
    return out


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    data_dir = tempfile.mkdtemp()
    write_cifar10(data_dir)  # the same tiny files tests/test_smoke.py writes
    os.environ["CPSWEEP_DATA_DIR"] = data_dir
    trust_tiny_cifar()
    for name in names:
        if name == "sweeps":
            doc = record_sweeps()
        else:
            doc = record_trial(name)
        with open(os.path.join(HERE, f"{name}.json"), "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
        print(f"wrote tests/golden/{name}.json")


if __name__ == "__main__":
    main(sys.argv[1:] or ["sweeps", *TRIALS])
