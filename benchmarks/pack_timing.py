"""Several trials on one device at once, timed for throughput.py: n trials as n processes started together
at a barrier (`time_packed`, as Ray packs fractional-GPU trials), or k trials as one vmapped model
(`time_vmapped`, `packed_run.PackedRun`). The processes run under `gather`'s time-out: a worker that dies
or hangs ends the measurement with a TimeoutError instead of holding the benchmark.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import bench_io
import torch

import workload
from cpsweep.config.spec import DataSpec
from cpsweep.engine.data import Dataset, load_data
from workload import SPEC, cifar_uint8, fastest, head, make_run, sync, trial_with


def _packed_worker(device: str, engine: dict, batches: int, threads: int, barrier, queue, spec: str,
                   data_name: str, tiny: bool = False, wait_s: float = 600.0) -> None:
    workload.TINY = tiny
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
    barrier.wait(timeout=wait_s)  # a sibling that died or hangs breaks the barrier instead of hanging us
    start = time.perf_counter()
    run.train_epoch(1, active=False)
    sync(dev)
    queue.put((time.perf_counter() - start, bench_io.peak_mb(dev)["peak_allocated_mb"]))


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


def gather(target, args: tuple, n: int, timeout_s: float) -> list:
    """Run `target(*args, barrier, queue)`-style workers: n spawned daemon processes, each putting one
    result on the queue; the results, or TimeoutError once `timeout_s` has passed without all of them (a
    worker that died, hung or never reached the barrier). The workers are ended either way (daemons: they
    also die with this process), so a broken worker cannot hold the benchmark for long."""
    import queue as queues

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args[:1], barrier, queue, *args[1:]), daemon=True)
             for _ in range(n)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout_s
    results = []
    try:
        while len(results) < n:
            try:
                results.append(queue.get(timeout=max(0.1, min(5.0, deadline - time.monotonic()))))
            except queues.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead or time.monotonic() >= deadline:
                    why = f"worker exit codes {[p.exitcode for p in procs]}" if dead else f"after {timeout_s:g} s"
                    raise TimeoutError(f"{n - len(results)} of {n} workers gave no result ({why})") from None
        return results
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)


def _packed_entry(device, barrier, queue, engine, batches, threads, spec, data_name, tiny, wait_s):
    _packed_worker(device, engine, batches, threads, barrier, queue, spec, data_name, tiny, wait_s)


def time_packed(device: torch.device, engine: dict, batches: int, n: int, spec: str = SPEC,
                data_name: str = "cifar10", timeout_s: float = 600.0, with_memory: bool = False):
    """Seconds per training step of the whole device when n trials train at once (n processes); with
    `with_memory`, also the largest of the trials' own peak device memory (MiB; None on a CPU)."""
    threads = max(1, torch.get_num_threads() // n) if device.type == "cpu" else 1
    results = gather(_packed_entry, (str(device), engine, batches, threads, spec, data_name, workload.TINY, timeout_s),
                     n, timeout_s)
    step = max(s for s, _ in results) / (n * batches)  # n trials' steps in the slowest one's time
    peaks = [m for _, m in results if m is not None]
    return (step, max(peaks) if peaks else None) if with_memory else step
