"""Host-to-device copies of the training loop, all through one function so that they can be counted.

    order = _device.to_device(order, device)      # a no-op when the tensor is already there

Randomness is drawn on CPU generators (`sampling.py`), so every epoch moves a few host tensors to the
device: the epoch's order and the epoch's augmentation draws, each as one copy per epoch (never one per
batch). On CUDA the copy goes through pinned memory with ``non_blocking=True``, so the host does not wait
for it; the caching host allocator keeps the pinned buffer until the copy has run. Call it as
``_device.to_device`` (an attribute of the module), so that a test can wrap it and count the copies on a
machine without a GPU (tests/test_host_device.py).

`choose` says where a trial trains: the device a user named (``cpsweep trial --device``) or the one its
resources ask for, checked against what torch finds here, so that a missing GPU is one clear line rather
than a CUDA traceback or a silent CPU run.
"""

from __future__ import annotations

import torch

from ..errors import CpsweepError, SpecError

KINDS = ("cpu", "cuda", "mps")  # the device types a trial can train on


def torch_build() -> str:
    """This torch, for error messages: its version and the CUDA it was built with."""
    return f"torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}"


def gpu_count() -> int:
    """CUDA devices torch can use here (0 without a driver, a GPU or a CUDA build)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def choose(requested: str | None, gpus: float, who: str, field: str) -> str:
    """The device `who` trains on. `requested` (cpu, cuda, cuda:N, mps) must exist here; without one, cuda
    when `gpus` (resources.gpu) > 0, else cpu. A trial given a GPU where torch finds none fails instead of
    training on the CPU. Errors name `field`, the option or setting that asked for the device."""
    asked = requested
    if requested is None:
        if gpus <= 0:
            return "cpu"
        requested, asked = "cuda", f"{gpus:g} GPU"
    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise SpecError(field, f"{requested!r} is not a device; use one of cpu, cuda, cuda:N or mps") from None
    if device.type not in KINDS:
        raise SpecError(field, f"{requested!r}: cpsweep trains on {', '.join(KINDS)}; use one of them")
    if device.type == "cuda":
        count = gpu_count()
        if count == 0:
            raise CpsweepError(f"{who} asks for {asked} ({field}) but torch finds no GPU on this node "
                               f"({torch_build()}): install a CUDA build of torch on the GPU nodes, or "
                               f"train on the CPU ({'--device cpu' if field == '--device' else 'resources.gpu: 0'})")
        if device.index is not None and device.index >= count:
            raise SpecError(field, f"{requested!r}: torch finds {count} GPU(s) here, cuda:0 to cuda:{count - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise SpecError(field, f"{requested!r}: torch finds no Apple GPU (MPS) here; use cpu")
    return str(device)


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`tensor` on `device`: itself when already there; from the CPU to CUDA a pinned, non-blocking copy."""
    device = torch.device(device)
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
