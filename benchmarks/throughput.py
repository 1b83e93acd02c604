"""Trials per hour for the blur grid: a straightforward trainer against cpsweep with each optimisation on.

    python benchmarks/throughput.py [--device cpu|cuda] [--batches 8] [--pack N] [--out FILE]

The workload is `sweeps/blur_grid.yaml`'s model and data shape (All-CNN-C, batches of 128 CIFAR-shaped
32x32 RGB images, SGD with momentum), on random uint8 pixels (no download). Each row times `--batches`
training steps (the faster of two passes, after a warm-up pass that absorbs torch.compile's compile
time) and scales them to the 50,000-image epoch. The rest of an epoch (BN refresh and test pass timed on
slices and scaled, the Fisher trace on the whole probe) is timed once with the fp32 engine and added to
every row. Rows, each switched on in turn; an optimisation that is slower on this device is reported and
then left off for the rows after it:

  straightforward     a CPU DataLoader with per-sample Python transforms (normalise, pad + crop, flip),
                      each batch copied to the device, float32, one trial per device, every trial from
                      scratch
  data on device      cpsweep's loop: uint8 data set on the device, batched augmentation and deficits
  channels-last       engine.channels_last
  bf16                engine.precision: bf16 (autocast)
  torch.compile       engine.compile
  packing xN          N trials at once on the device (fractional resources), aggregate throughput
  or vmap xK          instead, K trials as one vmapped model (`packed_run.PackedRun`; no compile)
  shared prefixes     the same epochs per second; the grid needs fewer epochs (`cpsweep validate`)

Trials per hour = the grid's trials / (its epochs x seconds per epoch / trials in parallel). The floor is
the training FLOPs of one epoch (counted with torch's FlopCounterMode on one step) at this device's
measured dense matrix-multiply rate (the faster of float32 and bfloat16).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import platform
import random
import sys
import time

import torch
import torch.nn.functional as F

from cpsweep.config.sharing import sharing_summary
from cpsweep.config.spec import DataSpec
from cpsweep.config.sweep_file import load_sweep
from cpsweep.engine.data import NORMALISATION, Dataset, load_data
from cpsweep.engine.trial import TrialRun

CIFAR10_MEAN, CIFAR10_STD = NORMALISATION["cifar10"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "sweeps", "blur_grid.yaml")
EPOCH_IMAGES = 50_000


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def cifar_uint8(n: int, device: torch.device) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % 10
    return Dataset("cifar10", x.to(device), y.to(device), x[:2000].to(device), y[:2000].to(device), 10, True,
                   CIFAR10_MEAN, CIFAR10_STD)


def head(data: Dataset, n: int) -> Dataset:
    """The data set with only its first n training examples (the timed steps' worth)."""
    return dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])


def trial_with(spec: str, seed: int, **engine):
    trial = load_sweep(spec).make_trial(0, 0, seed)
    return dataclasses.replace(trial, engine=dataclasses.replace(trial.engine, **engine))


def make_run(device: torch.device, data: Dataset, spec: str = SPEC, **engine) -> TrialRun:
    return TrialRun(trial_with(spec, 0, **engine), device, data=data)


def fastest(one_pass, device: torch.device) -> float:
    """Seconds of the faster of two timed calls `one_pass(epoch)`, after a warm-up call (which absorbs
    torch.compile's compile time): less noise from the rest of the machine."""
    one_pass(0)
    times = []
    for epoch in (1, 2):
        sync(device)
        start = time.perf_counter()
        one_pass(epoch)
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def time_steps(run: TrialRun, batches: int) -> float:
    """Seconds per training step of `run`'s loop, over `batches` steps."""
    full = run.data
    run.data = head(full, batches * run.trial.optim.batch_size)
    try:
        return fastest(lambda epoch: run.train_epoch(epoch, active=False), run.device) / batches
    finally:
        run.data = full


class PerSample(torch.utils.data.Dataset):
    """What a straightforward trainer does: one image at a time, in Python, on the CPU."""

    def __init__(self, x_nhwc, y):
        self.x, self.y = x_nhwc, y
        self.mean = torch.tensor(CIFAR10_MEAN).view(3, 1, 1)
        self.std = torch.tensor(CIFAR10_STD).view(3, 1, 1)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = (torch.from_numpy(self.x[i]).permute(2, 0, 1).float().div(255) - self.mean) / self.std
        img = F.pad(img, (4, 4, 4, 4))
        dy, dx = random.randint(0, 8), random.randint(0, 8)
        img = img[:, dy:dy + 32, dx:dx + 32]
        if random.random() < 0.5:
            img = img.flip(2)
        return img, int(self.y[i])


def time_straightforward(run: TrialRun, batches: int, workers: int) -> float:
    bs, device = run.trial.optim.batch_size, run.device
    x = run.data.x_train[:batches * bs].permute(0, 2, 3, 1).cpu().numpy()
    loader = torch.utils.data.DataLoader(PerSample(x, run.data.y_train[:batches * bs].cpu()), batch_size=bs,
                                         shuffle=True, num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0)

    def one_pass(_epoch):
        run.model.train()
        for xb, yb in loader:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = F.cross_entropy(run.model(xb), yb)
            run.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            run.optimizer.step()

    return fastest(one_pass, device) / batches


def epoch_extras(run: TrialRun) -> float:
    """Seconds of an epoch's BN refresh, test pass and Fisher trace (timed on slices, scaled)."""
    from cpsweep.engine.fisher import fisher_trace

    d, t = run.data, run.trial
    run.evaluate(d.x_test[:1000], d.y_test[:1000])  # warm-up
    sync(run.device)
    start = time.perf_counter()
    run.evaluate(d.x_test[:2000], d.y_test[:2000])
    sync(run.device)
    test_s = (time.perf_counter() - start) * 10_000 / 2000
    bn_batches = 5
    start = time.perf_counter()
    with torch.no_grad():
        run.model.train()
        for i in range(bn_batches):
            run.forward(run.layout(d.inputs(d.x_train[i * 128:(i + 1) * 128])))
    sync(run.device)
    bn_s = (time.perf_counter() - start) * t.bn_refresh / bn_batches
    start = time.perf_counter()
    fisher_trace(run.model, d.inputs(d.x_train[run.probe]), backend=t.fisher.backend)
    sync(run.device)
    fisher_s = (time.perf_counter() - start) / max(t.fisher.every, 1)
    return test_s + bn_s + fisher_s


def flops_per_image(device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    run = make_run(device, cifar_uint8(512, device))
    x = run.data.inputs(run.data.x_train[:8])
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(run.model(x), run.data.y_train[:8]).backward()
    return counter.get_total_flops() / 8


def matmul_rate(device: torch.device, dtype: torch.dtype) -> float:
    n = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    reps, start = (20 if device.type == "cuda" else 5), time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def _packed_worker(device: str, engine: dict, batches: int, threads: int, barrier, queue, spec: str,
                   data_name: str) -> None:
    torch.set_num_threads(threads)
    dev = torch.device(device)
    if data_name == "mnist1d":
        data = load_data(DataSpec("mnist1d"), dev)
    else:
        data = cifar_uint8(batches * 128 + 2000, dev)
    run = make_run(dev, data, spec=spec, **engine)
    run.data = head(run.data, batches * run.trial.optim.batch_size)
    run.train_epoch(0, active=False)
    sync(dev)
    barrier.wait()
    start = time.perf_counter()
    run.train_epoch(1, active=False)
    sync(dev)
    queue.put(time.perf_counter() - start)


def time_vmapped(device: torch.device, data: Dataset, engine: dict, batches: int, k: int, spec: str = SPEC) -> float:
    """Seconds per training step of one trial when k trials train as one vmapped model (`PackedRun`)."""
    from packed_run import PackedRun

    engine = {key: v for key, v in engine.items() if key != "compile"}  # PackedRun calls the model functionally
    trials = [trial_with(spec, seed, **engine) for seed in range(k)]
    run = PackedRun(trials, device, data=data)
    sliced = head(data, batches * trials[0].optim.batch_size)
    for m in run.members:
        m.data = sliced
    return fastest(run.train_epoch, device) / (k * batches)


def time_packed(device: torch.device, engine: dict, batches: int, n: int, spec: str = SPEC,
                data_name: str = "cifar10") -> float:
    """Seconds per training step of the whole device when n trials train at once (n processes)."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    threads = max(1, torch.get_num_threads() // n) if device.type == "cpu" else 1
    procs = [ctx.Process(target=_packed_worker, args=(str(device), engine, batches, threads, barrier, queue, spec,
                                                      data_name))
             for _ in range(n)]
    for p in procs:
        p.start()
    seconds = [queue.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join()
    return max(seconds) / (n * batches)  # n trials' steps in the slowest one's time


QUICKSTART = os.path.join(ROOT, "sweeps", "quickstart.yaml")


def small_model_rows(device: torch.device, k: int) -> list[dict]:
    """Training epochs per second of the quickstart's small model (cnn1d, 4,000 MNIST-1D signals): one
    trial at a time, two processes at once, k trials as one vmapped model."""
    trial = load_sweep(QUICKSTART).make_trial(0, 0, 0)
    data = load_data(trial.data, device)
    batches = -(-len(data.y_train) // trial.optim.batch_size)
    one = time_steps(TrialRun(trial, device, data=data), batches) * batches
    two = time_packed(device, {}, batches, 2, spec=QUICKSTART, data_name="mnist1d") * batches
    vm = time_vmapped(device, data, {}, batches, k, spec=QUICKSTART) * batches
    return [{"row": "one trial at a time", "epoch_s": one}, {"row": "2 trials at once (processes)", "epoch_s": two},
            {"row": f"{k} trials as one vmapped model", "epoch_s": vm}]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", type=int, default=None, help="training steps timed per row (default: 8 on "
                                                                "CPU, 40 on a GPU)")
    p.add_argument("--pack", type=int, default=None, help="trials packed on the device (default: 2 on CPU, "
                                                          "4 on a GPU)")
    p.add_argument("--vmap", type=int, default=4, help="trials trained as one vmapped model (default 4)")
    p.add_argument("--vmap-small", type=int, default=8, help="trials vmapped together for the small model")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers of the straightforward "
                                                             "trainer (default: 0 on CPU, 4 on a GPU)")
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/throughput-<device>.json)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    batches = args.batches or (40 if gpu else 8)
    pack = args.pack or (4 if gpu else 2)
    workers = args.workers if args.workers is not None else (4 if gpu else 0)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU {platform.processor() or platform.machine()}, " \
                                                          f"{torch.get_num_threads()} threads"
    trials = load_sweep(SPEC).trials()
    grid_alone, grid_shared = sharing_summary(trials)
    steps_per_epoch = -(-EPOCH_IMAGES // 128)
    data = cifar_uint8(batches * 128 + 2000 if not gpu else EPOCH_IMAGES, device)

    base = make_run(device, data)
    extras = epoch_extras(base)
    rows = []

    def add(label: str, step_s: float, parallel: int = 1, epochs: int = grid_alone, engine=None, kept=True):
        epoch_s = step_s * steps_per_epoch + extras / parallel
        hours = epochs * epoch_s / 3600
        rows.append({"row": label, "step_s": step_s, "epoch_s": epoch_s, "epochs_per_s": 1 / epoch_s,
                     "grid_epochs": epochs, "trials_per_hour": len(trials) / hours, "grid_hours": hours,
                     "engine": engine or {}, "kept": kept})
        r = rows[-1]
        print(f"{label:22} {step_s * 1000:9.1f} {epoch_s:9.1f} {r['epochs_per_s']:9.4f} {epochs:7d} "
              f"{r['trials_per_hour']:9.3g} {r['trials_per_hour'] / rows[0]['trials_per_hour']:7.2f}x"
              f"{'' if kept else '  (slower: left off)'}", flush=True)

    print(f"{name}; torch {torch.__version__}; All-CNN-C, batch 128, {steps_per_epoch} steps per epoch; "
          f"blur grid: {len(trials)} trials, {grid_alone} epochs ({grid_shared} shared); epoch extras "
          f"{extras:.1f} s")
    print(f"{'row':22} {'ms/step':>9} {'s/epoch':>9} {'epochs/s':>9} {'epochs':>7} {'trials/h':>9} {'ratio':>8}")
    add("straightforward", time_straightforward(make_run(device, data), batches, workers))
    engine: dict = {}
    best = time_steps(base, batches)
    add("data on device", best, engine=dict(engine))
    for label, change in [("channels-last", {"channels_last": True}), ("bf16", {"precision": "bf16"}),
                          ("torch.compile", {"compile": True})]:
        trial_engine = {**engine, **change}
        step = time_steps(make_run(device, data, **trial_engine), batches)
        kept = step < best
        add(f"+ {label}", step, engine=trial_engine, kept=kept)
        if kept:
            engine, best = trial_engine, step
    packed = time_packed(device, engine, batches, pack)
    alone_epoch = best * steps_per_epoch + extras
    kept = packed * steps_per_epoch + extras / pack < alone_epoch  # per trial-epoch, extras run in parallel too
    add(f"+ packing x{pack}", packed, parallel=pack, engine=engine, kept=kept)
    parallel, step = (pack, packed) if kept else (1, best)
    vmapped = time_vmapped(device, data, engine, batches, args.vmap)
    kept_v = vmapped * steps_per_epoch + extras / args.vmap < step * steps_per_epoch + extras / parallel
    add(f"  or vmap x{args.vmap} (one model)", vmapped, parallel=args.vmap, engine=engine, kept=kept_v)
    if kept_v:
        parallel, step = args.vmap, vmapped
    add("+ shared prefixes", step, parallel=parallel, epochs=grid_shared, engine=engine)

    flops = flops_per_image(device)
    rates = {name: matmul_rate(device, dt) for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    dtype = max(rates, key=rates.get)
    rate = rates[dtype]
    floor = flops * EPOCH_IMAGES / rate
    final = rows[-1]
    print(f"overall: {final['trials_per_hour'] / rows[0]['trials_per_hour']:.1f}x the straightforward trainer's "
          f"trials per hour on the blur grid")
    print(f"All-CNN-C: {flops / 1e9:.2f} GFLOP per training image; matmul "
          + ", ".join(f"{k} {v / 1e12:.2f}" for k, v in rates.items()) + f" TFLOP/s; at the {dtype} rate the "
          f"epoch floor {floor:.2f} s; best measured training epoch "
          f"{min(r['step_s'] for r in rows if r['kept']) * steps_per_epoch:.1f} s")
    small = small_model_rows(device, args.vmap_small)
    print(f"small model (the quickstart's cnn1d, 4,000 MNIST-1D signals, {-(-4000 // 128)} steps per epoch), "
          f"training only:")
    for r in small:
        r["epochs_per_s"] = 1 / r["epoch_s"]
        print(f"  {r['row']:34} {r['epoch_s']:7.3f} s per trial-epoch  {r['epochs_per_s'] / small[0]['epochs_per_s']:6.2f}x")
    out = args.out or os.path.join(ROOT, "benchmarks", "results", f"throughput-{device.type}.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "batches_timed": batches, "pack": pack,
                   "loader_workers": workers, "epoch_extras_s": extras, "flops_per_image": flops,
                   "matmul_flops": rates, "floor_dtype": dtype, "epoch_floor_s": floor,
                   "grid_trials": len(trials), "rows": rows, "small_model": small}, f, indent=2)
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
