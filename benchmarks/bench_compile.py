"""Recompiles and host-to-device copies of compiled trials, epoch by epoch (issue 27, item 2).

    python benchmarks/bench_compile.py                 # GPU: All-CNN-C and ResNet-18 of the sweeps
    python benchmarks/bench_compile.py --quick         # CPU rehearsal: narrow models, few examples

For each model, two trials with `engine.compile: true` run back to back in this process (as a Tune worker
runs them) on synthetic uint8 CIFAR-sized data whose size leaves a partial last batch. Per epoch it prints
the seconds, the frames torch.compile compiled (`engine.compile_stats.compiled_frames`: the first epoch
compiles a graph for training and one for testing, later epochs and the second trial should compile
none) and the host-to-device copies (`engine._device.to_device` calls: the epoch's order, its
augmentation draws and the BN refresh's order; in a trial's first epoch also the normalisation's mean and
std). It exits 1 if anything compiled after the first trial's first epoch. On this machine's CPU
(--quick --epochs 2): 2 frames in each model's first epoch, 0 after; 3 copies an epoch (5 in the first).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import bench_io  # noqa: F401  (first: the repository on sys.path)
import torch

from cpsweep.config.sweep_file import load_sweep
from cpsweep.engine import _device
from cpsweep.engine.compile_stats import compiled_frames
from cpsweep.engine.data import NORMALISATION, Dataset
from cpsweep.engine.trial import TrialRun

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECS = {"all_cnn_c": os.path.join(ROOT, "sweeps", "blur_grid.yaml"),
         "resnet18": os.path.join(ROOT, "sweeps", "resnet18.yaml")}
QUICK_MODELS = {"all_cnn_c": {"width": 0.1}, "resnet18": {"width": 8}}


def synthetic_cifar(n: int, device: torch.device) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 10
    mean, std = NORMALISATION["cifar10"]
    test = min(n, 1500)  # a partial last test chunk of 500
    return Dataset("cifar10", x.to(device), y.to(device), x[:test].to(device), y[:test].to(device), 10, True,
                   mean, std)


def compiled_trial(model: str, seed: int, epochs: int, quick: bool):
    trial = load_sweep(SPECS[model]).make_trial(0, 0, seed)
    trial = dataclasses.replace(trial, epochs=epochs, engine=dataclasses.replace(trial.engine, compile=True),
                                fisher=dataclasses.replace(trial.fisher, every=0))
    if quick:
        trial = dataclasses.replace(trial, bn_refresh=2, model=dataclasses.replace(
            trial.model, options={**trial.model.options, **QUICK_MODELS[model]}))
    return trial


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU rehearsal: narrow models, 3 batches an epoch")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(SPECS), choices=list(SPECS))
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n = 3 * 128 + 37 if args.quick else 20 * 128 + 37  # a partial last batch of 37
    data = synthetic_cifar(n, device)
    copies = []
    real = _device.to_device
    _device.to_device = lambda t, dev: copies.append(tuple(t.shape)) or real(t, dev)
    late = 0
    print(f"{'model':9} {'trial':>5} {'epoch':>5} {'seconds':>8} {'compiled':>8} {'copies':>6}")
    for model in args.models:
        for seed in (0, 1):
            run = TrialRun(compiled_trial(model, seed, args.epochs, args.quick), device, data=data)
            for epoch in range(args.epochs):
                frames, start = compiled_frames(), time.perf_counter()
                copies.clear()
                run.train_epoch(epoch, active=False)
                run.refresh_bn(epoch)
                run.evaluate(data.x_test, data.y_test)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                compiled = compiled_frames() - frames
                late += compiled if (seed, epoch) != (0, 0) else 0
                print(f"{model:9} {seed:5d} {epoch:5d} {time.perf_counter() - start:8.2f} {compiled:8d} "
                      f"{len(copies):6d}", flush=True)
    print(f"frames compiled after the first trial's first epoch: {late}")
    return 1 if late else 0


if __name__ == "__main__":
    sys.exit(main())
