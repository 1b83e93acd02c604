"""Save and restore one trial's training state: what a checkpoint holds of the engine, as bytes or a file.

A state is the dict `TrialRun.state_dict()` returns: the trial (`TrialSpec.to_dict()`), the number of
epochs done, the model's and the optimiser's state dicts. `dump_state` / `load_state` turn it into bytes
and back (prefix checkpoints in object storage use them), `save_state_file` / `load_state_file` into a
file, written atomically. Loading never unpickles arbitrary objects: `torch.load(weights_only=True)`.
Where checkpoints live in a sweep (Tune's trial folders, shared prefixes) is `sweep/checkpoint_store.py`.
"""

from __future__ import annotations

import io
import os
from typing import Any

import torch

from .._io import atomic_write


def dump_state(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def load_state(data: bytes, device: torch.device | str = "cpu") -> dict[str, Any]:
    """A state from `dump_state` bytes (`weights_only`: tensors and plain containers only)."""
    return torch.load(io.BytesIO(data), map_location=device, weights_only=True)


def save_state_file(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a state file atomically (a temporary file in the same folder, then a rename)."""
    atomic_write(path, dump_state(state))


def load_state_file(path: str | os.PathLike, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a state file with `torch.load(weights_only=True)` (no arbitrary code is unpickled)."""
    return torch.load(os.fspath(path), map_location=device, weights_only=True)
