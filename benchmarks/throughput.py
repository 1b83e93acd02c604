"""Trials per hour for the blur grid: a straightforward trainer against cpsweep with each optimisation on.

    python benchmarks/throughput.py [--device cpu|cuda] [--batches 8] [--pack N] [--models all_cnn_c resnet18]
                                    [--quick] [--out FILE]

Runs with a plain `python3` from a checkout (the repository is put on sys.path) and rewrites its JSON
after every row, so a run stopped by a time-out keeps what it measured. ResNet-18 (`sweeps/resnet18.yaml`)
gets the same rows as All-CNN-C but torch.compile and vmap (their compile and batching costs are All-CNN's
question). Each row records the device's peak memory while it ran (`peak_allocated_mb`; None on a CPU);
a packed row records the largest of its trial processes' own peaks (data set, model, optimiser: what one
trial needs). `--quick` times fewer steps and leaves out torch.compile, packing, vmap, ResNet-18's
straightforward row and the small model's parallel rows; on a CPU it also shrinks the models (All-CNN-C
width 1/12, ResNet-18 width 8), the batches (32) and the Fisher probe, for a rehearsal of the GPU run
(tests/test_gpu_check.py), not for figures.

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
  torch.compile       engine.compile (its row also records `recompiles`: frames compiled after the warm-up
                      pass, 0 when the static shapes hold)
  packing xN          N trials at once on the device (fractional resources), aggregate throughput
  or vmap xK          instead, K trials as one vmapped model (`packed_run.PackedRun`; no compile)
  shared prefixes     the same epochs per second; the grid needs fewer epochs (`cpsweep validate`)

Trials per hour = the grid's trials / (its epochs x seconds per epoch / trials in parallel). The floor is
the training FLOPs of one epoch (counted with torch's FlopCounterMode on one step) at this device's
measured dense matrix-multiply rate (the faster of float32 and bfloat16).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

import bench_io  # noqa: F401  (first: the repository on sys.path)
import torch
import torch.nn.functional as F

import workload
from cpsweep.config.sharing import sharing_summary
from cpsweep.config.sweep_file import load_sweep
from cpsweep.engine.data import Dataset, load_data
from cpsweep.engine.trial import TrialRun
from pack_timing import time_packed, time_vmapped
from workload import (CIFAR10_MEAN, CIFAR10_STD, EPOCH_IMAGES, QUICKSTART, ROOT, SPECS, cifar_uint8, fastest,
                      make_run, sync, time_steps)


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
    n = 8192 if device.type == "cuda" else (256 if workload.TINY else 1024)  # (bf16 on a CPU: ~3 s per 1024^3)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    reps, start = (20 if device.type == "cuda" else 5), time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def small_model_rows(device: torch.device, k: int, quick: bool = False):
    """Training epochs per second of the quickstart's small model (cnn1d, 4,000 MNIST-1D signals), yielded
    row by row: one trial at a time, two processes at once, k trials as one vmapped model (the first only
    with `quick`)."""
    trial = load_sweep(QUICKSTART).make_trial(0, 0, 0)
    data = load_data(trial.data, device)
    batches = -(-len(data.y_train) // trial.optim.batch_size)
    yield {"row": "one trial at a time", "epoch_s": time_steps(TrialRun(trial, device, data=data), batches) * batches}
    if quick:
        return
    two = time_packed(device, {}, batches, 2, spec=QUICKSTART, data_name="mnist1d") * batches
    yield {"row": "2 trials at once (processes)", "epoch_s": two}
    vm = time_vmapped(device, data, {}, batches, k, spec=QUICKSTART) * batches
    yield {"row": f"{k} trials as one vmapped model", "epoch_s": vm}


def model_rows(out: bench_io.Results, model: str, device: torch.device, data: Dataset, batches: int, workers: int,
               pack: int, vmap: int, quick: bool) -> None:
    """The rows of one model (`SPECS[model]`'s sweep), each added to `out` as soon as it is measured."""
    spec = SPECS[model]
    trials = load_sweep(spec).trials()
    grid_alone, grid_shared = sharing_summary(trials)
    steps_per_epoch = -(-EPOCH_IMAGES // 128)
    bench_io.reset_peak(device)
    base = make_run(device, data, spec=spec)
    extras = epoch_extras(base)
    out.doc.setdefault("epoch_extras_s", {})[model] = extras
    out.doc.setdefault("grid_trials", {})[model] = len(trials)
    mine: list[dict] = []

    def add(label: str, step_s: float, parallel: int = 1, epochs: int = grid_alone, engine=None, kept=True,
            memory=None, recompiles=None):
        epoch_s = step_s * steps_per_epoch + extras / parallel
        hours = epochs * epoch_s / 3600
        row = {"model": model, "row": label, "step_s": step_s, "epoch_s": epoch_s, "epochs_per_s": 1 / epoch_s,
               "grid_epochs": epochs, "trials_per_hour": len(trials) / hours, "grid_hours": hours,
               "engine": engine or {}, "kept": kept, "trials_in_parallel": parallel, "recompiles": recompiles,
               **(memory if memory is not None else bench_io.peak_mb(device))}
        mine.append(out.add(row))
        print(f"{model:9} {label:30} {step_s * 1000:9.1f} {epoch_s:9.1f} {row['epochs_per_s']:9.4f} {epochs:7d} "
              f"{row['trials_per_hour']:9.3g} {row['trials_per_hour'] / mine[0]['trials_per_hour']:7.2f}x"
              f"{'' if kept else '  (slower: left off)'}"
              f"{'' if recompiles is None else f'  ({recompiles} recompiles after the first pass)'}", flush=True)
        bench_io.reset_peak(device)

    print(f"{model}: batch 128, {steps_per_epoch} steps per epoch; its grid: {len(trials)} trials, {grid_alone} "
          f"epochs ({grid_shared} shared); epoch extras {extras:.1f} s")
    print(f"{'model':9} {'row':30} {'ms/step':>9} {'s/epoch':>9} {'epochs/s':>9} {'epochs':>7} {'trials/h':>9} "
          f"{'ratio':>8}", flush=True)
    if not (quick and model != "all_cnn_c"):
        bench_io.reset_peak(device)
        add("straightforward", time_straightforward(make_run(device, data, spec=spec), batches, workers))
    engine: dict = {}
    bench_io.reset_peak(device)
    best = time_steps(base, batches)
    add("data on device", best, engine=dict(engine))
    changes = [("channels-last", {"channels_last": True}), ("bf16", {"precision": "bf16"})]
    if not quick and model == "all_cnn_c":
        changes.append(("torch.compile", {"compile": True}))
    for label, change in changes:
        trial_engine = {**engine, **change}
        recompiles = [] if trial_engine.get("compile") else None  # frames compiled after the warm-up epoch
        step = time_steps(make_run(device, data, spec=spec, **trial_engine), batches, recompiles)
        kept = step < best
        add(f"+ {label}", step, engine=trial_engine, kept=kept, recompiles=recompiles[0] if recompiles else None)
        if kept:
            engine, best = trial_engine, step
    parallel, step = 1, best
    if not quick:
        packed, peak = time_packed(device, engine, batches, pack, spec=spec, with_memory=True)
        alone_epoch = best * steps_per_epoch + extras
        kept = packed * steps_per_epoch + extras / pack < alone_epoch  # per trial-epoch, extras in parallel too
        add(f"+ packing x{pack}", packed, parallel=pack, engine=engine, kept=kept,
            memory={"peak_allocated_mb": peak, "peak_reserved_mb": None})
        if kept:
            parallel, step = pack, packed
        if model == "all_cnn_c":
            vmapped = time_vmapped(device, data, engine, batches, vmap, spec=spec)
            kept_v = vmapped * steps_per_epoch + extras / vmap < step * steps_per_epoch + extras / parallel
            add(f"  or vmap x{vmap} (one model)", vmapped, parallel=vmap, engine=engine, kept=kept_v)
            if kept_v:
                parallel, step = vmap, vmapped
    add("+ shared prefixes", step, parallel=parallel, epochs=grid_shared, engine=engine)
    print(f"{model} overall: {mine[-1]['trials_per_hour'] / mine[0]['trials_per_hour']:.1f}x the first row's "
          f"trials per hour on its grid", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batches", type=int, default=None,
                   help="training steps timed per row (default: 8 on CPU, 40 on a GPU; --quick: 2 and 15)")
    p.add_argument("--pack", type=int, default=None, help="trials packed on the device (default: 2 on CPU, "
                                                          "4 on a GPU)")
    p.add_argument("--vmap", type=int, default=4, help="trials trained as one vmapped model (default 4)")
    p.add_argument("--vmap-small", type=int, default=8, help="trials vmapped together for the small model")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers of the straightforward "
                                                             "trainer (default: 0 on CPU, 4 on a GPU)")
    p.add_argument("--models", nargs="+", choices=list(SPECS), default=list(SPECS))
    p.add_argument("--quick", action="store_true", help="fewer steps and rows (on a CPU: tiny models)")
    p.add_argument("--tiny", action="store_true", help="tiny models, batches and probe also without --quick "
                                                       "(to try every row's code on a CPU)")
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/throughput-<device>.json)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    tiny = workload.TINY = args.tiny or (args.quick and not gpu)
    batches = args.batches or ((15 if gpu else 2) if args.quick else (40 if gpu else 8))
    pack = args.pack or (4 if gpu else 2)
    workers = args.workers if args.workers is not None else (4 if gpu else 0)
    name = bench_io.device_name(device)
    out = args.out or os.path.join(ROOT, "benchmarks", "results", f"throughput-{device.type}.json")
    res = bench_io.Results(out, device=name, torch=torch.__version__, batches_timed=batches, pack=pack,
                           loader_workers=workers, quick=args.quick, tiny_models=tiny,
                           gpu_memory_mb=torch.cuda.get_device_properties(device).total_memory / 2 ** 20 if gpu
                           else None)
    print(f"{name}; torch {torch.__version__}; writing {out} after every row", flush=True)
    n_test = 256 if tiny else 2000
    data = cifar_uint8(EPOCH_IMAGES, device) if gpu else cifar_uint8(batches * 128 + n_test, device, n_test=n_test)
    flops = flops_per_image(device)  # first: seconds, and the floor every row is read against
    rates = {name: matmul_rate(device, dt) for name, dt in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    dtype = max(rates, key=rates.get)
    floor = flops * EPOCH_IMAGES / rates[dtype]
    res.set(flops_per_image=flops, matmul_flops=rates, floor_dtype=dtype, epoch_floor_s=floor)
    for model in args.models:
        model_rows(res, model, device, data, batches, workers, pack, args.vmap, args.quick)

    cnn = [r for r in res.doc["rows"] if r["model"] == "all_cnn_c" and r["kept"]]
    if cnn:
        print(f"All-CNN-C: {flops / 1e9:.2f} GFLOP per training image; matmul "
              + ", ".join(f"{k} {v / 1e12:.2f}" for k, v in rates.items()) + f" TFLOP/s; at the {dtype} rate the "
              f"epoch floor {floor:.2f} s; best measured training epoch "
              f"{min(r['step_s'] for r in cnn) * -(-EPOCH_IMAGES // 128):.2f} s", flush=True)
    print(f"small model (the quickstart's cnn1d, 4,000 MNIST-1D signals, {-(-4000 // 128)} steps per epoch), "
          f"training only:", flush=True)
    for r in small_model_rows(device, args.vmap_small, quick=args.quick):
        r["epochs_per_s"] = 1 / r["epoch_s"]
        res.add(r, key="small_model")
        first = res.doc["small_model"][0]
        print(f"  {r['row']:34} {r['epoch_s']:7.3f} s per trial-epoch  "
              f"{r['epochs_per_s'] / first['epochs_per_s']:6.2f}x", flush=True)
    res.finish()
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
