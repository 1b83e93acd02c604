"""The GPU figures the other benchmarks do not give: peak memory per trial, exact resume, bf16 drift.

    python benchmarks/gpu_checks.py [--device cuda|cpu] [--quick] [--out checks-cuda.json]

One JSON file, rewritten after every row (each row has a "check"; the checks run drift, memory, resume:
the cheapest first, so a time-out cuts the last):

  memory   one trial of All-CNN-C and of ResNet-18 (fp32 and bf16, batch 128, the 50,000-image data set
           on the device): the device's peak memory over a few training steps, the BN refresh and a test
           pass, from an empty device; the Fisher trace's peak apart (its chunk takes a quarter of the free
           memory, at least 256 MiB, so it grows into an empty GPU and shrinks beside other trials); and
           how many such trials fit on this GPU (`trials_per_gpu`: its memory less 1 GiB, over the
           training's peak reserved plus the Fisher chunk's 256 MiB floor plus a CUDA context of about
           600 MiB per process; packed trials are processes);
  resume   a short trial (blur window, augmentation, Fisher every epoch) trained straight through twice,
           and once interrupted after two epochs, saved with `save_state_file` and resumed from the file:
           whether the repeat and the resumed run give records bit-identical to the first (wall times
           aside), and the largest difference of any loss, accuracy or trace; once with torch's
           defaults and once in the engine's deterministic mode (`engine.deterministic`: deterministic
           algorithms, CUBLAS_WORKSPACE_CONFIG set before CUDA starts), which tells a non-deterministic
           kernel from a resume bug;
  drift    the quickstart's model and data (cnn1d, MNIST-1D) for a few epochs and seeds at fp32 and at
           bf16: final test accuracies, the bf16 - fp32 difference per seed, and the seeds' spread at
           fp32 for scale (`drift_summary`).

Runs with a plain `python3` from a checkout. `--quick` trains fewer epochs and seeds and only All-CNN-C
for resume; on a CPU it also shrinks the models (workload.py's tiny widths), a rehearsal of the GPU run.
"""

from __future__ import annotations

import os

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before torch starts CUDA (deterministic GEMMs)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import bench_io  # noqa: E402
import torch  # noqa: E402

from cpsweep.config.sweep_file import load_sweep  # noqa: E402
from cpsweep.engine.data import load_data  # noqa: E402
from cpsweep.engine.fisher import CHUNK_BUDGET_BYTES, fisher_trace  # noqa: E402
from cpsweep.engine.trial import TrialRun, train_trial  # noqa: E402
from cpsweep.engine.trial_state import load_state_file, save_state_file  # noqa: E402

from workload import QUICKSTART, SPECS, cifar_uint8, head, sync, tiny_trial  # noqa: E402

CONTEXT_MB = 600  # a CUDA context per process, outside torch's allocator
CHUNK_FLOOR_MB = CHUNK_BUDGET_BYTES / 2 ** 20  # the least a Fisher chunk takes on CUDA


def shrink(trial, tiny: bool):
    return tiny_trial(trial) if tiny else trial


def with_engine(trial, **engine):
    return dataclasses.replace(trial, engine=dataclasses.replace(trial.engine, **engine))


def memory_rows(device: torch.device, quick: bool, tiny: bool):
    gpu = device.type == "cuda"
    total = torch.cuda.get_device_properties(device).total_memory / 2 ** 20 if gpu else None
    for model in ("all_cnn_c", "resnet18"):
        for precision in ("fp32", "bf16"):
            trial = shrink(with_engine(load_sweep(SPECS[model]).make_trial(0, 0, 0), precision=precision), tiny)
            if gpu:
                torch.cuda.empty_cache()
            bench_io.reset_peak(device)
            before = torch.cuda.memory_allocated() / 2 ** 20 if gpu else None
            data = cifar_uint8(50_000, device) if gpu else cifar_uint8(256, device, n_test=64)
            run = TrialRun(trial, device, data=data)
            steps = 2 if tiny else (5 if quick else 20)
            full, run.data = run.data, head(data, steps * trial.optim.batch_size)
            run.train_epoch(0, active=False)
            run.data = full
            run.refresh_bn(0)
            run.evaluate(data.x_test, data.y_test)
            sync(device)
            peak = bench_io.peak_mb(device)  # training, BN refresh and test: what a trial holds
            bench_io.reset_peak(device)
            held = torch.cuda.memory_allocated() / 2 ** 20 if gpu else None
            fisher_trace(run.model, data.inputs(data.x_train[run.probe]), backend=trial.fisher.backend)
            sync(device)
            fisher = bench_io.peak_mb(device)["peak_allocated_mb"]
            row = {"check": "memory", "model": model, "precision": precision, "batch": trial.optim.batch_size,
                   "probe": len(run.probe), "steps": steps, "allocated_before_mb": before, **peak,
                   "fisher_peak_allocated_mb": fisher, "fisher_extra_mb": fisher - held if gpu else None,
                   "data_mb": (data.x_train.nbytes + data.x_test.nbytes) / 2 ** 20, "gpu_memory_mb": total,
                   # the Fisher's chunk takes a share of what is free (fisher.CUDA_FREE_FRACTION), at least
                   # CHUNK_BUDGET_BYTES: trials side by side shrink it, so each is counted at that floor
                   "trials_per_gpu": (int((total - 1024) // (peak["peak_reserved_mb"] + CHUNK_FLOOR_MB + CONTEXT_MB))
                                      if gpu else None)}
            del run, data, full
            yield row


def comparable(records) -> list[dict]:
    """Records as dicts without wall times, NaN as None (so equal records compare equal)."""
    def plain(v):
        return None if isinstance(v, float) and math.isnan(v) else v
    return [{k: plain(v) for k, v in dataclasses.asdict(r).items() if "seconds" not in k} for r in records]


def largest_difference(a: list[dict], b: list[dict]) -> float:
    worst = 0.0
    for ra, rb in zip(a, b):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "fisher_trace"):
            x, y = ra[key], rb[key]
            if x is None or y is None:
                worst = worst if x is y else math.inf
            else:
                worst = max(worst, abs(x - y))
    return worst if len(a) == len(b) else math.inf


def resume_rows(device: torch.device, quick: bool, tiny: bool):
    models = ["all_cnn_c"] if quick else ["all_cnn_c", "resnet18"]
    gpu = device.type == "cuda"
    for model in models:
        trial = shrink(load_sweep(SPECS[model]).make_trial(1, 1, 0, epochs=4), tiny)
        trial = dataclasses.replace(trial, fisher=dataclasses.replace(trial.fisher, every=1))
        data = cifar_uint8(4096, device) if gpu else cifar_uint8(96, device, n_test=64)
        for deterministic in (False, True):  # the engine's own mode (engine.deterministic: numerics.py)
            trial = dataclasses.replace(trial, engine=dataclasses.replace(trial.engine, deterministic=deterministic))
            began = time.perf_counter()
            first = comparable(train_trial(trial, device, data=data))
            again = comparable(train_trial(trial, device, data=data))
            run = train_trial(trial, device, data=data)
            head_records = [next(run), next(run), next(run)]  # initialisation, epochs 0 and 1
            with tempfile.TemporaryDirectory() as tmp:
                save_state_file(run.state_dict(), os.path.join(tmp, "state.pt"))
                del run
                rest = list(train_trial(trial, device, resume=load_state_file(os.path.join(tmp, "state.pt")),
                                        data=data))
            resumed = comparable(head_records + rest)
            yield {"check": "resume", "model": model, "engine_deterministic": deterministic,
                   "epochs": trial.epochs, "resumed_after_epoch": 1, "records": len(first),
                   "repeat_identical": again == first, "resume_identical": resumed == first,
                   "repeat_max_diff": largest_difference(first, again),
                   "resume_max_diff": largest_difference(first, resumed),
                   "seconds": time.perf_counter() - began}


def drift_rows(device: torch.device, quick: bool, tiny: bool):
    epochs = 1 if tiny else (8 if quick else 30)  # (tiny: a CPU rehearsal, where bf16 is ~4x slower)
    seeds = 1 if tiny else (2 if quick else 3)
    sweep = load_sweep(QUICKSTART)
    data = load_data(sweep.make_trial(0, 0, 0).data, device)
    final: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for seed in range(seeds):
        for precision in ("fp32", "bf16"):
            trial = with_engine(sweep.make_trial(0, 0, seed, epochs=epochs), precision=precision)
            trial = dataclasses.replace(trial, fisher=dataclasses.replace(trial.fisher, every=0))
            began = time.perf_counter()
            records = [r for r in train_trial(trial, device, data=data) if r.epoch >= 0]
            final[precision].append(records[-1].test_acc)
            yield {"check": "drift", "model": trial.model.name, "data": trial.data.name, "seed": seed,
                   "precision": precision, "epochs": epochs, "final_test_acc": records[-1].test_acc,
                   "final_test_loss": records[-1].test_loss, "seconds": time.perf_counter() - began}
    diffs = [b - a for a, b in zip(final["fp32"], final["bf16"])]
    yield {"check": "drift_summary", "epochs": epochs, "seeds": seeds,
           "fp32_mean_acc": statistics.fmean(final["fp32"]), "bf16_mean_acc": statistics.fmean(final["bf16"]),
           "bf16_minus_fp32": diffs, "mean_difference": statistics.fmean(diffs),
           "fp32_seed_std": statistics.stdev(final["fp32"]) if seeds > 1 else None}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--checks", nargs="+", choices=["memory", "resume", "drift"],
                   default=["drift", "memory", "resume"])  # (the cheapest first: a time-out cuts the last)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tiny", action="store_true", help="tiny models also without --quick (a CPU try of every check)")
    p.add_argument("--out", default=os.path.join(bench_io.ROOT, "benchmarks", "results", "checks.json"))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    tiny = args.tiny or (args.quick and device.type != "cuda")
    out = bench_io.Results(args.out, device=bench_io.device_name(device), torch=torch.__version__,
                           quick=args.quick, tiny_models=tiny)
    failed = 0
    for check in args.checks:
        rows = {"memory": memory_rows, "resume": resume_rows, "drift": drift_rows}[check]
        try:
            for row in rows(device, args.quick, tiny):
                out.add(row)
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                      flush=True)
        except Exception as exc:  # noqa: BLE001 - one check's failure must not cost the others' rows
            failed += 1
            traceback.print_exc()
            out.add({"check": check, "error": f"{type(exc).__name__}: {exc}"}, key="errors")
    out.finish()
    print(f"wrote {args.out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
