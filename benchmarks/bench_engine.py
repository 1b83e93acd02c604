"""Cost of one trial's epoch and of its Fisher measurement, on this machine's CPU (and a GPU if present).

    python benchmarks/bench_engine.py [--device cpu|cuda] [--cifar-batches 20] [--out benchmarks/results/engine.json]

For each workload it times, with the real training loop (`cpsweep.engine.trial.TrialRun`):
  - a training epoch (for CIFAR scale: `--cifar-batches` batches of 128, extrapolated to 50,000 images),
  - the BN refresh before testing (the spec's `bn_refresh` batches),
  - the Fisher trace on the default probe set (exact over classes, backend "auto"),
and prints the Fisher's cost as a fraction of an epoch. Workloads: cnn1d on MNIST-1D at the quickstart
settings (probe 100, every 2 epochs), all_cnn_c and resnet18 on CIFAR-shaped random data (probe 300;
every epoch, every 5 for ResNet-18), each with its peak device memory (None on a CPU). Runs with a plain
`python3` from a checkout and rewrites its JSON after every workload. `--quick` on a CPU shrinks the image
models (workload.py's tiny widths) for a rehearsal of the GPU run; on a GPU it changes nothing here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time

import bench_io
import torch

from cpsweep.config.sweep_file import load_sweep
from cpsweep.engine.data import Dataset, load_data
from cpsweep.engine.trial import TrialRun

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cifar_like(n: int, device: torch.device) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 32, 32, generator=g)
    y = torch.arange(n) % 10
    return Dataset("cifar10", x.to(device), y.to(device), x[:1000].to(device), y[:1000].to(device), 10, True)


def measure(name: str, spec_path: str, data: Dataset | None, epoch_images: int,
            batches: int | None, device: torch.device, tiny: bool = False) -> dict:
    sweep = load_sweep(spec_path)
    trial = sweep.make_trial(0, 0, 0)
    if tiny:
        from workload import tiny_trial

        trial = tiny_trial(trial)
    bench_io.reset_peak(device)
    if data is None:
        data = load_data(trial.data, device)
    run = TrialRun(trial, device, data=data)
    n_batches = -(-len(data.y_train) // trial.optim.batch_size)
    if batches is not None:  # time a slice of the epoch, then scale to the full epoch
        sliced = dataclasses.replace(data, x_train=data.x_train[:batches * trial.optim.batch_size],
                                     y_train=data.y_train[:batches * trial.optim.batch_size])
        run.data = sliced
    train_s = timed(lambda: run.train_epoch(0, active=False), device, repeats=1 if batches else 3)
    timed_batches = -(-len(run.data.y_train) // trial.optim.batch_size)
    epoch_s = train_s * (epoch_images / trial.optim.batch_size) / timed_batches
    run.data = data
    bn_s = timed(lambda: run.refresh_bn(0), device, repeats=1 if batches else 3)
    test_s = timed(lambda: run.evaluate(data.x_test, data.y_test), device, repeats=1 if batches else 3)
    from cpsweep.engine.fisher import fisher_trace

    probe = data.inputs(data.x_train[run.probe])
    fisher_s = timed(lambda: fisher_trace(run.model, probe, backend=trial.fisher.backend), device,
                     repeats=1 if batches else 3)
    every = trial.fisher.every
    return {"workload": name, "device": str(device), "model": trial.model.name, "epoch_images": epoch_images,
            "batches_timed": timed_batches, "full_epoch_batches": n_batches, "train_epoch_s": epoch_s,
            "bn_refresh_s": bn_s, "bn_refresh_batches": trial.bn_refresh, "test_s": test_s, "probe": len(run.probe),
            "fisher_s": fisher_s, "fisher_every": every, "fisher_fraction": fisher_s / epoch_s,
            "fisher_fraction_amortised": fisher_s / every / epoch_s, **bench_io.peak_mb(device)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--cifar-batches", type=int, default=20,
                   help="on a CPU, batches of 128 timed for the image models (on a GPU: 100, --quick 40)")
    p.add_argument("--models", nargs="+", choices=["cnn1d", "all_cnn_c", "resnet18"],
                   default=["cnn1d", "all_cnn_c", "resnet18"])
    p.add_argument("--quick", action="store_true", help="on a CPU: tiny image models, 2 timed batches")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "engine.json"))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    tiny = args.quick and not gpu
    # on a GPU a slice of the 391-batch epoch too (after a warm-up slice): four whole epochs of ResNet-18 and
    # All-CNN-C would not fit the step's time-out in gpu_check.sh
    cifar_batches = (40 if args.quick else 100) if gpu else (2 if tiny else args.cifar_batches)
    out = bench_io.Results(args.out, device=bench_io.device_name(device), torch=torch.__version__,
                           threads=torch.get_num_threads(), quick=args.quick, tiny_models=tiny)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {torch.get_num_threads()}")
    print(f"{'workload':34} {'device':6} {'epoch s':>9} {'BN s':>7} {'test s':>7} {'probe':>5} {'Fisher s':>9} "
          f"{'Fisher/epoch':>12} {'amortised':>9} {'peak MiB':>9}", flush=True)
    image = {"all_cnn_c": ("all_cnn_c / CIFAR-shaped random", "blur_grid.yaml"),
             "resnet18": ("resnet18 / CIFAR-shaped random", "resnet18.yaml")}
    for model in args.models:
        if model == "cnn1d":
            r = measure("cnn1d / MNIST-1D (quickstart)", os.path.join(ROOT, "sweeps", "quickstart.yaml"), None,
                        4000, None, device)
        else:
            label, spec = image[model]
            n = 50_000 if gpu else (30 if tiny else 300) * 10 + 128 * cifar_batches
            r = measure(label, os.path.join(ROOT, "sweeps", spec), cifar_like(n, device), 50_000, cifar_batches,
                        device, tiny=tiny)
        out.add(r)
        peak = r["peak_allocated_mb"]
        print(f"{r['workload']:34} {r['device']:6} {r['train_epoch_s']:9.2f} {r['bn_refresh_s']:7.2f} "
              f"{r['test_s']:7.2f} {r['probe']:5d} {r['fisher_s']:9.3f} {100 * r['fisher_fraction']:11.1f}% "
              f"{100 * r['fisher_fraction_amortised']:8.1f}% {'-' if peak is None else f'{peak:9.0f}':>9}",
              flush=True)
    out.finish()
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
