"""How a trial's arithmetic runs on its device (`engine.tf32`, `engine.deterministic`), and its one-line
record, the `numerics` column of trials.parquet.

| device | engine.deterministic | resume from a checkpoint, shared prefixes                          |
|--------|----------------------|--------------------------------------------------------------------|
| cpu    | either (no effect)   | bit for bit                                                        |
| cuda   | true                 | bit for bit (same GPU model, driver and PyTorch)                   |
| cuda   | false (default)      | statistically equal only: cuDNN and atomics may round differently  |

On a GPU, `engine.tf32: false` (the default) keeps fp32 matmuls and cuDNN convolutions in fp32 (PyTorch's
cuDNN default is TF32); the Fisher is measured with TF32 off whatever the option (`strict_fp32`).
`engine.deterministic: true` on a GPU turns on `torch.use_deterministic_algorithms` (an operation without
a deterministic kernel raises instead of running), cuDNN's deterministic algorithms without benchmarking,
and cuBLAS's fixed workspace (CUBLAS_WORKSPACE_CONFIG: in every Ray worker's environment from its start
when a launch has a deterministic trial, and set before the first CUDA call by a trial run alone); the
built-in models' global average pooling is then a mean (`GlobalAvgPool`), since the CUDA backward of
adaptive average pooling has no deterministic kernel. On the CPU nothing changes.

All random draws are made on the CPU and copied to the device, so a trial draws the same numbers on a CPU
and on any GPU (its arithmetic still differs: the records of one trial on two devices are statistically,
not bitwise, equal).
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TypeVar

import torch

from ..config.spec import EngineSpec

CUBLAS_WORKSPACE = ":4096:8"  # cuBLAS's deterministic workspace setting (PyTorch's reproducibility notes)
F = TypeVar("F", bound=Callable)


def prepare_process(engine: EngineSpec) -> None:
    """What must happen before the process's first CUDA call: cuBLAS's fixed workspace for a deterministic
    trial (an already set CUBLAS_WORKSPACE_CONFIG is kept)."""
    if engine.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def worker_environment(engines: Iterable[EngineSpec]) -> dict[str, str]:
    """Environment variables every Ray worker of a launch starts with: cuBLAS's fixed workspace when any of
    `engines` is deterministic. `prepare_process` alone is too late in a worker process that already ran a
    non-deterministic trial on the GPU: its cuBLAS handles and workspaces were made then, without it."""
    if not any(e.deterministic for e in engines):
        return {}
    return {"CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)}


def set_numerics(engine: EngineSpec, device: torch.device | str) -> None:
    """Set the process's arithmetic for a trial of `engine` on `device`, at the trial's start: every flag,
    so that nothing carries over from the trial the process ran before."""
    torch.backends.cuda.matmul.allow_tf32 = engine.tf32
    torch.backends.cudnn.allow_tf32 = engine.tf32
    if torch.device(device).type != "cuda":
        return  # the CPU is deterministic anyway; its flags stay as they are
    prepare_process(engine)
    torch.use_deterministic_algorithms(engine.deterministic)
    torch.backends.cudnn.deterministic = engine.deterministic
    if engine.deterministic:
        torch.backends.cudnn.benchmark = False


def numerics_label(engine: EngineSpec, device: torch.device | str) -> str:
    """The `numerics` column: e.g. "cpu fp32 1 thread" (on the CPU the thread count splits the reductions,
    so it is part of what reproduces a trial bit for bit), "cuda bf16 tf32-off deterministic (NVIDIA H100 80GB
    HBM3)"."""
    device = torch.device(device)
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu {engine.precision} {threads} thread{'s' * (threads != 1)}"
    if device.type != "cuda":
        return f"{device.type} {engine.precision}"
    mode = "deterministic" if engine.deterministic else "nondeterministic"
    return (f"cuda {engine.precision} tf32-{'on' if engine.tf32 else 'off'} {mode} "
            f"({torch.cuda.get_device_name(device)})")


@contextmanager
def tf32_off() -> Iterator[None]:
    """TF32 off for matmuls and cuDNN convolutions inside, restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def strict_fp32(fn: F) -> F:
    """`fn` run with TF32 off (the Fisher stays fp32 whatever `engine.tf32`)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with tf32_off():
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]


class GlobalAvgPool(torch.nn.Module):
    """Global average pooling to size 1 over the spatial dimensions (N, C, ...) -> (N, C, 1, ...): adaptive
    average pooling as before, a mean where deterministic algorithms are on and the input is on a GPU (the
    CUDA backward of adaptive average pooling has no deterministic kernel; the mean's has)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_cuda and torch.are_deterministic_algorithms_enabled():
            return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
        pool = torch.nn.functional.adaptive_avg_pool1d if x.dim() == 3 else torch.nn.functional.adaptive_avg_pool2d
        return pool(x, 1)
