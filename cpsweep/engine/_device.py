"""Host-to-device copies of the training loop, all through one function so that they can be counted.

    order = _device.to_device(order, device)      # a no-op when the tensor is already there

Randomness is drawn on CPU generators (`sampling.py`), so every epoch moves a few host tensors to the
device: the epoch's order and the epoch's augmentation draws, each as one copy per epoch (never one per
batch). On CUDA the copy goes through pinned memory with ``non_blocking=True``, so the host does not wait
for it; the caching host allocator keeps the pinned buffer until the copy has run. Call it as
``_device.to_device`` (an attribute of the module), so that a test can wrap it and count the copies on a
machine without a GPU (tests/test_host_device.py).
"""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`tensor` on `device`: itself when already there; from the CPU to CUDA a pinned, non-blocking copy."""
    device = torch.device(device)
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
