"""What the benchmarks of `gpu_check.sh` share: the repository on `sys.path` (they run with a plain
`python3` on a machine where cpsweep is not installed), results files rewritten atomically after every
row (a step killed by its time-out keeps the rows it had), and the device's peak memory.

    import bench_io                       # first: puts the repository root on sys.path
    out = bench_io.Results(path, device=...)
    out.add({"row": ...})                 # the file now holds this row
    out.add({...}, key="small_model")     # another list of rows in the same file
    out.finish()                          # "complete": true
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _plain(value: Any) -> Any:
    """JSON without NaN or infinities (None instead), which strict readers refuse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def write_json(path: str, doc: Any) -> None:
    """Write `doc` to `path` atomically (a temporary file in the same folder, then a rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_plain(doc), f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class Results:
    """One benchmark's results file: metadata, lists of rows, and whether the benchmark got to its end."""

    def __init__(self, path: str, **meta: Any):
        self.path = path
        self.doc: dict[str, Any] = {**meta, "rows": [], "complete": False}
        self.write()

    def add(self, row: dict, key: str = "rows") -> dict:
        self.doc.setdefault(key, []).append(row)
        self.write()
        return row

    def set(self, **values: Any) -> None:
        self.doc.update(values)
        self.write()

    def finish(self) -> None:
        self.set(complete=True)

    def write(self) -> None:
        write_json(self.path, self.doc)


def reset_peak(device) -> None:
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_mb(device) -> dict:
    """Peak device memory since the last `reset_peak`, in MiB (allocated by tensors, reserved by torch's
    caching allocator); None on a CPU, where there is no device memory to size trials by."""
    import torch

    if getattr(device, "type", str(device)) != "cuda":
        return {"peak_allocated_mb": None, "peak_reserved_mb": None}
    torch.cuda.synchronize()
    return {"peak_allocated_mb": torch.cuda.max_memory_allocated() / 2 ** 20,
            "peak_reserved_mb": torch.cuda.max_memory_reserved() / 2 ** 20}


def device_name(device) -> str:
    import platform

    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
