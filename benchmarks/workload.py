"""The workload the GPU benchmarks time (throughput.py, gpu_checks.py, bench_engine.py, pack_timing.py): the
blur grid's trial (`sweeps/blur_grid.yaml`: All-CNN-C, batches of 128 CIFAR-shaped images) or ResNet-18's,
on random uint8 pixels (no download), with the tiny variants a CPU rehearsal of the GPU run uses, and the
timing rule every row follows (`fastest`: the faster of two passes after a warm-up pass).
"""

from __future__ import annotations

import dataclasses
import os
import time

import bench_io  # noqa: F401  (first: the repository on sys.path)
import torch

from cpsweep.config.sweep_file import load_sweep
from cpsweep.engine.compile_stats import compiled_frames
from cpsweep.engine.data import NORMALISATION, Dataset
from cpsweep.engine.trial import TrialRun

CIFAR10_MEAN, CIFAR10_STD = NORMALISATION["cifar10"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "sweeps", "blur_grid.yaml")
RESNET18 = os.path.join(ROOT, "sweeps", "resnet18.yaml")
SPECS = {"all_cnn_c": SPEC, "resnet18": RESNET18}
QUICKSTART = os.path.join(ROOT, "sweeps", "quickstart.yaml")
EPOCH_IMAGES = 50_000
# --quick on a CPU: models, batches and probe small enough for a rehearsal of the GPU run on two cores
TINY_MODELS = {"all_cnn_c": {"width": 1 / 12}, "resnet18": {"width": 8}}
TINY_BATCH = 32
TINY = False  # set by the benchmark's main (and by each packed worker): trial_with then shrinks every trial


def tiny_trial(trial):
    """The trial with its tiny model (if it has one), batches of 32, 2 probe examples per class
    and 2 BN-refresh batches: a rehearsal's trial, not a figure."""
    if trial.model.name not in TINY_MODELS:
        return trial
    return dataclasses.replace(
        trial, bn_refresh=2, fisher=dataclasses.replace(trial.fisher, probe_per_class=2),
        optim=dataclasses.replace(trial.optim, batch_size=TINY_BATCH),
        model=dataclasses.replace(trial.model, options={**trial.model.options, **TINY_MODELS[trial.model.name]}))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cifar_uint8(n: int, device: torch.device, n_test: int = 2000) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 10
    return Dataset("cifar10", x.to(device), y.to(device), x[:n_test].to(device), y[:n_test].to(device), 10, True,
                   CIFAR10_MEAN, CIFAR10_STD)


def head(data: Dataset, n: int) -> Dataset:
    """The data set with only its first n training examples (the timed steps' worth)."""
    return dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])


def trial_with(spec: str, seed: int, **engine):
    trial = load_sweep(spec).make_trial(0, 0, seed)
    trial = dataclasses.replace(trial, engine=dataclasses.replace(trial.engine, **engine))
    return tiny_trial(trial) if TINY else trial


def make_run(device: torch.device, data: Dataset, spec: str = SPEC, **engine) -> TrialRun:
    return TrialRun(trial_with(spec, 0, **engine), device, data=data)


def fastest(one_pass, device: torch.device, recompiles: list[int] | None = None) -> float:
    """Seconds of the faster of two timed calls `one_pass(epoch)`, after a warm-up call (which absorbs
    torch.compile's compile time): less noise from the rest of the machine. With `recompiles`, the frames
    torch.compile compiled during the timed calls are appended to it (0 when nothing recompiled)."""
    one_pass(0)
    before = compiled_frames() if recompiles is not None else 0
    times = []
    for epoch in (1, 2):
        sync(device)
        start = time.perf_counter()
        one_pass(epoch)
        sync(device)
        times.append(time.perf_counter() - start)
    if recompiles is not None:
        recompiles.append(compiled_frames() - before)
    return min(times)


def time_steps(run: TrialRun, batches: int, recompiles: list[int] | None = None) -> float:
    """Seconds per training step of `run`'s loop, over `batches` steps (see `fastest` for `recompiles`)."""
    full = run.data
    run.data = head(full, batches * run.trial.optim.batch_size)
    try:
        return fastest(lambda epoch: run.train_epoch(epoch, active=False), run.device, recompiles) / batches
    finally:
        run.data = full
