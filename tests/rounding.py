"""Tolerances derived from a trial's sensitivity to rounding, so that comparisons hold on any CPU.

Two correct float32 computations of the same trial differ when their kernels round differently: another
CPU (AVX2 against AVX-512, another oneDNN kernel), another thread count, another memory layout, a
compiled graph. How far a record may move is not a property of the CPU but of the trial: training
amplifies a tiny difference in one step, a little in some epochs and chaotically in others. So each
tolerance here is measured, not guessed:

1. delta, the size of one layer's rounding difference: the larger of (a) sqrt(fan-in) x u, the typical
   error of one float32 dot product of the model's largest fan-in summed in another order (u = 2^-24,
   float32's unit roundoff; the probabilistic bound of Higham, "Accuracy and Stability of Numerical
   Algorithms", 2nd ed., section 3.6), and (b) where a second engine is at hand, the relative difference
   its kernels actually make on one training step here (logits and every weight gradient);
2. the trial's sensitivity to it: the trial run `RUNS` times with the output of every conv and linear
   layer multiplied by (1 + delta * v), v uniform in [-1, 1] and fresh for every element of every call;
   per epoch and quantity, the largest deviation from the unperturbed run;
3. tolerance = SAFETY x that deviation, plus the quantity's own rounding (4 u |value|), and for an
   accuracy one example (a near-tie one rounding can flip).

Exact on what cannot differ: epochs, learning rates, deficit flags, layer names and parameter counts.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

U = 2.0 ** -24          # float32 unit roundoff
RUNS = 4                # perturbed runs per sensitivity estimate
SAFETY = 10             # tolerance / largest perturbed deviation
LAYERS = (nn.Conv1d, nn.Conv2d, nn.Linear)
EXACT = ["epoch", "lr", "deficit_active"]
CLOSE = ["train_loss", "train_acc", "test_loss", "test_acc", "fisher_trace"]


def max_fan_in(model: nn.Module) -> int:
    return max(m.weight[0].numel() for m in model.modules() if isinstance(m, LAYERS))


def rounding_delta(model: nn.Module) -> float:
    """sqrt(fan-in) x u for the model's largest fan-in: step 1 (a) of the module docstring."""
    return max_fan_in(model) ** 0.5 * U


def kernel_discrepancy(a, b) -> float:
    """Relative difference (2-norm) of the logits and of every weight gradient that two `TrialRun`s of the
    same trial compute on their first training batch, from the same initial weights. The runs are left as
    they were (no step is taken; BatchNorm's running statistics are restored)."""
    outs = []
    for run in (a, b):
        saved = copy.deepcopy(run.model.state_dict())
        x, y = next(run.train_batches(0, False))
        run.model.train()
        with run.autocast():
            logits = run.forward(x)
        grads = torch.autograd.grad(F.cross_entropy(logits, y), list(run.model.parameters()))
        outs.append([logits.detach().float()] + [g.contiguous() for g in grads])
        run.model.load_state_dict(saved)
    return max(float((p - q).norm() / max(float(p.norm()), 1e-30)) for p, q in zip(*outs))


def perturb_layers(run, delta: float, seed: int) -> None:
    """Multiply the output of every conv and linear layer of `run.model` by (1 + delta * v) from now on."""
    g = torch.Generator().manual_seed(seed)

    def hook(module, inputs, out):
        noise = (2 * torch.rand(out.shape, generator=g) - 1).to(out.device, out.dtype)
        return out * (1 + delta * noise)

    for m in run.model.modules():
        if isinstance(m, LAYERS):
            m.register_forward_hook(hook)


def records(run, epochs: int | None = None) -> dict[str, np.ndarray]:
    """The first `epochs` trained records of a run (all by default; not the record at initialisation) as
    column arrays; per-layer Fisher traces as `layer:<name>` columns (NaN where not measured)."""
    out: dict[str, list] = {c: [] for c in EXACT + CLOSE}
    layers: list[dict[str, float]] = []
    for rec in run:
        if rec.epoch < 0:
            continue
        for c in EXACT + CLOSE:
            out[c].append(getattr(rec, c))
        layers.append(rec.fisher_layers)
        if epochs is not None and len(layers) == epochs:
            break
    names = list(dict.fromkeys(n for layer in layers for n in layer))
    cols = {c: np.asarray(v, dtype=float) for c, v in out.items()}
    cols.update({f"layer:{n}": np.array([layer.get(n, np.nan) for layer in layers]) for n in names})
    return cols


def records_from_tables(epochs, layers, trial_id: str) -> dict[str, np.ndarray]:
    """The same columns as `records`, from a results folder's epochs and fisher_layers tables."""
    e = epochs[(epochs.trial_id == trial_id) & (epochs.epoch >= 0)].sort_values("epoch")
    cols = {c: e[c].to_numpy(dtype=float) for c in EXACT + CLOSE}
    part = layers[layers.trial_id == trial_id]
    for name, rows in part.sort_values("order").groupby("layer", sort=False):
        by_epoch = dict(zip(rows.epoch, rows.trace))
        cols[f"layer:{name}"] = np.array([by_epoch.get(ep, np.nan) for ep in e.epoch], dtype=float)
    return cols


def sensitivity(make_run: Callable, delta: float, epochs: int | None = None, runs: int = RUNS,
                plain_run=None) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The plain run's records (of `plain_run`, or a new run), and per quantity and epoch the largest
    deviation of `runs` layer-perturbed runs from them."""
    plain = records(plain_run if plain_run is not None else make_run(), epochs)
    spread = {c: np.zeros_like(v) for c, v in plain.items() if c not in EXACT}
    for seed in range(runs):
        run = make_run()
        perturb_layers(run, delta, seed)
        other = records(run, epochs)
        for c in spread:
            spread[c] = np.fmax(spread[c], np.abs(other[c] - plain[c]))
    return plain, spread


def assert_same_within_rounding(make_plain: Callable, make_other: Callable) -> None:
    """Two ways of computing one trial (another memory layout, a compiled graph, another precision) give
    the same records within the tolerances of the module docstring, delta measured on their kernels."""
    first, other = make_plain(), make_other()
    delta = max(kernel_discrepancy(first, other), rounding_delta(first.model))
    n_train, n_test = len(first.data.y_train), len(first.data.y_test)
    plain, spread = sensitivity(make_plain, delta, plain_run=first)
    bad = mismatches(plain, records(other), tolerances(plain, spread, n_train, n_test))
    assert not bad, f"delta {delta:.2e}: " + "; ".join(bad)


def tolerances(plain: dict[str, np.ndarray], spread: dict[str, np.ndarray], n_train: int,
               n_test: int) -> dict[str, np.ndarray]:
    """SAFETY x spread + the value's own rounding (+ one example for accuracies)."""
    tol = {c: SAFETY * s + 4 * U * np.abs(plain[c]) for c, s in spread.items()}
    tol["train_acc"] += 1 / n_train
    tol["test_acc"] += 1 / n_test
    return tol


def mismatches(expected: dict[str, np.ndarray], got: dict[str, np.ndarray],
               tol: dict[str, np.ndarray]) -> list[str]:
    """What differs: exact columns that are not equal, close ones beyond their tolerance (NaN = NaN)."""
    bad = [f"{c}: {got[c].tolist()} != {expected[c].tolist()}" for c in EXACT
           if not np.array_equal(got[c], expected[c])]
    if set(got) != set(expected):
        bad.append(f"columns differ: {sorted(set(got) ^ set(expected))}")
    for c in tol:
        if c not in got:
            continue
        diff = np.abs(got[c] - expected[c])
        off = np.where(~((diff <= tol[c]) | (np.isnan(got[c]) & np.isnan(expected[c]))))[0]
        bad += [f"{c} epoch {e}: {got[c][e]!r} vs {expected[c][e]!r} (tolerance {tol[c][e]:.3g})" for e in off]
    return bad


GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def golden(name: str) -> dict:
    """A golden trial written by tests/golden/record.py (its records, tolerances and layer table)."""
    with open(os.path.join(GOLDEN, f"{name}.json")) as f:
        doc = json.load(f)
    doc["records"] = {c: np.asarray(v, dtype=float) for c, v in doc["records"].items()}
    doc["tolerance"] = {c: np.asarray(v, dtype=float) for c, v in doc["tolerance"].items()}
    return doc


def golden_mismatches(name: str, got: dict[str, np.ndarray]) -> list[str]:
    doc = golden(name)
    return mismatches(doc["records"], got, doc["tolerance"])
